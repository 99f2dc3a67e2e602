"""Limited-data training options: DiffAugment's transformations, the R1 and LeCam regularizers, spectral
normalisation and the projection discriminator; what they compute, checked against values worked out by hand."""

import pytest
import torch

from components.config import TrainConfig
from components.core.errors import ConfigError
from components.presets import load_config
from components.training.augment import AUGMENTS, augment, random_columns
from components.training.networks import DOptions, GeneratorSpec, build_discriminator
from components.training.regularizers import LECAM_DECAY, DStep, d_terms, needs_real_grad


def ramp(b=2, c=1, size=8):
    return torch.arange(b * c * size * size, dtype=torch.float32).reshape(b, c, size, size) / 100 + 1


def test_translation_shifts_whole_pixels_and_fills_the_border_with_zero():
    x = ramp()
    # u = 0 -> shift -1 (one pixel at 8x8), u just below 1 -> +1, u = 0.5 -> none
    u = torch.tensor([[0.0, 0.999], [0.5, 0.5]])
    out = augment(x, u, "translation")
    assert torch.equal(out[1], x[1])
    # row shift -1: row i shows row i-1; column shift +1: column j shows column j+1
    assert torch.equal(out[0, 0, 1:, :-1], x[0, 0, :-1, 1:])
    assert (out[0, 0, 0, :] == 0).all() and (out[0, 0, :, -1] == 0).all()


def test_translation_is_one_eighth_of_the_side_at_32():
    x = ramp(1, 3, 32)
    out = augment(x, torch.tensor([[0.0, 0.5]]), "translation")
    assert torch.equal(out[0, :, 4:, :], x[0, :, :-4, :]) and (out[0, :, :4, :] == 0).all()


def test_cutout_zeroes_a_square_of_half_the_side():
    x = ramp(1, 1, 8)
    out = augment(x, torch.tensor([[0.5, 0.5]]), "cutout")
    zero = out[0, 0] == 0
    assert zero.sum() == 16 and zero[2:6, 2:6].all()  # 4x4 around the centre
    corner = augment(x, torch.tensor([[0.0, 0.0]]), "cutout")[0, 0] == 0
    assert corner.sum() == 4 and corner[:2, :2].all()  # centred on the corner: clipped to 2x2


def test_color_is_brightness_saturation_contrast_with_known_values():
    x = torch.full((1, 1, 2, 2), 0.25)
    # brightness +0.5*(u-0.5)*2 ... u = (1.0, 0.5, 0.5): +0.5 brightness, saturation x1, contrast x1
    assert torch.allclose(augment(x, torch.tensor([[1.0, 0.5, 0.5]]), "color"), torch.full_like(x, 0.75))
    y = torch.tensor([[[[0.0, 1.0], [0.0, 1.0]]]])
    assert torch.allclose(augment(y, torch.tensor([[0.5, 0.5, 0.0]]), "color"), torch.tensor([[[[0.25, 0.75], [0.25, 0.75]]]]))


def test_the_policy_is_differentiable_and_takes_its_columns_in_order():
    assert random_columns("color,translation,cutout") == sum(AUGMENTS[n].columns for n in AUGMENTS) == 7
    x = ramp().requires_grad_(True)
    augment(x, torch.rand(2, 7, generator=torch.Generator().manual_seed(0)), "color, translation, cutout").sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


class Linear(torch.nn.Module):
    def __init__(self, w):
        super().__init__()
        self.w = w

    def forward(self, x):
        return (x.flatten(1) * self.w).sum(1)


def test_r1_is_half_gamma_times_the_squared_input_gradient():
    w = torch.tensor([1.0, -2.0, 3.0, 0.5])
    real = torch.randn(5, 1, 2, 2, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
    logits = Linear(w)(real)
    step = DStep(real, logits, torch.zeros(5), torch.zeros(2))
    assert needs_real_grad({"r1": 10.0}) and not needs_real_grad({"lecam": 1.0}) and not needs_real_grad({"r1": 0.0})
    assert torch.allclose(d_terms(step, {"r1": 10.0}), torch.tensor(10.0 / 2 * float(w.pow(2).sum())))


def test_lecam_moves_its_averages_and_penalises_logits_past_the_other_side():
    averages = torch.zeros(2)
    real, fake = torch.tensor([2.0, 4.0]), torch.tensor([-1.0, 1.0])
    term = d_terms(DStep(real, real, fake, averages), {"lecam": 0.5})
    a_real, a_fake = (1 - LECAM_DECAY) * 3.0, (1 - LECAM_DECAY) * 0.0
    assert torch.allclose(averages, torch.tensor([a_real, a_fake]))
    expected = 0.5 * ((real - a_fake).relu().pow(2).mean() + (a_real - fake).relu().pow(2).mean())
    assert torch.allclose(term, expected)
    assert d_terms(DStep(real, real, fake, averages), {}) is None


SPEC = GeneratorSpec("cdcgan", z_dim=8, channels=1, image_size=8, base_channels=16, extra_layers=1, num_classes=4)


def test_spectral_norm_bounds_every_layer_and_replaces_batch_norm():
    torch.manual_seed(0)
    d = build_discriminator(SPEC, DOptions(spectral_norm=True))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in d.modules())
    x, y = torch.randn(32, 1, 8, 8), torch.randint(4, (32,))
    for _ in range(30):  # power iterations run in training mode
        d(x, y)
    d.eval()
    for name, m in d.named_modules():
        if isinstance(m, torch.nn.Conv2d | torch.nn.Linear):
            sigma = torch.linalg.matrix_norm(m.weight.detach().flatten(1), ord=2)
            assert abs(float(sigma) - 1) < 0.05, name


def test_projection_discriminator_reads_the_label_through_its_embedding_only():
    torch.manual_seed(0)
    d = build_discriminator(SPEC, DOptions(projection=True))
    assert d.body[0].in_channels == 1 and d.embed is not None  # no label planes in the input
    x = torch.randn(4, 1, 8, 8)
    d.eval()
    a, _ = d(x, torch.zeros(4, dtype=torch.long))
    b, features = d(x, torch.ones(4, dtype=torch.long))
    assert not torch.allclose(a, b)
    base = d.out(features).flatten()
    assert torch.allclose(b - base, (d.embed(torch.ones(4, dtype=torch.long)) * features).sum(1), atol=1e-6)


def test_bad_options_are_refused_naming_the_key():
    with pytest.raises(ConfigError, match="train.augment: unknown augmentation 'flip'; choose one of color, translation, cutout"):
        load_config("smoke", ["train.augment=translation,flip"])
    with pytest.raises(ConfigError, match="train.regularizers: unknown regularizer 'l2'"):
        load_config("smoke", ["train.regularizers.l2=1"])
    with pytest.raises(ConfigError, match="negative weight"):
        load_config("smoke", ["train.regularizers.r1=-1"])
    with pytest.raises(ConfigError, match="projection' needs a conditional arch"):
        load_config("smoke", ["train.d_conditioning=projection"])
    assert TrainConfig(arch="cdcgan", d_conditioning="projection", regularizers={"r1": 0.0}).regularizers == {"r1": 0.0}

import math

import numpy as np
import pytest
import torch

from components.config import TrainConfig
from components.errors import GanopsError
from components.training import discriminator_loss, generator_loss_nonsaturating, train_gan


def test_discriminator_loss_by_hand():
    real, fake = torch.tensor([0.0, 2.0]), torch.tensor([0.0, -1.0])
    s = lambda x: 1 / (1 + math.exp(-x))
    # BCE(real, 0.9) + BCE(fake, 0), averaged over the batch
    expected_real = np.mean([-(0.9 * math.log(s(x)) + 0.1 * math.log(1 - s(x))) for x in (0.0, 2.0)])
    expected_fake = np.mean([-math.log(1 - s(x)) for x in (0.0, -1.0)])
    assert discriminator_loss(real, fake, 0.9).item() == pytest.approx(expected_real + expected_fake, rel=1e-6)


def test_nonsaturating_generator_loss_by_hand():
    logits = torch.tensor([0.0, 1.0, -2.0])
    s = lambda x: 1 / (1 + math.exp(-x))
    expected = np.mean([-math.log(s(x)) for x in (0.0, 1.0, -2.0)])
    assert generator_loss_nonsaturating(logits).item() == pytest.approx(expected, rel=1e-6)


def _images(n=64):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, 1, 8, 8), dtype=np.uint8)


def test_training_is_deterministic_on_cpu():
    cfg = TrainConfig(steps=6, batch_size=16, z_dim=8, base_channels=8, log_every=3, sample_every=3, device="cpu")
    seen = []
    a = train_gan(_images(), cfg, seed=1, on_metrics=lambda step, m: seen.append(step))
    b = train_gan(_images(), cfg, seed=1)
    for (k, va), vb in zip(a.generator.state_dict().items(), b.generator.state_dict().values()):
        assert torch.equal(va, vb), k
    assert seen == [3, 6] and a.history["step"] == [3, 6]
    c = train_gan(_images(), cfg, seed=2)
    assert not torch.equal(next(iter(a.generator.state_dict().values())), next(iter(c.generator.state_dict().values())))


def test_divergence_stops_with_a_clear_error():
    cfg = TrainConfig(steps=4, batch_size=16, z_dim=8, base_channels=8, log_every=2, lr=1e30, device="cpu")
    with pytest.raises(GanopsError, match="diverged"):
        train_gan(_images(), cfg, seed=0)

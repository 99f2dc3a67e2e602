import pytest
import torch

from components.config import TrainConfig
from components.evaluation.domain import FeatureClassifier
from components.training.networks import Discriminator, DOptions, Generator, MinibatchDiscrimination, build_discriminator, build_generator
from components.training.state import model_spec


@pytest.mark.parametrize("size", [8, 16, 32, 64])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("extra", [0, 1, 2])
def test_dcgan_shapes(size, channels, extra):
    g = Generator(z_dim=16, channels=channels, image_size=size, base_channels=32, extra_layers=extra)
    d = Discriminator(channels=channels, image_size=size, base_channels=32, extra_layers=extra)
    images = g(torch.randn(4, 16))
    assert images.shape == (4, channels, size, size)
    assert images.min() >= -1 and images.max() <= 1
    logits, features = d(images)
    assert logits.shape == (4,) and features.shape[0] == 4


@pytest.mark.parametrize("arch", ["mlp", "dcgan", "cdcgan"])
@pytest.mark.parametrize("size,channels", [(8, 1), (32, 3)])
@pytest.mark.parametrize("mbd", [False, True])
def test_every_arch_shapes(arch, size, channels, mbd):
    spec = model_spec(TrainConfig(arch=arch, z_dim=12, base_channels=16), channels, size, 10)
    g, d = build_generator(spec), build_discriminator(spec, DOptions(minibatch=mbd))
    y = torch.tensor([0, 3, 9])
    images = g(torch.randn(3, 12), y)
    assert images.shape == (3, channels, size, size)
    logits, _ = d(images, y)
    assert logits.shape == (3,)


def test_conditional_generator_needs_labels():
    spec = model_spec(TrainConfig(arch="cdcgan", z_dim=4, base_channels=8), 1, 8, 10)
    with pytest.raises(ValueError, match="labels"):
        build_generator(spec)(torch.randn(2, 4))


def test_minibatch_discrimination_sees_collapse():
    layer = MinibatchDiscrimination(6, kernels=4, kernel_dim=3)
    same = layer(torch.ones(5, 6))[:, 6:]
    spread = layer(torch.randn(5, 6) * 10)[:, 6:]
    assert same.shape == (5, 4)
    assert torch.allclose(same, torch.full_like(same, 4.0))  # identical samples: exp(0) from the 4 others
    assert spread.mean() < same.mean()


@pytest.mark.parametrize("size", [7, 12, 4])
def test_non_power_of_two_sizes_are_rejected(size):
    with pytest.raises(ValueError, match="power of two"):
        Generator(16, 1, size, 32)


def test_dcgan_init_statistics():
    g = Generator(64, 1, 32, 256)
    conv = g.net[0].weight
    assert abs(conv.mean().item()) < 0.005 and abs(conv.std().item() - 0.02) < 0.003


def test_feature_classifier_shapes():
    m = FeatureClassifier(1, 8, 10)
    x = torch.randn(5, 1, 8, 8)
    assert m(x).shape == (5, 10) and m.features(x).shape == (5, FeatureClassifier.feature_dim)

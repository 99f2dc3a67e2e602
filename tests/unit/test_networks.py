import pytest
import torch

from components.networks import Discriminator, FeatureClassifier, Generator


@pytest.mark.parametrize("size", [8, 16, 32, 64])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("extra", [0, 1, 2])
def test_dcgan_shapes(size, channels, extra):
    g = Generator(z_dim=16, channels=channels, image_size=size, base_channels=32, extra_layers=extra)
    d = Discriminator(channels=channels, image_size=size, base_channels=32, extra_layers=extra)
    images = g(torch.randn(4, 16))
    assert images.shape == (4, channels, size, size)
    assert images.min() >= -1 and images.max() <= 1
    assert d(images).shape == (4,)


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

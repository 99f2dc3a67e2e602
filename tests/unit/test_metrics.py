import numpy as np
import pytest
import scipy.linalg
import torch

from components.core.pixels import quantize
from components.evaluation.domain import DomainExtractor, FeatureClassifier, features_of
from components.evaluation.frechet import features_to_stats, frechet_distance


def scipy_fid(mu1, s1, mu2, s2):
    """The reference formula (pytorch-fid): sqrtm of the product, real part."""
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def random_stats(rng, dim, n):
    x = rng.standard_normal((n, dim)) @ rng.standard_normal((dim, dim)) * 0.3 + rng.standard_normal(dim)
    return features_to_stats(x)


@pytest.mark.parametrize("dim,n,seed", [(2, 50, 0), (16, 400, 1), (64, 2000, 2), (128, 3000, 3)])
def test_frechet_matches_scipy_sqrtm(dim, n, seed):
    rng = np.random.default_rng(seed)
    a, b = random_stats(rng, dim, n), random_stats(rng, dim, n)
    ours, ref = frechet_distance(*a, *b), scipy_fid(*a, *b)
    assert ours == pytest.approx(ref, rel=1e-9, abs=1e-9)


def test_identical_statistics_give_zero():
    mu, sigma = random_stats(np.random.default_rng(0), 32, 500)
    assert abs(frechet_distance(mu, sigma, mu, sigma)) < 1e-6


def test_gaussian_closed_form():
    # Diagonal covariances: FID = |mu1-mu2|^2 + sum (sqrt(a) - sqrt(b))^2
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 1.0])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-12)


def test_near_singular_covariance_is_finite_and_real():
    rng = np.random.default_rng(0)
    # Fewer samples than dimensions: rank-deficient covariances.
    a = features_to_stats(rng.standard_normal((20, 64)))
    b = features_to_stats(rng.standard_normal((20, 64)) + 0.5)
    value = frechet_distance(*a, *b)
    assert np.isfinite(value) and value > 0 and isinstance(value, float)


def test_singular_first_covariance_takes_the_eigh_path_and_agrees():
    rng = np.random.default_rng(1)
    basis = rng.standard_normal((8, 3))
    s1 = basis @ basis.T  # rank 3 of 8: Cholesky fails
    s2 = features_to_stats(rng.standard_normal((400, 8)))[1]
    mu = np.zeros(8)
    with pytest.raises(np.linalg.LinAlgError):
        np.linalg.cholesky(s1)
    assert frechet_distance(mu, s1, mu, s2) == pytest.approx(scipy_fid(mu, s1, mu, s2), rel=1e-6)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shape mismatch"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


def test_features_do_not_depend_on_batch_size():
    torch.manual_seed(0)
    images = (torch.rand(101, 1, 8, 8) * 255).to(torch.uint8)
    model = FeatureClassifier(1, 8, 10).eval()
    small = features_of(DomainExtractor(model, 1.0, "k", batch_size=7), images)
    large = features_of(DomainExtractor(model, 1.0, "k", batch_size=500), images)
    np.testing.assert_allclose(small, large, rtol=1e-5, atol=1e-6)


def test_quantize_maps_onto_the_8bit_grid():
    x = torch.tensor([-1.5, -1.0, 0.0, 0.001, 1.0, 2.0])
    q = quantize(x)
    levels = (q + 1) * 127.5
    assert torch.allclose(levels, levels.round(), atol=1e-4)
    assert q.min() >= -1 and q.max() <= 1

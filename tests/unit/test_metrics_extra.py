import numpy as np
import pytest
import torch

from components.core.pixels import to_uint8
from components.evaluation.extra import bootstrap_fid, kid, per_class_fid, polynomial_mmd_unbiased, precision_recall
from components.evaluation.frechet import features_to_stats, frechet_distance
from components.evaluation.inception import preprocess, tf_bilinear_resize
from components.evaluation.stats import StatsAccumulator, load_stats, save_stats


@pytest.mark.parametrize("batch", [1, 7, 100, 1000])
def test_streaming_stats_match_numpy_at_any_batch_size(batch):
    x = np.random.default_rng(0).standard_normal((1000, 16)) * 3 + 100  # a large offset tests the shifted sums
    acc = StatsAccumulator()
    for i in range(0, len(x), batch):
        acc.add(x[i : i + batch])
    mu, sigma = features_to_stats(x)
    np.testing.assert_allclose(acc.mean(), mu, rtol=1e-12)
    np.testing.assert_allclose(acc.cov(), sigma, rtol=1e-9, atol=1e-10)


def test_fid_does_not_depend_on_batch_size():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((500, 8)), rng.standard_normal((500, 8)) + 0.3
    values = []
    for batch in (3, 50, 500):
        accs = [StatsAccumulator(), StatsAccumulator()]
        for acc, x in zip(accs, (a, b), strict=True):
            for i in range(0, 500, batch):
                acc.add(x[i : i + batch])
        values.append(frechet_distance(*accs[0].stats(), *accs[1].stats()))
    assert max(values) - min(values) < 1e-9


def test_reservoir_keeps_a_capped_uniform_sample():
    acc = StatsAccumulator(keep=50, seed=0)
    acc.add(np.arange(1000, dtype=float)[:, None])
    sample = acc.features()
    assert sample.shape == (50, 1) and len(set(sample[:, 0])) == 50 and sample.max() > 500


def test_stats_npz_round_trip_and_errors(tmp_path):
    mu, sigma = np.zeros(3), np.eye(3)
    load = load_stats(save_stats(tmp_path / "s.npz", mu, sigma, source="x"))
    np.testing.assert_array_equal(load[1], sigma)
    np.savez(tmp_path / "bad.npz", mu=np.zeros(3))
    with pytest.raises(ValueError, match="no 'mu' and 'sigma'"):
        load_stats(tmp_path / "bad.npz")
    np.savez(tmp_path / "nan.npz", mu=np.array([np.nan, 0, 0]), sigma=np.eye(3))
    with pytest.raises(ValueError, match="NaN"):
        load_stats(tmp_path / "nan.npz")


def test_mmd_by_hand():
    # d = 1: k(a, b) = (a*b + 1)^3. x = {0, 1}, y = {2, 3}.
    x, y = np.array([[0.0], [1.0]]), np.array([[2.0], [3.0]])
    k = lambda a, b: (a * b + 1) ** 3
    xx = (k(0, 1) + k(1, 0)) / 2
    yy = (k(2, 3) + k(3, 2)) / 2
    xy = (k(0, 2) + k(0, 3) + k(1, 2) + k(1, 3)) / 4
    assert polynomial_mmd_unbiased(x, y) == pytest.approx(xx + yy - 2 * xy)


def test_kid_is_near_zero_for_the_same_distribution_and_positive_otherwise():
    rng = np.random.default_rng(0)
    same = kid(rng.standard_normal((400, 8)), rng.standard_normal((400, 8)), subsets=10, subset_size=200)
    diff = kid(rng.standard_normal((400, 8)), rng.standard_normal((400, 8)) + 1, subsets=10, subset_size=200)
    assert abs(same["kid"]) < 0.05 < diff["kid"]


def test_precision_recall_by_hand():
    # Real points on a line 0..9 (k=3 radius 3 everywhere... except the ends), fakes: two inside, two far away.
    real = np.arange(10, dtype=float)[:, None]
    fake = np.array([[2.5], [6.0], [100.0], [200.0], [101.0]])
    pr = precision_recall(real, fake, k=3)
    assert pr["precision"] == pytest.approx(2 / 5)
    # Fake radii: 2.5 -> 3rd neighbour 101 (98.5); 6 -> 101 (95); 100 -> 2.5 (97.5); 200 -> 6 (194); 101 -> 2.5 (98.5).
    assert pr["recall"] == pytest.approx(1.0)


def test_bootstrap_interval_brackets_the_estimate():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((600, 4)), rng.standard_normal((600, 4)) + 0.5
    estimate = frechet_distance(*features_to_stats(a), *features_to_stats(b))
    ci = bootstrap_fid(a, b, rounds=30)
    assert ci["fid_ci_low"] < estimate < ci["fid_ci_high"]


def test_per_class_fid():
    rng = np.random.default_rng(0)
    real, labels = rng.standard_normal((200, 3)), np.repeat([0, 1], 100)
    fake = real.copy()
    fake[labels == 1] += 2.0
    out = per_class_fid(real, labels, fake, labels)
    assert out[0] == pytest.approx(0.0, abs=1e-9) and out[1] == pytest.approx(12.0, rel=1e-6)


def test_tf_bilinear_resize_by_hand():
    x = torch.tensor([[[[0.0, 10.0], [20.0, 30.0]]]])
    out = tf_bilinear_resize(x, size=4)
    # TF1 legacy: source coordinate = i * 2 / 4 = 0, 0.5, 1, 1.5 -> clamp at the last pixel.
    expected_row0 = torch.tensor([0.0, 5.0, 10.0, 10.0])
    assert torch.allclose(out[0, 0, 0], expected_row0)
    assert torch.allclose(out[0, 0, :, 0], torch.tensor([0.0, 10.0, 20.0, 20.0]))


def test_preprocess_matches_the_reference_scaling():
    images = torch.zeros(2, 1, 299, 299, dtype=torch.uint8)
    images[1] = 255
    x = preprocess(images)
    assert x.shape == (2, 3, 299, 299)
    assert x[0].max().item() == -1.0 and x[1].min().item() == pytest.approx(0.9921875)
    assert torch.equal(to_uint8(torch.tensor([-1.0, 0.0, 1.0, 2.0])), torch.tensor([0, 128, 255, 255], dtype=torch.uint8))


@pytest.mark.parametrize(
    "counts, n, expected",
    [
        ([90, 10, 100], 20, [9, 1, 10]),
        ([180, 180], 7, [4, 3]),  # largest remainder, ties to the lower class
        ([1797 // 10] * 10, 2000, [200] * 10),
        ([5, 0, 5], 4, [2, 0, 2]),  # a class the data lacks gets no samples
    ],
)
def test_a_conditional_generator_is_sampled_in_the_real_class_proportions(counts, n, expected):
    from components.evaluation.evaluate import proportional_labels

    targets = np.repeat(np.arange(len(counts)), counts)
    labels = proportional_labels(targets, len(counts), n).numpy()
    assert len(labels) == n and np.bincount(labels, minlength=len(counts)).tolist() == expected
    assert len(set(labels[: sum(1 for c in expected if c)].tolist())) == sum(1 for c in expected if c)  # mixed from the start


def test_streaming_stats_take_tensors_as_they_come_from_an_extractor():
    x = torch.from_numpy(np.random.default_rng(2).standard_normal((300, 8)).astype(np.float32) * 4 + 50)
    from_tensor, from_numpy = StatsAccumulator(keep=20, seed=3), StatsAccumulator(keep=20, seed=3)
    for i in range(0, 300, 64):
        from_tensor.add(x[i : i + 64])
        from_numpy.add(x[i : i + 64].numpy().astype(np.float64))
    mu, sigma = features_to_stats(x.double().numpy())
    np.testing.assert_allclose(from_tensor.mean(), mu, rtol=1e-12)
    np.testing.assert_allclose(from_tensor.cov(), sigma, rtol=1e-9, atol=1e-10)
    assert isinstance(from_tensor.mean(), np.ndarray) and from_tensor.cov().dtype == np.float64
    np.testing.assert_array_equal(from_tensor.features(), from_numpy.features())

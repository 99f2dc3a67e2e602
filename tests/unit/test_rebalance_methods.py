"""The ways `ganops rebalance` fills a class (components.synthesis.methods) and how the added images become files."""

import numpy as np
import pytest

from components.core.errors import GanopsError
from components.core.names import GAN, OVERSAMPLE, SMOTE, SYNTHETIC_PREFIX
from components.data.images import list_files, load_images
from components.data.importers import digits_arrays, write_digits
from components.synthesis.methods import Added, added_by, concat, oversample, smote, split_need
from components.synthesis.rebalance import added_files

LABELS = [str(i) for i in range(10)]


@pytest.fixture(scope="module")
def digits():
    x, y = digits_arrays()
    keep = (y != 3) | (np.cumsum(y == 3) <= 12)  # class 3 cut to 12 images
    return x[keep][:, None], y[keep].astype(np.int64)


def no_generator(need):
    raise AssertionError("this method must not run the generator")


@pytest.mark.parametrize("method", [OVERSAMPLE, SMOTE])
def test_each_method_adds_exactly_what_each_class_needs_and_is_a_function_of_the_seed(digits, method):
    x, y = digits
    need = {3: 40, 5: 7, 1: 0}
    added = added_by(method, x, y, need, 0, LABELS, no_generator, 0.5)
    assert added.x.dtype == np.uint8 and added.x.shape[1:] == x.shape[1:]
    assert {c: int(np.sum(added.y == c)) for c in (3, 5, 1)} == need and added.kind == [method] * 47
    again = added_by(method, x, y, need, 0, LABELS, no_generator, 0.5)
    other = added_by(method, x, y, need, 1, LABELS, no_generator, 0.5)
    assert np.array_equal(added.x, again.x) and not np.array_equal(added.x, other.x)


def test_oversampling_repeats_real_images_of_the_class(digits):
    x, y = digits
    added = oversample(x, y, {3: 30}, 0)
    assert all(y[r] == 3 for r in added.repeated_from) and np.array_equal(added.x, x[added.repeated_from])
    assert len(set(added.repeated_from)) <= 12


def test_smote_interpolates_within_the_class_and_refuses_a_single_image(digits):
    x, y = digits
    added = smote(x, y, {3: 30}, 0, LABELS)
    lo, hi = x[y == 3].min(axis=0), x[y == 3].max(axis=0)
    assert np.all(added.x >= lo) and np.all(added.x <= hi)  # between two images of class 3, pixel by pixel
    lonely = (y != 3) | (np.cumsum(y == 3) <= 1)
    with pytest.raises(GanopsError, match="class '3' has 1 image: SMOTE needs at least 2"):
        smote(x[lonely], y[lonely], {3: 5}, 0, LABELS)


@pytest.mark.parametrize(
    "need, fraction, repeated, generated",
    [({3: 10}, 0.5, {3: 5}, {3: 5}), ({3: 7, 4: 2}, 0.0, {3: 0, 4: 0}, {3: 7, 4: 2}), ({3: 3}, 1.0, {3: 3}, {3: 0})],
)
def test_mix_splits_each_class_need_between_repeated_and_generated(need, fraction, repeated, generated):
    assert split_need(need, fraction) == (repeated, generated)


def test_mix_asks_the_generator_only_for_its_share(digits):
    x, y = digits
    asked = []

    def fake_generated(need):  # stands in for the generator here; the integration tests run the real one
        asked.append(need)
        n = sum(need.values())
        return Added(np.zeros((n, *x.shape[1:]), np.uint8), np.full(n, 3, np.int64), [GAN] * n)

    added = added_by("mix", x, y, {3: 10}, 0, LABELS, fake_generated, 0.3)
    assert asked == [{3: 7}] and added.kind.count(OVERSAMPLE) == 3 and added.kind.count(GAN) == 7
    with pytest.raises(GanopsError, match="adds no images"):
        added_by("auto", x, y, {3: 1}, 0, LABELS, fake_generated, 0.3)


def test_added_images_become_files_named_by_kind_and_repeated_files_keep_their_bytes(tmp_path, digits):
    write_digits(tmp_path)
    x, y = load_images(tmp_path, LABELS)
    real_files = list_files(tmp_path)
    added = concat(oversample(x, y, {3: 2}, 0), smote(x, y, {3: 2}, 0, LABELS))
    files = added_files(added, tmp_path, real_files, LABELS, f"{SYNTHETIC_PREFIX}v1-")
    repeated = {rel: f for rel, f in files.items() if f.kind == OVERSAMPLE}
    assert len(repeated) == 2 and all(rel.startswith("3/oversampled-") for rel in repeated)
    assert all(f.blob == (tmp_path / f.source).read_bytes() and f.source.startswith("3/") for f in repeated.values())
    assert sorted(rel for rel, f in files.items() if f.kind == SMOTE) == ["3/synthetic-smote-00000.png", "3/synthetic-smote-00001.png"]


@pytest.mark.parametrize("seed", range(5))
def test_smote_never_writes_a_copy_of_a_real_image_or_of_another(seed):
    """Rounding to uint8 can land an interpolation on its neighbour (seen with 45 real 8s and 135 draws): such draws
    are replaced, so the rebalanced folder passes the duplicate rule."""
    x, y = digits_arrays()
    keep = (y != 8) | (np.cumsum(y == 8) <= 45)
    x, y = x[keep][:, None], y[keep].astype(np.int64)
    added = smote(x, y, {8: 135}, seed, LABELS)
    rows = {r.tobytes() for r in added.x}
    assert len(added.y) == 135 and len(rows) == 135 and not rows & {r.tobytes() for r in x}

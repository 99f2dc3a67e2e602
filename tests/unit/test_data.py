import hashlib
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from components.core.atomic import replace_folder
from components.data.images import load_images
from components.data.png import encode_png
from components.data.sources import copy_image_folder, digits_arrays, write_digits
from components.core.errors import DataError

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("shape", [(8, 8), (3, 5), (4, 6, 3), (300, 300)])
def test_encode_png_round_trips_through_pillow(shape):
    pixels = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    with Image.open(io.BytesIO(encode_png(pixels))) as im:
        im.load()
        np.testing.assert_array_equal(np.asarray(im), pixels)


def test_digits_are_written_deterministically(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert write_digits(a) == write_digits(b) == 1797
    digest = lambda root: hashlib.sha256(b"".join(p.read_bytes() for p in sorted(root.rglob("*.png")))).hexdigest()
    assert digest(a) == digest(b)
    images, labels = load_images(a, [str(i) for i in range(10)])
    pixels, targets = digits_arrays()
    assert images.shape == (1797, 1, 8, 8)
    # load_images orders by path (label folder first); compare as multisets per label.
    for label in range(10):
        assert sorted(map(bytes, images[labels == label, 0])) == sorted(map(bytes, pixels[targets == label]))


def test_committed_data_dvc_matches_the_digits_md5():
    """The md5 recorded in the committed data.dvc is what `ganops data import digits` produces (checked end to end
    in tests/integration); here: the file exists and names the data folder."""
    text = (REPO / "data.dvc").read_text()
    assert "path: data" in text and "nfiles: 1797" in text


def test_replace_folder_keeps_the_old_data_when_the_build_fails(tmp_path):
    target = tmp_path / "data"
    (target / "0").mkdir(parents=True)
    (target / "0" / "keep.png").write_bytes(b"old")

    def failing(tmp):
        (tmp / "x").write_text("half")
        raise DataError("boom")

    with pytest.raises(DataError):
        replace_folder(failing, target)
    assert (target / "0" / "keep.png").read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["data"]  # no temporary folder left behind


def test_copy_image_folder_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        copy_image_folder(tmp_path / "missing", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no files"):
        copy_image_folder(tmp_path / "empty", tmp_path / "out")

import numpy as np
import pytest
from PIL import Image

from components.core.errors import DataError
from components.data.importers import write_npz


def test_npz_is_written_as_pngs_deterministically(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (6, 8, 8), dtype=np.uint8)
    y = np.array([0, 1, 0, 1, 2, 2])
    np.savez(tmp_path / "d.npz", x=x, y=y)
    assert write_npz(tmp_path / "d.npz", tmp_path / "a") == 6
    write_npz(tmp_path / "d.npz", tmp_path / "b")
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.png"))
    assert [str(f) for f in files][:2] == ["0/00000.png", "0/00002.png"]
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "a" / "2" / "00004.png")), x[4])


def test_float_npz_in_unit_range(tmp_path):
    np.savez(tmp_path / "f.npz", x=np.full((2, 8, 8, 3), 0.5), y=np.array([1, 1]))
    write_npz(tmp_path / "f.npz", tmp_path / "out")
    assert np.asarray(Image.open(tmp_path / "out" / "1" / "00000.png")).shape == (8, 8, 3)


@pytest.mark.parametrize(
    "arrays,message",
    [
        (dict(x=np.zeros((3, 8, 8), np.uint8), y=np.zeros(2)), "x holds 3 images but y holds 2 labels"),
        (dict(x=np.full((2, 8, 8), np.nan), y=np.zeros(2)), "NaN"),
        (dict(x=np.full((2, 8, 8), 1.5), y=np.zeros(2)), "must lie in [0, 1]"),
        (dict(x=np.full((2, 8, 8), 300, np.int32), y=np.zeros(2)), "must lie in [0, 255]"),
        (dict(images=np.zeros((2, 8, 8))), "must hold arrays 'x'"),
        (dict(x=np.zeros((2, 8), np.uint8), y=np.zeros(2)), "expected (N, H, W)"),
        (dict(x=np.zeros((0, 8, 8), np.uint8), y=np.zeros(0)), "no images"),
        # Labels that cannot become folders, and arrays with no entry per image.
        (dict(x=np.zeros((2, 8, 8), np.uint8), y=np.array(["a\0b", "c"])), "NUL byte"),
        (dict(x=np.zeros((2, 8, 8), np.uint8), y=np.array([".hidden", "c"])), "leading dot"),
        (dict(x=np.zeros((2, 8, 8), np.uint8), y=np.array(["a\\b", "c"])), "path separator"),
        (dict(x=np.array(3, np.uint8), y=np.zeros(2)), "one entry per image"),
        (dict(x=np.zeros((2, 8, 8), np.uint8), y=np.array(1)), "one entry per image"),
    ],
)
def test_bad_npz_is_refused_with_the_rule(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError) as err:
        write_npz(tmp_path / "bad.npz", tmp_path / "out")
    assert message in str(err.value) and "bad.npz" in str(err.value)


def test_npz_with_objects_is_not_unpickled(tmp_path):
    np.savez(tmp_path / "obj.npz", x=np.array([{"a": 1}], dtype=object), y=np.zeros(1))
    with pytest.raises(DataError, match="plain arrays"):
        write_npz(tmp_path / "obj.npz", tmp_path / "out")


def test_folder_import_refuses_a_link_out_of_the_source(tmp_path):
    from components.data.importers import copy_image_folder

    secret = tmp_path / "secret.txt"
    secret.write_text("not data")
    (tmp_path / "src" / "0").mkdir(parents=True)
    (tmp_path / "src" / "0" / "a.png").write_bytes(b"png")
    (tmp_path / "src" / "0" / "b.png").symlink_to(secret)
    with pytest.raises(DataError, match=r"b\.png: is a link to .*secret\.txt, outside the source folder"):
        copy_image_folder(tmp_path / "src", tmp_path / "out")
    # A link that stays inside the source is fine.
    (tmp_path / "src" / "0" / "b.png").unlink()
    (tmp_path / "src" / "0" / "b.png").symlink_to(tmp_path / "src" / "0" / "a.png")
    assert copy_image_folder(tmp_path / "src", tmp_path / "out2") == 2


@pytest.mark.parametrize("rev", ["--output=FILE", "-p", "a b", ""])
def test_revisions_that_are_options_never_reach_git(tmp_path, rev):
    from components.core.errors import GanopsError
    from components.data.versioning import dvc_file_at

    with pytest.raises(GanopsError, match="is not a git revision"):
        dvc_file_at(tmp_path, "data.dvc", rev)
    assert not (tmp_path / "FILE").exists()


def manifest_row(path, **fields):
    from components.data.manifest import COLUMNS

    row = dict.fromkeys(COLUMNS)
    row.update(path=path, decodes=True, error="", format="PNG", format_matches_suffix=True, width=8, height=8, channels=1)
    row.update(label=path.split("/")[0] if "/" in path else None, **fields)
    return row


def test_the_import_refuses_what_validation_refuses_file_by_file():
    import pandas as pd

    from components.data.intake import manifest_problems

    rows = [manifest_row(f"0/{i}.png") for i in range(3)] + [
        manifest_row("0/empty.png", decodes=False, error="empty file (0 bytes)", width=None, height=None, channels=None),
        manifest_row("0/photo.png", format="JPEG", format_matches_suffix=False),
        manifest_row("0/tiny.png", width=1, height=1),
        manifest_row("0/rgb.png", channels=3),
        manifest_row("loose.png"),
    ]
    bad = dict(manifest_problems(pd.DataFrame(rows)))
    assert set(bad) == {"0/empty.png", "0/photo.png", "0/tiny.png", "0/rgb.png", "loose.png"}
    assert bad["0/empty.png"] == "empty file (0 bytes)" and "content is JPEG" in bad["0/photo.png"]
    assert "1x1 with 1 channel(s)" in bad["0/tiny.png"] and "8x8 with 3 channel(s)" in bad["0/rgb.png"]
    assert "outside a label folder" in bad["loose.png"]
    assert manifest_problems(pd.DataFrame(rows[:3])) == []


def test_the_source_scan_names_what_a_copy_would_drop(tmp_path):
    from components.data.intake import scan_source

    src = tmp_path / "src"
    for folder in ("0", "..x", ".git"):
        (src / folder).mkdir(parents=True)
    (src / "0" / "a.png").write_bytes(b"png")
    (src / "..x" / "b.png").write_bytes(b"png")
    (src / ".git" / "config").write_text("not data")  # hidden, no images: skipped as before
    (src / ".DS_Store").write_bytes(b"junk")
    (src / "0" / ".hidden.png").write_bytes(b"png")
    (src / "etc").symlink_to(tmp_path)
    (src / "0" / "gone.png").symlink_to(tmp_path / "nothing")
    bad = dict(scan_source(src))
    assert set(bad) == {"..x", "etc", "0/.hidden.png", "0/gone.png"}, bad
    assert "hidden folder" in bad["..x"] and "1 images" in bad["..x"] and "link to the folder" in bad["etc"]
    assert "does not exist" in bad["0/gone.png"]

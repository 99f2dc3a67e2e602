"""Great Expectations validation of real image folders (GX runs for real; no server needed)."""

import numpy as np
import pytest

from components.config import ValidationConfig
from components.data import encode_png
from components.validation import build_manifest, format_failures, validate_folder

CFG = ValidationConfig(min_images=10, max_images=1000, image_size=8, channels=1, labels=["0", "1"])


def make_folder(root, n=12):
    rng = np.random.default_rng(0)
    for i in range(n):
        (root / str(i % 2)).mkdir(parents=True, exist_ok=True)
        (root / str(i % 2) / f"{i:03d}.png").write_bytes(encode_png(rng.integers(0, 256, (8, 8), dtype=np.uint8)))
    return root


def failures_by_rule(report):
    return {f["rule"]: f for f in report["failures"]}


def test_clean_folder_passes(tmp_path):
    report, manifest = validate_folder(make_folder(tmp_path), CFG)
    assert report["success"], report
    assert len(manifest) == 12 and set(manifest["label"]) == {"0", "1"}
    assert manifest["decodes"].all() and (manifest["width"] == 8).all()


def test_truncated_png_is_named(tmp_path):
    root = make_folder(tmp_path)
    good = (root / "0" / "000.png").read_bytes()
    (root / "1" / "bad.png").write_bytes(good[: len(good) // 2])
    report, _ = validate_folder(root, CFG)
    assert not report["success"]
    rule = failures_by_rule(report)["every file decodes as an image"]
    assert rule["files"][0].startswith("1/bad.png")
    assert "1/bad.png" in format_failures(report)


@pytest.mark.parametrize(
    "name,pixels,rule",
    [
        ("0/big.png", np.zeros((16, 16), np.uint8), "width equals the configured image size"),
        ("0/rgb.png", np.zeros((8, 8, 3), np.uint8), "channel count equals the configured channels"),
        ("7/other.png", np.full((8, 8), 3, np.uint8), "label folder in the allowed set"),
        ("stray.png", np.full((8, 8), 4, np.uint8), "every file sits inside a label folder"),
    ],
)
def test_each_rule_names_the_offending_file(tmp_path, name, pixels, rule):
    root = make_folder(tmp_path)
    (root / name).parent.mkdir(parents=True, exist_ok=True)
    (root / name).write_bytes(encode_png(pixels))
    report, _ = validate_folder(root, CFG)
    assert not report["success"]
    assert any(f.startswith(name) for f in failures_by_rule(report)[rule]["files"]), report


def test_duplicates_and_count(tmp_path):
    root = make_folder(tmp_path)
    (root / "1" / "copy.png").write_bytes((root / "0" / "000.png").read_bytes())
    report, _ = validate_folder(root, CFG)
    dup = failures_by_rule(report)["no duplicate image content"]
    assert set(dup["files"]) == {"0/000.png", "1/copy.png"}
    small = make_folder(tmp_path / "small", n=3)
    report, _ = validate_folder(small, CFG)
    assert failures_by_rule(report)["image count within bounds"]["observed"] == 3


def test_empty_folder_fails(tmp_path):
    report, manifest = validate_folder(tmp_path, CFG)
    assert not report["success"] and manifest.empty


def test_manifest_reads_content_not_names(tmp_path):
    root = make_folder(tmp_path)
    (root / "0" / "text.png").write_text("not an image")
    row = build_manifest(root).set_index("path").loc["0/text.png"]
    assert not row["decodes"] and "UnidentifiedImageError" in row["error"]

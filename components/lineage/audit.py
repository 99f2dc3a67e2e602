"""`ganops audit`: every link from a served file back to the data, code and config that produced it, re-verified
from the bytes, each link PASS, FAIL, WARN or SKIP with its evidence.

The links, in order, are `LINKS`; what each verifies is `LINK_DESCRIPTIONS` (shown in docs/reference/audit-links.md).

Each check is a pure function of what was read; `audit_version` reads (registry, artifacts, DVC, git) and calls them.
"""

from __future__ import annotations

import functools
import json
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from components.core.atomic import file_digest
from components.core.errors import GanopsError
from components.core.names import (
    ARTIFACT_CONFIG,
    ARTIFACT_VALIDATION_REPORT,
    SYNTHETIC_MANIFEST,
    TAG_CODE_DIRTY,
    TAG_CODE_GIT_REV,
    TAG_CONFIG_SHA256,
    TAG_DATA_DIRTY,
    TAG_DATA_GIT_REV,
    TAG_DATASET_MD5,
    TAG_EXPORT_DIR,
    TAG_EXPORT_MANIFEST,
    TAG_MODEL_FILES,
    TAG_VALIDATION_SHA256,
    TAG_WEIGHTS_SHA256,
)
from components.core.paths import SOURCE_ROOT
from components.core.source import commit_exists
from components.data.versioning import DatasetCheck, dataset_files, dataset_member, dvc_file_at, verify_dataset
from components.lineage.records import run_records
from components.lineage.reproduce import compare_weights, retrain_recorded
from components.lineage.synthetic import check_synthetic, is_synthetic_member, parse_record
from components.promotion.actions import history
from components.registry.models import parse_model_ref, resolve_version
from components.serving.export import verify_export
from components.serving.formats import WEIGHTS
from components.serving.mlflow_model import model_file_digests

PASS, FAIL, WARN, SKIP = "PASS", "FAIL", "WARN", "SKIP"
LINKS = (
    "export", "weights", "model code", "config", "data", "validation", "code commit", "promotion", "synthetic", "run records", "reproduce"
)  # fmt: skip
# What each link verifies, one line per name in LINKS (docs/reference/audit-links.md is generated from it).
LINK_DESCRIPTIONS = {
    "export": "The export folder's files against their manifest, and the manifest against the sha256 the version records.",
    "weights": "The registered weights against the sha256 recorded at registration, by the training run and in the export.",
    "model code": "The registered model's files against the listing recorded at registration (a models-from-code package runs them).",
    "config": "The run's config artifact against the sha256 the version records.",
    "data": "The dataset recomputed from the DVC cache (or remote) against the recorded md5, and data.dvc at the recorded revision.",
    "validation": "The validation report: its bytes against the recorded sha256, its verdict (passed) and the dataset it names.",
    "code commit": "The recorded code commit exists in the repository; WARN when the tree had uncommitted changes.",
    "promotion": "The promotion ledger exists, its hash chain is intact, it holds an entry for every version with a gate verdict, and the registry's aliases are where it says.",
    "synthetic": "The dataset's synthetic images (if any) against their manifest, and their generator's weights in the registry.",
    "run records": "The run's gate/decision.json and summary.json against the sha256 the version records; WARN, with the note saying why the version stands, when its run was marked FAILED.",
    "reproduce": "With --reproduce: the training repeated from the recorded config, data and code, its weights compared bitwise.",
}
NOT_RECORDED = "not recorded for this version (registered before ganops recorded it)"


@dataclass(frozen=True)
class Link:
    number: int
    name: str
    status: str
    evidence: str


@dataclass(frozen=True)
class Audit:
    model: str
    version: str
    links: list[Link]

    @property
    def first_failure(self) -> Link | None:
        return next((link for link in self.links if link.status == FAIL), None)

    def to_dict(self) -> dict:
        failed = self.first_failure
        return {
            "model": self.model,
            "version": self.version,
            "ok": failed is None,
            "first_failure": failed.name if failed else None,
            "links": [asdict(link) for link in self.links],
        }


def _link(name: str, status: str, evidence: str) -> Link:
    return Link(LINKS.index(name) + 1, name, status, evidence)


# The checks: pure functions of what was read.


def check_export(folder: str | None, verified: dict | None, recorded_manifest: str | None) -> Link:
    if not folder:
        return _link("export", SKIP, "no export: this version was never promoted")
    if verified is None:
        return _link("export", FAIL, f"the export folder {folder} is gone")
    bad = {name: state for name, state in verified["files"].items() if state != "ok"}
    if bad:
        return _link("export", FAIL, f"{folder}: " + ", ".join(f"{name} {state}" for name, state in sorted(bad.items())))
    if recorded_manifest and verified["manifest_sha256"] != recorded_manifest:
        return _link(
            "export",
            FAIL,
            f"{folder}/manifest.json has sha256 {verified['manifest_sha256'][:16]}..., the version records {recorded_manifest[:16]}...",
        )
    return _link(
        "export",
        PASS,
        f"{len(verified['files'])} files in {folder} match the manifest"
        + (", which matches the version's tag" if recorded_manifest else ""),
    )


def check_weights(actual: str | None, on_version: str | None, on_run: str | None, in_export: str | None) -> Link:
    if actual is None:
        return _link("weights", FAIL, "the registered model has no safetensors weights")
    if not on_version:
        return _link("weights", SKIP, f"registered weights sha256 {actual[:16]}...; {NOT_RECORDED}")
    for where, recorded in (
        ("recorded at registration", on_version),
        ("recorded by the training run", on_run),
        ("in the export's manifest", in_export),
    ):
        if recorded is not None and recorded != actual:
            return _link("weights", FAIL, f"the registered weights have sha256 {actual[:16]}..., {where}: {recorded[:16]}...")
    return _link("weights", PASS, f"sha256 {actual[:16]}... registered = training run" + (" = export" if in_export else ""))


def check_model_files(actual: dict[str, str], recorded: str | None) -> Link:
    if not recorded:
        return _link("model code", SKIP, NOT_RECORDED)
    expected = json.loads(recorded)
    changed = sorted(p for p in expected if p in actual and actual[p] != expected[p])
    missing, extra = sorted(set(expected) - set(actual)), sorted(set(actual) - set(expected))
    if changed or missing or extra:
        parts = [f"{label}: {', '.join(paths)}" for label, paths in (("changed", changed), ("missing", missing), ("added", extra)) if paths]
        return _link("model code", FAIL, "the registered model's files differ from registration; " + "; ".join(parts))
    return _link("model code", PASS, f"{len(actual)} files (code, MLmodel, weights) as at registration")


def check_digest(name: str, what: str, actual: str | None, recorded: str | None) -> Link:
    if not recorded:
        return _link(name, SKIP, NOT_RECORDED)
    if actual is None:
        return _link(name, FAIL, f"{what} is missing from the run's artifacts")
    if actual != recorded:
        return _link(name, FAIL, f"{what} has sha256 {actual[:16]}..., the version records {recorded[:16]}...")
    return _link(name, PASS, f"{what} sha256 {actual[:16]}... as recorded")


def check_data(check: DatasetCheck, rev: str | None, md5_at_rev: str | None, dirty: bool) -> Link:
    if check.problems:
        return _link(
            "data",
            FAIL,
            f"dataset {check.md5}: "
            + "; ".join(check.problems[:3])
            + (f" and {len(check.problems) - 3} more" if len(check.problems) > 3 else ""),
        )
    where = "the DVC remote" if check.fetched else "the DVC cache"
    if md5_at_rev is not None and md5_at_rev != check.md5 and not dirty:
        return _link("data", FAIL, f"data.dvc at {rev} names md5 {md5_at_rev}, the version records {check.md5}")
    if dirty:
        return _link(
            "data",
            WARN,
            f"{check.files} files from {where} hash to md5 {check.md5}, but data.dvc was not "
            "committed when it trained: no git revision names this dataset",
        )
    return _link("data", PASS, f"{check.files} files from {where} hash to md5 {check.md5}, as data.dvc at {rev} says")


def check_validation(actual_sha: str | None, recorded_sha: str | None, report: dict | None, md5: str | None) -> Link:
    digest = check_digest("validation", "the validation report", actual_sha, recorded_sha)
    if digest.status == FAIL:
        return digest
    if report is None:
        return _link("validation", FAIL, "the run has no validation report")
    if report.get("success") is not True:
        return _link("validation", FAIL, "the validation report says the dataset FAILED")
    if report.get("dataset_md5") not in (None, md5):
        return _link("validation", FAIL, f"the validation report is of dataset {report['dataset_md5']}, not {md5}")
    return _link(
        "validation",
        digest.status if digest.status == SKIP else PASS,
        f"passed on {report.get('images')} images of dataset {report.get('dataset_md5') or md5}"
        + ("; " + digest.evidence if digest.status == SKIP else ", report bytes as recorded"),
    )


def check_code(rev: str | None, dirty: str | None, commit_exists: Callable[[str], bool | None]) -> Link:
    if not rev or rev == "unknown":
        return _link("code commit", SKIP, "no code revision was recorded (not run from a git checkout)")
    exists = commit_exists(rev)
    if exists is None:
        return _link("code commit", SKIP, f"commit {rev} was recorded; {SOURCE_ROOT} is no git checkout to check it in")
    if not exists:
        return _link("code commit", FAIL, f"commit {rev} is not in the repository at {SOURCE_ROOT}")
    if dirty == "True":
        return _link("code commit", WARN, f"commit {rev} exists, but the tree had uncommitted changes when it trained")
    return _link("code commit", PASS, f"commit {rev} exists; the tree was clean")


def check_reproduction(equal: bool, worst: float, odd: list[str], elsewhere: bool) -> Link:
    """The retrained generator against the registered one; `elsewhere`: recorded on a GPU or another pool's worker."""
    if equal:
        return _link("reproduce", PASS, "retrained from the recorded config, data and code: every tensor bitwise equal")
    detail = f"largest difference {worst:.3g}" + (f"; only in one: {', '.join(odd[:5])}" if odd else "")
    if elsewhere and not odd:
        return _link("reproduce", WARN, f"trained on a GPU or another worker, retrained here on CPU: {detail}")
    return _link("reproduce", FAIL, f"retrained from the recorded config, data and code, the weights differ: {detail}")


def check_promotion(problems: list[str], entries: list, version: str) -> Link:
    if problems:
        return _link("promotion", FAIL, problems[0])
    if not entries:
        return _link("promotion", SKIP, "no promotion ledger entries")
    mine = [f"#{e.seq} {e.action}" for e in entries if str(e.version) == version]
    return _link(
        "promotion",
        PASS,
        f"the ledger ({len(entries)} entries) is intact and the aliases are where it says; "
        f"version {version}: " + (", ".join(mine) or "no entries"),
    )


# Reading: the registry, the run's artifacts, DVC and git.


def _guarded(name: str, check: Callable[[], Link]) -> Link:
    """A link whose evidence could not be read fails with the reason, instead of stopping the audit."""
    try:
        return check()
    except (GanopsError, OSError, ValueError, KeyError) as e:
        return _link(name, FAIL, f"{type(e).__name__}: {e}")
    except Exception as e:  # MLflow and DVC raise their own types
        return _link(name, FAIL, f"could not be read: {type(e).__name__}: {str(e)[:300]}")


def _artifact(mlc, run_id: str, path: str, dest: Path) -> Path | None:
    return _read(lambda: Path(mlc.download_artifacts(run_id, path, str(dest))))  # None: missing


def _export_link(tags: dict) -> tuple[Link, dict | None]:
    folder = tags.get(TAG_EXPORT_DIR)
    verified = verify_export(Path(folder)) if folder and Path(folder).is_dir() else None
    return check_export(folder, verified, tags.get(TAG_EXPORT_MANIFEST)), verified


def _data_link(project_dir: Path, tags: dict, config: dict) -> Link:
    dvc_file = (config.get("data") or {}).get("dvc_file", "data.dvc")
    rev, dirty = tags.get(TAG_DATA_GIT_REV), tags.get(TAG_DATA_DIRTY) == "True"
    rev = None if rev in (None, "unknown") else rev
    check = verify_dataset(project_dir, tags.get(TAG_DATASET_MD5, ""))
    at_rev = dvc_file_at(project_dir, dvc_file, rev)["md5"] if rev else None
    return check_data(check, rev, at_rev, dirty)


def _promotion_link(mlc, name: str, version: str) -> Link:
    chain, problems = history(mlc, name)
    return check_promotion(problems, chain.entries, version)


def _reproduce_link(project_dir: Path, tags: dict, config: dict, config_file: Path | None, model_dir: Path) -> Link:
    from safetensors.torch import load_file

    if not config or config_file is None:
        return _link("reproduce", FAIL, "the run's config artifact is missing or changed: nothing to retrain from")
    rev = tags.get(TAG_CODE_GIT_REV)
    if not rev or rev == "unknown":
        return _link("reproduce", SKIP, "no code revision was recorded")
    data_rev = None if tags.get(TAG_DATA_DIRTY) == "True" or tags.get(TAG_DATA_GIT_REV) in (None, "unknown") else tags[TAG_DATA_GIT_REV]
    again = retrain_recorded(project_dir, config, config_file, tags.get(TAG_DATASET_MD5, ""), data_rev, rev)
    registered = load_file(str(next(iter(sorted(model_dir.rglob("*.safetensors"))))))
    train = config.get("train", {})
    return check_reproduction(*compare_weights(registered, again), elsewhere=train.get("device") == "cuda" or bool(train.get("work_pool")))


def _synthetic_link(mlc, project_dir: Path, tags: dict) -> Link:
    md5 = tags.get(TAG_DATASET_MD5, "")
    record = parse_record(dataset_member(project_dir, md5, SYNTHETIC_MANIFEST))
    listed = set((record or {}).get("files") or {})  # a `ganops generate` folder's files are not named synthetic-*
    members = dataset_files(project_dir, md5, lambda rel: is_synthetic_member(rel) or rel in listed)
    generator = (record or {}).get("generator") or {}
    found = _read(lambda: dict(mlc.get_model_version(generator["model"], str(generator["version"])).tags or {})) if record else None
    return _link("synthetic", *check_synthetic(record, members, found))


def _read(read: Callable[[], object], default=None):
    try:  # a failed read: the links that use it report it (each FAILs with its own missing evidence)
        return read()
    except Exception:  # MLflow, the artifact store and JSON raise their own types
        return default


def _model_links(
    mlc, name: str, version: str, tags: dict, run_tags: dict, verified: dict | None, tmp: Path
) -> tuple[list[Link], Path | None]:
    """Links 2 and 3 from the registered model's files, downloaded once."""
    import mlflow

    try:
        model_dir = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}", dst_path=str(tmp / "model")))
    except Exception as e:  # the artifact store lost files: exactly what an audit reports
        reason = f"the registered model's files cannot be downloaded: {type(e).__name__}: {str(e)[:200]}"
        return [_link("weights", FAIL, reason), _link("model code", FAIL, reason)], None
    weights = next(iter(sorted(model_dir.rglob("*.safetensors"))), None)
    in_export = ((verified or {}).get("manifest", {}).get("files", {}).get(WEIGHTS) or {}).get("sha256")
    return [
        _guarded(
            "weights",
            lambda: check_weights(
                file_digest(weights) if weights else None, tags.get(TAG_WEIGHTS_SHA256), run_tags.get(TAG_WEIGHTS_SHA256), in_export
            ),
        ),
        _guarded("model code", lambda: check_model_files(model_file_digests(model_dir), tags.get(TAG_MODEL_FILES))),
    ], model_dir


def audit_version(mlc, project_dir: Path, model: str, reproduce: bool = False) -> Audit:
    """Audit MODEL, MODEL@ALIAS or MODEL@VERSION (default: the champion); with `reproduce`, also retrain it."""
    name, ref = parse_model_ref(model)
    mv = resolve_version(mlc, name, ref)
    version, tags = str(mv.version), dict(mv.tags or {})
    run_tags = _read(lambda: dict(mlc.get_run(mv.run_id).data.tags), {})
    with tempfile.TemporaryDirectory(prefix="ganops-audit-") as tmp:
        try:
            export, verified = _export_link(tags)
        except (GanopsError, OSError, ValueError) as e:  # a missing or malformed manifest
            export, verified = _link("export", FAIL, str(e)), None
        model_links, model_dir = _model_links(mlc, name, version, tags, run_tags, verified, Path(tmp))
        links = [export, *model_links]
        config_file = _artifact(mlc, mv.run_id, ARTIFACT_CONFIG, Path(tmp))
        links.append(
            _guarded(
                "config",
                lambda: check_digest(
                    "config", "the run's config artifact", file_digest(config_file) if config_file else None, tags.get(TAG_CONFIG_SHA256)
                ),
            )
        )
        config = _read(lambda: json.loads(config_file.read_text()), {}) if config_file and links[-1].status != FAIL else {}
        links.append(_guarded("data", lambda: _data_link(project_dir, tags, config if isinstance(config, dict) else {})))
        report_file = _artifact(mlc, mv.run_id, ARTIFACT_VALIDATION_REPORT, Path(tmp))
        links.append(
            _guarded(
                "validation",
                lambda: check_validation(
                    file_digest(report_file) if report_file else None,
                    tags.get(TAG_VALIDATION_SHA256),
                    json.loads(report_file.read_text()) if report_file else None,
                    tags.get(TAG_DATASET_MD5),
                ),
            )
        )
        in_source = functools.partial(commit_exists, SOURCE_ROOT)
        links.append(_guarded("code commit", lambda: check_code(tags.get(TAG_CODE_GIT_REV), tags.get(TAG_CODE_DIRTY), in_source)))
        links.append(_guarded("promotion", lambda: _promotion_link(mlc, name, version)))
        links.append(_guarded("synthetic", lambda: _synthetic_link(mlc, project_dir, tags)))
        links.append(_guarded("run records", lambda: _link("run records", *run_records(mlc, mv, Path(tmp)))))
        if reproduce:
            links.append(
                _guarded(
                    "reproduce",
                    lambda: (
                        _reproduce_link(project_dir, tags, config, config_file, model_dir)
                        if model_dir
                        else _link("reproduce", FAIL, "the registered model's files cannot be downloaded")
                    ),
                )
            )
    return Audit(name, version, links)


def format_audit(audit: Audit) -> str:
    lines = [f"audit of {audit.model} version {audit.version}"]
    lines += [f"  {link.number}. {link.status:<4}  {link.name:<12} {link.evidence}" for link in audit.links]
    failed = audit.first_failure
    lines.append(
        f"FAILED at link {failed.number} ({failed.name}): {failed.evidence}"
        if failed
        else "every link verified" + (" (with warnings)" if any(l.status == WARN for l in audit.links) else "")
    )
    return "\n".join(lines)

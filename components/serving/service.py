"""`ganops serve SOURCE`: resolve the source to a verified export, serve it over HTTP, and with --follow swap in
the export the alias points at when it moves (a version that fails verification is not loaded; the old one keeps
serving).

SOURCE is an export folder, an export in S3 (`s3://bucket/prefix/<model>/v<version>`, downloaded and verified), or
`MODEL@ALIAS` / `MODEL@VERSION` (the export recorded on that version).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from components.core.errors import GanopsError
from components.core.names import TAG_EXPORT_DIR, TAG_EXPORT_MANIFEST, TAG_WITHDRAWN
from components.core.paths import state_dir
from components.registry.models import parse_model_ref, resolve_version
from components.registry.tracking import client
from components.serving.app import ServeSettings, ServeState, create_app
from components.serving.publish import fetch_export, parse_s3
from components.serving.runtime import Served, load_served

log = logging.getLogger("ganops.serve")


@dataclass(frozen=True)
class Source:
    """An export folder, an export's S3 URL, or a registered model with an alias or a version."""

    text: str
    folder: Path | None = None
    url: str | None = None
    model: str | None = None
    ref: str | None = None

    @property
    def alias(self) -> str | None:
        return self.ref if self.model and self.ref and not self.ref.isdigit() else None


def parse_source(text: str) -> Source:
    path = Path(text)
    if path.is_dir():
        return Source(text, folder=path.resolve())
    if text.startswith("s3://"):
        parse_s3(text)
        return Source(text, url=text.rstrip("/"))
    if "@" not in text and not text.startswith("models:/"):
        raise GanopsError(f"SOURCE {text!r} is neither an export folder nor MODEL@ALIAS / MODEL@VERSION")
    model, ref = parse_model_ref(text)
    return Source(text, model=model, ref=ref or "champion")


def export_folder(mlc, source: Source) -> tuple[Path, str, str | None]:
    """The export folder recorded on the version `source` names now, that version, and its manifest's recorded sha256."""
    if source.model is None:
        raise GanopsError(f"SOURCE {source.text!r} is not a registered model (MODEL@ALIAS / MODEL@VERSION)")
    mv = resolve_version(mlc, source.model, source.ref)
    tags = mv.tags or {}
    if tags.get(TAG_WITHDRAWN):
        raise GanopsError(f"{source.model} version {mv.version} was withdrawn ({tags[TAG_WITHDRAWN]}); it is not served")
    if not tags.get(TAG_EXPORT_DIR):
        raise GanopsError(
            f"{source.model} version {mv.version} has no export (only versions that became champion are "
            "exported; `ganops promote` or `ganops rollback` writes one)"
        )
    return Path(tags[TAG_EXPORT_DIR]), str(mv.version), tags.get(TAG_EXPORT_MANIFEST)


def load_version(folder: Path, version: str, manifest_sha256: str | None, source: Source, runtime: str) -> Served:
    """The registered version's export, its manifest checked against the one recorded on the version (the
    manifest is what every other hash is checked against) before anything is loaded."""
    served = load_served(folder, runtime, source.alias, manifest_sha256)
    if served.version != version or served.model_name != source.model:
        raise GanopsError(
            f"export {folder} holds {served.model_name} version {served.version}, not {source.model} "
            f"version {version} as the registry records; refusing to serve it"
        )
    return served


def registry_factory(project_dir: Path):
    """A function giving an MlflowClient on the configured registry (MLFLOW_TRACKING_URI, else the project's own
    store), or None when neither is there (no store is created just to look)."""
    if os.environ.get("MLFLOW_TRACKING_URI") or (state_dir(project_dir) / "mlflow.db").is_file():
        return lambda: client(project_dir)
    return None


def check_folder_against_registry(mlc_factory, served: Served) -> None:
    """An export folder that names a registered version must have the manifest recorded on that version (a
    re-hashed manifest is caught here, as with MODEL@VERSION). Raises GanopsError on a difference; logs what could
    not be checked (no registry, a version it does not know, a version without a recorded export)."""
    what = f"{served.folder} ({served.model_name} version {served.version})"
    if mlc_factory is None:
        log.warning(
            "no registry configured (MLFLOW_TRACKING_URI unset, no project store): %s is checked against its own manifest only", what
        )
        return
    try:
        mv = resolve_version(mlc_factory(), served.model_name, served.version)
    except GanopsError as e:
        log.warning("%s; %s is checked against its own manifest only", e, what)
        return
    recorded = (mv.tags or {}).get(TAG_EXPORT_MANIFEST)
    if recorded is None:
        log.warning(
            "%s version %s records no export manifest; %s is checked against its own manifest only", served.model_name, served.version, what
        )
    elif recorded != served.manifest_sha256:
        raise GanopsError(
            f"export {what}: manifest.json has sha256 {served.manifest_sha256[:16]}..., not the {recorded[:16]}... "
            f"recorded on {served.model_name} version {served.version} in the registry; refusing to serve it"
        )
    else:
        log.info("%s: manifest matches the one recorded on the registered version", what)


def load_source(mlc_factory, source: Source, runtime: str, cache_dir: Path) -> Served:
    if source.folder is not None:
        served = load_served(source.folder, runtime)
        check_folder_against_registry(mlc_factory, served)
        return served
    if source.url is not None:  # downloaded to a folder of its own, then verified like any other
        return load_served(fetch_export(source.url, cache_dir / hashlib.sha256(source.url.encode()).hexdigest()[:16]), runtime)
    return load_version(*export_folder(mlc_factory(), source), source, runtime)


class Follower:
    """Polls the alias every `poll_s` seconds; a new version is verified, loaded and swapped in whole. A version it
    cannot serve is tried again every REFUSED_RETRY_S (its export may be rebuilt or repaired meanwhile)."""

    REFUSED_RETRY_S = 60.0

    def __init__(self, state: ServeState, mlc_factory, source: Source, poll_s: float):
        self.state, self.mlc_factory, self.source, self.poll_s = state, mlc_factory, source, poll_s
        self._stop = threading.Event()
        self._refused: dict[tuple, float] = {}  # (version, folder, recorded manifest) -> when it was last refused
        self._thread = threading.Thread(target=self._loop, name="ganops-follow", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def check(self) -> None:
        try:
            folder, version, manifest_sha256 = export_folder(self.mlc_factory(), self.source)
        except GanopsError as e:
            log.warning("--follow: %s; still serving version %s", e, self.state.served.version)
            return
        current, key = self.state.served, (version, str(folder), manifest_sha256)
        if version == current.version and folder == current.folder:
            return
        if time.monotonic() - self._refused.get(key, -math.inf) < self.REFUSED_RETRY_S:
            return
        try:
            served = load_version(folder, version, manifest_sha256, self.source, current.runtime)
            if served.signature() != current.signature():  # the API's schema (latent size, class names) is fixed at start
                raise GanopsError(
                    f"its inputs or outputs differ (latents, classes, image shape {served.signature()} "
                    f"instead of {current.signature()}); restart the server to serve it"
                )
        except GanopsError as e:
            self._refused[key] = time.monotonic()
            self.state.metrics.reloads.labels("refused").inc()
            log.error(
                "--follow: %s@%s moved to version %s, not loaded: %s; still serving version %s",
                self.source.model,
                self.source.alias,
                version,
                e,
                current.version,
            )
            return
        self._refused.pop(key, None)
        self.state.swap(served)
        self.state.metrics.reloads.labels("loaded").inc()

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.check()
            except Exception:  # a registry hiccup must not end following
                log.exception("--follow: checking %s failed", self.source.text)


def build_app(source_text: str, mlc_factory, runtime: str, follow: bool, settings: ServeSettings, cache_dir: Path, poll_s: float = 5.0):
    """The FastAPI app serving SOURCE, verified and loaded before it is returned (any mismatch raises GanopsError
    naming the file, so the server never starts on a bad export)."""
    source = parse_source(source_text)
    if follow and source.alias is None:
        raise GanopsError(f"--follow needs MODEL@ALIAS (an alias that can move), not {source_text!r}")
    state = ServeState(load_source(mlc_factory, source, runtime, cache_dir), settings)
    served = state.served
    log.info(
        "serving %s version %s from %s (%s, %d files verified, manifest sha256 %s)",
        served.model_name,
        served.version,
        served.folder,
        runtime,
        len(served.manifest["files"]),
        served.manifest_sha256[:12],
    )
    follower = Follower(state, mlc_factory, source, poll_s) if follow else None
    return create_app(state, on_start=follower.start if follower else None, on_stop=follower.stop if follower else None)


@dataclass(frozen=True)
class ServeOptions:
    """What `ganops serve` was asked for; a worker process rebuilds its app from these (GANOPS_SERVE_OPTIONS)."""

    source: str
    project_dir: str
    runtime: str
    follow: bool
    poll_s: float
    settings: ServeSettings
    workers: int
    host: str = "127.0.0.1"
    port: int = 8000


OPTIONS_ENV = "GANOPS_SERVE_OPTIONS"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def default_workers() -> int:
    """One worker per CPU this process may run on: each has its event loop and its forward-pass thread."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def app_for(options: ServeOptions):
    """The verified app for these options in this process (each worker loads and verifies the export itself),
    with PyTorch's threads shared out among the workers."""
    import torch

    torch.set_num_threads(max(1, default_workers() // options.workers))
    root = Path(options.project_dir)
    return build_app(
        options.source, registry_factory(root), options.runtime, options.follow, options.settings, state_dir(root) / "serve", options.poll_s
    )


def worker_app():
    """uvicorn's app factory in each `--workers` process: the options come through the environment."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    raw = json.loads(os.environ[OPTIONS_ENV])
    return app_for(ServeOptions(**{**raw, "settings": ServeSettings(**raw["settings"])}))


def serve(options: ServeOptions) -> None:
    """Verify SOURCE here (a bad export ends with one line before anything listens), then serve it: in this process
    for one worker, else in `workers` processes that each verify it again and share the port, their /metrics
    summed over all of them (prometheus_client's multiprocess mode, in a temporary folder removed at exit)."""
    import uvicorn

    app = app_for(options)
    where: dict = {"host": options.host, "port": options.port}
    fast: dict = {"loop": "uvloop", "http": "httptools", "log_level": "info", "access_log": False}  # /metrics counts requests
    if options.workers == 1:
        uvicorn.run(app, **where, **fast)
        return
    del app
    metrics_dir = tempfile.mkdtemp(prefix="ganops-serve-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    os.environ[OPTIONS_ENV] = json.dumps(dataclasses.asdict(options))
    try:
        uvicorn.run("components.serving.service:worker_app", factory=True, workers=options.workers, **where, **fast)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)

"""The HTTP API of `ganops serve` (FastAPI): generate images from a verified export, describe it, report health
and Prometheus metrics.

Every bad request is a 422 whose body names the field and the rule (`{"detail": [{"field", "message"}]}`), never a
stack trace: a body that is not JSON or is larger than `max_body_bytes`, `n` outside 1..max_n, a seed that is not
a non-negative integer, an unknown class or format, labels on an unconditional model.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import secrets
import threading
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Protocol, cast

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, WithJsonSchema, create_model
from starlette.concurrency import run_in_threadpool

from components.serving.batching import Batcher
from components.serving.runtime import Served, channels_last_uint8, grid_png, label_indices, latents, npy_bytes, png_bytes

log = logging.getLogger("ganops.serve")
MAX_SEED = 2**53 - 1  # exact in every JSON parser (doubles)
FORMATS = ("png", "npy", "base64png")
MEDIA = {"png": "image/png", "npy": "application/octet-stream", "base64png": "application/json"}
ENDPOINTS = ("/v1/generate", "/v1/model", "/healthz", "/readyz", "/metrics")


@dataclass(frozen=True)
class ServeSettings:
    max_n: int = 256
    max_body_bytes: int = 64 * 1024
    batch_wait_ms: float = 0.0
    max_batch_rows: int = 1024


class BadRequest(Exception):
    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field, self.message = field, message


def _whole_number(value):
    """JSON Schema's integer: 3 and 3.0, not 3.5, "3" or true."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError("Input should be a whole number")
    return int(value)


WholeNumber = Annotated[int, BeforeValidator(_whole_number)]
Seed = Annotated[
    int, BeforeValidator(_whole_number), Field(ge=0, le=MAX_SEED), WithJsonSchema({"type": "integer", "minimum": 0, "maximum": MAX_SEED})
]  # in a union pydantic wrote "ge"


class GenerateBody(Protocol):
    """The fields of every request_model body (a conditional model's also has `labels` and `class_`)."""

    n: int
    seed: int | None
    format: str


def request_model(max_n: int, labels: list[str]) -> type[BaseModel]:
    """The body of POST /v1/generate for this server: n bounded by max_n, and for a conditional model the class
    names it knows (an unconditional model's body has no labels or class at all)."""
    fields: dict = {
        "n": (WholeNumber, Field(1, ge=1, le=max_n, description="how many images")),
        "seed": (
            Seed | None,
            Field(None, description="the same seed gives the same bytes; drawn (and returned in X-Ganops-Seed) when absent"),
        ),
        "format": (
            Literal["png", "npy", "base64png"],
            Field("png", description="png: one grid picture; npy: uint8 (N, H, W, C); base64png: JSON with one PNG per image"),
        ),
    }
    extra: dict[str, Any] = {}
    if labels:
        name: Any = Literal[tuple(labels)]  # built at run time from the model's classes
        fields["labels"] = (
            list[name],
            Field(None, min_length=1, max_length=max_n, description="class names, cycled over the n images (n of them: one each)"),
        )
        fields["class_"] = (name, Field(None, alias="class", description="one class for every image"))
        extra = {"not": {"required": ["labels", "class"]}}  # one or the other
    return create_model(
        "GenerateRequest", __config__=ConfigDict(extra="forbid", strict=True, populate_by_name=True, json_schema_extra=extra), **fields
    )


def _field(loc: tuple) -> str:
    parts = [str(p) for p in loc if p not in ("body",)]
    return ".".join(parts) or "body"


class Metrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter("ganops_serve_requests", "HTTP requests", ["endpoint", "status"], registry=self.registry)
        self.latency = Histogram(
            "ganops_serve_request_seconds",
            "Request latency",
            ["endpoint"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.images = Counter("ganops_serve_images", "Images generated", registry=self.registry)
        self.errors = Counter("ganops_serve_errors", "Requests refused or failed", ["kind"], registry=self.registry)
        self.reloads = Counter("ganops_serve_reloads", "Exports swapped in by --follow", ["result"], registry=self.registry)


class ServeState:
    """The export being served, swapped whole (a reference assignment) when --follow verifies a new one."""

    def __init__(self, served: Served, settings: ServeSettings):
        self.settings, self.metrics = settings, Metrics()
        self._served, self._lock = served, threading.Lock()
        self.batcher = Batcher(settings.batch_wait_ms, settings.max_batch_rows)

    @property
    def served(self) -> Served:
        return self._served

    def swap(self, served: Served) -> None:
        with self._lock:
            old, self._served = self._served, served
        log.info(
            "now serving %s version %s (%s, manifest %s); was version %s",
            served.model_name,
            served.version,
            served.runtime,
            served.manifest_sha256[:12],
            old.version,
        )


async def _bounded_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise BadRequest("body", f"the body is larger than {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BadRequest("body", f"the body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _labels_of(body, n: int) -> list[str] | None:
    """One class name per image, or None (every class in turn)."""
    labels, single = getattr(body, "labels", None), getattr(body, "class_", None)
    if labels is not None and single is not None:
        raise BadRequest("labels", "give either labels or class, not both")
    if labels is not None:
        return [labels[i % len(labels)] for i in range(n)]
    return None if single is None else [single] * n


def _encode(served: Served, images, fmt: str, seed: int, labels: list[str] | None) -> bytes | dict:
    if fmt == "png":
        return grid_png(images)
    pixels = channels_last_uint8(images)
    if fmt == "npy":
        return npy_bytes(pixels)
    return {
        "model": served.model_name,
        "version": served.version,
        "seed": seed,
        "labels": labels,
        "images": [base64.b64encode(png_bytes(p)).decode("ascii") for p in pixels],
    }


ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "detail": {"type": "array", "items": {"type": "object", "properties": {"field": {"type": "string"}, "message": {"type": "string"}}}}
    },
}


def _install_error_handling(app: FastAPI, metrics: Metrics) -> None:
    """Count and time every request; bad requests become 422 naming the field; anything else a bare 500."""

    @app.middleware("http")
    async def measure(request: Request, call_next):
        start = time.perf_counter()
        endpoint = request.url.path if request.url.path in ENDPOINTS else "other"
        try:
            response = await call_next(request)
        except Exception:  # never a stack trace to the client
            log.exception("%s %s failed", request.method, request.url.path)
            metrics.errors.labels("internal").inc()
            response = JSONResponse({"detail": [{"field": "", "message": "internal error (see the server log)"}]}, 500)
        metrics.requests.labels(endpoint, str(response.status_code)).inc()
        metrics.latency.labels(endpoint).observe(time.perf_counter() - start)
        return response

    @app.exception_handler(BadRequest)
    async def bad_request(request: Request, exc: BadRequest):
        metrics.errors.labels("request").inc()
        return JSONResponse({"detail": [{"field": exc.field, "message": exc.message}]}, 422)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        metrics.errors.labels("request").inc()
        return JSONResponse({"detail": [{"field": _field(e["loc"]), "message": e["msg"]} for e in exc.errors()]}, 422)


def _add_generate(app: FastAPI, state: ServeState) -> None:
    body_model = request_model(state.settings.max_n, state.served.labels)
    schema = body_model.model_json_schema(by_alias=True)

    @app.post(
        "/v1/generate",
        openapi_extra={"requestBody": {"required": False, "content": {"application/json": {"schema": schema}}}},
        responses={
            200: {"content": {m: {} for m in MEDIA.values()}},
            422: {"description": "a field breaks a rule", "content": {"application/json": {"schema": ERROR_SCHEMA}}},
        },
    )
    async def generate(request: Request):
        raw = await _bounded_body(request, state.settings.max_body_bytes)
        try:
            body = cast(GenerateBody, body_model.model_validate_json(raw or b"{}"))  # request_model's fields
        except ValidationError as e:
            raise RequestValidationError(e.errors()) from None
        served = state.served
        names = _labels_of(body, body.n)
        try:
            labels = label_indices(served, names, body.n)
        except ValueError as e:  # a swap (--follow) to a model with other classes
            raise BadRequest("labels", str(e)) from None
        seed = secrets.randbits(53) if body.seed is None else body.seed
        images = await asyncio.wrap_future(state.batcher.submit(served, latents(seed, body.n, served.z_dim), labels))
        state.metrics.images.inc(body.n)
        headers = {
            "X-Ganops-Model": served.model_name,
            "X-Ganops-Version": served.version,
            "X-Ganops-Seed": str(seed),
            "X-Ganops-Runtime": served.runtime,
            "X-Ganops-Manifest-Sha256": served.manifest_sha256,
        }
        content = await run_in_threadpool(_encode, served, images, body.format, seed, names)  # keep the loop free
        if isinstance(content, dict):
            return JSONResponse(content, headers=headers)
        return Response(content, media_type=MEDIA[body.format], headers=headers)


def create_app(state: ServeState, on_start=None, on_stop=None) -> FastAPI:
    """The API over `state`. `on_start`/`on_stop` run with the server (the --follow watcher)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state.batcher.start()
        if on_start:
            on_start()
        yield
        if on_stop:
            on_stop()
        state.batcher.stop()

    app = FastAPI(title="ganops serve", lifespan=lifespan, version="1")
    _install_error_handling(app, state.metrics)
    _add_generate(app, state)

    @app.get("/v1/model")
    def model() -> dict:
        return state.served.describe()

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz", responses={503: {"description": "not ready: the forward-pass worker is not running"}})
    def readyz():
        served = state.served
        if not state.batcher.alive():
            return JSONResponse({"status": "not ready", "reason": "the forward-pass worker is not running"}, 503)
        return {"status": "ready", "model": served.model_name, "version": served.version, "manifest_sha256": served.manifest_sha256}

    @app.get("/metrics", response_class=PlainTextResponse)
    def prometheus() -> Response:
        return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app

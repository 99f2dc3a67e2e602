"""The HTTP API of `ganops serve`: generate images from a verified export, describe it, report health and
Prometheus metrics. POST /v1/generate is a pure ASGI endpoint (the hot path); FastAPI serves the rest and the
OpenAPI schema, which describes both; the `Measured` middleware (serving.asgi) counts and times them all.

Every bad request is a 422 whose body names the field and the rule (`{"detail": [{"field", "message"}]}`), never a
stack trace: a body that is not JSON, empty, declared as another media type or larger than `max_body_bytes`, `n`
outside 1..max_n, a seed that is not a non-negative integer, an unknown class or format, labels on an
unconditional model.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import secrets
import threading
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Protocol, cast

import numpy as np
import orjson
from fastapi import FastAPI
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, WithJsonSchema, create_model

from components.serving.asgi import (
    ASGIApp,
    BadRequest,
    Measured,
    Receive,
    Scope,
    Send,
    error_body,
    json_media_type,
    read_body,
    send_bytes,
    send_json,
)
from components.serving.batching import Batcher
from components.serving.runtime import Served, channels_last_uint8, grid_png, label_indices, latents, npy_bytes, png_bytes

log = logging.getLogger("ganops.serve")
MAX_SEED = 2**53 - 1  # exact in every JSON parser (doubles)
FORMATS = ("png", "npy", "base64png")
MEDIA = {"png": "image/png", "npy": "application/octet-stream", "base64png": "application/json"}
GENERATE = "/v1/generate"
ENDPOINTS = (GENERATE, "/v1/model", "/healthz", "/readyz", "/metrics")
INLINE_ENCODE_VALUES = 1 << 16  # npy answers up to this many floats are encoded on the event loop (tens of µs)


@dataclass(frozen=True)
class ServeSettings:
    max_n: int = 256
    max_body_bytes: int = 64 * 1024
    batch_wait_ms: float = 0.0
    max_batch_rows: int = 1024


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
        self.batch_rows = Histogram(
            "ganops_serve_batch_rows",
            "Latent rows per forward pass (requests share one when batching is on)",
            registry=self.registry,
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
        )

    def exposition(self) -> bytes:
        """Prometheus text: this process's metrics, or, under `--workers` N > 1 (PROMETHEUS_MULTIPROC_DIR set before
        the workers started), every worker's summed."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)


class ServeState:
    """The export being served, swapped whole (a reference assignment) when --follow verifies a new one."""

    def __init__(self, served: Served, settings: ServeSettings):
        self.settings, self.metrics = settings, Metrics()
        self._served, self._lock = served, threading.Lock()
        self.batcher = Batcher(settings.batch_wait_ms, settings.max_batch_rows, self.metrics.batch_rows.observe)

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


def _labels_of(body, n: int) -> list[str] | None:
    """One class name per image, or None (every class in turn)."""
    labels, single = getattr(body, "labels", None), getattr(body, "class_", None)
    if labels is not None and single is not None:
        raise BadRequest("labels", "give either labels or class, not both")
    if labels is not None:
        return [labels[i % len(labels)] for i in range(n)]
    return None if single is None else [single] * n


def _encode(served: Served, images: np.ndarray, fmt: str, seed: int, labels: list[str] | None) -> bytes:
    if fmt == "png":
        return grid_png(images)
    pixels = channels_last_uint8(images)
    if fmt == "npy":
        return npy_bytes(pixels)
    return orjson.dumps(
        {
            "model": served.model_name,
            "version": served.version,
            "seed": seed,
            "labels": labels,
            "images": [base64.b64encode(png_bytes(p)).decode("ascii") for p in pixels],
        }
    )


ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "detail": {"type": "array", "items": {"type": "object", "properties": {"field": {"type": "string"}, "message": {"type": "string"}}}}
    },
}


def _validation_detail(error: ValidationError) -> dict:
    return {"detail": [{"field": _field(e["loc"]), "message": e["msg"]} for e in error.errors()]}


class Generate:
    """POST /v1/generate as a pure ASGI endpoint (no Request object, no dependency solving, no middleware task): the
    body read once within `max_body_bytes`, validated once by the request model (pydantic-core, from the raw bytes),
    the latents handed to the batcher, and the answer encoded on the loop when it is a small npy, in a thread
    otherwise (PNG and base64 PNG encoding is the heavy part)."""

    def __init__(self, state: ServeState):
        self.state = state
        self.body_model = request_model(state.settings.max_n, state.served.labels)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST":
            await send_json(send, 405, error_body("method", f"{scope['method']} is not allowed here: POST only"), [(b"allow", b"POST")])
            return
        try:
            body = await self._body(scope, receive)
            served = self.state.served
            names = _labels_of(body, body.n)
            try:
                labels = label_indices(served, names, body.n)
            except ValueError as e:  # a swap (--follow) to a model with other classes
                raise BadRequest("labels", str(e)) from None
        except BadRequest as e:
            self.state.metrics.errors.labels("request").inc()
            await send_json(send, 422, error_body(e.field, e.message))
            return
        except ValidationError as e:
            self.state.metrics.errors.labels("request").inc()
            await send_json(send, 422, _validation_detail(e))
            return
        seed = secrets.randbits(53) if body.seed is None else body.seed
        images = await self.state.batcher.run(served, latents(seed, body.n, served.z_dim), labels)
        self.state.metrics.images.inc(body.n)
        if body.format == "npy" and images.size <= INLINE_ENCODE_VALUES:
            content = _encode(served, images, body.format, seed, names)
        else:  # keep the loop free for the other requests
            content = await asyncio.get_running_loop().run_in_executor(None, _encode, served, images, body.format, seed, names)
        headers = [
            (b"x-ganops-model", served.model_name.encode()),
            (b"x-ganops-version", served.version.encode()),
            (b"x-ganops-seed", str(seed).encode()),
            (b"x-ganops-runtime", served.runtime.encode()),
            (b"x-ganops-manifest-sha256", served.manifest_sha256.encode()),
        ]
        await send_bytes(send, 200, content, MEDIA[body.format].encode(), headers)

    async def _body(self, scope: Scope, receive: Receive) -> GenerateBody:
        raw = await read_body(scope, receive, self.state.settings.max_body_bytes)
        json_media_type(scope)
        if not raw.strip():
            raise BadRequest("body", "the body is empty: send a JSON object ({} for every default)")
        return cast(GenerateBody, self.body_model.model_validate_json(raw))  # request_model's fields

    def openapi(self) -> dict:
        """The operation as OpenAPI describes it (the route is served here, not by FastAPI)."""
        return {
            "post": {
                "summary": "Generate images",
                "operationId": "generate_v1_generate_post",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": self.body_model.model_json_schema(by_alias=True)}},
                },
                "responses": {
                    "200": {"description": "the images", "content": {m: {} for m in MEDIA.values()}},
                    "422": {"description": "a field breaks a rule", "content": {"application/json": {"schema": ERROR_SCHEMA}}},
                },
            }
        }


def _with_generate(api: FastAPI, generate: Generate) -> ASGIApp:
    """FastAPI serves everything but POST /v1/generate; its OpenAPI schema includes that operation too."""

    def openapi() -> dict:
        if api.openapi_schema is None:
            schema = FastAPI.openapi(api)
            schema["paths"] = {GENERATE: generate.openapi(), **schema["paths"]}
        return cast(dict, api.openapi_schema)

    api.openapi = openapi  # type: ignore[method-assign]

    async def route(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == GENERATE:
            await generate(scope, receive, send)
        else:
            await api(scope, receive, send)

    return route


def create_app(state: ServeState, on_start=None, on_stop=None) -> ASGIApp:
    """The API over `state`, as an ASGI app. `on_start`/`on_stop` run with the server (the --follow watcher)."""

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
        return Response(state.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    return Measured(_with_generate(app, Generate(state)), state.metrics, ENDPOINTS)

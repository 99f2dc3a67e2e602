"""The pure ASGI layer under `ganops serve`'s hot path: reading a bounded body, JSON answers through orjson, and the
middleware that counts and times every request.

Pure ASGI rather than Starlette's `BaseHTTPMiddleware` (`@app.middleware("http")`): that one runs every request in
a task group of its own, wraps `receive` and `send` in memory streams and builds Request/Response objects; under 16
concurrent one-image clients that was the largest share of the event loop's time in a cProfile of the old path
(docs/benchmarks.md#serving). Here the middleware only watches the `http.response.start` message go by.

A client that hangs up before its body has arrived is no server error: it is counted as status 499 (nginx's "client
closed request") and logged in one line, never with a traceback, and never raises `errors{kind="internal"}`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson
from starlette.requests import ClientDisconnect

log = logging.getLogger("ganops.serve")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CLIENT_CLOSED = 499  # the client went away before it was answered (nginx's code; never sent, only counted)
JSON_MEDIA = b"application/json"


class BadRequest(Exception):
    """A request that breaks a rule: answered 422 with `{"detail": [{"field": field, "message": message}]}`."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field, self.message = field, message


def error_body(field: str, message: str) -> dict:
    return {"detail": [{"field": field, "message": message}]}


async def send_bytes(send: Send, status: int, body: bytes, media: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", media), (b"content-length", str(len(body)).encode()), *(headers or ())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def send_json(send: Send, status: int, content: Any, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await send_bytes(send, status, orjson.dumps(content), JSON_MEDIA, headers)


def header(scope: Scope, name: bytes) -> bytes | None:
    """A request header's value (the first one), `name` in lower case."""
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The whole request body, refused (BadRequest on `body`) as soon as it is larger than `limit` bytes, declared
    or sent. Raises ClientDisconnect when the client hangs up before the body is complete."""
    declared = header(scope, b"content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise BadRequest("body", f"the body is larger than {limit} bytes")
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BadRequest("body", f"the body is larger than {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def json_media_type(scope: Scope) -> None:
    """Refuse (BadRequest on `content-type`) a body declared as anything but JSON; none declared is read as JSON."""
    declared = header(scope, b"content-type")
    if declared is None:
        return
    media = declared.split(b";", 1)[0].strip().lower()
    if media != JSON_MEDIA and not media.endswith(b"+json"):
        raise BadRequest("content-type", f"the body must be JSON (content-type: application/json), not {media.decode('latin-1')!r}")


class Measured:
    """Pure ASGI middleware: every HTTP request counted by endpoint and status and timed; an exception the app let
    through becomes a bare 500 (never a stack trace to the client); a client that went away a 499, logged in one
    line."""

    def __init__(self, app: ASGIApp, metrics, endpoints: tuple[str, ...]):
        self.app, self.metrics, self.endpoints = app, metrics, frozenset(endpoints)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), [0]

        async def watched(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except ClientDisconnect:
            log.info("%s %s: the client hung up before its request was complete", scope["method"], scope["path"])
            status[0] = CLIENT_CLOSED
        except Exception:  # never a stack trace to the client
            log.exception("%s %s failed", scope["method"], scope["path"])
            self.metrics.errors.labels("internal").inc()
            if not status[0]:
                await send_json(send, 500, error_body("", "internal error (see the server log)"))
            status[0] = 500
        endpoint = scope["path"] if scope["path"] in self.endpoints else "other"
        self.metrics.requests.labels(endpoint, str(status[0])).inc()
        self.metrics.latency.labels(endpoint).observe(time.perf_counter() - start)

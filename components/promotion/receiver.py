"""`ganops webhook serve`: the small HTTP app that MLflow's webhooks call when an alias moves, and `ganops webhook
register`, which tells the MLflow server to call it.

POST WEBHOOK_PATH takes one delivery: 413 over MAX_BODY, 401 when its signature or timestamp does not verify (the
secret is GANOPS_WEBHOOK_SECRET, never an option), 422 when a verified body is not an alias event it can read, 409
when the model's ledger is damaged (nothing is appended to it), else 200 with what was done. Each delivery is one log
line (the worker's or container's log).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from components.core.errors import ConfigError, GanopsError, RegistryError
from components.promotion import outside
from components.registry.tracking import client

log = logging.getLogger("ganops.webhook")
WEBHOOK_PATH = "/mlflow-webhook"
MAX_BODY = 65536  # MLflow's alias payloads are a few hundred bytes
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def secret_from_env() -> str:
    """The shared secret; ConfigError naming the variable when it is unset or too short to resist guessing."""
    secret = os.environ.get(outside.SECRET_ENV, "")
    if not secret:
        raise ConfigError(f"{outside.SECRET_ENV} is not set: it holds the webhook's shared secret (16 characters or more)")
    if len(secret) < 16:
        raise ConfigError(f"{outside.SECRET_ENV} holds {len(secret)} characters: the shared secret needs 16 or more")
    return secret


def server_uri() -> str:
    """MLFLOW_TRACKING_URI, which must name the MLflow server whose webhooks call the receiver (the project's own
    SQLite store has no server to deliver them). ConfigError otherwise."""
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    if not uri.startswith(("http://", "https://")):
        raise ConfigError(
            f"MLFLOW_TRACKING_URI must name the MLflow server (http(s)://...) whose alias webhooks ganops records, not {uri or 'unset'}"
        )
    return uri


def create_app(secret: str, mlc_factory):
    """The receiver; `mlc_factory()` gives an MlflowClient on the registry whose aliases are watched."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def receive(request: Request) -> JSONResponse:
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY:
                return JSONResponse({"error": f"body over {MAX_BODY} bytes"}, status_code=413)
        try:
            event = outside.verify(secret, {k.lower(): v for k, v in request.headers.items()}, body)
        except outside.BadDelivery as e:
            log.warning("refused a delivery from %s: %s", request.client.host if request.client else "?", e)
            return JSONResponse({"error": str(e)}, status_code=e.status)
        if event is None:
            return JSONResponse({"ignored": "not an alias event"})
        try:
            entry = await run_in_threadpool(outside.record, mlc_factory(), event)
        except RegistryError as e:
            log.error("delivery %s (%s of %s): %s", event.delivery_id, event.describe(), event.model, e)
            return JSONResponse({"error": str(e)}, status_code=409)
        if entry is None:
            log.info("delivery %s: %s of %s: ganops's own move (or not a ganops model)", event.delivery_id, event.describe(), event.model)
            return JSONResponse({"ignored": "ganops's own move, an untracked alias, or a model without a ganops ledger"})
        log.info("delivery %s: %s of %s outside ganops: ledger entry #%d", event.delivery_id, event.describe(), event.model, entry.seq)
        return JSONResponse({"recorded": entry.seq, "aliases_after": entry.aliases_after})

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    return Starlette(routes=[Route(WEBHOOK_PATH, receive, methods=["POST"]), Route("/health", health, methods=["GET"])])


def serve(project_dir: Path, host: str, port: int) -> None:
    """Serve the receiver on host:port against the configured registry (MLFLOW_TRACKING_URI, else the project's)."""
    import uvicorn

    secret, uri = secret_from_env(), server_uri()
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    log.info("receiving MLflow alias webhooks from %s at http://%s:%d%s", uri, host, port, WEBHOOK_PATH)
    uvicorn.run(create_app(secret, lambda: client(project_dir)), host=host, port=port, log_level="warning", access_log=False)


def register(project_dir: Path, url: str, name: str) -> str:
    """Create the MLflow webhook `name` calling `url` on alias events, signed with the secret (one of that name is
    replaced: MLflow cannot update a secret it can no longer decrypt); returns its id. Raises GanopsError naming the
    URL or what MLflow said."""
    from urllib.parse import urlparse

    from mlflow.exceptions import MlflowException

    secret, uri = secret_from_env(), server_uri()
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname or not parsed.path.endswith(WEBHOOK_PATH):
        raise ConfigError(f"--url {url!r}: must be the receiver's http(s) URL, ending in {WEBHOOK_PATH}")
    mlc = client(project_dir)
    try:
        for old in [w for w in _all_webhooks(mlc) if w.name == name]:
            mlc.delete_webhook(old.webhook_id)
        return mlc.create_webhook(
            name, url, list(outside.EVENTS), description="ganops: alias moves into the ledger", secret=secret
        ).webhook_id
    except MlflowException as e:
        raise GanopsError(f"MLflow at {uri} refused webhook {name!r} for {url}: {e.message or type(e).__name__}") from None


def _all_webhooks(mlc) -> list:
    found, token = [], None
    while True:
        page = mlc.list_webhooks(page_token=token)
        found += list(page)
        token = page.token
        if not token:
            return found

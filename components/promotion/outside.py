"""Alias moves made outside ganops (the MLflow UI, another client), recorded in the ledger as they happen.

MLflow 3.3+ (SQL backend) can call a webhook when an alias is set or deleted. `verify` checks such a delivery (its
HMAC-SHA256 signature over `delivery_id.timestamp.body` with the shared secret, a timestamp within REPLAY_SECONDS);
`judge` decides, purely from the ledger, whether the move was ganops's own (every ganops move commits its ledger
entry before it touches the aliases) or came from outside; `record` appends an `outside_move` entry for the latter,
so the history is complete and the next gate decision is made against the champion the registry really has.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass

from components.core.errors import GanopsError
from components.promotion import ledger
from components.registry.models import current_aliases

OUTSIDE_MOVE = "outside_move"
WEBHOOK_ACTOR = "mlflow-webhook"  # MLflow's payload names no user: the entry says so in its reason
SECRET_ENV = "GANOPS_WEBHOOK_SECRET"
# MLflow's header names (mlflow.webhooks.constants), spelled here so the receiver does not import MLflow.
SIGNATURE_HEADER, TIMESTAMP_HEADER, DELIVERY_HEADER = "x-mlflow-signature", "x-mlflow-timestamp", "x-mlflow-delivery-id"
SIGNATURE_VERSION = "v1"
ALIAS_ENTITY, CREATED, DELETED = "model_version_alias", "created", "deleted"
EVENTS = (f"{ALIAS_ENTITY}.{CREATED}", f"{ALIAS_ENTITY}.{DELETED}")
REPLAY_SECONDS = 300  # a delivery older (or newer) than this is refused, so a captured one cannot be replayed later
# A move counts as ganops's own when an entry that made that same move was written at most this long before the
# delivery was sent (deliveries run in MLflow's thread pool and may arrive after ganops's next entry).
OWN_MOVE_SECONDS = 300


class BadDelivery(GanopsError):
    """A delivery that is not a verified MLflow alias event; its message names the header or field, `status` is the
    HTTP answer (401: not verified, 422: verified but unreadable)."""

    def __init__(self, message: str, status: int = 401):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class AliasEvent:
    model: str
    alias: str
    version: str | None  # None: the alias was deleted
    sent_at: int  # unix seconds, from the signed timestamp header
    delivery_id: str

    def describe(self) -> str:
        return f"alias {self.alias} " + (f"set to version {self.version}" if self.version else "deleted")


def signature(secret: str, delivery_id: str, timestamp: str, body: bytes) -> str:
    """MLflow's v1 signature: base64 of HMAC-SHA256 over `delivery_id.timestamp.body`."""
    digest = hmac.new(secret.encode(), f"{delivery_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode()}"


def verify(secret: str, headers: dict[str, str], body: bytes, now: float | None = None) -> AliasEvent | None:
    """The alias event a delivery carries, after checking its signature and age; None for a verified delivery of
    another kind. Raises BadDelivery (naming what is wrong) otherwise. `headers` keys are lower case."""
    delivery_id, stamp, given = (headers.get(h, "") for h in (DELIVERY_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER))
    for name, value in ((DELIVERY_HEADER, delivery_id), (TIMESTAMP_HEADER, stamp), (SIGNATURE_HEADER, given)):
        if not value:
            raise BadDelivery(f"header {name} is missing")
    if not stamp.isdigit():
        raise BadDelivery(f"header {TIMESTAMP_HEADER} is not unix seconds: {stamp[:40]!r}")
    if not hmac.compare_digest(given.encode(), signature(secret, delivery_id, stamp, body).encode()):
        raise BadDelivery(f"header {SIGNATURE_HEADER} does not match the body signed with {SECRET_ENV}")
    age = (time.time() if now is None else now) - int(stamp)
    if abs(age) > REPLAY_SECONDS:
        raise BadDelivery(f"header {TIMESTAMP_HEADER} is {age:.0f} s from now (at most {REPLAY_SECONDS} s): a replay?")
    try:
        message = json.loads(body)
        kind, data = f"{message['entity']}.{message['action']}", message["data"]
    except (ValueError, KeyError, TypeError):
        raise BadDelivery("the body is not an MLflow webhook payload (entity, action, data)", 422) from None
    if kind not in EVENTS:
        return None
    if not all(isinstance(data.get(k), str) and data[k] for k in ("name", "alias")):
        raise BadDelivery(f"{kind}: data.name and data.alias must be non-empty strings", 422)
    version = str(data.get("version", "")) if kind.endswith(CREATED) else None
    if kind.endswith(CREATED) and not version:
        raise BadDelivery(f"{kind}: data.version is missing", 422)
    return AliasEvent(data["name"], data["alias"], version, int(stamp), delivery_id)


def _made(entry: ledger.Entry, alias: str, version: str | None) -> bool:
    """Whether ganops's `entry` moved `alias` to `version` (None: removed it); an outside move's entry never counts."""
    moved = entry.aliases_before.get(alias) != version and entry.aliases_after.get(alias) == version
    return moved and entry.action != OUTSIDE_MOVE


def own_move(chain: ledger.Chain, event: AliasEvent) -> bool:
    """Whether ganops made this move: the last entry says so (ganops sets aliases to it, reconcile too), or an entry
    written shortly before the delivery was sent made exactly this move."""
    if chain.last is not None and chain.last.aliases_after.get(event.alias) == event.version:
        return True
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(event.sent_at - OWN_MOVE_SECONDS))
    return any(e.time >= since and _made(e, event.alias, event.version) for e in chain.entries)


def outside_entry(chain: ledger.Chain, event: AliasEvent, registry_now: str | None) -> dict | None:
    """The fields of the `outside_move` entry for `event` (None when it was ganops's own move). The aliases after
    it follow the move only while the registry still holds it (`registry_now`: the alias's version now, read after the
    chain) and no entry was written after the delivery was sent; otherwise the move is recorded with the aliases
    unchanged, so a late delivery never undoes a later move, ganops's or anyone's."""
    if event.alias not in ledger.TRACKED or own_move(chain, event):
        return None
    before = dict(chain.last.aliases_after) if chain.last else {}
    after = dict(before)
    sent = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(event.sent_at))
    later = chain.last is not None and chain.last.time > sent
    if registry_now == event.version and not later:
        after.pop(event.alias, None)
        after.update({event.alias: event.version} if event.version else {})
    superseded = (
        f"; ledger entry {chain.last.seq} was written after it" if later and chain.last
        else "" if registry_now == event.version else f"; the registry has since moved it to {registry_now or 'none'}"
    )  # fmt: skip
    reason = (
        f"{event.describe()} outside ganops (MLflow webhook {ALIAS_ENTITY}.{DELETED if event.version is None else CREATED}, "
        f"delivery {event.delivery_id}, sent {sent}; MLflow's payload does not say who){superseded}"
    )
    version = event.version or before.get(event.alias, "")
    return {"actor": WEBHOOK_ACTOR, "action": OUTSIDE_MOVE, "model": event.model, "version": version,
            "aliases_before": before, "aliases_after": after, "reason": reason}  # fmt: skip


class _OwnMove(Exception):
    """Raised inside an append when the event turns out to need no entry."""


def record(mlc, event: AliasEvent) -> ledger.Entry | None:
    """Append the `outside_move` entry for `event` to its model's ledger (once per delivery, also when MLflow
    retries it); None when the move was ganops's own, the alias is not one ganops tracks, or the model has no ledger
    (ganops does not manage it)."""
    if event.alias not in ledger.TRACKED or event.model.startswith(ledger.LEDGER_PREFIX):
        return None
    if not ledger.ledger_exists(mlc, event.model):
        return None

    def make(chain: ledger.Chain) -> ledger.Entry:
        done = next((e for e in chain.entries if e.action == OUTSIDE_MOVE and f"delivery {event.delivery_id}," in e.reason), None)
        if done is not None:
            return done  # a retried delivery: append returns the entry it finds, writes nothing
        # Read after the chain (ganops moves aliases after its entry): a move since, by anyone, shows here.
        fields = outside_entry(chain, event, current_aliases(mlc, event.model).get(event.alias))
        if fields is None:
            raise _OwnMove
        return ledger.next_entry(chain, **fields)

    try:
        return ledger.append(mlc, event.model, make)
    except _OwnMove:
        return None

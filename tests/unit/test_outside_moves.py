"""The webhook receiver's pure parts: MLflow's signature, the checks on a delivery, and whether a move was ganops's
own (issue 30 item 10; the end-to-end test against a real MLflow server is tests/integration/test_webhook.py)."""

from __future__ import annotations

import calendar
import json
import time

import pytest

from components.promotion import ledger, outside

SECRET = "0123456789abcdef-secret"


def _delivery(data: dict, action: str = "created", stamp: int | None = None, secret: str = SECRET):
    body = json.dumps({"entity": "model_version_alias", "action": action, "timestamp": "t", "data": data}).encode()
    stamp_s = str(stamp if stamp is not None else int(time.time()))
    headers = {"x-mlflow-delivery-id": "d-1", "x-mlflow-timestamp": stamp_s}
    return body, {**headers, "x-mlflow-signature": outside.signature(secret, "d-1", stamp_s, body)}


def test_the_signature_is_the_one_mlflow_sends():
    from mlflow.webhooks.delivery import _generate_hmac_signature

    payload = json.dumps({"entity": "model_version_alias", "action": "created", "data": {"name": "m", "alias": "é"}})
    assert outside.signature(SECRET, "id", "1700000000", payload.encode()) == _generate_hmac_signature(SECRET, "id", "1700000000", payload)


def test_verify_reads_created_and_deleted_and_ignores_other_events():
    body, headers = _delivery({"name": "m", "alias": "champion", "version": "4"}, stamp=int(time.time()) - 10)
    assert outside.verify(SECRET, headers, body) == outside.AliasEvent("m", "champion", "4", int(headers["x-mlflow-timestamp"]), "d-1")
    body, headers = _delivery({"name": "m", "alias": "champion"}, action="deleted")
    assert outside.verify(SECRET, headers, body).version is None
    body = json.dumps({"entity": "model_version", "action": "created", "data": {}}).encode()
    stamp = str(int(time.time()))
    headers = {"x-mlflow-delivery-id": "d", "x-mlflow-timestamp": stamp, "x-mlflow-signature": outside.signature(SECRET, "d", stamp, body)}
    assert outside.verify(SECRET, headers, body) is None


@pytest.mark.parametrize(
    "change, status, message",
    [
        ({"secret": "another-secret-entirely"}, 401, "does not match"),
        ({"age": 301}, 401, "a replay?"),
        ({"age": -400}, 401, "a replay?"),  # from the future
        ({"data": {"name": "m", "alias": ""}}, 422, "data.name and data.alias"),
        ({"data": {"name": "m", "alias": "champion"}}, 422, "data.version is missing"),
    ],
)
def test_verify_refuses_with_the_status_and_the_reason(change, status, message):
    body, headers = _delivery(
        change.get("data", {"name": "m", "alias": "champion", "version": "1"}),
        stamp=int(time.time()) - change["age"] if "age" in change else None,  # now, not when the tests were collected
        secret=change.get("secret", SECRET),
    )
    with pytest.raises(outside.BadDelivery, match=message) as caught:
        outside.verify(SECRET, headers, body)
    assert caught.value.status == status
    with pytest.raises(outside.BadDelivery, match="body signed with"):  # one byte changed after signing
        outside.verify(SECRET, headers, body.replace(b'"m"', b'"n"'))


def _chain(*moves: tuple[dict, dict], at: str = "2026-12-07T10:00:00Z") -> ledger.Chain:
    entries: list[ledger.Entry] = []
    for before, after in moves:
        chain = ledger.Chain(list(entries), [])
        entry = ledger.next_entry(
            chain, actor="a", action=ledger.PROMOTE, model="m", version="1", aliases_before=before, aliases_after=after, reason="r"
        )
        entries.append(ledger.sealed(ledger.Entry(**{**entry.content(), "time": at})))
    return ledger.Chain(entries, [])


def _event(alias: str, version: str | None, sent: str = "2026-12-07T10:00:05Z") -> outside.AliasEvent:
    return outside.AliasEvent("m", alias, version, calendar.timegm(time.strptime(sent, "%Y-%m-%dT%H:%M:%SZ")), "d-9")


def test_a_move_to_what_the_last_entry_says_or_one_an_entry_just_made_is_ganops_own():
    chain = _chain(({}, {"champion": "1"}), ({"champion": "1"}, {"champion": "2", "previous_champion": "1"}))
    assert outside.outside_entry(chain, _event("champion", "2"), "2") is None  # the last entry's
    assert outside.outside_entry(chain, _event("champion", "1"), "2") is None  # entry 1 made it 5 s before: late delivery
    late = outside.outside_entry(chain, _event("champion", "1", sent="2026-12-07T11:00:00Z"), "1")
    assert late and late["aliases_after"] == {"champion": "1", "previous_champion": "1"}  # an hour on: a rollback by hand
    assert outside.outside_entry(chain, _event("checkpoint", "1"), "1") is None  # not a tracked alias


def test_an_outside_move_follows_the_registry_only_while_the_registry_still_holds_it():
    chain = _chain(({}, {"champion": "1"}))
    held = outside.outside_entry(chain, _event("champion", "3"), "3")
    assert held and held["aliases_before"] == {"champion": "1"} and held["aliases_after"] == {"champion": "3"}
    assert held["action"] == outside.OUTSIDE_MOVE and "delivery d-9" in held["reason"]
    stale = outside.outside_entry(chain, _event("champion", "3"), "4")
    assert stale and stale["aliases_after"] == {"champion": "1"} and "has since moved it to 4" in stale["reason"]
    deleted = outside.outside_entry(chain, _event("champion", None), None)
    assert deleted and deleted["aliases_after"] == {} and deleted["version"] == "1" and "alias champion deleted" in deleted["reason"]


def test_a_move_back_to_what_an_outside_move_set_is_outside_too_and_a_late_delivery_changes_no_alias():
    chain = _chain(({}, {"champion": "1"}))
    outside_3 = ledger.Entry(
        **{
            **chain.entries[0].content(),
            "seq": 2,
            "action": outside.OUTSIDE_MOVE,
            "aliases_before": {"champion": "1"},
            "aliases_after": {"champion": "3"},
            "prev_hash": chain.entries[0].hash,
        }
    )
    outside_4 = ledger.Entry(**{**outside_3.content(), "seq": 3, "aliases_before": {"champion": "3"}, "aliases_after": {"champion": "4"}})
    chain = ledger.Chain([*chain.entries, outside_3, outside_4], [])
    back = outside.outside_entry(chain, _event("champion", "3"), "3")  # by hand 3 -> 4 -> 3 within minutes
    assert back and back["aliases_after"] == {"champion": "3"}
    # An entry written after the delivery was sent: the move is history, the aliases stay the entry's.
    late = outside.outside_entry(chain, _event("champion", "7", sent="2026-12-07T09:59:00Z"), "7")
    assert late and late["aliases_after"] == {"champion": "4"} and "was written after it" in late["reason"]

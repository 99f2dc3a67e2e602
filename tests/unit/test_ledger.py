"""The promotion ledger's chain, as readers compute it from stored entries: races, edits, deletions, alias drift."""

import json
from dataclasses import asdict, replace

from components.promotion.ledger import Chain, alias_drift, canonical, next_entry, read_chain, sealed


def entry_after(chain, version="1", action="promote", champion=None):
    after = {"champion": champion or version}
    return next_entry(
        chain,
        actor="ci@test",
        action=action,
        model="m",
        version=version,
        aliases_before=dict(chain.last.aliases_after) if chain.last else {},
        aliases_after=after,
        reason="test",
    )


def stored(*entries, start=1):
    return [(start + i, canonical(asdict(e))) for i, e in enumerate(entries)]


def grow(n):
    chain, entries = Chain([], []), []
    for i in range(n):
        entry = entry_after(chain, version=str(i + 1))
        entries.append(entry)
        chain = read_chain(stored(*entries))
    return chain, entries


def test_appended_entries_form_a_chain_in_registry_order():
    chain, entries = grow(3)
    assert [e.seq for e in chain.entries] == [1, 2, 3] and not chain.problems
    assert chain.entries[1].prev_hash == chain.entries[0].hash
    shuffled = list(reversed(stored(*entries)))
    assert read_chain(shuffled).entries == chain.entries  # the registry's version numbers order it, not the listing


def test_of_two_racing_appends_the_later_numbered_one_is_skipped_without_a_problem():
    chain, entries = grow(2)
    a = entry_after(chain, version="7")
    b = entry_after(chain, version="8")  # read the same last entry
    result = read_chain(stored(*entries, a, b))
    assert [e.version for e in result.entries] == ["1", "2", "7"] and not result.problems
    retried = entry_after(result, version="8")  # the loser appends again after the winner
    final = read_chain(stored(*entries, a, b, retried))
    assert [e.version for e in final.entries] == ["1", "2", "7", "8"] and not final.problems


def test_an_entry_edited_by_hand_is_named_and_so_is_the_link_it_breaks():
    chain, entries = grow(3)
    edited = replace(entries[1], reason="nothing to see")
    problems = read_chain(stored(entries[0], edited, entries[2])).problems
    assert "ledger entry 2" in problems[0] and "does not match its hash" in problems[0]
    resealed = sealed(replace(entries[1], aliases_after={"champion": "9"}))  # edited and re-hashed
    problems = read_chain(stored(entries[0], resealed, entries[2])).problems
    assert problems and "ledger entry 3" in problems[0] and "missing or was edited" in problems[0]


def test_a_deleted_entry_breaks_the_link_of_the_next():
    chain, entries = grow(3)
    rows = stored(*entries)
    del rows[1]
    assert "ledger entry 3" in read_chain(rows).problems[0]


def test_garbage_in_the_ledger_is_a_problem():
    assert "not a ledger entry" in read_chain([(1, "{}")]).problems[0]
    assert "not a ledger entry" in read_chain([(1, json.dumps([1]))]).problems[0]


def test_aliases_moved_outside_ganops_are_named():
    chain, _ = grow(2)
    assert alias_drift(chain, {"champion": "2"}, ("champion",)) == []
    drift = alias_drift(chain, {"champion": "1"}, ("champion", "previous_champion"))
    assert drift == ["alias champion: the registry says 1, the ledger's last entry (2, promote) says 2"]
    assert alias_drift(Chain([], []), {"champion": "5"}, ("champion",)) == []


def test_alias_moves_keep_a_way_back():
    from components.promotion.moves import after_promote, after_reject, after_rollback

    assert after_promote({}, "1") == {"champion": "1"}
    assert after_promote({"champion": "1", "challenger": "2"}, "2") == {"champion": "2", "previous_champion": "1"}
    assert after_promote({"champion": "2", "previous_champion": "1"}, "2") == {"champion": "2", "previous_champion": "1"}
    assert after_reject({"champion": "1"}, "3") == {"champion": "1", "challenger": "3"}
    back = after_rollback({"champion": "2", "previous_champion": "1"}, "1")
    assert back == {"champion": "1", "previous_champion": "2"}  # and a second rollback undoes the first
    assert after_rollback(back, "2") == {"champion": "2", "previous_champion": "1"}


def test_the_standing_decision_is_the_ledgers_newest_gate_entry_for_the_version():
    from components.promotion.moves import standing_decision

    chain = Chain([], [])
    for version, action in (("1", "gate_promote"), ("2", "gate_reject"), ("1", "rollback")):
        entry = next_entry(
            chain,
            actor="ci",
            action=action,
            model="m",
            version=version,
            aliases_before={},
            aliases_after={},
            reason="r",
            rules=[{"name": "ceiling", "passed": True, "value": 1.0, "threshold": 2.0, "message": f"why {version}"}],
        )
        chain = Chain(chain.entries + [entry], [])
    one, two = standing_decision(chain, "1"), standing_decision(chain, "2")
    assert one.promote and "stands (promoted, ledger entry 1)" in one.reasons[0] and one.reasons[1] == "ceiling: why 1"
    assert not two.promote and "rejected" in two.reasons[0]
    assert standing_decision(chain, "3") is None


def test_withdrawing_moves_the_champion_to_the_fallback_and_drops_every_alias_of_the_version():
    from components.promotion.moves import after_withdraw, fallback_champion

    before = {"champion": "3", "previous_champion": "2", "challenger": "4"}
    assert after_withdraw(before, "3", "2") == {"champion": "2", "challenger": "4"}
    assert after_withdraw(before, "3", None) == {"previous_champion": "2", "challenger": "4"}
    assert after_withdraw(before, "4", None) == {"champion": "3", "previous_champion": "2"}
    assert after_withdraw({"champion": "3", "candidate": "2"}, "3", "2") == {"champion": "2"}
    assert fallback_champion([("1", True), ("2", True), ("3", True), ("4", False)], {"3"}) == "2"
    assert fallback_champion([("1", False), ("3", True)], {"3"}) is None


def test_what_the_registry_says_happened_must_be_in_the_ledger():
    from components.promotion.ledger import missing_entries

    chain, _ = grow(2)  # entries for versions 1 and 2
    empty = Chain([], [])
    cases = [
        (empty, True, {}, {}, None),  # a model never judged: nothing is missing
        (empty, False, {"champion": "1"}, {}, "does not exist, but the aliases champion -> version 1"),
        (empty, True, {}, {"1": "rejected"}, "has no entries, but versions 1 carry gate verdicts"),
        (chain, True, {"champion": "2"}, {"1": "promoted", "2": "promoted"}, None),
        (chain, True, {"champion": "2"}, {"1": "promoted", "3": "rejected"}, "version 3 carries the gate verdict"),
    ]
    for stored_chain, exists, aliases, verdicts, expected in cases:
        problems = missing_entries(stored_chain, "m", exists, aliases, verdicts)
        if expected is None:
            assert problems == [], (aliases, verdicts, problems)
        else:
            assert len(problems) == 1 and expected in problems[0] and "ganops-ledger.m" in problems[0], problems

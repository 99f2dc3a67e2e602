"""The promotion ledger: every alias change ganops makes, as a hash chain kept in the MLflow registry itself.

Each entry is a version of the registered model `ganops-ledger.<MODEL>`, its fields in the version's tags, written
in the one call that creates the version, so every client of the same MLflow server sees the same ledger. The
registry numbers versions atomically; an entry links to the hash of the entry before it. Of two appends that
raced, the later-numbered one links to an entry that already has a successor: it is a lost race, skipped by every
reader, and its writer appends again. Which entries count is a pure function of the stored versions (`read_chain`),
so readers agree without a lock.

An entry is the commit point of a promotion step: the registry's aliases are then moved to the entry's
`aliases_after`, and `reconcile` moves them again after a crash in between.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import socket
import time
from dataclasses import asdict, dataclass, field

from components.core.errors import RegistryError
from components.core.names import CANDIDATE, CHALLENGER, CHAMPION, PREVIOUS_CHAMPION, TAG_GATE
from components.core.paths import check_path_name
from components.registry.models import all_versions, current_aliases, search_versions

LEDGER_PREFIX = "ganops-ledger."
ACTOR_ENV = "GANOPS_ACTOR"
ENTRY_TAG = "ganops.ledger_entry"
# Actions an entry records.
GATE_PROMOTE, GATE_REJECT, AWAITING_APPROVAL = "gate_promote", "gate_reject", "awaiting_approval"  # the gate's
PROMOTE, ROLLBACK, APPROVE, REJECT = "promote", "rollback", "approve", "reject"  # commands'
WITHDRAW = "withdraw"  # a version trained on withdrawn data: its aliases removed, the champion moved back
GATE_ACTIONS = (GATE_PROMOTE, GATE_REJECT, AWAITING_APPROVAL)
APPEND_ATTEMPTS = 20
TRACKED = (CHAMPION, PREVIOUS_CHAMPION, CHALLENGER, CANDIDATE)  # the aliases every entry records


def ledger_name(model_name: str) -> str:
    """The registered model holding MODEL's ledger (the name is checked: it reaches MLflow filter strings)."""
    return f"{LEDGER_PREFIX}{check_path_name(model_name, 'model')}"


def actor() -> str:
    """Who acts: GANOPS_ACTOR, else user@host."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return os.environ.get(ACTOR_ENV) or f"{user}@{socket.gethostname()}"


@dataclass(frozen=True)
class Entry:
    seq: int
    time: str  # UTC, ISO 8601
    actor: str
    action: str
    model: str
    version: str
    aliases_before: dict[str, str]
    aliases_after: dict[str, str]
    reason: str
    rules: list[dict] = field(default_factory=list)
    run_id: str = ""
    flow_run_id: str = ""
    prev_hash: str = ""
    hash: str = ""

    def content(self) -> dict:
        """Every field but the hash, the input of the hash."""
        out = asdict(self)
        del out["hash"]
        return out


def canonical(obj: dict) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def entry_hash(entry: Entry) -> str:
    return hashlib.sha256(canonical(entry.content()).encode()).hexdigest()


def sealed(entry: Entry) -> Entry:
    """The entry with its hash set."""
    return Entry(**{**entry.content(), "hash": entry_hash(entry)})


def parse_entry(text: str) -> Entry | None:
    try:
        return Entry(**json.loads(text))
    except (ValueError, TypeError):
        return None


@dataclass(frozen=True)
class Chain:
    """The entries that count, oldest first, and what is wrong with the stored ones (empty when nothing is)."""

    entries: list[Entry]
    problems: list[str]

    @property
    def last(self) -> Entry | None:
        return self.entries[-1] if self.entries else None


def read_chain(stored: list[tuple[int, str]]) -> Chain:
    """The chain from (registry version number, entry JSON) pairs in any order.

    An entry counts when its hash matches its content and it links to the last counted entry. An intact entry that
    links to an earlier counted one lost a race and is skipped. Anything else is a problem: an entry whose content no
    longer matches its hash (edited), or one that links to no counted entry (an entry before it was edited or
    deleted)."""
    entries: list[Entry] = []
    known: set[str] = set()
    problems: list[str] = []
    for number, text in sorted(stored):
        entry = parse_entry(text)
        if entry is None:
            problems.append(f"ledger version {number}: not a ledger entry")
            continue
        if entry_hash(entry) != entry.hash:
            problems.append(
                f"ledger entry {entry.seq} (registry version {number}): its content does not match its hash (edited after it was written)"
            )
            continue
        last = entries[-1].hash if entries else ""
        if entry.prev_hash == last and entry.seq == len(entries) + 1:
            entries.append(entry)
            known.add(entry.hash)
        elif entry.prev_hash in known or (entry.prev_hash == "" and entries):
            continue  # lost a race to the entry that now follows the one it links to
        else:
            problems.append(f"ledger entry {entry.seq} (registry version {number}): links to an entry that is missing or was edited")
    return Chain(entries, problems)


def next_entry(chain: Chain, **fields) -> Entry:
    """The sealed entry that would follow `chain`."""
    last = chain.last
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return sealed(Entry(seq=(last.seq if last else 0) + 1, time=stamp, prev_hash=last.hash if last else "", **fields))


def alias_drift(chain: Chain, current: dict[str, str], tracked: tuple[str, ...]) -> list[str]:
    """Where the registry's aliases differ from what the last entry says (moved outside ganops)."""
    if chain.last is None:
        return []
    expected = chain.last.aliases_after
    return [
        f"alias {alias}: the registry says {current.get(alias, 'none')}, the ledger's last entry "
        f"({chain.last.seq}, {chain.last.action}) says {expected.get(alias, 'none')}"
        for alias in tracked
        if current.get(alias) != expected.get(alias)
    ]


def missing_entries(chain: Chain, model_name: str, exists: bool, aliases: dict[str, str], verdicts: dict[str, str]) -> list[str]:
    """What the registry says happened that the ledger does not hold: tracked `aliases` (alias -> version) while it
    has no entry, or versions whose gate verdict tag (`verdicts`: version -> ganops.gate, written only after their
    entry) the ledger has no entry for. Such a ledger was deleted, or its newest entries were."""
    name = ledger_name(model_name)
    if not chain.entries:
        held = ", ".join(f"{alias} -> version {v}" for alias, v in sorted(aliases.items()))
        judged = ", ".join(sorted(verdicts, key=int))
        if not held and not judged:
            return []
        state = "does not exist" if not exists else "has no entries"
        what = f"the aliases {held}" if held else f"versions {judged} carry gate verdicts ({TAG_GATE})"
        return [f"the promotion ledger {name} {state}, but {what}: it was deleted outside ganops"]
    recorded = {e.version for e in chain.entries}
    return [
        f"version {v} carries the gate verdict {TAG_GATE}={verdicts[v]}, but the promotion ledger {name} "
        f"({len(chain.entries)} entries) has no entry for it: entries were deleted outside ganops"
        for v in sorted(set(verdicts) - recorded, key=int)
    ]


# The side effects: the ledger in the MLflow registry.


def stored_entries(mlc, model_name: str) -> list[tuple[int, str]]:
    """Every stored entry, page by page (a search answers at most a page)."""
    return [(int(v.version), (v.tags or {}).get(ENTRY_TAG, "")) for v in search_versions(mlc, f"name = '{ledger_name(model_name)}'")]


def load_chain(mlc, model_name: str) -> Chain:
    return read_chain(stored_entries(mlc, model_name))


def ledger_exists(mlc, model_name: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        mlc.get_registered_model(ledger_name(model_name))
    except MlflowException:
        return False
    return True


def checked_chain(mlc, model_name: str) -> Chain:
    """The chain, its problems including what the model's aliases and gate tags say it lacks (`missing_entries`)."""
    # Aliases and tags are read first: both are written after their entry, so the chain read next holds it.
    aliases = {k: v for k, v in current_aliases(mlc, model_name).items() if k in TRACKED}
    verdicts = {str(v.version): v.tags[TAG_GATE] for v in all_versions(mlc, model_name) if (v.tags or {}).get(TAG_GATE)}
    chain = load_chain(mlc, model_name)
    exists = bool(chain.entries) or ledger_exists(mlc, model_name)
    return Chain(chain.entries, chain.problems + missing_entries(chain, model_name, exists, aliases, verdicts))


def intact_chain(mlc, model_name: str) -> Chain:
    """The chain; raises RegistryError naming the first problem when it is damaged or shorter than the registry
    says (then nothing may move)."""
    chain = checked_chain(mlc, model_name)
    if chain.problems:
        raise RegistryError(f"the promotion ledger of {model_name} is damaged, nothing was changed: {chain.problems[0]}")
    return chain


def append(mlc, model_name: str, make_entry) -> Entry:
    """Append `make_entry(chain)` (a function of the current chain, called again after a lost race) and return the
    entry once it counts. Raises RegistryError when the chain has problems or the appends keep losing."""
    from mlflow.exceptions import MlflowException

    name = ledger_name(model_name)
    intact_chain(mlc, model_name)  # before creating one: a deleted ledger is refused, not started afresh
    try:
        mlc.create_registered_model(name, description=f"ganops promotion ledger of {model_name} (ganops history {model_name})")
    except MlflowException:
        pass  # exists
    for _ in range(APPEND_ATTEMPTS):
        chain = intact_chain(mlc, model_name)
        entry = make_entry(chain)
        if any(e.hash == entry.hash for e in chain.entries):
            return entry  # committed already (a retried call whose first reply was lost)
        summary = f"{entry.action} {model_name} version {entry.version}: {entry.reason}"
        mlc.create_model_version(
            name, f"ganops-ledger:/{model_name}", tags={ENTRY_TAG: canonical(asdict(entry))}, description=summary[:1000]
        )  # the full reason is in the entry
        if any(e.hash == entry.hash for e in load_chain(mlc, model_name).entries):
            return entry
    raise RegistryError(
        f"could not append to the promotion ledger of {model_name}: {APPEND_ATTEMPTS} appends in a row lost the race to other writers"
    )


def format_history(entries: list[Entry]) -> str:
    """The entries newest first, one block each: what moved, who, when, why."""
    if not entries:
        return "no promotion ledger entries yet"
    blocks = []
    for e in reversed(entries):
        moved = (
            ", ".join(
                f"{alias} {e.aliases_before.get(alias, '-')} -> {e.aliases_after.get(alias, '-')}"
                for alias in sorted(set(e.aliases_before) | set(e.aliases_after))
                if e.aliases_before.get(alias) != e.aliases_after.get(alias)
            )
            or "no alias moved"
        )
        rules = "".join(f"\n       {'pass' if r.get('passed') else 'FAIL'} {r.get('name')}: {r.get('message', '')}" for r in e.rules)
        blocks.append(
            f"#{e.seq}  {e.time}  {e.action:<17} version {e.version:<4} by {e.actor}\n"
            f"     {moved}\n     reason: {e.reason}"
            + (f"\n     run {e.run_id}" if e.run_id else "")
            + (f"\n     rules:{rules}" if rules else "")
        )
    return "\n".join(blocks)

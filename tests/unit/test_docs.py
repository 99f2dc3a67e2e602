"""The docs cannot drift: the generated reference pages match the code and cover every command, config key, gate
rule and audit link (expected sets from the app, the models and the registries), and every relative link and anchor
in the README and docs/ resolves."""

import inspect
import re
from pathlib import Path
from typing import Literal, get_args, get_origin
from urllib.parse import unquote

import pytest
import typer
from pydantic import BaseModel

from components.config import RetrainConfig
from components.lineage.audit import LINK_DESCRIPTIONS, LINKS
from components.promotion.rules import RULES
from flows.cli import app
from flows.reference import AUDIT_LINKS, COMMANDS, CONFIGURATION, GATE_RULES, REFERENCE_DIR, render_pages

REPO = Path(__file__).resolve().parents[2]
PAGES = render_pages()


def page(name: str) -> str:
    return PAGES[f"{REFERENCE_DIR}/{name}"]


@pytest.mark.parametrize("rel", sorted(PAGES))
def test_generated_pages_are_up_to_date(rel):
    path = REPO / rel
    assert path.is_file(), f"{rel} is missing: run `make docs`"
    assert path.read_text(encoding="utf-8") == PAGES[rel], f"{rel} is stale (the code changed): run `make docs`"


def _commands(command, path: str):
    """(full command path, command) for the app and every command below it."""
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        if not sub.hidden:
            yield from _commands(sub, f"{path} {name}")


def _section(text: str, heading: str) -> str:
    """The text under `## heading` up to the next `## `."""
    start = text.index(f"## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else len(text)]


def test_every_command_and_option_is_in_the_command_reference():
    commands = list(_commands(typer.main.get_command(app), "ganops"))
    assert len(commands) > 1
    for path, command in commands:
        assert f"## `{path}`\n" in page(COMMANDS), f"command {path} is missing from {COMMANDS}"
        section = _section(page(COMMANDS), f"`{path}`")
        for param in command.params:
            flags = [*param.opts, *param.secondary_opts] if param.param_type_name == "option" else [param.name.upper()]
            for flag in flags:
                assert f"`{flag}`" in section, f"{path}: {flag} is missing from {COMMANDS}"


def _config_keys(model: type[BaseModel], prefix: str = ""):
    """(dotted key, field) for every leaf key of the config."""
    for name, field in model.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            yield from _config_keys(field.annotation, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", field


def _row(text: str, first_cell: str) -> list[str]:
    line = next((line for line in text.splitlines() if line.startswith(f"| {first_cell} |")), None)
    assert line is not None, f"{first_cell} is missing"
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]]


def test_every_config_key_is_in_the_configuration_reference_with_a_meaning():
    keys = list(_config_keys(RetrainConfig))
    assert {"validation.drift", "train.arch", "gate.rules"} <= {key for key, _ in keys}
    for key, field in keys:
        cells = _row(page(CONFIGURATION), f"`{key}`")
        assert cells[3], f"config key {key} has no meaning: give it Field(description=...) in components/config.py"
        if get_origin(field.annotation) is Literal:  # registry-backed keys (arch, loss, optimizer, gate.metric) too
            assert all(f"`{value}`" in cells[1] for value in get_args(field.annotation)), key
    rules_row = _row(page(CONFIGURATION), "`gate.rules`")
    assert all(f"`{name}`" in rules_row[3] for name in RULES)


def test_every_gate_rule_is_in_the_gate_rule_reference():
    for name in RULES:
        assert RULES[name].__doc__, f"gate rule {name} has no docstring to describe it"
        section = _section(page(GATE_RULES), f"`{name}`")
        for param in list(inspect.signature(RULES[name]).parameters)[1:]:
            assert f"`{param}`" in section, f"{name}: parameter {param} is missing from {GATE_RULES}"


def test_every_audit_link_is_in_the_audit_reference():
    assert set(LINK_DESCRIPTIONS) == set(LINKS), "every audit link needs one line in LINK_DESCRIPTIONS"
    for number, name in enumerate(LINKS, 1):
        assert _row(page(AUDIT_LINKS), str(number))[1] == f"`{name}`"


# The link checker.

FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?([^\s>]+)>?")
HTML_LINK = re.compile(r"<(?:a|img)\b[^>]*?\b(?:href|src)=\"([^\"]*)\"", re.IGNORECASE)
HTML_ANCHOR = re.compile(r"<a\b[^>]*?\b(?:name|id)=\"([^\"]*)\"", re.IGNORECASE)
EXTERNAL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def _prose_lines(text: str):
    """(line number, line) outside fenced code blocks, with inline code spans removed."""
    fenced = False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield number, re.sub(r"(`+).*?\1", "", line)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text lowercased, punctuation but '-' and '_' dropped, spaces to '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link shows its text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").replace("*", "").strip().lower()
    return "".join(c for c in text if c.isalnum() or c in "-_ ").replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every anchor a page defines: heading slugs (the n-th repeat gets -n) and explicit <a name/id>."""
    seen: dict[str, int] = {}
    out: set[str] = set()
    fenced, previous = False, ""
    for line in text.splitlines():
        if FENCE.match(line):
            fenced, previous = not fenced, ""
            continue
        if fenced:
            continue
        atx = re.match(r"^ {0,3}#{1,6}\s+(.*?)(?:\s+#+)?\s*$", line)
        setext = previous.strip() and not previous.lstrip().startswith(("#", "|", "-", "*", ">")) and re.match(r"^ {0,3}(=+|-+)\s*$", line)
        heading = atx.group(1) if atx else previous if setext else None
        if heading is not None:
            base = slug(heading)
            count = seen.get(base, 0)
            seen[base] = count + 1
            out.add(base if count == 0 else f"{base}-{count}")
        out.update(HTML_ANCHOR.findall(line))
        previous = line
    return out


def link_targets(text: str):
    """(line number, target) of every link and image in the prose."""
    for number, line in _prose_lines(text):
        for pattern in (INLINE_LINK, REFERENCE_LINK, HTML_LINK):
            yield from ((number, target) for target in pattern.findall(line))


def broken_links(files: list[Path], root: Path) -> list[str]:
    """'file:line target (why)' for each relative link whose file is missing or whose #anchor no heading has;
    external links (http:, https:, mailto:) are not fetched."""
    broken = []
    for file in files:
        text = file.read_text(encoding="utf-8")
        for number, target in link_targets(text):
            if not target or EXTERNAL.match(target):
                continue
            path, _, anchor = target.partition("#")
            path = unquote(path.split("?")[0])
            dest = file if not path else (root / path.lstrip("/")) if path.startswith("/") else file.parent / path
            where = f"{file.relative_to(root)}:{number} {target}"
            if not dest.exists():
                broken.append(f"{where} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest.read_text(encoding="utf-8")):
                broken.append(f"{where} (no heading with anchor #{anchor})")
    return broken


def doc_files(root: Path) -> list[Path]:
    return sorted([root / "README.md", *(root / "docs").rglob("*.md")])


def test_links_in_the_readme_and_docs_resolve():
    files = doc_files(REPO)
    assert REPO / "README.md" in files and any(f.is_relative_to(REPO / REFERENCE_DIR) for f in files)
    broken = broken_links(files, REPO)
    assert not broken, "broken links (fix the link or the heading it names):\n" + "\n".join(broken)


@pytest.mark.parametrize(
    "heading,expected",
    [
        ("Quick start", "quick-start"),
        ("`ganops data import`", "ganops-data-import"),
        ("Gate rules: `relative_ceiling`", "gate-rules-relative_ceiling"),
        ("What's new (v2)?", "whats-new-v2"),
        ("[Serving](serving.md) & export", "serving--export"),
        ("**Bold** heading", "bold-heading"),
    ],
)
def test_slug_follows_github(heading, expected):
    assert slug(heading) == expected


def test_the_link_checker_catches_broken_links_and_anchors(tmp_path):
    # A test that cannot fail is a defect: planted broken links are reported, the good ones are not.
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "page.md").write_text('# Page\n\n## Setup\n\n## Setup\n\nSub\n---\n<a name="here"></a>\n')
    (tmp_path / "README.md").write_text(
        "# Title\n\n## Two words\n\n"
        "[ok](docs/page.md) [ok](docs/page.md#setup) [ok](docs/page.md#setup-1) [ok](docs/page.md#sub) "
        "[ok](docs/page.md#here) [ok](#two-words) [ok](<docs/page.md>) [ok](https://example.com/x.md#nope)\n"
        "[gone](docs/missing.md)\n"
        "![gone](docs/missing.png)\n"
        "[bad anchor](docs/page.md#setup-2)\n"
        "[bad in-page](#three-words)\n"
        "[ref]: docs/also-missing.md\n"
        "`[code](docs/not-a-link.md)`\n"
        "```\n[fenced](docs/not-a-link.md)\n# not a heading\n```\n"
    )
    assert broken_links(doc_files(tmp_path), tmp_path) == [
        "README.md:6 docs/missing.md (no such file)",
        "README.md:7 docs/missing.png (no such file)",
        "README.md:8 docs/page.md#setup-2 (no heading with anchor #setup-2)",
        "README.md:9 #three-words (no heading with anchor #three-words)",
        "README.md:10 docs/also-missing.md (no such file)",
    ]

"""Config text to plain values: YAML read with the 1.2 schema, and `key.path=value` overrides.

YAML 1.1 (PyYAML's default) reads `off`, `on`, `yes` and `no` as booleans, so `--set validation.drift=off` or
`drift: off` in a preset could never give the string the field asks for; here only true/false are booleans and the
target field's type decides (a strict bool field refuses `yes`, naming the key).
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from pydantic import ValidationError, field_validator

from components.core.errors import ConfigError, GanopsError
from components.core.paths import check_path_name


class _Yaml12Loader(yaml.SafeLoader):
    """PyYAML's safe loader with the YAML 1.2 core schema's booleans (true/false only) and floats (`1e-3` too)."""


_BOOL = "tag:yaml.org,2002:bool"
_Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != _BOOL] for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
_FLOAT_1_2 = re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$")  # tried after int
_Yaml12Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_1_2, list("-+.0123456789"))


def read_yaml(text: str) -> Any:
    """Parse config YAML (a preset file or an override's value) with YAML 1.2 booleans and floats; raises
    yaml.YAMLError."""
    return yaml.load(text, Loader=_Yaml12Loader)  # safe: a SafeLoader subclass


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split 'train.steps=100' into (['train', 'steps'], 100); the value is parsed as YAML 1.2 (`off` stays a
    string, true/false are booleans), so the target field's type decides. Raises ConfigError."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.path=value")
    key, raw = text.split("=", 1)
    if not key.strip():
        raise ConfigError(f"override {text!r} has an empty key")
    try:
        return key.strip().split("."), read_yaml(raw)
    except yaml.YAMLError as e:
        raise ConfigError(f"override {text!r}: the value is not valid YAML: {e}") from None


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Return a copy of `raw` with each 'key.path=value' override set."""
    out = _deep_copy(raw)
    for text in overrides:
        path, value = parse_override(text)
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {text!r}: {part} is not a section")
        node[path[-1]] = value
    return out


def _deep_copy(d: dict) -> dict:
    return {k: _deep_copy(v) if isinstance(v, dict) else v for k, v in d.items()}


def format_validation_error(source: str, err: ValidationError) -> str:
    """One line naming each bad key and its rule: 'invalid config SOURCE: train.steps: Input should be ...'."""
    parts = []
    for e in err.errors():
        key = ".".join(str(x) for x in e["loc"]) or "<root>"
        msg = e["msg"].removeprefix("Value error, ")
        parts.append(msg if msg.startswith(f"{key}.") else f"{key}: {msg}")
    return f"invalid config {source}: " + "; ".join(parts)


def checked(key: str, rule):
    """A field validator applying `rule(value, key)` (which raises GanopsError) to the field `key` names."""

    def check(value: str) -> str:
        try:
            return rule(value, key)
        except GanopsError as e:
            raise ValueError(str(e)) from None

    return field_validator(key.rpartition(".")[2])(lambda cls, value: check(value))


def path_name(key: str):
    """A validator for a name that becomes a folder (no separators, no '..', not hidden)."""
    return checked(key, check_path_name)

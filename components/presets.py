"""Reading a config: a preset name (`configs/<name>.yaml`) or a YAML file, `key.path=value` overrides applied,
validated as the typed RetrainConfig. A bad value raises ConfigError naming the file, the key and the rule."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError

from components.config import DEFAULT_PRESET, RetrainConfig, export_root
from components.core.config_text import apply_overrides, format_validation_error, read_yaml
from components.core.errors import ConfigError
from components.core.paths import PRESETS_DIR, check_writable


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def resolve_config_source(name_or_path: str | None) -> Path:
    """A preset name (`digits`, `smoke`) or a YAML path -> the file to read."""
    name_or_path = name_or_path or DEFAULT_PRESET
    path = Path(name_or_path)
    if path.is_dir():
        raise ConfigError(f"config {path} is a folder: pass a preset name ({', '.join(preset_names())}) or a YAML file")
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        return path
    preset = PRESETS_DIR / f"{name_or_path}.yaml"
    if not preset.is_file():
        raise ConfigError(f"unknown preset {name_or_path!r}; presets: {', '.join(preset_names())}, or pass a YAML path")
    return preset


def load_config(name_or_path: str | None = None, overrides: list[str] | None = None) -> RetrainConfig:
    """Read a preset or YAML file, apply overrides and validate. Raises ConfigError."""
    source = resolve_config_source(name_or_path)
    try:
        raw = read_yaml(source.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"config file {source} is not valid YAML text: {e}") from None
    if raw is None:
        raise ConfigError(f"config file {source} is empty: it must hold a mapping of sections (see configs/ for the presets)")
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {source} must hold a mapping at the top level")
    shown = " ".join(overrides or [])
    label = f"{source} with --set {shown if len(shown) <= 200 else shown[:200] + '...'}" if overrides else str(source)
    return config_from_dict(apply_overrides(raw, overrides or []), source=label)


def config_from_dict(raw: dict, source: str = "<dict>") -> RetrainConfig:
    """Validate a plain dict (YAML or JSON) as the config. Raises ConfigError naming each bad key."""
    try:
        return RetrainConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(format_validation_error(source, e)) from None


def check_output_paths(config: RetrainConfig, project_dir: Path) -> RetrainConfig:
    """`config` when the folders a run writes outside the state folder can be written (the export root: export.dir,
    relative to the project); raises ConfigError naming the key at once, not after training."""
    check_writable(export_root(config, project_dir), "export.dir" if config.export.dir else "the export folder (<state dir>/exports)")
    return config

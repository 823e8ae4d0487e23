"""Named recipes: YAML files in tinygpt/presets/, one per system we reproduce or recommend.

Each file has a one-line `description`, what it `reproduces` (the published number), what to
`expect` from tinygpt, what it `measured` when benchmarks/reproduce.py last trained it, and the
`settings` it sets (any setting of `tinygpt train --help`).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import yaml

from ..core.errors import TinyGPTError


def _preset_files() -> dict[str, object]:
    folder = resources.files("tinygpt").joinpath("presets")
    return {f.name[: -len(".yaml")]: f for f in folder.iterdir() if f.name.endswith(".yaml")}


def preset_names() -> list[str]:
    return sorted(_preset_files())


def load_preset(name: str) -> dict:
    """The whole preset document: description, reproduces, expect, settings."""
    files = _preset_files()
    if name not in files:
        raise TinyGPTError(f"unknown preset {name!r}; choose one of: {', '.join(sorted(files))} "
                           "(`tinygpt presets` describes them)")
    doc = yaml.safe_load(files[name].read_text(encoding="utf-8"))
    doc.setdefault("settings", {})
    return doc


def load_yaml_settings(path: str | Path) -> dict:
    """Settings from a user's YAML file: either flat, or under a `settings:` key like a preset."""
    path = Path(path)
    if not path.is_file():
        raise TinyGPTError(f"config file {path} does not exist")
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise TinyGPTError(f"config file {path} is not valid YAML ({str(e).splitlines()[0]})") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise TinyGPTError(f"config file {path} must be a mapping of setting: value")
    settings = doc.get("settings", doc)
    if not isinstance(settings, dict):
        raise TinyGPTError(f"config file {path}: `settings` must be a mapping of setting: value")
    return {k: v for k, v in settings.items() if k not in ("description", "reproduces", "expect", "measured")}

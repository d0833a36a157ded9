"""`sioplay.toml` (or `[tool.sioplay]` in `pyproject.toml`): a host's part of the cluster, in a file.

Every key is the name of a :class:`~sioplay.settings.Settings` field (``SIOPLAY_PUBLIC_PORT`` is
``public_port``; ``-`` may stand for ``_``), plus ``nodes`` for ``cluster start``. The keys come from the
dataclass itself, so a field added to Settings is a key here without touching this module. A key that
is no setting, or a value of the wrong type, is an error naming the key and the file. Relative paths
are relative to the file. Settings from the file are the defaults that ``SIOPLAY_*`` variables and
command-line options override.
"""

from __future__ import annotations

import dataclasses
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sioplay.common.units import parse_bytes
from sioplay.errors import ConfigError
from sioplay.settings import Settings

__all__ = ["CONFIG_NAME", "ConfigFile", "find_config", "read_config"]

CONFIG_NAME = "sioplay.toml"
_NODES = "nodes"


@dataclasses.dataclass(frozen=True, slots=True)
class ConfigFile:
    path: Path | None
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    nodes: int | None = None


def find_config(directory: Path) -> tuple[Path, bool] | None:
    """`sioplay.toml` in `directory`, else its `pyproject.toml` if that has a [tool.sioplay] table.

    The flag says whether the settings sit under [tool.sioplay].
    """
    own = directory / CONFIG_NAME
    if own.is_file():
        return own, False
    project = directory / "pyproject.toml"
    if project.is_file() and b"[tool.sioplay]" in project.read_bytes():
        return project, True
    return None


def read_config(path: Path | None, directory: Path | None = None) -> ConfigFile:
    """The config of `path` (--config), else the one found in `directory` (the current one), else none."""
    in_pyproject = False
    if path is None:
        found = find_config(directory or Path.cwd())
        if found is None:
            return ConfigFile(None)
        path, in_pyproject = found
    elif path.name == "pyproject.toml":
        in_pyproject = True
    try:
        table: Any = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"no config file {path}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    if in_pyproject:
        table = table.get("tool", {}).get("sioplay", {})
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: [tool.sioplay] must be a table")
    return _parse(table, path)


def _parse(table: Mapping[str, Any], path: Path) -> ConfigFile:
    fields = {field.name: field for field in dataclasses.fields(Settings)}
    hints = typing.get_type_hints(Settings)
    settings: dict[str, Any] = {}
    nodes: int | None = None
    for raw_key, value in table.items():
        key = raw_key.replace("-", "_")
        if key == _NODES:
            if type(value) is not int or value < 1:
                raise ConfigError(f"{path}: nodes must be a whole number of at least 1, not {value!r}")
            nodes = value
            continue
        if key not in fields:
            raise ConfigError(f"{path}: unknown key {raw_key!r} (the keys are Settings' field names and 'nodes')")
        settings[key] = _value(key, hints[key], value, path)
    return ConfigFile(path, settings, nodes)


def _value(key: str, hint: Any, value: Any, path: Path) -> Any:
    """`value` as the field's type; TOML has no null, so `X | None` takes an X."""
    kinds = [kind for kind in typing.get_args(hint) if kind is not type(None)] if typing.get_args(hint) else [hint]
    kind = kinds[0] if len(kinds) == 1 else hint
    if kind is bool and type(value) is bool:
        return value
    if kind is int and type(value) is int:
        return value
    if kind is int and key.endswith("_bytes") and isinstance(value, str):
        return parse_bytes(value)
    if kind is float and type(value) in (int, float):
        return float(value)
    if kind is str and isinstance(value, str):
        return value
    if kind is Path and isinstance(value, str):
        return (path.parent / Path(value).expanduser()).resolve()
    if typing.get_origin(kind) is tuple and isinstance(value, list) and all(isinstance(item, str) for item in value):
        return tuple(value)
    expected = getattr(kind, "__name__", str(kind))
    if typing.get_origin(kind) is tuple:
        expected = "a list of strings"
    elif key.endswith("_bytes"):
        expected = "int or a size such as '200MB'"
    raise ConfigError(f"{path}: {key} must be {expected}, not {type(value).__name__} {value!r}")

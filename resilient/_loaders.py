"""Reading configuration files: JSON and TOML into plain data, with located syntax errors."""

from __future__ import annotations

import os
from typing import Any, Literal

from ._errors import ConfigError

__all__ = ["Format", "load_config", "parse_config"]

Format = Literal["json", "toml"]


def parse_config(text: str, format: Format = "json", *, source: str = "<config>") -> Any:
    """Parse configuration *text* (JSON or TOML) into plain data.

    Args:
        text: The text.
        format: ``"json"`` or ``"toml"``.
        source: Named in error messages (a file name).

    Returns:
        The data: for a registry, a mapping of keys to pipelines.

    Raises:
        ConfigError: The text does not parse (the message has the line).
        ValueError: *format* is neither ``"json"`` nor ``"toml"``.
    """
    if format == "json":
        import json

        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{source}: line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    if format == "toml":
        import tomllib

        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{source}: {exc}") from None
    raise ValueError(f"format must be 'json' or 'toml', got {format!r}")


def load_config(path: str | os.PathLike[str]) -> Any:
    """Read a configuration file: ``.json`` or ``.toml`` (by its suffix).

    Args:
        path: The file.

    Returns:
        Its data, for :class:`~resilient.Registry` or :func:`pipeline_from_config`.

    Raises:
        ConfigError: The file does not parse (the message names it, with the line).
        ValueError: The suffix is neither ``.json`` nor ``.toml``.
        OSError: The file cannot be read.
    """
    from pathlib import Path

    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in (".json", ".toml"):
        raise ValueError(f"path must end in .json or .toml, got {str(path)!r}")
    fmt: Format = "json" if suffix == ".json" else "toml"
    return parse_config(p.read_text(encoding="utf-8"), fmt, source=str(path))

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
        ConfigError: The text does not parse (the message has the line), is
            nested too deeply to read, or holds a number of more digits than
            Python converts.
        ValueError: *format* is neither ``"json"`` nor ``"toml"``.
    """
    if format == "json":
        import json

        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{source}: line {exc.lineno} column {exc.colno}: {exc.msg}") from None
        except RecursionError:
            raise ConfigError(f"{source}: {_TOO_DEEP}") from None
        except ValueError as exc:  # a number of more digits than int() converts
            raise ConfigError(f"{source}: {exc}") from None
    if format == "toml":
        import tomllib

        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{source}: {exc}") from None
        except RecursionError:
            raise ConfigError(f"{source}: {_TOO_DEEP}") from None
        except ValueError as exc:  # a number of more digits than int() converts
            raise ConfigError(f"{source}: {exc}") from None
    raise ValueError(f"format must be 'json' or 'toml', got {format!r}")


# Both parsers recurse once per level of nesting: a hostile file exhausts the stack.
_TOO_DEEP = "nested too deeply to read (arrays or tables inside each other, hundreds of levels down)"


def load_config(path: str | os.PathLike[str]) -> Any:
    """Read a configuration file: ``.json`` or ``.toml`` (by its suffix).

    Args:
        path: The file.

    Returns:
        Its data, for :class:`~resilient.Registry` or :func:`pipeline_from_config`.

    Raises:
        ConfigError: The file does not parse, or is not UTF-8 (the message
            names it, with the line).
        ValueError: The suffix is neither ``.json`` nor ``.toml``.
        OSError: The file cannot be read.
    """
    from pathlib import Path

    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in (".json", ".toml"):
        raise ValueError(f"path must end in .json or .toml, got {str(path)!r}")
    fmt: Format = "json" if suffix == ".json" else "toml"
    data = p.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            f"{path}: not UTF-8 text (line {line}, byte {exc.start}: {data[exc.start : exc.end]!r})"
        ) from None
    return parse_config(text, fmt, source=str(path))

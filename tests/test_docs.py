"""The documentation's code runs: every python block, every include, every doctest.

Conventions for Markdown under ``docs/`` and ``README.md``:

- Every fenced block tagged ``python`` (or ``py``) is a complete program. It is
  executed here, top to bottom, as a fresh ``__main__`` module, with warnings
  as errors. Use ``asyncio.run(...)`` for async code and ``FakeClock`` or
  ``set_testing`` instead of real waits.
- A python block whose lines include ``--8<-- "examples/name.py"`` (optionally
  ``"examples/name.py:section"``) is a pymdownx.snippets include: it is not
  executed here (``tests/test_examples.py`` runs the file); the file, and the
  section's ``# --8<-- [start:section]`` / ``[end:section]`` markers, must exist.
- A block preceded by the HTML comment ``<!-- no-test -->`` (on the line
  before the fence, blank lines allowed in between) is skipped. Use it for
  code that is not ours to run: the "before" side of a migration guide. Code
  of other libraries is better still in a ``text`` block.
"""

from __future__ import annotations

import doctest
import importlib
import inspect
import logging
import pkgutil
import re
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import pytest

import resilient

ROOT = Path(__file__).resolve().parent.parent
NO_TEST = "<!-- no-test -->"
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^\s`{]*)")
INCLUDE = re.compile(r'^\s*-{2}8<-{2}\s+"(?P<target>[^"]+)"\s*$')
PYTHON_TAGS = {"python", "py", "python3"}


@dataclass(frozen=True)
class Block:
    """One fenced code block of a Markdown file."""

    path: Path
    line: int  # 1-based line of the opening fence
    info: str
    code: str
    skipped: bool

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT).as_posix()}:{self.line}"

    @property
    def includes(self) -> list[str]:
        return [m["target"] for m in map(INCLUDE.match, self.code.splitlines()) if m]


def parse_blocks(path: Path) -> list[Block]:
    """Return the fenced code blocks of *path*, indented ones (admonitions, tabs) included."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if m is None:
            i += 1
            continue
        indent, fence, info = m["indent"], m["fence"], m["info"].lower()
        j = i - 1
        while j >= 0 and not lines[j].strip():
            j -= 1
        skipped = j >= 0 and lines[j].strip() == NO_TEST
        body: list[str] = []
        k = i + 1
        while k < len(lines):
            stripped = lines[k].strip()
            if stripped.startswith(fence[0] * len(fence)) and not stripped.strip(fence[0]):
                break
            body.append(lines[k][len(indent) :] if lines[k].startswith(indent) else lines[k].lstrip())
            k += 1
        else:
            raise AssertionError(f"{path}:{i + 1}: unclosed code fence")
        blocks.append(Block(path, i + 1, info, "\n".join(body) + "\n", skipped))
        i = k + 1
    return blocks


def markdown_files() -> list[Path]:
    """The Markdown whose code this test checks: docs/ (recursively) and README.md."""
    files = sorted((ROOT / "docs").rglob("*.md"))
    readme = ROOT / "README.md"
    return [*files, readme] if readme.exists() else files


ALL_BLOCKS = [b for p in markdown_files() for b in parse_blocks(p)]
PYTHON_BLOCKS = [b for b in ALL_BLOCKS if b.info in PYTHON_TAGS and not b.skipped and not b.includes]
INCLUDE_BLOCKS = [b for b in ALL_BLOCKS if b.includes]


@pytest.mark.parametrize("block", PYTHON_BLOCKS, ids=lambda b: b.id)
def test_python_block_runs(block: Block, monkeypatch: pytest.MonkeyPatch) -> None:
    """The python block runs to completion as a program of its own."""
    module = types.ModuleType("__main__")
    module.__file__ = str(block.path)
    monkeypatch.setitem(sys.modules, "__main__", module)
    code = compile(block.code, f"{block.id}", "exec")
    # A block is a program of its own: logging levels it sets must not leak
    # into the tests that run after it.
    names = list(logging.root.manager.loggerDict)
    loggers = [logging.getLogger(), *(logging.getLogger(n) for n in names)]
    levels = [(lg, lg.level, lg.disabled, list(lg.handlers)) for lg in loggers]
    try:
        exec(code, module.__dict__)
    finally:
        for lg, level, disabled, handlers in levels:
            lg.setLevel(level)
            lg.disabled = disabled
            lg.handlers[:] = handlers


def _section_markers(text: str, section: str) -> tuple[int, int]:
    start = text.count(f"--8<-- [start:{section}]")
    end = text.count(f"--8<-- [end:{section}]")
    return start, end


@pytest.mark.parametrize("block", INCLUDE_BLOCKS, ids=lambda b: b.id)
def test_include_points_to_existing_file(block: Block) -> None:
    """Every --8<-- include names a file (and section) that exists."""
    for target in block.includes:
        name, _, section = target.partition(":")
        path = ROOT / name
        assert path.is_file(), f"{block.id}: included file {name} does not exist"
        if section:
            assert _section_markers(path.read_text(encoding="utf-8"), section) == (1, 1), (
                f"{block.id}: {name} needs exactly one [start:{section}] and one [end:{section}] marker"
            )


def test_docs_have_python_blocks() -> None:
    """The block extraction finds code at all (a parser bug must not pass silently)."""
    assert len(PYTHON_BLOCKS) >= 10
    assert INCLUDE_BLOCKS


def test_parser_handles_indented_and_skipped_blocks(tmp_path: Path) -> None:
    """Blocks inside admonitions are dedented, and a no-test marker skips the next block."""
    page = tmp_path / "page.md"
    page.write_text(
        "!!! note\n    ```python\n    x = 1\n    ```\n\n"
        "<!-- no-test -->\n\n```python\nraise SystemExit\n```\n",
        encoding="utf-8",
    )
    blocks = parse_blocks(page)
    assert [(b.code, b.skipped) for b in blocks] == [("x = 1\n", False), ("raise SystemExit\n", True)]


def _public_modules() -> list[str]:
    names = [resilient.__name__]
    for info in pkgutil.walk_packages(resilient.__path__, prefix="resilient."):
        names.append(info.name)
    return names


@pytest.mark.parametrize("name", _public_modules())
def test_module_doctests_pass(name: str) -> None:
    """Every ``>>>`` example in the package's docstrings passes."""
    try:
        module = importlib.import_module(name)
    except ImportError as exc:  # an adapter whose optional dependency is missing
        pytest.skip(f"{name}: {exc}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0


def _public_module_names() -> list[str]:
    """Modules a user imports: the package and every submodule without a leading underscore."""
    return [n for n in _public_modules() if not any(part.startswith("_") for part in n.split("."))]


def _undocumented(module_name: str) -> list[str]:
    module = importlib.import_module(module_name)
    missing: list[str] = []
    for name in getattr(module, "__all__", ()):
        obj = getattr(module, name)
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue  # constants and re-exported modules carry no docstring of their own
        if not (obj.__doc__ or "").strip():
            missing.append(f"{module_name}.{name}")
        if not inspect.isclass(obj):
            continue
        for attr, value in vars(obj).items():
            if attr.startswith("_"):
                continue
            if isinstance(value, (staticmethod, classmethod)):
                value = value.__func__
            documentable = isinstance(value, property) or inspect.isfunction(value)
            if documentable and not (value.__doc__ or "").strip():
                missing.append(f"{module_name}.{name}.{attr}")
    return missing


@pytest.mark.parametrize("name", _public_module_names())
def test_public_names_have_docstrings(name: str) -> None:
    """Every name in a public module's __all__, and its public methods and properties, has a docstring.

    Classes live in private modules (``resilient._retry``), where pydocstyle
    does not look; the Args/Returns/Raises sections are checked by ruff's D
    and DOC rules in CI.
    """
    try:
        missing = _undocumented(name)
    except ImportError as exc:  # an adapter whose optional dependency is missing
        pytest.skip(f"{name}: {exc}")
    assert missing == []

"""The distribution: a name users can install, its extras, its license, no invented URLs.

The import name is ``resilient``; the distribution name is
``resilient-policies``, because ``resilient`` on the package index is an
unrelated project (IBM's SOAR client, which also installs a top-level
``resilient`` package). Every install hint must name ours.
"""

from __future__ import annotations

import importlib
import re
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
DIST = "resilient-policies"
EXTRAS: dict[str, list[str]] = PYPROJECT["project"]["optional-dependencies"]
INTEGRATIONS = ("prometheus", "otel", "structlog", "redis")

# `pip install resilient`, `pip install -U resilient[...]`, or an extra spelled `resilient[...]`.
TAKEN_NAME = re.compile(r"pip install\s+(?:-\S+\s+)*['\"]?resilient(?![\w-])|(?<![\w./-])resilient\[")


def _requirement_name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
    assert match is not None, requirement
    return match.group().lower().replace("_", "-")


def _user_facing_files() -> list[Path]:
    files = [ROOT / "README.md", ROOT / "CHANGELOG.md", ROOT / "pyproject.toml", ROOT / "tox.ini"]
    files += sorted((ROOT / "docs").rglob("*.md"))
    files += sorted((ROOT / "resilient").rglob("*.py"))
    files += sorted((ROOT / "examples").glob("*.py"))
    return files


def test_distribution_name_is_ours() -> None:
    """The project is published as resilient-policies, not under the taken name."""
    assert PYPROJECT["project"]["name"] == DIST


@pytest.mark.parametrize("path", _user_facing_files(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_install_hint_names_the_taken_distribution(path: Path) -> None:
    """No README line, docs page, module, example or changelog entry says `pip install resilient[...]`."""
    text = path.read_text(encoding="utf-8")
    hits = [f"{text.count(chr(10), 0, m.start()) + 1}: {m.group()}" for m in TAKEN_NAME.finditer(text)]
    assert hits == []


def test_self_referencing_extras_name_this_distribution() -> None:
    """An extra that pulls in other extras refers to resilient-policies, never to `resilient`."""
    names = {_requirement_name(r) for reqs in EXTRAS.values() for r in reqs}
    assert "resilient" not in names
    assert {r for r in EXTRAS["dev"] if _requirement_name(r) == DIST} == {f"{DIST}[tests,lint,docs]"}


def test_all_extra_holds_every_integration() -> None:
    """`all` installs what every optional integration needs."""
    wanted = {r for extra in INTEGRATIONS for r in EXTRAS[extra]}
    assert wanted <= set(EXTRAS["all"])


def test_tests_extra_can_run_every_example_and_integration() -> None:
    """The tests extra includes the `all` and `examples` extras, so the suite runs every example for real."""
    assert set(EXTRAS["all"]) | set(EXTRAS["examples"]) <= set(EXTRAS["tests"])


def test_license_is_mit_and_ships() -> None:
    """LICENSE holds the MIT text, and both the wheel and the sdist take it."""
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License\n")
    assert "Copyright (c) 2026 The resilient developers" in text
    assert PYPROJECT["project"]["license"] == "MIT"
    assert PYPROJECT["project"]["license-files"] == ["LICENSE"]
    assert "LICENSE" in PYPROJECT["tool"]["hatch"]["build"]["targets"]["sdist"]["include"]


def test_no_invented_project_urls() -> None:
    """Neither the package metadata nor the docs site points at a host or repository that does not exist."""
    assert "urls" not in PYPROJECT["project"]
    mkdocs = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    assert re.findall(r"^(?:site_url|repo_url|repo_name|edit_uri):.*$", mkdocs, re.MULTILINE) == []


def test_redis_backend_hint_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without redis, importing the Redis backend says which extra of this distribution installs it."""
    monkeypatch.setitem(sys.modules, "redis", None)
    for name in [n for n in sys.modules if n.startswith("resilient.backends.redis")]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(ImportError, match=re.escape(f"pip install '{DIST}[redis]'")):
        importlib.import_module("resilient.backends.redis")

"""The API reference: one page per area, every public name on one of them, roles rendered.

``docs/reference/*.md`` hold mkdocstrings directives (``::: resilient.retry``,
or ``::: resilient.events`` with an optional ``members:`` list). This test
reads them as text, so it runs without the docs extra; the role rewriting is
tested where Griffe is installed (the docs extra).
"""

from __future__ import annotations

import importlib
import importlib.util
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted((ROOT / "docs" / "reference").glob("*.md"))
DIRECTIVE = re.compile(r"^::: (?P<path>[\w.]+)\n(?P<options>(?:[ \t]+.*\n|\n)*)", re.MULTILINE)
# Modules whose __all__ is public API (adapters import their optional dependency lazily).
PUBLIC_MODULES = (
    "resilient",
    "resilient.events",
    "resilient.testing",
    "resilient.backoff",
    "resilient.http",
    "resilient.chaos",
    "resilient.backends",
    "resilient.backends.redis",
    "resilient.adapters",
    "resilient.adapters.logging",
    "resilient.adapters.structlog",
    "resilient.adapters.prometheus",
    "resilient.adapters.opentelemetry",
)


def _documented() -> dict[str, str]:
    """Map each documented dotted name to the page that renders it."""
    found: dict[str, str] = {}
    for page in PAGES:
        for m in DIRECTIVE.finditer(page.read_text(encoding="utf-8")):
            path, options = m["path"], m["options"]
            members = re.findall(r"^\s+- (\w+)\s*$", options, re.MULTILINE) if "members:" in options else []
            found[path] = page.name
            module = importlib.import_module(path) if _is_module(path) else None
            names = members or (list(getattr(module, "__all__", ())) if module else [])
            for name in names:
                found[f"{path}.{name}"] = page.name
    return found


def _is_module(path: str) -> bool:
    try:
        importlib.import_module(path)
    except ImportError:
        return False
    return True


def _public_names() -> list[str]:
    names = []
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            if name == "__version__" or isinstance(getattr(module, name), ModuleType):
                continue
            names.append(f"{module_name}.{name}")
    return names


def test_reference_is_split_by_area() -> None:
    """The reference is several pages, not one, and mkdocs.yml lists each of them."""
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    assert len(PAGES) >= 8
    assert [p.name for p in PAGES if f"reference/{p.name}" not in nav] == []


@pytest.mark.parametrize("name", _public_names())
def test_public_name_is_on_a_reference_page(name: str) -> None:
    """Every name in a public module's __all__ is rendered on some reference page."""
    # `resilient.subscribe` is rendered as `resilient.events.subscribe`: the same object counts.
    rendered = {id(_object(path)) for path in _documented()}
    assert id(_object(name)) in rendered, f"{name} is on no page of docs/reference/"


def _object(path: str) -> object:
    if _is_module(path):
        return importlib.import_module(path)
    module, _, attr = path.rpartition(".")
    return getattr(_object(module), attr)


def test_policies_page_opens_on_the_factories() -> None:
    """The policies page starts with the public factories; layer internals live on their own page."""
    text = (ROOT / "docs" / "reference" / "policies.md").read_text(encoding="utf-8")
    first = DIRECTIVE.search(text)
    assert first is not None
    assert first["path"] == "resilient.retry"
    extending = (ROOT / "docs" / "reference" / "extending.md").read_text(encoding="utf-8")
    assert "::: resilient.Policy" in extending


def _roles_extension() -> Any:
    pytest.importorskip("griffe")
    spec = importlib.util.spec_from_file_location(
        "griffe_sphinx_roles", ROOT / "tools" / "griffe_sphinx_roles.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("docstring", "expected"),
    [
        (
            "The policy returned by :func:`fallback`.",
            "The policy returned by [`fallback()`][resilient.fallback].",
        ),
        (
            "See :class:`~resilient.events.Subscription`.",
            "See [`Subscription`][resilient.events.Subscription].",
        ),
        ("Call :meth:`reset` first.", "Call [`reset()`][resilient.CircuitBreaker.reset] first."),
        ("From :meth:`_take`.", "From `_take()`."),
        ("On a stdlib :mod:`logging` logger.", "On a stdlib `logging` logger."),
        ("No roles here: a `code` span.", "No roles here: a `code` span."),
    ],
)
def test_sphinx_roles_become_links_or_code(docstring: str, expected: str) -> None:
    """Resolvable roles become cross-references, the rest inline code; `~` shortens, callables get ()."""
    ext = _roles_extension()
    known = {
        "fallback": "resilient.fallback",
        "resilient.events.Subscription": "resilient.events.Subscription",
        "reset": "resilient.CircuitBreaker.reset",
    }
    assert ext.rewrite_roles(docstring, known.get) == expected


def test_roles_resolve_in_the_docstring_scope() -> None:
    """A method's docstring finds its sibling method; a module's, its own names; any, absolute paths."""
    ext = _roles_extension()
    import griffe

    loader = griffe.GriffeLoader()
    pkg = loader.load("resilient")
    loader.resolve_aliases()
    breaker = pkg["_breaker.CircuitBreaker.isolate"]
    collection = loader.modules_collection
    assert ext.resolve_in_scope(breaker, "reset", collection) == "resilient._breaker.CircuitBreaker.reset"
    assert ext.resolve_in_scope(pkg["testing"], "FakeClock", collection) is not None
    assert ext.resolve_in_scope(breaker, "resilient.events.Subscription", collection) is not None
    assert ext.resolve_in_scope(breaker, "no_such_name", collection) is None
    assert ext.resolve_in_scope(breaker, "_private", collection) is None

"""The documentation site reads offline: diagrams ship as SVG, and the site checker catches CDN loads.

CI builds the site and runs ``tools/check_site.py`` on it; these tests keep
the diagrams in step with their Mermaid sources and test the checker itself
on small pages.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
DIAGRAMS = ROOT / "docs" / "diagrams"
SOURCES = sorted(DIAGRAMS.glob("*.mmd"))


def _checker() -> Any:
    spec = importlib.util.spec_from_file_location("check_site", ROOT / "tools" / "check_site.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_diagrams_exist() -> None:
    """The breaker's state diagram and the composition order ship as Mermaid sources."""
    assert {p.stem for p in SOURCES} >= {"circuit_breaker_states", "recommended_order"}


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_svg_is_rendered_from_the_current_source(source: Path) -> None:
    """Each .mmd has an SVG next to it, rendered from this very source (see tools/render_diagrams.sh)."""
    svg = source.with_suffix(".svg").read_text(encoding="utf-8")
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    assert f"source sha256 {digest}" in svg.splitlines()[0]
    assert "<svg" in svg
    assert re.findall(r"(?:href|src)=\"https?://[^\"]*\"", svg) == []


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_every_diagram_is_on_a_page(source: Path) -> None:
    """Some page of the docs shows each rendered diagram."""
    pages = "".join(p.read_text(encoding="utf-8") for p in (ROOT / "docs").rglob("*.md"))
    assert f"diagrams/{source.stem}.svg" in pages


def test_no_page_uses_a_mermaid_fence() -> None:
    """A ```mermaid block would need Mermaid's script from a CDN: diagrams go in docs/diagrams/."""
    pages = [
        p for p in (ROOT / "docs").rglob("*.md") if re.search(r"^\s*(`{3,}|~{3,})\s*mermaid", p.read_text())
    ]
    assert pages == []


def _site(tmp_path: Path, html: str, css: str = "") -> Path:
    (tmp_path / "reference").mkdir()
    (tmp_path / "reference" / "index.html").write_text(html, encoding="utf-8")
    (tmp_path / "style.css").write_text(css, encoding="utf-8")
    (tmp_path / "reference" / "here.svg").write_text("<svg/>", encoding="utf-8")
    return tmp_path


def test_site_checker_accepts_an_offline_page(tmp_path: Path) -> None:
    """Local scripts and images, and plain links to other sites, are fine."""
    html = (
        '<link rel="stylesheet" href="../assets/main.css"><script src="../assets/bundle.js"></script>'
        '<img src="here.svg"><a href="https://www.python-httpx.org/">httpx</a><code>reset()</code>'
    )
    assert _checker().check(_site(tmp_path, html)) == []


@pytest.mark.parametrize(
    ("html", "css", "problem"),
    [
        (
            '<script src="https://unpkg.com/mermaid@11/dist/mermaid.min.js"></script>',
            "",
            "loads https://unpkg",
        ),
        ('<link href="https://fonts.gstatic.com" rel="preconnect">', "", "loads https://fonts.gstatic.com"),
        ('<img src="//cdn.example/x.png">', "", "loads //cdn.example/x.png"),
        ('<pre class="mermaid"><code>flowchart LR</code></pre>', "", "Mermaid block left as code"),
        ('<img src="missing.svg">', "", "image missing.svg is missing"),
        ("<p>see :func:<code>retry</code></p>", "", "literal Sphinx role"),
        ("<p></p>", "@import url(https://fonts.googleapis.com/css);", "from another host"),
    ],
)
def test_site_checker_flags_what_needs_the_network(tmp_path: Path, html: str, css: str, problem: str) -> None:
    """A CDN script, a web font, a Mermaid block left as code, a missing image or a role is reported."""
    problems = _checker().check(_site(tmp_path, html, css))
    assert len(problems) == 1
    assert problem in problems[0]

"""Check a built documentation site: offline, diagrams shipped, no literal Sphinx roles.

Usage: ``python tools/check_site.py SITE_DIR`` after ``mkdocs build``. Exits 1
with one line per problem:

- a page loads something from another host (a script, a stylesheet, a font,
  an image, a frame, a preconnect): the site must read with the network off.
  Plain links to other sites (``<a href>``) are fine: they load nothing;
- a Mermaid block left as code (it would need Mermaid's script from a CDN);
- an image that points at a file the site does not have;
- a literal ``:func:`...``` role in the API reference.
"""

from __future__ import annotations

import re
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

ROLE = re.compile(r":(?:func|meth|class|exc|attr|data|obj|mod|const):(?:`|<code>)")
LOADING_RELS = frozenset(
    {"stylesheet", "preconnect", "preload", "modulepreload", "icon", "manifest", "dns-prefetch"}
)
CSS_REMOTE = re.compile(r"url\(\s*['\"]?(?:https?:)?//|@import\s+['\"]?(?:https?:)?//")


def _remote(url: str) -> bool:
    parts = urlsplit(url)
    return bool(parts.netloc) or parts.scheme in {"http", "https"}


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.loads: list[str] = []  # URLs the browser fetches for this page
        self.images: list[str] = []
        self.mermaid = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag in {"script", "img", "iframe", "source", "video", "audio", "embed"} and a.get("src"):
            self.loads.append(a["src"])
            if tag == "img":
                self.images.append(a["src"])
        if tag == "link" and a.get("href"):
            rel = set(a.get("rel", "").split())
            if rel & LOADING_RELS:
                self.loads.append(a["href"])
        if tag == "object" and a.get("data"):
            self.loads.append(a["data"])
        if "mermaid" in a.get("class", "").split():
            self.mermaid = True


def check(site: Path) -> list[str]:
    """Return the problems found in the site built at *site*.

    Args:
        site: The directory ``mkdocs build`` wrote.

    Returns:
        One message per problem; empty if the site is fine.
    """
    problems: list[str] = []
    pages = sorted(site.rglob("*.html"))
    if not pages:
        return [f"{site}: no HTML pages"]
    for page in pages:
        rel = page.relative_to(site).as_posix()
        text = page.read_text(encoding="utf-8")
        parser = _Page()
        parser.feed(text)
        problems += [f"{rel}: loads {url} from another host" for url in parser.loads if _remote(url)]
        if parser.mermaid:
            problems.append(f"{rel}: a Mermaid block left as code (pre-render it to docs/diagrams/)")
        for src in parser.images:
            if not _remote(src) and not src.startswith("data:"):
                target = (page.parent / urlsplit(src).path).resolve()
                if not target.is_file():
                    problems.append(f"{rel}: image {src} is missing from the site")
        if rel.startswith("reference/") and ROLE.search(text):
            problems.append(f"{rel}: literal Sphinx role {ROLE.search(text).group()!r}")  # type: ignore[union-attr]
    for css in sorted(site.rglob("*.css")):
        if CSS_REMOTE.search(css.read_text(encoding="utf-8", errors="replace")):
            problems.append(
                f"{css.relative_to(site).as_posix()}: loads a stylesheet or font from another host"
            )
    return problems


def main(argv: list[str]) -> int:
    """Check the site named on the command line; print the problems.

    Args:
        argv: ``[SITE_DIR]``.

    Returns:
        The exit status: 0 if the site is fine, 1 otherwise.
    """
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    problems = check(Path(argv[0]))
    for problem in problems:
        print(problem)
    print(f"site check: {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

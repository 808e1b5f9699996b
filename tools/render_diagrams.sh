#!/usr/bin/env bash
# Render docs/diagrams/*.mmd (Mermaid) to the SVG files committed next to them.
#
# The site ships these SVGs instead of loading Mermaid's JavaScript from a CDN,
# so the docs build and read offline. Run this after editing a .mmd file; the
# test suite (tests/test_docs_site.py) fails while an SVG is older than its
# source. Needs node/npm and a Chromium (Debian: apt-get install chromium):
#
#   PUPPETEER_SKIP_DOWNLOAD=1 npm install --prefix /tmp/mmdc @mermaid-js/mermaid-cli@11
#   MMDC=/tmp/mmdc/node_modules/.bin/mmdc tools/render_diagrams.sh
set -euo pipefail
cd "$(dirname "$0")/.."
MMDC=${MMDC:-mmdc}
CHROMIUM=${CHROMIUM:-$(command -v chromium || command -v chromium-browser)}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf '{"executablePath": "%s", "args": ["--no-sandbox"]}\n' "$CHROMIUM" >"$tmp/puppeteer.json"
# Plain SVG text (no HTML in <foreignObject>), so the files render as <img> anywhere.
printf '{"theme": "neutral", "htmlLabels": false, "flowchart": {"htmlLabels": false}}\n' >"$tmp/mermaid.json"
for src in docs/diagrams/*.mmd; do
    out="${src%.mmd}.svg"
    "$MMDC" --quiet -p "$tmp/puppeteer.json" -c "$tmp/mermaid.json" -b white -i "$src" -o "$tmp/out.svg"
    # mmdc writes width="100%": as an <img>, that stretches a narrow diagram to
    # the page's width. Give the SVG its natural size (the page's CSS still
    # shrinks it to fit).
    python3 - "$tmp/out.svg" <<'PY'
import re, sys
path = sys.argv[1]
svg = open(path, encoding="utf-8").read()
_, _, w, h = re.search(r'viewBox="([-\d.]+) ([-\d.]+) ([\d.]+) ([\d.]+)"', svg).groups()
svg = svg.replace('width="100%"', f'width="{float(w):.0f}" height="{float(h):.0f}"', 1)
open(path, "w", encoding="utf-8").write(svg)
PY
    sum=$(sha256sum "$src" | cut -d' ' -f1)
    {
        printf '<!-- Rendered from %s by tools/render_diagrams.sh; source sha256 %s -->\n' "$(basename "$src")" "$sum"
        cat "$tmp/out.svg"
        printf '\n'
    } >"$out"
    echo "rendered $out"
done

"""LazyModule: a module imported on first use, which then takes its own place."""

from __future__ import annotations

from typing import Any

from resilient._lazy import LazyModule


def test_first_attribute_read_imports_and_rebinds() -> None:
    """The first attribute read imports the module and puts it in the namespace in the stand-in's place."""
    namespace: dict[str, Any] = {}
    lazy = namespace["colorsys"] = LazyModule("colorsys", namespace)
    assert repr(lazy) == "<lazy module 'colorsys'>"
    assert lazy.rgb_to_hsv(0.0, 0.0, 0.0) == (0.0, 0.0, 0.0)
    import colorsys

    assert namespace["colorsys"] is colorsys

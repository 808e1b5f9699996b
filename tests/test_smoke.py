"""Smoke test of the package import."""

import resilient


def test_version() -> None:
    """The package exposes a version string."""
    assert isinstance(resilient.__version__, str)

"""Every file in examples/ runs on its own and exits 0, so the examples cannot rot.

Each example runs as ``python -W error examples/<name>.py`` in a subprocess
(a fresh interpreter, as a reader would run it). They are all started at
once, then each test waits for its own, so the suite pays for the slowest
example rather than the sum of them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
TIMEOUT = 60.0  # seconds; every example should finish in a few

# The examples the documentation promises; the glob above also picks up any new one.
REQUIRED = {
    "quickstart.py",
    "http_client.py",
    "shared_breaker.py",
    "deadlines.py",
    "custom_subscriber.py",
    "testing_with_fakeclock.py",
    "prometheus_metrics.py",
}


@pytest.fixture(scope="module")
def running() -> Iterator[dict[str, subprocess.Popen[str]]]:
    """Start every example in its own interpreter; kill leftovers at the end."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    procs = {
        path.name: subprocess.Popen(
            [sys.executable, "-W", "error", str(path)],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for path in EXAMPLES
    }
    try:
        yield procs
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
            proc.communicate()


@pytest.mark.parametrize("name", [p.name for p in EXAMPLES])
def test_example_exits_zero(name: str, running: dict[str, subprocess.Popen[str]]) -> None:
    """The example finishes within the timeout with exit status 0."""
    proc = running[name]
    try:
        output, _ = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        output, _ = proc.communicate()
        pytest.fail(f"examples/{name} did not finish within {TIMEOUT:g}s; output:\n{output}")
    assert proc.returncode == 0, f"examples/{name} exited {proc.returncode}; output:\n{output}"


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_documented_example_exists(name: str) -> None:
    """Each example the documentation relies on is present in examples/."""
    assert (ROOT / "examples" / name).is_file()

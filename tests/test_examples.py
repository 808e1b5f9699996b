"""Every file in examples/ runs on its own and exits 0, so the examples cannot rot.

Each example runs as ``python -W error examples/<name>.py`` in a subprocess
(a fresh interpreter, as a reader would run it). They are all started at
once, then each test waits for its own, so the suite pays for the slowest
example rather than the sum of them.

Each also runs as on a plain ``pip install resilient-policies``, with every
optional dependency made unimportable: it either still exits 0, or exits at
once with a message naming the extra that installs what it needs.
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
    "rate_limited_api.py",
    "fastapi_app.py",
    "aiohttp_app.py",
    "http_retry_after.py",
    "fan_out_outcomes.py",
    "graceful_shutdown.py",
    "registry_config.py",
    "hedging.py",
    "chaos_testing.py",
}


# What a plain install lacks: every optional dependency of the library and the examples.
OPTIONAL_MODULES = ("httpx", "prometheus_client", "structlog", "redis", "opentelemetry", "fastapi", "aiohttp")
EXTRA_HINT = "pip install 'resilient-policies[examples]'"
# Runs an example as ``python examples/<name>.py`` would, with OPTIONAL_MODULES unimportable.
PLAIN_INSTALL = """
import runpy, sys
for name in {modules!r}:
    sys.modules[name] = None
sys.argv = [{path!r}]
sys.path.insert(0, {folder!r})
runpy.run_path({path!r}, run_name="__main__")
"""


def _start(args: list[str]) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return subprocess.Popen(
        [sys.executable, "-W", "error", *args],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(name: str, proc: subprocess.Popen[str]) -> str:
    """Wait for *proc* and return its output, failing the test if it hangs."""
    try:
        output, _ = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        output, _ = proc.communicate()
        pytest.fail(f"examples/{name} did not finish within {TIMEOUT:g}s; output:\n{output}")
    return output


def _stop(procs: dict[str, subprocess.Popen[str]]) -> None:
    for proc in procs.values():
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


@pytest.fixture(scope="module")
def running() -> Iterator[dict[str, subprocess.Popen[str]]]:
    """Start every example in its own interpreter; kill leftovers at the end."""
    procs = {path.name: _start([str(path)]) for path in EXAMPLES}
    try:
        yield procs
    finally:
        _stop(procs)


@pytest.fixture(scope="module")
def running_plain() -> Iterator[dict[str, subprocess.Popen[str]]]:
    """Start every example as on a plain install (no optional dependency); kill leftovers at the end."""
    procs = {
        path.name: _start(
            ["-c", PLAIN_INSTALL.format(modules=OPTIONAL_MODULES, path=str(path), folder=str(path.parent))]
        )
        for path in EXAMPLES
    }
    try:
        yield procs
    finally:
        _stop(procs)


@pytest.mark.parametrize("name", [p.name for p in EXAMPLES])
def test_example_exits_zero(name: str, running: dict[str, subprocess.Popen[str]]) -> None:
    """The example finishes within the timeout with exit status 0."""
    proc = running[name]
    output = _finish(name, proc)
    assert proc.returncode == 0, f"examples/{name} exited {proc.returncode}; output:\n{output}"


@pytest.mark.parametrize("name", [p.name for p in EXAMPLES])
def test_example_on_plain_install_runs_or_names_the_extra(
    name: str, running_plain: dict[str, subprocess.Popen[str]]
) -> None:
    """Without the optional dependencies, the example runs, or says which extra to install (no traceback)."""
    proc = running_plain[name]
    output = _finish(name, proc)
    if proc.returncode == 0:
        return
    assert (proc.returncode, "Traceback" in output, EXTRA_HINT in output) == (1, False, True), output


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_documented_example_exists(name: str) -> None:
    """Each example the documentation relies on is present in examples/."""
    assert (ROOT / "examples" / name).is_file()

"""examples/graceful_shutdown.py as an orchestrator runs it: started, sent SIGTERM, exits cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "graceful_shutdown.py"
TIMEOUT = 60.0  # seconds; the example's grace period is half a second

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def test_sigterm_lets_work_finish_cancels_the_rest_and_reports_the_counts() -> None:
    """After SIGTERM it refuses new calls, reports 2 finished, 1 cancelled, 1 thread running, exits 0."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    proc = subprocess.Popen(
        [sys.executable, "-W", "error", str(EXAMPLE), "--wait"],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready = proc.stdout.readline()
        assert ready.startswith(f"ready (pid {proc.pid}): 4 calls in flight"), ready
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    lines = rest.splitlines()
    assert proc.returncode == 0, rest
    assert "a new call: GateClosedError(closed)" in lines, rest
    assert "callers saw: ['item 1 done', 'item 2 done', 'GateClosedError(cancelled)', 'export done']" in lines
    assert json.loads(lines[-1]) == {
        "in_flight": 4,
        "finished": 2,
        "cancelled": 1,
        "still_running": 0,
        "sync_running": 1,
    }

"""What a library costs before the first call: decorating, and importing it (issue 11).

Used by ``compare.py``. Method:

- **Decorating.** Each sample decorates a batch of *fresh* functions (distinct
  function objects made before the clock starts, never a warmed repeat of
  the same one) with a fresh policy each, as ``@retry(...)`` written above a
  ``def`` does, and divides by the batch size. Libraries are interleaved
  round by round; the table shows the median. The garbage collector stays
  on, as it is while an application imports.
- **Memory** is ``workloads.memory``: tracemalloc's growth while decorating,
  after ``gc.collect()``; here also after each function's first call.
- **Import.** Each sample is a fresh interpreter running ``python -c
  "import X"`` (or importing and decorating one function), timed as a whole
  process: its CPU time (user + system, from ``wait4``; the budget uses it,
  as contention from other processes barely moves it) and its wall-clock
  time. Interleaved, median of the runs; the bare interpreter (``python -c
  pass``) is measured the same way and subtracted.
  Every library runs from bytecode: the runs share a private
  ``PYTHONPYCACHEPREFIX`` warmed by one run each, so a checkout (no
  ``.pyc`` when ``PYTHONDONTWRITEBYTECODE`` is set) and an installed wheel
  are compared alike.
"""

from __future__ import annotations

import gc
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import types
from collections.abc import Callable
from typing import Any

import peers as pr
from _harness import Check, fmt_ns, fmt_ratio, table, timer
from overhead import ok, ok_sync

import resilient

Builder = Callable[[Callable[..., Any]], Any]


def _stacked(fn: Callable[..., Any]) -> Any:
    # The five policies as five decorators (the top one outermost), folded into one wrapper.
    inner = resilient.bulkhead(50)(fn)
    if pr.has_breaker():
        inner = pr.res_breaker()(inner)
    inner = resilient.retry(attempts=3, backoff=0)(inner)
    inner = resilient.timeout(10)(inner)
    return resilient.fallback(0)(inner)


def _first_call(builder: Builder) -> Builder:
    def decorate_and_call(fn: Callable[..., Any]) -> Any:
        wrapped = builder(fn)
        wrapped()
        return wrapped

    return decorate_and_call


def rows() -> dict[str, tuple[dict[str, Any], Callable[..., Any]]]:
    """Decoration rows: title -> (library -> builder or reason, function to copy)."""
    stacked: dict[str, Any] = dict(pr.STACK_ASYNC)
    stacked["resilient"] = _stacked
    first: dict[str, Any] = {
        lib: (_first_call(b) if callable(b) else b) for lib, b in pr.RETRY_SYNC.items() if lib != "hyx"
    }
    return {
        "retry": (dict(pr.RETRY_ASYNC), ok),
        "five-policy stack, `pipeline(...)`": (dict(pr.STACK_ASYNC), ok),
        "five-policy stack, five decorators": (stacked, ok),
        "sync retry, decorating + first call": (first, ok_sync),
    }


def _fresh(n: int, proto: Callable[..., Any]) -> list[Callable[..., Any]]:
    return [types.FunctionType(proto.__code__, proto.__globals__, f"fn{i}") for i in range(n)]


def decoration_times(rounds: int, n: int) -> dict[str, dict[str, float | str]]:
    """Median ns per decorated function, per row and library (interleaved rounds).

    Must run inside the event loop: hyx's timeout binds the running loop when decorating.
    """
    out: dict[str, dict[str, float | str]] = {}
    samples: dict[tuple[str, str], list[float]] = {}
    runnable: list[tuple[str, str, Builder, Callable[..., Any]]] = []
    for title, (builders, proto) in rows().items():
        row: dict[str, float | str] = {}
        for lib in pr.LIBS:
            b = builders.get(lib, pr._NO_POLICY)
            if isinstance(b, str):
                row[lib] = b
                continue
            try:
                b(_fresh(1, proto)[0])  # imports and lazy module state before timing
            except LookupError as exc:
                row[lib] = str(exc)
                continue
            runnable.append((title, lib, b, proto))
            samples[title, lib] = []
        out[title] = row
    clock = timer()
    for r in range(rounds):
        k = r % len(runnable)
        for title, lib, b, proto in runnable[k:] + runnable[:k]:
            fns = _fresh(n, proto)
            gc.collect()
            t0 = clock()
            kept = [b(f) for f in fns]
            samples[title, lib].append((clock() - t0) / n)
            del kept
    for (title, lib), s in samples.items():
        out[title][lib] = statistics.median(s)
    return out


def memory_after_first_call(n: int) -> dict[str, float | str]:
    """Bytes retained per function decorated with a retry and called once (sync)."""
    row: dict[str, float | str] = {}
    for lib in pr.LIBS:
        b = pr.RETRY_SYNC.get(lib, pr._NO_POLICY)
        if isinstance(b, str) or lib == "hyx":
            row[lib] = b if isinstance(b, str) else "async only"
            continue
        fns = _fresh(n + 1, ok_sync)
        try:
            _first_call(b)(fns[0])
        except LookupError as exc:
            row[lib] = str(exc)
            continue
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        kept = [_first_call(b)(f) for f in fns[1:]]
        gc.collect()
        row[lib] = (tracemalloc.get_traced_memory()[0] - before) / len(kept)
        tracemalloc.stop()
        del kept
    return row


def decoration_table(times: dict[str, dict[str, float | str]]) -> str:
    """Time per decorated function; x = peer / resilient."""
    out = []
    for title, row in times.items():
        res = row.get("resilient")
        cells = [title]
        for lib in pr.LIBS:
            v = row.get(lib, "n/a")
            if isinstance(v, float):
                ratio = "" if lib == "resilient" or not isinstance(res, float) else f" ({fmt_ratio(v, res)})"
                cells.append(fmt_ns(v) + ratio)
            else:
                cells.append("n/a")
        out.append(cells)
    return table(["per decorated function (x = peer / resilient)", *pr.LIBS], out)


# --- import ------------------------------------------------------------------------------

IMPORTS: dict[str, tuple[str, str]] = {
    # library: (import only, import and decorate one function)
    "resilient": (
        "import resilient",
        "import resilient\n@resilient.retry(attempts=3)\ndef f(): pass",
    ),
    "stamina": (
        "import stamina",
        "import stamina\n@stamina.retry(on=Exception, attempts=3)\ndef f(): pass",
    ),
    "tenacity": (
        "import tenacity",
        "import tenacity\n@tenacity.retry(stop=tenacity.stop_after_attempt(3))\ndef f(): pass",
    ),
    "backoff": (
        "import backoff",
        "import backoff\n@backoff.on_exception(backoff.expo, Exception, max_tries=3)\ndef f(): pass",
    ),
}


def _run_child(code: str, env: dict[str, str]) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one fresh interpreter running *code*."""
    t0 = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-c", code], env=env)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - t0
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise RuntimeError(f"{code!r} exited with {child.returncode}")
    return usage.ru_utime + usage.ru_stime, wall


def import_times(runs: int) -> dict[str, list[tuple[float, float]]]:
    """(CPU, wall) seconds of fresh interpreters importing each library (and decorating), interleaved."""
    statements = {"bare": "pass"}
    for lib, (imp, deco) in IMPORTS.items():
        statements[f"{lib}"] = imp
        statements[f"{lib} + decorate"] = deco
    with tempfile.TemporaryDirectory(prefix="resilient-pyc-") as cache:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = cache
        usable: dict[str, str] = {}
        for label, code in statements.items():  # warm-up: compiles everything into the cache
            done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, check=False)
            if done.returncode == 0:
                usable[label] = code
        out: dict[str, list[tuple[float, float]]] = {label: [] for label in usable}
        labels = list(usable)
        for r in range(runs):
            k = r % len(labels)
            for label in labels[k:] + labels[:k]:
                out[label].append(_run_child(usable[label], env))
    return out


def import_table(times: dict[str, list[tuple[float, float]]], checks: list[Check]) -> str:
    """Median CPU time of each process minus the bare interpreter's, and the same in wall time."""
    cpu = {label: statistics.median(c for c, _ in v) for label, v in times.items()}
    wall = {label: statistics.median(w for _, w in v) for label, v in times.items()}
    bare_cpu, bare_wall = cpu.get("bare", 0.0), wall.get("bare", 0.0)
    out = []
    for lib in IMPORTS:
        cells = [lib]
        for label in (lib, f"{lib} + decorate"):
            if label in cpu:
                cells += [
                    f"{(cpu[label] - bare_cpu) * 1e3:.1f} ms",
                    f"{(wall[label] - bare_wall) * 1e3:.1f} ms",
                ]
            else:
                cells += ["n/a", "n/a"]
        out.append(cells)
    what = "`import resilient` no slower than `import stamina`"
    res, sta = cpu.get("resilient"), cpu.get("stamina")
    if res is not None and sta is not None:
        net_res, net_sta = res - bare_cpu, sta - bare_cpu
        checks.append(
            Check(
                what,
                f"{net_res * 1e3:.1f} ms vs {net_sta * 1e3:.1f} ms CPU over a bare interpreter "
                f"({fmt_ratio(net_res, net_sta)})",
                net_res <= net_sta,
            )
        )
    else:
        checks.append(Check(what, "not measured", None))
    return (
        f"Over a bare interpreter (`python -c pass`: {bare_cpu * 1e3:.1f} ms CPU, {bare_wall * 1e3:.1f} ms wall).\n\n"
        + table(
            [
                "library",
                "import (CPU)",
                "import (wall)",
                "import + decorate one (CPU)",
                "import + decorate one (wall)",
            ],
            out,
        )
    )


def decoration_checks(
    times: dict[str, dict[str, float | str]], mem: dict[str, dict[str, float | str]], checks: list[Check]
) -> None:
    """Budgets: decorating a retry no dearer than tenacity's, at most 1 KB kept per function."""
    retry = times["retry"]
    res, ten = retry.get("resilient"), retry.get("tenacity")
    if isinstance(res, float) and isinstance(ten, float):
        checks.append(
            Check(
                "decorating with `retry` costs no more than tenacity's",
                f"{fmt_ns(res)} vs tenacity {fmt_ns(ten)} per function ({fmt_ratio(res, ten)})",
                res <= ten,
            )
        )
    else:
        checks.append(Check("decorating with `retry` costs no more than tenacity's", "not measured", None))
    kept = mem.get("retry", {}).get("resilient")
    if isinstance(kept, float):
        checks.append(
            Check("a `retry`-decorated function keeps at most 1 KB", f"{kept:,.0f} B", kept <= 1024)
        )
    else:
        checks.append(Check("a `retry`-decorated function keeps at most 1 KB", "not measured", None))

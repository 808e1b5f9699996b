"""Tests of pipelines from configuration: the schema, its error messages, and the JSON/TOML loaders."""

from __future__ import annotations

import asyncio
import pickle
import sys
from pathlib import Path
from typing import Any

import pytest

import resilient
from resilient import (
    Bulkhead,
    CircuitBreaker,
    ConfigError,
    Fallback,
    ResilientError,
    Retry,
    RetryBudget,
    Timeout,
    load_config,
    parse_config,
    pipeline_from_config,
)
from resilient._spec import PolicySpec
from resilient.backoff import Constant, Decorrelated, Exponential, Linear
from resilient.events import EventBus
from resilient.testing import FakeClock


class Upstream:
    """A namespace holding an exception class, as a module attribute path would."""

    class Unavailable(ConnectionError):
        """An exception class nested in a class."""


def transient(exc: BaseException) -> bool:
    """A predicate named by its dotted path."""
    return isinstance(exc, ConnectionError)


def is_none(result: object) -> bool:
    """A result predicate named by its dotted path."""
    return result is None


HERE = __name__  # this module, importable as tests.test_spec or test_spec


def errors_of(config: object) -> tuple[str, ...]:
    """The problems pipeline_from_config reports for *config*."""
    with pytest.raises(ConfigError) as info:
        pipeline_from_config(config)
    return info.value.errors


# --- building ---------------------------------------------------------------------------------


def test_each_key_builds_its_factory_outermost_first(clock: FakeClock) -> None:
    """Every factory name builds its policy, in order, with its keyword arguments."""
    p = pipeline_from_config(
        [
            {"fallback": {"default": "cached"}},
            {"timeout": {"seconds": 2}},
            {"retry": {"attempts": 4, "deadline": 10}},
            {"circuit_breaker": {"failure_threshold": 3, "recovery_timeout": 12.5}},
            {"bulkhead": {"max_concurrent": 8, "max_queue": 4, "queue_timeout": 0.5}},
        ],
        clock=clock,
    )
    fb, to, rt, cb, bh = p.policies
    assert isinstance(fb, Fallback)
    assert isinstance(to, Timeout)
    assert isinstance(rt, Retry)
    assert isinstance(cb, CircuitBreaker)
    assert isinstance(bh, Bulkhead)
    assert fb.default == "cached"
    assert (to.seconds, rt.attempts, rt.deadline) == (2.0, 4, 10.0)
    assert (cb.config.failure_threshold, cb.config.recovery_timeout) == (3, 12.5)
    assert (bh.max_concurrent, bh.max_queue, bh.queue_timeout) == (8, 4, 0.5)
    assert {x.clock for x in p.policies} == {clock}


def test_hedge_is_configurable() -> None:
    """hedge takes its keyword arguments, exceptions by import path and a budget table."""
    (h,) = pipeline_from_config(
        [{"hedge": {"attempts": 3, "delay": 0.05, "on": "ConnectionError", "budget": {"ratio": 0.1}}}]
    ).policies
    assert isinstance(h, resilient.Hedge)
    assert isinstance(h.budget, RetryBudget)
    assert (h.kind, h.attempts, h.delay, h.budget.ratio) == ("hedge", 3, 0.05, 0.1)
    assert errors_of([{"hedge": {"attempts": 0}}]) == ("[0].hedge.attempts: must be >= 1, got 0",)


def test_rate_limiter_is_configurable(clock: FakeClock) -> None:
    """rate_limiter takes rate (or a bare number), per, burst, max_wait and name; a limit per pipeline."""
    config = [{"rate_limiter": {"rate": 100, "per": 60, "burst": 10, "max_wait": 0.5}}, {"rate_limiter": 5}]
    first, second = pipeline_from_config(config, name="partner", clock=clock).policies
    assert isinstance(first, resilient.RateLimiter)
    assert isinstance(second, resilient.RateLimiter)
    assert (first.kind, first.rate, first.per, first.burst, first.max_wait, first.name, first.clock) == (
        "rate_limiter",
        100.0,
        60.0,
        10,
        0.5,
        "partner",
        clock,
    )
    assert (second.rate, second.per, second.burst, second.max_wait) == (5.0, 1.0, 5, 0.0)
    again = pipeline_from_config(config, clock=clock).policies[0]
    assert again is not first  # each pipeline built gets permits of its own


async def test_a_configured_rate_limiter_limits(clock: FakeClock) -> None:
    """A rate limiter from configuration admits its burst, then rejects with retry_after."""
    p = pipeline_from_config([{"rate_limiter": {"rate": 2, "burst": 1}}], clock=clock)

    async def work() -> str:
        return "ok"

    assert await p.call(work) == "ok"
    with pytest.raises(resilient.RateLimitedError) as info:
        await p.call(work)
    assert info.value.retry_after == 0.5


def test_a_bare_value_is_the_first_argument() -> None:
    """timeout, bulkhead and fallback take their first argument as a bare value."""
    to, bh, fb = pipeline_from_config([{"timeout": 1.5}, {"bulkhead": 3}, {"fallback": None}]).policies
    assert (to.seconds, bh.max_concurrent, fb.default) == (1.5, 3, None)  # type: ignore[attr-defined]


@pytest.mark.parametrize("default", [None, 0, "n/a", [1, 2], {"price": 0}, True])
async def test_a_fallback_default_is_the_json_value(default: object) -> None:
    """A fallback's default is the JSON value itself (a table only under "default")."""
    p = pipeline_from_config([{"fallback": {"default": default}}])

    async def fails() -> object:
        raise ValueError

    assert await p.call(fails) == default


def test_the_name_goes_to_the_pipeline_and_every_unnamed_policy() -> None:
    """name= labels the pipeline and each policy, unless the configuration names one."""
    p = pipeline_from_config(
        [{"retry": {"attempts": 2}}, {"bulkhead": {"max_concurrent": 1, "name": "pool"}}], name="db"
    )
    assert (p.name, [x.name for x in p.policies]) == ("db", ["db", "pool"])


def test_the_bus_goes_to_every_policy() -> None:
    """bus= reaches the pipeline and every policy."""
    bus = EventBus()
    p = pipeline_from_config([{"retry": {}}, {"bulkhead": 1}], bus=bus)
    assert {p.bus, *(x.bus for x in p.policies)} == {bus}


def test_an_empty_list_is_an_empty_pipeline() -> None:
    """No entries: a pipeline with no policy."""
    assert pipeline_from_config([]).policies == ()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.5, Constant),
        (0, Constant),
        ({"constant": 0.25}, Constant),
        ({"constant": {"delay": 0.25, "jitter": "full"}}, Constant),
        ({"linear": {"initial": 0.1, "increment": 0.2}}, Linear),
        ({"exponential": {"initial": 0.1, "max_delay": 2}}, Exponential),
        ({"exponential": {}}, Exponential),
        ({"decorrelated": {"initial": 0.05}}, Decorrelated),
        (None, Exponential),
    ],
)
def test_backoff_forms(value: object, expected: type) -> None:
    """backoff is seconds, null (the default), or a one-key table naming a strategy."""
    (rt,) = pipeline_from_config([{"retry": {"backoff": value}}]).policies
    assert type(rt.backoff) is expected  # type: ignore[attr-defined]


def test_a_budget_is_built_per_pipeline_on_the_clock(clock: FakeClock) -> None:
    """budget is a table of RetryBudget arguments; each build gets its own budget."""
    config = [{"retry": {"budget": {"ratio": 0.5, "min_per_second": 1}}}]
    (a,) = pipeline_from_config(config, clock=clock).policies
    (b,) = pipeline_from_config(config, clock=clock).policies
    assert isinstance(a.budget, RetryBudget)  # type: ignore[attr-defined]
    assert (a.budget.ratio, a.budget.clock) == (0.5, clock)  # type: ignore[attr-defined]
    assert a.budget is not b.budget  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("on", "matches", "misses"),
    [
        ("ConnectionError", ConnectionResetError(), ValueError()),
        ("builtins.TimeoutError", TimeoutError(), ValueError()),
        (["KeyError", "builtins.IndexError"], IndexError(), ValueError()),
        (f"{HERE}.Upstream.Unavailable", Upstream.Unavailable(), ConnectionError()),
        (f"{HERE}.transient", ConnectionError(), ValueError()),
        ("resilient.TimeoutExceededError", resilient.TimeoutExceededError(1), TimeoutError()),
    ],
)
async def test_exceptions_are_named_by_import_path(on: object, matches: Exception, misses: Exception) -> None:
    """on= takes a dotted exception class, a list of them, or a dotted predicate."""
    p = pipeline_from_config([{"fallback": {"default": "caught", "on": on}}])

    async def raise_(exc: Exception) -> str:
        raise exc

    assert await p.call(raise_, matches) == "caught"
    with pytest.raises(type(misses)):
        await p.call(raise_, misses)


def test_on_result_is_a_dotted_predicate() -> None:
    """on_result names a callable by its import path."""
    (rt,) = pipeline_from_config([{"retry": {"on_result": f"{HERE}.is_none"}}]).policies
    assert rt.on_result is is_none  # type: ignore[attr-defined]


# --- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"timeout": 2}, "(pipeline): must be a list of policies, outermost first, got {'timeout': 2}"),
        (
            [3],
            "[0]: must be a table with one key, the policy (one of timeout, retry, circuit_breaker, "
            "bulkhead, fallback, hedge, rate_limiter), got 3",
        ),
        ([{"timeout": 1, "retry": {}}], "[0]: must be a table with one key"),
        ([{"tiemout": 1}], "[0]: unknown policy 'tiemout'; expected one of timeout, retry"),
        ([{"retry": 3}], "[0].retry: must be a table of retry()'s arguments, got 3"),
        ([{"retry": {"attempts": 0}}], "[0].retry.attempts: must be >= 1, got 0"),
        (
            [{"timeout": 1}, {"bulkhead": 1}, {"retry": {"attempts": 0}}],
            "[2].retry.attempts: must be >= 1, got 0",
        ),
        ([{"retry": {"attempts": "3"}}], "[0].retry.attempts: must be an int, got str '3'"),
        ([{"retry": {"tries": 3}}], "[0].retry.tries: unknown argument; expected one of attempts, on"),
        ([{"timeout": -1}], "[0].timeout.seconds: must be > 0, got -1"),
        ([{"timeout": {}}], "[0].timeout.seconds: is required"),
        ([{"fallback": {"on": "KeyError"}}], "[0].fallback.default: is required"),
        (
            [{"bulkhead": {"max_concurrent": 2, "clock": "x"}}],
            "[0].bulkhead.clock: cannot be configured here",
        ),
        ([{"retry": {"bus": None}}], "[0].retry.bus: cannot be configured here"),
        (
            [{"circuit_breaker": {"backend": "redis"}}],
            "[0].circuit_breaker.backend: cannot be configured from a file",
        ),
        (
            [{"circuit_breaker": {"failure_rate": 2}}],
            "[0].circuit_breaker.failure_rate: must be in (0, 1], got 2",
        ),
        ([{"retry": {"on": "KeyboardInterrupt"}}], "[0].retry.on: on=KeyboardInterrupt can only match"),
        (
            [{"retry": {"on": "Conection Error"}}],
            "[0].retry.on: 'Conection Error' is not a dotted import path",
        ),
        ([{"retry": {"on": ""}}], "[0].retry.on: must be a dotted import path"),
        ([{"retry": {"on": 3}}], "[0].retry.on: must be a dotted exception class (or predicate) or a list"),
        ([{"retry": {"on": "ConectionError"}}], "[0].retry.on: 'builtins' has no attribute 'ConectionError'"),
        ([{"retry": {"on": "no_such_module_x.Error"}}], "[0].retry.on: cannot import 'no_such_module_x'"),
        (
            [{"retry": {"on": "os.sep"}}],
            "[0].retry.on: 'os.sep' is neither an exception class nor a predicate",
        ),
        (
            [{"retry": {"on": ["KeyError", "os.path"]}}],
            "[0].retry.on[1]: 'os.path' is not an exception class",
        ),
        ([{"retry": {"on_result": "os.sep"}}], "[0].retry.on_result: 'os.sep' is not callable"),
        ([{"retry": {"backoff": "fast"}}], "[0].retry.backoff: must be seconds, null, or one of"),
        ([{"retry": {"backoff": {"fibonacci": {}}}}], "[0].retry.backoff: unknown backoff 'fibonacci'"),
        ([{"retry": {"backoff": {"linear": 2}}}], "[0].retry.backoff.linear: must be a table of linear()'s"),
        (
            [{"retry": {"backoff": {"exponential": {"initial": -1}}}}],
            "[0].retry.backoff.exponential.initial: must be >= 0",
        ),
        (
            [{"retry": {"backoff": {"exponential": {"rng": 1}}}}],
            "[0].retry.backoff.exponential.rng: unknown argument",
        ),
        ([{"retry": {"backoff": -1}}], "[0].retry.backoff: must be >= 0, got -1"),
        ([{"retry": {"budget": 0.2}}], "[0].retry.budget: must be a table of RetryBudget arguments, got 0.2"),
        ([{"retry": {"budget": {"ratio": 5}}}], "[0].retry.budget.ratio: must be in (0, 1], got 5"),
        ([{"retry": {"budget": {"clock": 1}}}], "[0].retry.budget.clock: unknown argument"),
        ([{"rate_limiter": {}}], "[0].rate_limiter.rate: is required"),
        ([{"rate_limiter": 0}], "[0].rate_limiter.rate: must be a finite number > 0, got 0.0"),
        ([{"rate_limiter": {"rate": 1, "burst": 0}}], "[0].rate_limiter.burst: must be >= 1, got 0"),
        ([{"rate_limiter": {"rate": 1, "max_wait": -1}}], "[0].rate_limiter.max_wait: must be >= 0"),
        ([{"rate_limiter": {"rate": "5"}}], "[0].rate_limiter.rate: must be a number of permits, got str"),
        (
            [{"rate_limiter": {"rate": 1, "backend": "redis"}}],
            "[0].rate_limiter.backend: cannot be configured from a file; build this pipeline in code",
        ),
        ([{"rate_limiter": {"rate": 1, "clock": 1}}], "[0].rate_limiter.clock: cannot be configured here"),
    ],
)
def test_every_error_names_its_place(config: object, expected: str) -> None:
    """Each problem is reported with its path in the configuration."""
    (error,) = errors_of(config)
    assert error.startswith(expected), error


def test_every_problem_is_reported_at_once() -> None:
    """All entries are checked, and every bad argument of one entry, before raising."""
    errors = errors_of(
        [
            {"timeout": 0},
            {"retry": {"on": "NoSuchError", "backoff": {"exponential": {"initial": -1}}}},
            {"bulkhead": 2},
            {"nope": {}},
        ]
    )
    assert [e.split(":")[0] for e in errors] == [
        "[0].timeout.seconds",
        "[1].retry.on",
        "[1].retry.backoff.exponential.initial",
        "[3]",
    ]


def test_a_module_failing_to_import_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A module that raises while importing is named, with what it raised."""
    (tmp_path / "broken_errors_mod.py").write_text("raise RuntimeError('half installed')\n")
    (tmp_path / "needs_missing_mod.py").write_text("import no_such_dependency_q\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert errors_of([{"retry": {"on": "broken_errors_mod.Error"}}]) == (
        "[0].retry.on: importing 'broken_errors_mod' failed: RuntimeError: half installed",
    )
    (error,) = errors_of([{"retry": {"on": "needs_missing_mod.Error"}}])
    assert error.startswith("[0].retry.on: importing 'needs_missing_mod' failed: No module named")
    for name in ("broken_errors_mod", "needs_missing_mod"):
        sys.modules.pop(name, None)


def test_config_error_is_a_value_error_and_pickles() -> None:
    """ConfigError is a ResilientError and a ValueError; it keeps its problems across pickling."""
    err = ConfigError(["a: bad", "b: worse"])
    copy = pickle.loads(pickle.dumps(err))
    assert isinstance(err, ResilientError)
    assert isinstance(err, ValueError)
    assert (copy.errors, str(copy)) == (
        ("a: bad", "b: worse"),
        "invalid configuration:\n  a: bad\n  b: worse",
    )
    assert str(ConfigError("a: bad")) == "invalid configuration: a: bad"


# --- loaders --------------------------------------------------------------------------------------

TOML = """
# A registry: one pipeline per key; "*" is every other key.
payments = [
  { timeout = 2 },
  { retry = { attempts = 3, backoff = { exponential = { initial = 0.1 } } } },
]

[[search]]
bulkhead = 4

[["*"]]
circuit_breaker = { failure_threshold = 5 }
"""

JSON = """{
  "payments": [{"timeout": 2},
               {"retry": {"attempts": 3, "backoff": {"exponential": {"initial": 0.1}}}}],
  "search": [{"bulkhead": 4}],
  "*": [{"circuit_breaker": {"failure_threshold": 5}}]
}"""

EXPECTED = {
    "payments": [{"timeout": 2}, {"retry": {"attempts": 3, "backoff": {"exponential": {"initial": 0.1}}}}],
    "search": [{"bulkhead": 4}],
    "*": [{"circuit_breaker": {"failure_threshold": 5}}],
}


@pytest.mark.parametrize(("suffix", "text"), [(".toml", TOML), (".json", JSON), (".JSON", JSON)])
def test_load_config_reads_json_and_toml_into_the_same_data(tmp_path: Path, suffix: str, text: str) -> None:
    """A JSON file and a TOML file with the same content load to the same data."""
    path = tmp_path / f"resilience{suffix}"
    path.write_text(text, encoding="utf-8")
    assert load_config(path) == EXPECTED
    assert load_config(str(path)) == EXPECTED


@pytest.mark.parametrize(("fmt", "text"), [("toml", TOML), ("json", JSON)])
def test_parse_config_reads_text(fmt: Any, text: str) -> None:
    """parse_config turns JSON or TOML text into the same data."""
    assert parse_config(text, fmt) == EXPECTED


def test_a_file_that_does_not_parse_names_itself_and_the_line(tmp_path: Path) -> None:
    """A syntax error is a ConfigError naming the file and the line."""
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{\n  "payments": [\n    {"timeout" 2}\n  ]\n}\n', encoding="utf-8")
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text("payments = [\n  { timeout = },\n]\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad\.json: line 3 column 16: Expecting ':' delimiter"):
        load_config(bad_json)
    with pytest.raises(ConfigError, match=r"bad\.toml: .*line 2"):
        load_config(bad_toml)


@pytest.mark.parametrize(
    ("suffix", "text", "words"),
    [
        (".json", "[" * 100_000 + "]" * 100_000, "nested too deeply"),
        (".toml", "a = " + "[" * 100_000 + "]" * 100_000, "nested too deeply"),
        (".toml", "a = " + "{ b = " * 5_000 + "1" + " }" * 5_000, "nested too deeply"),
        (".json", '{"timeout": ' + "9" * 5_000 + "}", "digits"),
        (".toml", "timeout = " + "9" * 5_000, "digits"),
    ],
    ids=["json-depth", "toml-array-depth", "toml-table-depth", "json-long-int", "toml-long-int"],
)
def test_a_hostile_file_is_a_config_error_naming_it(
    tmp_path: Path, suffix: str, text: str, words: str
) -> None:
    """Nesting past the recursion limit or a 5,000-digit number: a ConfigError naming the file."""
    path = tmp_path / f"hostile{suffix}"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"hostile\{suffix}: .*{words}"):
        load_config(path)
    with pytest.raises(ConfigError, match=rf"<config>: .*{words}"):
        parse_config(text, "json" if suffix == ".json" else "toml")


def test_a_file_that_is_not_utf8_is_a_config_error_naming_it(tmp_path: Path) -> None:
    """Bytes that are not UTF-8 are a ConfigError naming the file and where, not a UnicodeDecodeError."""
    path = tmp_path / "latin1.toml"
    path.write_bytes("name = 'caf\u00e9'\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1\.toml: not UTF-8 text \(line 1, byte 11"):
        load_config(path)


def test_load_config_refuses_other_suffixes_and_reports_missing_files(tmp_path: Path) -> None:
    """Only .json and .toml are read; a missing file raises the OSError."""
    with pytest.raises(ValueError, match=r"\.json or \.toml"):
        load_config(tmp_path / "config.yaml")
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "missing.toml")
    with pytest.raises(ValueError, match="format"):
        parse_config("{}", "yaml")  # type: ignore[arg-type]


async def test_a_loaded_pipeline_runs(tmp_path: Path) -> None:
    """A pipeline loaded from a TOML file guards calls as configured."""
    path = tmp_path / "resilience.toml"
    path.write_text(TOML, encoding="utf-8")
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionError
        return "ok"

    p = pipeline_from_config(load_config(path)["payments"], name="payments")
    with resilient.set_testing(True):
        assert await p.call(flaky) == "ok"
    assert calls == 3
    assert asyncio.iscoroutinefunction(flaky)


class Incomparable:
    """A configuration value (from code) whose == raises."""

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("cannot compare")

    __hash__ = object.__hash__


NAN = float("nan")


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ({"x": [1, {"y": 2}]}, {"x": [1, {"y": 2}]}, True),
        (float("2.5"), float("2.5"), True),  # equal, not the same object
        ({"x": 1}, {"x": 1, "z": 2}, False),
        ({"x": 1}, {"z": 1}, False),
        ([1, 2], [1, 2, 3], False),
        ([1, 2], [1, 3], False),
        ([1], (1,), False),
        (1, True, False),
        (1, 1.0, False),
        (NAN, NAN, True),  # the same object
        (float("nan"), float("nan"), False),  # two NaNs: never equal, so the policy is rebuilt
        (Incomparable(), Incomparable(), False),
    ],
    ids=[
        "nested-equal",
        "equal-floats",
        "more-keys",
        "other-key",
        "longer-list",
        "other-item",
        "list-tuple",
        "int-bool",
        "int-float",
        "same-nan",
        "two-nans",
        "incomparable",
    ],
)
def test_specs_are_equal_when_they_build_the_same_policy(a: object, b: object, same: bool) -> None:
    """Two entries are the same configuration only with the same types and values all the way down."""
    first = PolicySpec("fallback", {"default": a}, "[0]")
    second = PolicySpec("fallback", {"default": b}, "[0]")
    assert (first == second, hash(first) == hash(second)) == (same, True)
    assert (first == "fallback") is False

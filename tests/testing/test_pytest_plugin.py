"""The `resilient` pytest plugin: fixtures for resetting state, a shared fake clock, test mode."""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest

import resilient.testing.pytest_plugin as plugin

pytest_plugins = ["pytester"]

# The runs below are in-process: keep them quiet and independent of this suite's own settings.
INI = """
[pytest]
asyncio_default_fixture_loop_scope = function
asyncio_mode = auto
"""
ARGS = ("-p", "no:cacheprovider", "-p", "no:looptime_plugin", "-p", "no:randomly")

BREAKER_TESTS = """
import pytest
from resilient import CircuitState, circuit_breaker

breaker = circuit_breaker(failure_threshold=1, recovery_timeout=30)  # module level, as in an app


def test_opens_the_breaker():
    with pytest.raises(ConnectionError), breaker:
        raise ConnectionError
    assert breaker.state is CircuitState.OPEN


def test_sees_a_closed_breaker(REQUEST):
    assert breaker.state is CircuitState.CLOSED
"""


@pytest.fixture
def tester(pytester: pytest.Pytester) -> pytest.Pytester:
    """A pytester directory with a quiet ini file."""
    pytester.makeini(INI)
    return pytester


def test_plugin_is_a_pytest11_entry_point() -> None:
    """The distribution registers the plugin module under the `resilient` pytest11 entry point."""
    found = {ep.name: ep.value for ep in entry_points(group="pytest11")}
    assert found.get("resilient") == plugin.__name__


def test_fixtures_are_listed(tester: pytest.Pytester) -> None:
    """Once installed, every test suite sees the plugin's fixtures."""
    result = tester.runpytest("--fixtures", *ARGS)
    result.stdout.fnmatch_lines(["resilient_reset -*", "resilient_clock -*", "resilient_testing -*"])


def test_reset_fixture_closes_a_module_level_breaker(tester: pytest.Pytester) -> None:
    """A test using resilient_reset sees the breaker another test opened closed again."""
    tester.makepyfile(BREAKER_TESTS.replace("REQUEST", "resilient_reset"))
    tester.runpytest(*ARGS).assert_outcomes(passed=2)


def test_without_reset_state_leaks(tester: pytest.Pytester) -> None:
    """Without the fixture (or the ini option) the breaker stays open into the next test."""
    tester.makepyfile(BREAKER_TESTS.replace("REQUEST", ""))
    tester.runpytest(*ARGS).assert_outcomes(passed=1, failed=1)


def test_autoreset_ini_option_resets_around_every_test(tester: pytest.Pytester) -> None:
    """resilient_autoreset = true in the ini file resets state around every test, unasked."""
    tester.makeini(INI + "resilient_autoreset = true\n")
    tester.makepyfile(BREAKER_TESTS.replace("REQUEST", ""))
    tester.runpytest(*ARGS).assert_outcomes(passed=2)


def test_clock_fixture_serves_module_level_policies(tester: pytest.Pytester) -> None:
    """resilient_clock is a FakeClock that policies built without clock= wait on, during the test only."""
    tester.makepyfile(
        """
        from resilient import retry, timeout, TimeoutExceededError
        from resilient._clock_kinds import active_clock
        import pytest

        answers = []

        @retry(attempts=3, on=ConnectionError, backoff=5.0)  # module level: no clock= to inject
        def load():
            answer = answers.pop(0)
            if isinstance(answer, Exception):
                raise answer
            return answer

        @timeout(30)
        async def hangs(clock):
            await clock.sleep(3600)

        def test_retry_waits_on_the_fake_clock(resilient_clock):
            answers[:] = [ConnectionError(), ConnectionError(), "ok"]
            assert load() == "ok"
            assert resilient_clock.sleeps == [5.0, 5.0]

        async def test_timeout_fires_in_virtual_time(resilient_clock):
            with pytest.raises(TimeoutExceededError):
                await hangs(resilient_clock)
            assert resilient_clock.monotonic() == 30.0  # a fresh clock per test

        def test_after_the_fixture_the_system_clock_is_back():
            policy = retry()
            assert active_clock(policy.clock) is policy.clock
        """
    )
    tester.runpytest(*ARGS).assert_outcomes(passed=3)


def test_testing_fixture_turns_test_mode_on_for_the_test(tester: pytest.Pytester) -> None:
    """resilient_testing turns test mode on during the test and restores it after."""
    tester.makepyfile(
        """
        from resilient._config import is_testing

        def test_on(resilient_testing):
            assert is_testing()

        def test_off_again():
            assert not is_testing()
        """
    )
    tester.runpytest(*ARGS).assert_outcomes(passed=2)

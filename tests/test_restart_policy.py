"""The restart policy as a plain function of the crash history and a fake clock."""

from __future__ import annotations

from sioplay.cluster.policy import Crash, RestartPolicy
from sioplay.settings import Settings

POLICY = RestartPolicy(
    backoff_initial_s=0.1, backoff_max_s=15.0, reset_after_s=30.0, max_crashes=5, crash_window_s=60.0
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


def crash_loop(policy: RestartPolicy, clock: FakeClock, uptime_s: float, count: int) -> list[float | None]:
    """Crash `count` times after `uptime_s` of running, waiting each delay; the delays, None once it gives up."""
    crashes: list[Crash] = []
    delays: list[float | None] = []
    for _ in range(count):
        crashes.append(Crash(at=clock.advance(uptime_s), uptime_s=uptime_s))
        verdict = policy.decide(crashes, clock.now)
        delays.append(verdict.delay_s if verdict.restart else None)
        if not verdict.restart:
            break
        clock.advance(verdict.delay_s)
    return delays


def test_back_off_doubles_from_the_initial_delay() -> None:
    policy = RestartPolicy(0.1, 15.0, 30.0, max_crashes=100, crash_window_s=60.0)
    assert crash_loop(policy, FakeClock(), uptime_s=0.5, count=5) == [0.1, 0.2, 0.4, 0.8, 1.6]


def test_back_off_is_capped() -> None:
    policy = RestartPolicy(0.1, 15.0, 30.0, max_crashes=100, crash_window_s=1.0)
    assert crash_loop(policy, FakeClock(), uptime_s=2.0, count=10)[-3:] == [12.8, 15.0, 15.0]


def test_a_long_enough_run_resets_the_back_off() -> None:
    clock = FakeClock()
    crashes = [Crash(at=clock.advance(1), uptime_s=1), Crash(at=clock.advance(1), uptime_s=1)]
    assert POLICY.decide(crashes, clock.now).delay_s == 0.2
    crashes.append(Crash(at=clock.advance(40), uptime_s=40))
    assert POLICY.decide(crashes, clock.now).delay_s == 0.1
    crashes.append(Crash(at=clock.advance(1), uptime_s=1))
    assert POLICY.decide(crashes, clock.now).delay_s == 0.2


def test_too_many_crashes_in_the_window_gives_up_and_says_why() -> None:
    clock = FakeClock()
    assert crash_loop(POLICY, clock, uptime_s=0.1, count=10) == [0.1, 0.2, 0.4, 0.8, None]
    crashes = [Crash(at=clock.now - offset, uptime_s=0.1) for offset in (4, 3, 2, 1, 0)]
    verdict = POLICY.decide(crashes, clock.now)
    assert not verdict.restart and verdict.reason == "5 crashes within 60 s"


def test_crashes_older_than_the_window_do_not_count() -> None:
    clock = FakeClock()
    crashes = [Crash(at=clock.advance(20), uptime_s=20) for _ in range(4)]  # one every 20 s: at most 3 per minute
    crashes.append(Crash(at=clock.advance(20), uptime_s=20))
    verdict = POLICY.decide(crashes, clock.now)
    assert verdict.restart and verdict.delay_s == 0.1 * 2**4


def test_the_first_crash_restarts_at_once_with_the_initial_delay() -> None:
    assert POLICY.decide([Crash(at=10.0, uptime_s=10.0)], now=10.0).delay_s == 0.1
    assert POLICY.decide([Crash(at=10.0, uptime_s=10.0)], now=10.0).restart


def test_built_from_settings() -> None:
    settings = Settings(restart_backoff_initial_s=0.05, restart_max_crashes=3, restart_crash_window_s=10.0)
    policy = RestartPolicy.from_settings(settings)
    assert (policy.backoff_initial_s, policy.backoff_max_s, policy.reset_after_s) == (0.05, 15.0, 30.0)
    assert (policy.max_crashes, policy.crash_window_s) == (3, 10.0)

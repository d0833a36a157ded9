"""When to restart a node that exited unexpectedly: a plain function of its crash history and a clock."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from sioplay.settings import Settings

__all__ = ["Crash", "RestartPolicy", "Verdict"]


@dataclasses.dataclass(frozen=True, slots=True)
class Crash:
    at: float  # clock time of the exit
    uptime_s: float  # how long that run lasted


@dataclasses.dataclass(frozen=True, slots=True)
class Verdict:
    restart: bool
    delay_s: float
    reason: str


@dataclasses.dataclass(frozen=True, slots=True)
class RestartPolicy:
    """Exponential back-off, reset by a long enough run; give up after too many crashes in a window.

    The delay doubles with every crash since the last run that lasted
    `reset_after_s`, from `backoff_initial_s` up to `backoff_max_s`. Once
    `max_crashes` crashes fall within the last `crash_window_s`, the node is
    left down.
    """

    backoff_initial_s: float
    backoff_max_s: float
    reset_after_s: float
    max_crashes: int
    crash_window_s: float

    @classmethod
    def from_settings(cls, settings: Settings) -> RestartPolicy:
        return cls(
            backoff_initial_s=settings.restart_backoff_initial_s,
            backoff_max_s=settings.restart_backoff_max_s,
            reset_after_s=settings.restart_reset_after_s,
            max_crashes=settings.restart_max_crashes,
            crash_window_s=settings.restart_crash_window_s,
        )

    def decide(self, crashes: Sequence[Crash], now: float) -> Verdict:
        """What to do after the last of `crashes` (oldest first)."""
        recent = sum(1 for crash in crashes if now - crash.at <= self.crash_window_s)
        if recent >= self.max_crashes:
            return Verdict(False, 0.0, f"{recent} crashes within {self.crash_window_s:g} s")
        streak = 0
        for crash in reversed(crashes):
            streak += 1
            if crash.uptime_s >= self.reset_after_s:
                break
        delay = min(self.backoff_initial_s * 2 ** max(streak - 1, 0), self.backoff_max_s)
        return Verdict(True, delay, f"crash {streak} in a row, restarting in {delay:g} s")

"""Sampling profiles of the bench's processes with py-spy, and where their time went.

py-spy samples a running process from outside, so the node being measured runs
unmodified; `record --format raw` writes one line per distinct stack with its
sample count, which `hot_spots` folds into the functions holding the most time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import shutil
import signal
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from sioplay.errors import ConfigError

__all__ = ["HotSpot", "hot_spots", "profiled"]

SAMPLES_PER_S = 250
STOP_TIMEOUT_S = 30.0
# "function (path/to/file.py:123)", or "function (path/to/file.py)" for native frames.
_FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^:()]+)(?::\d+)?\)$")


@dataclasses.dataclass(frozen=True, slots=True)
class HotSpot:
    function: str
    self_percent: float
    total_percent: float


def _py_spy() -> str:
    found = shutil.which("py-spy")
    if found is None:
        raise ConfigError("--profile needs py-spy on PATH: pip install 'sioplay[profile]'")
    return found


@contextlib.contextmanager
def profiled(pids: dict[str, int], out_dir: Path) -> Iterator[dict[str, Path]]:
    """Record each named process while the block runs; yields where each profile is written."""
    py_spy = _py_spy()
    out_dir.mkdir(parents=True, exist_ok=True)
    outputs = {name: out_dir / f"{name}.txt" for name in pids}
    recorders = [
        subprocess.Popen(
            [
                py_spy,
                "record",
                "--pid",
                str(pid),
                "--format",
                "raw",
                "--rate",
                str(SAMPLES_PER_S),
                "--nonblocking",
                "--output",
                str(outputs[name]),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name, pid in pids.items()
    ]
    try:
        yield outputs
    finally:
        for recorder in recorders:
            if recorder.poll() is None:
                # py-spy writes its output when interrupted.
                recorder.send_signal(signal.SIGINT)
        for recorder in recorders:
            try:
                recorder.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                recorder.kill()
                recorder.wait()


def _short(frame: str) -> str:
    match = _FRAME.match(frame)
    if match is None:
        return frame
    path = match["file"]
    for marker in ("site-packages/", "lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    else:
        path = path.rsplit("/sioplay/", 1)[-1] if "/sioplay/" in path else path.rsplit("/", 1)[-1]
    return f"{match['function']} ({path})"


def hot_spots(profile: Path, top: int = 15) -> list[HotSpot]:
    """The `top` functions by self time, each with its self and total (inclusive) share of the samples."""
    self_samples: Counter[str] = Counter()
    total_samples: Counter[str] = Counter()
    samples = 0
    for line in profile.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_short(frame) for frame in stack.split(";")[1:]]  # the first is the process
        if not frames:
            continue
        samples += count
        self_samples[frames[-1]] += count
        for function in set(frames):
            total_samples[function] += count
    if not samples:
        return []
    return [
        HotSpot(function, round(100 * count / samples, 1), round(100 * total_samples[function] / samples, 1))
        for function, count in self_samples.most_common(top)
    ]

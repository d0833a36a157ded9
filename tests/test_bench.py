"""`sioplay bench roster | join-storm | hold` at tiny sizes, each as a real `python -m sioplay` process."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest

from sioplay.settings import Settings

RUN_TIMEOUT_S = 60.0
INTERRUPT_GRACE_S = 15.0


def bench(home: Path, *args: str, **settings: Any) -> Any:
    """The figures the bench prints with --json; it must exit 0 within RUN_TIMEOUT_S."""
    env = {**Settings(home=home, host="127.0.0.1", **settings).child_env(), "COLUMNS": "120"}
    process = subprocess.Popen(
        [sys.executable, "-m", "sioplay", "bench", *args, "--json"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        _stop(process)
        raise
    assert process.returncode == 0, stderr
    return json.loads(stdout)


def _stop(process: subprocess.Popen[str]) -> None:
    """Ctrl-C lets the bench stop its own fleet; failing that, kill it and whatever it started, by PID."""
    children = psutil.Process(process.pid).children(recursive=True)
    process.send_signal(signal.SIGINT)
    try:
        process.communicate(timeout=INTERRUPT_GRACE_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
    for child in children:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass


def test_roster_bench_is_exact(tmp_path: Path) -> None:
    [figures] = bench(tmp_path, "roster", "--nodes", "1", "--clients", "5", "--duration", "0.5", "--requests", "10")
    assert figures["nodes"] == 1 and figures["clients"] == 5
    assert figures["exact"] is True
    assert figures["requests_per_s"] > 0
    assert 0 < figures["p50_ms"] <= figures["p95_ms"] <= figures["p99_ms"]


def test_roster_bench_measures_both_modes_and_read_your_join(tmp_path: Path) -> None:
    results = bench(
        tmp_path, "roster", "--nodes", "2", "--clients", "4", "--duration", "0.3", "--requests", "10",
        "--mode", "ask,replica", "--freshness-trials", "3",
    )  # fmt: skip
    assert [figures["mode"] for figures in results] == ["ask", "replica"]
    for figures in results:
        assert figures["exact"] is True and figures["requests_per_s"] > 0
        fresh = figures["freshness"]
        assert fresh["trials"] == 3 and 0 < fresh["p50_ms"] <= fresh["max_ms"]
        assert fresh["first_query"] == 3, "both modes include a join in the first answer after its handshake"


def test_roster_bench_plots_its_growth(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    chart = tmp_path / "growth.svg"
    results = bench(
        tmp_path,
        "roster",
        "--nodes",
        "1",
        "--clients",
        "5,10",
        "--duration",
        "0.5",
        "--requests",
        "10",
        "--plot",
        str(chart),
    )
    # --plot leaves the JSON as it was: a list of figures.
    assert [(figures["nodes"], figures["clients"]) for figures in results] == [(1, 5), (1, 10)]
    assert all(figures["exact"] for figures in results)
    svg = chart.read_text()
    assert svg.startswith("<?xml") and "<svg" in svg and "</svg>" in svg


def test_join_storm_hears_every_join_and_rosters_are_exact(tmp_path: Path) -> None:
    figures = bench(tmp_path, "join-storm", "--nodes", "2", "--clients", "20", "--concurrency", "10", "--timeout", "30")
    assert figures["nodes"] == 2 and figures["clients"] == 20 and figures["concurrency"] == 10
    assert figures["drops"] == {}
    assert figures["exact"] is True
    assert figures["deliveries_expected"] == 20 * 19 // 2
    # Two joins racing on different nodes may each reach the other: never fewer, sometimes a few more.
    assert figures["deliveries"] >= figures["deliveries_expected"]
    assert 0 < figures["connected_s"] <= figures["delivered_s"]
    assert figures["deliveries_per_s"] > 0
    assert figures["cpu_s"] > 0 and figures["cpu_ms_per_join"] > 0


def test_a_join_storm_on_token_nodes_connects_every_client_with_a_minted_token(tmp_path: Path) -> None:
    figures = bench(tmp_path, "join-storm", "--nodes", "2", "--clients", "10", "--timeout", "30", auth="token")
    assert figures["clients"] == 10 and figures["drops"] == {} and figures["exact"] is True


def test_hold_keeps_everyone_and_every_check_is_exact(tmp_path: Path) -> None:
    figures = bench(tmp_path, "hold", "--nodes", "2", "--rooms", "3", "--per-room", "5", "--duration", "2")
    assert (figures["nodes"], figures["clients"], figures["rooms"]) == (2, 15, 3)
    assert figures["drops"] == {}
    assert figures["exact"] is True
    assert figures["held_s"] >= 2
    # The first round of checks starts as the hold does.
    assert figures["checks"] >= 3 and figures["checks_exact"] == figures["checks"]
    assert figures["final_checks"] == 3 * 2 and figures["final_checks_exact"] == 6
    # A quiet hold of 15 clients may well round to 0 % of a core.
    assert figures["node_rss_mb"] > 0 and figures["cpu_percent"] >= 0

"""The roster growth pivot, its table and chart, and the bench clients' wait for deliveries: nothing started."""

from __future__ import annotations

import asyncio
import io
import sys
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

import sioplay.commands.bench as bench_commands
from sioplay.bench.chart import check_chart_path
from sioplay.bench.clients import BenchClient, BenchClients
from sioplay.bench.growth import GrowthRatio, growth
from sioplay.bench.roster_bench import RosterFigures
from sioplay.cli import app
from sioplay.errors import ConfigError


def figures(nodes: int, clients: int, cpu_ms: float, p50_ms: float) -> RosterFigures:
    return RosterFigures(
        nodes=nodes,
        clients=clients,
        p50_ms=p50_ms,
        p95_ms=p50_ms * 2,
        p99_ms=p50_ms * 3,
        requests_per_s=1000.0,
        cpu_ms_per_query=cpu_ms,
        exact=True,
    )


# In the order the bench measures: node count by node count; 4 nodes were not measured at M = 2000.
MEASURED = [
    figures(1, 40, 0.5, 0.8),
    figures(1, 400, 1.5, 1.6),
    figures(1, 2000, 6.0, 4.0),
    figures(4, 40, 1.0, 1.0),
    figures(4, 400, 0.0, 1.5),
]


def test_growth_pivots_by_m_and_node_count() -> None:
    grown = growth(reversed(MEASURED))
    assert grown.clients == (40, 400, 2000) and grown.nodes == (1, 4)
    assert grown.grows
    assert grown.cell(400, 1) == MEASURED[1] and grown.cell(2000, 4) is None
    assert grown.series(4) == MEASURED[3:]


def test_growth_ratios_run_from_the_smallest_to_the_largest_m_measured() -> None:
    ratios = growth(MEASURED).ratios()
    assert ratios[0] == GrowthRatio(nodes=1, smallest=40, largest=2000, cpu=12.0, p50=5.0)
    # 4 nodes stop at M = 400.
    assert ratios[1] == GrowthRatio(nodes=4, smallest=40, largest=400, cpu=0.0, p50=1.5)
    # A cost that rounded to 0 at the smallest M has no ratio rather than a division by zero.
    assert growth([figures(2, 40, 0.0, 0.5), figures(2, 400, 1.0, 0.9)]).ratios()[0].cpu is None


def test_growth_of_one_measurement_neither_grows_nor_has_ratios() -> None:
    grown = growth([MEASURED[0]])
    assert not grown.grows and grown.ratios() == []
    assert growth([figures(1, 40, 0.5, 0.8), figures(2, 40, 0.7, 1.1)]).grows


def test_growth_table_follows_the_main_table(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    monkeypatch.setattr(bench_commands, "console", Console(file=out, width=120, color_system=None))
    bench_commands._print_roster(MEASURED, {"ask": growth(MEASURED)}, concurrency=8, profile=None)
    text = out.getvalue()
    assert text.index("roster query") < text.index("how the roster cost grows")
    assert "0.50 / 0.80" in text and "6.00 / 4.00" in text
    assert "1 node, M 40 → 2,000: CPU/query ×12.0, p50 ×5.0" in text
    assert "4 nodes, M 40 → 400: CPU/query ×0.0, p50 ×1.5" in text


def test_plot_path_is_checked_before_anything_starts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="--plot writes .svg or .png"):
        check_chart_path(tmp_path / "growth.gif")
    with pytest.raises(ConfigError, match="no directory"):
        check_chart_path(tmp_path / "missing" / "growth.svg")
    # A None in sys.modules makes the import fail as if matplotlib were not installed.
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    result = CliRunner().invoke(app, ["--home", str(tmp_path), "bench", "roster", "--plot", str(tmp_path / "g.svg")])
    assert result.exit_code == 1, result.output
    assert result.stderr.strip() == "error: --plot needs matplotlib: pip install 'sioplay[plot]'"
    assert not (tmp_path / "g.svg").exists()


def test_chart_is_drawn_without_a_display(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from sioplay.bench.chart import write_chart

    target = tmp_path / "growth.png"
    write_chart(growth(MEASURED), target)
    assert target.read_bytes().startswith(b"\x89PNG")


class Dropping:
    """Stands in for a WireClient whose connection the server closes when `closed` is set."""

    def __init__(self) -> None:
        self.closed = asyncio.Event()

    async def run(self) -> str:
        await self.closed.wait()
        return "server closed"


async def test_wait_heard_wakes_on_the_count_or_on_a_drop() -> None:
    pool = BenchClients([], room_of=lambda _: "Maths")
    loop = asyncio.get_running_loop()
    for delay in (0.01, 0.02, 0.03):
        loop.call_later(delay, pool._count_event)
    await pool.wait_heard(3, timeout_s=5)
    assert pool.heard == 3
    with pytest.raises(TimeoutError):
        await pool.wait_heard(4, timeout_s=0.05)
    # Already heard: no wait, even with no time left.
    await pool.wait_heard(2, timeout_s=0)

    # A dropped client's events can never arrive: the wait ends there rather than at its timeout.
    dropping = Dropping()
    holding = asyncio.create_task(pool._hold(BenchClient(dropping, "1", "Maths", "sid", "node-1")))  # type: ignore[arg-type]
    # The server closes the connection once the wait below has begun.
    loop.call_soon(dropping.closed.set)
    await pool.wait_heard(100, timeout_s=5)
    await holding
    assert pool.drops == {"server closed": 1}

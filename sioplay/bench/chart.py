"""`sioplay bench roster --plot`: the growth curves as SVG or PNG, drawn by matplotlib (the optional `plot` extra)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sioplay.bench.growth import Growth
from sioplay.bench.roster_bench import RosterFigures
from sioplay.common.units import count_of
from sioplay.errors import ConfigError

__all__ = ["check_chart_path", "write_chart"]

FORMATS = (".svg", ".png")


def check_chart_path(path: Path) -> None:
    """ConfigError now for what would only fail after the benchmark: a format, a directory, matplotlib missing."""
    if path.suffix.lower() not in FORMATS:
        raise ConfigError(f"--plot writes .svg or .png, not {path.name!r}")
    if not path.parent.is_dir():
        raise ConfigError(f"--plot: there is no directory {str(path.parent)!r}")
    try:
        import matplotlib.figure  # noqa: F401
    except ImportError:
        raise ConfigError("--plot needs matplotlib: pip install 'sioplay[plot]'") from None


def write_chart(growth: Growth, path: Path) -> None:
    """Server CPU per query and p50 latency against M, one line per node count."""
    from matplotlib import rc_context
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, NullLocator

    panels: list[tuple[str, str, Callable[[RosterFigures], float]]] = [
        ("server CPU per roster query", "ms / query", lambda figures: figures.cpu_ms_per_query),
        ("roster latency, p50 of sequential requests", "ms", lambda figures: figures.p50_ms),
    ]
    # A Figure made without pyplot never picks an interactive backend: Agg draws the PNG, the SVG backend the SVG.
    chart = Figure(figsize=(11, 4.2), layout="constrained")
    for axes, (title, unit, value) in zip(chart.subplots(1, 2), panels, strict=True):
        for nodes in growth.nodes:
            series = growth.series(nodes)
            axes.plot(
                [figures.clients for figures in series],
                [value(figures) for figures in series],
                marker="o",
                label=count_of(nodes, "node"),
            )
        # Log on both axes: M spans orders of magnitude and so may the cost; a straight line's slope is its exponent.
        axes.set_xscale("log")
        axes.set_yscale("log")
        axes.set_xticks(growth.clients, labels=[f"{clients:,}" for clients in growth.clients])
        axes.xaxis.set_minor_locator(NullLocator())
        # Labels at 1, 2 and 5 per decade, in plain numbers; within less than that, LogLocator falls back to even steps.
        axes.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        axes.yaxis.set_major_formatter(FuncFormatter(lambda tick, _: f"{tick:g}"))
        axes.yaxis.set_minor_formatter(NullFormatter())
        axes.set_title(title)
        axes.set_xlabel("clients in the room (M)")
        axes.set_ylabel(unit)
        axes.grid(True, which="both", alpha=0.3)
        axes.legend()
    # Without a date and with fixed ids, the same figures give the same SVG: a chart kept in git changes only with them.
    with rc_context({"svg.hashsalt": "sioplay"}):
        chart.savefig(path, metadata={"Date": None} if path.suffix.lower() == ".svg" else None)

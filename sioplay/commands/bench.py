"""`sioplay bench`: benchmarks that start their own cluster and print figures."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from sioplay.commands._common import console, err_console, handles_errors, print_json, state_of
from sioplay.common.units import count_of
from sioplay.errors import ConfigError

if TYPE_CHECKING:
    from sioplay.bench.growth import Growth
    from sioplay.bench.roster_bench import RosterFigures

__all__ = ["app"]

app = typer.Typer(
    help="Benchmarks: each starts its own Redis, database and nodes, and prints figures.", no_args_is_help=True
)


def _counts(raw: str, what: str) -> list[int]:
    try:
        counts = [int(part) for part in raw.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"{what} must be a comma-separated list of numbers, not {raw!r}") from None
    if not counts or min(counts) < 1:
        raise ConfigError(f"{what} must list positive numbers, not {raw!r}")
    return counts


@app.command("roster")
@handles_errors
def roster(
    ctx: typer.Context,
    nodes: Annotated[str, typer.Option(help="Node counts to measure, comma-separated.")] = "1,2,4",
    clients: Annotated[
        str,
        typer.Option(help="Clients in the room (M), comma-separated; 10000 takes long (each join reaches the room)."),
    ] = "40,400,2000",
    mode: Annotated[
        str,
        typer.Option(
            "--mode",
            help="Roster modes to measure, comma-separated: ask, replica; default: the configured one (ask).",
        ),
    ] = "",
    freshness_trials: Annotated[
        int, typer.Option(min=0, help="Read-your-join trials (join on node 1, ask node 2) for the freshness figures.")
    ] = 20,
    requests: Annotated[int, typer.Option(help="Sequential requests for the latency figures.")] = 500,
    concurrency: Annotated[int, typer.Option(help="Concurrent requesters for the throughput figure.")] = 8,
    duration: Annotated[float, typer.Option(help="Seconds of the throughput phase.")] = 10.0,
    json_output: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
    profile: Annotated[
        Path | None, typer.Option(help="Record each node with py-spy during the req/s phase, into this directory.")
    ] = None,
    plot: Annotated[
        Path | None,
        typer.Option(
            help="Draw CPU/query and p50 against M, a line per node count, to this .svg or .png (needs matplotlib)."
        ),
    ] = None,
) -> None:
    """Roster latency (p50/p95/p99, sequential) and requests/s (concurrent) for each nodes × clients."""
    from sioplay.bench.growth import growth
    from sioplay.bench.roster_bench import run_roster_bench

    if plot is not None:
        from sioplay.bench.chart import check_chart_path

        check_chart_path(plot)
    settings = state_of(ctx).settings
    modes = _modes(mode) or [settings.roster_mode]
    results = run_roster_bench(
        settings,
        _counts(nodes, "--nodes"),
        _counts(clients, "--clients"),
        requests,
        concurrency,
        duration,
        profile_dir=profile,
        modes=modes,
        freshness_trials=freshness_trials,
    )
    # How the cost grows with M is a question within one mode: the pivot is each mode's.
    grown = {each: growth([figures for figures in results if figures.mode == each]) for each in modes}
    if json_output:
        # The pivot stays out: scripts read this list of figures as it was, and can derive the pivot from it.
        print_json([dataclasses.asdict(figures) for figures in results])
    else:
        _print_roster(results, grown, concurrency, profile)
    if plot is not None:
        from sioplay.bench.chart import write_chart

        write_chart(grown[modes[0]], plot)
        err_console.print(f"growth chart written to {escape(str(plot))}", highlight=False)


def _modes(raw: str) -> list[str]:
    modes = [part.strip() for part in raw.split(",") if part.strip()]
    unknown = [each for each in modes if each not in ("ask", "replica")]
    if unknown:
        raise ConfigError(f"--mode must list ask or replica, not {', '.join(unknown)!r}")
    return list(dict.fromkeys(modes))


def _freshness(figures: RosterFigures) -> str:
    fresh = figures.freshness
    if fresh is None:
        return "-"
    return f"{fresh.p50_ms:.2f} / {fresh.max_ms:.2f} ({fresh.first_query}/{fresh.trials} at once)"


def _print_roster(
    results: list[RosterFigures], grown: dict[str, Growth], concurrency: int, profile: Path | None
) -> None:
    _print_table(
        f"roster query, {concurrency} concurrent requesters for req/s",
        (
            "mode",
            "nodes",
            "clients (M)",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "req/s",
            "server CPU ms/query",
            "read-your-join p50 / max ms",
            "exact",
        ),
        [
            (
                figures.mode,
                str(figures.nodes),
                str(figures.clients),
                f"{figures.p50_ms:.2f}",
                f"{figures.p95_ms:.2f}",
                f"{figures.p99_ms:.2f}",
                f"{figures.requests_per_s:.0f}",
                f"{figures.cpu_ms_per_query:.3f}",
                _freshness(figures),
                _yes(figures.exact),
            )
            for figures in results
        ],
        text_columns={"mode", "read-your-join p50 / max ms"},
    )
    for mode, each in grown.items():
        if each.grows:
            _print_growth(each, mode if len(grown) > 1 else None)
    if profile is not None:
        _print_hot_spots(profile)


def _print_growth(grown: Growth, mode: str | None = None) -> None:
    _print_table(
        "how the roster cost grows" + (f" ({mode} mode)" if mode else ""),
        ["clients (M)", *(count_of(nodes, "node") for nodes in grown.nodes)],
        [[f"{clients:,}", *(_cost(grown.cell(clients, nodes)) for nodes in grown.nodes)] for clients in grown.clients],
        caption="server CPU ms/query / p50 ms",
    )
    for ratio in grown.ratios():
        console.print(
            f"{count_of(ratio.nodes, 'node')}, M {ratio.smallest:,} → {ratio.largest:,}:"
            f" CPU/query {_times(ratio.cpu)}, p50 {_times(ratio.p50)}",
            highlight=False,
        )


def _cost(figures: RosterFigures | None) -> str:
    return "-" if figures is None else f"{figures.cpu_ms_per_query:.2f} / {figures.p50_ms:.2f}"


def _times(ratio: float | None) -> str:
    return "n/a" if ratio is None else f"×{ratio:.1f}"


def _print_hot_spots(profile_dir: Path) -> None:
    from sioplay.bench.profile import hot_spots

    for recorded in sorted(profile_dir.rglob("node-1.txt")):
        _print_table(
            f"node-1 at {recorded.parent.name}: where the req/s phase spent its samples",
            ("function", "self %", "total %"),
            [(spot.function, f"{spot.self_percent:.1f}", f"{spot.total_percent:.1f}") for spot in hot_spots(recorded)],
            text_columns={"function"},
        )
    console.print(f"raw py-spy stacks (collapsed format, for flame graphs) in {profile_dir}")


@app.command("join-storm")
@handles_errors
def join_storm(
    ctx: typer.Context,
    nodes: Annotated[int, typer.Option(min=1, help="Node processes.")] = 4,
    clients: Annotated[int, typer.Option(min=2, help="Clients joining the one room (M).")] = 2000,
    concurrency: Annotated[int, typer.Option(min=1, help="Handshakes in flight at once.")] = 100,
    timeout: Annotated[float, typer.Option(min=1, help="Give up if the storm is not over after this many s.")] = 300.0,
    json_output: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
) -> None:
    """M clients join one room at once; each join is told to all already there: M*(M-1)/2 deliveries."""
    from sioplay.bench.join_storm import run_join_storm_bench

    figures = run_join_storm_bench(state_of(ctx).settings, nodes, clients, concurrency, timeout)
    _print_run(
        figures,
        json_output,
        f"join storm into one room, {figures.concurrency} handshakes in flight",
        {
            "nodes": str(figures.nodes),
            "clients (M)": str(figures.clients),
            "all connected s": f"{figures.connected_s:.2f}",
            "all delivered s": f"{figures.delivered_s:.2f}",
            "deliveries": f"{figures.deliveries}/{figures.deliveries_expected}",
            "deliveries/s": f"{figures.deliveries_per_s:.0f}",
            "server CPU s": f"{figures.cpu_s:.2f}",
            "CPU ms/join": f"{figures.cpu_ms_per_join:.2f}",
            "node RSS KB/client": f"{figures.node_rss_kb_per_client:.1f}",
            "drops": _drops(figures.drops),
            "roster exact": _yes(figures.exact),
        },
    )


@app.command("hold")
@handles_errors
def hold(
    ctx: typer.Context,
    nodes: Annotated[int, typer.Option(min=1, help="Node processes.")] = 4,
    rooms: Annotated[int, typer.Option(min=1, help="Rooms; client i is in room-{i % rooms}.")] = 100,
    per_room: Annotated[int, typer.Option(min=1, help="Clients in each room.")] = 100,
    duration: Annotated[float, typer.Option(min=0.1, help="Seconds to hold everyone connected.")] = 60.0,
    json_output: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
) -> None:
    """Rooms x per-room clients held connected while every room's roster is checked from node after node."""
    from sioplay.bench.hold import run_hold_bench

    figures = run_hold_bench(state_of(ctx).settings, nodes, rooms, per_room, duration)
    _print_run(
        figures,
        json_output,
        f"{figures.clients} clients held in {figures.rooms} rooms",
        {
            "nodes": str(figures.nodes),
            "clients": str(figures.clients),
            "rooms": str(figures.rooms),
            "connect s": f"{figures.connect_s:.2f}",
            "held s": f"{figures.held_s:.1f}",
            "drops": _drops(figures.drops),
            "checks exact": f"{figures.checks_exact}/{figures.checks}",
            "final checks exact": f"{figures.final_checks_exact}/{figures.final_checks}",
            "node RSS MB": f"{figures.node_rss_mb:.1f}",
            "node RSS KB/client": f"{figures.node_rss_kb_per_client:.1f}",
            "server CPU %": f"{figures.cpu_percent:.0f}",
            "exact": _yes(figures.exact),
        },
    )


def _print_run(figures: Any, json_output: bool, title: str, cells: dict[str, str]) -> None:
    """The figures of a one-run bench (a dataclass): as JSON, or as a one-row table of column: cell."""
    if json_output:
        print_json(dataclasses.asdict(figures))
        return
    _print_table(title, list(cells), [list(cells.values())])


def _print_table(
    title: str,
    columns: Sequence[str],
    rows: Iterable[Sequence[str]],
    *,
    text_columns: Collection[str] = (),
    caption: str | None = None,
) -> None:
    """Every bench table: figures right-aligned so that they line up, `text_columns` left-aligned."""
    table = Table(title=title, caption=caption)
    for column in columns:
        table.add_column(column, justify="left" if column in text_columns else "right")
    for row in rows:
        table.add_row(*row)
    console.print(table)


def _yes(exact: bool) -> str:
    return "yes" if exact else "[red]NO[/]"


def _drops(drops: dict[str, int]) -> str:
    if not drops:
        return "0"
    return "[red]" + "; ".join(f"{count} {escape(reason)}" for reason, count in drops.items()) + "[/]"

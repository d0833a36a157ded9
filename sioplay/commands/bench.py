"""`sioplay bench`: benchmarks that start their own cluster and print figures."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from sioplay.cluster.units import count_of
from sioplay.commands._common import console, err_console, handles_errors, print_json, state_of
from sioplay.errors import ConfigError

if TYPE_CHECKING:
    from sioplay.bench.growth import Growth
    from sioplay.bench.roster import RosterFigures

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
    from sioplay.bench.roster import run_roster_bench

    if plot is not None:
        from sioplay.bench.chart import check_chart_path

        check_chart_path(plot)
    settings = state_of(ctx).settings
    results = run_roster_bench(
        settings,
        _counts(nodes, "--nodes"),
        _counts(clients, "--clients"),
        requests,
        concurrency,
        duration,
        profile_dir=profile,
    )
    grown = growth(results)
    if json_output:
        # The pivot stays out: scripts read this list of figures as it was, and can derive the pivot from it.
        print_json([dataclasses.asdict(figures) for figures in results])
    else:
        _print_roster(results, grown, concurrency, profile)
    if plot is not None:
        from sioplay.bench.chart import write_chart

        write_chart(grown, plot)
        err_console.print(f"growth chart written to {escape(str(plot))}", highlight=False)


def _print_roster(results: list[RosterFigures], grown: Growth, concurrency: int, profile: Path | None) -> None:
    _print_figures(
        f"roster query, {concurrency} concurrent requesters for req/s",
        ("nodes", "clients (M)", "p50 ms", "p95 ms", "p99 ms", "req/s", "server CPU ms/query", "exact"),
        [
            (
                str(figures.nodes),
                str(figures.clients),
                f"{figures.p50_ms:.2f}",
                f"{figures.p95_ms:.2f}",
                f"{figures.p99_ms:.2f}",
                f"{figures.requests_per_s:.0f}",
                f"{figures.cpu_ms_per_query:.3f}",
                _yes(figures.exact),
            )
            for figures in results
        ],
    )
    if grown.grows:
        _print_growth(grown)
    if profile is not None:
        _print_hot_spots(profile)


def _print_growth(grown: Growth) -> None:
    table = Table(title="how the roster cost grows", caption="server CPU ms/query / p50 ms")
    table.add_column("clients (M)", justify="right")
    for nodes in grown.nodes:
        table.add_column(count_of(nodes, "node"), justify="right")
    for clients in grown.clients:
        cells = [grown.cell(clients, nodes) for nodes in grown.nodes]
        table.add_row(
            f"{clients:,}",
            *("-" if each is None else f"{each.cpu_ms_per_query:.2f} / {each.p50_ms:.2f}" for each in cells),
        )
    console.print(table)
    for ratio in grown.ratios():
        console.print(
            f"{count_of(ratio.nodes, 'node')}, M {ratio.smallest:,} → {ratio.largest:,}:"
            f" CPU/query {_times(ratio.cpu)}, p50 {_times(ratio.p50)}",
            highlight=False,
        )


def _times(ratio: float | None) -> str:
    return "n/a" if ratio is None else f"×{ratio:.1f}"


def _print_hot_spots(profile_dir: Path) -> None:
    from sioplay.bench.profile import hot_spots

    for recorded in sorted(profile_dir.glob("*/node-1.txt")):
        table = Table(title=f"node-1 at {recorded.parent.name}: where the req/s phase spent its samples")
        for column in ("function", "self %", "total %"):
            table.add_column(column, justify="left" if column == "function" else "right")
        for spot in hot_spots(recorded):
            table.add_row(spot.function, f"{spot.self_percent:.1f}", f"{spot.total_percent:.1f}")
        console.print(table)
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
    if json_output:
        print_json(dataclasses.asdict(figures))
        return
    _print_figures(
        f"join storm into one room, {figures.concurrency} handshakes in flight",
        (
            "nodes", "clients (M)", "all connected s", "all delivered s", "deliveries", "deliveries/s",
            "server CPU s", "CPU ms/join", "node RSS KB/client", "drops", "roster exact",
        ),
        [(
            str(figures.nodes),
            str(figures.clients),
            f"{figures.connected_s:.2f}",
            f"{figures.delivered_s:.2f}",
            f"{figures.deliveries}/{figures.deliveries_expected}",
            f"{figures.deliveries_per_s:.0f}",
            f"{figures.cpu_s:.2f}",
            f"{figures.cpu_ms_per_join:.2f}",
            f"{figures.node_rss_kb_per_client:.1f}",
            _drops(figures.drops),
            _yes(figures.exact),
        )],
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
    if json_output:
        print_json(dataclasses.asdict(figures))
        return
    _print_figures(
        f"{figures.clients} clients held in {figures.rooms} rooms",
        (
            "nodes", "clients", "rooms", "connect s", "held s", "drops", "checks exact", "final checks exact",
            "node RSS MB", "node RSS KB/client", "server CPU %", "exact",
        ),
        [(
            str(figures.nodes),
            str(figures.clients),
            str(figures.rooms),
            f"{figures.connect_s:.2f}",
            f"{figures.held_s:.1f}",
            _drops(figures.drops),
            f"{figures.checks_exact}/{figures.checks}",
            f"{figures.final_checks_exact}/{figures.final_checks}",
            f"{figures.node_rss_mb:.1f}",
            f"{figures.node_rss_kb_per_client:.1f}",
            f"{figures.cpu_percent:.0f}",
            _yes(figures.exact),
        )],
    )


def _print_figures(title: str, columns: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    table = Table(title=title)
    for column in columns:
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(*row)
    console.print(table)


def _yes(exact: bool) -> str:
    return "yes" if exact else "[red]NO[/]"


def _drops(drops: dict[str, int]) -> str:
    if not drops:
        return "0"
    return "[red]" + "; ".join(f"{count} {escape(reason)}" for reason, count in drops.items()) + "[/]"

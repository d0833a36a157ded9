"""`sioplay bench`: benchmarks that start their own cluster and print figures."""

from __future__ import annotations

import dataclasses
from typing import Annotated

import typer
from rich.table import Table

from sioplay.commands._common import console, handles_errors, print_json, state_of
from sioplay.errors import ConfigError

__all__ = ["app"]

app = typer.Typer(help="Benchmarks: each starts its own Redis, database and nodes, and prints figures.", no_args_is_help=True)


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
    clients: Annotated[str, typer.Option(help="Clients in the room (M), comma-separated.")] = "40,400,2000",
    requests: Annotated[int, typer.Option(help="Sequential requests for the latency figures.")] = 500,
    concurrency: Annotated[int, typer.Option(help="Concurrent requesters for the throughput figure.")] = 8,
    duration: Annotated[float, typer.Option(help="Seconds of the throughput phase.")] = 10.0,
    json_output: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
) -> None:
    """Roster latency (p50/p95/p99, sequential) and requests/s (concurrent) for each nodes × clients."""
    from sioplay.bench.roster import run_roster_bench

    settings = state_of(ctx).settings
    results = run_roster_bench(
        settings, _counts(nodes, "--nodes"), _counts(clients, "--clients"), requests, concurrency, duration
    )
    if json_output:
        print_json([dataclasses.asdict(figures) for figures in results])
        return
    table = Table(title=f"roster query, {concurrency} concurrent requesters for req/s")
    for column in ("nodes", "clients (M)", "p50 ms", "p95 ms", "p99 ms", "req/s", "server CPU ms/query", "exact"):
        table.add_column(column, justify="right")
    for figures in results:
        table.add_row(
            str(figures.nodes),
            str(figures.clients),
            f"{figures.p50_ms:.2f}",
            f"{figures.p95_ms:.2f}",
            f"{figures.p99_ms:.2f}",
            f"{figures.requests_per_s:.0f}",
            f"{figures.cpu_ms_per_query:.3f}",
            "yes" if figures.exact else "[red]NO[/]",
        )
    console.print(table)

"""How the roster cost grows with M and the node count: the pivot behind `bench roster`'s growth table and chart."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from sioplay.bench.roster_bench import RosterFigures

__all__ = ["Growth", "GrowthRatio", "growth"]


@dataclasses.dataclass(frozen=True, slots=True)
class GrowthRatio:
    """For one node count: cost at the largest M measured over cost at the smallest.

    A ratio is None when the cost at the smallest M rounded to 0: there is nothing to divide by.
    """

    nodes: int
    smallest: int
    largest: int
    cpu: float | None
    p50: float | None


@dataclasses.dataclass(frozen=True, slots=True)
class Growth:
    """Roster figures pivoted: M (`clients`) down, node counts across, both ascending; `cells` by (clients, nodes)."""

    clients: tuple[int, ...]
    nodes: tuple[int, ...]
    cells: dict[tuple[int, int], RosterFigures]

    @property
    def grows(self) -> bool:
        """More than one M or more than one node count: something to compare."""
        return len(self.clients) > 1 or len(self.nodes) > 1

    def cell(self, clients: int, nodes: int) -> RosterFigures | None:
        return self.cells.get((clients, nodes))

    def series(self, nodes: int) -> list[RosterFigures]:
        """One node count's figures by ascending M: one curve of the chart."""
        return [figures for clients in self.clients if (figures := self.cell(clients, nodes)) is not None]

    def ratios(self) -> list[GrowthRatio]:
        """One per node count measured at two M or more."""
        ratios: list[GrowthRatio] = []
        for nodes in self.nodes:
            series = self.series(nodes)
            if len(series) < 2:
                continue
            first, last = series[0], series[-1]
            ratios.append(
                GrowthRatio(
                    nodes=nodes,
                    smallest=first.clients,
                    largest=last.clients,
                    cpu=_ratio(last.cpu_ms_per_query, first.cpu_ms_per_query),
                    p50=_ratio(last.p50_ms, first.p50_ms),
                )
            )
        return ratios


def growth(figures: Iterable[RosterFigures]) -> Growth:
    """The pivot of `figures`; a later figure for the same M and node count replaces an earlier one."""
    cells = {(each.clients, each.nodes): each for each in figures}
    return Growth(
        clients=tuple(sorted({clients for clients, _ in cells})),
        nodes=tuple(sorted({nodes for _, nodes in cells})),
        cells=cells,
    )


def _ratio(at_largest: float, at_smallest: float) -> float | None:
    return at_largest / at_smallest if at_smallest > 0 else None

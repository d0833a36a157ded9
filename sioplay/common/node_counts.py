"""The one way a count of answering nodes is written, wherever it is shown (roster JSON, `who`, the page, status).

Counts are by node instance: two processes never share a node id (see node/id_conflicts.py).
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["answer_summary"]


def answer_summary(answered: int, expected: int, missing: Sequence[str]) -> str:
    """'3 of 4 nodes answered; no answer from web1/node-4'."""
    text = f"{answered} of {expected} nodes answered"
    return f"{text}; no answer from {', '.join(missing)}" if missing else text

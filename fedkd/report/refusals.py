"""Loud, named failure: who was refused and why, on the console, and whether the run failed.

Each round record carries ``refusals`` (client name -> "reason: detail", clipped by the server) and
``replies`` (valid ones). :class:`RefusalLog` turns the records into console lines, a client's reason
shown the first time and whenever it changes; :func:`never_contributed` and :func:`run_failure` say how
the run ended. ``fedkd simulate``, ``fedkd federation`` and ``fedkd compare`` share them.
"""
from __future__ import annotations

from typing import Iterable, Mapping


class RefusalLog:
    """Console lines for the refusals of each round: new or changed reasons only."""

    def __init__(self) -> None:
        self.last: dict[str, str] = {}

    def lines(self, record: Mapping) -> list[str]:
        out = []
        for name, why in sorted((record.get("refusals") or {}).items()):
            if self.last.get(name) != why:
                out.append(f"round {record.get('round')}: {name} refused: {why}")
                self.last[name] = why
        return out


def contributors(records: Iterable[Mapping]) -> set[str]:
    """The clients with at least one valid reply (their accuracies are recorded only then)."""
    return {client for r in records for client in (r.get("per_client_local_acc") or {})}


def never_contributed(records: list[Mapping], num_clients: int) -> str | None:
    """The final line: how many clients never sent a valid reply (None when every one did)."""
    missing = sorted(set(range(num_clients)) - {int(c) for c in contributors(records)})
    if not missing:
        return None
    shown = ", ".join(f"client {c}" for c in missing[:20]) + (", ..." if len(missing) > 20 else "")
    return f"{len(missing)} of {num_clients} nodes never contributed a valid reply ({shown})"


def run_failure(records: list[Mapping], min_replies: int, max_failed_rounds: int) -> str | None:
    """Why the run counts as failed (non-zero exit), or None.

    Failed: no reply was ever valid, or its last ``max_failed_rounds`` rounds each had fewer than
    ``min_replies`` valid replies (the round loop stops there).
    """
    if not records:
        return "no round was completed"
    if sum(int(r.get("replies", 0)) for r in records) == 0:
        return f"no reply was valid in any of the {len(records)} rounds"
    tail = records[-max_failed_rounds:]
    if len(tail) == max_failed_rounds and all(int(r.get("replies", 0)) < min_replies for r in tail):
        return (f"the last {max_failed_rounds} rounds (server.max_failed_rounds) each had fewer than "
                f"server.min_replies={min_replies} valid replies")
    return None

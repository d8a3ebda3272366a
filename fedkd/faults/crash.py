"""Stop the server after a round as if it had crashed (for testing ``--resume``)."""
from __future__ import annotations

from fedkd.observers import RoundObserver, StopRun


class StopAfterRound(RoundObserver):
    def __init__(self, round_num: int):
        self.round_num = round_num

    def on_round(self, record) -> None:
        if record.get("round") == self.round_num:
            raise StopRun(f"fault.stop_after_round={self.round_num} (a simulated crash)")

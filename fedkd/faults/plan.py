"""Which client misbehaves how, in which round: the fault plan a robustness run's ``fault.*`` keys describe."""
from __future__ import annotations

from dataclasses import dataclass
import numpy as np

from fedkd.keys import ConfigError
from fedkd.faults.knowledge import LIE_KINDS, parse_swap
from fedkd.faults.malformed import CATALOGUE
from fedkd.faults.settings import FaultSettings
from fedkd.seeding import derive_seed


def parse_malformed(entries: list[str]) -> dict[tuple[int, int | None], str]:
    """``["1:2:nan", "3:*:bad_dtype"]`` -> ``{(1, 2): "nan", (3, None): "bad_dtype"}`` (None = every round).

    Raises ValueError naming the first bad entry.
    """
    plan: dict[tuple[int, int | None], str] = {}
    for entry in entries:
        parts = [p.strip() for p in entry.split(":")]
        if len(parts) != 3:
            raise ValueError(f"{entry!r} is not CLIENT:ROUND:KIND")
        client, rnd, kind = parts
        if not client.isdigit():
            raise ValueError(f"{entry!r}: client {client!r} is not a partition id")
        if not (rnd == "*" or (rnd.isdigit() and int(rnd) >= 1)):
            raise ValueError(f"{entry!r}: round {rnd!r} is not a round number >= 1 or *")
        if kind not in CATALOGUE:
            raise ValueError(f"{entry!r}: unknown kind {kind!r}; known: {', '.join(CATALOGUE)}")
        key = (int(client), None if rnd == "*" else int(rnd))
        if key in plan:
            raise ValueError(f"{entry!r}: client {client} already has a fault for round {rnd}")
        plan[key] = kind
    return plan


@dataclass(frozen=True)
class FaultPlan:
    num_clients: int
    seed: int
    lie_kind: str                                  # fault.kind ("none" = nobody lies)
    liars: frozenset[int]
    malformed: dict                                # (client, round or None) -> catalogue kind
    stop_after_round: int
    swap: tuple[int, int] = (3, 8)                 # fault.swap, for lie_kind "swap"
    collude: bool = False                          # fault.collude: the liars upload one identical answer
    collude_noise: float = 0.0                     # fault.collude_noise: each one's share of its own random rows
    echo_noise: float = 0.0                        # fault.echo_noise: an echo's share of its own rows
    echo_with: str = "random"                      # fault.echo_with: its own random rows, or its own answer

    @classmethod
    def from_settings(cls, faults: FaultSettings) -> "FaultPlan":
        """The plan, checked against the run (ConfigError names the key)."""
        n = faults.num_clients
        try:
            malformed = parse_malformed(list(faults.malformed))
        except ValueError as exc:
            raise ConfigError(f"config key 'fault.malformed': {exc}") from None
        outside = sorted({c for c, _ in malformed if c >= n})
        if outside:
            raise ConfigError(f"config key 'fault.malformed': clients {outside} are not client ids "
                              f"(num_clients={n})")
        weights_run = faults.algorithm == "fedavg"
        for (client, _), kind in malformed.items():
            target = CATALOGUE[kind].target
            if (target == "weights" and not weights_run) or (target == "soft_labels" and weights_run):
                raise ConfigError(f"config key 'fault.malformed': {kind!r} breaks {target} replies, but "
                                  f"algorithm {faults.algorithm!r} exchanges "
                                  f"{'weights' if weights_run else 'soft labels'}")
            if target == "soft_labels" and kind != "stray_wire_arrays" and (
                    faults.wire_dtype != "float32" or faults.wire_topk != 0):
                raise ConfigError(f"config key 'fault.malformed': {kind!r} is defined for the default wire "
                                  "format; set wire_dtype=float32 and wire_topk=0")
        liars: frozenset[int] = frozenset()
        if faults.kind != "none":
            if faults.kind not in LIE_KINDS:
                raise ConfigError(f"config key 'fault.kind': {faults.kind!r} is not one of {LIE_KINDS}")
            if faults.clients:
                liars = frozenset(int(x) for x in faults.clients)
            else:
                liars = frozenset(range(n - faults.num_malicious, n))
        try:
            swap = parse_swap(faults.swap)
        except ValueError as exc:
            raise ConfigError(f"config key 'fault.swap': {exc}") from None
        if faults.collude and len(liars) < 2:
            raise ConfigError("config key 'fault.collude': collusion needs at least two malicious clients "
                              "(fault.kind with fault.num_malicious or fault.clients)")
        return cls(num_clients=n, seed=faults.seed, lie_kind=faults.kind, liars=liars,
                   malformed=malformed, stop_after_round=faults.stop_after_round, swap=swap,
                   collude=bool(faults.collude), collude_noise=float(faults.collude_noise),
                   echo_noise=float(faults.echo_noise), echo_with=str(faults.echo_with))

    @property
    def leader(self) -> int | None:
        """The colluders' shared identity: their answers all come from one model on this client's data."""
        return min(self.liars) if self.collude and self.liars else None

    def malformation(self, client: int, round_num: int) -> str | None:
        """The catalogue kind this client injects in this round (a round-specific entry wins over *)."""
        return self.malformed.get((client, round_num), self.malformed.get((client, None)))

    def lie_rng(self, client: int, round_num: int) -> np.random.Generator:
        return np.random.default_rng(derive_seed(self.seed, "attack", client, round_num))

    def blur_rng(self, client: int, round_num: int, stream: str = "collude-noise") -> np.random.Generator:
        """A liar's own stream for ``collude_noise`` (independent of the shared answer's) or, with
        ``stream="echo-noise"``, for ``echo_noise``."""
        return np.random.default_rng(derive_seed(self.seed, stream, client, round_num))

"""Who takes part in a round: the clients sampled for it and the nodes bound to them.

With ``clients_per_round = k`` (0 < k < N) each round draws k client ids without
replacement from a generator seeded by (seed, round), so a run's sample is the
same every time; otherwise every client takes part. Messages go only to the
nodes bound to the chosen clients (``server/identity.py``).
"""
from __future__ import annotations

import logging

import numpy as np
from flwr.serverapp import Grid

from fedkd.seeding import derive_seed
from fedkd.settings import ServerSettings
from server.identity import IdentityBook

log = logging.getLogger("fedkd.server")


def sample_clients(settings: ServerSettings, round_num: int) -> list[int]:
    """The client ids that take part in ``round_num`` (sorted)."""
    if not settings.sampling:
        return list(range(settings.num_clients))
    rng = np.random.default_rng(derive_seed(settings.seed, "sample", round_num))
    return sorted(int(c) for c in rng.choice(settings.num_clients, settings.clients_per_round, replace=False))


class Participation:
    def __init__(self, settings: ServerSettings, identities: IdentityBook):
        self.settings = settings
        self.identities = identities
        self.absent: dict[int, str] = {}  # the last plan's chosen clients without a live node -> why

    def plan(self, grid: Grid, round_num: int) -> tuple[list[int], dict[int, int], int]:
        """(sampled client ids, {node id: client id} of those with a live, bound node, live node count)."""
        chosen = sample_clients(self.settings, round_num)
        live = sorted(grid.get_node_ids())
        self.identities.refresh(grid, live, clients=set(chosen))
        live_set = set(live)
        plan = {}
        for client in chosen:
            node = self.identities.node_of.get(client)
            if node is not None and node in live_set:
                plan[node] = client
        bound = set(plan.values())  # a set: with every one of 10,000 clients chosen, no quadratic scan
        self.absent = {client: self._why_absent(client) for client in chosen if client not in bound}
        if self.absent:
            log.warning("round %d: %d of the %d chosen clients have no identified live node", round_num,
                        len(self.absent), len(chosen))
        return chosen, plan, len(live)

    def _why_absent(self, client: int) -> str:
        """The round record's reason for a chosen client that is sent nothing (its line on the console)."""
        if client in self.identities.node_of:
            return f"absent: its node {self.identities.node_of[client]} is no longer connected"
        return ("absent: no connected node has identified itself as this client (not connected, or no answer "
                "to the identify query within server.identify_timeout yet)")

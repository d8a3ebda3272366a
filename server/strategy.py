"""``KnowledgeFusion``: the soft-label algorithms as one Flower Strategy.

Flower's strategies send one payload to every node; knowledge fusion sends every
client its *own* targets. ``configure_train`` therefore returns one message per
node, each with the targets fused for the client bound to that node, and
``aggregate_train`` screens the round's replies (``server/screening.py``) and fuses
the valid ones with the configured rule (``fedkd.fusion.registry``). A new
algorithm is a fusion function and a registry entry; this class does not change.

What a client receives (the rule a returning client follows under sampling):
after each round the rule fuses the *pool* -- the round's valid replies, plus,
when ``clients_per_round`` samples clients, every client's latest valid reply that
is at most ``server.max_staleness`` rounds old. Every client in the pool gets its
row of targets; a client sampled later receives its row if it still has one, and
otherwise (never seen, or its own reply too old) trains without targets that
round, as in round 1. A round with fewer than ``server.min_replies`` valid
replies fuses nothing and keeps the previous targets.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterable

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from fedkd import protocol, wire
from fedkd.config import Config, compact_run_config
from fedkd.fusion.contributors import require_contributors
from fedkd.fusion.echoes import echoes_among, own_shares, repetition
from fedkd.fusion.registry import FusionRule
from server.identity import IdentityBook
from server.participation import Participation
from server.public import PublicFacts
from server.round_record import mean_message_bytes, round_record
from server.screening import screen

log = logging.getLogger("fedkd.server")


@dataclass
class RoundResult:
    """What one round's aggregation gives the loop: the global arrays (FedAvg; None otherwise) and its record."""

    arrays: ArrayRecord | None
    record: dict


class FedkdStrategy(Strategy):
    """The skeleton every fedkd strategy shares; subclasses fill in three hooks.

    ``configure_train``: plan the round (identities and sampling, ``server/participation.py``), then
    ``messages(server_round, arrays, plan, grid)`` builds one message per planned node.
    ``aggregate_round``: screen every reply against ``reply_rules(server_round)`` (``server/screening.py``),
    build the round record, count a failed round, and, when the round has ``server.min_replies`` valid
    replies, ``accept(server_round, accepted)`` fuses or averages them and returns what it adds to the
    record. The round loop (``server/rounds.py``) drives any subclass; checkpoints use
    ``state_dict``/``load_state_dict``.

    Parameters
    ----------
    cfg : Config
        The run config; the strategy keeps the typed views it needs (server, privacy, canaries).
    facts : PublicFacts
        What the server knows of the public transfer set (size, classes, fingerprint).
    identities : IdentityBook
        Which node is which client (``server/identity.py``).
    on_reject : callable, optional
        Called with each rejection's reason (the Prometheus exporter counts them).
    """

    def __init__(self, cfg: Config, facts: PublicFacts, identities: IdentityBook, on_reject=None):
        self.settings = cfg.server
        self.privacy = cfg.privacy
        self.canaries = cfg.canaries
        self.facts = facts
        self.identities = identities
        self.participation = Participation(self.settings, identities)
        self.on_reject = on_reject
        self.client_config = compact_run_config(cfg.for_clients())
        self.failed_rounds = 0
        self._sent: dict[int, int] = {}
        self._sampled: list[int] = []
        self._bytes_down = float("nan")
        self._nodes = 0

    # ------------------------------------------------------------------ hooks
    def messages(self, server_round: int, arrays: ArrayRecord, plan: dict[int, int], grid: Grid
                 ) -> Iterable[Message]:
        """One train message per planned node (``plan``: node id -> client id)."""
        raise NotImplementedError

    def reply_rules(self, server_round: int) -> protocol.ReplyRules:
        """What a valid reply of this round looks like."""
        raise NotImplementedError

    def accept(self, server_round: int, accepted: list) -> dict:
        """Use a round's valid replies (enough of them); return the record's additions (``fused_clients``...)."""
        raise NotImplementedError

    def current_arrays(self) -> ArrayRecord | None:
        """The arrays the next round starts from (None: the strategy exchanges no global arrays)."""
        return None

    # ------------------------------------------------------------------ the skeleton
    def train_config(self, server_round: int) -> ConfigRecord:
        return protocol.train_config(server_round, self.settings.temperature, self.facts.fingerprint,
                                     self.client_config)

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        self._sampled, self._sent, self._nodes = self.participation.plan(grid, server_round)
        messages = list(self.messages(server_round, arrays, self._sent, grid))
        self._bytes_down = mean_message_bytes(messages)
        return messages

    def aggregate_round(self, server_round: int, replies: Iterable[Message]) -> RoundResult:
        """Screen -> record -> count a failure -> accept; the round's arrays and its line of metrics.jsonl."""
        replies = list(replies)
        screened = screen(replies, self.reply_rules(server_round), self.identities, set(self._sent),
                          self.on_reject)
        for client, why in self.participation.absent.items():  # chosen, sent nothing: said per client too
            screened.refusals.setdefault(f"client {client}", why)
        record = round_record(server_round, screened, sent=len(self._sent), received=len(replies),
                              nodes=self._nodes, sampled=self._sampled if self.settings.sampling else None,
                              bytes_down=self._bytes_down, privacy=self.privacy, canaries=self.canaries,
                              alarms=self.identities.take_alarms())
        valid = len(screened.accepted)
        self._count_failure(server_round, valid)
        if valid >= self.settings.min_replies:
            record.update(self.accept(server_round, screened.accepted))
        else:
            record["fused_clients"] = []
        return RoundResult(self.current_arrays(), record)

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Flower's interface to :meth:`aggregate_round` (the round loop calls that one for the record)."""
        result = self.aggregate_round(server_round, replies)
        return result.arrays, MetricRecord({"replies": result.record["replies"]})

    def _count_failure(self, server_round: int, valid: int) -> None:
        if valid >= self.settings.min_replies:
            self.failed_rounds = 0
            return
        self.failed_rounds += 1
        log.warning("round %d: %d valid replies < server.min_replies=%d (%d such rounds in a row); nothing fused",
                    server_round, valid, self.settings.min_replies, self.failed_rounds)

    def summary(self) -> None:
        """Log what this strategy will do (Flower's Strategy asks for it; the round loop calls it at start)."""
        log.info("%s: %s, %d clients, %s per round", type(self).__name__, self.describe(),
                 self.settings.num_clients, self.settings.clients_per_round or "all")

    def describe(self) -> str:
        return type(self).__name__

    # Flower's Strategy has evaluation hooks; fedkd clients evaluate inside the train step.
    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                           grid: Grid) -> Iterable[Message]:
        return []

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        return None


class KnowledgeFusion(FedkdStrategy):
    """Personalised soft-label fusion with one registered rule (the run's ``algorithm``).

    rule: the registered :class:`~fedkd.fusion.registry.FusionRule`; its typed settings come from ``cfg``.
    """

    def __init__(self, rule: FusionRule, cfg: Config, facts: PublicFacts, identities: IdentityBook,
                 on_reject=None):
        super().__init__(cfg, facts, identities, on_reject)
        self.rule = rule
        self.rule_settings = None if rule.settings is None else cfg.view(rule.settings)
        self.wire_format = cfg.wire
        self.targets: dict[int, np.ndarray] = {}
        self.latest: dict[int, tuple[int, np.ndarray, int]] = {}  # client -> (round, soft labels, num-examples)
        self.own_share: dict[int, float] = {}  # client -> share of its latest upload that is its own (< 1 only)

    def describe(self) -> str:
        return f"fusion rule {self.rule.name}"

    def initial_arrays(self) -> ArrayRecord:
        return ArrayRecord()

    def messages(self, server_round: int, arrays: ArrayRecord, plan: dict[int, int], grid: Grid
                 ) -> list[Message]:
        return [protocol.build_train_message(node, protocol.build_train_content(
                    server_round, self.settings.temperature, self.facts.fingerprint, self.client_config,
                    self.targets.get(client), self.wire_format))
                for node, client in sorted(plan.items(), key=lambda item: item[1])]

    def reply_rules(self, server_round: int) -> protocol.ReplyRules:
        return protocol.ReplyRules(
            round=server_round, fingerprint=self.facts.fingerprint,
            shape=(self.facts.transfer_size, self.facts.num_classes), num_partitions=self.settings.num_clients,
            max_num_examples=self.settings.max_num_examples, wire_format=self.wire_format,
            require_global_acc=self.facts.has_global_test)

    def accept(self, server_round: int, accepted: list) -> dict:
        ratios = repetition({a.client_id: a.reply.soft_labels for a in accepted}, self._as_received(accepted))
        echoes = echoes_among(ratios, self.settings.echo_tolerance)
        shares = own_shares(ratios, self.settings.echo_tolerance, self.settings.echo_ramp)
        for client, ratio in echoes.items():
            log.warning("round %d: client %d uploaded the targets it was sent (distance %.3f of the median "
                        "client's, < server.echo_tolerance=%g): left out of this round's fusion", server_round,
                        client, ratio, self.settings.echo_tolerance)
            self.latest.pop(client, None)  # nor does an older upload of it stand in
            self.own_share.pop(client, None)
        for client, share in shares.items():
            log.info("round %d: client %d's upload is %.3f of the median client's distance from the targets it was "
                     "sent: it counts as a peer for %.2f of its weight (server.echo_ramp=%g)", server_round, client,
                     ratios[client], share, self.settings.echo_ramp)
        fresh = [a for a in accepted if a.client_id not in echoes]
        for a in fresh:
            self.latest[a.client_id] = (server_round, a.reply.soft_labels, a.reply.num_examples)
            if a.client_id in shares:
                self.own_share[a.client_id] = shares[a.client_id]
            else:
                self.own_share.pop(a.client_id, None)
        record = self._fuse(server_round, [a.client_id for a in fresh])
        if ratios:  # every client's distance to its targets, over the median: where echoes and honest clients sit
            record["repetition"] = {str(c): round(r, 4) for c, r in ratios.items()}
        if echoes:
            record["echoes"] = {str(c): round(r, 4) for c, r in echoes.items()}
        return record

    def _as_received(self, accepted: list) -> dict[int, np.ndarray]:
        """The targets these clients were sent this round, as their wire format delivered them (top-k and
        float16 drop what an echo cannot send back)."""
        sent = {a.client_id: self.targets[a.client_id] for a in accepted if a.client_id in self.targets}
        if self.wire_format.is_default:
            return sent
        return {c: wire.decode(wire.encode(t, self.wire_format)) for c, t in sent.items()}

    def _pool(self, server_round: int, fresh: list[int]) -> list[int]:
        if not self.settings.sampling:
            return fresh
        horizon = server_round - self.settings.max_staleness
        return sorted(c for c, (rnd, _, _) in self.latest.items() if rnd >= horizon)

    def _fuse(self, server_round: int, fresh: list[int]) -> dict:
        ids = self._pool(server_round, fresh)
        soft = np.stack([self.latest[c][1] for c in ids])
        counts = np.array([self.latest[c][2] for c in ids], dtype=np.float64)
        kwargs = self.rule.kwargs(self.rule_settings, np.asarray(ids))
        if self.rule.peer_prior and any(c in self.own_share for c in ids):
            kwargs["peer_prior"] = np.array([self.own_share.get(c, 1.0) for c in ids])
        try:
            result = self.rule.fuse(soft, counts, **kwargs)
        except Exception as exc:  # noqa: BLE001 -- a fusion failure keeps the previous targets
            log.error("round %d: fusion rule %s failed (%s: %s); the previous targets stay", server_round,
                      self.rule.name, type(exc).__name__, exc)
            return {"fused_clients": [], "fusion_error": type(exc).__name__}
        result, short = require_contributors(result, self.settings.min_contributors)
        self.targets = {}
        if result.targets is not None:
            self.targets = {c: result.targets[i] for i, c in enumerate(ids) if result.has_targets[i]}
        # why each client is left without targets this round (the rule's reasons, then min_contributors)
        why = {ids[int(i)]: reason for i, reason in result.info.pop("without_targets", {}).items()}
        why.update({ids[i]: reason for i, reason in short.items()})
        for client, reason in sorted(why.items()):
            log.warning("round %d: client %d gets no targets: %s", server_round, client, reason)
        record = {"fused_clients": ids}
        if why:
            record["without_targets"] = {str(c): r for c, r in sorted(why.items())}
        if result.weights is not None:
            # rows and columns follow fused_clients (fedkd.run_records.weight_matrix expands it to N x N)
            record["weights"] = np.round(result.weights, 6).tolist()
        record.update(result.info)
        return record

    # ------------------------------------------------------------------ checkpoint
    def state_dict(self) -> dict[str, np.ndarray]:
        state = {f"targets/{c}": t for c, t in self.targets.items()}
        for c, (rnd, soft, count) in self.latest.items():
            if self.settings.sampling:  # without sampling only this round's replies are ever fused
                state[f"latest/{c}"] = soft
                state[f"latest_meta/{c}"] = np.array([rnd, count], dtype=np.int64)
                if c in self.own_share:
                    state[f"latest_share/{c}"] = np.array([self.own_share[c]], dtype=np.float64)
        state["failed_rounds"] = np.array([self.failed_rounds], dtype=np.int64)
        return state

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore from a checkpoint, validating every array like a reply (ValueError names the entry)."""
        shape = (self.facts.transfer_size, self.facts.num_classes)
        targets, latest, shares = {}, {}, {}
        for name, value in state.items():
            kind, _, key = name.partition("/")
            if kind in ("targets", "latest"):
                client = _client_id(key, self.settings.num_clients, name)
                array = _probabilities(value, shape, name)
                if kind == "targets":
                    targets[client] = array
                else:
                    meta = np.asarray(state.get(f"latest_meta/{key}", []))
                    if meta.shape != (2,) or meta[1] < 1:
                        raise ValueError(f"{name}: its latest_meta entry is missing or malformed")
                    latest[client] = (int(meta[0]), array, int(meta[1]))
            elif kind == "latest_share":
                share = np.asarray(value, dtype=np.float64).ravel()
                if share.shape != (1,) or not 0 <= share[0] <= 1:
                    raise ValueError(f"{name}: expected one share within [0, 1], got {share}")
                shares[_client_id(key, self.settings.num_clients, name)] = float(share[0])
            elif kind not in ("latest_meta", "failed_rounds"):
                raise ValueError(f"unexpected entry {name!r}")
        if set(shares) - set(latest):
            raise ValueError(f"latest_share for clients without a latest upload: {sorted(set(shares) - set(latest))}")
        self.targets, self.latest, self.own_share = targets, latest, shares
        self.failed_rounds = int(np.asarray(state.get("failed_rounds", [0])).ravel()[0])


def _client_id(key: str, num_clients: int, name: str) -> int:
    if not key.isdigit() or not 0 <= int(key) < num_clients:
        raise ValueError(f"{name}: {key!r} is not a client id in [0, {num_clients})")
    return int(key)


def _probabilities(value: np.ndarray, shape: tuple[int, int], name: str) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype != np.float32 or array.shape != shape:
        raise ValueError(f"{name}: {array.dtype}{array.shape}, expected float32{shape}")
    try:
        return protocol.check_probabilities(array)
    except protocol.InvalidReply as exc:
        raise ValueError(f"{name}: {exc}") from None

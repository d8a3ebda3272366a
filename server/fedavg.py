"""The FedAvg reference: Flower's own ``FedAvg``, fed only replies that passed every check.

Weights exchange is the classic baseline the soft-label methods are compared with.
This strategy adds nothing to how Flower averages; it decides *which* replies
Flower sees: each must come from the node it was sent to and be bound to its
client id, hold exactly the global model's arrays (names, shapes, dtypes, all
finite) and a bounded ``num-examples``. Unknown metric keys are dropped before
Flower's aggregation, so one client's extra key cannot make the round's replies
inconsistent.
"""
from __future__ import annotations

import logging

import numpy as np
from flwr.app import Array, ArrayRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg

from fedkd import protocol
from fedkd.config import Config
from server.identity import IdentityBook
from server.public import PublicFacts
from server.strategy import FedkdStrategy

log = logging.getLogger("fedkd.server")


class CheckedFedAvg(FedkdStrategy):
    """The FedAvg reference on the fedkd skeleton; the averaging is a wrapped Flower ``FedAvg``."""

    def __init__(self, cfg: Config, facts: PublicFacts, identities: IdentityBook, on_reject=None):
        super().__init__(cfg, facts, identities, on_reject)
        self.fedavg = FedAvg(fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=1, min_available_nodes=1)
        from fedkd.client_step import new_client_model  # torch: only a FedAvg run's server needs it

        model, _ = new_client_model(cfg.training, 0, facts.input_shape, facts.num_classes)
        self.arrays = ArrayRecord(model.state_dict())
        self.spec = {name: (tuple(a.shape), a.dtype) for name, a in self.arrays.items()}

    def initial_arrays(self) -> ArrayRecord:
        return self.arrays

    def current_arrays(self) -> ArrayRecord:
        return self.arrays

    def messages(self, server_round: int, arrays: ArrayRecord, plan: dict[int, int], grid: Grid
                 ) -> list[Message]:
        return [m for m in self.fedavg.configure_train(server_round, arrays, self.train_config(server_round), grid)
                if m.metadata.dst_node_id in plan]

    def reply_rules(self, server_round: int) -> protocol.ReplyRules:
        return protocol.ReplyRules(
            round=server_round, fingerprint=self.facts.fingerprint, shape=None,
            num_partitions=self.settings.num_clients, max_num_examples=self.settings.max_num_examples,
            require_global_acc=self.facts.has_global_test, weights_spec=self.spec)

    def accept(self, server_round: int, accepted: list) -> dict:
        # only the weights and the (bounded) example count reach Flower's averaging
        clean = [Message(content=RecordDict({"arrays": a.message.content["arrays"],
                                             "metrics": MetricRecord({"num-examples": a.reply.num_examples})}),
                         dst_node_id=a.node_id, message_type="train") for a in accepted]
        arrays, _ = self.fedavg.aggregate_train(server_round, clean)
        if arrays is None:
            return {"fused_clients": []}
        self.arrays = arrays
        return {"fused_clients": [a.client_id for a in accepted]}

    def state_dict(self) -> dict[str, np.ndarray]:
        state = {f"arrays/{name}": array.numpy() for name, array in self.arrays.items()}
        state["failed_rounds"] = np.array([self.failed_rounds], dtype=np.int64)
        return state

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore the global model; every array must match the model's names, shapes and dtypes."""
        restored = {}
        for name, current in self.arrays.items():
            key = f"arrays/{name}"
            if key not in state:
                raise ValueError(f"{key} is missing")
            value = np.asarray(state[key])
            if value.shape != tuple(current.shape) or str(value.dtype) != current.dtype:
                raise ValueError(f"{key}: {value.dtype}{value.shape}, expected {current.dtype}{tuple(current.shape)}")
            if np.issubdtype(value.dtype, np.floating) and not np.all(np.isfinite(value)):
                raise ValueError(f"{key} holds NaN or Inf")
            restored[name] = Array(value)
        extra = [k for k in state if k.startswith("arrays/") and k[len("arrays/"):] not in restored]
        if extra:
            raise ValueError(f"unexpected entries {extra}")
        self.arrays = ArrayRecord(restored)
        self.failed_rounds = int(np.asarray(state.get("failed_rounds", [0])).ravel()[0])

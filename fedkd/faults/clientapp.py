"""A hostile ClientApp: the honest handlers, then the plan's lie or malformation applied to the reply.

The honest ``train`` and ``identify`` handlers are passed in (the command line
gives it ``clients.app``'s), so a hostile client's model, and its accuracy, are
those of an honest one; only what it sends differs.

Colluders (``attack.collude``) are one adversary behind several identities: every colluding node trains
the same model -- the first colluder's architecture, data and seed, without the server's targets (the
adversary does not learn from the federation) -- and uploads that model's lie under its own id. Training
is seeded and runs alike in every node, so the colluders' uploads are one answer, without any channel
between the nodes; with ``fault.collude_noise`` each colluder then mixes in its own random rows, so that the
uploads are near-identical no more. ``fault.echo_noise`` does the same to an echo's copy of its targets, with its
random rows or (``fault.echo_with=own``) with its own honest answer.
"""
from __future__ import annotations

from typing import Callable

from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp

from fedkd import protocol
from fedkd.faults.knowledge import blend, blur, lie
from fedkd.faults.malformed import CATALOGUE, InjectedFault
from fedkd.faults.plan import FaultPlan
from fedkd.wire import WireFormat

Handler = Callable[[Message, Context], Message]


PARTITION_ID = "partition-id"  # Flower's simulation engine names each node's partition so


def _client(context: Context) -> int:
    return int(context.node_config[PARTITION_ID])


def hostile_client_app(plan: FaultPlan, train: Handler, identify: Handler, wire_format: WireFormat) -> ClientApp:
    app = ClientApp()

    @app.train()
    def _train(msg: Message, context: Context) -> Message:
        client = _client(context)
        round_num = int(msg.content["config"]["round"])
        kind = plan.malformation(client, round_num)
        if kind == "error_reply":
            raise InjectedFault("injected fault (fault.malformed): this client fails its round on purpose")
        # an echo uploads what it was sent; the colluders' leader trains without targets (read them first)
        echoing = plan.lie_kind == "echo" and client in plan.liars
        received = protocol.parse_train_message(msg.content).targets if echoing else None
        if client in plan.liars and plan.leader is not None:
            content = _as_leader(train, msg, context, plan.leader, client)
        else:
            content = train(msg, context).content
        if client in plan.liars and "knowledge" in content.array_records:
            soft = protocol.read_soft_labels(content)
            rng = plan.lie_rng(plan.leader if plan.leader is not None else client, round_num)
            answer = lie(plan.lie_kind, soft, rng, swap_classes=plan.swap, received=received)
            if plan.collude_noise:  # each colluder blurs the shared answer with its own noise
                answer = blur(answer, plan.collude_noise, plan.blur_rng(client, round_num))
            if plan.echo_noise and received is not None:  # an echo blurs the targets it repeats
                answer = (blend(answer, soft, plan.echo_noise) if plan.echo_with == "own" else
                          blur(answer, plan.echo_noise, plan.blur_rng(client, round_num, "echo-noise")))
            content["knowledge"] = protocol.knowledge_record(answer, wire_format)
        if kind is not None and CATALOGUE[kind].target != "identify":
            content = CATALOGUE[kind].apply(content, plan.num_clients)
        return Message(content=content, reply_to=msg)

    @app.query()
    def _identify(msg: Message, context: Context) -> Message:
        content = identify(msg, context).content
        # an identify query is not tied to a round: any identify_lie entry of this client applies
        if any(k == "identify_lie" for (c, _), k in plan.malformed.items() if c == _client(context)):
            content = CATALOGUE["identify_lie"].apply(content, plan.num_clients)
        return Message(content=content, reply_to=msg)

    return app


def _as_leader(train: Handler, msg: Message, context: Context, leader: int, client: int) -> RecordDict:
    """Run the honest step as the colluders' leader (its data and model, no targets), reply as ``client``.

    The node keeps its own state (``context.state``) and its own storage folder (``storage-id``)."""
    if "targets" in msg.content.array_records:
        del msg.content["targets"]
    node_config = {**context.node_config, "partition-id": leader, "storage-id": client}
    as_leader = Context(run_id=context.run_id, node_id=context.node_id, node_config=node_config,
                        state=context.state, run_config=context.run_config)
    content = train(msg, as_leader).content
    meta = {k: content["meta"][k] for k in content["meta"]}
    meta["partition_id"] = client
    content["meta"] = ConfigRecord(meta)
    return content

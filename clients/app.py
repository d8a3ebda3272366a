"""Flower ClientApp: the node's handlers for the server's two message types.

``train`` (one round of the client step, ``clients/train.py``) and ``query`` (which client this node
is, signed when it holds an identity key). The train handler imports its module on the first train
message, so that building or pickling the app (a simulation's driver does both) does not load torch.
"""
from __future__ import annotations

from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from clients.node import StorageFn, claimed_client_id, own_state_dir
from fedkd import node_identity, protocol


def train(msg: Message, context: Context, *, storage: StorageFn = own_state_dir,
          simulated: bool = False) -> Message:
    """One round of the client step for this node (``clients.train.train``)."""
    from clients import train as step

    return step.train(msg, context, storage=storage, simulated=simulated)


def identify(msg: Message, context: Context) -> Message:
    """Say which client this node is; with an identity key, prove it by signing the server's nonce."""
    nonce = protocol.parse_identify_message(msg.content)
    key = context.node_config.get("auth-key")
    signature = node_identity.sign(str(key), nonce, context.node_id) if key and nonce else None
    return Message(content=protocol.build_identify_reply(claimed_client_id(context.node_config), signature),
                   reply_to=msg)


def make_client_app(storage: StorageFn | None = None, simulated: bool = False) -> ClientApp:
    """A ClientApp; ``storage(context)`` gives the node's state folder (default: node config ``state-dir``)."""
    client_app = ClientApp()
    storage = storage or own_state_dir

    @client_app.train()
    def _train(msg: Message, context: Context) -> Message:
        return train(msg, context, storage=storage, simulated=simulated)

    @client_app.query()
    def _identify(msg: Message, context: Context) -> Message:
        return identify(msg, context)

    return client_app


app = make_client_app()

"""Fault and attack injection for robustness studies, kept out of the product's path.

Nothing in the ClientApp, the ServerApp, ``fedkd.protocol`` or ``fedkd.wire``
imports this package. The command line installs it when a run sets ``fault.*``
keys: :func:`fedkd.faults.clientapp.hostile_client_app` wraps the honest
ClientApp's handlers, and :class:`fedkd.faults.crash.StopAfterRound` is a round
observer that stops the server as if it had crashed.

``knowledge``  well-formed lies: what a malicious client uploads instead of its soft labels
``malformed``  the catalogue of broken replies and the reason the server must give for each
``plan``       which client does what in which round, from the run config
"""

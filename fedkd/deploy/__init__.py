"""Running fedkd as a real Flower deployment: credentials, processes, the flwr CLI, a local federation.

- :mod:`fedkd.deploy.credentials`: a development CA, the SuperLink's TLS certificate, SuperNode keys.
- :mod:`fedkd.deploy.processes`: start and stop processes by PID, free ports, readiness checks.
- :mod:`fedkd.deploy.flwr_cli`: the ``flwr`` commands an operator types (connection, register, run, ls, log).
- :mod:`fedkd.deploy.run_config`: a fedkd config as Flower's ``--run-config`` string.
- :mod:`fedkd.deploy.local`: a SuperLink and N SuperNodes on 127.0.0.1, one command.
- :mod:`fedkd.deploy.cli`: the ``fedkd certs``, ``federation``, ``register`` and ``submit`` commands.
"""

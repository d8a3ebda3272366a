"""Shared test setup: no network from Flower or Ray, and a task identity for building Messages."""
import os

for var, value in (("FLWR_TELEMETRY_ENABLED", "0"), ("FLWR_DISABLE_UPDATE_CHECK", "1"),
                   ("FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION", "1"), ("RAY_USAGE_STATS_ENABLED", "0")):
    os.environ.setdefault(var, value)

import pytest  # noqa: E402
import torch  # noqa: E402

# One thread per process: on 2 shared cores, torch's default thread pool makes tests several times slower.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _flower_task_identity():
    """Flower's Message() needs the process's task identity, which a real runtime sets."""
    from flwr.supercore.task_identity import TaskIdentity

    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 1
    yield


@pytest.fixture(scope="module")
def one_ray_per_module():
    """A module's simulations share one Ray instance and its client actors, as a sweep's do
    (``server.simulate.one_ray_instance``; tests/test_compare_reuse.py shows the numbers do not change)."""
    from server.simulate import one_ray_instance

    with one_ray_instance():
        yield

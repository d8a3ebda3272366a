"""`fedkd compare` runs its algorithms on one Ray instance and one set of client actors, and gets the summaries
of separate runs."""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "fixtures"))
import reference_runs  # noqa: E402

from fedkd.cli import main as fedkd_main  # noqa: E402
from fedkd.cli.simulation import run_simulation  # noqa: E402
from fedkd.config import make_config, parse_assignments  # noqa: E402

TINY = ["num_clients=3", "rounds=2", "models=mlp", "transfer_size=50", "local_test_size=20",
        "global_test_size=50", "revisit_epochs=1", "digest_epochs=1", "sim.num_cpus=2"]


def test_compare_on_one_ray_instance_gives_the_summaries_of_separate_runs(tmp_path, monkeypatch):
    import ray

    from flwr.simulation.ray_transport.ray_actor import BasicActorPool

    starts, new_actors = [], []
    real_init, real_add = ray.init, BasicActorPool.add_actors_to_pool
    monkeypatch.setattr(ray, "init", lambda *a, **k: starts.append(1) or real_init(*a, **k))  # counts, then starts
    monkeypatch.setattr(BasicActorPool, "add_actors_to_pool",
                        lambda self, n: new_actors.append(n) or real_add(self, n))
    argv = ["compare", "--algorithms", "fedmd,knfu", "--out", str(tmp_path / "cmp"), "--quiet"]
    for a in TINY:
        argv += ["--set", a]
    assert fedkd_main(argv) == 0
    assert len(starts) == 1, "each algorithm started its own Ray instance"
    assert len(new_actors) == 1 and new_actors[0] >= 1, "the second algorithm started client actors of its own"
    assert not ray.is_initialized()  # compare shut down the instance it started
    monkeypatch.undo()
    together = json.loads((tmp_path / "cmp" / "compare.json").read_text())["results"]
    # knfu ran second, on the Ray instance and the actors fedmd's run left: it must equal a run of its own.
    alone = run_simulation(make_config(parse_assignments(TINY + ["algorithm=knfu"])), tmp_path / "alone",
                           progress=False)
    assert reference_runs.compared(together["knfu"]) == reference_runs.compared(alone)
    assert set(together) == {"fedmd", "knfu"}


def test_a_run_with_other_actor_resources_gets_new_actors_and_the_old_ones_go(tmp_path):
    """Kept actors of one resource shape must not hold the CPUs a run with another shape needs (it would wait
    for them forever): they are killed when that run builds its pool."""
    from server.simulate import one_ray_instance

    base = parse_assignments(TINY + ["algorithm=fedmd"])
    with one_ray_instance():
        one = run_simulation(make_config(dict(base, **{"sim.client_cpus": 1})), tmp_path / "one", progress=False)
        two = run_simulation(make_config(dict(base, **{"sim.client_cpus": 2})), tmp_path / "two", progress=False)
    assert reference_runs.compared(one) == reference_runs.compared(two)  # one actor or two: the same numbers

"""What a simulation's start-up leaves out (docs/performance.md §11): nothing here measures time.

- The driver (the command line, the ServerApp, the ClientApp object it pickles) never imports torch:
  only the client actors train.
- A private local Ray instance is started without a job runtime_env, so the workers Ray starts with
  the node serve as the client actors; the actors still import the project (PYTHONPATH is inherited).
- A run that attaches to a Ray cluster keeps Flower's runtime_env (nothing is started here).
"""
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_python(code: str, timeout: int = 120) -> str:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("algorithm", ["knfu", "fedmd", "dsfl", "local"])
def test_the_driver_of_a_simulation_imports_no_torch(algorithm, tmp_path):
    out = run_python(f"""
        import json, sys
        from fedkd.cli import main  # the command line's own imports
        from fedkd.config import make_config
        from server.public import simulation_data
        from server.simulate import backend_config
        from server.app import make_server_app
        from clients.app import make_client_app
        from clients.node import RunFolderStorage
        import flwr.simulation
        cfg = simulation_data(make_config({{"algorithm": "{algorithm}"}}))
        make_server_app(cfg, {{}}, progress=False)
        make_client_app(storage=RunFolderStorage({str(tmp_path)!r}), simulated=True)
        print(json.dumps(sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))))
    """)
    assert json.loads(out) == []


@pytest.mark.slow
def test_a_local_ray_instance_has_no_job_runtime_env_and_its_workers_import_the_project():
    out = run_python("""
        import json, ray
        from fedkd.config import make_config
        from server.simulate import start_local_ray
        start_local_ray(make_config({"sim.num_cpus": 1}))
        env = ray.get_runtime_context().runtime_env

        @ray.remote(num_cpus=1)
        def where():
            import clients.app, fedkd
            return fedkd.__file__

        print(json.dumps({"env": dict(env), "fedkd": ray.get(where.remote())}))
        ray.shutdown()
    """, timeout=180)
    result = json.loads(out)
    assert result["env"] == {}
    assert Path(result["fedkd"]).resolve().parent == ROOT / "fedkd"


def test_a_run_on_a_ray_cluster_starts_no_local_instance():
    out = run_python("""
        import json, ray
        from fedkd.config import make_config
        from server.simulate import start_local_ray
        start_local_ray(make_config({"sim.ray_address": "127.0.0.1:1"}))
        print(json.dumps(ray.is_initialized()))
    """)
    assert json.loads(out) is False


@pytest.mark.slow
@pytest.mark.parametrize("verbose", [False, True])
def test_a_local_ray_instance_starts_none_of_a_shared_clusters_services(verbose):
    """No autoscaler monitor, no dashboard API server; the log monitor only when worker output goes to the driver."""
    out = run_python(f"""
        import json, os, ray
        from pathlib import Path
        from ray._private.node import Node
        from fedkd.config import make_config
        from server import lean_ray
        from server.simulate import start_local_ray
        start_local_ray(make_config({{"sim.num_cpus": 1}}), verbose={verbose})
        session = ray._private.worker._global_node.get_session_dir_path()
        programs = set()
        for proc in Path("/proc").iterdir():  # every process of this Ray session, by the program it runs
            try:
                argv = (proc / "cmdline").read_bytes().split(b"\\0")
            except OSError:
                continue
            if any(session.encode() in a for a in argv):
                programs |= {{Path(a.decode()).name for a in argv[:3] if a.endswith((b".py", b"raylet", b"gcs_server"))}}
        answer = ray.get(ray.remote(lambda: 42).remote())
        restored = (all(Node.__dict__[m] is not lean_ray._start_nothing
                        for m in (*lean_ray.CLUSTER_SERVICES, lean_ray.LOG_MONITOR))
                    and ray._private.services.get_node.__module__ == "ray._private.services")
        ray.shutdown()
        print(json.dumps({{"programs": sorted(programs), "answer": answer, "restored": restored}}))
    """, timeout=180)
    result = json.loads(out)
    assert result["answer"] == 42 and result["restored"]
    programs = set(result["programs"])
    assert {"gcs_server", "raylet"} <= programs, programs
    assert not {"monitor.py", "dashboard.py"} & programs, programs
    assert ("log_monitor.py" in programs) == verbose, programs


@pytest.mark.slow
def test_a_local_ray_instance_finds_its_node_through_the_prompt_poll():
    """ray.init asks for its node through server/lean_ray.py's poll of the GCS's node table, which hands
    over to Ray's own get_node once the node is listed (and gets its answer)."""
    out = run_python("""
        import json, ray
        from fedkd.config import make_config
        from server import lean_ray
        from server.simulate import start_local_ray
        asked = []
        wrap = lean_ray._get_node_once_registered
        def counting(ray_get_node):
            prompt = wrap(ray_get_node)
            def get_node(gcs_address, node_id):
                info = prompt(gcs_address, node_id)
                asked.append(info["node_id"] == node_id)
                return info
            return get_node
        lean_ray._get_node_once_registered = counting
        start_local_ray(make_config({"sim.num_cpus": 1}))
        answer = ray.get(ray.remote(lambda: 42).remote())
        ray.shutdown()
        print(json.dumps({"asked": asked, "answer": answer}))
    """, timeout=180)
    assert json.loads(out) == {"asked": [True], "answer": 42}


@pytest.mark.slow
def test_a_client_actor_does_not_import_flowers_simulation_engine():
    out = run_python("""
        import json, sys, ray
        from fedkd.config import make_config
        from server import client_actor
        from server.simulate import start_local_ray

        def load_app():
            def app(message, context):
                return sorted(m for m in sys.modules if m.startswith("flwr.simulation"))
            return app

        assert client_actor.install()
        start_local_ray(make_config({"sim.num_cpus": 1}))
        actor = client_actor.ClientActor.options(num_cpus=1).remote()
        cid, loaded, context = ray.get(actor.run.remote(load_app, "a message", "3", "a context"))
        ray.shutdown()
        print(json.dumps({"cid": cid, "loaded": loaded, "context": context}))
    """, timeout=180)
    assert json.loads(out) == {"cid": "3", "loaded": [], "context": "a context"}

"""CPU time and resident-memory growth of build_federation plus one client's data, as an actor pays it (scale.py's spec).

    PYTHONPATH=<a checkout> python experiments/bench/federation_cost.py 10000

Standalone on purpose (no _common, which puts this checkout first on sys.path): run it with PYTHONPATH set
to two checkouts to compare their data builds. Needs Fashion-MNIST's files (fedkd.data.load_dataset).
"""
import json, sys, time
from fedkd.data import build_federation
from fedkd.data.federation import FederationSpec
import fedkd
n = int(sys.argv[1])
spec = FederationSpec(dataset="fashion-mnist", num_clients=n, partition="iid", min_partition_size=1, transfer_size=50,
                      local_test_size=10, private_pool_size=2 * n, global_test_size=50)
from fedkd.data.datasets import load_dataset
load_dataset("fashion-mnist")
def rss_mb() -> float:  # resident now (the dataset's load peaks higher than the build, so ru_maxrss would not move)
    with open("/proc/self/status") as fh:
        return next(int(l.split()[1]) for l in fh if l.startswith("VmRSS")) / 1024


rss0 = rss_mb()
t = time.process_time(); fed = build_federation(spec); c = fed.clients[n // 2]; dt = time.process_time() - t
print(json.dumps({"bench": "federation_cost", "code": fedkd.__file__, "clients": n, "cpu_s": round(dt, 3),
                  "rss_growth_mb": round(rss_mb() - rss0, 1)}))

"""A privacy attack registered from outside the package appears in audit.json and in the HTML report.

Nothing in fedkd/audit/ or fedkd/report/ is touched: one function of the audit context and one
``register_attack`` call (docs/architecture.md, "How to add a privacy attack").
"""
import json

import numpy as np
import pytest

from fedkd.audit.attacks import PRIVACY_ATTACKS, PrivacyAttack, register_attack, unregister_attack
from fedkd.audit.run import AuditSettings, audit_run  # registers the built-in attacks first
from fedkd.cli.simulation import run_simulation
from fedkd.config import make_config


def upload_confidence(ctx):
    """A toy 'attack': how confident the clients' last-round accuracies look, from the run's records."""
    last = ctx.art.rounds[-1]
    accs = np.array(list(last["per_client_local_acc"].values()), dtype=float)
    return {"clients": int(accs.size), "mean_local_acc": float(accs.mean()), "round": int(last["round"])}


@pytest.fixture
def toy_attack():
    attack = register_attack(PrivacyAttack(
        "toy_confidence", "Toy confidence probe", upload_confidence, needs=("rounds",),
        summary=lambda r: f"mean local accuracy {r['mean_local_acc']:.3f} over {r['clients']} clients",
        description="A test's attack: registered from outside fedkd."))
    yield attack
    unregister_attack("toy_confidence")


def test_a_registered_attack_needs_known_needs_and_a_free_name():
    with pytest.raises(ValueError, match="needs"):
        PrivacyAttack("x", "x", upload_confidence, needs=("gradients",))
    with pytest.raises(ValueError, match="section of audit.json"):
        register_attack(PrivacyAttack("timing", "t", upload_confidence))
    assert "timing" not in PRIVACY_ATTACKS


@pytest.mark.slow
def test_a_plugin_attack_reaches_audit_json_and_the_report(toy_attack, tmp_path):
    cfg = make_config(dict(num_clients=3, rounds=2, models="mlp", transfer_size=60, local_test_size=40,
                           digest_epochs=1, revisit_epochs=1, seed=1))
    run_simulation(cfg, tmp_path / "run", progress=False)
    settings = AuditSettings.quick(attacks=("toy_confidence", "membership"), reference_models=0,
                                   progress=False, bootstrap=0)
    result = audit_run(tmp_path / "run", settings)
    audit = json.loads((tmp_path / "run" / "audit" / "audit.json").read_text())
    assert audit["toy_confidence"]["clients"] == 3 and audit["toy_confidence"]["round"] == 2
    assert audit["membership"] is not None and audit["inversion"] is None  # only the chosen attacks ran
    assert [a["name"] for a in audit["attacks"]] == ["membership", "toy_confidence"]
    html = (tmp_path / "run" / "audit" / "report.html").read_text()
    assert "Toy confidence probe" in html and "mean_local_acc" in html
    assert f"{audit['toy_confidence']['mean_local_acc']:.4g}" in html
    assert result["paths"]["report_html"].endswith("report.html")

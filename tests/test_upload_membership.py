"""The curious server's membership inference from the uploads (``upload_membership``, distillation-based LiRA).

A surrogate distilled from an overfit model's soft labels on public data inherits its membership leak; one
distilled from a constant upload has nothing to inherit. On a tiny simulated run the registered attack writes
its section of audit.json, is chosen by ``fedkd audit --attacks``, and shows in report.html and a sweep's row.
"""
import json

import numpy as np
import pytest

from fedkd.audit.membership import audit_membership, reference_subsets, train_reference_models
from fedkd.audit.upload_membership import top1_agreement, upload_membership_attack
from fedkd.data import load_dataset
from fedkd.models import build_model
from fedkd.privacy.release import plain_soft_labels
from fedkd.training import predict_logits, train_supervised

T = 3.0
N = 100  # members and non-members each: the model memorises 100 digits in 300 epochs


@pytest.fixture(scope="module")
def overfit_setup():
    ds = load_dataset("digits")
    x, y = np.array(ds.x_train), np.array(ds.y_train)
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    members, nonmembers = slice(0, N), slice(N, 2 * N)
    public, pool, population = slice(2 * N, 2 * N + 500), slice(2 * N + 500, 4 * N + 500), slice(4 * N + 500, None)
    model = build_model("mlp", (1, 8, 8), 10, seed=0)
    train_supervised(model, x[members], y[members], epochs=300, batch_size=16, lr=3e-3, seed=0, device="cpu")
    refs = train_reference_models(x[pool], y[pool], num_classes=10, n_models=2, arch="mlp", subsample=0.5,
                                  epochs=300, batch_size=16, lr=3e-3, seed=7)
    masks = []
    for subset in reference_subsets(2 * N, 2, 0.5, 7):
        mask = np.zeros(2 * N, bool)
        mask[subset] = True
        masks.append(mask)
    return dict(x=x, y=y, members=(x[members], y[members]), nonmembers=(x[nonmembers], y[nonmembers]),
                public=x[public], reference_data=(x[pool], y[pool]), population=(x[population], y[population]),
                model=model, refs=refs, masks=masks)


def _attack(setup, upload):
    return upload_membership_attack(
        upload, setup["public"], setup["members"], setup["nonmembers"], arch="mlp", num_classes=10, temperature=T,
        epochs=50, batch_size=16, lr=3e-3, seed=1,
        reference_uploads=[plain_soft_labels(predict_logits(r, setup["public"], device="cpu"), T)
                           for r in setup["refs"]],
        reference_data=setup["reference_data"], reference_masks=setup["masks"], population=setup["population"],
        n_augment=4)


def test_a_surrogate_of_an_overfit_model_leaks_membership_and_a_constant_upload_does_not(overfit_setup):
    s = overfit_setup
    (xm, ym), (xn, yn) = s["members"], s["nonmembers"]
    direct = audit_membership(s["model"], xm, ym, xn, yn, reference_models=s["refs"], population=s["population"],
                              n_augment=4)
    assert max(m["auc"] for m in direct.values()) > 0.6  # the model itself leaks

    upload = plain_soft_labels(predict_logits(s["model"], s["public"], device="cpu"), T)
    informed = _attack(s, upload)
    assert set(informed["metrics"]) == {"loss", "confidence", "reference", "rmia", "label_only"}
    assert informed["rmia_a"]["tuned"] and len(informed["reference_surrogates"]) == 2
    assert top1_agreement(informed["surrogate"], s["model"], xn) > 0.85  # a faithful copy of the model
    best = max(m["auc"] for m in informed["metrics"].values())
    assert best > 0.6 and informed["metrics"]["loss"]["auc"] > 0.58

    blind = _attack(s, np.full_like(upload, 0.1))  # every row uniform: the upload says nothing
    for name, metrics in blind["metrics"].items():
        assert abs(metrics["auc"] - 0.5) < 0.1, (name, metrics["auc"])
        assert 0 <= metrics["tpr_at_1fpr"] <= 1
    assert best > max(m["auc"] for m in blind["metrics"].values()) + 0.05
    assert top1_agreement(blind["surrogate"], s["model"], xn) < 0.5


# --------------------------------------------------------------------------- on a run
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from fedkd.cli.simulation import run_simulation
    from fedkd.config import make_config

    run = tmp_path_factory.mktemp("upload_mia") / "run"
    cfg = make_config(dict(num_clients=3, rounds=2, models="mlp", transfer_size=100, local_test_size=40,
                           digest_epochs=1, revisit_epochs=2, seed=1))
    run_simulation(cfg, run, progress=False)
    return run


@pytest.mark.slow
def test_the_attack_runs_on_a_run_and_reaches_audit_json_and_the_report(tiny_run, tmp_path):
    from fedkd.audit.run import AuditSettings, audit_run

    settings = AuditSettings.quick(attacks=("membership", "upload_membership"), reference_models=2,
                                   reference_epochs_cap=4, label_only_augment=2, bootstrap=0, progress=False)
    audit_run(tiny_run, settings, out_dir=tmp_path / "audit")
    audit = json.loads((tmp_path / "audit" / "audit.json").read_text())
    section = audit["upload_membership"]
    assert set(section["per_client"]) == {"0", "1", "2"}
    for metrics in section["per_client"].values():
        assert set(metrics) == {"loss", "confidence", "reference", "rmia", "label_only"}
        for m in metrics.values():
            assert all(0 <= m[k] <= 1 for k in ("auc", "tpr_at_0.1fpr", "tpr_at_1fpr"))
            assert m["n_members"] == m["n_nonmembers"] > 0
    for s in section["surrogates"].values():
        assert 0 <= s["agreement_test"] <= 1 and 0 <= s["surrogate_test_acc"] <= 1
        assert s["reference_surrogates"] == 2
    head = section["headline"]
    assert head["auc"] == max(v["auc"] for v in section["strongest_attack"].values())
    assert head["attack"] == section["strongest_attack"][head["client"]]["attack"]
    assert section["model_membership"]["auc"] == max(
        v["auc"] for v in audit["membership"]["strongest_attack"].values())
    # both attacks score the same balanced members and non-members
    mine, theirs = section["per_client"]["0"]["loss"], audit["membership"]["per_client"]["0"]["loss"]
    assert mine["n_members"] == theirs["n_members"]
    assert section["distillation"]["epochs"] == 4 and section["upload"] == {
        "round": 2, "kind": "plain", "dp_sgd": False, "transfer_samples": 100}
    assert [a["name"] for a in audit["attacks"]] == ["membership", "upload_membership"]
    html = (tmp_path / "audit" / "report.html").read_text()
    assert "Membership inference by the server from the uploads" in html and "headline.auc" in html
    assert f"{head['auc']:.4g}" in html and "surrogate_agreement.mean" in html


@pytest.mark.slow
def test_fedkd_audit_attacks_upload_membership_alone(tiny_run, tmp_path):
    from fedkd.cli import main as fedkd_main

    out = tmp_path / "audit"
    assert fedkd_main(["audit", str(tiny_run), "--attacks", "upload_membership", "--quick", "--quiet",
                       "--reference-models", "0", "--out", str(out)]) == 0
    audit = json.loads((out / "audit.json").read_text())
    assert audit["membership"] is None
    section = audit["upload_membership"]
    assert section["model_membership"] is None  # the model attack did not run
    assert set(next(iter(section["per_client"].values()))) == {"loss", "confidence", "label_only"}  # no references
    assert section["rmia"] is None and section["reference_models"] == 0
    assert "Membership inference by the server from the uploads" in (out / "report.html").read_text()


def test_the_sweep_row_carries_the_upload_attack():
    from fedkd.audit.sweep import _frontier_row
    from fedkd.report.audit_report import frontier_figure

    membership = {"worst_client": {"loss": {"client": "0", "auc": 0.6, "tpr_at_1fpr": 0.02}},
                  "per_client": {"0": {"loss": {"auc": 0.6}}}}
    audit = {"membership": membership, "timing": {"cpu_seconds": 1.0},
             "upload_membership": {"headline": {"client": "1", "attack": "rmia", "auc": 0.57, "tpr_at_1fpr": 0.03}}}
    row = _frontier_row({"run": "plain", "alma": 0.8, "epsilon": None}, audit, "run0/audit/report.html")
    assert row["upload_mia_worst_auc"] == 0.57 and row["upload_mia_worst_tpr_at_1fpr"] == 0.03
    without = _frontier_row({"run": "plain", "alma": 0.8, "epsilon": None}, {**audit, "upload_membership": None}, "r")
    assert without["upload_mia_worst_auc"] is None and without["upload_mia_worst_tpr_at_1fpr"] is None
    assert frontier_figure([row, without]).startswith("data:image/png")

"""``fedkd audit`` end to end, audit.json's keys, and the HTML report checked in a real browser.

One tiny run (digits, 3 clients, 2 rounds, canaries planted) is simulated and audited through the
real command line (``fedkd audit --set ... --quick``); the report is then opened in headless
Chromium (Debian's /usr/bin/chromium), driven over the Chrome DevTools protocol: every image
must have loaded, the console must be clean, and no request may leave the page's own file.
"""
from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from fedkd.audit import LoktConfig

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ENV = dict(os.environ, FLWR_TELEMETRY_ENABLED="0", FLWR_DISABLE_UPDATE_CHECK="1",
           FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION="1", RAY_USAGE_STATS_ENABLED="0",
           OMP_NUM_THREADS="1")  # one torch thread: on 2 shared cores, more threads only contend
RUN_SETTINGS = ["dataset=digits", "num_clients=3", "rounds=2", "transfer_size=200", "local_test_size=100",
                "revisit_epochs=8", "canaries.enabled=true", "canaries.count=5", "canaries.references=200"]

needs_chromium = pytest.mark.skipif(not Path(CHROMIUM).is_file(),
                                    reason="needs Debian's chromium (.ci/run installs it)")


# --------------------------------------------------------------------------- a DevTools client
class Chromium:
    """Headless Chromium driven over the DevTools protocol (a websocket on 127.0.0.1).

    Started with a fresh profile and every background service off; ``close`` ends the
    process it started, by PID.
    """

    FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", "--remote-allow-origins=*",
             "--window-size=1280,900", "--hide-scrollbars"]

    def __init__(self):
        from websockets.sync.client import connect

        self._stack = contextlib.ExitStack()  # holds the websocket
        self.profile = tempfile.mkdtemp(prefix="fedkd-chromium-")
        self.proc = subprocess.Popen([CHROMIUM, *self.FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            port = self._devtools_port()
            pages = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10))
            page = next(p for p in pages if p["type"] == "page")
            self.ws = self._stack.enter_context(connect(page["webSocketDebuggerUrl"], max_size=None,
                                                        open_timeout=20))
        except BaseException:
            self.close()
            raise
        self._next_id = 0
        self.events: list[dict] = []

    def _devtools_port(self) -> int:
        marker = Path(self.profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if marker.is_file() and marker.read_text().strip():
                return int(marker.read_text().split()[0])
            if self.proc.poll() is not None:
                raise RuntimeError(f"chromium exited with status {self.proc.returncode} before DevTools came up")
            time.sleep(0.1)
        raise RuntimeError("chromium's DevTools port did not appear within 60 s")

    def send(self, method: str, params: dict | None = None, timeout: float = 60) -> dict:
        """Call a DevTools method and return its result; events seen meanwhile are kept."""
        self._next_id += 1
        msg_id = self._next_id
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params or {}}))
        deadline = time.monotonic() + timeout
        while True:
            msg = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)

    def wait_for(self, event: str, timeout: float = 60) -> dict:
        for seen in self.events:
            if seen["method"] == event:
                return seen
        deadline = time.monotonic() + timeout
        while True:
            msg = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if "method" in msg:
                self.events.append(msg)
                if msg["method"] == event:
                    return msg

    def evaluate(self, expression: str):
        out = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        return out["result"].get("value")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._stack.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)
        shutil.rmtree(self.profile, ignore_errors=True)


def check_page(html_path: Path, screenshot: Path) -> dict:
    """Open ``html_path`` in Chromium; report images, console messages, requests and a screenshot."""
    browser = Chromium()
    try:
        for domain in ("Page", "Runtime", "Log", "Network"):
            browser.send(f"{domain}.enable")
        browser.send("Page.navigate", {"url": html_path.resolve().as_uri()})
        browser.wait_for("Page.loadEventFired")
        images = browser.evaluate(
            "Array.from(document.images).map(i => ({src: i.src.slice(0, 30), complete: i.complete, "
            "width: i.naturalWidth, height: i.naturalHeight}))")
        title = browser.evaluate("document.title")
        metrics = browser.send("Page.getLayoutMetrics")
        size = metrics["cssContentSize"]
        shot = browser.send("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}})
        screenshot.write_bytes(base64.b64decode(shot["data"]))
        browser.send("Runtime.evaluate", {"expression": "1"})  # flush events queued during the capture
        events = browser.events
    finally:
        browser.close()
    console = [e["params"] for e in events if e["method"] in ("Runtime.consoleAPICalled", "Runtime.exceptionThrown")]
    logs = [e["params"]["entry"] for e in events if e["method"] == "Log.entryAdded"]
    requests = [e["params"]["request"]["url"] for e in events if e["method"] == "Network.requestWillBeSent"]
    failed = [e["params"] for e in events if e["method"] == "Network.loadingFailed"]
    return {"images": images, "title": title, "console": console, "logs": logs, "requests": requests,
            "failed": failed}


def assert_page_clean(page: dict, html_path: Path) -> None:
    """Every image loaded, nothing in the console, no request beyond the page's own file."""
    broken = [img for img in page["images"] if not (img["complete"] and img["width"] > 0 and img["height"] > 0)]
    assert not broken, f"images that did not load: {broken}"
    assert page["console"] == [], f"console output: {page['console']}"
    assert page["logs"] == [], f"browser log entries: {page['logs']}"
    assert page["failed"] == [], f"failed loads: {page['failed']}"
    outside = [u for u in page["requests"] if u != html_path.resolve().as_uri() and not u.startswith("data:")]
    assert outside == [], f"the page requested {outside}"


# --------------------------------------------------------------------------- the audited run
@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    """``fedkd audit --set ... --quick``: simulate a tiny run, then audit it (the real CLI)."""
    run = tmp_path_factory.mktemp("audit") / "run"
    cmd = [sys.executable, "-m", "fedkd.cli", "audit", *[a for s in RUN_SETTINGS for a in ("--set", s)],
           "--quick", "--out", str(run)]
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=1800)  # a hang guard only
    assert proc.returncode == 0, proc.stderr[-4000:]
    return run, proc


@pytest.mark.slow
def test_audit_writes_every_number(audited):
    run, proc = audited
    audit = json.loads((run / "audit" / "audit.json").read_text())
    assert "[audit" in proc.stderr  # progress lines
    # membership: every client, every attack, the three metrics, and a worst client per attack
    per_client = audit["membership"]["per_client"]
    assert set(per_client) == {"0", "1", "2"}
    attacks = {"loss", "confidence", "reference", "rmia", "label_only"}
    for res in per_client.values():
        assert set(res) == attacks
        for m in res.values():
            assert 0 <= m["auc"] <= 1 and 0 <= m["tpr_at_0fpr"] <= m["tpr_at_0.1fpr"] <= m["tpr_at_1fpr"] <= 1
            assert len(m["roc_fpr"]) == len(m["roc_tpr"]) == 101
            assert m["auc_ci"][0] <= m["auc_ci"][1] and m["n_members"] > 0 and m["n_nonmembers"] > 0
        assert set(res["rmia"]) >= {"auc", "tpr_at_0.1fpr", "tpr_at_1fpr"}
    assert set(audit["membership"]["worst_client"]) == attacks
    assert set(audit["membership"]["rmia"]["offline_a"]) == {"0", "1", "2"}
    # the server's soft-label inversion, plain and swing, judged per class
    sli = audit["soft_label_inversion"]
    assert sli["chance"] == pytest.approx(0.1) and set(sli["per_class"]) == {str(c) for c in range(10)}
    assert set(sli["variants"]) == {"plain", "swing"} and sli["as_run"] == "plain"
    assert sli["attack_acc_top1"] == sli["variants"]["plain"]["attack_acc_top1"] > 2 * sli["chance"]
    # the one-run empirical epsilon: a plain run has no accounted epsilon; swing's training-set one bounds it
    emp = audit["empirical_epsilon"]
    assert emp["accounted"] is None and emp["lower_bound"] >= 0 and emp["canaries"] == 100
    swing = emp["variants"]["swing"]
    assert swing["lower_bound"] <= swing["accounted_training_set"]
    # inversion: the keys, and numbers that mean what they say
    inv = audit["inversion"]
    for key in ("attack_acc_top1", "attack_acc_top5", "chance", "queries", "cross_client_attack_acc_top1"):
        assert key in inv, key
    assert inv["chance"] == pytest.approx(0.1)
    assert inv["attack_acc_top1"] <= inv["attack_acc_top5"] <= 1
    lokt = LoktConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in audit["settings"]["lokt"].items()})
    assert inv["queries"] == lokt.expected_queries(inv["public_images"], 10)
    (cid, target), = inv["targets"].items()  # --quick: one target
    assert target["federated"]["queries"] == inv["queries"] == sum(target["federated"]["queries_by_stage"].values())
    hist = audit["run"]["label_histograms"][int(cid)]
    assert target["never_held_classes"] == [c for c, n in enumerate(hist) if n == 0]
    # the target picked is the client with the most never-held classes
    assert len(target["never_held_classes"]) == max(sum(n == 0 for n in h) for h in audit["run"]["label_histograms"])
    assert "local_only" in target and target["local_only"]["queries"] == inv["queries"]
    assert set(target["near_blank_classes"]) == {"federated", "local_only"}
    assert isinstance(inv["judge"]["blank_image_class"], int)
    # LOKT on a federated digits model recovers its classes well above the generator's chance floor
    assert inv["attack_acc_top1"] > inv["random_latent_acc_top1"] + 0.2
    assert audit["canaries"]["round"] == [1, 2] and audit["fusion_weights"]["round"] == 2
    assert audit["timing"]["cpu_seconds"] > 0
    json.loads((run / "audit" / "audit.json").read_text(), parse_constant=lambda c: pytest.fail(f"{c} in JSON"))


@pytest.mark.slow
@needs_chromium
def test_report_renders_in_chromium(audited):
    run, _ = audited
    html = run / "audit" / "report.html"
    text = html.read_text()
    assert "http://" not in text and "https://" not in text  # nothing to fetch
    page = check_page(html, run / "audit" / "screenshot.png")
    assert_page_clean(page, html)
    # ROC curves (linear and log), canary exposure, fusion weights, per LOKT target an inversion grid and
    # per-class bars, and the soft-label inversion's grid and per-class bars
    assert len(page["images"]) == 8
    assert all(img["src"].startswith("data:image/png;base64,") for img in page["images"])
    assert "knfu on digits" in page["title"]
    from PIL import Image

    with Image.open(run / "audit" / "screenshot.png") as shot:
        assert shot.width >= 1000 and shot.height > 2000  # the whole page, not one viewport
        pixels = np.asarray(shot.convert("L"), dtype=float)
        assert pixels.std() > 10  # not a blank page
    if os.environ.get("FEDKD_KEEP_SCREENSHOT"):
        shutil.copy(run / "audit" / "screenshot.png", os.environ["FEDKD_KEEP_SCREENSHOT"])


@needs_chromium
def test_browser_check_catches_a_broken_page(tmp_path):
    """The check can fail: a missing image, a console error and a network request are all caught."""
    html = tmp_path / "broken.html"
    html.write_text('<!DOCTYPE html><html><head><link rel="icon" href="data:,"><title>x</title></head><body>'
                    '<img src="data:image/png;base64,AAAA"><img src="missing.png">'
                    '<script>console.error("boom")</script></body></html>')
    page = check_page(html, tmp_path / "shot.png")
    assert sum(not img["width"] for img in page["images"]) == 2
    assert any(c.get("type") == "error" for c in page["console"])
    with pytest.raises(AssertionError, match="images that did not load"):
        assert_page_clean(page, html)
    page["images"] = []
    with pytest.raises(AssertionError, match="console output"):
        assert_page_clean(page, html)


# --------------------------------------------------------------------------- sweeps and bad input
@pytest.mark.slow
@needs_chromium
def test_sweep_folder_gets_a_frontier_report(audited, tmp_path):
    """A privacy-sweep folder is audited run by run and summarised on one frontier page."""
    from fedkd.audit.run import AuditSettings
    from fedkd.audit.sweep import audit_sweep

    run, _ = audited
    sweep = tmp_path / "sweep"
    shutil.copytree(run, sweep / "run0", ignore=shutil.ignore_patterns("audit", "node_checkpoints"))
    summary = json.loads((run / "summary.json").read_text())
    (sweep / "sweep.json").write_text(json.dumps({"rows": [{
        "run": "plain", "alma": summary["alma"], "global_acc": summary["global_acc"], "epsilon": float("inf"),
        "exposure_owner": summary["canaries"]["exposure_owner"],
        "exposure_peers_mean": summary["canaries"]["exposure_peers_mean"]}]}))
    # the frontier page is under test, not the attacks: the cheapest audit that still measures membership
    result = audit_sweep(sweep, AuditSettings.quick(lokt_targets=0, reference_models=0, label_only_augment=2,
                                                    bootstrap=20, sli_clients=(), one_run_canaries=0,
                                                    progress=False))
    (row,) = result["rows"]
    assert row["epsilon"] is None and 0 <= row["mia_worst_auc"] <= 1
    assert row["report"] == "../run0/audit/report.html" and (sweep / "run0/audit/report.html").is_file()
    html = sweep / "audit" / "report.html"
    page = check_page(html, tmp_path / "sweep.png")
    assert_page_clean(page, html)
    assert len(page["images"]) == 1

    # a sweep row whose run is a different setting is refused, naming both
    rows = json.loads((sweep / "sweep.json").read_text())
    rows["rows"][0]["run"] = "swing sigma=0.5"
    (sweep / "sweep.json").write_text(json.dumps(rows))
    with pytest.raises(ValueError, match="'plain' run but sweep.json row 0 is 'swing sigma=0.5'"):
        audit_sweep(sweep, AuditSettings(progress=False))


@pytest.mark.slow
def test_bad_input_is_named(audited, tmp_path, capsys):
    from fedkd.cli import main

    run, _ = audited
    assert main(["audit", str(tmp_path / "nowhere"), "--quiet"]) == 2
    assert "neither a run folder" in capsys.readouterr().err
    assert main(["audit", str(run), "--clients", "0,7", "--quiet"]) == 2
    assert "client ids [7] are not in this run" in capsys.readouterr().err
    assert main(["audit", str(run), "--clients", "zero", "--quiet"]) == 2
    assert "--clients" in capsys.readouterr().err
    no_models = tmp_path / "no_models"
    shutil.copytree(run, no_models, ignore=shutil.ignore_patterns("nodes", "audit"))  # the nodes keep the models
    assert main(["audit", str(no_models), "--quiet"]) == 2
    assert "save_models=true" in capsys.readouterr().err
    assert main(["audit", "--quiet"]) == 2
    assert "nothing to audit" in capsys.readouterr().err

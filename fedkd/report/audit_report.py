"""The audit's HTML report: one self-contained page (figures as base64 PNG data URIs).

:func:`render_run_report` turns an audit of one run (``fedkd.audit.run.audit_run``) into
``report.html``; :func:`render_sweep_report` turns the audits of a privacy sweep into a
page with the privacy-utility frontier. The page loads nothing from the network and
runs no script: every figure is an ``<img>`` whose ``src`` is a ``data:`` URI, and the
style sheet is inline.
"""
from __future__ import annotations

import base64
import io
import math
from pathlib import Path

import numpy as np

__all__ = ["render_run_report", "render_sweep_report", "figure_data_uri", "TEMPLATE_DIR"]

TEMPLATE_DIR = Path(__file__).parent / "templates"
ATTACK_LABELS = {"loss": "loss threshold", "confidence": "confidence threshold",
                 "reference": "reference models (LiRA offline)", "rmia": "RMIA (offline)",
                 "label_only": "label only"}
SHORT_LABELS = {"loss": "loss", "confidence": "confidence", "reference": "reference (LiRA)",
                "rmia": "RMIA", "label_only": "label-only"}


# --------------------------------------------------------------------------- figures
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figure_data_uri(fig) -> str:
    """PNG of a matplotlib figure as a ``data:image/png;base64,...`` URI; closes the figure."""
    plt = _plt()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def roc_figure(membership: dict) -> str:
    """One ROC panel per attack, one curve per client, the chance diagonal dashed."""
    plt = _plt()
    attacks = membership["attacks"]
    fig, axes = plt.subplots(1, len(attacks), figsize=(3.4 * len(attacks), 3.4), squeeze=False)
    for ax, attack in zip(axes[0], attacks):
        for cid, res in membership["per_client"].items():
            m = res[attack]
            ax.plot(m["roc_fpr"], m["roc_tpr"], lw=1.2, label=f"client {cid} ({m['auc']:.2f})")
        ax.plot([0, 1], [0, 1], "k--", lw=0.8)
        ax.set_title(ATTACK_LABELS.get(attack, attack), fontsize=9)
        ax.set_xlabel("false-positive rate")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_aspect("equal")
        ax.legend(fontsize=6, loc="lower right", title="client (AUC)", title_fontsize=6)
    axes[0][0].set_ylabel("true-positive rate")
    fig.tight_layout()
    return figure_data_uri(fig)


def roc_log_figure(membership: dict) -> str:
    """The same ROC curves on log-log axes (FPR from 1e-3): where the low-FPR regime is visible."""
    plt = _plt()
    attacks = [a for a in membership["attacks"]
               if all("roc_log_fpr" in r.get(a, {}) for r in membership["per_client"].values())]
    fig, axes = plt.subplots(1, max(1, len(attacks)), figsize=(3.4 * max(1, len(attacks)), 3.4), squeeze=False)
    for ax, attack in zip(axes[0], attacks):
        for cid, res in membership["per_client"].items():
            m = res[attack]
            fpr, tpr = np.asarray(m["roc_log_fpr"]), np.maximum(np.asarray(m["roc_log_tpr"]), 1e-4)
            ax.plot(fpr, tpr, lw=1.2, label=f"client {cid} (n={m['n_members']})")
        ax.plot([1e-3, 1], [1e-3, 1], "k--", lw=0.8)
        ax.axvline(1.0 / min(r[attack]["n_nonmembers"] for r in membership["per_client"].values()),
                   color="grey", ls=":", lw=0.8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(1e-3, 1)
        ax.set_ylim(1e-3, 1)
        ax.set_title(ATTACK_LABELS.get(attack, attack), fontsize=9)
        ax.set_xlabel("false-positive rate (log)")
        ax.legend(fontsize=6, loc="lower right", title="client (members)", title_fontsize=6)
    axes[0][0].set_ylabel("true-positive rate (log)")
    fig.tight_layout()
    return figure_data_uri(fig)


def sli_grid_figure(class_means: np.ndarray, sli_images: dict, class_names: list[str]) -> str:
    """Rows = classes: the real class mean, then the server's reconstructions from plain and swing uploads."""
    groups = {f"{variant} uploads (client {imgs['client']})": imgs["reconstructions"]
              for variant, imgs in sli_images.items()}
    return inversion_grid_figure(class_means, groups, class_names, [])


def sli_per_class_figure(section: dict, class_names: list[str]) -> str:
    """Judged top-1 accuracy per class, plain and swing uploads, mean over the attacked clients."""
    plt = _plt()
    k = len(class_names)
    x = np.arange(k)
    variants = section["variants"]
    width = 0.8 / max(1, len(variants))
    fig, ax = plt.subplots(figsize=(max(5.5, 0.55 * k), 3.0))
    for i, (name, v) in enumerate(variants.items()):
        ax.bar(x + (i - (len(variants) - 1) / 2) * width, [v["per_class"].get(str(c), np.nan) for c in range(k)],
               width=width, label=f"{name} uploads")
    ax.axhline(section["chance"], color="grey", ls=":", lw=0.8, label="chance (1/C)")
    ax.set_xticks(x, [str(n) for n in class_names], fontsize=7, rotation=30 if k > 10 else 0)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("attack accuracy (top-1)")
    ax.legend(fontsize=6, ncol=len(variants) + 1, loc="upper center", bbox_to_anchor=(0.5, -0.18))
    ax.set_title("soft-label inversion per class (mean over clients)", fontsize=8)
    fig.tight_layout()
    return figure_data_uri(fig)


def canary_figure(canaries: dict, max_exposure: float | None = None) -> str:
    """Canary exposure (bits) per round: on the owner's model, and on its peers'."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    rounds = canaries["round"]

    def series(values):
        return [np.nan if v is None else v for v in values]

    ax.plot(rounds, series(canaries["owner"]), "o-", label="owner's model")
    ax.plot(rounds, series(canaries["peers_mean"]), "s-", label="peers' models (mean)")
    ax.plot(rounds, series(canaries["peers_max"]), "^--", label="peers' models (max)", alpha=0.7)
    if max_exposure:
        ax.axhline(max_exposure, color="grey", lw=0.8, ls=":", label=f"maximum ({max_exposure:.1f} bits)")
    ax.set_xlabel("round")
    ax.set_ylabel("exposure (bits)")
    ax.set_xticks(rounds)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return figure_data_uri(fig)


def weights_figure(fusion: dict) -> str:
    """Heatmap of the N x N fusion weights: row n = how much client n distils from each m."""
    plt = _plt()
    w = np.asarray(fusion["weights"], dtype=float)
    n = len(w)
    size = min(6.0, 2.0 + 0.35 * n)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(w, cmap="viridis", vmin=0, vmax=max(1e-9, float(w.max())))
    fig.colorbar(im, ax=ax, label="weight", shrink=0.8)
    if n <= 12:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, f"{w[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if w[i, j] < 0.6 * w.max() else "black")
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    ax.set_xlabel("source client m")
    ax.set_ylabel("receiving client n")
    ax.set_title(f"fusion weights, round {fusion['round']}", fontsize=9)
    fig.tight_layout()
    return figure_data_uri(fig)


def _tile(images: np.ndarray, pad: int = 1) -> np.ndarray:
    """(n, C, H, W) images side by side with ``pad`` white pixels between: (H, n*(W+pad), C)."""
    n, c, h, w = images.shape
    out = np.ones((h, n * (w + pad) - pad, c), np.float32)
    for i, img in enumerate(images):
        out[:, i * (w + pad): i * (w + pad) + w] = np.transpose(img, (1, 2, 0))
    return out


def inversion_grid_figure(class_means: np.ndarray, groups: dict[str, np.ndarray], class_names: list[str],
                          never_held: list[int], per_row: int = 6) -> str:
    """Rows = classes; columns = the real class mean, then ``per_row`` reconstructions per group.

    ``groups`` maps a caption ("federated model", ...) to reconstructions (K, n, C, H, W).
    Classes the target never held are labelled in red.
    """
    plt = _plt()
    k = class_means.shape[0]
    blocks = [("real mean", class_means[:, None])] + [
        (name, rec[:, :per_row]) for name, rec in groups.items()]
    gap = 3
    rows = []
    for cls in range(k):
        parts = []
        for _, arr in blocks:
            parts.append(_tile(arr[cls]))
            parts.append(np.ones((arr.shape[-2], gap, arr.shape[2]), np.float32))
        rows.append(np.concatenate(parts[:-1], axis=1))
        rows.append(np.ones((1, rows[-1].shape[1], rows[-1].shape[2]), np.float32))
    grid = np.clip(np.concatenate(rows[:-1], axis=0), 0, 1)
    h, w = grid.shape[:2]
    fig, ax = plt.subplots(figsize=(min(14.0, 1.2 + w / 14), 0.6 + h / 14))
    ax.imshow(grid[..., 0] if grid.shape[2] == 1 else grid, cmap="gray", vmin=0, vmax=1,
              interpolation="nearest")
    cell_h = class_means.shape[-2] + 1
    ax.set_yticks([cls * cell_h + (cell_h - 1) / 2 for cls in range(k)])
    labels = ax.set_yticklabels([f"{class_names[c]}{' (never held)' if c in never_held else ''}"
                                 for c in range(k)], fontsize=7)
    for c, label in enumerate(labels):
        if c in never_held:
            label.set_color("crimson")
    starts, x = [], 0
    for name, arr in blocks:
        width = _tile(arr[0]).shape[1]
        starts.append((x + width / 2, name))
        x += width + gap
    ax.set_xticks([s for s, _ in starts])
    ax.set_xticklabels([name for _, name in starts], fontsize=7)
    ax.xaxis.tick_top()
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.tick_params(length=0)
    fig.tight_layout()
    return figure_data_uri(fig)


def per_class_figure(entry: dict, class_names: list[str]) -> str:
    """Top-1 attack accuracy per class: federated target, local-only twin, random latents."""
    plt = _plt()
    fed = entry["federated"]
    k = len(class_names)
    x = np.arange(k)
    series = [("federated model", fed["per_class_acc"])]
    if "local_only" in entry:
        series.append(("local-only model", entry["local_only"]["per_class_acc"]))
    series.append(("random latents", fed["random_latent"]["per_class_acc"]))
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(max(5.5, 0.55 * k), 3.0))
    for c in entry["never_held_classes"]:
        ax.axvspan(c - 0.5, c + 0.5, color="crimson", alpha=0.08, lw=0)
    for i, (name, per_class) in enumerate(series):
        ax.bar(x + (i - (len(series) - 1) / 2) * width, [per_class.get(str(c), np.nan) for c in range(k)],
               width=width, label=name)
    ax.axhline(1.0 / k, color="grey", ls=":", lw=0.8, label="chance (1/C)")
    ax.set_xticks(x, [str(n) for n in class_names], fontsize=7, rotation=30 if k > 10 else 0)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("attack accuracy (top-1)")
    ax.legend(fontsize=6, ncol=len(series) + 1, loc="upper center", bbox_to_anchor=(0.5, -0.18))
    ax.set_title("per class (shaded: classes the client never held)", fontsize=8)
    fig.tight_layout()
    return figure_data_uri(fig)


def frontier_figure(rows: list[dict]) -> str:
    """Privacy-utility frontier of a sweep: ALMA against epsilon, and leakage against ALMA."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    ax = axes[0]
    finite = [r for r in rows if r.get("epsilon") is not None and math.isfinite(r["epsilon"])]
    if finite:
        sc = ax.scatter([r["epsilon"] for r in finite], [r["alma"] for r in finite],
                        c=[r.get("mia_worst_auc") or np.nan for r in finite], cmap="magma_r", s=60,
                        vmin=0.5, vmax=1.0, edgecolors="black")
        fig.colorbar(sc, ax=ax, label="worst-client MIA AUC")
        for r in finite:
            ax.annotate(r["run"].replace("swing ", ""), (r["epsilon"], r["alma"]), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")
        ax.set_xscale("log")
    for r in rows:
        if r not in finite:
            ax.axhline(r["alma"], ls="--", color="grey", lw=0.9, label=f"{r['run']} (no guarantee)")
    ax.set_xlabel("epsilon (all rounds)")
    ax.set_ylabel("ALMA")
    ax.set_title("utility against the privacy budget", fontsize=9)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    ax = axes[1]
    leak = [("mia_worst_auc", "worst-client MIA AUC", "o"), ("lokt_acc_top1", "LOKT attack accuracy", "s"),
            ("exposure_peers_mean_norm", "peer canary exposure / max", "^"),
            ("rmia_worst_tpr_at_0.1fpr", "RMIA TPR at 0.1 % FPR (worst client)", "v"),
            ("sli_acc_top1", "soft-label inversion accuracy", "D"),
            ("upload_mia_worst_auc", "server's MIA from the uploads, AUC (worst client)", "P")]
    for key, label, marker in leak:
        pts = [(r["alma"], r[key]) for r in rows if r.get(key) is not None]
        if pts:
            ax.scatter(*zip(*pts), marker=marker, s=50, label=label)
    for r in rows:
        ax.annotate(r["run"].replace("swing ", ""), (r["alma"], r.get("mia_worst_auc") or 0), fontsize=6,
                    xytext=(3, -9), textcoords="offset points")
    ax.set_xlabel("ALMA (utility)")
    ax.set_ylabel("leakage")
    ax.set_title("leakage against utility (down-right is better)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return figure_data_uri(fig)


# --------------------------------------------------------------------------- rendering
def _environment():
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
                             autoescape=jinja2.select_autoescape(["html", "j2"]),
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)

    def num(value, digits=3):
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            return "–"
        if isinstance(value, int):
            return f"{value:,}"
        return f"{value:.{digits}f}"

    env.filters["num"] = num
    env.filters["pct"] = lambda v: "–" if v is None else f"{100 * v:.1f} %"
    env.filters["ci"] = lambda v, digits=3: "" if not v else f" [{num(v[0], digits)}, {num(v[1], digits)}]"
    env.globals["attack_label"] = lambda a: SHORT_LABELS.get(a, a)
    return env


def _write(html: str, path) -> Path:
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(path)
    return path


def render_run_report(result: dict, images: dict, path) -> Path:
    """Write the report of one run's audit.

    Parameters
    ----------
    result : dict
        The audit.json content (``fedkd.audit.run.audit_loaded_run``).
    images : dict
        ``class_means`` (C, ...) and per LOKT target ``federated`` / ``local_only``
        reconstructions (K, n, C, H, W); {} when no inversion ran.
    path : str or Path
        Where to write the HTML.
    """
    run = result["run"]
    figures: dict = {"targets": {}}
    if result.get("membership"):
        figures["roc"] = roc_figure(result["membership"])
        figures["roc_log"] = roc_log_figure(result["membership"])
    sli = result.get("soft_label_inversion")
    if sli and images.get("soft_label_inversion"):
        figures["sli_grid"] = sli_grid_figure(images["class_means"], images["soft_label_inversion"],
                                              run["class_names"])
        figures["sli_per_class"] = sli_per_class_figure(sli, run["class_names"])
    if result.get("canaries"):
        figures["canaries"] = canary_figure(result["canaries"], result["canaries"].get("max_exposure"))
    if result.get("fusion_weights"):
        figures["weights"] = weights_figure(result["fusion_weights"])
    inversion = result.get("inversion")
    if inversion:
        for cid, entry in inversion["targets"].items():
            imgs = images["targets"][cid]
            groups = {"federated model": imgs["federated"]}
            if "local_only" in imgs:
                groups["local-only model"] = imgs["local_only"]
            figures["targets"][cid] = {
                "grid": inversion_grid_figure(images["class_means"], groups, run["class_names"],
                                              entry["never_held_classes"]),
                "per_class": per_class_figure(entry, run["class_names"]),
            }
    html = _environment().get_template("audit.html.j2").render(
        kind="run", result=result, run=run, figures=figures, membership=result.get("membership"),
        inversion=inversion, sli=sli, empirical=result.get("empirical_epsilon"),
        extra_attacks=extra_attack_sections(result))
    return _write(html, path)


# Attacks whose section is written in the template; any other registered attack gets the generic one.
SECTIONS_IN_TEMPLATE = ("membership", "inversion", "soft_label_inversion", "empirical_epsilon")
MAX_GENERIC_ROWS = 60


def _flatten(value, prefix: str = "") -> list[tuple[str, str]]:
    """Nested JSON -> (dotted key, shown value) rows; long lists are summarised."""
    if isinstance(value, dict):
        return [row for k, v in value.items() for row in _flatten(v, f"{prefix}{k}.")]
    key = prefix.rstrip(".")
    if isinstance(value, list):
        if len(value) <= 10 and all(not isinstance(v, (dict, list)) for v in value):
            return [(key, ", ".join(_shown(v) for v in value))]
        return [(key, f"{len(value)} values")]
    return [(key, _shown(value))]


def _shown(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "–" if value is None else str(value)


def extra_attack_sections(result: dict) -> list[dict]:
    """The report's generic sections: one per attack that has none of its own in the template."""
    sections = []
    for attack in result.get("attacks", []):
        name = attack["name"]
        if name in SECTIONS_IN_TEMPLATE or result.get(name) is None:
            continue
        rows = _flatten(result[name])
        sections.append({**attack, "rows": rows[:MAX_GENERIC_ROWS],
                         "truncated": max(0, len(rows) - MAX_GENERIC_ROWS)})
    return sections


def render_sweep_report(sweep: dict, path) -> Path:
    """Write the report of a privacy sweep's audit (``fedkd.audit.sweep.audit_sweep``)."""
    figures = {"frontier": frontier_figure(sweep["rows"])}
    html = _environment().get_template("audit.html.j2").render(
        kind="sweep", sweep=sweep, figures=figures, result=sweep)
    return _write(html, path)

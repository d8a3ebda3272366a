"""Read what a finished run left on disk, in the form the audit needs.

A run folder (``fedkd simulate --out DIR``) holds ``config.json`` (the resolved
config), ``metrics.jsonl`` (one record per round), ``summary.json`` and, with
``save_models=true``, ``models/client_<id>.pt``. The data is not stored: every party
rebuilds it from the config, so the audit does the same and gets the exact arrays
the clients trained on.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from fedkd.run_records import METRICS_FILE, read_rounds

__all__ = ["RunArtifacts", "load_run", "is_run_dir", "is_sweep_dir"]


@dataclass
class RunArtifacts:
    """One finished run, rebuilt for auditing.

    Attributes
    ----------
    run_dir : Path
    cfg : fedkd.config.Config
        The run's resolved config.
    federation : fedkd.data.Federation
        The run's data, rebuilt from ``cfg`` (identical arrays to the clients').
    rounds : list of dict
        ``metrics.jsonl``, one record per round.
    summary : dict
        ``summary.json`` ({} if the run did not finish).
    models : dict int -> (torch.nn.Module, str)
        Each saved client model and its architecture name, by partition id.
    """

    run_dir: Path
    cfg: object
    federation: object
    rounds: list[dict]
    summary: dict
    models: dict[int, tuple[torch.nn.Module, str]] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return int(self.federation.num_classes)

    def private_data(self, client_id: int) -> tuple[np.ndarray, np.ndarray]:
        """What the client trained on: its partition, with canaries planted if it owns them."""
        from fedkd.privacy.canary_plan import private_training_data

        return private_training_data(self.cfg.canaries, self.federation, self.federation.clients[client_id])

    def never_held_classes(self, client_id: int) -> list[int]:
        """Classes with no sample in the client's own partition: it can know them only through fusion."""
        hist = np.asarray(self.federation.clients[client_id].label_histogram)
        return [int(c) for c in np.flatnonzero(hist == 0)]

    def local_training_epochs(self) -> int:
        """Epochs of cross-entropy a client ran over the whole run (revisit or joint steps)."""
        return int(self.cfg.run.rounds) * int(self.cfg.training.revisit_epochs)

    # ------------------------------------------------------------------ what crossed the wire
    # The run does not store the uploads; the audit recomputes them from the saved final models
    # with the run's own release code, so this is the one place that knows how a client uploads.
    def transfer_inputs(self) -> np.ndarray:
        """The transfer set as the run used it (with the canary images when they were put in it)."""
        from fedkd.privacy.canary_plan import transfer_inputs

        return np.array(transfer_inputs(self.cfg.canaries, self.federation)[0])

    def release_config(self, swing: bool | None = None):
        """The run's config, with swing forced on or off (None = as the run had it)."""
        if swing is None or bool(swing) == bool(self.cfg.privacy.swing):
            return self.cfg
        return self.cfg.replace(privacy__swing=bool(swing))

    def upload(self, logits: np.ndarray, targets: np.ndarray | None, client_id: int, round_num: int,
               *, swing: bool | None = None) -> np.ndarray:
        """The soft labels a client uploads for these logits: plain softmax(z / T) or swing-protected
        (the run's temperatures, mechanism, noise scale and noise seed)."""
        from fedkd.privacy.release import release

        cfg = self.release_config(swing)
        return release(cfg.privacy, cfg.training.temperature, logits, targets, client_id, round_num)[0]

    def last_fusion_weights(self) -> np.ndarray | None:
        """The last logged N x N fusion weights (row n: what client n distils from each m), or None."""
        from fedkd.run_records import weight_matrix

        last = next((r for r in reversed(self.rounds) if r.get("weights")), None)
        return None if last is None else weight_matrix(last, int(self.cfg.run.num_clients))

    def accounted_epsilon(self) -> float | None:
        """The run's accounted ε (summary.json ``privacy.epsilon``: per transfer-row output privacy)."""
        privacy = self.summary.get("privacy") or {}
        return finite_or_none(privacy.get("epsilon")) if privacy else None

    def epsilon_for_rows(self, rows: int, swing: bool | None = None) -> float | None:
        """ε of the run's releases when a neighbour may change ``rows`` rows of every upload.

        Any change of the training set can change every row, so with ``rows`` = the number of
        uploaded rows this bound covers training-set membership (canaries included); None without
        noise (no guarantee).
        """
        from fedkd.privacy.accounting import compute_epsilon, simplex_sensitivity

        cfg = self.release_config(swing)
        if not cfg.privacy.swing or not cfg.privacy.noise_scale > 0:
            return None
        sens = simplex_sensitivity(cfg.privacy.mechanism, rows=int(rows))
        return finite_or_none(compute_epsilon(cfg.privacy.mechanism, cfg.privacy.noise_scale,
                                              int(cfg.run.rounds), cfg.privacy.delta, sensitivity=sens))


def is_run_dir(path: Path) -> bool:
    return (Path(path) / "config.json").is_file()


def is_sweep_dir(path: Path) -> bool:
    return (Path(path) / "sweep.json").is_file()


def load_run(run_dir, clients=None) -> RunArtifacts:
    """Rebuild a run's config, data and saved client models.

    Parameters
    ----------
    run_dir : str or Path
        Output folder of ``fedkd simulate``.
    clients : iterable of int, optional
        Partition ids whose models to load (default: all ``num_clients``).

    Raises
    ------
    FileNotFoundError
        When ``run_dir`` is not a run folder or a requested model was not saved (the
        message names ``save_models=true``, the setting that writes them).
    ValueError
        When ``clients`` names an id outside the run.
    """
    from fedkd.config import make_config
    from fedkd.data import build_federation
    from fedkd.model_store import client_model_path, load_client_model

    run_dir = Path(run_dir)
    config_path = run_dir / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a run folder: it has no config.json "
                                "(give the --out folder of `fedkd simulate`)")
    cfg = make_config(json.loads(config_path.read_text()))
    federation = build_federation(cfg.federation)
    n = int(cfg.run.num_clients)
    wanted = list(range(n)) if clients is None else [int(c) for c in clients]
    bad = [c for c in wanted if not 0 <= c < n]
    if bad:
        raise ValueError(f"client ids {bad} are not in this run (num_clients={n}, ids 0..{n - 1})")
    models = {}
    for cid in wanted:
        path = client_model_path(run_dir, cid)
        if not path.is_file():
            raise FileNotFoundError(
                f"{run_dir} has no saved model of client {cid} ({path}); run the simulation with --set "
                "save_models=true (experiments/configs/fashion.toml turns it off)")
        models[cid] = load_client_model(path, federation.input_shape, federation.num_classes)
    summary_path = run_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    return RunArtifacts(run_dir=run_dir, cfg=cfg, federation=federation,
                        rounds=read_rounds(run_dir) if (run_dir / METRICS_FILE).is_file() else [], summary=summary, models=models)


def finite_or_none(value):
    """A float for JSON, or None for NaN/inf (JSON has no NaN)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None

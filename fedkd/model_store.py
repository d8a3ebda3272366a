"""Save and load a client's final model on the client's own disk (for audits)."""
from __future__ import annotations

import os
from pathlib import Path

import torch


def client_model_path(run_dir: str | Path, client_id: int) -> Path:
    """Where a simulated client's final model lies: its node folder under the run folder."""
    return Path(run_dir) / "nodes" / f"client-{int(client_id)}" / "model.pt"


def save_client_model(path: Path, model_name: str, model: torch.nn.Module, *, dp_compatible: bool = False) -> Path:
    """Write the architecture name and the weights atomically (``dp_compatible``: the model was made
    DP-SGD-compatible, BatchNorm -> GroupNorm, and is rebuilt that way)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".pt.tmp")
    torch.save({"model": model_name, "state_dict": model.state_dict(), "dp_compatible": bool(dp_compatible)}, tmp)
    os.replace(tmp, path)
    return path


def load_client_model(path: Path, input_shape, num_classes: int) -> tuple[torch.nn.Module, str]:
    """Rebuild a saved client model; a missing file names the run setting that writes it."""
    from fedkd.models import build_model

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no saved model {path}; run the simulation with save_models=true")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    model = build_model(blob["model"], input_shape, num_classes)
    if blob.get("dp_compatible"):
        from fedkd.privacy.dp_sgd import make_dp_compatible

        model = make_dp_compatible(model)
    model.load_state_dict(blob["state_dict"])
    return model.eval(), blob["model"]

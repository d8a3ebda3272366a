"""Save and load a client's final model on the client's own disk (for audits)."""
from __future__ import annotations

import os
from pathlib import Path

import torch


def save_client_model(folder: Path, partition_id: int, model_name: str, model: torch.nn.Module) -> Path:
    """Write ``client_<id>.pt`` atomically: the architecture name and the weights."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"client_{partition_id}.pt"
    tmp = path.with_suffix(".pt.tmp")
    torch.save({"model": model_name, "state_dict": model.state_dict()}, tmp)
    os.replace(tmp, path)
    return path


def load_client_model(folder: Path, partition_id: int, input_shape, num_classes: int) -> tuple[torch.nn.Module, str]:
    """Rebuild a saved client model; a missing file names the run setting that writes it."""
    from fedkd.models import build_model

    path = Path(folder) / f"client_{partition_id}.pt"
    if not path.is_file():
        raise FileNotFoundError(f"no saved model {path}; run the simulation with save_models=true")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    model = build_model(blob["model"], input_shape, num_classes)
    model.load_state_dict(blob["state_dict"])
    return model.eval(), blob["model"]

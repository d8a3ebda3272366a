"""fedkd's Adam and SGD give torch.optim's weights bit for bit, and plain training never imports torch._dynamo."""
import subprocess
import sys

import pytest
import torch
from torch.nn import functional as F

from fedkd.models import build_model
from fedkd.optimizers import make_optimizer, torch_optimizer


def _train(model_name: str, optimizer: str, ours: bool, steps: int = 25) -> list[torch.Tensor]:
    torch.manual_seed(0)
    model = build_model(model_name, (1, 8, 8), 10)
    data = torch.Generator().manual_seed(1)
    x, y = torch.rand(64, 1, 8, 8, generator=data), torch.randint(0, 10, (64,), generator=data)
    make = make_optimizer if ours else torch_optimizer
    opt = make(optimizer, model.parameters(), 3e-3)
    for step in range(steps):
        idx = torch.arange(step * 16, step * 16 + 16) % 64
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("model_name", ["cnn_small", "mlp"])
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_the_same_weights_as_torch_optim_bit_for_bit(model_name, optimizer):
    ours, theirs = _train(model_name, optimizer, True), _train(model_name, optimizer, False)
    assert not torch.equal(ours[0], _train(model_name, optimizer, True, steps=1)[0])  # it did train
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs))


def test_a_frozen_parameter_is_left_alone():
    torch.manual_seed(0)
    model = build_model("mlp", (1, 8, 8), 10)
    frozen = next(model.parameters())
    frozen.requires_grad_(False)
    before = frozen.clone()
    opt = make_optimizer("adam", model.parameters(), 1e-2)
    F.cross_entropy(model(torch.rand(8, 1, 8, 8)), torch.zeros(8, dtype=torch.long)).backward()
    opt.step()
    assert torch.equal(frozen, before)


def test_an_unknown_optimizer_is_refused():
    with pytest.raises(ValueError, match="optimizer must be one of adam, sgd, got 'lbfgs'"):
        make_optimizer("lbfgs", [], 0.1)


def test_a_client_round_does_not_import_torch_dynamo():
    """torch.optim imports torch._dynamo (2.4 CPU s per client process); a client's round, which trains,
    distils and predicts, must not."""
    code = ("import sys, torch\n"
            "from clients.node import load_node\n"
            "from fedkd.client_step import client_step, new_client_model\n"
            "from fedkd.config import make_config\n"
            "cfg = make_config({'num_clients': 2, 'transfer_size': 60, 'local_test_size': 20,"
            " 'revisit_epochs': 1})\n"
            "inputs = load_node(cfg, {'partition-id': 0}).inputs\n"
            "model = new_client_model(cfg.training, 0, inputs.input_shape, inputs.num_classes)[0]\n"
            "for rnd in (1, 2):\n"
            "    up = client_step(cfg.training, cfg.privacy, inputs, model, round_num=rnd, releases=0,"
            " targets=None if rnd == 1 else up.soft_labels, device=torch.device('cpu'))\n"
            "print('torch._dynamo' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "False"

"""swifthydra.nn.optim.Adam is torch.optim.Adam / AdamW step for step, bit for bit, without
importing torch._dynamo (docs/design.md §4.4)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from swifthydra.nn.optim import Adam


def _net(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3), torch.nn.Linear(3, 1))


@pytest.mark.parametrize("decoupled, weight_decay, foreach, eps, lrs", [
    (True, 0.01, True, 1e-8, [1e-3] * 6),       # the detectors' and the MoME's AdamW
    (False, 0.0, False, 1e-5, [3e-4, 2e-4, 1e-4, 5e-5, 2e-5, 1e-5]),  # PPO's Adam, its rate annealed
    (False, 1e-4, False, 1e-8, [1e-3] * 6),      # the C-VAE's Adam with an L2 penalty
    (True, 0.05, False, 1e-8, [2e-3] * 6),
    (False, 1e-3, True, 1e-8, [1e-3] * 6),
])
def test_every_step_equals_torchs(decoupled, weight_decay, foreach, eps, lrs):
    ours, theirs = _net(0), _net(0)
    kind = torch.optim.AdamW if decoupled else torch.optim.Adam
    opt_t = kind(theirs.parameters(), lr=lrs[0], weight_decay=weight_decay, eps=eps, foreach=foreach)
    opt_o = Adam(ours.parameters(), lr=lrs[0], weight_decay=weight_decay, eps=eps, decoupled=decoupled,
                 foreach=foreach)
    gen = torch.Generator().manual_seed(1)
    for i, lr in enumerate(lrs):
        for opt in (opt_t, opt_o):
            opt.param_groups[0]["lr"] = lr
        x = torch.randn(32, 5, generator=gen)
        for net, opt in ((theirs, opt_t), (ours, opt_o)):
            opt.zero_grad()
            net[2].bias.requires_grad_(i != 2)  # without a gradient this step: left alone, its moments too
            (net(x) ** 2).mean().backward()
            opt.step()
            net[2].bias.requires_grad_(True)
        assert i != 2 or ours[2].bias.grad is None
        for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
            assert torch.equal(a, b), f"step {i}"


def test_a_training_step_does_not_import_dynamo():
    code = (
        "import sys, torch\n"
        "from swifthydra.nn.optim import Adam\n"
        "net = torch.nn.Linear(3, 1)\n"
        "opt = Adam(net.parameters(), lr=1e-3, weight_decay=0.01, decoupled=True, foreach=True)\n"
        "net(torch.ones(4, 3)).sum().backward(); torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)\n"
        "opt.step(); opt.zero_grad()\n"
        "assert 'torch._dynamo' not in sys.modules, 'torch._dynamo was imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_an_empty_parameter_list_is_refused():
    with pytest.raises(ValueError, match="empty parameter list"):
        Adam([], lr=1e-3)

"""Mixture of Mamba experts: the K rule, routing, balancing loss and sparse dispatch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from swifthydra.exceptions import InvalidInputError
from swifthydra.nn.mamba import MambaConfig
from swifthydra.nn.moe import MoMENet, choose_num_experts, load_balancing_loss


def _blobs(n_blobs, n_per, dim=3, spread=40.0, seed=0):
    rng = np.random.RandomState(seed)
    centers = rng.uniform(-spread, spread, size=(n_blobs, dim))
    return np.concatenate([c + rng.randn(n_per, dim) for c in centers])


def test_num_experts_follows_cluster_count():
    assert choose_num_experts(_blobs(5, 150), random_state=0) == 5


def test_num_experts_is_clipped_to_2_and_16():
    rng = np.random.RandomState(0)
    assert choose_num_experts(rng.randn(400, 4), random_state=0) == 2  # one Gaussian -> clipped up
    many = _blobs(30, 60, dim=4, spread=200.0)
    assert choose_num_experts(many, random_state=0, max_rows=1800) == 16


def test_num_experts_is_deterministic_and_subsamples():
    X = _blobs(4, 500)
    a = choose_num_experts(X, random_state=3, max_rows=300)
    b = choose_num_experts(X, random_state=3, max_rows=300)
    assert a == b == 4


def test_num_experts_reduces_wide_data():
    rng = np.random.RandomState(0)
    X = _blobs(3, 200, dim=2) @ rng.randn(2, 300)  # 3 clusters embedded in 300 columns
    X += 0.01 * rng.randn(*X.shape)
    assert choose_num_experts(X, random_state=0) == 3


def test_num_experts_rejects_bad_arguments():
    with pytest.raises(InvalidInputError):
        choose_num_experts(np.zeros((10, 2)), min_experts=5, max_experts=3)
    with pytest.raises(InvalidInputError):
        choose_num_experts(np.array([1.0, np.nan]).reshape(-1, 1))


def test_load_balancing_loss_is_one_when_uniform_and_k_when_collapsed():
    K, n = 4, 8
    probs = torch.full((n, K), 1.0 / K)
    uniform = torch.arange(n).remainder(K).unsqueeze(1)
    assert load_balancing_loss(probs, uniform).item() == pytest.approx(1.0)
    collapsed_probs = torch.zeros(n, K)
    collapsed_probs[:, 0] = 1.0
    collapsed = torch.zeros(n, 1, dtype=torch.long)
    assert load_balancing_loss(collapsed_probs, collapsed).item() == pytest.approx(K)


def _net(K, top_k=1, seed=0, n_features=5):
    torch.manual_seed(seed)
    return MoMENet(n_features, K, top_k, "row", MambaConfig(d_model=8, n_layers=1, d_state=4))


class _RowCounter:
    """Forward hooks counting calls and rows seen by each expert."""

    def __init__(self, net):
        self.calls = [0] * net.n_experts
        self.rows = [0] * net.n_experts
        for e, expert in enumerate(net.experts):
            expert.register_forward_hook(self._hook(e))

    def _hook(self, e):
        def hook(module, args, output):
            self.calls[e] += 1
            self.rows[e] += args[0].shape[0]

        return hook


@pytest.mark.parametrize("top_k", [1, 2])
def test_scoring_cost_does_not_grow_with_k(top_k):
    x = torch.randn(1000, 5)
    processed = {}
    for K in (4, 16):
        net = _net(K, top_k).eval()
        counter = _RowCounter(net)
        with torch.inference_mode():
            net(x)
        assert max(counter.calls) <= 1  # each expert runs at most once per batch
        processed[K] = sum(counter.rows)
    assert processed[4] == processed[16] == 1000 * top_k  # each row through exactly top_k experts


@pytest.mark.parametrize("top_k", [1, 3])
def test_sparse_dispatch_equals_dense_mixture(top_k):
    net = _net(5, top_k, seed=1).eval()
    x = torch.randn(64, 5)
    with torch.no_grad():
        out = net(x)
        z = net.scaler(x)
        probs = torch.softmax(net.gate(z), -1)
        index = probs.topk(top_k, -1).indices
        dense = torch.stack([expert(z) for expert in net.experts], 1)  # every expert on every row
        w = probs.gather(1, index)
        expected = (w / w.sum(-1, keepdim=True) * dense.gather(1, index)).sum(-1)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)


def test_training_samples_experts_from_the_gate_distribution():
    net = _net(4)
    with torch.no_grad():
        net.gate.weight.zero_()
        net.gate.bias.copy_(torch.log(torch.tensor([0.1, 0.2, 0.3, 0.4])))
    x = torch.randn(20000, 5)
    _, sampled = net.route(net.scaler(x), sample=True)
    freq = torch.bincount(sampled.flatten(), minlength=4).float() / 20000
    torch.testing.assert_close(freq, torch.tensor([0.1, 0.2, 0.3, 0.4]), atol=0.015, rtol=0)
    _, greedy = net.route(net.scaler(x), sample=False)
    assert (greedy == 3).all()  # scoring takes the most probable expert


def test_forward_samples_in_training_mode_only():
    net = _net(4)
    x = torch.randn(300, 5)
    with torch.no_grad():
        net.train()
        torch.manual_seed(0)
        a = net(x)
        torch.manual_seed(1)
        b = net(x)
        net.eval()
        c, d = net(x), net(x)
    assert not torch.equal(a, b)
    assert torch.equal(c, d)


def test_gate_learns_from_the_task_loss_and_aux_reports_routing():
    net = _net(3).train()
    x = torch.randn(128, 5)
    out, aux = net(x, return_aux=True)
    torch.nn.functional.binary_cross_entropy_with_logits(out, torch.ones(128)).backward()
    assert net.gate.weight.grad is not None and net.gate.weight.grad.abs().sum() > 0
    assert aux["gate_probs"].shape == (128, 3)
    assert aux["expert_index"].shape == (128, 1)
    assert aux["balance_loss"].item() >= 0.99  # >= 1 up to the sampling noise of f_e


def test_top_k_must_fit():
    with pytest.raises(InvalidInputError):
        MoMENet(4, 2, top_k=3)


def test_dense_mode_sends_every_row_to_expert_zero_and_upcycle_copies_it():
    net = _net(4, seed=3)
    counter = _RowCounter(net)
    net.dense = True
    x = torch.randn(50, 5)
    out, aux = net(x, return_aux=True)
    assert counter.rows == [50, 0, 0, 0]
    assert aux["balance_loss"].item() == 0.0
    net.dense = False
    net.upcycle_().eval()
    with torch.no_grad():
        z = net.scaler(x)
        outputs = [expert(z) for expert in net.experts]
        for other in outputs[1:]:
            torch.testing.assert_close(other, outputs[0])
        torch.testing.assert_close(net(x), out.detach())  # any routing now gives the dense output

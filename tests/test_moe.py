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
    """Counts the calls and rows of each expert (the experts' one entry point when scoring)."""

    def __init__(self, net):
        self.calls = [0] * net.n_experts
        self.rows = [0] * net.n_experts
        real_call = net.experts.call

        def call(e, x):
            self.calls[e] += 1
            self.rows[e] += x.shape[0]
            return real_call(e, x)

        net.experts.call = call


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


def _loop_forward(net, x):
    """The training forward one expert after another (the oracle of the batched step)."""
    z = net.scaler(x)
    probs, index = net.route(z, sample=True)
    chosen = probs.gather(1, index)
    weights = chosen / chosen.sum(-1, keepdim=True).detach()
    out = z.new_zeros(z.shape[0])
    for j in range(index.shape[1]):
        for e in range(net.n_experts):
            rows = torch.nonzero(index[:, j] == e).squeeze(1)
            if len(rows):
                out = out.index_add(0, rows, weights[rows, j] * net.experts.call(e, z[rows]))
    return out


@pytest.mark.parametrize(("K", "top_k"), [(5, 1), (6, 2), (1, 1)])
def test_the_batched_training_step_equals_one_expert_after_another(K, top_k):
    """While training, every expert runs at once on its rows padded to the largest group; the
    logits and every gradient equal those of running the experts one by one."""
    net = _net(K, top_k, seed=2).train()
    x = torch.randn(97, 5)
    grads = []
    for forward in (lambda: net(x), lambda: _loop_forward(net, x)):
        torch.manual_seed(7)  # the same Gumbel draws: the same routing
        net.zero_grad(set_to_none=True)
        out = forward()
        (out * torch.linspace(-1, 1, len(out))).sum().backward()
        grads.append((out.detach(), {n: p.grad for n, p in net.named_parameters() if p.grad is not None}))
    torch.testing.assert_close(grads[0][0], grads[1][0], rtol=1e-5, atol=1e-6)
    assert grads[0][1].keys() == grads[1][1].keys() and "experts.stacked.head.weight" in grads[0][1]
    for name, g in grads[0][1].items():
        torch.testing.assert_close(g, grads[1][1][name], rtol=1e-5, atol=1e-6, msg=name)


def test_the_experts_weights_are_stacked_and_copies_read_them():
    net = _net(3, seed=4)
    names = [n for n, _ in net.named_parameters()]
    assert all(not n.startswith("experts.") or n.startswith("experts.stacked.") for n in names)
    stacked = dict(net.named_parameters())["experts.stacked.head.weight"]
    assert stacked.shape[0] == 3
    copies = list(net.experts)
    assert len(copies) == len(net.experts) == 3
    torch.testing.assert_close(copies[2].head.weight, stacked[2])
    with torch.no_grad():
        copies[2].head.weight.add_(1.0)  # a copy: the mixture does not change
    torch.testing.assert_close(net.experts[2].head.weight, stacked[2])
    with pytest.raises(IndexError):
        net.experts[3]


def test_a_state_dict_from_before_the_stacking_loads():
    """Files saved when each expert was its own module (``experts.<e>.<name>``) still load."""
    net = _net(4, seed=5).eval()
    old = {k: v for k, v in net.state_dict().items() if not k.startswith("experts.")}
    for e, expert in enumerate(net.experts):
        old.update({f"experts.{e}.{k}": v for k, v in expert.state_dict().items()})
    fresh = _net(4, seed=6).eval()
    fresh.load_state_dict(old)
    x = torch.randn(40, 5)
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), net(x), rtol=0, atol=0)


def test_threads_scoring_side_by_side_get_the_scores_of_one_thread():
    from concurrent.futures import ThreadPoolExecutor

    net = _net(6, seed=8).eval()
    xs = [torch.randn(500, 5) for _ in range(8)]
    with torch.no_grad():
        alone = [net(x) for x in xs]
        with ThreadPoolExecutor(4) as pool:
            together = list(pool.map(lambda x: net(x), xs))
    for a, b in zip(alone, together, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_a_mixture_pickles_and_deep_copies():
    import copy
    import pickle

    net = _net(3, seed=9).eval()
    x = torch.randn(30, 5)
    with torch.no_grad():
        net(x)  # builds this thread's template
        for other in (pickle.loads(pickle.dumps(net)), copy.deepcopy(net)):
            torch.testing.assert_close(other(x), net(x), rtol=0, atol=0)


@pytest.mark.parametrize("tokenizer", ["patch", "feature"])
def test_experts_of_several_tokens_train_one_after_another(tokenizer):
    """Several tokens run the recurrent scan's autograd function, which vmap cannot batch: those
    experts train one after another, with the same logits and gradients as the oracle loop."""
    torch.manual_seed(3)
    net = MoMENet(6, 3, 1, tokenizer, MambaConfig(d_model=8, n_layers=1, d_state=4),
                  tokenizer_kwargs={"max_tokens": 3} if tokenizer == "patch" else None).train()
    assert not net._batched_training
    x = torch.randn(40, 6)
    results = []
    for forward in (lambda: net(x), lambda: _loop_forward(net, x)):
        torch.manual_seed(7)
        net.zero_grad(set_to_none=True)
        out = forward()
        out.sum().backward()
        results.append((out.detach(), net.experts.stacked.head.weight.grad.clone()))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(results[0][1], results[1][1], rtol=1e-5, atol=1e-6)
    assert results[0][1].abs().sum() > 0


def test_a_mome_of_patch_experts_fits_and_scores():
    from swifthydra.detectors import MoME

    rng = np.random.RandomState(0)
    X = rng.normal(size=(300, 6)).astype(np.float32)
    y = (np.arange(300) < 8).astype(np.int64)
    X[:8] += 3
    est = MoME(n_experts=3, tokenizer="patch", max_tokens=3, d_model=8, max_epochs=15, random_state=0).fit(X, y)
    scores = est.decision_function(X)
    assert np.isfinite(scores).all() and scores[:8].mean() > scores[8:].mean()

"""Selective scans agree with the sequential reference; the Mamba block behaves like one."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from swifthydra.exceptions import InvalidInputError
from swifthydra.nn import mamba
from swifthydra.nn.mamba import Mamba, MambaConfig, MambaScorer, selective_scan


def _inputs(b, length, d_in, n, seed, dtype=torch.float64, delta_scale=1.0, with_d=True):
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(b, length, d_in, generator=g, dtype=dtype)
    delta = torch.rand(b, length, d_in, generator=g, dtype=dtype) * delta_scale + 1e-3
    A = -torch.rand(d_in, n, generator=g, dtype=dtype) * 4 - 0.1
    B = torch.randn(b, length, n, generator=g, dtype=dtype)
    C = torch.randn(b, length, n, generator=g, dtype=dtype)
    D = torch.randn(d_in, generator=g, dtype=dtype) if with_d else None
    return [u, delta, A, B, C, D]


def _run(mode, args):
    args = [None if a is None else a.detach().clone().requires_grad_() for a in args]
    y = selective_scan(*args, mode=mode)
    g = torch.Generator().manual_seed(123)
    w = torch.randn(y.shape, generator=g, dtype=y.dtype)
    (y * w).sum().backward()
    # an input the output does not depend on (A when length == 1) has gradient zero, reported as None
    grads = [
        None if a is None else (torch.zeros_like(a) if a.grad is None else a.grad) for a in args
    ]
    return y.detach(), grads


@settings(max_examples=30, deadline=None)
@given(
    b=st.integers(1, 3),
    length=st.one_of(st.just(1), st.integers(1, 19)),
    d_in=st.integers(1, 5),
    n=st.integers(1, 4),
    seed=st.integers(0, 10_000),
    with_d=st.booleans(),
)
def test_fast_scans_match_sequential_reference(b, length, d_in, n, seed, with_d):
    args = _inputs(b, length, d_in, n, seed, with_d=with_d)
    y_ref, g_ref = _run("sequential", args)
    modes = ["parallel", "recurrent", "auto"] + (["step"] if length == 1 else [])
    for mode in modes:
        y, grads = _run(mode, args)
        torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-8, msg=f"output, mode={mode}")
        names = ["u", "delta", "A", "B", "C", "D"]
        for name, g, gr in zip(names, grads, g_ref, strict=True):
            if gr is None:  # D omitted
                assert g is None
                continue
            torch.testing.assert_close(
                g, gr, rtol=1e-5, atol=1e-8, msg=f"grad of {name}, mode={mode}"
            )


def test_parallel_scan_is_stable_on_long_sequences_with_strong_decay():
    # Δ·A reaches -400 per step: a cumulative-sum-of-log-decays scan would overflow float32 here.
    args = _inputs(2, 300, 4, 3, seed=0, dtype=torch.float32, delta_scale=100.0)
    with torch.no_grad():
        y_par = selective_scan(*args, mode="parallel")
        y_seq = selective_scan(*args, mode="sequential")
    assert torch.isfinite(y_par).all()
    torch.testing.assert_close(y_par, y_seq, rtol=1e-4, atol=1e-4)


def test_step_is_the_closed_form_of_one_token():
    u, delta, A, B, C, D = _inputs(4, 1, 3, 5, seed=1)
    expected = delta * u * (B * C).sum(-1, keepdim=True) + D * u
    torch.testing.assert_close(selective_scan(u, delta, A, B, C, D, mode="step"), expected)


def test_auto_mode_choice():
    one = torch.zeros(2, 1, 3)
    many = torch.zeros(2, 7, 3)
    assert mamba._auto_mode(one, needs_grad=True) == "step"
    assert mamba._auto_mode(many, needs_grad=True) == "recurrent"
    assert mamba._auto_mode(many, needs_grad=False) == "sequential"


def test_use_cuda_kernel_selection(monkeypatch):
    class FakeCudaTensor:
        is_cuda = True

    cpu = torch.zeros(1, 2, 3)
    monkeypatch.setattr(mamba, "_CUDA_SCAN_FN", lambda *a: None)  # kernel "importable"
    assert mamba._use_cuda_kernel(FakeCudaTensor())
    assert not mamba._use_cuda_kernel(cpu)  # never on CPU tensors
    monkeypatch.setattr(mamba, "_CUDA_SCAN_FN", False)  # import failed
    assert not mamba._use_cuda_kernel(FakeCudaTensor())


def test_real_import_failure_is_cached_as_unavailable(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name.startswith("mamba_ssm"):
            raise ImportError("no mamba_ssm here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(mamba, "_CUDA_SCAN_FN", None)
    monkeypatch.setattr(builtins, "__import__", fake_import)
    assert mamba._cuda_selective_scan_fn() is None
    assert mamba._CUDA_SCAN_FN is False


def test_auto_dispatches_to_kernel_with_channels_first_layout(monkeypatch):
    calls = []

    def fake_kernel(u, delta, A, B, C, D=None):
        # mamba_ssm's contract: u, delta (b, d_in, l); B, C (b, n, l); returns (b, d_in, l)
        calls.append((tuple(u.shape), tuple(B.shape)))
        y = mamba._scan_sequential(
            u.transpose(1, 2), delta.transpose(1, 2), A, B.transpose(1, 2), C.transpose(1, 2), D
        )
        return y.transpose(1, 2)

    monkeypatch.setattr(mamba, "_CUDA_SCAN_FN", fake_kernel)
    monkeypatch.setattr(mamba, "_use_cuda_kernel", lambda t: True)
    args = _inputs(2, 6, 3, 4, seed=2)
    y = selective_scan(*args, mode="auto")
    assert calls == [((2, 3, 6), (2, 4, 6))]
    torch.testing.assert_close(y, selective_scan(*args, mode="sequential"))


def test_scan_rejects_bad_arguments():
    args = _inputs(2, 3, 4, 2, seed=0)
    with pytest.raises(InvalidInputError, match="unknown scan mode"):
        selective_scan(*args, mode="magic")
    with pytest.raises(InvalidInputError, match="length-1"):
        selective_scan(*args, mode="step")
    bad = list(args)
    bad[3] = bad[3][:, :, :1]
    with pytest.raises(InvalidInputError, match="B and C"):
        selective_scan(*bad)


def _model(bidirectional, scan_mode="auto", seed=0):
    torch.manual_seed(seed)
    cfg = MambaConfig(
        d_model=8, n_layers=2, d_state=4, bidirectional=bidirectional, scan_mode=scan_mode
    )
    return Mamba(cfg).double()


def test_unidirectional_block_is_causal_and_bidirectional_is_not():
    x = torch.randn(3, 9, 8, dtype=torch.float64)
    x2 = x.clone()
    x2[:, 5] += 1.0
    for bidirectional in (False, True):
        m = _model(bidirectional)
        y, y2 = m(x), m(x2)
        assert y.shape == x.shape
        before = (y[:, :5] - y2[:, :5]).abs().max().item()
        after = (y[:, 5:] - y2[:, 5:]).abs().max().item()
        assert after > 1e-6
        if bidirectional:
            assert before > 1e-6
        else:
            assert before == 0.0


@pytest.mark.parametrize("bidirectional", [False, True])
def test_block_is_the_same_under_every_scan(bidirectional):
    x = torch.randn(2, 11, 8, dtype=torch.float64)
    ref = _model(bidirectional, "sequential")(x)
    for mode in ("parallel", "recurrent"):
        torch.testing.assert_close(_model(bidirectional, mode)(x), ref)


def test_every_parameter_gets_a_gradient():
    m = _model(True)
    m(torch.randn(2, 5, 8, dtype=torch.float64)).pow(2).sum().backward()
    missing = [
        name for name, p in m.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0
    ]
    assert missing == []


@pytest.mark.parametrize("tokenizer", ["row", "feature", "patch"])
def test_scorer_maps_rows_to_one_logit(tokenizer):
    torch.manual_seed(0)
    net = MambaScorer(13, tokenizer, MambaConfig(d_model=8, n_layers=1, d_state=4))
    out = net(torch.randn(6, 13))
    assert out.shape == (6,)
    assert torch.isfinite(out).all()


def test_scorer_rejects_unknown_pooling():
    with pytest.raises(InvalidInputError, match="pooling"):
        MambaScorer(4, "row", pooling="median")


@settings(max_examples=25, deadline=None)
@given(
    length=st.integers(1, 80),
    channels=st.integers(1, 9),
    k=st.integers(1, 5),
    seed=st.integers(0, 2**16),
)
def test_shifted_sum_conv_equals_the_depthwise_convolution(length, channels, k, seed):
    """The short-sequence path of the causal conv gives the convolution's values and gradients."""
    torch.manual_seed(seed)
    conv = torch.nn.Conv1d(channels, channels, k, groups=channels, padding=k - 1)
    u = torch.randn(3, length, channels, requires_grad=True)
    ref = conv(u.transpose(1, 2))[..., :length].transpose(1, 2)
    out = mamba.causal_depthwise_conv(u, conv.weight, conv.bias)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    g_ref = torch.autograd.grad(ref.square().sum(), (u, conv.weight))
    g_out = torch.autograd.grad(out.square().sum(), (u, conv.weight))
    for a, b in zip(g_out, g_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_long_sequences_still_use_the_convolution(monkeypatch):
    block = mamba.SelectiveSSM(MambaConfig(d_model=4, d_state=2))
    calls = []
    monkeypatch.setattr(mamba, "causal_depthwise_conv", lambda *a: calls.append(1) or a[0])
    block(torch.randn(2, mamba._SHIFTED_CONV_MAX_LENGTH + 1, block.conv1d.in_channels))
    assert not calls
    block(torch.randn(2, 5, block.conv1d.in_channels))
    assert calls == [1]

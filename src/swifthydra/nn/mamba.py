"""Mamba (selective state-space) blocks in plain PyTorch, for tabular rows.

A Mamba block (Gu & Dao, 2023) maps a sequence of tokens ``x`` of shape ``(B, L, D)`` to a
sequence of the same shape. One block does::

    x ─ RMSNorm ─ in_proj ─┬─ u ─ causal depthwise conv ─ SiLU ─ selective SSM ─┐
    │                      └─ z ─────────────────────────────── SiLU ──────── (×) ─ out_proj ─ (+) ─▶
    └────────────────────────────────────────────────────────────────────────────────────────┘

The selective SSM is a linear recurrence over the sequence whose parameters depend on the input
("selection"): per token ``t`` a step size ``Δ_t = softplus(W_Δ u_t + b_Δ)`` (one per channel) and
input/output projections ``B_t = W_B u_t``, ``C_t = W_C u_t`` (each of size ``N``, the state size)
discretise the continuous system ``h' = A h + B u`` (``A`` diagonal, negative) as::

    h_t = exp(Δ_t A) ⊙ h_{t-1} + Δ_t B_t u_t        # (B, D_in, N)
    y_t = C_t · h_t + D ⊙ u_t                        # (B, D_in)

:func:`selective_scan` evaluates this recurrence in one of four ways that agree to rounding:

- ``"sequential"``: the reference loop over ``t`` above — slow for long sequences, obviously right,
  and lean in memory (it never holds the ``(B, L, D_in, N)`` state history while scoring);
- ``"parallel"``: a Hillis–Steele doubling scan of the associative operator
  ``(a₁, b₁) ∘ (a₂, b₂) = (a₁ a₂, a₂ b₁ + b₂)`` in ``⌈log₂ L⌉`` vectorised steps. It only
  multiplies decays ``exp(Δ A) ∈ (0, 1]`` and adds, so it cannot overflow (unlike a log-space
  cumulative-sum scan, which divides by cumulative decays);
- ``"step"``: the closed form for ``L = 1`` with zero initial state, ``y = Δ u (B · C) + D u``, which
  never materialises the ``(B, D_in, N)`` state. A row tokenised as one token always takes it;
- ``"recurrent"``: the same loop as ``"sequential"`` with in-place state updates and a hand-written
  backward pass (the adjoint recurrence ``g_t = C_t dy_t + exp(Δ_{t+1} A) g_{t+1}`` run backwards,
  then every parameter gradient in a few vectorised products), so autograd records a single node
  instead of a dozen per token. Its state history is laid out ``(B, L, N, D_in)``, so each
  contraction over the small state axis is a sum of ``N`` contiguous slices, not a batched matrix
  product with an inner size of ``N``.

Which one is fastest depends on the hardware (the CPU measurements: docs/design.md §3.3): on CPU
the doubling scan does ``O(L log L)`` work on tensors too big for the cache and loses to the loops;
``"recurrent"`` trains faster than autograd through ``"sequential"``; for scoring,
``"sequential"`` is fastest (its state stays in cache) and needs no ``(B, L, N, D_in)`` buffer
(``benchmarks/epoch_time.py``; in the ``(B, D_in, N)`` layout with a batched product it measured
4-13 % faster still, but the scores of that layout differ in round-off and move pinned scores). On a GPU (not measured here)
the doubling scan's ``log L`` wide launches are expected to beat ``L`` narrow ones, and the fused
``selective_scan_fn`` kernel of ``mamba-ssm`` to beat both; it is used when it imports (see
:func:`_use_cuda_kernel`). ``mode="auto"`` encodes these choices (:func:`_auto_mode`).

Tabular features have no natural order, so a block can be *bidirectional*: a second SSM (own
convolution, Δ, B, C, A, D) reads the reversed sequence, and the two outputs are summed before the
gate. The layout follows mamba-minimal / mamba.py: one residual block = ``x + Mixer(RMSNorm(x))``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from swifthydra.exceptions import InvalidInputError
from swifthydra.nn.tokenize import Standardize, make_tokenizer

SCAN_MODES = ("auto", "sequential", "recurrent", "parallel", "step")
POOLINGS = ("mean", "last", "max")

_CUDA_SCAN_FN: Any = None  # mamba_ssm's selective_scan_fn once imported; False if unavailable


def _cuda_selective_scan_fn() -> Any:
    """Return ``mamba_ssm``'s ``selective_scan_fn``, or ``None`` when it cannot be imported."""
    global _CUDA_SCAN_FN
    if _CUDA_SCAN_FN is None:
        try:
            from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
        except Exception:  # not installed, or installed without a matching CUDA build
            _CUDA_SCAN_FN = False
        else:
            _CUDA_SCAN_FN = selective_scan_fn
    return _CUDA_SCAN_FN or None


def _use_cuda_kernel(tensor: torch.Tensor) -> bool:
    """Whether the fused ``mamba-ssm`` kernel should run for ``tensor``.

    True only when the tensor lives on a CUDA device and ``mamba_ssm`` imports; the plain
    PyTorch scans are used otherwise (CPU, MPS, or no ``mamba-ssm``).
    """
    if not getattr(tensor, "is_cuda", False):
        return False
    return _cuda_selective_scan_fn() is not None


def _scan_step(u, delta, A, B, C, D):
    """Closed form for a length-1 sequence with zero initial state (``A`` drops out)."""
    bc = (B * C).sum(-1, keepdim=True)  # (b, 1, 1)
    if D is None:
        return delta * bc * u  # (b, 1, d_in)
    return torch.addcmul(D, delta, bc) * u  # (Δ B·C + D) u   (b, 1, d_in)


def _scan_sequential(u, delta, A, B, C, D):
    """Reference: the recurrence one token at a time (state laid out ``(b, n, d_in)``)."""
    b, length, d_in = u.shape
    At = A.t()  # (n, d_in)
    h = u.new_zeros(b, At.shape[0], d_in)  # (b, n, d_in)
    ys = []
    for t in range(length):
        dt = delta[:, t].unsqueeze(1)  # (b, 1, d_in)
        decay = torch.exp(dt * At)  # (b, n, d_in)
        h = decay * h + (dt * u[:, t].unsqueeze(1)) * B[:, t].unsqueeze(-1)  # (b, n, d_in)
        ys.append((h * C[:, t].unsqueeze(-1)).sum(1))  # C_t · h_t   (b, d_in)
    y = torch.stack(ys, dim=1)  # (b, l, d_in)
    if D is not None:
        y = y + u * D
    return y


class _RecurrentScan(torch.autograd.Function):
    """The recurrence with in-place state updates and the adjoint recurrence as backward.

    The state history is held as ``(b, l, n, d_in)``: the state axis ``n`` (4 by default) is not
    the innermost one, so every contraction over it is a sum of ``n`` contiguous slices instead of
    a batched matrix product with an inner size of 4 (a quarter of a training step in ``torch.profiler``).
    """

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D):
        At = A.t()  # (n, d_in)
        a = delta.unsqueeze(2) * At  # (b, l, n, d_in)    Δ_t A
        a.exp_()  # decays exp(Δ_t A)
        delta_u = delta * u  # (b, l, d_in)
        H = delta_u.unsqueeze(2) * B.unsqueeze(-1)  # (b, l, n, d_in)    inputs Δ_t B_t u_t, become states
        for t in range(1, u.shape[1]):
            H[:, t].addcmul_(a[:, t], H[:, t - 1])  # h_t = a_t ⊙ h_{t-1} + Δ_t B_t u_t
        y = (H * C.unsqueeze(-1)).sum(2)  # (b, l, d_in)    C_t · h_t
        if D is not None:
            y.addcmul_(u, D)
        ctx.save_for_backward(u, delta, A, B, C, D, a, H, delta_u)
        return y

    @staticmethod
    def backward(ctx, dy):  # dy: (b, l, d_in)
        u, delta, A, B, C, D, a, H, delta_u = ctx.saved_tensors
        # g_t = dL/dh_t = C_t ⊗ dy_t + a_{t+1} ⊙ g_{t+1}
        G = dy.unsqueeze(2) * C.unsqueeze(-1)  # (b, l, n, d_in)
        for t in range(u.shape[1] - 2, -1, -1):
            G[:, t].addcmul_(a[:, t + 1], G[:, t + 1])
        dC = (H * dy.unsqueeze(2)).sum(-1)  # Σ_d dy_t h_t   (b, l, n)
        dlog_a = G[:, 1:] * H[:, :-1]  # dL/d(Δ_t A) for t >= 1   (b, l-1, n, d_in)
        dlog_a *= a[:, 1:]
        GB = (G * B.unsqueeze(-1)).sum(2)  # Σ_n g_t B_t   (b, l, d_in)
        ddelta = GB * u
        ddelta[:, 1:] += (dlog_a * A.t()).sum(2)
        dA = (dlog_a * delta[:, 1:].unsqueeze(2)).sum((0, 1)).t()  # (d_in, n)
        dB = (G * delta_u.unsqueeze(2)).sum(-1)  # Σ_d g_t Δ_t u_t   (b, l, n)
        du = GB * delta
        dD = None
        if D is not None:
            du = du + dy * D
            dD = (dy * u).sum((0, 1))
        return du, ddelta, dA, dB, dC, dD


def _scan_recurrent(u, delta, A, B, C, D):
    return _RecurrentScan.apply(u, delta, A, B, C, D)


def _scan_parallel(u, delta, A, B, C, D):
    """Hillis–Steele doubling scan over the sequence axis (any length, no padding)."""
    length = u.shape[1]
    dt = delta.unsqueeze(-1)  # (b, l, d_in, 1)
    a = torch.exp(dt * A)  # (b, l, d_in, n)    decays in (0, 1]
    h = dt * B.unsqueeze(2) * u.unsqueeze(-1)  # (b, l, d_in, n)    inputs Δ B u
    offset = 1
    while offset < length:
        # element t absorbs the segment ending at t - offset: h_t += a_t ⊙ h_{t-offset}
        h = torch.cat([h[:, :offset], a[:, offset:] * h[:, :-offset] + h[:, offset:]], dim=1)
        if 2 * offset < length:  # decays are not needed after the last step
            a = torch.cat([a[:, :offset], a[:, offset:] * a[:, :-offset]], dim=1)
        offset *= 2
    y = torch.matmul(h, C.unsqueeze(-1)).squeeze(
        -1
    )  # (b, l, d_in, n) @ (b, l, n, 1) -> (b, l, d_in)
    if D is not None:
        y = y + u * D
    return y


def _scan_cuda(u, delta, A, B, C, D):
    """``mamba_ssm``'s fused kernel, which takes channels-first ``(b, d_in, l)`` tensors."""
    fn = _cuda_selective_scan_fn()
    y = fn(
        u.transpose(1, 2).contiguous(),  # (b, d_in, l)
        delta.transpose(1, 2).contiguous(),  # (b, d_in, l)
        A.contiguous(),  # (d_in, n)
        B.transpose(1, 2).contiguous(),  # (b, n, l)
        C.transpose(1, 2).contiguous(),  # (b, n, l)
        None if D is None else D.float(),
    )  # (b, d_in, l)
    return y.transpose(1, 2)  # (b, l, d_in)


def _auto_mode(u: torch.Tensor, needs_grad: bool) -> str:
    """The implementation ``mode="auto"`` runs for input ``u`` (see the module docstring)."""
    if u.shape[1] == 1:
        return "step"
    if _use_cuda_kernel(u):
        return "cuda"
    if u.device.type != "cpu":
        return "parallel"
    return "recurrent" if needs_grad else "sequential"


_SCANS = {
    "step": _scan_step,
    "sequential": _scan_sequential,
    "recurrent": _scan_recurrent,
    "parallel": _scan_parallel,
    "cuda": _scan_cuda,
}


def selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    mode: str = "auto",
) -> torch.Tensor:
    """Run the selective state-space recurrence over a batch of sequences.

    ``h_t = exp(Δ_t A) ⊙ h_{t-1} + Δ_t B_t u_t``, ``y_t = C_t · h_t + D ⊙ u_t``, ``h_0 = 0``.

    Parameters
    ----------
    u : Tensor of shape (batch, length, d_in)
        Input sequence.
    delta : Tensor of shape (batch, length, d_in)
        Positive step sizes (softplus already applied).
    A : Tensor of shape (d_in, d_state)
        Continuous-time state matrix (diagonal per channel, negative entries).
    B, C : Tensor of shape (batch, length, d_state)
        Input-dependent input and output projections.
    D : Tensor of shape (d_in,), optional
        Skip connection.
    mode : {"auto", "sequential", "recurrent", "parallel", "step"}
        ``"auto"`` takes ``"step"`` for length 1; else the fused ``mamba-ssm`` kernel when
        :func:`_use_cuda_kernel` allows it; else ``"parallel"`` on a non-CPU device; on CPU
        ``"recurrent"`` when a gradient is needed and ``"sequential"`` otherwise.
        ``"step"`` requires length 1.

    Returns
    -------
    Tensor of shape (batch, length, d_in)
    """
    if mode not in SCAN_MODES:
        raise InvalidInputError(f"unknown scan mode {mode!r}; choose one of {list(SCAN_MODES)}.")
    if u.ndim != 3 or delta.shape != u.shape:
        raise InvalidInputError(
            f"u and delta must both be (batch, length, d_in); got {tuple(u.shape)} and {tuple(delta.shape)}."
        )
    b, length, d_in = u.shape
    if A.ndim != 2 or A.shape[0] != d_in:
        raise InvalidInputError(f"A must be (d_in={d_in}, d_state), got {tuple(A.shape)}.")
    n = A.shape[1]
    if B.shape != (b, length, n) or C.shape != (b, length, n):
        raise InvalidInputError(
            f"B and C must be (batch, length, d_state) = {(b, length, n)}; got {tuple(B.shape)} and {tuple(C.shape)}."
        )
    if mode == "step" and length != 1:
        raise InvalidInputError(f"scan mode 'step' needs a length-1 sequence, got length {length}.")
    if mode == "auto":
        tensors = (u, delta, A, B, C) if D is None else (u, delta, A, B, C, D)
        needs_grad = torch.is_grad_enabled() and any(x.requires_grad for x in tensors)
        mode = _auto_mode(u, needs_grad)
    return _SCANS[mode](u, delta, A, B, C, D)


@dataclass
class MambaConfig:
    """Shape of a Mamba stack."""

    d_model: int = 32
    """Width of the residual stream (token size)."""
    n_layers: int = 2
    """Number of residual Mamba blocks."""
    d_state: int = 8
    """State size ``N`` of each channel's SSM."""
    expand: int = 2
    """Inner width ``D_in = expand * d_model``."""
    d_conv: int = 4
    """Kernel size of the causal depthwise convolution."""
    dt_rank: int | None = None
    """Rank of the Δ projection; ``None`` means ``ceil(d_model / 16)``."""
    bidirectional: bool = False
    """Add a second SSM that reads the sequence reversed."""
    scan_mode: str = "auto"
    """Passed to :func:`selective_scan`."""
    dt_min: float = 1e-3
    """Smallest initial step size."""
    dt_max: float = 1e-1
    """Largest initial step size."""

    @property
    def d_inner(self) -> int:
        return self.expand * self.d_model

    @property
    def rank(self) -> int:
        return self.dt_rank if self.dt_rank is not None else math.ceil(self.d_model / 16)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class RMSNorm(nn.Module):
    """Root-mean-square layer norm with a learned scale."""

    def __init__(self, d_model: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (..., D) -> (..., D)
        return F.rms_norm(x, self.weight.shape, self.weight, self.eps)


# Up to this length the causal conv runs as a sum of shifted products, faster on CPU than
# PyTorch's depthwise-convolution backward for short rows (the measurement: docs/design.md §3.4).
_SHIFTED_CONV_MAX_LENGTH = 64


def causal_depthwise_conv(u: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``Conv1d(groups=channels, padding=K-1)`` truncated to the input length, on ``(B, L, D)``.

    ``weight`` is the conv's ``(D, 1, K)`` kernel: ``out[t] = bias + Σ_k w[k] · u[t + k - K + 1]``
    with zeros before the sequence start. Same result as the convolution, faster for short ``L``.
    """
    k, length = weight.shape[-1], u.shape[1]
    padded = F.pad(u, (0, 0, k - 1, 0))  # (B, K-1+L, D)
    out = bias + padded[:, :length] * weight[:, 0, 0]
    for i in range(1, k):
        out = out + padded[:, i:i + length] * weight[:, 0, i]
    return out


class SelectiveSSM(nn.Module):
    """Causal conv + SiLU + input-dependent (Δ, B, C) + selective scan, on ``(B, L, D_in)``."""

    def __init__(self, cfg: MambaConfig) -> None:
        super().__init__()
        d_in, n, r = cfg.d_inner, cfg.d_state, cfg.rank
        self.d_state, self.rank, self.scan_mode = n, r, cfg.scan_mode
        self.conv1d = nn.Conv1d(d_in, d_in, cfg.d_conv, groups=d_in, padding=cfg.d_conv - 1)
        self.x_proj = nn.Linear(d_in, r + 2 * n, bias=False)  # u -> (Δ low-rank, B, C)
        self.dt_proj = nn.Linear(r, d_in, bias=True)
        # Δ initialised log-uniformly in [dt_min, dt_max] through the inverse softplus of the bias.
        dt = torch.exp(
            torch.rand(d_in) * (math.log(cfg.dt_max) - math.log(cfg.dt_min)) + math.log(cfg.dt_min)
        )
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        # S4D-real initialisation: A = -(1, 2, ..., N) for every channel.
        self.A_log = nn.Parameter(
            torch.log(torch.arange(1, n + 1, dtype=torch.float32)).repeat(d_in, 1)
        )
        self.D = nn.Parameter(torch.ones(d_in))

    def forward(self, u: torch.Tensor) -> torch.Tensor:  # (B, L, D_in) -> (B, L, D_in)
        length = u.shape[1]
        if length == 1:  # only the last kernel tap sees a length-1 sequence
            u = torch.addcmul(self.conv1d.bias, u, self.conv1d.weight[:, 0, -1])  # (B, 1, D_in)
        elif length <= _SHIFTED_CONV_MAX_LENGTH:
            u = causal_depthwise_conv(u, self.conv1d.weight, self.conv1d.bias)  # (B, L, D_in)
        else:
            u = self.conv1d(u.transpose(1, 2))[..., :length].transpose(1, 2)  # (B, L, D_in)
        u = F.silu(u)
        dbc = self.x_proj(u)  # (B, L, R + 2N)
        dt, B, C = dbc.split([self.rank, self.d_state, self.d_state], dim=-1)
        delta = F.softplus(self.dt_proj(dt))  # (B, L, D_in)
        A = -torch.exp(self.A_log)  # (D_in, N)
        return selective_scan(u, delta, A, B, C, self.D, mode=self.scan_mode)


class MambaMixer(nn.Module):
    """The Mamba mixer: in_proj -> (SSM branch ⊙ SiLU gate) -> out_proj, on ``(B, L, D)``."""

    def __init__(self, cfg: MambaConfig) -> None:
        super().__init__()
        self.in_proj = nn.Linear(cfg.d_model, 2 * cfg.d_inner, bias=False)
        self.ssm = SelectiveSSM(cfg)
        self.ssm_reverse = SelectiveSSM(cfg) if cfg.bidirectional else None
        self.out_proj = nn.Linear(cfg.d_inner, cfg.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, L, D) -> (B, L, D)
        u, z = self.in_proj(x).chunk(2, dim=-1)  # (B, L, D_in) each
        y = self.ssm(u)  # (B, L, D_in)
        if self.ssm_reverse is not None:
            if u.shape[1] == 1:
                y = y + self.ssm_reverse(u)
            else:
                y = y + self.ssm_reverse(u.flip(1)).flip(1)
        return self.out_proj(y * F.silu(z))  # (B, L, D)


class ResidualBlock(nn.Module):
    """``x + MambaMixer(RMSNorm(x))``."""

    def __init__(self, cfg: MambaConfig) -> None:
        super().__init__()
        self.norm = RMSNorm(cfg.d_model)
        self.mixer = MambaMixer(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, L, D) -> (B, L, D)
        return x + self.mixer(self.norm(x))


class Mamba(nn.Module):
    """A stack of residual Mamba blocks followed by a final RMSNorm."""

    def __init__(self, cfg: MambaConfig) -> None:
        super().__init__()
        self.config = cfg
        self.layers = nn.ModuleList(ResidualBlock(cfg) for _ in range(cfg.n_layers))
        self.norm_f = RMSNorm(cfg.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, L, D) -> (B, L, D)
        for layer in self.layers:
            x = layer(x)
        return self.norm_f(x)


class MambaScorer(nn.Module):
    """Rows to anomaly logits: standardise -> tokenise -> Mamba stack -> pool -> linear head.

    Parameters
    ----------
    n_features : int
        Columns of the input rows.
    tokenizer : {"row", "feature", "patch"}
        How a row becomes a sequence (see :mod:`swifthydra.nn.tokenize`).
    cfg : MambaConfig
        Shape of the Mamba stack.
    pooling : {"mean", "last", "max"}
        How the token outputs become one vector.
    dropout : float
        Dropout before the head.
    standardize : bool
        Include a :class:`~swifthydra.nn.tokenize.Standardize` layer (its statistics are buffers,
        so they travel with the ``state_dict``).
    tokenizer_kwargs : dict, optional
        Extra arguments of the tokeniser (e.g. ``max_tokens`` for ``"patch"``).
    """

    def __init__(
        self,
        n_features: int,
        tokenizer: str = "patch",
        cfg: MambaConfig | None = None,
        *,
        pooling: str = "mean",
        dropout: float = 0.0,
        standardize: bool = True,
        tokenizer_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()

        cfg = cfg or MambaConfig()
        if pooling not in POOLINGS:
            raise InvalidInputError(f"unknown pooling {pooling!r}; choose one of {list(POOLINGS)}.")
        self.pooling = pooling
        self.scaler = Standardize(n_features) if standardize else None
        self.tokenizer = make_tokenizer(
            tokenizer, n_features, cfg.d_model, **(tokenizer_kwargs or {})
        )
        self.backbone = Mamba(cfg)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.head = nn.Linear(cfg.d_model, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, F) -> (B,)
        if self.scaler is not None:
            x = self.scaler(x)
        h = self.backbone(self.tokenizer(x))  # (B, L, D)
        if h.shape[1] == 1:
            h = h[:, 0]
        elif self.pooling == "mean":
            h = h.mean(1)
        elif self.pooling == "last":
            h = h[:, -1]
        else:
            h = h.amax(1)
        return self.head(self.dropout(h)).squeeze(-1)  # (B,)

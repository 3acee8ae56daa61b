"""Mixture of Mamba Experts (MoME): a softmax gate routing each row to a few small experts.

The gate is one linear map, ``g(x) = softmax(W_g x)`` over ``K`` experts, each a light
:class:`~swifthydra.nn.mamba.MambaScorer` (by default a one-token ``row`` tokeniser, so its
selective scan is a closed-form single step). For a row routed to the expert set ``S``::

    score(x) = Σ_{e ∈ S} w_e(x) f_e(x),    w_e = g_e / Σ_{e' ∈ S} g_{e'}   (w = 1 for top-1)

- **Training** draws ``S`` from the gate distribution, not its argmax: adding Gumbel noise to the
  gate logits and keeping the top ``k`` samples ``k`` experts without replacement with
  probabilities ``g`` (the Gumbel-top-k trick). Every expert keeps receiving rows, so the experts
  do not collapse onto one early winner. The weights ``w`` are *straight-through*: their value is the
  renormalised gate mass (1 for top-1), which keeps each expert's logit on a common scale, while
  the gradient reaches the gate as in Switch Transformer (``∂w_e/∂g = ∂g_e/∂g / Σ_S g``).
  A Switch-style load-balancing loss ``K Σ_e f_e P_e`` (``f_e``: share of rows dispatched to
  ``e``; ``P_e``: mean gate probability of ``e``) is 1 at a uniform split and grows as routing
  concentrates.
- **Scoring** keeps the ``k`` most probable experts per row and runs each expert only on the rows
  routed to it (rows grouped by expert: sparse dispatch). Every row passes through exactly ``k``
  experts, so the cost of scoring does not grow with ``K``.
- **Storage:** the experts' weights are stacked, one tensor per parameter with a leading expert
  axis (:class:`StackedExperts`), so an optimizer step, a gradient clip and an upcycling copy each
  touch a dozen tensors whatever ``K``, and a training step runs every expert on its rows as one
  batched computation (``torch.func.vmap`` over the stacked weights, rows padded per expert)
  instead of a Python loop of ``K`` small networks.

:func:`choose_num_experts` picks ``K`` from the data: the BIC-best Gaussian-mixture size,
clipped to ``[2, 16]``.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from swifthydra.exceptions import InvalidInputError
from swifthydra.nn.mamba import MambaConfig, MambaScorer
from swifthydra.nn.tokenize import Standardize


def choose_num_experts(
    X: Any,
    *,
    min_experts: int = 2,
    max_experts: int = 16,
    max_rows: int = 2000,
    max_dims: int = 8,
    random_state: int | np.random.RandomState | None = None,
) -> int:
    """Number of experts for data ``X``: the BIC-best Gaussian-mixture size, clipped.

    Rows are subsampled to ``max_rows``, standardised and projected on their first ``max_dims``
    principal components (full-covariance mixtures on hundreds of raw columns would be slow and
    singular); Gaussian mixtures with ``1 .. max_experts`` components are fitted and the size with
    the lowest BIC wins, clipped to ``[min_experts, max_experts]``.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Training rows (real and, in Swift Hydra, generated).
    min_experts, max_experts : int
        Clipping range of the answer (defaults 2 and 16).
    max_rows : int
        Rows used for the mixtures (a random subsample beyond that).
    max_dims : int
        Principal components kept.
    random_state : int, RandomState or None
        Seed of the subsample and of the mixtures; a fixed seed gives a fixed answer.

    Returns
    -------
    int
    """
    from sklearn.decomposition import PCA
    from sklearn.mixture import GaussianMixture
    from sklearn.utils import check_random_state
    from threadpoolctl import threadpool_limits

    from swifthydra._validation import check_X

    if not (1 <= min_experts <= max_experts):
        raise InvalidInputError(
            f"need 1 <= min_experts <= max_experts, got min_experts={min_experts}, max_experts={max_experts}."
        )
    if max_rows < 2 or max_dims < 1:
        raise InvalidInputError(
            f"max_rows must be >= 2 and max_dims >= 1, got {max_rows} and {max_dims}."
        )
    X = check_X(X, name="X", dtype=np.float64)
    rng = check_random_state(random_state)
    if X.shape[0] > max_rows:
        X = X[rng.choice(X.shape[0], max_rows, replace=False)]
    std = X.std(0)
    X = (X - X.mean(0)) / np.where(std > 1e-12, std, 1.0)
    n_dims = min(max_dims, X.shape[1], X.shape[0] - 1)
    if n_dims < X.shape[1]:
        X = PCA(n_components=n_dims, random_state=rng.randint(2**31 - 1)).fit_transform(X)
    seed = rng.randint(2**31 - 1)
    best_k, best_bic = min_experts, np.inf
    # One BLAS thread: multi-threaded BLAS on these small matrices is far slower on a busy machine
    # (docs/design.md §9.3).
    with threadpool_limits(limits=1):
        for k in range(1, min(max_experts, X.shape[0]) + 1):
            gmm = GaussianMixture(
                k, covariance_type="full", reg_covar=1e-4, random_state=seed, max_iter=200
            )
            bic = gmm.fit(X).bic(X)
            if bic < best_bic:
                best_k, best_bic = k, bic
    return int(np.clip(best_k, min_experts, max_experts))


def load_balancing_loss(gate_probs: torch.Tensor, expert_index: torch.Tensor) -> torch.Tensor:
    """Switch Transformer's auxiliary loss ``K Σ_e f_e P_e``.

    Parameters
    ----------
    gate_probs : Tensor of shape (B, K)
        Softmax gate probabilities.
    expert_index : Tensor of shape (B, k)
        Experts each row was dispatched to.

    Returns
    -------
    Scalar tensor, 1 for a uniform split, up to ``K`` when all rows go to one expert.
    """
    n_experts = gate_probs.shape[1]
    counts = torch.bincount(expert_index.reshape(-1), minlength=n_experts).to(gate_probs.dtype)
    fraction = counts / counts.sum()  # f_e, no gradient
    mean_prob = gate_probs.mean(0)  # P_e
    return n_experts * (fraction * mean_prob).sum()


class StackedExperts(nn.Module):
    """``K`` networks of one architecture stored as one tensor per parameter (and buffer), with a
    leading expert axis: ``stacked.<name>`` has shape ``(K, *shape)``.

    Parameters
    ----------
    experts : sequence of nn.Module
        The ``K`` initial experts, all of one architecture; their values are copied.

    Notes
    -----
    - ``call(e, x)`` runs expert ``e``; ``batched(x)`` runs expert ``e`` on ``x[e]`` for every
      ``e`` at once (``torch.func.vmap``). Both are differentiable in the stacked weights and
      read them through a template module, one per thread (``functional_call`` swaps a module's
      tensors while it runs, so threads scoring side by side each get their own).
    - ``experts[e]`` (and iterating) gives a standalone copy of expert ``e`` as an ordinary
      module, for reading: explanations, the ONNX export, tests. Changing it does not change the
      mixture.
    - A state_dict saved before the weights were stacked (``<prefix><e>.<name>`` per expert) is
      accepted by :meth:`upgrade_state_dict`.
    """

    def __init__(self, experts: Sequence[nn.Module]) -> None:
        super().__init__()
        if not experts:
            raise InvalidInputError("StackedExperts needs at least one expert.")
        template = copy.deepcopy(experts[0]).requires_grad_(False)
        self.n_experts = len(experts)
        self.param_names = [n for n, _ in template.named_parameters()]
        self.buffer_names = [n for n, _ in template.named_buffers()]
        stacked = copy.deepcopy(template)
        for name in self.param_names:
            owner, _, leaf = name.rpartition(".")
            values = torch.stack([e.get_parameter(name).detach() for e in experts])
            setattr(stacked.get_submodule(owner), leaf, nn.Parameter(values))
        for name in self.buffer_names:
            owner, _, leaf = name.rpartition(".")
            stacked.get_submodule(owner).register_buffer(leaf, torch.stack([e.get_buffer(name) for e in experts]))
        self.stacked = stacked  # storage only: its modules are never called
        self._template = (template,)  # a tuple: not registered, so not in state_dict or parameters()
        self._per_thread: dict[int, nn.Module] = {}

    def __getstate__(self) -> dict[str, Any]:  # pickle and deepcopy: the thread templates stay behind
        return {**self.__dict__, "_per_thread": {}}

    def __len__(self) -> int:
        return self.n_experts

    def __getitem__(self, e: int) -> nn.Module:
        if not -self.n_experts <= e < self.n_experts:
            raise IndexError(f"expert {e} out of range for {self.n_experts} experts.")
        weights = self.weights()
        expert = copy.deepcopy(self._template[0]).to(next(iter(weights.values())).device)
        expert.load_state_dict({n: t[e].detach() for n, t in weights.items()})
        return expert.requires_grad_(True)

    def __iter__(self) -> Iterator[nn.Module]:
        return (self[e] for e in range(self.n_experts))

    def weights(self) -> dict[str, torch.Tensor]:
        """The stacked parameters and buffers, by their name in one expert."""
        out = {n: self.stacked.get_parameter(n) for n in self.param_names}
        out.update({n: self.stacked.get_buffer(n) for n in self.buffer_names})
        return out

    def _module(self) -> nn.Module:
        key = threading.get_ident()
        module = self._per_thread.get(key)
        if module is None:
            module = self._per_thread[key] = copy.deepcopy(self._template[0])
        return module

    def call(self, e: int, x: torch.Tensor) -> torch.Tensor:
        """Expert ``e`` on rows ``x``."""
        from torch.func import functional_call

        return functional_call(self._module(), {n: t[e] for n, t in self.weights().items()}, (x,))

    def batched(self, x: torch.Tensor) -> torch.Tensor:
        """Expert ``e`` on ``x[e]`` for every ``e``: ``(K, M, ...) -> (K, M, ...)``."""
        from torch.func import functional_call, vmap

        module = self._module()
        return vmap(lambda w, xe: functional_call(module, w, (xe,)), randomness="different")(self.weights(), x)

    @torch.no_grad()
    def copy_expert_(self, source: int = 0) -> StackedExperts:
        """Every expert becomes a copy of expert ``source``."""
        for t in self.weights().values():
            t.copy_(t[source].expand_as(t))
        return self

    @staticmethod
    def upgrade_state_dict(state: dict[str, Any], prefix: str, n_experts: int) -> dict[str, Any]:
        """``state`` with per-expert entries ``<prefix><e>.<name>`` (the layout before the
        weights were stacked) replaced by stacked ``<prefix>stacked.<name>``; other entries
        unchanged. Entries not present for every expert are left as they are (the caller's
        check then names them)."""
        per_name: dict[str, dict[int, Any]] = {}
        for key in state:
            if key.startswith(prefix):
                head, dot, name = key[len(prefix):].partition(".")
                if dot and head.isdigit():
                    per_name.setdefault(name, {})[int(head)] = key
        if not per_name:
            return state
        out = dict(state)
        for name, keys in per_name.items():
            if sorted(keys) != list(range(n_experts)) or not all(isinstance(state[k], torch.Tensor) for k in keys.values()):
                continue
            try:
                out[f"{prefix}stacked.{name}"] = torch.stack([state[keys[e]] for e in range(n_experts)])
            except RuntimeError:  # shapes differ between experts: left for the caller's check
                continue
            for k in keys.values():
                del out[k]
        return out


class MoMENet(nn.Module):
    """Gate + ``K`` Mamba experts with sparse dispatch.

    Parameters
    ----------
    n_features : int
        Columns of the input rows.
    n_experts : int
        ``K``.
    top_k : int
        Experts per row.
    tokenizer : str
        Tokeniser of every expert.
    cfg : MambaConfig
        Shape of every expert's Mamba stack.
    pooling, dropout, tokenizer_kwargs
        Passed to each :class:`~swifthydra.nn.mamba.MambaScorer`.
    """

    def __init__(
        self,
        n_features: int,
        n_experts: int,
        top_k: int = 1,
        tokenizer: str = "row",
        cfg: MambaConfig | None = None,
        *,
        pooling: str = "mean",
        dropout: float = 0.0,
        tokenizer_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if n_experts < 1 or not (1 <= top_k <= n_experts):
            raise InvalidInputError(
                f"need n_experts >= 1 and 1 <= top_k <= n_experts, got n_experts={n_experts}, top_k={top_k}."
            )
        self.n_experts, self.top_k = n_experts, top_k
        self.dense = False  # True: every row goes to expert 0 alone (dense warm-up before upcycle_)
        self.scaler = Standardize(n_features)
        self.gate = nn.Linear(n_features, n_experts)
        experts = [  # built one by one as before the weights were stacked: the same initial values
            MambaScorer(
                n_features,
                tokenizer,
                cfg,
                pooling=pooling,
                dropout=dropout,
                standardize=False,
                tokenizer_kwargs=tokenizer_kwargs,
            )
            for _ in range(n_experts)
        ]
        self.experts = StackedExperts(experts)
        # the batched training step needs plain tensor ops: one token (the row tokeniser), so the
        # scan is a closed-form step; longer sequences run the recurrent scan's autograd function
        cfg = cfg or MambaConfig()
        self._batched_training = experts[0].tokenizer.seq_len == 1 and cfg.scan_mode in ("auto", "step", "sequential")

    def route(self, x: torch.Tensor, *, sample: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Gate probabilities ``(B, K)`` and chosen experts ``(B, k)`` for standardised rows.

        ``sample=True`` draws the experts from the gate distribution (Gumbel-top-k); otherwise the
        ``k`` most probable experts are taken.
        """
        logits = self.gate(x)  # (B, K)
        probs = torch.softmax(logits, dim=-1)  # (B, K)
        if sample:
            u = torch.rand_like(logits).clamp_(1e-9, 1.0 - 1e-9)
            scores = logits.detach() - torch.log(-torch.log(u))  # Gumbel-perturbed logits
        else:
            scores = logits
        if self.top_k == 1:
            index = scores.argmax(-1, keepdim=True)  # (B, 1)
        else:
            index = scores.topk(self.top_k, dim=-1).indices  # (B, k)
        return probs, index

    def forward(
        self, x: torch.Tensor, *, sample: bool | None = None, return_aux: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Anomaly logits ``(B,)`` for raw rows ``(B, F)``.

        ``sample`` defaults to ``self.training``. With ``return_aux`` also returns a dict with the
        gate probabilities, the chosen experts and the load-balancing loss.
        """
        if sample is None:
            sample = self.training
        x = self.scaler(x)  # (B, F)
        if self.dense:
            out = self.experts.call(0, x)  # (B,)
            if not return_aux:
                return out
            index = torch.zeros(x.shape[0], 1, dtype=torch.long, device=x.device)
            probs = torch.softmax(self.gate(x), dim=-1)
            return out, {
                "gate_probs": probs,
                "expert_index": index,
                "balance_loss": out.new_zeros(()),
            }
        probs, index = self.route(x, sample=sample)  # (B, K), (B, k)
        chosen = probs.gather(1, index)  # (B, k)
        weights = chosen / chosen.sum(-1, keepdim=True).detach()  # (B, k), straight-through
        out = self._dispatch(x, index, weights)  # (B,)
        if not return_aux:
            return out
        aux = {
            "gate_probs": probs,
            "expert_index": index,
            "balance_loss": load_balancing_loss(probs, index),
        }
        return out, aux

    @torch.no_grad()
    def upcycle_(self) -> MoMENet:
        """Copy expert 0 into every other expert (sparse upcycling of a dense warm-up)."""
        self.experts.copy_expert_(0)
        return self

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # a state_dict saved before the experts' weights were stacked
        upgraded = StackedExperts.upgrade_state_dict(state_dict, prefix + "experts.", self.n_experts)
        if upgraded is not state_dict:
            state_dict.clear()
            state_dict.update(upgraded)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _dispatch(
        self, x: torch.Tensor, index: torch.Tensor, weights: torch.Tensor
    ) -> torch.Tensor:
        """Run each expert on its own rows only and sum the weighted logits per row: while
        training, every expert at once on its rows padded to the largest group (one batched
        computation); otherwise (scoring, where a batch is large and routing may be uneven) one
        expert after another."""
        n, k = index.shape
        flat_expert = index.reshape(-1)  # (B k,)
        flat_weight = weights.reshape(-1)  # (B k,)
        order = torch.sort(
            flat_expert
        ).indices  # assignments grouped by expert (a stable sort is slower: docs/design.md §9.6)
        counts = torch.bincount(flat_expert, minlength=self.n_experts)
        rows_of = order // k if k > 1 else order  # row of each assignment, grouped
        if self._batched_training and torch.is_grad_enabled() and self.training:
            experts = flat_expert.index_select(0, order)  # (B k,) expert of each assignment, grouped
            position = torch.arange(order.shape[0], device=x.device) - (torch.cumsum(counts, 0) - counts)[experts]
            padded = x.new_zeros(self.n_experts, int(counts.max()), x.shape[1])  # (K, M, F)
            padded[experts, position] = x.index_select(0, rows_of)
            logit = self.experts.batched(padded)[experts, position]  # (B k,), grouped
            return x.new_zeros(n).index_add(0, rows_of, flat_weight.index_select(0, order) * logit)
        out = x.new_zeros(n)
        start = 0
        for e, count in enumerate(counts.tolist()):
            if count == 0:
                continue
            slot = order[start : start + count]
            rows = rows_of[start : start + count]
            start += count
            logit = self.experts.call(e, x.index_select(0, rows))  # (count,)
            out = out.index_add(0, rows, flat_weight.index_select(0, slot) * logit)
        return out

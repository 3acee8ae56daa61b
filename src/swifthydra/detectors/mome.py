"""Mixture of Mamba Experts: light experts, each row routed to its top-k (docs/design.md §9)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from swifthydra._validation import check_X
from swifthydra.callbacks import MOME
from swifthydra.detectors._params import check_float, check_int
from swifthydra.detectors._persistence import scorer_numel
from swifthydra.detectors._training import adamw
from swifthydra.detectors.base import NeuralDetector
from swifthydra.exceptions import InvalidInputError
from swifthydra.nn.moe import MoMENet, StackedExperts, choose_num_experts


class MoME(NeuralDetector):
    """Mixture of Mamba Experts: a softmax gate routes each row to its top-k light Mamba experts.

    Training samples each row's experts from the gate distribution (Gumbel-top-k) and adds a
    Switch-style load-balancing loss so the experts share the rows; it can also distil a teacher
    (e.g. a :class:`MambaDetector`)::

        loss = BCE_balanced(score, y) + distill_alpha * mean(w (score - teacher)²) / var(teacher)
               + balance_coef * K * Σ_e f_e P_e

    Scoring runs each expert only on the rows routed to it, so its cost does not grow with the
    number of experts (see :mod:`swifthydra.nn.moe`).

    Parameters
    ----------
    n_experts : int or "auto", default="auto"
        ``K``; ``"auto"`` uses :func:`~swifthydra.nn.moe.choose_num_experts` on the training rows
        (BIC-best Gaussian-mixture size clipped to [2, 16]).
    top_k : int, default=1
        Experts per row.
    tokenizer : {"row", "feature", "patch"}, default="row"
        Tokeniser of each expert; ``"row"`` makes the scan a single closed-form step.
    d_model : int, default=16
    n_layers : int, default=1
    d_state : int, default=8
    expand : int, default=2
    d_conv : int, default=4
    bidirectional : bool, default=False
        Shape of each expert (see :class:`MambaDetector`).
    feature_dim : int, default=8
        With the ``"row"`` tokeniser, size of each feature's linear-ReLU embedding before the
        token projection (0: a plain linear token); the measurement: docs/design.md §9.6.
    max_tokens : int, default=32
        Longest sequence of a ``"patch"`` tokeniser.
    pooling : {"mean", "last", "max"}, default="mean"
    dropout : float, default=0.0
    balance_coef : float, default=0.05
        Weight of the load-balancing loss.
    distill_alpha : float, default=5.0
        Weight of the distillation loss when ``teacher_scores`` are given (distillation is what
        lets the mixture match the large detector: docs/design.md §9.5).
    upcycle : bool, default=True
        ``fit`` first trains one dense expert on all rows (with early stopping), copies it into
        every expert, then trains the routed mixture, keeping its weights only if they beat
        the dense expert's validation score ("sparse upcycling", Komatsuzaki et al., 2022).
        Without it each expert sees only ~1/K of the few known anomalies from the start.
    gmm_max_rows : int, default=2000
        Rows subsampled by the ``n_experts="auto"`` rule.
    lr : float, default=2e-3
    weight_decay : float, default=1e-4
    batch_size : int, default=256
    max_epochs : int, default=60
    max_steps_per_epoch : int or None, default=32
        Most gradient steps per epoch (see :class:`MambaDetector`).
    patience : int, default=10
    min_epochs : int, default=5
    validation_fraction : float, default=0.2
    contamination : float, default=0.1
    score_batch_size : int, default=32768
    scan_mode : str, default="auto"
    device : str, default="auto"
    random_state : int, RandomState or None, default=None
    verbose : bool, default=False
        As in :class:`MambaDetector`.

    Attributes
    ----------
    model_ : MoMENet
        Gate and experts.
    n_experts_ : int
        ``K`` actually used.
    expert_usage_ : ndarray of shape (n_experts_,)
        Share of training rows each expert scores (top-k assignments / k).
    dense_epochs_ : int
        Epochs of the dense phase (when ``upcycle``).
    n_features_in_, decision_scores_, threshold_, labels_, history_, n_epochs_, best_epoch_
        As in :class:`MambaDetector`; ``history_`` also logs ``train_bce``, ``train_distill`` and
        ``train_balance``.
    """

    _STAGES = (MOME, MOME + " fine-tuning")

    def __init__(
        self,
        n_experts: int | str = "auto",
        top_k: int = 1,
        tokenizer: str = "row",
        d_model: int = 16,
        n_layers: int = 1,
        d_state: int = 8,
        expand: int = 2,
        d_conv: int = 4,
        bidirectional: bool = False,
        feature_dim: int = 8,
        max_tokens: int = 32,
        pooling: str = "mean",
        dropout: float = 0.0,
        balance_coef: float = 0.05,
        distill_alpha: float = 5.0,
        upcycle: bool = True,
        gmm_max_rows: int = 2000,
        lr: float = 2e-3,
        weight_decay: float = 1e-4,
        batch_size: int = 256,
        max_epochs: int = 60,
        max_steps_per_epoch: int | None = 32,
        patience: int = 10,
        min_epochs: int = 5,
        validation_fraction: float = 0.2,
        contamination: float = 0.1,
        score_batch_size: int = 32768,
        scan_mode: str = "auto",
        device: str = "auto",
        random_state: int | np.random.RandomState | None = None,
        verbose: bool = False,
    ) -> None:
        self.n_experts = n_experts
        self.top_k = top_k
        self.tokenizer = tokenizer
        self.d_model = d_model
        self.n_layers = n_layers
        self.d_state = d_state
        self.expand = expand
        self.d_conv = d_conv
        self.bidirectional = bidirectional
        self.feature_dim = feature_dim
        self.max_tokens = max_tokens
        self.pooling = pooling
        self.dropout = dropout
        self.balance_coef = balance_coef
        self.distill_alpha = distill_alpha
        self.upcycle = upcycle
        self.gmm_max_rows = gmm_max_rows
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.max_steps_per_epoch = max_steps_per_epoch
        self.patience = patience
        self.min_epochs = min_epochs
        self.validation_fraction = validation_fraction
        self.contamination = contamination
        self.score_batch_size = score_batch_size
        self.scan_mode = scan_mode
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    def _validate_params(self) -> None:
        super()._validate_params()
        if self.n_experts != "auto":
            check_int("n_experts", self.n_experts, 1, 1024)
            check_int("top_k", self.top_k, 1, int(self.n_experts))
        else:
            check_int("top_k", self.top_k, 1, 2)  # "auto" gives at least 2 experts
        check_int("max_tokens", self.max_tokens, 1)
        check_int("feature_dim", self.feature_dim, 0)
        check_int("gmm_max_rows", self.gmm_max_rows, 2)
        check_float("balance_coef", self.balance_coef, 0.0, math.inf)
        check_float("distill_alpha", self.distill_alpha, 0.0, math.inf)
        if not isinstance(self.upcycle, (bool, np.bool_)):
            raise InvalidInputError(f"upcycle must be True or False, got {self.upcycle!r}.")

    def _build_net(self, n_features: int, X: np.ndarray | None, seed: int) -> nn.Module:
        if X is not None:  # fitting; from_config sets n_experts_ beforehand
            searched = self.__dict__.pop("_searched", None)  # search_experts() ran on these rows
            self.n_experts_ = searched if searched is not None else self._expert_count(X, seed)
        kwargs = {}
        if self.tokenizer == "patch":
            kwargs = {"max_tokens": int(self.max_tokens)}
        elif self.tokenizer == "row":
            kwargs = {"feature_dim": int(self.feature_dim)}
        return MoMENet(
            n_features,
            self.n_experts_,
            int(self.top_k),
            self.tokenizer,
            self._mamba_config(),
            pooling=self.pooling,
            dropout=float(self.dropout),
            tokenizer_kwargs=kwargs,
        )

    def _expert_count(self, X: np.ndarray, seed: int) -> int:
        if self.n_experts != "auto":
            return int(self.n_experts)
        return choose_num_experts(X, max_rows=int(self.gmm_max_rows), random_state=seed)

    def search_experts(self, X: Any) -> MoME:
        """Run the search for the number of experts (``n_experts="auto"``) now, on the rows the
        next :meth:`fit` will get, so that ``fit`` skips it: SwiftHydra runs it on a second
        thread while its large detector trains. ``fit`` on other rows would use a count searched
        on these. Same count as ``fit``'s own search.

        Returns
        -------
        self
        """
        self._validate_params()
        X = check_X(X, name="X", dtype=np.float32)
        self._searched = self._expert_count(X, self._seed())
        return self

    def _net_numel(self, n_features: int) -> int:
        kwargs = {}
        if self.tokenizer == "patch":
            kwargs = {"max_tokens": int(self.max_tokens)}
        elif self.tokenizer == "row":
            kwargs = {"feature_dim": int(self.feature_dim)}
        k = int(self.n_experts_)
        expert = scorer_numel(n_features, self.tokenizer, self._mamba_config(), kwargs, standardize=False)
        return 2 * n_features + (n_features * k + k) + k * expert  # scaler, gate, experts

    def _train_schedule(self, train, val, seed: int) -> None:
        if not self.upcycle or self.n_experts_ == 1:
            return super()._train_schedule(train, val, seed)
        # Phase 1: one dense expert on every row (the few known anomalies are not split K ways).
        net = self.model_
        early = val is not None
        epochs = int(self.max_epochs)
        dense_epochs = epochs if early else (epochs + 1) // 2
        self._callbacks.on_stage_begin(self._stage, 2 * epochs if early else epochs)
        net.dense = True
        try:
            best = self._run_epochs(train, val, dense_epochs, seed, early_stopping=early)
        finally:
            net.dense = False
        self.dense_epochs_ = self.n_epochs_
        # Phase 2: copy it into every expert and train the routed mixture; it must beat phase 1.
        net.upcycle_()
        self.optimizer_ = adamw(net, self.lr, self.weight_decay)
        moe_epochs = epochs if early else epochs - dense_epochs
        if moe_epochs > 0:
            self._run_epochs(train, val, moe_epochs, seed + 1, early_stopping=early, best=best)

    def _architecture(self) -> dict[str, Any]:
        return {"n_experts": int(self.n_experts_)}

    def _restore_architecture(self, arch: dict[str, Any]) -> None:
        if "n_experts" not in arch:
            raise InvalidInputError("MoME config lacks architecture.n_experts.")
        check_int("architecture.n_experts", arch["n_experts"], 1, 1024)
        self.n_experts_ = int(arch["n_experts"])

    def _upgrade_state_dict(self, state_dict: dict[str, Any]) -> dict[str, Any]:
        # format 1 held each expert as its own module: experts.<e>.<name>
        return StackedExperts.upgrade_state_dict(state_dict, "experts.", int(self.n_experts_))

    def _distill_loss(
        self, logits: torch.Tensor, teacher: torch.Tensor, w: torch.Tensor
    ) -> torch.Tensor:
        """Weighted squared error between student and teacher logits, over the teacher's variance.

        Matching logits (not probabilities) keeps the teacher's ranking among the many rows it
        calls normal, where probabilities all sit near 0 and their differences vanish.
        """
        return (w * (logits - teacher).pow(2)).mean() / self.teacher_var_

    def _loss(self, net, xb, yb, wb, tb, *, train: bool):
        logits, aux = net(xb, sample=train, return_aux=True)
        bce = (wb * F.binary_cross_entropy_with_logits(logits, yb, reduction="none")).mean()
        loss = bce
        parts = {"bce": bce.item()}
        if tb is not None and self.distill_alpha > 0:
            distill = self._distill_loss(logits, tb, wb)
            loss = loss + float(self.distill_alpha) * distill
            parts["distill"] = distill.item()
        if train:
            balance = aux["balance_loss"]
            loss = loss + float(self.balance_coef) * balance
            parts["balance"] = balance.item()
        return loss, parts

    def _set_threshold(self, X: np.ndarray) -> None:
        super()._set_threshold(X)
        counts = self._route_counts(X)
        self.expert_usage_ = counts / counts.sum()

    def _route_counts(self, X: np.ndarray) -> np.ndarray:
        net = self.model_
        counts = np.zeros(self.n_experts_, dtype=np.float64)
        bs = int(self.score_batch_size)
        with torch.inference_mode():
            for start in range(0, X.shape[0], bs):
                xb = net.scaler(torch.from_numpy(X[start : start + bs]).to(self.device_))
                _, index = net.route(xb, sample=False)
                counts += torch.bincount(index.reshape(-1), minlength=self.n_experts_).cpu().numpy()
        return counts

    def expert_assignment(self, X: Any) -> np.ndarray:
        """Experts each row is routed to when scoring, shape ``(n_samples, top_k)``."""
        self._check_fitted()
        X = check_X(X, name="X", n_features=self.n_features_in_, dtype=np.float32)
        net = self.model_
        net.eval()
        out = np.empty((X.shape[0], int(self.top_k)), dtype=np.int64)
        bs = int(self.score_batch_size)
        with torch.inference_mode():
            for start in range(0, X.shape[0], bs):
                xb = net.scaler(torch.from_numpy(X[start : start + bs]).to(self.device_))
                out[start : start + bs] = net.route(xb, sample=False)[1].cpu().numpy()
        return out

    def fit(
        self, X: Any, y: Any, sample_weight: Any = None, teacher_scores: Any = None, *, callbacks: Any = None
    ) -> MoME:
        """Train on rows ``X`` with weak labels ``y``, optionally distilling a teacher.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            1 = known anomaly, 0 = unlabeled.
        sample_weight : array-like of shape (n_samples,), optional
        teacher_scores : array-like of shape (n_samples,), optional
            The teacher's logits of "anomaly" for the same rows (e.g.
            ``MambaDetector.decision_function(X)`` or its ``decision_scores_``); the student's
            logits are pulled towards them by a squared error scaled by their variance. Convert
            probabilities ``p`` with ``scipy.special.logit(p)``.
        callbacks : Callback or list of Callback, optional
            Told of each epoch (:mod:`swifthydra.callbacks`); stage ``"mixture of experts"``.

        Returns
        -------
        self
        """
        return self._fit(X, y, sample_weight, teacher_scores, callbacks=callbacks)

    def partial_fit(
        self,
        X: Any,
        y: Any,
        sample_weight: Any = None,
        teacher_scores: Any = None,
        *,
        epochs: int = 1,
        callbacks: Any = None,
    ) -> MoME:
        """Train ``epochs`` more epochs on ``(X, y)`` without early stopping (see ``fit``)."""
        return self._partial_fit(X, y, sample_weight, teacher_scores, epochs, callbacks)

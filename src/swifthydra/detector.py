"""Neural anomaly detectors: the large :class:`MambaDetector` and the fast :class:`MoME`.

Both follow scikit-learn and PyOD conventions: parameters are stored untouched in ``__init__``
and validated in ``fit``; learned state lives in attributes with a trailing underscore;
``decision_function`` is higher for more anomalous rows; ``predict`` thresholds it at the
``contamination`` quantile of the training scores (``threshold_``); ``predict_proba`` returns
``[P(normal), P(anomaly)]`` per row.

Labels are *weak*: 1 = known anomaly, 0 = unlabeled (mostly normal, possibly contaminated).
Training minimises class-balanced binary cross-entropy (each class carries half of the loss)
on class-balanced mini-batches (half known anomalies, cycled, half unlabeled rows), with early
stopping on the validation AUC-ROC (ties broken by the balanced validation loss) of a stratified
split carved from the training rows, or of ``eval_set`` (docs/design.md §4.2-§4.3). While fitting
and scoring on CPU, denormal floats are flushed to zero (the previous mode is restored afterwards):
decaying SSM states otherwise enter the denormal range, where x86 arithmetic is several times
slower (docs/design.md §4.4). A fitted detector exposes its torch module as ``model_`` and can be rebuilt from
``get_config()`` (JSON-serialisable) and ``state_dict()`` (tensors) with ``from_config``, which is
what :mod:`swifthydra.io` stores with safetensors.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from torch import nn

from swifthydra._torch import resolve_device
from swifthydra._validation import check_X, check_y
from swifthydra.callbacks import (
    DETECTOR,
    DETECTOR_FINETUNE,
    MOME,
    CallbackList,
    PrintLog,
    as_callback_list,
)
from swifthydra.exceptions import InvalidInputError, NotFittedError, TrainingDivergedError
from swifthydra.io import to_jsonable
from swifthydra.nn.mamba import POOLINGS, SCAN_MODES, MambaConfig, MambaScorer
from swifthydra.nn.moe import MoMENet, choose_num_experts
from swifthydra.nn.tokenize import TOKENIZERS

CONFIG_FORMAT_VERSION = 1
_MAX_GRAD_NORM = 5.0


def _scorer_numel(
    n_features: int, tokenizer: str, cfg: MambaConfig, tokenizer_kwargs: dict[str, int], *, standardize: bool
) -> int:
    """Values in the state_dict of ``MambaScorer(n_features, tokenizer, cfg, standardize=...,
    tokenizer_kwargs=...)`` (:mod:`swifthydra.nn`), by arithmetic; a test compares it with built
    networks of every kind."""
    f, d = int(n_features), int(cfg.d_model)
    n = 2 * f if standardize else 0  # Standardize: mean, scale
    if tokenizer == "row":
        m = int(tokenizer_kwargs.get("feature_dim", 0))
        n += 2 * f * m + (f * max(m, 1) * d + d)  # embeddings, projection
    elif tokenizer == "feature":
        n += 2 * f * d
    else:  # patch
        p = max(int(tokenizer_kwargs.get("patch_size") or 1), math.ceil(f / int(tokenizer_kwargs.get("max_tokens", 32))))
        length = math.ceil(f / p)
        n += length * p * d + length * d
    d_in, state, rank, conv = int(cfg.d_inner), int(cfg.d_state), int(cfg.rank), int(cfg.d_conv)
    # conv1d (depthwise, bias), x_proj, dt_proj (bias), A_log, D
    ssm = (d_in * conv + d_in) + d_in * (rank + 2 * state) + (rank * d_in + d_in) + d_in * state + d_in
    # RMSNorm, in_proj, out_proj, one or two SSMs
    block = d + d * 2 * d_in + d_in * d + ssm * (2 if cfg.bidirectional else 1)
    return n + int(cfg.n_layers) * block + d + (d + 1)  # blocks, final norm, head


@contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Run with torch's global RNG (CPU, and the CUDA device in use) seeded, restoring it after."""
    devices = []
    if device.type == "cuda":
        devices = [torch.cuda.current_device() if device.index is None else device.index]
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def _adamw(net: nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    # foreach: one fused update over all parameter tensors instead of a Python loop per tensor
    return torch.optim.AdamW(
        net.parameters(), lr=float(lr), weight_decay=float(weight_decay), foreach=True
    )


def _denormals_flushed() -> bool:
    """Whether flush-to-zero is active: a product below float32's normal range comes out 0."""
    tiny = torch.tensor([1e-30], dtype=torch.float32)
    return float(tiny * tiny.new_tensor([1e-10])) == 0.0


@contextmanager
def _flush_denormals() -> Iterator[None]:
    """Flush denormal floats to zero on CPU for the duration, then restore the previous mode.

    Decaying SSM states, small gradients and their Adam moments drift into the denormal range,
    where x86 arithmetic is many times slower (the measurement: docs/design.md §4.4).
    """
    previous = _denormals_flushed()
    changed = not previous and torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if changed:
            torch.set_flush_denormal(False)


@contextmanager
def _single_threaded_ops() -> Iterator[None]:
    """One intra-op thread and flushed denormals for the duration; both restored after.

    These networks run thousands of small ops per batch. With an intra-op pool every op is a
    parallel region that waits for all pool threads, and pool threads do not inherit the calling
    thread's flush-to-zero mode, so one thread is much faster on shared cores (the measurement:
    docs/design.md §4.4). Scoring gets its parallelism from whole batches on separate threads
    instead (see ``_scores``).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with _flush_denormals():
            yield
    finally:
        torch.set_num_threads(threads)


def _check_int(name: str, value: Any, low: int, high: float = math.inf) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, np.integer))
        or not (low <= value <= high)
    ):
        bound = f">= {low}" if high == math.inf else f"in [{low}, {high}]"
        raise InvalidInputError(f"{name} must be an integer {bound}, got {value!r}.")


def _check_float(
    name: str,
    value: Any,
    low: float,
    high: float,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if ok:
        v = float(value)
        ok = (
            math.isfinite(v)
            and (v > low if low_open else v >= low)
            and (v < high if high_open else v <= high)
        )
    if not ok:
        lb, hb = "(" if low_open else "[", ")" if high_open else "]"
        raise InvalidInputError(f"{name} must be a number in {lb}{low}, {high}{hb}, got {value!r}.")


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise InvalidInputError(f"{name} must be one of {list(choices)}, got {value!r}.")


def _check_vector(v: Any, n_rows: int, name: str, *, nonneg: bool = False) -> np.ndarray:
    if hasattr(v, "detach") and hasattr(v, "cpu"):
        v = v.detach().cpu().numpy()
    try:
        arr = np.asarray(v, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{name} must be a 1-D array of numbers.") from None
    if arr.ndim == 2 and 1 in arr.shape:
        arr = arr.reshape(-1)
    if arr.ndim != 1 or arr.shape[0] != n_rows:
        raise InvalidInputError(
            f"{name} must be 1-D with one value per row ({n_rows}), got shape {arr.shape}."
        )
    if not np.isfinite(arr).all():
        raise InvalidInputError(f"{name} contains NaN or infinite values.")
    if nonneg and (arr < 0).any():
        raise InvalidInputError(f"{name} must be >= 0.")
    return arr


def _stratified_split(
    y: np.ndarray, fraction: float, rng: np.random.RandomState
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, validation); each class contributes ``fraction`` of its rows to validation.

    Known anomalies are few, so at least one goes to validation and at least one stays in
    training whenever there are two or more. Returns an empty validation set when the data are
    too small for a meaningful one (fewer than two known anomalies or ten rows).
    """
    n_pos = int(y.sum())
    if fraction <= 0 or n_pos < 2 or y.shape[0] < 10:
        return np.arange(y.shape[0]), np.empty(0, dtype=np.int64)
    train, val = [], []
    for label in (0, 1):
        idx = np.flatnonzero(y == label)
        rng.shuffle(idx)
        k = int(round(fraction * idx.shape[0]))
        k = min(max(k, 1), idx.shape[0] - 1)
        val.append(idx[:k])
        train.append(idx[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def _class_normalized_weights(y: np.ndarray, sample_weight: np.ndarray | None) -> np.ndarray:
    """Row weights with mean 1 within each class (for class-balanced mini-batches)."""
    w = np.ones(y.shape[0]) if sample_weight is None else sample_weight.astype(np.float64).copy()
    for label in (0, 1):
        mask = y == label
        total = w[mask].sum()
        if total > 0:
            w[mask] *= mask.sum() / total
    return w


def _balanced_batches(
    y: np.ndarray, batch_size: int, rng: np.random.RandomState
) -> list[np.ndarray]:
    """One epoch of mini-batches, each half known anomalies and half unlabeled rows.

    The larger class is covered once in random order; the smaller one is cycled through
    reshuffled passes to fill its half of every batch. With a handful of labelled anomalies this
    keeps every gradient step balanced, instead of most batches holding none and a few holding
    one with a huge weight.
    """
    half = max(1, batch_size // 2)
    groups = [np.flatnonzero(y == 1), np.flatnonzero(y == 0)]
    n_batches = math.ceil(max(len(g) for g in groups) / half)
    need = n_batches * half
    filled = []
    for g in groups:
        passes = [rng.permutation(g) for _ in range(math.ceil(need / len(g)))]
        filled.append(np.concatenate(passes)[:need])
    return [
        np.concatenate([f[b * half : (b + 1) * half] for f in filled]) for b in range(n_batches)
    ]


def _balanced_weights(y: np.ndarray, sample_weight: np.ndarray | None) -> np.ndarray:
    """Per-row loss weights giving each class half the total weight (mean weight 1)."""
    n = y.shape[0]
    w = np.ones(n) if sample_weight is None else sample_weight.astype(np.float64).copy()
    for label in (0, 1):
        mask = y == label
        total = w[mask].sum()
        if total > 0:
            w[mask] *= (n / 2.0) / total
    return w


def _better(key: tuple[float, float], best: tuple[float, float] | None) -> bool:
    """Early-stopping order: higher validation AUC; at an equal AUC, lower validation loss.

    The AUC ranks the few held-out known anomalies against the unlabeled rows, which is what the
    detector is for; the balanced loss alone mostly tracks the calibration of those few rows and
    rises long before the ranking stops improving. The loss breaks ties (AUC is often 1.0).
    """
    if best is None:
        return True
    (auc, loss), (best_auc, best_loss) = key, best
    if auc > best_auc + 1e-9:
        return True
    return auc >= best_auc - 1e-9 and loss < best_loss - 1e-6


class _NeuralDetector(BaseEstimator):
    """Shared training and scoring machinery; subclasses define the network and its loss."""

    _estimator_type = "outlier_detector"

    # -- subclass hooks -------------------------------------------------------------------------
    def _validate_params(self) -> None:
        _check_int("n_layers", self.n_layers, 0)
        _check_int("d_model", self.d_model, 1)
        _check_int("d_state", self.d_state, 1)
        _check_int("expand", self.expand, 1)
        _check_int("d_conv", self.d_conv, 1)
        _check_int("batch_size", self.batch_size, 1)
        _check_int("score_batch_size", self.score_batch_size, 1)
        _check_int("max_epochs", self.max_epochs, 1)
        _check_int("patience", self.patience, 1)
        _check_int("min_epochs", self.min_epochs, 1)
        _check_float("lr", self.lr, 0.0, math.inf, low_open=True)
        _check_float("weight_decay", self.weight_decay, 0.0, math.inf)
        _check_float("dropout", self.dropout, 0.0, 1.0, high_open=True)
        _check_float("validation_fraction", self.validation_fraction, 0.0, 0.5)
        _check_float("contamination", self.contamination, 0.0, 0.5, low_open=True)
        _check_choice("tokenizer", self.tokenizer, TOKENIZERS)
        _check_choice("pooling", self.pooling, POOLINGS)
        _check_choice("scan_mode", self.scan_mode, SCAN_MODES)
        if not isinstance(self.bidirectional, (bool, np.bool_)):
            raise InvalidInputError(
                f"bidirectional must be True or False, got {self.bidirectional!r}."
            )
        if self.random_state is not None and not isinstance(
            self.random_state, (int, np.integer, np.random.RandomState)
        ):
            raise InvalidInputError(
                f"random_state must be None, an int or a RandomState, got {self.random_state!r}."
            )

    def _mamba_config(self) -> MambaConfig:
        return MambaConfig(
            d_model=int(self.d_model),
            n_layers=int(self.n_layers),
            d_state=int(self.d_state),
            expand=int(self.expand),
            d_conv=int(self.d_conv),
            bidirectional=bool(self.bidirectional),
            scan_mode=self.scan_mode,
        )

    def _build_net(self, n_features: int, X: np.ndarray, seed: int) -> nn.Module:
        raise NotImplementedError

    def _architecture(self) -> dict[str, Any]:
        """Fitted quantities besides the parameters that ``_build_net`` needs to rebuild the net."""
        return {}

    def _loss(
        self,
        net: nn.Module,
        xb: torch.Tensor,
        yb: torch.Tensor,
        wb: torch.Tensor,
        tb: torch.Tensor | None,
        *,
        train: bool,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        logits = net(xb)  # (b,)
        loss = (wb * F.binary_cross_entropy_with_logits(logits, yb, reduction="none")).mean()
        return loss, {"bce": loss.item()}

    # -- fitting --------------------------------------------------------------------------------
    def _check_fit_data(self, X: Any, y: Any, sample_weight: Any, *, n_features: int | None = None):
        # identical rows are allowed here (scores come out constant): inside SwiftHydra a
        # training split of nearly constant data can be; SwiftHydra.fit refuses all-identical X
        X = check_X(X, name="X", dtype=np.float32, n_features=n_features, min_rows=2)
        y = check_y(y, X.shape[0])
        n_pos = int(y.sum())
        if n_pos == 0:
            raise InvalidInputError(
                "y has no known anomaly (label 1): these detectors learn from weak labels; seed "
                "pseudo-anomalies (e.g. SwiftHydra does it with IForest+ECOD) or label a few rows."
            )
        if n_pos == y.shape[0]:
            raise InvalidInputError(
                "y has no unlabeled row (label 0): pass normal/unlabeled rows too."
            )
        sw = (
            None
            if sample_weight is None
            else _check_vector(sample_weight, X.shape[0], "sample_weight", nonneg=True)
        )
        if sw is not None and (sw[y == 1].sum() <= 0 or sw[y == 0].sum() <= 0):
            raise InvalidInputError(
                "sample_weight must give each class (0 and 1) a positive total weight."
            )
        return X, y, sw

    def _seed(self) -> int:
        return int(check_random_state(self.random_state).randint(2**31 - 1))

    def _init_model(self, X: np.ndarray, seed: int) -> None:
        self.device_ = resolve_device(self.device)
        self.n_features_in_ = X.shape[1]
        with _seeded(seed, self.device_):
            net = self._build_net(X.shape[1], X, seed)
        stats_rows = (
            X
            if X.shape[0] <= 200_000
            else X[np.random.RandomState(seed).choice(X.shape[0], 200_000, replace=False)]
        )
        net.scaler.fit(torch.from_numpy(stats_rows))
        self.model_ = net.to(self.device_)
        self.optimizer_ = _adamw(self.model_, self.lr, self.weight_decay)
        self.n_epochs_ = 0
        self.history_: list[dict[str, float]] = []
        for stale in ("best_epoch_", "dense_epochs_"):  # from an earlier fit
            self.__dict__.pop(stale, None)

    # the names this model's training reports to callbacks: (fit, partial_fit); outside a
    # fit/partial_fit call, nobody listens
    _STAGES = ("model", "model fine-tuning")
    _callbacks = CallbackList()
    _stage = _STAGES[0]

    @contextmanager
    def _reporting(self, callbacks, stage: str) -> Iterator[CallbackList]:
        """The callbacks of one ``fit``/``partial_fit`` call (plus :class:`PrintLog` when
        ``verbose``) and its stage name, reachable from the epoch loop while it runs."""
        cb = as_callback_list(callbacks, PrintLog(episodes=False) if self.verbose else None)
        self._callbacks, self._stage = cb, stage
        try:
            yield cb
        finally:
            del self._callbacks, self._stage

    def _fit(self, X, y, sample_weight, teacher, eval_set=None, callbacks=None) -> _NeuralDetector:
        with self._reporting(callbacks, self._STAGES[0]) as cb:
            self._fit_reported(X, y, sample_weight, teacher, eval_set)
            cb.on_stage_end(self._STAGES[0])
        return self

    def _fit_reported(self, X, y, sample_weight, teacher, eval_set) -> None:
        self._validate_params()
        X, y, sw = self._check_fit_data(X, y, sample_weight)
        if teacher is not None:
            teacher = _check_vector(teacher, X.shape[0], "teacher_scores")
            self.teacher_var_ = max(float(np.var(teacher)), 1e-6)
        seed = self._seed()
        rng = np.random.RandomState(seed)
        self._init_model(X, seed)
        val = None
        if eval_set is not None:
            X_val, y_val = self._check_eval_set(eval_set, X.shape[1])
            train_idx, val_idx = np.arange(y.shape[0]), np.empty(0, dtype=np.int64)
            val = self._tensors(X_val, y_val, _balanced_weights(y_val, None), None)
        else:
            train_idx, val_idx = _stratified_split(y, float(self.validation_fraction), rng)
        if val_idx.size:
            val = self._tensors(
                X[val_idx],
                y[val_idx],
                _balanced_weights(y[val_idx], None if sw is None else sw[val_idx]),
                None if teacher is None else teacher[val_idx],
            )
        train = self._tensors(
            X[train_idx],
            y[train_idx],
            _class_normalized_weights(y[train_idx], None if sw is None else sw[train_idx]),
            None if teacher is None else teacher[train_idx],
        )
        self._train_schedule(train, val, seed)
        self.n_train_rows_ = int(train_idx.size)
        self.n_val_rows_ = int(val_idx.size) if eval_set is None else int(val[0].shape[0])
        self._set_threshold(X)

    def _check_eval_set(self, eval_set, n_features: int) -> tuple[np.ndarray, np.ndarray]:
        if not (isinstance(eval_set, (tuple, list)) and len(eval_set) == 2):
            raise InvalidInputError("eval_set must be a pair (X_val, y_val).")
        X_val = check_X(eval_set[0], name="eval_set X", dtype=np.float32, n_features=n_features, min_rows=2)
        y_val = check_y(eval_set[1], X_val.shape[0])
        if y_val.min() == y_val.max():
            raise InvalidInputError(
                "eval_set y must hold both labels (0 and 1): early stopping ranks anomalies against the rest."
            )
        return X_val, y_val

    def _partial_fit(self, X, y, sample_weight, teacher, epochs, callbacks=None) -> _NeuralDetector:
        _check_int("epochs", epochs, 1)
        with self._reporting(callbacks, self._STAGES[1]) as cb:
            cb.on_stage_begin(self._STAGES[1], int(epochs))
            self._partial_fit_reported(X, y, sample_weight, teacher, epochs)
            cb.on_stage_end(self._STAGES[1])
        return self

    def _partial_fit_reported(self, X, y, sample_weight, teacher, epochs) -> None:
        fitted = hasattr(self, "model_")
        if not fitted:
            self._validate_params()
        X, y, sw = self._check_fit_data(
            X, y, sample_weight, n_features=self.n_features_in_ if fitted else None
        )
        if teacher is not None:
            teacher = _check_vector(teacher, X.shape[0], "teacher_scores")
            self.teacher_var_ = max(float(np.var(teacher)), 1e-6)
        seed = self._seed() + self.n_epochs_ if fitted else self._seed()
        if not fitted:
            self._init_model(X, seed)
        data = self._tensors(X, y, _class_normalized_weights(y, sw), teacher)
        self._run_epochs(data, None, int(epochs), seed, early_stopping=False)
        self._set_threshold(X)

    def _tensors(self, X, y, w, t) -> tuple[torch.Tensor, ...]:
        dev = self.device_
        out = [
            torch.from_numpy(X).to(dev),
            torch.from_numpy(y.astype(np.float32)).to(dev),
            torch.from_numpy(w.astype(np.float32)).to(dev),
        ]
        out.append(None if t is None else torch.from_numpy(t.astype(np.float32)).to(dev))
        return tuple(out)

    def _train_schedule(self, train, val, seed: int) -> None:
        """What ``fit`` runs after initialisation: epochs with early stopping when ``val`` exists."""
        self._callbacks.on_stage_begin(self._stage, int(self.max_epochs))
        self._run_epochs(train, val, int(self.max_epochs), seed, early_stopping=val is not None)

    def _run_epochs(
        self,
        train,
        val,
        epochs: int,
        seed: int,
        *,
        early_stopping: bool,
        best: tuple[float, float] | None = None,
    ) -> tuple[float, float] | None:
        """Train up to ``epochs`` epochs; with early stopping keep the weights of the best
        validation ``(AUC, loss)`` from epoch ``min_epochs`` on (the current weights count as
        achieving ``best``) and stop after ``patience`` epochs without one. Returns that pair."""
        if self.optimizer_ is None:  # loaded with from_config
            self.optimizer_ = _adamw(self.model_, self.lr, self.weight_decay)
        net, opt = self.model_, self.optimizer_
        Xt, yt, wt, tt = train
        y_np = yt.cpu().numpy()
        bs = int(self.batch_size)
        rng = np.random.RandomState(seed)
        stale = 0
        best_state = (
            copy.deepcopy(net.state_dict()) if early_stopping and best is not None else None
        )
        with _seeded(seed, self.device_), _single_threaded_ops():
            for epoch in range(1, epochs + 1):
                net.train()
                total, parts_sum, count = 0.0, {}, 0
                if getattr(self, "_balanced_batching", True):
                    batches = _balanced_batches(y_np, bs, rng)
                else:
                    perm = rng.permutation(len(y_np))
                    batches = [perm[i : i + bs] for i in range(0, len(perm), bs)]
                for b, batch in enumerate(batches, 1):
                    idx = torch.from_numpy(batch).to(self.device_)
                    tb = None if tt is None else tt[idx]
                    loss, parts = self._loss(net, Xt[idx], yt[idx], wt[idx], tb, train=True)
                    value = loss.item()
                    if not math.isfinite(value):
                        self._diverged(f"the training loss became {value}", self.n_epochs_ + 1, b)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    norm = nn.utils.clip_grad_norm_(net.parameters(), _MAX_GRAD_NORM)
                    if not torch.isfinite(norm):
                        self._diverged("the gradients became non-finite", self.n_epochs_ + 1, b)
                    opt.step()
                    total += value * idx.shape[0]
                    for k, v in parts.items():
                        parts_sum[k] = parts_sum.get(k, 0.0) + v * idx.shape[0]
                    count += idx.shape[0]
                self.n_epochs_ += 1
                record = {"epoch": self.n_epochs_, "train_loss": total / count}
                record.update({f"train_{k}": v / count for k, v in parts_sum.items()})
                if val is not None:
                    record["val_auc"], record["val_loss"] = self._evaluate(val)
                self.history_.append(record)
                self._callbacks.on_epoch_end(self._stage, record)
                if early_stopping and epoch >= int(self.min_epochs):
                    key = (record["val_auc"], record["val_loss"])
                    if _better(key, best):
                        best, stale = key, 0
                        best_state = copy.deepcopy(net.state_dict())
                        self.best_epoch_ = self.n_epochs_
                    else:
                        stale += 1
                        if stale >= int(self.patience):
                            break
        if best_state is not None:
            net.load_state_dict(best_state)
        net.eval()
        return best

    def _diverged(self, what: str, epoch: int, batch: int | None = None) -> None:
        """Raise :class:`TrainingDivergedError` naming the epoch (and batch) where ``what`` happened."""
        where = f"epoch {epoch}" + (f", batch {batch}" if batch is not None else "")
        raise TrainingDivergedError(
            f"{type(self).__name__} training diverged: {what} in {where}; lower lr (now "
            f"{self.lr:g}) or check the data for extreme values."
        )

    def _evaluate(self, data) -> tuple[float, float]:
        """Validation AUC-ROC (known anomalies vs unlabeled rows) and balanced loss."""
        from sklearn.metrics import roc_auc_score

        Xv, yv, wv, tv = data
        net = self.model_
        net.eval()
        bs = int(self.score_batch_size)
        with torch.inference_mode():
            logits = torch.cat([net(Xv[i : i + bs]) for i in range(0, Xv.shape[0], bs)])
            if not bool(torch.isfinite(logits).all()):
                self._diverged("the validation scores became non-finite", self.n_epochs_)
            loss = (wv * F.binary_cross_entropy_with_logits(logits, yv, reduction="none")).mean()
            alpha = float(getattr(self, "distill_alpha", 0.0))
            if tv is not None and alpha > 0:
                loss = loss + alpha * self._distill_loss(logits, tv, wv)
        auc = float(roc_auc_score(yv.cpu().numpy(), logits.float().cpu().numpy()))
        return auc, float(loss)

    def _set_threshold(self, X: np.ndarray) -> None:
        self.decision_scores_ = self._scores(X, int(self.score_batch_size))
        if not np.isfinite(self.decision_scores_).all():
            raise TrainingDivergedError(
                f"{type(self).__name__} training diverged: the scores of the training rows are "
                f"non-finite after epoch {self.n_epochs_}; lower lr (now {self.lr:g})."
            )
        self.threshold_ = float(
            np.percentile(self.decision_scores_, 100.0 * (1.0 - float(self.contamination)))
        )
        self.labels_ = (self.decision_scores_ > self.threshold_).astype(np.int64)

    # -- scoring --------------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise NotFittedError(
                f"This {type(self).__name__} is not fitted yet: call fit(X, y) first."
            )

    def _scores(self, X: np.ndarray, batch_size: int) -> np.ndarray:
        """Logits of ``X`` in batches; on CPU, batches are spread over ``torch.get_num_threads()``
        Python threads, each running its ops inline (torch releases the GIL inside ops)."""
        net = self.model_
        net.eval()
        out = np.empty(X.shape[0], dtype=np.float64)
        starts = list(range(0, X.shape[0], batch_size))
        workers = (
            1 if self.device_.type != "cpu" else max(1, min(torch.get_num_threads(), len(starts)))
        )

        def run(mine: list[int]) -> None:
            with torch.inference_mode(), _flush_denormals():
                for start in mine:
                    xb = torch.from_numpy(X[start : start + batch_size]).to(self.device_)
                    out[start : start + batch_size] = net(xb).float().cpu().numpy()

        with _single_threaded_ops():
            if workers == 1:
                run(starts)
            else:
                with ThreadPoolExecutor(workers) as pool:
                    for done in [pool.submit(run, starts[w::workers]) for w in range(workers)]:
                        done.result()
        return out

    def decision_function(self, X: Any, batch_size: int | None = None) -> np.ndarray:
        """Anomaly score of each row: the network's logit of "anomaly" (higher = more anomalous).

        ``sigmoid(decision_function(X))`` is the probability returned by :meth:`predict_proba`.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, n_features)
            Rows to score (same columns as in ``fit``).
        batch_size : int, optional
            Rows per forward pass; defaults to ``score_batch_size``. Memory stays flat in the
            number of rows.

        Returns
        -------
        numpy.ndarray of shape (n_samples,), float64
        """
        self._check_fitted()
        bs = int(self.score_batch_size) if batch_size is None else batch_size
        _check_int("batch_size", bs, 1)
        X = check_X(X, name="X", n_features=self.n_features_in_, dtype=np.float32)
        return self._scores(X, bs)

    def predict_proba(self, X: Any, batch_size: int | None = None) -> np.ndarray:
        """``[P(normal), P(anomaly)]`` per row, from the sigmoid of :meth:`decision_function`.

        Returns
        -------
        numpy.ndarray of shape (n_samples, 2)
        """
        p = 1.0 / (1.0 + np.exp(-self.decision_function(X, batch_size)))
        return np.stack([1.0 - p, p], axis=1)

    def predict(self, X: Any, batch_size: int | None = None) -> np.ndarray:
        """1 for rows scoring above ``threshold_`` (the training ``contamination`` quantile), else 0."""
        return (self.decision_function(X, batch_size) > self.threshold_).astype(np.int64)

    # -- persistence ----------------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        """JSON-serialisable description from which :meth:`from_config` rebuilds the network.

        Holds the class name, the constructor parameters, the fitted shape (``n_features_in_``,
        and what else the subclass needs, e.g. ``n_experts_``) and ``threshold_``.
        """
        self._check_fitted()
        return {
            "class": type(self).__name__,
            "format_version": CONFIG_FORMAT_VERSION,
            "params": to_jsonable(self.get_params()),
            "n_features_in": int(self.n_features_in_),
            "threshold": float(self.threshold_),
            "n_epochs": int(self.n_epochs_),
            "architecture": self._architecture(),
        }

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The network's tensors (CPU, contiguous), ready for ``safetensors.torch.save_file``."""
        self._check_fitted()
        # copies: on CPU ``.cpu()`` would share storage with the live parameters, and a kept
        # state would change with further training
        return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in self.model_.state_dict().items()}

    @classmethod
    def from_config(
        cls,
        config: dict[str, Any],
        state_dict: dict[str, torch.Tensor],
        *,
        device: str | None = None,
    ) -> _NeuralDetector:
        """Rebuild a fitted detector from :meth:`get_config` and :meth:`state_dict` output.

        Everything is checked before memory is committed, so a damaged or hostile config cannot
        make it allocate more than the stored tensors: the number of values the network holds is
        worked out from the config by arithmetic (:meth:`_net_numel`) and, when it equals the
        number stored, the network is built (as many values as are already in memory) and its
        tensor names and shapes compared with ``state_dict``; otherwise the network is built on
        PyTorch's ``meta`` device (no storage; slower: it imports ``torch._dynamo``, about a second)
        to name what does not match. Tensors holding NaN or infinite values are refused. Any
        mismatch raises :class:`~swifthydra.exceptions.InvalidInputError`.
        """
        if not isinstance(config, dict) or not isinstance(state_dict, dict):
            raise InvalidInputError("a detector config must be a JSON object and state_dict a dict of tensors.")
        if config.get("class") != cls.__name__:
            raise InvalidInputError(
                f"config describes a {config.get('class')!r}, not a {cls.__name__}."
            )
        try:
            version = int(config.get("format_version", 0))
            if version > CONFIG_FORMAT_VERSION:
                raise InvalidInputError(
                    f"config format {config.get('format_version')} is newer than this swifthydra "
                    f"supports ({CONFIG_FORMAT_VERSION}): upgrade swifthydra."
                )
            params = dict(config["params"])
            if device is not None:
                params["device"] = device
            est = cls(**params)
            est._validate_params()
            arch = config.get("architecture", {})
            if not isinstance(arch, dict):
                raise InvalidInputError("config.architecture must be a JSON object.")
            est._restore_architecture(arch)
            n_features = config["n_features_in"]
            _check_int("n_features_in", n_features, 1)
            # every layer and expert owns tensors: more than the file holds cannot match it
            # (checked before building, which would otherwise create that many modules)
            if max(int(est.n_layers), int(getattr(est, "n_experts_", 1))) > len(state_dict):
                raise InvalidInputError(
                    f"state_dict holds {len(state_dict)} tensors, too few for the config's "
                    "layers and experts."
                )
            threshold = float(config["threshold"])
            n_epochs = int(config.get("n_epochs", 0))
            n_features = int(n_features)
            stored = sum(int(t.numel()) for t in state_dict.values() if isinstance(t, torch.Tensor))
            net = None
            if est._net_numel(n_features) == stored:
                # as many values as the file holds (already in memory): build the real network
                with _seeded(0, torch.device("cpu")):
                    net = est._build_net(n_features, None, 0)
                expected = {k: tuple(v.shape) for k, v in net.state_dict().items()}
            else:  # shapes only, no memory, to say what does not match
                with torch.device("meta"):
                    expected = {k: tuple(v.shape) for k, v in est._build_net(n_features, None, 0).state_dict().items()}
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError, RuntimeError) as exc:
            raise InvalidInputError(f"invalid {cls.__name__} config ({type(exc).__name__}: {exc}).") from None
        for name, tensor in state_dict.items():
            if not isinstance(tensor, torch.Tensor):
                raise InvalidInputError(f"state_dict entry {name!r} is not a tensor.")
            if name in expected and tuple(tensor.shape) != expected[name]:
                raise InvalidInputError(
                    f"state_dict does not match the config: {name!r} has shape {tuple(tensor.shape)}, "
                    f"expected {expected[name]}."
                )
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                raise InvalidInputError(f"state_dict entry {name!r} holds NaN or infinite values.")
        missing, unexpected = sorted(set(expected) - set(state_dict)), sorted(set(state_dict) - set(expected))
        if missing or unexpected:
            raise InvalidInputError(
                f"state_dict does not match the config: missing {missing[:5]}, unexpected {unexpected[:5]}."
            )
        est.device_ = resolve_device(est.device)
        est.n_features_in_ = n_features
        if net is None:  # _net_numel disagrees with a network that matches the file
            with _seeded(0, est.device_):
                net = est._build_net(n_features, None, 0)
        try:
            net.load_state_dict(state_dict)
        except RuntimeError as exc:
            raise InvalidInputError(f"state_dict does not match the config: {exc}") from None
        est.model_ = net.to(est.device_).eval()
        # made when training resumes (partial_fit): a new AdamW has no state to restore, and
        # creating a torch optimizer imports torch._dynamo (about a second) which scoring never needs
        est.optimizer_ = None
        est.threshold_ = threshold
        est.n_epochs_ = n_epochs
        est.history_ = []
        return est

    def _restore_architecture(self, arch: dict[str, Any]) -> None:
        pass

    def _net_numel(self, n_features: int) -> int:
        """How many values the state_dict of ``_build_net(n_features, ...)`` holds, by arithmetic
        (nothing is built). Used by :meth:`from_config` to build the network only when it is no
        bigger than the stored tensors; a wrong count only costs time (the shapes are then
        checked on the ``meta`` device), never correctness. ``-1``: unknown."""
        return -1


class MambaDetector(_NeuralDetector):
    """The large detector: tokeniser -> Mamba layers -> pooling -> linear head -> logit.

    Parameters
    ----------
    tokenizer : {"patch", "feature", "row"}, default="patch"
        How a row becomes a token sequence (see :mod:`swifthydra.nn.tokenize`). ``"patch"``
        keeps at most ``max_tokens`` tokens, so wide tables stay affordable.
    d_model : int, default=32
        Token width.
    n_layers : int, default=2
        Residual Mamba blocks.
    d_state : int, default=4
        SSM state size per channel.
    expand : int, default=2
        Inner width multiplier of each block.
    d_conv : int, default=4
        Causal convolution kernel size.
    bidirectional : bool, default=True
        Also scan the token sequence backwards (feature order is arbitrary in a table).
    max_tokens : int, default=8
        Longest token sequence of the ``"patch"`` tokeniser.
    pooling : {"mean", "last", "max"}, default="mean"
        How token outputs become one vector.
    dropout : float, default=0.1
        Dropout before the head.
    lr : float, default=1e-3
        AdamW learning rate.
    weight_decay : float, default=1e-4
        AdamW weight decay.
    batch_size : int, default=256
        Training mini-batch size; every batch is half known anomalies (cycled) and half
        unlabeled rows.
    max_epochs : int, default=60
        Most training epochs in ``fit``.
    patience : int, default=8
        Epochs without a better validation score before ``fit`` stops (best weights are kept).
        The score is the validation AUC-ROC of the held-out known anomalies against the
        held-out unlabeled rows, ties broken by the balanced validation loss.
    min_epochs : int, default=1
        Epochs trained before a checkpoint may be picked. Early checkpoints generalise better
        to unseen anomalies (the measurement: docs/design.md §4.3).
    validation_fraction : float, default=0.2
        Share of each class held out for early stopping (stratified; drawn from the training
        rows). With fewer than two known anomalies no split is made and ``max_epochs`` run.
    contamination : float, default=0.1
        Expected anomaly share, sets ``threshold_`` for :meth:`predict`.
    score_batch_size : int, default=2048
        Rows per forward pass when scoring.
    scan_mode : str, default="auto"
        Selective-scan implementation (see :func:`swifthydra.nn.mamba.selective_scan`).
    device : str, default="auto"
        ``"auto"`` (CUDA if available), ``"cpu"``, ``"cuda"``, ``"cuda:N"``.
    random_state : int, RandomState or None, default=None
        Seed of the initialisation, split and batches; a fixed int gives identical scores.
    verbose : bool, default=False
        Print one line per epoch.

    Attributes
    ----------
    model_ : torch.nn.Module
        The fitted :class:`~swifthydra.nn.mamba.MambaScorer`.
    n_features_in_ : int
        Columns seen in ``fit``.
    decision_scores_ : ndarray of shape (n_samples,)
        Scores of the training rows.
    threshold_ : float
        ``decision_function`` value above which :meth:`predict` says 1.
    labels_ : ndarray of shape (n_samples,)
        ``predict`` on the training rows.
    history_ : list of dict
        Per epoch: ``train_loss`` and, with early stopping, ``val_auc`` and ``val_loss``.
    n_epochs_ : int
        Epochs trained so far (``fit`` plus ``partial_fit``).
    best_epoch_ : int
        Epoch whose weights ``fit`` kept (when early stopping ran).
    """

    _STAGES = (DETECTOR, DETECTOR_FINETUNE)

    def __init__(
        self,
        tokenizer: str = "patch",
        d_model: int = 32,
        n_layers: int = 2,
        d_state: int = 4,
        expand: int = 2,
        d_conv: int = 4,
        bidirectional: bool = True,
        max_tokens: int = 8,
        pooling: str = "mean",
        dropout: float = 0.1,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        batch_size: int = 256,
        max_epochs: int = 60,
        patience: int = 8,
        min_epochs: int = 1,
        validation_fraction: float = 0.2,
        contamination: float = 0.1,
        score_batch_size: int = 2048,
        scan_mode: str = "auto",
        device: str = "auto",
        random_state: int | np.random.RandomState | None = None,
        verbose: bool = False,
    ) -> None:
        self.tokenizer = tokenizer
        self.d_model = d_model
        self.n_layers = n_layers
        self.d_state = d_state
        self.expand = expand
        self.d_conv = d_conv
        self.bidirectional = bidirectional
        self.max_tokens = max_tokens
        self.pooling = pooling
        self.dropout = dropout
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
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
        _check_int("max_tokens", self.max_tokens, 1)

    def _build_net(self, n_features: int, X: np.ndarray | None, seed: int) -> nn.Module:
        kwargs = {"max_tokens": int(self.max_tokens)} if self.tokenizer == "patch" else {}
        return MambaScorer(
            n_features,
            self.tokenizer,
            self._mamba_config(),
            pooling=self.pooling,
            dropout=float(self.dropout),
            tokenizer_kwargs=kwargs,
        )

    def _net_numel(self, n_features: int) -> int:
        kwargs = {"max_tokens": int(self.max_tokens)} if self.tokenizer == "patch" else {}
        return _scorer_numel(n_features, self.tokenizer, self._mamba_config(), kwargs, standardize=True)

    def fit(
        self, X: Any, y: Any, sample_weight: Any = None, *, eval_set: Any = None, callbacks: Any = None
    ) -> MambaDetector:
        """Train on rows ``X`` with weak labels ``y`` (1 = known anomaly, 0 = unlabeled).

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        sample_weight : array-like of shape (n_samples,), optional
            Non-negative row weights, multiplied into the class-balanced weights.
        eval_set : pair (X_val, y_val), optional
            Rows for early stopping instead of an internal ``validation_fraction`` split, so every
            row of ``X`` trains (``y_val`` must hold both labels).
        callbacks : Callback or list of Callback, optional
            Told of each epoch (:mod:`swifthydra.callbacks`); stage ``"detector"``.

        Returns
        -------
        self
        """
        return self._fit(X, y, sample_weight, None, eval_set, callbacks)

    def partial_fit(
        self, X: Any, y: Any, sample_weight: Any = None, *, epochs: int = 1, callbacks: Any = None
    ) -> MambaDetector:
        """Train ``epochs`` more epochs on ``(X, y)`` without early stopping.

        Continues from the current weights and optimiser state (the self-reinforcing loop
        fine-tunes the detector this way each episode). On an unfitted detector it initialises the
        network from ``X`` first. ``decision_scores_`` and ``threshold_`` are recomputed on ``X``.
        """
        return self._partial_fit(X, y, sample_weight, None, epochs, callbacks)


class MoME(_NeuralDetector):
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
            _check_int("n_experts", self.n_experts, 1, 1024)
            _check_int("top_k", self.top_k, 1, int(self.n_experts))
        else:
            _check_int("top_k", self.top_k, 1, 2)  # "auto" gives at least 2 experts
        _check_int("max_tokens", self.max_tokens, 1)
        _check_int("feature_dim", self.feature_dim, 0)
        _check_int("gmm_max_rows", self.gmm_max_rows, 2)
        _check_float("balance_coef", self.balance_coef, 0.0, math.inf)
        _check_float("distill_alpha", self.distill_alpha, 0.0, math.inf)
        if not isinstance(self.upcycle, (bool, np.bool_)):
            raise InvalidInputError(f"upcycle must be True or False, got {self.upcycle!r}.")

    def _build_net(self, n_features: int, X: np.ndarray | None, seed: int) -> nn.Module:
        if X is not None:  # fitting; from_config sets n_experts_ beforehand
            if self.n_experts == "auto":
                self.n_experts_ = choose_num_experts(
                    X, max_rows=int(self.gmm_max_rows), random_state=seed
                )
            else:
                self.n_experts_ = int(self.n_experts)
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

    def _net_numel(self, n_features: int) -> int:
        kwargs = {}
        if self.tokenizer == "patch":
            kwargs = {"max_tokens": int(self.max_tokens)}
        elif self.tokenizer == "row":
            kwargs = {"feature_dim": int(self.feature_dim)}
        k = int(self.n_experts_)
        expert = _scorer_numel(n_features, self.tokenizer, self._mamba_config(), kwargs, standardize=False)
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
        self.optimizer_ = _adamw(net, self.lr, self.weight_decay)
        moe_epochs = epochs if early else epochs - dense_epochs
        if moe_epochs > 0:
            self._run_epochs(train, val, moe_epochs, seed + 1, early_stopping=early, best=best)

    def _architecture(self) -> dict[str, Any]:
        return {"n_experts": int(self.n_experts_)}

    def _restore_architecture(self, arch: dict[str, Any]) -> None:
        if "n_experts" not in arch:
            raise InvalidInputError("MoME config lacks architecture.n_experts.")
        _check_int("architecture.n_experts", arch["n_experts"], 1, 1024)
        self.n_experts_ = int(arch["n_experts"])

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

"""The shared machinery of the neural detectors (PyOD's ``base_dl`` in spirit): one training loop
with class-balanced mini-batches and early stopping, the threshold, one ``decision_function`` /
``predict_proba`` / ``predict``; subclasses define the network and its loss (docs/design.md §4)."""

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
from torch import nn

from swifthydra._scoring import contamination_threshold, sigmoid
from swifthydra._torch import resolve_device
from swifthydra._validation import check_X, check_y, seed_from
from swifthydra.callbacks import CallbackList, PrintLog, as_callback_list
from swifthydra.detectors._params import check_choice, check_float, check_int, check_vector
from swifthydra.detectors._persistence import PersistenceMixin
from swifthydra.detectors._training import (
    MAX_GRAD_NORM,
    adamw,
    balanced_batches,
    balanced_weights,
    better,
    class_normalized_weights,
    flush_denormals,
    merge_repeats,
    seeded,
    single_threaded_ops,
    stratified_split,
)
from swifthydra.exceptions import InvalidInputError, NotFittedError, TrainingDivergedError
from swifthydra.nn.mamba import POOLINGS, SCAN_MODES, MambaConfig
from swifthydra.nn.tokenize import TOKENIZERS


class NeuralDetector(PersistenceMixin, BaseEstimator):
    """Shared training and scoring machinery; subclasses define the network and its loss."""

    _estimator_type = "outlier_detector"

    # -- subclass hooks -------------------------------------------------------------------------
    def _merges_repeats(self) -> bool:
        """Whether a mini-batch's repeated rows run through the network once, their loss weighted
        by the repeats (``MambaDetector(merge_repeats=True)``; docs/design.md §4.2). Not the MoME:
        its load-balancing term counts a batch's rows, and its gate draws an expert per row, so the
        repeats of a known anomaly reach several experts in one step."""
        return False

    def _validate_params(self) -> None:
        check_int("n_layers", self.n_layers, 0)
        check_int("d_model", self.d_model, 1)
        check_int("d_state", self.d_state, 1)
        check_int("expand", self.expand, 1)
        check_int("d_conv", self.d_conv, 1)
        check_int("batch_size", self.batch_size, 1)
        check_int("score_batch_size", self.score_batch_size, 1)
        check_int("max_epochs", self.max_epochs, 1)
        if self.max_steps_per_epoch is not None:
            check_int("max_steps_per_epoch", self.max_steps_per_epoch, 1)
        if getattr(self, "loss_tol", None) is not None:
            check_float("loss_tol", self.loss_tol, 0.0, 1.0)
        check_int("patience", self.patience, 1)
        check_int("min_epochs", self.min_epochs, 1)
        check_float("lr", self.lr, 0.0, math.inf, low_open=True)
        check_float("weight_decay", self.weight_decay, 0.0, math.inf)
        check_float("dropout", self.dropout, 0.0, 1.0, high_open=True)
        check_float("validation_fraction", self.validation_fraction, 0.0, 0.5)
        check_float("contamination", self.contamination, 0.0, 0.5, low_open=True)
        check_choice("tokenizer", self.tokenizer, TOKENIZERS)
        check_choice("pooling", self.pooling, POOLINGS)
        check_choice("scan_mode", self.scan_mode, SCAN_MODES)
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
            else check_vector(sample_weight, X.shape[0], "sample_weight", nonneg=True)
        )
        if sw is not None and (sw[y == 1].sum() <= 0 or sw[y == 0].sum() <= 0):
            raise InvalidInputError(
                "sample_weight must give each class (0 and 1) a positive total weight."
            )
        return X, y, sw

    def _seed(self) -> int:
        return seed_from(self.random_state)

    def _init_model(self, X: np.ndarray, seed: int) -> None:
        self.device_ = resolve_device(self.device)
        self.n_features_in_ = X.shape[1]
        with seeded(seed, self.device_):
            net = self._build_net(X.shape[1], X, seed)
        stats_rows = (
            X
            if X.shape[0] <= 200_000
            else X[np.random.RandomState(seed).choice(X.shape[0], 200_000, replace=False)]
        )
        net.scaler.fit(torch.from_numpy(stats_rows))
        self.model_ = net.to(self.device_)
        self.optimizer_ = adamw(self.model_, self.lr, self.weight_decay)
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

    def _fit(self, X, y, sample_weight, teacher, eval_set=None, callbacks=None) -> NeuralDetector:
        with self._reporting(callbacks, self._STAGES[0]) as cb:
            self._fit_reported(X, y, sample_weight, teacher, eval_set)
            cb.on_stage_end(self._STAGES[0])
        return self

    def _fit_reported(self, X, y, sample_weight, teacher, eval_set) -> None:
        self._validate_params()
        X, y, sw = self._check_fit_data(X, y, sample_weight)
        if teacher is not None:
            teacher = check_vector(teacher, X.shape[0], "teacher_scores")
            self.teacher_var_ = max(float(np.var(teacher)), 1e-6)
        seed = self._seed()
        rng = np.random.RandomState(seed)
        self._init_model(X, seed)
        val = None
        if eval_set is not None:
            X_val, y_val = self._check_eval_set(eval_set, X.shape[1])
            train_idx, val_idx = np.arange(y.shape[0]), np.empty(0, dtype=np.int64)
            val = self._tensors(X_val, y_val, balanced_weights(y_val, None), None)
        else:
            train_idx, val_idx = stratified_split(y, float(self.validation_fraction), rng)
        if val_idx.size:
            val = self._tensors(
                X[val_idx],
                y[val_idx],
                balanced_weights(y[val_idx], None if sw is None else sw[val_idx]),
                None if teacher is None else teacher[val_idx],
            )
        train = self._tensors(
            X[train_idx],
            y[train_idx],
            class_normalized_weights(y[train_idx], None if sw is None else sw[train_idx]),
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

    def _partial_fit(self, X, y, sample_weight, teacher, epochs, callbacks=None) -> NeuralDetector:
        check_int("epochs", epochs, 1)
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
            teacher = check_vector(teacher, X.shape[0], "teacher_scores")
            self.teacher_var_ = max(float(np.var(teacher)), 1e-6)
        seed = self._seed() + self.n_epochs_ if fitted else self._seed()
        if not fitted:
            self._init_model(X, seed)
        data = self._tensors(X, y, class_normalized_weights(y, sw), teacher)
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
        loss_tol = getattr(self, "loss_tol", None) if val is None else None
        self._run_epochs(train, val, int(self.max_epochs), seed, early_stopping=val is not None, loss_tol=loss_tol)

    def _run_epochs(
        self,
        train,
        val,
        epochs: int,
        seed: int,
        *,
        early_stopping: bool,
        best: tuple[float, float] | None = None,
        loss_tol: float | None = None,
    ) -> tuple[float, float] | None:
        """Train up to ``epochs`` epochs; with early stopping keep the weights of the best
        validation ``(AUC, loss)`` from epoch ``min_epochs`` on (the current weights count as
        achieving ``best``) and stop after ``patience`` epochs without one. Returns that pair.
        With ``loss_tol`` (no validation set) stop after ``patience`` epochs whose training loss
        did not fall more than ``loss_tol`` below the best so far."""
        if self.optimizer_ is None:  # loaded with from_config
            self.optimizer_ = adamw(self.model_, self.lr, self.weight_decay)
        net, opt = self.model_, self.optimizer_
        Xt, yt, wt, tt = train
        y_np = yt.cpu().numpy()
        bs = int(self.batch_size)
        steps = None if self.max_steps_per_epoch is None else int(self.max_steps_per_epoch)
        rng = np.random.RandomState(seed)
        merging = self._merges_repeats()
        stale = loss_stale = 0
        best_loss = math.inf
        best_state = (
            copy.deepcopy(net.state_dict()) if early_stopping and best is not None else None
        )
        with seeded(seed, self.device_), single_threaded_ops():
            for epoch in range(1, epochs + 1):
                net.train()
                total, parts_sum, count = 0.0, {}, 0
                batches = balanced_batches(y_np, bs, rng)
                if steps is not None:  # a fresh random sample of the rows each epoch
                    batches = batches[:steps]
                for b, batch in enumerate(batches, 1):
                    n_rows = batch.shape[0]
                    batch, repeats = merge_repeats(batch) if merging else (batch, None)
                    idx = torch.from_numpy(batch).to(self.device_)
                    tb = None if tt is None else tt[idx]
                    wb = wt[idx] if repeats is None else wt[idx] * torch.from_numpy(repeats).to(wt)
                    loss, parts = self._loss(net, Xt[idx], yt[idx], wb, tb, train=True)
                    value = loss.item()
                    if not math.isfinite(value):
                        self._diverged(f"the training loss became {value}", self.n_epochs_ + 1, b)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    norm = nn.utils.clip_grad_norm_(net.parameters(), MAX_GRAD_NORM)
                    if not torch.isfinite(norm):
                        self._diverged("the gradients became non-finite", self.n_epochs_ + 1, b)
                    opt.step()
                    total += value * n_rows
                    for k, v in parts.items():
                        parts_sum[k] = parts_sum.get(k, 0.0) + v * n_rows
                    count += n_rows
                self.n_epochs_ += 1
                record = {"epoch": self.n_epochs_, "train_loss": total / count}
                record.update({f"train_{k}": v / count for k, v in parts_sum.items()})
                if val is not None:
                    record["val_auc"], record["val_loss"] = self._evaluate(val)
                self.history_.append(record)
                self._callbacks.on_epoch_end(self._stage, record)
                if loss_tol is not None:
                    if record["train_loss"] < best_loss - float(loss_tol):
                        best_loss, loss_stale = record["train_loss"], 0
                    else:
                        loss_stale += 1
                        if loss_stale >= int(self.patience) and epoch >= int(self.min_epochs):
                            break
                if early_stopping and epoch >= int(self.min_epochs):
                    key = (record["val_auc"], record["val_loss"])
                    if better(key, best, getattr(self, "loss_tol", None) or 0.0):
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
        self.threshold_ = contamination_threshold(self.decision_scores_, self.contamination)
        self.labels_ = (self.decision_scores_ > self.threshold_).astype(np.int64)

    def set_threshold(self, X: Any) -> None:
        """Recompute ``decision_scores_``, ``threshold_`` and ``labels_`` on rows ``X`` (e.g. after
        restoring other weights with :meth:`load_state_dict`)."""
        self._check_fitted()
        self._set_threshold(check_X(X, name="X", n_features=self.n_features_in_, dtype=np.float32))

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Put the weights of an earlier :meth:`state_dict` back into the fitted network."""
        self._check_fitted()
        self.model_.load_state_dict(state)

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
            with torch.inference_mode(), flush_denormals():
                for start in mine:
                    xb = torch.from_numpy(X[start : start + batch_size]).to(self.device_)
                    out[start : start + batch_size] = net(xb).float().cpu().numpy()

        with single_threaded_ops():
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
        check_int("batch_size", bs, 1)
        X = check_X(X, name="X", n_features=self.n_features_in_, dtype=np.float32)
        return self._scores(X, bs)

    def predict_proba(self, X: Any, batch_size: int | None = None) -> np.ndarray:
        """``[P(normal), P(anomaly)]`` per row, from the sigmoid of :meth:`decision_function`.

        Returns
        -------
        numpy.ndarray of shape (n_samples, 2)
        """
        p = sigmoid(self.decision_function(X, batch_size))
        return np.stack([1.0 - p, p], axis=1)

    def predict(self, X: Any, batch_size: int | None = None) -> np.ndarray:
        """1 for rows scoring above ``threshold_`` (the training ``contamination`` quantile), else 0."""
        return (self.decision_function(X, batch_size) > self.threshold_).astype(np.int64)

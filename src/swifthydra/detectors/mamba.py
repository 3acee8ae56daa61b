"""The large detector: tokeniser -> Mamba layers -> pooling -> linear head -> logit (docs/design.md §3-§4)."""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import nn

from swifthydra.callbacks import DETECTOR, DETECTOR_FINETUNE
from swifthydra.detectors._params import check_int
from swifthydra.detectors._persistence import scorer_numel
from swifthydra.detectors.base import NeuralDetector
from swifthydra.exceptions import InvalidInputError
from swifthydra.nn.mamba import MambaScorer


class MambaDetector(NeuralDetector):
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
    merge_repeats : bool, default=True
        Run each distinct row of a mini-batch through the network once, its loss multiplied by its
        repeats: the same loss (and, without dropout, gradient) as the whole batch, whose cycled
        half repeats a few known anomalies many times, for about half the arithmetic
        (docs/design.md §4.2). ``False`` runs every repeat, as before version 0.3.
    max_epochs : int, default=60
        Most training epochs in ``fit``.
    max_steps_per_epoch : int or None, default=32
        Most gradient steps in one epoch: on a large table an epoch is a random sample of
        ``max_steps_per_epoch * batch_size`` rows (fresh each epoch) instead of a full pass, so
        the cost of ``fit`` stops growing with the number of rows (docs/design.md §4.4).
        ``None``: every epoch is a full pass.
    patience : int, default=8
        Epochs without a better validation score before ``fit`` stops (best weights are kept).
        The score is the validation AUC-ROC of the held-out known anomalies against the
        held-out unlabeled rows, ties broken by the balanced validation loss.
    loss_tol : float or None, default=None
        Without a validation set (fewer than two known anomalies), stop once the training loss
        has not fallen more than ``loss_tol`` below its best for ``patience`` epochs (the last
        weights are kept): the loss of a handful of known anomalies keeps shrinking by tiny
        amounts as the network memorises them. ``None`` runs ``max_epochs``. With a validation
        set, an epoch whose validation AUC only ties the best counts as better only when its
        validation loss is more than ``loss_tol`` lower (``None``: any lower loss), so a
        detector at validation AUC 1 stops once its loss levels off.
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
        merge_repeats: bool = True,
        max_epochs: int = 60,
        max_steps_per_epoch: int | None = 32,
        patience: int = 8,
        loss_tol: float | None = None,
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
        self.merge_repeats = merge_repeats
        self.max_epochs = max_epochs
        self.max_steps_per_epoch = max_steps_per_epoch
        self.loss_tol = loss_tol
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
        check_int("max_tokens", self.max_tokens, 1)
        if not isinstance(self.merge_repeats, (bool, np.bool_)):
            raise InvalidInputError(f"merge_repeats must be True or False, got {self.merge_repeats!r}.")

    def _merges_repeats(self) -> bool:
        return bool(self.merge_repeats)

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
        return scorer_numel(n_features, self.tokenizer, self._mamba_config(), kwargs, standardize=True)

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

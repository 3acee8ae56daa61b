"""Conditional β-VAE: the generator ``G`` of Swift Hydra (docs/design.md §5).

* encoder ``q(z | x, y) = N(mu(x, y), diag(exp(logvar(x, y))))``;
* decoder ``p(x | z, y) = N(dec(z, y), I)`` on *standardised* features;
* prior ``p(z) = N(0, I)``; the condition ``y ∈ {0, 1}`` (1 = anomaly) enters both networks
  one-hot, concatenated to their input.

The loss per row is ``0.5 · ‖x_s − dec(z, y)‖² + β · KL(q(z | x, y) ‖ p(z))`` (the negative
ELBO of a unit-variance Gaussian likelihood up to a constant, with a β-weighted KL), where
``x_s = (x − mean) / std`` is standardised with the training data's statistics. Standardising
(instead of assuming features in [0, 1] with a Bernoulli likelihood) keeps the reconstruction term
balanced across features of any scale; the statistics live in the network's buffers, and every
public method takes and returns rows in the *original* units.

Anomalies are rare, so by default (``balance=True``) each epoch draws rows with replacement such
that both classes make up half of it: the decoder learns the ``y = 1`` condition from a handful
of known anomalies instead of treating them as noise.

:class:`CVAE` is the scikit-learn-style trainer (``fit``, ``partial_fit`` for per-episode
fine-tuning, ``encode``, ``decode``, ``sample``); :class:`CVAENet` is the torch module. For
saving without pickle, ``get_config()`` is JSON-able and ``state_dict()`` holds only tensors
(safetensors-ready); :meth:`CVAE.from_state` rebuilds a fitted model from the two.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator
from torch import nn

from swifthydra._torch import resolve_device
from swifthydra._validation import check_X, check_y
from swifthydra.callbacks import CVAE as CVAE_STAGE
from swifthydra.callbacks import CVAE_FINETUNE, as_callback_list
from swifthydra.detectors._training import single_threaded_ops
from swifthydra.exceptions import InvalidInputError, NotFittedError, TrainingDivergedError
from swifthydra.nn.optim import Adam

__all__ = ["CVAE", "CVAENet"]

FORMAT_VERSION = 1


def _resolve_seed(random_state: Any) -> int:
    if random_state is None:
        return int(np.random.SeedSequence().entropy % (2**62))
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(0, 2**62))
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(0, 2**31 - 1))
    if isinstance(random_state, (int, np.integer)) and not isinstance(random_state, bool):
        if random_state < 0:
            raise InvalidInputError(f"random_state must be >= 0, got {random_state}.")
        return int(random_state)
    raise InvalidInputError(
        f"random_state must be None, an int or a numpy Generator, got {type(random_state).__name__}."
    )


class CVAENet(nn.Module):
    """Encoder and decoder MLPs of the conditional VAE (works on standardised features).

    Parameters
    ----------
    n_features : int
        Row width ``d``.
    latent_dim : int
        Latent size ``k``.
    hidden : tuple of int
        Hidden widths of the encoder; the decoder mirrors them.
    n_classes : int
        Size of the one-hot condition.
    logvar_bounds : (float, float)
        Clamp of the encoder's log-variance (keeps ``exp`` finite).
    """

    def __init__(
        self,
        n_features: int,
        latent_dim: int = 16,
        hidden: tuple[int, ...] = (128, 128),
        n_classes: int = 2,
        logvar_bounds: tuple[float, float] = (-10.0, 10.0),
    ) -> None:
        super().__init__()
        self.n_features, self.latent_dim, self.n_classes = n_features, latent_dim, n_classes
        self.logvar_bounds = logvar_bounds

        def mlp(sizes: list[int]) -> nn.Sequential:
            layers: list[nn.Module] = []
            for i in range(len(sizes) - 1):
                layers += [nn.Linear(sizes[i], sizes[i + 1]), nn.SiLU()]
            return nn.Sequential(*layers)

        hidden = tuple(hidden)
        self.encoder = mlp([n_features + n_classes, *hidden])
        self.enc_mu = nn.Linear(hidden[-1], latent_dim)
        self.enc_logvar = nn.Linear(hidden[-1], latent_dim)
        self.decoder = nn.Sequential(
            mlp([latent_dim + n_classes, *hidden[::-1]]), nn.Linear(hidden[0], n_features)
        )
        # Standardisation of the features, part of the state_dict.
        self.register_buffer("x_mean", torch.zeros(n_features))
        self.register_buffer("x_std", torch.ones(n_features))

    def condition(self, y: torch.Tensor) -> torch.Tensor:
        """One-hot condition (B, n_classes) from integer labels (B,)."""
        return nn.functional.one_hot(y.long(), self.n_classes).to(self.x_mean.dtype)

    def standardize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.x_mean) / self.x_std

    def destandardize(self, x_s: torch.Tensor) -> torch.Tensor:
        return x_s * self.x_std + self.x_mean

    def encode(self, x_s: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior ``mu, logvar`` (B, k) of standardised rows ``x_s`` (B, d), condition ``c``."""
        h = self.encoder(torch.cat([x_s, c], dim=1))  # (B, H)
        return self.enc_mu(h), self.enc_logvar(h).clamp(*self.logvar_bounds)

    def decode(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Standardised reconstruction (B, d) of latent points ``z`` (B, k)."""
        return self.decoder(torch.cat([z, c], dim=1))

    def forward(
        self, x_s: torch.Tensor, c: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Reparameterised pass: ``recon (B, d), mu (B, k), logvar (B, k)``."""
        mu, logvar = self.encode(x_s, c)
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        z = mu + torch.exp(0.5 * logvar) * eps
        return self.decode(z, c), mu, logvar

    @staticmethod
    def loss_terms(
        x_s: torch.Tensor, recon: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-row reconstruction ``0.5‖x_s − recon‖²`` and ``KL(q ‖ N(0, I))``, each (B,)."""
        rec = 0.5 * (x_s - recon).pow(2).sum(dim=1)
        kl = -0.5 * (1.0 + logvar - mu.pow(2) - torch.exp(logvar)).sum(dim=1)
        return rec, kl


class CVAE(BaseEstimator):
    """Conditional β-VAE trainer (scikit-learn style); see the module docstring.

    Parameters
    ----------
    latent_dim : int, default=16
        Latent size ``k``.
    hidden : tuple of int, default=(128, 128)
        Hidden widths of the encoder (the decoder mirrors them).
    beta : float, default=1.0
        Weight of the KL term.
    epochs : int, default=100
        Epochs of ``fit``.
    batch_size : int, default=128
        Rows per gradient step.
    max_steps_per_epoch : int or None, default=32
        Most gradient steps in one epoch: on a large table an epoch is a fresh random sample of
        ``max_steps_per_epoch * batch_size`` rows, so training time stops growing with the rows
        (docs/design.md §4.4). ``None``: every epoch is a full pass.
    lr : float, default=1e-3
        Adam learning rate.
    weight_decay : float, default=0.0
        Adam weight decay.
    balance : bool, default=True
        Draw both classes equally often in every epoch (with replacement).
    max_grad_norm : float, default=10.0
        Gradient-norm clip.
    random_state : int, numpy Generator or None, default=None
        Seeds initialisation, minibatches and sampling; an int makes everything reproducible.
    device : str or torch.device, default="auto"
        ``"auto"`` uses CUDA when available.

    Attributes
    ----------
    net_ : CVAENet
    n_features_in_ : int
    device_ : torch.device
    seed_ : int
    loss_curve_ : list of dict
        Per epoch: ``loss``, ``reconstruction``, ``kl`` (means per row), ``epoch``.
    """

    def __init__(
        self,
        latent_dim: int = 16,
        hidden: tuple[int, ...] = (128, 128),
        beta: float = 1.0,
        epochs: int = 100,
        batch_size: int = 128,
        max_steps_per_epoch: int | None = 32,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        balance: bool = True,
        max_grad_norm: float = 10.0,
        random_state: Any = None,
        device: str | torch.device = "auto",
    ) -> None:
        self.latent_dim = latent_dim
        self.hidden = hidden
        self.beta = beta
        self.epochs = epochs
        self.batch_size = batch_size
        self.max_steps_per_epoch = max_steps_per_epoch
        self.lr = lr
        self.weight_decay = weight_decay
        self.balance = balance
        self.max_grad_norm = max_grad_norm
        self.random_state = random_state
        self.device = device

    # ------------------------------------------------------------------ validation
    def _validate_params(self) -> None:
        checks = {
            "latent_dim": isinstance(self.latent_dim, (int, np.integer)) and self.latent_dim >= 1,
            "hidden": len(tuple(self.hidden)) >= 1 and all(int(h) >= 1 for h in self.hidden),
            "beta": self.beta >= 0,
            "epochs": isinstance(self.epochs, (int, np.integer)) and self.epochs >= 0,
            "batch_size": isinstance(self.batch_size, (int, np.integer)) and self.batch_size >= 1,
            "max_steps_per_epoch": self.max_steps_per_epoch is None
            or (isinstance(self.max_steps_per_epoch, (int, np.integer)) and self.max_steps_per_epoch >= 1),
            "lr": self.lr > 0,
            "weight_decay": self.weight_decay >= 0,
            "max_grad_norm": self.max_grad_norm > 0,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            values = ", ".join(f"{n}={getattr(self, n)!r}" for n in bad)
            raise InvalidInputError(f"CVAE parameters out of range: {values}.")

    def _check_fitted(self) -> None:
        if not hasattr(self, "net_"):
            raise NotFittedError("This CVAE is not fitted yet: call fit(X, y) first.")

    def _labels(self, y: Any, n: int) -> torch.Tensor:
        """Labels (n,) on the device from a scalar or an array of 0/1."""
        if np.ndim(y) == 0:
            y = np.full(n, y)
        return torch.as_tensor(check_y(y, n), device=self.device_)

    def _rows(self, X: Any, name: str = "X") -> torch.Tensor:
        arr = check_X(X, name=name, n_features=self.n_features_in_, dtype=np.float32)
        return torch.as_tensor(arr, device=self.device_)

    # ------------------------------------------------------------------ training
    def _init(self, X: np.ndarray) -> None:
        self._validate_params()
        self.device_ = resolve_device(self.device)
        self.seed_ = _resolve_seed(self.random_state)
        self.n_features_in_ = X.shape[1]
        self._build(self.seed_)
        mean = X.mean(axis=0, dtype=np.float64)
        std = X.std(axis=0, dtype=np.float64)
        std = np.where(std > 1e-8 * np.maximum(1.0, np.abs(mean)), std, 1.0)
        self.net_.x_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.net_.x_std.copy_(torch.as_tensor(std, dtype=torch.float32))
        self.loss_curve_: list[dict[str, float]] = []

    def _build(self, seed: int) -> None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = CVAENet(
                self.n_features_in_, int(self.latent_dim), tuple(int(h) for h in self.hidden)
            )
        self.net_ = net.to(self.device_)
        self._np_rng = np.random.default_rng(seed)
        self._torch_gen = torch.Generator(device=self.device_).manual_seed(seed + 1)
        self._optimizer = None  # made by _train

    def _epoch_indices(self, y: np.ndarray) -> np.ndarray:
        n = y.shape[0]
        counts = np.bincount(y, minlength=2)
        if self.balance and counts.min() > 0:
            p = 0.5 / counts[y]
            return self._np_rng.choice(n, size=n, replace=True, p=p / p.sum())
        return self._np_rng.permutation(n)

    def _train(self, X: np.ndarray, y: np.ndarray, epochs: int, callbacks=None, stage: str = CVAE_STAGE) -> None:
        report = as_callback_list(callbacks)
        report.on_stage_begin(stage, int(epochs))
        net = self.net_
        if self._optimizer is None:
            self._optimizer = Adam(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        x_s = net.standardize(torch.as_tensor(X, device=self.device_))  # (n, d)
        y_t = torch.as_tensor(y, device=self.device_)
        c = net.condition(y_t)  # (n, C)
        net.train()
        with single_threaded_ops():
            self._epochs(x_s, c, y, epochs, report, stage)
        net.eval()
        report.on_stage_end(stage)

    def _epochs(self, x_s, c, y, epochs: int, report, stage: str) -> None:
        net = self.net_
        cap = None if self.max_steps_per_epoch is None else int(self.max_steps_per_epoch) * int(self.batch_size)
        for _ in range(epochs):
            idx_all = torch.as_tensor(self._epoch_indices(y)[:cap], device=self.device_)
            tot = np.zeros(3)
            for start in range(0, idx_all.shape[0], self.batch_size):
                idx = idx_all[start : start + self.batch_size]
                xb, cb = x_s[idx], c[idx]
                recon, mu, logvar = net(xb, cb, generator=self._torch_gen)
                rec, kl = net.loss_terms(xb, recon, mu, logvar)
                loss = (rec + self.beta * kl).mean()
                value = loss.item()
                if not np.isfinite(value):
                    self._diverged(f"the loss became {value}")
                self._optimizer.zero_grad()
                loss.backward()
                norm = nn.utils.clip_grad_norm_(net.parameters(), self.max_grad_norm)
                if not torch.isfinite(norm):
                    self._diverged("the gradients became non-finite")
                self._optimizer.step()
                m = idx.shape[0]
                tot += np.array([value, rec.mean().item(), kl.mean().item()]) * m
            tot /= max(idx_all.shape[0], 1)
            self.loss_curve_.append(
                {
                    "epoch": float(len(self.loss_curve_) + 1),
                    "loss": float(tot[0]),
                    "reconstruction": float(tot[1]),
                    "kl": float(tot[2]),
                }
            )
            report.on_epoch_end(stage, self.loss_curve_[-1])

    def _diverged(self, what: str) -> None:
        """Raise :class:`TrainingDivergedError` naming the epoch (1-based, counting every epoch)."""
        raise TrainingDivergedError(
            f"CVAE training diverged: {what} in epoch {len(self.loss_curve_) + 1}; lower lr "
            f"(now {self.lr:g}) or check the data for extreme values."
        )

    def build(self, X: Any) -> CVAE:
        """Create the network and the standardisation of rows ``X`` without training it.

        ``fit`` calls it; call it first yourself to draw the initialisation (which uses torch's
        global RNG) before other threads start training: the next ``fit`` on the same rows then
        trains this network, drawing only from the C-VAE's own generators.
        """
        Xa = check_X(X, name="X", dtype=np.float32)
        self._init(Xa)
        self._built_for = Xa.shape
        return self

    def fit(self, X: Any, y: Any, *, callbacks: Any = None) -> CVAE:
        """Train from scratch on rows ``X`` (n, d) with labels ``y`` (n,) in {0, 1}; ``callbacks``
        (:mod:`swifthydra.callbacks`) are told of each epoch, stage ``"C-VAE"``. Right after
        :meth:`build` on rows of the same shape, the network it built is trained."""
        Xa = check_X(X, name="X", dtype=np.float32)
        ya = check_y(y, Xa.shape[0])
        if getattr(self, "_built_for", None) != Xa.shape:
            self._init(Xa)
        self._built_for = None
        self._train(Xa, ya, int(self.epochs), callbacks)
        return self

    def partial_fit(self, X: Any, y: Any, epochs: int | None = None, *, callbacks: Any = None) -> CVAE:
        """Continue training for ``epochs`` (default 1) on ``X, y``; fits first if unfitted.

        The standardisation and the optimiser state of the first fit are kept, so this is the
        per-episode fine-tuning step on the combined data (real rows plus generated anomalies).
        """
        epochs = 1 if epochs is None else int(epochs)
        if epochs < 0:
            raise InvalidInputError(f"epochs must be >= 0, got {epochs}.")
        if not hasattr(self, "net_"):
            Xa = check_X(X, name="X", dtype=np.float32)
            self._init(Xa)
        else:
            Xa = check_X(X, name="X", n_features=self.n_features_in_, dtype=np.float32)
        ya = check_y(y, Xa.shape[0])
        self._train(Xa, ya, epochs, callbacks, CVAE_FINETUNE)
        return self

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def encode(self, X: Any, y: Any = 1) -> tuple[np.ndarray, np.ndarray]:
        """Posterior ``(mu, logvar)``, each (n, k) float32, of rows ``X`` under condition ``y``."""
        self._check_fitted()
        x = self._rows(X)
        net = self.net_
        mu, logvar = net.encode(net.standardize(x), net.condition(self._labels(y, x.shape[0])))
        return mu.cpu().numpy(), logvar.cpu().numpy()

    @torch.no_grad()
    def decode(self, z: Any, y: Any = 1) -> np.ndarray:
        """Rows (n, d) in original units decoded from latent points ``z`` (n, k)."""
        self._check_fitted()
        zt = torch.as_tensor(
            check_X(z, name="z", n_features=int(self.latent_dim), dtype=np.float32)
        )
        return self.decoder_fn(1)(zt.to(self.device_), y=self._labels(y, zt.shape[0])).cpu().numpy()

    @torch.no_grad()
    def reconstruct(self, X: Any, y: Any = 1) -> np.ndarray:
        """Decode the posterior means of ``X``: the deterministic reconstruction, (n, d)."""
        mu, _ = self.encode(X, y)
        return self.decode(mu, y)

    @torch.no_grad()
    def sample(self, n: int, y: Any = 1, random_state: Any = None) -> np.ndarray:
        """``n`` rows decoded from prior samples ``z ~ N(0, I)`` under condition ``y``.

        ``random_state=None`` continues the model's own seeded stream; an int gives a fixed draw.
        """
        self._check_fitted()
        if int(n) < 0:
            raise InvalidInputError(f"n must be >= 0, got {n}.")
        if random_state is None:
            gen = self._torch_gen
        else:
            gen = torch.Generator(device=self.device_).manual_seed(_resolve_seed(random_state))
        z = torch.randn((int(n), int(self.latent_dim)), generator=gen, device=self.device_)
        return self.decoder_fn(1)(z, y=self._labels(y, int(n))).cpu().numpy()

    def decoder_fn(self, y: int = 1) -> Callable[..., torch.Tensor]:
        """Tensor decoder for the RL environment: ``f(z) -> x`` in original units, no grad.

        ``z`` is a (B, k) tensor on ``device_``; the condition is ``y`` unless the call passes
        ``y=`` labels of shape (B,).
        """
        self._check_fitted()
        net = self.net_
        default = int(y)
        if default not in (0, 1):
            raise InvalidInputError(f"y must be 0 or 1, got {y!r}.")

        @torch.no_grad()
        def decode(z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
            if y is None:
                y = torch.full((z.shape[0],), default, dtype=torch.long, device=z.device)
            return net.destandardize(net.decode(z.to(net.x_mean.dtype), net.condition(y)))

        return decode

    @torch.no_grad()
    def loss(self, X: Any, y: Any) -> dict[str, float]:
        """Mean per-row ``loss``, ``reconstruction`` and ``kl`` on ``X, y`` (posterior means)."""
        self._check_fitted()
        x = self._rows(X)
        net = self.net_
        x_s, c = net.standardize(x), net.condition(self._labels(y, x.shape[0]))
        mu, logvar = net.encode(x_s, c)
        rec, kl = net.loss_terms(x_s, net.decode(mu, c), mu, logvar)
        return {
            "loss": float((rec + self.beta * kl).mean()),
            "reconstruction": float(rec.mean()),
            "kl": float(kl.mean()),
        }

    # ------------------------------------------------------------------ persistence
    def get_config(self) -> dict[str, Any]:
        """JSON-able description: parameters plus the fitted shape (no tensors)."""
        params = self.get_params()
        params["hidden"] = [int(h) for h in self.hidden]
        params["device"] = str(self.device)
        if not isinstance(params["random_state"], (int, type(None))):
            params["random_state"] = None
        cfg: dict[str, Any] = {"class": "CVAE", "format_version": FORMAT_VERSION, "params": params}
        if hasattr(self, "net_"):
            cfg["n_features_in"] = int(self.n_features_in_)
            cfg["seed"] = int(self.seed_)
        return cfg

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Network weights and standardisation buffers as contiguous CPU tensors."""
        self._check_fitted()
        # copies: on CPU ``.cpu()`` would share storage with the live parameters, and a kept
        # state would change with further training
        return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in self.net_.state_dict().items()}

    @classmethod
    def from_state(
        cls,
        config: dict[str, Any],
        state_dict: dict[str, torch.Tensor],
        device: str | torch.device | None = None,
    ) -> CVAE:
        """Rebuild a fitted model from :meth:`get_config` and :meth:`state_dict` output."""
        if config.get("class") != "CVAE" or "n_features_in" not in config:
            raise InvalidInputError("config does not describe a fitted CVAE.")
        if int(config.get("format_version", 0)) > FORMAT_VERSION:
            raise InvalidInputError(
                f"CVAE config format {config['format_version']} is newer than this version "
                f"supports ({FORMAT_VERSION}): upgrade swifthydra."
            )
        params = dict(config["params"])
        params["hidden"] = tuple(params["hidden"])
        if device is not None:
            params["device"] = device
        model = cls(**params)
        model._validate_params()
        model.device_ = resolve_device(model.device)
        model.seed_ = int(config["seed"])
        model.n_features_in_ = int(config["n_features_in"])
        model._build(model.seed_)
        try:
            model.net_.load_state_dict({k: v.to(model.device_) for k, v in state_dict.items()})
        except RuntimeError as exc:
            raise InvalidInputError(f"state_dict does not match the config: {exc}") from None
        model.net_.eval()
        model.loss_curve_ = []
        return model

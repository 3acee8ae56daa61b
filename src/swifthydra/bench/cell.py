"""Running one benchmark cell: fit, score, time, measure memory, catch errors.

:func:`execute_cell` is the single function every backend calls (in process, in a worker
process of the local pool, or as a Ray task); it never raises for a model's failure: the
returned row has ``status="error"`` and the error's one-line message and traceback.

Peak memory
-----------
``peak_memory_mb`` is the growth of the process's *resident set size* during the cell: on Linux
the kernel's high-water mark ``VmHWM`` is reset (``/proc/self/clear_refs``) before ``fit`` and
read after scoring, and the RSS before ``fit`` is subtracted. It counts every allocation in the
process (numpy, PyTorch, CatBoost's and XGBoost's C++ heaps, threads' stacks), which
``tracemalloc`` would miss. Freed memory is returned to the OS (``gc.collect`` and glibc's ``malloc_trim``) before the
baseline is taken, so a cell does not hide inside pages freed by the previous one.
``peak_rss_mb`` is the high-water mark itself. Where the high-water
mark cannot be reset (not Linux), ``getrusage``'s lifetime maximum is used and the method is
noted in the row's ``extra`` column.
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys
import time
import traceback
import warnings
from typing import Any

import numpy as np

from swifthydra.bench.store import now_iso

MAX_HISTORY_CHARS = 2_000_000
VIEW_POINTS = 400
CORE_LIBRARIES = ("numpy", "scikit-learn")


# ------------------------------------------------------------------------------ resources
def _status_kb(field: str) -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return float(line.split()[1])
    except OSError:
        return None
    return None


def _release_free_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc ``malloc_trim``).

    Without it, memory freed by the previous cell stays resident and the next cell's growth is
    under-counted (its allocations reuse those pages without raising the RSS).
    """
    import gc

    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def reset_peak_memory() -> str:
    """Reset the process's RSS high-water mark; returns the method used to measure the peak."""
    _release_free_memory()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return "vmhwm"
    except OSError:
        return "ru_maxrss"


def rss_mb() -> float:
    kb = _status_kb("VmRSS")
    if kb is not None:
        return kb / 1024.0
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024.0 if sys.platform != "darwin" else 1024.0**2)


def peak_rss_mb(method: str) -> float:
    if method == "vmhwm":
        kb = _status_kb("VmHWM")
        if kb is not None:
            return kb / 1024.0
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0**2 if sys.platform == "darwin" else 1024.0)


# ------------------------------------------------------------------------------ versions
def library_version(name: str) -> str | None:
    """Installed version of a distribution (``xgboost`` also finds ``xgboost-cpu``)."""
    from importlib import metadata

    for dist in (name, f"{name}-cpu"):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    mod = sys.modules.get(name.replace("-", "_"))
    return getattr(mod, "__version__", None)


def versions_for(libraries: tuple[str, ...] | list[str]) -> dict[str, str | None]:
    """Versions of Python, swifthydra, the core libraries and ``libraries``."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in ("swifthydra", *CORE_LIBRARIES, *libraries):
        if name not in out:
            out[name] = library_version(name)
    return out


# ------------------------------------------------------------------------------ helpers
def split_hash(*arrays: np.ndarray) -> str:
    """Short SHA-256 fingerprint of a split's arrays: equal for every model of a split."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def jsonable(obj: Any, _depth: int = 0) -> Any:
    """Convert ``history_``-like objects (dicts, lists, numpy, pandas) to JSON-safe values."""
    if _depth > 20:
        return str(obj)
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj if np.isfinite(obj) else None
    if isinstance(obj, np.generic):
        return jsonable(obj.item(), _depth + 1)
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist(), _depth + 1)
    if hasattr(obj, "to_dict") and hasattr(obj, "columns"):  # pandas DataFrame
        return jsonable(obj.to_dict(orient="list"), _depth + 1)
    if hasattr(obj, "detach") and hasattr(obj, "cpu"):  # torch tensor
        return jsonable(obj.detach().cpu().numpy(), _depth + 1)
    if isinstance(obj, dict):
        return {str(k): jsonable(v, _depth + 1) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v, _depth + 1) for v in obj]
    if hasattr(obj, "__dict__") and hasattr(obj, "__dataclass_fields__"):
        return jsonable(dict(obj.__dict__), _depth + 1)
    return str(obj)


def _unwrap(estimator: Any) -> Any:
    seen = 0
    while seen < 5 and not hasattr(estimator, "history_") and hasattr(estimator, "detector"):
        estimator = estimator.detector
        seen += 1
    return estimator


def view_2d(X_train, y_train, X_test, y_test, generated, seed: int) -> dict[str, Any]:
    """PCA (fitted on the training rows) coordinates of normal, anomalous and generated rows.

    Normal rows are test rows labelled 0; real anomalies are the test anomalies and the labelled
    training anomalies; at most ``VIEW_POINTS`` of each are kept.
    """
    from sklearn.decomposition import PCA

    rng = np.random.RandomState(seed)
    X_train = np.asarray(X_train, dtype=np.float64)
    pca = PCA(n_components=min(2, X_train.shape[1]), random_state=seed).fit(X_train)

    def project(A):
        A = np.asarray(A, dtype=np.float64)
        if len(A) == 0:
            return []
        if len(A) > VIEW_POINTS:
            A = A[rng.choice(len(A), VIEW_POINTS, replace=False)]
        P = pca.transform(A)
        if P.shape[1] == 1:
            P = np.hstack([P, np.zeros_like(P)])
        return np.round(P, 4).tolist()

    gen = np.asarray(generated, dtype=np.float64)
    if gen.ndim != 2 or gen.shape[1] != X_train.shape[1]:
        return {"error": f"generated_ has shape {gen.shape}, expected (n, {X_train.shape[1]})"}
    real = np.concatenate([np.asarray(X_test)[np.asarray(y_test) == 1],
                           X_train[np.asarray(y_train) == 1]])
    return {
        "method": "pca",
        "explained_variance_ratio": np.round(pca.explained_variance_ratio_, 4).tolist(),
        "normal": project(np.asarray(X_test)[np.asarray(y_test) == 0]),
        "anomaly": project(real),
        "generated": project(gen),
        "n_generated": int(len(gen)),
    }


def _one_line(exc: BaseException, limit: int = 500) -> str:
    msg = " ".join(str(exc).split())
    text = f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _limit_threads(threads: int, libraries: tuple[str, ...]):
    """Context manager limiting BLAS/OpenMP pools (and torch) to ``threads``."""
    import contextlib

    stack = contextlib.ExitStack()
    try:
        from threadpoolctl import threadpool_limits

        stack.enter_context(threadpool_limits(limits=threads))
    except ImportError:  # pragma: no cover - scikit-learn depends on threadpoolctl
        pass
    if "torch" in libraries or "torch" in sys.modules:
        try:
            import torch

            torch.set_num_threads(max(1, threads))
        except ImportError:  # pragma: no cover
            pass
    return stack


# ------------------------------------------------------------------------------ warm-up
_WARMED: set[tuple[str, str]] = set()
WARMUP_ROWS = 256


def warm_up(spec, params: dict[str, Any], n_features: int, threads: int) -> None:
    """Fit and score ``spec`` once per process on small random data, untimed.

    The first use of a library in a process pays for imports, JIT compilation (numba) and
    thread-pool start-up; without a warm-up that cost would land in the fit time of whichever
    cell happens to come first in each worker. Failures are ignored (the real cell reports them).
    """
    key = (spec.name, json.dumps(params, sort_keys=True, default=str))
    if key in _WARMED:
        return
    _WARMED.add(key)
    rng = np.random.RandomState(0)
    X = rng.rand(WARMUP_ROWS, n_features)
    y = np.zeros(WARMUP_ROWS, dtype=int)
    y[:12] = 1
    X[:12] += 1.0
    try:
        est = spec.build(0, threads, params)
        if spec.uses_labels:
            est.fit(X, y)
        else:
            est.fit(X)
        est.decision_function(X[:32])
    except Exception:
        pass


# ------------------------------------------------------------------------------ the cell
def base_row(cell: dict[str, Any], data: dict[str, Any] | None) -> dict[str, Any]:
    """The descriptive part of a result row (key, sizes, split hash)."""
    row = dict(cell)
    if data is not None:
        row.update(
            n_train=int(len(data["X_train"])),
            n_test=int(len(data["X_test"])),
            n_features=int(np.shape(data["X_train"])[1]),
            n_labeled=int(np.sum(data["y_train"])),
            n_test_anomalies=int(np.sum(data["y_test"])),
            split_hash=data.get("split_hash"),
        )
    return row


def execute_cell(task: dict[str, Any]) -> dict[str, Any]:
    """Fit and score one model on one split; return the result row (never raises for the model).

    Parameters
    ----------
    task : dict
        ``cell`` (the key columns), ``params`` (the model's overrides), ``threads`` (int) and
        ``data`` (``X_train``, ``y_train`` (weak labels), ``X_test``, ``y_test``, optionally
        ``test_types`` for the unseen-type scenario, and ``split_hash``).

    Returns
    -------
    dict
        A row for :meth:`ResultStore.add`.
    """
    from swifthydra.bench.models import get_model

    cell, data = task["cell"], task["data"]
    threads = int(task.get("threads") or 1)
    row = base_row(cell, data)
    row["started_at"] = now_iso()
    row["host"] = platform.node()
    extra: dict[str, Any] = {}
    try:
        spec = get_model(cell["model"])
    except Exception as exc:  # unknown model on a remote worker
        row.update(status="error", error=_one_line(exc), finished_at=now_iso())
        return row
    row["versions"] = versions_for(spec.libraries)

    X_train, y_train = data["X_train"], np.asarray(data["y_train"]).astype(int)
    X_test, y_test = data["X_test"], np.asarray(data["y_test"]).astype(int)
    if row["n_labeled"] < spec.min_labeled:
        row.update(
            status="skipped",
            error=(f"{spec.name} ({spec.supervision}) needs at least {spec.min_labeled} labelled "
                   f"anomalies; this split has {row['n_labeled']}."),
            finished_at=now_iso(),
        )
        return row
    from swifthydra.bench.augment import parse_generator_label

    gen_name, gen_params = parse_generator_label(cell.get("generator") or "none")
    sampler = gen_name != "none" and spec.generator_param is None
    if sampler and not spec.uses_labels:
        row.update(
            status="skipped",
            error=(f"generator {gen_name} not applicable: {spec.name} is {spec.supervision} "
                   "(it never sees labels, so it is not fitted on augmented rows)."),
            finished_at=now_iso(),
        )
        return row

    try:
        with _limit_threads(threads, spec.libraries), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            params = task.get("params") or {}
            if task.get("warmup", True) and spec.warmup:
                warm_up(spec, params, X_train.shape[1], threads)
            if sampler and task.get("warmup", True):
                from swifthydra.bench.augment import warm_up_generator

                warm_up_generator(gen_name, gen_params, X_train.shape[1])
            estimator = spec.build(cell["seed"], threads, params)
            method = reset_peak_memory()
            base_rss = rss_mb()
            sampler_obj = None
            t0 = time.perf_counter()
            if sampler:  # generation time is part of the fit time
                from swifthydra.bench.augment import fit_augmented

                sampler_obj, extra["generator"] = fit_augmented(
                    estimator, X_train, y_train, gen_name, gen_params, int(cell["seed"]),
                    make_detector=lambda: spec.build(cell["seed"], threads, params),
                    threads=threads)
            elif spec.uses_labels:
                estimator.fit(X_train, y_train)
            else:
                estimator.fit(X_train)
            t1 = time.perf_counter()
            scores = estimator.decision_function(X_test)
            t2 = time.perf_counter()
        peak = peak_rss_mb(method)
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        if scores.shape[0] != len(X_test):
            raise ValueError(
                f"decision_function returned {scores.shape[0]} scores for {len(X_test)} rows"
            )
        if not np.isfinite(scores).all():
            raise ValueError(f"decision_function returned {int((~np.isfinite(scores)).sum())} "
                             "non-finite scores")
        from sklearn.metrics import average_precision_score, roc_auc_score

        types = data.get("test_types")
        if types is not None:  # unseen-type scenario: metrics per anomaly type
            types = np.asarray(types).astype(str)
            train_type = cell["scenario"].split(":", 1)[1]
            per_type = {}
            for kind in sorted(set(types) - {"normal"}):
                mask = (types == "normal") | (types == kind)
                per_type[kind] = {
                    "auc_roc": float(roc_auc_score(y_test[mask], scores[mask])),
                    "auc_pr": float(average_precision_score(y_test[mask], scores[mask])),
                }
            extra["per_type"] = per_type
            unseen = (types != train_type)
            auc_roc = float(roc_auc_score(y_test[unseen], scores[unseen]))
            auc_pr = float(average_precision_score(y_test[unseen], scores[unseen]))
            extra["all_types"] = {"auc_roc": float(roc_auc_score(y_test, scores)),
                                  "auc_pr": float(average_precision_score(y_test, scores))}
        else:
            auc_roc = float(roc_auc_score(y_test, scores))
            auc_pr = float(average_precision_score(y_test, scores))
        fit_s, score_s = t1 - t0, t2 - t1
        row.update(
            status="ok",
            auc_roc=auc_roc,
            auc_pr=auc_pr,
            fit_seconds=fit_s,
            score_seconds=score_s,
            rows_per_second=len(X_test) / score_s if score_s > 0 else None,
            peak_memory_mb=max(0.0, peak - base_rss),
            peak_rss_mb=peak,
        )
        if method != "vmhwm":
            extra["peak_memory_method"] = method
        if spec.generator_param is not None:
            extra["generator"] = {"name": gen_name, "applied": f"model parameter "
                                  f"{spec.generator_param}={gen_name!r}"}
        fitted = _unwrap(estimator)
        history = getattr(fitted, "history_", None)
        generated = getattr(fitted, "generated_", None)
        if sampler_obj is not None:
            generated = sampler_obj.generated_
        if history is not None or generated is not None:
            payload: dict[str, Any] = {"history": jsonable(history)}
            if generated is not None:
                try:
                    payload["view"] = view_2d(X_train, y_train, X_test, y_test, generated,
                                              int(cell["seed"]))
                except Exception as exc:  # the view is a nice-to-have
                    payload["view"] = {"error": _one_line(exc)}
            text = json.dumps(payload, allow_nan=False, default=str)
            if len(text) > MAX_HISTORY_CHARS:
                payload.pop("view", None)
                text = json.dumps(payload, allow_nan=False, default=str)
            row["history"] = text if len(text) <= MAX_HISTORY_CHARS else json.dumps(
                {"error": f"history_ too large ({len(text)} characters)"})
    except Exception as exc:
        row.update(status="error", error=_one_line(exc),
                   traceback="".join(traceback.format_exc(limit=20))[-8000:])
    if extra:
        row["extra"] = json.dumps(extra)
    row["finished_at"] = now_iso()
    return row


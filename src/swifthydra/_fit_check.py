"""The self-check at the end of ``swifthydra fit``: what was written scores as the model in memory.

:func:`check_saved_model` runs on the complete temporary model directory, before it is renamed
into place (the ``verify`` of :func:`swifthydra.io.save_model_dir`). It reloads the model and its
preprocessing from the files, reads the training table again exactly as ``swifthydra score``
reads it (in chunks, with the *reloaded* preprocessing), scores a sample of the training rows and
compares with the scores of the model in memory on the features it was trained on. Any
difference is a bug (a saved model that scores differently from the one that was fitted, as a
preprocessing saved with its categorical columns in another order did): the check raises, the
temporary directory is removed, and an old model at the target path is left as it was.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from swifthydra.exceptions import SwiftHydraError

SAMPLE_ROWS = 512
#: scores may differ by float rounding only; a misaligned feature moves them by orders of
#: magnitude more.
RTOL = ATOL = 1e-4


class SelfCheckError(SwiftHydraError, RuntimeError):
    """The model read back from its files does not score like the model that was fitted."""


def _fail(what: str, target: Path, replacing: bool) -> SelfCheckError:
    kept = f"the model already at {target} is kept unchanged" if replacing else f"nothing was written to {target}"
    return SelfCheckError(
        f"self-check failed: {what}. The new model was not saved ({kept}). This is a bug in swifthydra: "
        "please report it with the command line and the column types of the table."
    )


def _reread(tmp_dir, est, X_train, data, target, replacing, sample, seed, chunk_rows):
    """Load ``tmp_dir``, read ``sample`` rows of ``data`` back through its preprocessing as
    ``score`` does and score them: ``(state, rows, features, scores)``."""
    from swifthydra.hydra import SwiftHydra
    from swifthydra.tabular.model import read_table_state, table_chunks
    from swifthydra.tabular.table import table_columns

    _, state = read_table_state(tmp_dir)
    # on the device the model in memory runs on: the check is about the files, not about the
    # rounding of another device's kernels (`score` itself loads the model on the CPU)
    back = SwiftHydra.load(tmp_dir, device=getattr(est, "device", None))
    if back.n_features_in_ != X_train.shape[1]:
        raise _fail(f"the saved model expects {back.n_features_in_} features, the model in memory "
                    f"{X_train.shape[1]}", target, replacing)
    if back.threshold_ != est.threshold_:
        raise _fail(f"the threshold reads back as {back.threshold_!r} instead of {est.threshold_!r}", target,
                    replacing)
    n = X_train.shape[0]
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(n, size=min(sample, n), replace=False))
    X_back = np.empty((len(rows), X_train.shape[1]))
    seen = 0
    with table_chunks(state, data, table_columns(data), chunk_rows, None) as chunks:
        for start, chunk, X in chunks:
            if X.shape[1] != X_train.shape[1]:
                raise _fail(f"the reloaded preprocessing makes {X.shape[1]} features, the model in memory was "
                            f"trained on {X_train.shape[1]}", target, replacing)
            lo, hi = np.searchsorted(rows, [start, start + len(chunk)])
            X_back[lo:hi] = X[rows[lo:hi] - start]
            seen = start + len(chunk)
    if seen != n:
        raise _fail(f"{data} reads as {seen} data rows when scored but training used {n}", target, replacing)
    return state, rows, X_back, back.decision_function(X_back)


def check_saved_model(
    tmp_dir: Path,
    est,
    X_train: np.ndarray,
    data: Path,
    *,
    target: Path,
    replacing: bool,
    sample: int = SAMPLE_ROWS,
    seed: int = 0,
    chunk_rows: int = 100_000,
) -> dict:
    """Reload ``tmp_dir`` and compare its scores of ``sample`` training rows with ``est``'s.

    ``X_train`` are the features the model in memory was fitted on, one row per data row of
    ``data`` (the training table); ``target`` and ``replacing`` only word the error. Returns
    ``{"rows": rows compared, "max_difference": largest |score difference|}``; raises
    :class:`SelfCheckError` naming what differs.
    """
    try:
        state, rows, X_back, got = _reread(tmp_dir, est, X_train, data, target, replacing, sample, seed, chunk_rows)
    except SelfCheckError:
        raise
    except SwiftHydraError as exc:  # what `score` would say to the user of the new model
        raise _fail(f"the saved model cannot score its own training table as `swifthydra score` would ({exc})",
                    target, replacing) from None
    mem = est.decision_function(X_train[rows])
    diff = np.abs(got - mem)
    bad = ~np.isclose(got, mem, rtol=RTOL, atol=ATOL)
    # the features themselves: equal up to float parsing (a feature the network ignores still counts)
    feat_bad = np.flatnonzero((~np.isclose(X_back, X_train[rows], rtol=1e-9, atol=1e-12)).any(axis=0))
    if bad.any() or len(feat_bad):
        names = list(state.get("feature_names") or state["preprocessor"].feature_names_)
        features = (
            "features that differ after reloading the preprocessing: "
            + ", ".join(repr(names[j]) if j < len(names) else f"#{j}" for j in feat_bad[:8])
            + (f" and {len(feat_bad) - 8} more" if len(feat_bad) > 8 else "")
            if len(feat_bad) else "the features are identical, the reloaded network scores differently"
        )
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            scores = (
                f"the model read back from its files scores {int(bad.sum())} of {len(rows)} sampled training rows "
                f"differently from the model in memory (max |score difference| {diff.max():.3g}; first at data row "
                f"{int(rows[first]) + 1}: {got[first]:.6g} instead of {mem[first]:.6g}); "
            )
        else:
            scores = f"the {len(rows)} sampled training rows score alike, but "
        raise _fail(scores + features, target, replacing)
    return {"rows": len(rows), "max_difference": float(diff.max()) if len(diff) else 0.0}

"""Hostile and broken input at every entry point, as one table (issue 7).

Each row is ``(entry point, input, expected outcome)``: either a ``swifthydra`` exception type
with a message that names the problem (Python API), an exit status with one ``error:`` line and no
traceback (command line), or a documented behaviour that is checked (e.g. constant columns keep
working with finite scores). ``CASES`` is the table; its length is the "bad inputs tried" count of
docs/reliability.md.

Decided behaviours (tested here):

* constant columns are kept (standardised to 0) and scores stay finite; a column is constant
  when its std is within float64 rounding of 0 relative to its mean, so data of tiny scale
  (1e-200) is standardised, not flattened;
* all rows identical is an error for SwiftHydra (nothing to tell apart); MambaDetector and MoME
  accept it (their scores come out constant: inside SwiftHydra a training split of nearly
  constant data may be all identical);
* ``fit`` needs 8 rows (SwiftHydra) or 2 rows (MambaDetector/MoME); scoring one row works;
* values beyond 1e30 in magnitude are an error ("rescale"); anything finite below that scores
  (a row far outside the training range scores as extreme, never overflows);
* integers up to int64/uint64 max are fine; Python integers beyond float64 are an error;
* numeric text (``np.array([["1.5"]])``) is converted; other text, complex, dates are errors;
  pandas nullable columns with ``pd.NA`` and masked array entries count as missing (NaN error);
* a non-finite loss, gradient or score while training raises ``TrainingDivergedError`` naming
  the epoch (and, inside SwiftHydra, the episode);
* tables (``read_table``, ``swifthydra score``): a CSV row with more fields than the header is an
  error naming its line (also the first data row, which pandas would silently turn into a row
  index); rows with fewer fields have missing values; the separator of a ``.csv``/``.txt`` is
  detected (``,``, ``;``, tab, ``|``); a column whose values are all numbers is numeric even when
  pandas reads it as text or objects (integers beyond int64, numbers stored as strings);
* ``swifthydra bench``: a dataset that cannot be loaded or split records its cells as errors,
  the run goes on, and the command ends with one ``error:`` line per such dataset and exit 1;
  bad arguments exit 2 before anything runs.
"""

from __future__ import annotations

import io
import json
import re
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse
import torch
from typer.testing import CliRunner

from _presets import MICRO as _MICRO
from swifthydra import SwiftHydra
from swifthydra.cli import app
from swifthydra.datasets import load_adbench, read_table
from swifthydra.datasets.loader import load_npz
from swifthydra.detectors import MambaDetector, MoME
from swifthydra.exceptions import (
    CorruptFileError,
    DatasetNotAvailableError,
    InvalidInputError,
    ModelFileError,
    NotFittedError,
    SwiftHydraError,
    TrainingDivergedError,
    UnknownDatasetError,
)
from swifthydra.generative import CVAE
from swifthydra.io import CONFIG_FILE, WEIGHTS_FILE

MICRO = {**_MICRO, "random_state": 0}
DETECTOR = dict(d_model=4, n_layers=1, max_epochs=2, min_epochs=1, random_state=0)

N, D = 60, 3
_rng = np.random.default_rng(0)
X0 = _rng.normal(size=(N, D))
X0[:6] += 4.0
Y0 = np.zeros(N, dtype=np.int64)
Y0[:4] = 1


def _y(n=N, k=4):
    y = np.zeros(n, dtype=np.int64)
    y[:k] = 1
    return y


def _with(value, row=3, col=1, X=X0):
    X = X.astype(object if isinstance(value, (str, int)) and not isinstance(value, bool) else X.dtype)
    X = X.copy()
    X[row, col] = value
    return X


# ----------------------------------------------------------------------------- expectations
def raises(exc, match):
    return ("raises", exc, match)


def ok(check=None):
    return ("ok", check)


def exits(code, match):
    return ("exit", code, match)


def finite(n=None):
    def check(s):
        s = np.asarray(s)
        assert np.isfinite(s).all()
        if n is not None:
            assert s.shape == (n,)

    return check


def varied(n=None):
    """Finite scores that are not all the same (the data was not flattened to a constant)."""

    def check(s):
        finite(n)(s)
        assert np.ptp(s) > 0

    return check


# ------------------------------------------------------------------------------ entry points
def fit(ctx, payload):
    X, y = payload
    model = SwiftHydra(**MICRO).fit(X, y)
    return model.decision_function(X)


def fit_params(ctx, payload):
    params, X, y = payload
    model = SwiftHydra(**{**MICRO, **params}).fit(X, y)
    return model.decision_function(X)


def score(ctx, X):
    return ctx.fitted.decision_function(X)


def predict_proba(ctx, payload):
    X, method = payload
    p = ctx.fitted.predict_proba(X, method=method)
    assert p.shape == (len(X), 2) and ((p >= 0) & (p <= 1)).all() and np.allclose(p.sum(1), 1)
    return p[:, 1]


def predict(ctx, X):
    labels = ctx.fitted.predict(X)
    assert set(np.unique(labels)) <= {0, 1}
    return labels


def unfitted(ctx, X):
    return SwiftHydra().decision_function(X)


def detector_fit(ctx, payload):
    cls, X, y, kw = payload
    return cls(**{**DETECTOR, **kw}).fit(X, y).decision_function(X)


def detector_fit_kw(ctx, payload):
    cls, X, y, fit_kw = payload
    return cls(**DETECTOR).fit(X, y, **fit_kw).decision_function(X)


def detector_score(ctx, payload):
    X, batch_size = payload
    return ctx.detector.decision_function(X, batch_size=batch_size)


def cvae_fit(ctx, payload):
    lr, X, y = payload
    model = CVAE(lr=lr, epochs=4, latent_dim=2, hidden=(8,), random_state=0).fit(X, y)
    return model.sample(5)


def adbench(ctx, payload):
    name, files, kw = payload
    for rel, content in files.items():
        path = ctx.tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    X, y = load_adbench(name, data_dir=ctx.tmp_path, **kw)
    assert X.ndim == 2 and len(X) == len(y)
    return X


def npz(ctx, content):
    path = ctx.tmp_path / "data.npz"
    path.write_bytes(content)
    return load_npz(path)[0]


def table(ctx, payload):
    name, content, kw = payload
    path = ctx.tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, pd.DataFrame):
        content.to_parquet(path)
    elif content is not None:
        path.write_text(content)
    t = read_table(path, **kw)
    assert t.X.dtype == np.float64 and np.isfinite(t.X).all() and t.X.shape[1] == len(t.feature_names)
    return t


def table_then_fit(ctx, payload):
    name, content = payload
    path = ctx.tmp_path / name
    path.write_text(content)
    t = read_table(path)
    return SwiftHydra(**MICRO).fit(t.X)


def load(ctx, damage):
    path = ctx.tmp_path / "model"
    import shutil

    shutil.copytree(ctx.model_dir, path)
    damage(path)
    model = SwiftHydra.load(path)
    return model.decision_function(X0)


def cli(ctx, args):
    args = [a.replace("{tmp}", str(ctx.tmp_path)).replace("{model}", str(ctx.model_dir)) for a in args]
    _prepare_cli_files(ctx.tmp_path)
    return CliRunner().invoke(app, args)


def cli_table_model(ctx, args):
    """Rows for `swifthydra fit` / `swifthydra score`, with a model fitted by `swifthydra fit`."""
    if ctx.table_model_dir is None:
        pytest.skip("`swifthydra fit` / `swifthydra score` are not available")
    import shutil

    damaged = ctx.tmp_path / "damaged_model"
    shutil.copytree(ctx.table_model_dir, damaged)
    _flip_byte(WEIGHTS_FILE, 500)(damaged)
    for name, content in SCORE_FILES.items():
        (ctx.tmp_path / name).write_text(content)
    return cli(ctx, [a.replace("{tmodel}", str(ctx.table_model_dir)) for a in args])


# --------------------------------------------------------------------------------- builders
def _npz_bytes(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _npy_bytes(arr) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def _wine_like(seed=0, anomalies=10):
    rng = np.random.default_rng(seed)
    y = np.zeros(129, dtype=np.int64)
    y[:anomalies] = 1
    return _npz_bytes(X=rng.normal(size=(129, 13)), y=y)


def _cardio_like(anomalies):
    y = np.zeros(1831, dtype=np.int64)
    y[:anomalies] = 1
    return _npz_bytes(X=np.random.default_rng(1).normal(size=(1831, 21)), y=y)


_GOOD_NPZ = _npz_bytes(X=np.random.default_rng(2).normal(size=(50, 3)), y=_y(50, 5))


def _prepare_cli_files(tmp: Path) -> None:
    (tmp / "Classical").mkdir(exist_ok=True)
    (tmp / "Classical" / "45_wine.npz").write_bytes(_wine_like())  # right shape, wrong checksum
    (tmp / "broken.npz").write_bytes(b"not a zip archive")
    (tmp / "nan.npz").write_bytes(_npz_bytes(X=np.full((50, 3), np.nan), y=_y(50, 5)))
    (tmp / "one.npz").write_bytes(_npz_bytes(X=np.zeros((1, 3)), y=np.ones(1, dtype=np.int64)))
    (tmp / "text.sqlite").write_text("hello")


def _edit_config(fn):
    def damage(path):
        meta = json.loads((path / CONFIG_FILE).read_text())
        fn(meta)
        (path / CONFIG_FILE).write_text(json.dumps(meta))

    return damage


def _rewrite_weights(fn):
    """Replace the tensors and update the checksum, so only the content checks can catch it."""

    def damage(path):
        from safetensors.torch import load_file, save_file

        tensors = fn(load_file(str(path / WEIGHTS_FILE)))
        save_file(tensors, str(path / WEIGHTS_FILE))
        import hashlib

        meta = json.loads((path / CONFIG_FILE).read_text())
        meta["weights_sha256"] = hashlib.sha256((path / WEIGHTS_FILE).read_bytes()).hexdigest()
        (path / CONFIG_FILE).write_text(json.dumps(meta))

    return damage


def _flip_byte(name, offset):
    def damage(path):
        data = bytearray((path / name).read_bytes())
        data[offset % len(data)] ^= 0xFF
        (path / name).write_bytes(bytes(data))

    return damage


def _truncate(name, keep):
    def damage(path):
        data = (path / name).read_bytes()
        (path / name).write_bytes(data[: int(len(data) * keep)])

    return damage


def _delete(name):
    return lambda path: (path / name).unlink()


def _write(name, content):
    return lambda path: (path / name).write_bytes(content)


def _nan_first_float(tensors):
    key = next(k for k, v in tensors.items() if k.startswith("detector.") and v.is_floating_point())
    tensors[key] = torch.full_like(tensors[key], float("nan"))
    return tensors


def _reshape_one(tensors):
    key = next(k for k, v in tensors.items() if k.startswith("mome.") and v.ndim == 2)
    tensors[key] = torch.zeros(tensors[key].shape[0] + 1, tensors[key].shape[1])
    return tensors


def _transpose_one(tensors):
    """A 2-D tensor of another shape but as many values: the size check passes, the shapes do not."""
    key = next(k for k, v in tensors.items() if k.startswith("detector.") and v.ndim == 2 and v.shape[0] != v.shape[1])
    tensors[key] = tensors[key].t().contiguous()
    return tensors


def _huge_experts(meta):
    meta["config"]["mome"]["architecture"]["n_experts"] = 10**9


def _huge_features(meta):
    meta["config"]["n_features_in"] = 10**9
    meta["config"]["detector"]["n_features_in"] = 10**9


DF_TEXT = pd.DataFrame({"a": np.arange(N, dtype=float), "b": ["x"] * N, "c": np.ones(N)})
DF_NA = pd.DataFrame({"a": pd.array([1, None] + list(range(N - 2)), dtype="Int64"), "b": X0[:, 1]})
DF_OK = pd.DataFrame(X0, columns=["a", "b", "c"])
MASKED = np.ma.array(X0, mask=np.zeros_like(X0, dtype=bool))
MASKED.mask[5, 2] = True
IDENTICAL = np.tile(X0[:1], (N, 1))
CONST_COL = np.c_[X0, np.full(N, 7.0)]
BIG_INT = (np.iinfo(np.int64).max - np.arange(N * D, dtype=np.int64).reshape(N, D) * 10**15)
BIG_UINT = (np.iinfo(np.uint64).max - np.arange(N * D, dtype=np.uint64).reshape(N, D) * np.uint64(10**16))

SCORE_FILES = {
    "s_good.csv": "a,b,c\n1,2,3\n4,5,6\n",
    "s_nan.csv": "a,b,c\n1,,3\n4,5,6\n",
    "s_inf.csv": "a,b,c\n1,inf,3\n4,5,6\n",
    "s_text.csv": "a,b,c\n1,x,3\n4,5,6\n",
    "s_huge.csv": "a,b,c\n1,1e300,3\n4,5,6\n",
    "s_missing.csv": "a,b\n1,2\n",
    "s_extra.csv": "a,b,c,d\n1,2,3,4\n",
    "s_ragged.csv": "a,b,c\n1,2,3\n4,5,6,7\n",
    "s_ragged_label.csv": "a,b,c,label\n1,2,3,0\n4,5,6,1\n7,8,9,0,1\n",
    "s_ragged_first.csv": "a,b,c\n1,2,3,4\n5,6,7,8\n",
    "s_semicolon.csv": "a;b;c\n1;2;3\n4;5;6\n",
    "s_bigint.csv": "a,b,c\n1,99999999999999999999999999,3\n4,5,6\n",
    "s_hugeint.csv": f"a,b,c\n1,{10**40},3\n4,5,6\n",
    "s_fake.parquet": "a,b,c\n1,2,3\n",
    "s_header.csv": "a,b,c\n",
    "s_empty.csv": "",
    "s_exists.csv": "x",
    "f_identical.csv": "a,b\n" + "1,2\n" * 20,
    "f_seven.csv": "a,b\n" + "".join(f"{i},{i * i}\n" for i in range(7)),
    "f_huge.csv": "a,b\n" + "".join(f"{i},{1e300 if i == 2 else i}\n" for i in range(20)),
}
CSV_OK = "a,b,label\n" + "\n".join(f"{i},{(i * 7) % 5},{int(i < 3)}" for i in range(30)) + "\n"

# ------------------------------------------------------------------------------------ the table
CASES = [
    # ---- SwiftHydra.fit: bad X
    ("fit", "X with NaN", fit, (_with(np.nan), Y0), raises(InvalidInputError, r"NaN \(first at row 3, column 1\)")),
    ("fit", "X with +inf", fit, (_with(np.inf), Y0), raises(InvalidInputError, "infinite")),
    ("fit", "X with -inf", fit, (_with(-np.inf), Y0), raises(InvalidInputError, "infinite")),
    ("fit", "X None", fit, (None, None), raises(InvalidInputError, "is None")),
    ("fit", "empty X (0 rows)", fit, (np.zeros((0, D)), None), raises(InvalidInputError, "0 rows")),
    ("fit", "one row", fit, (X0[:1], None), raises(InvalidInputError, "1 rows.*at least 8")),
    ("fit", "seven rows", fit, (X0[:7], None), raises(InvalidInputError, "7 rows.*at least 8")),
    ("fit", "no columns", fit, (np.zeros((N, 0)), None), raises(InvalidInputError, "0 feature")),
    ("fit", "1-D X", fit, (X0[:, 0], None), raises(InvalidInputError, r"2-D.*reshape\(-1, 1\)")),
    ("fit", "3-D X", fit, (X0.reshape(N, D, 1), None), raises(InvalidInputError, "must be 2-D.*3-D")),
    ("fit", "pandas Series", fit, (pd.Series(X0[:, 0]), None), raises(InvalidInputError, "2-D")),
    ("fit", "text values", fit, (_with("abc"), Y0), raises(InvalidInputError, "non-numeric values")),
    ("fit", "text column in a DataFrame", fit, (DF_TEXT, None), raises(InvalidInputError, r"non-numeric columns \['b'\]")),
    ("fit", "pd.NA in a nullable column", fit, (DF_NA, None), raises(InvalidInputError, "NaN")),
    ("fit", "masked entry", fit, (MASKED, Y0), raises(InvalidInputError, r"NaN \(first at row 5, column 2\)")),
    ("fit", "complex X", fit, (X0 + 1j, Y0), raises(InvalidInputError, "complex")),
    ("fit", "datetime X", fit, (np.zeros((N, D), dtype="datetime64[s]"), None), raises(InvalidInputError, "unsupported dtype")),
    ("fit", "ragged rows", fit, ([[1.0, 2.0]] * 10 + [[3.0]], None), raises(InvalidInputError, "cannot be read|non-numeric")),
    ("fit", "sparse matrix", fit, (scipy.sparse.csr_matrix(X0), Y0), raises(InvalidInputError, "sparse")),
    ("fit", "value 1e300", fit, (_with(1e300), Y0), raises(InvalidInputError, "magnitude 1e\\+300.*rescale")),
    ("fit", "value -1e31", fit, (_with(-1e31), Y0), raises(InvalidInputError, "magnitude.*rescale")),
    ("fit", "Python int beyond float64", fit, (_with(10**400), Y0), raises(InvalidInputError, "too large for float64")),
    ("fit", "all rows identical", fit, (IDENTICAL, Y0), raises(InvalidInputError, "rows of X are identical")),
    ("fit", "all rows identical, no labels", fit, (IDENTICAL, None), raises(InvalidInputError, "identical")),
    # ---- SwiftHydra.fit: bad y
    ("fit", "all labels 1", fit, (X0, np.ones(N)), raises(InvalidInputError, "every row is labelled an anomaly")),
    ("fit", "label 2", fit, (X0, np.where(Y0 == 1, 2, 0)), raises(InvalidInputError, r"only 0.*found \[2.0\]")),
    ("fit", "label -1", fit, (X0, -Y0), raises(InvalidInputError, r"found \[-1.0\]")),
    ("fit", "label 0.5", fit, (X0, Y0 * 0.5), raises(InvalidInputError, r"found \[0.5\]")),
    ("fit", "label NaN", fit, (X0, np.where(Y0 == 1, np.nan, 0.0)), raises(InvalidInputError, r"found \[nan\]")),
    ("fit", "text labels", fit, (X0, np.array(["a"] * N)), raises(InvalidInputError, "0 .*1")),
    ("fit", "y one short", fit, (X0, Y0[:-1]), raises(InvalidInputError, f"{N - 1} labels but X has {N} rows")),
    ("fit", "y too long", fit, (X0, np.r_[Y0, 0, 0]), raises(InvalidInputError, f"{N + 2} labels but X has {N} rows")),
    ("fit", "y 2-D", fit, (X0, np.c_[Y0, Y0]), raises(InvalidInputError, "1-D")),
    ("fit", "y beyond float64", fit, (X0, [10**400] + [0] * (N - 1)), raises(InvalidInputError, "0 .*1")),
    ("fit", "diverging detector (lr 1e30)", fit_params, ({"detector_params": {**MICRO["detector_params"], "lr": 1e30}}, X0, Y0),
     raises(TrainingDivergedError, r"episode 0 \(training the large detector\): MambaDetector training diverged.*epoch 1")),
    # ---- SwiftHydra.fit: documented behaviours
    ("fit", "constant column kept", fit, (CONST_COL, Y0), ok(varied(N))),
    ("fit", "every column constant but one", fit, (np.c_[X0[:, :1], np.ones((N, 2))], Y0), ok(varied(N))),
    ("fit", "one column", fit, (X0[:, :1], Y0), ok(varied(N))),
    ("fit", "exactly 8 rows", fit, (X0[:8], _y(8, 2)), ok(finite(8))),
    ("fit", "8 rows, no labels", fit, (X0[:8], None), ok(finite(8))),
    ("fit", "all labels 0 (pseudo-labels)", fit, (X0, np.zeros(N)), ok(varied(N))),
    ("fit", "bool labels", fit, (X0, Y0.astype(bool)), ok(varied(N))),
    ("fit", "text labels '0'/'1'", fit, (X0, Y0.astype(str)), ok(varied(N))),
    ("fit", "nullable Int64 labels", fit, (X0, pd.Series(Y0, dtype="Int64")), ok(varied(N))),
    ("fit", "int64 near max", fit, (BIG_INT, Y0), ok(varied(N))),
    ("fit", "uint64 near max", fit, (BIG_UINT, Y0), ok(varied(N))),
    ("fit", "values up to 1e29", fit, (X0 * 1e28, Y0), ok(varied(N))),
    ("fit", "tiny scale 1e-200", fit, (X0 * 1e-200, Y0), ok(varied(N))),
    ("fit", "large offset 1e15", fit, (X0 + 1e15, Y0), ok(varied(N))),
    ("fit", "numeric text", fit, (X0.astype(str), Y0), ok(varied(N))),
    ("fit", "bool X", fit, (X0 > 0, Y0), ok(finite(N))),
    ("fit", "int8 X", fit, (np.rint(X0).astype(np.int8), Y0), ok(finite(N))),
    ("fit", "float32 X", fit, (X0.astype(np.float32), Y0), ok(varied(N))),
    ("fit", "numeric DataFrame", fit, (DF_OK, Y0), ok(varied(N))),
    ("fit", "torch tensor", fit, (torch.from_numpy(X0), torch.from_numpy(Y0)), ok(varied(N))),
    ("fit", "mostly duplicated rows", fit, (np.r_[np.tile(X0[:1], (50, 1)), X0[:10]], _y(60, 3)), ok(finite(N))),
    # ---- SwiftHydra scoring
    ("score", "fewer columns than in fit", score, X0[:, :2], raises(InvalidInputError, "2 features but the model was fitted with 3")),
    ("score", "more columns than in fit", score, np.c_[X0, X0], raises(InvalidInputError, "6 features but the model was fitted with 3")),
    ("score", "NaN", score, _with(np.nan), raises(InvalidInputError, "NaN")),
    ("score", "inf", score, _with(np.inf), raises(InvalidInputError, "infinite")),
    ("score", "1e300", score, _with(1e300), raises(InvalidInputError, "magnitude")),
    ("score", "1-D", score, X0[0], raises(InvalidInputError, "2-D")),
    ("score", "3-D", score, X0.reshape(N, D, 1), raises(InvalidInputError, "2-D")),
    ("score", "empty", score, np.zeros((0, D)), raises(InvalidInputError, "0 rows")),
    ("score", "text", score, _with("abc"), raises(InvalidInputError, "non-numeric")),
    ("score", "not fitted", unfitted, X0, raises(NotFittedError, "not fitted yet")),
    ("score", "unknown probability method", predict_proba, (X0, "softmax"), raises(InvalidInputError, "sigmoid' or 'linear")),
    ("score", "one row", score, X0[:1], ok(finite(1))),
    ("score", "all rows identical", score, IDENTICAL, ok(lambda s: finite(N)(s) or np.testing.assert_array_equal(s, s[0]))),
    ("score", "far outside training range (1e29)", score, _with(1e29), ok(finite(N))),
    ("score", "int64 max", score, np.full((4, D), np.iinfo(np.int64).max), ok(finite(4))),
    ("score", "probabilities of extreme rows", predict_proba, (np.full((3, D), -1e29), "sigmoid"), ok()),
    ("score", "linear probabilities of extreme rows", predict_proba, (np.full((3, D), 1e29), "linear"), ok()),
    ("score", "predict on extreme rows", predict, np.full((3, D), 1e29), ok()),
    # ---- MambaDetector / MoME
    ("detector", "MambaDetector: y None", detector_fit, (MambaDetector, X0, None, {}), raises(InvalidInputError, "y is None")),
    ("detector", "MoME: no known anomaly", detector_fit, (MoME, X0, np.zeros(N), {"n_experts": 2}), raises(InvalidInputError, "no known anomaly")),
    ("detector", "MambaDetector: no unlabeled row", detector_fit, (MambaDetector, X0, np.ones(N), {}), raises(InvalidInputError, "no unlabeled row")),
    ("detector", "MambaDetector: one row", detector_fit, (MambaDetector, X0[:1], [1], {}), raises(InvalidInputError, "at least 2")),
    ("detector", "MoME: all rows identical (constant scores)", detector_fit, (MoME, IDENTICAL, Y0, {"n_experts": 2}),
     ok(lambda s: finite(N)(s) or np.testing.assert_allclose(s, s[0]))),
    ("detector", "MambaDetector: lr 1e30 diverges", detector_fit, (MambaDetector, X0, Y0, {"lr": 1e30}),
     raises(TrainingDivergedError, r"MambaDetector training diverged: .* in epoch 1.*lower lr")),
    ("detector", "MoME: lr 1e30 diverges", detector_fit, (MoME, X0, Y0, {"lr": 1e30, "n_experts": 2}),
     raises(TrainingDivergedError, r"MoME training diverged: .* in epoch 1")),
    ("detector", "negative sample_weight", detector_fit_kw, (MambaDetector, X0, Y0, {"sample_weight": -np.ones(N)}), raises(InvalidInputError, ">= 0")),
    ("detector", "NaN sample_weight", detector_fit_kw, (MambaDetector, X0, Y0, {"sample_weight": np.full(N, np.nan)}), raises(InvalidInputError, "NaN")),
    ("detector", "teacher_scores of the wrong length", detector_fit_kw, (MoME, X0, Y0, {"teacher_scores": np.zeros(3)}), raises(InvalidInputError, "teacher_scores")),
    ("detector", "MambaDetector: constant column", detector_fit, (MambaDetector, CONST_COL, Y0, {}), ok(finite(N))),
    ("detector", "MambaDetector: values 1e29", detector_fit, (MambaDetector, X0 * 1e28, Y0, {}), ok(varied(N))),
    ("detector", "score: wrong column count", detector_score, (X0[:, :1], None), raises(InvalidInputError, "fitted with 3")),
    ("detector", "score: batch_size 0", detector_score, (X0, 0), raises(InvalidInputError, "batch_size")),
    ("detector", "score: float32 overflow", detector_score, (_with(1e39), None), raises(InvalidInputError, "magnitude|too large")),
    ("detector", "score: one row", detector_score, (X0[:1], None), ok(finite(1))),
    ("detector", "CVAE: lr 1e30 diverges", cvae_fit, (1e30, X0, Y0), raises(TrainingDivergedError, r"CVAE training diverged: .* in epoch \d")),
    # ---- load_adbench / load_npz
    ("load_adbench", "unknown name", adbench, ("cardoi", {}, {}), raises(UnknownDatasetError, "Did you mean: cardio")),
    ("load_adbench", "empty name", adbench, ("", {}, {}), raises(UnknownDatasetError, "non-empty string")),
    ("load_adbench", "name None", adbench, (None, {}, {}), raises(UnknownDatasetError, "non-empty string")),
    ("load_adbench", "wrong checksum", adbench, ("wine", {"Classical/45_wine.npz": _wine_like()}, {"download": False}),
     raises(CorruptFileError, "SHA-256 .* expected d5ad8965d92c")),
    ("load_adbench", "wrong checksum, verify=False", adbench, ("wine", {"45_wine.npz": _wine_like()}, {"download": False, "verify": False}), ok()),
    ("load_adbench", "no checksum, wrong anomaly count", adbench, ("cardio", {"6_cardio.npz": _cardio_like(0)}, {"download": False}),
     raises(CorruptFileError, "0 anomalies but 6_cardio has 176")),
    ("load_adbench", "no checksum, right counts", adbench, ("cardio", {"6_cardio.npz": _cardio_like(176)}, {"download": False}), ok()),
    ("load_adbench", "not on disk, no download", adbench, ("thyroid", {}, {"download": False}), raises(DatasetNotAvailableError, "not on disk")),
    ("load_adbench", "text instead of npz", adbench, ("cardio", {"6_cardio.npz": b"hello"}, {"download": False}), raises(CorruptFileError, "never uses")),
    ("load_adbench", "truncated npz", adbench, ("cardio", {"6_cardio.npz": _cardio_like(176)[:500]}, {"download": False}), raises(CorruptFileError, "cannot be read")),
    ("load_npz", "bare .npy", npz, _npy_bytes(np.zeros((3, 2))), raises(CorruptFileError, "single .npy array")),
    ("load_npz", "object array (needs pickle)", npz, _npz_bytes(X=np.array([[1, "a"]], dtype=object), y=np.zeros(1)), raises(CorruptFileError, "pickle")),
    ("load_npz", "wrong keys", npz, _npz_bytes(A=np.zeros(3)), raises(CorruptFileError, r"arrays \['A'\], expected X and y")),
    ("load_npz", "NaN in X", npz, _npz_bytes(X=np.full((5, 2), np.nan), y=np.zeros(5)), raises(CorruptFileError, "10 NaN or infinite")),
    ("load_npz", "3-D X", npz, _npz_bytes(X=np.zeros((2, 2, 2)), y=np.zeros(2)), raises(CorruptFileError, "shape")),
    ("load_npz", "labels 2", npz, _npz_bytes(X=np.zeros((2, 2)), y=np.array([0, 2])), raises(CorruptFileError, "0/1 labels")),
    ("load_npz", "text labels", npz, _npz_bytes(X=np.zeros((2, 2)), y=np.array(["0", "1"])), raises(CorruptFileError, "0/1 labels")),
    ("load_npz", "no rows", npz, _npz_bytes(X=np.zeros((0, 2)), y=np.zeros(0)), raises(CorruptFileError, "no data")),
    ("load_npz", "y length differs", npz, _npz_bytes(X=np.zeros((3, 2)), y=np.zeros(2)), raises(CorruptFileError, "shape")),
    ("load_npz", "a good file", npz, _GOOD_NPZ, ok()),
    # ---- read_table
    ("read_table", "ragged row (too many fields)", table, ("r.csv", "a,b\n1,2\n3,4,5\n", {}), raises(InvalidInputError, "Expected 2 fields in line 3, saw 3")),
    ("read_table", "ragged row (too few fields): missing, imputed", table, ("r.csv", "a,b\n1,2\n3\n5,6\n", {}),
     ok(lambda t: np.testing.assert_array_equal(t.X, [[1, 2], [3, 4], [5, 6]]))),
    ("read_table", "ragged row (too few fields), missing='reject'", table, ("r.csv", "a,b\n1,2\n3\n", {"missing": "reject"}), raises(InvalidInputError, r"missing values in columns \['b'\]")),
    ("read_table", "Parquet file that is text", table, ("t.parquet", "a,b\n1,2\n", {}), raises(InvalidInputError, "Parquet")),
    ("read_table", "binary garbage as CSV", table, ("g.csv", bytes(range(256)) * 8, {}), raises(InvalidInputError, "cannot read")),
    ("read_table", "empty file", table, ("e.csv", "", {}), raises(InvalidInputError, "cannot read|no data")),
    ("read_table", "header only", table, ("h.csv", "a,b\n", {}), raises(InvalidInputError, "no data rows")),
    ("read_table", "missing file", table, ("nope.csv", None, {}), raises(InvalidInputError, "does not exist")),
    ("read_table", "unsupported type", table, ("t.xlsx", "a\n1\n", {}), raises(InvalidInputError, "unsupported file type")),
    ("read_table", "unterminated quote", table, ("q.csv", 'a,b\n"1,2\n3,4\n', {}), raises(InvalidInputError, "cannot read")),
    ("read_table", "inf", table, ("i.csv", "a,b\n1,inf\n2,3\n", {}), raises(InvalidInputError, r"column 'b' holds a non-finite value: inf in data row 1 \(row 1 = the first row after the header\)")),
    ("read_table", "1e400 overflows to inf", table, ("o.csv", "a,b\n1,1e400\n2,3\n", {}), raises(InvalidInputError, "non-finite")),
    ("read_table", "label column absent", table, ("l.csv", "a,b\n1,2\n", {"label_column": "label"}), raises(InvalidInputError, "label column 'label' is not in")),
    ("read_table", "only the label column", table, ("l.csv", "label\n1\n0\n", {"label_column": "label"}), raises(InvalidInputError, "no feature columns")),
    ("read_table", "text column with categorical='reject'", table, ("c.csv", "a,b\nx,1\ny,2\n", {"categorical": "reject"}), raises(InvalidInputError, r"non-numeric columns \['a'\]")),
    ("read_table", "labels other than 1 are unlabeled", table, ("l.csv", "a,label\n1,2\n2,1\n3,yes\n4,\n5,-1\n", {"label_column": "label"}),
     ok(lambda t: np.testing.assert_array_equal(t.y, [0, 1, 1, 0, 0]))),
    ("read_table", "constant column left out", table, ("k.csv", "a,b\n1,5\n2,5\n3,5\n", {}), ok(lambda t: np.testing.assert_array_equal(t.X, [[1], [2], [3]]))),
    ("read_table", "int64 max", table, ("m.csv", "a,b\n1,9223372036854775807\n2,3\n", {}), ok(lambda t: np.testing.assert_allclose(t.X[0, 1], 9.223372036854776e18))),
    ("read_table", "integer beyond int64 is read as a number", table, ("n.csv", "a,b\n1,99999999999999999999999999\n2,3\n", {}),
     ok(lambda t: (t.feature_names == ["a", "b"] and t.X[0, 1] == 1e26) or pytest.fail(f"read as {t.feature_names}"))),
    ("read_table", "integer beyond 1e30, then fit refuses it", table_then_fit, ("n.csv", "a,b\n" + "\n".join(f"{i},{10**40 if i == 3 else i}" for i in range(20)) + "\n"),
     raises(InvalidInputError, "magnitude 1e\\+40")),
    ("read_table", "numbers stored as text in Parquet are numbers", table, ("s.parquet", pd.DataFrame({"a": ["1", "2.5", None], "b": [1, 2, 3]}), {}),
     ok(lambda t: (t.feature_names == ["a", "b"] and t.X[:, 0].tolist() == [1.0, 2.5, 1.75]) or pytest.fail(f"read as {t.feature_names}"))),
    ("read_table", "first row with an extra field (was: columns shifted)", table, ("r.csv", "a,b\n1,2,3\n4,5,6\n", {}),
     raises(InvalidInputError, "line 2 has 3 fields but the header has 2")),
    ("read_table", "first row with an extra field, then a short row", table, ("r.csv", "a,b\n1,2,3\n4,5\n", {}),
     raises(InvalidInputError, "line 2 has 3 fields but the header has 2")),
    ("read_table", "a separator at the end of every line", table, ("r.csv", "a,b\n1,2,\n4,5,\n", {}),
     raises(InvalidInputError, "line 2 has 3 fields .*separator at the end")),
    ("read_table", "';'-separated .csv is detected", table, ("s.csv", "a;b\n1.5;2\n3;4\n", {}),
     ok(lambda t: np.testing.assert_array_equal(t.X, [[1.5, 2], [3, 4]]))),
    ("read_table", "tab-separated .csv is detected", table, ("s.csv", "a\tb\n1\t2\n3\t4\n", {}),
     ok(lambda t: np.testing.assert_array_equal(t.X, [[1, 2], [3, 4]]))),
    ("read_table", "'|'-separated .txt is detected", table, ("s.txt", "a|b\n1|2\n3|4\n", {}),
     ok(lambda t: np.testing.assert_array_equal(t.X, [[1, 2], [3, 4]]))),
    ("read_table", "',' file with ';' in quoted text stays ','", table, ("s.csv", 'a,b\n"x;y",1\n"z;w",2\n', {}),
     ok(lambda t: t.feature_names == ["b", "a=x;y", "a=z;w", "a=__other__"] or pytest.fail(str(t.feature_names)))),
    ("read_table", "header with ';' but rows that disagree", table, ("s.csv", "a;b\n1\n2\n", {}),
     raises(InvalidInputError, "single column 'a;b': its header holds ';'")),
    ("read_table", "a good file", table, ("g.csv", CSV_OK, {"label_column": "label"}), ok(lambda t: np.testing.assert_array_equal(t.y[:4], [1, 1, 1, 0]))),
    ("read_table", "1e300 is read, then fit refuses it", table_then_fit, ("b.csv", "a,b\n" + "\n".join(f"{i},{1e300 if i == 3 else i}" for i in range(20)) + "\n"),
     raises(InvalidInputError, "magnitude 1e\\+300")),
    # ---- SwiftHydra.load
    ("load", "truncated weights", load, _truncate(WEIGHTS_FILE, 0.5), raises(ModelFileError, "checksum")),
    ("load", "flipped byte in weights", load, _flip_byte(WEIGHTS_FILE, 1000), raises(ModelFileError, "checksum")),
    ("load", "flipped byte in config.json", load, _flip_byte(CONFIG_FILE, 0), raises(ModelFileError, "not valid JSON")),
    ("load", "newer format version", load, _edit_config(lambda m: m.update(format_version=m["format_version"] + 1)), raises(ModelFileError, "upgrade swifthydra")),
    ("load", "another kind of model", load, _edit_config(lambda m: m.update(kind="swifthydra.Other")), raises(ModelFileError, "holds a 'swifthydra.Other'")),
    ("load", "weights missing", load, _delete(WEIGHTS_FILE), raises(ModelFileError, "missing")),
    ("load", "config.json missing", load, _delete(CONFIG_FILE), raises(ModelFileError, "not a swifthydra model directory")),
    ("load", "config.json is a JSON list", load, _write(CONFIG_FILE, b"[1, 2]"), raises(ModelFileError, "not a swifthydra model configuration")),
    ("load", "config.json is binary", load, _write(CONFIG_FILE, bytes(range(256))), raises(ModelFileError, "not valid JSON")),
    ("load", "weights are text (checksum updated)", load, lambda p: (_write(WEIGHTS_FILE, b"hello")(p), _edit_config(lambda m: m.pop("weights_sha256"))(p)), raises(ModelFileError, "cannot be read")),
    ("load", "NaN weights (checksum updated)", load, _rewrite_weights(_nan_first_float), raises(ModelFileError, "NaN or infinite")),
    ("load", "a tensor of the wrong shape (checksum updated)", load, _rewrite_weights(_reshape_one), raises(ModelFileError, "shape")),
    ("load", "a tensor transposed (same size, checksum updated)", load, _rewrite_weights(_transpose_one), raises(ModelFileError, "shape")),
    ("load", "a billion experts", load, _edit_config(_huge_experts), raises(ModelFileError, "n_experts")),
    ("load", "a billion features", load, _edit_config(_huge_features), raises(ModelFileError, "inconsistent")),
    ("load", "parameters of the wrong type", load, _edit_config(lambda m: m["config"]["params"].update(n_jobs="x")), raises(ModelFileError, "n_jobs")),
    ("load", "a sub-config of the wrong type", load, _edit_config(lambda m: m["config"].update(cvae=[])), raises(ModelFileError, "inconsistent")),
    ("load", "path does not exist", lambda ctx, _: SwiftHydra.load(ctx.tmp_path / "nothing"), None, raises(ModelFileError, "does not exist")),
    ("load", "a file, not a directory", lambda ctx, _: SwiftHydra.load(ctx.model_dir / CONFIG_FILE), None, raises(ModelFileError, "not a swifthydra model directory")),
    ("load", "an empty directory", lambda ctx, _: SwiftHydra.load(ctx.tmp_path), None, raises(ModelFileError, "not a swifthydra model directory")),
    # ---- the command line
    ("cli", "bench: unknown dataset", cli, ["bench", "--datasets", "cardoi", "--dry-run", "--out", "{tmp}/r.sqlite"], exits(2, "unknown dataset 'cardoi'")),
    ("cli", "bench: .npz path that does not exist", cli, ["bench", "--datasets", "{tmp}/nope.npz", "--dry-run", "--out", "{tmp}/r.sqlite"], exits(2, "nope.npz does not exist")),
    ("cli", "bench: dataset file with the wrong checksum", cli, ["bench", "--datasets", "wine", "--data-dir", "{tmp}", "--no-download", "--models", "iforest", "--seeds", "1", "--jobs", "0", "--out", "{tmp}/r.sqlite", "--quiet"],
     exits(1, "dataset 45_wine: cannot load dataset: .*SHA-256")),
    ("cli", "bench: .npz that is not a zip", cli, ["bench", "--datasets", "{tmp}/broken.npz", "--models", "iforest", "--seeds", "1", "--jobs", "0", "--out", "{tmp}/r.sqlite", "--quiet"],
     exits(1, "dataset broken: cannot load dataset")),
    ("cli", "bench: .npz with NaN", cli, ["bench", "--datasets", "{tmp}/nan.npz", "--models", "iforest", "--seeds", "1", "--jobs", "0", "--out", "{tmp}/r.sqlite", "--quiet"],
     exits(1, "NaN or infinite")),
    ("cli", "bench: .npz with one row", cli, ["bench", "--datasets", "{tmp}/one.npz", "--models", "iforest", "--seeds", "1", "--jobs", "0", "--out", "{tmp}/r.sqlite", "--quiet"],
     exits(1, "dataset one: cannot split dataset")),
    ("cli", "bench: labelled ratio 1.5", cli, ["bench", "--datasets", "wine", "--labeled-ratio", "1.5", "--dry-run", "--out", "{tmp}/r.sqlite"], exits(2, "labelled ratio must be in")),
    ("cli", "bench: labelled ratio nan", cli, ["bench", "--datasets", "wine", "--labeled-ratio", "nan", "--dry-run", "--out", "{tmp}/r.sqlite"], exits(2, "labelled ratio must be in")),
    ("cli", "bench: seed -1", cli, ["bench", "--datasets", "wine", "--seeds", "-1", "--dry-run", "--out", "{tmp}/r.sqlite"], exits(2, "seed")),
    ("cli", "bench: seed 1.5", cli, ["bench", "--datasets", "wine", "--seeds", "1.5", "--dry-run", "--out", "{tmp}/r.sqlite"], exits(2, "seed must be a non-negative integer")),
    ("cli", "bench: jobs -1", cli, ["bench", "--datasets", "wine", "--jobs", "-1", "--dry-run", "--out", "{tmp}/r.sqlite"], exits(2, "jobs must be an integer >= 0")),
    ("cli", "bench: threads -2", cli, ["bench", "--datasets", "wine", "--threads", "-2", "--dry-run", "--out", "{tmp}/r.sqlite"], exits(2, "threads must be")),
    ("cli", "bench: timeout 0", cli, ["bench", "--datasets", "wine", "--timeout", "0", "--dry-run", "--out", "{tmp}/r.sqlite"], exits(2, "timeout must be a positive number")),
    ("cli", "bench: timeout nan", cli, ["bench", "--datasets", "wine", "--timeout", "nan", "--dry-run", "--out", "{tmp}/r.sqlite"], exits(2, "timeout must be a positive number")),
    ("cli", "bench: results file that is text", cli, ["bench", "--datasets", "wine", "--dry-run", "--out", "{tmp}/text.sqlite"], exits(2, "not a usable SQLite file")),
    ("cli", "bench: unknown model", cli, ["bench", "--datasets", "wine", "--models", "nope", "--dry-run", "--out", "{tmp}/r.sqlite"], exits(2, "unknown model 'nope'")),
    ("cli", "bench: malformed --param", cli, ["bench", "--datasets", "wine", "--models", "iforest", "--param", "iforest", "--dry-run", "--out", "{tmp}/r.sqlite"], exits(2, "MODEL.KEY=VALUE")),
    ("cli", "bench export: not a results file", cli, ["bench", "export", "{tmp}/text.sqlite"], exits(2, "not a swifthydra results file")),
    ("cli", "report: missing results file", cli, ["report", "{tmp}/missing.sqlite"], exits(2, "does not exist")),
    ("cli", "datasets info: unknown name", cli, ["datasets", "info", "cardoi"], exits(2, "unknown dataset 'cardoi'")),
    ("cli", "datasets info: wrong checksum", cli, ["datasets", "info", "wine", "--data-dir", "{tmp}"], exits(2, "SHA-256")),
    ("cli", "datasets download: unknown name", cli, ["datasets", "download", "nope"], exits(2, "unknown dataset 'nope'")),
    ("cli", "datasets list: unknown group", cli, ["datasets", "list", "--group", "audio"], exits(2, "unknown group 'audio'")),
    ("cli", "fit: all rows identical", cli_table_model, ["fit", "{tmp}/f_identical.csv", "--out", "{tmp}/m", "--quick"], exits(2, "every feature column is empty or holds a single value")),
    ("cli", "fit: seven rows", cli_table_model, ["fit", "{tmp}/f_seven.csv", "--out", "{tmp}/m", "--quick"], exits(2, "at least 8")),
    ("cli", "fit: value 1e300", cli_table_model, ["fit", "{tmp}/f_huge.csv", "--out", "{tmp}/m", "--quick"], exits(2, "magnitude 1e\\+300")),
    ("cli", "score: model directory missing", cli_table_model, ["score", "{tmp}/nomodel", "{tmp}/s_good.csv", "--out", "{tmp}/o.csv"], exits(2, "nomodel does not exist")),
    ("cli", "score: model saved from Python, no preprocessing", cli_table_model, ["score", "{model}", "{tmp}/s_good.csv", "--out", "{tmp}/o.csv"], exits(2, "without table preprocessing")),
    ("cli", "score: flipped byte in the weights", cli_table_model, ["score", "{tmp}/damaged_model", "{tmp}/s_good.csv", "--out", "{tmp}/o.csv"], exits(2, "checksum")),
    ("cli", "score: data file missing", cli_table_model, ["score", "{tmodel}", "{tmp}/nodata.csv", "--out", "{tmp}/o.csv"], exits(2, "does not exist")),
    ("cli", "score: a column missing", cli_table_model, ["score", "{tmodel}", "{tmp}/s_missing.csv", "--out", "{tmp}/o.csv"], exits(2, r"missing columns \['c'\]")),
    ("cli", "score: an unexpected column", cli_table_model, ["score", "{tmodel}", "{tmp}/s_extra.csv", "--out", "{tmp}/o.csv"], exits(2, r"unexpected columns \['d'\]")),
    ("cli", "score: inf", cli_table_model, ["score", "{tmodel}", "{tmp}/s_inf.csv", "--out", "{tmp}/o.csv"], exits(2, "non-finite value")),
    ("cli", "score: text in a numeric column", cli_table_model, ["score", "{tmodel}", "{tmp}/s_text.csv", "--out", "{tmp}/o.csv"], exits(2, "non-numeric values")),
    ("cli", "score: value 1e300", cli_table_model, ["score", "{tmodel}", "{tmp}/s_huge.csv", "--out", "{tmp}/o.csv"], exits(2, "magnitude 1e\\+300")),
    ("cli", "score: Parquet that is text", cli_table_model, ["score", "{tmodel}", "{tmp}/s_fake.parquet", "--out", "{tmp}/o.csv"], exits(2, "Parquet magic bytes")),
    ("cli", "score: empty file", cli_table_model, ["score", "{tmodel}", "{tmp}/s_empty.csv", "--out", "{tmp}/o.csv"], exits(2, "cannot read")),
    ("cli", "score: ragged row", cli_table_model, ["score", "{tmodel}", "{tmp}/s_ragged.csv", "--out", "{tmp}/o.csv"], exits(2, "Expected 3 fields in line 3, saw 4")),
    ("cli", "score: ragged row, with a column not scored", cli_table_model, ["score", "{tmodel}", "{tmp}/s_ragged_label.csv", "--out", "{tmp}/o.csv"],
     exits(2, "Expected 4 fields in line 4, saw 5")),
    ("cli", "score: first row with an extra field", cli_table_model, ["score", "{tmodel}", "{tmp}/s_ragged_first.csv", "--out", "{tmp}/o.csv"],
     exits(2, "line 2 has 4 fields but the header has 3")),
    ("cli", "score: ';'-separated file", cli_table_model, ["score", "{tmodel}", "{tmp}/s_semicolon.csv", "--out", "{tmp}/o.csv"], exits(0, "scored 2 rows")),
    ("cli", "score: integer beyond int64", cli_table_model, ["score", "{tmodel}", "{tmp}/s_bigint.csv", "--out", "{tmp}/o.csv"], exits(0, "scored 2 rows")),
    ("cli", "score: integer beyond 1e30", cli_table_model, ["score", "{tmodel}", "{tmp}/s_hugeint.csv", "--out", "{tmp}/o.csv"], exits(2, "magnitude 1e\\+40")),
    ("cli", "score: --chunk-rows 0", cli_table_model, ["score", "{tmodel}", "{tmp}/s_good.csv", "--out", "{tmp}/o.csv", "--chunk-rows", "0"], exits(2, "chunk-rows")),
    ("cli", "score: unsupported output type", cli_table_model, ["score", "{tmodel}", "{tmp}/s_good.csv", "--out", "{tmp}/o.xlsx"], exits(2, "unsupported output type")),
    ("cli", "score: output file exists", cli_table_model, ["score", "{tmodel}", "{tmp}/s_good.csv", "--out", "{tmp}/s_exists.csv"], exits(2, "already exists")),
    ("cli", "score: missing values are imputed", cli_table_model, ["score", "{tmodel}", "{tmp}/s_nan.csv", "--out", "{tmp}/o.csv"], exits(0, "scored 2 rows")),
    ("cli", "score: header only", cli_table_model, ["score", "{tmodel}", "{tmp}/s_header.csv", "--out", "{tmp}/o.csv"], exits(0, "scored 0 rows")),
]


@pytest.fixture(scope="module")
def fitted():
    return SwiftHydra(**MICRO).fit(X0, Y0)


@pytest.fixture(scope="module")
def model_dir(fitted, tmp_path_factory):
    return fitted.save(tmp_path_factory.mktemp("saved") / "model")


@pytest.fixture(scope="module")
def table_model_dir(tmp_path_factory):
    """A model fitted by `swifthydra fit` (None when the command is not available)."""
    import typer

    if "score" not in typer.main.get_command(app).commands:
        return None
    tmp = tmp_path_factory.mktemp("table_model")
    pd.DataFrame(X0, columns=["a", "b", "c"]).assign(label=Y0).to_csv(tmp / "train.csv", index=False)
    result = CliRunner().invoke(app, ["fit", str(tmp / "train.csv"), "--out", str(tmp / "model"),
                                      "--label-column", "label", "--quick", "--generator", "rl", "--episodes", "1"])
    assert result.exit_code == 0, result.output
    return tmp / "model"


@pytest.fixture(scope="module")
def detector():
    return MambaDetector(**DETECTOR).fit(X0, Y0)


@pytest.mark.parametrize(
    "entry, run, payload, expect",
    [pytest.param(*c[0:1], *c[2:5], id=f"{c[0]}: {c[1]}", marks=c[5:]) for c in CASES],
)
def test_bad_input(entry, run, payload, expect, fitted, model_dir, detector, tmp_path, request):
    table_model_dir = request.getfixturevalue("table_model_dir") if run is cli_table_model else None
    ctx = types.SimpleNamespace(fitted=fitted, model_dir=model_dir, detector=detector, tmp_path=tmp_path,
                                table_model_dir=table_model_dir)
    kind = expect[0]
    if kind == "raises":
        _, exc_type, match = expect
        with pytest.raises(exc_type, match=match) as info:
            run(ctx, payload)
        assert isinstance(info.value, SwiftHydraError)
        assert "\n" not in str(info.value), "messages are one line"
    elif kind == "ok":
        result = run(ctx, payload)
        if expect[1] is not None:
            expect[1](result)
    else:
        _, code, match = expect
        result = run(ctx, payload)
        out = result.output
        assert result.exit_code == code, out
        assert "Traceback" not in out
        assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)
        errors = [line for line in out.splitlines() if line.startswith("error:")]
        if code == 0:
            assert not errors and re.search(match, out), out
        else:
            assert len(errors) == 1, out
            assert re.search(match, errors[0]), errors[0]


def test_the_table_covers_every_entry_point():
    entries = {c[0] for c in CASES}
    assert entries == {"fit", "score", "detector", "load_adbench", "load_npz", "read_table", "load", "cli"}
    assert len({c[0] + c[1] for c in CASES}) == len(CASES), "row names are unique"
    assert len(CASES) >= 190


def test_a_later_episode_is_named_when_training_diverges(monkeypatch):
    """A non-finite loss while fine-tuning in episode 1 stops the fit naming episode and epoch."""
    original_loss = MambaDetector._loss
    original_partial_fit = MambaDetector.partial_fit

    def poisoned_loss(self, *args, **kwargs):
        loss, parts = original_loss(self, *args, **kwargs)
        return (loss * float("nan") if getattr(self, "_poisoned", False) else loss), parts

    def poisoning_partial_fit(self, *args, **kwargs):
        self._poisoned = True
        return original_partial_fit(self, *args, **kwargs)

    monkeypatch.setattr(MambaDetector, "_loss", poisoned_loss)
    monkeypatch.setattr(MambaDetector, "partial_fit", poisoning_partial_fit)
    with pytest.raises(TrainingDivergedError, match=(
        r"^Swift Hydra episode 1 \(fine-tuning the large detector\): MambaDetector training "
        r"diverged: the training loss became nan in epoch \d+, batch 1"
    )):
        SwiftHydra(**MICRO).fit(X0, Y0)


def test_ppo_stops_when_its_loss_diverges():
    from swifthydra.rl import GaussianPolicy, LatentEnv, PPOConfig, train_agent

    env = LatentEnv(lambda z: z.clone(), lambda x: -(x**2).sum(1), -3 * torch.ones(2), 3 * torch.ones(2),
                    torch.zeros(1, 2), torch.zeros(1, 2), num_envs=8, horizon=2, seed=0)
    policy = GaussianPolicy(env.observation_dim, env.action_dim, hidden=(8,), seed=0)
    config = PPOConfig(n_steps=4, minibatch_size=8, update_epochs=2, learning_rate=1e30, anneal_lr=False)
    with pytest.raises(TrainingDivergedError, match=r"PPO training diverged: .* in iteration \d"):
        train_agent(env, policy, config, iterations=3)


def _network_grid():
    import itertools

    rng = np.random.default_rng(0)
    grid = list(itertools.product(["row", "feature", "patch"], [True, False], [1, 3], [4, 20, 33], [1, 3], [2, 8], [2, 4], [3, 32]))
    for i in rng.choice(len(grid), 24, replace=False):
        tok, bi, layers, d_model, expand, d_state, d_conv, max_tokens = grid[i]
        params = dict(tokenizer=tok, bidirectional=bi, n_layers=layers, d_model=d_model, expand=expand,
                      d_state=d_state, d_conv=d_conv, max_tokens=max_tokens)
        yield MambaDetector, params, None
        yield MoME, {**params, "feature_dim": int(rng.choice([0, 3]))}, int(rng.choice([1, 3]))


@pytest.mark.parametrize("cls, params, n_experts", list(_network_grid()))
def test_the_loader_counts_network_values_exactly(cls, params, n_experts):
    """``from_config`` builds a network only when ``_net_numel`` (arithmetic on the config) equals
    the values stored; it must agree with the networks actually built, or loading gets slow."""
    est = cls(**params)
    est._validate_params()
    if n_experts is not None:
        est.n_experts_ = n_experts
    for n_features in (1, 7, 40):
        with torch.device("meta"):
            net = est._build_net(n_features, None, 0)
        assert est._net_numel(n_features) == sum(v.numel() for v in net.state_dict().values())

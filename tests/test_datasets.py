"""Registry, loader (local, cache, download against a local server), built-in data."""

from __future__ import annotations

import hashlib
import http.server
import io
import threading
from pathlib import Path

import numpy as np
import pytest

from swifthydra.datasets import (
    DATASETS,
    download_dataset,
    find_dataset_file,
    get_dataset_info,
    list_datasets,
    load_adbench,
    load_builtin,
    local_datasets,
)
from swifthydra.datasets import loader as loader_mod
from swifthydra.exceptions import (
    CorruptFileError,
    DatasetNotAvailableError,
    DownloadError,
    InvalidInputError,
    UnknownDatasetError,
)


# ----------------------------------------------------------------------------------- registry
def test_registry_has_all_47_classical_and_embedding_sets():
    classical = [d for d in DATASETS if d.group == "classical"]
    assert len(classical) == 47
    numbers = sorted(int(d.name.split("_")[0]) for d in classical)
    assert numbers == list(range(1, 48))
    assert {d.folder for d in DATASETS} == {
        "Classical", "CV_by_ResNet18", "CV_by_ViT", "NLP_by_BERT", "NLP_by_RoBERTa"
    }
    names = [d.name for d in DATASETS]
    assert len(names) == len(set(names))
    assert len({d.short for d in DATASETS}) == len(DATASETS), "aliases must be unique"


def test_list_datasets_table():
    df = list_datasets()
    assert {"name", "alias", "group", "rows", "features", "anomaly_ratio", "sha256"} <= set(df.columns)
    cardio = df[df["name"] == "6_cardio"].iloc[0]
    assert (cardio["rows"], cardio["features"]) == (1831, 21)
    assert cardio["anomaly_ratio"] == pytest.approx(176 / 1831)
    assert len(list_datasets("classical")) == 47
    with pytest.raises(InvalidInputError):
        list_datasets("audio")


@pytest.mark.parametrize(
    "alias, canonical",
    [
        ("cardio", "6_cardio"),
        ("CARDIO", "6_cardio"),
        ("6_cardio", "6_cardio"),
        ("magic.gamma", "22_magic.gamma"),
        ("satimage-2", "31_satimage-2"),
        ("43_WDBC.npz", "43_WDBC"),
        ("cifar10_0", "CV_by_ResNet18/CIFAR10_0"),
        ("cifar10_0-vit", "CV_by_ViT/CIFAR10_0"),
        ("20news_3-roberta", "NLP_by_RoBERTa/20news_3"),
        ("NLP_by_BERT/imdb", "NLP_by_BERT/imdb"),
    ],
)
def test_aliases(alias, canonical):
    assert get_dataset_info(alias).name == canonical


def test_unknown_name_lists_close_matches():
    with pytest.raises(UnknownDatasetError, match="Did you mean: cardio"):
        get_dataset_info("cardoi")
    with pytest.raises(UnknownDatasetError):
        get_dataset_info("")
    with pytest.raises(UnknownDatasetError, match="unknown dataset"):
        load_adbench("no_such_dataset_at_all")


def test_checksums_of_shared_files_are_registered(shared_dir):
    sums = dict(
        line.split()[::-1] for line in (shared_dir / "SHA256SUMS").read_text().splitlines() if line.strip()
    )
    assert len(sums) == 31
    for file, digest in sums.items():
        assert get_dataset_info(file).sha256 == digest


# ------------------------------------------------------------------------------------- loader
def test_load_each_shared_dataset_by_short_alias(shared_dir):
    names = local_datasets(shared_dir)
    assert len(names) == 31
    for name in names:
        info = get_dataset_info(name)
        X, y = load_adbench(info.short, data_dir=shared_dir, download=False)
        assert X.shape == (info.rows, info.features)
        assert X.dtype == np.float64 and y.dtype == np.int64
        assert int(y.sum()) == info.anomalies


def _write_npz(path: Path, X, y) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, X=X, y=y)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())
    return buf.getvalue()


def _fake_cardio(seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(1831, 21))
    y = np.zeros(1831, dtype=np.int64)
    y[:176] = 1
    return X, y


def test_search_order_data_dir_then_env_then_cache(tmp_path, monkeypatch):
    X, y = _fake_cardio()
    env_dir, arg_dir = tmp_path / "env", tmp_path / "arg"
    _write_npz(env_dir / "Classical" / "6_cardio.npz", X, y)
    monkeypatch.setenv("SWIFTHYDRA_DATA", str(env_dir))
    assert find_dataset_file("cardio") == env_dir / "Classical" / "6_cardio.npz"
    _write_npz(arg_dir / "6_cardio.npz", X + 1, y)
    assert find_dataset_file("cardio", arg_dir) == arg_dir / "6_cardio.npz"
    X2, _ = load_adbench("cardio", arg_dir, download=False)
    np.testing.assert_array_equal(X2, X + 1)
    # lower-case group folder, as in the shared copy
    low = tmp_path / "low"
    _write_npz(low / "classical" / "6_cardio.npz", X, y)
    assert find_dataset_file("6_cardio", low) == low / "classical" / "6_cardio.npz"


def test_missing_without_download_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetNotAvailableError, match="not on disk"):
        load_adbench("cardio", tmp_path, download=False)


def test_corrupt_or_foreign_local_files(tmp_path):
    bad = tmp_path / "Classical" / "6_cardio.npz"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"this is not a zip file")
    with pytest.raises(CorruptFileError, match="cannot be read"):
        load_adbench("cardio", tmp_path, download=False)
    _write_npz(bad, np.zeros((5, 21)), np.zeros(5))
    with pytest.raises(CorruptFileError, match="shape"):
        load_adbench("cardio", tmp_path, download=False)
    buf = io.BytesIO()
    np.savez(buf, data=np.zeros(3))
    bad.write_bytes(buf.getvalue())
    with pytest.raises(CorruptFileError, match="expected X and y"):
        load_adbench("cardio", tmp_path, download=False)
    # an object array would need pickle to load: refused, never executed
    buf = io.BytesIO()
    np.savez(buf, X=np.array([object()], dtype=object), y=np.zeros(1))
    bad.write_bytes(buf.getvalue())
    with pytest.raises(CorruptFileError):
        load_adbench("cardio", tmp_path, download=False)


def test_wrong_checksum_is_refused(tmp_path):
    X, y = load_builtin("wine")
    _write_npz(tmp_path / "45_wine.npz", X, y)  # same data, different bytes than the published file
    with pytest.raises(CorruptFileError, match="SHA-256"):
        load_adbench("wine", tmp_path, download=False)


# ------------------------------------------------------------------- download via a local server
class _Server:
    """A tiny HTTP server on 127.0.0.1 serving registered byte strings, with failure modes."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.truncate: set[str] = set()
        self.requests: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                outer.requests.append(self.path)
                body = outer.files.get(self.path)
                if body is None:
                    self.send_error(404, "Not Found")
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.path in outer.truncate:
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/datasets"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(monkeypatch):
    srv = _Server()
    monkeypatch.setenv("SWIFTHYDRA_ADBENCH_URL", srv.url)
    yield srv
    srv.close()


def _npz_bytes(X, y) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, X=X, y=y)
    return buf.getvalue()


def test_download_into_cache_then_load_from_cache(server, tmp_path, monkeypatch):
    monkeypatch.setattr(loader_mod, "cache_dir", lambda: tmp_path / "cache")
    X, y = _fake_cardio()
    server.files["/datasets/Classical/6_cardio.npz"] = _npz_bytes(X, y)
    X1, y1 = load_adbench("cardio")
    np.testing.assert_array_equal(X1, X)
    np.testing.assert_array_equal(y1, y)
    assert (tmp_path / "cache" / "Classical" / "6_cardio.npz").is_file()
    assert len(server.requests) == 1
    load_adbench("cardio")  # second time from the cache: no new request
    assert len(server.requests) == 1
    assert not list((tmp_path / "cache" / "Classical").glob("*.part"))


def test_download_verifies_checksum_and_leaves_nothing(server, tmp_path, monkeypatch):
    published = get_dataset_info("wine").sha256
    X, y = load_builtin("wine")
    body = _npz_bytes(X, y)
    assert hashlib.sha256(body).hexdigest() != published
    server.files["/datasets/Classical/45_wine.npz"] = body
    with pytest.raises(CorruptFileError, match="SHA-256"):
        download_dataset("wine", tmp_path)
    assert list((tmp_path / "Classical").iterdir()) == []


def test_download_with_published_bytes_succeeds(server, tmp_path, shared_dir):
    body = (shared_dir / "classical" / "45_wine.npz").read_bytes()
    server.files["/datasets/Classical/45_wine.npz"] = body
    path = download_dataset("wine", tmp_path, progress=True)
    assert path.read_bytes() == body
    X, y = load_adbench("wine", tmp_path, download=False)
    assert X.shape == (129, 13)


def test_partial_download_is_an_error_and_leaves_nothing(server, tmp_path, monkeypatch):
    monkeypatch.setattr(loader_mod, "cache_dir", lambda: tmp_path / "cache")
    X, y = _fake_cardio()
    server.files["/datasets/Classical/6_cardio.npz"] = _npz_bytes(X, y)
    server.truncate.add("/datasets/Classical/6_cardio.npz")
    with pytest.raises(DownloadError, match="bytes"):
        load_adbench("cardio")
    assert list((tmp_path / "cache" / "Classical").iterdir()) == []
    with pytest.raises(DatasetNotAvailableError):
        load_adbench("cardio", download=False)


def test_http_error_and_unreachable_server(server, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404"):
        download_dataset("cardio", tmp_path)
    with pytest.raises(DownloadError, match="failed"):
        download_dataset("cardio", tmp_path, base_url="http://127.0.0.1:9/none", timeout=5)
    assert list((tmp_path / "Classical").iterdir()) == []


def test_download_of_wrong_shape_is_refused(server, tmp_path):
    server.files["/datasets/Classical/6_cardio.npz"] = _npz_bytes(np.zeros((10, 3)), np.zeros(10))
    with pytest.raises(CorruptFileError, match="shape"):
        download_dataset("cardio", tmp_path)
    assert list((tmp_path / "Classical").iterdir()) == []


# ------------------------------------------------------------------------------------- builtin
def test_builtin_shapes_and_labels():
    X, y = load_builtin("wdbc")
    assert X.shape == (367, 30) and int(y.sum()) == 10
    X, y = load_builtin("WINE")
    assert X.shape == (129, 13) and int(y.sum()) == 10
    with pytest.raises(UnknownDatasetError, match="wdbc, wine"):
        load_builtin("iris")


@pytest.mark.parametrize("name, file", [("wdbc", "43_WDBC.npz"), ("wine", "45_wine.npz")])
def test_builtin_identical_to_adbench_files(shared_dir, name, file):
    X, y = load_builtin(name)
    with np.load(shared_dir / "classical" / file) as data:
        np.testing.assert_array_equal(X, data["X"])
        np.testing.assert_array_equal(y, data["y"])

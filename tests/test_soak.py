"""Soak test: score 2,000,000 rows in chunks through the Python API and the command line while
checking that memory stays flat and no file handle leaks (issue 7).

Memory is the resident set size (``VmRSS`` of ``/proc/<pid>/status``), file handles the entries
of ``/proc/<pid>/fd``; both are Linux-only, so the tests skip elsewhere. The limits: RSS may grow
by less than 100 MiB from the end of the first chunk to the end of the last, and the number of
open file descriptors must not grow at all. The Python test reads RSS at the end of every chunk;
the command-line test samples the running process every 20 ms and compares the median RSS of
the first quarter of the run with that of the last quarter (a sample can fall inside a chunk and
see its transient buffers). Both tests together take well under two minutes on
two busy cores (most of it is the command line writing 2,000,000 scores to Parquet).

The numbers each run measured are printed (``pytest -s``) and are what the Soak section of
docs/reliability.md reports.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from swifthydra import SwiftHydra

SOAK_ROWS = 2_000_000
CHUNK_ROWS = 100_000
N_FEATURES = 8
MAX_RSS_GROWTH_MIB = 100.0

pytestmark = [
    pytest.mark.slow,  # bounded (< 1 min), and CI runs it: deselect locally with -m "not slow"
    pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="needs Linux /proc"),
]


def rss_mib(pid: int | str = "self") -> float | None:
    """Resident set size of a process in MiB (``None`` once it has exited)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def open_fds(pid: int | str = "self") -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except (FileNotFoundError, PermissionError, ProcessLookupError):
        return None


def _training_data(seed=0, n=400):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, N_FEATURES))
    X[:20] += 3.0
    y = np.zeros(n, dtype=np.int64)
    y[:8] = 1
    return X, y


def test_python_api_scores_2m_rows_with_flat_memory():
    X, y = _training_data()
    model = SwiftHydra(
        episodes=1, random_state=0,
        generation_params={"ppo_iterations": 1, "num_envs": 4, "horizon": 2, "latent_dim": 2, "cvae_epochs": 2,
                           "finetune_epochs": 1},
        detector_params={"max_epochs": 2, "min_epochs": 1, "d_model": 4, "n_layers": 1},
        mome_params={"max_epochs": 2, "min_epochs": 1, "n_experts": 4},  # MoME of the default size scores
    ).fit(X, y)
    rng = np.random.default_rng(1)
    rss, fds, flagged, t0 = [], [], 0, time.perf_counter()
    for _ in range(SOAK_ROWS // CHUNK_ROWS):
        chunk = rng.normal(size=(CHUNK_ROWS, N_FEATURES)) * rng.uniform(0.5, 3.0)
        chunk[:10] *= 1e6  # a few rows far outside the training range in every chunk
        scores = model.decision_function(chunk)
        assert scores.shape == (CHUNK_ROWS,) and np.isfinite(scores).all()
        flagged += int((scores > model.threshold_).sum())
        rss.append(rss_mib())
        fds.append(open_fds())
    seconds = time.perf_counter() - t0
    growth = max(rss) - rss[0]  # the largest rise after the first chunk, not only at the last one
    print(f"\n[soak python] {SOAK_ROWS:,} rows in {len(rss)} chunks, {seconds:.1f} s; RSS after the first "
          f"chunk {rss[0]:.0f} MiB, after the last {rss[-1]:.0f} MiB, largest rise {growth:.1f} MiB; "
          f"fds {fds[0]} -> {fds[-1]}")
    assert len(rss) * CHUNK_ROWS == SOAK_ROWS and 0 < flagged < SOAK_ROWS
    assert growth < MAX_RSS_GROWTH_MIB, rss
    assert max(fds) <= fds[0], fds


def _cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "swifthydra.cli", *args], capture_output=True, text=True,
                          timeout=600, **kw)


def _has_score_command() -> bool:
    try:
        import swifthydra.cli.score  # noqa: F401
    except ImportError:
        return False
    import typer

    from swifthydra.cli import app

    return "score" in typer.main.get_command(app).commands


@pytest.mark.skipif(not _has_score_command(), reason="`swifthydra score` is not available")
def test_cli_scores_2m_rows_with_flat_memory(tmp_path):
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    X, y = _training_data()
    columns = [f"f{j}" for j in range(N_FEATURES)]
    train = pd.DataFrame(X, columns=columns).assign(label=y)
    train.to_csv(tmp_path / "train.csv", index=False)
    fit = _cli("fit", str(tmp_path / "train.csv"), "--out", str(tmp_path / "model"), "--label-column", "label",
               "--quick", "--generator", "rl", "--episodes", "1")
    assert fit.returncode == 0, fit.stderr

    data = tmp_path / "big.parquet"
    rng = np.random.default_rng(2)
    schema = pa.schema([(c, pa.float64()) for c in columns])
    with pq.ParquetWriter(data, schema) as writer:
        for _ in range(0, SOAK_ROWS, 500_000):
            block = rng.normal(size=(500_000, N_FEATURES))
            writer.write_table(pa.Table.from_arrays(list(block.T), schema=schema))

    out_dir = tmp_path / "scored"
    out_dir.mkdir()
    out = out_dir / "scores.parquet"
    proc = subprocess.Popen(
        [sys.executable, "-m", "swifthydra.cli", "score", str(tmp_path / "model"), str(data), "--out", str(out),
         "--chunk-rows", str(CHUNK_ROWS), "--threads", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    samples = []  # (bytes written so far, RSS MiB, open fds) while the command runs
    t0 = time.perf_counter()
    while proc.poll() is None and time.perf_counter() - t0 < 600:
        written = sum(p.stat().st_size for p in out_dir.iterdir() if p.is_file())
        rss, fds = rss_mib(proc.pid), open_fds(proc.pid)
        if rss is not None and fds is not None:
            samples.append((written, rss, fds))
        time.sleep(0.02)
    stdout, stderr = proc.communicate(timeout=60)
    seconds = time.perf_counter() - t0
    assert proc.returncode == 0, stderr
    assert f"scored {SOAK_ROWS} rows" in stdout

    scored = pq.ParquetFile(out)
    assert scored.metadata.num_rows == SOAK_ROWS and scored.metadata.num_row_groups == SOAK_ROWS // CHUNK_ROWS
    # from the end of the first chunk (its row group is on disk) to the end of the last
    first = scored.metadata.row_group(0)
    first_chunk_bytes = 4 + sum(first.column(i).total_compressed_size for i in range(first.num_columns))
    during = [s for s in samples if s[0] >= first_chunk_bytes]
    assert len(during) >= 5, f"too few samples while scoring: {len(during)} of {len(samples)}"
    # Samples land anywhere inside a chunk, so each one also sees that chunk's transient buffers
    # (up to ~70 MiB measured); a leak shows as a rise from the first quarter of the run to the
    # last, which the medians of those quarters measure without the transient noise.
    rss = [s[1] for s in during]
    quarter = max(1, len(rss) // 4)
    early, late = float(np.median(rss[:quarter])), float(np.median(rss[-quarter:]))
    growth, peak = late - early, max(rss) - rss[0]
    fds0 = during[0][2]
    print(f"\n[soak cli] {SOAK_ROWS:,} rows in {SOAK_ROWS // CHUNK_ROWS} chunks, {seconds:.1f} s; RSS median "
          f"{early:.0f} MiB in the first quarter, {late:.0f} MiB in the last, growth {growth:.1f} MiB "
          f"(transient peak {peak:.1f} MiB above the first sample); fds {fds0} -> max "
          f"{max(s[2] for s in during)} ({len(during)} samples)")
    assert growth < MAX_RSS_GROWTH_MIB, rss
    assert max(s[2] for s in during) <= fds0, [s[2] for s in during]

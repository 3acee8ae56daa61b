"""Ray scoring against the local CLI on the same Parquet files, side by side in one run.

    .venv/bin/python benchmarks/distributed_score.py [--rows 10000000] [--files 20] [--columns 32]
                                                   [--workdir /tmp/sh-dist] [--address ADDR]

Generates ``--files`` Parquet files of ``--columns`` float64 columns (``--rows`` in all, a few
clusters and outliers), fits a model on 3,000 of the rows (``swifthydra fit --quick``), then scores
all files:

- **local**: ``swifthydra score MODEL FILE --out local/FILE`` for each file in turn (what a user of
  the local CLI runs), timed end to end (process start, imports, model load included) and as the sum
  of the seconds each command reports for its scoring loop;
- **ray**: ``swifthydra score MODEL 'DIR/*.parquet' --engine ray --out ray/`` (a local Ray instance
  with this machine's cores, or ``--address``), timed end to end, while the resident memory of
  the Ray worker processes is sampled every second (peak, and at 25 % / end of the run: flat or
  growing).

Prints rows/s of both, their ratio (ray / local), the worker memory, and the largest
``|score_ray - score_local|`` over all rows.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

CLI = [sys.executable, "-m", "swifthydra.cli"]


def generate(workdir: Path, rows: int, files: int, columns: int, seed: int = 0) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = workdir / "data"
    if data.is_dir() and len(list(data.glob("part-*.parquet"))) == files:
        total = sum(pq.ParquetFile(f).metadata.num_rows for f in data.glob("part-*.parquet"))
        if total == rows:
            return data
    data.mkdir(parents=True, exist_ok=True)
    for f in data.glob("part-*.parquet"):
        f.unlink()
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=3.0, size=(4, columns))
    per = np.full(files, rows // files)
    per[: rows % files] += 1
    for i, n in enumerate(per):
        X = centers[rng.integers(0, 4, n)] + rng.normal(size=(n, columns))
        out = rng.random(n) < 0.01
        X[out] += rng.normal(scale=6.0, size=(int(out.sum()), columns))
        table = pa.table({f"f{j:02d}": X[:, j] for j in range(columns)})
        pq.write_table(table, data / f"part-{i:05d}.parquet", row_group_size=100_000)
    return data


def fit(workdir: Path, data: Path) -> Path:
    import pandas as pd

    model = workdir / "model"
    if (model / "config.json").is_file():
        return model
    first = sorted(data.glob("part-*.parquet"))[0]
    pd.read_parquet(first).iloc[:3000].to_parquet(workdir / "train.parquet", index=False)
    subprocess.run([*CLI, "fit", str(workdir / "train.parquet"), "--out", str(model), "--quick", "--episodes", "1",
                    "--seed", "0", "--force"], check=True, timeout=1800)
    return model


class MemorySampler(threading.Thread):
    """Resident memory of the Ray worker processes (``ray::`` in their title), every second."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.samples: list[tuple[float, float, int]] = []  # (time, total MiB, workers)
        self.stop = threading.Event()

    def run(self) -> None:
        t0 = time.perf_counter()
        while not self.stop.wait(1.0):
            total, n = 0, 0
            for pid in os.listdir("/proc"):
                if not pid.isdigit():
                    continue
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
                    if not (cmd.startswith("ray::") and "MapWorker" in cmd):
                        continue
                    with open(f"/proc/{pid}/status") as f:
                        rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
                except (OSError, StopIteration):
                    continue
                total += rss * 1024
                n += 1
            if n:
                self.samples.append((time.perf_counter() - t0, total / 2**20, n))


def main() -> None:
    import pyarrow.parquet as pq

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--files", type=int, default=20)
    ap.add_argument("--columns", type=int, default=32)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/swifthydra-distributed-bench"))
    ap.add_argument("--address", default=None, help="Ray cluster address (default: a local Ray instance)")
    ap.add_argument("--chunk-rows", type=int, default=100_000)
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    data = generate(args.workdir, args.rows, args.files, args.columns)
    print(f"data: {args.rows:,} rows x {args.columns} columns in {args.files} files ({time.perf_counter() - t:.0f} s)",
          flush=True)
    model = fit(args.workdir, data)
    files = sorted(data.glob("part-*.parquet"))

    # local CLI, file by file
    local_out = args.workdir / "local"
    local_out.mkdir(exist_ok=True)
    inner = 0.0
    t0 = time.perf_counter()
    for f in files:
        r = subprocess.run([*CLI, "score", str(model), str(f), "--out", str(local_out / f.name), "--force", "--json",
                            "--chunk-rows", str(args.chunk_rows)], capture_output=True, text=True, timeout=3600)
        if r.returncode:
            sys.exit(r.stderr)
        inner += json.loads(r.stdout)["seconds"]
    local_wall = time.perf_counter() - t0
    print(f"local CLI: {args.rows / local_wall:,.0f} rows/s end to end ({local_wall:.1f} s for {len(files)} "
          f"commands); {args.rows / inner:,.0f} rows/s in the scoring loops ({inner:.1f} s)", flush=True)

    # Ray
    ray_out = args.workdir / "ray"
    cmd = [*CLI, "score", str(model), str(data / "part-*.parquet"), "--engine", "ray", "--out", str(ray_out),
           "--force", "--json", "--chunk-rows", str(args.chunk_rows)]
    if args.address:
        cmd += ["--address", args.address]
    sampler = MemorySampler()
    sampler.start()
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=3600,
                       env={**os.environ, "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "disabled")})
    ray_wall = time.perf_counter() - t0
    sampler.stop.set()
    sampler.join()
    if r.returncode:
        sys.exit(r.stderr[-3000:])
    summary, _ = json.JSONDecoder().raw_decode(r.stdout[r.stdout.index("{"):])  # Ray may print after it
    print(f"ray:       {args.rows / ray_wall:,.0f} rows/s end to end ({ray_wall:.1f} s, one command); "
          f"{args.rows / summary['seconds']:,.0f} rows/s from the first read to the last write "
          f"({summary['seconds']:.1f} s)", flush=True)
    print(f"ratio ray / local: {local_wall / ray_wall:.2f} end to end, {inner / summary['seconds']:.2f} scoring loops",
          flush=True)
    if sampler.samples:
        mem = np.array([m for _, m, _ in sampler.samples])
        q = max(0, len(mem) // 4 - 1)
        print(f"ray worker memory (RSS of the MapWorker actors, {sampler.samples[-1][2]} actors): peak "
              f"{mem.max():,.0f} MiB; at 25% of the run {mem[q]:,.0f} MiB, at the end {mem[-1]:,.0f} MiB "
              f"({len(mem)} samples)", flush=True)
    worst = 0.0
    for f in files:
        a = pq.read_table(local_out / f.name).column("score").to_numpy()
        b = pq.read_table(ray_out / f.name).column("score").to_numpy()
        assert len(a) == len(b), f.name
        worst = max(worst, float(np.max(np.abs(a - b))))
    print(f"max |score_ray - score_local| over all {args.rows:,} rows: {worst:.1e}")


if __name__ == "__main__":
    main()

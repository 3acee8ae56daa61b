"""Ray scoring against the local CLI on the same Parquet files, side by side in one run.

    .venv/bin/python benchmarks/distributed_score.py [--rows 10000000] [--files 20] [--columns 32]
                                                   [--workdir /tmp/sh-dist] [--address ADDR]
                                                   [--skip-local] [--memory-csv FILE]

Generates ``--files`` Parquet files of ``--columns`` float64 columns (``--rows`` in all, a few
clusters and outliers), fits a model on 3,000 of the rows (``swifthydra fit --quick``), then scores
all files:

- **local**: ``swifthydra score MODEL FILE --out local/FILE`` for each file in turn (what a user of
  the local CLI runs), timed end to end (process start, imports, model load included) and as the sum
  of the seconds each command reports for its scoring loop (``--skip-local``: not run; the scores
  are compared with ``local/`` of an earlier run in the same workdir, when there);
- **ray**: ``swifthydra score MODEL 'DIR/*.parquet' --engine ray --out ray/`` (a local Ray instance
  with this machine's cores, or ``--address``), timed end to end, while the memory of its actor
  processes is sampled every second from ``/proc/PID/smaps``: each actor's own memory (its unique
  set less the pages of Ray's object store), its RSS, and the object-store pages it maps, which
  the RSS counts but the store owns (they stay mapped after the block in them is freed, so the RSS
  grows with every block an actor reads until it has touched the store's used part). Per actor,
  over its scoring: the first, middle and last tenth of the run (flat or growing) and the peak;
  ``--memory-csv`` writes every sample.

Prints rows/s of both, their ratio (ray / local), the memory, and the largest
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


def _memory(pid: int) -> tuple[int, int, int, int, int] | None:
    """``(rss, uss, own, anon, store)`` of a process in bytes, from ``/proc/PID/smaps``:

    - ``rss``: its resident set;
    - ``uss``: its unique set, the resident pages no other process maps (``psutil``'s ``uss``);
    - ``own``: the unique set without the pages of Ray's object store (the ``/dev/shm/plasma...``
      mapping): what the process holds itself. A block in the store that only this process maps
      (one it reads and no one else has touched) is unique to it, but belongs to the store;
    - ``anon``: its anonymous resident memory (heap, arrays: ``RssAnon``);
    - ``store``: the resident pages of the object store it maps (shared memory owned by the store;
      they stay mapped, and counted in ``rss``, after the object in them is freed).
    """
    rss = uss = store_uss = store = anon = 0
    in_store = False
    try:
        with open(f"/proc/{pid}/smaps") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if " " in key:  # a mapping's header: address range, perms, offset, device, inode, path
                    in_store = "/plasma" in line
                    continue
                if key == "Rss":
                    kb = int(rest.split()[0])
                    rss += kb
                    store += kb if in_store else 0
                elif key in ("Private_Clean", "Private_Dirty", "Private_Hugetlb"):
                    kb = int(rest.split()[0])
                    uss += kb
                    store_uss += kb if in_store else 0
                elif key == "Anonymous":
                    anon += int(rest.split()[0])
    except (OSError, ValueError, IndexError):
        return None
    kib = 1024
    return rss * kib, uss * kib, (uss - store_uss) * kib, anon * kib, store * kib


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/stat") as f:
                    ppid = int(f.read().rpartition(")")[2].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(pid))
    out, todo = [], [root]
    while todo:
        kids = children.get(todo.pop(), [])
        out += kids
        todo += kids
    return out


class MemorySampler(threading.Thread):
    """Memory of the Ray actors (``ray::...MapWorker...`` in their title) started under ``root``
    (the Ray command: its local Ray instance; ``None``: any on the machine), every second: per
    actor its resident set (RSS), unique set (USS), own memory (USS less the object store's
    pages), anonymous memory and mapped object-store pages (see :func:`_memory`)."""

    def __init__(self, root: int | None = None) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.samples: list[tuple[float, dict[int, tuple[int, ...]]]] = []  # (seconds, {pid: _memory(pid)})
        self.driver: list[tuple[int, ...]] = []  # _memory() of the root process
        self.stop = threading.Event()

    def actors(self) -> list[int]:
        pids = _descendants(self.root) if self.root else [int(p) for p in os.listdir("/proc") if p.isdigit()]
        found = []
        for pid in pids:
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if cmd.startswith("ray::") and "MapWorker" in cmd:
                found.append(pid)
        return found

    def run(self) -> None:
        t0 = time.perf_counter()
        while not self.stop.wait(1.0):
            mem = {pid: m for pid in self.actors() if (m := _memory(pid)) is not None}
            if mem:
                self.samples.append((time.perf_counter() - t0, mem))
            if self.root and (m := _memory(self.root)) is not None:
                self.driver.append(m)

    def report(self) -> list[str]:
        """Lines: per actor, over its scoring (from the first sample that maps a block of the
        object store), the medians of the first, middle and last tenth of its samples and the
        peak, of its own memory, its RSS and the store pages it maps; then the peaks summed over
        the actors. Flat: the last tenth close to the first."""
        if not self.samples:
            return ["ray actor memory: no sample (the run ended within a second?)"]
        mib = 2**20
        actors = sorted({pid for _, mem in self.samples for pid in mem})
        lines = [f"ray actor memory ({len(actors)} actors, {len(self.samples)} samples over {self.samples[-1][0]:.0f} s), "
                 "MiB: own = USS less the object store's pages; store = object-store pages mapped (part of RSS);",
                 "  per actor over its scoring: median of the first / middle / last tenth of the samples, peak"]
        for pid in actors:
            series = [(t, mem[pid]) for t, mem in self.samples if pid in mem]
            start = next((i for i, (_, m) in enumerate(series) if m[4] > 8 * mib), None)
            if start is None:
                lines.append(f"  actor {pid}: scored nothing")
                continue
            w = series[start:]
            n, tenth = len(w), max(1, len(w) // 10)
            parts = []
            for name, j in (("own", 2), ("USS", 1), ("RSS", 0), ("store", 4)):
                seg = [float(np.median([m[j] for _, m in w[i:i + tenth]])) / mib for i in (0, (n - tenth) // 2, n - tenth)]
                parts.append(f"{name} {' / '.join(f'{v:,.0f}' for v in seg)}, peak {max(m[j] for _, m in w) / mib:,.0f}")
            lines.append(f"  actor {pid} (scoring {w[0][0]:.0f}-{w[-1][0]:.0f} s, {n} samples): " + "; ".join(parts))
        peak = [max(sum(m[j] for m in mem.values()) for _, mem in self.samples) / mib for j in range(5)]
        lines.append(f"  summed over the actors, peak: own {peak[2]:,.0f}, USS {peak[1]:,.0f}, RSS {peak[0]:,.0f}, "
                     f"store {peak[4]:,.0f}")
        if self.driver:
            lines.append(f"  driver (the command, writing the outputs): own peak "
                         f"{max(m[2] for m in self.driver) / mib:,.0f} MiB, end {self.driver[-1][2] / mib:,.0f} MiB; "
                         f"RSS peak {max(m[0] for m in self.driver) / mib:,.0f} MiB")
        return lines

    def dump(self, path: Path) -> None:
        """The samples as CSV: seconds, pid, rss, uss, own, anon, store (MiB)."""
        with open(path, "w") as f:
            f.write("seconds,pid,rss_mib,uss_mib,own_mib,anon_mib,store_mib\n")
            for t, mem in self.samples:
                for pid, m in sorted(mem.items()):
                    f.write(f"{t:.1f},{pid}," + ",".join(f"{v / 2**20:.1f}" for v in m) + "\n")


def main() -> None:
    import pyarrow.parquet as pq

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--files", type=int, default=20)
    ap.add_argument("--columns", type=int, default=32)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/swifthydra-distributed-bench"))
    ap.add_argument("--address", default=None, help="Ray cluster address (default: a local Ray instance)")
    ap.add_argument("--chunk-rows", type=int, default=100_000)
    ap.add_argument("--skip-local", action="store_true",
                    help="do not run the local CLI (compare against the local/ scores of an earlier run when present)")
    ap.add_argument("--memory-csv", type=Path, default=None, help="write the actor memory samples here")
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
    for f in [] if args.skip_local else files:
        r = subprocess.run([*CLI, "score", str(model), str(f), "--out", str(local_out / f.name), "--force", "--json",
                            "--chunk-rows", str(args.chunk_rows)], capture_output=True, text=True, timeout=3600)
        if r.returncode:
            sys.exit(r.stderr)
        inner += json.loads(r.stdout)["seconds"]
    local_wall = time.perf_counter() - t0
    if not args.skip_local:
        print(f"local CLI: {args.rows / local_wall:,.0f} rows/s end to end ({local_wall:.1f} s for {len(files)} "
              f"commands); {args.rows / inner:,.0f} rows/s in the scoring loops ({inner:.1f} s)", flush=True)

    # Ray
    ray_out = args.workdir / "ray"
    cmd = [*CLI, "score", str(model), str(data / "part-*.parquet"), "--engine", "ray", "--out", str(ray_out),
           "--force", "--json", "--chunk-rows", str(args.chunk_rows)]
    if args.address:
        cmd += ["--address", args.address]
    t0 = time.perf_counter()
    # the sampler follows the processes of this command only (its local Ray instance's actors)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "disabled")})
    sampler = MemorySampler(None if args.address else proc.pid)
    sampler.start()
    try:
        stdout, stderr = proc.communicate(timeout=3600)
    finally:
        sampler.stop.set()
        sampler.join()
    ray_wall = time.perf_counter() - t0
    if proc.returncode:
        sys.exit(stderr[-3000:])
    summary, _ = json.JSONDecoder().raw_decode(stdout[stdout.index("{"):])  # Ray may print after it
    print(f"ray:       {args.rows / ray_wall:,.0f} rows/s end to end ({ray_wall:.1f} s, one command); "
          f"{args.rows / summary['seconds']:,.0f} rows/s from the first read to the last write "
          f"({summary['seconds']:.1f} s)", flush=True)
    if not args.skip_local:
        print(f"ratio ray / local: {local_wall / ray_wall:.2f} end to end, {inner / summary['seconds']:.2f} scoring "
              "loops", flush=True)
    print("\n".join(sampler.report()), flush=True)
    if args.memory_csv:
        sampler.dump(args.memory_csv)
    if not all((local_out / f.name).is_file() for f in files):
        print("no local scores to compare with (--skip-local on a new workdir)")
        return
    worst = 0.0
    for f in files:
        a = pq.read_table(local_out / f.name).column("score").to_numpy()
        b = pq.read_table(ray_out / f.name).column("score").to_numpy()
        assert len(a) == len(b), f.name
        worst = max(worst, float(np.max(np.abs(a - b))))
    print(f"max |score_ray - score_local| over all {args.rows:,} rows: {worst:.1e}")


if __name__ == "__main__":
    main()

"""End-to-end scoring throughput of `swifthydra score`, and of the exported ONNX model.

Generates a Parquet file of ``--rows`` rows x ``--cols`` numeric columns (plus an ``id`` column)
in a temporary folder, fits a small model (``swifthydra fit --quick``) on a separate
``--train-rows`` sample with 1% labelled anomalies, then measures, each in its own process:

* ``swifthydra score MODEL data.parquet --out scores.parquet`` (read, preprocess, score with the
  MoME, write Parquet, all chunked): wall time, rows/s and peak RSS (``os.wait4``'s ``ru_maxrss``
  of the child, i.e. its own high-water mark, imports included);
* ``swifthydra export-onnx``, then a scorer that uses only pyarrow, numpy and onnxruntime (no
  torch, no swifthydra: what a deployment would run) on the same file, in the same chunks, writing
  the same output columns.

Usage::

    python benchmarks/score_throughput.py                       # 1,000,000 x 32, chunks of 100,000
    python benchmarks/score_throughput.py --rows 200000 --json out.json

Nothing is written into the repository; ``--workdir`` keeps the files somewhere you choose.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve()


def _swifthydra() -> list[str]:
    exe = Path(sys.executable).with_name("swifthydra")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "swifthydra.cli"]


def generate(path: Path, rows: int, cols: int, seed: int, *, labels: bool, block: int = 100_000) -> None:
    """Write ``rows`` x ``cols`` Gaussian features (1% shifted anomalies) block by block."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    shape = np.random.default_rng(0)  # the same column scales and offsets in every file
    scales = shape.uniform(0.5, 50.0, cols)
    offsets = shape.uniform(-100.0, 100.0, cols)
    rng = np.random.default_rng(seed)
    writer = None
    try:
        for start in range(0, rows, block):
            n = min(block, rows - start)
            X = rng.normal(size=(n, cols))
            anomalous = rng.random(n) < 0.01
            X[anomalous] += rng.normal(scale=4.0, size=(int(anomalous.sum()), cols))
            X = X * scales + offsets
            data = {"id": np.arange(start, start + n, dtype=np.int64)}
            data.update({f"f{j:02d}": X[:, j] for j in range(cols)})
            if labels:  # a third of the anomalies are known
                data["label"] = (anomalous & (rng.random(n) < 0.33)).astype(np.int64)
            table = pa.table(data)
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema)
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()


def measure(cmd: list[str]) -> dict:
    """Run ``cmd``; wall seconds and its peak RSS (MiB).

    The command is started by a fresh, small Python process (``--run-measured``): on Linux a
    child's ``ru_maxrss`` starts from the memory of the process it was forked from, so forking it
    from this one (which has held the generated data) would inflate it.
    """
    with tempfile.NamedTemporaryFile(suffix=".json") as report:
        done = subprocess.run([sys.executable, str(HERE), "--run-measured", report.name, *cmd])
        result = json.loads(Path(report.name).read_text())
    if done.returncode != 0 or result["returncode"] != 0:
        raise SystemExit(f"command failed ({result['returncode']}): {' '.join(cmd)}\n{result['stdout']}\n{result['stderr']}")
    return result


def run_measured(report: str, cmd: list[str]) -> None:
    """Run ``cmd`` as this (small) process's child; write its wall time and peak RSS to ``report``."""
    with tempfile.TemporaryFile() as fout, tempfile.TemporaryFile() as ferr:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=fout, stderr=ferr)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        fout.seek(0)
        ferr.seek(0)
        out, err = fout.read().decode(), ferr.read().decode()
    Path(report).write_text(json.dumps({
        "returncode": proc.returncode, "seconds": wall, "peak_rss_mib": usage.ru_maxrss / 1024,
        "stdout": out.strip(), "stderr": err.strip(),
    }))


def onnx_worker(model: str, data: str, out: str, chunk_rows: int, threads: int) -> None:
    """Score ``data`` with onnxruntime in chunks and write Parquet (pyarrow/numpy/onnxruntime only)."""
    import onnxruntime as ort
    import pyarrow as pa
    import pyarrow.parquet as pq

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    # idle worker threads sleep instead of spinning: on a machine shared with other jobs spinning
    # threads steal the cores (measured: 0.44 s instead of 0.30 s per 100,000 rows)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    inputs = {i.name: i.type for i in session.get_inputs()}
    meta = session.get_modelmeta().custom_metadata_map
    if json.loads(meta["swifthydra.inputs"])["kind"] != "columns":
        raise SystemExit("this worker expects a graph exported with the table preprocessing")
    t0 = time.perf_counter()
    source = pq.ParquetFile(data, pre_buffer=False, buffer_size=1 << 20)
    writer = None
    rows = 0
    for batch in source.iter_batches(batch_size=chunk_rows, columns=[*inputs, "id"]):
        feed = {}
        for name, kind in inputs.items():
            column = batch.column(name)
            if kind == "tensor(string)":
                feed[name] = column.to_numpy(zero_copy_only=False).astype(object)
            else:
                feed[name] = column.cast(pa.float64()).to_numpy(zero_copy_only=False)
        score, is_anomaly, probability = session.run(["score", "is_anomaly", "probability"], feed)
        table = pa.table({"id": batch.column("id"), "score": score, "is_anomaly": is_anomaly, "probability": probability})
        if writer is None:
            writer = pq.ParquetWriter(out, table.schema)
        writer.write_table(table)
        rows += batch.num_rows
    if writer is not None:
        writer.close()
    seconds = time.perf_counter() - t0
    print(f"scored {rows} rows in {seconds:.2f} s ({rows / seconds:,.0f} rows/s)")


def _loop_rate(stdout: str) -> int | None:
    """The rows/s a scorer reports for its read-score-write loop (start-up and exit excluded)."""
    import re

    found = re.search(r"\(([\d,]+) rows/s\)", stdout)
    return int(found.group(1).replace(",", "")) if found else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--cols", type=int, default=32)
    parser.add_argument("--train-rows", type=int, default=10_000)
    parser.add_argument("--chunk-rows", type=int, default=100_000)
    parser.add_argument("--threads", type=int, default=0, help="scoring threads (0 = all cores)")
    parser.add_argument("--repeat", type=int, default=1, help="best of this many score runs")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the files here")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--skip-onnx", action="store_true")
    parser.add_argument("--reuse", action="store_true", help="with --workdir: keep the data and model made before")
    args = parser.parse_args()

    work = args.workdir or Path(tempfile.mkdtemp(prefix="swifthydra-throughput-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        import pyarrow.parquet as pq

        data, train, model = work / "data.parquet", work / "train.parquet", work / "model"
        reuse = args.reuse and data.exists() and model.exists() and pq.ParquetFile(data).metadata.num_rows == args.rows
        sh = _swifthydra()
        if not reuse:
            t0 = time.perf_counter()
            generate(data, args.rows, args.cols, seed=1, labels=False)
            generate(train, args.train_rows, args.cols, seed=2, labels=True)
            print(f"generated {args.rows:,} x {args.cols} rows ({data.stat().st_size / 2**20:.0f} MiB) "
                  f"in {time.perf_counter() - t0:.1f} s", flush=True)
            fit = measure([*sh, "fit", str(train), "--label-column", "label", "--id-column", "id", "--out", str(model),
                           "--quick", "--force", "--seed", "0"])
            print(f"fit: {fit['seconds']:.1f} s  {fit['stdout']}", flush=True)
        scorer = json.loads(measure([*sh, "info", str(model), "--json"])["stdout"])["scorer"]
        print(f"model: {scorer}", flush=True)
        load_before = os.getloadavg()
        results = {}
        runs = []
        for _ in range(args.repeat):
            runs.append(measure([*sh, "score", str(model), str(data), "--out", str(work / "scores.parquet"),
                                 "--chunk-rows", str(args.chunk_rows), "--threads", str(args.threads), "--force"]))
        best = min(runs, key=lambda r: r["seconds"])
        results["swifthydra score (PyTorch MoME)"] = best
        print(f"score: {best['seconds']:.2f} s, {args.rows / best['seconds']:,.0f} rows/s, "
              f"peak RSS {best['peak_rss_mib']:.0f} MiB", flush=True)
        n_out = pq.ParquetFile(work / "scores.parquet").metadata.num_rows
        assert n_out == args.rows, (n_out, args.rows)
        if not args.skip_onnx:
            onnx_path = work / "model.onnx"
            export = measure([*sh, "export-onnx", str(model), str(onnx_path), "--force"])
            print(f"export-onnx: {export['seconds']:.1f} s  {export['stdout']}", flush=True)
            runs = []
            for _ in range(args.repeat):
                runs.append(measure([sys.executable, str(HERE), "--onnx-worker", str(onnx_path), str(data),
                                     str(work / "scores_onnx.parquet"), str(args.chunk_rows), str(args.threads)]))
            best = min(runs, key=lambda r: r["seconds"])
            results["onnxruntime (exported graph)"] = best
            print(f"onnx: {best['seconds']:.2f} s, {args.rows / best['seconds']:,.0f} rows/s, "
                  f"peak RSS {best['peak_rss_mib']:.0f} MiB", flush=True)
            a = pq.read_table(work / "scores.parquet", columns=["score"]).column("score").to_numpy()
            b = pq.read_table(work / "scores_onnx.parquet", columns=["score"]).column("score").to_numpy()
            print(f"max |score difference| PyTorch vs ONNX over {len(a):,} rows: {np.max(np.abs(a - b)):.2e}")
        load_after = os.getloadavg()
        import torch

        summary = {
            "rows": args.rows, "cols": args.cols, "chunk_rows": args.chunk_rows, "threads": args.threads,
            "scorer": scorer,
            "cpu_count": os.cpu_count(), "load_avg_before": load_before, "load_avg_after": load_after,
            "python": platform.python_version(), "torch": torch.__version__,
            "results": {k: {"seconds": round(v["seconds"], 3), "rows_per_s": round(args.rows / v["seconds"]),
                            "loop_rows_per_s": _loop_rate(v["stdout"]),
                            "peak_rss_mib": round(v["peak_rss_mib"])} for k, v in results.items()},
        }
        print()
        print(f"{args.rows:,} rows x {args.cols} columns, chunks of {args.chunk_rows:,}, {scorer}, "
              f"{os.cpu_count()} cores, load average {load_before[0]:.1f} before / {load_after[0]:.1f} after")
        print("| scorer | wall s | rows/s end to end | rows/s read-score-write loop | peak RSS (MiB) |")
        print("|---|--:|--:|--:|--:|")
        for k, v in summary["results"].items():
            loop = f"{v['loop_rows_per_s']:,}" if v["loop_rows_per_s"] else "-"
            print(f"| {k} | {v['seconds']:.2f} | {v['rows_per_s']:,} | {loop} | {v['peak_rss_mib']:,} |")
        if args.json:
            args.json.write_text(json.dumps(summary, indent=2))
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--run-measured":
        run_measured(sys.argv[2], sys.argv[3:])
    elif len(sys.argv) > 1 and sys.argv[1] == "--onnx-worker":
        model, data, out, chunk, threads = sys.argv[2:7]
        onnx_worker(model, data, out, int(chunk), int(threads))
    else:
        main()

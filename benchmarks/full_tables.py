"""Issue 26's full tables, run in time-boxed chunks that resume anywhere (a script, not a test).

The tables: the 31 shared ADBench datasets, seeds 1-3, labelled ratios 0.01 and 0.05 (the
standard scenario), and the unseen-type scenario (the 31 datasets, seed 1, each of the four
anomaly types as the labelled one), for four *parts* on identical splits:

* ``peers``: CatBoost, XGBOD, DevNet (reference) and IForest;
* ``swifthydra``: ``SwiftHydra()``, the defaults;
* ``none``: ``SwiftHydra(generator="none")``, the defaults without generation.

Each part is one ``swifthydra bench`` results file in a work folder (``--work``, default
``$SWIFTHYDRA_FULL_TABLES`` or the user cache), filled one dataset at a time, smallest first, until
``--minutes`` have passed (a dataset started is finished; ``bench`` resumes cell by cell). After
every dataset the part's cells are written to ``benchmarks/results/full_tables/PART.csv``, the
file to commit; a work folder without the results file is rebuilt from that CSV first, so a fresh
clone resumes where the last commit stopped.

    python benchmarks/full_tables.py run --part peers --minutes 45 --jobs 2
    python benchmarks/full_tables.py status
    python benchmarks/full_tables.py tables [--markdown]     # the tables of the finished cells

Cost (this 2-core machine, ``--jobs 2``): ``peers`` about 1 hour, ``swifthydra`` and ``none``
about 1.5 hours each (372 + 124 cells; large datasets are slower, small ones 5-20 s a cell).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "full_tables"
PARTS = {  # the bench arguments of each part
    "peers": ["--models", "catboost,xgbod,devnet-ref,iforest"],
    "swifthydra": ["--models", "swifthydra"],
    "none": ["--models", "swifthydra", "--param", 'swifthydra.generator="none"'],
}
RATIOS = ("0.01", "0.05")
SEEDS = ("1", "2", "3")
# the columns kept in the committed CSV (the per-episode history and host details stay in the work file)
CSV_COLUMNS = ("dataset", "protocol", "scenario", "labeled_ratio", "seed", "model", "config", "generator",
               "status", "auc_roc", "auc_pr", "fit_seconds", "score_seconds", "n_train", "n_test", "n_features",
               "n_labeled", "n_test_anomalies", "split_hash", "versions", "extra", "error")
MODEL_LABELS = {"swifthydra": "SwiftHydra()", "swifthydra+none": "generator=\"none\"", "catboost": "CatBoost",
                "xgbod": "XGBOD", "devnet-ref": "DevNet-ref", "iforest": "IForest"}


def _swifthydra() -> list[str]:
    exe = Path(sys.executable).with_name("swifthydra")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "swifthydra.cli"]


def datasets(data_dir: Path) -> list[str]:
    """The shared datasets' stems (e.g. ``43_WDBC``), fewest rows first."""
    files = sorted((data_dir / "classical").glob("*.npz"))
    sizes = {}
    for f in files:
        with np.load(f) as d:
            sizes[f.stem] = d["y"].shape[0]
    return sorted(sizes, key=lambda s: (sizes[s], s))


def work_dir(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    if os.environ.get("SWIFTHYDRA_FULL_TABLES"):
        return Path(os.environ["SWIFTHYDRA_FULL_TABLES"])
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "swifthydra" / "full_tables"


def restore(part: str, work: Path) -> Path:
    """The part's results file; rebuilt from the committed CSV when the work folder lacks it."""
    from swifthydra.bench.store import ResultStore

    path = work / f"{part}.sqlite"
    committed = RESULTS / f"{part}.csv"
    if not path.exists() and committed.exists():
        with open(committed, newline="") as fh, ResultStore(path) as store:
            for row in csv.DictReader(fh):
                row = {k: (v if v != "" else None) for k, v in row.items()}
                row["labeled_ratio"] = float(row["labeled_ratio"])
                row["seed"] = int(row["seed"])
                store.add(row)
    return path


def export(part: str, path: Path) -> int:
    """Write the part's cells to the committed CSV (sorted, so a diff shows only new cells)."""
    import sqlite3

    with sqlite3.connect(path) as con:
        rows = con.execute(f"SELECT {', '.join(CSV_COLUMNS)} FROM results").fetchall()
    rows.sort(key=lambda r: tuple("" if v is None else str(v) for v in r[:8]))
    RESULTS.mkdir(parents=True, exist_ok=True)
    with open(RESULTS / f"{part}.csv", "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(CSV_COLUMNS)
        w.writerows(rows)
    return len(rows)


def commands(part: str, dataset: str, out: Path, data_dir: Path, jobs: int) -> list[list[str]]:
    common = [*PARTS[part], "--datasets", dataset, "--data-dir", str(data_dir), "--no-download", "--jobs", str(jobs),
              "--threads", "1", "--timeout", "1800", "--out", str(out)]
    return [[*_swifthydra(), "bench", "--labeled-ratio", *RATIOS, "--seeds", *SEEDS, *common],
            [*_swifthydra(), "bench", "--scenario", "unseen-type", "--seeds", "1", *common]]


def run(part: str, minutes: float, work: Path, data_dir: Path, jobs: int) -> None:
    work.mkdir(parents=True, exist_ok=True)
    path = restore(part, work)
    deadline = time.monotonic() + 60 * minutes
    for dataset in datasets(data_dir):
        if time.monotonic() > deadline:
            print(f"{minutes:g} minutes passed: stopping before {dataset}; run again to resume", flush=True)
            break
        t0 = time.monotonic()
        for cmd in commands(part, dataset, path, data_dir, jobs):
            done = subprocess.run(cmd, check=False)
            if done.returncode:  # failed cells stay in the file as errors (``status`` counts them)
                print(f"bench exited with code {done.returncode}: {' '.join(cmd)}", flush=True)
        n = export(part, path)
        print(f"{part}: {dataset} in {time.monotonic() - t0:.0f} s; {n} cells in {RESULTS / (part + '.csv')}",
              flush=True)


def _cells() -> list[dict]:
    out = []
    for part in PARTS:
        f = RESULTS / f"{part}.csv"
        if f.exists():
            with open(f, newline="") as fh:
                for row in csv.DictReader(fh):
                    if row["status"] == "ok":
                        row["model"] = "swifthydra+none" if part == "none" else row["model"]
                        out.append(row)
    return out


def status(data_dir: Path) -> str:
    n_data = len(datasets(data_dir))
    per_model = n_data * (len(RATIOS) * len(SEEDS) + 4)
    lines = []
    for part, args in PARTS.items():
        f = RESULTS / f"{part}.csv"
        n_models = len(args[1].split(","))
        rows = []
        if f.exists():
            with open(f, newline="") as fh:
                rows = list(csv.DictReader(fh))
        ok = sum(r["status"] == "ok" for r in rows)
        lines.append(f"{part}: {len(rows)} of {per_model * n_models} cells ({ok} ok, "
                     f"{len({r['dataset'] for r in rows})} of {n_data} datasets)")
    return "\n".join(lines)


def tables(markdown: bool) -> str:
    """Per scenario and ratio: each model's mean AUC-ROC / AUC-PR and average rank over the datasets
    every model has finished (seeds averaged per dataset first), and SwiftHydra() against each
    other model (datasets better / worse, Wilcoxon p)."""
    from scipy.stats import rankdata, wilcoxon

    cells = _cells()
    groups: dict[tuple, dict[str, dict[str, list]]] = {}
    for r in cells:
        values = [("standard", r["dataset"], float(r["auc_roc"]), float(r["auc_pr"]))]
        if r["scenario"].startswith("unseen"):  # the test AUCs of the never-labelled types, and of the labelled one
            trained = r["scenario"].split(":", 1)[1]
            own = json.loads(r["extra"] or "{}").get("per_type", {}).get(trained)
            cell = f"{r['dataset']}:{trained}"
            values = [("never-labelled types", cell, float(r["auc_roc"]), float(r["auc_pr"]))]
            if own:
                values.append(("the labelled type", cell, float(own["auc_roc"]), float(own["auc_pr"])))
        for kind, cell, roc, pr in values:
            per = groups.setdefault((kind, r["labeled_ratio"]), {}).setdefault(r["model"], {})
            per.setdefault(cell, []).append((roc, pr))
    out = []
    for (kind, ratio), models in sorted(groups.items()):
        common = sorted(set.intersection(*(set(v) for v in models.values())))
        if not common:
            continue
        names = [m for m in MODEL_LABELS if m in models]
        roc = np.array([[np.mean([c[0] for c in models[m][d]]) for d in common] for m in names])
        pr = np.array([[np.mean([c[1] for c in models[m][d]]) for d in common] for m in names])
        ranks = np.mean([rankdata(-roc[:, j]) for j in range(len(common))], axis=0)
        title = f"{kind}, labelled ratio {ratio}: {len(common)} " + ("datasets" if kind == "standard" else "dataset x type cells")
        out.append(("### " if markdown else "") + title)
        head = ["model", "mean AUC-ROC", "mean AUC-PR", "avg rank", "SwiftHydra() better/worse", "Wilcoxon p"]
        out.append("| " + " | ".join(head) + " |" if markdown else "  ".join(head))
        if markdown:
            out.append("|---|" + "--:|" * (len(head) - 1))
        ref = names.index("swifthydra") if "swifthydra" in names else None
        for i, m in enumerate(names):
            vs, p = "", ""
            if ref is not None and i != ref:
                d = roc[ref] - roc[i]
                vs = f"{int((d > 1e-4).sum())}/{int((d < -1e-4).sum())}"
                if np.any(np.abs(d) > 1e-12):
                    p = f"{wilcoxon(roc[ref], roc[i], zero_method='zsplit').pvalue:.3f}"
            row = [MODEL_LABELS[m], f"{roc[i].mean():.4f}", f"{pr[i].mean():.4f}", f"{ranks[i]:.2f}", vs, p]
            out.append("| " + " | ".join(row) + " |" if markdown else "  ".join(row))
        out.append("")
    return "\n".join(out) if out else "no dataset has finished cells of every model yet"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "adbench")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run (or resume) one part for at most --minutes")
    r.add_argument("--part", choices=sorted(PARTS), required=True)
    r.add_argument("--minutes", type=float, default=45.0)
    r.add_argument("--jobs", type=int, default=2)
    r.add_argument("--work", default=None, help="folder of the results files (default: the user cache)")
    sub.add_parser("status", help="cells finished per part")
    t = sub.add_parser("tables", help="the tables of the finished cells")
    t.add_argument("--markdown", action="store_true")
    a = p.parse_args()
    if a.command == "run":
        run(a.part, a.minutes, work_dir(a.work), a.data_dir, a.jobs)
    elif a.command == "status":
        print(status(a.data_dir))
    else:
        print(tables(a.markdown))


if __name__ == "__main__":
    main()

"""Issue 26's full tables, run in time-boxed chunks that resume anywhere (a script, not a test).

The tables: the 31 shared ADBench datasets, seeds 1-3, labelled ratios 0.01 and 0.05 (the
standard scenario), and the unseen-type scenario (the 31 datasets, seed 1, each of the four
anomaly types as the labelled one), for five *parts* on identical splits:

* ``peers``: CatBoost, XGBOD, DevNet (reference) and IForest;
* ``none``: ``SwiftHydra()``, the defaults (``generator="none"``: no generated anomalies), run again
  with version 0.4 (the density prior at full weight beyond the training data, docs/benchmarks.md
  §11.1; 0.3's cells are in git); the ``fast`` and ``e8`` parts ran on the code before 0.3;
* ``rl``: ``SwiftHydra(generator="rl")``, the paper's loop (the default until these tables showed
  it level with ``none`` for twice the fit time), run again with the code of version 0.3 (before
  the far tail);
* ``prior``: SwiftHydra's k-NN density prior alone (no network), bench model ``prior``;
* ``fast``: a candidate default (issue 24: the large detector on batches of 128 rows, the MoME
  with 8 experts and no search for their number), compared with ``SwiftHydra()`` in a line under
  each table, like ``rl``, so that a part still running leaves the tables as they are;
* ``e8``: a candidate default (issue 24: the MoME with a fixed 8 experts and no search for their
  number, the rest as ``SwiftHydra()``; 3.7 times CatBoost's fit on the speed panel against 4.5).

Each part is one ``swifthydra bench`` results file in a work folder (``--work``, default
``$SWIFTHYDRA_FULL_TABLES`` or the user cache), filled one dataset at a time, smallest first, until
``--minutes`` have passed (a dataset started is finished; ``bench`` resumes cell by cell). After
every dataset the part's cells are written to ``benchmarks/results/full_tables/PART.csv``, the
file to commit; a work folder without the results file is rebuilt from that CSV first, so a fresh
clone resumes where the last commit stopped.

    python benchmarks/full_tables.py run --part peers --minutes 45 --jobs 2
    python benchmarks/full_tables.py status
    python benchmarks/full_tables.py tables [--markdown]     # the tables of the finished cells
    python benchmarks/full_tables.py write                   # into README.md and docs/benchmarks.md

Cost (this 2-core machine, ``--jobs 2``): ``peers`` about 1 hour, ``swifthydra`` and ``none``
about 1.5 hours each (186 + 124 cells; large datasets are slower, small ones 5-20 s a cell), ``prior``
a few minutes.
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
    "rl": ["--models", "swifthydra", "--param", 'swifthydra.generator="rl"'],
    "none": ["--models", "swifthydra", "--param", 'swifthydra.generator="none"'],
    "prior": ["--models", "prior"],
    # candidate defaults: compared with SwiftHydra() in a line under each table, not a column of it
    "fast": ["--models", "swifthydra", "--param", 'swifthydra.detector_params={"batch_size":128}',
             "--param", 'swifthydra.mome_params={"n_experts":8}'],
    "e8": ["--models", "swifthydra", "--param", 'swifthydra.mome_params={"n_experts":8}'],
}
CANDIDATES = ("fast", "e8")
RATIOS = ("0.01", "0.05")
SEEDS = ("1", "2", "3")
# the columns kept in the committed CSV (the per-episode history and host details stay in the work file)
CSV_COLUMNS = ("dataset", "protocol", "scenario", "labeled_ratio", "seed", "model", "config", "generator",
               "status", "auc_roc", "auc_pr", "fit_seconds", "score_seconds", "n_train", "n_test", "n_features",
               "n_labeled", "n_test_anomalies", "split_hash", "versions", "extra", "error")
# the reference row (the defaults) first; "swifthydra+rl" is the rl part's SwiftHydra
MODEL_LABELS = {"swifthydra": "SwiftHydra()", "swifthydra+rl": "generator=\"rl\"", "catboost": "CatBoost",
                "xgbod": "XGBOD", "devnet-ref": "DevNet-ref", "iforest": "IForest",
                "prior": "the prior alone",
                "swifthydra+fast": "batch_size=128 and 8 experts (candidate)",
                "swifthydra+e8": "8 experts, no search (candidate)"}


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
                        if part == "rl" or part in CANDIDATES:
                            row["model"] = f"swifthydra+{part}"
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


KINDS = ("standard", "never-labelled types", "the labelled type")
# the generated block of README.md and docs/benchmarks.md (``python benchmarks/full_tables.py write``)
BEGIN, END = "<!-- full-tables:begin (generated by benchmarks/full_tables.py write) -->", "<!-- full-tables:end -->"


def _groups(cells: list[dict]) -> dict[tuple, dict[str, dict[str, list]]]:
    """``(kind, ratio) -> model -> dataset -> [(AUC-ROC, AUC-PR, fit seconds), ...]``: every seed of a
    standard cell, and every anomaly type of an unseen-type cell, under its dataset."""
    groups: dict[tuple, dict[str, dict[str, list]]] = {}
    for r in cells:
        fit = float(r["fit_seconds"]) if r.get("fit_seconds") else float("nan")
        values = [("standard", float(r["auc_roc"]), float(r["auc_pr"]))]
        if r["scenario"].startswith("unseen"):  # the test AUCs of the never-labelled types, and of the labelled one
            trained = r["scenario"].split(":", 1)[1]
            own = json.loads(r["extra"] or "{}").get("per_type", {}).get(trained)
            values = [("never-labelled types", float(r["auc_roc"]), float(r["auc_pr"]))]
            if own:
                values.append(("the labelled type", float(own["auc_roc"]), float(own["auc_pr"])))
        for kind, roc, pr in values:
            per = groups.setdefault((kind, r["labeled_ratio"]), {}).setdefault(r["model"], {})
            per.setdefault(r["dataset"], []).append((roc, pr, fit))
    return groups


def summarise(models: dict[str, dict[str, list]]) -> dict | None:
    """One table's numbers over the datasets every model has finished: per model the mean AUC-ROC
    and AUC-PR (seeds or anomaly types averaged per dataset first), the average rank by AUC-ROC, the
    median fit seconds over its cells, and SwiftHydra() against it (datasets better / worse by more
    than 1e-4, two-sided Wilcoxon signed-rank p over datasets)."""
    from scipy.stats import rankdata, wilcoxon

    common = sorted(set.intersection(*(set(v) for v in models.values())))
    if not common:
        return None
    names = [m for m in MODEL_LABELS if m in models]
    roc = np.array([[np.mean([c[0] for c in models[m][d]]) for d in common] for m in names])
    pr = np.array([[np.mean([c[1] for c in models[m][d]]) for d in common] for m in names])
    fit = [float(np.nanmedian([c[2] for d in common for c in models[m][d]])) for m in names]
    ranks = np.mean([rankdata(-roc[:, j]) for j in range(len(common))], axis=0)
    n_cells = sum(len(models[names[0]][d]) for d in common)
    rows = []
    ref = names.index("swifthydra") if "swifthydra" in names else None
    for i, m in enumerate(names):
        row = {"model": m, "roc": float(roc[i].mean()), "pr": float(pr[i].mean()), "rank": float(ranks[i]),
               "fit": fit[i], "better": None, "worse": None, "p": None}
        if ref is not None and i != ref:
            d = roc[ref] - roc[i]
            row["better"], row["worse"] = int((d > 1e-4).sum()), int((d < -1e-4).sum())
            if np.any(np.abs(d) > 1e-12):
                row["p"] = float(wilcoxon(roc[ref], roc[i], zero_method="zsplit").pvalue)
        rows.append(row)
    return {"datasets": common, "cells": n_cells, "rows": rows}


def _render(title: str, table: dict, markdown: bool) -> list[str]:
    head = ["model", "mean AUC-ROC", "mean AUC-PR", "avg rank", "SwiftHydra() better/worse", "Wilcoxon p",
            "fit s (median)"]
    best_roc = max(r["roc"] for r in table["rows"])
    best_pr = max(r["pr"] for r in table["rows"])
    best_rank = min(r["rank"] for r in table["rows"])
    out = [("### " if markdown else "") + title]
    out.append("| " + " | ".join(head) + " |" if markdown else "  ".join(head))
    if markdown:
        out.append("|---|" + "--:|" * (len(head) - 1))
    for r in table["rows"]:
        def bold(text: str, best: bool) -> str:
            return f"**{text}**" if markdown and best else text

        cells = [MODEL_LABELS[r["model"]], bold(f"{r['roc']:.4f}", r["roc"] == best_roc),
                 bold(f"{r['pr']:.4f}", r["pr"] == best_pr), bold(f"{r['rank']:.2f}", r["rank"] == best_rank),
                 "" if r["better"] is None else f"{r['better']}/{r['worse']}",
                 "" if r["p"] is None else f"{r['p']:.3f}", f"{r['fit']:.2f}"]
        out.append("| " + " | ".join(cells) + " |" if markdown else "  ".join(cells))
    out.append("")
    return out


def tables(markdown: bool, kinds: tuple[str, ...] = KINDS, candidates: bool = True) -> str:
    """Per scenario and ratio, the :func:`summarise` table of the finished cells, and under it the
    generation's line: the rl part against the defaults on every dataset both have finished (the
    peers need not have), then (``candidates``) one line per candidate default the same way."""
    groups = _groups(_cells())
    out = []
    for (kind, ratio), models in sorted(groups.items(), key=lambda kv: (KINDS.index(kv[0][0]), kv[0][1])):
        names = {f"swifthydra+{c}" for c in CANDIDATES}
        table = summarise({m: v for m, v in models.items() if m not in names}) if kind in kinds else None
        if table is None:
            continue
        n = len(table["datasets"])
        what = "" if kind == "standard" else f" ({table['cells']} dataset x type cells, types averaged per dataset)"
        out += _render(f"{kind}, labelled ratio {ratio}: {n} datasets{what}", table, markdown)
        for other in ("swifthydra+rl", *(sorted(names) if candidates else ())):
            pair = {m: models[m] for m in ("swifthydra", other) if m in models}
            both = summarise(pair) if len(pair) == 2 else None
            if both is None:
                continue
            d, r = both["rows"]
            p = "n/a" if r["p"] is None else f"{r['p']:.3f}"
            out[-1:] = ["", f"{MODEL_LABELS[other]} against {MODEL_LABELS['swifthydra']} on the "
                        f"{len(both['datasets'])} datasets both have finished: AUC-ROC {r['roc']:.4f} against "
                        f"{d['roc']:.4f}, AUC-PR {r['pr']:.4f} against {d['pr']:.4f}, better on {r['worse']} and "
                        f"worse on {r['better']} datasets (Wilcoxon p = {p}); median fit {r['fit']:.2f} s "
                        f"against {d['fit']:.2f} s.", ""]
    return "\n".join(out) if out else "no dataset has finished cells of every model yet"


def headline() -> str:
    """The README's one table: per scenario and ratio (rows), each model's mean AUC-ROC / AUC-PR
    over the datasets every model has finished (the best of each in bold), then the median fit
    seconds of a cell at labelled ratio 0.05; :func:`tables` has ranks, Wilcoxon p and the rest."""
    groups = _groups(_cells())
    skip = {f"swifthydra+{c}" for c in CANDIDATES}
    found = []
    for (kind, ratio), models in sorted(groups.items(), key=lambda kv: (KINDS.index(kv[0][0]), kv[0][1])):
        table = summarise({m: v for m, v in models.items() if m not in skip})
        if table is not None:
            label = f"labelled ratio {ratio}" if kind == "standard" else kind
            found.append((f"{label} ({len(table['datasets'])} datasets)", {r["model"]: r for r in table["rows"]},
                          (kind, ratio) == ("standard", "0.05")))
    if not found:
        return "no dataset has finished cells of every model yet"
    columns = [m for m in MODEL_LABELS if any(m in rows for _, rows, _ in found)]
    out = ["| mean AUC-ROC / AUC-PR | " + " | ".join(MODEL_LABELS[m] for m in columns) + " |",
           "|---|" + "--:|" * len(columns)]
    fits = None
    for label, rows, standard_005 in found:
        best_roc = max(r["roc"] for r in rows.values())
        best_pr = max(r["pr"] for r in rows.values())
        cells = []
        for m in columns:
            r = rows.get(m)
            if r is None:
                cells.append("")
                continue
            roc, pr = f"{r['roc']:.3f}", f"{r['pr']:.3f}"
            cells.append(f"{f'**{roc}**' if r['roc'] == best_roc else roc} / {f'**{pr}**' if r['pr'] == best_pr else pr}")
        out.append(f"| {label} | " + " | ".join(cells) + " |")
        if standard_005:
            fits = [f"{rows[m]['fit']:.2f}" if m in rows else "" for m in columns]
    if fits is not None:
        out.append("| median fit s, labelled ratio 0.05 | " + " | ".join(fits) + " |")
    return "\n".join(out)


def write(paths: list[Path], kinds_of: dict[str, tuple[str, ...]]) -> list[Path]:
    """Replace the generated block of each file (between :data:`BEGIN` and :data:`END`) with the
    markdown tables; returns the files that changed."""
    changed = []
    for path in paths:
        text = path.read_text()
        if BEGIN not in text or END not in text:
            raise SystemExit(f"{path} has no generated block: add the lines {BEGIN!r} and {END!r} where it goes")
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        body = page_tables(path.name, kinds_of)
        new = f"{head}{BEGIN}\n{body.rstrip()}\n{END}{tail}"
        if new != text:
            path.write_text(new)
            changed.append(path)
    return changed


# which tables each generated file shows: docs/benchmarks.md all of them, with the candidates'
# lines; the README (None) the one headline table
FILES = {"README.md": None, "benchmarks.md": KINDS}


def page_tables(name: str, kinds_of: dict[str, tuple[str, ...] | None] = FILES) -> str:
    """The generated block of the page called ``name``."""
    kinds = kinds_of.get(name, KINDS)
    if kinds is None:
        return headline()
    return tables(True, kinds, candidates=True).replace("### ", "#### ")


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
    sub.add_parser("write", help="write the tables into README.md and docs/benchmarks.md (their generated blocks)")
    a = p.parse_args()
    if a.command == "run":
        run(a.part, a.minutes, work_dir(a.work), a.data_dir, a.jobs)
    elif a.command == "status":
        print(status(a.data_dir))
    elif a.command == "write":
        changed = write([REPO / "README.md", REPO / "docs" / "benchmarks.md"], FILES)
        print("\n".join(f"wrote {p.relative_to(REPO)}" for p in changed) or "README.md and docs/benchmarks.md are current")
    else:
        print(tables(a.markdown))


if __name__ == "__main__":
    main()

"""The development panel: SwiftHydra variants side by side on identical splits (a script, not a test).

Issues 24 and 26 measure every change on one fixed panel before any full table: 10 shared
ADBench datasets (those of docs/benchmarks.md §10.3), seeds 1-2, labelled ratios 0.01 and 0.05,
and (``--unseen``) the unseen-type scenario on 6 of them, seed 1. Each variant is a JSON object of
``SwiftHydra`` parameters; its cells go through ``swifthydra bench`` into its own SQLite file
(``OUT/NAME.sqlite``), so a run resumes where it stopped, two variants can run at once (one
process each), and a variant measured once is reused by later comparisons.

    python benchmarks/panel.py run --out panel/ --variant base='{}' --jobs 1
    python benchmarks/panel.py run --out panel/ --variant tol='{"detector_params": {"loss_tol": 0.01}}'
    python benchmarks/panel.py summary panel/base.sqlite panel/tol.sqlite [--markdown]
    python benchmarks/panel.py speed --out panel/          # SwiftHydra beside CatBoost: fit-time ratios
    python benchmarks/panel.py speed --out panel/ --params '{"detector_params": {"batch_size": 128}}'  # a variant

``summary`` compares every file with the first: per labelled ratio (and scenario), the mean
AUC-ROC and AUC-PR over the cells both have, cells better / level / worse, the Wilcoxon
signed-rank p-value over the paired cells (scipy), and the median and total fit seconds. Cost:
about 40 cells per variant (60 with ``--unseen``), 30-90 s each on one core of this machine.

``speed`` is issue 24's side-by-side speed panel (docs/benchmarks.md §10.3): the 10 datasets, seed
1, ratio 0.05, ``SwiftHydra()`` and CatBoost with one thread each, their cells interleaved on
``--jobs`` cores in one run (``OUT/speed.sqlite``), then per dataset both fit times, their ratio,
both AUC-ROCs, and the median ratio (the target is at most 3).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np

PANEL = ["Cardiotocography", "thyroid", "PageBlocks", "annthyroid", "pendigits", "satimage-2", "letter",
         "magic.gamma", "Pima", "shuttle"]
UNSEEN = ["Cardiotocography", "thyroid", "annthyroid", "pendigits", "satimage-2", "shuttle"]


def _swifthydra() -> list[str]:
    exe = Path(sys.executable).with_name("swifthydra")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "swifthydra.cli"]


def bench_commands(out: Path, name: str, params: dict, *, data_dir: str, ratios, seeds, unseen: bool,
                   jobs: int, datasets=PANEL) -> list[list[str]]:
    """The ``swifthydra bench`` commands of one variant (standard scenario, then unseen types)."""
    common = ["--models", "swifthydra", "--data-dir", data_dir, "--no-download", "--jobs", str(jobs),
              "--threads", "1", "--timeout", "1800", "--out", str(out / f"{name}.sqlite")]
    for key, value in params.items():
        common += ["--param", f"swifthydra.{key}={json.dumps(value, separators=(',', ':'))}"]
    cmds = [[*_swifthydra(), "bench", "--datasets", ",".join(datasets), "--labeled-ratio", *map(str, ratios),
             "--seeds", *map(str, seeds), *common]]
    if unseen:
        cmds.append([*_swifthydra(), "bench", "--datasets", ",".join(UNSEEN), "--scenario", "unseen-type",
                     "--seeds", "1", *common])
    return cmds


def load(path: Path) -> dict:
    """``{(scenario, ratio, dataset, seed): (auc_roc, auc_pr, fit_seconds)}`` of the ok cells."""
    with sqlite3.connect(path) as con:
        rows = con.execute("SELECT scenario, labeled_ratio, dataset, seed, auc_roc, auc_pr, fit_seconds "
                           "FROM results WHERE status = 'ok' AND model = 'swifthydra'").fetchall()
    return {(s, float(r), d, int(seed)): (roc, pr, fs) for s, r, d, seed, roc, pr, fs in rows}


def summary(paths: list[Path], markdown: bool = False) -> str:
    from scipy.stats import wilcoxon

    data = {p.stem: load(p) for p in paths}
    names = list(data)
    base = data[names[0]]
    groups = sorted({(k[0], k[1]) for k in base})
    lines = []
    header = ["scenario", "ratio", "variant", "cells", "AUC-ROC", "AUC-PR", "better/level/worse (ROC)",
              "Wilcoxon p", "median fit s", "total fit s"]
    lines.append("| " + " | ".join(header) + " |" if markdown else "  ".join(header))
    if markdown:
        lines.append("|" + "---|" * 3 + "--:|" * (len(header) - 3))
    for scenario, ratio in groups:
        for name in names:
            keys = sorted(k for k in base if k[:2] == (scenario, ratio) and k in data[name])
            if not keys:
                continue
            a = np.array([base[k] for k in keys], dtype=float)
            b = np.array([data[name][k] for k in keys], dtype=float)
            diff = b[:, 0] - a[:, 0]
            wins, level, losses = int((diff > 1e-4).sum()), int((np.abs(diff) <= 1e-4).sum()), int((diff < -1e-4).sum())
            p = float("nan")
            if name != names[0] and wins + losses > 0:
                p = float(wilcoxon(b[:, 0], a[:, 0], zero_method="zsplit").pvalue)
            cells = [scenario, f"{ratio:g}", name, str(len(keys)), f"{b[:, 0].mean():.4f}", f"{b[:, 1].mean():.4f}",
                     "-" if name == names[0] else f"{wins}/{level}/{losses}", "-" if np.isnan(p) else f"{p:.3f}",
                     f"{np.median(b[:, 2]):.1f}", f"{b[:, 2].sum():.0f}"]
            lines.append("| " + " | ".join(cells) + " |" if markdown else "  ".join(cells))
    return "\n".join(lines)


def speed_summary(path: Path, markdown: bool = False, params: dict | None = None) -> str:
    from swifthydra.bench.store import canonical_config

    with sqlite3.connect(path) as con:
        rows = con.execute("SELECT dataset, model, auc_roc, fit_seconds, config FROM results WHERE status = 'ok' "
                           "AND scenario = 'standard'").fetchall()
    cells: dict[str, dict[str, tuple[float, float]]] = {}
    for dataset, model, roc, fit, config in rows:
        if config == canonical_config(params if model == "swifthydra" else None):  # as bench stores it
            cells.setdefault(dataset, {})[model] = (roc, fit)
    header = ["dataset", "CatBoost AUC-ROC", "SwiftHydra AUC-ROC", "CatBoost fit s", "SwiftHydra fit s", "ratio"]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "--:|" * 5] if markdown else ["  ".join(header)]
    ratios = []
    for dataset in sorted(cells):
        c = cells[dataset]
        if "catboost" not in c or "swifthydra" not in c:
            continue
        ratio = c["swifthydra"][1] / c["catboost"][1]
        ratios.append(ratio)
        row = [dataset, f"{c['catboost'][0]:.3f}", f"{c['swifthydra'][0]:.3f}", f"{c['catboost'][1]:.1f}",
               f"{c['swifthydra'][1]:.1f}", f"{ratio:.1f}"]
        lines.append("| " + " | ".join(row) + " |" if markdown else "  ".join(row))
    if ratios:
        lines.append(f"median fit-time ratio SwiftHydra / CatBoost: {np.median(ratios):.1f} over {len(ratios)} datasets")
    return "\n".join(lines)


def main() -> None:
    repo = Path(__file__).resolve().parents[1]
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run (or resume) variants")
    run.add_argument("--out", type=Path, required=True)
    run.add_argument("--variant", action="append", required=True, help="NAME=JSON of SwiftHydra parameters")
    run.add_argument("--ratios", type=float, nargs="+", default=[0.01, 0.05])
    run.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    run.add_argument("--unseen", action="store_true", help="add the unseen-type scenario (6 datasets, seed 1)")
    run.add_argument("--jobs", type=int, default=1)
    run.add_argument("--data-dir", default=str(repo.parent / "shared" / "adbench"))
    run.add_argument("--print", action="store_true", help="print the commands instead of running them")
    speed = sub.add_parser("speed", help="SwiftHydra() beside CatBoost, fit times (issue 24)")
    speed.add_argument("--out", type=Path, required=True)
    speed.add_argument("--jobs", type=int, default=2)
    speed.add_argument("--data-dir", default=str(repo.parent / "shared" / "adbench"))
    speed.add_argument("--markdown", action="store_true")
    speed.add_argument("--params", default="{}", help="JSON of SwiftHydra parameters (default: the defaults)")
    speed.add_argument("--print", action="store_true", help="print the command instead of running it")
    summ = sub.add_parser("summary", help="compare result files with the first")
    summ.add_argument("files", type=Path, nargs="+")
    summ.add_argument("--markdown", action="store_true")
    args = p.parse_args()
    if args.command == "summary":
        print(summary(args.files, args.markdown))
        return
    if args.command == "speed":
        args.out.mkdir(parents=True, exist_ok=True)
        cmd = [*_swifthydra(), "bench", "--datasets", ",".join(PANEL), "--labeled-ratio", "0.05", "--seeds", "1",
               "--models", "catboost,swifthydra", "--data-dir", args.data_dir, "--no-download", "--jobs",
               str(args.jobs), "--threads", "1", "--timeout", "1800", "--out", str(args.out / "speed.sqlite")]
        params = json.loads(args.params)
        for key, value in params.items():
            cmd += ["--param", f"swifthydra.{key}={json.dumps(value, separators=(',', ':'))}"]
        print("$ " + shlex.join(cmd), flush=True)
        if not args.print:
            subprocess.run(cmd, check=True)
            print(speed_summary(args.out / "speed.sqlite", args.markdown, params))
        return
    args.out.mkdir(parents=True, exist_ok=True)
    for spec in args.variant:
        name, sep, text = spec.partition("=")
        if not sep or not name.isidentifier():
            p.error(f"--variant {spec!r}: write NAME=JSON, e.g. base='{{}}'")
        for cmd in bench_commands(args.out, name, json.loads(text or "{}"), data_dir=args.data_dir,
                                  ratios=args.ratios, seeds=args.seeds, unseen=args.unseen, jobs=args.jobs):
            print("$ " + shlex.join(cmd), flush=True)
            if not args.print:
                subprocess.run(cmd, check=True)


if __name__ == "__main__":
    main()

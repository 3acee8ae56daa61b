"""The augmentation benchmark of issue 12: detector x generator on identical ADBench splits.

Each table is one results file, written by ``swifthydra bench --generators ...`` and summarised by
``swifthydra report`` (section "Generator gains over `none`": mean ΔAUC-ROC / ΔAUC-PR of each
generator over ``none`` per detector, wins/ties/losses, Wilcoxon-Holm p-values, a plot):

=========  ==================================================================================
table      cells
=========  ==================================================================================
la0.01     31 shared datasets, seeds 1-3, labelled ratio 0.01, standard scenario
la0.05     the same at labelled ratio 0.05
unseen     unseen-type scenario (ADBench's synthetic anomalies; labels of one type at ratio
           0.05, test on all four; each of the four types in turn), seeds 1-3
=========  ==================================================================================

Detectors ``catboost``, ``devnet-ref`` and ``swifthydra``; generators ``none``, ``mixup``,
``nngmix``, ``cvae``, ``rl``. CatBoost and DevNet-ref are fitted on the training split
augmented by each sampler of :mod:`swifthydra.generators` (CatBoost with the generated rows'
weights); SwiftHydra gets the generator as its own ``generator`` parameter. SwiftHydra versions
that do not accept some generator names yet get a second ``bench`` call with the names they accept
(the script says which were left out).

Print the commands (nothing run)::

    python benchmarks/augmentation.py --print

Run one table (resumable: run the same command again after an interruption), then its report::

    python benchmarks/augmentation.py --table la0.01 --jobs 2 --threads 1

Smaller runs: ``--datasets 29_Pima,38_thyroid --seeds 1 --models catboost --generators
none,nngmix``; ``--dry-run`` only counts the cells.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = ROOT.parent / "shared" / "adbench"
TABLES = {
    "la0.01": {"labeled_ratio": "0.01", "scenario": "standard"},
    "la0.05": {"labeled_ratio": "0.05", "scenario": "standard"},
    "unseen": {"labeled_ratio": "0.05", "scenario": "unseen-type"},
}
MODELS = ("catboost", "devnet-ref", "swifthydra")
GENERATORS = ("none", "mixup", "nngmix", "cvae", "rl")


def swifthydra_generators(wanted: list[str]) -> tuple[list[str], list[str]]:
    """(accepted, left out) of ``wanted`` by ``SwiftHydra(generator=...)`` in this version."""
    try:
        from swifthydra import hydra
    except ImportError:
        return wanted, []
    accepted = getattr(hydra, "_GENERATORS", None)
    if not accepted:
        return wanted, []
    return [g for g in wanted if g in accepted], [g for g in wanted if g not in accepted]


def commands(table: str, args) -> list[list[str]]:
    """The ``swifthydra bench`` command lines of one table, then its ``swifthydra report``."""
    spec = TABLES[table]
    out = Path(args.out_dir) / f"augmentation_{table}.sqlite"
    base = ["swifthydra", "bench", "--datasets", args.datasets, "--data-dir", str(args.data_dir),
            "--no-download", "--seeds", args.seeds, "--labeled-ratio", spec["labeled_ratio"],
            "--out", str(out), "--jobs", str(args.jobs)]
    if spec["scenario"] != "standard":
        base += ["--scenario", spec["scenario"]]
    if args.threads:
        base += ["--threads", str(args.threads)]
    if args.timeout:
        base += ["--timeout", str(args.timeout)]
    if args.dry_run:
        base += ["--dry-run"]
    for p in args.param or []:
        base += ["--param", p]
    models = [m for m in args.models.split(",") if m]
    gens = [g for g in args.generators.split(",") if g]
    others = [m for m in models if m != "swifthydra"]
    cmds = []
    if others:
        cmds.append([*base, "--models", ",".join(others), "--generators", ",".join(gens)])
    if "swifthydra" in models:
        accepted, left_out = swifthydra_generators(gens)
        if left_out:
            print(f"# {table}: SwiftHydra(generator=...) does not accept {', '.join(left_out)} "
                  "in this version: its cells with them are left out", file=sys.stderr)
        if accepted:
            cmds.append([*base, "--models", "swifthydra", "--generators", ",".join(accepted)])
    if not args.dry_run:
        cmds.append(["swifthydra", "report", str(out), "--out",
                     str(Path(args.out_dir) / f"report_augmentation_{table}")])
    return cmds


def _swifthydra_executable() -> str:
    """The ``swifthydra`` command of this interpreter's environment (else the one on PATH)."""
    import shutil

    here = Path(sys.executable).parent / "swifthydra"
    found = str(here) if here.is_file() else shutil.which("swifthydra")
    if not found:
        raise SystemExit("the swifthydra command is not installed (pip install -e '.[bench]')")
    return found


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--table", default="all", choices=[*TABLES, "all"])
    ap.add_argument("--datasets", default="all-local", help="default: the 31 shared datasets")
    ap.add_argument("--data-dir", default=str(DATA_DIR))
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--generators", default=",".join(GENERATORS))
    ap.add_argument("--param", action="append", help="MODEL.KEY=VALUE or gen.NAME.KEY=VALUE")
    ap.add_argument("--out-dir", default="results")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--timeout", type=float, default=None)
    ap.add_argument("--dry-run", action="store_true", help="only count the cells")
    ap.add_argument("--print", action="store_true", help="print the commands, run nothing")
    args = ap.parse_args(argv)
    tables = list(TABLES) if args.table == "all" else [args.table]
    for table in tables:
        for cmd in commands(table, args):
            print(shlex.join(cmd), flush=True)
            if args.print:
                continue
            rc = subprocess.call([_swifthydra_executable(), *cmd[1:]])
            if rc != 0:
                print(f"# exit status {rc}", file=sys.stderr)
                return rc
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The report's generator section: the gain of each generator over ``none``, per detector.

Used by :func:`swifthydra.bench.report.make_report` only when some detector (a model with its
config) has results both without a generator (``none``) and with at least one generator;
otherwise the report is unchanged.

For each detector and generator G, cells are paired with the detector's ``none`` cell of the same
split (dataset, scenario, seed; both ``ok``): the per-dataset gain is the mean over its pairs of
``metric(G) - metric(none)``. The table gives, over datasets, the mean gain in AUC-ROC and
AUC-PR, wins / ties / losses (a tie is a gain within ``tie_tolerance``), and the two-sided
Wilcoxon signed-rank p-value of the per-dataset gains, Holm-corrected over the generators of
that detector (one family per detector and metric). In the unseen-type scenario the metric of a
cell is its AUC on the anomaly types it was not trained on; the pairs of all training types are
averaged per dataset.

The plot of a section names detectors and generators by the report's short names (labels of
more than 24 characters, see :func:`swifthydra.bench._names.plot_names`); :func:`plotted_labels`
gives the report the labels to name. This module imports nothing from the report.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from swifthydra.bench._names import PLOT_NAME_MAX, natural_key, plot_name, slug, wrap_label

METRIC_NAMES = {"auc_roc": "AUC-ROC", "auc_pr": "AUC-PR"}


def has_generator_comparison(df) -> bool:
    """Whether some detector has ``ok`` results with ``none`` and with another generator."""
    if len(df) == 0 or "generator" not in df.columns or "detector" not in df.columns:
        return False
    ok = df[df["status"] == "ok"]
    gens = ok.groupby("detector")["generator"].agg(lambda s: set(s))
    return any("none" in g and len(g) > 1 for g in gens)


def _sections(df):
    """The report's generator sections: ``df`` grouped by scenario kind (standard or
    unseen-type), protocol and labelled ratio."""
    kind = np.where(df["scenario"] == "standard", "standard", "unseen-type")
    return df.assign(_kind=kind).groupby(["_kind", "protocol", "labeled_ratio"], sort=True)


def _compared(ok) -> list[tuple[str, list[str]]]:
    """Each detector of ``ok`` cells with results under ``none`` and another generator, and those
    other generators (in the order of :data:`swifthydra.bench.augment.GENERATOR_NAMES`)."""
    out = []
    for detector in sorted(ok["detector"].unique()):
        mine = ok.loc[ok["detector"] == detector, "generator"]
        gens = [g for g in _generator_order(mine) if g != "none"]
        if "none" in set(mine) and gens:
            out.append((detector, gens))
    return out


def plotted_labels(df) -> tuple[list[str], list[str]]:
    """The detectors and the generator labels (as shown: ``mixup[alpha=0.4]``) that the gain
    plots of :func:`generator_sections` show; both empty when there is no comparison."""
    from swifthydra.bench.augment import display_label

    if not has_generator_comparison(df):
        return [], []
    detectors: dict[str, None] = {}
    generators: dict[str, None] = {}
    for _, part in _sections(df):
        for detector, gens in _compared(part[part["status"] == "ok"]):
            detectors[detector] = None
            generators.update(dict.fromkeys(display_label(g) for g in gens))
    return list(detectors), list(generators)


def paired_gains(ok, detector: str, generator: str):
    """Per-dataset gains of ``generator`` over ``none`` for ``detector``.

    ``ok`` holds ``ok`` cells with columns ``detector``, ``generator``, ``dataset``, ``scenario``,
    ``seed``, ``auc_roc``, ``auc_pr``, ``fit_seconds``. Returns a DataFrame indexed by dataset with
    ``d_auc_roc``, ``d_auc_pr`` (mean gains over the dataset's pairs), ``pairs``, ``base_auc_roc``,
    ``gen_auc_roc``, ``base_fit``, ``gen_fit``.
    """
    keys = ["dataset", "scenario", "seed"]
    cols = [*keys, "auc_roc", "auc_pr", "fit_seconds"]
    base = ok[(ok["detector"] == detector) & (ok["generator"] == "none")][cols]
    gen = ok[(ok["detector"] == detector) & (ok["generator"] == generator)][cols]
    both = base.merge(gen, on=keys, suffixes=("_none", "_gen"))
    both["d_auc_roc"] = both["auc_roc_gen"] - both["auc_roc_none"]
    both["d_auc_pr"] = both["auc_pr_gen"] - both["auc_pr_none"]
    out = both.groupby("dataset").agg(
        d_auc_roc=("d_auc_roc", "mean"), d_auc_pr=("d_auc_pr", "mean"),
        pairs=("d_auc_roc", "size"), base_auc_roc=("auc_roc_none", "mean"),
        gen_auc_roc=("auc_roc_gen", "mean"), base_fit=("fit_seconds_none", "median"),
        gen_fit=("fit_seconds_gen", "median"))
    return out


def gain_table(part, tol: float) -> tuple[list[dict[str, Any]], dict[tuple[str, str], Any]]:
    """One record per (detector, generator other than none) of a section, and its gains."""
    from swifthydra.bench.stats import holm, signed_rank_p

    ok = part[part["status"] == "ok"]
    records: list[dict[str, Any]] = []
    per_dataset: dict[tuple[str, str], Any] = {}
    for detector, gens in _compared(ok):
        recs = []
        p_raw: dict[str, dict[str, float]] = {"auc_roc": {}, "auc_pr": {}}
        for g in gens:
            gains = paired_gains(ok, detector, g)
            per_dataset[(detector, g)] = gains
            rec: dict[str, Any] = {"detector": detector, "generator": g,
                                   "datasets": int(len(gains)),
                                   "pairs": int(gains["pairs"].sum()) if len(gains) else 0}
            for m in ("auc_roc", "auc_pr"):
                d = gains[f"d_{m}"].to_numpy(dtype=float) if len(gains) else np.array([])
                rec[f"mean_d_{m}"] = float(d.mean()) if len(d) else float("nan")
                rec[f"wtl_{m}"] = (int((d > tol).sum()), int((np.abs(d) <= tol).sum()),
                                   int((d < -tol).sum()))
                p_raw[m][g] = signed_rank_p(d)
            rec["base_auc_roc"] = float(gains["base_auc_roc"].mean()) if len(gains) else math.nan
            rec["gen_auc_roc"] = float(gains["gen_auc_roc"].mean()) if len(gains) else math.nan
            rec["weights"] = _weights_used(ok, detector, g)
            rec["base_fit"] = float(gains["base_fit"].median()) if len(gains) else math.nan
            rec["gen_fit"] = float(gains["gen_fit"].median()) if len(gains) else math.nan
            recs.append(rec)
        for m in ("auc_roc", "auc_pr"):
            adjusted = holm(p_raw[m])
            for rec in recs:
                rec[f"p_{m}"] = adjusted[rec["generator"]]
                rec[f"p_raw_{m}"] = p_raw[m][rec["generator"]]
        records.extend(recs)
    return records, per_dataset


def _weights_used(ok, detector: str, generator: str) -> str:
    """How the generated rows' weights reached the detector, from the cells' ``extra``."""
    import json

    seen = set()
    cells = ok[(ok["detector"] == detector) & (ok["generator"] == generator)]
    for text in cells["extra"].dropna() if "extra" in cells.columns else []:
        try:
            info = json.loads(text).get("generator") or {}
        except (ValueError, AttributeError):
            continue
        if info.get("applied") == "sampler":
            seen.add("weighted" if str(info.get("sample_weight", "")).startswith("passed")
                     else "unweighted")
        elif info.get("applied"):
            seen.add("own parameter")
    return "/".join(sorted(seen))


def _generator_order(values) -> list[str]:
    from swifthydra.bench.augment import GENERATOR_NAMES

    seen = list(dict.fromkeys(str(v) for v in values))

    def key(g: str):
        name = g.split("{", 1)[0]
        return (GENERATOR_NAMES.index(name) if name in GENERATOR_NAMES else len(GENERATOR_NAMES), g)

    return sorted(seen, key=key)


def _signed(v: float) -> str:
    return "" if v is None or not np.isfinite(v) else f"{v:+.4f}"


def _p(v: float) -> str:
    return "" if v is None or not np.isfinite(v) else f"{v:.3g}"


def generator_sections(doc, df, img_dir: Path, tol: float, plt,
                       names: dict[str, str] | None = None,
                       generator_names: dict[str, str] | None = None) -> None:
    """Append the generator-gain section(s) to ``doc`` (nothing when there is no comparison).

    ``names`` (detector label -> name in plots) and ``generator_names`` (shown generator label
    -> name in plots) are the report's short names (:func:`swifthydra.bench._names.plot_names`);
    without them the plots show the full labels (wrapped). Tables always give full labels."""
    from swifthydra.bench.augment import display_label

    if not has_generator_comparison(df):
        return
    doc.h(2, "Generator gains over `none`")
    doc.p("For each detector (a model with its settings) and generator, the gain is the "
          "generator's AUC minus the detector's AUC without generation (`none`) on the same split "
          "(dataset, scenario, seed), averaged per dataset over seeds (and training types). "
          f"W/T/L: datasets with a gain above / within {tol:g} of / below zero. p: two-sided "
          "Wilcoxon signed-rank test of the per-dataset gains, Holm-corrected over the "
          "generators of each detector. swifthydra's generator is its own `generator` "
          "parameter; other models that use labels are fitted on the training split augmented "
          "by the generator (with the generated rows' weights when their fit accepts "
          "sample_weight: 'weighted', else 'unweighted'); unsupervised models are not run with "
          "generators.")
    for (k, protocol, ratio), part in _sections(df):
        records, per_dataset = gain_table(part, tol)
        if not records:
            continue
        if k == "standard":
            doc.h(3, f"Gains: protocol `{protocol}`, labelled ratio {ratio:g}")
        else:
            doc.h(3, f"Gains: unseen anomaly types, protocol `{protocol}`, labelled ratio "
                  f"{ratio:g} (AUC on the types not labelled)")
        header = ["detector", "generator", "datasets", "mean ΔAUC-ROC", "mean ΔAUC-PR",
                  "W/T/L (AUC-ROC)", "p AUC-ROC (Wilcoxon-Holm)", "W/T/L (AUC-PR)",
                  "p AUC-PR (Wilcoxon-Holm)", "AUC-ROC none → gen", "fit s none → gen (median)",
                  "generated rows"]
        rows = []
        for r in records:
            rows.append([
                r["detector"], display_label(r["generator"]), r["datasets"],
                _signed(r["mean_d_auc_roc"]), _signed(r["mean_d_auc_pr"]),
                "/".join(map(str, r["wtl_auc_roc"])), _p(r["p_auc_roc"]),
                "/".join(map(str, r["wtl_auc_pr"])), _p(r["p_auc_pr"]),
                f"{_f3(r['base_auc_roc'])} → {_f3(r['gen_auc_roc'])}",
                f"{_fs(r['base_fit'])} → {_fs(r['gen_fit'])}",
                r["weights"],
            ])
        doc.table(header, rows, align="llrrrcrcrccl")
        path = img_dir / f"gains_{slug(k, protocol, f'la{ratio:g}')}.png"
        plot_gains(records, per_dataset, path, plt, names=names, generator_names=generator_names)
        doc.img(f"img/{path.name}", "Gain over `none` per detector and generator: mean over "
                "datasets (bar) and each dataset's gain (dots); top AUC-ROC, bottom AUC-PR")
        _per_dataset_table(doc, records, per_dataset)
    skipped = df[(df["generator"] != "none") & (df["status"] == "skipped")]
    not_applicable = sorted(set(skipped.loc[skipped["error"].fillna("").str.contains(
        "not applicable"), "detector"]))
    if not_applicable:
        doc.p("Not run with generators (unsupervised: they never see labels): "
              + ", ".join(not_applicable) + ".")


def _per_dataset_table(doc, records, per_dataset) -> None:
    from swifthydra.bench.augment import display_label

    datasets = sorted({d for g in per_dataset.values() for d in g.index}, key=natural_key)
    cols = [(r["detector"], r["generator"]) for r in records]
    doc.p("ΔAUC-ROC per dataset (mean over seeds):")
    rows = []
    for ds in datasets:
        row = [ds]
        for c in cols:
            g = per_dataset[c]
            row.append(_signed(float(g.loc[ds, "d_auc_roc"])) if ds in g.index else "–")
        rows.append(row)
    doc.table(["dataset", *[f"{d}+{display_label(g)}" for d, g in cols]], rows)


def _f3(v) -> str:
    return "" if v is None or not np.isfinite(v) else f"{v:.3f}"


def _fs(v) -> str:
    if v is None or not np.isfinite(v):
        return ""
    return f"{v:.3g}" if v < 100 else f"{v:.0f}"


def plot_gains(records, per_dataset, path: Path, plt, names: dict[str, str] | None = None,
               generator_names: dict[str, str] | None = None) -> None:
    """Per detector (columns) and metric (rows): mean gain of each generator and the spread.

    Detectors (column titles) are named by ``names`` and generators (x ticks, shown on the
    bottom row) by ``generator_names``, both keyed by the full label (the generator's as shown in
    tables, ``mixup[alpha=0.4]``); a label without a short name is itself. Names still long are
    wrapped after ``[``, ``,`` and ``+``; each column is as wide as its tick labels and title need
    (tick labels of up to 24 characters are turned 30 degrees, on one line each, when the figure
    would otherwise be over 16 inches wide).
    The image is saved with a tight bounding box (nothing cut)."""
    from swifthydra.bench.augment import display_label

    detectors = list(dict.fromkeys(r["detector"] for r in records))
    recs_of = {d: [r for r in records if r["detector"] == d] for d in detectors}
    titles = {d: wrap_label(plot_name(names, d), 26) for d in detectors}
    shown = {(d, r["generator"]): plot_name(generator_names, display_label(r["generator"]))
             for d in detectors for r in recs_of[d]}
    ticks = {k: wrap_label(v, 14) for k, v in shown.items()}

    def longest(text: str) -> int:
        return max(len(line) for line in text.split("\n"))

    # inches: a character of 8 pt text is ~0.07 in wide, of the 9 pt titles ~0.08 in
    slot = max(0.7, 0.07 * max(longest(t) for t in ticks.values()) + 0.25)
    # many generators: labels of a short name's length turned, on one line each (parallel, they
    # never run into each other); longer ones (no short names given) stay wrapped, the figure wide
    rotate = (sum(len(recs_of[d]) for d in detectors) * slot > 16
              and max(map(len, shown.values())) <= PLOT_NAME_MAX)
    if rotate:
        slot, ticks = 0.7, shown
        height = 5.0 + min(3.0, 0.035 * max(map(len, shown.values())))
    else:
        height = 5.0 + 0.14 * (max(t.count("\n") for t in ticks.values()))
    widths = [max(2.4, slot * len(recs_of[d]) + 0.5, 0.08 * longest(titles[d]) + 0.4)
              for d in detectors]
    fig, axes = plt.subplots(2, len(detectors), figsize=(sum(widths) + 0.8, height),
                             squeeze=False, sharex="col", sharey="row", layout="constrained",
                             gridspec_kw={"width_ratios": widths})
    rng = np.random.RandomState(0)
    for j, det in enumerate(detectors):
        recs = recs_of[det]
        xs = np.arange(len(recs))
        for i, m in enumerate(("auc_roc", "auc_pr")):
            ax = axes[i, j]
            means = np.array([r[f"mean_d_{m}"] for r in recs], dtype=float)
            ax.bar(xs, np.nan_to_num(means), 0.6,
                   color=["tab:green" if v > 0 else "tab:red" for v in np.nan_to_num(means)],
                   alpha=0.45)
            for x, r in zip(xs, recs, strict=True):
                d = per_dataset[(det, r["generator"])][f"d_{m}"].to_numpy(dtype=float)
                ax.scatter(x + rng.uniform(-0.18, 0.18, len(d)), d, s=10, color="0.2",
                           alpha=0.7, zorder=3)
            ax.axhline(0, color="k", lw=0.8)
            ax.set_xlim(-0.6, len(recs) - 0.4)
            ax.grid(axis="y", alpha=0.3)
            ax.tick_params(axis="y", labelsize=7)
            if i == 0:
                ax.set_title(titles[det], fontsize=9)
            if j == 0:
                ax.set_ylabel(f"Δ{METRIC_NAMES[m]} vs none", fontsize=8)
        ax = axes[1, j]  # generator names under the bottom row only (the columns share x)
        ax.set_xticks(xs)
        ax.set_xticklabels([ticks[(det, r["generator"])] for r in recs], fontsize=8,
                           rotation=30 if rotate else 0, ha="right" if rotate else "center",
                           rotation_mode="anchor" if rotate else "default")
    fig.savefig(path, dpi=100, bbox_inches="tight", pad_inches=0.08)
    plt.close(fig)

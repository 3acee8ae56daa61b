"""The benchmark report (Markdown + static HTML, PNG plots) and the results export.

:func:`make_report` reads a results file and writes ``OUT/report.md``, ``OUT/report.html`` and
``OUT/img/*.png``. The HTML embeds its images (base64 ``data:`` URIs): it is one file a user can
send. Plots size themselves to what there is (a few datasets fill their bar chart; episodes are
integer ticks, one per episode up to 12).

One section per ``(protocol, labelled ratio)`` of the standard scenario:

* a summary per model: mean AUC-ROC and AUC-PR over datasets (each dataset's mean over seeds),
  average rank, Friedman test, wins/ties/losses against the reference model (SwiftHydra when
  present) with Wilcoxon signed-rank p-values, Holm-corrected; median fit and score seconds,
  scoring throughput, peak memory; counts of ok / skipped / failed cells;
* per-dataset tables of mean ± std over seeds (AUC-ROC and AUC-PR);
* plots: critical-difference diagram of average ranks (Nemenyi), per-dataset AUC bars, AUC
  against fit time, scoring throughput;
* for models that recorded a ``history`` (SwiftHydra): per-episode training curves and a 2-D
  PCA view of normal rows, real anomalies and generated anomalies.

The unseen-type scenario gets the train-type x test-type AUC matrix of each model.

Means and ranks use the datasets on which every ranked model has a result ("complete cases");
models with results on fewer than half of a section's datasets are left out of the ranking and
listed. A *tie* is a difference of per-dataset mean AUC below ``tie_tolerance`` (0.005).

Long model names (a model run with ``--param`` is labelled ``swifthydra[generator=none,
prior_weight=0.5]``): tables always give the full label (it is what ``--reference`` takes). Plots
show a label of more than :data:`PLOT_NAME_MAX` characters under a short name, the label without
its bracketed settings and a number (``swifthydra #1``), the same in every section and plot; the
table "Model names in the plots" near the top maps each short name to its label. Labels up to
that length appear in plots as they are, so a report without long names has no such table. The
generator-gain plots name their detectors the same way, and long generator labels
(``mixup[alpha=0.4,n_samples=1000]`` -> ``mixup #1``) too, listed in the table "Generator names
in the plots". The short-name rules live in :mod:`swifthydra.bench._names`.
Legends sit outside the axes (never over data) and images are saved with ``bbox_inches="tight"``
(nothing cut). In the HTML, long names in tables break after ``[``, ``,`` and ``+`` and a table
wider than the page scrolls inside its own box; the Markdown keeps labels verbatim (copyable;
GitHub scrolls wide tables). Matplotlib's layout warnings ("Tight layout not applied") are not
passed on: they name files inside the package and say nothing to the user.
"""

from __future__ import annotations

import contextlib
import html
import json
import math
import os
import re
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from swifthydra.bench._names import PLOT_NAME_MAX, natural_key, plot_names
from swifthydra.bench._names import plot_name as _name
from swifthydra.bench._names import slug as _slug
from swifthydra.bench.store import ResultStore
from swifthydra.exceptions import InvalidInputError

METRICS = {"auc_roc": "AUC-ROC", "auc_pr": "AUC-PR"}
TIE_TOLERANCE = 0.005
EXPORT_FORMATS = ("csv", "markdown", "parquet")
MARKDOWN_EXPORT_COLUMNS = ("dataset", "protocol", "scenario", "labeled_ratio", "seed", "model",
                           "config", "generator", "status", "auc_roc", "auc_pr", "fit_seconds",
                           "score_seconds", "rows_per_second", "peak_memory_mb", "error")


# ============================================================================== blocks
class Doc:
    """A report as a list of blocks, rendered to Markdown and to HTML."""

    def __init__(self) -> None:
        self.blocks: list[tuple] = []

    def h(self, level: int, text: str) -> None:
        self.blocks.append(("h", level, text))

    def p(self, text: str) -> None:
        self.blocks.append(("p", text))

    def table(self, header: list[str], rows: list[list[Any]], align: str | None = None) -> None:
        self.blocks.append(("table", header, rows, align))

    def img(self, path: str, alt: str) -> None:
        self.blocks.append(("img", path, alt))

    def code(self, text: str) -> None:
        self.blocks.append(("code", text))

    # --------------------------------------------------------------- Markdown
    def markdown(self) -> str:
        out: list[str] = []
        for block in self.blocks:
            kind = block[0]
            if kind == "h":
                out.append("#" * block[1] + " " + block[2])
            elif kind == "p":
                out.append(block[1])
            elif kind == "code":
                out.append("```\n" + block[1] + "\n```")
            elif kind == "img":  # brackets of a model label in the alt text escaped
                alt = block[2].replace("[", "\\[").replace("]", "\\]")
                out.append(f"![{alt}]({block[1]})")
            elif kind == "table":
                out.append(markdown_table(block[1], block[2], block[3]))
            out.append("")
        return "\n".join(out)

    # --------------------------------------------------------------- HTML
    def html(self, title: str, base: Path | None = None) -> str:
        """The report as one HTML page; with ``base`` (the folder image paths are relative to)
        every image is embedded as a base64 ``data:`` URI, so the page is one self-contained file
        to send or attach (an image that cannot be read keeps its relative link)."""
        body: list[str] = []
        for block in self.blocks:
            kind = block[0]
            if kind == "h":
                level = min(6, block[1])
                body.append(f"<h{level}>{_inline_html(block[2])}</h{level}>")
            elif kind == "p":
                body.append(f"<p>{_inline_html(block[1])}</p>")
            elif kind == "code":
                body.append(f"<pre><code>{html.escape(block[1])}</code></pre>")
            elif kind == "img":
                src, alt = html.escape(_data_uri(block[1], base), quote=True), html.escape(block[2], quote=True)
                body.append(f'<figure><img src="{src}" alt="{alt}"><figcaption>{alt}'
                            "</figcaption></figure>")
            elif kind == "table":
                header, rows, align = block[1], block[2], block[3]
                aligns = _aligns(header, rows, align)
                # a header may also break after "/" ("ok/skipped/failed"): narrow numeric columns
                head = "".join(f'<th style="text-align:{a}">'
                               f'{re.sub(r"(?<!<)/(?!>)", "/<wbr>", _inline_html(str(h)))}</th>'
                               for h, a in zip(header, aligns, strict=True))
                trs = []
                for row in rows:
                    cells = "".join(f'<td{_NUM if a == "right" else ""} style="text-align:{a}">'
                                    f"{_inline_html(_fmt(v))}</td>"
                                    for v, a in zip(row, aligns, strict=True))
                    trs.append(f"<tr>{cells}</tr>")
                body.append(f'<div class="table"><table><thead><tr>{head}</tr></thead><tbody>'
                            f"{''.join(trs)}</tbody></table></div>")
        # long names break where _inline_html put <wbr> (text outside tables also wherever a word
        # would overflow); a table still wider than the page scrolls inside its div, not the page
        css = (
            "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1200px;"
            "margin:2em auto;padding:0 1em;color:#222;overflow-wrap:break-word}"
            "div.table{max-width:100%;overflow-x:auto;margin:1em 0}"
            "table{border-collapse:collapse;font-size:0.85em}"
            "th,td{border:1px solid #ccc;padding:3px 7px;vertical-align:top}td.n{white-space:nowrap}"
            "th{background:#f2f2f2}"
            "tr:nth-child(even){background:#fafafa}img{max-width:100%;height:auto}"
            "figure{margin:1em 0}figcaption{font-size:0.85em;color:#555}"
            "code{background:#f4f4f4;padding:0 3px}pre{background:#f4f4f4;padding:0.6em;"
            "overflow-x:auto}"
        )
        return (
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(title)}</title>\n<style>{css}</style>\n</head>\n<body>\n"
            + "\n".join(body)
            + "\n</body>\n</html>\n"
        )


_NUM = ' class="n"'  # a numeric cell: kept on one line


def _data_uri(src: str, base: Path | None) -> str:
    """``data:image/...;base64,...`` of the image file ``base / src``; ``src`` itself when there is
    no ``base`` or the file cannot be read."""
    import base64
    import mimetypes

    if base is None:
        return src
    try:
        data = (Path(base) / src).read_bytes()
    except OSError:
        return src
    mime = mimetypes.guess_type(src)[0] or "application/octet-stream"
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        if not math.isfinite(v):
            return ""
        return f"{v:.4f}"
    return str(v)


def _is_numeric_text(s: str) -> bool:
    s = s.replace("*", "").replace(",", "").replace("±", " ").split(" ")[0].strip()
    if s in ("–", "-"):
        return True
    try:
        float(s)
        return True
    except ValueError:
        return False


def _aligns(header, rows, align):
    if align:
        return ["right" if a == "r" else "center" if a == "c" else "left" for a in align]
    out = []
    for j in range(len(header)):
        col = [_fmt(r[j]) for r in rows if _fmt(r[j])]
        out.append("right" if col and all(_is_numeric_text(c) for c in col) else "left")
    return out


def _inline_html(text: str) -> str:
    """Escape, then turn Markdown ``**bold**`` and ``code`` spans into HTML; a run of over 20
    characters without a space (a long model label) may break after ``[``, ``,``, ``{`` and
    ``+`` (``<wbr>``: nothing is added to the text a reader copies)."""
    t = html.escape(text)
    t = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", t)
    t = re.sub(r"`(.+?)`", r"<code>\1</code>", t)
    return re.sub(r"[^\s<>]{21,}", lambda m: re.sub(r"([\[,{+])(?!$)", r"\1<wbr>", m.group()), t)


def markdown_table(header: list[str], rows: list[list[Any]], align: str | None = None) -> str:
    """A GitHub-flavoured Markdown table (pipes in cells escaped)."""
    aligns = _aligns(header, rows, align)

    def cell(v):
        return _fmt(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in header) + " |",
             "|" + "|".join("--:" if a == "right" else ":-:" if a == "center" else "---"
                            for a in aligns) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


# ============================================================================== export
def export_results(
    results: str | os.PathLike,
    *,
    format: str = "csv",
    out: str | os.PathLike | None = None,
    history: bool = False,
) -> str | None:
    """Export a results file.

    Parameters
    ----------
    results : path
        SQLite results file.
    format : {"csv", "markdown", "parquet"}
        CSV and Parquet hold every column (``history`` only with ``history=True``); Markdown
        holds the main ones.
    out : path, optional
        Output file. Without it CSV and Markdown are returned as text, and Parquet goes to
        ``RESULTS.parquet``.
    history : bool
        Include the (possibly large) ``history`` JSON column.

    Returns
    -------
    str or None
        The text when ``out`` is None and the format is textual, else None.
    """
    fmt = str(format).strip().lower()
    if fmt in ("md",):
        fmt = "markdown"
    if fmt not in EXPORT_FORMATS:
        raise InvalidInputError(f"unknown format {format!r}: choose {', '.join(EXPORT_FORMATS)}.")
    with ResultStore(results, readonly=True) as store:
        df = store.to_frame(history=history)
    df = df.sort_values(["dataset", "protocol", "scenario", "labeled_ratio", "seed", "model",
                         "config", "generator"]).reset_index(drop=True)
    if fmt == "parquet":
        target = Path(out) if out is not None else Path(results).with_suffix(".parquet")
        df.to_parquet(target, index=False)
        return None
    if fmt == "csv":
        text = df.to_csv(index=False)
    else:
        cols = [c for c in MARKDOWN_EXPORT_COLUMNS if c in df.columns]
        rows = [[None if _isnan(v) else v for v in rec] for rec in
                df[cols].itertuples(index=False, name=None)]
        text = markdown_table(list(cols), rows) + "\n"
    if out is not None:
        Path(out).write_text(text)
        return None
    return text


def _isnan(v: Any) -> bool:
    return isinstance(v, float) and not math.isfinite(v)


# ============================================================================== report
def _mpl():
    try:
        import matplotlib
    except ImportError:
        from swifthydra.bench.models import INSTALL_HINT, MissingDependencyError

        raise MissingDependencyError(f"the report's plots need matplotlib: {INSTALL_HINT}") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _names_block(doc: Doc, names: dict[str, str],
                 generator_names: dict[str, str] | None = None) -> None:
    """The tables of short names used in plots: models, then generators (each only when some
    label has a short name)."""
    short = [(n, lab) for lab, n in names.items() if n != lab]
    if short:
        doc.h(2, "Model names in the plots")
        doc.p(f"Plots show a model label of more than {PLOT_NAME_MAX} characters under a short "
              "name; tables give the full label.")
        doc.table(["in plots", "model"], [[n, lab] for n, lab in short], align="ll")
    short = [(n, lab) for lab, n in (generator_names or {}).items() if n != lab]
    if short:
        doc.h(2, "Generator names in the plots")
        doc.p(f"The generator-gain plots show a generator label of more than {PLOT_NAME_MAX} "
              "characters under a short name; tables give the full label.")
        doc.table(["in plots", "generator"], [[n, lab] for n, lab in short], align="ll")


@contextlib.contextmanager
def _quiet_matplotlib() -> Iterator[None]:
    """Keep matplotlib's warnings (layout: "Tight layout not applied ...") from the user: they name
    a file and line inside the package and say nothing about the results. Matplotlib attributes
    them to the plotting code that called it (this module, or :mod:`swifthydra.bench.gains`),
    so the filter is on those modules (and matplotlib itself), for UserWarnings only."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module=r"matplotlib(\.|$)")
        warnings.filterwarnings("ignore", category=UserWarning,
                                module=r"swifthydra\.bench\.(report|gains)$")
        yield


def _model_colors(models: list[str]) -> dict[str, Any]:
    plt = _mpl()
    cmap = plt.get_cmap("tab10" if len(models) <= 10 else "tab20")
    return {m: cmap(i % cmap.N) for i, m in enumerate(models)}


def _label(row_model: str, config: str) -> str:
    if not config or config == "{}":
        return row_model
    try:
        params = json.loads(config)
        inner = ",".join(f"{k}={v}" for k, v in params.items())
    except ValueError:
        inner = config
    return f"{row_model}[{inner}]"


def load_results(results: str | os.PathLike):
    """Read a results file into a DataFrame with a ``label`` column (model + config)."""
    with ResultStore(results, readonly=True) as store:
        df = store.to_frame(history=True)
        runs = store.runs()
    if len(df):
        df["label"] = [_label(m, c) for m, c in zip(df["model"], df["config"], strict=True)]
        _generator_labels(df)
    else:
        df["label"] = []
    return df, runs


def make_report(
    results: str | os.PathLike,
    out: str | os.PathLike = "report",
    *,
    reference: str | None = None,
    metric: str = "auc_roc",
    tie_tolerance: float = TIE_TOLERANCE,
    title: str = "swifthydra benchmark report",
) -> Path:
    """Write ``OUT/report.md``, ``OUT/report.html`` and ``OUT/img/*.png`` for a results file.

    Parameters
    ----------
    results : path
        SQLite results file written by the benchmark.
    out : path
        Output directory (created).
    reference : str, optional
        Model label the others are compared with (wins/ties/losses, Wilcoxon-Holm). Default:
        ``swifthydra`` when present, else the best model by average rank of each section.
    metric : {"auc_roc", "auc_pr"}
        Metric of the ranks, tests and the critical-difference diagram.
    tie_tolerance : float
        Per-dataset mean differences below this count as ties.
    title : str

    Returns
    -------
    pathlib.Path
        The Markdown file.
    """
    if metric not in METRICS:
        raise InvalidInputError(f"unknown metric {metric!r}: choose {', '.join(METRICS)}.")
    df, runs = load_results(results)
    out = Path(out)
    img_dir = out / "img"
    img_dir.mkdir(parents=True, exist_ok=True)
    plt = _mpl()
    doc = Doc()
    doc.h(1, title)
    n_status = df["status"].value_counts().to_dict() if len(df) else {}
    doc.p(f"Results file `{Path(results)}`, {len(df)} cells ("
          + ", ".join(f"{v} {k}" for k, v in sorted(n_status.items())) + f"); generated "
          f"{time.strftime('%Y-%m-%d %H:%M')}.")
    if len(df) == 0:
        doc.p("The results file holds no cells yet.")
        return _write(doc, out, title)

    _versions_block(doc, df)
    # one short name per plotted label (those with an ok cell, and the detectors and generators
    # of the generator-gain plots) for the whole report
    from swifthydra.bench.gains import plotted_labels

    detectors, generators = plotted_labels(df)
    names = plot_names([*df.loc[df["status"] == "ok", "label"].unique(), *detectors])
    generator_names = plot_names(generators)
    _names_block(doc, names, generator_names)
    with _quiet_matplotlib():
        standard = df[df["scenario"] == "standard"]
        for (protocol, ratio), part in standard.groupby(["protocol", "labeled_ratio"], sort=True):
            _standard_section(doc, part, protocol, ratio, img_dir, reference, metric,
                              tie_tolerance, plt, names)
        unseen = df[df["scenario"].str.startswith("unseen-type")]
        for (protocol, ratio), part in unseen.groupby(["protocol", "labeled_ratio"], sort=True):
            _unseen_section(doc, part, protocol, ratio, img_dir, plt, names)
        _generator_block(doc, df, img_dir, tie_tolerance, plt, names, generator_names)
        plt.close("all")
    _errors_block(doc, df)
    _runs_block(doc, runs)
    return _write(doc, out, title)


def _write(doc: Doc, out: Path, title: str) -> Path:
    md = out / "report.md"
    md.write_text(doc.markdown())
    (out / "report.html").write_text(doc.html(title, base=out))  # images embedded: one file to send
    return md


def _versions_block(doc: Doc, df) -> None:
    seen: dict[str, set[str]] = {}
    for text in df["versions"].dropna().unique():
        try:
            for k, v in json.loads(text).items():
                seen.setdefault(k, set()).add(str(v))
        except ValueError:
            continue
    if seen:
        doc.p("Versions: " + ", ".join(f"{k} {'/'.join(sorted(v))}" for k, v in seen.items())
              + ".")


def _per_dataset(ok, metric: str):
    """(datasets x labels) tables of mean and std over seeds."""
    g = ok.groupby(["dataset", "label"])[metric]
    mean = g.mean().unstack("label")
    std = g.std(ddof=0).unstack("label")
    order = sorted(mean.index, key=natural_key)
    return mean.loc[order], std.loc[order]


def _standard_section(doc, part, protocol, ratio, img_dir, reference, metric, tol, plt,
                      names=None):
    import pandas as pd

    tag = _slug(protocol, f"la{ratio:g}")
    doc.h(2, f"Protocol `{protocol}`, labelled ratio {ratio:g}")
    ok = part[part["status"] == "ok"]
    counts = part.pivot_table(index="label", columns="status", values="seed", aggfunc="count",
                              fill_value=0)
    n_datasets = part["dataset"].nunique()
    seeds = sorted(part["seed"].unique().tolist())
    doc.p(f"{n_datasets} datasets, seeds {', '.join(map(str, seeds))}, "
          f"{part['label'].nunique()} models, {len(part)} cells. Every model of a "
          "(dataset, seed) cell saw the same split (checked by its fingerprint).")
    hashes = part.dropna(subset=["split_hash"]).groupby(["dataset", "seed"])["split_hash"].nunique()
    if (hashes > 1).any():
        doc.p("**Warning**: some (dataset, seed) cells have different split fingerprints: "
              + ", ".join(f"{d}/{s}" for (d, s) in hashes[hashes > 1].index[:10]))
    if ok.empty:
        doc.p("No successful cell in this section.")
        return
    mean, std = _per_dataset(ok, metric)
    mean_other, std_other = _per_dataset(ok, "auc_pr" if metric == "auc_roc" else "auc_roc")
    coverage = mean.notna().sum(axis=0)
    ranked = [m for m in mean.columns if coverage[m] >= max(1, math.ceil(0.5 * len(mean)))]
    dropped = [m for m in mean.columns if m not in ranked]
    complete = mean[ranked].dropna(axis=0, how="any")
    ranks = average_ranks_safe(complete)
    order = list(ranks.index) + [m for m in mean.columns if m not in ranks.index]
    ref = _pick_reference(reference, order, ranks)

    # ---- summary table
    from swifthydra.bench.stats import friedman_nemenyi, holm, wilcoxon_vs

    fr = friedman_nemenyi(complete) if len(ranked) >= 3 else None
    pvals = holm(wilcoxon_vs(complete, ref)) if ref in complete.columns and len(complete) else {}
    mname = METRICS[metric]
    header = ["model", f"mean {METRICS['auc_roc']}", f"mean {METRICS['auc_pr']}",
              f"avg rank ({mname})", f"W/T/L vs {ref}" if ref else "W/T/L",
              "Wilcoxon-Holm p", "fit s (median)", "score s (median)", "rows/s (median)",
              "peak MB (median)", "ok/skipped/failed"]
    rows = []
    agg = ok.groupby("label").agg(fit=("fit_seconds", "median"), score=("score_seconds", "median"),
                                  rps=("rows_per_second", "median"),
                                  mem=("peak_memory_mb", "median"))
    roc_tab = mean if metric == "auc_roc" else mean_other
    pr_tab = mean_other if metric == "auc_roc" else mean
    for m in order:
        in_complete = m in complete.columns
        rows_idx = complete.index if len(complete) and in_complete else mean.index
        roc = roc_tab.loc[rows_idx, m].mean() if m in roc_tab.columns else float("nan")
        pr = pr_tab.loc[rows_idx, m].mean() if m in pr_tab.columns else float("nan")
        wtl, p = "", ""
        if ref and m != ref and ref in mean.columns:
            both = mean[[m, ref]].dropna()
            d = both[m] - both[ref]
            wtl = f"{int((d > tol).sum())}/{int((d.abs() <= tol).sum())}/{int((d < -tol).sum())}"
            p = f"{pvals[m]:.3g}" if m in pvals and np.isfinite(pvals[m]) else ""
        c = counts.loc[m] if m in counts.index else {}
        failed = int(c.get("error", 0)) + int(c.get("timeout", 0))
        rows.append([f"**{m}**" if m == ref else m, _f3(roc), _f3(pr),
                     f"{ranks[m]:.2f}" if m in ranks.index else "",
                     wtl, p, _fs(agg.loc[m, "fit"]), _fs(agg.loc[m, "score"]),
                     _fn(agg.loc[m, "rps"]), _fs(agg.loc[m, "mem"]),
                     f"{int(c.get('ok', 0))}/{int(c.get('skipped', 0))}/{failed}"])
    for m in counts.index:
        if m not in order:
            c = counts.loc[m]
            failed = int(c.get("error", 0)) + int(c.get("timeout", 0))
            rows.append([m, "", "", "", "", "", "", "", "", "",
                         f"{int(c.get('ok', 0))}/{int(c.get('skipped', 0))}/{failed}"])
    doc.h(3, "Summary")
    doc.table(header, rows)
    notes = [f"Means and ranks over the {len(complete)} datasets where every ranked model has a "
             f"result (each dataset: mean over seeds); rank 1 = best {mname}."]
    if dropped:
        notes.append("Not ranked (results on under half of the datasets): " + ", ".join(dropped)
                     + ".")
    if ref:
        notes.append(f"W/T/L: datasets where the model's mean {mname} is above / within "
                     f"{tol:g} of / below {ref}'s; p: two-sided Wilcoxon signed-rank test "
                     f"against {ref} over datasets, Holm-corrected.")
    if fr is not None:
        notes.append(f"Friedman test over {fr.n_datasets} datasets and {fr.n_models} models: "
                     f"chi2 = {fr.statistic:.2f}, p = {fr.p_value:.3g}; Nemenyi critical "
                     f"difference (alpha {fr.alpha:g}) = {fr.critical_difference:.2f} ranks.")
    notes.append("Seconds are wall-clock per cell (fit on the training part, score the test "
                 "part); peak MB is the growth of the worker's resident memory during the cell.")
    doc.p(" ".join(notes))

    # ---- plots
    if len(ranks) >= 2:
        path = img_dir / f"cd_{tag}.png"
        plot_cd(ranks, fr.critical_difference if fr else None, path,
                f"Average rank ({mname}), {protocol}, la={ratio:g}", plt, names=names)
        doc.img(f"img/{path.name}", f"Critical-difference diagram of average {mname} ranks "
                "(models joined by a bar are not significantly different, Nemenyi)")
    colors = _model_colors(order)
    path = img_dir / f"bars_{tag}.png"
    plot_dataset_bars(mean, std, order, colors, path, mname, plt, names=names)
    doc.img(f"img/{path.name}", f"{mname} per dataset (mean over seeds, bar = std)")
    path = img_dir / f"time_{tag}.png"
    plot_auc_vs_time(ok, mean, order, colors, path, metric, plt, names=names)
    doc.img(f"img/{path.name}", f"{mname} against fit time")
    path = img_dir / f"throughput_{tag}.png"
    plot_throughput(ok, order, colors, path, plt, names=names)
    doc.img(f"img/{path.name}", "Scoring throughput (test rows per second)")

    # ---- per-dataset tables
    for met in ("auc_roc", "auc_pr"):
        mt, st = (mean, std) if met == metric else (mean_other, std_other)
        doc.h(3, f"{METRICS[met]} per dataset (mean ± std over seeds)")
        cols = [m for m in order if m in mt.columns]
        trows = []
        for ds in mt.index:
            vals = mt.loc[ds, cols]
            best = vals.max()
            row = [ds]
            for m in cols:
                v = mt.loc[ds, m]
                if pd.isna(v):
                    row.append("–")
                    continue
                s = st.loc[ds, m]
                text = f"{v:.3f} ± {0.0 if pd.isna(s) else s:.3f}"
                row.append(f"**{text}**" if np.isclose(v, best) else text)
            trows.append(row)
        doc.table(["dataset", *cols], trows)

    # ---- training histories
    _history_block(doc, part, tag, img_dir, plt)


def average_ranks_safe(table):
    from swifthydra.bench.stats import average_ranks

    if table.shape[0] == 0 or table.shape[1] == 0:
        import pandas as pd

        return pd.Series(dtype=float)
    return average_ranks(table)


def _pick_reference(reference, order, ranks):
    if reference:
        if reference in order:
            return reference
        return None
    if "swifthydra" in order:
        return "swifthydra"
    return ranks.index[0] if len(ranks) else (order[0] if order else None)


def _f3(v) -> str:
    return "" if v is None or not np.isfinite(v) else f"{v:.3f}"


def _fs(v) -> str:
    if v is None or not np.isfinite(v):
        return ""
    return f"{v:.3g}" if v < 100 else f"{v:.0f}"


def _fn(v) -> str:
    if v is None or not np.isfinite(v):
        return ""
    return f"{v:,.0f}"


# ============================================================================== plots
def _legend_columns(labels: list[str], width_in: float, fontsize: float, most: int = 8) -> int:
    """How many legend entries fit side by side in ``width_in`` inches (a marker and its text)."""
    longest = max((len(t) for t in labels), default=1)
    entry = 0.45 + 0.0085 * fontsize * longest  # handle and gaps + text (mean glyph ~0.6 em)
    return max(1, min(len(labels), most, int(width_in / entry)))


def _save(fig, path: Path, dpi: int, plt) -> None:
    """Save with a tight bounding box: text and legends outside the axes are kept, not cut."""
    fig.savefig(path, dpi=dpi, bbox_inches="tight", pad_inches=0.08)
    plt.close(fig)


def plot_cd(ranks, cd: float | None, path: Path, title: str, plt,
            names: dict[str, str] | None = None) -> None:
    """Demšar-style critical-difference diagram (models under their :func:`plot_names`)."""
    from swifthydra.bench.stats import cliques

    labels = list(ranks.index)
    k = len(labels)
    lo, hi = 1, max(k, 2)
    groups = cliques(ranks, cd) if cd else []
    half = math.ceil(k / 2)
    base = -0.25 - 0.14 * len(groups)  # y of the first model's label line
    bottom = base - 0.3 * (max(half, k - half) - 1) - 0.2
    fig, ax = plt.subplots(figsize=(8, 0.9 * (0.6 - bottom) + 0.3))
    ax.set_xlim(0, 1)
    ax.set_ylim(bottom, 0.6)
    ax.axis("off")

    def x(r):
        return 0.2 + 0.6 * (hi - r) / (hi - lo)  # best rank on the right, as in Demšar

    ax.plot([x(lo), x(hi)], [0, 0], color="k", lw=1)
    for t in range(lo, hi + 1):
        ax.plot([x(t), x(t)], [0, 0.06], color="k", lw=1)
        ax.text(x(t), 0.1, str(t), ha="center", va="bottom", fontsize=9)
    if cd:
        ax.plot([x(hi), x(hi - cd)], [0.4, 0.4], color="k", lw=2)
        ax.text((x(hi) + x(hi - cd)) / 2, 0.44, f"CD = {cd:.2f}", ha="center", fontsize=8)
    # clique bars
    for i, group in enumerate(groups):
        y = -0.12 - 0.14 * i
        ax.plot([x(ranks[group[0]]) + 0.005, x(ranks[group[-1]]) - 0.005], [y, y], color="k",
                lw=3, solid_capstyle="round")
    for i, label in enumerate(labels):  # best first
        r = ranks[label]
        name = _name(names, label)
        if i < half:  # right side
            y = base - 0.3 * i
            ax.plot([x(r), x(r), 0.83], [0, y, y], color="0.3", lw=0.8)
            ax.text(0.84, y, f"{name} ({r:.2f})", ha="left", va="center", fontsize=9)
        else:
            y = base - 0.3 * (k - 1 - i)
            ax.plot([x(r), x(r), 0.17], [0, y, y], color="0.3", lw=0.8)
            ax.text(0.16, y, f"({r:.2f}) {name}", ha="right", va="center", fontsize=9)
    ax.set_title(title, fontsize=10)
    # no tight_layout: the labels beside the axis are meant to stand outside it (tight_layout
    # would try to squeeze them in, and give up with a warning); the saved box takes them in
    fig.subplots_adjust(left=0.02, right=0.98, top=0.9, bottom=0.02)
    _save(fig, path, 110, plt)


def plot_dataset_bars(mean, std, order, colors, path: Path, metric_name: str, plt,
                      per_row: int = 8, names: dict[str, str] | None = None) -> None:
    """Grouped bars per dataset (mean over seeds, error bar = std), ``per_row`` datasets a row.

    A single row holds just its datasets and the figure narrows with them (two datasets fill
    their plot instead of a quarter of a wide one); with several rows every row has ``per_row``
    slots, so bars keep one width. The legend stands above the plot, in as many columns as its
    entries fit."""
    cols = [m for m in order if m in mean.columns]
    datasets = list(mean.index)
    m = max(1, len(cols))
    nrow = max(1, math.ceil(len(datasets) / per_row))
    slots = per_row if nrow > 1 else max(1, len(datasets))
    fig_width = min(12.0, max(5.0, 1.5 + slots * (0.9 + 0.3 * m)))
    fig, axes = plt.subplots(nrow, 1, figsize=(fig_width, 2.9 * nrow + 0.6), squeeze=False)
    width = 0.8 / m
    for r in range(nrow):
        ax = axes[r, 0]
        chunk = datasets[r * per_row:(r + 1) * per_row]
        xs = np.arange(len(chunk))
        for j, model in enumerate(cols):
            vals = mean.loc[chunk, model].to_numpy(dtype=float)
            err = std.loc[chunk, model].to_numpy(dtype=float) if model in std.columns else None
            ax.bar(xs - 0.4 + width * (j + 0.5), np.nan_to_num(vals), width,
                   yerr=None if err is None else np.nan_to_num(err), color=colors[model],
                   label=_name(names, model), error_kw={"elinewidth": 0.6, "capsize": 0})
        ax.set_xticks(xs)
        ax.set_xticklabels(chunk, fontsize=8)
        ax.set_xlim(-0.5, slots - 0.5)
        ax.set_ylim(0, 1.02)
        ax.set_ylabel(metric_name, fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    shown = [_name(names, c) for c in cols]
    ncol = min(_legend_columns(shown, fig_width - 0.3, 8), max(1, int(fig_width / 1.6)))
    axes[0, 0].legend(ncol=ncol, fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0),
                      frameon=False)
    fig.tight_layout()
    _save(fig, path, 100, plt)


def plot_auc_vs_time(ok, mean, order, colors, path: Path, metric: str, plt,
                     names: dict[str, str] | None = None) -> None:
    """AUC against fit time: each cell (small dots) and each model's median fit time and mean
    AUC over datasets (big marker, with its name beside it); the legend is beneath the plot."""
    fig, ax = plt.subplots(figsize=(7, 4.8), layout="constrained")
    marks = []
    for model in order:
        cells = ok[ok["label"] == model]
        if cells.empty:
            continue
        fit = cells["fit_seconds"].clip(lower=1e-4)
        ax.scatter(fit, cells[metric], s=6, alpha=0.15, color=colors[model])
        mx = float(np.median(fit))
        my = float(mean[model].mean()) if model in mean.columns else float(cells[metric].mean())
        name = _name(names, model)
        ax.scatter([mx], [my], s=80, color=colors[model], edgecolor="k", zorder=3, label=name)
        marks.append((name, mx, my))
    ax.set_xscale("log")
    ax.margins(x=0.12, y=0.08)  # room for the names beside the rightmost and topmost markers
    ax.set_xlabel("fit seconds per cell (log; big marker = median)")
    ax.set_ylabel(f"{METRICS[metric]} (big marker = mean over datasets)")
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", fontsize=7, frameon=False,
                   ncol=_legend_columns(labels, 6.6, 7, most=6))
    _name_markers(fig, ax, marks, 8)
    _save(fig, path, 100, plt)


def _name_markers(fig, ax, marks: list[tuple[str, float, float]], fontsize: float) -> None:
    """Write each marker's name beside it (right or left, above or below) where it overlaps no
    name written before; a marker among too many others keeps only its legend entry."""
    fig.canvas.draw()  # lay the figure out: the pixel positions below are the final ones
    px = fig.dpi / 72
    placed: list[tuple[float, float, float, float]] = []
    for name, x, y in marks:
        cx, cy = ax.transData.transform((x, y))
        w, h = 0.6 * fontsize * len(name) * px, 1.25 * fontsize * px
        for dx, dy, ha in ((6, 4, "left"), (6, -4 - 1.25 * fontsize, "left"),
                           (-6, 4, "right"), (-6, -4 - 1.25 * fontsize, "right")):
            x0 = cx + dx * px - (w if ha == "right" else 0)
            box = (x0, cy + dy * px, x0 + w, cy + dy * px + h)
            if all(box[2] <= b[0] or box[0] >= b[2] or box[3] <= b[1] or box[1] >= b[3]
                   for b in placed):
                placed.append(box)
                ax.annotate(name, (x, y), textcoords="offset points", xytext=(dx, dy),
                            ha=ha, va="bottom", fontsize=fontsize, annotation_clip=False)
                break


def plot_throughput(ok, order, colors, path: Path, plt,
                    names: dict[str, str] | None = None) -> None:
    models = [m for m in order if (ok["label"] == m).any()]
    fig, ax = plt.subplots(figsize=(7, 0.5 + 0.4 * max(1, len(models))))
    med, lo, hi = [], [], []
    for m in models:
        r = ok.loc[ok["label"] == m, "rows_per_second"].dropna().to_numpy(dtype=float)
        r = r[r > 0] if len(r) else r
        if len(r) == 0:
            med.append(np.nan)
            lo.append(0)
            hi.append(0)
            continue
        q1, q2, q3 = np.percentile(r, [25, 50, 75])
        med.append(q2)
        lo.append(q2 - q1)
        hi.append(q3 - q2)
    y = np.arange(len(models))
    ax.barh(y, np.nan_to_num(med), xerr=[lo, hi], color=[colors[m] for m in models],
            error_kw={"elinewidth": 0.8})
    ax.set_yticks(y)
    ax.set_yticklabels([_name(names, m) for m in models], fontsize=9)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("test rows scored per second (median, bar = interquartile range)")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    _save(fig, path, 100, plt)


# ============================================================================== history
def history_frame(history: Any):
    """Turn a recorded ``history_`` into a DataFrame of per-episode numbers (or None)."""
    import pandas as pd

    h = history
    if isinstance(h, dict):
        for key in ("episodes", "history", "records"):
            if key in h and isinstance(h[key], (list, dict)):
                h = h[key]
                break
    try:
        if isinstance(h, list) and h and all(isinstance(r, dict) for r in h):
            frame = pd.DataFrame(h)
        elif isinstance(h, dict):
            lengths = {len(v) for v in h.values() if isinstance(v, list)}
            if len(lengths) != 1:
                return None
            frame = pd.DataFrame({k: v for k, v in h.items() if isinstance(v, list)})
        else:
            return None
    except (ValueError, TypeError):
        return None
    numeric = frame.apply(pd.to_numeric, errors="coerce")
    numeric = numeric.loc[:, numeric.notna().any()]
    for col in ("episode", "epoch", "step"):
        if col in numeric.columns:
            numeric = numeric.set_index(col)
            break
    return numeric if numeric.shape[1] else None


HISTORY_PRIORITY = ("auc", "reward", "loss", "entropy", "diversity", "deception", "kept",
                    "generated", "accepted", "candidates")


def history_columns(frames: list, limit: int = 9) -> list[str]:
    """The history columns worth a plot: not constant, the informative ones first."""
    import pandas as pd

    cols: list[str] = []
    for f in frames:
        cols.extend(c for c in f.columns if c not in cols)
    varying = []
    for c in cols:
        values = pd.concat([f[c] for f in frames if c in f.columns]).dropna()
        if values.nunique() > 1:
            varying.append(c)

    def priority(c: str) -> int:
        low = c.lower()
        return next((i for i, key in enumerate(HISTORY_PRIORITY) if key in low),
                    len(HISTORY_PRIORITY))

    return sorted(varying, key=lambda c: (priority(c), varying.index(c)))[:limit]


def _file_tag(label: str) -> str:
    """A short file-name part for a model label (long configs become a hash)."""
    import hashlib

    slug = _slug(label)
    if len(slug) <= 40:
        return slug
    return _slug(label.split("[")[0]) + "-" + hashlib.sha1(label.encode()).hexdigest()[:8]


def _integer_axis(ax, indexes, max_n_locator) -> None:
    """Episode numbers on the x axis: one tick per episode for up to 12 episodes, the points
    half a step from the edges (one episode is not drawn on a 0.945-1.050 scale); more
    episodes get integer ticks."""
    values = np.concatenate([np.asarray(i, dtype=float) for i in indexes]) if indexes else np.empty(0)
    values = values[np.isfinite(values)]
    if len(values) == 0 or not np.allclose(values, np.round(values)):
        ax.xaxis.set_major_locator(max_n_locator(integer=True))
        return
    lo, hi = int(values.min()), int(values.max())
    if hi - lo <= 12:
        ax.set_xticks(range(lo, hi + 1))
        ax.set_xlim(lo - 0.5, hi + 0.5)
    else:
        ax.xaxis.set_major_locator(max_n_locator(integer=True))


def _history_block(doc: Doc, part, tag: str, img_dir: Path, plt) -> None:
    from matplotlib.ticker import MaxNLocator

    has = part[(part["status"] == "ok") & part["history"].notna()]
    for model, cells in has.groupby("label"):
        first_seed = cells.sort_values("seed").groupby("dataset").head(1)
        parsed = []
        for rec in first_seed.itertuples():
            try:
                payload = json.loads(rec.history)
            except (TypeError, ValueError):
                continue
            parsed.append((rec.dataset, rec.seed, payload))
        if not parsed:
            continue
        doc.h(3, f"{model}: training")
        frames = [(d, s, history_frame(p.get("history"))) for d, s, p in parsed]
        frames = [(d, s, f) for d, s, f in frames if f is not None and len(f)]
        cols = history_columns([f for _, _, f in frames]) if frames else []
        if frames and not cols:
            doc.p(f"{model}: no per-episode number varies (one episode recorded), so there is no "
                  "training curve to draw.")
        if cols:
            ncol = min(3, len(cols))
            nrow = math.ceil(len(cols) / ncol)
            fig, axes = plt.subplots(nrow, ncol, figsize=(4 * ncol, 2.8 * nrow), squeeze=False,
                                     layout="constrained")
            for ax, col in zip(axes.ravel(), cols, strict=False):
                for d, s, f in frames[:12]:
                    if col in f.columns:
                        ax.plot(f.index, f[col], marker=".", lw=1, label=f"{d} s{s}")
                ax.set_title(col, fontsize=9)
                ax.set_xlabel("episode", fontsize=8)
                _integer_axis(ax, [f.index for _, _, f in frames[:12] if col in f.columns], MaxNLocator)
                ax.grid(alpha=0.3)
            for ax in axes.ravel()[len(cols):]:
                ax.axis("off")
            if len(frames) <= 12:  # beside the plots, not over the first one's curves
                handles, labels = axes.ravel()[0].get_legend_handles_labels()
                fig.legend(handles, labels, loc="outside right upper", fontsize=6, frameon=False)
            path = img_dir / f"history_{_file_tag(model)}_{tag}.png"
            _save(fig, path, 90, plt)
            doc.img(f"img/{path.name}", f"{model}: per-episode training curves (first seed of "
                    "each dataset, up to 12)")
        views = [(d, s, p["view"]) for d, s, p in parsed
                 if isinstance(p.get("view"), dict) and "normal" in p["view"]]
        if views:
            views = views[:12]
            ncol = min(4, len(views))
            nrow = math.ceil(len(views) / ncol)
            fig, axes = plt.subplots(nrow, ncol, figsize=(3.3 * ncol, 3.1 * nrow), squeeze=False,
                                     layout="constrained")
            for ax, (d, s, v) in zip(axes.ravel(), views, strict=False):
                for key, color, marker, lab in (("normal", "0.7", ".", "normal"),
                                                ("anomaly", "tab:red", "o", "real anomaly"),
                                                ("generated", "tab:blue", "x", "generated")):
                    pts = np.asarray(v.get(key) or [], dtype=float).reshape(-1, 2)
                    if len(pts):
                        ax.scatter(pts[:, 0], pts[:, 1], s=8 if key == "normal" else 12,
                                   c=color, marker=marker, alpha=0.6, label=lab, linewidths=0.8)
                ax.set_title(f"{d} (seed {s})", fontsize=8)
                ax.set_xticks([])
                ax.set_yticks([])
            for ax in axes.ravel()[len(views):]:
                ax.axis("off")
            handles, labels = axes.ravel()[0].get_legend_handles_labels()
            if handles:  # beneath the views, not over the first one's points
                fig.legend(handles, labels, loc="outside lower center", ncol=len(handles),
                           fontsize=7, frameon=False, markerscale=1.5)
            path = img_dir / f"view_{_file_tag(model)}_{tag}.png"
            _save(fig, path, 90, plt)
            doc.img(f"img/{path.name}", f"{model}: PCA view of normal rows, real anomalies and "
                    "generated anomalies")


# ============================================================================== unseen types
def _unseen_section(doc: Doc, part, protocol, ratio, img_dir: Path, plt, names=None) -> None:
    from swifthydra.bench.synthetic import ANOMALY_TYPES

    tag = _slug(protocol, f"la{ratio:g}")
    doc.h(2, f"Unseen anomaly types, protocol `{protocol}`, labelled ratio {ratio:g}")
    doc.p("ADBench's realistic synthetic anomalies (Gaussian-mixture normals; local, global, "
          "cluster and dependency anomalies). Each model is trained with anomalies of one type "
          "(rows) and tested on each type (columns): mean AUC-ROC over datasets and seeds. "
          "The diagonal is the seen type; 'unseen' is the mean off the diagonal.")
    ok = part[(part["status"] == "ok") & part["extra"].notna()]
    if ok.empty:
        doc.p("No successful cell in this section.")
        return
    records = []
    for rec in ok.itertuples():
        try:
            per_type = json.loads(rec.extra).get("per_type", {})
        except ValueError:
            continue
        train = rec.scenario.split(":", 1)[1]
        for test, vals in per_type.items():
            records.append((rec.label, rec.dataset, rec.seed, train, test, vals.get("auc_roc")))
    import pandas as pd

    frame = pd.DataFrame(records, columns=["label", "dataset", "seed", "train", "test", "auc"])
    models = list(frame["label"].unique())
    summary = []
    mats = {}
    for model in models:
        sub = frame[frame["label"] == model]
        mat = sub.pivot_table(index="train", columns="test", values="auc", aggfunc="mean")
        rows_o = [t for t in ANOMALY_TYPES if t in mat.index]
        cols_o = [t for t in ANOMALY_TYPES if t in mat.columns]
        mat = mat.loc[rows_o, cols_o]
        mats[model] = mat
        diag = [mat.loc[t, t] for t in rows_o if t in mat.columns]
        off = [mat.loc[a, b] for a in rows_o for b in cols_o if a != b]
        summary.append([model, _f3(np.nanmean(diag) if diag else np.nan),
                        _f3(np.nanmean(off) if off else np.nan), sub["dataset"].nunique()])
    doc.table(["model", "seen type (diagonal)", "unseen types (off-diagonal)", "datasets"],
              summary)
    for model, mat in mats.items():
        doc.h(3, f"{model}")
        doc.table(["train \\ test", *mat.columns],
                  [[t, *[_f3(v) for v in mat.loc[t].to_numpy(dtype=float)]] for t in mat.index])
    ncol = min(4, len(mats))
    nrow = math.ceil(len(mats) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(2.9 * ncol + 1.4, 3.0 * nrow + 0.3),
                             squeeze=False, layout="constrained")
    for k, (ax, (model, mat)) in enumerate(zip(axes.ravel(), mats.items(), strict=False)):
        im = ax.imshow(mat.to_numpy(dtype=float), vmin=0.5, vmax=1.0, cmap="viridis")
        ax.set_xticks(range(mat.shape[1]))
        ax.set_xticklabels(mat.columns, rotation=45, ha="right", fontsize=7)
        ax.set_yticks(range(mat.shape[0]))
        ax.set_yticklabels(mat.index if k % ncol == 0 else [], fontsize=7)
        for i in range(mat.shape[0]):
            for j in range(mat.shape[1]):
                v = mat.iat[i, j]
                if np.isfinite(v):
                    ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7,
                            color="w" if v < 0.8 else "k")
        ax.set_title(_name(names, model), fontsize=9)
        ax.set_xlabel("test type", fontsize=7)
        if k % ncol == 0:
            ax.set_ylabel("train type", fontsize=7)
    for ax in axes.ravel()[len(mats):]:
        ax.axis("off")
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8, label="AUC-ROC")
    path = img_dir / f"unseen_{tag}.png"
    _save(fig, path, 100, plt)
    doc.img(f"img/{path.name}", "AUC-ROC per training anomaly type (rows) and test type (columns)")


# ============================================================================== generators
def _generator_labels(df) -> None:
    """Add ``detector`` (model + config) and ``generator`` columns; a detector with results under
    several generators gets labels ``detector+generator`` (one label per detector otherwise, so a
    report without generator comparisons is unchanged)."""
    from swifthydra.bench.augment import display_label

    if "generator" not in df.columns:
        df["generator"] = "none"
    df["generator"] = df["generator"].fillna("none").astype(str)
    df["detector"] = df["label"]
    n_gen = df.groupby("detector")["generator"].transform("nunique")
    df["label"] = [f"{d}+{display_label(g)}" if n > 1 else d
                   for d, g, n in zip(df["detector"], df["generator"], n_gen, strict=True)]


def _generator_block(doc: Doc, df, img_dir: Path, tol: float, plt, names=None,
                     generator_names=None) -> None:
    """The gain of each generator over ``none`` per detector (see :mod:`swifthydra.bench.gains`);
    its plots name detectors and generators by ``names`` and ``generator_names``."""
    from swifthydra.bench.gains import generator_sections

    generator_sections(doc, df, img_dir, tol, plt, names=names, generator_names=generator_names)


# ============================================================================== misc blocks
def _errors_block(doc: Doc, df) -> None:
    bad = df[df["status"].isin(["error", "timeout"])]
    if bad.empty:
        return
    doc.h(2, "Failed cells")
    grouped = bad.groupby(["label", "error"], dropna=False)
    rows = []
    for (label, error), g in grouped:
        where = ", ".join(sorted({f"{d}/s{s}" for d, s in zip(g["dataset"], g["seed"],
                                                                strict=True)})[:6])
        more = "" if len(g) <= 6 else f" (+{len(g) - 6})"
        rows.append([label, len(g), (str(error) or "")[:200], where + more])
    doc.table(["model", "cells", "error", "where (dataset/seed)"], rows)


def _runs_block(doc: Doc, runs) -> None:
    if runs is None or runs.empty:
        return
    doc.h(2, "Runs")
    doc.table(["started", "finished", "host", "command"],
              [[r.started_at, r.finished_at or "(interrupted or running)", r.host, f"`{r.command}`"]
               for r in runs.itertuples()])

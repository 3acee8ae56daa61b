"""The report (Markdown, HTML, plots), its statistics, and the export."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from swifthydra.bench import ResultStore, export_results, make_report
from swifthydra.bench.report import history_frame, markdown_table
from swifthydra.bench.stats import average_ranks, cliques, friedman_nemenyi, holm, wilcoxon_vs
from swifthydra.exceptions import InvalidInputError

MODELS = {"swifthydra": 0.90, "catboost": 0.88, "iforest": 0.75, "ecod": 0.74}
DATASETS = ["2_annthyroid", "10_cover", "14_glass", "20_letter", "29_Pima", "38_thyroid"]


def _row(dataset, model, seed, auc, **extra):
    return {"dataset": dataset, "protocol": "adbench", "scenario": "standard",
            "labeled_ratio": 0.05, "seed": seed, "model": model, "config": "{}", "status": "ok",
            "auc_roc": auc, "auc_pr": auc - 0.3, "fit_seconds": 0.1 + len(model),
            "score_seconds": 0.01, "rows_per_second": 3000.0 / (1 + len(model)),
            "peak_memory_mb": 12.0, "split_hash": f"{dataset}{seed}",
            "versions": json.dumps({"pyod": "3.6.7"}), **extra}


@pytest.fixture
def results(tmp_path):
    rng = np.random.RandomState(0)
    path = tmp_path / "res.sqlite"
    with ResultStore(path) as store:
        for ds in DATASETS:
            for seed in (1, 2):
                for model, base in MODELS.items():
                    extra = {}
                    if model == "swifthydra":
                        hist = {"history": [{"episode": e, "reward": 1 / (e + 1), "auc": 0.8}
                                            for e in range(5)],
                                "view": {"normal": rng.rand(50, 2).tolist(),
                                         "anomaly": (rng.rand(8, 2) + 1).tolist(),
                                         "generated": (rng.rand(20, 2) + 1.5).tolist()}}
                        extra["history"] = json.dumps(hist)
                    store.add(_row(ds, model, seed, base + rng.normal(0, 0.02), **extra))
        store.add({**_row("14_glass", "xgbod", 1, 0.0), "status": "error", "auc_roc": None,
                   "error": "ValueError: something broke"})
        store.add({**_row("14_glass", "xgbod", 2, 0.0), "status": "skipped", "auc_roc": None,
                   "labeled_ratio": 0.0, "error": "needs labels"})
        for train in ("local", "global"):
            per_type = {t: {"auc_roc": 0.9 if t == train else 0.6, "auc_pr": 0.5}
                        for t in ("local", "global", "cluster", "dependency")}
            for model in ("catboost", "iforest"):
                store.add({**_row("14_glass", model, 1, 0.7), "scenario": f"unseen-type:{train}",
                           "extra": json.dumps({"per_type": per_type})})
    return path


def test_stats_known_values():
    table = pd.DataFrame({"a": [0.9, 0.8, 0.95], "b": [0.7, 0.6, 0.9], "c": [0.8, 0.8, 0.5]})
    ranks = average_ranks(table)
    assert list(ranks.index) == ["a", "c", "b"]
    assert ranks["a"] == pytest.approx((1 + 1.5 + 1) / 3)
    fr = friedman_nemenyi(table)
    # Demsar 2006, Table 5: q_0.05 for k = 3 is 2.343
    assert fr.critical_difference == pytest.approx(2.343 * np.sqrt(3 * 4 / (6 * 3)), abs=2e-3)
    assert friedman_nemenyi(table[["a", "b"]]) is None
    assert holm({"x": 0.01, "y": 0.04, "z": 0.03}) == pytest.approx(
        {"x": 0.03, "y": 0.06, "z": 0.06})
    p = wilcoxon_vs(table, "a")
    assert set(p) == {"b", "c"} and all(0 <= v <= 1 for v in p.values())
    assert cliques(pd.Series({"a": 1.0, "b": 1.5, "c": 3.0}), cd=1.0) == [["a", "b"]]


def test_markdown_table_escapes_and_aligns():
    text = markdown_table(["name", "value"], [["a|b", 0.5], ["c", None]])
    assert "a\\|b" in text and "|---|--:|" in text


def test_history_frame_shapes():
    assert list(history_frame([{"episode": 0, "r": 1.0}, {"episode": 1, "r": 2.0}]).columns) == ["r"]
    assert history_frame({"reward": [1, 2], "auc": [0.5, 0.6]}).shape == (2, 2)
    assert history_frame({"episodes": [{"x": 1}]}).shape == (1, 1)
    assert history_frame("nonsense") is None
    assert history_frame({"a": [1], "b": [1, 2]}) is None


def test_report_contents(results, tmp_path):
    md_path = make_report(results, tmp_path / "rep")
    md = md_path.read_text()
    html = (tmp_path / "rep" / "report.html").read_text()
    assert "## Protocol `adbench`, labelled ratio 0.05" in md
    assert "W/T/L vs swifthydra" in md and "Wilcoxon-Holm p" in md
    assert "Friedman test over 6 datasets and 4 models" in md
    # swifthydra is best on every dataset: catboost loses everywhere it does not tie
    line = next(x for x in md.splitlines() if x.startswith("| catboost |"))
    wins, ties, losses = map(int, re.search(r"(\d+)/(\d+)/(\d+)", line.split("|")[5]).groups())
    assert wins + ties + losses == 6 and losses >= 4
    assert "AUC-ROC per dataset (mean ± std over seeds)" in md
    assert "| 2_annthyroid |" in md and md.index("| 2_annthyroid |") < md.index("| 10_cover |")
    assert "Unseen anomaly types" in md and "seen type (diagonal)" in md
    assert "| local | 0.900 | 0.600 |" in md
    assert "Failed cells" in md and "something broke" in md
    assert "swifthydra: training" in md
    images = re.findall(r"!\[[^\]]*\]\((img/[^)]+)\)", md)
    for expected in ("cd_", "bars_", "time_", "throughput_", "history_swifthydra",
                     "view_swifthydra", "unseen_"):
        assert any(expected in i for i in images), expected
    embedded = re.findall(r'<img src="([^"]*)"', html)
    assert len(embedded) == len(images)
    for rel, src in zip(images, embedded, strict=True):
        data = (tmp_path / "rep" / rel).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000
        assert src == "data:image/png;base64," + base64.b64encode(data).decode()  # one self-contained file
    assert "img/" not in html
    assert html.startswith("<!DOCTYPE html>") and "<table>" in html and "<b>swifthydra</b>" in html


def test_report_reference_defaults_to_best_rank_without_swifthydra(tmp_path):
    path = tmp_path / "r.sqlite"
    with ResultStore(path) as store:
        for ds in DATASETS[:3]:
            store.add(_row(ds, "a", 1, 0.9))
            store.add(_row(ds, "b", 1, 0.8))
    md = make_report(path, tmp_path / "rep").read_text()
    assert "W/T/L vs a" in md and "| b | 0.800" in md
    assert "Friedman" not in md  # needs 3 models


def test_report_of_empty_results(tmp_path):
    path = tmp_path / "r.sqlite"
    ResultStore(path).close()
    md = make_report(path, tmp_path / "rep").read_text()
    assert "no cells yet" in md
    with pytest.raises(InvalidInputError, match="metric"):
        make_report(path, tmp_path / "rep", metric="f1")
    with pytest.raises(InvalidInputError, match="does not exist"):
        make_report(tmp_path / "missing.sqlite", tmp_path / "rep")


def test_export_formats(results, tmp_path):
    csv = export_results(results, format="csv")
    df = pd.read_csv(__import__("io").StringIO(csv))
    assert len(df) == 6 * 2 * 4 + 2 + 4 and "history" not in df.columns
    md = export_results(results, format="markdown")
    assert md.startswith("| dataset | protocol |") and "something broke" in md
    export_results(results, format="parquet", out=tmp_path / "r.parquet", history=True)
    back = pd.read_parquet(tmp_path / "r.parquet")
    assert len(back) == len(df) and back["history"].notna().sum() == 12
    export_results(results, format="csv", out=tmp_path / "r.csv")
    assert (tmp_path / "r.csv").read_text() == csv
    with pytest.raises(InvalidInputError, match="unknown format"):
        export_results(results, format="xlsx")


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _chromium_or_skip() -> str:
    path = _chromium()
    if path is None:
        if os.environ.get("CI"):  # scripts/test.sh installs Debian's chromium: missing there is a failure
            pytest.fail("Chromium is not installed in CI (scripts/test.sh installs the chromium package)")
        pytest.skip("Chromium is not installed (apt-get install chromium; scripts/test.sh does it as root)")
    return path


def _headless(chromium: str, profile: str, *args: str) -> subprocess.CompletedProcess:
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-dev-shm-usage",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", f"--user-data-dir={profile}", "--allow-file-access-from-files",
           "--hide-scrollbars", "--virtual-time-budget=10000", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env={**os.environ, "HOME": profile})


def _probe(chromium: str, out, page: str, body: str, *args: str) -> str:
    """Open ``page`` (the report's HTML, in folder ``out``) in headless Chromium with the script
    ``body`` run on load, which fills ``lines``; returns them as the dumped DOM's text."""
    probe = ("<script>window.addEventListener('load', function () { var lines = [];" + body
             + "var d = document.createElement('pre'); d.id = 'probe'; d.textContent = lines.join('\\n') + '\\nEND';"
             "document.body.appendChild(d); });</script>")
    (out / "probe.html").write_text(page.replace("</body>", probe + "</body>"))
    with tempfile.TemporaryDirectory() as profile:
        proc = _headless(chromium, profile, *args, "--dump-dom", (out / "probe.html").as_uri())
    assert "END" in proc.stdout, proc.stderr[-2000:]
    return proc.stdout


def test_html_report_renders_in_headless_chromium(results, tmp_path):
    """The report in a real browser: every image decodes and draws something (not one flat colour),
    every link points inside the page, and a screenshot of the page is not blank."""
    import matplotlib.image

    chromium = _chromium_or_skip()
    out = tmp_path / "rep"
    make_report(results, out)
    page = (out / "report.html").read_text()
    # per image: loaded?, size, and how many distinct pixels of a 64x64 draw of it (canvas: a data:
    # URI is same-origin, so the pixels can be read); per link: does its target exist in the page?
    stdout = _probe(chromium, out, page, (
        "Array.from(document.images).forEach(function (img, i) {"
        "  var seen = {}, n = 0;"
        "  if (img.complete && img.naturalWidth > 0) {"
        "    var c = document.createElement('canvas'); c.width = 64; c.height = 64;"
        "    var g = c.getContext('2d'); g.drawImage(img, 0, 0, 64, 64);"
        "    var px = g.getImageData(0, 0, 64, 64).data;"
        "    for (var j = 0; j < px.length; j += 4) {"
        "      var k = px[j] + ',' + px[j + 1] + ',' + px[j + 2];"
        "      if (!seen[k]) { seen[k] = 1; n++; } } }"
        "  lines.push('IMG ' + i + ' ' + img.naturalWidth + 'x' + img.naturalHeight + ' ' + n); });"
        "Array.from(document.querySelectorAll('a[href]')).forEach(function (a) {"
        "  var h = a.getAttribute('href'), ok = h.charAt(0) === '#' ? !!document.getElementById(h.slice(1))"
        "    : h.indexOf('data:') === 0;"
        "  lines.push('LINK ' + (ok ? 'ok ' : 'broken ') + h.slice(0, 80)); });"))
    with tempfile.TemporaryDirectory() as profile:
        shot = tmp_path / "report.png"
        taken = _headless(chromium, profile, f"--screenshot={shot}", "--window-size=1200,2400",
                          (out / "report.html").as_uri())
    images = re.findall(r"IMG (\d+) (\d+)x(\d+) (\d+)", stdout)
    assert len(images) == len(re.findall(r"<img ", page)) >= 7
    for i, w, h, colours in images:
        assert int(w) > 100 and int(h) > 100, f"image {i} did not load ({w}x{h})"
        assert int(colours) >= 3, f"image {i} is blank ({colours} colours)"
    broken = re.findall(r"LINK broken (.*)", stdout)
    assert not broken, broken
    assert shot.is_file(), taken.stderr[-2000:]
    pixels = matplotlib.image.imread(shot)  # the rendered page: text and plots, not a blank page
    assert pixels.shape[0] >= 2000 and pixels.shape[1] >= 1000
    rgb = (pixels[..., :3] * 255).astype(int)
    assert len(np.unique(rgb.reshape(-1, 3), axis=0)) > 50
    assert (rgb.min(axis=2) < 200).mean() > 0.01  # more than a few dark pixels (text, axes, bars)


def test_html_report_is_one_file_and_plots_fit_two_datasets_and_one_episode(tmp_path, monkeypatch):
    """The HTML embeds every image (no link outside the file, each a decodable PNG); with two
    datasets the bars fill their plot, and one recorded episode gets one integer tick."""
    import matplotlib.figure

    drawn = {}
    save = matplotlib.figure.Figure.savefig

    def record(fig, path, *args, **kwargs):
        drawn[Path(path).name.split("_")[0]] = (
            fig.get_size_inches().tolist(),
            [(list(ax.get_xticks()), ax.get_xlim()) for ax in fig.axes if ax.axison],
        )
        return save(fig, path, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", record)
    path = tmp_path / "r.sqlite"
    with ResultStore(path) as store:
        for k, ds in enumerate(["14_glass", "29_Pima"]):
            hist = {"history": [{"episode": 1, "reward": 0.3 + k, "auc": 0.8 + 0.05 * k, "kept": 3}]}
            store.add(_row(ds, "swifthydra", 1, 0.9, history=json.dumps(hist)))
            store.add(_row(ds, "iforest", 1, 0.75))
    md = make_report(path, tmp_path / "rep").read_text()
    page = (tmp_path / "rep" / "report.html").read_text()

    sources = re.findall(r'<img src="([^"]*)"', page)
    assert len(sources) == len(re.findall(r"!\[", md)) >= 4
    assert not re.search(r'(src|href)="(?!data:)', page)  # nothing outside the file
    for src in sources:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"

    size, [(ticks, xlim)] = drawn["bars"]
    assert xlim == (-0.5, 1.5) and ticks == [0, 1] and size[0] < 8  # two datasets, two slots
    size, axes = drawn["history"]
    assert [t for t, _ in axes] == [[1], [1]] and all(x == (0.5, 1.5) for _, x in axes)


def test_report_of_one_dataset_and_one_episode_builds(tmp_path):
    path = tmp_path / "r.sqlite"
    with ResultStore(path) as store:
        store.add(_row("14_glass", "swifthydra", 1, 0.9,
                       history=json.dumps({"history": [{"episode": 0, "auc": 0.8}]})))
        store.add(_row("14_glass", "iforest", 1, 0.7))
    md = make_report(path, tmp_path / "rep").read_text()
    assert "swifthydra: no per-episode number varies (one episode recorded)" in md
    assert "data:image/png;base64," in (tmp_path / "rep" / "report.html").read_text()


# ------------------------------------------------------------------ long model names (--param)
LONG = "swifthydra[generator=none,prior_weight=0.5]"  # bench --param swifthydra.generator=none ...
LONG_IFOREST = "iforest[max_features=0.8,n_estimators=500]"


@pytest.fixture
def long_results(tmp_path):
    """Results with two ``--param`` models (labels of 43 characters) beside short ones: standard
    cells with histories, unseen-type cells and a failed cell."""
    rng = np.random.RandomState(1)
    models = [("swifthydra", {}, 0.90), ("swifthydra", {"generator": "none", "prior_weight": 0.5}, 0.89),
              ("catboost", {}, 0.87), ("iforest", {"n_estimators": 500, "max_features": 0.8}, 0.75),
              ("ecod", {}, 0.74)]
    path = tmp_path / "long.sqlite"
    with ResultStore(path) as store:
        for ds in DATASETS:
            for seed in (1, 2):
                for model, config, base in models:
                    extra = {"config": json.dumps(config, sort_keys=True)}
                    if model == "swifthydra":
                        extra["history"] = json.dumps({
                            "history": [{"episode": e, "reward": 1 / (e + 1), "auc": 0.8 + 0.01 * e}
                                        for e in range(5)],
                            "view": {"normal": rng.rand(40, 2).tolist(), "anomaly": (rng.rand(6, 2) + 1).tolist(),
                                     "generated": (rng.rand(12, 2) + 1.5).tolist()}})
                    row = _row(ds, model, seed, base + rng.normal(0, 0.02), **extra)
                    row["fit_seconds"] = 0.1 + 2 * len(json.dumps(config))  # the long ones are slow
                    store.add(row)
        store.add({**_row("14_glass", "xgbod", 1, 0.0), "config": json.dumps({"n_estimators": 300, "learning_rate": 0.05}, sort_keys=True),
                   "status": "error", "auc_roc": None, "error": "ValueError: something broke"})
        for train in ("local", "global"):
            per_type = {t: {"auc_roc": 0.9 if t == train else 0.6, "auc_pr": 0.5}
                        for t in ("local", "global", "cluster", "dependency")}
            for model, config, _ in models[1:4]:
                store.add({**_row("14_glass", model, 1, 0.7), "config": json.dumps(config, sort_keys=True),
                           "scenario": f"unseen-type:{train}", "extra": json.dumps({"per_type": per_type})})
    return path


def test_plot_names_shorten_long_labels_only():
    from swifthydra.bench.report import plot_names

    names = plot_names(["swifthydra", "xgboost[n_estimators=5]", LONG, "swifthydra[episodes=40,max_samples=20000]",
                        "catboost[depth=8,iterations=2000]+nngmix[n_neighbors=5]", LONG_IFOREST,
                        "a_model_with_a_very_long_name_and_no_settings"])
    assert names["swifthydra"] == "swifthydra" and names["xgboost[n_estimators=5]"] == "xgboost[n_estimators=5]"
    # numbered per stem in natural order of the labels
    assert names["swifthydra[episodes=40,max_samples=20000]"] == "swifthydra #1" and names[LONG] == "swifthydra #2"
    assert names["catboost[depth=8,iterations=2000]+nngmix[n_neighbors=5]"] == "catboost+nngmix #1"
    assert names[LONG_IFOREST] == "iforest #1"
    assert names["a_model_with_a_very_long_name_and_no_settings"] == "a_model_with_a_very… #1"
    assert len(set(names.values())) == len(names) and all(len(n) <= 24 for n in names.values())
    # a short label that looks like a short name is not shadowed
    assert plot_names(["swifthydra #1", LONG])[LONG] == "swifthydra #2"


def test_report_with_long_param_names_is_readable(long_results, tmp_path, monkeypatch):
    """A report with ``--param`` models: plots name them by short names (a table in the report
    maps each to its label), legends stand outside the axes, images are saved whole, the HTML
    lets long names break, and nothing is warned."""
    import matplotlib.figure
    import matplotlib.text

    from swifthydra.bench import report

    drawn = {}
    save = matplotlib.figure.Figure.savefig

    def record(fig, path, *args, **kwargs):
        out = save(fig, path, *args, **kwargs)
        renderer = fig.canvas.get_renderer()
        texts = [t.get_text() for t in fig.findobj(matplotlib.text.Text) if t.get_visible() and t.get_text()]
        axes = [ax.get_window_extent(renderer) for ax in fig.axes if ax.axison]
        legends = [lg.get_window_extent(renderer) for lg in
                   [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend())]]
        drawn[Path(path).name] = (texts, axes, legends, kwargs)
        return out

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", record)
    # the layout warnings are gone at their cause: nothing to warn even without the filter
    monkeypatch.setattr(report, "_quiet_matplotlib", contextlib.nullcontext)
    with warnings_as_errors():
        md = make_report(long_results, tmp_path / "rep").read_text()
    html_text = (tmp_path / "rep" / "report.html").read_text()

    assert "## Model names in the plots" in md
    assert f"| swifthydra #1 | {LONG} |" in md and f"| iforest #1 | {LONG_IFOREST} |" in md
    assert "| swifthydra | swifthydra |" not in md  # short labels are not listed, nor
    assert "xgbod #1" not in md and "| xgbod[learning_rate=0.05,n_estimators=300] | 1 |" in md  # one in no plot
    assert f"| {LONG} | 0.8" in md and f"| dataset | swifthydra | {LONG} |" in md  # tables: full labels
    images = re.findall(r"!\[(?:\\.|[^\]\\])*\]\((img/[^)]+)\)", md)  # alt texts: \[ and \] escaped
    assert "![swifthydra\\[generator=none,prior_weight=0.5\\]: per-episode training curves" in md
    assert len(images) == len(drawn) == 9  # cd, bars, time, throughput, 2 histories, 2 views, unseen
    for rel in images:
        assert (tmp_path / "rep" / rel).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(re.findall(r'<img src="data:image/png;base64,', html_text)) == 9

    for name, (texts, axes, legends, kwargs) in drawn.items():
        assert kwargs.get("bbox_inches") == "tight", name  # whatever stands outside the axes is kept
        assert not any(LONG in t or LONG_IFOREST in t for t in texts), (name, texts)
        for lg in legends:  # no legend over any plot's data
            assert not any(lg.x0 < ax.x1 - 1 and lg.x1 > ax.x0 + 1 and lg.y0 < ax.y1 - 1 and lg.y1 > ax.y0 + 1
                           for ax in axes), name
    with_legend = sorted(n.split("_")[0] for n, (_, _, legends, _) in drawn.items() if legends)
    assert with_legend == ["bars", "history", "history", "time", "view", "view"]
    for prefix in ("cd_", "bars_", "time_", "throughput_", "unseen_"):
        texts = next(t for n, (t, *_) in drawn.items() if n.startswith(prefix))
        assert any("swifthydra #1" in t for t in texts), (prefix, texts)
    assert any("iforest #1" in t for t in drawn[next(n for n in drawn if n.startswith("bars_"))][0])

    # HTML: long names may break after [ , + ; tables scroll inside their own box
    assert "swifthydra[<wbr>generator=none,<wbr>prior_weight=0.5]" in html_text
    assert '<div class="table"><table>' in html_text and "div.table{max-width:100%;overflow-x:auto" in html_text


MIXUP_LONG = "mixup[alpha=0.4,n_samples=1000]"  # bench --param gen.mixup.alpha=0.4 ...
SH_EPISODES = "swifthydra[episodes=40,max_samples=20000]"


@pytest.fixture
def long_gen_results(tmp_path):
    """Generator comparisons with long labels: two ``--param`` detectors (and a short one), each
    under ``none``, two long mixup labels, a long nngmix label and ``cvae``."""
    from swifthydra.bench.augment import generator_label

    rng = np.random.RandomState(2)
    detectors = [("swifthydra", {"episodes": 40, "max_samples": 20000}),
                 ("catboost", {"depth": 8, "iterations": 2000}), ("xgboost", {})]
    generators = ["none", generator_label("mixup", {"alpha": 0.4, "n_samples": 1000}),
                  generator_label("mixup", {"alpha": 0.2, "n_samples": 1000}),
                  generator_label("nngmix", {"k": 5, "n_samples": 1000}), "cvae"]
    path = tmp_path / "gen_long.sqlite"
    with ResultStore(path) as store:
        for ds in DATASETS[:4]:
            for seed in (1, 2):
                for model, config in detectors:
                    for gen in generators:
                        row = _row(ds, model, seed, 0.85 + rng.normal(0, 0.02),
                                   config=json.dumps(config, sort_keys=True), generator=gen)
                        store.add(row)
    return path


def test_gains_plot_with_long_labels_uses_short_names(long_gen_results, tmp_path, monkeypatch):
    """The generator-gain plot names long detectors and generators by short names (the report's
    name tables map them back), its titles and tick labels do not overlap, the image is saved
    whole, and nothing is warned; tables keep the full labels."""
    import matplotlib.figure
    import matplotlib.text

    from swifthydra.bench import report

    drawn = {}
    save = matplotlib.figure.Figure.savefig

    def record(fig, path, *args, **kwargs):
        out = save(fig, path, *args, **kwargs)
        renderer = fig.canvas.get_renderer()
        texts = [t.get_text() for t in fig.findobj(matplotlib.text.Text) if t.get_visible() and t.get_text()]
        boxes = []  # titles and x tick labels: (text, extent in pixels)
        for ax in fig.axes:
            labels = [t for t in ax.get_xticklabels() if t.get_visible() and t.get_text()]
            boxes += [(t.get_text(), t.get_window_extent(renderer)) for t in [ax.title, *labels]
                      if t.get_text()]
        drawn[Path(path).name] = (texts, boxes, kwargs)
        return out

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", record)
    monkeypatch.setattr(report, "_quiet_matplotlib", contextlib.nullcontext)  # no filter needed
    with warnings_as_errors():
        md = make_report(long_gen_results, tmp_path / "rep").read_text()

    # name tables: detectors among the models, long generator labels in their own table
    assert f"| swifthydra #1 | {SH_EPISODES} |" in md
    assert "| catboost #1 | catboost[depth=8,iterations=2000] |" in md
    assert "## Generator names in the plots" in md
    assert "| mixup #1 | mixup[alpha=0.2,n_samples=1000] |" in md and f"| mixup #2 | {MIXUP_LONG} |" in md
    assert "| nngmix #1 | nngmix[k=5,n_samples=1000] |" in md
    assert "| cvae | cvae |" not in md  # short labels are not listed
    # the gain table keeps full labels
    assert f"| {SH_EPISODES} | {MIXUP_LONG} | 4 |" in md

    gains = [n for n in drawn if n.startswith("gains_")]
    assert gains == ["gains_standard-adbench-la0.05.png"]
    texts, boxes, kwargs = drawn[gains[0]]
    assert kwargs.get("bbox_inches") == "tight"
    assert not any("=" in t for t in texts), texts  # no settings: every long label is short
    for name in ("swifthydra #1", "catboost #1", "xgboost", "mixup #1", "mixup #2", "nngmix #1", "cvae"):
        assert name in texts, (name, texts)
    assert [t for t, _ in boxes].count("mixup #2") == 3  # under the bottom row only
    for a, (ta, ba) in enumerate(boxes):  # no title or tick label runs into another
        for tb, bb in boxes[a + 1:]:
            assert not (ba.x0 < bb.x1 - 1 and ba.x1 > bb.x0 + 1 and ba.y0 < bb.y1 - 1
                        and ba.y1 > bb.y0 + 1), (ta, tb)
    png = tmp_path / "rep" / "img" / gains[0]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_gains_plot_without_names_wraps_full_labels(long_gen_results, tmp_path, monkeypatch):
    """Called without the report's short names, the gains plot shows full labels, wrapped after
    ``[``, ``,`` and ``+``, and warns of nothing."""
    import matplotlib.figure
    import matplotlib.text

    from swifthydra.bench import gains
    from swifthydra.bench.report import _mpl, load_results

    seen = []
    save = matplotlib.figure.Figure.savefig

    def record(fig, path, *args, **kwargs):
        seen.extend(t.get_text() for t in fig.findobj(matplotlib.text.Text) if t.get_visible())
        return save(fig, path, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", record)
    df, _ = load_results(long_gen_results)
    records, per_dataset = gains.gain_table(df, 0.005)
    with warnings_as_errors():
        gains.plot_gains(records, per_dataset, tmp_path / "g.png", _mpl())
    assert "mixup[\nalpha=0.4,\nn_samples=1000]" in seen, seen
    assert "swifthydra[episodes=40,\nmax_samples=20000]" in seen, seen
    assert (tmp_path / "g.png").stat().st_size > 0


def test_report_names_long_labels_in_plots_only_when_needed(results, tmp_path):
    """Short names everywhere: no alias table, and the plots carry the labels themselves."""
    md = make_report(results, tmp_path / "rep").read_text()
    assert "Model names in the plots" not in md and " #1" not in md


def test_matplotlib_layout_warnings_do_not_reach_the_user(tmp_path):
    """Had a plot's layout failed (a label too long for its figure), the report would say nothing."""
    from swifthydra.bench.report import _mpl, _quiet_matplotlib, plot_throughput

    plt = _mpl()
    label = "x" * 300  # no short name: wider than the figure
    ok = pd.DataFrame({"label": [label, "b"], "rows_per_second": [100.0, 200.0]})
    colors = {label: "tab:blue", "b": "tab:red"}
    with pytest.warns(UserWarning, match="Tight layout not applied"):  # what the filter is for
        plot_throughput(ok, [label, "b"], colors, tmp_path / "a.png", plt)
    with warnings_as_errors(), _quiet_matplotlib():
        plot_throughput(ok, [label, "b"], colors, tmp_path / "b.png", plt)
    assert (tmp_path / "b.png").stat().st_size > 0


@contextlib.contextmanager
def warnings_as_errors():
    """Any warning raised inside fails the test."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def test_html_report_with_long_names_fits_the_window_in_headless_chromium(long_results, tmp_path):
    """Rendered at 1000 px, the page with ``--param`` model names is no wider than the window, and
    the summary and name tables fit without scrolling (their long names wrap)."""
    chromium = _chromium_or_skip()
    out = tmp_path / "rep"
    make_report(long_results, out)
    page = (out / "report.html").read_text()
    stdout = _probe(chromium, out, page, (
        "lines.push('PAGE ' + document.documentElement.scrollWidth + ' ' + window.innerWidth);"
        "Array.from(document.querySelectorAll('div.table')).forEach(function (d, i) {"
        "  var first = d.querySelector('th').textContent;"
        "  lines.push('TABLE ' + i + ' ' + d.scrollWidth + ' ' + d.clientWidth + ' ' + first); });"
        "Array.from(document.images).forEach(function (img, i) {"
        "  lines.push('IMG ' + i + ' ' + img.getBoundingClientRect().right + ' ' + img.naturalWidth); });"),
        "--window-size=1000,900")
    scroll, inner = map(int, re.search(r"PAGE (\d+) (\d+)", stdout).groups())
    assert inner <= 1000 and scroll <= inner, stdout  # no horizontal scrolling of the page
    tables = re.findall(r"TABLE (\d+) (\d+) (\d+) (\S+)", stdout)
    assert [t[3] for t in tables[:3]] == ["in", "model", "dataset"], tables  # names, summary, per dataset
    for i, scroll_width, client_width, _ in tables:  # every table fits: long names wrap
        assert int(scroll_width) <= int(client_width), (i, tables)
    for i, right, natural in re.findall(r"IMG (\d+) ([\d.]+) (\d+)", stdout):
        assert float(right) <= inner and int(natural) > 100, (i, right)  # scaled to the page, loaded

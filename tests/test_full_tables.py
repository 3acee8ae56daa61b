"""benchmarks/full_tables.py: the committed CSV rebuilds the results file a resumed run needs, and
the tables count what the cells say."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from swifthydra.bench.store import ResultStore

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "full_tables.py"


@pytest.fixture
def ft(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("full_tables", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "RESULTS", tmp_path / "committed")
    return module


def _row(dataset, model, roc, *, scenario="standard", ratio=0.05, seed=1, generator="none", extra=None):
    return {"dataset": dataset, "protocol": "adbench", "scenario": scenario, "labeled_ratio": ratio, "seed": seed,
            "model": model, "config": "{}", "generator": generator, "status": "ok", "auc_roc": roc,
            "auc_pr": roc / 2, "fit_seconds": 1.5, "n_train": 100, "split_hash": f"{dataset}{seed}",
            "extra": extra, "history": [{"episode": 0}]}


def test_a_work_folder_without_the_results_file_is_rebuilt_from_the_committed_csv(ft, tmp_path):
    first = tmp_path / "a" / "peers.sqlite"
    with ResultStore(first) as store:
        for i, d in enumerate(["d1", "d2"]):
            for seed in (1, 2):
                store.add(_row(d, "catboost", 0.7 + 0.1 * i, seed=seed))
        store.add({**_row("d1", "xgbod", 0.6), "status": "error", "auc_roc": None, "error": "boom, \"quoted\""})
    assert ft.export("peers", first) == 5
    rebuilt = ft.restore("peers", tmp_path / "b")
    with ResultStore(first, readonly=True) as a, ResultStore(rebuilt, readonly=True) as b:
        assert a.keys() == b.keys() and a.keys(["ok"]) == b.keys(["ok"]) and len(a.keys(["ok"])) == 4
        fa, fb = a.to_frame(history=False), b.to_frame(history=False)
    cols = ["dataset", "seed", "model", "status", "auc_roc", "error"]
    key = ["dataset", "seed", "model"]
    assert fa[cols].sort_values(key).reset_index(drop=True).equals(fb[cols].sort_values(key).reset_index(drop=True))
    assert ft.restore("peers", tmp_path / "b") == rebuilt  # an existing results file is used as it is


def test_tables_rank_the_models_and_count_swifthydra_against_each(ft, tmp_path):
    sh, cb = tmp_path / "sh.sqlite", tmp_path / "cb.sqlite"
    with ResultStore(sh) as s, ResultStore(cb) as c:
        for i in range(6):
            for seed in (1, 2):
                s.add(_row(f"d{i}", "swifthydra", 0.9, seed=seed, generator="none"))
                c.add(_row(f"d{i}", "catboost", 0.8 if i < 5 else 0.95, seed=seed))
        per_type = {"per_type": {"local": {"auc_roc": 0.99, "auc_pr": 0.9}}}
        s.add(_row("d0", "swifthydra", 0.7, scenario="unseen-type:local", generator="none", extra=per_type))
        c.add(_row("d0", "catboost", 0.6, scenario="unseen-type:local", extra=per_type))
    ft.export("none", sh)
    ft.export("peers", cb)
    rl = tmp_path / "rl.sqlite"
    with ResultStore(rl) as r:
        for i in range(6):
            for seed in (1, 2):
                r.add(_row(f"d{i}", "swifthydra", 0.85, seed=seed, generator="rl"))
    ft.export("rl", rl)
    out = ft.tables(markdown=False)
    assert 'generator="rl"  0.8500' in out  # the rl part's cells, labelled as such beside the defaults
    standard = out.split("standard, labelled ratio 0.05: 6 datasets")[1].splitlines()
    assert standard[2].split()[:4] == ["SwiftHydra()", "0.9000", "0.4500", "1.17"]
    assert standard[3].split()[:2] == ['generator="rl"', "0.8500"]
    assert standard[4].split()[:5] == ["CatBoost", "0.8250", "0.4125", "2.67", "5/1"]
    assert "never-labelled types, labelled ratio 0.05: 1 datasets (1 dataset x type cells" in out
    assert "the labelled type, labelled ratio 0.05: 1 datasets (1 dataset x type cells" in out
    labelled = out.split("the labelled type")[1].splitlines()
    assert labelled[2].split()[1] == "0.9900"
    assert standard[2].split()[-1] == "1.50"  # median fit seconds


def test_unseen_types_are_averaged_per_dataset_before_the_test(ft, tmp_path):
    sh, cb = tmp_path / "sh.sqlite", tmp_path / "cb.sqlite"
    with ResultStore(sh) as s, ResultStore(cb) as c:
        for i in range(3):
            for kind, (a, b) in {"local": (0.9, 0.5), "global": (0.7, 0.8)}.items():
                s.add(_row(f"d{i}", "swifthydra", a, scenario=f"unseen-type:{kind}", generator="none"))
                c.add(_row(f"d{i}", "catboost", b, scenario=f"unseen-type:{kind}"))
    ft.export("none", sh)
    ft.export("peers", cb)
    table = ft.summarise(ft._groups(ft._cells())[("never-labelled types", "0.05")])
    assert table["datasets"] == ["d0", "d1", "d2"] and table["cells"] == 6
    sh_row, cb_row = table["rows"]
    assert (round(sh_row["roc"], 4), round(cb_row["roc"], 4)) == (0.8, 0.65)
    assert (cb_row["better"], cb_row["worse"]) == (3, 0)  # one comparison per dataset, not per type


def test_write_replaces_only_the_generated_block(ft, tmp_path):
    with ResultStore(tmp_path / "sh.sqlite") as s, ResultStore(tmp_path / "cb.sqlite") as c:
        for i in range(3):
            s.add(_row(f"d{i}", "swifthydra", 0.9, generator="none"))
            c.add(_row(f"d{i}", "catboost", 0.8))
    ft.export("none", tmp_path / "sh.sqlite")
    ft.export("peers", tmp_path / "cb.sqlite")
    page = tmp_path / "README.md"
    page.write_text(f"# title\n\nbefore\n{ft.BEGIN}\nstale table\n{ft.END}\nafter\n")
    assert ft.write([page], ft.FILES) == [page]
    text = page.read_text()
    assert "stale table" not in text and text.startswith("# title\n\nbefore\n") and text.endswith("after\n")
    assert "| labelled ratio 0.05 (3 datasets) | **0.900** / " in text and "| SwiftHydra() | CatBoost |" in text
    assert "| median fit s, labelled ratio 0.05 |" in text
    docs = tmp_path / "benchmarks.md"  # docs/benchmarks.md: the full tables
    docs.write_text(f"{ft.BEGIN}\n{ft.END}\n")
    assert ft.write([docs], ft.FILES) == [docs]
    assert "#### standard, labelled ratio 0.05: 3 datasets" in docs.read_text()
    assert "| SwiftHydra() | **0.9000** |" in docs.read_text()
    assert ft.write([page], ft.FILES) == []  # current: nothing to write
    (tmp_path / "other.md").write_text("no block")
    with pytest.raises(SystemExit, match="no generated block"):
        ft.write([tmp_path / "other.md"], ft.FILES)


def test_the_committed_pages_show_the_committed_tables():
    """README.md and docs/benchmarks.md carry the tables of the committed CSVs, generated, not
    hand-copied: after new cells, ``python benchmarks/full_tables.py write``."""
    spec = importlib.util.spec_from_file_location("full_tables_committed", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    root = SCRIPT.parents[1]
    for page in (root / "README.md", root / "docs" / "benchmarks.md"):
        block = page.read_text().split(module.BEGIN, 1)[1].split(module.END, 1)[0]
        expected = module.page_tables(page.name)
        assert block.strip() == expected.strip(), f"{page.name} is stale: run python benchmarks/full_tables.py write"

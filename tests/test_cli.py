"""The command line: datasets commands, demo, one-line errors."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from swifthydra.cli import app

runner = CliRunner()


def test_datasets_list_shows_47_classical():
    result = runner.invoke(app, ["datasets", "list", "--group", "classical", "--format", "csv"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[0].startswith("name,alias,group")
    assert len(lines) == 1 + 47
    result = runner.invoke(app, ["datasets", "list"])
    assert result.exit_code == 0
    assert "6_cardio" in result.output and "CIFAR10_0" in result.output


def test_datasets_list_marks_local(shared_dir):
    result = runner.invoke(app, ["datasets", "list", "--group", "classical", "--format", "csv", "--data-dir", str(shared_dir)])
    assert result.exit_code == 0
    local = [line for line in result.output.splitlines()[1:] if line.endswith(",True")]
    assert len(local) == 31


def test_datasets_info(shared_dir):
    result = runner.invoke(app, ["datasets", "info", "wine", "--data-dir", str(shared_dir)])
    assert result.exit_code == 0, result.output
    assert "checksum ok" in result.output


def test_datasets_info_says_when_no_checksum_is_registered(tmp_path):
    import numpy as np

    from swifthydra.datasets import get_dataset_info

    info = get_dataset_info("cardio")
    assert info.sha256 is None  # the registry has no checksum for it
    y = np.zeros(info.rows, dtype=np.int64)
    y[: info.anomalies] = 1
    np.savez(tmp_path / info.file, X=np.random.default_rng(0).normal(size=(info.rows, info.features)), y=y)
    result = runner.invoke(app, ["datasets", "info", "cardio", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "checksum ok" not in result.output
    assert "checksum not checked (none registered); shape and anomaly count match the registry" in result.output


def test_unknown_dataset_is_one_line_error():
    result = subprocess.run(
        [sys.executable, "-m", "swifthydra.cli", "datasets", "info", "cardoi"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: unknown dataset 'cardoi'. Did you mean: cardio, 6_cardio, aloi? Run `swifthydra datasets list` for all names."
    ]
    assert "Traceback" not in result.stderr


def test_download_failure_exits_nonzero(tmp_path, monkeypatch):
    monkeypatch.setenv("SWIFTHYDRA_ADBENCH_URL", "http://127.0.0.1:9/none")
    result = runner.invoke(app, ["datasets", "download", "cardio", "--data-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "error: downloading 6_cardio" in result.output


def test_demo_runs_on_builtin_data():
    pytest.importorskip("pyod")
    result = runner.invoke(app, ["demo", "--dataset", "wine", "--quick", "--seed", "1", "--seed", "2"])
    assert result.exit_code == 0, result.output
    for name in ("AUC-ROC", "SwiftHydra", "IForest", "CatBoost", "mean ± std over seeds 1, 2", "per seed"):
        assert name in result.output
    # each model's row: the mean ± spread of AUC-ROC and AUC-PR, then one AUC-ROC per seed
    row = next(line for line in result.output.splitlines() if "SwiftHydra" in line and "±" in line)
    assert len(re.findall(r"\d\.\d{3} ± \d\.\d{3}", row)) == 2
    per_seed = row.split("│")[4].split()
    assert len(per_seed) == 2 and all(re.fullmatch(r"[01]\.\d{3}", v) for v in per_seed), row


def test_demo_bad_argument():
    result = runner.invoke(app, ["demo", "--dataset", "iris"])
    assert result.exit_code == 2
    assert "unknown built-in dataset 'iris'" in result.output


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.startswith("swifthydra ")


def test_product_commands_do_not_import_the_benchmark(tmp_path):
    """`import swifthydra.cli`, building the app and running fit, score, explain, info, export-onnx
    and evaluate (their help, and a run that fails on a missing model) leave swifthydra.bench
    unimported; `bench` and `report` load it when they are looked up, and still work."""
    code = (
        "import sys\n"
        "import typer\n"
        "from typer.testing import CliRunner\n"
        "import swifthydra.cli\n"
        "from swifthydra.cli import app\n"
        "typer.main.get_command(app)\n"
        "assert 'swifthydra.bench' not in sys.modules\n"
        "runner = CliRunner()\n"
        f"missing = {str(tmp_path / 'no_model')!r}\n"
        "for args in (['fit', '--help'], ['score', '--help'], ['explain', '--help'], ['info', '--help'],\n"
        "             ['export-onnx', '--help'], ['evaluate', '--help'], ['info', missing],\n"
        "             ['score', missing, missing + '.csv', '--out', missing + '.out.csv'],\n"
        "             ['evaluate', missing, missing + '.csv', '--truth-column', 'y'], ['datasets', 'list']):\n"
        "    result = runner.invoke(app, args)\n"
        "    assert result.exit_code == (0 if '--help' in args or args[0] == 'datasets' else 2), (args, result.output)\n"
        "    assert 'swifthydra.bench' not in sys.modules, args\n"
        "result = runner.invoke(app, ['bench', 'models'])\n"
        "assert result.exit_code == 0 and 'swifthydra' in result.output, result.output\n"
        "assert 'swifthydra.bench' in sys.modules\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
    # the console script's way in: `swifthydra info --help` does not import it either
    info = subprocess.run([sys.executable, "-X", "importtime", "-m", "swifthydra.cli", "info", "--help"],
                          capture_output=True, text=True, timeout=300)
    assert info.returncode == 0 and "Usage:" in info.stdout, info.stderr[-2000:]
    imported = {line.split("|")[-1].strip() for line in info.stderr.splitlines() if line.startswith("import time:")}
    assert "swifthydra.cli.info" in imported and not {m for m in imported if m.startswith("swifthydra.bench")}


def test_python_m_swifthydra_cli_help_lists_every_command():
    result = subprocess.run([sys.executable, "-m", "swifthydra.cli", "--help"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert "python -m swifthydra.cli" in result.stdout
    for command in ("demo", "report", "fit", "score", "explain", "info", "export-onnx", "evaluate", "datasets",
                    "bench"):
        assert f" {command} " in result.stdout, command

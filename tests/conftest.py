"""Shared fixtures: an isolated cache per test and the optional ../shared/adbench folder; the
fast test tier (``pytest -m "not slow"``)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_ADBENCH = REPO_ROOT.parent / "shared" / "adbench"

# The fast tier: ``pytest -m "not slow"`` skips what is marked slow here, in one place. Whole
# modules that start Ray/Spark clusters, kill processes or soak millions of rows, the
# headless-browser tests, and single tests that took over 2 s in a CI run
# (``bash scripts/test.sh --durations=120``). CI runs everything.
SLOW_MODULES = {"test_distributed.py", "test_soak.py", "test_bench_kill_resume.py"}
SLOW_TESTS = {
    "test_pinned.py::test_every_epoch_for_one_known_anomaly_scores_the_demo_as_before_the_stopping_rule",
    "test_pinned.py::test_the_demo_scores_as_before",
    "test_pinned.py::test_without_the_prior_the_demo_scores_as_before_it",
    "test_onnx.py::test_routed_graph_runs_each_expert_on_its_rows_only",
    "test_onnx.py::test_features_graph_matches_pytorch",
    "test_onnx.py::test_large_detector_exports",
    "test_onnx.py::test_columns_graph_matches_pytorch_on_any_batch",
    "test_cli_model.py::test_end_to_end_through_the_command_line",
    "test_cli_model.py::test_a_model_saved_from_python",
    "test_cli_model.py::test_start_up_imports_only_what_a_command_needs",
    "test_roundtrip.py::test_any_table_round_trips_through_the_onnx_export",
    "test_roundtrip.py::test_any_table_round_trips_through_the_cli_and_the_python_api",
    "test_bench_generators.py::test_cells_per_generator_on_identical_splits",
    "test_bench_generators.py::test_report_without_generators_is_unchanged",
    "test_bench_generators.py::test_unseen_type_scenario_with_generators",
    "test_bench_generators.py::test_schema1_file_loads_and_resumes",
    "test_bench_generators.py::test_cvae_and_rl_are_rewarded_against_the_detector",
    "test_bench_generators.py::test_generator_params_are_part_of_the_key",
    "test_bench_generators.py::test_swifthydra_generators_through_the_cli",
    "test_bench_runner.py::test_process_pool_survives_crash_and_timeout",
    "test_bench_runner.py::test_timeout_counts_from_the_cell_not_the_worker_start",
    "test_bench_runner.py::test_run_in_process_records_every_cell",
    "test_bench_runner.py::test_resume_skips_finished_cells_and_retry_errors",
    "test_bench_cli.py::test_bench_run_resume_export_report",
    "test_bench_report.py::test_html_report_renders_in_headless_chromium",
    "test_bench_report.py::test_html_report_with_long_names_fits_the_window_in_headless_chromium",
    "test_cli.py::test_demo_runs_on_builtin_data",
    "test_cli.py::test_product_commands_do_not_import_the_benchmark",
    "test_pinned.py::test_shared_datasets_score_as_before",
    "test_pinned.py::test_without_the_prior_shared_datasets_score_as_before_it",
    "test_pinned.py::test_the_old_schedule_still_scores_as_at_cbfdb83",
    "test_detector.py::test_loss_tol_stops_a_fit_with_one_known_anomaly_once_the_loss_levels_off",
    "test_prior.py::test_onnx_export_includes_the_prior",
    "test_fuzz.py::test_fit_and_score_random_data",
}


def pytest_collection_modifyitems(config, items):
    """Mark the slow modules and tests above (parametrised tests by their function's name)."""
    for item in items:
        name = f"{item.path.name}::{item.originalname}"
        if item.path.name in SLOW_MODULES or name in SLOW_TESTS:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """Small networks run fastest on one thread; it also keeps tests steady on a loaded machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Never read or write the user's real cache, and ignore a SWIFTHYDRA_DATA of the caller."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("SWIFTHYDRA_DATA", raising=False)
    monkeypatch.delenv("SWIFTHYDRA_ADBENCH_URL", raising=False)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The shared ADBench folder beside the repository; tests using it skip when it is absent."""
    if not (SHARED_ADBENCH / "classical").is_dir():
        pytest.skip("../shared/adbench is not beside the repository")
    return SHARED_ADBENCH

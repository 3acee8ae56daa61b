"""The benchmark runner: plan the cells, prepare each split once, run, store each result.

A *cell* is ``(dataset, protocol, scenario, labeled_ratio, seed, model, config, generator)``
(see :mod:`swifthydra.bench.augment` for generators). Cells that
share ``(dataset, protocol, scenario, labeled_ratio, seed)`` share one split, computed once by
the driver and handed to every model unchanged; each row records the split's fingerprint
(``split_hash``) so this can be checked afterwards. Unsupervised models get ``fit(X_train)``,
the others ``fit(X_train, y_weak)``. A model that cannot run in a cell (too few labelled
anomalies) is recorded as ``skipped``; a model that fails is recorded as ``error`` with its
message, and the run goes on.

Only the driver writes to the results store, one committed row per finished cell, whatever the
backend, so the resume semantics are the same everywhere: cells already in the store are skipped
(cells recorded as ``error``/``timeout`` are retried with ``retry_errors=True``).
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from swifthydra.bench.models import get_model, resolve_models
from swifthydra.bench.pool import InProcessBackend, ProcessPoolBackend, Task
from swifthydra.bench.store import KEY_COLUMNS, ResultStore, canonical_config, cell_key, now_iso
from swifthydra.exceptions import InvalidInputError, UnknownDatasetError

SCENARIOS = ("standard", "unseen-type")
BACKENDS = ("local", "ray")
DEFAULT_SEEDS = (1, 2, 3)
DEFAULT_RATIOS = (0.05,)


@dataclass(frozen=True)
class Cell:
    """One benchmark cell (the key of a result row)."""

    dataset: str
    protocol: str
    scenario: str
    labeled_ratio: float
    seed: int
    model: str
    config: str = "{}"
    generator: str = "none"

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in KEY_COLUMNS}

    @property
    def key(self) -> tuple:
        return cell_key(self.as_dict())

    @property
    def split_key(self) -> tuple:
        return (self.dataset, self.protocol, self.scenario, self.labeled_ratio, self.seed)


@dataclass
class BenchSummary:
    """What a call of :func:`run_benchmark` did."""

    out: str
    total: int = 0
    already_done: int = 0
    ran: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    run_id: str = ""
    #: datasets that could not be loaded or split in this run -> the error stored for their cells
    failed_datasets: dict[str, str] = field(default_factory=dict)

    def line(self) -> str:
        counts = ", ".join(f"{v} {k}" for k, v in sorted(self.statuses.items())) or "nothing run"
        return (f"{self.total} cells: {self.already_done} already in {self.out}, ran {self.ran} "
                f"({counts}) in {self.seconds:.1f} s")


# ------------------------------------------------------------------------------ parsing
def parse_ratio(value: Any) -> float:
    try:
        ratio = float(value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"labelled ratio must be a number in [0, 1], got {value!r}.") from None
    if not 0.0 <= ratio <= 1.0:
        raise InvalidInputError(f"labelled ratio must be in [0, 1], got {value!r}.")
    return ratio


def parse_seed(value: Any) -> int:
    try:
        seed = int(str(value))
    except (TypeError, ValueError):
        raise InvalidInputError(f"seed must be a non-negative integer, got {value!r}.") from None
    if seed < 0 or seed >= 2**32:
        raise InvalidInputError(f"seed must be in [0, 2**32), got {value!r}.")
    return seed


def _split_tokens(values: Any) -> list[str]:
    if values is None:
        return []
    if isinstance(values, (str, int, float)):
        values = [values]
    out = []
    for v in values:
        out.extend(p.strip() for p in str(v).split(",") if p.strip())
    return out


def parse_params(items: Iterable[str] | Mapping[str, Mapping[str, Any]] | None) -> dict[str, dict]:
    """Parse ``MODEL.KEY=VALUE`` overrides (VALUE read as JSON when it parses, else a string)."""
    import json

    if items is None:
        return {}
    if isinstance(items, Mapping):
        return {get_model(m).name: dict(p) for m, p in items.items()}
    out: dict[str, dict] = {}
    for item in items:
        name, sep, value = str(item).partition("=")
        model, dot, key = name.strip().partition(".")
        if not sep or not dot or not key:
            raise InvalidInputError(
                f"bad --param {item!r}: write MODEL.KEY=VALUE, e.g. iforest.n_estimators=50."
            )
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = value
        out.setdefault(get_model(model).name, {})[key.strip()] = parsed
    return out


@dataclass
class DatasetSource:
    """Where a dataset comes from: the ADBench registry, a built-in set, or an ``.npz`` path."""

    name: str
    kind: str  # "adbench" | "npz" | "builtin"
    path: str | None = None

    def load(self, data_dir: str | None, download: bool):
        from swifthydra import datasets as ds

        if self.kind == "npz":
            return ds.load_npz(self.path)
        if self.kind == "builtin":
            return ds.load_builtin(self.name.split(":", 1)[1])
        return ds.load_adbench(self.name, data_dir=data_dir, download=download)


def resolve_datasets(
    selection: str | Sequence[str], data_dir: str | os.PathLike | None = None
) -> list[DatasetSource]:
    """Expand ``all-local``, ``all``, names, aliases, ``builtin:wine`` and ``.npz`` paths.

    Raises the loader's :class:`~swifthydra.exceptions.UnknownDatasetError` for an unknown name.
    """
    from swifthydra import datasets as ds

    out: dict[str, DatasetSource] = {}
    tokens = _split_tokens(selection)
    if not tokens:
        raise InvalidInputError("no dataset given: pass names, 'all-local' or 'all'.")
    for token in tokens:
        low = token.lower()
        if low == "all-local":
            names = ds.local_datasets(data_dir)
            if not names:
                raise InvalidInputError(
                    f"no ADBench dataset found on disk (data dir {data_dir or 'not given'}); "
                    "pass --data-dir."
                )
            for name in names:
                out.setdefault(name, DatasetSource(name, "adbench"))
        elif low == "all":
            for name in ds.list_datasets()["name"]:
                out.setdefault(name, DatasetSource(name, "adbench"))
        elif low.startswith("builtin:"):
            key = low.split(":", 1)[1]
            if key not in ds.BUILTIN_DATASETS:
                raise InvalidInputError(
                    f"unknown built-in dataset {key!r}: choose {', '.join(ds.BUILTIN_DATASETS)}."
                )
            out.setdefault(low, DatasetSource(low, "builtin"))
        elif low.endswith(".npz") and Path(token).expanduser().is_file():
            path = Path(token).expanduser()
            out.setdefault(path.stem, DatasetSource(path.stem, "npz", str(path.resolve())))
        else:
            try:
                name = ds.get_dataset_info(token).name
            except UnknownDatasetError:
                if low.endswith(".npz"):
                    raise InvalidInputError(
                        f"dataset file {token} does not exist (and it is not an ADBench name)."
                    ) from None
                raise
            out.setdefault(name, DatasetSource(name, "adbench"))
    return list(out.values())


def plan_cells(
    datasets: Sequence[str],
    *,
    labeled_ratios: Sequence[float],
    seeds: Sequence[int],
    models: Sequence[str],
    params: Mapping[str, Mapping[str, Any]] | None = None,
    protocols: Sequence[str] = ("adbench",),
    scenario: str = "standard",
    anomaly_types: Sequence[str] | None = None,
    generators: Sequence[str] | None = None,
    generator_params: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[Cell]:
    """All cells of a benchmark, ordered so that the models of one split run together.

    ``generators=None`` (not given) runs each model without a generator, except a model that
    owns one (``swifthydra``), which runs with its own (``params`` or its default), recorded.
    """
    from swifthydra.bench.synthetic import ANOMALY_TYPES

    params = params or {}
    model_cells = _model_generator_cells(models, params, generators, generator_params or {})
    if scenario == "standard":
        scenarios = ["standard"]
    elif scenario == "unseen-type":
        types = list(anomaly_types or ANOMALY_TYPES)
        bad = [t for t in types if t not in ANOMALY_TYPES]
        if bad:
            raise InvalidInputError(
                f"unknown anomaly type {bad[0]!r}: choose from {', '.join(ANOMALY_TYPES)}."
            )
        scenarios = [f"unseen-type:{t}" for t in types]
    else:
        raise InvalidInputError(f"unknown scenario {scenario!r}: choose {', '.join(SCENARIOS)}.")
    cells = []
    for dataset in datasets:
        for protocol in protocols:
            for scen in scenarios:
                for ratio in labeled_ratios:
                    for seed in seeds:
                        for model, config, gen in model_cells:
                            cells.append(Cell(dataset, protocol, scen, float(ratio), int(seed),
                                              model, config, gen))
    return cells


def _model_generator_cells(models, params, generators, generator_params) -> list[tuple]:
    """``(model, config, generator key)`` of every model x generator, checked up front."""
    from swifthydra.bench import augment
    from swifthydra.bench.models import default_generator

    out = []
    samplers: set[str] = set()
    for model in models:
        try:
            spec = get_model(model)
        except InvalidInputError:  # planning only (the cells will report the unknown model)
            spec = None
        mparams = dict(params.get(model) or {})
        if spec is not None and spec.generator_param is not None:
            own = mparams.pop(spec.generator_param, None)
            if generators is not None and own is not None:
                raise InvalidInputError(
                    f"--param {model}.{spec.generator_param} and --generators both choose "
                    f"{model}'s generator: give only --generators."
                )
            gens = list(generators) if generators is not None else [
                str(own) if own is not None else default_generator(spec)]
            given = [g for g in gens if generator_params.get(g)]
            if given:
                raise InvalidInputError(
                    f"--param gen.{given[0]}.* cannot reach {model}, which runs its own "
                    f"generator: give its settings as --param {model}.KEY=VALUE."
                )
            augment.check_model_generators(spec, gens)
            out.extend((model, canonical_config(mparams), g) for g in gens)
        else:
            gens = list(generators) if generators is not None else ["none"]
            if spec is None or spec.uses_labels:
                samplers.update(gens)
            out.extend((model, canonical_config(mparams),
                        augment.generator_label(g, generator_params.get(g))) for g in gens)
    augment.check_samplers(sorted(samplers), generator_params)
    return out


# ------------------------------------------------------------------------------ splits
def _standard_split(X, y, seed, ratio, protocol) -> dict[str, Any]:
    from swifthydra.datasets import adbench_split

    s = adbench_split(X, y, seed=seed, labeled_ratio=ratio, protocol=protocol)
    return {"X_train": s.X_train, "y_train": s.y_train, "X_test": s.X_test, "y_test": s.y_test}


class _SplitFactory:
    """Compute splits, caching the synthetic pools of the unseen-type scenario."""

    def __init__(self) -> None:
        self._pools: dict[tuple, Any] = {}

    def make(self, X, y, cell: Cell) -> dict[str, Any]:
        from swifthydra.bench.cell import split_hash

        if cell.scenario == "standard":
            data = _standard_split(X, y, cell.seed, cell.labeled_ratio, cell.protocol)
        else:
            from swifthydra.bench.synthetic import synthetic_pool, unseen_type_dataset

            pool_key = (cell.dataset, cell.protocol, cell.seed)
            if pool_key not in self._pools:
                self._pools.clear()  # one dataset at a time
                self._pools[pool_key] = synthetic_pool(X, y, cell.seed, protocol=cell.protocol)
            train_type = cell.scenario.split(":", 1)[1]
            s = unseen_type_dataset(self._pools[pool_key], train_type, cell.seed,
                                    cell.labeled_ratio)
            data = {"X_train": s.X_train, "y_train": s.y_train, "X_test": s.X_test,
                    "y_test": s.y_test, "test_types": s.test_types}
        data["split_hash"] = split_hash(data["X_train"], data["y_train"], data["X_test"],
                                        data["y_test"])
        return data


def _error_row(cell: Cell, exc: BaseException, what: str) -> dict[str, Any]:
    msg = " ".join(str(exc).split()) or type(exc).__name__
    return {**cell.as_dict(), "status": "error", "error": f"{what}: {msg}"[:500],
            "started_at": now_iso(), "finished_at": now_iso()}


def iter_tasks(
    cells: Sequence[Cell],
    sources: Mapping[str, DatasetSource],
    params: Mapping[str, Mapping[str, Any]],
    *,
    data_dir: str | None,
    download: bool,
    threads: int,
) -> Iterator[Task]:
    """Yield one :class:`Task` per cell, loading each dataset and computing each split once."""
    by_dataset: OrderedDict[str, list[Cell]] = OrderedDict()
    for cell in cells:
        by_dataset.setdefault(cell.dataset, []).append(cell)
    factory = _SplitFactory()
    for dataset, dcells in by_dataset.items():
        try:
            X, y = sources[dataset].load(data_dir, download)
        except Exception as exc:
            for cell in dcells:
                yield Task(row=_error_row(cell, exc, "cannot load dataset"))
            continue
        by_split: OrderedDict[tuple, list[Cell]] = OrderedDict()
        for cell in dcells:
            by_split.setdefault(cell.split_key, []).append(cell)
        for scells in by_split.values():
            try:
                data = factory.make(X, y, scells[0])
            except Exception as exc:
                for cell in scells:
                    yield Task(row=_error_row(cell, exc, "cannot split dataset"))
                continue
            for cell in scells:
                yield Task(payload={"cell": cell.as_dict(), "params": _cell_params(cell, params),
                                    "threads": threads, "data": data})
        del X, y


def _cell_params(cell: Cell, params: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The model's parameters in a cell (a model that owns its generator gets it here)."""
    out = dict(params.get(cell.model, {}))
    try:
        spec = get_model(cell.model)
    except InvalidInputError:  # the cell reports it
        return out
    if spec.generator_param is not None:
        out[spec.generator_param] = cell.generator
    return out


_DATA_ERRORS = ("cannot load dataset", "cannot split dataset")


def _check_resources(jobs: Any, threads: Any, timeout: Any) -> None:
    """Refuse negative worker/thread counts and non-positive or non-finite timeouts."""
    import math
    import numbers

    def is_int(v):
        return isinstance(v, numbers.Integral) and not isinstance(v, bool)

    if not is_int(jobs) or jobs < 0:
        raise InvalidInputError(f"jobs must be an integer >= 0 (0 = in this process), got {jobs!r}.")
    if threads is not None and (not is_int(threads) or threads < 0):
        raise InvalidInputError(f"threads must be an integer >= 1 (0 or unset = cores / jobs), got {threads!r}.")
    if timeout is not None:
        try:
            ok = math.isfinite(float(timeout)) and float(timeout) > 0
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise InvalidInputError(f"timeout must be a positive number of seconds, got {timeout!r}.")


def make_backend(backend: str, *, jobs: int, timeout: float | None, address: str | None,
                 threads: int):
    if backend == "local":
        if jobs <= 0:
            if timeout:
                raise InvalidInputError("--timeout needs worker processes: use --jobs 1 or more.")
            return InProcessBackend()
        return ProcessPoolBackend(jobs=jobs, timeout=timeout)
    if backend == "ray":
        from swifthydra.bench.ray_backend import RayBackend

        return RayBackend(address=address, timeout=timeout, threads=threads)
    raise InvalidInputError(f"unknown backend {backend!r}: choose {', '.join(BACKENDS)}.")


def run_benchmark(
    datasets: str | Sequence[str],
    *,
    out: str | os.PathLike = "results.sqlite",
    labeled_ratios: Sequence[float] = DEFAULT_RATIOS,
    seeds: Sequence[int] = DEFAULT_SEEDS,
    models: str | Sequence[str] | None = "peers",
    params: Iterable[str] | Mapping[str, Mapping[str, Any]] | None = None,
    generators: str | Sequence[str] | None = None,
    generator_params: Mapping[str, Mapping[str, Any]] | None = None,
    protocols: str | Sequence[str] = ("adbench",),
    scenario: str = "standard",
    anomaly_types: Sequence[str] | None = None,
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
    backend: str = "local",
    jobs: int = 1,
    threads: int | None = None,
    timeout: float | None = None,
    address: str | None = None,
    retry_errors: bool = False,
    dry_run: bool = False,
    progress: Callable[[dict[str, Any], int, int], None] | None = None,
    command: str | None = None,
) -> BenchSummary:
    """Run (or resume) a benchmark and store one row per cell in ``out``.

    Parameters
    ----------
    datasets : str or list of str
        Names or aliases, ``"all-local"`` (every dataset found in ``data_dir``), ``"all"`` (every
        ADBench dataset, downloaded if needed), ``"builtin:wine"``, or paths to ``.npz`` files
        with arrays ``X`` and ``y``; comma-separated strings are split.
    out : path
        SQLite results file, created if missing; finished cells in it are skipped.
    labeled_ratios, seeds : sequences
        The grid (ADBench: ratios 0..1, seeds 1, 2, 3).
    models : str or list of str
        Registry names, ``"peers"`` or ``"all"``.
    params : list of ``"MODEL.KEY=VALUE"`` or mapping model -> dict, optional
        Overrides of the models' defaults; they are part of the cell's key (``config``).
        Items ``gen.NAME.KEY=VALUE`` set generator ``NAME``'s parameters instead.
    generators : str or list of str, optional
        Generators crossed with every model (``none``, ``mixup``, ``nngmix``, ``cvae``, ``rl``),
        on identical splits; see :mod:`swifthydra.bench.augment`. Not given: no generator
        (models that own one run with theirs).
    generator_params : mapping name -> dict, optional
        Generator parameters (as ``gen.NAME.KEY=VALUE`` items of ``params``).
    protocols : {"adbench", "clean"} or a list of them
    scenario : {"standard", "unseen-type"}
        ``"unseen-type"``: train on ADBench realistic synthetic anomalies of one type, test on
        all types (see :mod:`swifthydra.bench.synthetic`).
    anomaly_types : list of str, optional
        Training anomaly types of the unseen-type scenario (default: all four).
    data_dir : path, optional
        Directory searched first for ADBench files.
    download : bool
        Allow downloading missing ADBench files.
    backend : {"local", "ray"}
    jobs : int
        Local backend: number of worker processes (0 = run in this process, no isolation).
        Ignored by the Ray backend, which keeps twice the cluster's CPUs busy.
    threads : int, optional
        Threads (and, on Ray, CPUs reserved) per cell (BLAS, torch, CatBoost, XGBoost);
        default ``cpu_count // jobs`` locally, 1 on Ray.
    timeout : float, optional
        Seconds per cell before its worker is killed and the cell recorded as ``timeout``.
    address : str, optional
        Ray cluster address (``ray`` backend); ``None`` starts a local Ray instance.
    retry_errors : bool
        Run again the cells stored with ``status`` ``error`` or ``timeout``.
    dry_run : bool
        Only count the cells.
    progress : callable, optional
        Called as ``progress(row, n_done, n_to_run)`` after each stored cell.
    command : str, optional
        The command line, recorded in the store's ``runs`` table.

    Returns
    -------
    BenchSummary
    """
    from swifthydra.bench.cell import versions_for

    t_start = time.perf_counter()
    _check_resources(jobs, threads, timeout)
    data_dir = str(data_dir) if data_dir is not None else None
    ratios = [parse_ratio(r) for r in _split_tokens(labeled_ratios)] or list(DEFAULT_RATIOS)
    seed_list = [parse_seed(s) for s in _split_tokens(seeds)] or list(DEFAULT_SEEDS)
    protocol_list = _split_tokens(protocols) or ["adbench"]
    from swifthydra.datasets import PROTOCOLS

    for p in protocol_list:
        if p not in PROTOCOLS:
            raise InvalidInputError(f"unknown protocol {p!r}: choose {', '.join(PROTOCOLS)}.")
    model_names = resolve_models(models)
    from swifthydra.bench import augment

    gen_items = None
    if params is not None and not isinstance(params, Mapping):
        params = [str(p) for p in params]
        gen_items = [p for p in params if augment.is_generator_param(p)]
        params = [p for p in params if not augment.is_generator_param(p)]
    param_map = parse_params(params)
    for name in param_map:
        if name not in model_names:
            raise InvalidInputError(f"--param given for {name!r}, which is not among the models.")
    gen_list = augment.resolve_generators(generators)
    gen_params = augment.parse_generator_params(gen_items)
    gen_params.update(augment.parse_generator_params(generator_params))
    for name in gen_params:
        if name not in (gen_list or ["none"]):
            raise InvalidInputError(
                f"--param given for generator {name!r}, which is not among the generators."
            )
    if backend not in BACKENDS:
        raise InvalidInputError(f"unknown backend {backend!r}: choose {', '.join(BACKENDS)}.")
    types = _split_tokens(anomaly_types) or None
    sources = {s.name: s for s in resolve_datasets(datasets, data_dir)}
    cells = plan_cells(list(sources), labeled_ratios=ratios, seeds=seed_list, models=model_names,
                       params=param_map, protocols=protocol_list, scenario=scenario,
                       anomaly_types=types, generators=gen_list, generator_params=gen_params)
    # dedupe (e.g. a ratio given twice) keeping order
    cells = list(OrderedDict((c.key, c) for c in cells).values())

    summary = BenchSummary(out=str(out), total=len(cells))
    store = ResultStore(out)
    try:
        done = store.keys(statuses=("ok", "skipped") if retry_errors else None)
        retry = store.keys(statuses=("error", "timeout")) if retry_errors else set()
        todo = [c for c in cells if c.key not in done]
        summary.already_done = len(cells) - len(todo)
        if dry_run or not todo:
            summary.seconds = time.perf_counter() - t_start
            return summary
        cpu = os.cpu_count() or 1
        if threads:
            n_threads = int(threads)
        elif backend == "ray":
            n_threads = 1
        else:
            n_threads = max(1, cpu // max(1, jobs))
        engine = make_backend(backend, jobs=jobs, timeout=timeout, address=address,
                              threads=n_threads)
        run_id = uuid.uuid4().hex[:12]
        summary.run_id = run_id
        store.start_run(run_id, command or " ".join(sys.argv),
                        versions_for(("pyod", "catboost", "xgboost", "torch")))
        tasks = iter_tasks(todo, sources, param_map, data_dir=data_dir, download=download,
                           threads=n_threads)
        for row in engine.run(tasks):
            row.setdefault("backend", engine.name)
            row["run_id"] = run_id
            store.add(row, replace=cell_key(row) in retry)
            summary.ran += 1
            summary.statuses[row["status"]] = summary.statuses.get(row["status"], 0) + 1
            if row["status"] == "error" and str(row.get("error", "")).startswith(_DATA_ERRORS):
                summary.failed_datasets.setdefault(row["dataset"], row["error"])
            if progress is not None:
                progress(row, summary.ran, len(todo))
        store.finish_run(run_id)
    finally:
        store.close()
    summary.seconds = time.perf_counter() - t_start
    return summary


__all__ = [
    "BenchSummary",
    "Cell",
    "DatasetSource",
    "parse_params",
    "plan_cells",
    "resolve_datasets",
    "run_benchmark",
]

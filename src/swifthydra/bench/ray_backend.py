"""Distribute cells over a Ray cluster (``pip install 'swifthydra[ray]'``).

The driver still prepares every split and writes every result: each split's arrays are put in
Ray's object store once and shared by the tasks of its models; each task runs
:func:`~swifthydra.bench.cell.execute_cell` on a worker node and returns the result row, which
the driver commits to the SQLite store as soon as it arrives. The resume semantics are therefore
those of the local backend. A task whose worker dies is recorded with ``status="error"``; with
``timeout`` a task not finished that many seconds after its submission is cancelled
(``force=True``) and recorded with ``status="timeout"`` (at most twice the cluster's CPUs worth of
tasks are submitted at a time, so queueing adds little to that clock).

Worker nodes need swifthydra and the peers' libraries installed; they do not need the datasets.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import Any

from swifthydra.bench.models import MissingDependencyError
from swifthydra.bench.pool import Task, failure_row


def _ray():
    try:
        import ray
    except ImportError:
        raise MissingDependencyError(
            "the ray backend needs Ray: pip install 'swifthydra[ray]'"
        ) from None
    return ray


def _run_remote(task: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    from swifthydra.bench.cell import execute_cell

    return execute_cell({**task, "data": data})


class RayBackend:
    """Run cells as Ray tasks.

    Parameters
    ----------
    address : str, optional
        Cluster address (``"auto"``, ``"ray://host:10001"``, ``"host:6379"``); ``None`` connects
        to a running local instance or starts one. An already initialised Ray is reused.
    timeout : float, optional
        Seconds per cell before it is cancelled.
    threads : int
        CPUs each task reserves (and the threads it may use).
    max_in_flight : int, optional
        Bound on submitted, unfinished tasks (default: twice the cluster's CPUs / ``threads``).
    """

    name = "ray"

    def __init__(self, address: str | None = None, timeout: float | None = None,
                 threads: int = 1, max_in_flight: int | None = None) -> None:
        self.address = address
        self.timeout = timeout
        self.threads = max(1, int(threads))
        self.max_in_flight = max_in_flight

    def run(self, tasks: Iterable[Task]) -> Iterator[dict[str, Any]]:
        ray = _ray()
        if not ray.is_initialized():
            ray.init(address=self.address, ignore_reinit_error=True, log_to_driver=False,
                     include_dashboard=False)
        remote = ray.remote(num_cpus=self.threads, max_retries=0)(_run_remote)
        limit = self.max_in_flight
        if not limit:
            cpus = int(ray.cluster_resources().get("CPU", 1))
            limit = max(1, 2 * cpus // self.threads)
        in_flight: dict[Any, tuple[Task, float | None]] = {}
        data_refs: dict[int, Any] = {}
        it = iter(tasks)
        exhausted = False
        try:
            while True:
                while not exhausted and len(in_flight) < limit:
                    task = next(it, None)
                    if task is None:
                        exhausted = True
                        break
                    if task.row is not None:
                        yield task.row
                        continue
                    data = task.payload["data"]
                    key = id(data)
                    if key not in data_refs:  # one object per split, shared by its models
                        data_refs.clear()
                        data_refs[key] = (ray.put(data), data)
                    payload = {k: v for k, v in task.payload.items() if k != "data"}
                    ref = remote.remote(payload, data_refs[key][0])
                    in_flight[ref] = (task, None)
                if not in_flight:
                    if exhausted:
                        break
                    continue
                ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=0.5)
                now = time.monotonic()
                for ref in ready:
                    task, _ = in_flight.pop(ref)
                    try:
                        yield ray.get(ref)
                    except Exception as exc:  # worker died, task cancelled, ...
                        name = type(exc).__name__
                        yield failure_row(task, "error", f"ray task failed ({name}): "
                                          + " ".join(str(exc).split())[:300])
                if self.timeout:
                    for ref, (task, started) in list(in_flight.items()):
                        if started is None:  # the clock starts at the first wait after submission
                            in_flight[ref] = (task, now)
                        elif now - started > self.timeout:
                            ray.cancel(ref, force=True)
                            in_flight.pop(ref)
                            yield failure_row(task, "timeout",
                                              f"cell exceeded the timeout of {self.timeout:g} s")
        finally:
            for ref in in_flight:
                try:
                    ray.cancel(ref, force=True)
                except Exception:
                    pass

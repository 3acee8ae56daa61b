"""Local execution backends: in process, or a pool of isolated worker processes.

The pool keeps ``jobs`` long-lived worker processes (``spawn`` start method) and hands each one
cell at a time over a pipe. Because the driver knows which cell each worker runs, a worker that
dies (segfault, out-of-memory kill) or overruns the per-cell ``timeout`` is killed, its cell is
recorded with ``status="error"`` or ``"timeout"``, and a fresh worker takes its place: the run
goes on. A cell's ``timeout`` runs from the moment its worker reports that it started the cell, so
the time a fresh worker spends spawning and importing (seconds on a loaded machine) never
counts against a cell. Workers exit on their own when the driver disappears (a parent-death signal on Linux
and a watchdog thread elsewhere), so killing the driver with SIGKILL leaves no orphans.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
import time
from collections.abc import Iterable, Iterator
from multiprocessing.connection import wait
from typing import Any

from swifthydra.bench.store import now_iso


class Task:
    """A unit of work for a backend: a payload for :func:`execute_cell`, or a ready row."""

    __slots__ = ("payload", "row")

    def __init__(self, payload: dict[str, Any] | None = None, row: dict[str, Any] | None = None):
        self.payload = payload
        self.row = row


def failure_row(task: Task, status: str, message: str) -> dict[str, Any]:
    """The result row of a cell whose worker died or timed out."""
    from swifthydra.bench.cell import base_row

    row = base_row(task.payload["cell"], task.payload["data"])
    row.update(status=status, error=message, finished_at=now_iso())
    return row


class InProcessBackend:
    """Run cells one after the other in the calling process (no isolation, no timeout)."""

    name = "inprocess"

    def run(self, tasks: Iterable[Task]) -> Iterator[dict[str, Any]]:
        from swifthydra.bench.cell import execute_cell

        for task in tasks:
            yield task.row if task.row is not None else execute_cell(task.payload)


def _set_parent_death_signal() -> None:
    """Ask Linux to SIGKILL this process when its parent dies (no-op elsewhere)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:  # pragma: no cover - not Linux
        pass


def _watchdog(parent_pid: int) -> None:
    while True:
        time.sleep(1.0)
        if os.getppid() != parent_pid:
            os._exit(1)


def _worker_main(conn, parent_pid: int) -> None:  # pragma: no cover - runs in a child process
    _set_parent_death_signal()
    if os.getppid() != parent_pid:
        os._exit(1)
    threading.Thread(target=_watchdog, args=(parent_pid,), daemon=True).start()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's business
    from swifthydra.bench.cell import execute_cell
    from swifthydra.bench.models import _ensure_builtin

    try:  # imports before the first cell, so that they do not count against its timeout
        import sklearn.decomposition  # noqa: F401 - the 2-D view of generated rows
        import sklearn.metrics  # noqa: F401 - every cell's AUCs

        import swifthydra.bench.augment  # noqa: F401

        _ensure_builtin()
    except Exception:  # noqa: BLE001 - execute_cell reports it as the cell's error
        pass

    while True:
        try:
            payload = conn.recv()
        except (EOFError, OSError):
            return
        if payload is None:
            return
        try:
            conn.send(_STARTED)  # the cell's clock starts now, not while this process spawned
        except (BrokenPipeError, OSError):
            return
        row = execute_cell(payload)
        try:
            conn.send(row)
        except (BrokenPipeError, OSError):
            return


_STARTED = "started"
#: Seconds a worker may take to pick up a cell (spawning, importing) before it counts as hung;
#: the per-cell ``timeout`` runs only from the moment the worker starts the cell.
START_GRACE = 120.0


class _Slot:
    def __init__(self, ctx) -> None:
        parent, child = ctx.Pipe(duplex=True)
        self.conn = parent
        self.proc = ctx.Process(target=_worker_main, args=(child, os.getpid()), daemon=True)
        self.proc.start()
        child.close()
        self.task: Task | None = None
        self.sent = 0.0
        self.started: float | None = None

    def stop(self, force: bool = False) -> None:
        if not force and self.proc.is_alive():
            try:
                self.conn.send(None)
            except (BrokenPipeError, OSError):
                pass
            self.proc.join(timeout=2)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(timeout=5)
        self.conn.close()


def _signal_text(exitcode: int | None) -> str:
    if exitcode is None:
        return "unknown exit"
    if exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit code {exitcode}"


class ProcessPoolBackend:
    """Run cells in ``jobs`` isolated worker processes, with an optional per-cell timeout.

    Parameters
    ----------
    jobs : int
        Number of worker processes.
    timeout : float, optional
        Seconds a cell may take, counted from the moment its worker starts it (not from the
        worker's spawn); beyond it the worker is killed and the cell recorded as
        ``status="timeout"``.
    """

    name = "local"

    def __init__(self, jobs: int = 1, timeout: float | None = None) -> None:
        self.jobs = max(1, int(jobs))
        self.timeout = timeout

    def run(self, tasks: Iterable[Task]) -> Iterator[dict[str, Any]]:
        ctx = mp.get_context("spawn")
        it = iter(tasks)
        exhausted = False
        slots: list[_Slot] = []
        try:
            while True:
                while not exhausted and sum(s.task is not None for s in slots) < self.jobs:
                    task = next(it, None)
                    if task is None:
                        exhausted = True
                        break
                    if task.row is not None:
                        yield task.row
                        continue
                    slot = next((s for s in slots if s.task is None), None)
                    if slot is None:
                        slot = _Slot(ctx)
                        slots.append(slot)
                    try:
                        slot.conn.send(task.payload)
                    except (BrokenPipeError, OSError):  # the idle worker died: replace it
                        slots.remove(slot)
                        slot.stop(force=True)
                        slot = _Slot(ctx)
                        slots.append(slot)
                        slot.conn.send(task.payload)
                    slot.task, slot.sent, slot.started = task, time.monotonic(), None
                busy = [s for s in slots if s.task is not None]
                if not busy:
                    if exhausted:
                        break
                    continue
                wait([s.conn for s in busy] + [s.proc.sentinel for s in busy], timeout=0.5)
                for slot in busy:
                    row = None
                    replace = False
                    try:
                        while row is None and slot.conn.poll():
                            msg = slot.conn.recv()
                            if isinstance(msg, str) and msg == _STARTED:
                                slot.started = time.monotonic()
                            else:
                                row = msg
                    except (EOFError, OSError):
                        slot.proc.join(timeout=5)
                        row = failure_row(slot.task, "error", "worker process died "
                                          f"({_signal_text(slot.proc.exitcode)}) in this cell")
                        replace = True
                    now = time.monotonic()
                    if row is not None:
                        pass  # the cell's row, or the failure of a worker that died mid-message
                    elif not slot.proc.is_alive():
                        row = failure_row(slot.task, "error", "worker process died "
                                          f"({_signal_text(slot.proc.exitcode)}) in this cell")
                        replace = True
                    elif (self.timeout and slot.started is not None
                          and now - slot.started > self.timeout):
                        row = failure_row(slot.task, "timeout",
                                          f"cell exceeded the timeout of {self.timeout:g} s")
                        replace = True
                    elif self.timeout and slot.started is None and now - slot.sent > START_GRACE:
                        row = failure_row(slot.task, "error", "the worker process did not start "
                                          f"the cell within {START_GRACE:g} s")
                        replace = True
                    if row is None:
                        continue
                    slot.task = None
                    if replace:
                        slots.remove(slot)
                        slot.stop(force=True)
                    yield row
        finally:
            for slot in slots:
                slot.stop(force=slot.task is not None)

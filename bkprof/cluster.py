"""The commands' --cluster option: their runs as Ray tasks over every node of a Ray cluster.

The one place bkprof touches Ray, and imported only when --cluster is given: without it nothing here
(and no Ray) is loaded. Each run is one task that asks for what it needs (a GPU, or one CPU), and its
outcome comes back to the driver, which alone writes files and reports, so the runs file, --resume
and the reports are the same as on one machine.

Faults: a task whose node (or worker process) is lost runs again elsewhere, at most MAX_RETRIES times;
a task that raises fails once, as on one machine (retry_exceptions=False: its own error would only
repeat). An interrupted driver disconnects, which ends the tasks it had not heard back from.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import socket
import sys
import threading
from collections import Counter
from typing import Any, Callable, Iterator

from bkprof.report.io import restore_signal_handlers

INSTALL = "pip install 'bkprof[cluster]'"
MAX_RETRIES = 3      # reruns of a task whose node or worker was lost, each
POLL_S = 1.0         # the driver wakes this often to hear signals while it waits on the cluster
CONNECT_S = 10.0     # for the head's port to answer


class ClusterError(ValueError):
    """A problem with --cluster itself (no Ray, no cluster there): one line, exit 2 on the command line."""


def import_ray():
    try:
        import ray
    except ImportError:
        raise ClusterError(f"--cluster needs Ray, which is not installed: {INSTALL}") from None
    return ray


def resolved_address(address: str) -> str:
    """auto: the cluster RAY_ADDRESS names, else Ray's own auto (the one started on this machine)."""
    if address == "auto":
        return os.environ.get("RAY_ADDRESS") or "auto"
    return address


def device_kind(device: str) -> str:
    """cpu, cuda or auto: what --device asks each task for (cuda:i is cuda: a task sees one GPU)."""
    kind = device.split(":")[0]
    if kind not in ("cpu", "cuda", "auto") or (kind == "auto" and device != "auto"):
        raise ClusterError(f"--device {device!r} with --cluster: must be cpu, cuda, cuda:N or auto")
    return kind


@dataclasses.dataclass
class Task:
    """One call to run on some node: `function(*args)`, which must be importable there (bkprof's own)."""

    function: Callable
    args: tuple
    on_done: Callable[[Any], None]
    on_failed: Callable[[str], None]


def on_a_node(function: Callable, *args) -> tuple[str, Any]:
    """The task body: the node it ran on, and what `function` returned."""
    import ray

    return ray.get_runtime_context().get_node_id(), function(*args)


class Session:
    """A driver joined to a cluster: runs tasks and keeps what the report says of the cluster."""

    def __init__(self, ray, address: str, stopper: "_Stopper"):
        self.ray, self.address, self.stopper = ray, address, stopper
        self.remote = ray.remote(on_a_node)
        self.nodes_at_start = self.alive_nodes()
        self.by_node: Counter = Counter()
        self.failed = 0
        self.device, self.resources = "cpu", {"num_cpus": 1}

    def alive_nodes(self) -> set[str]:
        return {node["NodeID"] for node in self.ray.nodes() if node.get("Alive")}

    def placement(self, device: str, per_gpu: int = 1) -> tuple[str, dict]:
        """(the device each task runs on, what it asks Ray for) for --device: cpu (one CPU), cuda or
        cuda:i (one GPU, or 1/per_gpu of one; Ray makes it the task's only visible GPU, cuda), auto
        (cuda when the cluster has GPUs). The driver's own devices do not matter."""
        kind = device_kind(device)
        if kind == "auto":
            kind = "cuda" if self.ray.cluster_resources().get("GPU", 0) > 0 else "cpu"
        self.device, self.resources = kind, {"num_gpus": 1 / per_gpu} if kind == "cuda" else {"num_cpus": 1}
        return self.device, self.resources

    def run(self, tasks: list[Task]) -> None:
        """Submit every task (each asking for what placement() chose), then hand each outcome to its task
        as it arrives. Whatever stops this (an interruption, an error in a handler) leaves the tasks still
        out to the session's end: the driver's disconnection ends them (Ray ends a job's tasks with the
        driver that owns them), where ray.cancel(force=True) raced their replies and aborted the driver
        in Ray's task manager ("Tried to complete task that was not pending", 1 interruption in ~10 here)."""
        ray = self.ray
        options = self.remote.options(max_retries=MAX_RETRIES, retry_exceptions=False, **self.resources)
        out = {options.remote(task.function, *task.args): task for task in tasks}
        while out:
            self.stopper.check()
            ready, _ = ray.wait(list(out), num_returns=1, timeout=POLL_S)
            for ref in ready:  # a run that came back is recorded whole before a signal ends this
                self._deliver(ref, out.pop(ref))
        self.stopper.check()

    def _deliver(self, ref, task: Task) -> None:
        try:
            node, value = self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as error:  # the function raised: its own failure, not retried
            self.failed += 1
            cause = getattr(error, "cause", None) or error
            task.on_failed(f"{type(cause).__name__}: {_first_line(cause)}")
            return
        except self.ray.exceptions.RayError as error:  # lost with its node or worker, every retry spent
            self.failed += 1
            task.on_failed(f"lost on the cluster after {MAX_RETRIES} retries: {type(error).__name__}: "
                           f"{_first_line(error)}")
            return
        self.by_node[node] += 1
        task.on_done(value)

    def describe(self) -> dict:
        """What the report says of the cluster: where the runs ran, the nodes lost, the retry bound."""
        lost = self.nodes_at_start - self.alive_nodes()
        return {"address": self.address, "nodes": len(self.nodes_at_start), "nodes_lost": len(lost),
                "device": self.device, "resources_per_run": self.resources,
                "runs_by_node": dict(self.by_node), "failed_runs": self.failed, "max_retries": MAX_RETRIES,
                "retries": f"a run whose node or worker is lost runs again on another node, at most {MAX_RETRIES} "
                           "times; a run that raises fails once (its error is in the report), never retried"}


SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextlib.contextmanager
def session(address: str) -> Iterator[Session]:
    """Join the cluster at `address` (auto: see resolved_address) for the block; always disconnect.

    Ray's driver prints what its cluster reports (a task retried after its node was lost, say) on
    stdout, where the report goes: inside the block stdout is stderr."""
    ray = import_ray()
    stopper = _Stopper()
    with contextlib.redirect_stdout(sys.stderr), stopper.installed():
        _join(ray, address)
        try:
            yield Session(ray, resolved_address(address), stopper)
        finally:
            ray.shutdown()


class _Signalled(BaseException):
    """A signal inside the session: a BaseException, so that no `except Exception` on the way out
    swallows it."""

    def __init__(self, number: int):
        super().__init__(number)
        self.number = number


class _Stopper:
    """SIGINT, SIGTERM and SIGHUP end the session (the driver disconnected, its tasks ended with it, further
    signals ignored meanwhile), then go to the handlers there were before (the command's: exit 130).

    The handler only notes the signal; the driver's loop acts on it (`check`) between its waits, each
    at most POLL_S long, so a run that came back is recorded whole first. Raising from the handler
    itself surfaced inside Ray's Cython wait as "SystemError: ... returned a result with an exception
    set" (exit 1, not 130; 1 interrupt test in ~10 under load)."""

    def __init__(self):
        self.pending = None

    def __call__(self, number, frame):
        for each in SIGNALS:
            signal.signal(each, signal.SIG_IGN)
        if self.pending is None:
            self.pending = number

    def check(self) -> None:
        """End the session now if a signal came."""
        if self.pending is not None:
            raise _Signalled(self.pending)

    @contextlib.contextmanager
    def installed(self):
        if threading.current_thread() is not threading.main_thread():  # only the main thread takes signals
            yield
            return
        before = {number: signal.getsignal(number) for number in SIGNALS}
        for number in SIGNALS:
            signal.signal(number, self)
        try:
            yield
            self.check()  # a signal during the last wait or the join
        except _Signalled as signalled:
            restore_signal_handlers(before)
            handler = before[signalled.number]
            if callable(handler):
                handler(signalled.number, None)
            elif handler != signal.SIG_IGN:  # the default action: end this process as the signal would have
                os.kill(os.getpid(), signalled.number)
        finally:
            restore_signal_handlers(before)


def _join(ray, address: str) -> None:
    where = resolved_address(address)
    check_address(address)
    handlers = {number: signal.getsignal(number) for number in SIGNALS}
    try:
        ray.init(address=where, logging_level="ERROR", log_to_driver=False)
    except Exception as error:  # Ray raises ConnectionError, RuntimeError or ValueError by what went wrong
        raise ClusterError(f"--cluster {address}: cannot join a Ray cluster at {where}: {_first_line(error)}") from None
    finally:
        restore_signal_handlers(handlers)  # ray.init sets its own SIGTERM handler


def check_address(address: str) -> None:
    """A head's host:port that refuses connections is one line now: Ray itself would retry for minutes."""
    where = resolved_address(address)
    host, _, port = where.rpartition(":")
    if not host or not port.isdigit():
        return  # auto and other forms: Ray's own lookup says what it finds
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_S).close()
    except OSError as error:
        raise ClusterError(f"--cluster {address}: no Ray head answers at {where}: "
                           f"{error.strerror or type(error).__name__}") from None


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__

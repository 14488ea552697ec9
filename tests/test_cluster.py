"""--cluster: `bkprof validate` and `bkprof sweep` as Ray tasks on a local cluster of two nodes.

The cluster is started here, CPU only: a head and a second node, each its own `ray start --block` in
its own session with its own --temp-dir and ports. A node's processes are that session's process
group and the workers its raylet starts (each in a group of its own), so the teardown (or the fault
test) ends exactly that node, never another cluster on the machine (`ray stop` would end every Ray
process of the user). The commands run as subprocesses, so this interpreter never joins the cluster.
Every wait is bounded.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bkprof.cli import app

ROOT = Path(__file__).resolve().parent.parent
TRAIN = "\n".join(["the cat sat on the mat .", "the dog sat on the log .", " = Title = ", ""] * 12)
TEST = "\n".join(["the cat sat on the log .", "a bird sat on the mat ."] * 10)
START_S = 60        # a node's `ray start` on a busy 2-core machine
COMMAND_S = 120     # one bkprof command on the cluster

needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None and not os.environ.get("CI"),
                               reason="Ray is not installed (pip install 'bkprof[cluster]'); with CI=true this runs")


def on_the_cluster(test):
    """A test on the module's cluster: one xdist worker runs them all, in this file's order, each bounded."""
    return needs_ray(pytest.mark.xdist_group("cluster")(pytest.mark.timeout(150)(test)))


_GIVEN: set[int] = set()   # ports handed out by this module: never handed out twice


def _free_ports(count: int) -> list[int]:
    """`count` distinct free ports, none given before. Each socket stays bound until all are chosen: a
    port closed at once can come back from the next bind, and Ray refuses a node whose components
    are given the same port ("... is trying to use a port number ... used by other components")."""
    held = []
    try:
        while len(held) < count:
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            if s.getsockname()[1] in _GIVEN:
                s.close()
                continue
            held.append(s)
        ports = [s.getsockname()[1] for s in held]
    finally:
        for s in held:
            s.close()
    _GIVEN.update(ports)
    return ports


def _free_port() -> int:
    return _free_ports(1)[0]


def _node_env() -> dict:
    # bkprof from this checkout in every worker; a lost node declared dead within seconds, not Ray's ~30 s
    return {**os.environ, "PYTHONPATH": str(ROOT), "RAY_DEDUP_LOGS": "0", "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_health_check_initial_delay_ms": "0", "RAY_health_check_period_ms": "500",
            "RAY_health_check_timeout_ms": "500", "RAY_health_check_failure_threshold": "3"}


def _stop_with_this_process() -> None:
    """SIGTERM to `ray start --block` (which then stops its node) if the test process dies without its
    teardown (Linux prctl PR_SET_PDEATHSIG)."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)


class Node:
    """One `ray start --block` in its own session: its process group is the node."""

    def __init__(self, *args: str):
        self.temp = tempfile.mkdtemp(prefix="bkray")  # short: Ray's socket paths must fit 107 bytes
        self.log = open(Path(self.temp) / "start.log", "w+")
        names = ("--dashboard-agent-listen-port", "--metrics-export-port", "--runtime-env-agent-port",
                 "--node-manager-port", "--object-manager-port")
        ports = [a for name, port in zip(names, _free_ports(len(names))) for a in (name, str(port))]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ray.scripts.scripts", "start", "--block", "--num-cpus", "1",
             "--temp-dir", self.temp, *ports, *args],
            stdout=self.log, stderr=subprocess.STDOUT, env=_node_env(), start_new_session=True,
            preexec_fn=_stop_with_this_process)

    def wait_started(self) -> None:
        deadline = time.monotonic() + START_S
        while "Ray runtime started" not in Path(self.log.name).read_text():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ray start did not start:\n{Path(self.log.name).read_text()[-3000:]}")
            time.sleep(0.2)

    def processes(self) -> list[int]:
        """The node's processes: its process group and the workers its raylet started (Ray gives each
        worker a process group of its own) with their children."""
        parents = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()  # after the title: state, ppid, pgid
                parents[int(stat.parent.name)] = (int(fields[1]), int(fields[2]))
            except (OSError, IndexError, ValueError):
                continue  # a process that ended while it was read
        ours = {pid for pid, (_, group) in parents.items() if group == self.process.pid}
        while grown := {pid for pid, (parent, _) in parents.items() if parent in ours} - ours:
            ours |= grown
        return sorted(ours)

    def task_running(self) -> bool:
        """A process of this node is running a task (Ray titles a worker ray::FUNCTION while it does)."""
        for pid in self.processes():
            try:
                if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::on_a_node"):
                    return True
            except OSError:
                continue
        return False

    def kill(self) -> None:
        """SIGKILL the node's process group (raylet, agents) and its workers: a node lost at once."""
        for pid in self.processes():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait(timeout=10)

    def stop(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGTERM)  # `ray start --block` stops its node on SIGTERM
            self.process.wait(timeout=3)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        self.kill()  # whatever is left
        self.log.close()
        shutil.rmtree(self.temp, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster():
    """(address, [head, second node]): a head and a second node of one CPU each."""
    port = _free_port()
    nodes = []
    try:
        nodes.append(Node("--head", "--port", str(port), "--include-dashboard=false", "--disable-usage-stats"))
        nodes[0].wait_started()
        nodes.append(Node("--address", f"127.0.0.1:{port}", "--disable-usage-stats"))
        nodes[1].wait_started()
        yield f"127.0.0.1:{port}", nodes
    finally:
        for node in reversed(nodes):
            node.stop()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    (folder / "valid.txt").write_text(TRAIN, encoding="utf-8")
    (folder / "test.txt").write_text(TEST, encoding="utf-8")
    return folder


def _validate_args(corpus: Path, runs_file: Path, *extra: str) -> list[str]:
    return ["validate", "--corpus", str(corpus), "--d-model", "8", "--n-seq", "16", "--layers", "1", "--batch", "4",
            "--tokens", "512", "--seeds", "2", "--test-tokens", "all", "--runs-file", str(runs_file),
            "--format", "json", "--variant", "dense", "--variant", "sparse", "--no-controls", "--no-reference",
            *extra]


def _bkprof(args: list[str], ray_address: str | None = None) -> subprocess.Popen:
    # one torch thread here as in each cluster task: the same arithmetic, so the same numbers
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    env.pop("RAY_ADDRESS", None)
    if ray_address is not None:
        env["RAY_ADDRESS"] = ray_address
    return subprocess.Popen([sys.executable, "-m", "bkprof", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT, env=env)


def _finished(process: subprocess.Popen) -> tuple[int, str, str]:
    try:
        out, err = process.communicate(timeout=COMMAND_S)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate(timeout=10)
        raise AssertionError(f"bkprof did not finish in {COMMAND_S} s:\n{err[-3000:]}")
    return process.returncode, out, err


def _runs(path: Path) -> dict[tuple, float]:
    """(variant, seed) -> test perplexity of each line of a runs file; a run twice is a failure here."""
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    keys = [(r["variant"], r["seed"]) for r in lines]
    assert len(keys) == len(set(keys)), f"a run recorded twice: {keys}"
    return {(r["variant"], r["seed"]): r["test_ppl"] for r in lines}


@pytest.fixture(scope="module")
def local_runs(corpus, tmp_path_factory) -> dict[tuple, float]:
    """The tiny grid run on this machine, in one process: what the cluster must reproduce."""
    runs_file = tmp_path_factory.mktemp("local") / "runs.jsonl"
    code, _, err = _finished(_bkprof(_validate_args(corpus, runs_file)))
    assert code == 0, err
    return _runs(runs_file)


@on_the_cluster
def test_sweep_rows_on_the_cluster_are_the_local_rows_in_order(cluster):
    address, _ = cluster
    args = ["sweep", "--n-seq", "32,64", "--variant", "dense", "--variant", "sparse", "--count", "--format", "json"]
    local, remote = _bkprof(args), _bkprof(args + ["--cluster", "auto"], ray_address=address)  # auto: RAY_ADDRESS's
    (code, out, err), (rcode, rout, rerr) = _finished(local), _finished(remote)
    assert code == 0 and rcode == 0, err + rerr
    rows, cluster_rows = json.loads(out)["rows"], json.loads(rout)["rows"]
    assert [(r["variant"], r["n_seq"]) for r in cluster_rows] == [(r["variant"], r["n_seq"]) for r in rows]
    assert cluster_rows == rows
    assert json.loads(rout)["cluster"]["address"] == address


def _grid_until(condition, corpus: Path, runs_file: Path, address: str, *extra: str) -> subprocess.Popen:
    """The tiny grid started on the cluster, once `condition()` holds while it runs."""
    driver = _bkprof(_validate_args(corpus, runs_file, "--cluster", address, *extra))
    deadline = time.monotonic() + COMMAND_S
    while not condition():
        if driver.poll() is not None or time.monotonic() > deadline:
            driver.kill()
            raise AssertionError(f"the grid ended or timed out before the moment came:\n{driver.stderr.read()[-3000:]}")
        time.sleep(0.02)
    return driver


@on_the_cluster
def test_an_interrupted_driver_keeps_its_runs_and_resume_completes_the_grid(cluster, corpus, local_runs, tmp_path):
    address, nodes = cluster
    runs_file = tmp_path / "runs.jsonl"
    longer = ("--tokens", "4096")  # runs of a second or more: the grid is still running when the signal lands
    driver = _grid_until(lambda: runs_file.exists() and runs_file.read_text().count("\n") >= 1,
                         corpus, runs_file, address, *longer)
    driver.send_signal(signal.SIGTERM)
    code, _, err = _finished(driver)
    kept = _runs(runs_file)
    assert code == 130 and f"interrupted: {len(kept)} run" in err, err
    assert 1 <= len(kept) < len(local_runs)
    deadline = time.monotonic() + 20
    while any(node.task_running() for node in nodes):  # the driver gone, its tasks end with it
        assert time.monotonic() < deadline, "a task of the interrupted grid still runs 20 s after its driver ended"
        time.sleep(0.1)

    code, out, err = _finished(_bkprof(_validate_args(corpus, runs_file, "--cluster", address, "--resume", *longer)))
    assert code == 0, err
    assert json.loads(out)["resumed_runs"] == len(kept)
    assert _runs(runs_file).keys() == local_runs.keys()


@on_the_cluster
def test_a_run_that_raises_fails_once_with_its_own_error(cluster, corpus, tmp_path):
    address, _ = cluster
    args = _validate_args(corpus, tmp_path / "runs.jsonl", "--cluster", address, "--lr", "1e30", "--seeds", "1",
                          "--tokens", "256")
    code, out, err = _finished(_bkprof(args))
    doc = json.loads(out)
    # a diverged run is the run's own failure (bkprof.validate.grid.run_one): reported as on one machine,
    # not taken for a lost node and retried
    assert code == 1 and doc["cluster"]["failed_runs"] == 2 and len(doc["failed"]) == 2, err
    assert sorted(line for line in err.splitlines() if line.startswith("bkprof: error: run")) == [
        f"bkprof: error: run {run} seed 0 failed: ValueError: training diverged (test perplexity nan, "
        "final training loss nan)" for run in ("dense", "sparse sparsity=0.6")]  # in the order they failed
    assert not (tmp_path / "runs.jsonl").exists() or not (tmp_path / "runs.jsonl").read_text()


@on_the_cluster
def test_a_grid_survives_a_lost_node_with_each_run_once_and_the_local_numbers(cluster, corpus, local_runs, tmp_path):
    """Last in this file: it kills the second node."""
    address, (_, node) = cluster
    runs_file = tmp_path / "runs.jsonl"
    driver = _grid_until(node.task_running, corpus, runs_file, address)  # the node dies while it runs a run
    node.kill()
    code, out, err = _finished(driver)
    assert code == 0, err
    doc = json.loads(out)
    assert doc["failed"] == [] and doc["cluster"]["nodes"] == 2 and doc["cluster"]["nodes_lost"] == 1
    assert doc["cluster"]["max_retries"] >= 1
    runs = _runs(runs_file)
    assert runs.keys() == local_runs.keys()
    for key, ppl in local_runs.items():
        assert runs[key] == pytest.approx(ppl, rel=1e-7), key


def test_without_ray_the_option_is_one_line_naming_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError, as when it is not installed
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    for args in (["sweep", "--n-seq", "32", "--variant", "dense"],
                 _validate_args(tmp_path, tmp_path / "runs.jsonl", "--tokens", "256")):
        result = CliRunner().invoke(app, args + ["--cluster", "auto"])
        assert result.exit_code == 2, result.output
        assert result.stderr.strip().splitlines() == [
            "bkprof: error: --cluster needs Ray, which is not installed: pip install 'bkprof[cluster]'"]


@needs_ray
def test_an_address_where_no_head_answers_is_one_line():
    port = _free_port()  # closed again: nothing listens there
    result = subprocess.run([sys.executable, "-m", "bkprof", "sweep", "--n-seq", "32", "--variant", "dense",
                             "--cluster", f"127.0.0.1:{port}"], capture_output=True, text=True, cwd=ROOT,
                            timeout=COMMAND_S, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 2 and result.stderr.splitlines() == [
        f"bkprof: error: --cluster 127.0.0.1:{port}: no Ray head answers at 127.0.0.1:{port}: Connection refused"]


@needs_ray
def test_a_device_no_task_can_ask_for_is_one_line(corpus, tmp_path):
    with socket.socket() as head:  # something answers at the address: the --device check is what fails
        head.bind(("127.0.0.1", 0))
        head.listen()
        address = f"127.0.0.1:{head.getsockname()[1]}"
        for args in (["sweep", "--n-seq", "32", "--profile", "--device", "tpu"],
                     _validate_args(corpus, tmp_path / "runs.jsonl", "--device", "tpu")):
            result = CliRunner().invoke(app, args + ["--cluster", address])
            assert result.exit_code == 2 and result.stderr.splitlines() == [
                "bkprof: error: --device 'tpu' with --cluster: must be cpu, cuda, cuda:N or auto"], result.output


@needs_ray
def test_a_step_the_cluster_gpus_would_refuse_is_one_line_before_any_run(corpus, tmp_path):
    """On a cluster the tasks' device decides the step: with cuda (or auto, which may be cuda there)
    --step auto is a graph, which needs --hiding fixed, refused on the driver although this machine
    has no GPU; with --step eager either hiding runs. Nothing is written."""
    with socket.socket() as head:  # something answers at the address: the step check is what fails
        head.bind(("127.0.0.1", 0))
        head.listen()
        address = f"127.0.0.1:{head.getsockname()[1]}"
        runs = tmp_path / "runs.jsonl"
        for device, step, mode in (("cuda", "auto", "graph"), ("auto", "auto", "graph"), ("cuda:1", "compiled", "compiled")):
            args = _validate_args(corpus, runs, "--device", device, "--step", step, "--hiding", "bernoulli")
            result = CliRunner().invoke(app, args + ["--cluster", address])
            assert result.exit_code == 2 and result.stderr.splitlines() == [
                f"bkprof: error: --step {step} ({mode}) needs --hiding fixed (static shapes), got --hiding "
                "bernoulli; --step eager takes either"], result.output
        assert not runs.exists()


def test_without_the_option_ray_is_never_imported(corpus, tmp_path):
    runs = [_validate_args(corpus, tmp_path / "runs.jsonl", "--tokens", "64", "--seeds", "1", "--variant", "dense"),
            ["sweep", "--n-seq", "32", "--variant", "dense", "--format", "json"], ["--help"]]
    code = ("import json, runpy, sys\n"
            "sys.argv = ['bkprof', *json.loads(sys.argv[1])]\n"
            "try:\n    runpy.run_module('bkprof', run_name='__main__')\nexcept SystemExit as e:\n    code = e.code or 0\n"
            "print(json.dumps([code, 'ray' in sys.modules]), file=sys.stderr)")
    for args in runs:
        result = subprocess.run([sys.executable, "-c", code, json.dumps(args)], capture_output=True, text=True,
                                cwd=ROOT, timeout=COMMAND_S, env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert json.loads(result.stderr.strip().splitlines()[-1]) == [0, False], (args, result.stderr[-2000:])


"""The output writer: symlinks, special files, modes, temporary files, sets of files, paths checked first."""

import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bkprof.cli import app
from bkprof.report.io import MANIFEST, OutputError, OutputSet, output_folders, write_atomic

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]


def leftovers(folder: Path) -> list[str]:
    """Hidden temporary entries the writer would leave behind."""
    return sorted(p.name for p in folder.iterdir() if ".bkprof-tmp-" in p.name)


def test_a_symlink_is_written_through_to_its_target(tmp_path):
    target = tmp_path / "real.txt"
    target.write_text("old")
    link = tmp_path / "link.txt"
    link.symlink_to(target.name)
    write_atomic(link, "new")
    assert link.is_symlink() and os.readlink(link) == "real.txt"
    assert target.read_text() == "new"


def test_a_dangling_symlink_creates_its_target(tmp_path):
    link = tmp_path / "link.txt"
    link.symlink_to("sub/made.txt")
    write_atomic(link, "made")
    assert link.is_symlink() and (tmp_path / "sub" / "made.txt").read_text() == "made"


def test_a_fifo_is_written_in_place(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()))
    reader.start()
    write_atomic(fifo, "through the pipe")
    reader.join(timeout=10)
    assert got == ["through the pipe"]
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and leftovers(tmp_path) == []


def test_dev_null_stays_a_device():
    write_atomic("/dev/null", "discarded")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_an_existing_files_mode_is_kept(tmp_path):
    private = tmp_path / "private.json"
    private.write_text("{}")
    private.chmod(0o600)
    write_atomic(private, '{"a": 1}')
    assert stat.S_IMODE(private.stat().st_mode) == 0o600 and private.read_text() == '{"a": 1}'


def test_a_new_file_gets_the_umask_mode(tmp_path):
    old = os.umask(0o027)
    try:
        write_atomic(tmp_path / "new.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "new.txt").stat().st_mode) == 0o640  # 0666 & ~0027


def test_a_folder_is_refused_naming_the_path_given(tmp_path):
    with pytest.raises(OutputError, match=f"cannot write --output {tmp_path}: is a folder"):
        write_atomic(tmp_path, "x", option="--output")


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    report = tmp_path / "report.json"
    report.write_text("old")

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError):
        write_atomic(report, "new")
    assert report.read_text() == "old" and leftovers(tmp_path) == []


def test_a_set_replaces_the_old_set_whole(tmp_path):
    out = tmp_path / "out"
    with output_folders([(out, "--output-dir", (".csv",))], {"run": 1}) as (folder,):
        (folder / "a.csv").write_text("1")
        (folder / "b.csv").write_text("1")
    with output_folders([(out, "--output-dir", (".csv",))], {"run": 2}) as (folder,):
        (folder / "a.csv").write_text("2")
    assert sorted(p.name for p in out.iterdir()) == ["a.csv", MANIFEST]
    written = json.loads((out / MANIFEST).read_text())
    assert written["config"] == {"run": 2} and written["files"] == ["a.csv"]
    assert {"command", "version", "time"} <= set(written)
    assert leftovers(tmp_path) == []


def test_a_set_that_fails_leaves_the_old_one_and_nothing_else(tmp_path):
    out = tmp_path / "out"
    with output_folders([(out, "--output-dir", (".csv",))]) as (folder,):
        (folder / "a.csv").write_text("old")
    with pytest.raises(RuntimeError):
        with output_folders([(out, "--output-dir", (".csv",))]) as (folder,):
            (folder / "a.csv").write_text("half")
            raise RuntimeError("the sweep failed")
    assert (out / "a.csv").read_text() == "old" and leftovers(tmp_path) == []
    with pytest.raises(RuntimeError):
        with output_folders([(tmp_path / "never", "--output-dir", ())]):
            raise RuntimeError("failed before writing")
    assert not (tmp_path / "never").exists()


def test_a_folder_bkprof_did_not_write_is_never_replaced(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match=f"--output-dir {tmp_path}: the folder holds files bkprof did not write"):
        OutputSet(tmp_path, "--output-dir", (".csv",))
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_concurrent_sets_do_not_interleave(tmp_path):
    out = tmp_path / "out"
    barrier = threading.Barrier(6)
    errors = []

    def one_run(run: int) -> None:
        try:
            with output_folders([(out, "--output-dir", (".csv",))], {"run": run}) as (folder,):
                barrier.wait(timeout=10)  # every run writes at the same time
                for name in ("sweep.csv", "scaling.csv"):
                    (folder / name).write_text(f"{run}\n" * 1000)
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=one_run, args=(run,)) for run in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    run = json.loads((out / MANIFEST).read_text())["config"]["run"]
    assert (out / "sweep.csv").read_text() == (out / "scaling.csv").read_text() == f"{run}\n" * 1000
    assert leftovers(tmp_path) == []


def test_sigterm_during_a_sweep_leaves_the_old_set_and_no_temporary(tmp_path):
    out = tmp_path / "out"
    with output_folders([(out, "--output-dir", (".csv", ".json"))], {"run": "old"}) as (folder,):
        (folder / "sweep.csv").write_text("old")
    before = sorted(p.name for p in out.iterdir())
    # a sweep slow enough to be killed mid-way (the op counter at N up to 4096)
    command = [sys.executable, "-m", "bkprof", "sweep", "--n-seq", "256:4096:x2", "--count", "--output-dir", str(out),
               "--plot", str(tmp_path / "plots")]
    process = subprocess.Popen(command, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)},
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not leftovers(tmp_path) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # wait until the sweep has staged its sets, i.e. the work has begun
    assert leftovers(tmp_path), "the sweep ended before it could be interrupted"
    time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGTERM, process.stderr.read()
    assert leftovers(tmp_path) == [] and not (tmp_path / "plots").exists()
    assert sorted(p.name for p in out.iterdir()) == before and (out / "sweep.csv").read_text() == "old"


@pytest.mark.parametrize("command", [["flops"], ["profile", "--device", "cpu"], ["sweep"], ["schedule"], ["check"]])
def test_every_command_refuses_a_folder_as_output_before_any_work(command, tmp_path, monkeypatch):
    import bkprof.flops.report
    import bkprof.profile

    def no_work(*args, **kwargs):
        raise AssertionError("work started before the output path was checked")

    for module, name in [(bkprof.flops.report, "flops_report"), (bkprof.profile, "profile_variants")]:
        monkeypatch.setattr(module, name, no_work)
    result = runner.invoke(app, [*command, "--output", str(tmp_path)])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [f"bkprof: error: cannot write --output {tmp_path}: is a folder, not a file"]


@pytest.mark.parametrize("option, bad", [("--output-dir", "file"), ("--plot", "file/sub"), ("--output", "file/x.json")])
def test_sweep_output_paths_are_checked_before_the_sweep_runs(option, bad, tmp_path, monkeypatch):
    import bkprof.sweep.job

    (tmp_path / "file").write_text("a file")
    monkeypatch.setattr(bkprof.sweep.job, "run_plan", lambda *a, **k: pytest.fail("the sweep ran"))
    result = runner.invoke(app, ["sweep", "--output-dir", str(tmp_path / "data"), option, str(tmp_path / bad)])
    assert result.exit_code == 2 and str(tmp_path / bad) in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_profile_traces_are_one_set_with_a_manifest(tmp_path):
    traces = tmp_path / "traces"
    result = runner.invoke(app, ["profile", "--device", "cpu", "--variant", "dense", "--mode", "forward",
                                 "--d-model", "16", "--n-seq", "16", "--batch", "1", "--warmup", "0", "--runs", "1",
                                 "--trace", str(traces), "--format", "json"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in traces.iterdir()) == [MANIFEST, "dense-forward.json"]
    assert json.loads((traces / MANIFEST).read_text())["config"]["variants"] == ["dense"]
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("args", [
    # what the fuzz test found: the report file where a folder of the same command goes
    ["profile", "--device", "cpu", "--variant", "dense", "--mode", "forward", "--d-model", "8", "--n-seq", "8",
     "--experts", "2", "--batch", "1", "--runs", "1", "--warmup", "0", "--no-components",
     "--trace", "{d}/new.json", "--output", "{d}/new.json"],
    ["sweep", "--n-seq", "256", "--output", "{d}/x.json", "--output-dir", "{d}/x.json"],
    ["sweep", "--n-seq", "256", "--output", "{d}/set/report.json", "--output-dir", "{d}/set"],
])
def test_a_report_file_overlapping_an_output_folder_is_refused_before_the_work(tmp_path, args):
    result = runner.invoke(app, [a.format(d=tmp_path) for a in args])
    assert result.exit_code == 2
    assert "overlap: give the report file and the folder different places" in result.stderr
    assert list(tmp_path.iterdir()) == []

"""A hostile user: shared files, signals at any instant, full disks, corrupt lines of every kind.

Each test states what must hold whatever happens (docs/reliability.md lists the promises): no
record lost or glued, bkprof deletes only files it wrote, a set of outputs whole or absent, a bad
file one line naming it, a signal ends everything with one line. Expected values come from what
the test itself wrote, never from bkprof's code.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from bkprof.check import ThresholdError
from bkprof.check.history import read_history
from bkprof.cli import app
from bkprof.report.io import MANIFEST, OutputError, OutputSet, output_folders
from bkprof.report.records import append_line
from bkprof.validate.grid import RunsFile

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
runner = CliRunner()


def run_record(n: int, variant: str = "dense") -> dict:
    """A runs-file record with every field --resume reads, told apart by `n`."""
    return {"identity": f"{variant}-{n}", "grid": "g", "variant": variant, "seed": n, "sparsity": None,
            "downsample": None, "test_ppl": 100.0 + n, "train_flops_per_token": 1e6, "blocks_train_flops_per_token": 1e5,
            "achieved_sparsity": None, "tokens_per_s": 1.0, "wall_s": 1.0, "peak_mib": None}


def history_record(n: int) -> dict:
    return {"time": f"2026-12-04T00:00:{n % 60:02d}Z", "commit": "c" * 40, "dirty": False, "passed": True,
            "environment": {}, "metrics": {"m": float(n)}}


# ---------------------------------------------------------------- 1. appends never lose or glue

APPENDER = textwrap.dedent("""
    import sys
    from bkprof.validate.grid import RunsFile
    sys.path.insert(0, {tests!r})
    from test_reliability_hostile import run_record
    store = RunsFile.open(sys.argv[1], resume=True)
    for n in range(int(sys.argv[3])):
        store.append(run_record(n, sys.argv[2]))
""")


def test_two_processes_appending_to_one_runs_file_lose_nothing(tmp_path):
    path = tmp_path / "runs.jsonl"
    path.write_bytes(json.dumps(run_record(0, "old")).encode() + b"\n" + b'{"identity": "torn", "gr')  # a crash's tail
    script = APPENDER.format(tests=str(Path(__file__).parent))
    writers = [subprocess.Popen([sys.executable, "-c", script, str(path), variant, "150"], env=ENV,
                                stderr=subprocess.PIPE, text=True) for variant in ("dense", "sparse")]
    errors = [w.communicate(timeout=60)[1] for w in writers]
    assert [w.returncode for w in writers] == [0, 0], errors
    lines = path.read_text().splitlines()
    assert lines[1] == '{"identity": "torn", "gr'  # set aside on its own line, never glued to a record
    kept = RunsFile.open(path, resume=True)
    assert sorted(r["identity"] for r in kept.lines) == sorted(
        ["old-0"] + [f"{v}-{n}" for v in ("dense", "sparse") for n in range(150)])
    assert all(json.loads(line) for line in lines[:1] + lines[2:])  # every other line is one whole record
    assert any("line 2 is not a whole JSON line" in e for e in errors)


def test_resume_reads_without_rewriting_and_a_repeated_record_counts_once(tmp_path):
    path = tmp_path / "runs.jsonl"
    text = "".join(json.dumps(r) + "\n" for r in (run_record(1), run_record(1), run_record(2)))
    path.write_text(text)
    before = os.stat(path)
    store = RunsFile.open(path, resume=True)
    assert [r["identity"] for r in store.lines] == ["dense-1", "dense-2"]
    store.append(run_record(1))  # already there: not appended again
    assert path.read_text() == text and os.stat(path).st_ino == before.st_ino


@settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(1, 200), st.integers(0, 3))
def test_a_write_cut_short_leaves_the_file_as_it_was(tmp_path, written, records):
    """A full disk after `written` bytes: the file is truncated back, so a record is whole or absent."""
    path = tmp_path / f"h-{written}-{records}.jsonl"
    for n in range(records):
        append_line(path, history_record(n), "h")
    before = path.read_bytes() if path.exists() else b""
    real_write = os.write

    def full_disk(fd, data):
        if fd > 2 and len(data) > 0:
            count = real_write(fd, bytes(data[:min(written, len(data) - 1)]))
            if count:
                return count  # a short write: the next call fails
            raise OSError(28, "No space left on device")
        return real_write(fd, data)

    os.write = full_disk
    try:
        with pytest.raises(OSError):
            append_line(path, history_record(99), "h")
    finally:
        os.write = real_write
    assert path.read_bytes() == before


@pytest.fixture
def tiny_disk(tmp_path):
    """A 64 KiB tmpfs (root on Linux only); skipped where it cannot be mounted."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True, timeout=10)
    if done.returncode != 0:
        pytest.skip("no tmpfs can be mounted here (not root)")
    yield mount
    subprocess.run(["umount", str(mount)], capture_output=True, timeout=10)


def test_a_full_disk_never_leaves_half_a_history_line(tiny_disk):
    history = tiny_disk / "h.jsonl"
    big = {**history_record(0), "metrics": {f"metric.{i}": float(i) for i in range(300)}}
    appended = 0
    with pytest.raises(ThresholdError, match=f"--history {history}: cannot append: No space left on device"):
        from bkprof.check.history import append_history

        while True:
            append_history(history, big)
            appended += 1
    assert appended and history.read_bytes().endswith(b"\n")
    assert len(read_history(history)) == appended == len(history.read_text().splitlines())


# ---------------------------------------------------------------- 5. every file read back is checked

JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                           max_leaves=8)
FIELDS = list(run_record(0))
HOSTILE_LINES = st.one_of(
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    st.builds(lambda field, value: json.dumps({**run_record(0), field: value}).encode(), st.sampled_from(FIELDS), JSON_VALUES),
    st.builds(lambda field: json.dumps({k: v for k, v in run_record(0).items() if k != field}).encode(), st.sampled_from(FIELDS)),
    st.integers(33, 5000).map(lambda n: b"[" * n + b"]" * n),
    st.integers(31, 5000).map(lambda n: b'{"seed": ' + b"9" * n + b"}"),
    st.sampled_from([b"NaN", b'{"test_ppl": Infinity}', b"1e400", b"\xff\xfe", b'{"a": 1', b"5", b"null", b"[1,2]"]),
    st.binary(max_size=20).filter(lambda b: b"\n" not in b),
)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(HOSTILE_LINES, st.integers(0, 2))
def test_any_runs_file_line_is_read_or_refused_in_one_line_naming_file_and_line(tmp_path, line, good_before):
    path = tmp_path / "runs.jsonl"
    path.write_bytes(b"".join(json.dumps(run_record(n)).encode() + b"\n" for n in range(good_before)) + line + b"\n")
    try:
        store = RunsFile.open(path, resume=True)
    except ValueError as error:
        message = str(error)
        assert "\n" not in message and str(path) in message, message
        assert f"line {good_before + 1}" in message or "not a bkprof JSON Lines file" in message, message
        return
    assert len(store.lines) >= good_before
    for record in store.lines:  # what is kept is a run: the report can use it without a traceback
        assert isinstance(record["test_ppl"], (int, float)) and record["test_ppl"] > 0


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(HOSTILE_LINES)
def test_any_history_line_is_read_or_refused_in_one_line(tmp_path, line):
    path = tmp_path / "h.jsonl"
    path.write_bytes(json.dumps(history_record(1)).encode() + b"\n" + line + b"\n")
    try:
        records = read_history(path)
    except ThresholdError as error:
        assert "\n" not in str(error) and f"--history {path}: line 2" in str(error), str(error)
        return
    assert all(isinstance(v, (int, float)) for r in records for v in r["metrics"].values())


# ---------------------------------------------------------------- 2. bkprof deletes only files it wrote

NAMES = st.lists(st.sampled_from(["results.csv", "experiment.json", "holiday.png", "my-thesis.tex", "sub/notes.txt",
                                  "sweep.csv"]), min_size=1, max_size=4, unique=True)


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(NAMES, NAMES)
def test_a_folder_is_replaced_only_when_its_manifest_lists_every_file(tmp_path, present, listed):
    folder = tmp_path / f"out-{abs(hash((tuple(present), tuple(listed))))}"
    for name in present:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("the user's")
    (folder / MANIFEST).write_text(json.dumps({"files": listed}))
    mine = set(present) <= set(listed)
    try:
        with output_folders([(folder, "--output-dir", (".csv", ".json", ".png"))]) as (staging,):
            (staging / "new.csv").write_text("new")
    except OutputError as error:
        assert not mine and "holds files bkprof did not write" in str(error) and "\n" not in str(error)
        assert all((folder / name).read_text() == "the user's" for name in present)
        return
    assert mine and sorted(p.name for p in folder.iterdir()) == sorted(["new.csv", MANIFEST])


def test_a_folder_without_a_manifest_is_never_replaced(tmp_path):
    (tmp_path / "results.csv").write_text("mine")
    (tmp_path / "experiment.json").write_text("{}")
    with pytest.raises(OutputError, match="experiment.json, not listed"):
        OutputSet(tmp_path, "--output-dir", (".csv", ".json"))


SWAPPER = textwrap.dedent("""
    import sys
    import bkprof.report.io
    from bkprof.report.io import output_folders
    out, files = sys.argv[1], int(sys.argv[2])
    if sys.argv[3] == "rename":  # a system without renameat2: two renames, signals held between them
        bkprof.report.io._exchange = lambda new, old: False
    generation = 0
    print("ready", flush=True)
    while True:
        generation += 1
        with output_folders([(out, "--output-dir", (".csv",))], {"generation": generation}) as (folder,):
            for i in range(files):
                (folder / f"part-{i}.csv").write_text(str(generation) * 100)
""")


def whole_set(folder: Path) -> bool:
    """The folder holds one set: the files its manifest lists, all of one generation."""
    manifest = json.loads((folder / MANIFEST).read_text())
    names = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)
    generation = str(manifest["config"]["generation"])
    return names == sorted(manifest["files"]) and all((folder / n).read_text() == generation * 100 for n in names)


SWAPS = st.one_of(st.tuples(st.just("exchange"), st.sampled_from([signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGKILL])),
                  # two renames cannot survive SIGKILL between them (the old set is whole, but hidden)
                  st.tuples(st.just("rename"), st.sampled_from([signal.SIGTERM, signal.SIGINT, signal.SIGHUP])))


@settings(max_examples=16, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.floats(0.0, 0.4), SWAPS, st.integers(1, 6))
def test_a_signal_at_any_point_of_a_set_swap_leaves_one_whole_set(tmp_path, delay, swap, files):
    how, number = swap
    out = tmp_path / f"out-{time.monotonic_ns()}"
    process = subprocess.Popen([sys.executable, "-c", SWAPPER, str(out), str(files), how], env=ENV, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    try:
        assert process.stdout.readline() == b"ready\n"
        deadline = time.monotonic() + 20
        while not (out / MANIFEST).exists() and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(delay)
        process.send_signal(number)
        process.wait(timeout=20)
    finally:
        process.kill()
        process.wait(timeout=20)
    assert whole_set(out)  # (the script is a library user: Ctrl-C there is Python's KeyboardInterrupt)


# ---------------------------------------------------------------- 3. check refuses other files, writes nothing on exit 2

@pytest.fixture
def thresholds(tmp_path):
    path = tmp_path / "t.toml"
    path.write_text('[flops]\nd_model = 8\nn_seq = 8\nnum_experts = 2\nvariants = ["dense"]\n'
                    '[metrics]\n"flops.variants.dense.counted_flops" = { min = 1, rel = 0.5 }\n', encoding="utf-8")
    return path


OTHER_DOCUMENTS = ['[project]\nname = "x"\n', '{"name": "package.json"}\n', "[1, 2]\n", '{"flops": 5}\n',
                   '{"flops": {"config": 5}}\n', '{"flops": {"a": ' + "9" * 5000 + "}}\n", "[" * 5000 + "]" * 5000]


@pytest.mark.parametrize("text", OTHER_DOCUMENTS)
@pytest.mark.parametrize("option", [["--baseline"], ["--update-baseline", "--baseline"], ["--history"]])
def test_check_refuses_a_file_of_another_kind_and_leaves_it_alone(tmp_path, thresholds, option, text):
    path = tmp_path / "theirs.toml"
    path.write_text(text)
    result = runner.invoke(app, ["check", "--thresholds", str(thresholds), *option, str(path)])
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1, result.output
    assert str(path) in result.stderr and "Traceback" not in result.output
    assert path.read_text() == text


def test_a_failing_check_appends_nothing_and_writes_no_plot(tmp_path, thresholds):
    history, plots = tmp_path / "h.jsonl", tmp_path / "plots"
    history.write_text(json.dumps(history_record(1)) + "\n")
    before = history.read_bytes()
    result = runner.invoke(app, ["check", "--thresholds", str(thresholds), "--history", str(history),
                                 "--trend", "no.such", "--plot", str(plots), "--baseline", str(tmp_path / "b.json"),
                                 "--update-baseline"])
    assert result.exit_code == 2 and "--trend no.such" in result.stderr
    assert history.read_bytes() == before and not plots.exists() and not (tmp_path / "b.json").exists()


def test_a_trend_over_20000_runs_is_fast(tmp_path, thresholds):
    thresholds.write_text(thresholds.read_text().replace(", rel = 0.5", ""))
    history = tmp_path / "h.jsonl"
    with history.open("w") as handle:
        for n in range(20_000):
            handle.write(json.dumps({**history_record(n), "metrics": {"flops.variants.dense.counted_flops": float(n)}}) + "\n")
    start = time.perf_counter()
    result = runner.invoke(app, ["check", "--thresholds", str(thresholds), "--history", str(history), "--trend",
                                 "flops.variants.dense.counted_flops", "--plot", str(tmp_path / "plots")])
    assert result.exit_code == 0, result.output
    assert time.perf_counter() - start < 6  # 3 s on an idle 2-core machine; CI shares its cores
    assert len(history.read_text().splitlines()) == 20_001


# ---------------------------------------------------------------- 4. signals end every worker, one line

VALIDATE = ["validate", "--variant", "dense", "--tokens", "200000", "--test-tokens", "100", "--d-model", "8",
            "--n-seq", "16", "--layers", "1", "--batch", "2", "--jobs-per-device", "2"]


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
        except (OSError, ValueError, IndexError):
            pass
    return found


def cmdline(pid: int) -> bytes:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes()
    except OSError:
        return b""


def alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process tree from /proc")
@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGKILL])
def test_a_signal_ends_validate_and_its_workers_with_one_line(tmp_path, number):
    runs = tmp_path / "runs.jsonl"
    process = subprocess.Popen([sys.executable, "-m", "bkprof", *VALIDATE, "--runs-file", str(runs)], cwd=tmp_path, env=ENV,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        workers = []
        while len(workers) < 2 and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.2)
            workers = [c for c in children(process.pid) if b"spawn_main" in cmdline(c)]
        assert len(workers) >= 2, "the workers did not start"
        time.sleep(1)
        if number == signal.SIGINT:
            os.killpg(process.pid, number)  # Ctrl-C reaches the whole process group
        else:
            process.send_signal(number)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    assert "Traceback" not in stderr
    if number != signal.SIGKILL:  # SIGKILL: no last word; the workers still end (they die with their parent)
        assert process.returncode == 130, stderr
        assert stderr.strip().splitlines() == [f"bkprof: interrupted: 0 runs finished and kept in {runs}"], stderr
    deadline = time.monotonic() + 10
    while any(alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(w) for w in workers)


# ---------------------------------------------------------------- 6, 7. sizes and paths checked before any work

V = ["validate", "--variant", "dense", "--tokens", "512", "--test-tokens", "100", "--d-model", "8", "--n-seq", "16",
     "--layers", "1", "--batch", "2"]


@pytest.mark.parametrize("args, says", [
    ([*V, "--jobs-per-device", str(2**40)], "--jobs-per-device must be at most"),
    ([*V, "--seeds", str(2**40)], "--seeds must be at most"),
    ([*V, "--layers", str(2**40)], "--layers must be at most"),
    ([*V, "--runs-file", ""], "--runs-file '': an empty path"),
    ([*V, "--output", "new/"], "--output new/: names a folder"),
    ([*V, "--runs-file", "{file}/runs.jsonl"], "--runs-file {file}/runs.jsonl"),
    ([*V, "--output", "{file}/report.json"], "--output {file}/report.json"),
    (["sweep", "--batch", "-1"], "batch"),
    (["check", "--history", "{file}/h.jsonl"], "--history {file}/h.jsonl"),
])
def test_sizes_and_paths_are_refused_before_any_work(tmp_path, monkeypatch, args, says):
    import bkprof.validate.runner

    monkeypatch.setattr(bkprof.validate.runner, "run_grid", lambda *a, **k: pytest.fail("the work started"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "file").write_text("in the way")
    args = [a.format(file=tmp_path / "file") for a in args]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert len(result.stderr.strip().splitlines()) == 1 and says.format(file=tmp_path / "file") in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


@pytest.mark.parametrize("args, says", [
    (["schedule", "--delta", "0", "--steps", "4"], "--delta must be positive, got 0.0"),
    (["flops", "--model", "torch.nn:Identity", "--input-shape", "9" * 5000], "--input-shape '9999"),
    (["check", "--thresholds", "{big}"], "thresholds file {big} is not valid TOML"),
    ([*V, "--corpus", "{corpus}"], "--corpus: {corpus}/test.txt is not UTF-8 text"),
])
def test_bad_values_and_files_are_one_line_before_the_work(tmp_path, args, says):
    big, corpus = tmp_path / "big.toml", tmp_path / "corpus"
    big.write_text('[metrics]\n"flops.variants.dense.counted_flops" = { min = ' + "9" * 5000 + " }\n")
    corpus.mkdir()
    (corpus / "valid.txt").write_text("word " * 200)
    (corpus / "test.txt").write_bytes(b"\xff\xfe")
    args = [a.format(big=big, corpus=corpus) for a in args]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().splitlines() == [f"bkprof: error: {result.stderr.split('error: ', 1)[1].strip()}"]
    assert says.format(big=big, corpus=corpus) in result.stderr


def test_validate_exits_1_with_one_line_per_failed_run(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "valid.txt").write_text(" ".join(f"w{i % 7}" for i in range(150)))  # 151 words with the line end
    (corpus / "test.txt").write_text("w1 w2 w3")
    result = runner.invoke(app, [*V, "--n-seq", "256", "--seeds", "2", "--corpus", str(corpus), "--no-reference",
                                 "--runs-file", str(tmp_path / "runs.jsonl"), "--format", "json"])
    assert result.exit_code == 1, result.output
    assert result.stderr.strip().splitlines() == [
        f"bkprof: error: run dense seed {seed} failed: ValueError: the training text has 151 words, fewer than "
        "--n-seq 256 + 2" for seed in (0, 1)]
    assert json.loads(result.stdout)["runs"] == []


def test_a_runs_identity_holds_the_test_tokens_it_was_scored_on():
    from types import SimpleNamespace

    from bkprof.validate.grid import identity
    from bkprof.validate.train import Recipe, RunSpec

    spec, recipe = RunSpec("dense", None, None, 0), Recipe()
    whole = SimpleNamespace(fingerprint="abc", test=[0] * 300, test_whole=None)
    first_100, first_50 = (SimpleNamespace(fingerprint="abc", test=[0] * n, test_whole=300) for n in (100, 50))
    keys = [identity(spec, recipe, c) for c in (whole, first_100, first_50)]
    assert len(set(keys)) == 3
    assert identity(spec, recipe, SimpleNamespace(fingerprint="abc", test=[1] * 100, test_whole=300)) == keys[1]


@settings(max_examples=40)
@given(st.text(min_size=1, max_size=12))
def test_junit_xml_is_valid_for_any_metric_name(name):
    from xml.etree import ElementTree

    from bkprof.check import junit_xml
    from bkprof.check.compare import Outcome

    document = junit_xml([Outcome(name, "max 1", 2.0, None, "fail", f"{name} > 1")])
    ElementTree.fromstring(document.split("\n", 1)[1].encode("utf-8"))  # raises on invalid XML


def test_no_json_report_holds_nan_or_infinity():
    result = runner.invoke(app, ["profile", "--device", "cpu", "--variant", "dense", "--mode", "forward", "--d-model",
                                 "8", "--n-seq", "8", "--batch", "1", "--runs", "1", "--warmup", "0",
                                 "--peak-tflops", "1e308", "--format", "json"])
    assert result.exit_code in (0, 1), result.output

    def refuse(text):
        raise AssertionError(f"{text} in a JSON report")

    document = json.loads(result.stdout, parse_constant=refuse)
    assert document["roof"]["flops_per_s"] is None and "roof.flops_per_s" in document["not_computed"]


def test_an_ascii_terminal_gets_the_report():
    done = subprocess.run([sys.executable, "-m", "bkprof", "flops", "--d-model", "8", "--n-seq", "8"],
                          env={**ENV, "PYTHONIOENCODING": "ascii"}, capture_output=True, timeout=120)
    assert done.returncode == 0 and b"Traceback" not in done.stderr, done.stderr[-300:]
    assert done.stdout.isascii() and b"dense" in done.stdout


STEPPER = textwrap.dedent("""
    import os, signal, sys
    import bkprof.report.io as io
    from bkprof.report.io import output_folders
    out, how, at, number = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])

    def one_set(generation):
        with output_folders([(out, "--output-dir", (".csv",))], {"generation": generation}) as (folder,):
            for i in range(3):
                (folder / f"part-{i}.csv").write_text(str(generation) * 100)

    one_set(1)
    if how == "rename":
        io._exchange = lambda new, old: False
    calls = [0]

    def signalled(real):
        def call(*args):
            calls[0] += 1
            if calls[0] == at:
                os.kill(os.getpid(), number)  # the signal arrives just before this step of the commit
            return real(*args)
        return call

    os.replace, os.rename, io._exchange = (signalled(f) for f in (os.replace, os.rename, io._exchange))
    one_set(2)
    print("steps", calls[0])
""")


@pytest.mark.parametrize("how, number", [("exchange", signal.SIGTERM), ("exchange", signal.SIGKILL),
                                         ("rename", signal.SIGTERM), ("rename", signal.SIGHUP)])
def test_a_signal_before_each_step_of_a_set_swap_leaves_one_whole_set(tmp_path, how, number):
    """Deterministic where the random instant is lucky: the signal lands before each rename in turn."""
    step = 1
    while True:
        out = tmp_path / f"out-{step}"
        done = subprocess.run([sys.executable, "-c", STEPPER, str(out), how, str(step), str(int(number))], env=ENV,
                              capture_output=True, timeout=60)
        assert whole_set(out), (step, done.stderr[-500:])
        if done.returncode == 0:  # every step was tried: the last run had fewer steps than `step`
            assert int(done.stdout.split()[-1]) < step
            break
        step += 1
    assert step >= 3  # the manifest's rename and the swap's renames were each interrupted


def test_a_full_disk_under_an_output_set_names_the_option_and_keeps_the_old_set(tiny_disk):
    out = tiny_disk / "out"
    with output_folders([(out, "--output-dir", (".csv",))], {"generation": 1}) as (folder,):
        (folder / "part-0.csv").write_text("1" * 100)
    with pytest.raises(OutputError, match=f"cannot write --output-dir {out}: No space left on device"):
        with output_folders([(out, "--output-dir", (".csv",))], {"generation": 2}) as (folder,):
            (folder / "part-0.csv").write_text("2" * 100)
            (folder / "big.csv").write_bytes(b"x" * 200_000)  # more than the 64 KiB disk holds
    assert whole_set(out) and json.loads((out / MANIFEST).read_text())["config"]["generation"] == 1
    assert sorted(p.name for p in tiny_disk.iterdir()) == ["out"]


HELD_WITH_A_THREAD = """
import os, signal, threading, time
from bkprof.report.io import signals_held

events = []
signal.signal(signal.SIGTERM, lambda number, frame: events.append("handler"))
idle = threading.Event()
threading.Thread(target=idle.wait, daemon=True).start()  # a thread that does not block the signal
with signals_held():
    os.kill(os.getpid(), signal.SIGTERM)
    end = time.monotonic() + 0.3
    while time.monotonic() < end:  # bytecode runs: a handler allowed to run would run here
        pass
    events.append("block ended")
idle.set()
print(",".join(events))
"""


def test_signals_held_holds_them_while_another_thread_runs():
    """A process-directed signal goes to a thread that does not block it; Python then runs the handler
    in the main thread at once. Held means after the block: "block ended,handler", never the reverse
    (with pthread_sigmask alone this printed "handler,block ended")."""
    done = subprocess.run([sys.executable, "-c", HELD_WITH_A_THREAD], capture_output=True, text=True, timeout=60,
                          env=ENV)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "block ended,handler"

"""bkprof report: one self-contained HTML page from bkprof JSON documents, checked as text and in a real browser.

Expected numbers are read from the JSON documents here and formatted with the conventions the
tables state (thousands separators, "{:,.3f}" ms, "{:+.1%}" changes), not with bkprof's renderer.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bkprof.cli import app
from bkprof.report.html import Document, detect_kind, read_document, render_html
from tests.test_cli_basics import _modules_after

REPO = Path(__file__).resolve().parents[1]
VALIDATE_RUNS = REPO / "reports/validate/H200-2026-12-02"
# the committed H200 grid, reported again by this bkprof (its runs predate the load-balancing loss)
VALIDATE_ARGS = ["--backend", "vectorized", "--d-model", "128", "--n-seq", "256", "--layers", "4", "--batch", "64",
                 "--tokens", "6553600", "--seeds", "3", "--sparsity", "0.4,0.5,0.6,0.7", "--downsample", "2,4",
                 "--test-tokens", "all", "--balance-weight", "0", "--report-only", "--format", "json"]
PROFILE = REPO / "reports/profile/H200-2026-12-02/profile-H200-defaults.json"
SWEEP = REPO / "reports/sweep/cpu-2026-11-24/cpu-scaling/sweep.json"
SMALL = ["--d-model", "16", "--n-seq", "32", "--experts", "2"]
CHROMIUM = "/usr/bin/chromium"
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run"]
TIMEOUT_MS = 10_000

# the documents and the page are made once (session fixtures, one worker) for every test of this file
pytestmark = pytest.mark.xdist_group("html")


def _run(*args: str):
    done = CliRunner().invoke(app, list(args))
    return done


@pytest.fixture(scope="session")
def documents(tmp_path_factory) -> dict[str, Path]:
    """One document of every kind: fresh small flops, model, check and history; committed profile, validate, sweep."""
    folder = tmp_path_factory.mktemp("documents")
    paths = {"flops": folder / "flops.json", "model": folder / "model.json", "check": folder / "check.json",
             "history": folder / "history.jsonl", "profile": PROFILE, "validate": folder / "validate.json", "sweep": SWEEP}
    for name in ("runs.jsonl", "runs.jsonl.cache.json"):  # a copy: the report refreshes a stale cache beside it
        shutil.copy(VALIDATE_RUNS / name, folder / name)
    done = _run("validate", "--runs-file", str(folder / "runs.jsonl"), *VALIDATE_ARGS, "--output", str(paths["validate"]))
    assert done.exit_code == 0, done.output
    assert _run("flops", *SMALL, "--format", "json", "--output", str(paths["flops"])).exit_code == 0
    assert _run("flops", "--model", "bkprof.examples.models:transformer_layer", "--input-shape", "2x16x128",
                "--format", "json", "--output", str(paths["model"])).exit_code == 0
    thresholds = folder / "t.toml"
    thresholds.write_text('[flops]\nd_model = 8\nn_seq = 8\nnum_experts = 2\nvariants = ["dense", "sparse"]\n'
                          '[metrics]\n"flops.variants.dense.counted_flops" = { min = 1 }\n'
                          '"flops.variants.sparse.counted_flops" = { max = 1 }\n', encoding="utf-8")
    for _ in range(2):  # two runs in the history; the sparse threshold fails on purpose
        done = _run("check", "--thresholds", str(thresholds), "--history", str(paths["history"]), "--format", "json",
                    "--output", str(paths["check"]))
        assert done.exit_code == 1, done.output
    return paths


def _load(path: Path):
    text = path.read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines()] if path.suffix == ".jsonl" else json.loads(text)


@pytest.fixture(scope="session")
def page(documents, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("page") / "report.html"
    done = _run("report", *map(str, documents.values()), "--output", str(path))
    assert done.exit_code == 0, done.output
    return path


# ---- reading ------------------------------------------------------------------------------------

def test_each_kind_is_recognised_from_its_content(documents):
    for kind, path in documents.items():
        assert read_document(path).kind == kind
    assert detect_kind({"conventions": [{"op": "mm"}]}) == "conventions"
    assert detect_kind({"a": 1}) is None and detect_kind([1, 2]) is None and detect_kind(None) is None


BAD_INPUTS = {
    "foreign.json": ('{"name": "not bkprof"}', "not a bkprof document (an object with keys name)"),
    "cut.json": ('{"claims": [', "not valid JSON"),
    "empty.json": ("", "empty"),
    "numbers.json": ("[1, 2, 3]", "not a bkprof document (a JSON array)"),
    "latin1.json": (b"\xff\xfe{}", "not UTF-8"),
    "broken.jsonl": ('{"time": "t", "metrics": {}}\n{"time": \n', "broken.jsonl:2: not a JSON line"),
}


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_a_bad_input_is_one_line_naming_the_file_exit_2_and_no_page(name, documents, tmp_path):
    content, says = BAD_INPUTS[name]
    bad = tmp_path / name
    bad.write_bytes(content if isinstance(content, bytes) else content.encode())
    out = tmp_path / "page.html"
    out.write_text("the page from before")
    done = _run("report", str(documents["flops"]), str(bad), "--output", str(out))
    lines = done.output.strip().splitlines()
    assert done.exit_code == 2 and len(lines) == 1, done.output
    assert lines[0].startswith("bkprof: error: ") and name in lines[0] and says in lines[0]
    assert out.read_text() == "the page from before"  # not replaced, not half-written
    assert not [p for p in tmp_path.iterdir() if p.name not in (name, "page.html")]  # no temporary left


def test_missing_input_and_folder_are_one_line(tmp_path):
    for given, says in ((tmp_path / "nothing.json", "does not exist"), (tmp_path, "is a folder")):
        done = _run("report", str(given), "--output", str(tmp_path / "p.html"))
        assert done.exit_code == 2 and says in done.output and len(done.output.strip().splitlines()) == 1


# ---- the page as text ---------------------------------------------------------------------------

def test_the_page_fetches_nothing_and_has_no_script(page):
    html = page.read_text(encoding="utf-8")
    assert "<script" not in html and "<link" not in html and "<img" not in html and "@import" not in html
    # every reference is inside the page: fragment links and SVG's own ids; http(s) only as XML namespaces
    references = re.findall(r'(?:href|src)="([^"]*)"', html) + re.findall(r"url\(([^)]*)\)", html)
    assert references and all(r.startswith("#") for r in references), [r for r in references if not r.startswith("#")]
    outside = {u for u in re.findall(r"https?://[^\s\"'<>]+", html)}
    assert outside <= {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}, outside
    assert "default-src 'none'" in html  # and the browser is told so


def test_document_text_is_escaped(documents):
    doc = json.loads(documents["validate"].read_text())
    doc["summary"]["claims"][0]["claim"] = "<script>alert(1)</script>"
    html = render_html([Document("x.json", "validate", doc)])
    assert "<script>alert" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_a_layout_this_bkprof_does_not_know_still_renders_its_fields():
    # the committed H200 document predates validate's current fields (role, width, comparisons)
    doc = json.loads((VALIDATE_RUNS / "validate.json").read_text())
    doc["summary"]["new_verdicts"] = [{"claim": "equal compute", "low": 0.01, "high": 0.03}]
    html = render_html([Document("new.json", "validate", doc)])
    assert "cannot build the bkprof validate tables" in html and "equal compute" in html and "0.03" in html


def test_html_option_writes_the_page_report_makes_from_the_json(tmp_path):
    page, data = tmp_path / "flops.html", tmp_path / "flops.json"
    done = _run("flops", *SMALL, "--variant", "dense", "--format", "json", "--output", str(data), "--html", str(page))
    assert done.exit_code == 0, done.output
    expected = render_html([Document("bkprof flops", "flops", json.loads(data.read_text()))])
    assert page.read_text(encoding="utf-8") == expected


def test_profile_html_writes_its_run(tmp_path):
    page = tmp_path / "profile.html"
    done = _run("profile", "--device", "cpu", "--variant", "dense", "--mode", "forward", "--batch", "1", "--n-seq", "16",
                "--d-model", "8", "--experts", "2", "--runs", "1", "--warmup", "0", "--format", "json", "--html", str(page))
    assert done.exit_code == 0, done.output
    row = json.loads(done.stdout)["rows"][0]
    html = page.read_text(encoding="utf-8")
    assert 'data-kind="profile"' in html and f"{row['median_ms']:,.3f}" in html and "roofline, forward" in html


def test_report_help_loads_no_template_plotting_or_torch():
    heavy = ["torch", "pandas", "fvcore", "jinja2", "matplotlib"]
    assert _modules_after(["report", "--help"], heavy) == [] and _modules_after(["--help"], heavy) == []


def test_html_option_is_checked_before_the_work(tmp_path):
    done = _run("profile", "--device", "cpu", "--html", str(tmp_path))
    assert done.exit_code == 2 and "--html" in done.output and "folder" in done.output


# ---- in a real browser --------------------------------------------------------------------------

def _browser_or_skip():
    """Playwright and Debian's Chromium; in CI (CI=true) both must be there, so the tests fail rather than skip."""
    missing = []
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the playwright package (pip install -e '.[test]')")
    if not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
        missing.append(f"Chromium at {CHROMIUM} (apt-get install chromium; .ci/run installs it)")
    if missing:
        if os.environ.get("CI"):
            pytest.fail("browser tests need " + " and ".join(missing))
        pytest.skip("browser tests need " + " and ".join(missing))


def _open(page_path: Path, tmp_path: Path, *, offline: bool, scheme: str = "light"):
    """A fresh headless Chromium on `page_path`: (playwright, context, page, console messages, requests)."""
    _browser_or_skip()
    from playwright.sync_api import sync_playwright

    playwright = sync_playwright().start()
    context = playwright.chromium.launch_persistent_context(
        str(tmp_path / "user-data"), executable_path=CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium"),
        args=BROWSER_ARGS, headless=True, offline=offline, color_scheme=scheme, timeout=TIMEOUT_MS,
        viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    messages, requests = [], []
    tab = context.new_page()
    tab.on("console", lambda m: messages.append((m.type, m.text)))
    tab.on("pageerror", lambda e: messages.append(("error", str(e))))
    tab.on("request", lambda r: requests.append(r.url))
    if offline:
        context.route("**/*", lambda route: route.abort() if not route.request.url.startswith("file:") else route.continue_())
    tab.goto(page_path.as_uri(), wait_until="load")
    return playwright, context, tab, messages, requests


def _close(playwright, context):
    context.close()
    playwright.stop()


def _table(section, title_start: str) -> list[dict]:
    """The rows of the section's table whose title starts with `title_start`, as {header: shown text}."""
    return section.evaluate("""(el, start) => {
        const box = [...el.querySelectorAll('div.table')].find(d => d.querySelector('h3').textContent.startsWith(start));
        if (!box) return null;
        const heads = [...box.querySelectorAll('thead th')].map(th => th.textContent);
        return [...box.querySelectorAll('tbody tr')].map(tr =>
            Object.fromEntries([...tr.children].map((td, i) => [heads[i], td.textContent.replace(/\\u00a0/g, ' ')])));
    }""", title_start)


def test_the_page_in_chromium_shows_every_document_and_its_numbers(page, documents, tmp_path):
    playwright, context, tab, messages, _ = _open(page, tmp_path, offline=False)
    try:
        assert [m for m in messages if m[0] in ("error", "warning")] == []
        sections = tab.locator("section.document")
        assert sections.count() == len(documents)
        kinds = [sections.nth(i).get_attribute("data-kind") for i in range(sections.count())]
        assert kinds == list(documents)
        by_kind = {kind: sections.nth(i) for i, kind in enumerate(kinds)}
        for kind, path in documents.items():
            assert str(path) in by_kind[kind].locator("p.source").inner_text()

        flops = _load(documents["flops"])
        section = by_kind["flops"]
        assert section.locator("div.table h3").first.inner_text().startswith("Claims")  # the verdicts first
        claims = _table(section, "Claims")
        assert [r["published"] for r in claims] == [c["published"] for c in flops["claims"]]
        assert [r["holds"] for r in claims] == ["yes" if c["holds"] else "NO" for c in flops["claims"]]
        totals = {r["variant"]: r for r in _table(section, "Totals per variant")}
        for name, v in flops["variants"].items():
            assert totals[name]["op counter"] == f"{v['counted_flops']:,}"
            assert totals[name]["fvcore MACs"] == f"{v['fvcore_macs']:,}"

        model = _load(documents["model"])["model"]
        assert _table(by_kind["model"], "FLOPs of")[0]["forward"] == f"{model['flops']:,}"

        check = _load(documents["check"])
        c = check["counts"]
        assert f"{c['pass']} pass, {c['fail']} fail, {c['skip']} skipped" in by_kind["check"].locator("p.summary").inner_text()
        rows = _table(by_kind["check"], "bkprof check")
        assert [(r["metric"], r["status"]) for r in rows] == [(o["metric"], o["status"].upper()) for o in check["results"]]
        assert [r["current"] for r in rows] == [f"{o['current']:,.12g}" for o in check["results"]]
        failed = by_kind["check"].locator("td.bad")
        assert failed.count() == c["fail"] and failed.first.inner_text() == "FAIL"

        history = _load(documents["history"])
        assert len(_table(by_kind["history"], "Runs")) == len(history)
        trends = {r["metric"]: r for r in _table(by_kind["history"], "Metrics over the runs")}
        for metric, value in history[-1]["metrics"].items():
            assert trends[metric]["latest"] == f"{value:,.12g}"

        profile = _load(documents["profile"])
        results = _table(by_kind["profile"], "bkprof profile")
        assert [(r["variant"], r["mode"], r["median ms"]) for r in results] == \
            [(r["variant"], r["mode"], f"{r['median_ms']:,.3f}") for r in profile["rows"]]
        assert _table(by_kind["profile"], "components: dense/forward") and _table(by_kind["profile"], "memory: dense/forward")

        validate = _load(documents["validate"])
        section = by_kind["validate"]
        assert section.locator("div.table h3").first.inner_text() == "Published quality claims"
        claims = [r for r in _table(section, "Published quality claims") if r["side"] == "PPL"]
        percent = lambda v: "—" if v is None else f"{v:+.1%}"  # noqa: E731
        assert [(r["at"], r["measured"], r["verdict"]) for r in claims] == \
            [(p["at"], percent(p["change"]), p["verdict"]) for c in validate["summary"]["claims"] for p in c["ppl"]]
        comparisons = _table(section, "Every setting against")
        assert [(r["at"], r["ppl change"]) for r in comparisons] == \
            [(c["at"], percent(c["change"])) for c in validate["summary"]["comparisons"]]
        settings = _table(section, "Test perplexity")
        assert [r["test ppl"] for r in settings] == [f"{s['test_ppl_mean']:,.2f}" for s in validate["summary"]["settings"]]

        sweep = _load(documents["sweep"])
        assert len(_table(by_kind["sweep"], "Sweep")) == len(sweep["rows"])
        scaling = _table(by_kind["sweep"], "Scaling with N")
        assert [{k: r[k] for k in r if k.startswith("k_")} for r in scaling] == \
            [{k: "—" if v is None else f"{v:.3f}" for k, v in s.items() if k.startswith("k_")} for s in sweep["scaling"]]

        # figures: flops components, history trend, profile rooflines (one per mode), validate frontiers (two)
        modes = len({r["mode"] for r in profile["rows"]})
        figures = {kind: by_kind[kind].locator("figure svg").count() for kind in documents}
        assert figures == {"flops": 1, "model": 0, "check": 0, "history": 1, "profile": modes, "validate": 2, "sweep": 0}
        assert tab.locator("figure svg").first.bounding_box()["width"] > 300
        tab.screenshot(path=str(tmp_path / "report.png"), full_page=False)
        assert (tmp_path / "report.png").stat().st_size > 10_000
    finally:
        _close(playwright, context)


def test_offline_the_page_requests_nothing_and_follows_the_dark_scheme(page, tmp_path):
    playwright, context, tab, messages, requests = _open(page, tmp_path, offline=True, scheme="dark")
    try:
        assert requests == [page.as_uri()]  # the page itself, and nothing else
        assert [m for m in messages if m[0] in ("error", "warning")] == []
        colours = tab.evaluate("""() => {
            const text = document.querySelector('figure svg text');
            return {body: getComputedStyle(document.body).color, background: getComputedStyle(document.documentElement).backgroundColor,
                    figure: getComputedStyle(text).fill};
        }""")
        # dark background, light text, and the figures' text in the page's own text colour
        assert colours["background"] == "rgb(13, 17, 23)" and colours["body"] == "rgb(230, 237, 243)"
        assert colours["figure"] == colours["body"], colours
    finally:
        _close(playwright, context)


def test_validate_html_writes_its_run(tmp_path):
    page, data = tmp_path / "validate.html", tmp_path / "validate.json"
    done = _run("validate", "--variant", "dense", "--no-controls", "--no-reference", "--tokens", "256",
                "--test-tokens", "200", "--d-model", "8", "--n-seq", "16", "--layers", "1", "--batch", "2",
                "--runs-file", str(tmp_path / "runs.jsonl"), "--format", "json", "--output", str(data),
                "--html", str(page))
    assert done.exit_code == 0, done.output
    doc = json.loads(data.read_text())
    html = page.read_text(encoding="utf-8")
    ppl = doc["runs"][0]["test_ppl"]
    assert 'data-kind="validate"' in html and f"{ppl:,.2f}" in html

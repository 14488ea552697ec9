"""One self-contained HTML page from bkprof JSON documents (`bkprof report`, and `--html` on the commands).

Each document becomes one section. Its tables are the ones the command itself prints (the library's
own table builders, run on the document), each cell formatted by `bkprof.report.render` as in the
terminal and in Markdown; the verdict table (claims, gate) comes first. Figures are matplotlib SVG,
inline, drawn in two placeholder colours that the page maps to its foreground and background, so they
follow `prefers-color-scheme`. The page loads nothing: no script, no font, no image from anywhere,
and its Content-Security-Policy says so to the browser.

A document whose tables cannot be built (a newer or older field layout) still gets its section: the
fields it has, as tables, with a note. Nothing on the page is computed differently from the documents.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from bkprof.report.io import write_atomic

TEMPLATE = "report.html.j2"
# The colours figures are drawn in, replaced by the page's CSS variables (matplotlib checks colours,
# so a `var(--fg)` cannot be given to it directly). Pure black (roofs, markers' edges) follows --fg too.
_FG, _BG = "#010203", "#fefdfc"
_SVG_COLOURS = {_FG: "var(--fg)", "#000000": "var(--fg)", _BG: "var(--bg)"}
# Verdict columns, whose cells are coloured: a claim or a gate row that holds or fails.
_VERDICT_HEADERS = ("holds", "status", "verdict", "ppl side", "FLOPs side", "passed")
_GOOD = re.compile(r"^(yes|holds|PASS|pass)\b")
_BAD = re.compile(r"^(NO|no|fails|FAIL|fail)\b")


class ReportInputError(ValueError):
    """An input that is not a bkprof document; the message is one line naming the file."""


@dataclass
class Document:
    """A parsed input: where it came from, what it is (`KINDS`), and its JSON payload."""

    source: str
    kind: str
    payload: Any


KINDS = {
    "flops": "bkprof flops",
    "model": "bkprof flops --model",
    "conventions": "bkprof flops --conventions",
    "profile": "bkprof profile",
    "peaks": "bkprof profile --peaks",
    "validate": "bkprof validate",
    "sweep": "bkprof sweep",
    "check": "bkprof check",
    "history": "bkprof check --history",
}


# ---- reading ------------------------------------------------------------------------------------

def detect_kind(payload: Any) -> str | None:
    """Which command wrote `payload`, from the fields only that command writes; None for anything else."""
    if isinstance(payload, list):
        return "history" if payload and all(_history_record(r) for r in payload) else None
    if not isinstance(payload, dict):
        return None
    keys = set(payload)
    if {"claims", "variants", "published", "config"} <= keys:
        return "flops"
    if isinstance(payload.get("model"), dict) and "conventions" in keys:
        return "model"
    if keys == {"conventions"} and isinstance(payload["conventions"], list):
        return "conventions"
    if payload.get("command") == "profile --peaks":
        return "peaks"
    if {"rows", "environment", "method"} <= keys:
        return "profile"
    if {"summary", "runs", "baselines", "data"} <= keys:
        return "validate"
    if {"axes", "rows", "scaling", "variants"} <= keys:
        return "sweep"
    if {"passed", "counts", "results", "thresholds"} <= keys:
        return "check"
    if _history_record(payload):
        return "history"
    return None


def _history_record(record: Any) -> bool:
    return isinstance(record, dict) and isinstance(record.get("metrics"), dict) and "time" in record


def read_document(path: str | os.PathLike) -> Document:
    """The document in `path` (JSON, or the JSON Lines of `bkprof check --history`); ReportInputError if not one."""
    name = os.fspath(path)
    text = _read_text(Path(path), name)
    if not text.strip():
        raise ReportInputError(f"{name}: empty, not a bkprof JSON document")
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as error:
        payload = _json_lines(text, name, error)
    kind = detect_kind(payload)
    if kind is None:
        raise ReportInputError(f"{name}: not a bkprof document ({_describe(payload)}); "
                               "bkprof report reads the JSON of "
                               + ", ".join(what.removeprefix("bkprof ") for what in KINDS.values()))
    if kind == "history" and isinstance(payload, dict):
        payload = [payload]  # a history of one run is one JSON line, which is also plain JSON
    return Document(name, kind, payload)


def _read_text(path: Path, name: str) -> str:
    # the check library's reader: one wording for a missing, unreadable or non-UTF-8 input file
    from bkprof.check.errors import ThresholdError, read_text

    try:
        return read_text(path, name)
    except ThresholdError as error:
        raise ReportInputError(str(error)) from None


def _json_lines(text: str, name: str, error: json.JSONDecodeError) -> list:
    """A history file (one JSON object per line); otherwise the JSON error of the whole file, with its place."""
    lines = [line for line in text.splitlines() if line.strip()]
    if error.msg != "Extra data" or len(lines) < 2:
        raise ReportInputError(f"{name}: not valid JSON ({error.msg} at line {error.lineno}, column {error.colno})")
    records = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as bad:
            raise ReportInputError(f"{name}:{number}: not a JSON line ({bad.msg})") from None
    return records


def _describe(payload: Any) -> str:
    if isinstance(payload, dict):
        keys = list(payload)
        return "an object with keys " + ", ".join(map(str, keys[:6])) + (", ..." if len(keys) > 6 else "") if keys \
            else "an empty object"
    return f"a JSON {type(payload).__name__.replace('NoneType', 'null').replace('dict', 'object').replace('list', 'array')}"


def read_documents(paths: Iterable[str | os.PathLike]) -> list[Document]:
    return [read_document(p) for p in paths]


# ---- the page's parts ---------------------------------------------------------------------------

@dataclass
class HtmlTable:
    """A Report table as the page shows it: cells already formatted by bkprof.report.render."""

    title: str
    caption: str
    headers: list[str]
    rows: list[list[str]]
    numeric: list[bool]
    verdict: list[bool]


@dataclass
class Section:
    id: str
    source: str
    kind: str
    what: str
    summary: str
    tables: list[HtmlTable] = field(default_factory=list)
    figures: list[tuple[str, str]] = field(default_factory=list)  # (caption, inline SVG)
    note: str = ""


def html_table(table) -> HtmlTable:
    """A `bkprof.report.Table` with every cell as the terminal and Markdown renderers write it."""
    # the renderer's own cell formatting and number test (same package): one set of number conventions;
    # its no-break spaces ("refine\u00a025%") keep a name and its share on one line here too
    from bkprof.report.render import _is_numeric, _rows

    headers = [str(c) for c in table.frame.columns]
    return HtmlTable(table.title, table.caption, headers, _rows(table), [_is_numeric(table, c) for c in table.frame.columns],
                     [h in _VERDICT_HEADERS for h in headers])


def verdict_class(text: str) -> str:
    """good / bad for a verdict cell ("yes", "holds", "PASS" / "NO", "fails (within 2 SEM)", "FAIL")."""
    if _BAD.match(text):
        return "bad"
    if _GOOD.match(text):
        return "good"
    return ""


# ---- figures ------------------------------------------------------------------------------------

def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


_STYLE = {"text.color": _FG, "axes.labelcolor": _FG, "axes.edgecolor": _FG, "xtick.color": _FG, "ytick.color": _FG,
          "legend.facecolor": _BG, "legend.edgecolor": _FG, "figure.facecolor": "none", "axes.facecolor": "none",
          "savefig.facecolor": "none", "svg.fonttype": "none", "font.family": "sans-serif"}


def figure_svg(draw, salt: str) -> str | None:
    """The inline SVG of the figure `draw()` returns (None: no figure), in the page's colours.

    Text stays text (svg.fonttype none: selectable, searchable, the page's font); `salt` makes the
    element ids of each figure unique on the page and the same from run to run."""
    import io

    plt = _pyplot()
    with plt.rc_context({**_STYLE, "svg.hashsalt": salt}):
        figure = draw()
        if figure is None:
            return None
        buffer = io.StringIO()
        figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": None})
        plt.close(figure)
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg"):]  # no XML prolog or DOCTYPE inside HTML
    svg = re.sub(r"<metadata>.*?</metadata>\s*", "", svg, flags=re.S)  # RDF about the file, not the figure
    for colour, variable in _SVG_COLOURS.items():
        svg = svg.replace(colour, variable)
    return svg


def flops_figure(doc: dict):
    """Counted FLOPs of each variant split by component (the document's `components`), stacked bars."""
    variants = {name: v.get("components") or {} for name, v in doc["variants"].items()}
    if not any(variants.values()):
        return None
    plt = _pyplot()
    components = list(dict.fromkeys(c for parts in variants.values() for c in parts))
    figure, axes = plt.subplots(figsize=(7, 0.5 * len(variants) + 1.4))
    colours = plt.get_cmap("tab20").colors
    names = list(variants)
    left = [0.0] * len(names)
    for i, component in enumerate(components):
        widths = [variants[n].get(component, 0) / 1e6 for n in names]
        axes.barh(names, widths, left=left, label=component, color=colours[i % len(colours)])
        left = [a + b for a, b in zip(left, widths)]
    axes.invert_yaxis()
    axes.set_xlabel("MFLOP (analytic, per component; 2 per multiply-accumulate)")
    axes.legend(fontsize=7, ncols=2 if len(components) > 8 else 1, loc="upper left", bbox_to_anchor=(1.01, 1))
    axes.grid(alpha=0.3, axis="x")
    figure.tight_layout()
    return figure


def trend_figure(records: list[dict], metrics: list[str]):
    """Each metric run by run (x: run, labelled with its short commit), one small plot per metric."""
    from bkprof.check.history import trend

    plt = _pyplot()
    columns = 2 if len(metrics) > 1 else 1
    rows = math.ceil(len(metrics) / columns)
    figure, grid = plt.subplots(rows, columns, figsize=(9, 1.9 * rows + 0.4), squeeze=False)
    for axes, metric in zip(grid.flat, metrics):
        points = trend(records, metric)
        axes.plot(range(len(points)), [p[2] for p in points], marker="o", color="C0")
        axes.set_xticks(range(len(points)))
        axes.set_xticklabels([(c or "?")[:7] for _, c, _ in points], fontsize=6, rotation=30)
        axes.set_title(metric, fontsize=7)
        axes.tick_params(axis="y", labelsize=6)
        axes.yaxis.get_offset_text().set_fontsize(6)  # the "1e7" of FLOP counts, as small as its ticks
        axes.grid(alpha=0.3)
    for axes in list(grid.flat)[len(metrics):]:
        axes.set_visible(False)
    figure.tight_layout()
    return figure


# ---- one section per kind -----------------------------------------------------------------------

def _claims_first(tables: list, is_claims) -> list:
    return [t for t in tables if is_claims(t)] + [t for t in tables if not is_claims(t)]


def _flops(doc: dict, section: Section) -> list:
    from bkprof.flops.tables import flops_tables

    has_parts = all("components" in v and "counted_components" in v for v in doc["variants"].values())
    report = flops_tables(doc, breakdown=has_parts)
    holds = sum(bool(c.get("holds")) for c in doc["claims"])
    section.summary = f"{holds} of {len(doc['claims'])} published claims hold at the full count."
    section.figures.append(("FLOPs per component (analytic; the breakdown table's numbers)", lambda: flops_figure(doc)))
    return _claims_first(report.tables, lambda t: t.title.startswith("Claims"))


def _model(doc: dict, section: Section) -> list:
    from bkprof.flops.model_tables import model_tables

    m = doc["model"]
    section.summary = f"{m.get('factory', 'model')}: {m['flops']:,} FLOPs (bkprof op counter) on {m.get('inputs', '?')}."
    return model_tables(doc).tables


def _profile(doc: dict, section: Section) -> list:
    from bkprof.profile.report import report_from_payload

    env = doc["environment"]
    failed = len(doc.get("failed") or [])
    section.summary = (f"{len(doc['rows'])} rows on {env.get('device_name', env.get('device', '?'))}"
                       + (f"; {failed} failed." if failed else "."))
    if doc.get("components"):
        from bkprof.profile.plots import roofline_figure

        for mode in dict.fromkeys(row["mode"] for row in doc["rows"]):
            section.figures.append((f"roofline, {mode}: every component of every variant",
                                    lambda mode=mode: roofline_figure(doc, mode)))
    return report_from_payload(doc).tables


def _validate(doc: dict, section: Section) -> list:
    from bkprof.validate.report import validate_report

    from collections import Counter

    claims = doc["summary"]["claims"]
    verdicts = Counter(_ppl_verdicts(claims))
    said = ", ".join(f"{n} {verdict}" for verdict, n in verdicts.most_common()) or "none measured"
    section.summary = f"{len(claims)} published quality claims, perplexity verdicts: {said}; {len(doc['runs'])} runs."
    section.figures += _validate_figures(doc)
    return _claims_first(validate_report(doc).tables, lambda t: "claims" in t.title.lower())


def _ppl_verdicts(claims: list[dict]) -> list[str]:
    """Each perplexity verdict of the claims: one per reference (`verdict`), or one per claim (`holds`, older documents)."""
    verdicts = []
    for claim in claims:
        ppl = claim.get("ppl")
        for entry in ppl if isinstance(ppl, list) else [ppl] if isinstance(ppl, dict) else []:
            if entry.get("verdict") is not None:
                verdicts.append(str(entry["verdict"]))
            elif entry.get("holds") is not None:
                verdicts.append("holds" if entry["holds"] else "fails")
    return verdicts


def _validate_figures(doc: dict) -> list:
    """validate's own frontier plots (test perplexity against training FLOPs and wall time), as SVG."""
    from bkprof.validate.plots import PLOTS, _frontier

    rows = [r for r in doc["summary"]["settings"] if r.get("wall_s") is not None]

    def draw(x_key, x_label):
        figure, axes = _pyplot().subplots(figsize=(7, 4.5))
        _frontier(axes, rows, x_key, x_label, doc)
        figure.tight_layout()
        return figure

    return [(f"frontier: test perplexity against {x_label}", lambda k=x_key, l=x_label: draw(k, l))
            for x_key, x_label in PLOTS.values()]


def _sweep(doc: dict, section: Section) -> list:
    from bkprof.sweep.report import sweep_report
    from bkprof.sweep.run import SweepPlan

    plan = SweepPlan(axes=doc["axes"], variants=doc["variants"], fixed=doc.get("fixed") or {})
    errors = sum(bool(r.get("error")) for r in doc["rows"])
    section.summary = f"{len(doc['rows'])} points over {', '.join(doc['axes']) or 'no axis'}; {errors} failed."
    tables = sweep_report(plan, doc["rows"], doc.get("settings") or {}).tables
    if doc.get("scaling"):
        import pandas as pd

        for table in tables:  # the exponents as the document recorded them (sweep_report fits them again)
            if table.title.startswith("Scaling"):
                table.frame = pd.DataFrame(doc["scaling"])
    return tables


def _check(doc: dict, section: Section) -> list:
    from bkprof.check.compare import Outcome
    from bkprof.check.report import check_report

    fields = ("metric", "threshold", "current", "baseline", "status", "reason")
    outcomes = [Outcome(**{k: r[k] for k in fields}) for r in doc["results"]]
    counts = doc["counts"]
    section.summary = (f"{'PASSED' if doc['passed'] else 'FAILED'}: {counts.get('pass', 0)} pass, "
                       f"{counts.get('fail', 0)} fail, {counts.get('skip', 0)} skipped.")
    baseline = Path(doc["baseline"]) if doc.get("baseline") else None
    return check_report(outcomes, doc["thresholds"], baseline, doc.get("profile")).tables


def _history(records: list[dict], section: Section) -> list:
    import pandas as pd

    from bkprof.check.report import FORMATS
    from bkprof.report import Table

    metrics = sorted({m for r in records for m, v in r["metrics"].items() if isinstance(v, (int, float))})
    passed = sum(bool(r.get("passed")) for r in records)
    section.summary = f"{len(records)} runs of the gate, {passed} passed; {len(metrics)} metrics."
    runs = pd.DataFrame([{"time (UTC)": r.get("time"), "commit": (r.get("commit") or "?")[:12],
                          "uncommitted changes": r.get("dirty"), "passed": "PASS" if r.get("passed") else "FAIL"}
                         for r in records])
    trends = []
    for metric in metrics:
        values = [r["metrics"][metric] for r in records if isinstance(r["metrics"].get(metric), (int, float))]
        trends.append({"metric": metric, "runs": len(values), "first": values[0], "latest": values[-1]})
    frame = pd.DataFrame(trends, columns=["metric", "runs", "first", "latest"])
    formats = {"first": FORMATS["current"], "latest": FORMATS["current"]}
    if metrics:
        section.figures.append(("each metric run by run (x: the run's commit)", lambda: trend_figure(records, metrics)))
    return [Table("Runs (oldest first)", runs), Table("Metrics over the runs", frame, formats,
                                                      "Values as each run recorded them, in their reports' units.")]


def _plain_tables(payload: Any, section: Section) -> list:
    """The document's own fields as tables: scalars as field | value, lists of flat objects as rows."""
    import pandas as pd

    from bkprof.report import Table

    tables, scalars = [], []

    def walk(node, where):
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{where}.{key}" if where else str(key))
        elif isinstance(node, list) and node and all(isinstance(r, dict) for r in node):
            flat = [{k: v for k, v in r.items() if not isinstance(v, (dict, list))} for r in node]
            tables.append(Table(where or "rows", pd.DataFrame(flat)))
        elif isinstance(node, list):
            scalars.append((where, ", ".join(map(str, node))))
        else:
            scalars.append((where, node))

    walk(payload, "")
    if scalars:
        frame = pd.DataFrame({"field": [k for k, _ in scalars], "value": [_text(v) for _, v in scalars]})
        tables.insert(0, Table("Fields", frame))
    return tables


def _text(value) -> str:
    from bkprof.report.render import cell

    return cell(value)


_BUILDERS = {"flops": _flops, "model": _model, "profile": _profile, "validate": _validate, "sweep": _sweep,
             "check": _check, "history": _history}


def build_section(document: Document, number: int) -> Section:
    """The section of one document; its own command's tables when they can be built from it, else its fields."""
    section = Section(f"doc-{number}", document.source, document.kind, KINDS[document.kind], "")
    builder = _BUILDERS.get(document.kind, _plain_tables)
    try:
        tables = builder(document.payload, section)
    except Exception as error:  # noqa: BLE001 - any builder failure is shown on the page, by name
        # a field layout this bkprof does not know (an older or newer document): show what is there
        section.figures.clear()
        section.note = (f"This bkprof cannot build the {section.what} tables from this document "
                        f"({type(error).__name__}: {error}); its fields are shown as found.")
        tables = _plain_tables(document.payload, section)
    section.tables = [html_table(t) for t in tables]
    drawn = []
    for i, (caption, draw) in enumerate(section.figures):
        try:
            svg = figure_svg(draw, f"{section.id}-{i}")
        except Exception:  # noqa: BLE001 - a figure the document lacks the fields for; its tables still show
            svg = None
        if svg is not None:
            drawn.append((caption, svg))
    section.figures = drawn
    return section


# ---- the page -----------------------------------------------------------------------------------

def _as_documents(documents: Iterable) -> list[Document]:
    """Documents, or bare payloads (a command's `report.payload`), which are normalised through JSON so the
    page made by `--html` is the page `bkprof report` makes from the command's `--format json`."""
    out = []
    for item in documents:
        if isinstance(item, Document):
            out.append(item)
            continue
        from bkprof.report.render import _json_default

        payload = json.loads(json.dumps(item, default=_json_default))
        kind = detect_kind(payload)
        if kind is None:
            raise ReportInputError(f"not a bkprof document ({_describe(payload)})")
        out.append(Document(KINDS[kind], kind, [payload] if kind == "history" and isinstance(payload, dict) else payload))
    return out


def render_html(documents: Iterable, title: str = "bkprof report") -> str:
    """The page for `documents` (Document objects or payloads), as a string."""
    import jinja2
    from markupsafe import Markup  # the figures: SVG written by matplotlib, which escapes its text itself

    from bkprof import __version__

    sections = [build_section(d, i) for i, d in enumerate(_as_documents(documents), 1)]
    environment = jinja2.Environment(loader=jinja2.PackageLoader("bkprof.report", "templates"),
                                     autoescape=True, trim_blocks=True, lstrip_blocks=True,
                                     undefined=jinja2.StrictUndefined)
    environment.filters["verdict"] = verdict_class
    template = environment.get_template(TEMPLATE)
    return template.render(title=title, sections=sections, version=__version__, svg=Markup)


def write_html(documents: Iterable, path: str | os.PathLike, title: str = "bkprof report") -> Path:
    """Write the page for `documents` to `path`, whole or not at all (bkprof.report.io.write_atomic).

    `documents`: Document objects (`read_documents`) or payloads, e.g. `write_html([report.payload], path)`."""
    return write_atomic(path, render_html(documents, title))

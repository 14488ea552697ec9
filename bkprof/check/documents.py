"""The documents metrics are read from: the current ones, and the baseline they are compared with.

Documents are kept as plain JSON ({"flops": ..., "profile": ...}), the current ones included, so a
baseline read back from disk compares exactly with the document that was written into it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from bkprof.check.config import FlopsSource, Thresholds, shown
from bkprof.check.errors import ThresholdError, read_text
from bkprof.check.metrics import SOURCES


def current_documents(flops: FlopsSource, profile: str | Path | None = None) -> dict:
    """{"flops": the `bkprof flops --format json` document, "profile": the report at `profile`}."""
    from bkprof.flops import flops_report

    config, variants = _layers(flops)
    documents = {"flops": _plain_json(flops_report(config, variants, batch=flops.batch, backward=flops.backward),
                                     "the current flops document")}
    if profile is not None:
        documents["profile"] = _read_json(Path(profile), "profile report")
    return documents


def profiled_now(flops: FlopsSource, device: str = "cuda") -> dict | None:
    """The `bkprof profile --format json` document measured now on `device` for the thresholds' layers,
    with `bkprof profile`'s default settings; None when torch cannot see that device."""
    import torch

    from bkprof.core.resolvent import resolve_backend
    from bkprof.profile import ProfileSettings, profile_variants
    from bkprof.profile.report import environment, profile_report

    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        return None
    config, variants = _layers(flops)
    settings = ProfileSettings(device=device)
    try:
        env = environment(device, resolve_backend(config.backend, device).name)
    except ValueError as error:
        raise ThresholdError(f"cannot profile on {device.type}: {error}") from None
    return _plain_json(profile_report(profile_variants(config, variants, settings), config, settings, env).payload,
                       "the profile measured now")


def _layers(flops: FlopsSource):
    from bkprof.variants.config import VARIANTS, LayerConfig

    return flops.config or LayerConfig(), list(flops.variants or VARIANTS)


def load_baseline(thresholds: Thresholds, documents: dict, path: Path | None, config_check: bool = True) -> dict | None:
    """The baseline documents when an entry compares against them (its `rel`), else None.

    Each document compared must hold the config it was made for, and that config must be the
    current one's; `config_check=False` skips both (a baseline from elsewhere, compared on purpose).
    """
    needing = [e for e in thresholds.entries if e.rel is not None and e.source in documents]
    if not needing:
        return None
    first = needing[0].metric
    if path is None:
        raise ThresholdError(f"threshold {first}: rel needs a baseline; set baseline = \"PATH\" in {thresholds.origin} or pass --baseline")
    if not path.is_file():
        raise ThresholdError(f"threshold {first}: baseline file {shown(path)} does not exist; create it with bkprof check --update-baseline")
    baseline = _baseline_document(path)
    if config_check:
        for source in dict.fromkeys(e.source for e in needing):
            _same_config(source, baseline, documents, path)
    return baseline


def _baseline_document(path: Path) -> dict:
    baseline = _read_json(path, "baseline file")
    if not isinstance(baseline, dict) or not any(isinstance(baseline.get(source), dict) for source in SOURCES):
        raise ThresholdError(f"baseline file {shown(path)} is not a bkprof check baseline (no {' or '.join(SOURCES)} document)")
    for source in SOURCES:
        config = baseline[source].get("config") if isinstance(baseline.get(source), dict) else None
        if config is not None and not isinstance(config, dict):
            raise ThresholdError(f"baseline file {shown(path)}: the {source} document's config must be an object, "
                                 f"got {type(config).__name__}")
    return baseline


def existing_baseline(path: Path) -> None:
    """Before --update-baseline replaces `path`: it is missing, empty, or a bkprof baseline, never
    another file (a pyproject.toml given by mistake); ThresholdError naming it otherwise."""
    if path.is_file() and path.stat().st_size:
        _baseline_document(path)


def write_baseline(path: Path, documents: dict) -> Path:
    """Replace the baseline with `documents`, whole or not at all."""
    from bkprof.report import write_atomic

    return write_atomic(path, json.dumps(documents, indent=2) + "\n")


def _same_config(source: str, baseline: dict, documents: dict, path: Path) -> None:
    """Relative tolerances mean nothing between documents computed for different layers."""
    if not isinstance(baseline.get(source), dict):
        return  # no such document: the metric's own lookup says so
    old = baseline[source].get("config")
    new = documents.get(source, {}).get("config")
    if old is None:
        raise ThresholdError(f"baseline file {shown(path)}: the {source} document has no config, so it cannot be told "
                             "to be for the same layers; rerun with --update-baseline (or pass --no-config-check)")
    if new is not None and old != new:
        changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        first = changed[0]
        raise ThresholdError(
            f"baseline file {shown(path)} was made for another {source} config ({first}: {old.get(first)!r} -> {new.get(first)!r});"
            " rerun with --update-baseline"
        )


def _plain_json(document: dict, what: str) -> dict:
    from bkprof.report import Report, render

    plain = json.loads(render(Report(payload=document, tables=[], results=None), "json"), parse_constant=_NonFinite)
    return _finite(plain, what)


def _finite(document, what: str):
    found = non_finite(document)
    if found is not None:
        where, text = found
        raise ThresholdError(f"{what} holds the non-finite number {text} at {where}; a gate compares finite numbers only")
    return document


class _NonFinite:
    """Where JSON held NaN, Infinity or -Infinity (Python's json reads them; a gate must not)."""

    def __init__(self, text: str):
        self.text = text


def _read_json(path: Path, what: str):
    named = f"{what} {shown(path)}"
    from bkprof.report.records import parse

    text = read_text(path, named)
    try:
        document = parse(text, constant=_NonFinite)
    except json.JSONDecodeError as error:
        raise ThresholdError(f"{named} is not valid JSON: {str(error).splitlines()[0]}") from None
    except ValueError as error:  # nested too deep, a 5000-digit integer
        raise ThresholdError(f"{named} is not a bkprof JSON document: {error}") from None
    return _finite(document, named)


def non_finite(node, where: str = "the top level") -> tuple[str, str] | None:
    """(path, text) of the first NaN or infinity in a JSON document (read or built), else None."""
    stack = [(node, where)]
    while stack:
        node, where = stack.pop()
        if isinstance(node, _NonFinite):
            return where, node.text
        if isinstance(node, float) and not math.isfinite(node):
            return where, json.dumps(node)
        if isinstance(node, dict):
            stack += [(v, f"{where}.{k}" if where != "the top level" else str(k)) for k, v in reversed(node.items())]
        elif isinstance(node, list):
            stack += [(v, f"{where}.{i}" if where != "the top level" else str(i)) for i, v in reversed(list(enumerate(node)))]
    return None

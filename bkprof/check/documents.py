"""The documents metrics are read from: the current ones, and the baseline they are compared with.

Documents are kept as plain JSON ({"flops": ..., "profile": ...}), the current ones included, so a
baseline read back from disk compares exactly with the document that was written into it.
"""

from __future__ import annotations

import json
from pathlib import Path

from bkprof.check.config import FlopsSource, Thresholds, shown
from bkprof.check.errors import ThresholdError
from bkprof.check.metrics import SOURCES


def current_documents(flops: FlopsSource, profile: str | Path | None = None) -> dict:
    """{"flops": the `bkprof flops --format json` document, "profile": the report at `profile`}."""
    from bkprof.flops import flops_report

    config, variants = _layers(flops)
    documents = {"flops": _plain_json(flops_report(config, variants, batch=flops.batch, backward=flops.backward))}
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
    return _plain_json(profile_report(profile_variants(config, variants, settings), config, settings, env).payload)


def _layers(flops: FlopsSource):
    from bkprof.variants.config import VARIANTS, LayerConfig

    return flops.config or LayerConfig(), list(flops.variants or VARIANTS)


def load_baseline(thresholds: Thresholds, documents: dict, path: Path | None) -> dict | None:
    """The baseline documents when an entry compares against them (its `rel`), else None."""
    needing = [e for e in thresholds.entries if e.rel is not None and e.source in documents]
    if not needing:
        return None
    first = needing[0].metric
    if path is None:
        raise ThresholdError(f"threshold {first}: rel needs a baseline; set baseline = \"PATH\" in {thresholds.origin} or pass --baseline")
    if not path.is_file():
        raise ThresholdError(f"threshold {first}: baseline file {shown(path)} does not exist; create it with bkprof check --update-baseline")
    baseline = _read_json(path, "baseline file")
    if not isinstance(baseline, dict) or not any(source in baseline for source in SOURCES):
        raise ThresholdError(f"baseline file {shown(path)} is not a bkprof check baseline (no {' or '.join(SOURCES)} document)")
    _same_flops_config(baseline, documents, path)
    return baseline


def write_baseline(path: Path, documents: dict) -> Path:
    """Replace the baseline with `documents`, whole or not at all."""
    from bkprof.report import write_atomic

    return write_atomic(path, json.dumps(documents, indent=2) + "\n")


def _same_flops_config(baseline: dict, documents: dict, path: Path) -> None:
    """Relative tolerances mean nothing between documents computed for different layers."""
    old = baseline.get("flops", {}).get("config")
    new = documents.get("flops", {}).get("config")
    if old is not None and new is not None and old != new:
        changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        first = changed[0]
        raise ThresholdError(
            f"baseline file {shown(path)} was made for another flops config ({first}: {old.get(first)!r} -> {new.get(first)!r});"
            " rerun with --update-baseline"
        )


def _plain_json(document: dict) -> dict:
    from bkprof.report import Report, render

    return json.loads(render(Report(payload=document, tables=[], results=None), "json"))


def _read_json(path: Path, what: str):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ThresholdError(f"{what} {shown(path)} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ThresholdError(f"{what} {shown(path)} is not readable JSON: {error}") from None

"""What a report needs that takes torch and seconds to compute, kept beside the runs file.

`RUNS.cache.json` holds the count baselines (keyed by the corpus's sha256 and the number of test
tokens scored) and bkprof flops' layer claims (keyed by the layer config), so that
`--report-only` reads them instead of importing torch and recounting (15-32 s before). Each key also
holds a fingerprint of the source files its value comes from, so a change to the counting code (a new
op in a layer, say) makes its entries miss instead of serving stale numbers. A missing or unreadable
cache is recomputed; it is never the only copy of anything.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

from bkprof.report.io import write_atomic


PACKAGE = Path(__file__).resolve().parent.parent
# the sources each kind of entry is computed from (globs under bkprof/)
SOURCES = {"baselines": ("validate/baseline.py", "validate/corpus.py"),
           "layer_claims": ("flops/*.py", "flops/*.json", "variants/*.py", "core/*.py", "conventions.py",
                            "validate/cost.py")}


def code_fingerprint(kind: str) -> str:
    """sha256 (16 hex digits) of the source files an entry of `kind` is computed from."""
    digest = hashlib.sha256()
    for pattern in SOURCES[kind]:
        for path in sorted(PACKAGE.glob(pattern)):
            digest.update(path.relative_to(PACKAGE).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


class ReportCache:
    def __init__(self, path: Path):
        self.path, self.changed = path, False
        try:
            self.data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            self.data = {}

    @classmethod
    def beside(cls, runs_file: str | Path) -> "ReportCache":
        runs_file = Path(runs_file)
        return cls(runs_file.with_name(runs_file.name + ".cache.json"))

    def get(self, kind: str, key: str, compute):
        table = self.data.setdefault(kind, {})
        key = f"{code_fingerprint(kind)}:{key}"
        if key not in table:
            table[key] = compute()
            self.changed = True
        return table[key]

    def baselines(self, corpus, loaded_with_tensors) -> dict:
        """The count baselines of `corpus`; `loaded_with_tensors()` gives the corpus as tensors when they
        must be computed."""
        from bkprof.validate.corpus import EOS

        def compute():
            from bkprof.validate.baseline import baselines

            c = loaded_with_tensors()
            return baselines(c.train, c.test, c.vocab.predictable, c.vocab.itos.index(EOS))

        return self.get("baselines", f"{corpus.fingerprint}:{len(corpus.test)}", compute)

    def layer_claims(self, spec, recipe) -> list[dict]:
        def compute():
            from bkprof.validate.cost import layer_claims

            return json.loads(json.dumps(layer_claims(spec, recipe)))  # as it reads back from the file

        # the backend is left out (counted with vectorized whatever it is): checking its name would load torch
        key = json.dumps(spec.layer_config(dataclasses.replace(recipe, backend="auto")).as_dict(), sort_keys=True)
        return self.get("layer_claims", key, compute)

    def save(self) -> None:
        if self.changed:
            # entries of older sources can never hit again: dropped, so the file does not grow with every change
            for kind, table in self.data.items():
                current = code_fingerprint(kind) + ":" if kind in SOURCES else ""
                self.data[kind] = {k: v for k, v in table.items() if k.startswith(current)}
            write_atomic(self.path, json.dumps(self.data, sort_keys=True, indent=1) + "\n")
            self.changed = False

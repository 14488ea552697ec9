"""What a report needs that takes torch and seconds to compute, kept beside the runs file.

`RUNS.cache.json` holds the count baselines (keyed by the corpus's sha256 and the number of test
tokens scored) and bkprof flops' layer claims (keyed by the layer config), so that
`--report-only` reads them instead of importing torch and recounting (15-32 s before). A missing or
unreadable cache is recomputed; it is never the only copy of anything.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from bkprof.report.io import write_atomic


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
            write_atomic(self.path, json.dumps(self.data, sort_keys=True, indent=1) + "\n")
            self.changed = False

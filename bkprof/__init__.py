"""bkprof: FLOPs, time and memory of BK-Core sequence layers (ResNet-BK).

The public API, one name per step of the data flow (config -> modules -> counts -> reports):

- configuration and variants: `LayerConfig`, `VARIANTS`, `VariantSpec`, `Published`, `register`,
  `registered`, `unregister`, `build`;
- counting: `count_flops` (the op counter, on any nn.Module as it runs), `analytic_flops` and
  `analytic_components` (closed form, from the config alone), `published_accounting` (the
  source's own formulas);
- reports: `flops_report` (the JSON document of `bkprof flops`) and `flops_tables` (its tables,
  a `Report` any renderer takes); `config_header`, the config block every report's document starts with;
- profiling: `profile_variants` with `ProfileSettings`;
- the BK-Core: `tridiag_resolvent_diagonal`.

Every FLOPs figure is 2 FLOPs per multiply-accumulate, forward pass, for the batch given (1
sequence unless said). Each name loads its module (and torch) on first use, so `import bkprof` stays
light:

>>> import bkprof
>>> bkprof.analytic_flops("dense", bkprof.LayerConfig())   # per sequence, forward, at the defaults
34708144
"""

from __future__ import annotations

from bkprof._lazy import lazy_exports

__version__ = "0.1.0"

# public name -> the module that defines it (imported on first access)
_SOURCES = {
    "LayerConfig": "bkprof.variants.config",
    "VARIANTS": "bkprof.variants.registry",
    "VariantSpec": "bkprof.variants.registry",
    "Published": "bkprof.variants.registry",
    "register": "bkprof.variants.registry",
    "registered": "bkprof.variants.registry",
    "unregister": "bkprof.variants.registry",
    "build": "bkprof.variants.registry",
    "count_flops": "bkprof.flops.model_count",
    "analytic_flops": "bkprof.flops.analytic",
    "analytic_components": "bkprof.flops.analytic",
    "published_accounting": "bkprof.flops.published",
    "flops_report": "bkprof.flops.report",
    "flops_tables": "bkprof.flops.tables",
    "config_header": "bkprof.variants.config",
    "profile_variants": "bkprof.profile.runner",
    "ProfileSettings": "bkprof.profile.runner",
    "tridiag_resolvent_diagonal": "bkprof.core.resolvent",
}

__all__ = ["__version__", *_SOURCES]


__getattr__, __dir__ = lazy_exports(__name__, globals(), _SOURCES)

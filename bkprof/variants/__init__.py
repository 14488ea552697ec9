"""The layer variants as PyTorch modules (dense, sparse G_ii, multi-scale, combined) and their registry.

Importing this package is light (no torch): the modules load when a variant is built.
"""

from bkprof.variants.config import INTERPOLATIONS, LayerConfig, first_problem, kept_positions
from bkprof.variants.registry import (REFERENCE, VARIANTS, Published, VariantSpec, build, register, registered,
                                      unregister)

__all__ = ["INTERPOLATIONS", "REFERENCE", "VARIANTS", "LayerConfig", "Published", "VariantSpec", "build",
           "first_problem", "kept_positions", "register", "registered", "unregister"]

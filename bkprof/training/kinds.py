"""The sparsity losses' kinds; torch-free, so the command line lists them without importing torch."""

LOSS_KINDS = ("l2", "l1", "kl", "adaptive")

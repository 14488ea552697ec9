"""Small models to point `bkprof flops --model` at (the commands in docs/count-your-model.md use them)."""

"""Memory a step will need, estimated before anything is allocated, and the memory there is.

The estimate runs the step on the meta device (tensors with shapes and no storage), keeping the
bytes of every tensor alive at each op: its peak, plus the parameters (and for a train step their
gradients and Adam's two moments) and the input batch. It is the step's own memory; allocator
caching, the profiler's pool of inputs and library workspaces come on top, so a step estimated just
under the limit may still run out (which is then one line too, never a traceback).
"""

from __future__ import annotations

import os
import weakref
from pathlib import Path

GIB = 1024**3
# Timed runs and untimed warm-up runs: each is at least a whole step, so more than this many would
# run for hours at the smallest sizes (a typo, not a measurement plan).
MAX_RUNS = 100_000
# Training steps a schedule is projected over, one by one (about 0.5 ms each on a 2-core CPU).
MAX_STEPS = 1_000_000


class TooLarge(ValueError):
    """A step whose estimated memory exceeds what the device has; one line naming both."""


# Above this many experts the layer is not built even on the meta device (each expert's weights are
# drawn as a module of their own, slow for a million); the bytes are extrapolated instead.
BUILT_EXPERTS = 16  # built at 16 and 32 experts, extrapolated from there


def step_bytes(variant: str, config, batch: int, train: bool) -> int:
    """Estimated bytes of one step of `variant` at `config` and `batch` (train: forward + backward + Adam).

    Past BUILT_EXPERTS the layer is built at 16 and 32 experts and the bytes extrapolated linearly in
    E (each expert adds its weights, each token one gate logit per expert). Forward steps extrapolate
    within 2 %; a train step's peak grows a little faster than linearly, so its estimate falls short
    (10 % at 64 experts, 20 % at 256, d=16), which only matters near the limit.
    """
    e = config.num_experts
    if e <= BUILT_EXPERTS:
        return _meta_step_bytes(variant, config, batch, train)
    low = max(config.top_k, BUILT_EXPERTS)
    if low >= e:  # top_k itself is that large: build it as it is
        return _meta_step_bytes(variant, config, batch, train)
    at_low, at_high = (_meta_step_bytes(variant, config.with_(num_experts=n), batch, train) for n in (low, 2 * low))
    return at_low + (e - low) * (at_high - at_low) // low


def _meta_step_bytes(variant: str, config, batch: int, train: bool) -> int:
    import torch

    from bkprof.variants import build

    with torch.device("meta"):
        model = build(variant, config)
        x = torch.empty(batch, config.n_seq, config.d_model)
    parameters = sum(p.numel() * p.element_size() for p in model.parameters())
    state = parameters * 3 if train else 0  # gradients, Adam's exp_avg and exp_avg_sq
    live = _LiveBytes()
    with live:
        run_step(model, x, train)
    return parameters + state + x.numel() * x.element_size() + live.peak


def run_step(model, x, train: bool) -> None:
    """What the estimate runs: forward + backward of out.sum() (train), or an eval forward without grad."""
    import torch

    if train:
        out, _ = model.train()(x)
        out.sum().backward()
    else:
        with torch.no_grad():
            model.eval()(x)


def _LiveBytes():
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten

    class LiveBytes(TorchDispatchMode):
        """The peak of the bytes held by tensors that ops create (views share their base's bytes)."""

        def __init__(self):
            super().__init__()
            self.live = 0
            self.peak = 0

        def _freed(self, size: int) -> None:
            self.live -= size

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for tensor in tree_flatten(out)[0]:
                if hasattr(tensor, "_is_view") and not tensor._is_view():
                    size = tensor.numel() * tensor.element_size()
                    self.live += size
                    weakref.finalize(tensor, self._freed, size)
            self.peak = max(self.peak, self.live)
            return out

    return LiveBytes()


def memory_limit(device) -> tuple[int, str]:
    """(bytes free for a new step, where that figure comes from) on `device`."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return free, f"free on {device} (torch.cuda.mem_get_info)"
    limits = [(_mem_available(), "MemAvailable in /proc/meminfo")]
    limits.append(_cgroup_room())
    known = [(b, s) for b, s in limits if b is not None]
    if not known:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "physical memory"
    return min(known)


def _mem_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_room() -> tuple[int | None, str]:
    """What this process's cgroup (v2) still allows, if it sets a limit."""
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = Path("/sys/fs/cgroup/memory.current").read_text().strip()
        if limit != "max":
            return int(limit) - int(used), "the cgroup's memory.max less memory.current"
    except (OSError, ValueError):
        pass
    return None, ""


def check_fits(variants, config, batch: int, modes, device) -> None:
    """TooLarge, naming the estimate and the limit, when a step of any variant and mode will not fit."""
    limit, source = memory_limit(device)
    for variant in variants:
        for mode in modes:
            needed = step_bytes(variant, config, batch, train=(mode == "train"))
            if needed > limit:
                raise TooLarge(
                    f"{variant} ({mode}) at batch={batch}, n_seq={config.n_seq}, d_model={config.d_model}, "
                    f"experts={config.num_experts} needs an estimated {needed / GIB:,.2f} GiB, more than the "
                    f"{limit / GIB:,.2f} GiB {source}; lower --batch, --n-seq, --d-model or --experts")


# `bkprof validate`'s counts: each seed is a whole training run, each job a process with its own
# copy of the corpus and model, each layer a residual block; past these it is a typo, not a plan.
MAX_SEEDS = 1_000
MAX_LAYERS = 1_000
MAX_JOBS = 256


def check_training_fits(layers_of: list[tuple[str, object]], batch: int, layers: int, jobs: int, device) -> None:
    """TooLarge when `jobs` concurrent training runs of `layers` blocks of any (variant, LayerConfig)
    cannot fit on `device`: one train step's estimate of one block times the blocks and the jobs
    (the embedding and the head come on top, so this errs low; it catches sizes off by orders of magnitude)."""
    limit, source = memory_limit(device)
    for variant, config in layers_of:
        needed = step_bytes(variant, config, batch, train=True) * layers * jobs
        if needed > limit:
            raise TooLarge(
                f"{variant} training at batch={batch}, n_seq={config.n_seq}, d_model={config.d_model}, "
                f"{layers} layer(s), {jobs} job(s) at once needs an estimated {needed / GIB:,.2f} GiB, more than the "
                f"{limit / GIB:,.2f} GiB {source}; lower --batch, --n-seq, --d-model, --layers or --jobs-per-device")

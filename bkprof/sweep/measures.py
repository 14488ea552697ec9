"""What a sweep measures at a point: FLOPs (published, analytic, counted) and, when asked, time and memory.

Every FLOPs column is forward FLOPs (2 per multiply-accumulate) for the whole batch unless the
column name says train (forward + backward); published figures are per sequence in the source
and are multiplied by the batch here.
"""

from __future__ import annotations

from bkprof.sweep.published import published_layer_flops
from bkprof.variants.config import LayerConfig


def flops_measure(train: bool = False, count: bool = False, device: str = "cpu"):
    """Published and analytic FLOPs; `train` adds forward+backward; `count` runs the modules under the op counter.

    The analytic count is for the BK-Core backend that `auto` picks on `device`; the op counter runs on the CPU.
    """

    def measure(variant: str, config: LayerConfig, batch: int) -> dict:
        import torch

        from bkprof.flops import analytic_flops, published_accounting

        published = published_layer_flops(variant, published_accounting(config))
        row = {"published_flops": None if published is None else published * batch,
               "analytic_flops": analytic_flops(variant, config, batch=batch, device=device)}
        if train:
            row["analytic_train_flops"] = analytic_flops(variant, config, batch=batch, backward=True, device=device)
        if count:
            from bkprof.flops.counter import count_layer_flops
            from bkprof.sizes import check_fits

            check_fits([variant], config, batch, ["forward"], "cpu")
            from bkprof.variants import build

            x = torch.randn(batch, config.n_seq, config.d_model, generator=torch.Generator().manual_seed(0))
            row["counted_flops"] = count_layer_flops(build(variant, config), x).total()
        return row

    return measure


def profile_measure(device: str, mode: str, warmup: int, runs: int):
    """Time and memory of one step of the layer through `bkprof.profile` (the `bkprof profile` harness).

    Columns: median_ms, p10_ms, p90_ms (one step, whole batch), bk_core_ms (the BK-Core alone),
    peak_mib (CUDA only), others_busy_cores (how busy other processes kept the CPU meanwhile). An out-of-memory row becomes the point's error.
    """

    def measure(variant: str, config: LayerConfig, batch: int) -> dict:
        import torch

        from bkprof.profile import ProfileSettings, profile_variants

        from bkprof.sizes import check_fits

        check_fits([variant], config, batch, [mode], device)
        settings = ProfileSettings(torch.device(device), modes=(mode,), batch=batch, warmup=warmup, runs=runs)
        row = profile_variants(config, [variant], settings).frame.iloc[0]
        if row["status"] != "ok":
            raise RuntimeError(f"{row['status']}: {row['note']}")
        return {column: _plain(row[column]) for column in PROFILE_COLUMNS}

    return measure


PROFILE_COLUMNS = ("median_ms", "p10_ms", "p90_ms", "bk_core_ms", "peak_mib", "others_busy_cores")


def _plain(value):
    """A pandas cell as a JSON-friendly float or None."""
    return None if value is None or value != value else float(value)


def interpolation_error_measure(seed: int = 0):
    """How far the interpolated G_ii fall from the exact ones, at the inference mask (sparse and combined only).

    g_ii_error = ||(G_interp - G_exact) * (1 - mask)|| / ||G_exact * (1 - mask)||: relative RMS error over the
    interpolated positions, as [Re, Im] features, for untrained weights drawn from `seed` and standard-normal
    inputs. It is a proxy for what interpolation loses, not the perplexity the source's ablations ask about;
    an untrained "learned" interpolator is expected to be poor.
    """

    def measure(variant: str, config: LayerConfig, batch: int) -> dict:
        import torch

        from bkprof.variants import build
        from bkprof.variants.sparse import Interpolation

        from bkprof.sizes import check_fits

        check_fits([variant], config, batch, ["forward"], "cpu")
        model = build(variant, config, seed=seed).eval()
        interpolators = [m for m in model.modules() if isinstance(m, Interpolation)]
        if not interpolators:
            return {"g_ii_error": None}
        seen = {}
        hook = interpolators[0].register_forward_hook(
            lambda module, args, out: seen.update(exact=args[0], mask=args[1], filled=out))
        x = torch.randn(batch, config.n_seq, config.d_model, generator=torch.Generator().manual_seed(seed))
        try:
            with torch.no_grad():
                model(x)
        finally:
            hook.remove()
        gaps = (1 - seen["mask"])[..., None]
        if not gaps.any():
            return {"g_ii_error": None}  # sparsity 0 keeps every position: nothing is interpolated
        error = ((seen["filled"] - seen["exact"]) * gaps).norm() / (seen["exact"] * gaps).norm()
        return {"g_ii_error": error.item()}

    return measure

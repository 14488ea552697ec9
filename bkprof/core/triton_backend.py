"""The "triton" backend: the BK-Core as one Triton kernel, parallel inside each sequence.

Notation as in `sweeps`: alpha_i = diag_i - z, left ratios d_i = alpha_i - k_{i-1} / d_{i-1},
right ratios e_i = alpha_i - k_i / e_{i+1}, G_ii = 1 / (d_i - k_i / e_{i+1}).

A row is cut into segments of at most SEGMENT_LANES x TILE positions, one program each (rows up to that
length are one segment), and a segment into lanes of 4 to 16 positions (`row_layout`). A program:
1. loads its lanes' positions and multiplies their 2x2 complex transfer matrices, left sweep
   P <- [[alpha_i, -k_{i-1}], [1, 0]] P and right sweep Q <- Q [[alpha_i, -k_i], [1, 0]],
   rescaling by a power of two after every second step (ratios are unchanged, entries stay finite);
2. combines them across lanes by a Hillis-Steele scan of the 2x2 products in registers
   (`tl.gather` for the partner lane, log2(lanes) steps each way);
3. when the row has several segments: publishes its segment's two maps, waits until every
   segment of the row has published (an arrival counter per row), and carries the ratio entering
   the row through the maps of the segments before (left) and after (right) its own. Programs take
   their segment from a ticket counter, so a program only waits for programs that have started;
4. sweeps each lane's positions from the entering ratios and writes G_ii, one 32-byte vector store
   per lane and quad. Inputs are read once from DRAM (the sweep re-reads them from L1), G written
   once: 16 B per position against the 12 B floor (benchmarks/NOTES-triton.md).

Positions past N (padding of a row's last lane) carry alpha = 1 - i Im z and k = 0, which leaves
every real position's result unchanged and every value finite. Triton has no complex type: real
and imaginary parts travel separately; the output is a (B, N, 2) real buffer seen through
`torch.view_as_complex`.

The backward (bkprof.core.adjoint has the derivation) is the closed-form adjoint, no scan to
differentiate: with a gradient needed, the forward kernel also writes the ratios d and e (SAVE: 16 B
per position more in float32), and `_adjoint_kernel` turns them, k and the gradient of G into the
gradients of diag and k. One program per row walks it in blocks of 4 x lanes positions, twice: left
to right for U_j = c_j + r_{j-1} U_{j-1}, right to left for V_j = c_j + s_j V_{j+1}, each block
composing every lane's four affine steps, scanning them across lanes (`tl.gather`, like the
forward) and entering from the previous block's carry. The first pass writes partial gradients, the
second adds its part (read-modify-write, same program).

Ops (custom ops with fake implementations, so torch.compile and CUDA-graph capture see shapes only,
and FLOP formulas in torch's flop registry): `bkprof::tridiag_resolvent_diagonal_triton` (the
forward), `bkprof::tridiag_resolvent_diagonal_triton_train` (the forward that also returns the
ratios; its autograd saves ratios and k and does not materialise the ratios' gradient),
`bkprof::tridiag_resolvent_adjoint_triton` (the backward; `backward_kernel_flops`). `run` calls the
kernels directly when nothing can observe the op (`_plain`: no dispatch mode such as FlopCounterMode,
no fake tensors, no compile or trace): without a gradient `launch` alone, with one the plain
autograd.Function `_EagerResolvent` (same kernels, same saved tensors); the dispatcher's custom-op
and autograd wrappers cost tens of µs, more than the kernels at small sizes. Under TRITON_INTERPRET=1
(`INTERPRETED`) the kernels and ops also take CPU tensors: tests/test_triton_interpreter.py.
"""

from __future__ import annotations

import functools
import math

import torch
from torch.utils._python_dispatch import _get_current_dispatch_mode  # on the eager path: imported once, not per call
from torch.utils.flop_counter import register_flop_formula

from bkprof.core import sweeps
from bkprof.core.resolvent import Backend, register_backend

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only machines (CI): the backend is registered but reports itself unavailable
    triton = None

QUAD = 4                # positions per load
TILE = 16               # positions per lane at most (four quads)
SEGMENT_LANES = 128     # lanes of a program that holds a full segment
MIN_LANES = 32    # at least one warp per program

# Real FLOPs per unit of work, counted from the kernel source below (see `kernel_flops`).
MAP_FLOPS_PER_SLOT = 65           # alpha 1 + left step 20 + right step 21 + rescale 23 (both directions, every second step)
ENTRY_FLOPS_PER_LANE = 56         # 2 directions x Moebius apply 28: the ratios entering a lane
SWEEP_FLOPS_PER_SLOT = 27         # alpha in each sweep 1 + 1, left ratio step 8, right ratio step and G_ii 17
SEGMENT_WALK_FLOPS = 28           # Moebius apply, per program and other segment of its row
SCAN_STEP_FLOPS = 79              # 2x2 complex matrix product 56 + rescale 23, per lane and scan step
# The backward kernel (see `backward_kernel_flops`)
ADJOINT_MAX_LANES = 256           # lanes of the backward's blocks of 4 x lanes positions at most
ADJOINT_FLOPS_PER_SLOT = 107      # both passes: c 27 + 27, r and s 10 + 10, steps 8 + 8, outputs 8 + 9
ADJOINT_COMPOSE_FLOPS = 14 * 3    # a lane's four affine steps composed, per pass
ADJOINT_SCAN_STEP_FLOPS = 14      # affine compose, per lane, scan step and pass
ADJOINT_ENTER_FLOPS = 8           # the exclusive map applied to the block's carry, per lane and pass


@functools.lru_cache(maxsize=None)
def row_layout(n: int) -> tuple[int, int, int]:
    """Lanes per program (a power of two, a warp at least), positions per lane (4, 8 or 16) and
    segments (programs) per row of length n."""
    segment_max = SEGMENT_LANES * TILE
    segment = min(n, segment_max)
    lanes = max(MIN_LANES, 1 << math.ceil(math.log2(-(-segment // TILE))))
    return lanes, max(QUAD, 1 << math.ceil(math.log2(-(-segment // lanes)))), -(-n // segment_max)


def kernel_flops(rows: int, n: int) -> int:
    """Real FLOPs the triton backend executes for `rows` rows of length n (forward only).

    Convention: every real floating-point add, subtract, multiply, divide, negate, abs and max in
    the kernel source counts 1 (so a complex multiply is 6, a complex add 2, a fused multiply-add
    2); integer and bit operations (the power-of-two rescale, indexing, gathers, the counters)
    count 0. Work is counted on the padded grid that really runs: per segment of W lanes x L
    position slots, 65 per slot (transfer matrices) + 27 per slot (sweeps)
    + W x (2 scans x 79 x log2 W + 56) (every lane runs every scan step, partner or not, then
    enters its positions from both sides); per program of a row of S segments, 28 x (S - 1) for
    carrying the entering ratios through the other segments' maps.
    The sequential sweeps need about 27 per position; the parallel form does several times that,
    and this counts what runs. Exactly linear in rows: per sequence = kernel_flops(1, n).
    """
    lanes, per_lane, segments = row_layout(n)
    scans = 2 * SCAN_STEP_FLOPS * (lanes.bit_length() - 1)
    per_segment = ((MAP_FLOPS_PER_SLOT + SWEEP_FLOPS_PER_SLOT) * lanes * per_lane
                   + lanes * (scans + ENTRY_FLOPS_PER_LANE))
    return rows * segments * (per_segment + SEGMENT_WALK_FLOPS * (segments - 1))


if triton is not None:

    @triton.jit
    def _unpack4(x):
        """A (lanes, 4) tile as its four columns."""
        even, odd = tl.split(tl.reshape(x, (x.shape[0], 2, 2)))
        x0, x2 = tl.split(even)
        x1, x3 = tl.split(odd)
        return x0, x1, x2, x3

    @triton.jit
    def _pack4(x0, x1, x2, x3):
        """Four columns as a (lanes, 4) tile (the inverse of _unpack4)."""
        return tl.reshape(tl.join(tl.join(x0, x2), tl.join(x1, x3)), (x0.shape[0], 4))

    @triton.jit
    def _inverse_power_of_two(m, FP64: tl.constexpr):
        """2**-floor(log2 m) from the exponent bits: an exact rescale, no FLOPs."""
        if FP64:
            e = tl.minimum((m.to(tl.int64, bitcast=True) >> 52) & 0x7FF, 2045)
            return ((2046 - e) << 52).to(tl.float64, bitcast=True)
        else:
            e = tl.minimum((m.to(tl.int32, bitcast=True) >> 23) & 0xFF, 253)
            return ((254 - e) << 23).to(tl.float32, bitcast=True)

    @triton.jit
    def _rescaled(ar, ai, br, bi, cr, ci, dr, di, FP64: tl.constexpr):
        """The matrix divided by a power of two near its largest part: 23 FLOPs (8 abs, 7 max, 8 mul)."""
        m = tl.maximum(tl.maximum(tl.maximum(tl.abs(ar), tl.abs(ai)), tl.maximum(tl.abs(br), tl.abs(bi))),
                       tl.maximum(tl.maximum(tl.abs(cr), tl.abs(ci)), tl.maximum(tl.abs(dr), tl.abs(di))))
        s = _inverse_power_of_two(m, FP64)
        return ar * s, ai * s, br * s, bi * s, cr * s, ci * s, dr * s, di * s

    @triton.jit
    def _left_transfer(ar, ai, br, bi, cr, ci, dr, di, alr, ali, kap, FP64: tl.constexpr, RESCALE: tl.constexpr):
        """[[alpha, -kap], [1, 0]] @ [[a, b], [c, d]]: 20 FLOPs, + 23 when RESCALE."""
        nar = alr * ar - ali * ai - kap * cr
        nai = alr * ai + ali * ar - kap * ci
        nbr = alr * br - ali * bi - kap * dr
        nbi = alr * bi + ali * br - kap * di
        if RESCALE:
            return _rescaled(nar, nai, nbr, nbi, ar, ai, br, bi, FP64)
        return nar, nai, nbr, nbi, ar, ai, br, bi

    @triton.jit
    def _right_transfer(ar, ai, br, bi, cr, ci, dr, di, alr, ali, kap, FP64: tl.constexpr, RESCALE: tl.constexpr):
        """[[a, b], [c, d]] @ [[alpha, -kap], [1, 0]]: 21 FLOPs, + 23 when RESCALE."""
        nk = -kap
        nar = ar * alr - ai * ali + br
        nai = ar * ali + ai * alr + bi
        ncr = cr * alr - ci * ali + dr
        nci = cr * ali + ci * alr + di
        if RESCALE:
            return _rescaled(nar, nai, nk * ar, nk * ai, ncr, nci, nk * cr, nk * ci, FP64)
        return nar, nai, nk * ar, nk * ai, ncr, nci, nk * cr, nk * ci

    @triton.jit
    def _apply_map(ar, ai, br, bi, cr, ci, dr, di, xr, xi):
        """(a x + b) / (c x + d) for complex x: 28 FLOPs."""
        nr = ar * xr - ai * xi + br
        ni = ar * xi + ai * xr + bi
        qr = cr * xr - ci * xi + dr
        qi = cr * xi + ci * xr + di
        s = 1.0 / (qr * qr + qi * qi)
        return (nr * qr + ni * qi) * s, (ni * qr - nr * qi) * s

    @triton.jit
    def _ratio_step(alr, ali, kap, xr, xi):
        """alpha - kap / x for complex x and real kap: 8 FLOPs."""
        s = kap / (xr * xr + xi * xi)
        return alr - s * xr, ali + s * xi

    @triton.jit
    def _right_step(alr, ali, kap, er, ei, dr, di):
        """With t = kap / e_{i+1}: e_i = alpha - t and G_ii = 1 / (d_i - t): 17 FLOPs."""
        s = kap / (er * er + ei * ei)
        tr = s * er
        ti = s * ei  # t = tr - i ti
        wr = dr - tr
        wi = di + ti
        g = 1.0 / (wr * wr + wi * wi)
        return alr - tr, ali + ti, wr * g, -(wi * g)

    @triton.jit
    def _alpha_quad(diag_ptr, row_start, pos, n, live, z_re):
        """Re alpha = diag - Re z over a (lanes, 4) tile of positions (1 FLOP each); 1 past the row's end."""
        valid = live & (pos < n)
        dg = tl.load(diag_ptr + row_start + pos, mask=valid, other=0.0)
        return tl.where(valid, dg - tl.cast(z_re, dg.dtype), 1.0)

    @triton.jit
    def _k_quad(k_ptr, k_row_start, pos, n, live):
        """k_i over a (lanes, 4) tile of positions; 0 where there is no coupling (i >= n - 1)."""
        return tl.load(k_ptr + k_row_start + pos, mask=live & (pos < n - 1), other=0.0)

    @triton.jit
    def _left_quad(alr, ali, kap_before, kk, dr, di):
        """The left recursion over four positions from d entering: their d as (lanes, 4) real and
        imaginary tiles, the last d, and the last k (the next quad's kap_before)."""
        a0, a1, a2, a3 = _unpack4(alr)
        k0, k1, k2, k3 = _unpack4(kk)
        d0r, d0i = _ratio_step(a0, ali, kap_before, dr, di)
        d1r, d1i = _ratio_step(a1, ali, k0, d0r, d0i)
        d2r, d2i = _ratio_step(a2, ali, k1, d1r, d1i)
        d3r, d3i = _ratio_step(a3, ali, k2, d2r, d2i)
        return _pack4(d0r, d1r, d2r, d3r), _pack4(d0i, d1i, d2i, d3i), d3r, d3i, k3

    @triton.jit
    def _right_quad(alr, ali, kk, pdr, pdi, er, ei):
        """The right recursion over four positions from e entering on the right, with their d:
        G and e as (lanes, 4, 2) tiles (real, imaginary) and the e leaving on the left."""
        a0, a1, a2, a3 = _unpack4(alr)
        k0, k1, k2, k3 = _unpack4(kk)
        p0r, p1r, p2r, p3r = _unpack4(pdr)
        p0i, p1i, p2i, p3i = _unpack4(pdi)
        e3r, e3i, g3r, g3i = _right_step(a3, ali, k3, er, ei, p3r, p3i)
        e2r, e2i, g2r, g2i = _right_step(a2, ali, k2, e3r, e3i, p2r, p2i)
        e1r, e1i, g1r, g1i = _right_step(a1, ali, k1, e2r, e2i, p1r, p1i)
        e0r, e0i, g0r, g0i = _right_step(a0, ali, k0, e1r, e1i, p0r, p0i)
        return (tl.join(_pack4(g0r, g1r, g2r, g3r), _pack4(g0i, g1i, g2i, g3i)),
                tl.join(_pack4(e0r, e1r, e2r, e3r), _pack4(e0i, e1i, e2i, e3i)), e0r, e0i)

    @triton.jit
    def _store_quad(out_ptr, row_start, first, n, live, g):
        """G of the four positions from `first` ((lanes, 4, 2): real, imaginary) as one contiguous
        32-byte store per lane; only a row's last, partial quad needs element masks."""
        flat = tl.reshape(g, (g.shape[0], 8))
        eight = tl.arange(0, 8)[None, :]
        where = out_ptr + 2 * (row_start + first[:, None]) + eight
        tl.store(where, flat, mask=(live & (first + 3 < n))[:, None])
        tail = live & (first < n) & (first + 3 >= n)
        tl.store(where, flat, mask=tail[:, None] & (2 * first[:, None] + eight < 2 * n))

    @triton.jit
    def _maps_quad(par, pai, pbr, pbi, pcr, pci, pdr, pdi, qar, qai, qbr, qbi, qcr, qci, qdr, qdi,
                   alr, ali, kap_before, kk, FP64: tl.constexpr):
        """Both chunk products over four positions, rescaled after every second: returns P, Q and the
        next quad's kap_before. Between rescales entries grow at most ~(8 (|alpha| + |kap|))^2, so
        they stay finite for |alpha| + |kap| < 1e18."""
        a0, a1, a2, a3 = _unpack4(alr)
        k0, k1, k2, k3 = _unpack4(kk)
        par, pai, pbr, pbi, pcr, pci, pdr, pdi = _left_transfer(par, pai, pbr, pbi, pcr, pci, pdr, pdi, a0, ali, kap_before, FP64, False)
        qar, qai, qbr, qbi, qcr, qci, qdr, qdi = _right_transfer(qar, qai, qbr, qbi, qcr, qci, qdr, qdi, a0, ali, k0, FP64, False)
        par, pai, pbr, pbi, pcr, pci, pdr, pdi = _left_transfer(par, pai, pbr, pbi, pcr, pci, pdr, pdi, a1, ali, k0, FP64, True)
        qar, qai, qbr, qbi, qcr, qci, qdr, qdi = _right_transfer(qar, qai, qbr, qbi, qcr, qci, qdr, qdi, a1, ali, k1, FP64, True)
        par, pai, pbr, pbi, pcr, pci, pdr, pdi = _left_transfer(par, pai, pbr, pbi, pcr, pci, pdr, pdi, a2, ali, k1, FP64, False)
        qar, qai, qbr, qbi, qcr, qci, qdr, qdi = _right_transfer(qar, qai, qbr, qbi, qcr, qci, qdr, qdi, a2, ali, k2, FP64, False)
        par, pai, pbr, pbi, pcr, pci, pdr, pdi = _left_transfer(par, pai, pbr, pbi, pcr, pci, pdr, pdi, a3, ali, k2, FP64, True)
        qar, qai, qbr, qbi, qcr, qci, qdr, qdi = _right_transfer(qar, qai, qbr, qbi, qcr, qci, qdr, qdi, a3, ali, k3, FP64, True)
        return par, pai, pbr, pbi, pcr, pci, pdr, pdi, qar, qai, qbr, qbi, qcr, qci, qdr, qdi, k3

    @triton.jit
    def _matmul_rescaled(xar, xai, xbr, xbi, xcr, xci, xdr, xdi, gar, gai, gbr, gbi, gcr, gci, gdr, gdi,
                         FP64: tl.constexpr):
        """[[xa, xb], [xc, xd]] @ [[ga, gb], [gc, gd]] (complex), rescaled: 56 + 23 FLOPs."""
        ar = xar * gar - xai * gai + xbr * gcr - xbi * gci
        ai = xar * gai + xai * gar + xbr * gci + xbi * gcr
        br = xar * gbr - xai * gbi + xbr * gdr - xbi * gdi
        bi = xar * gbi + xai * gbr + xbr * gdi + xbi * gdr
        cr = xcr * gar - xci * gai + xdr * gcr - xdi * gci
        ci = xcr * gai + xci * gar + xdr * gci + xdi * gcr
        dr = xcr * gbr - xci * gbi + xdr * gdr - xdi * gdi
        di = xcr * gbi + xci * gbr + xdr * gdi + xdi * gdr
        return _rescaled(ar, ai, br, bi, cr, ci, dr, di, FP64)

    @triton.jit
    def _partner(ar, ai, br, bi, cr, ci, dr, di, src, has):
        """The matrix held by lane `src`, or the identity where `has` is false (no FLOPs)."""
        return (tl.where(has, tl.gather(ar, src, 0), 1.0), tl.where(has, tl.gather(ai, src, 0), 0.0),
                tl.where(has, tl.gather(br, src, 0), 0.0), tl.where(has, tl.gather(bi, src, 0), 0.0),
                tl.where(has, tl.gather(cr, src, 0), 0.0), tl.where(has, tl.gather(ci, src, 0), 0.0),
                tl.where(has, tl.gather(dr, src, 0), 1.0), tl.where(has, tl.gather(di, src, 0), 0.0))

    @triton.jit
    def _scan_partner(lane, STEP: tl.constexpr, LANES: tl.constexpr, REVERSE: tl.constexpr):
        """The lane 2**STEP before (after, when REVERSE) each lane in a Hillis-Steele step, and whether it exists."""
        if REVERSE:
            src = tl.minimum(lane + (1 << STEP), LANES - 1)
            has = lane + (1 << STEP) < LANES
        else:
            src = tl.maximum(lane - (1 << STEP), 0)
            has = lane >= (1 << STEP)
        return src, has

    @triton.jit
    def _scan_products(ar, ai, br, bi, cr, ci, dr, di, lane, LANES: tl.constexpr, LOG2_LANES: tl.constexpr,
                       REVERSE: tl.constexpr, FP64: tl.constexpr):
        """Inclusive products across lanes: lane c ends with X_c @ X_{c-1} @ ... @ X_0, or reversed
        X_c @ X_{c+1} @ ... @ X_{LANES-1}, in LOG2_LANES Hillis-Steele steps. Every lane multiplies
        at every step (by the identity where it has no partner): 79 FLOPs per lane and step."""
        for step in tl.static_range(LOG2_LANES):
            src, has = _scan_partner(lane, step, LANES, REVERSE)
            gar, gai, gbr, gbi, gcr, gci, gdr, gdi = _partner(ar, ai, br, bi, cr, ci, dr, di, src, has)
            ar, ai, br, bi, cr, ci, dr, di = _matmul_rescaled(ar, ai, br, bi, cr, ci, dr, di,
                                                              gar, gai, gbr, gbi, gcr, gci, gdr, gdi, FP64)
        return ar, ai, br, bi, cr, ci, dr, di

    @triton.jit
    def _left_sweep(diag_ptr, k_ptr, row_start, k_row_start, first, n, z_re, ali, kap_before, dr, di):
        """The left recursion over the quad of positions from `first` (one per lane), from d entering."""
        pos = first[:, None] + tl.arange(0, 4)[None, :]
        live = (first >= 0)[:, None]
        alr = _alpha_quad(diag_ptr, row_start, pos, n, live, z_re)
        return _left_quad(alr, ali, kap_before, _k_quad(k_ptr, k_row_start, pos, n, live), dr, di)

    @triton.jit
    def _right_sweep(diag_ptr, k_ptr, out_ptr, ratios_ptr, e_offset, row_start, k_row_start, first, n, z_re, ali,
                     pdr, pdi, er, ei, SAVE: tl.constexpr):
        """The right recursion over the quad from `first`, with its d: stores its G (and when SAVE its
        d and e, for the backward), returns e leaving."""
        pos = first[:, None] + tl.arange(0, 4)[None, :]
        live = (first >= 0)[:, None]
        alr = _alpha_quad(diag_ptr, row_start, pos, n, live, z_re)
        g, e, er, ei = _right_quad(alr, ali, _k_quad(k_ptr, k_row_start, pos, n, live), pdr, pdi, er, ei)
        _store_quad(out_ptr, row_start, first, n, first >= 0, g)
        if SAVE:
            _store_quad(ratios_ptr, row_start, first, n, first >= 0, tl.join(pdr, pdi))
            _store_quad(ratios_ptr + e_offset, row_start, first, n, first >= 0, e)
        return er, ei

    @triton.jit
    def _entering(totals_ptr, first, count, STEP: tl.constexpr, xr, xi):
        """x carried through the segment maps first, first + STEP, ... (count of them), in that order."""
        for j in range(0, count):
            t = totals_ptr + (first + STEP * j) * 16
            xr, xi = _apply_map(tl.load(t + 0, volatile=True), tl.load(t + 1, volatile=True),
                                tl.load(t + 2, volatile=True), tl.load(t + 3, volatile=True),
                                tl.load(t + 4, volatile=True), tl.load(t + 5, volatile=True),
                                tl.load(t + 6, volatile=True), tl.load(t + 7, volatile=True), xr, xi)
        return xr, xi

    @triton.jit
    def _publish(where, mask, ar, ai, br, bi, cr, ci, dr, di):
        """The 2x2 complex matrix held by the lanes in `mask` (one lane) at where[0:8]."""
        where = where + tl.zeros(mask.shape, tl.int32)  # one address per lane; only `mask` stores
        tl.store(where + 0, ar, mask=mask)
        tl.store(where + 1, ai, mask=mask)
        tl.store(where + 2, br, mask=mask)
        tl.store(where + 3, bi, mask=mask)
        tl.store(where + 4, cr, mask=mask)
        tl.store(where + 5, ci, mask=mask)
        tl.store(where + 6, dr, mask=mask)
        tl.store(where + 7, di, mask=mask)

    @triton.jit
    def _rows_kernel(diag_ptr, k_ptr, out_ptr, sync_ptr, totals_ptr, ratios_ptr, e_offset, n, segments,
                     z_re: tl.float64, alpha_im: tl.float64,
                     LANES: tl.constexpr, LOG2_LANES: tl.constexpr, QUADS: tl.constexpr,
                     FP64: tl.constexpr, SEGMENTED: tl.constexpr, SAVE: tl.constexpr):
        """One segment of LANES x 4 QUADS positions per program; lane c owns [4 QUADS c, 4 QUADS (c + 1))
        of its segment. Unsegmented: segment = row = program. Segmented: a ticket (sync_ptr[0])
        names the program's row and segment, so every program a segment waits for has started."""
        if SEGMENTED:
            ticket = tl.atomic_add(sync_ptr, 1)
            row = (ticket // segments).to(tl.int64)
            segment = ticket % segments
        else:
            row = tl.program_id(0).to(tl.int64)
            segment = 0
        row_start = row * n
        k_row_start = row * (n - 1)
        lane = tl.arange(0, LANES)
        live = lane < LANES
        start = segment * (LANES * 4 * QUADS) + lane * (4 * QUADS)
        quad = tl.arange(0, 4)[None, :]
        ali = tl.cast(alpha_im, diag_ptr.dtype.element_ty)
        one = tl.full([LANES], 1.0, diag_ptr.dtype.element_ty)
        zero = tl.zeros([LANES], diag_ptr.dtype.element_ty)
        par, pai, pbr, pbi, pcr, pci, pdr, pdi = one, zero, zero, zero, zero, zero, one, zero
        qar, qai, qbr, qbi, qcr, qci, qdr, qdi = one, zero, zero, zero, zero, zero, one, zero
        k_before = tl.load(k_ptr + k_row_start + start - 1, mask=(start > 0) & (start < n), other=0.0)
        kb = k_before
        # 1. this lane's chunk maps: P = M_last ... M_first (left), Q = M_first ... M_last (right)
        for q in tl.static_range(QUADS):
            pos = (start + 4 * q)[:, None] + quad
            alr = _alpha_quad(diag_ptr, row_start, pos, n, live[:, None], z_re)
            kk = _k_quad(k_ptr, k_row_start, pos, n, live[:, None])
            par, pai, pbr, pbi, pcr, pci, pdr, pdi, qar, qai, qbr, qbi, qcr, qci, qdr, qdi, kb = _maps_quad(
                par, pai, pbr, pbi, pcr, pci, pdr, pdi, qar, qai, qbr, qbi, qcr, qci, qdr, qdi, alr, ali, kb, kk, FP64)
        # 2. inclusive products across lanes; the segment's own maps are those of its last (left)
        # and first (right) lane; shifted by one lane they are the products before and after each lane
        par, pai, pbr, pbi, pcr, pci, pdr, pdi = _scan_products(par, pai, pbr, pbi, pcr, pci, pdr, pdi, lane,
                                                                LANES, LOG2_LANES, False, FP64)
        qar, qai, qbr, qbi, qcr, qci, qdr, qdi = _scan_products(qar, qai, qbr, qbi, qcr, qci, qdr, qdi, lane,
                                                                LANES, LOG2_LANES, True, FP64)
        xr = tl.full([], 1.0, diag_ptr.dtype.element_ty)
        xi = tl.full([], 0.0, diag_ptr.dtype.element_ty)
        yr, yi = xr, xi
        if SEGMENTED:
            # 2b. publish this segment's maps, wait for the row's other segments, carry through theirs
            mine = totals_ptr + (row * segments + segment) * 16
            _publish(mine, lane == LANES - 1, par, pai, pbr, pbi, pcr, pci, pdr, pdi)
            _publish(mine + 8, lane == 0, qar, qai, qbr, qbi, qcr, qci, qdr, qdi)
            tl.debug_barrier()
            tl.atomic_add(sync_ptr + 1 + row, 1, sem="release")
            arrived = tl.atomic_add(sync_ptr + 1 + row, 0, sem="acquire")
            while arrived < segments:
                arrived = tl.atomic_add(sync_ptr + 1 + row, 0, sem="acquire")
            xr, xi = _entering(totals_ptr, row * segments, segment, 1, xr, xi)
            yr, yi = _entering(totals_ptr + 8, row * segments + segments - 1, segments - 1 - segment, -1, yr, yi)
        par, pai, pbr, pbi, pcr, pci, pdr, pdi = _partner(par, pai, pbr, pbi, pcr, pci, pdr, pdi,
                                                          tl.maximum(lane - 1, 0), lane >= 1)
        qar, qai, qbr, qbi, qcr, qci, qdr, qdi = _partner(qar, qai, qbr, qbi, qcr, qci, qdr, qdi,
                                                          tl.minimum(lane + 1, LANES - 1), lane + 1 < LANES)
        dr, di = _apply_map(par, pai, pbr, pbi, pcr, pci, pdr, pdi, xr, xi)
        er, ei = _apply_map(qar, qai, qbr, qbi, qcr, qci, qdr, qdi, yr, yi)
        # 3. the ratio sweeps over this lane's chunk (its inputs are in L1 from step 1): left
        # from the first quad, keeping each quad's d; right from the last, writing G
        d0r, d0i, dr, di, kb = _left_sweep(diag_ptr, k_ptr, row_start, k_row_start, start, n, z_re, ali, k_before, dr, di)
        if QUADS > 1:
            d1r, d1i, dr, di, kb = _left_sweep(diag_ptr, k_ptr, row_start, k_row_start, start + 4, n, z_re, ali, kb, dr, di)
        if QUADS > 2:
            d2r, d2i, dr, di, kb = _left_sweep(diag_ptr, k_ptr, row_start, k_row_start, start + 8, n, z_re, ali, kb, dr, di)
            d3r, d3i, dr, di, kb = _left_sweep(diag_ptr, k_ptr, row_start, k_row_start, start + 12, n, z_re, ali, kb, dr, di)
        if QUADS > 2:
            er, ei = _right_sweep(diag_ptr, k_ptr, out_ptr, ratios_ptr, e_offset, row_start, k_row_start, start + 12, n, z_re, ali,
                                  d3r, d3i, er, ei, SAVE)
            er, ei = _right_sweep(diag_ptr, k_ptr, out_ptr, ratios_ptr, e_offset, row_start, k_row_start, start + 8, n, z_re, ali,
                                  d2r, d2i, er, ei, SAVE)
        if QUADS > 1:
            er, ei = _right_sweep(diag_ptr, k_ptr, out_ptr, ratios_ptr, e_offset, row_start, k_row_start, start + 4, n, z_re, ali,
                                  d1r, d1i, er, ei, SAVE)
        _right_sweep(diag_ptr, k_ptr, out_ptr, ratios_ptr, e_offset, row_start, k_row_start, start, n, z_re, ali,
                                  d0r, d0i, er, ei, SAVE)


    # ---- the backward: the closed-form adjoint (bkprof.core.adjoint) from the saved ratios d and e ----

    @triton.jit
    def _cmul(ar, ai, br, bi):
        """(a)(b) complex: 6 FLOPs."""
        return ar * br - ai * bi, ar * bi + ai * br

    @triton.jit
    def _affine_after(a2r, a2i, b2r, b2i, a1r, a1i, b1r, b1i):
        """The affine map y -> a2 (a1 y + b1) + b2 as (a2 a1, a2 b1 + b2): 14 FLOPs."""
        ar, ai = _cmul(a2r, a2i, a1r, a1i)
        br, bi = _cmul(a2r, a2i, b1r, b1i)
        return ar, ai, br + b2r, bi + b2i

    @triton.jit
    def _affine_partner(ar, ai, br, bi, src, has):
        """The affine map held by lane `src`, or the identity (1, 0) where `has` is false (no FLOPs)."""
        return (tl.where(has, tl.gather(ar, src, 0), 1.0), tl.where(has, tl.gather(ai, src, 0), 0.0),
                tl.where(has, tl.gather(br, src, 0), 0.0), tl.where(has, tl.gather(bi, src, 0), 0.0))

    @triton.jit
    def _scan_affine(ar, ai, br, bi, lane, LANES: tl.constexpr, LOG2_LANES: tl.constexpr, REVERSE: tl.constexpr):
        """Inclusive composition across lanes (lane c: the maps of lanes 0..c applied in order, or
        LANES-1..c when REVERSE), in LOG2_LANES Hillis-Steele steps: 14 FLOPs per lane and step."""
        for step in tl.static_range(LOG2_LANES):
            src, has = _scan_partner(lane, step, LANES, REVERSE)
            gar, gai, gbr, gbi = _affine_partner(ar, ai, br, bi, src, has)
            ar, ai, br, bi = _affine_after(ar, ai, br, bi, gar, gai, gbr, gbi)
        return ar, ai, br, bi

    @triton.jit
    def _load_pairs(ptr, row_start, pos, valid, other_re):
        """Real and imaginary (lanes, 4) tiles of a (B, N, 2) buffer; (other_re, 0) where not valid."""
        where = ptr + 2 * (row_start + pos)
        return tl.load(where, mask=valid, other=other_re), tl.load(where + 1, mask=valid, other=0.0)

    @triton.jit
    def _real_over_square(kap, xr, xi):
        """kap / x^2 for real kap and complex x: 10 FLOPs."""
        rr = xr * xr
        ii = xi * xi
        m = rr + ii
        s = kap / (m * m)
        return s * (rr - ii), -2.0 * s * xr * xi

    @triton.jit
    def _weights(grad_ptr, d_ptr, e_ptr, k_ptr, row_start, k_row_start, pos, n):
        """Per position of a (lanes, 4) tile: c = conj(v) G^2 with G = 1 / (d - k / e_next), and the
        inputs it used: 27 FLOPs. Past the row's end d = e = 1 and v = k = 0, so c = 0."""
        valid = pos < n
        dr, di = _load_pairs(d_ptr, row_start, pos, valid, 1.0)
        enr, eni = _load_pairs(e_ptr, row_start, pos + 1, pos + 1 < n, 1.0)
        vr, vi = _load_pairs(grad_ptr, row_start, pos, valid, 0.0)
        kk = tl.load(k_ptr + k_row_start + pos, mask=pos < n - 1, other=0.0)
        s = kk / (enr * enr + eni * eni)
        wr = dr - s * enr
        wi = di + s * eni           # w = d - k / e_next
        q = 1.0 / (wr * wr + wi * wi)
        gr = wr * q
        gi = -(wi * q)               # G = 1 / w
        g2r = gr * gr - gi * gi
        g2i = 2.0 * gr * gi          # G^2
        cr, ci = _cmul(vr, -vi, g2r, g2i)
        return cr, ci, dr, di, enr, eni, kk

    @triton.jit
    def _lane_maps(a0r, a0i, a1r, a1i, a2r, a2i, a3r, a3i, c0r, c0i, c1r, c1i, c2r, c2i, c3r, c3i):
        """The lane's four steps y -> a_j y + c_j composed in the order given: 42 FLOPs."""
        ar, ai, br, bi = _affine_after(a1r, a1i, c1r, c1i, a0r, a0i, c0r, c0i)
        ar, ai, br, bi = _affine_after(a2r, a2i, c2r, c2i, ar, ai, br, bi)
        return _affine_after(a3r, a3i, c3r, c3i, ar, ai, br, bi)

    @triton.jit
    def _step(ar, ai, yr, yi, cr, ci):
        """a y + c: 8 FLOPs."""
        pr, pi = _cmul(ar, ai, yr, yi)
        return pr + cr, pi + ci

    @triton.jit
    def _entering_affine(ar, ai, br, bi, lane, carry_r, carry_i, LANES: tl.constexpr, REVERSE: tl.constexpr):
        """The value entering each lane's chunk: the maps of the lanes before it (after it when REVERSE),
        exclusive, applied to the carry from the previous block: 8 FLOPs per lane."""
        if REVERSE:
            xar, xai, xbr, xbi = _affine_partner(ar, ai, br, bi, tl.minimum(lane + 1, LANES - 1), lane + 1 < LANES)
        else:
            xar, xai, xbr, xbi = _affine_partner(ar, ai, br, bi, tl.maximum(lane - 1, 0), lane >= 1)
        return _step(xar, xai, carry_r, carry_i, xbr, xbi)

    @triton.jit
    def _affine_sweep(ar, ai, cr, ci, lane, carry_r, carry_i, LANES: tl.constexpr, LOG2_LANES: tl.constexpr,
                      REVERSE: tl.constexpr):
        """y_j = a_j y_{j-1} + c_j over a block ((lanes, 4) tiles of a and c; right to left, y_j =
        a_j y_{j+1} + c_j, when REVERSE) from the carry entering it: each lane's four steps composed,
        the lanes' maps scanned, each lane entered and swept. Returns y of columns 0..3."""
        a0r, a1r, a2r, a3r = _unpack4(ar)
        a0i, a1i, a2i, a3i = _unpack4(ai)
        c0r, c1r, c2r, c3r = _unpack4(cr)
        c0i, c1i, c2i, c3i = _unpack4(ci)
        if REVERSE:
            mar, mai, mbr, mbi = _lane_maps(a3r, a3i, a2r, a2i, a1r, a1i, a0r, a0i,
                                            c3r, c3i, c2r, c2i, c1r, c1i, c0r, c0i)
        else:
            mar, mai, mbr, mbi = _lane_maps(a0r, a0i, a1r, a1i, a2r, a2i, a3r, a3i,
                                            c0r, c0i, c1r, c1i, c2r, c2i, c3r, c3i)
        mar, mai, mbr, mbi = _scan_affine(mar, mai, mbr, mbi, lane, LANES, LOG2_LANES, REVERSE)
        yr, yi = _entering_affine(mar, mai, mbr, mbi, lane, carry_r, carry_i, LANES, REVERSE)
        if REVERSE:
            y3r, y3i = _step(a3r, a3i, yr, yi, c3r, c3i)
            y2r, y2i = _step(a2r, a2i, y3r, y3i, c2r, c2i)
            y1r, y1i = _step(a1r, a1i, y2r, y2i, c1r, c1i)
            y0r, y0i = _step(a0r, a0i, y1r, y1i, c0r, c0i)
        else:
            y0r, y0i = _step(a0r, a0i, yr, yi, c0r, c0i)
            y1r, y1i = _step(a1r, a1i, y0r, y0i, c1r, c1i)
            y2r, y2i = _step(a2r, a2i, y1r, y1i, c2r, c2i)
            y3r, y3i = _step(a3r, a3i, y2r, y2i, c3r, c3i)
        return y0r, y0i, y1r, y1i, y2r, y2i, y3r, y3i

    @triton.jit
    def _adjoint_kernel(grad_ptr, d_ptr, e_ptr, k_ptr, gd_ptr, gk_ptr, n,
                        LANES: tl.constexpr, LOG2_LANES: tl.constexpr):
        """One row per program, in blocks of LANES x 4 positions (lane c owns 4 consecutive ones).
        Pass 1, left to right: U_j = c_j + r_{j-1} U_{j-1} (r_j = k_j / e_{j+1}^2), writing
        Re(c - U) to dL/dalpha and Re(U / e_next) to dL/dk. Pass 2, right to left: V_j = c_j + s_j V_{j+1}
        (s_j = k_j / d_j^2), subtracting Re V and adding Re(V_next / d). A block composes each lane's
        steps, scans the lanes' maps, enters each lane from the carry and sweeps its four positions."""
        row = tl.program_id(0).to(tl.int64)
        row_start = row * n
        k_row_start = row * (n - 1)
        blocks = tl.cdiv(n, LANES * 4)
        lane = tl.arange(0, LANES)
        quad = tl.arange(0, 4)[None, :]
        carry_r = tl.zeros([LANES], gd_ptr.dtype.element_ty)
        carry_i = tl.zeros([LANES], gd_ptr.dtype.element_ty)
        block = 0
        while block < blocks:  # a while loop: Triton's interpreter cannot range() over a runtime value
            pos = (block * (LANES * 4) + lane * 4)[:, None] + quad
            cr, ci, dr, di, enr, eni, kk = _weights(grad_ptr, d_ptr, e_ptr, k_ptr, row_start, k_row_start, pos, n)
            kp = tl.load(k_ptr + k_row_start + pos - 1, mask=(pos >= 1) & (pos < n), other=0.0)
            er, ei = _load_pairs(e_ptr, row_start, pos, pos < n, 1.0)
            ar, ai = _real_over_square(kp, er, ei)   # r_{j-1}
            u0r, u0i, u1r, u1i, u2r, u2i, u3r, u3i = _affine_sweep(ar, ai, cr, ci, lane, carry_r, carry_i,
                                                                   LANES, LOG2_LANES, False)
            carry_r = tl.gather(u3r, tl.full([LANES], LANES - 1, tl.int32), 0)
            carry_i = tl.gather(u3i, tl.full([LANES], LANES - 1, tl.int32), 0)
            ur = _pack4(u0r, u1r, u2r, u3r)
            ui = _pack4(u0i, u1i, u2i, u3i)
            tl.store(gd_ptr + row_start + pos, cr - ur, mask=pos < n)
            tl.store(gk_ptr + k_row_start + pos, (ur * enr + ui * eni) / (enr * enr + eni * eni), mask=pos < n - 1)
            block += 1
        tl.debug_barrier()  # pass 2 reads what other threads of this program wrote in pass 1
        carry_r = tl.zeros([LANES], gd_ptr.dtype.element_ty)
        carry_i = tl.zeros([LANES], gd_ptr.dtype.element_ty)
        block = blocks - 1
        while block >= 0:
            pos = (block * (LANES * 4) + lane * 4)[:, None] + quad
            cr, ci, dr, di, enr, eni, kk = _weights(grad_ptr, d_ptr, e_ptr, k_ptr, row_start, k_row_start, pos, n)
            ar, ai = _real_over_square(kk, dr, di)   # s_j
            v0r, v0i, v1r, v1i, v2r, v2i, v3r, v3i = _affine_sweep(ar, ai, cr, ci, lane, carry_r, carry_i,
                                                                   LANES, LOG2_LANES, True)
            # V_{j+1} beside each position: the next column, or the next lane's first (the carry for the last lane)
            nxr = tl.where(lane + 1 < LANES, tl.gather(v0r, tl.minimum(lane + 1, LANES - 1), 0), carry_r)
            nxi = tl.where(lane + 1 < LANES, tl.gather(v0i, tl.minimum(lane + 1, LANES - 1), 0), carry_i)
            carry_r = tl.gather(v0r, tl.zeros([LANES], tl.int32), 0)
            carry_i = tl.gather(v0i, tl.zeros([LANES], tl.int32), 0)
            vr = _pack4(v0r, v1r, v2r, v3r)
            nr = _pack4(v1r, v2r, v3r, nxr)
            ni = _pack4(v1i, v2i, v3i, nxi)
            where_d = gd_ptr + row_start + pos
            tl.store(where_d, tl.load(where_d, mask=pos < n, other=0.0) - vr, mask=pos < n)
            where_k = gk_ptr + k_row_start + pos
            tl.store(where_k, tl.load(where_k, mask=pos < n - 1, other=0.0)
                     + (nr * dr + ni * di) / (dr * dr + di * di), mask=pos < n - 1)
            block -= 1


# Whether the kernels run in Triton's interpreter (TRITON_INTERPRET=1 when this module was imported):
# then they take CPU tensors, one program after another, so rows of several segments (whose programs
# wait for each other) would never finish there.
INTERPRETED = triton is not None and type(_rows_kernel).__name__ == "InterpretedFunction"
# the device types whose tensors the launchers can run on
KERNEL_DEVICE_TYPES = frozenset({"cuda", "cpu"} if INTERPRETED else {"cuda"})


@functools.lru_cache(maxsize=None)
def _forward_meta(n: int, fp64: bool, save: bool) -> tuple[int, dict]:
    """Segments per row and the forward kernel's compile-time arguments for rows of length n, built
    once per (n, dtype, save): the launch's own Python work is then one dict expansion."""
    lanes, per_lane, segments = row_layout(n)
    return segments, dict(LANES=lanes, LOG2_LANES=lanes.bit_length() - 1, QUADS=per_lane // QUAD, FP64=fp64,
                          SEGMENTED=segments > 1, SAVE=save, num_warps=lanes // 32)


@functools.lru_cache(maxsize=None)
def _adjoint_meta(n: int) -> dict:
    """The backward kernel's compile-time arguments for rows of length n, built once per n."""
    lanes, _ = adjoint_layout(n)
    return dict(LANES=lanes, LOG2_LANES=lanes.bit_length() - 1, num_warps=lanes // 32)


def launch(diag: torch.Tensor, k: torch.Tensor, z: complex, out: torch.Tensor, ratios: torch.Tensor | None = None) -> None:
    """Write G_ii for contiguous diag (B, N) and k (B, N-1) into out (B, N, 2) (real, imaginary), and
    when `ratios` (2, B, N, 2) is given the left ratios d into ratios[0] and the right ratios e into ratios[1].
    No host sync; rows of one segment (N <= 2048) launch no other kernel, longer rows one small fill
    (their B + 1 counters)."""
    rows, n = diag.shape
    if rows == 0:
        return
    save = ratios is not None
    segments, meta = _forward_meta(n, diag.dtype == torch.float64, save)
    if segments == 1:
        sync = totals = out  # not touched: the kernel reads and writes them only when segmented
    else:
        sync = torch.zeros(rows + 1, dtype=torch.int32, device=diag.device)  # ticket, then arrivals per row
        totals = diag.new_empty(rows * segments * 16)  # each segment's left and right map
    _rows_kernel[(rows * segments,)](diag, k, out, sync, totals, ratios if save else out, rows * n * 2, n, segments,
                                     float(z.real), -float(z.imag), **meta)


@functools.lru_cache(maxsize=None)
def adjoint_layout(n: int) -> tuple[int, int]:
    """Lanes per program of the backward (a power of two, a warp at least, ADJOINT_MAX_LANES at most)
    and blocks of 4 x lanes positions per row of length n."""
    lanes = min(ADJOINT_MAX_LANES, max(MIN_LANES, 1 << math.ceil(math.log2(-(-n // QUAD)))))
    return lanes, -(-n // (QUAD * lanes))


def backward_kernel_flops(rows: int, n: int) -> int:
    """Real FLOPs of the backward kernel for `rows` rows of length n (gradients for diag and k),
    with `kernel_flops`'s convention, on the padded grid of `adjoint_layout`: per block of W lanes
    x 4 positions, 107 per position slot (pass 1: c 27, r 10, step 8, outputs 8; pass 2: c 27, s 10,
    step 8, outputs 9) and per lane, in each pass, 42 to compose its four steps, 14 per scan step
    (log2 W of them) and 8 to enter its chunk. Exactly linear in rows."""
    lanes, blocks = adjoint_layout(n)
    per_lane_pass = ADJOINT_COMPOSE_FLOPS + ADJOINT_SCAN_STEP_FLOPS * (lanes.bit_length() - 1) + ADJOINT_ENTER_FLOPS
    return rows * blocks * lanes * (QUAD * ADJOINT_FLOPS_PER_SLOT + 2 * per_lane_pass)


def launch_adjoint(grad: torch.Tensor, ratios: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """dL/ddiag (B, N) and dL/dk (B, N-1) from the complex gradient of G (B, N), the saved ratios
    (2, B, N, 2) and k (B, N-1): the closed-form adjoint of bkprof.core.adjoint. Both outputs are
    written whole by the kernel (no fill); grad is copied only when it is not a contiguous,
    unconjugated tensor (autograd's gradient of G normally is)."""
    rows, n = grad.shape
    grad_diag = ratios.new_empty((rows, n))
    grad_k = ratios.new_empty((rows, max(n - 1, 0)))
    if rows == 0:
        return grad_diag, grad_k
    pairs = torch.view_as_real(grad.resolve_conj().contiguous())
    _adjoint_kernel[(rows,)](pairs, ratios[0], ratios[1], k, grad_diag, grad_k, n, **_adjoint_meta(n))
    return grad_diag, grad_k


def _forward(diag: torch.Tensor, k: torch.Tensor, z: complex) -> torch.Tensor:
    out = diag.new_empty((*diag.shape, 2))
    launch(diag, k, z, out)
    return torch.view_as_complex(out)


def _complex_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.complex128 if dtype == torch.float64 else torch.complex64


@torch.library.custom_op("bkprof::tridiag_resolvent_diagonal_triton", mutates_args=(), device_types=sorted(KERNEL_DEVICE_TYPES))
def resolvent_diagonal_op(diag: torch.Tensor, k: torch.Tensor, z_real: float, z_imag: float) -> torch.Tensor:
    """G_ii (B, N) complex from contiguous real diag (B, N) and couplings k (B, N-1), by `launch` (forward only)."""
    return _forward(diag, k, complex(z_real, z_imag))


@resolvent_diagonal_op.register_fake
def _fake(diag, k, z_real, z_imag):
    return diag.new_empty(diag.shape, dtype=_complex_dtype(diag.dtype))


@torch.library.custom_op("bkprof::tridiag_resolvent_diagonal_triton_train", mutates_args=(), device_types=sorted(KERNEL_DEVICE_TYPES))
def resolvent_diagonal_train_op(diag: torch.Tensor, k: torch.Tensor, z_real: float,
                                z_imag: float) -> tuple[torch.Tensor, torch.Tensor]:
    """G_ii as `resolvent_diagonal_op`, and the ratios d and e (2, B, N, 2) the backward needs, from the same kernel."""
    out = diag.new_empty((*diag.shape, 2))
    ratios = diag.new_empty((2, *diag.shape, 2))
    launch(diag, k, complex(z_real, z_imag), out, ratios)
    return torch.view_as_complex(out), ratios


@resolvent_diagonal_train_op.register_fake
def _fake_train(diag, k, z_real, z_imag):
    return diag.new_empty(diag.shape, dtype=_complex_dtype(diag.dtype)), diag.new_empty((2, *diag.shape, 2))


@torch.library.custom_op("bkprof::tridiag_resolvent_adjoint_triton", mutates_args=(), device_types=sorted(KERNEL_DEVICE_TYPES))
def resolvent_adjoint_op(grad: torch.Tensor, ratios: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """dL/ddiag (B, N) and dL/dk (B, N-1) by `launch_adjoint`."""
    return launch_adjoint(grad, ratios, k)


@resolvent_adjoint_op.register_fake
def _fake_adjoint(grad, ratios, k):
    rows, n = grad.shape
    return ratios.new_empty((rows, n)), ratios.new_empty((rows, max(n - 1, 0)))


def _setup_context(ctx, inputs, output) -> None:
    _, k, _, _ = inputs
    _, ratios = output
    ctx.mark_non_differentiable(ratios)
    # the ratios output never gets a gradient: without this autograd would fill one with zeros
    # (16 B per position written, a 58 µs kernel at 1,024 x 16,384 on the H200) for every backward
    ctx.set_materialize_grads(False)
    ctx.save_for_backward(ratios, k)


def _backward(ctx, grad, _grad_ratios):
    """The closed-form adjoint from the saved ratios: 16 B per position in float32 (d and e, complex),
    plus k, which is the op's input. grad is None when no gradient reached G (grads not materialised)."""
    if grad is None:
        return None, None, None, None
    ratios, k = ctx.saved_tensors
    grad_diag, grad_k = resolvent_adjoint_op(grad, ratios, k)
    return _wanted(ctx, grad_diag, grad_k) + (None, None)


def _wanted(ctx, grad_diag: torch.Tensor, grad_k: torch.Tensor) -> tuple:
    """The gradients of diag and k that autograd asked for (None for the other)."""
    return (grad_diag if ctx.needs_input_grad[0] else None, grad_k if ctx.needs_input_grad[1] else None)


resolvent_diagonal_train_op.register_autograd(_backward, setup_context=_setup_context)


class _EagerResolvent(torch.autograd.Function):
    """The eager training path: the same kernels as the train and adjoint ops, launched straight from
    a plain autograd.Function, without the dispatcher's custom-op wrappers (tens of µs of host time a
    call, more than both kernels at small sizes). Used only where nothing would see the difference
    (`_plain`): no dispatch mode such as FlopCounterMode or fake tensors, no compiler, no tracer;
    those take the custom ops, which carry the fake implementations and FLOP formulas.
    Saves what the backward reads: the ratios (16 B per position in float32) and k (the input itself)."""

    @staticmethod
    def forward(ctx, diag: torch.Tensor, k: torch.Tensor, z: complex) -> torch.Tensor:
        out = diag.new_empty((*diag.shape, 2))
        ratios = diag.new_empty((2, *diag.shape, 2))
        launch(diag, k, z, out, ratios)
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(ratios, k)
        return torch.view_as_complex(out)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        if grad is None:
            return None, None, None
        ratios, k = ctx.saved_tensors
        return _wanted(ctx, *launch_adjoint(grad, ratios, k)) + (None,)


@register_flop_formula([torch.ops.bkprof.tridiag_resolvent_diagonal_triton,
                        torch.ops.bkprof.tridiag_resolvent_diagonal_triton_train])
def _op_flops(diag_shape, k_shape, z_real, z_imag, *args, out_shape=None, **kwargs) -> int:
    return kernel_flops(*diag_shape)


@register_flop_formula(torch.ops.bkprof.tridiag_resolvent_adjoint_triton)
def _adjoint_op_flops(grad_shape, ratios_shape, k_shape, *args, out_shape=None, **kwargs) -> int:
    return backward_kernel_flops(*grad_shape)


def _needs_grad(diag: torch.Tensor, k: torch.Tensor) -> bool:
    return torch.is_grad_enabled() and (diag.requires_grad or k.requires_grad)


def _plain(diag: torch.Tensor, k: torch.Tensor) -> bool:
    """True when no compiler, tracer, dispatch mode (FlopCounterMode, fake tensors), functorch
    transform or tensor subclass would see the op, and the launchers can run on diag's device.
    The compiler is asked first: under torch.compile the rest is not traced."""
    return (not torch.compiler.is_compiling() and type(diag) is torch.Tensor and type(k) is torch.Tensor
            and diag.device.type in KERNEL_DEVICE_TYPES and _get_current_dispatch_mode() is None
            and not torch.jit.is_tracing() and not torch._C._are_functorch_transforms_active())


def available(device: torch.device | str) -> bool:
    return triton is not None and torch.device(device).type == "cuda" and torch.cuda.is_available()


def run(diag: torch.Tensor, k: torch.Tensor, z: complex) -> torch.Tensor:
    """G_ii: the kernels launched directly when nothing observes the call (`_plain`), through the
    custom ops otherwise; with a gradient needed the forward also saves the ratios for the backward."""
    z = complex(z)
    diag, k = diag.contiguous(), k.contiguous()
    plain = _plain(diag, k)
    if _needs_grad(diag, k):
        if plain:
            return _EagerResolvent.apply(diag, k, z)
        return resolvent_diagonal_train_op(diag, k, z.real, z.imag)[0]
    if plain:
        return _forward(diag, k, z)
    return resolvent_diagonal_op(diag, k, z.real, z.imag)


register_backend(Backend("triton", run, available,
                         "Triton kernel: segments of in-register scans of transfer matrices, then ratio sweeps (CUDA)",
                         kernel_flops=kernel_flops, backward_flops=backward_kernel_flops))

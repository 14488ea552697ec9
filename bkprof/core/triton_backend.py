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

The op is `torch.ops.bkprof.tridiag_resolvent_diagonal_triton`: a custom op with a fake (meta)
implementation, a backward that recomputes through the vectorized PyTorch scan (`_backward`),
and a FLOP formula in torch's flop registry (`kernel_flops`). `run` calls the kernel directly
when nothing can observe the op (no autograd, no dispatch mode such as FlopCounterMode, no
compile): the dispatcher and autograd wrapper cost tens of µs, more than the kernel at small sizes.
"""

from __future__ import annotations

import math

import torch
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
SWEEP_FLOPS_PER_SLOT = 26         # alpha 1 + left ratio step 8 + right ratio step and G_ii 17
SEGMENT_WALK_FLOPS = 28           # Moebius apply, per program and other segment of its row
SCAN_STEP_FLOPS = 79              # 2x2 complex matrix product 56 + rescale 23, per lane and scan step


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
    position slots, 65 per slot (transfer matrices) + 26 per slot (sweeps)
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
        G as a (lanes, 4, 2) tile (real, imaginary) and the e leaving on the left."""
        a0, a1, a2, a3 = _unpack4(alr)
        k0, k1, k2, k3 = _unpack4(kk)
        p0r, p1r, p2r, p3r = _unpack4(pdr)
        p0i, p1i, p2i, p3i = _unpack4(pdi)
        er, ei, g3r, g3i = _right_step(a3, ali, k3, er, ei, p3r, p3i)
        er, ei, g2r, g2i = _right_step(a2, ali, k2, er, ei, p2r, p2i)
        er, ei, g1r, g1i = _right_step(a1, ali, k1, er, ei, p1r, p1i)
        er, ei, g0r, g0i = _right_step(a0, ali, k0, er, ei, p0r, p0i)
        return tl.join(_pack4(g0r, g1r, g2r, g3r), _pack4(g0i, g1i, g2i, g3i)), er, ei

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
    def _scan_products(ar, ai, br, bi, cr, ci, dr, di, lane, LANES: tl.constexpr, LOG2_LANES: tl.constexpr,
                       REVERSE: tl.constexpr, FP64: tl.constexpr):
        """Inclusive products across lanes: lane c ends with X_c @ X_{c-1} @ ... @ X_0, or reversed
        X_c @ X_{c+1} @ ... @ X_{LANES-1}, in LOG2_LANES Hillis-Steele steps. Every lane multiplies
        at every step (by the identity where it has no partner): 79 FLOPs per lane and step."""
        for step in tl.static_range(LOG2_LANES):
            if REVERSE:
                src = tl.minimum(lane + (1 << step), LANES - 1)
                has = lane + (1 << step) < LANES
            else:
                src = tl.maximum(lane - (1 << step), 0)
                has = lane >= (1 << step)
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
    def _right_sweep(diag_ptr, k_ptr, out_ptr, row_start, k_row_start, first, n, z_re, ali, pdr, pdi, er, ei):
        """The right recursion over the quad from `first`, with its d: stores its G, returns e leaving."""
        pos = first[:, None] + tl.arange(0, 4)[None, :]
        live = (first >= 0)[:, None]
        alr = _alpha_quad(diag_ptr, row_start, pos, n, live, z_re)
        g, er, ei = _right_quad(alr, ali, _k_quad(k_ptr, k_row_start, pos, n, live), pdr, pdi, er, ei)
        _store_quad(out_ptr, row_start, first, n, first >= 0, g)
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
    def _rows_kernel(diag_ptr, k_ptr, out_ptr, sync_ptr, totals_ptr, n, segments,
                     z_re: tl.float64, alpha_im: tl.float64,
                     LANES: tl.constexpr, LOG2_LANES: tl.constexpr, QUADS: tl.constexpr,
                     FP64: tl.constexpr, SEGMENTED: tl.constexpr):
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
            er, ei = _right_sweep(diag_ptr, k_ptr, out_ptr, row_start, k_row_start, start + 12, n, z_re, ali, d3r, d3i, er, ei)
            er, ei = _right_sweep(diag_ptr, k_ptr, out_ptr, row_start, k_row_start, start + 8, n, z_re, ali, d2r, d2i, er, ei)
        if QUADS > 1:
            er, ei = _right_sweep(diag_ptr, k_ptr, out_ptr, row_start, k_row_start, start + 4, n, z_re, ali, d1r, d1i, er, ei)
        _right_sweep(diag_ptr, k_ptr, out_ptr, row_start, k_row_start, start, n, z_re, ali, d0r, d0i, er, ei)


def launch(diag: torch.Tensor, k: torch.Tensor, z: complex, out: torch.Tensor) -> None:
    """Write G_ii for contiguous diag (B, N) and k (B, N-1) into out (B, N, 2) (real, imaginary)."""
    rows, n = diag.shape
    if rows == 0:
        return
    lanes, per_lane, segments = row_layout(n)
    if segments == 1:
        sync = totals = out  # not touched: the kernel reads and writes them only when segmented
    else:
        sync = torch.zeros(rows + 1, dtype=torch.int32, device=diag.device)  # ticket, then arrivals per row
        totals = diag.new_empty(rows * segments * 16)  # each segment's left and right map
    _rows_kernel[(rows * segments,)](diag, k, out, sync, totals, n, segments, float(z.real), -float(z.imag),
                                     LANES=lanes, LOG2_LANES=lanes.bit_length() - 1, QUADS=per_lane // QUAD,
                                     FP64=diag.dtype == torch.float64, SEGMENTED=segments > 1,
                                     num_warps=lanes // 32)


def _forward(diag: torch.Tensor, k: torch.Tensor, z: complex) -> torch.Tensor:
    out = diag.new_empty((*diag.shape, 2))
    launch(diag, k, z, out)
    return torch.view_as_complex(out)


def _complex_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.complex128 if dtype == torch.float64 else torch.complex64


@torch.library.custom_op("bkprof::tridiag_resolvent_diagonal_triton", mutates_args=(), device_types="cuda")
def resolvent_diagonal_op(diag: torch.Tensor, k: torch.Tensor, z_real: float, z_imag: float) -> torch.Tensor:
    """G_ii (B, N) complex from contiguous real diag (B, N) and couplings k (B, N-1), by `launch`."""
    return _forward(diag, k, complex(z_real, z_imag))


@resolvent_diagonal_op.register_fake
def _fake(diag, k, z_real, z_imag):
    return diag.new_empty(diag.shape, dtype=_complex_dtype(diag.dtype))


def _setup_context(ctx, inputs, output) -> None:
    diag, k, z_real, z_imag = inputs
    ctx.save_for_backward(diag, k)
    ctx.z = complex(z_real, z_imag)


def _backward(ctx, grad):
    """Recompute G through the vectorized scan (`sweeps.scan_sweeps`, pure PyTorch) and pull `grad`
    back through it: no Triton adjoint kernel, so the backward costs a forward of the vectorized
    backend plus its autograd, and its FLOPs are those aten ops' own."""
    diag, k = ctx.saved_tensors
    with torch.enable_grad():
        leaves = (diag.detach().requires_grad_(), k.detach().requires_grad_())
        g = sweeps.scan_sweeps(*leaves, ctx.z)
        d_diag, d_k = torch.autograd.grad(g, leaves, grad, allow_unused=True)
    # a row of one position has no couplings, so k never reaches G
    return d_diag, torch.zeros_like(k) if d_k is None else d_k, None, None


resolvent_diagonal_op.register_autograd(_backward, setup_context=_setup_context)


@register_flop_formula(torch.ops.bkprof.tridiag_resolvent_diagonal_triton)
def _op_flops(diag_shape, k_shape, z_real, z_imag, *args, out_shape=None, **kwargs) -> int:
    return kernel_flops(*diag_shape)


def _unobserved(diag: torch.Tensor, k: torch.Tensor) -> bool:
    """True when no autograd, dispatch mode (FlopCounterMode, fake tensors) or compiler would see the op."""
    from torch.utils._python_dispatch import _get_current_dispatch_mode

    needs_grad = torch.is_grad_enabled() and (diag.requires_grad or k.requires_grad)
    plain = type(diag) is torch.Tensor and type(k) is torch.Tensor
    return plain and not needs_grad and _get_current_dispatch_mode() is None and not torch.compiler.is_compiling()


def available(device: torch.device | str) -> bool:
    return triton is not None and torch.device(device).type == "cuda" and torch.cuda.is_available()


def run(diag: torch.Tensor, k: torch.Tensor, z: complex) -> torch.Tensor:
    z = complex(z)
    diag, k = diag.contiguous(), k.contiguous()
    if _unobserved(diag, k):
        return _forward(diag, k, z)
    return resolvent_diagonal_op(diag, k, z.real, z.imag)


register_backend(Backend("triton", run, available,
                         "Triton kernel: segments of in-register scans of transfer matrices, then ratio sweeps (CUDA)",
                         kernel_flops=kernel_flops))

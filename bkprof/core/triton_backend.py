"""The "triton" backend: the BK-Core as Triton kernels, parallel inside each sequence.

Notation as in `sweeps`: alpha_i = diag_i - z, left ratios d_i = alpha_i - k_{i-1} / d_{i-1},
right ratios e_i = alpha_i - k_i / e_{i+1}, G_ii = 1 / (d_i - k_i / e_{i+1}).

A row of N positions is cut into chunks of L = `chunk_length(N)` positions and one GPU lane owns
one chunk, so a few long rows still occupy many lanes. A chunk is walked in tiles of TILE = 16
positions (each lane loads 64 contiguous bytes of diag and of k per tile, four quads of 4).

Rows of more than one chunk take three launches:
1. `_chunk_maps_kernel`: each lane multiplies the 2x2 complex transfer matrices of its chunk,
   left sweep P <- [[alpha_i, -k_{i-1}], [1, 0]] P and right sweep Q <- Q [[alpha_i, -k_i], [1, 0]],
   rescaling by a power of two after each step (ratios are unchanged, entries never overflow).
   The product P_j over the tiles before tile j is stored for every tile j; P and Q of the whole
   chunk are its Moebius maps (ratio entering -> ratio leaving).
2. `_carry_kernel`: one lane per row applies the chunk maps in order (left) and in reverse
   (right) and stores the ratios entering each chunk.
3. `_tiled_sweep_kernel`: each lane walks its tiles right to left: d entering tile j is P_j
   applied to the chunk's left carry; the left recursion fills the tile's d_i in registers, then
   the right recursion (carried across tiles) writes G_ii, one 32-byte vector store per lane and
   quad. Inputs are read twice (kernels 1 and 3), P_j written and read once, G written once:
   about 28 B of DRAM traffic per position against the 12 B floor (benchmarks/NOTES-triton.md).
Short rows (N <= SHORT_ROW_MAX) take one launch, `_short_rows_kernel`, one program per row: its
lanes (one warp or more) compute the maps of chunks of 4 to 16 positions as in kernel 1, combine
them across lanes by a Hillis-Steele scan of the 2x2 products in registers (`tl.gather` for the
partner lane, log2(lanes) steps each way), and sweep their chunk as in kernel 3. No scratch, no
walk longer than 16 positions: a row's latency is that of a few dozen dependent steps, where one
lane walking the whole row took 2N.

Positions past N (padding of a row's last chunk) carry alpha = 1 - i Im z and k = 0, which leaves
every real position's result unchanged and every value finite. Triton has no complex type: real
and imaginary parts travel separately; the output is a (B, N, 2) real buffer seen through
`torch.view_as_complex`.

The op is `torch.ops.bkprof.tridiag_resolvent_diagonal_triton`: a custom op with a fake (meta)
implementation, a backward that recomputes through the vectorized PyTorch scan (`_backward`),
and a FLOP formula in torch's flop registry (`kernel_flops`). `run` calls the kernels directly
when nothing can observe the op (no autograd, no dispatch mode such as FlopCounterMode, no
compile): the dispatcher and autograd wrapper cost tens of µs, more than the kernels at small sizes.
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

LANES = 128             # chunks (lanes) per program in the chunk and sweep kernels (4 warps)
CARRY_LANES = 32        # rows per program in the carry kernel (1 warp)
QUAD = 4                # positions per load; chunks per step of the carry kernel
TILE = 16               # positions per tile (four quads)
SHORT_ROW_MAX = 2048    # rows up to this length: one program per row, chunk maps combined in registers
SHORT_MIN_LANES = 32    # at least one warp per short row
MIN_CHUNK = 256
CHUNK_MAP_ROWS = 16     # scratch rows 0-15: left and right chunk maps (8 reals each)
CARRY_ROWS = 4          # scratch rows 16-19: left and right carries (complex)

# Real FLOPs per unit of work, counted from the kernel source below (see `kernel_flops`).
MAP_FLOPS_PER_SLOT = 88           # alpha 1 + left step (20 + rescale 23) + right step (21 + rescale 23)
CARRY_FLOPS_PER_CHUNK = 56        # 2 directions x Moebius apply 28
TILE_ENTRY_FLOPS = 28             # Moebius apply: d entering a tile
TILED_SWEEP_FLOPS_PER_SLOT = 26   # alpha 1 + left ratio step 8 + right ratio step and G_ii 17
SCAN_STEP_FLOPS = 79              # 2x2 complex matrix product 56 + rescale 23, per lane and scan step


def short_layout(n: int) -> tuple[int, int]:
    """Lanes (a power of two, a warp at least) and positions per lane (4, 8 or 16) of a short row."""
    lanes = max(SHORT_MIN_LANES, 1 << math.ceil(math.log2(-(-n // TILE))))
    return lanes, max(QUAD, 1 << math.ceil(math.log2(-(-n // lanes))))


def chunk_length(n: int) -> int:
    """Positions per chunk (one lane's share) for rows of length n.

    Short rows use `short_layout`; longer rows get chunks of about sqrt(n) positions (a multiple
    of TILE, at least MIN_CHUNK), which balances the per-lane chunk walk (L steps) against the
    per-row carry walk (n / L steps).
    """
    if n <= SHORT_ROW_MAX:
        return short_layout(n)[1]
    return max(MIN_CHUNK, 1 << math.ceil(math.log2(math.isqrt(n - 1) + 1)))


def _chunks(n: int) -> tuple[int, int]:
    chunk = chunk_length(n)
    return chunk, -(-n // chunk)


def kernel_flops(rows: int, n: int) -> int:
    """Real FLOPs the triton backend executes for `rows` rows of length n (forward only).

    Convention: every real floating-point add, subtract, multiply, divide, negate, abs and max in
    the kernel source counts 1 (so a complex multiply is 6, a complex add 2, a fused multiply-add
    2); integer and bit operations (the power-of-two rescale, indexing, gathers) count 0. Work is
    counted on the padded grid that really runs: lanes x chunk position slots per row. Per row:
      short rows (n <= 2048), W lanes: 88 per slot (chunk maps) + 26 per slot (sweeps)
          + W x (2 scans x 79 x log2 W + 56) (every lane runs every scan step, partner or not,
          then enters its chunk from both sides);
      longer rows, C = ceil(n / L) chunks of L = chunk_length(n): 88 per slot (chunk maps)
          + 56 per chunk padded to QUAD (carries) + 26 per slot + 28 per tile of 16 slots (sweeps).
    The sequential sweeps need about 27 per position; the parallel forms do 4.3x that and more,
    and this counts what runs. Exactly linear in rows: per sequence = kernel_flops(1, n).
    """
    if n <= SHORT_ROW_MAX:
        lanes, chunk = short_layout(n)
        scans = 2 * SCAN_STEP_FLOPS * (lanes.bit_length() - 1)
        per_row = ((MAP_FLOPS_PER_SLOT + TILED_SWEEP_FLOPS_PER_SLOT) * lanes * chunk
                   + lanes * (scans + CARRY_FLOPS_PER_CHUNK))
        return rows * per_row
    chunk, chunks = _chunks(n)
    slots = chunks * chunk
    padded_chunks = -(-chunks // QUAD) * QUAD
    per_row = ((MAP_FLOPS_PER_SLOT + TILED_SWEEP_FLOPS_PER_SLOT) * slots + TILE_ENTRY_FLOPS * (slots // TILE)
               + CARRY_FLOPS_PER_CHUNK * padded_chunks)
    return rows * per_row


def scratch_shape(rows: int, n: int) -> tuple[int, int]:
    """The scratch rows x lanes: chunk maps, carries, then 8 reals of P_j for each tile j (none for short rows)."""
    if n <= SHORT_ROW_MAX:
        return 0, rows
    chunk, chunks = _chunks(n)
    return CHUNK_MAP_ROWS + CARRY_ROWS + 8 * (chunk // TILE), rows * chunks


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
    def _left_transfer(ar, ai, br, bi, cr, ci, dr, di, alr, ali, kap, FP64: tl.constexpr):
        """[[alpha, -kap], [1, 0]] @ [[a, b], [c, d]], rescaled: 20 + 23 FLOPs."""
        nar = alr * ar - ali * ai - kap * cr
        nai = alr * ai + ali * ar - kap * ci
        nbr = alr * br - ali * bi - kap * dr
        nbi = alr * bi + ali * br - kap * di
        return _rescaled(nar, nai, nbr, nbi, ar, ai, br, bi, FP64)

    @triton.jit
    def _right_transfer(ar, ai, br, bi, cr, ci, dr, di, alr, ali, kap, FP64: tl.constexpr):
        """[[a, b], [c, d]] @ [[alpha, -kap], [1, 0]], rescaled: 21 + 23 FLOPs."""
        nk = -kap
        nar = ar * alr - ai * ali + br
        nai = ar * ali + ai * alr + bi
        ncr = cr * alr - ci * ali + dr
        nci = cr * ali + ci * alr + di
        return _rescaled(nar, nai, nk * ar, nk * ai, ncr, nci, nk * cr, nk * ci, FP64)

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
        """Both chunk products over four positions; returns P, Q and the next quad's kap_before."""
        a0, a1, a2, a3 = _unpack4(alr)
        k0, k1, k2, k3 = _unpack4(kk)
        par, pai, pbr, pbi, pcr, pci, pdr, pdi = _left_transfer(par, pai, pbr, pbi, pcr, pci, pdr, pdi, a0, ali, kap_before, FP64)
        qar, qai, qbr, qbi, qcr, qci, qdr, qdi = _right_transfer(qar, qai, qbr, qbi, qcr, qci, qdr, qdi, a0, ali, k0, FP64)
        par, pai, pbr, pbi, pcr, pci, pdr, pdi = _left_transfer(par, pai, pbr, pbi, pcr, pci, pdr, pdi, a1, ali, k0, FP64)
        qar, qai, qbr, qbi, qcr, qci, qdr, qdi = _right_transfer(qar, qai, qbr, qbi, qcr, qci, qdr, qdi, a1, ali, k1, FP64)
        par, pai, pbr, pbi, pcr, pci, pdr, pdi = _left_transfer(par, pai, pbr, pbi, pcr, pci, pdr, pdi, a2, ali, k1, FP64)
        qar, qai, qbr, qbi, qcr, qci, qdr, qdi = _right_transfer(qar, qai, qbr, qbi, qcr, qci, qdr, qdi, a2, ali, k2, FP64)
        par, pai, pbr, pbi, pcr, pci, pdr, pdi = _left_transfer(par, pai, pbr, pbi, pcr, pci, pdr, pdi, a3, ali, k2, FP64)
        qar, qai, qbr, qbi, qcr, qci, qdr, qdi = _right_transfer(qar, qai, qbr, qbi, qcr, qci, qdr, qdi, a3, ali, k3, FP64)
        return par, pai, pbr, pbi, pcr, pci, pdr, pdi, qar, qai, qbr, qbi, qcr, qci, qdr, qdi, k3

    @triton.jit
    def _chunk_lanes(lanes, chunks, chunk, n, LANES: tl.constexpr):
        """This program's lanes (one chunk each): index, in range, first position, k's row offset."""
        lane = tl.program_id(0) * LANES + tl.arange(0, LANES)
        row = (lane // chunks).to(tl.int64)
        return lane, lane < lanes, (lane % chunks) * chunk, row * (n - 1)

    @triton.jit
    def _chunk_maps_kernel(diag_ptr, k_ptr, scratch_ptr, n, chunk, tiles, chunks, lanes,
                           z_re: tl.float64, alpha_im: tl.float64,
                           LANES: tl.constexpr, FP64: tl.constexpr):
        lane, live, start, k_row = _chunk_lanes(lanes, chunks, chunk, n, LANES)
        row_start = ((lane // chunks).to(tl.int64) * n)[:, None]
        k_row_start = k_row[:, None]
        quad = tl.arange(0, 4)[None, :]
        ali = tl.cast(alpha_im, diag_ptr.dtype.element_ty)
        one = tl.full([LANES], 1.0, diag_ptr.dtype.element_ty)
        zero = tl.zeros([LANES], diag_ptr.dtype.element_ty)
        par, pai, pbr, pbi, pcr, pci, pdr, pdi = one, zero, zero, zero, zero, zero, one, zero
        qar, qai, qbr, qbi, qcr, qci, qdr, qdi = one, zero, zero, zero, zero, zero, one, zero
        kb = tl.load(k_ptr + k_row + start - 1, mask=live & (start > 0), other=0.0)
        prefix = scratch_ptr + 20 * lanes + lane  # after the chunk maps and carries
        stride = tiles * lanes
        for j in range(0, tiles):
            # P_j: the left product over the tiles before tile j
            tile = prefix + j * lanes
            tl.store(tile + 0 * stride, par, mask=live)
            tl.store(tile + 1 * stride, pai, mask=live)
            tl.store(tile + 2 * stride, pbr, mask=live)
            tl.store(tile + 3 * stride, pbi, mask=live)
            tl.store(tile + 4 * stride, pcr, mask=live)
            tl.store(tile + 5 * stride, pci, mask=live)
            tl.store(tile + 6 * stride, pdr, mask=live)
            tl.store(tile + 7 * stride, pdi, mask=live)
            for q in tl.static_range(4):
                pos = (start + 16 * j + 4 * q)[:, None] + quad
                alr = _alpha_quad(diag_ptr, row_start, pos, n, live[:, None], z_re)
                kk = _k_quad(k_ptr, k_row_start, pos, n, live[:, None])
                par, pai, pbr, pbi, pcr, pci, pdr, pdi, qar, qai, qbr, qbi, qcr, qci, qdr, qdi, kb = _maps_quad(
                    par, pai, pbr, pbi, pcr, pci, pdr, pdi, qar, qai, qbr, qbi, qcr, qci, qdr, qdi, alr, ali, kb, kk, FP64)
        out = scratch_ptr + lane
        tl.store(out + 0 * lanes, par, mask=live)
        tl.store(out + 1 * lanes, pai, mask=live)
        tl.store(out + 2 * lanes, pbr, mask=live)
        tl.store(out + 3 * lanes, pbi, mask=live)
        tl.store(out + 4 * lanes, pcr, mask=live)
        tl.store(out + 5 * lanes, pci, mask=live)
        tl.store(out + 6 * lanes, pdr, mask=live)
        tl.store(out + 7 * lanes, pdi, mask=live)
        tl.store(out + 8 * lanes, qar, mask=live)
        tl.store(out + 9 * lanes, qai, mask=live)
        tl.store(out + 10 * lanes, qbr, mask=live)
        tl.store(out + 11 * lanes, qbi, mask=live)
        tl.store(out + 12 * lanes, qcr, mask=live)
        tl.store(out + 13 * lanes, qci, mask=live)
        tl.store(out + 14 * lanes, qdr, mask=live)
        tl.store(out + 15 * lanes, qdi, mask=live)

    @triton.jit
    def _through(ar, ai, br, bi, cr, ci, dr, di, xr, xi):
        """x entering a chunk, and x leaving it through the chunk's map."""
        yr, yi = _apply_map(ar, ai, br, bi, cr, ci, dr, di, xr, xi)
        return xr, xi, yr, yi

    @triton.jit
    def _walk4(scratch_ptr, first, lanes, offsets, mask, xr, xi, REVERSE: tl.constexpr):
        """Apply the maps of four consecutive chunks to x, in order or reversed (masked chunks are
        the identity); returns the value entering each of the four chunks and the value leaving."""
        ar0, ar1, ar2, ar3 = _unpack4(tl.load(scratch_ptr + (first + 0) * lanes + offsets, mask=mask, other=1.0))
        ai0, ai1, ai2, ai3 = _unpack4(tl.load(scratch_ptr + (first + 1) * lanes + offsets, mask=mask, other=0.0))
        br0, br1, br2, br3 = _unpack4(tl.load(scratch_ptr + (first + 2) * lanes + offsets, mask=mask, other=0.0))
        bi0, bi1, bi2, bi3 = _unpack4(tl.load(scratch_ptr + (first + 3) * lanes + offsets, mask=mask, other=0.0))
        cr0, cr1, cr2, cr3 = _unpack4(tl.load(scratch_ptr + (first + 4) * lanes + offsets, mask=mask, other=0.0))
        ci0, ci1, ci2, ci3 = _unpack4(tl.load(scratch_ptr + (first + 5) * lanes + offsets, mask=mask, other=0.0))
        dr0, dr1, dr2, dr3 = _unpack4(tl.load(scratch_ptr + (first + 6) * lanes + offsets, mask=mask, other=1.0))
        di0, di1, di2, di3 = _unpack4(tl.load(scratch_ptr + (first + 7) * lanes + offsets, mask=mask, other=0.0))
        if REVERSE:
            x3r, x3i, xr, xi = _through(ar3, ai3, br3, bi3, cr3, ci3, dr3, di3, xr, xi)
            x2r, x2i, xr, xi = _through(ar2, ai2, br2, bi2, cr2, ci2, dr2, di2, xr, xi)
            x1r, x1i, xr, xi = _through(ar1, ai1, br1, bi1, cr1, ci1, dr1, di1, xr, xi)
            x0r, x0i, xr, xi = _through(ar0, ai0, br0, bi0, cr0, ci0, dr0, di0, xr, xi)
        else:
            x0r, x0i, xr, xi = _through(ar0, ai0, br0, bi0, cr0, ci0, dr0, di0, xr, xi)
            x1r, x1i, xr, xi = _through(ar1, ai1, br1, bi1, cr1, ci1, dr1, di1, xr, xi)
            x2r, x2i, xr, xi = _through(ar2, ai2, br2, bi2, cr2, ci2, dr2, di2, xr, xi)
            x3r, x3i, xr, xi = _through(ar3, ai3, br3, bi3, cr3, ci3, dr3, di3, xr, xi)
        return x0r, x0i, x1r, x1i, x2r, x2i, x3r, x3i, xr, xi

    @triton.jit
    def _carry_kernel(scratch_ptr, rows, chunks, chunk_quads, lanes, LANES: tl.constexpr):
        row = tl.program_id(0) * LANES + tl.arange(0, LANES)
        live = row < rows
        base = row.to(tl.int64) * chunks
        quad = tl.arange(0, 4)
        xr = tl.full([LANES], 1.0, scratch_ptr.dtype.element_ty)
        xi = tl.zeros([LANES], scratch_ptr.dtype.element_ty)
        yr, yi = xr, xi
        for t in range(0, chunk_quads):
            c = 4 * t + quad
            offsets = base[:, None] + c[None, :]
            mask = live[:, None] & (c < chunks)[None, :]
            x0r, x0i, x1r, x1i, x2r, x2i, x3r, x3i, xr, xi = _walk4(scratch_ptr, 0, lanes, offsets, mask, xr, xi, False)
            tl.store(scratch_ptr + 16 * lanes + offsets, _pack4(x0r, x1r, x2r, x3r), mask=mask)
            tl.store(scratch_ptr + 17 * lanes + offsets, _pack4(x0i, x1i, x2i, x3i), mask=mask)
            c = 4 * (chunk_quads - 1 - t) + quad
            offsets = base[:, None] + c[None, :]
            mask = live[:, None] & (c < chunks)[None, :]
            y0r, y0i, y1r, y1i, y2r, y2i, y3r, y3i, yr, yi = _walk4(scratch_ptr, 8, lanes, offsets, mask, yr, yi, True)
            tl.store(scratch_ptr + 18 * lanes + offsets, _pack4(y0r, y1r, y2r, y3r), mask=mask)
            tl.store(scratch_ptr + 19 * lanes + offsets, _pack4(y0i, y1i, y2i, y3i), mask=mask)

    @triton.jit
    def _tiled_sweep_kernel(diag_ptr, k_ptr, scratch_ptr, out_ptr, n, chunk, tiles, chunks, lanes,
                            z_re: tl.float64, alpha_im: tl.float64, LANES: tl.constexpr):
        lane, live, start, k_row = _chunk_lanes(lanes, chunks, chunk, n, LANES)
        row_start = ((lane // chunks).to(tl.int64) * n)[:, None]
        k_row_start = k_row[:, None]
        quad = tl.arange(0, 4)[None, :]
        reim = tl.arange(0, 2)[None, None, :]
        ali = tl.cast(alpha_im, diag_ptr.dtype.element_ty)
        xr = tl.load(scratch_ptr + 16 * lanes + lane, mask=live, other=1.0)
        xi = tl.load(scratch_ptr + 17 * lanes + lane, mask=live, other=0.0)
        er = tl.load(scratch_ptr + 18 * lanes + lane, mask=live, other=1.0)
        ei = tl.load(scratch_ptr + 19 * lanes + lane, mask=live, other=0.0)
        prefix = scratch_ptr + 20 * lanes + lane  # after the chunk maps and carries
        stride = tiles * lanes
        for t in range(0, tiles):
            j = tiles - 1 - t
            tile = prefix + j * lanes
            dr, di = _apply_map(tl.load(tile + 0 * stride, mask=live, other=1.0), tl.load(tile + 1 * stride, mask=live, other=0.0),
                                tl.load(tile + 2 * stride, mask=live, other=0.0), tl.load(tile + 3 * stride, mask=live, other=0.0),
                                tl.load(tile + 4 * stride, mask=live, other=0.0), tl.load(tile + 5 * stride, mask=live, other=0.0),
                                tl.load(tile + 6 * stride, mask=live, other=1.0), tl.load(tile + 7 * stride, mask=live, other=0.0),
                                xr, xi)
            first = start + 16 * j
            kb = tl.load(k_ptr + k_row + first - 1, mask=live & (first > 0), other=0.0)
            pos0 = first[:, None] + quad
            pos1 = pos0 + 4
            pos2 = pos0 + 8
            pos3 = pos0 + 12
            al0 = _alpha_quad(diag_ptr, row_start, pos0, n, live[:, None], z_re)
            al1 = _alpha_quad(diag_ptr, row_start, pos1, n, live[:, None], z_re)
            al2 = _alpha_quad(diag_ptr, row_start, pos2, n, live[:, None], z_re)
            al3 = _alpha_quad(diag_ptr, row_start, pos3, n, live[:, None], z_re)
            kk0 = _k_quad(k_ptr, k_row_start, pos0, n, live[:, None])
            kk1 = _k_quad(k_ptr, k_row_start, pos1, n, live[:, None])
            kk2 = _k_quad(k_ptr, k_row_start, pos2, n, live[:, None])
            kk3 = _k_quad(k_ptr, k_row_start, pos3, n, live[:, None])
            d0r, d0i, dr, di, kb = _left_quad(al0, ali, kb, kk0, dr, di)
            d1r, d1i, dr, di, kb = _left_quad(al1, ali, kb, kk1, dr, di)
            d2r, d2i, dr, di, kb = _left_quad(al2, ali, kb, kk2, dr, di)
            d3r, d3i, dr, di, kb = _left_quad(al3, ali, kb, kk3, dr, di)
            g3, er, ei = _right_quad(al3, ali, kk3, d3r, d3i, er, ei)
            g2, er, ei = _right_quad(al2, ali, kk2, d2r, d2i, er, ei)
            g1, er, ei = _right_quad(al1, ali, kk1, d1r, d1i, er, ei)
            g0, er, ei = _right_quad(al0, ali, kk0, d0r, d0i, er, ei)
            _store_quad(out_ptr, row_start, first, n, live, g0)
            _store_quad(out_ptr, row_start, first + 4, n, live, g1)
            _store_quad(out_ptr, row_start, first + 8, n, live, g2)
            _store_quad(out_ptr, row_start, first + 12, n, live, g3)

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
    def _short_rows_kernel(diag_ptr, k_ptr, out_ptr, n, z_re: tl.float64, alpha_im: tl.float64,
                           LANES: tl.constexpr, LOG2_LANES: tl.constexpr, QUADS: tl.constexpr,
                           FP64: tl.constexpr):
        """One row per program; lane c owns positions [4 QUADS c, 4 QUADS (c + 1))."""
        row = tl.program_id(0).to(tl.int64)
        row_start = row * n
        k_row_start = row * (n - 1)
        lane = tl.arange(0, LANES)
        live = lane < LANES
        start = lane * (4 * QUADS)
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
        # 2. the products of the chunks before (left) and after (right) this lane's: shift by one lane, then scan
        par, pai, pbr, pbi, pcr, pci, pdr, pdi = _partner(par, pai, pbr, pbi, pcr, pci, pdr, pdi,
                                                          tl.maximum(lane - 1, 0), lane >= 1)
        qar, qai, qbr, qbi, qcr, qci, qdr, qdi = _partner(qar, qai, qbr, qbi, qcr, qci, qdr, qdi,
                                                          tl.minimum(lane + 1, LANES - 1), lane + 1 < LANES)
        par, pai, pbr, pbi, pcr, pci, pdr, pdi = _scan_products(par, pai, pbr, pbi, pcr, pci, pdr, pdi, lane,
                                                                LANES, LOG2_LANES, False, FP64)
        qar, qai, qbr, qbi, qcr, qci, qdr, qdi = _scan_products(qar, qai, qbr, qbi, qcr, qci, qdr, qdi, lane,
                                                                LANES, LOG2_LANES, True, FP64)
        dr, di = _apply_map(par, pai, pbr, pbi, pcr, pci, pdr, pdi, one, zero)
        er, ei = _apply_map(qar, qai, qbr, qbi, qcr, qci, qdr, qdi, one, zero)
        # 3. the ratio sweeps over this lane's chunk (its inputs are in L1 from step 1)
        pos0 = start[:, None] + quad
        al0 = _alpha_quad(diag_ptr, row_start, pos0, n, live[:, None], z_re)
        kk0 = _k_quad(k_ptr, k_row_start, pos0, n, live[:, None])
        d0r, d0i, dr, di, kb = _left_quad(al0, ali, k_before, kk0, dr, di)
        if QUADS > 1:
            pos1 = pos0 + 4
            al1 = _alpha_quad(diag_ptr, row_start, pos1, n, live[:, None], z_re)
            kk1 = _k_quad(k_ptr, k_row_start, pos1, n, live[:, None])
            d1r, d1i, dr, di, kb = _left_quad(al1, ali, kb, kk1, dr, di)
        if QUADS > 2:
            pos2 = pos0 + 8
            pos3 = pos0 + 12
            al2 = _alpha_quad(diag_ptr, row_start, pos2, n, live[:, None], z_re)
            al3 = _alpha_quad(diag_ptr, row_start, pos3, n, live[:, None], z_re)
            kk2 = _k_quad(k_ptr, k_row_start, pos2, n, live[:, None])
            kk3 = _k_quad(k_ptr, k_row_start, pos3, n, live[:, None])
            d2r, d2i, dr, di, kb = _left_quad(al2, ali, kb, kk2, dr, di)
            d3r, d3i, dr, di, kb = _left_quad(al3, ali, kb, kk3, dr, di)
            g3, er, ei = _right_quad(al3, ali, kk3, d3r, d3i, er, ei)
            g2, er, ei = _right_quad(al2, ali, kk2, d2r, d2i, er, ei)
            _store_quad(out_ptr, row_start, start + 12, n, live, g3)
            _store_quad(out_ptr, row_start, start + 8, n, live, g2)
        if QUADS > 1:
            g1, er, ei = _right_quad(al1, ali, kk1, d1r, d1i, er, ei)
            _store_quad(out_ptr, row_start, start + 4, n, live, g1)
        g0, er, ei = _right_quad(al0, ali, kk0, d0r, d0i, er, ei)
        _store_quad(out_ptr, row_start, start, n, live, g0)


def launch(diag: torch.Tensor, k: torch.Tensor, z: complex, out: torch.Tensor,
           scratch: torch.Tensor | None = None) -> None:
    """Write G_ii for contiguous diag (B, N) and k (B, N-1) into out (B, N, 2) (real, imaginary).

    Rows longer than SHORT_ROW_MAX need a scratch buffer of `scratch_shape(B, N)` and diag's dtype
    (allocated here when not given); the kernels read from it only what they wrote.
    """
    rows, n = diag.shape
    if rows == 0:
        return
    z_re, alpha_im = float(z.real), -float(z.imag)
    if n <= SHORT_ROW_MAX:
        row_lanes, chunk = short_layout(n)
        _short_rows_kernel[(rows,)](diag, k, out, n, z_re, alpha_im, LANES=row_lanes,
                                    LOG2_LANES=row_lanes.bit_length() - 1, QUADS=chunk // QUAD,
                                    FP64=diag.dtype == torch.float64, num_warps=row_lanes // 32)
        return
    chunk, chunks = _chunks(n)
    lanes = rows * chunks
    scratch = diag.new_empty(scratch_shape(rows, n)) if scratch is None else scratch
    grid = (triton.cdiv(lanes, LANES),)
    _chunk_maps_kernel[grid](diag, k, scratch, n, chunk, chunk // TILE, chunks, lanes, z_re, alpha_im,
                             LANES=LANES, FP64=diag.dtype == torch.float64, num_warps=LANES // 32)
    _carry_kernel[(triton.cdiv(rows, CARRY_LANES),)](scratch, rows, chunks, -(-chunks // QUAD), lanes,
                                                      LANES=CARRY_LANES, num_warps=1)
    _tiled_sweep_kernel[grid](diag, k, scratch, out, n, chunk, chunk // TILE, chunks, lanes, z_re, alpha_im,
                              LANES=LANES, num_warps=LANES // 32)


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
                         "Triton kernels: chunked transfer-matrix maps, carries, ratio sweeps (CUDA)",
                         kernel_flops=kernel_flops))

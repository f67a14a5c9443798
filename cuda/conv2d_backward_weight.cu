// conv2d_backward_weight.cu: gw and gb, the weight and bias gradients of conv2d, NCHW,
// zero padding:
//   gw[k, c, kh, kw] = sum over n, oh, ow of gy[n, k, oh, ow] *
//                      x[n, g*Cg + c, oh*sh - pt + kh*dh, ow*sw - pl + kw*dw]
//   gb[k]            = sum over n, oh, ow of gy[n, k, oh, ow]
// with g = k / Kg and x = 0 outside the image (a padded tap contributes gy * 0, as
// the zero-padded matrix product of the NumPy backend does: gy = inf there gives NaN).
// A pure product, no conjugation (the API passes conj(x) for complex inputs). Per
// group this is a GEMM with a small output and a long reduction: M = K/groups rows,
// NG = C/groups*KH*KW columns (gw[k] flattened), R = N*OH*OW reduction terms.
//
// Variants (each: T = float or double; any stride, dilation, groups, asymmetric zero
// padding; kernel size and all extents are runtime arguments; tails guarded, no size
// needs to be a multiple of a tile; the bias gradient is fused: has_bias adds gb):
//   naive           One thread per gw element (1-D grid-stride loop over the 64-bit
//                   flat index of gw; K more indices compute gb): loops n, oh, ow in
//                   that order, reading gy and x from global memory. The second oracle
//                   of the test suite: kept simple. No workspace, one launch.
//   tiled           A TILE_W x TILE_H block owns one (k, c) pair, a block of taps
//                   (all KH*KW of them up to 255) and a contiguous slice of the
//                   N*tiles_h*tiles_w output tiles (its split). Per tile it stages the
//                   TILE_H x TILE_W gy tile and the x window that the tile's taps read
//                   (with halo: (TILE-1)*stride + (KH-1)*dilation + 1 rows, likewise
//                   columns, zero outside the image: the zero padding) in shared
//                   memory. Thread (slot, lane) accumulates one tap (slot) over every
//                   lanes-th pixel of each tile in a register; one more slot is the
//                   bias (sum of the gy tile), used in the blocks of c == 0. At the end
//                   the lanes are summed in lane order through shared memory. For depthwise and
//                   few-channel layers, where the GEMM is too thin for register tiles.
//   tiled_regblock  Implicit GEMM with split-K: block tile BM x BN of the (M x NG)
//                   product of one group, over a contiguous slice ("split") of the R
//                   reduction terms. Slices of BK = 8 terms: the gy slice (BK x BM) and
//                   the gathered x slice (BK x BN) are staged in shared memory, double
//                   buffered (the gathers of the next slice are issued into registers
//                   before the FMAs of the current one), each thread accumulates a
//                   TM x TN register tile (RegblockTile/RegblockSmem and the thread
//                   tile layout of implicit_gemm.cuh). The gathers run along the
//                   reduction (thread t loads term t % BK: consecutive ow, i.e.
//                   consecutive addresses of gy and, for stride 1, of x), unlike the
//                   forward main loop whose reduction is along the channels. Each
//                   thread's term (n, oh, ow) advances by counters and two
//                   multiply-shift divisions (FastDiv: no division instruction, no
//                   data-dependent loop); each column's (c, kh*dh, kw*dw) and byte
//                   offset, and each row's, are decoded once per block (a tail row
//                   reads row 0, never written; a tail column's row offset fails
//                   every bounds check). Two slices per loop trip (literal
//                   shared-memory stages); the split's last slice, the only one
//                   with dead terms (>= r_end), is fetched after the loop (peeled),
//                   so the main loop's gathers test only the tap bounds. The bias (blocks
//                   of column tile 0): each thread sums the gy values it gathers,
//                   then the BK partial sums of a row are added in order.
//   nhwc            (float only; 'auto' for float32 compute when C/groups and
//                   K/groups are multiples of 4) The GEMM on operands packed to NHWC
//                   once per call, both k-major: a slab of 16 pixels is 16-byte
//                   cp.async copies along the channels, 3 stages in flight, one
//                   barrier per slab; 8 x 8 thread tiles of BM x 128 block tiles (BM
//                   = 32, 64 or 128 after K/groups); split-K as tiled_regblock (see
//                   the section at the end).
//   unfold          (float only; 'auto' for float32 compute where nhwc does not apply
//                   (few channels: the RGB stem) and OW is a multiple of 4) The GEMM
//                   along the pixels: x unfolded along its width once per call
//                   (conv2d_unfold_width: xu[n, c, kw, hp, ow] = x[n, c, hp - pt,
//                   ow*sw - pl + kw*dw], zero outside), so that for any column (c,
//                   kh, kw) four consecutive output pixels of a row are four
//                   consecutive elements of xu, as they are of gy. A slab of 16
//                   pixels is then, for both operands, 16-byte cp.async copies along
//                   the pixels (no gather arithmetic, no bounds test), 3 stages in
//                   flight, one barrier per slab; 8 x 4 thread tiles of 64 x 64
//                   block tiles reading 8 + 4 LDS.128 per 4 pixels; split-K as
//                   tiled_regblock (see the section at the end).
//   reduce          The second, deterministic stage of the split-K variants: one
//                   thread per gw (and gb) element sums its `splits` partial results
//                   from the workspace in split order 0, 1, ..., splits-1.
//   conv2d_backward_bias_partial
//                   The bias gradient alone (conv2d_backward_bias): a 256-thread block
//                   per (k, split) sums its slice of gy[:, k] (coalesced strided loops
//                   per thread, then a fixed-shape tree in shared memory); splits > 1
//                   are summed by `reduce`.
//
// Determinism (no atomics anywhere): every output or partial result is written once,
// by one thread, after a summation whose order depends only on the launch plan (the
// plan depends only on the problem and the planner's fixed SM count). The split-K
// partial sums go to a workspace in a fixed layout, gw part (splits, K*NG) and gb
// part (splits, K), and `reduce` adds them in split order. So two runs give
// bit-identical results. The variants sum in different orders (regblock and tiled by
// split and lane), so on random floats they agree to rounding, and bit for bit on
// small-integer inputs (exact sums); naive and tiled_regblock with one split use the
// same order for gw (n, oh, ow, one fma each) and agree bit for bit on any finite
// input (gb: every BK-th term per thread, then the BK partial sums: to rounding).
//
// Other padding modes: the op pads x once (conv2d_pad.cu) and runs these kernels on
// the padded problem (pads 0); the weight gradient needs no fold.
//
// Performance (predicted, nothing measured: no GPU was lent while writing this).
// Split-K: gpuconv._plan_conv.split_count picks the split count so that the grid
// holds at least 2 full waves over 132 SMs (blocks >= 2 * 132 * resident blocks per
// SM; then rounded up to fill the last wave) wherever R allows >= 128 terms per
// split. On the benchmark layers of issue 3 that is 2.0-3.0 waves, e.g. 3x3 64->64
// at 56^2, N=16: 64x128 tiles, 5 column tiles x 158 splits = 790 blocks (without
// split-K: 5 blocks, 4% of the SMs); 3x3 512->512 at 7^2: 288 128x64 tiles x 2
// splits; 1x1 56^2 64->256: 2 tiles x 264 splits. The main loop is the forward's
// (an 8x8 fp32 thread tile does 4 FMAs per shared-memory load, BK = 8, double
// buffered), so on the compute-bound 3x3 and 5x5 layers I expect the forward
// regblock's rate, 35-50% of FP32 peak, less the reduce pass, which reads
// splits * K*C*KH*KW partials (12-26 MB on these layers, ~5-10 us at 3 TB/s): 5-10%
// of the main kernel there (the 7x7/2 224^2 layer, near the ridge, likewise). The
// 1x1 56^2 64->256 layer is bound by the gy and x reads (each element from DRAM
// about once or twice); there the workspace adds ~25% to the traffic: expect 50-60%
// of the copy bandwidth. A fused reduction (the last block of each tile summing the partials,
// ordered by a per-tile counter) would remove that pass; not done.
#include "common.cuh"
#include "implicit_gemm.cuh"

// First unit of slice s when a reduction is cut into balanced contiguous slices:
// per = work / splits units each, and the first extra = work % splits slices one
// more (the planner passes both: no 64-bit division on the device). Slice s is
// [split_begin(s), split_begin(s + 1)).
__device__ __forceinline__ long long split_begin(int s, long long per, int extra) {
    return s * per + min(s, extra);
}

// ---------------------------------------------------------------------------------
// naive: total = wcount + (has_bias ? K : 0), wcount = K*Cg*KH*KW; gw and gb are the
// final outputs (no split).
template <typename T>
__global__ void conv2d_backward_weight_naive(
    const T* __restrict__ gy, const T* __restrict__ x, T* __restrict__ gw,
    T* __restrict__ gb, int N, int C, int H, int W, int K, int KH, int KW, int groups,
    int sh, int sw, int dh, int dw, int pt, int pl, int OH, int OW, long long wcount,
    long long total) {
    const int Cg = C / groups;
    const int Kg = K / groups;
    const int HW = H * W;
    const int OHW = OH * OW;
    for (long long idx = gpuconv::global_thread_index(); idx < total;
         idx += gpuconv::grid_stride()) {
        if (idx >= wcount) {  // the bias gradient of channel k
            const int k = static_cast<int>(idx - wcount);
            T acc = T(0);
            for (long long n = 0; n < N; ++n) {
                const T* gyk = gy + (n * K + k) * OHW;
                for (int q = 0; q < OHW; ++q) acc = acc + gyk[q];
            }
            gb[k] = acc;
            continue;
        }
        const int kw = static_cast<int>(idx % KW);
        long long t = idx / KW;
        const int kh = static_cast<int>(t % KH);
        t /= KH;
        const int c = static_cast<int>(t % Cg);
        const int k = static_cast<int>(t / Cg);
        const int g = k / Kg;
        T acc = T(0);
        for (long long n = 0; n < N; ++n) {
            const T* gyk = gy + (n * K + k) * OHW;
            const T* xc = x + (n * C + static_cast<long long>(g) * Cg + c) * HW;
            for (int oh = 0; oh < OH; ++oh) {
                const int ih = oh * sh - pt + kh * dh;
                for (int ow = 0; ow < OW; ++ow) {
                    const int iw = ow * sw - pl + kw * dw;
                    const T xv = (gpuconv::in_range(ih, H) && gpuconv::in_range(iw, W))
                                     ? xc[ih * W + iw]
                                     : T(0);
                    acc = fma(gyk[oh * OW + ow], xv, acc);
                }
            }
        }
        gw[idx] = acc;
    }
}

// ---------------------------------------------------------------------------------
// tiled: block (TILE_W, TILE_H); dynamic shared memory = (s_rows*s_cols +
// TILE_W*TILE_H)*T with the forward tile's window s_rows = (TILE_H-1)*sh + (KH-1)*dh
// + 1, s_cols = (TILE_W-1)*sw + (KW-1)*dw + 1 (planner). Grid, 1-D:
// tap_blocks * Cg * K * splits blocks; split s covers its balanced slice
// (split_begin with units_per_split, extra_units) of the units = N*tiles_h*tiles_w
// output tiles, n-major (the planner keeps splits <= units: no empty slice).
// Outputs: gw_out[split*K*Cg*KH*KW + gw index], gb_out[split*K + k] (a workspace when
// splits > 1, else gw and gb themselves).
template <typename T, int TILE_W, int TILE_H>
__global__ void conv2d_backward_weight_tiled(
    const T* __restrict__ gy, const T* __restrict__ x, T* __restrict__ gw_out,
    T* __restrict__ gb_out, int C, int H, int W, int K, int KH, int KW, int groups,
    int sh, int sw, int dh, int dw, int pt, int pl, int OH, int OW, int has_bias,
    int tiles_h, int tiles_w, int s_rows, int s_cols, int taps_per_block,
    int tap_blocks, long long units_per_split, int extra_units) {
    GPUCONV_DYNAMIC_SHARED(T, s_mem);
    constexpr int NTHREADS = TILE_W * TILE_H;
    T* s_x = s_mem;                    // the x window of the tile, channel c
    T* s_gy = s_mem + s_rows * s_cols;  // the gy tile of channel k
    T* s_red = s_mem;  // after the last tile: one partial sum per thread (aliases s_x;
                       // s_rows*s_cols + NTHREADS >= NTHREADS elements)
    const int Cg = C / groups;
    const int Kg = K / groups;
    const int HW = H * W;
    const int OHW = OH * OW;
    const int KHKW = KH * KW;

    int bid = static_cast<int>(blockIdx.x);
    const int tap_block = bid % tap_blocks;
    bid /= tap_blocks;
    const int c = bid % Cg;
    bid /= Cg;
    const int k = bid % K;
    const int split = bid / K;
    const int g = k / Kg;

    const int tx = static_cast<int>(threadIdx.x);
    const int ty = static_cast<int>(threadIdx.y);
    const int tid = gpuconv::block_thread_index();
    // Slots: the taps of this block plus one for the bias, used in the blocks of c == 0,
    // tap block 0 (reserved in every block, so that the lane split, and with it the
    // rounding of gw, does not depend on has_bias).
    const int tap0 = tap_block * taps_per_block;
    const int taps_here = min(taps_per_block, KHKW - tap0);
    const bool bias_here = has_bias != 0 && c == 0 && tap_block == 0;
    const int slots = taps_here + 1;  // <= 256 (the planner keeps taps_per_block <= 255)
    const int lanes = NTHREADS / slots;
    const int slot = tid % slots;
    const int lane = tid / slots;
    const bool bias_slot = slot == taps_here;
    const bool active = lane < lanes && (!bias_slot || bias_here);
    const int tap = tap0 + (bias_slot ? 0 : slot);
    const int kh = tap / KW;
    const int kw = tap - kh * KW;
    const int tap_off = kh * dh * s_cols + kw * dw;  // the tap's offset in the window

    const long long u_begin = split_begin(split, units_per_split, extra_units);
    const long long u_end = split_begin(split + 1, units_per_split, extra_units);
    const int tiles = tiles_h * tiles_w;
    const int s_size = s_rows * s_cols;

    T acc = T(0);
    for (long long u = u_begin; u < u_end; ++u) {
        const long long n = u / tiles;
        const int t = static_cast<int>(u - n * tiles);
        const int tile_r = t / tiles_w;
        const int oh0 = tile_r * TILE_H;
        const int ow0 = (t - tile_r * tiles_w) * TILE_W;
        const T* gyk = gy + (n * K + k) * OHW;
        const T* xc = x + (n * C + static_cast<long long>(g) * Cg + c) * HW;
        // The gy tile, one element per thread; 0 past the output's edge (never read:
        // the pixel loop below stops at the valid part of the tile).
        const int oh = oh0 + ty;
        const int ow = ow0 + tx;
        s_gy[tid] = (oh < OH && ow < OW) ? gyk[oh * OW + ow] : T(0);
        // Halo load: the x window read by the tile's taps (rows oh0*sh - pt ... on),
        // zero where it leaves the image, which *is* the zero padding.
        const int ih_base = oh0 * sh - pt;
        const int iw_base = ow0 * sw - pl;
        gpuconv::stage_window(s_x, xc, ih_base, iw_base, H, W, s_size, s_cols, tid,
                              NTHREADS);
        __syncthreads();  // the gy tile and the x window are staged before anyone reads
        if (active) {
            const int vh = min(TILE_H, OH - oh0);  // valid part of the tile
            const int vw = min(TILE_W, OW - ow0);
            const int valid = vh * vw;
            for (int q = lane; q < valid; q += lanes) {
                const int py = q / vw;
                const int px = q - py * vw;
                const T gv = s_gy[py * TILE_W + px];
                if (bias_slot)
                    acc = acc + gv;
                else
                    acc = fma(gv, s_x[py * sh * s_cols + px * sw + tap_off], acc);
            }
        }
        __syncthreads();  // everyone is done reading before the next tile overwrites
    }
    s_red[tid] = acc;  // inactive threads store 0, never read
    __syncthreads();  // every lane's partial sum is stored before the slot sums read it
    if (tid < slots && (!bias_slot || bias_here)) {
        T sum = s_red[tid];
        for (int l = 1; l < lanes; ++l) sum = sum + s_red[l * slots + tid];
        if (bias_slot) {
            gb_out[static_cast<long long>(split) * K + k] = sum;
        } else {
            const long long wcount = static_cast<long long>(K) * Cg * KHKW;
            gw_out[split * wcount + (static_cast<long long>(k) * Cg + c) * KHKW + tap] = sum;
        }
    }
}

// ---------------------------------------------------------------------------------
// tiled_regblock: a row offset that puts a tap outside every image (tail columns,
// dead terms): |value| + any real row stays far from the int range's ends.
constexpr int kFarOutside = 1 << 29;

// tiled_regblock: block THREADS = TX*TY, static shared memory (RegblockSmem). Grid,
// 1-D: m_tiles * n_tiles * groups * splits blocks (m_tile fastest, so the blocks that
// run together share the gy/x slice of one split in L2); split s reduces its balanced
// part (split_begin with slices_per_split, extra_slices) of the ceil(R / BK) slices
// of BK terms, R = N*OH*OW (the planner keeps splits <= slices: none is empty).
// Outputs as for tiled: gw_out[split*K*NG + k*NG + col], gb_out[split*K + k].
template <typename T, int TX, int TY, int TM, int TN>
__global__ void __launch_bounds__(TX * TY, gpuconv::regblock_min_blocks(TM, TN, sizeof(T)))
    conv2d_backward_weight_tiled_regblock(
        const T* __restrict__ gy, const T* __restrict__ x, T* __restrict__ gw_out,
        T* __restrict__ gb_out, int C, int H, int W, int K, int KH, int KW, int groups,
        int sh, int sw, int dh, int dw, int pt, int pl, int OH, int OW, int has_bias,
        long long R, long long slices_per_split, int extra_slices, int m_tiles,
        int n_tiles) {
    using Tile = gpuconv::RegblockTile<TX, TY, TM, TN>;
    constexpr int BK = Tile::BK;
    constexpr int STEP = Tile::THREADS / BK;    // rows (columns) gathered per pass
    constexpr int A_LOADS = Tile::BM / STEP;    // gy elements per thread and slice
    constexpr int B_LOADS = Tile::BN / STEP;    // x elements per thread and slice
    static_assert(Tile::THREADS % BK == 0, "a gather pass covers BK terms");
    static_assert(Tile::BM % STEP == 0 && Tile::BN % STEP == 0, "gathers tile the block");
    __shared__ gpuconv::RegblockSmem<T, Tile> s;

    const int Cg = C / groups;
    const int Kg = K / groups;
    const int KHKW = KH * KW;
    const int NG = Cg * KHKW;
    const int HW = H * W;
    const int OHW = OH * OW;

    const gpuconv::GemmBlock blk = gpuconv::gemm_block(m_tiles, n_tiles, groups);
    const int m_tile = blk.m_tile, n_tile = blk.n_tile, g = blk.g, split = blk.split;
    const int m0 = m_tile * Tile::BM;  // first output channel (within the group)
    const int n0 = n_tile * Tile::BN;  // first gw column (c*KH*KW + kh*KW + kw)
    const long long r_begin = split_begin(split, slices_per_split, extra_slices) * BK;
    const long long r_end =
        min(R, split_begin(split + 1, slices_per_split, extra_slices) * BK);
    const long long nslices = r_end > r_begin ? (r_end - r_begin + BK - 1) / BK : 0;
    const bool bias_block = has_bias != 0 && n_tile == 0;  // block-uniform

    const int tid = static_cast<int>(threadIdx.x);
    // Gather roles: this thread loads reduction term g_r of each slice, for the rows
    // (gy channels) and columns (x taps) g_row + q*STEP.
    const int g_r = tid % BK;
    const int g_row = tid / BK;

    // The columns' (c, kh*dh, kw*dw), decoded once: the tap offsets for the bounds
    // checks and the byte offset of each column's x element from the term's
    // window origin (c*HW + kh*dh*W + kw*dw); tail columns are masked.
    int b_dy[B_LOADS];
    int b_dx[B_LOADS];
    long long b_off[B_LOADS];
#pragma unroll
    for (int q = 0; q < B_LOADS; ++q) {
        const int col = n0 + g_row + q * STEP;
        const bool ok = col < NG;
        const int cc = ok ? col / KHKW : 0;
        const int tp = ok ? col - cc * KHKW : 0;
        const int khh = tp / KW;
        b_dy[q] = khh * dh;
        b_dx[q] = (tp - khh * KW) * dw;
        b_off[q] = (static_cast<long long>(cc) * HW + b_dy[q] * W + b_dx[q]) *
                   static_cast<long long>(sizeof(T));
        gpuconv::keep_in_register(b_off[q]);
        // A tail column's row offset puts every term's row outside the image: its
        // bounds check fails, so the column mask is folded into the row check.
        if (!ok) b_dy[q] = -kFarOutside;
    }
    // The rows' (gy channels') byte offsets from the term's gy element. A tail row
    // (past Kg) reads row 0 instead: its sums are never written (epilogue and bias
    // skip tail rows), so the loads need only the term's liveness as predicate.
    long long a_off[A_LOADS];
#pragma unroll
    for (int q = 0; q < A_LOADS; ++q) {
        const int m = g_row + q * STEP;
        a_off[q] = m0 + m < Kg ? static_cast<long long>(m) * OHW *
                                     static_cast<long long>(sizeof(T))
                               : 0LL;
        gpuconv::keep_in_register(a_off[q]);
    }
    // This thread's reduction term r = (n, p = oh*OW + ow), advanced by BK terms per
    // slice: p by counters and two multiply-shift divisions (no division
    // instruction, no data-dependent loop in the main loop).
    const long long r = r_begin + g_r;
    const long long n = r / OHW;
    int p = static_cast<int>(r - n * OHW);
    const gpuconv::FastDiv div_ow(OW);
    const gpuconv::FastDiv div_ohw(OHW);
    int oh = div_ow.div(p);
    int ow = p - oh * OW;
    const long long gy_group = static_cast<long long>(g) * Kg + m0;  // gy channel of row 0
    const long long x_group = static_cast<long long>(g) * Cg;
    const T* gy_n = gy + (n * K + gy_group) * OHW;  // gy[n, gy_group]
    const T* x_n = x + (n * C + x_group) * HW;      // x[n, g*Cg]
    // Bytes from one image to the next, in gy and in x.
    long long gy_image = static_cast<long long>(K) * OHW * static_cast<long long>(sizeof(T));
    long long x_image = static_cast<long long>(C) * HW * static_cast<long long>(sizeof(T));

    // Liveness: every term of a slice but the split's last is < r_end; the last slice
    // holds last_live terms (1..BK), so term g_r is live there iff g_r < last_live.
    const int last_live =
        nslices > 0 ? static_cast<int>(r_end - (r_begin + (nslices - 1) * BK)) : 0;
    T reg_a[A_LOADS];
    T reg_b[B_LOADS];
    // The gathers of a slice; live: this thread's term of it is < r_end (a literal
    // true in the main loop, which never fetches the split's last slice).
    auto fetch = [&](bool live) {
        const int ih0 = oh * sh - pt;
        const int iw0 = ow * sw - pl;
        // The row the bounds checks see: far outside for a dead term (every x
        // check fails: the liveness is folded into the row checks).
        const int ihc = live ? ih0 : -kFarOutside;
        const char* gyp = reinterpret_cast<const char*>(gy_n + p);
#pragma unroll
        for (int q = 0; q < A_LOADS; ++q)
            reg_a[q] = live ? __ldg(reinterpret_cast<const T*>(gyp + a_off[q])) : T(0);
        const char* xw = reinterpret_cast<const char*>(x_n) +
                         static_cast<long long>(ih0 * W + iw0) *
                             static_cast<long long>(sizeof(T));
        gpuconv::keep_in_register(xw);
#pragma unroll
        for (int q = 0; q < B_LOADS; ++q) {
            const bool ok = gpuconv::in_range(ihc + b_dy[q], H) &&
                            gpuconv::in_range(iw0 + b_dx[q], W);
            reg_b[q] = ok ? __ldg(reinterpret_cast<const T*>(xw + b_off[q])) : T(0);
        }
    };
    auto advance = [&]() {
        p += BK;  // < OH*OW + BK: fits int (the planner checks OH*OW + 1024)
        const int images = div_ohw.div(p);  // images crossed: 0, or more if OH*OW < BK
        p -= images * OHW;
        const long long crossed = static_cast<long long>(static_cast<unsigned>(images));
        gy_n = reinterpret_cast<const T*>(reinterpret_cast<const char*>(gy_n) +
                                          crossed * gy_image);
        x_n = reinterpret_cast<const T*>(reinterpret_cast<const char*>(x_n) +
                                         crossed * x_image);
        gpuconv::keep_in_register(gy_n);  // updated once here, not at every load
        gpuconv::keep_in_register(x_n);
        oh = div_ow.div(p);
        ow = p - oh * OW;
    };
    // Bias (used in column tile 0): each thread sums the gy values it gathers (its
    // term g_r of each slice, rows g_row + q*STEP) as it stashes them; the BK
    // partial sums of a row are added in g_r order after the loop.
    T bsum[A_LOADS];
#pragma unroll
    for (int q = 0; q < A_LOADS; ++q) bsum[q] = T(0);
    auto stash = [&](int stage) {
#pragma unroll
        for (int q = 0; q < A_LOADS; ++q) {
            s.a[stage][g_r][g_row + q * STEP] = reg_a[q];
            bsum[q] = bsum[q] + reg_a[q];
        }
#pragma unroll
        for (int q = 0; q < B_LOADS; ++q) s.b[stage][g_r][g_row + q * STEP] = reg_b[q];
    };
    T acc[Tile::TM][Tile::TN];
    gpuconv::regblock_zero<T, Tile>(acc);

    const int tx = tid % TX;
    const int ty = tid / TX;
    // One slice of the main loop, whose next slice is not the split's last: all of
    // its terms are live (the next slice's gathers are in flight during the FMAs;
    // the loop below runs two slices per trip with the literal stages 0 and 1).
    auto full_step = [&](int CUR) {
        advance();
        fetch(true);
        gpuconv::regblock_fmas<T, Tile>(s, CUR, tx, ty, acc);
        stash(CUR ^ 1);
        // The other stage is complete before the next slice reads it, and every
        // thread is done reading stage CUR before the slice after overwrites it.
        __syncthreads();
    };
    // Slice 0 (maybe the split's last), then the main loop over the slices whose
    // successor is not the last, then the last one or two slices (peeled, with the
    // liveness test, out of the hot loop).
    fetch(nslices > 1 || g_r < last_live);
    stash(0);
    __syncthreads();  // slice 0 is staged before any thread reads it
    long long kt = 0;  // the staged slice, in stage kt & 1
    for (; kt + 3 < nslices; kt += 2) {
        full_step(0);
        full_step(1);
    }
    if (kt + 2 < nslices) {  // kt is even here: stage 0
        full_step(0);
        ++kt;
    }
    if (kt + 1 < nslices) {  // the last slice, kt + 1, is fetched with its liveness
        const int cur = static_cast<int>(kt & 1);
        advance();
        fetch(g_r < last_live);
        gpuconv::regblock_fmas<T, Tile>(s, cur, tx, ty, acc);
        stash(cur ^ 1);
        __syncthreads();  // as in full_step
        ++kt;
    }
    if (kt < nslices) {  // the FMAs of the last slice (nslices == 0: none)
        gpuconv::regblock_fmas<T, Tile>(s, static_cast<int>(kt & 1), tx, ty, acc);
        __syncthreads();  // every thread is done reading before the bias reuses stage 0
    }

    const long long wcount = static_cast<long long>(K) * NG;
    T* gwp = gw_out + split * wcount + (gy_group * NG + n0);
#pragma unroll
    for (int i = 0; i < Tile::TM; ++i) {
        const int lr = gpuconv::regblock_row<Tile>(tx, i);
        if (m0 + lr >= Kg) continue;  // tail rows of the last row tile
#pragma unroll
        for (int j = 0; j < Tile::TN; ++j) {
            const int lc = gpuconv::regblock_col<Tile>(ty, j);
            if (n0 + lc >= NG) continue;  // tail columns of the last column tile
            gwp[static_cast<long long>(lr) * NG + lc] = acc[i][j];
        }
    }
    if (bias_block) {  // block-uniform: the barrier below is reached by all threads
        // The loop ended with a barrier: stage 0 is free. Row m's partial sums go to
        // s.a[0][g_r][m], then thread m adds them in g_r order.
#pragma unroll
        for (int q = 0; q < A_LOADS; ++q) s.a[0][g_r][g_row + q * STEP] = bsum[q];
        __syncthreads();  // every partial sum is stored before the row sums read them
        if (tid < Tile::BM && m0 + tid < Kg) {
            T sum = s.a[0][0][tid];
#pragma unroll
            for (int kk = 1; kk < BK; ++kk) sum = sum + s.a[0][kk][tid];
            gb_out[static_cast<long long>(split) * K + gy_group + tid] = sum;
        }
    }
}

// ---------------------------------------------------------------------------------
// reduce: out[i] = sum over s = 0, 1, ..., splits-1 of part[s*count + i], in that
// order, for the gw part (count = wcount, into gw) and the gb part (count = total -
// wcount, into gb) of the split-K workspace. 1-D grid-stride loop over total.
template <typename T>
__global__ void conv2d_backward_weight_reduce(
    const T* __restrict__ pw, const T* __restrict__ pb, T* __restrict__ gw,
    T* __restrict__ gb, int splits, long long wcount, long long total) {
    const long long bcount = total - wcount;
    for (long long idx = gpuconv::global_thread_index(); idx < total;
         idx += gpuconv::grid_stride()) {
        if (idx < wcount) {
            T acc = pw[idx];
            for (int sp = 1; sp < splits; ++sp) acc = acc + pw[sp * wcount + idx];
            gw[idx] = acc;
        } else {
            const long long j = idx - wcount;
            T acc = pb[j];
            for (int sp = 1; sp < splits; ++sp) acc = acc + pb[sp * bcount + j];
            gb[j] = acc;
        }
    }
}

// ---------------------------------------------------------------------------------
// conv2d_backward_bias_partial: block of exactly BIAS_THREADS threads (the tree below
// assumes it); grid K * splits (1-D, k fastest). Block (k, s) sums its balanced slice
// (split_begin with per_split, extra) of the R = N*OH*OW flattened (n, oh*OW + ow)
// terms of gy[:, k] into out[s*K + k] (the planner keeps splits <= R).
constexpr int BIAS_THREADS = 256;

template <typename T>
__global__ void __launch_bounds__(BIAS_THREADS) conv2d_backward_bias_partial(
    const T* __restrict__ gy, T* __restrict__ out, int K, int OHW, long long per_split,
    int extra) {
    __shared__ T s_sum[BIAS_THREADS];
    const int tid = static_cast<int>(threadIdx.x);
    const int k = static_cast<int>(blockIdx.x % K);
    const int split = static_cast<int>(blockIdx.x / K);
    const long long r_begin = split_begin(split, per_split, extra);
    const long long r_end = split_begin(split + 1, per_split, extra);
    T acc = T(0);
    for (long long n = r_begin / OHW; n * OHW < r_end; ++n) {  // images of the slice
        const long long base = n * OHW;
        const int q_lo = static_cast<int>(max(r_begin - base, 0LL));
        const int q_hi = static_cast<int>(min(r_end - base, static_cast<long long>(OHW)));
        const T* gyk = gy + (n * K + k) * OHW;
        for (int q = q_lo + tid; q < q_hi; q += BIAS_THREADS) acc = acc + gyk[q];
    }
    s_sum[tid] = acc;
    __syncthreads();  // every thread's sum is stored before the tree reads it
    for (int stride = BIAS_THREADS / 2; stride > 0; stride >>= 1) {
        if (tid < stride) s_sum[tid] = s_sum[tid] + s_sum[tid + stride];
        __syncthreads();  // this level of the tree is complete before the next reads it
    }
    if (tid == 0) out[static_cast<long long>(split) * K + k] = s_sum[0];
}

// ---------------------------------------------------------------------------------
// nhwc (FP32; what 'auto' runs where it applies): the weight gradient's GEMM on operands
// packed to NHWC once per call (conv2d_nhwc_pack_input of conv2d_mma.cu, unrounded:
// gy -> (N, OH, OW, K), x -> (N, H, W, C)), so that a slab of the reduction (BK = 16
// consecutive pixels of the flattened N*OH*OW, crossing images freely) is, for both
// operands, BK shared rows of 16-byte chunks along the channels:
//   A[p][m] = gyh[p, g*Kg + m]      (BM = 32, 64 or 128 output channels of the tile)
//   B[p][n] = xh[n(p), ih(p, tap), iw(p, tap), g*Cg + c],  n = tap*Cg + c (BN = 128
//             columns in the order of the packed weights), zero outside the image
// one cp.async each (zero fill past the pixels and the tails; no registers on the
// way), STAGES = 3 stages in flight, one barrier per slab. Both operands k-major, so
// a thread's 8 x 8 tile (rows tx*4 + {0..3}, BM/2 + tx*4 + {0..3}; columns
// likewise with ty and 64) reads 2 + 2 LDS.128 per term and does 64 FFMA (the classic SIMT GEMM
// inner loop, as the tiled_regblock thread tile). Split-K over balanced ranges of
// whole slabs, partial sums in gw's layout, added in split order by reduce
// (deterministic); the bias gradient is the op's own reduction. Needs Kg and Cg
// multiples of 4. Another summation order than tiled_regblock (fixed: per thread,
// the pixels in increasing order within its split).
namespace gpuconv {

// BM output channels x BN = 128 columns per block, BM / 8 x 16 threads of 8 x 8
// outputs: BM = 128 (256 threads, K/groups > 64), 64 (128 threads) or 32 (64
// threads) so that a layer with few output channels per group does not leave half
// of a 128-row tile idle.
template <int BM_>
struct NhwcSimtTile {
    static constexpr int BM = BM_, BN = 128, BK = 16, STAGES = 3;
    static constexpr int TM = 8, TN = 8, TX = BM / TM, TY = BN / TN;
    static constexpr int THREADS = TX * TY;
    static constexpr int A_CPR = BM / 4, B_CPR = BN / 4;  // 16-byte chunks per row
    static constexpr int A_COPIES = BK * A_CPR / THREADS;  // per thread and slab
    static constexpr int A_STEP = THREADS / A_CPR;         // between its A rows
    // B: a thread copies B_COPIES chunks of one pixel row (B_TPR threads a row), so
    // that the pixel is decoded once per slab and each chunk adds its tap offset
    static constexpr int B_TPR = THREADS / BK;
    static constexpr int B_COPIES = B_CPR / B_TPR;
    static_assert(BM == 32 || BM == 64 || BM == 128, "BM: 32, 64 or 128");
    static_assert(A_COPIES * A_STEP == BK && B_COPIES * B_TPR == B_CPR, "copy roles");
};

template <int BM>
struct alignas(16) NhwcSimtSmem {
    using Tile = NhwcSimtTile<BM>;
    float a[Tile::STAGES][Tile::BK][Tile::BM];
    float b[Tile::STAGES][Tile::BK][Tile::BN];
};

}  // namespace gpuconv

// Grid: m_tiles * n_tiles * groups * splits blocks (1-D), BM / 8 * 16 threads;
// static smem (3 stages of 16 x (BM + 128) floats: 48 / 36 / 30 KiB). gyh (N, OH, OW,
// K), xh (N, H, W, C); slabs = ceil(N*OH*OW / 16).
template <typename T, int BM>
__global__ void __launch_bounds__(gpuconv::NhwcSimtTile<BM>::THREADS, 1)
conv2d_backward_weight_nhwc(
    const T* __restrict__ gyh, const T* __restrict__ xh, T* __restrict__ gw_out, int N,
    int C, int H, int W, int K, int KH, int KW, int groups, int sh, int sw, int dh,
    int dw, int pt, int pl, int OH, int OW, long long slabs_per_split, int extra_slabs,
    int m_tiles, int n_tiles) {
    using Tile = gpuconv::NhwcSimtTile<BM>;
    constexpr int BK = Tile::BK;
    constexpr int STAGES = Tile::STAGES;
    static_assert(sizeof(T) == 4, "16-byte chunks of 4 elements");
    __shared__ gpuconv::NhwcSimtSmem<BM> s;

    const gpuconv::GemmBlock blk = gpuconv::gemm_block(m_tiles, n_tiles, groups);
    const int g = blk.g;
    const int Cg = C / groups;
    const int Kg = K / groups;
    const int KHKW = KH * KW;
    const int ncols = Cg * KHKW;
    const int OHW = OH * OW;
    const long long NP = static_cast<long long>(N) * OHW;
    const int m0 = blk.m_tile * Tile::BM;
    const int n0 = blk.n_tile * Tile::BN;
    const gpuconv::SplitSlice slabs =
        gpuconv::split_slice(blk.split, slabs_per_split, extra_slabs);
    const long long s_begin = slabs.begin;
    const int ktiles = static_cast<int>(slabs.end - slabs.begin);

    const int tid = static_cast<int>(threadIdx.x);
    // A: this thread's chunk (output channels m0 + 4*a_chunk .. + 3) of gyh's pixel
    // rows a_row0 + i*A_STEP, pixel p (flat over N*OH*OW) at gyh + p*K
    const int a_chunk = tid % Tile::A_CPR;
    const int a_row0 = tid / Tile::A_CPR;
    const bool a_ok = m0 + 4 * a_chunk < Kg;
    const T* a_base = gyh + static_cast<long long>(g) * Kg + (a_ok ? m0 + 4 * a_chunk : 0);
    long long a_p = s_begin * BK + a_row0;
    // B: row b_row of each slab (pixel p = slab*BK + b_row), chunks b_c0 + j*B_TPR:
    // columns n0 + 4*chunk .. + 3 = tap, channels c .. c + 3 (Cg % 4 == 0). Per
    // chunk its tap (dy, dx) and its offset from the pixel's (ih0, iw0) = (oh*sh,
    // ow*sw) in xh: (dy*W + dx)*C + g*Cg + c, decoded once.
    const int b_row = tid / Tile::B_TPR;
    const int b_c0 = tid % Tile::B_TPR;
    // A chunk past the columns gets dy = OFF and offset 0 (and a pixel past the
    // images ih0 = OFF): every row test fails (|dy|, ih0 < 2^30 otherwise, so no sum
    // overflows). The offsets fit an int: (max |dy| + 1)*W*C + (max |dx| + 1)*C <
    // 2^30 (the planner's wgrad_nhwc_applies).
    constexpr int OFF = -(1 << 30);
    int b_dy[Tile::B_COPIES], b_dx[Tile::B_COPIES], b_off[Tile::B_COPIES];
#pragma unroll
    for (int j = 0; j < Tile::B_COPIES; ++j) {
        const gpuconv::NhwcColumn bcol(n0 + 4 * (b_c0 + j * Tile::B_TPR), ncols, Cg, g,
                                       KW, dh, dw, pt, pl);
        b_dy[j] = bcol.ok ? bcol.dy : OFF;
        b_dx[j] = bcol.dx;
        b_off[j] = bcol.ok ? static_cast<int>((static_cast<long long>(bcol.dy) * W +
                                               bcol.dx) * C + bcol.offset)
                           : 0;
    }
    const gpuconv::FastDiv div_ohw(OHW);
    const gpuconv::FastDiv div_ow(OW);
    // the B row's next pixel: flat p = ld_n*OHW + ld_q (decoded once, then advanced
    // by BK per slab with one multiply-shift division where it wraps)
    const long long p_first = s_begin * BK + b_row;
    long long ld_n = p_first / OHW;
    int ld_q = static_cast<int>(p_first - ld_n * OHW);
    auto load = [&](int st) {
#pragma unroll
        for (int i = 0; i < Tile::A_COPIES; ++i) {
            const long long p = a_p + i * Tile::A_STEP;  // past NP: ignored
            gpuconv::cp_async_ignore16(&s.a[st][a_row0 + i * Tile::A_STEP][4 * a_chunk],
                                       a_base + p * K, p < NP && a_ok);
        }
        a_p += BK;
        const int oh = div_ow.div(ld_q);
        const int iw0 = (ld_q - oh * OW) * sw;
        const int ih0 = ld_n < N ? oh * sh : OFF;
        // the pixel (ih0, iw0) of image ld_n (past the images: clamped); a chunk
        // whose tap falls outside the image carries an address outside it, which
        // the ignore-src copy never reads
        const T* pix = xh + ((ld_n < N ? ld_n * H + oh * sh : 0) *
                                 static_cast<long long>(W) + iw0) * C;
#pragma unroll
        for (int j = 0; j < Tile::B_COPIES; ++j) {
            const bool ok = gpuconv::in_range(ih0 + b_dy[j], H) &&
                            gpuconv::in_range(iw0 + b_dx[j], W);
            gpuconv::cp_async_ignore16(&s.b[st][b_row][4 * (b_c0 + j * Tile::B_TPR)],
                                       pix + b_off[j], ok);
        }
        int nq = ld_q + BK;
        if (nq >= OHW) {
            const int d = div_ohw.div(nq);
            ld_n += d;
            nq -= d * OHW;
        }
        ld_q = nq;
    };

    const int tx = tid % Tile::TX;
    const int ty = tid / Tile::TX;
    T acc[Tile::TM][Tile::TN];
    gpuconv::regblock_zero<T, Tile>(acc);

    gpuconv::cp_async_pipeline<STAGES>(ktiles, load, [&](int cur) {
#pragma unroll
        for (int kk = 0; kk < BK; ++kk) {
            T af[Tile::TM], bf[Tile::TN];
#pragma unroll
            for (int i = 0; i < Tile::TM; ++i)
                af[i] = s.a[cur][kk][(i / 4) * (Tile::TX * 4) + tx * 4 + i % 4];
#pragma unroll
            for (int j = 0; j < Tile::TN; ++j)
                bf[j] = s.b[cur][kk][(j / 4) * (Tile::TY * 4) + ty * 4 + j % 4];
#pragma unroll
            for (int i = 0; i < Tile::TM; ++i)
#pragma unroll
                for (int j = 0; j < Tile::TN; ++j) acc[i][j] = fma(af[i], bf[j], acc[i][j]);
        }
    });

    const long long wcount = static_cast<long long>(K) * ncols;
    T* out = gw_out + blk.split * wcount + static_cast<long long>(g) * Kg * ncols;
#pragma unroll
    for (int i = 0; i < Tile::TM; ++i) {
        const int m = m0 + (i / 4) * (Tile::TX * 4) + tx * 4 + i % 4;
        if (m >= Kg) continue;
#pragma unroll
        for (int j = 0; j < Tile::TN; ++j) {
            const int cc = n0 + (j / 4) * (Tile::TY * 4) + ty * 4 + j % 4;
            if (cc >= ncols) continue;
            const int tap = cc / Cg;
            out[static_cast<long long>(m) * ncols + (cc - tap * Cg) * KHKW + tap] =
                acc[i][j];
        }
    }
}

// ---------------------------------------------------------------------------------
// unfold (FP32; what 'auto' runs for the weight gradient of few-channel layers such
// as the RGB stem, where the NHWC chunks along the channels do not exist): the GEMM
//   gw[g*Kg + m, col] = sum over pixels p = (n, oh, ow) of A[m][p] * B[col][p]
//   A[m][p]   = gy[n, g*Kg + m, oh, ow]                     (in place, NCHW)
//   B[col][p] = xu[n, g*Cg + c, kw, oh*sh + kh*dh, ow]      col = (c*KH + kh)*KW + kw
// with xu the width-unfolded x of conv2d_unfold_width (below), zero where the tap
// falls in the padding. OW % 4 == 0 (the planner's wgrad_unfold_applies), so the
// pixels cut into chunks of 4 consecutive ow of one output row, and a chunk is 16
// aligned bytes of gy's row and of xu's row for every (row m, column col): both
// operands are staged by cp.async 16-byte copies along the pixels, into pixel-major
// shared rows (a[m][pixel], b[col][pixel]), with nothing to compute per copy but its
// address. A slab is BK = 16 pixels (4 chunks, each decoded once per slab from its
// flat chunk index: two multiply-shift divisions); STAGES = 3 slabs in flight, one
// barrier per slab (cp_async_pipeline of common.cuh). Thread (tx, ty) of the 8 x 16
// threads owns rows tx + 8i (i < 8) and columns ty + 16j (j < 4): per 4 pixels 8 + 4
// LDS.128 (rows 80 bytes apart: the 8 threads of a quarter-warp hit 8 different
// 16-byte bank groups; the B reads are broadcasts) and 128 FFMA. Past the pixels
// (the split's last slab), past the rows (Kg) and past the columns the copies are
// zero fills from a valid address; tail rows and columns are never written. Split-K
// over balanced ranges of slabs, partial sums in gw's layout added in split order by
// reduce; the bias gradient is the op's own reduction. Summation order per output:
// the pixels in increasing order (n, oh, ow) within a split, splits in order: the
// naive kernel's order with one split.
namespace gpuconv {

struct UnfoldTile {
    static constexpr int BM = 64, BN = 64;  // output channels x columns (c, kh, kw)
    static constexpr int BK = 16;           // pixels per slab
    static constexpr int STAGES = 3;
    static constexpr int TM = 8, TN = 4, TX = BM / TM, TY = BN / TN;
    static constexpr int THREADS = TX * TY;                 // 128
    static constexpr int LD = BK + 4;                       // shared row stride (floats)
    static constexpr int CHUNKS = BK / 4;                   // 16-byte chunks per row
    static constexpr int ROWS_PER_PASS = THREADS / CHUNKS;  // rows one pass copies
    static constexpr int A_COPIES = BM / ROWS_PER_PASS;     // per thread and slab
    static constexpr int B_COPIES = BN / ROWS_PER_PASS;
    static_assert(LD % 4 == 0 && (LD / 4) % 2 == 1, "16-byte rows, odd in 16-byte units");
    static_assert(THREADS % CHUNKS == 0 && BM % ROWS_PER_PASS == 0 &&
                      BN % ROWS_PER_PASS == 0, "copy roles tile the block");
};

struct alignas(16) UnfoldSmem {
    float a[UnfoldTile::STAGES][UnfoldTile::BM][UnfoldTile::LD];
    float b[UnfoldTile::STAGES][UnfoldTile::BN][UnfoldTile::LD];
};

}  // namespace gpuconv

// conv2d_unfold_width: xu[n, c, kw, hp, ow] = x[n, c, hp - pt, ow*sw - pl + kw*dw]
// (0 outside the image), hp < Hp = (OH - 1)*sh + (KH - 1)*dh + 1 (the rows the taps
// read), ow < OW. One thread per element of xu (1-D grid-stride loop over its 64-bit
// flat index; consecutive threads write consecutive ow).
template <typename T>
__global__ void conv2d_unfold_width(const T* __restrict__ x, T* __restrict__ xu,
                                    int H, int W, int KW, int sw, int dw, int pt, int pl,
                                    int Hp, int OW, long long total) {
    for (long long idx = gpuconv::global_thread_index(); idx < total;
         idx += gpuconv::grid_stride()) {
        const int ow = static_cast<int>(idx % OW);
        long long t = idx / OW;
        const int hp = static_cast<int>(t % Hp);
        t /= Hp;
        const int kw = static_cast<int>(t % KW);
        const long long nc = t / KW;  // n*C + c
        const int ih = hp - pt;
        const int iw = ow * sw - pl + kw * dw;
        xu[idx] = gpuconv::in_range(ih, H) && gpuconv::in_range(iw, W)
                      ? x[(nc * H + ih) * static_cast<long long>(W) + iw]
                      : T(0);
    }
}

// Grid: m_tiles * n_tiles * groups * splits blocks (1-D), 128 threads; static smem
// 3 stages of (64 + 64) x 20 floats (30 KiB). gy (N, K, OH, OW), xu as above;
// slabs = ceil(N*OH*OW / 16); gy and xu hold fewer than 2^31 elements (the planner:
// every offset is an int).
template <typename T>
__global__ void __launch_bounds__(gpuconv::UnfoldTile::THREADS, 4)
conv2d_backward_weight_unfold(
    const T* __restrict__ gy, const T* __restrict__ xu, T* __restrict__ gw_out, int N,
    int C, int K, int KH, int KW, int groups, int sh, int dh, int Hp, int OH, int OW,
    long long slabs_per_split, int extra_slabs, int m_tiles, int n_tiles) {
    using Tile = gpuconv::UnfoldTile;
    constexpr int BK = Tile::BK;
    constexpr int STAGES = Tile::STAGES;
    static_assert(sizeof(T) == 4, "16-byte chunks of 4 elements");
    __shared__ gpuconv::UnfoldSmem s;

    const gpuconv::GemmBlock blk = gpuconv::gemm_block(m_tiles, n_tiles, groups);
    const int g = blk.g;
    const int Cg = C / groups;
    const int Kg = K / groups;
    const int KHKW = KH * KW;
    const int ncols = Cg * KHKW;
    const int OHW = OH * OW;
    const int chunks = N * (OHW / 4);
    const int m0 = blk.m_tile * Tile::BM;
    const int n0 = blk.n_tile * Tile::BN;
    const gpuconv::SplitSlice slabs =
        gpuconv::split_slice(blk.split, slabs_per_split, extra_slabs);
    const int ktiles = static_cast<int>(slabs.end - slabs.begin);

    const int tid = static_cast<int>(threadIdx.x);
    // Copy roles: chunk `ck` (pixels 4*ck .. 4*ck + 3 of each slab) of rows and
    // columns `r0 + i*ROWS_PER_PASS`. Per row (column) the offset of its pixel
    // (0, 0, 0) in gy (xu); a tail row or column copies zeros from row (column) 0.
    const int ck = tid % Tile::CHUNKS;
    const int r0 = tid / Tile::CHUNKS;
    const int plane = Hp * OW;  // one (c, kw) of xu
    const T* a_ptr[Tile::A_COPIES];
    bool a_ok[Tile::A_COPIES];
#pragma unroll
    for (int i = 0; i < Tile::A_COPIES; ++i) {
        const int m = m0 + r0 + i * Tile::ROWS_PER_PASS;
        a_ok[i] = m < Kg;
        a_ptr[i] = gy + (g * Kg + (a_ok[i] ? m : 0)) * OHW;
        gpuconv::keep_in_register(a_ptr[i]);  // a pointer, plus an int per slab
    }
    const T* b_ptr[Tile::B_COPIES];
    bool b_ok[Tile::B_COPIES];
#pragma unroll
    for (int j = 0; j < Tile::B_COPIES; ++j) {
        const int col = n0 + r0 + j * Tile::ROWS_PER_PASS;
        b_ok[j] = col < ncols;
        const int cc = b_ok[j] ? col : 0;
        const int c = cc / KHKW;
        const int tap = cc - c * KHKW;
        const int kh = tap / KW;
        const int kw = tap - kh * KW;
        b_ptr[j] = xu + ((g * Cg + c) * KW + kw) * plane + kh * dh * OW;
        gpuconv::keep_in_register(b_ptr[j]);
    }
    const int gy_image = K * OHW;       // gy elements per image
    const int xu_image = C * KW * plane;  // xu elements per image
    const int row_skip = (sh - 1) * OW;  // xu elements skipped per output row
    const gpuconv::FastDiv div_chunks(OHW / 4);  // chunks per image
    const gpuconv::FastDiv div_ow(OW);
    // this thread's chunk of the next slab to load (flat over N*OH*OW/4)
    int q = static_cast<int>(slabs.begin) * Tile::CHUNKS + ck;
    auto load = [&](int st) {
        // past the pixels (the last slab's tail): zeros, from chunk 0's address
        const bool live = q < chunks;
        const int qd = live ? q : 0;
        const int n = div_chunks.div(qd);
        const int p = 4 * (qd - n * (OHW / 4));  // oh*OW + ow0
        const int a_pix = n * gy_image + p;
        const int b_pix = n * xu_image + p + div_ow.div(p) * row_skip;
#pragma unroll
        for (int i = 0; i < Tile::A_COPIES; ++i)
            gpuconv::cp_async_zfill16(&s.a[st][r0 + i * Tile::ROWS_PER_PASS][4 * ck],
                                      a_ptr[i] + a_pix, live && a_ok[i]);
#pragma unroll
        for (int j = 0; j < Tile::B_COPIES; ++j)
            gpuconv::cp_async_zfill16(&s.b[st][r0 + j * Tile::ROWS_PER_PASS][4 * ck],
                                      b_ptr[j] + b_pix, live && b_ok[j]);
        q += Tile::CHUNKS;
    };

    const int tx = tid % Tile::TX;
    const int ty = tid / Tile::TX;
    T acc[Tile::TM][Tile::TN];
#pragma unroll
    for (int i = 0; i < Tile::TM; ++i)
#pragma unroll
        for (int j = 0; j < Tile::TN; ++j) acc[i][j] = T(0);

    gpuconv::cp_async_pipeline<STAGES>(ktiles, load, [&](int cur) {
#pragma unroll
        for (int k4 = 0; k4 < BK; k4 += 4) {
            T af[Tile::TM][4], bf[Tile::TN][4];  // 4 pixels of each row and column
#pragma unroll
            for (int i = 0; i < Tile::TM; ++i)
#pragma unroll
                for (int e = 0; e < 4; ++e) af[i][e] = s.a[cur][tx + Tile::TX * i][k4 + e];
#pragma unroll
            for (int j = 0; j < Tile::TN; ++j)
#pragma unroll
                for (int e = 0; e < 4; ++e) bf[j][e] = s.b[cur][ty + Tile::TY * j][k4 + e];
#pragma unroll
            for (int e = 0; e < 4; ++e)
#pragma unroll
                for (int i = 0; i < Tile::TM; ++i)
#pragma unroll
                    for (int j = 0; j < Tile::TN; ++j)
                        acc[i][j] = fma(af[i][e], bf[j][e], acc[i][j]);
        }
    });

    const long long wcount = static_cast<long long>(K) * ncols;
    T* out = gw_out + blk.split * wcount + static_cast<long long>(g) * Kg * ncols;
#pragma unroll
    for (int i = 0; i < Tile::TM; ++i) {
        const int m = m0 + tx + Tile::TX * i;
        if (m >= Kg) continue;
#pragma unroll
        for (int j = 0; j < Tile::TN; ++j) {
            const int col = n0 + ty + Tile::TY * j;
            if (col < ncols) out[static_cast<long long>(m) * ncols + col] = acc[i][j];
        }
    }
}

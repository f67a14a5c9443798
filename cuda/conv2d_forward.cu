// conv2d_forward.cu: y = conv2d(x, w) + bias, the cross-correlation of deep learning,
// NCHW: y[n,k,oh,ow] = bias[k] + sum_{c,kh,kw} x[n, g*Cg + c, oh*sh - pt + kh*dh,
// ow*sw - pl + kw*dw] * w[k, c, kh, kw], g = k / Kg, with zeros outside the image.
//
// Variants (each: T = float or double; any stride, dilation, groups, asymmetric zero
// padding; kernel size and all extents are runtime arguments; bias fused; tails
// guarded, no size needs to be a multiple of a tile):
//   naive           One thread per output element (1-D grid-stride loop over the
//                   64-bit flat index of y); loops c, kh, kw reading x and w from
//                   global memory. The second oracle of the test suite: kept simple.
//   tiled           A TILE_W x TILE_H thread block computes a TILE_H x TILE_W output
//                   tile of one (n, k), one output per thread. For each input channel
//                   it stages the input tile plus its halo ((TILE-1)*stride +
//                   (KH-1)*dilation + 1 rows, likewise columns; zero-filled outside
//                   the image, which *is* the zero padding) and the KH*KW taps of
//                   w[k, c] in shared memory, then accumulates from shared memory.
//   tiled_regblock  Sliced implicit GEMM (implicit_gemm.cuh): M = N*OH*OW pixels,
//                   NG = K/groups output channels, reduction over (chunks of 8
//                   input channels) x (KH*KW taps) slices listed in a SliceEntry
//                   table (the tap's offsets and weight offset, block-uniform):
//                   per slice one bounds check and one address per thread, no
//                   division in the loop. Double-buffered shared memory (BK = 8),
//                   TM x TN (8x8 for the large tiles) accumulators per thread. Split-K
//                   (planner: when the blocks do not fill the SMs, e.g. 7x7 and
//                   14x14 layers): each split writes a partial result, then
//   split_reduce    adds the splits in split order and the bias (deterministic, no
//                   atomics).
//   nhwc            (float only; 'auto' where the channels allow it) The GEMM on
//                   operands packed to NHWC once per call: a slab of 16 channels of
//                   one tap is 16-byte cp.async copies, 3 stages in flight, one
//                   barrier per slab; 8 x 8 thread tiles of 128 x BN blocks (BN =
//                   128, or 64 for up to 64 output channels per group); also the
//                   input gradient of stride-1 layers (on gy with the flipped
//                   weights); split-K with split_reduce (see the section at the end).
// naive and tiled accumulate in the same order (c, then kh, then kw, one fma per
// tap, padded taps included as fma(0, w, acc)), then add the bias: bit-identical
// results. tiled_regblock sums channel chunks of 8, then taps, then the chunk's
// channels (then splits in order, then the bias): within rounding of the others, and
// bit-identical from run to run.
// Other padding modes are applied before these kernels: the input is padded once
// through index maps (conv2d_pad.cu) and convolved with zero padding 0.
#include "common.cuh"
#include "implicit_gemm.cuh"


// ---------------------------------------------------------------------------------
// naive
template <typename T>
__global__ void conv2d_forward_naive(
    const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ bias,
    T* __restrict__ y, int N, int C, int H, int W, int K, int KH, int KW, int groups,
    int sh, int sw, int dh, int dw, int pt, int pl, int OH, int OW, int has_bias,
    long long total) {
    const int Cg = C / groups;
    const int Kg = K / groups;
    const int HW = H * W;
    for (long long idx = gpuconv::global_thread_index(); idx < total;
         idx += gpuconv::grid_stride()) {
        const int ow = static_cast<int>(idx % OW);
        long long t = idx / OW;
        const int oh = static_cast<int>(t % OH);
        t /= OH;
        const int k = static_cast<int>(t % K);
        const long long n = t / K;
        const int g = k / Kg;
        const T* xg = x + (n * C + static_cast<long long>(g) * Cg) * HW;
        const T* wk = w + static_cast<long long>(k) * Cg * KH * KW;
        T acc = T(0);
        for (int c = 0; c < Cg; ++c) {
            for (int kh = 0; kh < KH; ++kh) {
                const int ih = oh * sh - pt + kh * dh;
                for (int kw = 0; kw < KW; ++kw) {
                    const int iw = ow * sw - pl + kw * dw;
                    const T xv = (gpuconv::in_range(ih, H) && gpuconv::in_range(iw, W))
                                     ? xg[static_cast<long long>(c) * HW + ih * W + iw]
                                     : T(0);
                    acc = fma(xv, wk[(c * KH + kh) * KW + kw], acc);
                }
            }
        }
        if (has_bias) acc = acc + bias[k];
        y[idx] = acc;
    }
}

// ---------------------------------------------------------------------------------
// tiled: block (TILE_W, TILE_H); dynamic shared memory = (s_rows*s_cols + KH*KW)*T,
// s_rows = (TILE_H-1)*sh + (KH-1)*dh + 1, s_cols = (TILE_W-1)*sw + (KW-1)*dw + 1
// (computed by the planner, passed in). Grid: N*K*tiles_h*tiles_w blocks, 1-D.
template <typename T, int TILE_W, int TILE_H>
__global__ void conv2d_forward_tiled(
    const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ bias,
    T* __restrict__ y, int N, int C, int H, int W, int K, int KH, int KW, int groups,
    int sh, int sw, int dh, int dw, int pt, int pl, int OH, int OW, int has_bias,
    int tiles_h, int tiles_w, int s_rows, int s_cols) {
    GPUCONV_DYNAMIC_SHARED(T, s_mem);
    T* s_x = s_mem;                    // input tile + halo of one channel
    T* s_w = s_mem + s_rows * s_cols;  // the KH*KW taps of w[k, c]
    const int Cg = C / groups;
    const int Kg = K / groups;
    const int HW = H * W;
    const int KHKW = KH * KW;

    int bid = static_cast<int>(blockIdx.x);
    const int tile_c = bid % tiles_w;
    bid /= tiles_w;
    const int tile_r = bid % tiles_h;
    bid /= tiles_h;
    const int k = bid % K;
    const int n = bid / K;
    const int g = k / Kg;

    const int tx = static_cast<int>(threadIdx.x);
    const int ty = static_cast<int>(threadIdx.y);
    const int tid = gpuconv::block_thread_index();
    const int nthreads = TILE_W * TILE_H;
    const int oh0 = tile_r * TILE_H;
    const int ow0 = tile_c * TILE_W;
    const int oh = oh0 + ty;
    const int ow = ow0 + tx;
    const bool active = oh < OH && ow < OW;  // tails: inactive threads still load/sync
    const int ih_base = oh0 * sh - pt;       // first input row of the tile's halo
    const int iw_base = ow0 * sw - pl;
    const int s_size = s_rows * s_cols;

    const T* xg = x + (static_cast<long long>(n) * C + static_cast<long long>(g) * Cg) * HW;
    const T* wk = w + static_cast<long long>(k) * Cg * KHKW;
    T acc = T(0);
    for (int c = 0; c < Cg; ++c) {
        const T* xc = xg + static_cast<long long>(c) * HW;
        // Halo load: the tile's receptive field, zero where it leaves the image.
        gpuconv::stage_window(s_x, xc, ih_base, iw_base, H, W, s_size, s_cols, tid,
                              nthreads);
        for (int i = tid; i < KHKW; i += nthreads) s_w[i] = wk[c * KHKW + i];
        __syncthreads();  // the channel's tile and taps are staged before anyone reads
        if (active) {
            for (int kh = 0; kh < KH; ++kh) {
                const T* srow = s_x + (ty * sh + kh * dh) * s_cols + tx * sw;
                for (int kw = 0; kw < KW; ++kw)
                    acc = fma(srow[kw * dw], s_w[kh * KW + kw], acc);
            }
        }
        __syncthreads();  // everyone is done reading before the next channel overwrites
    }
    if (active) {
        if (has_bias) acc = acc + bias[k];
        y[gpuconv::offset4(n, K, k, OH * OW, oh, OW, ow)] = acc;
    }
}

// ---------------------------------------------------------------------------------
// tiled_regblock: the sliced implicit GEMM of implicit_gemm.cuh (its header gives the
// operands, the slice table and the summation order). Block THREADS = TX*TY, static
// shared memory; grid, 1-D: m_tiles * n_tiles * groups * splits blocks (m fastest).
// With splits > 1, split s writes its partial result to dst + s*split_stride and
// conv2d_forward_split_reduce adds the splits in order.
template <typename T, int TX, int TY, int TM, int TN, bool PACKED = false>
__global__ void __launch_bounds__(TX * TY, gpuconv::regblock_min_blocks(TM, TN, sizeof(T)))
    conv2d_forward_tiled_regblock(
        const T* __restrict__ src, const T* __restrict__ w, const T* __restrict__ bias,
        const gpuconv::SliceEntry* __restrict__ slices, T* __restrict__ dst, int Csrc,
        int Hs, int Ws, int Cred, int Cdst, int Hd, int Wd, int NG, int Ho, int Wo,
        int ah, int bh, int aw, int bw, int osh, int oph, int osw, int opw,
        int col_stride, int c_stride, int KHKW, int slice_offset, int slice_count,
        int has_bias, long long M, int m_tiles, int n_tiles, int groups,
        long long split_stride, long long slices_per_split, int extra_slices) {
    using Tile = gpuconv::RegblockTile<TX, TY, TM, TN>;
    __shared__ gpuconv::RegblockSmem<T, Tile> s_tile;
    const gpuconv::SlicedGemmArgs a{Csrc, Hs, Ws, Cred, Cdst, Hd, Wd, NG, Ho, Wo, ah, bh,
                                    aw, bw, osh, oph, osw, opw, col_stride, c_stride,
                                    KHKW, slice_count, has_bias, M, m_tiles, n_tiles,
                                    groups, split_stride, slices_per_split,
                                    extra_slices};
    gpuconv::sliced_gemm_block<T, Tile, PACKED>(src, w, bias, slices + slice_offset, dst, a,
                                        s_tile);
}

// split_reduce: out = the sum of the `splits` partial results of a split-K
// tiled_regblock launch, in split order (+ bias per channel when has_bias; plane =
// the pixels per channel). 1-D grid-stride loop over total = out's elements.
template <typename T>
__global__ void conv2d_forward_split_reduce(
    const T* __restrict__ part, const T* __restrict__ bias, T* __restrict__ out,
    int splits, int channels, int plane, int has_bias, long long total) {
    gpuconv::split_reduce(part, bias, out, splits, channels, plane, has_bias, total);
}

// ---------------------------------------------------------------------------------
// nhwc (float; what 'auto' runs where gpuconv._plan_conv.fwd_nhwc_preferred): the
// forward GEMM on operands packed to NHWC once per call (conv2d_nhwc_pack_input and
// conv2d_nhwc_pack_weight of conv2d_mma.cu, unrounded: x -> xh (N, H, W, C), w -> wh
// (K, KH*KW, C/groups)), M = N*OH*OW pixels, NG = K/groups, reduction index r =
// tap*Cg + c. A slab is BK = 16 channels of one tap (ceil(Cg/16) slabs a tap; a
// chunk past Cg is zero in both operands), for pixel m 64 contiguous bytes of xh and
// for output channel k of wh: 16-byte cp.async copies (zero-filled outside the image
// and past the tails), STAGES = 3 in flight, one barrier per slab. Both stages are
// row-major (a shared row per pixel / output channel, 16 floats), the 16-byte chunk
// j of row r stored at j ^ ((r >> 1) & 3) so that the 8 rows of a quarter warp's
// LDS.128 hit 8 distinct bank groups. Thread (tx, ty) of 16 x 16 owns rows tx + 16i
// and columns ty + 16j (i, j < 8): per chunk of 4 channels 8 + 8 LDS.128 feed 256
// FFMA. Also the input gradient of a stride-1 layer: this kernel on gy with the
// flipped weights (pack_weight with flip) and padding dilation*(KH-1) - pt
// (gpuconv._plan_conv.nhwc_problem). Split-K over balanced ranges of slabs: split s
// writes y's layout at y + s*split_stride, conv2d_forward_split_reduce adds the
// splits in order and the bias. Summation order (fixed): per output, slab by slab
// (taps, then channel blocks), channels in order within a slab; needs Cg % 4 == 0.
namespace gpuconv {

// BM = 128 pixels x BN = 128 (256 threads) or 64 (128 threads: K/groups <= 64)
// output channels.
template <int BN_>
struct NhwcFwdTile {
    static constexpr int BM = 128, BN = BN_, BK = 16, STAGES = 3;
    static constexpr int TM = 8, TN = 8, TX = BM / TM, TY = BN / TN;
    static constexpr int THREADS = TX * TY;
    static constexpr int CHUNKS = BK / 4;                      // 16-byte chunks a row
    static constexpr int A_COPIES = BM * CHUNKS / THREADS;     // per thread and slab
    static constexpr int B_COPIES = BN * CHUNKS / THREADS;
    static_assert((BN == 64 || BN == 128) && A_COPIES * THREADS == BM * CHUNKS &&
                      B_COPIES * THREADS == BN * CHUNKS && CHUNKS == 4,
                  "tile roles");
};

template <int BN>
struct alignas(16) NhwcFwdSmem {
    using Tile = NhwcFwdTile<BN>;
    float a[Tile::STAGES][Tile::BM][Tile::BK];
    float b[Tile::STAGES][Tile::BN][Tile::BK];
};

// word offset of logical chunk j of a shared row r of 16 words (the 16-byte XOR
// swizzle)
__device__ __forceinline__ int nhwc_fwd_slot(int r, int j) {
    return r * 16 + 4 * (j ^ ((r >> 1) & 3));
}

}  // namespace gpuconv

// Grid: m_tiles * n_tiles * groups * splits blocks (1-D), BN * 2 threads; static
// smem (3 stages of 16 x (128 + BN) floats: 48 / 36 KiB). xh (N, H, W, C), wh (K,
// KH*KW, C/groups); the geometry of a forward pass with dilation (dh, dw) and any
// (even negative) padding pt, pl; slabs = KH*KW * ceil(Cg/16).
template <typename T, int BN>
__global__ void __launch_bounds__(gpuconv::NhwcFwdTile<BN>::THREADS, 1)
conv2d_forward_nhwc(
    const T* __restrict__ xh, const T* __restrict__ wh, const T* __restrict__ bias,
    T* __restrict__ y, int C, int H, int W, int K, int KH, int KW, int groups, int sh,
    int sw, int dh, int dw, int pt, int pl, int OH, int OW, int has_bias, long long M,
    int m_tiles, int n_tiles, long long split_stride, long long slabs_per_split,
    int extra_slabs) {
    using Tile = gpuconv::NhwcFwdTile<BN>;
    constexpr int BK = Tile::BK;
    static_assert(sizeof(T) == 4 && BK == 16, "16-byte chunks of 4 elements");
    __shared__ gpuconv::NhwcFwdSmem<BN> s;

    const gpuconv::GemmBlock blk = gpuconv::gemm_block(m_tiles, n_tiles, groups);
    const int g = blk.g;
    const int Cg = C / groups;
    const int Kg = K / groups;
    const int KHKW = KH * KW;
    const int OHW = OH * OW;
    const int spt = (Cg + BK - 1) / BK;  // slabs per tap
    const gpuconv::SplitSlice range =
        gpuconv::split_slice(blk.split, slabs_per_split, extra_slabs);
    const int ktiles = static_cast<int>(range.end - range.begin);
    const long long m0 = static_cast<long long>(blk.m_tile) * Tile::BM;
    const int n0 = blk.n_tile * Tile::BN;
    const long long n_base = m0 / OHW;
    const int p_base = static_cast<int>(m0 - n_base * OHW);

    // This thread's copies: chunk idx % 4 of row (pixel) / column (output channel)
    // idx / 4, idx = tid + i*THREADS (four lanes a row: 64 contiguous bytes).
    const int tid = static_cast<int>(threadIdx.x);
    const int chunk = tid % Tile::CHUNKS;
    // a_off: the element offset in xh of channel g*Cg + 4*chunk at (ih0, iw0) =
    // (oh*sh - pt, ow*sw - pl) of the row's pixel (an integer, possibly outside the
    // image: only a tap that lands inside is read); a row past M gets ih0 = OFF, so
    // that every tap's row test fails (|ih0|, |dy| < 2^30 otherwise: no overflow).
    constexpr int OFF = -(1 << 30);
    long long a_off[Tile::A_COPIES];
    int a_ih0[Tile::A_COPIES], a_iw0[Tile::A_COPIES], a_dst[Tile::A_COPIES];
#pragma unroll
    for (int i = 0; i < Tile::A_COPIES; ++i) {
        const int row = (tid + i * Tile::THREADS) / Tile::CHUNKS;
        a_dst[i] = gpuconv::nhwc_fwd_slot(row, chunk);
        const bool row_ok = m0 + row < M;
        const int pp = p_base + row;  // < OHW + BM: fits int (planner checks)
        const long long n = row_ok ? n_base + pp / OHW : 0;
        const int p = pp % OHW;
        const int oh = p / OW;
        const int ih0 = oh * sh - pt;
        a_iw0[i] = (p - oh * OW) * sw - pl;
        a_ih0[i] = row_ok ? ih0 : OFF;
        a_off[i] = ((n * H + ih0) * static_cast<long long>(W) + a_iw0[i]) * C +
                   static_cast<long long>(g) * Cg + 4 * chunk;
    }
    const T* b_row[Tile::B_COPIES];  // wh[g*Kg + col, 4*chunk]
    int b_dst[Tile::B_COPIES];
    bool b_ok[Tile::B_COPIES];
#pragma unroll
    for (int i = 0; i < Tile::B_COPIES; ++i) {
        const int col = (tid + i * Tile::THREADS) / Tile::CHUNKS;
        b_dst[i] = gpuconv::nhwc_fwd_slot(col, chunk);
        b_ok[i] = n0 + col < Kg;
        b_row[i] = wh + static_cast<long long>(g * Kg + (b_ok[i] ? n0 + col : 0)) *
                            KHKW * Cg + 4 * chunk;
    }

    // The next slab to load: its tap (kh, kw) and first channel c0. Per tap each A
    // copy resolves its pixel's address and bounds once (a_src, a_ok).
    int ld_tap = static_cast<int>(range.begin / spt);
    int ld_c = static_cast<int>(range.begin - static_cast<long long>(ld_tap) * spt) * BK;
    int ld_kh = ld_tap / KW;
    int ld_kw = ld_tap - ld_kh * KW;
    long long a_src[Tile::A_COPIES];  // a_off + the tap's offset
    bool a_ok[Tile::A_COPIES];
    auto tap_rows = [&]() {
        const int dy = ld_kh * dh;
        const int dx = ld_kw * dw;
        const long long toff = (static_cast<long long>(dy) * W + dx) * C;
#pragma unroll
        for (int i = 0; i < Tile::A_COPIES; ++i) {
            a_ok[i] = gpuconv::in_range(a_ih0[i] + dy, H) &&
                      gpuconv::in_range(a_iw0[i] + dx, W);
            a_src[i] = a_off[i] + toff;
        }
    };
    tap_rows();
    auto load = [&](int st) {
        const bool c_ok = ld_c + 4 * chunk < Cg;  // a chunk past Cg: zero
        const int w_off = ld_tap * Cg + ld_c;
#pragma unroll
        for (int i = 0; i < Tile::A_COPIES; ++i) {
            const bool ok = a_ok[i] && c_ok;
            gpuconv::cp_async_zfill16(&s.a[st][0][0] + a_dst[i],
                                      xh + (ok ? a_src[i] + ld_c : 0), ok);
        }
#pragma unroll
        for (int i = 0; i < Tile::B_COPIES; ++i) {
            const bool ok = b_ok[i] && c_ok;
            gpuconv::cp_async_zfill16(&s.b[st][0][0] + b_dst[i],
                                      ok ? b_row[i] + w_off : wh, ok);
        }
        ld_c += BK;
        if (ld_c >= Cg) {  // the next tap
            ld_c = 0;
            ++ld_tap;
            if (++ld_kw == KW) {
                ld_kw = 0;
                ++ld_kh;
            }
            tap_rows();
        }
    };

    const int tx = tid % Tile::TX;
    const int ty = tid / Tile::TX;
    T acc[Tile::TM][Tile::TN];
    gpuconv::regblock_zero<T, Tile>(acc);

    // rows tx + TX*i (columns ty + TY*j) share the swizzle of row tx (ty): TX and TY
    // are multiples of 8, so chunk q of them sits at a per-thread word offset plus a
    // compile-time one
    int a_q[Tile::CHUNKS], b_q[Tile::CHUNKS];
#pragma unroll
    for (int q = 0; q < Tile::CHUNKS; ++q) {
        a_q[q] = gpuconv::nhwc_fwd_slot(tx, q);
        b_q[q] = gpuconv::nhwc_fwd_slot(ty, q);
    }
    static_assert(Tile::TX % 8 == 0 && Tile::TY % 8 == 0, "one swizzle per thread");

    gpuconv::cp_async_pipeline<Tile::STAGES>(ktiles, load, [&](int cur) {
        const float* sa = &s.a[cur][0][0];
        const float* sb = &s.b[cur][0][0];
#pragma unroll
        for (int q = 0; q < Tile::CHUNKS; ++q) {
            float4 af[Tile::TM], bf[Tile::TN];
            const float* pa = sa + a_q[q];
            const float* pb = sb + b_q[q];
#pragma unroll
            for (int i = 0; i < Tile::TM; ++i)
                af[i] = *reinterpret_cast<const float4*>(pa + Tile::TX * BK * i);
#pragma unroll
            for (int j = 0; j < Tile::TN; ++j)
                bf[j] = *reinterpret_cast<const float4*>(pb + Tile::TY * BK * j);
#pragma unroll
            for (int i = 0; i < Tile::TM; ++i)
#pragma unroll
                for (int j = 0; j < Tile::TN; ++j) {
                    acc[i][j] = fma(af[i].x, bf[j].x, acc[i][j]);
                    acc[i][j] = fma(af[i].y, bf[j].y, acc[i][j]);
                    acc[i][j] = fma(af[i].z, bf[j].z, acc[i][j]);
                    acc[i][j] = fma(af[i].w, bf[j].w, acc[i][j]);
                }
        }
    });

    // epilogue: y (or split blk.split's partial result) in NCHW; a row's 16 lanes
    // tx write 16 consecutive pixels of one channel
    T* out = y + blk.split * split_stride;
    const bool add_bias = has_bias && split_stride == 0;
#pragma unroll
    for (int i = 0; i < Tile::TM; ++i) {
        const int row = tx + Tile::TX * i;
        if (m0 + row >= M) continue;
        const int pp = p_base + row;
        const long long n = n_base + pp / OHW;
        const int p = pp % OHW;
        T* yp = out + (n * K + static_cast<long long>(g) * Kg) * OHW + p;
#pragma unroll
        for (int j = 0; j < Tile::TN; ++j) {
            const int col = n0 + ty + Tile::TY * j;
            if (col >= Kg) continue;
            T v = acc[i][j];
            if (add_bias) v = v + bias[g * Kg + col];
            yp[static_cast<long long>(col) * OHW] = v;
        }
    }
}

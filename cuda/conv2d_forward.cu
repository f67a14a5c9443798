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

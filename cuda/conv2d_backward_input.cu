// conv2d_backward_input.cu: gx = the gradient of conv2d with respect to its input,
// the transposed convolution of gy, NCHW, zero padding:
//   gx[n, c, h, w] = sum over k in c's group, kh, kw with h + pt - kh*dh = oh*sh and
//   w + pl - kw*dw = ow*sw for some 0 <= oh < OH, 0 <= ow < OW of
//   gy[n, k, oh, ow] * w[k, c - g*Cg, kh, kw].
// A pure transpose: no conjugation (the API conjugates w for complex inputs).
//
// Variants (each: T = float or double; any stride, dilation, groups, asymmetric zero
// padding, runtime kernel size; tails guarded; no atomics: every gx element is
// written once, by one thread, so results are deterministic):
//   naive           One thread per gx element (1-D grid-stride loop, 64-bit index);
//                   loops k, kh, kw and gathers the gy elements whose window covers
//                   the pixel (divisibility by the stride decides which taps count).
//                   The second oracle of the test suite: kept simple.
//   tiled           A TILE_W x TILE_H block computes a TILE_H x TILE_W tile of gx for
//                   one (n, c). For each output channel k of the group it stages the
//                   gy rows/columns that reach the tile (with halo: (TILE-1 +
//                   (KH-1)*dh)/sh + 2 rows, zero-filled outside gy) and the KH*KW taps
//                   of w[k, c] in shared memory, then accumulates from shared memory.
//   tiled_regblock  Sliced implicit GEMM (implicit_gemm.cuh): one launch per output
//                   phase (ph, pw) of the stride (sh*sw launches; one for stride 1):
//                   the pixels h = ph + sh*i, w = pw + sw*j form a dense grid that
//                   only the taps with (ph + pt - kh*dh) % sh == 0 reach, at gy row
//                   i + (ph + pt - kh*dh)/sh: so no division in the loop and no
//                   wasted tap. M = N*Hph*Wph pixels, NG = C/groups input channels,
//                   reduction over (chunks of 8 output channels) x (the phase's taps)
//                   slices of a SliceEntry table. A phase no tap reaches writes
//                   zeros. Split-K when the blocks do not fill the SMs; then
//   split_reduce    adds the splits in split order (deterministic, no atomics).
//                   For few input channels per group (C/groups < 16, e.g. the RGB
//                   stem's 3) the phases' GEMM would fill at most C/16 of each
//                   tile's columns, so the planner (gpuconv._plan_conv.dgrad_col2im)
//                   takes another tiled_regblock plan instead: the GEMM
//                   cols[n, (c, kh, kw), oh, ow] = sum_k w[k, c, kh, kw] *
//                   gy[n, k, oh, ow] (M = N*OH*OW, NG = C/groups*KH*KW columns,
//                   reduction K/groups: conv2d_forward.cu's tiled_regblock kernel run
//                   on gy as a 1x1 convolution, reading w transposed through its
//                   strides), into a workspace, then
//   col2im          one thread per gx element gathers the column entries of the
//                   taps that reach it ((h + pt - kh*dh) % sh == 0 and the gy row
//                   inside, likewise for w), in (kh, kw) order. No wasted taps, no
//                   atomics.
// naive and tiled accumulate in the same order (k, then kh, then kw, one fma per
// tap) and agree bit for bit on finite inputs. tiled_regblock sums chunks of 8
// output channels, then the phase's taps, then the chunk's channels (then splits in
// order): within rounding of the others, bit-identical from run to run; its col2im
// plan sums each tap over chunks of 8 output channels (in the GEMM), then the taps
// in (kh, kw) order (in col2im). Its padded
// taps are terms fma(0, w, acc): with an infinite or NaN *weight* they give 0*inf =
// NaN where naive/tiled (and NumPy) skip the tap; non-finite gy is handled alike.
// Other padding modes: the op runs these kernels on the padded geometry (H + pt +
// pb, W + pl + pr, pads 0), then folds the border back with conv2d_pad_fold
// (conv2d_pad.cu), a deterministic gather.
#include "common.cuh"
#include "implicit_gemm.cuh"


// ---------------------------------------------------------------------------------
// naive
template <typename T>
__global__ void conv2d_backward_input_naive(
    const T* __restrict__ gy, const T* __restrict__ w, T* __restrict__ gx, int N, int C,
    int H, int W, int K, int KH, int KW, int groups, int sh, int sw, int dh, int dw,
    int pt, int pl, int OH, int OW, long long total) {
    const int Cg = C / groups;
    const int Kg = K / groups;
    const int OHW = OH * OW;
    for (long long idx = gpuconv::global_thread_index(); idx < total;
         idx += gpuconv::grid_stride()) {
        const int iw = static_cast<int>(idx % W);
        long long t = idx / W;
        const int ih = static_cast<int>(t % H);
        t /= H;
        const int c = static_cast<int>(t % C);
        const long long n = t / C;
        const int g = c / Cg;
        const int cl = c - g * Cg;
        T acc = T(0);
        for (int kl = 0; kl < Kg; ++kl) {
            const int k = g * Kg + kl;
            const T* gyk = gy + (n * K + k) * OHW;
            const T* wkc = w + (static_cast<long long>(k) * Cg + cl) * KH * KW;
            for (int kh = 0; kh < KH; ++kh) {
                const int th = ih + pt - kh * dh;
                if (th < 0 || th % sh != 0 || th / sh >= OH) continue;
                const int oh = th / sh;
                for (int kw = 0; kw < KW; ++kw) {
                    const int tw = iw + pl - kw * dw;
                    if (tw < 0 || tw % sw != 0 || tw / sw >= OW) continue;
                    const int ow = tw / sw;
                    acc = fma(gyk[oh * OW + ow], wkc[kh * KW + kw], acc);
                }
            }
        }
        gx[idx] = acc;
    }
}

// ---------------------------------------------------------------------------------
// tiled: block (TILE_W, TILE_H); dynamic shared memory = (s_rows*s_cols + KH*KW)*T,
// s_rows = (TILE_H - 1 + (KH-1)*dh)/sh + 2, s_cols = (TILE_W - 1 + (KW-1)*dw)/sw + 2
// (computed by the planner, passed in). Grid: N*C*tiles_h*tiles_w blocks, 1-D.
template <typename T, int TILE_W, int TILE_H>
__global__ void conv2d_backward_input_tiled(
    const T* __restrict__ gy, const T* __restrict__ w, T* __restrict__ gx, int N, int C,
    int H, int W, int K, int KH, int KW, int groups, int sh, int sw, int dh, int dw,
    int pt, int pl, int OH, int OW, int tiles_h, int tiles_w, int s_rows, int s_cols) {
    GPUCONV_DYNAMIC_SHARED(T, s_mem);
    T* s_gy = s_mem;                    // the gy window of one output channel
    T* s_w = s_mem + s_rows * s_cols;   // the KH*KW taps of w[k, c]
    const int Cg = C / groups;
    const int Kg = K / groups;
    const int OHW = OH * OW;
    const int KHKW = KH * KW;

    int bid = static_cast<int>(blockIdx.x);
    const int tile_c = bid % tiles_w;
    bid /= tiles_w;
    const int tile_r = bid % tiles_h;
    bid /= tiles_h;
    const int c = bid % C;
    const int n = bid / C;
    const int g = c / Cg;
    const int cl = c - g * Cg;

    const int tx = static_cast<int>(threadIdx.x);
    const int ty = static_cast<int>(threadIdx.y);
    const int tid = gpuconv::block_thread_index();
    const int nthreads = TILE_W * TILE_H;
    const int h0 = tile_r * TILE_H;
    const int w0 = tile_c * TILE_W;
    const int ih = h0 + ty;
    const int iw = w0 + tx;
    const bool active = ih < H && iw < W;  // tails: inactive threads still load/sync
    // First gy row/column any pixel of the tile can receive from (may be negative).
    const int oh_base = gpuconv::floor_div(h0 + pt - (KH - 1) * dh, sh);
    const int ow_base = gpuconv::floor_div(w0 + pl - (KW - 1) * dw, sw);
    const int s_size = s_rows * s_cols;

    T acc = T(0);
    for (int kl = 0; kl < Kg; ++kl) {
        const int k = g * Kg + kl;
        const T* gyk = gy + (static_cast<long long>(n) * K + k) * OHW;
        const T* wkc = w + (static_cast<long long>(k) * Cg + cl) * KHKW;
        // Halo load: every gy element whose window reaches the tile; zero outside gy.
        gpuconv::stage_window(s_gy, gyk, oh_base, ow_base, OH, OW, s_size, s_cols, tid,
                              nthreads);
        for (int i = tid; i < KHKW; i += nthreads) s_w[i] = wkc[i];
        __syncthreads();  // the channel's gy window and taps are staged before reads
        if (active) {
            for (int kh = 0; kh < KH; ++kh) {
                const int th = ih + pt - kh * dh;
                if (th < 0 || th % sh != 0 || th / sh >= OH) continue;
                const T* srow = s_gy + (th / sh - oh_base) * s_cols;
                for (int kw = 0; kw < KW; ++kw) {
                    const int tw = iw + pl - kw * dw;
                    if (tw < 0 || tw % sw != 0 || tw / sw >= OW) continue;
                    acc = fma(srow[tw / sw - ow_base], s_w[kh * KW + kw], acc);
                }
            }
        }
        __syncthreads();  // everyone is done reading before the next channel overwrites
    }
    if (active) gx[gpuconv::offset4(n, C, c, H * W, ih, W, iw)] = acc;
}

// ---------------------------------------------------------------------------------
// tiled_regblock: the sliced implicit GEMM of implicit_gemm.cuh (its header gives the
// operands, the slice table and the summation order). Block THREADS = TX*TY, static
// shared memory; grid, 1-D: m_tiles * n_tiles * groups * splits blocks (m fastest).
// With splits > 1, split s writes its partial result to dst + s*split_stride and
// conv2d_backward_input_split_reduce adds the splits in order.
template <typename T, int TX, int TY, int TM, int TN, bool PACKED = false>
__global__ void __launch_bounds__(TX * TY, gpuconv::regblock_min_blocks(TM, TN, sizeof(T)))
    conv2d_backward_input_tiled_regblock(
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
__global__ void conv2d_backward_input_split_reduce(
    const T* __restrict__ part, const T* __restrict__ bias, T* __restrict__ out,
    int splits, int channels, int plane, int has_bias, long long total) {
    gpuconv::split_reduce(part, bias, out, splits, channels, plane, has_bias, total);
}

// ---------------------------------------------------------------------------------
// col2im: the second launch of the tiled_regblock plan for few input channels (see
// the header). cols (N, C*KH*KW, OH, OW) holds, for every gy pixel, the
// contribution of each (channel, tap); gx[n, c, h, w] = the sum of
// cols[n, c*KH*KW + kh*KW + kw, oh, ow] over the taps with h + pt - kh*dh = oh*sh
// and w + pl - kw*dw = ow*sw inside gy, kh-major, then kw. 1-D grid-stride loop over
// total = N*C*H*W.
template <typename T>
__global__ void conv2d_backward_input_col2im(
    const T* __restrict__ cols, T* __restrict__ gx, int C, int H, int W, int KH,
    int KW, int sh, int sw, int dh, int dw, int pt, int pl, int OH, int OW,
    long long total) {
    const long long OHW = static_cast<long long>(OH) * OW;
    for (long long idx = gpuconv::global_thread_index(); idx < total;
         idx += gpuconv::grid_stride()) {
        const int iw = static_cast<int>(idx % W);
        long long t = idx / W;
        const int ih = static_cast<int>(t % H);
        const long long nc = t / H;  // n*C + c: its taps are rows nc*KH*KW + tap
        const T* col = cols + nc * KH * KW * OHW;
        T acc = T(0);
        for (int kh = 0; kh < KH; ++kh) {
            const int th = ih + pt - kh * dh;
            if (th < 0 || th % sh != 0 || th / sh >= OH) continue;
            const T* crow = col + static_cast<long long>(kh) * KW * OHW +
                            static_cast<long long>(th / sh) * OW;
            for (int kw = 0; kw < KW; ++kw) {
                const int tw = iw + pl - kw * dw;
                if (tw < 0 || tw % sw != 0 || tw / sw >= OW) continue;
                acc = acc + crow[kw * OHW + tw / sw];
            }
        }
        gx[idx] = acc;
    }
}

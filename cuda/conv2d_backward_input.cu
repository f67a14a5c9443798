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
//   tiled_regblock  Implicit GEMM (implicit_gemm.cuh): M = N*H*W pixels, NG = C/groups
//                   input channels, KR = K/groups*KH*KW; gy gathers (0 where a tap does
//                   not hit an output for this stride) and weight slices staged in
//                   shared memory, TM pixels x TN channels per thread in registers.
//                   Taps from a TapEntry table (ch = k): no compile per kernel shape.
// All variants accumulate in the same order (k, then kh, then kw, one fma per tap),
// so they agree bit for bit on finite inputs (regblock's extra terms are fma(0, w,
// acc) == acc). With an infinite or NaN *weight* those extra terms make 0*inf = NaN
// where naive/tiled (and NumPy) skip the tap; non-finite gy is handled alike by all.
// Other padding modes: the op runs these kernels on the padded geometry (H + pt +
// pb, W + pl + pr, pads 0), then folds the border back with conv2d_pad_fold
// (conv2d_pad.cu), a deterministic gather.
#include "common.cuh"
#include "implicit_gemm.cuh"

using gpuconv::TapEntry;

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
// tiled_regblock: the gemm view of the input gradient (see implicit_gemm.cuh).
template <typename T>
struct BackwardInputGemmView {
    const T* gy;
    const T* w;
    const TapEntry* taps;
    int K, H, W, HW, Cg, Kg, g, sh, sw, pt, pl, OH, OW, OHW, KHKW, n0, kred;
    long long M, m0;
    long long n_base;  // image of row m0
    int p_base;        // pixel of row m0 within its image

    struct ARow {
        const T* base;  // gy[n, g*Kg]
        int th0;        // h + pt: padded row of the pixel
        int tw0;        // w + pl
        bool valid;     // m < M
    };

    __device__ __forceinline__ ARow a_row(int m_local) const {
        ARow row;
        row.valid = m0 + m_local < M;
        const int pp = p_base + m_local;  // < HW + BM: fits int (planner checks)
        const long long n = n_base + pp / HW;
        const int p = pp % HW;
        const int h = p / W;
        row.base = gy + (n * K + static_cast<long long>(g) * Kg) * OHW;
        row.th0 = h + pt;
        row.tw0 = p - h * W + pl;
        return row;
    }

    __device__ __forceinline__ T load_a(const ARow& row, int r) const {
        if (!row.valid || r >= kred) return T(0);
        const TapEntry t = taps[r];
        int oh = row.th0 - t.dy;
        int ow = row.tw0 - t.dx;
        if (oh < 0 || ow < 0) return T(0);
        if (sh != 1) {  // block-uniform branch: only multiples of the stride are hit
            if (oh % sh != 0) return T(0);
            oh /= sh;
        }
        if (sw != 1) {
            if (ow % sw != 0) return T(0);
            ow /= sw;
        }
        if (oh >= OH || ow >= OW) return T(0);
        return row.base[static_cast<long long>(t.ch) * OHW + oh * OW + ow];
    }

    __device__ __forceinline__ T load_b(int r, int n) const {
        const int c = n0 + n;
        if (r >= kred || c >= Cg) return T(0);
        const TapEntry t = taps[r];
        return w[(static_cast<long long>(g * Kg + t.ch) * Cg + c) * KHKW + t.tap];
    }
};

// Grid: m_tiles * n_tiles * groups blocks (1-D), block THREADS = TX*TY; static smem.
// taps: KR = K/groups*KH*KW entries (ch = k).
template <typename T, int TX, int TY, int TM, int TN>
__global__ void __launch_bounds__(TX * TY, gpuconv::regblock_min_blocks(TM, TN, sizeof(T)))
    conv2d_backward_input_tiled_regblock(
        const T* __restrict__ gy, const T* __restrict__ w,
        const TapEntry* __restrict__ taps, T* __restrict__ gx, int C, int H, int W,
        int K, int KH, int KW, int groups, int sh, int sw, int pt, int pl, int OH,
        int OW, long long M, int m_tiles, int n_tiles) {
    using Tile = gpuconv::RegblockTile<TX, TY, TM, TN>;
    __shared__ gpuconv::RegblockSmem<T, Tile> s_tile;

    int bid = static_cast<int>(blockIdx.x);
    const int m_tile = bid % m_tiles;
    bid /= m_tiles;
    const int n_tile = bid % n_tiles;
    const int g = bid / n_tiles;

    BackwardInputGemmView<T> v;
    v.gy = gy;
    v.w = w;
    v.taps = taps;
    v.K = K;
    v.H = H;
    v.W = W;
    v.HW = H * W;
    v.Cg = C / groups;
    v.Kg = K / groups;
    v.g = g;
    v.sh = sh;
    v.sw = sw;
    v.pt = pt;
    v.pl = pl;
    v.OH = OH;
    v.OW = OW;
    v.OHW = OH * OW;
    v.KHKW = KH * KW;
    v.n0 = n_tile * Tile::BN;
    v.kred = v.Kg * KH * KW;
    v.M = M;
    v.m0 = static_cast<long long>(m_tile) * Tile::BM;
    v.n_base = v.m0 / v.HW;
    v.p_base = static_cast<int>(v.m0 - v.n_base * v.HW);

    T acc[Tile::TM][Tile::TN];
    gpuconv::regblock_zero<T, Tile>(acc);
    gpuconv::regblock_mainloop<T, Tile>(v, s_tile, acc);
    gpuconv::regblock_store_pixels<T, Tile>(
        v, v.HW, v.Cg, acc,
        [&](long long n, int p) {
            return gx + (n * C + static_cast<long long>(g) * v.Cg + v.n0) * v.HW + p;
        },
        [](int, T val) { return val; });
}

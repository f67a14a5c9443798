// conv2d_winograd.cu: 3x3 stride-1 conv2d by Winograd's minimal filtering
// (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks", 2016): the
// transforms of algorithm='winograd' (F(2x2, 3x3), M = 2) and 'winograd4'
// (F(4x4, 3x3), M = 4), every pass.
//
// An M x M output tile of a 3x3 correlation is Y = A^T [ U (.) V ] A summed over the
// input channels, with U = G g G^T (the transformed 3x3 filter g) and V = B^T d B
// (the transformed (M+2) x (M+2) input patch d); the S = (M+2)^2 positions xi of the
// transformed tile are S independent GEMMs over the channels:
//   M[xi][k][p] = sum_c U[xi][k][c] * V[xi][c][p],   p = an M x M output tile,
// S multiplications per tile and channel pair against 9 M^2 for the direct sum
// (16 against 36 for M = 2; 36 against 144 for M = 4). The matrices (struct Wino<M>):
//   M = 2: B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1], G = [1 0 0; .5 .5 .5;
//          .5 -.5 .5; 0 0 1], A^T = [1 1 1 0; 0 1 -1 -1];
//   M = 4: Lavin and Gray's points 0, +-1, +-2, infinity: entries up to 8 and 1/24,
//          hence a larger error scale (tests/_tol.py).
// Variants (T = float or double, M = 2 or 4; the launches of one plan, in order,
// gpuconv._plan_conv.plan_conv2d_winograd):
//   conv2d_winograd_weight  U (S*Ko, Ci): one thread per (output channel, reduction
//                           channel) of a group; FLIP (input gradient): g is the
//                           rotated, transposed w (w[g*Ci + c, k - g*Cog, 2-kh, 2-kw]).
//   conv2d_winograd_input   V (S*C, P): one thread per (channel, tile) reads its patch
//                           (zero outside the image: the zero padding) and writes the
//                           S transformed values, tiles fastest (coalesced).
//   the S GEMMs             conv2d_forward.cu's tiled_regblock kernel, unchanged: V as
//                           the input (1, S*C, 1, P) of a 1x1 convolution with
//                           weights U (S*Ko, Ci, 1, 1) in S*groups groups (group
//                           xi*groups + g), output M (1, S*Ko, 1, P); split-K and its
//                           ordered reduce as for any launch of that kernel.
//   conv2d_winograd_output  one thread per (output channel, tile): Y = A^T M A plus
//                           the bias, written where the tile is inside the output.
// The input gradient of a 3x3 stride-1 layer is the same correlation of gy with the
// rotated filter and padding 2 - pad, so it runs this plan too (a pad over 2 gives a
// negative padding: the patches start inside gy, past its first pad - 2 rows/columns).
// The weight gradient runs the transposed algorithm F(3x3, M x M): per M x M tile p of
// gy, gw[k, c] gains the 3x3 correlation of x's patch d with the gy tile t, which is
// G^T [ (A t A^T) (.) (B^T d B) ] G (A = (A^T)^T), so its plan is
//   conv2d_winograd_input         V of x, as above;
//   conv2d_winograd_wgrad_gy      Ugy (S*K, P) = A t A^T: one thread per (channel,
//                                 tile), the M x M tile of gy (0 past OH x OW);
//   the S GEMMs over the tiles    M[xi][k][c] = sum_p Ugy[xi][k][p] * V[xi][c][p]:
//                                 conv2d_backward_weight.cu's tiled_regblock kernel on
//                                 V and Ugy as a 1x1 layer in S*groups groups,
//                                 split-K over the tiles, added in split order;
//   conv2d_winograd_wgrad_output  gw[k, c] = G^T M G (3x3): one thread per (k, c).
// Every transform is a product with a compile-time coefficient table (mat_left,
// mat_right: zero terms skipped, +-1 terms as additions, in increasing index).
// Numerics: not the direct sum's: the transforms add and scale values, so the error
// is bounded by the float sums of the transformed magnitudes (|A^T| sum_c |U||V| |A|
// with |U| = |G||g||G^T|, |V| = |B^T||d||B|), a few times the direct sum's bound for
// M = 2 and more for M = 4 (tests/_tol.py states them); deterministic, no atomics
// (each value is written once by one thread, every sum in a fixed order).
#include "common.cuh"

namespace gpuconv_winograd {

constexpr int TAPS = 3;  // the filter (r)

template <int M>
struct Wino;

template <>
struct Wino<2> {
    struct BT {  // B^T (4x4)
        __host__ __device__ static constexpr double v(int i, int j) {
            constexpr double m[4][4] = {
                {1, 0, -1, 0}, {0, 1, 1, 0}, {0, -1, 1, 0}, {0, 1, 0, -1}};
            return m[i][j];
        }
    };
    struct G {  // G (4x3)
        __host__ __device__ static constexpr double v(int i, int j) {
            constexpr double m[4][3] = {
                {1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
            return m[i][j];
        }
    };
    struct AT {  // A^T (2x4)
        __host__ __device__ static constexpr double v(int i, int j) {
            constexpr double m[2][4] = {{1, 1, 1, 0}, {0, 1, -1, -1}};
            return m[i][j];
        }
    };
};

template <>
struct Wino<4> {
    struct BT {  // B^T (6x6)
        __host__ __device__ static constexpr double v(int i, int j) {
            constexpr double m[6][6] = {{4, 0, -5, 0, 1, 0},  {0, -4, -4, 1, 1, 0},
                                        {0, 4, -4, -1, 1, 0}, {0, -2, -1, 2, 1, 0},
                                        {0, 2, -1, -2, 1, 0}, {0, 4, 0, -5, 0, 1}};
            return m[i][j];
        }
    };
    struct G {  // G (6x3)
        __host__ __device__ static constexpr double v(int i, int j) {
            constexpr double m[6][3] = {{1.0 / 4, 0, 0},
                                        {-1.0 / 6, -1.0 / 6, -1.0 / 6},
                                        {-1.0 / 6, 1.0 / 6, -1.0 / 6},
                                        {1.0 / 24, 1.0 / 12, 1.0 / 6},
                                        {1.0 / 24, -1.0 / 12, 1.0 / 6},
                                        {0, 0, 1}};
            return m[i][j];
        }
    };
    struct AT {  // A^T (4x6)
        __host__ __device__ static constexpr double v(int i, int j) {
            constexpr double m[4][6] = {{1, 1, 1, 1, 1, 0},
                                        {0, 1, -1, 2, -2, 0},
                                        {0, 1, 1, 4, 4, 0},
                                        {0, 1, -1, 8, -8, 1}};
            return m[i][j];
        }
    };
};

// sum_j M(i, j) x(j) for j < K, M(i, j) = Mat::v(i, j) (TRANS: Mat::v(j, i)), terms in
// increasing j; compile-time coefficients after unrolling: zeros skipped, +-1 as
// additions.
template <class Mat, bool TRANS, int K, typename T, class X>
__device__ __forceinline__ T dot(int i, X x) {
    T acc = T(0);
    bool first = true;
#pragma unroll
    for (int j = 0; j < K; ++j) {
        const double c = TRANS ? Mat::v(j, i) : Mat::v(i, j);
        if (c == 0.0) continue;
        const T xj = x(j);
        const T term = c == 1.0 ? xj : (c == -1.0 ? -xj : T(c) * xj);
        acc = first ? term : acc + term;
        first = false;
    }
    return acc;
}

// out = M in (R x N from K x N): out[i][n] = sum_j M(i, j) in[j][n].
template <class Mat, bool TRANS, typename T, int R, int K, int N>
__device__ __forceinline__ void mat_left(const T (&in)[K][N], T (&out)[R][N]) {
#pragma unroll
    for (int i = 0; i < R; ++i)
#pragma unroll
        for (int n = 0; n < N; ++n)
            out[i][n] = dot<Mat, TRANS, K, T>(i, [&](int j) { return in[j][n]; });
}

// out = in M^T (R x N from R x K): out[r][i] = sum_j in[r][j] M(i, j).
template <class Mat, bool TRANS, typename T, int R, int K, int N>
__device__ __forceinline__ void mat_right(const T (&in)[R][K], T (&out)[R][N]) {
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
        for (int i = 0; i < N; ++i)
            out[r][i] = dot<Mat, TRANS, K, T>(i, [&](int j) { return in[r][j]; });
}

// The tile (n, ty, tx) of tile index p = (n*TH + ty)*TW + tx.
struct Tile {
    long long n;
    int ty, tx;
};
__device__ __forceinline__ Tile tile_of(long long p, int TH, int TW) {
    const long long q = p / TW;
    return Tile{q / TH, static_cast<int>(q % TH), static_cast<int>(p - q * TW)};
}

// The values t[i][j] of one thread's transform go to dst[xi*plane + idx], xi = i*W + j
// (plane: the elements of one position); gather reads them back.
template <typename T, int H, int W>
__device__ __forceinline__ void scatter(const T (&t)[H][W], T* __restrict__ dst,
                                        long long plane, long long idx) {
#pragma unroll
    for (int i = 0; i < H; ++i)
#pragma unroll
        for (int j = 0; j < W; ++j) dst[(i * W + j) * plane + idx] = t[i][j];
}

template <typename T, int H, int W>
__device__ __forceinline__ void gather(const T* __restrict__ src, long long plane,
                                       long long idx, T (&t)[H][W]) {
#pragma unroll
    for (int i = 0; i < H; ++i)
#pragma unroll
        for (int j = 0; j < W; ++j) t[i][j] = src[(i * W + j) * plane + idx];
}

}  // namespace gpuconv_winograd

// U[(xi*Ko + k)*Ci + c] = (G g G^T)[xi], xi = (M+2)*i + j; total = Ko*Ci. Forward: g =
// w[k, c] of w (Ko, Ci, 3, 3). FLIP: w is (groups*Ci, Ko/groups, 3, 3) (the forward
// layer's), g[kh][kw] = w[grp*Ci + c, k - grp*Cog, 2-kh, 2-kw] with Cog = Ko/groups.
template <typename T, int M>
__global__ void conv2d_winograd_weight(const T* __restrict__ w, T* __restrict__ u,
                                       int Ko, int Ci, int groups, int flip,
                                       long long total) {
    using namespace gpuconv_winograd;
    using Mat = Wino<M>;
    constexpr int PT = M + 2;
    const int Cog = Ko / groups;
    const long long plane = static_cast<long long>(Ko) * Ci;
    for (long long idx = gpuconv::global_thread_index(); idx < total;
         idx += gpuconv::grid_stride()) {
        const int c = static_cast<int>(idx % Ci);
        const int k = static_cast<int>(idx / Ci);
        const int grp = k / Cog;
        const T* src = flip ? w + (static_cast<long long>(grp * Ci + c) * Cog +
                                   (k - grp * Cog)) * (TAPS * TAPS)
                            : w + idx * (TAPS * TAPS);
        T g[TAPS][TAPS];
#pragma unroll
        for (int a = 0; a < TAPS; ++a)
#pragma unroll
            for (int b = 0; b < TAPS; ++b)
                g[a][b] = flip ? src[(TAPS - 1 - a) * TAPS + (TAPS - 1 - b)]
                               : src[a * TAPS + b];
        T t[PT][TAPS];
        T r[PT][PT];
        mat_left<typename Mat::G, false>(g, t);   // G g
        mat_right<typename Mat::G, false>(t, r);  // (G g) G^T
        scatter(r, u, plane, idx);
    }
}

// V[(xi*C + c)*P + p] = (B^T d B)[xi] of the patch d = x[n, c, M*ty - pt + i,
// M*tx - pl + j] (0 outside H x W), p = (n*TH + ty)*TW + tx; total = C*P (p fastest).
template <typename T, int M>
__global__ void conv2d_winograd_input(const T* __restrict__ x, T* __restrict__ v, int C,
                                      int H, int W, int pt, int pl, int TH, int TW,
                                      long long P, long long total) {
    using namespace gpuconv_winograd;
    using Mat = Wino<M>;
    constexpr int PT = M + 2;
    const long long HW = static_cast<long long>(H) * W;
    const long long plane = static_cast<long long>(C) * P;
    for (long long idx = gpuconv::global_thread_index(); idx < total;
         idx += gpuconv::grid_stride()) {
        const long long p = idx % P;
        const int c = static_cast<int>(idx / P);
        const Tile tl = tile_of(p, TH, TW);
        const int h0 = tl.ty * M - pt;
        const int w0 = tl.tx * M - pl;
        const T* src = x + (tl.n * C + c) * HW;
        T d[PT][PT];
#pragma unroll
        for (int i = 0; i < PT; ++i)
#pragma unroll
            for (int j = 0; j < PT; ++j) {
                const int h = h0 + i;
                const int wc = w0 + j;
                d[i][j] = (gpuconv::in_range(h, H) && gpuconv::in_range(wc, W))
                              ? src[static_cast<long long>(h) * W + wc]
                              : T(0);
            }
        T t[PT][PT];
        T r[PT][PT];
        mat_left<typename Mat::BT, false>(d, t);   // B^T d
        mat_right<typename Mat::BT, false>(t, r);  // (B^T d) B
        scatter(r, v, plane, idx);
    }
}

// y[n, k, M*ty + i, M*tx + j] = (A^T m A)[i][j] (+ bias[k]) for m[xi] =
// M[(xi*K + k)*P + p], where inside OH x OW; total = K*P (p fastest).
template <typename T, int M>
__global__ void conv2d_winograd_output(const T* __restrict__ m, const T* __restrict__ bias,
                                       T* __restrict__ y, int K, int OH, int OW, int TH,
                                       int TW, int has_bias, long long P,
                                       long long total) {
    using namespace gpuconv_winograd;
    using Mat = Wino<M>;
    constexpr int PT = M + 2;
    const long long plane = static_cast<long long>(K) * P;
    for (long long idx = gpuconv::global_thread_index(); idx < total;
         idx += gpuconv::grid_stride()) {
        const long long p = idx % P;
        const int k = static_cast<int>(idx / P);
        const Tile tl = tile_of(p, TH, TW);
        T a[PT][PT];
        gather(m, plane, idx, a);
        T t[M][PT];
        T r[M][M];
        mat_left<typename Mat::AT, false>(a, t);   // A^T m
        mat_right<typename Mat::AT, false>(t, r);  // (A^T m) A
        const T b = has_bias ? bias[k] : T(0);
        T* out = y + (tl.n * K + k) * static_cast<long long>(OH) * OW;
#pragma unroll
        for (int i = 0; i < M; ++i) {
            const int oh = tl.ty * M + i;
            if (oh >= OH) continue;
#pragma unroll
            for (int j = 0; j < M; ++j) {
                const int ow = tl.tx * M + j;
                if (ow >= OW) continue;
                out[static_cast<long long>(oh) * OW + ow] = has_bias ? r[i][j] + b : r[i][j];
            }
        }
    }
}

// Ugy[(xi*K + k)*P + p] = (A t A^T)[xi] of the M x M gy tile t at (M*ty, M*tx) (0 past
// OH x OW), A = (A^T)^T; total = K*P (p fastest).
template <typename T, int M>
__global__ void conv2d_winograd_wgrad_gy(const T* __restrict__ gy, T* __restrict__ ugy,
                                         int K, int OH, int OW, int TH, int TW,
                                         long long P, long long total) {
    using namespace gpuconv_winograd;
    using Mat = Wino<M>;
    constexpr int PT = M + 2;
    const long long OHW = static_cast<long long>(OH) * OW;
    const long long plane = static_cast<long long>(K) * P;
    for (long long idx = gpuconv::global_thread_index(); idx < total;
         idx += gpuconv::grid_stride()) {
        const long long p = idx % P;
        const int k = static_cast<int>(idx / P);
        const Tile tl = tile_of(p, TH, TW);
        const T* src = gy + (tl.n * K + k) * OHW;
        T t[M][M];
#pragma unroll
        for (int i = 0; i < M; ++i)
#pragma unroll
            for (int j = 0; j < M; ++j) {
                const int oh = tl.ty * M + i;
                const int ow = tl.tx * M + j;
                t[i][j] = (oh < OH && ow < OW) ? src[static_cast<long long>(oh) * OW + ow]
                                               : T(0);
            }
        T s[PT][M];
        T r[PT][PT];
        mat_left<typename Mat::AT, true>(t, s);   // A t
        mat_right<typename Mat::AT, true>(s, r);  // (A t) A^T
        scatter(r, ugy, plane, idx);
    }
}

// gw[(k*Cg + c)*9 + a*3 + b] = (G^T m G)[a][b] for m[xi] = M[(xi*K + k)*Cg + c];
// total = K*Cg.
template <typename T, int M>
__global__ void conv2d_winograd_wgrad_output(const T* __restrict__ m, T* __restrict__ gw,
                                             int K, int Cg, long long total) {
    using namespace gpuconv_winograd;
    using Mat = Wino<M>;
    constexpr int PT = M + 2;
    const long long plane = static_cast<long long>(K) * Cg;
    for (long long idx = gpuconv::global_thread_index(); idx < total;
         idx += gpuconv::grid_stride()) {
        T a[PT][PT];
        gather(m, plane, idx, a);
        T t[TAPS][PT];
        T r[TAPS][TAPS];
        mat_left<typename Mat::G, true>(a, t);   // G^T m
        mat_right<typename Mat::G, true>(t, r);  // (G^T m) G
        T* out = gw + idx * (TAPS * TAPS);
#pragma unroll
        for (int i = 0; i < TAPS; ++i)
#pragma unroll
            for (int j = 0; j < TAPS; ++j) out[i * TAPS + j] = r[i][j];
    }
}

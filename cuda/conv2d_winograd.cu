// conv2d_winograd.cu: 3x3 stride-1 conv2d by Winograd's minimal filtering F(2x2, 3x3)
// (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks", 2016), the
// transforms of algorithm='winograd' for the forward pass and the input gradient.
//
// A 2x2 output tile of a 3x3 correlation is Y = A^T [ U (.) V ] A summed over the
// input channels, with U = G g G^T (4x4, the transformed 3x3 filter g) and
// V = B^T d B (4x4, the transformed 4x4 input patch d):
//   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1], G = [1 0 0; .5 .5 .5; .5 -.5 .5;
//   0 0 1], A^T = [1 1 1 0; 0 1 -1 -1].
// So the 16 positions xi of the 4x4 tile are 16 independent GEMMs over the channels:
//   M[xi][k][p] = sum_c U[xi][k][c] * V[xi][c][p],   p = a 2x2 output tile,
// 2.25x fewer multiplications than the direct sum (16 per tile and channel pair
// against 36). Variants (T = float or double; the launches of one plan, in order,
// gpuconv._plan_conv.plan_conv2d_winograd):
//   conv2d_winograd_weight  U (16*Ko, Ci): one thread per (output channel, reduction
//                           channel) of a group; FLIP (input gradient): g is the
//                           rotated, transposed w (w[g*Ci + c, k - g*Cog, 2-kh, 2-kw]).
//   conv2d_winograd_input   V (16*C, P): one thread per (channel, tile) reads its 4x4
//                           patch (zero outside the image: the zero padding) and
//                           writes the 16 transformed values, tiles fastest
//                           (coalesced).
//   the 16 GEMMs            conv2d_forward.cu's tiled_regblock kernel, unchanged: V as
//                           the input (1, 16*C, 1, P) of a 1x1 convolution with
//                           weights U (16*Ko, Ci, 1, 1) in 16*groups groups (group
//                           xi*groups + g), output M (1, 16*Ko, 1, P); split-K and its
//                           ordered reduce as for any launch of that kernel.
//   conv2d_winograd_output  one thread per (output channel, tile): Y = A^T M A plus
//                           the bias, written where the tile is inside the output.
// The input gradient of a 3x3 stride-1 layer is the same correlation of gy with the
// rotated filter and padding 2 - pad, so it runs this plan too (a pad over 2 gives a
// negative padding: the patches start inside gy, past its first pad - 2 rows/columns).
// The weight gradient runs the transposed algorithm F(3x3, 2x2): per 2x2 tile p of gy,
// gw[k, c] gains the 3x3 correlation of x's 4x4 patch d with the gy tile t, which is
// G^T [ (A t A^T) (.) (B^T d B) ] G (A = (A^T)^T), so its plan is
//   conv2d_winograd_input         V of x, as above;
//   conv2d_winograd_wgrad_gy      Ugy (16*K, P) = A t A^T: one thread per (channel,
//                                 tile), the 2x2 tile of gy (0 past OH x OW);
//   the 16 GEMMs over the tiles   M[xi][k][c] = sum_p Ugy[xi][k][p] * V[xi][c][p]:
//                                 conv2d_backward_weight.cu's tiled_regblock kernel on
//                                 V and Ugy as a 1x1 layer in 16*groups groups,
//                                 split-K over the tiles, added in split order;
//   conv2d_winograd_wgrad_output  gw[k, c] = G^T M G (3x3): one thread per (k, c).
// algorithm='winograd4' runs F(4x4, 3x3) (and F(3x3, 4x4) for the weight gradient):
// 6x6 patches, 4x4 output tiles, 36 GEMMs, 4x fewer multiplications than the direct
// sum (36 per tile and channel pair against 144) and 2.25x the tensors in the
// workspaces, with Lavin and Gray's matrices (points 0, +-1, +-2, infinity: entries
// up to 8 and 1/24, so a larger error scale, tests/_tol.py). Its kernels have the
// same roles and arguments: conv2d_winograd4_weight, conv2d_winograd4_input,
// conv2d_winograd4_output, conv2d_winograd4_wgrad_gy, conv2d_winograd4_wgrad_output;
// their transforms are products with compile-time coefficient tables (mat_left,
// mat_right below).
// Numerics: not the direct sum's: the transforms add and halve values, so the error
// is bounded by the float sums of the transformed magnitudes (|A^T| sum_c |U||V| |A|
// with |U| = |G||g||G^T|, |V| = |B^T||d||B|), a few times the direct sum's bound
// (tests/_tol.py states it); deterministic, no atomics (each value is written once
// by one thread, every sum in a fixed order).
#include "common.cuh"

namespace gpuconv_winograd {

constexpr int TILE = 2;   // output tile (m)
constexpr int PATCH = 4;  // input patch (m + r - 1)
constexpr int TAPS = 3;   // filter (r)
constexpr int POS = PATCH * PATCH;

}  // namespace gpuconv_winograd

// U[(xi*Ko + k)*Ci + c] = (G g G^T)[xi], xi = 4*i + j; total = Ko*Ci. Forward: g =
// w[k, c] of w (Ko, Ci, 3, 3). FLIP: w is (groups*Ci, Ko/groups, 3, 3) (the forward
// layer's), g[kh][kw] = w[grp*Ci + c, k - grp*Cog, 2-kh, 2-kw] with Cog = Ko/groups.
template <typename T>
__global__ void conv2d_winograd_weight(const T* __restrict__ w, T* __restrict__ u,
                                       int Ko, int Ci, int groups, int flip,
                                       long long total) {
    using namespace gpuconv_winograd;
    const int Cog = Ko / groups;
    const T half = T(0.5);
    for (long long idx = gpuconv::global_thread_index(); idx < total;
         idx += gpuconv::grid_stride()) {
        const int c = static_cast<int>(idx % Ci);
        const int k = static_cast<int>(idx / Ci);
        T g[TAPS][TAPS];
        if (flip) {
            const int grp = k / Cog;
            const T* src = w + (static_cast<long long>(grp * Ci + c) * Cog + (k - grp * Cog)) *
                                   (TAPS * TAPS);
#pragma unroll
            for (int a = 0; a < TAPS; ++a)
#pragma unroll
                for (int b = 0; b < TAPS; ++b)
                    g[a][b] = src[(TAPS - 1 - a) * TAPS + (TAPS - 1 - b)];
        } else {
            const T* src = w + idx * (TAPS * TAPS);
#pragma unroll
            for (int a = 0; a < TAPS; ++a)
#pragma unroll
                for (int b = 0; b < TAPS; ++b) g[a][b] = src[a * TAPS + b];
        }
        T t[PATCH][TAPS];  // G g
#pragma unroll
        for (int b = 0; b < TAPS; ++b) {
            t[0][b] = g[0][b];
            t[1][b] = (g[0][b] + g[1][b] + g[2][b]) * half;
            t[2][b] = (g[0][b] - g[1][b] + g[2][b]) * half;
            t[3][b] = g[2][b];
        }
        const long long plane = static_cast<long long>(Ko) * Ci;
#pragma unroll
        for (int i = 0; i < PATCH; ++i) {  // (G g) G^T, row i
            const T r[PATCH] = {t[i][0], (t[i][0] + t[i][1] + t[i][2]) * half,
                                (t[i][0] - t[i][1] + t[i][2]) * half, t[i][2]};
#pragma unroll
            for (int j = 0; j < PATCH; ++j) u[(i * PATCH + j) * plane + idx] = r[j];
        }
    }
}

// V[(xi*C + c)*P + p] = (B^T d B)[xi] of d = x[n, c, 2*ty - pt + i, 2*tx - pl + j]
// (0 outside H x W), p = (n*TH + ty)*TW + tx; total = C*P (p fastest).
template <typename T>
__global__ void conv2d_winograd_input(const T* __restrict__ x, T* __restrict__ v, int C,
                                      int H, int W, int pt, int pl, int TH, int TW,
                                      long long P, long long total) {
    using namespace gpuconv_winograd;
    const long long HW = static_cast<long long>(H) * W;
    for (long long idx = gpuconv::global_thread_index(); idx < total;
         idx += gpuconv::grid_stride()) {
        const long long p = idx % P;
        const int c = static_cast<int>(idx / P);
        const int tx = static_cast<int>(p % TW);
        const long long q = p / TW;
        const int ty = static_cast<int>(q % TH);
        const long long n = q / TH;
        const int h0 = ty * TILE - pt;
        const int w0 = tx * TILE - pl;
        const T* src = x + (n * C + c) * HW;
        T d[PATCH][PATCH];
#pragma unroll
        for (int i = 0; i < PATCH; ++i)
#pragma unroll
            for (int j = 0; j < PATCH; ++j) {
                const int h = h0 + i;
                const int w = w0 + j;
                d[i][j] = (gpuconv::in_range(h, H) && gpuconv::in_range(w, W))
                              ? src[static_cast<long long>(h) * W + w]
                              : T(0);
            }
        T t[PATCH][PATCH];  // B^T d
#pragma unroll
        for (int j = 0; j < PATCH; ++j) {
            t[0][j] = d[0][j] - d[2][j];
            t[1][j] = d[1][j] + d[2][j];
            t[2][j] = d[2][j] - d[1][j];
            t[3][j] = d[1][j] - d[3][j];
        }
        const long long plane = static_cast<long long>(C) * P;
#pragma unroll
        for (int i = 0; i < PATCH; ++i) {  // (B^T d) B, row i
            const T r[PATCH] = {t[i][0] - t[i][2], t[i][1] + t[i][2], t[i][2] - t[i][1],
                                t[i][1] - t[i][3]};
#pragma unroll
            for (int j = 0; j < PATCH; ++j) v[(i * PATCH + j) * plane + idx] = r[j];
        }
    }
}

// y[n, k, 2*ty + i, 2*tx + j] = (A^T m A)[i][j] (+ bias[k]) for m[xi] =
// M[(xi*K + k)*P + p], where inside OH x OW; total = K*P (p fastest).
template <typename T>
__global__ void conv2d_winograd_output(const T* __restrict__ m, const T* __restrict__ bias,
                                       T* __restrict__ y, int K, int OH, int OW, int TH,
                                       int TW, int has_bias, long long P,
                                       long long total) {
    using namespace gpuconv_winograd;
    const long long plane = static_cast<long long>(K) * P;
    for (long long idx = gpuconv::global_thread_index(); idx < total;
         idx += gpuconv::grid_stride()) {
        const long long p = idx % P;
        const int k = static_cast<int>(idx / P);
        const int tx = static_cast<int>(p % TW);
        const long long q = p / TW;
        const int ty = static_cast<int>(q % TH);
        const long long n = q / TH;
        T a[PATCH][PATCH];
#pragma unroll
        for (int i = 0; i < PATCH; ++i)
#pragma unroll
            for (int j = 0; j < PATCH; ++j) a[i][j] = m[(i * PATCH + j) * plane + idx];
        T t[TILE][PATCH];  // A^T m
#pragma unroll
        for (int j = 0; j < PATCH; ++j) {
            t[0][j] = a[0][j] + a[1][j] + a[2][j];
            t[1][j] = a[1][j] - a[2][j] - a[3][j];
        }
        const T b = has_bias ? bias[k] : T(0);
        T* out = y + (n * K + k) * static_cast<long long>(OH) * OW;
#pragma unroll
        for (int i = 0; i < TILE; ++i) {
            const int oh = ty * TILE + i;
            if (oh >= OH) continue;
            const T r[TILE] = {t[i][0] + t[i][1] + t[i][2], t[i][1] - t[i][2] - t[i][3]};
#pragma unroll
            for (int j = 0; j < TILE; ++j) {
                const int ow = tx * TILE + j;
                if (ow >= OW) continue;
                out[static_cast<long long>(oh) * OW + ow] = has_bias ? r[j] + b : r[j];
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// The weight gradient, F(3x3, 2x2) (see the header).

// Ugy[(xi*K + k)*P + p] = (A t A^T)[xi] of t = gy[n, k, 2*ty + i, 2*tx + j] (0 outside
// OH x OW); total = K*P (p fastest).
template <typename T>
__global__ void conv2d_winograd_wgrad_gy(const T* __restrict__ gy, T* __restrict__ ugy,
                                         int K, int OH, int OW, int TH, int TW,
                                         long long P, long long total) {
    using namespace gpuconv_winograd;
    const long long OHW = static_cast<long long>(OH) * OW;
    for (long long idx = gpuconv::global_thread_index(); idx < total;
         idx += gpuconv::grid_stride()) {
        const long long p = idx % P;
        const int k = static_cast<int>(idx / P);
        const int tx = static_cast<int>(p % TW);
        const long long q = p / TW;
        const int ty = static_cast<int>(q % TH);
        const long long n = q / TH;
        const T* src = gy + (n * K + k) * OHW;
        T t[TILE][TILE];
#pragma unroll
        for (int i = 0; i < TILE; ++i)
#pragma unroll
            for (int j = 0; j < TILE; ++j) {
                const int oh = ty * TILE + i;
                const int ow = tx * TILE + j;
                t[i][j] = (oh < OH && ow < OW) ? src[static_cast<long long>(oh) * OW + ow]
                                               : T(0);
            }
        T r[PATCH][TILE];  // A t
#pragma unroll
        for (int j = 0; j < TILE; ++j) {
            r[0][j] = t[0][j];
            r[1][j] = t[0][j] + t[1][j];
            r[2][j] = t[0][j] - t[1][j];
            r[3][j] = -t[1][j];
        }
        const long long plane = static_cast<long long>(K) * P;
#pragma unroll
        for (int i = 0; i < PATCH; ++i) {  // (A t) A^T, row i
            const T row[PATCH] = {r[i][0], r[i][0] + r[i][1], r[i][0] - r[i][1], -r[i][1]};
#pragma unroll
            for (int j = 0; j < PATCH; ++j) ugy[(i * PATCH + j) * plane + idx] = row[j];
        }
    }
}

// gw[(k*Cg + c)*9 + a*3 + b] = (G^T m G)[a][b] for m[xi] = M[(xi*K + k)*Cg + c];
// total = K*Cg.
template <typename T>
__global__ void conv2d_winograd_wgrad_output(const T* __restrict__ m, T* __restrict__ gw,
                                             int K, int Cg, long long total) {
    using namespace gpuconv_winograd;
    const T half = T(0.5);
    const long long plane = static_cast<long long>(K) * Cg;
    for (long long idx = gpuconv::global_thread_index(); idx < total;
         idx += gpuconv::grid_stride()) {
        T a[PATCH][PATCH];
#pragma unroll
        for (int i = 0; i < PATCH; ++i)
#pragma unroll
            for (int j = 0; j < PATCH; ++j) a[i][j] = m[(i * PATCH + j) * plane + idx];
        T t[TAPS][PATCH];  // G^T m
#pragma unroll
        for (int j = 0; j < PATCH; ++j) {
            t[0][j] = a[0][j] + (a[1][j] + a[2][j]) * half;
            t[1][j] = (a[1][j] - a[2][j]) * half;
            t[2][j] = (a[1][j] + a[2][j]) * half + a[3][j];
        }
        T* out = gw + idx * (TAPS * TAPS);
#pragma unroll
        for (int i = 0; i < TAPS; ++i) {  // (G^T m) G, row i
            out[i * TAPS + 0] = t[i][0] + (t[i][1] + t[i][2]) * half;
            out[i * TAPS + 1] = (t[i][1] - t[i][2]) * half;
            out[i * TAPS + 2] = (t[i][1] + t[i][2]) * half + t[i][3];
        }
    }
}

// ---------------------------------------------------------------------------------
// F(4x4, 3x3) and its transpose F(3x3, 4x4) (algorithm='winograd4'): 6x6 patches and
// transforms, 4x4 output tiles, 36 GEMMs; the matrices of Lavin and Gray (points 0,
// +-1, +-2, infinity). The transforms are written once, as products with
// compile-time coefficient tables (zero terms skipped, +-1 terms as additions).

namespace gpuconv_winograd {

struct BT4 {  // B^T (6x6)
    __host__ __device__ static constexpr double v(int i, int j) {
        constexpr double m[6][6] = {{4, 0, -5, 0, 1, 0},  {0, -4, -4, 1, 1, 0},
                                    {0, 4, -4, -1, 1, 0}, {0, -2, -1, 2, 1, 0},
                                    {0, 2, -1, -2, 1, 0}, {0, 4, 0, -5, 0, 1}};
        return m[i][j];
    }
};
struct G4 {  // G (6x3)
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
struct AT4 {  // A^T (4x6)
    __host__ __device__ static constexpr double v(int i, int j) {
        constexpr double m[4][6] = {{1, 1, 1, 1, 1, 0},
                                    {0, 1, -1, 2, -2, 0},
                                    {0, 1, 1, 4, 4, 0},
                                    {0, 1, -1, 8, -8, 1}};
        return m[i][j];
    }
};

// c * x for a compile-time coefficient c (after unrolling): +-1 without a multiply.
template <typename T>
__device__ __forceinline__ T coef_times(double c, T x) {
    return c == 1.0 ? x : (c == -1.0 ? -x : T(c) * x);
}

// out[i][n] = sum_j M(i, j) in[j][n], M(i, j) = Mat::v(i, j) (TRANS: Mat::v(j, i));
// the terms in increasing j, zero coefficients skipped.
template <class Mat, bool TRANS, typename T, int R, int K, int N>
__device__ __forceinline__ void mat_left(const T (&in)[K][N], T (&out)[R][N]) {
#pragma unroll
    for (int i = 0; i < R; ++i)
#pragma unroll
        for (int n = 0; n < N; ++n) {
            T acc = T(0);
            bool first = true;
#pragma unroll
            for (int j = 0; j < K; ++j) {
                const double c = TRANS ? Mat::v(j, i) : Mat::v(i, j);
                if (c == 0.0) continue;
                const T term = coef_times(c, in[j][n]);
                acc = first ? term : acc + term;
                first = false;
            }
            out[i][n] = acc;
        }
}

// out[r][i] = sum_j in[r][j] M(i, j): the right product by M^T (TRANS: by M).
template <class Mat, bool TRANS, typename T, int R, int K, int N>
__device__ __forceinline__ void mat_right(const T (&in)[R][K], T (&out)[R][N]) {
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
        for (int i = 0; i < N; ++i) {
            T acc = T(0);
            bool first = true;
#pragma unroll
            for (int j = 0; j < K; ++j) {
                const double c = TRANS ? Mat::v(j, i) : Mat::v(i, j);
                if (c == 0.0) continue;
                const T term = coef_times(c, in[r][j]);
                acc = first ? term : acc + term;
                first = false;
            }
            out[r][i] = acc;
        }
}

}  // namespace gpuconv_winograd

// U[(xi*Ko + k)*Ci + c] = (G g G^T)[xi], xi = 6*i + j, as conv2d_winograd_weight.
template <typename T>
__global__ void conv2d_winograd4_weight(const T* __restrict__ w, T* __restrict__ u,
                                        int Ko, int Ci, int groups, int flip,
                                        long long total) {
    using namespace gpuconv_winograd;
    const int Cog = Ko / groups;
    const long long plane = static_cast<long long>(Ko) * Ci;
    for (long long idx = gpuconv::global_thread_index(); idx < total;
         idx += gpuconv::grid_stride()) {
        const int c = static_cast<int>(idx % Ci);
        const int k = static_cast<int>(idx / Ci);
        T g[TAPS][TAPS];
        const int grp = k / Cog;
        const T* src = flip ? w + (static_cast<long long>(grp * Ci + c) * Cog +
                                   (k - grp * Cog)) * (TAPS * TAPS)
                            : w + idx * (TAPS * TAPS);
#pragma unroll
        for (int a = 0; a < TAPS; ++a)
#pragma unroll
            for (int b = 0; b < TAPS; ++b)
                g[a][b] = flip ? src[(TAPS - 1 - a) * TAPS + (TAPS - 1 - b)]
                               : src[a * TAPS + b];
        T t[6][TAPS];
        T r[6][6];
        mat_left<G4, false>(g, t);   // G g
        mat_right<G4, false>(t, r);  // (G g) G^T
#pragma unroll
        for (int i = 0; i < 6; ++i)
#pragma unroll
            for (int j = 0; j < 6; ++j) u[(i * 6 + j) * plane + idx] = r[i][j];
    }
}

// V[(xi*C + c)*P + p] = (B^T d B)[xi] of the 6x6 patch d = x[n, c, 4*ty - pt + i,
// 4*tx - pl + j] (0 outside H x W); total = C*P (p fastest).
template <typename T>
__global__ void conv2d_winograd4_input(const T* __restrict__ x, T* __restrict__ v, int C,
                                       int H, int W, int pt, int pl, int TH, int TW,
                                       long long P, long long total) {
    using namespace gpuconv_winograd;
    const long long HW = static_cast<long long>(H) * W;
    const long long plane = static_cast<long long>(C) * P;
    for (long long idx = gpuconv::global_thread_index(); idx < total;
         idx += gpuconv::grid_stride()) {
        const long long p = idx % P;
        const int c = static_cast<int>(idx / P);
        const int tx = static_cast<int>(p % TW);
        const long long q = p / TW;
        const int ty = static_cast<int>(q % TH);
        const long long n = q / TH;
        const int h0 = ty * 4 - pt;
        const int w0 = tx * 4 - pl;
        const T* src = x + (n * C + c) * HW;
        T d[6][6];
#pragma unroll
        for (int i = 0; i < 6; ++i)
#pragma unroll
            for (int j = 0; j < 6; ++j) {
                const int h = h0 + i;
                const int w = w0 + j;
                d[i][j] = (gpuconv::in_range(h, H) && gpuconv::in_range(w, W))
                              ? src[static_cast<long long>(h) * W + w]
                              : T(0);
            }
        T t[6][6];
        T r[6][6];
        mat_left<BT4, false>(d, t);   // B^T d
        mat_right<BT4, false>(t, r);  // (B^T d) B
#pragma unroll
        for (int i = 0; i < 6; ++i)
#pragma unroll
            for (int j = 0; j < 6; ++j) v[(i * 6 + j) * plane + idx] = r[i][j];
    }
}

// y[n, k, 4*ty + i, 4*tx + j] = (A^T m A)[i][j] (+ bias[k]) for m[xi] =
// M[(xi*K + k)*P + p], where inside OH x OW; total = K*P (p fastest).
template <typename T>
__global__ void conv2d_winograd4_output(const T* __restrict__ m, const T* __restrict__ bias,
                                        T* __restrict__ y, int K, int OH, int OW, int TH,
                                        int TW, int has_bias, long long P,
                                        long long total) {
    using namespace gpuconv_winograd;
    const long long plane = static_cast<long long>(K) * P;
    for (long long idx = gpuconv::global_thread_index(); idx < total;
         idx += gpuconv::grid_stride()) {
        const long long p = idx % P;
        const int k = static_cast<int>(idx / P);
        const int tx = static_cast<int>(p % TW);
        const long long q = p / TW;
        const int ty = static_cast<int>(q % TH);
        const long long n = q / TH;
        T a[6][6];
#pragma unroll
        for (int i = 0; i < 6; ++i)
#pragma unroll
            for (int j = 0; j < 6; ++j) a[i][j] = m[(i * 6 + j) * plane + idx];
        T t[4][6];
        T r[4][4];
        mat_left<AT4, false>(a, t);   // A^T m
        mat_right<AT4, false>(t, r);  // (A^T m) A
        const T b = has_bias ? bias[k] : T(0);
        T* out = y + (n * K + k) * static_cast<long long>(OH) * OW;
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const int oh = ty * 4 + i;
            if (oh >= OH) continue;
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                const int ow = tx * 4 + j;
                if (ow >= OW) continue;
                out[static_cast<long long>(oh) * OW + ow] = has_bias ? r[i][j] + b : r[i][j];
            }
        }
    }
}

// Ugy[(xi*K + k)*P + p] = (A t A^T)[xi] of the 4x4 gy tile t at (4*ty, 4*tx) (0 past
// OH x OW), A = (A^T)^T; total = K*P (p fastest).
template <typename T>
__global__ void conv2d_winograd4_wgrad_gy(const T* __restrict__ gy, T* __restrict__ ugy,
                                          int K, int OH, int OW, int TH, int TW,
                                          long long P, long long total) {
    using namespace gpuconv_winograd;
    const long long OHW = static_cast<long long>(OH) * OW;
    const long long plane = static_cast<long long>(K) * P;
    for (long long idx = gpuconv::global_thread_index(); idx < total;
         idx += gpuconv::grid_stride()) {
        const long long p = idx % P;
        const int k = static_cast<int>(idx / P);
        const int tx = static_cast<int>(p % TW);
        const long long q = p / TW;
        const int ty = static_cast<int>(q % TH);
        const long long n = q / TH;
        const T* src = gy + (n * K + k) * OHW;
        T t[4][4];
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                const int oh = ty * 4 + i;
                const int ow = tx * 4 + j;
                t[i][j] = (oh < OH && ow < OW) ? src[static_cast<long long>(oh) * OW + ow]
                                               : T(0);
            }
        T s[6][4];
        T r[6][6];
        mat_left<AT4, true>(t, s);   // A t
        mat_right<AT4, true>(s, r);  // (A t) A^T
#pragma unroll
        for (int i = 0; i < 6; ++i)
#pragma unroll
            for (int j = 0; j < 6; ++j) ugy[(i * 6 + j) * plane + idx] = r[i][j];
    }
}

// gw[(k*Cg + c)*9 + a*3 + b] = (G^T m G)[a][b] for m[xi] = M[(xi*K + k)*Cg + c];
// total = K*Cg.
template <typename T>
__global__ void conv2d_winograd4_wgrad_output(const T* __restrict__ m, T* __restrict__ gw,
                                              int K, int Cg, long long total) {
    using namespace gpuconv_winograd;
    const long long plane = static_cast<long long>(K) * Cg;
    for (long long idx = gpuconv::global_thread_index(); idx < total;
         idx += gpuconv::grid_stride()) {
        T a[6][6];
#pragma unroll
        for (int i = 0; i < 6; ++i)
#pragma unroll
            for (int j = 0; j < 6; ++j) a[i][j] = m[(i * 6 + j) * plane + idx];
        T t[TAPS][6];
        T r[TAPS][TAPS];
        mat_left<G4, true>(a, t);   // G^T m
        mat_right<G4, true>(t, r);  // (G^T m) G
        T* out = gw + idx * (TAPS * TAPS);
#pragma unroll
        for (int i = 0; i < TAPS; ++i)
#pragma unroll
            for (int j = 0; j < TAPS; ++j) out[i * TAPS + j] = r[i][j];
    }
}

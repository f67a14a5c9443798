// fft_spectrum_product.cu: the product of the 2-D FFT filter path (gpuconv._gpu_filter:
// correlate2d_fft) with the kernel's spectrum, the spectrum computed on the fly from
// its two small DFT factors, in place.
//
// The kernel's spectrum K = F_h @ kr @ F_w (F_h (sh, KH), F_w (KW, nv): DFT matrices,
// kr the reversed kernel; gpuconv._gpu_filter kernel_spectrum) has rank at most R = min(KH, KW) <= FS_MAX_RANK. The caller forms
// the small factor product (one GEMM of KH * KW * nv or sh * KH * KW multiply-adds)
// and passes K = A @ G with
//     A (sh, R) = F_h        and G (R, nv) = kr @ F_w       when KH <= KW, or
//     A (sh, R) = F_h @ kr   and G (R, nv) = F_w            otherwise,
// so K is never written: R complex multiply-adds per spectrum element replace a
// spectrum-sized write and read (the old `spec *= fh @ (kc @ fw)`: a GEMM writing K,
// then a product reading spec and K and writing spec). Device traffic: one read and
// one write of the spectrum, plus the factors (L2-resident, a few MB at most).
//
// Variant (planned by gpuconv._plan_filter.plan_fft_spectrum_product):
//
//   fft_spectrum_product<C>   C in gc_complex64, gc_complex128
//       spec (B, U, V) C-contiguous, in place:
//           spec[b, u, v] = (spec[b, u, v] * scale) * sum_{r < R} A[kb, u, r] * G[kb, r, v]
//       (scale: the inverse transform's 1/n, applied to the image's spectrum before
//       the product, so neither a tiny kernel's K * scale underflows nor a large
//       spec * K overflows before the result would)
//       A (Bk, U, R), G (Bk, R, V) C-contiguous with batch strides a_bstride and
//       g_bstride (0 for a factor every kernel shares: F_h or F_w); kb = 0 when one
//       kernel serves every image (kshared), kb = b otherwise (Bk == B).
//       Blocks of FS_TV x FS_TY threads own an FS_TU x FS_TV tile of (u, v): the tile's
//       rows of A (FS_TU x R) and columns of G (R x FS_TV) are staged in shared memory
//       with coalesced loads, each thread sums the FS_UPT rows u = ty + m * FS_TY of its
//       column v (the A reads are warp-wide broadcasts, the G reads conflict-free).
//       Grid x covers the tile columns, grid y strides over the tile rows, grid z
//       over the images: with a shared kernel a block computes its tile of K once
//       per row tile and multiplies `per` consecutive images by it (a stack of small
//       images amortises the sums), with a kernel per image it recomputes the tile
//       per image (per == 1). Every element's sum is taken in the same order whatever
//       the grid: bit-identical results.
#include "common.cuh"
#include "filter_common.cuh"

namespace gcfg {

constexpr int FS_TV = 32;               // spectrum columns per block (threadIdx.x)
constexpr int FS_TY = 4;                // thread rows per block (threadIdx.y)
constexpr int FS_UPT = 8;               // spectrum rows per thread, FS_TY apart
constexpr int FS_TU = FS_TY * FS_UPT;   // spectrum rows per block
constexpr int FS_THREADS = FS_TV * FS_TY;
constexpr int FS_MAX_RANK = 32;         // the largest R (the planner's limit)
// Resident blocks per SM the registers must allow (__launch_bounds__), per type:
// complex64 8 (<= 64 registers, 32 warps; without the bound ptxas for sm_80 settles
// on 64 registers with a 4-byte spill), complex128 5 (<= 102 registers, 20 warps;
// 5 x 32 KiB of shared memory fits an SM).
constexpr int FS_MIN_BLOCKS_C64 = 8;
constexpr int FS_MIN_BLOCKS_C128 = 5;

}  // namespace gcfg

namespace gcfs {

template <typename C>
__host__ __device__ constexpr int fs_min_blocks() {
    return sizeof(C) == 8 ? gcfg::FS_MIN_BLOCKS_C64 : gcfg::FS_MIN_BLOCKS_C128;
}

template <typename C>
struct SpectrumSmem {
    C a[gcfg::FS_TU][gcfg::FS_MAX_RANK];  // A rows of the tile (broadcast reads)
    C g[gcfg::FS_MAX_RANK][gcfg::FS_TV];  // G columns of the tile
};

// The real type of a complex C.
template <typename C>
struct RealOf;
template <typename R>
struct RealOf<gc_complex<R> > {
    typedef R type;
};

// x * s per part (s real).
template <typename R>
__device__ __forceinline__ gc_complex<R> scaled(gc_complex<R> x, R s) {
    gc_complex<R> r;
    r.re = x.re * s;
    r.im = x.im * s;
    return r;
}

// x * w, each part one product and one FMA, written out so that the compiler's
// contraction cannot make the GPU round differently from the emulator.
template <typename R>
__device__ __forceinline__ gc_complex<R> cmul(gc_complex<R> x, gc_complex<R> w) {
    gc_complex<R> r;
    r.re = fma(x.re, w.re, -(x.im * w.im));
    r.im = fma(x.re, w.im, x.im * w.re);
    return r;
}

// acc + x * w as four explicit FMAs: the roundings are fixed by the source, not by
// the compiler's contraction (the emulator rounds them the same way), and it takes
// four instructions where NumPy's order, contracted, takes six.
template <typename R>
__device__ __forceinline__ gc_complex<R> cmad(gc_complex<R> x, gc_complex<R> w,
                                              gc_complex<R> acc) {
    gc_complex<R> r;
    r.re = fma(-x.im, w.im, fma(x.re, w.re, acc.re));
    r.im = fma(x.im, w.re, fma(x.re, w.im, acc.im));
    return r;
}

// The tile of K = A @ G for the thread's rows u0 + ty + m * FS_TY, column v0 + tx, into
// acc (out-of-range rows and columns read zeros). Opens with a barrier: the shared
// tile of the previous image is dead before it is overwritten.
template <typename C>
__device__ __forceinline__ void spectrum_tile(SpectrumSmem<C>& s, const C* __restrict__ A,
                                              const C* __restrict__ G, int U, int V, int R,
                                              int u0, int v0, C (&acc)[gcfg::FS_UPT]) {
    using gcfg::FS_TU;
    using gcfg::FS_TV;
    using gcfg::FS_TY;
    const C zero = gcf::zero_value<C>();
    __syncthreads();  // the previous tile's reads are done before it is overwritten
    // row uu of the A tile is R contiguous values; G's rows are V apart (coalesced
    // along v); no index division
    for (int uu = threadIdx.y; uu < FS_TU; uu += FS_TY) {
        const bool in = u0 + uu < U;
        const C* a_row = A + (in ? static_cast<long long>(u0 + uu) * R : 0);
        for (int r = threadIdx.x; r < R; r += FS_TV) s.a[uu][r] = in ? a_row[r] : zero;
    }
    for (int r = threadIdx.y; r < R; r += FS_TY) {
        const int v = v0 + threadIdx.x;
        s.g[r][threadIdx.x] = v < V ? G[static_cast<long long>(r) * V + v] : zero;
    }
    __syncthreads();  // the tile is staged before any thread sums it
#pragma unroll
    for (int m = 0; m < gcfg::FS_UPT; ++m) acc[m] = zero;
    for (int r = 0; r < R; ++r) {
        const C g = s.g[r][threadIdx.x];
#pragma unroll
        for (int m = 0; m < gcfg::FS_UPT; ++m) {
            acc[m] = cmad(s.a[threadIdx.y + m * gcfg::FS_TY][r], g, acc[m]);
        }
    }
}

}  // namespace gcfs

// spec (B, U, V) *= A @ G per image (see the header). Grid (ceil(V / FS_TV), gy, gz):
// row tiles u0 = blockIdx.y * FS_TU, + gridDim.y * FS_TU, ...; images [z * per,
// (z + 1) * per) for z = blockIdx.z, + gridDim.z, ...; per == 1 unless kshared.
// 1 <= R <= FS_MAX_RANK and U <= INT32_MAX - FS_TU (the planner checks).
template <typename C>
__global__ void __launch_bounds__(gcfg::FS_THREADS, gcfs::fs_min_blocks<C>()) fft_spectrum_product(
    C* __restrict__ spec, const C* __restrict__ A, const C* __restrict__ G, int B, int U,
    int V, int R, long long a_bstride, long long g_bstride, int kshared, int per,
    typename gcfs::RealOf<C>::type scale) {
    __shared__ gcfs::SpectrumSmem<C> s;
    const int v0 = blockIdx.x * gcfg::FS_TV;
    const int v = v0 + threadIdx.x;
    const long long plane = static_cast<long long>(U) * V;
    C acc[gcfg::FS_UPT];
    // (every loop bound and `have` depend on blockIdx only: every barrier is reached
    // by the whole block)
    for (long long ut = static_cast<long long>(blockIdx.y) * gcfg::FS_TU; ut < U;
         ut += static_cast<long long>(gridDim.y) * gcfg::FS_TU) {
        const int u0 = static_cast<int>(ut);
        bool have = false;  // acc holds this row tile of the shared kernel's spectrum
        for (long long z = blockIdx.z; z * per < B; z += gridDim.z) {
            const long long b_end = (z + 1) * per < B ? (z + 1) * per : B;
            for (long long b = z * per; b < b_end; ++b) {
                if (!kshared || !have) {
                    const long long kb = kshared ? 0 : b;
                    gcfs::spectrum_tile(s, A + kb * a_bstride, G + kb * g_bstride, U, V,
                                        R, u0, v0, acc);
                    have = true;
                }
                if (v >= V) continue;
                C* p = spec + b * plane + v;
#pragma unroll
                for (int m = 0; m < gcfg::FS_UPT; ++m) {
                    const int u = u0 + threadIdx.y + m * gcfg::FS_TY;
                    if (u < U) {
                        C* q = p + static_cast<long long>(u) * V;
                        *q = gcfs::cmul(gcfs::scaled(*q, scale), acc[m]);
                    }
                }
            }
        }
    }
}

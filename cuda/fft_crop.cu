// fft_crop.cu: the one pass after the 2-D FFT filter path's inverse transform
// (gpuconv._gpu_filter.correlate2d_fft). It reads the output window of the inverse
// once and writes the output, with the fill correction of a non-zero fill value added
// on the way (gpuconv._padding.add_fill_correction, which the NumPy backend runs).
//
// What it replaces on the device, per call: the window's copy out of the inverse
// (a strided view made contiguous) and, for boundary='fill' with a non-zero fill
// value, up to four border blocks each corrected by ~30 small CuPy calls (index
// uploads, table gathers, sums, the product with the fill value, a cast, a strided
// write): one launch instead of ~120 array operations. The summed-area tables of the
// kernel are still built by gpuconv._padding.fill_tables (a few small operations on
// (Bk, KH + 1, KW + 1) arrays).
//
// Variant (planned by gpuconv._plan_filter.plan_fft_crop):
//
//   fft_crop<T>   T in float, double, gc_complex64, gc_complex128
//       out (B, OH, OW), y (B, sh, sw), both C-contiguous:
//           out[b, i, j] = y[b, oy + i, ox + j]                     (a copy)
//       where r0 <= i < r1 and c0 <= j < c1 (the outputs that read only image pixels:
//       gpuconv._padding.fill_interior) or when the tables are null (a zero fill or
//       another boundary: the planner then passes the whole output as interior), and
//           out[b, i, j] = T(wide(y[b, oy + i, ox + j]) + fill * s_out(i, j))
//       elsewhere, in the wide type Wd (double; gc_complex128 for complex T), with
//       the clipped table indices
//           a0 = clip(pt - i, 0, KH), a1 = clip(H + pt - i, 0, KH),
//           q0 = clip(pl - j, 0, KW), q1 = clip(W + pl - j, 0, KW)
//       and, in exactly add_fill_correction's order of evaluation,
//           s_out = above[a0] + below[a1]
//           s_out = s_out + (left[a1][q0] - left[a0][q0])
//           s_out = s_out + (right[a1][q1] - right[a0][q1])
//       (tables of kernel kb = b * kstep, kstep 0 when one kernel serves every image,
//       gpuconv._padding.fill_tables) and the complex product written out per part,
//       (fr*sr - fi*si, fr*si + fi*sr) (gpuconv._padding.times_fill). Every operation
//       is an explicitly rounded intrinsic (__dadd_rn, __dsub_rn, __dmul_rn): nvcc
//       never contracts them into FMAs, so the GPU rounds exactly as NumPy (and the
//       emulator's g++) does, one rounding per operation, and the result is bit for
//       bit the NumPy backend's. There is no float32 arithmetic, and the float <->
//       double conversions are explicit non-.ftz PTX (gcrop::widen_f32, narrow_f64):
//       under CuPy's -ftz=true a plain cast compiles to cvt.ftz (SASS: FMUL.FTZ
//       r, r, 1 before the widening F2F, a multiply by FLT_MIN after the narrowing
//       one), which flushes a float32 subnormal operand or result to zero; so
//       float32 subnormals are kept, as NumPy keeps them (tests/test_nvcc.py
//       checks the PTX for any .ftz).
//       Blocks of FC_THREADS threads; each thread writes FC_ITEMS columns of a row,
//       FC_THREADS apart (coalesced loads and stores); grid x covers the columns,
//       grid y strides over the B * OH rows. Per row: its source, whether the whole
//       row is a border row, and the row part of s_out (above[a0] + below[a1], the
//       table rows a0 and a1) once; per corrected column two table differences. The
//       tables are a few KB (L1/L2-resident); copied values pass unchanged (NaN/inf
//       included).
//
//   fft_fill_tables<T>   the same T
//       The four tables fft_crop reads, from k (Bk, KH, KW) C-contiguous T, in the
//       wide type, with exactly gpuconv._padding.fill_tables' sums: every one a
//       sequential run (NumPy's cumsum, add.accumulate, is sequential; fill_tables
//       takes the row sums as cumsums too), so the tables are the NumPy backend's
//       bit for bit on every device (CuPy's own sum and cumsum are trees and scans,
//       which round differently). One block per kernel (grid x strides over Bk),
//       FT_THREADS threads: the column sums down the rows and the row suffix sums
//       (a thread per column / row), a barrier, then the prefix sums along the rows
//       of `left` and down the columns of `right`, and `above`/`below` from the row
//       sums (one thread). One launch where fill_tables took ~25 array operations.
#include "common.cuh"
#include "filter_common.cuh"

namespace gcfg {

constexpr int FC_THREADS = 256;  // threads per block (the launch bound)
constexpr int FC_ITEMS = 4;      // columns per thread, FC_THREADS apart
constexpr int FT_THREADS = 128;  // threads per block of fft_fill_tables
// its resident blocks per SM for the register bound (<= 64 registers): without a
// minimum ptxas settles on 40-72 registers for the long sequential loops and spills
constexpr int FT_MIN_BLOCKS = 8;

}  // namespace gcfg

namespace gcrop {

// float -> double (exact) and double -> float (round to nearest even) keeping
// subnormals on the device too: CuPy compiles with -ftz=true, under which NVVM turns
// a plain conversion into cvt.ftz, flushing a subnormal float operand or result to
// zero (NumPy keeps it). Explicit non-.ftz cvt on the device; the emulator's casts
// (g++, no flush) are the same IEEE conversions.
__device__ __forceinline__ double widen_f32(float v) {
#if defined(__CUDA_ARCH__)
    double w;
    asm("cvt.f64.f32 %0, %1;" : "=d"(w) : "f"(v));
    return w;
#else
    return static_cast<double>(v);
#endif
}

__device__ __forceinline__ float narrow_f64(double w) {
#if defined(__CUDA_ARCH__)
    float v;
    asm("cvt.rn.f32.f64 %0, %1;" : "=f"(v) : "d"(w));
    return v;
#else
    return __double2float_rn(w);
#endif
}

// The wide type of T, and T's values widened into it and rounded back (exact
// widening; round-to-nearest narrowing, per part for complex).
template <typename T>
struct Wide;
template <>
struct Wide<float> {
    typedef double type;
    static __device__ __forceinline__ double widen(float v) { return widen_f32(v); }
    static __device__ __forceinline__ float narrow(double w) { return narrow_f64(w); }
};
template <>
struct Wide<double> {
    typedef double type;
    static __device__ __forceinline__ double widen(double v) { return v; }
    static __device__ __forceinline__ double narrow(double w) { return w; }
};
template <>
struct Wide<gc_complex64> {
    typedef gc_complex128 type;
    static __device__ __forceinline__ gc_complex128 widen(gc_complex64 v) {
        gc_complex128 w;
        w.re = widen_f32(v.re);
        w.im = widen_f32(v.im);
        return w;
    }
    static __device__ __forceinline__ gc_complex64 narrow(gc_complex128 w) {
        gc_complex64 v;
        v.re = narrow_f64(w.re);
        v.im = narrow_f64(w.im);
        return v;
    }
};
template <>
struct Wide<gc_complex128> {
    typedef gc_complex128 type;
    static __device__ __forceinline__ gc_complex128 widen(gc_complex128 v) { return v; }
    static __device__ __forceinline__ gc_complex128 narrow(gc_complex128 w) { return w; }
};

// a + b, a - b, f * s in the wide type, each part one explicitly rounded operation
// (never contracted).
__device__ __forceinline__ double add(double a, double b) { return __dadd_rn(a, b); }
__device__ __forceinline__ double sub(double a, double b) { return __dsub_rn(a, b); }
__device__ __forceinline__ double mul(double f, double s) { return __dmul_rn(f, s); }
__device__ __forceinline__ gc_complex128 add(gc_complex128 a, gc_complex128 b) {
    gc_complex128 r;
    r.re = __dadd_rn(a.re, b.re);
    r.im = __dadd_rn(a.im, b.im);
    return r;
}
__device__ __forceinline__ gc_complex128 sub(gc_complex128 a, gc_complex128 b) {
    gc_complex128 r;
    r.re = __dsub_rn(a.re, b.re);
    r.im = __dsub_rn(a.im, b.im);
    return r;
}
__device__ __forceinline__ gc_complex128 mul(gc_complex128 f, gc_complex128 s) {
    gc_complex128 r;
    r.re = __dsub_rn(__dmul_rn(f.re, s.re), __dmul_rn(f.im, s.im));
    r.im = __dadd_rn(__dmul_rn(f.re, s.im), __dmul_rn(f.im, s.re));
    return r;
}

__device__ __forceinline__ long long clip(long long v, long long hi) {
    return v < 0 ? 0 : (v > hi ? hi : v);
}

}  // namespace gcrop

// y (B, sh, sw) -> out (B, OH, OW); rows = B * OH <= INT32_MAX - 65535 (the planner's
// limit: the int grid stride row += gridDim.y never overflows). above, below
// (Bk, KH + 1) and left, right (Bk, KH + 1, KW + 1) are null, and never read, when
// there is no correction.
template <typename T>
__global__ void __launch_bounds__(gcfg::FC_THREADS) fft_crop(
    const T* __restrict__ y, T* __restrict__ out, int rows, int OH, int OW, long long sh,
    long long sw, long long oy, long long ox,
    const typename gcrop::Wide<T>::type* __restrict__ above,
    const typename gcrop::Wide<T>::type* __restrict__ below,
    const typename gcrop::Wide<T>::type* __restrict__ left,
    const typename gcrop::Wide<T>::type* __restrict__ right, int kstep, int KH, int KW,
    long long H, long long W, long long pt, long long pl, int r0, int r1, int c0, int c1,
    typename gcrop::Wide<T>::type fill) {
    typedef gcrop::Wide<T> WT;
    typedef typename WT::type Wd;
    constexpr int kCols = gcfg::FC_THREADS * gcfg::FC_ITEMS;
    const long long j0 = static_cast<long long>(blockIdx.x) * kCols + threadIdx.x;
    const bool tables = above != nullptr;
    const long long th = KH + 1, tw = KW + 1;
    for (int row = blockIdx.y; row < rows; row += gridDim.y) {
        const int b = row / OH;
        const int i = row - b * OH;
        const T* s = y + (static_cast<long long>(b) * sh + oy + i) * sw + ox;
        T* d = out + static_cast<long long>(row) * OW;
        const bool band = i < r0 || i >= r1;  // every column reads the border
        if (!tables || (!band && c0 == 0 && c1 == OW)) {  // a copy
#pragma unroll
            for (int u = 0; u < gcfg::FC_ITEMS; ++u) {
                const long long j = j0 + static_cast<long long>(u) * gcfg::FC_THREADS;
                if (j >= OW) break;
                d[j] = s[j];
            }
            continue;
        }
        const long long kb = static_cast<long long>(b) * kstep;
        const long long a0 = gcrop::clip(pt - i, KH);
        const long long a1 = gcrop::clip(H + pt - i, KH);
        const Wd srow = gcrop::add(above[kb * th + a0], below[kb * th + a1]);
        const Wd* L0 = left + (kb * th + a0) * tw;
        const Wd* L1 = left + (kb * th + a1) * tw;
        const Wd* R0 = right + (kb * th + a0) * tw;
        const Wd* R1 = right + (kb * th + a1) * tw;
#pragma unroll
        for (int u = 0; u < gcfg::FC_ITEMS; ++u) {
            const long long j = j0 + static_cast<long long>(u) * gcfg::FC_THREADS;
            if (j >= OW) break;
            T v = s[j];
            if (band || j < c0 || j >= c1) {
                const long long q0 = gcrop::clip(pl - j, KW);
                const long long q1 = gcrop::clip(W + pl - j, KW);
                Wd so = gcrop::add(srow, gcrop::sub(L1[q0], L0[q0]));
                so = gcrop::add(so, gcrop::sub(R1[q1], R0[q1]));
                v = WT::narrow(gcrop::add(WT::widen(v), gcrop::mul(fill, so)));
            }
            d[j] = v;
        }
    }
}

// k (Bk, KH, KW) -> above, below (Bk, KH + 1), left, right (Bk, KH + 1, KW + 1), every
// entry written (see the header; gpuconv._padding.fill_tables). Bk, KH, KW >= 1.
template <typename T>
__global__ void __launch_bounds__(gcfg::FT_THREADS, gcfg::FT_MIN_BLOCKS) fft_fill_tables(
    const T* __restrict__ k, typename gcrop::Wide<T>::type* __restrict__ above,
    typename gcrop::Wide<T>::type* __restrict__ below,
    typename gcrop::Wide<T>::type* __restrict__ left,
    typename gcrop::Wide<T>::type* __restrict__ right, int Bk, int KH, int KW) {
    typedef gcrop::Wide<T> WT;
    typedef typename WT::type Wd;
    const Wd zero = gcf::zero_value<Wd>();
    const long long th = KH + 1, tw = KW + 1;
    const int t = threadIdx.x;
    // (the loop bounds depend on blockIdx only: every barrier is reached by the block)
    for (long long bk = blockIdx.x; bk < Bk; bk += gridDim.x) {
        const T* kb = k + bk * KH * KW;
        Wd* A = above + bk * th;  // rows 1..KH hold the row sums until step 2
        Wd* Bl = below + bk * th;
        Wd* L = left + bk * th * tw;
        Wd* R = right + bk * th * tw;
        // 1. the zero row and column of each table; per column c the running sums
        // down the rows into L[a + 1][c + 1]; per row a its suffix sums from the right
        // into R[a + 1][c] and its sum (from the left) into A[a + 1]
        for (int c = t; c <= KW; c += gcfg::FT_THREADS) {
            L[c] = zero;
            R[c] = zero;
        }
        for (int c = t; c < KW; c += gcfg::FT_THREADS) {
            Wd acc = WT::widen(kb[c]);
            L[tw + c + 1] = acc;
            for (int a = 1; a < KH; ++a) {
                acc = gcrop::add(acc, WT::widen(kb[static_cast<long long>(a) * KW + c]));
                L[(a + 1) * tw + c + 1] = acc;
            }
        }
        for (int a = t; a < KH; a += gcfg::FT_THREADS) {
            const T* row = kb + static_cast<long long>(a) * KW;
            Wd* Ra = R + (a + 1) * tw;
            L[(a + 1) * tw] = zero;
            Ra[KW] = zero;
            Wd acc = WT::widen(row[KW - 1]);
            Ra[KW - 1] = acc;
            for (int c = KW - 2; c >= 0; --c) {
                acc = gcrop::add(acc, WT::widen(row[c]));
                Ra[c] = acc;
            }
            acc = WT::widen(row[0]);
            for (int c = 1; c < KW; ++c) acc = gcrop::add(acc, WT::widen(row[c]));
            A[a + 1] = acc;
        }
        // the column sums, suffix sums and row sums above are read by other threads
        __syncthreads();
        // 2. along each row of L the prefix sums of the column sums; down each column
        // of R the running sums of the suffix sums; below and above from the row sums
        for (int a = t; a < KH; a += gcfg::FT_THREADS) {
            Wd* La = L + (a + 1) * tw;
            for (int c = 2; c <= KW; ++c) La[c] = gcrop::add(La[c - 1], La[c]);
        }
        for (int c = t; c < KW; c += gcfg::FT_THREADS) {
            for (int a = 2; a <= KH; ++a) {
                R[a * tw + c] = gcrop::add(R[(a - 1) * tw + c], R[a * tw + c]);
            }
        }
        if (t == 0) {
            Bl[KH] = zero;
            Wd acc = A[KH];
            Bl[KH - 1] = acc;
            for (int a = KH - 2; a >= 0; --a) {
                acc = gcrop::add(acc, A[a + 1]);
                Bl[a] = acc;
            }
            A[0] = zero;
            for (int a = 2; a <= KH; ++a) A[a] = gcrop::add(A[a - 1], A[a]);
        }
        // (the next kernel's tables are other memory: no barrier before its step 1)
    }
}

// filter_common.cuh: value types, accumulation rules and boundary index maps of the
// filter family (filter2d.cu). Header-only, no host headers: it compiles under NVRTC
// (CuPy), nvcc and g++ (the CPU emulation harness) unchanged.
//
// Value types and the C names the Python registry uses for them (gpuconv._plan_filter):
//   gc_int8 .. gc_uint64      the integer dtypes; products and sums wrap around
//                             modulo 2^bits exactly as NumPy/SciPy do
//   float, double             float32/float64 (float32 subnormals are flushed on the
//                             GPU: CuPy compiles with -ftz=true)
//   gc_complex64/128          numpy complex64/complex128 (same layout as CuPy's
//                             complex<float>/complex<double> kernel arguments)
#pragma once

typedef signed char gc_int8;
typedef unsigned char gc_uint8;
typedef short gc_int16;
typedef unsigned short gc_uint16;
typedef int gc_int32;
typedef unsigned int gc_uint32;
typedef long long gc_int64;
typedef unsigned long long gc_uint64;

// A plain aggregate (trivial, so it can live in dynamic shared memory) with the
// size and the alignment of numpy's complex types: alignof(R), not 2*sizeof(R),
// because NumPy and CuPy call a complex128 array at an 8-byte boundary aligned (a
// 16-byte-aligned type would make the compiler emit 128-bit accesses that fault
// there). 128-bit accesses are made explicitly (Vec16) where the planner has
// checked the address. As a by-value kernel argument (the fill value) the layout
// matches CuPy's complex<R>: the driver copies parameters by the kernel's layout.
template <typename R>
struct gc_complex {
    R re;
    R im;
};
typedef gc_complex<float> gc_complex64;
typedef gc_complex<double> gc_complex128;

namespace gcf {

// 16 bytes of T, for 128-bit global/shared loads and stores (only used on addresses
// the caller has proven 16-byte aligned).
template <typename T>
struct alignas(16) Vec16 {
    T v[16 / sizeof(T)];
};

// Asynchronous global -> shared copy of one V (4, 8 or 16 bytes; both addresses
// aligned to sizeof(V)): cp.async on sm_80+ (no register holds the data, so a thread
// can keep every copy of its tile in flight at once; 16 bytes bypass L1 (.cg), 4 and
// 8 go through it (.ca)). The data is visible to the thread after cp_async_wait_all()
// and to the block after the barrier that follows it. Elsewhere (the CPU emulation
// harness, older architectures) a plain copy, complete at once.
template <typename V>
__device__ __forceinline__ void cp_async(V* s, const V* g) {
    static_assert(sizeof(V) == 4 || sizeof(V) == 8 || sizeof(V) == 16,
                  "cp.async copies 4, 8 or 16 bytes");
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    const unsigned sa = (unsigned)__cvta_generic_to_shared(s);
    if constexpr (sizeof(V) == 16) {
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(sa), "l"(g)
                     : "memory");
    } else {
        asm volatile("cp.async.ca.shared.global [%0], [%1], %2;\n" ::"r"(sa), "l"(g),
                     "n"((int)sizeof(V))
                     : "memory");
    }
#else
    *s = *g;
#endif
}

// Waits for every cp_async this thread issued (a no-op where they are plain copies).
__device__ __forceinline__ void cp_async_wait_all() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("cp.async.wait_all;\n" ::: "memory");
#endif
}

// ---------------------------------------------------------------------------------
// Accumulation rules. Acc<T>::type is what products are summed in:
//  - floating and complex: T itself (SciPy's direct convolve2d sums in the type too);
//  - integers: the UNSIGNED integer of at least the width of T (32 or 64 bits).
//    Unsigned arithmetic wraps modulo 2^n without undefined behaviour, and because
//    reduction modulo 2^8/2^16 commutes with + and *, truncating the 32-bit sum to
//    T's width at the end gives exactly the wrapped result of NumPy's T arithmetic.
//    (Signed types are sign-extended into the unsigned type, which is well defined;
//    narrowing back is modular on every compiler we use.)
// ---------------------------------------------------------------------------------
template <typename T>
struct Acc {
    typedef T type;
    static __device__ __forceinline__ type from(T v) { return v; }
    static __device__ __forceinline__ T to(type a) { return a; }
    static __device__ __forceinline__ type zero() { return type(0); }
    // acc + x * w, written once so that every variant rounds (and contracts into an
    // FMA) identically: naive and tiled agree bit for bit.
    static __device__ __forceinline__ type mad(type x, type w, type acc) {
        return x * w + acc;
    }
};

template <typename T, typename U>
struct AccInt {
    typedef U type;
    static __device__ __forceinline__ type from(T v) { return (U)v; }
    static __device__ __forceinline__ T to(type a) { return (T)a; }
    static __device__ __forceinline__ type zero() { return U(0); }
    static __device__ __forceinline__ type mad(type x, type w, type acc) {
        return x * w + acc;
    }
};
template <> struct Acc<gc_int8> : AccInt<gc_int8, unsigned int> {};
template <> struct Acc<gc_uint8> : AccInt<gc_uint8, unsigned int> {};
template <> struct Acc<gc_int16> : AccInt<gc_int16, unsigned int> {};
template <> struct Acc<gc_uint16> : AccInt<gc_uint16, unsigned int> {};
template <> struct Acc<gc_int32> : AccInt<gc_int32, unsigned int> {};
template <> struct Acc<gc_uint32> : AccInt<gc_uint32, unsigned int> {};
template <> struct Acc<gc_int64> : AccInt<gc_int64, unsigned long long> {};
template <> struct Acc<gc_uint64> : AccInt<gc_uint64, unsigned long long> {};

template <typename R>
struct Acc<gc_complex<R> > {
    typedef gc_complex<R> type;
    static __device__ __forceinline__ type from(type v) { return v; }
    static __device__ __forceinline__ type to(type a) { return a; }
    static __device__ __forceinline__ type zero() {
        type z;
        z.re = R(0);
        z.im = R(0);
        return z;
    }
    // acc + x * w with the product's real part x.re*w.re - x.im*w.im (NumPy's order).
    static __device__ __forceinline__ type mad(type x, type w, type acc) {
        type r;
        r.re = (x.re * w.re - x.im * w.im) + acc.re;
        r.im = (x.re * w.im + x.im * w.re) + acc.im;
        return r;
    }
};

// ---------------------------------------------------------------------------------
// The kernel view: every filter kernel reads its taps k[bk, a, c] at
//   k + bk * ks_b + a * ks_r + c * ks_c          (element strides, any sign)
// so that a flipped (k[:, ::-1, ::-1], negative strides), transposed or otherwise
// strided kernel is passed without a copy; `k` points at element [0, 0, 0] of the
// view. ks_b == 0 when one kernel serves every image. The taps are read once per
// block pass (staged in shared memory) in the tiled kernels, per tap in the naive
// one. Flag bit 3 (FLAG_CONJ_KERNEL) conjugates every tap as it is read (complex
// correlation; a no-op for real types), so the conjugated kernel is never
// materialised either.
// ---------------------------------------------------------------------------------
constexpr int FLAG_CONJ_KERNEL = 8;

template <typename T>
__device__ __forceinline__ T conj_if(T v, bool conj) {
    (void)conj;
    return v;
}
template <typename R>
__device__ __forceinline__ gc_complex<R> conj_if(gc_complex<R> v, bool conj) {
    if (conj) v.im = -v.im;
    return v;
}

// Tap (a, c) of the kernel view kb (already offset to its batch), conjugated when
// `conj`.
template <typename T>
__device__ __forceinline__ T kernel_tap(const T* kb, long long a, long long c,
                                        long long ks_r, long long ks_c, bool conj) {
    return conj_if(kb[a * ks_r + c * ks_c], conj);
}

template <typename T>
__device__ __forceinline__ T zero_value() {
    T z;
    // memset-free zero of any trivial T (a complex struct included)
    unsigned char* p = reinterpret_cast<unsigned char*>(&z);
    for (unsigned i = 0; i < sizeof(T); ++i) p[i] = 0;
    return z;
}

// ---------------------------------------------------------------------------------
// Boundary rules (FilterProblem.boundary), as gpuconv._padding.pad_index defines them,
// for ANY distance from the image (kernels larger than the image included).
// ---------------------------------------------------------------------------------
enum Boundary { BOUNDARY_FILL = 0, BOUNDARY_WRAP = 1, BOUNDARY_SYMM = 2 };

// Source index of position p on an axis of length n (n >= 1), or -1 for the fill value.
__device__ __forceinline__ long long boundary_index(long long p, long long n, int boundary) {
    if (p >= 0 && p < n) return p;
    if (boundary == BOUNDARY_FILL) return -1;
    if (boundary == BOUNDARY_WRAP) {
        long long m = p % n;
        return m < 0 ? m + n : m;
    }
    // symm: period 2n, mirrored with the edge repeated (dcba|abcd|dcba)
    const long long period = 2 * n;
    long long m = p % period;
    if (m < 0) m += period;
    return m < n ? m : period - 1 - m;
}

__device__ __forceinline__ constexpr int round_up(int x, int m) {
    return (x + m - 1) / m * m;
}

}  // namespace gcf

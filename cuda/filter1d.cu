// filter1d.cu: the 1-D filter kernel (convolve / correlate of long signals).
//
// A filter problem (gpuconv._filter_args.FilterProblem) whose images are single rows
// and whose kernel is a single row, B x 1 x W with a 1 x KW kernel, OH = 1, is a
// stack of padded 1-D cross-correlations:
//
//   out[b, j] = sum_{c < KW} ext(in)[b, j + c - pad_left] * k[bk, c]
//                                              bk = b, or 0 if Bk == 1
//
// ext() extends the signal by `boundary` (fill / wrap / symm, any distance: the
// rules of filter_common.cuh). NumPy's convolve/correlate reach it with 'fill' 0;
// the kernel is a strided view (filter_common.cuh, "kernel view": k + bk * ks_b +
// c * ks_c, strides of any sign), so convolve's reversed kernel (k[::-1]) arrives
// without a copy, and flag bit 3 conjugates the taps as they are staged (complex
// correlate); the longer/shorter swap of numpy.convolve is done by the caller
// (gpuconv._filters).
// filter2d_tiled serves these problems with one tile row per block (a 2-D tile
// whose other rows idle); this file gives them a tile of their own.
//
// Variant (gpuconv._plan_filter.plan_filter1d plans its launch):
//
//   filter1d_tiled<T>   T in float, double, gc_complex64, gc_complex128, gc_int32,
//                       gc_uint32, gc_int64, gc_uint64 (booleans run as uint32;
//                       int8/16 keep filter2d_tiled)
//       Block of F1D_THREADS threads, output tile of TW = F1D_THREADS * R
//       consecutive samples; each thread computes R = F1D_OUT_BYTES / sizeof(T)
//       consecutive outputs (8 float, 4 double/complex64, 2 complex128) in
//       registers. The kernel is processed in shared-memory tap chunks of at most
//       KC = F1D_TAP_TILE_BYTES / sizeof(T) taps (so 10 000 taps work); per chunk:
//         1. the chunk's taps are copied to shared memory through the kernel view
//            (conjugated on flag bit 3; zero-padded to a whole register chunk);
//         2. the signal segment the tile needs, TW + KC - 1 samples starting at
//            ox0 + t0 - pad_left, is staged in shared memory: 128-bit global loads
//            (F1D_LOAD_BATCH in flight per thread) when the segment lies inside
//            the signal and the rows are 16-byte aligned (flag bit 0), landing
//            with one 128-bit store when the segment starts on a vector boundary,
//            else element by element; scalar loads through boundary_index
//            otherwise (borders, misaligned rows);
//         3. the thread walks the taps in register chunks of F1D_REG_UNITS
//            16-byte units (TAPS_REG taps): a sliding window of the signal
//            (R + TAPS_REG values, 2 + F1D_REG_UNITS units, 2 carried over from the
//            previous chunk) and the chunk's taps are read with 128-bit shared
//            loads, then R * TAPS_REG multiply-adds from registers. The last,
//            partial chunk is guarded per tap (block-uniform): padded taps never
//            multiply, so a NaN/inf next to the window does not leak in.
//       The staged segment is stored with a swizzle of its 16-byte units (unit u
//       at u ^ ((u >> 3) & 1)): thread t reads units 2t + k (R * sizeof(T) = 32
//       bytes, two units, per thread), so the 8 lanes of a 128-bit access phase
//       hit 8 different bank groups: conflict-free window reads.
//       Results are stored with 128-bit stores where aligned (flag bit 1).
//
// Summation order (deterministic, no atomics): one multiply-add per tap, taps in
// ascending order (chunk by chunk), exactly the order of filter2d_naive and
// filter2d_tiled with KH = 1, so the three agree bit for bit.
//
// Shared memory layout (gpuconv._plan_filter.filter1d_smem_bytes computes the same):
//   s_w    KCP values of T, KCP = min(KW, KC) rounded up to TAPS_REG
//   s_in   NU 16-byte units, NU = round_up(TW / VEC + KCP / VEC, 16)
#include "common.cuh"
#include "filter_common.cuh"

namespace gcf1 {

constexpr int F1D_THREADS = 256;          // threads per block (the launch bound)
constexpr int F1D_OUT_BYTES = 32;         // bytes of consecutive outputs per thread
constexpr int F1D_REG_UNITS = 4;          // 16-byte units of taps per register chunk
constexpr int F1D_TAP_TILE_BYTES = 8192;  // bytes of taps per shared-memory chunk
constexpr int F1D_LOAD_BATCH = 4;         // 128-bit global loads in flight per thread
// Resident blocks per SM the registers must allow (__launch_bounds__): 3 (<= 80
// registers; float32 and int32 need only 64-72) for every type but complex128,
// which gets 2 (<= 128; it uses 75-80): spill-free for sm_80 and sm_90
// (tests/test_nvcc.py; 4 blocks, <= 64 registers, spills in every 8/16-byte type).
template <typename T>
__device__ __host__ constexpr int f1d_min_blocks() {
    return sizeof(T) == 16 ? 2 : 3;
}

template <typename T>
struct F1DTraits {
    static constexpr int VEC = 16 / sizeof(T);             // values per 16-byte unit
    static constexpr int R = F1D_OUT_BYTES / sizeof(T);    // outputs per thread
    static constexpr int RU = R / VEC;                     // their units (always 2)
    static constexpr int TAPS_REG = F1D_REG_UNITS * VEC;   // taps per register chunk
    static constexpr int KC = F1D_TAP_TILE_BYTES / sizeof(T);  // taps per smem chunk
    static constexpr int TW = F1D_THREADS * R;             // outputs per block tile
    static_assert(RU == 2, "the swizzle assumes two 16-byte units per thread");
    static_assert(KC % TAPS_REG == 0, "a shared chunk holds whole register chunks");
};

// Physical unit of logical unit u of the staged segment (see the header comment).
__device__ __forceinline__ int swz(int u) { return u ^ ((u >> 3) & 1); }

// Physical element of logical element e (VEC values per unit).
template <int VEC>
__device__ __forceinline__ int swz_elem(int e) {
    return swz(e / VEC) * VEC + e % VEC;
}

// acc[x] += win[x + c] * w[c] for the taps c of one register chunk (c < n when
// GUARD: the last, partial chunk; n is block-uniform).
template <typename T, bool GUARD>
__device__ __forceinline__ void chunk_mad(
    typename gcf::Acc<T>::type (&acc)[F1DTraits<T>::R],
    const T (&win)[(F1DTraits<T>::RU + F1D_REG_UNITS) * F1DTraits<T>::VEC],
    const T (&w)[F1DTraits<T>::TAPS_REG], int n) {
    typedef gcf::Acc<T> Ac;
    constexpr int R = F1DTraits<T>::R;
#pragma unroll
    for (int c = 0; c < F1DTraits<T>::TAPS_REG; ++c) {
        if (!GUARD || c < n) {
            const typename Ac::type wc = Ac::from(w[c]);
#pragma unroll
            for (int x = 0; x < R; ++x) acc[x] = Ac::mad(Ac::from(win[x + c]), wc, acc[x]);
        }
    }
}

// The next register chunk: window units [RU, RU + CU) from the staged segment
// (logical units ua.., swizzled), the chunk's taps from s_w (units wa..; the same
// address for every lane: a broadcast).
template <typename T>
__device__ __forceinline__ void load_chunk(
    T (&win)[(F1DTraits<T>::RU + F1D_REG_UNITS) * F1DTraits<T>::VEC],
    T (&w)[F1DTraits<T>::TAPS_REG], const gcf::Vec16<T>* s_in,
    const gcf::Vec16<T>* s_wu, int ua, int wa) {
    constexpr int VEC = F1DTraits<T>::VEC, RU = F1DTraits<T>::RU;
#pragma unroll
    for (int i = 0; i < F1D_REG_UNITS; ++i) {
        const gcf::Vec16<T> a = s_in[swz(ua + i)];
        const gcf::Vec16<T> wv = s_wu[wa + i];
#pragma unroll
        for (int e = 0; e < VEC; ++e) {
            win[(RU + i) * VEC + e] = a.v[e];
            w[i * VEC + e] = wv.v[e];
        }
    }
}

}  // namespace gcf1

template <typename T>
__global__ void __launch_bounds__(gcf1::F1D_THREADS, gcf1::f1d_min_blocks<T>())
filter1d_tiled(const T* __restrict__ in, const T* __restrict__ k, T* __restrict__ out,
               int B, int W, int KW, int pad_left, int OW, long long ks_b,
               long long ks_c, int boundary, T fill, int flags) {
    typedef gcf::Acc<T> Ac;
    typedef typename Ac::type A;
    typedef gcf1::F1DTraits<T> TT;
    typedef gcf::Vec16<T> U;
    constexpr int VEC = TT::VEC, R = TT::R, RU = TT::RU, TW = TT::TW;
    constexpr int TAPS_REG = TT::TAPS_REG, KC = TT::KC;
    constexpr int CU = gcf1::F1D_REG_UNITS;
    constexpr int NT = gcf1::F1D_THREADS;
    constexpr int LB = gcf1::F1D_LOAD_BATCH;

    const int tid = threadIdx.x;  // blockDim.x == F1D_THREADS (the planner's launch)
    const int kcp = gcf::round_up(KW < KC ? KW : KC, TAPS_REG);  // s_w capacity
    const int nu = gcf::round_up(TW / VEC + kcp / VEC, 16);      // s_in units

    GPUCONV_DYNAMIC_SHARED(unsigned char, s_base);  // 16-byte aligned
    T* s_w = reinterpret_cast<T*>(s_base);
    U* s_in = reinterpret_cast<U*>(s_base + kcp * (int)sizeof(T));
    T* s_ine = reinterpret_cast<T*>(s_in);

    const T zero = gcf::zero_value<T>();
    const int ox0 = blockIdx.x * TW;
    const long long ix0 = (long long)ox0 - pad_left;  // signal index of tile output 0
    const int u0 = tid * RU;                           // this thread's first unit
    const bool conj = flags & gcf::FLAG_CONJ_KERNEL;

    bool first = true;
    for (long long b = blockIdx.y; b < B; b += gridDim.y) {
        const T* inb = in + b * (long long)W;
        const T* kb = k + b * ks_b;  // the kernel view (ks_b == 0: one for all)

        A acc[R];
#pragma unroll
        for (int x = 0; x < R; ++x) acc[x] = Ac::zero();

        for (int t0 = 0; t0 < KW; t0 += KC) {  // block-uniform: every barrier is met
            const int kcur = KW - t0 < KC ? KW - t0 : KC;  // taps of this chunk
            const int cnt = TW + kcur - 1;                  // samples the tile needs
            const long long gs = ix0 + t0;                  // signal index of sample 0

            // the previous chunk's reads of s_w / s_in are done before overwriting
            if (!first) __syncthreads();
            first = false;

            // ---- gather: taps, then the signal segment ----
            for (int i = tid; i < kcp; i += NT)
                s_w[i] = i < kcur ? gcf::kernel_tap(kb, 0, t0 + i, 0, ks_c, conj) : zero;

            if ((flags & 1) && gs >= 0 && gs + cnt <= W) {
                // inside the signal, rows 16-byte aligned (W % VEC == 0 and `in`
                // aligned: flag), so the aligned-down start gsa and every vector up
                // to round_up(gs + cnt, VEC) <= W lie in the row
                const long long gsa = gs / VEC * VEC;
                const int sh = (int)(gs - gsa);
                const int nvec = (sh + cnt + VEC - 1) / VEC;
                const U* g = reinterpret_cast<const U*>(inb + gsa);
                for (int i0 = tid; i0 < nvec; i0 += LB * NT) {
                    U vv[LB];
#pragma unroll
                    for (int l = 0; l < LB; ++l) {
                        if (i0 + l * NT < nvec) vv[l] = g[i0 + l * NT];
                    }
#pragma unroll
                    for (int l = 0; l < LB; ++l) {
                        const int q = i0 + l * NT;
                        if (q >= nvec) break;
                        if (sh == 0 && q * VEC + VEC <= cnt) {
                            s_in[gcf1::swz(q)] = vv[l];  // lands on a unit boundary
                        } else {
#pragma unroll
                            for (int e = 0; e < VEC; ++e) {
                                const int c = q * VEC + e - sh;
                                if (c >= 0 && c < cnt) s_ine[gcf1::swz_elem<VEC>(c)] = vv[l].v[e];
                            }
                        }
                    }
                }
                for (int c = cnt + tid; c < nu * VEC; c += NT) s_ine[gcf1::swz_elem<VEC>(c)] = zero;
            } else {
                // borders, misaligned rows: one boundary lookup per staged sample
                for (int c = tid; c < nu * VEC; c += NT) {
                    T v = zero;
                    if (c < cnt) {
                        const long long q = gcf::boundary_index(gs + c, W, boundary);
                        v = q < 0 ? fill : inb[q];
                    }
                    s_ine[gcf1::swz_elem<VEC>(c)] = v;
                }
            }
            // the taps and the segment written by all threads are read by all
            __syncthreads();

            // ---- mainloop: register chunks of TAPS_REG taps ----
            T win[(RU + CU) * VEC];
            {
                const U a0 = s_in[gcf1::swz(u0)];
                const U a1 = s_in[gcf1::swz(u0 + 1)];
#pragma unroll
                for (int e = 0; e < VEC; ++e) {
                    win[e] = a0.v[e];
                    win[VEC + e] = a1.v[e];
                }
            }
            const U* s_wu = reinterpret_cast<const U*>(s_w);
            const int nfull = kcur / TAPS_REG;
            const int rem = kcur - nfull * TAPS_REG;
            T w[TAPS_REG];
            for (int j = 0; j < nfull; ++j) {  // the hot loop: whole register chunks
                gcf1::load_chunk<T>(win, w, s_in, s_wu, u0 + RU + j * CU, j * CU);
                gcf1::chunk_mad<T, false>(acc, win, w, TAPS_REG);
                // slide: the last RU units start the next chunk's window
#pragma unroll
                for (int e = 0; e < RU * VEC; ++e) win[e] = win[CU * VEC + e];
            }
            if (rem > 0) {  // the last, partial chunk: taps guarded
                gcf1::load_chunk<T>(win, w, s_in, s_wu, u0 + RU + nfull * CU, nfull * CU);
                gcf1::chunk_mad<T, true>(acc, win, w, rem);
            }
        }

        // ---- epilogue: R consecutive outputs (16-byte stores where aligned) ----
        T* orow = out + b * (long long)OW;
        const long long ox = (long long)ox0 + tid * R;  // ox + R may pass 2^31 - 1
        if ((flags & 2) && ox + R <= OW) {
            // OW % VEC == 0 and `out` 16-byte aligned (flag), ox % R == 0
            U* ov = reinterpret_cast<U*>(orow + ox);
#pragma unroll
            for (int q = 0; q < RU; ++q) {
                U vv;
#pragma unroll
                for (int e = 0; e < VEC; ++e) vv.v[e] = Ac::to(acc[q * VEC + e]);
                ov[q] = vv;
            }
        } else {
#pragma unroll
            for (int x = 0; x < R; ++x) {
                if (ox + x < OW) orow[ox + x] = Ac::to(acc[x]);
            }
        }
    }
}

// filter2d.cu: the filter family (convolve2d / correlate2d / convolve / correlate).
//
// Every public filter call reaches this file as ONE padded 2-D cross-correlation of a
// stack of images with one kernel or a stack of kernels (gpuconv._filter_args):
//
//   out[b, i, j] = sum_{a < KH, c < KW} ext(in)[b, i + a - pad_top, j + c - pad_left]
//                                       * k[bk, a, c]          bk = b, or 0 if Bk == 1
//
// ext() extends the image by `boundary`: fill (constant `fill`), wrap (periodic) or
// symm (mirror, edge repeated), at ANY distance (kernels larger than the image too).
// The kernel k (Bk, KH, KW) is a strided VIEW (filter_common.cuh, "kernel view"):
// element strides ks_b, ks_r, ks_c of any sign, so the flipped kernel of a true
// convolution (k[:, ::-1, ::-1]) and any strided kernel arrive without a copy, and
// flag bit 3 conjugates the taps as they are read (complex correlation). The image
// and the output are C-contiguous: in (B, H, W), out (B, OH, OW).
// Integer types wrap around like NumPy (see filter_common.cuh); float32 subnormals are
// flushed on the GPU (CuPy compiles with -ftz=true).
//
// Variants (gpuconv._plan_filter plans their launches; one summation order for all:
// kernel rows a ascending, then columns c ascending, one multiply-add per tap, so
// naive and tiled agree bit for bit):
//
//   filter2d_naive<T>
//       One thread per output pixel, taps read from global memory (L1/L2-cached), the
//       boundary rule applied per tap. No shared memory, any kernel size. Kept forever
//       as the second oracle, and the fallback when a tile does not fit in 48 KiB of
//       shared memory. Block (bx, by) with by <= 8 rows (1 for 1-D outputs) and
//       bx*by <= 256, chosen by the planner; grid (ceil(OW/bx), row blocks, batches),
//       with grid-stride loops over y and the batch so gridDim.y/z stay <= 65535.
//
//   filter2d_tiled<T, KH, KW, RY>
//       Each block computes a TH x TW = (blockDim.y*RY) x (blockDim.x*RX) output tile;
//       each thread an RY x RX register block (RX = 8 for 4-byte types, 4 for 8-byte,
//       2 for complex128). Per tile (ONE barrier for an interior tile of a block's
//       first pass, two on border tiles; one more per extra grid-stride pass):
//         1. the kernel (KH*KW values of this batch's bk) is copied to shared memory
//            through the kernel view (strided reads, conjugated on flag bit 3; the
//            main loop reads s_w only, so the view costs it nothing);
//         2. the input tile plus halo, (TH+KH-1) x (TW+KW-1), is staged in shared
//            memory once by the tile loader, which applies the boundary rule: in
//            the compile-time instances (float, double) tiles that lie inside the
//            image are copied with cp.async (sm_80+; a plain copy in the emulator):
//            16-byte copies when the rows are 16-byte aligned (flag bit 0) and the
//            tile starts on a vector, else one element per copy, a warp's copies
//            consecutive in a row; every copy is issued before the thread waits, and
//            none holds a register, so the whole tile is in flight at once (one DRAM
//            latency per tile, where register-staged loads needed 2 rounds). In the
//            runtime-size instances (and in the compile-time ones when flag bit 2
//            asks for it) tiles that lie inside the image take a register-staged
//            fast path (no index maps; 128-bit
//            global loads when the rows are 16-byte aligned, flag bit 0: the tile's
//            (row, vector) pairs flattened over the block, each thread issuing
//            LOAD_BATCH loads before storing any, so enough bytes are in flight to
//            cover DRAM latency; a chunk lands in shared memory with one 128-bit
//            store when the tile starts on a vector boundary, else element by
//            element at the shift), border tiles build a row and a column index map
//            once (boundary_index: fill/wrap/symm at any distance) and gather
//            through them, the tile's elements flattened over the block and
//            BORDER_BATCH loads per thread issued before any is stored (a stack of
//            small images stages nearly every tile this way);
//         3. the taps. Compile-time instances, rows streamed: the thread's RY+KH-1
//            input rows are read from shared memory once each, in order, with
//            128-bit loads (RX+KW-1 values), and each row feeds every (output row
//            r, kernel row a = ir - r) pair it reaches, with that kernel row's
//            weights (128-bit broadcast loads of its padded row in s_w; the
//            compiler keeps rows in registers where they fit): every accumulator
//            still sums kernel rows ascending, then columns; shared-memory reads
//            per output row fall as (RY+KH-1)/RY, hence RY = 4 for 7x7 and 9x9
//            (gpuconv._plan_filter.RY_SPECIALISED). Runtime-size path: for each
//            kernel row a and chunk of CW columns, the weights in registers and
//            each of the RY output rows reading its RX+CW-1 inputs. In the float
//            compile-time instances the RX = 8 outputs are two groups of 4, BX*4
//            columns apart (G, NG below), read as 4+KW-1 inputs each: a warp's
//            128-bit reads 16 bytes apart, free of the 2-way bank conflict of
//            8-float blocks 32 bytes apart;
//         4. results are stored with 128-bit stores where aligned (flag bit 1).
//       KH, KW > 0: compile-time kernel size (3, 5, 7, 9 square for float/double; RY =
//       2 for 3x3 and 5x5, 4 for 7x7 and 9x9, and the other RY of 5x5..9x9, which the
//       benchmark times), all tap loops unrolled; registers capped per instance by
//       __launch_bounds__ (tile_min_blocks: 2-5 resident blocks of 256 threads per
//       SM, spill-free, checked by tests/test_nvcc.py). KH = KW = 0: the
//       runtime-size path (any kernel shape, no new compile): taps processed in
//       unrolled chunks of CW = 4 columns, the last chunk guarded; RY = 4 for images,
//       RY = 1 for short outputs (1-D signals: OH small).
//       The registered instance set is fixed (gpuconv._kernels.KERNELS), so a new
//       kernel shape never triggers a compile.
//
//   filter2d_tiled_pipelined<T, KH, KW, RY>
//       The compile-time tiled kernel (same tile, register block, tap code and
//       summation order: bit-identical to naive and tiled) as a PERSISTENT,
//       DOUBLE-BUFFERED grid, for the DRAM-bound cases (float, double; 3x3 and 5x5,
//       RY = 2: gpuconv._plan_filter.PIPELINED). About (resident blocks per SM x
//       SMs) blocks walk the tiles (blockIdx.x, + gridDim.x, ...; tile x fastest)
//       through two shared buffers of weights + tile + halo: per tile ONE barrier,
//       after which the NEXT tile's copies are issued with cp.async into the other
//       buffer (one cp.async group, awaited only at the next tile), so one tile's
//       DRAM round trip overlaps the previous tile's taps and stores. Border tiles
//       are staged by plain loads applying the boundary rule per element (no index
//       maps, no extra barrier). An alternative, never planned: plan_filter(...,
//       pipelined=True) reaches it (tests, bench/filter_kernel_time.py rows
//       'pipelined') until a GPU run decides.
//
// Shared memory layout of filter2d_tiled (gpuconv._plan_filter.tiled_smem_bytes
// computes the same numbers):
//   s_w      KH rows of KWP values of T (KWP = KW rounded up to a 16-byte vector in
//            the compile-time instances, gcf::weight_pitch; KW in the runtime-size
//            path), padded to a multiple of 16 bytes
//   s_in     rows x P values of T, rows = TH+KH-1, P = round_up(TW+KW+CW+4, 4)
//            (P >= TW+KW-1 plus the slack the 128-bit row reads may over-read)
//   s_rowmap rows ints, s_colmap P ints (border tiles only)
// filter2d_tiled_pipelined: two buffers of (s_w, s_in) as above, no maps
// (gpuconv._plan_filter.pipelined_smem_bytes; float64 5x5 at a 32x8 block: 46560
// bytes).
#include "common.cuh"
#include "filter_common.cuh"

namespace gcf {

// Elements per thread in x, per value type.
template <typename T>
struct TileTraits {
    static constexpr int RX = sizeof(T) == 4 ? 8 : (sizeof(T) == 16 ? 2 : 4);
    static constexpr int VEC = 16 / sizeof(T);  // elements per 16-byte vector
    // shared-memory row reads in 16-byte chunks when the register block is made of
    // whole vectors and a vector is at most 4 elements (so CW = 4 keeps alignment)
    static constexpr int VECR = (RX % VEC == 0 && VEC <= 4) ? VEC : 1;
    // 16-byte output stores when the register block is made of whole vectors
    static constexpr bool VEC_STORE = (RX % VEC == 0);
};

constexpr int CW = 4;  // tap chunk of the runtime-size path
// 128-bit tile loads each thread keeps in flight (register-staged loader): 3 in the
// compile-time instances, where it only runs when the planner asks for it (flag bit
// 2, gpuconv._plan_filter.REGISTER_STAGED; cp.async stages their interior tiles
// otherwise; with 4, as before cp.async, the float 3x3 instance spills 4 bytes);
// in the runtime-size path 2 for float and double (their other kernel shapes, the
// separable passes, 1-D signals: <= 64 registers, no spill) and 1 for the other
// types (with 2, ptxas spills 4-16 bytes in the complex64, int64 and int8
// instances; with 4, up to 128 registers).
template <typename T>
struct RuntimeLoadBatch {
    static constexpr int value = 1;
};
template <>
struct RuntimeLoadBatch<float> {
    static constexpr int value = 2;
};
template <>
struct RuntimeLoadBatch<double> {
    static constexpr int value = 2;
};
template <typename T, int KHC>
__device__ __host__ constexpr int load_batch() {
    return KHC > 0 ? 3 : RuntimeLoadBatch<T>::value;
}
// Elements each thread loads before storing any when it stages a border tile (index
// maps, one element per load): loads in flight per thread against DRAM latency. 4 in
// the compile-time instances (the stacks of small images: nearly every tile is a
// border tile); 1 in the runtime-size path, which keeps the compiler's own register
// choice and whose float and short instances ptxas spills at 2 (sm_90 or sm_80).
template <int KHC>
__device__ __host__ constexpr int border_batch() {
    return KHC > 0 ? 4 : 1;
}
constexpr int TILE_MAX_THREADS = 256;  // the planner's largest block

// Resident blocks of TILE_MAX_THREADS the compiler must fit per SM (register cap
// 65536 / (256 * n)); chosen per instance so that none spills (tests/test_nvcc.py)
// for sm_80 and sm_90. 0: no minimum (the runtime-size path keeps the compiler's
// own choice, 29-64 registers except complex128's 80).
// RY = 4 compile-time instances: 3 blocks (80 registers) for float, 2 for double
// (16 double accumulators and a row of up to 12 doubles; with 80, ptxas spills).
template <typename T, int KHC, int RY>
__device__ __host__ constexpr int tile_min_blocks() {
    return KHC <= 0 ? 0
           : RY >= 4 ? (sizeof(T) == 4 ? 3 : 2)
           : (sizeof(T) == 4 ? (KHC == 3 ? 5 : 4) : (KHC <= 7 ? 4 : 3));
}

// Row pitch of the weights in shared memory (s_w): the compile-time instances pad
// each kernel row to whole 16-byte vectors, so that a row is read with 128-bit
// (broadcast) loads; the runtime-size path keeps KW.
template <typename T, int KWC>
__device__ __host__ constexpr int weight_pitch(int KW) {
    return KWC > 0 ? (KWC + TileTraits<T>::VEC - 1) / TileTraits<T>::VEC * TileTraits<T>::VEC
                   : KW;
}

// v[0..N) = p[0..N); p is 16-byte aligned when VR > 1 (see the layout above).
template <typename T, int N, int VR>
__device__ __forceinline__ void load_row(const T* p, T (&v)[N]) {
    if constexpr (VR > 1) {
        struct alignas(VR * sizeof(T)) Chunk {
            T e[VR];
        };
        const Chunk* q = reinterpret_cast<const Chunk*>(p);
#pragma unroll
        for (int i = 0; i < (N + VR - 1) / VR; ++i) {
            const Chunk ch = q[i];
#pragma unroll
            for (int e = 0; e < VR; ++e) {
                if (i * VR + e < N) v[i * VR + e] = ch.e[e];
            }
        }
    } else {
#pragma unroll
        for (int i = 0; i < N; ++i) v[i] = p[i];
    }
}

__device__ __forceinline__ int tile_pitch(int TW, int KW) { return round_up(TW + KW + CW + 4, 4); }

// The taps of the compile-time tiled kernels (filter2d_tiled step 3, also
// filter2d_tiled_pipelined), rows streamed: input row ir of the thread's window
// (NG groups of G + KW - 1 values from `srow`, rows P apart, groups BX * G apart)
// is read once and feeds every output row r it reaches, with kernel row a = ir - r
// (weights: rows of KWS values at s_w); for each accumulator a ascends (ir ascends)
// and c ascends inside it: filter2d_naive's summation order, one multiply-add per
// tap. OPAQUE_ROW (RY = 4): the pitch opaque, so that the rows' addresses are not
// all precomputed and kept live (without it the float 9x9 instance spills on sm_80).
template <typename T, int KH, int KW, int KWS, int RY, int NG, int G, int VECR,
          bool OPAQUE_ROW, typename A>
__device__ __forceinline__ void taps_rows_streamed(const T* srow, int P, const T* s_w,
                                                   int BX, A (&acc)[RY][NG * G]) {
    typedef Acc<T> Ac;
#pragma unroll
    for (int ir = 0; ir < RY + KH - 1; ++ir) {
        T v[NG][G + KW - 1];
#pragma unroll
        for (int g = 0; g < NG; ++g) load_row<T, G + KW - 1, VECR>(srow + g * BX * G, v[g]);
        if constexpr (OPAQUE_ROW) {
            int pitch = P;
            gpuconv::keep_in_register(pitch);
            srow += pitch;
        } else {
            srow += P;
        }
#pragma unroll
        for (int r = 0; r < RY; ++r) {
            const int a = ir - r;  // compile-time after unrolling
            if (a < 0 || a >= KH) continue;
            // weight row a: 128-bit broadcast loads of its padded row (the compiler
            // keeps rows in registers across pairs where they fit)
            T wt[KW];
            load_row<T, KW, VECR>(s_w + a * KWS, wt);
            A wr[KW];
#pragma unroll
            for (int c = 0; c < KW; ++c) wr[c] = Ac::from(wt[c]);
#pragma unroll
            for (int c = 0; c < KW; ++c) {
#pragma unroll
                for (int g = 0; g < NG; ++g) {
#pragma unroll
                    for (int x = 0; x < G; ++x)
                        acc[r][g * G + x] =
                            Ac::mad(Ac::from(v[g][x + c]), wr[c], acc[r][g * G + x]);
                }
            }
        }
    }
}

// The epilogue of the tiled kernels: a thread's RY x RX block of accumulators to
// rows oy .. oy + RY - 1 of the image at `o + base` (OH x OW), RX / G groups of G
// columns starting at ox, `gstep` apart (guarded tails; 16-byte stores where
// VEC_STORE, G a multiple of VEC, the rows 16-byte aligned: flag bit 1).
template <typename T, int RY, int RX, int G, int VEC, bool VEC_STORE, typename A>
__device__ __forceinline__ void store_block(T* o, long long base,
                                            const A (&acc)[RY][RX], int oy, int ox,
                                            int gstep, int OH, int OW, int flags) {
    typedef Acc<T> Ac;
    constexpr int NG = RX / G;
#pragma unroll
    for (int r = 0; r < RY; ++r) {
        const int y = oy + r;
        if (y < OH) {
            T* orow = o + base + (long long)y * OW;
#pragma unroll
            for (int g = 0; g < NG; ++g) {
                const int x0 = ox + g * gstep;
                if (VEC_STORE && G % VEC == 0 && (flags & 2) && x0 + G <= OW) {
                    // OW % VEC == 0, `o` 16-byte aligned (flag), x0 % G == 0
                    Vec16<T>* ov = reinterpret_cast<Vec16<T>*>(orow + x0);
#pragma unroll
                    for (int q = 0; q < (G % VEC == 0 ? G / VEC : 0); ++q) {
                        Vec16<T> vv;
#pragma unroll
                        for (int e = 0; e < VEC; ++e)
                            vv.v[e] = Ac::to(acc[r][g * G + q * VEC + e]);
                        ov[q] = vv;
                    }
                } else {
#pragma unroll
                    for (int x = 0; x < G; ++x) {
                        if (x0 + x < OW) orow[x0 + x] = Ac::to(acc[r][g * G + x]);
                    }
                }
            }
        }
    }
}

// cp_async whose copies the CPU emulation harness defers to the wait that covers
// them (or lands at once with EmulatedDevice(cp_async='eager')), so that the
// double buffer's ordering is checked there; on a GPU, gcf::cp_async.
template <typename V>
__device__ __forceinline__ void cp_async_tracked(V* s, const V* g) {
#if defined(GPUCONV_EMULATED)
    gpuconv_emu::cp_async_issue(s, g, (int)sizeof(V), false, __FILE__, __LINE__);
#else
    cp_async(s, g);
#endif
}

// cp_async_tracked where TRACKED, else cp_async.
template <bool TRACKED, typename V>
__device__ __forceinline__ void cp_async_as(V* s, const V* g) {
    if constexpr (TRACKED) {
        cp_async_tracked(s, g);
    } else {
        cp_async(s, g);
    }
}

// The cp.async stage of an interior tile (+ halo) of the compile-time instances
// (filter2d_tiled, filter2d_tiled_pipelined): rows x cols values of `inb` from (iy0,
// ix0) into s_in (pitch P), and zeros in each row's read slack [filled, P). Every copy
// is issued before any is awaited and none holds a register, so the whole tile is in
// flight at once: one DRAM latency per tile. TRACKED: copies the emulator defers to
// their wait (the pipelined kernel's double buffer); the caller commits and waits.
template <typename T, int VEC, bool TRACKED>
__device__ __forceinline__ void stage_interior_async(
    T* s_in, const T* inb, long long iy0, long long ix0, int rows, int cols, int W,
    int P, int flags, int tid, int nthreads, int tx, int ty, int BX, int BY, T zero) {
    const long long ixa = ix0 / VEC * VEC;
    const int sh = (int)(ix0 - ixa);
    // the tile's width, opaque to the optimiser: the index set-up
    // below (divisions) is redone per tile instead of being hoisted
    // out of the tile loop and kept live (spilled) across the taps
    int ncols = cols;
    gpuconv::keep_in_register(ncols);
    int filled;  // columns [0, filled) of every row are copied
    if ((flags & 1) && sh == 0) {
        // 16-byte chunks: rows 16-byte aligned (flag) and the tile
        // starts on a vector; the last chunk ends at or before
        // round_up(ix0 + cols, VEC) <= W, and at nvec * VEC <= P in
        // shared memory
        const int nvec = (ncols + VEC - 1) / VEC;
        filled = nvec * VEC;
        const Vec16<T>* gbase =
            reinterpret_cast<const Vec16<T>*>(inb + iy0 * W + ix0);
        const int wv = W / VEC;
        const int total = rows * nvec;
        // (row, vector) of flat index i step by nthreads: an add and
        // a compare, no division in the loop
        const int dr = nthreads / nvec, dq = nthreads - dr * nvec;
        int r = tid / nvec, q = tid - r * nvec;
#pragma unroll 4
        for (int i = tid; i < total; i += nthreads) {
            cp_async_as<TRACKED>(reinterpret_cast<Vec16<T>*>(s_in + r * P + q * VEC),
                                 gbase + (long long)r * wv + q);
            r += dr;
            q += dq;
            if (q >= nvec) {
                q -= nvec;
                ++r;
            }
        }
    } else {
        // element copies (the tile starts off a vector, e.g. 'same'
        // with k = 3, 5, 7 in float32; or unaligned rows): a warp's
        // copies are consecutive elements of a row, 128 (float) or
        // 256 (double) contiguous bytes
        filled = ncols;
        const T* gtile = inb + iy0 * W + ix0;
        const int dr = nthreads / ncols, dc = nthreads - dr * ncols;
        int r = tid / ncols, c = tid - r * ncols;
        const int total = rows * ncols;
#pragma unroll 4
        for (int i = tid; i < total; i += nthreads) {
            cp_async_as<TRACKED>(s_in + r * P + c, gtile + (long long)r * W + c);
            r += dr;
            c += dc;
            if (c >= ncols) {
                c -= ncols;
                ++r;
            }
        }
    }
    // the slack the row reads may over-read (never multiplied in)
    for (int r = ty; r < rows; r += BY) {
        for (int c = filled + tx; c < P; c += BX) s_in[r * P + c] = zero;
    }
}

}  // namespace gcf

// ------------------------------------------------------------------------------------
// naive: one thread per output pixel
// ------------------------------------------------------------------------------------
template <typename T>
__global__ void filter2d_naive(const T* __restrict__ in, const T* __restrict__ k,
                               T* __restrict__ out, int B, int H, int W, int KH, int KW,
                               int pad_top, int pad_left, int OH, int OW,
                               long long ks_b, long long ks_r, long long ks_c,
                               int boundary, T fill, int flags) {
    typedef gcf::Acc<T> Ac;
    typedef typename Ac::type A;
    const bool conj = flags & gcf::FLAG_CONJ_KERNEL;
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= OW) return;  // no barrier in this kernel: early exit is safe
    const long long plane_in = (long long)H * W;
    const long long plane_out = (long long)OH * OW;
    for (long long b = blockIdx.z; b < B; b += gridDim.z) {
        const T* inb = in + b * plane_in;
        const T* kb = k + b * ks_b;  // the kernel view (ks_b == 0: one for all)
        for (long long i = (long long)blockIdx.y * blockDim.y + threadIdx.y; i < OH;
             i += (long long)gridDim.y * blockDim.y) {
            A acc = Ac::zero();
            for (int a = 0; a < KH; ++a) {
                const long long r = gcf::boundary_index(i + a - pad_top, H, boundary);
                for (int c = 0; c < KW; ++c) {
                    const long long q = gcf::boundary_index((long long)j + c - pad_left, W, boundary);
                    const T v = (r < 0 || q < 0) ? fill : inb[r * W + q];
                    const T w = gcf::kernel_tap(kb, a, c, ks_r, ks_c, conj);
                    acc = Ac::mad(Ac::from(v), Ac::from(w), acc);
                }
            }
            out[b * plane_out + i * OW + j] = Ac::to(acc);
        }
    }
}

// ------------------------------------------------------------------------------------
// tiled: shared-memory tile + halo, register blocking, compile-time or runtime taps
// ------------------------------------------------------------------------------------
template <typename T, int KHC, int KWC, int RY>
__global__ void __launch_bounds__(gcf::TILE_MAX_THREADS, (gcf::tile_min_blocks<T, KHC, RY>()))
filter2d_tiled(const T* __restrict__ in, const T* __restrict__ k,
                               T* __restrict__ out, int B, int H, int W, int KH_rt,
                               int KW_rt, int pad_top, int pad_left, int OH, int OW,
                               long long ks_b, long long ks_r, long long ks_c,
                               int boundary, T fill, int flags) {
    typedef gcf::Acc<T> Ac;
    typedef typename Ac::type A;
    typedef gcf::TileTraits<T> TT;
    static_assert((KHC > 0) == (KWC > 0), "compile-time kernel sizes come in pairs");
    static_assert(RY >= 1, "RY is the number of output rows per thread");
    constexpr int RX = TT::RX;
    constexpr int VEC = TT::VEC;
    constexpr int VECR = TT::VECR;
    constexpr int CW = gcf::CW;
    constexpr int LOAD_BATCH = gcf::load_batch<T, KHC>();
    constexpr int BORDER_BATCH = gcf::border_batch<KHC>();
    // interior tiles staged by cp.async (the compile-time instances: float, double)
    constexpr bool ASYNC = KHC > 0 && (sizeof(T) == 4 || sizeof(T) == 8);
    // flag bit 2: the register-staged loader instead (the planner's REGISTER_STAGED)
    const bool async_stage = ASYNC && !(flags & 4);
    const int KH = KHC > 0 ? KHC : KH_rt;
    const int KW = KWC > 0 ? KWC : KW_rt;
    const int KWP = gcf::weight_pitch<T, KWC>(KW);  // s_w row pitch (padded rows)

    const int BX = blockDim.x, BY = blockDim.y;
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int tid = ty * BX + tx, nthreads = BX * BY;
    const int TW = BX * RX, TH = BY * RY;
    const int rows = TH + KH - 1;       // input tile rows (outputs + halo)
    const int cols = TW + KW - 1;       // input tile columns actually needed
    const int P = gcf::tile_pitch(TW, KW);  // shared row pitch (>= cols + read slack)

    // carve dynamic shared memory (layout in the header comment)
    GPUCONV_DYNAMIC_SHARED(unsigned char, s_base);  // 16-byte aligned
    T* s_w = reinterpret_cast<T*>(s_base);
    T* s_in = reinterpret_cast<T*>(s_base + gcf::round_up(KH * KWP * (int)sizeof(T), 16));
    int* s_rowmap = reinterpret_cast<int*>(s_in + rows * P);
    int* s_colmap = s_rowmap + rows;

    const T zero = gcf::zero_value<T>();
    const long long plane_in = (long long)H * W;
    const long long plane_out = (long long)OH * OW;
    const int ox0 = blockIdx.x * TW;
    const long long ix0 = (long long)ox0 - pad_left;  // input column of tile column 0
    const int cx = tx * RX;  // tile column of this thread's first output (runtime path)
    // x groups of a thread's outputs: the float compile-time instances split its
    // RX = 8 outputs into NG = 2 groups of G = 4 (one 16-byte vector), group g at tile
    // column g * BX * G + tx * G, so that a warp's 128-bit shared reads are 16 bytes
    // apart (conflict-free: 4 wavefronts, where 8-float blocks 32 bytes apart take
    // 8) and its 128-bit stores contiguous. The rest keep one group (G = RX): in the
    // double instances two groups of 2 save 15 % of the wavefronts for 40 % more
    // shared loads, and the 7x7 one spills.
    constexpr int G = (KWC > 0 && VECR > 1 && sizeof(T) == 4) ? VECR : RX;
    constexpr int NG = RX / G;

    // every loop bound below is block-uniform: all threads meet every barrier
    bool first_tile = true;
    for (long long b = blockIdx.z; b < B; b += gridDim.z) {
        const T* inb = in + b * plane_in;
        const T* kb = k + b * ks_b;  // the kernel view (ks_b == 0: one for all)
        // (tile_y * TH < OH: no tile count held in a register across the tile)
        for (int tile_y = blockIdx.y; (long long)tile_y * TH < OH; tile_y += gridDim.y) {
            const int oy0 = tile_y * TH;
            const long long iy0 = (long long)oy0 - pad_top;  // input row of tile row 0

            // the previous pass's reads of s_w/s_in/maps are finished before overwrite
            // (a block's first tile has no previous pass: one barrier fewer per tile
            // when the grid covers every tile, as the planner arranges)
            if (!first_tile) __syncthreads();
            first_tile = false;

            if (async_stage) {
                if constexpr (ASYNC) {
                    // asynchronous too: a plain copy would hold the first KH*KW
                    // threads for an L2 round trip before they issue their share of
                    // the tile
                    // (float and double: no conjugation to apply; rows over ty,
                    // columns over tx: no division, nothing hoisted and kept live)
                    for (int a = ty; a < KH; a += BY) {
                        for (int c = tx; c < KWP; c += BX) {
                            if (c < KW)
                                gcf::cp_async(s_w + a * KWP + c, kb + a * ks_r + c * ks_c);
                            else
                                s_w[a * KWP + c] = zero;  // row padding (read, unused)
                        }
                    }
                }
            } else {
                const bool conj = flags & gcf::FLAG_CONJ_KERNEL;
                for (int a = ty; a < KH; a += BY) {
                    for (int c = tx; c < KWP; c += BX)
                        s_w[a * KWP + c] =
                            c < KW ? gcf::kernel_tap(kb, a, c, ks_r, ks_c, conj) : zero;
                }
            }

            const bool interior = iy0 >= 0 && iy0 + rows <= H && ix0 >= 0 && ix0 + cols <= W;
            if (interior && async_stage) {
                if constexpr (ASYNC) {  // (float and double only: cp.async sizes)
                    // cp.async staging (the compile-time instances): every copy of the
                    // tile is issued before any is awaited and none holds a register,
                    // so the whole tile + halo is in flight at once: one DRAM latency
                    // per tile
                    gcf::stage_interior_async<T, VEC, false>(
                        s_in, inb, iy0, ix0, rows, cols, W, P, flags, tid, nthreads, tx,
                        ty, BX, BY, zero);
                }
            } else if (interior) {
                if ((flags & 1) && VEC > 1) {
                    // 16-byte loads: W % VEC == 0 and `in` is 16-byte aligned (flag), so
                    // row starts and the aligned-down column ixa are whole vectors; the
                    // last vector ends at or before round_up(ix0 + cols, VEC) <= W.
                    // LOAD_BATCH vectors are loaded before any is stored, so each
                    // thread keeps LOAD_BATCH 128-bit loads in flight (DRAM latency).
                    // (The scalar path below, W % VEC != 0 or a misaligned `in`, and
                    // the border tiles load one element at a time.)
                    const long long ixa = ix0 / VEC * VEC;
                    const int sh = (int)(ix0 - ixa);
                    int ncols = cols;  // opaque: the set-up is not hoisted (see above)
                    gpuconv::keep_in_register(ncols);
                    const int nvec = (sh + ncols + VEC - 1) / VEC;
                    const gcf::Vec16<T>* gbase =
                        reinterpret_cast<const gcf::Vec16<T>*>(inb + iy0 * W + ixa);
                    const int wv = W / VEC;  // row pitch in vectors
                    // the (row, vector) pairs of the tile, flattened over the block so
                    // that no lane idles on a partial row and each thread issues all
                    // its loads in ceil(rows * nvec / (LOAD_BATCH * threads)) rounds
                    const int total = rows * nvec;
                    // (row, vector) of flat index i advance by nthreads per step with
                    // one add and a compare (no division in the loop)
                    const int dr = nthreads / nvec, dq = nthreads - dr * nvec;
                    int r0 = tid / nvec, q0 = tid - r0 * nvec;
                    for (int i0 = tid; i0 < total; i0 += LOAD_BATCH * nthreads) {
                        gcf::Vec16<T> vv[LOAD_BATCH];
                        int r = r0, q = q0;
#pragma unroll
                        for (int u = 0; u < LOAD_BATCH; ++u) {
                            if (i0 + u * nthreads < total) vv[u] = gbase[(long long)r * wv + q];
                            r += dr;
                            q += dq;
                            if (q >= nvec) {
                                q -= nvec;
                                ++r;
                            }
                        }
                        r = r0;
                        q = q0;
#pragma unroll
                        for (int u = 0; u < LOAD_BATCH; ++u) {
                            if (i0 + u * nthreads >= total) break;
                            T* srow = s_in + r * P;
                            if (VEC <= 4 && sh == 0 && q * VEC + VEC <= cols) {
                                // the chunk lands on a 16-byte boundary of the row
                                // (P % 4 == 0): one conflict-free 128-bit store
                                *reinterpret_cast<gcf::Vec16<T>*>(srow + q * VEC) = vv[u];
                            } else {
#pragma unroll
                                for (int e = 0; e < VEC; ++e) {
                                    const int c = q * VEC + e - sh;
                                    if (c >= 0 && c < cols) srow[c] = vv[u].v[e];
                                }
                            }
                            r += dr;
                            q += dq;
                            if (q >= nvec) {
                                q -= nvec;
                                ++r;
                            }
                        }
                        r0 = r;
                        q0 = q;
                    }
                    for (int r = ty; r < rows; r += BY) {
                        for (int c = cols + tx; c < P; c += BX) s_in[r * P + c] = zero;
                    }
                } else {
                    for (int r = ty; r < rows; r += BY) {
                        const T* grow = inb + (iy0 + r) * W + ix0;
                        T* srow = s_in + r * P;
                        for (int c = tx; c < P; c += BX) srow[c] = c < cols ? grow[c] : zero;
                    }
                }
            } else {
                // border tile: one boundary lookup per tile row and column, not per tap
                for (int i = tid; i < rows; i += nthreads)
                    s_rowmap[i] = (int)gcf::boundary_index(iy0 + i, H, boundary);
                for (int i = tid; i < P; i += nthreads)
                    s_colmap[i] = i < cols ? (int)gcf::boundary_index(ix0 + i, W, boundary) : -2;
                // the maps written above are read by other threads below
                __syncthreads();
                // the tile's (row, column) pairs flattened over the block (a warp on
                // consecutive columns), BORDER_BATCH loads issued before any is
                // stored so that several are in flight per thread: a stack of small
                // images stages nearly every tile here. s_in is rows x P contiguous,
                // so flat index i is s_in[i]; (row, column) of i advance by nthreads
                // per step with one add and a compare (no division in the loop).
                const int total = rows * P;
                const int dr = nthreads / P, dc = nthreads - dr * P;
                int r0 = tid / P, c0 = tid - r0 * P;
                for (int i0 = tid; i0 < total; i0 += BORDER_BATCH * nthreads) {
                    T vv[BORDER_BATCH];
                    int r = r0, c = c0;
#pragma unroll
                    for (int u = 0; u < BORDER_BATCH; ++u) {
                        vv[u] = zero;
                        if (i0 + u * nthreads < total) {
                            const int rm = s_rowmap[r], cm = s_colmap[c];
                            if (cm != -2)
                                vv[u] = (rm < 0 || cm < 0) ? fill : inb[(long long)rm * W + cm];
                        }
                        r += dr;
                        c += dc;
                        if (c >= P) {
                            c -= P;
                            ++r;
                        }
                    }
#pragma unroll
                    for (int u = 0; u < BORDER_BATCH; ++u) {
                        if (i0 + u * nthreads < total) s_in[i0 + u * nthreads] = vv[u];
                    }
                    r0 = r;
                    c0 = c;
                }
            }
            // this thread's cp.async copies (weights, interior tile) have landed
            if constexpr (ASYNC) gcf::cp_async_wait_all();
            // the tile and the weights written by all threads are read by all threads
            __syncthreads();

            A acc[RY][RX];
#pragma unroll
            for (int r = 0; r < RY; ++r) {
#pragma unroll
                for (int x = 0; x < RX; ++x) acc[r][x] = Ac::zero();
            }

            if constexpr (KWC > 0) {
                // (KHC > 0 whenever KWC > 0: the compile-time instances are square)
                constexpr int KHS = KHC > 0 ? KHC : 1;
                constexpr int KWS = gcf::weight_pitch<T, KWC>(KWC);
                constexpr bool OPAQUE_ROW = RY >= 4;
                // rows streamed: input row ir of the thread's window is read once
                // (NG groups of G + KW - 1 values) and feeds every output row r it
                // reaches, with kernel row a = ir - r; for each accumulator a still
                // ascends (ir ascends) and c ascends inside it: the summation order
                // of filter2d_naive, one multiply-add per tap
                gcf::taps_rows_streamed<T, KHS, KWC, KWS, RY, NG, G, VECR, OPAQUE_ROW>(
                    s_in + ty * RY * P + tx * G, P, s_w, BX, acc);
            } else {
                for (int a = 0; a < KH; ++a) {
                    for (int c0 = 0; c0 < KW; c0 += CW) {
                        A wr[CW];
#pragma unroll
                        for (int cc = 0; cc < CW; ++cc)
                            wr[cc] = c0 + cc < KW ? Ac::from(s_w[a * KW + c0 + cc]) : Ac::zero();
#pragma unroll
                        for (int r = 0; r < RY; ++r) {
                            T v[RX + CW - 1];
                            gcf::load_row<T, RX + CW - 1, VECR>(
                                s_in + (ty * RY + r + a) * P + cx + c0, v);
#pragma unroll
                            for (int cc = 0; cc < CW; ++cc) {
                                if (c0 + cc < KW) {  // uniform guard of the last chunk
#pragma unroll
                                    for (int x = 0; x < RX; ++x)
                                        acc[r][x] = Ac::mad(Ac::from(v[x + cc]), wr[cc], acc[r][x]);
                                }
                            }
                        }
                    }
                }
            }

            // store the RY x RX block, NG groups of G (guarded tails; 16-byte stores
            // where aligned)
            gcf::store_block<T, RY, RX, G, VEC, TT::VEC_STORE>(
                out, b * plane_out, acc, oy0 + ty * RY, ox0 + tx * G, BX * G, OH, OW,
                flags);
        }
    }
}

// ------------------------------------------------------------------------------------
// tiled_pipelined: the compile-time tiled kernel, persistent and double-buffered
// ------------------------------------------------------------------------------------
namespace gcf {

// (b, tile_y, tile_x) of a linear tile index, tile_x fastest; advanced by a fixed
// step (the grid size) with two compares and carries, no division per tile.
struct TileCursor {
    int b, ty, tx;
    __device__ __forceinline__ void advance(int sb, int sy, int sx, int tiles_y,
                                            int tiles_x) {
        tx += sx;
        const int cx = tx >= tiles_x;
        tx -= cx ? tiles_x : 0;
        ty += sy + cx;
        const int cy = ty >= tiles_y;
        ty -= cy ? tiles_y : 0;
        b += sb + cy;
    }
};

}  // namespace gcf

// filter2d_tiled_pipelined<T, KH, KW, RY> (float and double, compile-time KH = KW):
// the tile, register block, summation order and tap code of filter2d_tiled<T, KH,
// KW, RY> (bit-identical to it and to filter2d_naive), launched as a persistent
// grid: gridDim.x blocks (the planner: about resident blocks per SM x SMs, never
// more than the tiles) walk the tiles t = blockIdx.x, + gridDim.x, ... (tile x
// fastest, then tile y, then the image), through TWO shared buffers (weights + tile
// + halo each). Per tile, ONE barrier:
//     wait for this thread's copies of tile t (cp.async.wait_group 0)
//     barrier: every copy of tile t has landed, and every thread has finished
//              tile t - 1, whose buffer is refilled next
//     stage tile t + gridDim.x into the other buffer: interior tiles as cp.async
//              copies (16-byte chunks when the rows are aligned and the tile
//              starts on a vector, else one element per copy), committed as one
//              group and NOT awaited; border tiles by plain loads applying the
//              boundary rule per element (no index maps: no extra barrier)
//     taps of tile t from its buffer, stores of its outputs
// so the next tile's DRAM round trip overlaps this tile's taps and stores.
template <typename T, int KHC, int KWC, int RY>
__global__ void __launch_bounds__(gcf::TILE_MAX_THREADS, (gcf::tile_min_blocks<T, KHC, RY>()))
filter2d_tiled_pipelined(const T* __restrict__ in, const T* __restrict__ k,
                         T* __restrict__ out, int B, int H, int W, int KH_rt,
                         int KW_rt, int pad_top, int pad_left, int OH, int OW,
                         long long ks_b, long long ks_r, long long ks_c,
                         int boundary, T fill, int flags) {
    typedef gcf::Acc<T> Ac;
    typedef typename Ac::type A;
    typedef gcf::TileTraits<T> TT;
    static_assert(KHC > 0 && KWC > 0, "compile-time kernel sizes only");
    static_assert(sizeof(T) == 4 || sizeof(T) == 8, "float and double only (cp.async sizes)");
    (void)KH_rt;
    (void)KW_rt;
    constexpr int RX = TT::RX;
    constexpr int VEC = TT::VEC;
    constexpr int VECR = TT::VECR;
    constexpr int KH = KHC, KW = KWC;
    constexpr int KWP = gcf::weight_pitch<T, KWC>(KWC);
    constexpr int G = (VECR > 1 && sizeof(T) == 4) ? VECR : RX;  // as filter2d_tiled
    constexpr int NG = RX / G;
    // elements of a buffer's weight block (whole 16-byte vectors)
    constexpr int WOFF = gcf::round_up(KH * KWP * (int)sizeof(T), 16) / (int)sizeof(T);

    const int BX = blockDim.x, BY = blockDim.y;
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int tid = ty * BX + tx, nthreads = BX * BY;
    const int TW = BX * RX, TH = BY * RY;
    const int rows = TH + KH - 1;
    const int cols = TW + KW - 1;
    const int P = gcf::tile_pitch(TW, KW);
    const int stage_elems = WOFF + rows * P;  // a multiple of 4: 16-byte aligned in T

    GPUCONV_DYNAMIC_SHARED(unsigned char, s_base);
    T* buf_cur = reinterpret_cast<T*>(s_base);
    T* buf_next = buf_cur + stage_elems;

    const T zero = gcf::zero_value<T>();
    const long long plane_in = (long long)H * W;
    const long long plane_out = (long long)OH * OW;
    const int tiles_x = (OW + TW - 1) / TW;
    const int tiles_y = (OH + TH - 1) / TH;
    // The tile walk: tile t = (image, tile row, tile column), column fastest, from
    // blockIdx.x on in steps of gridDim.x. Two forms, per instance, for registers:
    // a cursor advanced by carries (no division per tile; its step and the tile
    // counts stay live over the taps), or, in float 3x3 (LINEAR_WALK), the linear
    // index and two divisions per tile: at 48 registers (5 blocks per SM) the
    // cursor spills 4 bytes there, and the linear form spills 8 in the others.
    constexpr bool LINEAR_WALK = sizeof(T) == 4 && KHC == 3;
    auto cursor = [&](int lin) {
        gcf::TileCursor c;
        const int q = lin / tiles_x;
        c.tx = lin - q * tiles_x;
        c.b = q / tiles_y;
        c.ty = q - c.b * tiles_y;
        return c;
    };
    int lin = (int)blockIdx.x;  // (B * tiles + gridDim.x < 2^31: the planner)
    gcf::TileCursor t = cursor(lin);
    int sx = 0, sy = 0, sb = 0;  // gridDim.x as a cursor step
    if constexpr (!LINEAR_WALK) {
        const gcf::TileCursor st = cursor((int)gridDim.x);
        sx = st.tx;
        sy = st.ty;
        sb = st.b;
    }

    // issues this thread's share of tile c (weights + tile + halo) into buf; one
    // cp.async group (empty on border tiles, staged by plain loads)
    auto stage = [&](const gcf::TileCursor& c, T* buf) {
        const T* inb = in + c.b * plane_in;
        const T* kb = k + c.b * ks_b;
        T* s_w = buf;
        T* s_in = buf + WOFF;
        for (int a = ty; a < KH; a += BY) {
            for (int cc = tx; cc < KWP; cc += BX) {
                if (cc < KW)
                    gcf::cp_async_tracked(s_w + a * KWP + cc, kb + a * ks_r + cc * ks_c);
                else
                    s_w[a * KWP + cc] = zero;  // row padding (read, unused)
            }
        }
        const long long iy0 = (long long)c.ty * TH - pad_top;
        const long long ix0 = (long long)c.tx * TW - pad_left;
        const bool interior = iy0 >= 0 && iy0 + rows <= H && ix0 >= 0 && ix0 + cols <= W;
        if (interior) {
            gcf::stage_interior_async<T, VEC, true>(s_in, inb, iy0, ix0, rows, cols, W,
                                                    P, flags, tid, nthreads, tx, ty,
                                                    BX, BY, zero);
        } else {
            // border tile: the boundary rule per element (few tiles; no maps, so no
            // barrier inside the stage)
            for (int r = ty; r < rows; r += BY) {
                const long long rm = gcf::boundary_index(iy0 + r, H, boundary);
                const T* grow = inb + (rm < 0 ? 0 : rm) * W;
                T* srow = s_in + r * P;
                for (int cc = tx; cc < P; cc += BX) {
                    const long long cm =
                        cc < cols ? gcf::boundary_index(ix0 + cc, W, boundary) : -2;
                    srow[cc] = cm == -2 ? zero : ((rm < 0 || cm < 0) ? fill : grow[cm]);
                }
            }
        }
        gpuconv::cp_async_commit();
    };

    const int ntiles = LINEAR_WALK ? B * tiles_y * tiles_x : 0;
    if (t.b < B) stage(t, buf_cur);
    // every loop bound below is block-uniform: all threads meet every barrier
    while (LINEAR_WALK ? lin < ntiles : t.b < B) {
        if constexpr (LINEAR_WALK) t = cursor(lin);
        gpuconv::cp_async_wait<0>();  // this thread's copies of tile t
        // everyone's copies of tile t have landed; everyone is done with tile t - 1,
        // whose buffer (buf_next) the next stage overwrites
        __syncthreads();
        {
            // the next tile (its cursor is not kept over the taps: t advances
            // again after the stores, fewer registers live)
            gcf::TileCursor n = t;
            if constexpr (LINEAR_WALK)
                n = cursor(lin + (int)gridDim.x);
            else
                n.advance(sb, sy, sx, tiles_y, tiles_x);
            if (n.b < B) stage(n, buf_next);
        }

        A acc[RY][RX];
#pragma unroll
        for (int r = 0; r < RY; ++r) {
#pragma unroll
            for (int x = 0; x < RX; ++x) acc[r][x] = Ac::zero();
        }
        {
            // the taps, rows streamed (filter2d_tiled, step 3): kernel rows
            // ascending, then columns, one multiply-add per tap
            constexpr bool OPAQUE_ROW = RY >= 4;
            const T* s_w = buf_cur;
            constexpr int KWS = gcf::weight_pitch<T, KWC>(KWC);  // == KWP
            gcf::taps_rows_streamed<T, KHC, KWC, KWS, RY, NG, G, VECR, OPAQUE_ROW>(
                buf_cur + WOFF + ty * RY * P + tx * G, P, s_w, BX, acc);
        }

        // the epilogue: store the RY x RX block (filter2d_tiled, step 4)
        const int oy0 = t.ty * TH, ox0 = t.tx * TW;
        gcf::store_block<T, RY, RX, G, VEC, TT::VEC_STORE>(
            out, t.b * plane_out, acc, oy0 + ty * RY, ox0 + tx * G, BX * G, OH, OW,
            flags);
        T* const done = buf_cur;
        buf_cur = buf_next;
        buf_next = done;
        if constexpr (LINEAR_WALK) {
            lin += (int)gridDim.x;
        } else {
            t.advance(sb, sy, sx, tiles_y, tiles_x);
        }
    }
    gpuconv::cp_async_wait<0>();  // (nothing is in flight: the last stage was waited)
}

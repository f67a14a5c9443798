// implicit_gemm.cuh: the register-blocked implicit-GEMM machinery of the
// `tiled_regblock` variants of the conv2d passes.
//
// A conv2d pass is a GEMM C[M x NG] = A[M x KR] * B[KR x NG] whose operands are
// never materialised:
// forward:         M = N*OH*OW pixels, NG = K/groups,  KR = C/groups*KH*KW
// backward_input:  M = N*H*W pixels,   NG = C/groups,  KR = K/groups*KH*KW
// backward_weight: M = K/groups,       NG = C/groups*KH*KW, KR = N*OH*OW
// The forward and input-gradient main loop is sliced_gemm_block below (its comment
// gives the operands, the slice table and the summation order); the weight gradient
// has its own loop (conv2d_backward_weight.cu) on the same tiles.
//
// Tiles (one thread block computes a BM x BN tile of C):
//   - THREADS = TX*TY threads; thread (tx, ty) keeps a TM x TN accumulator block in
//     registers: rows  (q*TX*4 + tx*4 + i), cols (q*TY*4 + ty*4 + j) for 4-wide
//     chunks q, so its shared-memory reads are 4 consecutive elements (LDS.128)
//     and the warp's reads of A are conflict-free while those of B are broadcasts.
//   - The reduction advances BK = 8 at a time: the A slice (BK x BM) and the B slice
//     (BK x BN) are staged in shared memory, double-buffered. In the sliced GEMM
//     of the forward pass and the input gradient (sliced_gemm_block) the gathers
//     of the next slice are element-wise cp.async copies into the other buffer,
//     issued before the FMAs of the current one (latency hiding), zero-filled where
//     masked (no register staging, no shared-memory stores, no zeroing moves); the
//     weight gradient (conv2d_backward_weight.cu) gathers into registers and stores
//     them after the FMAs. One barrier per slice.
//   - Tails contribute fma(0, 0, acc) == acc.
// The epilogue stores 16 bytes at a time where the output grid is dense (below).
// Not done (yet): 128-bit global loads (the gathers are per element). SASS proxy
// (bench/sass_check.py, sm_90) of the sliced GEMM's hot loop: 85 % FMA for the
// 16x8x8x8 tile, 87 % for 16x16x8x8, 82 % for 32x4x8x8.
#pragma once

#include "common.cuh"

namespace gpuconv {

// Blocks per SM the register allocation must allow (the second __launch_bounds__
// argument of every regblock kernel): an 8x8 thread tile needs ~150 registers (64
// accumulators), and double accumulators take two registers each, so those get one
// block of 256 threads per SM (up to 255 registers); the smaller float tiles fit in
// 128 registers, two blocks. Without an explicit value ptxas may cap at 64 and spill.
__host__ __device__ constexpr int regblock_min_blocks(int tm, int tn, int elem_bytes) {
    return (tm * tn >= 64 || elem_bytes > 4) ? 1 : 2;
}

// Shape of one register-blocked tile configuration.
template <int TX_, int TY_, int TM_, int TN_>
struct RegblockTile {
    static constexpr int TX = TX_;            // threads along M
    static constexpr int TY = TY_;            // threads along N
    static constexpr int TM = TM_;            // accumulator rows per thread
    static constexpr int TN = TN_;            // accumulator columns per thread
    static constexpr int THREADS = TX * TY;
    static constexpr int BM = TX * TM;        // tile rows (pixels)
    static constexpr int BN = TY * TN;        // tile columns (channels)
    static constexpr int BK = 8;              // reduction slice per stage
    static constexpr int PAD = 4;             // row padding of the smem slices:
                                              // keeps 16-byte alignment and spreads
                                              // the transposed B stores over banks
    // A gathers: THREADS >= BM: each thread one row, every A_STEP-th channel;
    // BM > THREADS: each thread A_ROWS rows (THREADS apart), every channel.
    static constexpr int A_ROWS = BM > THREADS ? BM / THREADS : 1;
    static constexpr int A_STEP = BM > THREADS ? 1 : THREADS / BM;
    static constexpr int A_LOADS = BK / A_STEP;       // A elements per thread and row
    static constexpr int B_STEP = THREADS / BK;       // n-columns covered per B pass
    static constexpr int B_LOADS = BN / B_STEP;       // B elements per thread
    static_assert(TM % 4 == 0 && TN % 4 == 0, "thread blocks are 4-wide chunks");
    static_assert((THREADS % BM == 0 || BM % THREADS == 0) && BK % A_STEP == 0,
                  "A slice must tile the block");
    static_assert(A_ROWS * A_LOADS <= 16, "A load masks are 16 bits");
    static_assert(THREADS % BK == 0 && BN % B_STEP == 0, "B slice must tile the block");
    static_assert(THREADS <= 1024, "block too large");
};

// Local row (0..BM-1) of accumulator row i of thread tx.
template <class Tile>
__device__ __forceinline__ int regblock_row(int tx, int i) {
    return (i / 4) * (Tile::TX * 4) + tx * 4 + (i % 4);
}

// Local column (0..BN-1) of accumulator column j of thread ty.
template <class Tile>
__device__ __forceinline__ int regblock_col(int ty, int j) {
    return (j / 4) * (Tile::TY * 4) + ty * 4 + (j % 4);
}

// Shared-memory slices of one block: two stages of A (BK x BM) and B (BK x BN).
template <typename T, class Tile>
struct alignas(16) RegblockSmem {
    T a[2][Tile::BK][Tile::BM + Tile::PAD];
    T b[2][Tile::BK][Tile::BN + Tile::PAD];
};

// acc = 0: the accumulators of one thread, before the reduction.
template <typename T, class Tile>
__device__ __forceinline__ void regblock_zero(T (&acc)[Tile::TM][Tile::TN]) {
#pragma unroll
    for (int i = 0; i < Tile::TM; ++i)
#pragma unroll
        for (int j = 0; j < Tile::TN; ++j) acc[i][j] = T(0);
}

// The BK rank-1 updates of one slice from shared-memory stage `stage`: per kk, TM
// values of A and TN of B (4-wide vector loads), then TM*TN fmas.
template <typename T, class Tile>
__device__ __forceinline__ void regblock_fmas(
    const RegblockSmem<T, Tile>& s, int stage, int tx, int ty,
    T (&acc)[Tile::TM][Tile::TN]) {
#pragma unroll
    for (int kk = 0; kk < Tile::BK; ++kk) {
        T af[Tile::TM];
        T bf[Tile::TN];
#pragma unroll
        for (int i = 0; i < Tile::TM; ++i) af[i] = s.a[stage][kk][regblock_row<Tile>(tx, i)];
#pragma unroll
        for (int j = 0; j < Tile::TN; ++j) bf[j] = s.b[stage][kk][regblock_col<Tile>(ty, j)];
#pragma unroll
        for (int i = 0; i < Tile::TM; ++i)
#pragma unroll
            for (int j = 0; j < Tile::TN; ++j) acc[i][j] = fma(af[i], bf[j], acc[i][j]);
    }
}

// ---------------------------------------------------------------------------------
// The sliced implicit GEMM of the forward pass and the input gradient.
//
// Both passes are C[m, col] = sum over (c, t) of A[m, (c, t)] * B[(c, t), col] with
//   A[m, (c, t)] = src[n, g*Cred + c, ih0(m) + dy_t, iw0(m) + dx_t]  (0 off the plane)
//   B[(c, t), col] = w[g*NG*Cred*KHKW + col*col_stride + c*c_stride + wtap_t]
// where m = (n, oh, ow) runs over an Ho x Wo output grid, ih0 = oh*ah + bh,
// iw0 = ow*aw + bw, and t runs over a table of taps (dy, dx, wtap) that the planner
// builds per launch:
//   forward:        src = x, Cred = C/groups, (ah, bh) = (sh, -pt), taps kh*dh,
//                   kw*dw; col = output channel (col_stride = Cred*KHKW,
//                   c_stride = KHKW); C[m, col] is y[n, g*NG + col, oh, ow].
//   input gradient: src = gy, Cred = K/groups, one launch per output phase
//                   (ph, pw) of the stride: pixels h = ph + sh*oh, and only the taps
//                   with (ph + pt - kh*dh) % sh == 0, dy = (ph + pt - kh*dh) / sh
//                   (so no division and no wasted tap in the loop); (ah, bh) =
//                   (1, 0); col = input channel (col_stride = KHKW, c_stride =
//                   Cred*KHKW); C[m, col] is gx[n, g*NG + col, ph + sh*oh, pw + sw*ow].
// The reduction runs in slices of BK channels of one tap: slice s = chunk*T + t
// covers channels chunk*BK .. chunk*BK + BK-1 of tap t (channels past Cred read 0
// from both operands). Within a slice the tap is block-uniform, so a thread's A
// gather is one bounds check and one address for its row, plus a constant stride per
// channel; its B gather is one multiply-add. No division or modulo in the loop: the
// tap index and channel chunk advance as counters, the row (n, oh, ow) is decoded
// once per block.
//
// Packed slices (PACKED = true, for fewer than BK reduction channels, e.g. the RGB
// stem's 3): a slice is BK consecutive terms of the flattened reduction (channel,
// then the taps in table order), one table entry per term (SliceEntry: chunk = the
// channel, woff = channel*c_stride + tap; the padding terms of the last slice have
// dy = INT32_MIN, outside every plane, and woff < 0), so no slice is mostly
// padding; each A and B gather then has its own entry and bounds check. Packed plans sum in the `naive` order (channel, kh, kw).
//
// Summation order (documented numerics): each output is sum over channel chunks, then
// taps in table order, then the BK channels of the chunk, one fma each, starting from
// 0 (a split-K launch sums its contiguous range of slices; the partial results are
// added in split order by a second kernel). This differs from the `naive` and `tiled`
// order (channel-major, then kh, kw), so results agree to rounding on random inputs
// and exactly on small-integer inputs; the same plan gives bit-identical results on
// every run (no atomics).

// 16 bytes of T (4 floats, 2 doubles) for the epilogue's 128-bit stores (only on
// addresses proven 16-byte aligned).
template <typename T>
struct alignas(16) Vec16 {
    T v[16 / sizeof(T)];
};

// One element of T (4 or 8 bytes) from global address g (an integer) to shared
// memory s, asynchronously (cp.async.ca, visible to this thread after
// cp_async_wait, to the block after the barrier that follows), or zeros where the
// bits `bit` of mask are clear (a literal after unrolling):
// PTX ignore-src, the source "ignored completely", so a masked-off copy may carry
// an address outside the tensor (a padding tap, a channel past the last); it is
// still element-aligned. Emulated: gpuconv_emu::cp_async_issue (deferred to the
// wait); before sm_80: a plain load and store.
template <typename T>
__device__ __forceinline__ void copy_elem(T* s, unsigned long long g, unsigned mask,
                                          unsigned bit = 1u) {
#if defined(GPUCONV_EMULATED)
    gpuconv_emu::cp_async_issue(s, reinterpret_cast<const T*>(g), sizeof(T),
                                (mask & bit) == 0u, __FILE__, __LINE__);
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    // The mask test inside the asm: one LOP3 to a predicate (a bool argument would
    // cost a shift, an AND and a compare per copy).
    const unsigned sa = static_cast<unsigned>(__cvta_generic_to_shared(s));
    asm volatile(
        "{\n .reg .pred ignore;\n .reg .b32 bit;\n and.b32 bit, %2, %3;\n"
        " setp.eq.u32 ignore, bit, 0;\n"
        " cp.async.ca.shared.global [%0], [%1], %4, ignore;\n}\n" ::"r"(sa),
        "l"(g), "r"(mask), "r"(bit), "n"(static_cast<int>(sizeof(T)))
        : "memory");
#else
    *s = (mask & bit) != 0u ? *reinterpret_cast<const T*>(g) : T(0);
#endif
}

// One reduction slice (built by gpuconv._plan_conv.slice_table): channels chunk*BK
// .. chunk*BK + BK-1 of the tap (dy, dx); woff = chunk*BK*c_stride + the tap's
// offset kh*KW + kw in w. 16 bytes: one vector load, block-uniform.
struct alignas(16) SliceEntry {
    int chunk;
    int dy;
    int dx;
    int woff;
};

// Geometry of one sliced implicit-GEMM launch (built by the kernel wrappers from
// their arguments; every field a runtime value).
struct SlicedGemmArgs {
    int Csrc, Hs, Ws;          // src tensor (N, Csrc, Hs, Ws)
    int Cred;                  // reduction channels per group
    int Cdst, Hd, Wd;          // dst tensor (N, Cdst, Hd, Wd)
    int NG;                    // GEMM columns per group
    int Ho, Wo;                // output grid of this launch
    int ah, bh, aw, bw;        // ih0 = oh*ah + bh, iw0 = ow*aw + bw
    int osh, oph, osw, opw;    // dst pixel (oh*osh + oph, ow*osw + opw)
    int col_stride, c_stride;  // B addressing
    int KHKW;                  // taps of the weight tensor
    int slice_count;           // slices of this launch's table
    int has_bias;
    long long M;               // N*Ho*Wo
    int m_tiles, n_tiles, groups;
    long long split_stride;    // elements between the splits' outputs (0: one split)
    long long slices_per_split;
    int extra_slices;          // the first extra_slices splits get one more slice
};

// First slice of split s (balanced contiguous ranges).
__device__ __forceinline__ long long sliced_split_begin(int s, long long per, int extra) {
    return s * per + min(s, extra);
}

template <typename T, class Tile, bool PACKED>
__device__ __forceinline__ void sliced_gemm_block(
    const T* __restrict__ src, const T* __restrict__ w, const T* __restrict__ bias,
    const SliceEntry* __restrict__ slices, T* __restrict__ dst, const SlicedGemmArgs& a,
    RegblockSmem<T, Tile>& s) {
    constexpr int BK = Tile::BK;
    const int tid = static_cast<int>(threadIdx.x);
    const int tx = tid % Tile::TX;
    const int ty = tid / Tile::TX;

    const GemmBlock blk = gemm_block(a.m_tiles, a.n_tiles, a.groups);
    const int m_tile = blk.m_tile, n_tile = blk.n_tile, g = blk.g, split = blk.split;
    const long long m0 = static_cast<long long>(m_tile) * Tile::BM;
    const int n0 = n_tile * Tile::BN;
    const int HWs = a.Hs * a.Ws;
    const int HoWo = a.Ho * a.Wo;

    // Reduction range of this split: slices [s_begin, s_end) of the table.
    const long long s_begin = sliced_split_begin(split, a.slices_per_split, a.extra_slices);
    const long long s_end = min(static_cast<long long>(a.slice_count),
                                sliced_split_begin(split + 1, a.slices_per_split,
                                                   a.extra_slices));
    const int nslices = s_end > s_begin ? static_cast<int>(s_end - s_begin) : 0;
    const SliceEntry* slice = slices + s_begin * (PACKED ? BK : 1);

    // Gather roles: A rows a_m + j*THREADS (j < A_ROWS) at channels a_r + q*A_STEP;
    // B channel b_r at columns b_n + q*B_STEP.
    constexpr int AR = Tile::A_ROWS;
    constexpr int AL = Tile::A_LOADS;
    const int a_m = tid % Tile::BM;
    const int a_r = tid / Tile::BM;
    const int b_r = tid % BK;
    const int b_n = tid / BK;

    // This thread's A rows, decoded once.
    bool a_valid[AR];
    int ih0[AR];
    int iw0[AR];
    const T* a_base[AR];
#pragma unroll
    for (int j = 0; j < AR; ++j) {
        const long long am = m0 + a_m + j * Tile::THREADS;
        a_valid[j] = am < a.M;
        const long long an = a_valid[j] ? am / HoWo : 0;
        const int ap = static_cast<int>(am - an * HoWo);
        const int aoh = ap / a.Wo;
        const int aow = ap - aoh * a.Wo;
        ih0[j] = aoh * a.ah + a.bh;
        iw0[j] = aow * a.aw + a.bw;
        a_base[j] = src + (an * a.Csrc + static_cast<long long>(g) * a.Cred) * HWs;
    }
    // HWs as a per-lane value (a shuffle, which ptxas cannot prove warp-uniform): the
    // channel steps of the A gathers below are then one IMAD.WIDE onto the address
    // each, instead of a two-instruction 64-bit add of a uniform-register constant
    // (SASS proxy, sm_90: 1259 -> 1244 instructions in the 16x8x8x8 hot loop).
    const int hws_v = __shfl_sync(0xffffffffu, HWs, 0);
    unsigned long long a_row[AR];   // a_base as integers (the packed gathers)
    unsigned long long a_addr[AR];  // + this thread's channel (the unpacked gathers)
#pragma unroll
    for (int j = 0; j < AR; ++j) {
        a_row[j] = reinterpret_cast<unsigned long long>(a_base[j]);
        a_addr[j] = a_row[j] +
                    static_cast<long long>(a_r) * HWs * static_cast<long long>(sizeof(T));
    }
    // This thread's B channel and columns (packed: the row entry holds the channel).
    const T* b_ptr = w + static_cast<long long>(g) * a.NG * a.Cred * a.KHKW +
                     static_cast<long long>(n0 + b_n) * a.col_stride +
                     (PACKED ? 0LL : static_cast<long long>(b_r) * a.c_stride);
    const unsigned long long b_addr = reinterpret_cast<unsigned long long>(b_ptr);
    long long b_off[Tile::B_LOADS];  // byte offsets of this thread's B columns
#pragma unroll
    for (int q = 0; q < Tile::B_LOADS; ++q)
        b_off[q] = static_cast<long long>(q * Tile::B_STEP) * a.col_stride *
                   static_cast<long long>(sizeof(T));
#pragma unroll
    for (int q = 0; q < Tile::B_LOADS; ++q)
        if constexpr (PACKED) keep_in_register(b_off[q]);

    // Load masks: bit j*AL + q for A load q of row j, bit 16 + q for B load q. Every
    // chunk but the last has all BK channels; the last one has Cred - last*BK.
    const int last_chunk = (a.Cred - 1) / BK;
    const int rem = a.Cred - last_chunk * BK;
    unsigned full_mask = 0;
    unsigned tail_mask = 0;
#pragma unroll
    for (int j = 0; j < AR; ++j)
#pragma unroll
        for (int q = 0; q < AL; ++q) {
            if (!a_valid[j]) continue;  // rows past M: never loaded
            full_mask |= 1u << (j * AL + q);
            if (a_r + q * Tile::A_STEP < rem) tail_mask |= 1u << (j * AL + q);
        }
#pragma unroll
    for (int q = 0; q < Tile::B_LOADS; ++q) {
        if (n0 + b_n + q * Tile::B_STEP < a.NG) {
            full_mask |= 1u << (16 + q);
            if (b_r < rem) tail_mask |= 1u << (16 + q);
        }
    }
    constexpr unsigned ROW_BITS = (1u << AL) - 1u;

    // The gathers of slice k into shared-memory stage `stage`: one asynchronous
    // element copy each (copy_elem), zeros where the mask or the bounds say so.
    auto a_dst = [&](int stage, int j, int q) -> T* {
        return &s.a[stage][a_r + q * Tile::A_STEP][a_m + j * Tile::THREADS];
    };
    auto b_dst = [&](int stage, int q) -> T* {
        return &s.b[stage][b_r][b_n + q * Tile::B_STEP];
    };
    // `ent`: the slice's table entries (one, or BK when packed).
    // `bent` (packed): this thread's B row entry, ent + b_r.
    auto fetch = [&](const SliceEntry* ent, const SliceEntry* bent, int stage) {
        if constexpr (PACKED) {
            // Few channels: each of the slice's BK rows has its own entry (channel,
            // tap, weight offset; a padding row: dy = INT32_MIN, woff < 0, zeros
            // from both operands). Rows in unsigned (wrapping) arithmetic: the
            // padding row's dy puts every pixel outside the plane (the planner's
            // PACKED_PAD_DY), so the bounds check alone masks it.
            const SliceEntry* rows = ent;
#pragma unroll
            for (int q = 0; q < AL; ++q) {
                const SliceEntry e = rows[a_r + q * Tile::A_STEP];
#pragma unroll
                for (int j = 0; j < AR; ++j) {
                    const unsigned ih = static_cast<unsigned>(ih0[j]) +
                                        static_cast<unsigned>(e.dy);
                    const unsigned iw = static_cast<unsigned>(iw0[j] + e.dx);
                    const bool ok = a_valid[j] && ih < static_cast<unsigned>(a.Hs) &&
                                    iw < static_cast<unsigned>(a.Ws);
                    // chunk = the channel (< BK): the offset fits 32 bits where ok
                    // (the planner checks BK planes); one IMAD.WIDE onto the address
                    const int off = static_cast<int>(
                        static_cast<unsigned>(e.chunk) * static_cast<unsigned>(HWs) +
                        ih * static_cast<unsigned>(a.Ws) + iw);
                    copy_elem(a_dst(stage, j, q),
                              a_row[j] + static_cast<long long>(off) *
                                             static_cast<long long>(sizeof(T)),
                              static_cast<unsigned>(ok));
                }
            }
            const int woff = bent->woff;
            // woff < 0 (a padding row): never read, any address
            const unsigned long long pb =
                b_addr + static_cast<long long>(woff) * static_cast<long long>(sizeof(T));
#pragma unroll
            for (int q = 0; q < Tile::B_LOADS; ++q)
                copy_elem(b_dst(stage, q), pb + b_off[q],
                          static_cast<unsigned>(woff >= 0 &&
                                                (full_mask >> (16 + q) & 1u)));
        } else {
            // Addresses as integers (a row off the plane or past M is masked off and
            // never read); every step is one 32x32->64-bit multiply-add (IMAD.WIDE)
            // onto a 64-bit address: chunk planes, then the tap's pixel, then the
            // channel (A) or column (B) strides.
            const SliceEntry e = *ent;  // block-uniform
            unsigned mask = e.chunk == last_chunk ? tail_mask : full_mask;
            const int chunk_bytes = e.chunk * (BK * static_cast<int>(sizeof(T)));
#pragma unroll
            for (int j = 0; j < AR; ++j) {
                const int ih = ih0[j] + e.dy;
                const int iw = iw0[j] + e.dx;
                const bool ok = in_range(ih, a.Hs) && in_range(iw, a.Ws);  // rows
                if (!ok) mask &= ~(ROW_BITS << (j * AL));  // past M are masked already
                // the pixel offset wraps (unsigned) where !ok: never read
                const int pix = static_cast<int>(static_cast<unsigned>(ih) *
                                                     static_cast<unsigned>(a.Ws) +
                                                 static_cast<unsigned>(iw));
                unsigned long long pa = a_addr[j] +
                                        static_cast<long long>(chunk_bytes) * HWs +
                                        static_cast<long long>(pix) * sizeof(T);
#pragma unroll
                for (int q = 0; q < AL; ++q) {
                    copy_elem(a_dst(stage, j, q), pa, mask, 1u << (j * AL + q));
                    pa += static_cast<long long>(hws_v) * (Tile::A_STEP * sizeof(T));
                }
            }
            unsigned long long pb = b_addr + static_cast<long long>(e.woff) * sizeof(T);
#pragma unroll
            for (int q = 0; q < Tile::B_LOADS; ++q) {
                copy_elem(b_dst(stage, q), pb, mask, 1u << (16 + q));
                pb += static_cast<long long>(a.col_stride) * (Tile::B_STEP * sizeof(T));
            }
        }
        cp_async_commit();
    };

    T acc[Tile::TM][Tile::TN];
    regblock_zero<T, Tile>(acc);
    // One slice: the next slice's copies into the other stage are issued first (in
    // flight during the FMAs; that stage was last read by the previous slice, before
    // its closing barrier), then the FMAs from stage CUR, then this thread waits for
    // its copies. `more`: slice kt + 1 exists, its entries at `ent` (and `bent`).
    auto slice_step = [&](int CUR, bool more, const SliceEntry* ent,
                          const SliceEntry* bent) {
        if (more) fetch(ent, bent, CUR ^ 1);  // block-uniform
        regblock_fmas<T, Tile>(s, CUR, tx, ty, acc);
        cp_async_wait<0>();
        // Every thread's copies into the other stage have landed before the next
        // slice reads it, and every thread is done reading stage CUR before the
        // slice after overwrites it.
        __syncthreads();
    };
    if (nslices > 0) {  // block-uniform
        constexpr int PER = PACKED ? BK : 1;  // table entries per slice
        fetch(slice, slice + (PACKED ? b_r : 0), 0);
        cp_async_wait<0>();
        __syncthreads();  // stage 0 complete before any thread reads it
        // Two slices per trip with the literal stages 0 and 1 (after inlining every
        // shared-memory address is a register plus an immediate), each with a
        // successor (no test in the loop); the last one or two slices after it.
        // `ent` advances by a pointer increment per trip (the entries of the trip's
        // slices are immediate offsets from it).
        const SliceEntry* ent = slice;
        const SliceEntry* bent = slice + (PACKED ? b_r : 0);
        int left = nslices;  // slices not yet computed
        for (; left > 2; left -= 2, ent += 2 * PER, bent += 2 * PER) {
            slice_step(0, true, ent + PER, bent + PER);
            slice_step(1, true, ent + 2 * PER, bent + 2 * PER);
        }
        if (left == 2) {  // two slices are left
            slice_step(0, true, ent + PER, bent + PER);
            slice_step(1, false, ent, bent);
        } else {  // one slice is left
            slice_step(0, false, ent, bent);
        }
    }

    // Epilogue: rows inside the problem, columns inside the group.
    const int HWd = a.Hd * a.Wd;
    T* dsplit = dst + split * a.split_stride;
    // 16-byte stores where they are possible: a thread's rows come in chunks of 4
    // consecutive rows (regblock_row), which are 4 consecutive pixels of one image's
    // plane when the launch writes its own output grid densely (no stride phase: the
    // forward pass, the stride-1 input gradient, the 1x1 GEMMs of col2im and
    // Winograd) and an image holds a multiple of 4 pixels; the buffer's alignment is
    // checked too (block-uniform). A warp then writes whole 32-byte sectors instead of
    // one element every 4 (same values, same order of the bias addition). Not for
    // tiles of two A rows per thread (32x4x8x8): there it took 168 -> 178 registers,
    // 12 -> 8 warps per SM (ptxas, sm_90).
    const bool dense = Tile::A_ROWS == 1 && a.osh == 1 && a.osw == 1 && a.oph == 0 &&
                       a.opw == 0 &&
                       a.Hd == a.Ho && a.Wd == a.Wo && HoWo % 4 == 0 &&
                       (reinterpret_cast<unsigned long long>(dsplit) & 15ULL) == 0;
    constexpr int VEC = 16 / static_cast<int>(sizeof(T));  // elements per store
#pragma unroll
    for (int i0 = 0; i0 < Tile::TM; i0 += 4) {  // chunks of 4 consecutive rows
        if (dense) {
            const long long m = m0 + regblock_row<Tile>(tx, i0);  // a multiple of 4
            if (m >= a.M) continue;  // M = N*HoWo is a multiple of 4: all 4 rows out
            const long long n = m / HoWo;
            const int p = static_cast<int>(m - n * HoWo);
            T* out = dsplit + (n * a.Cdst + static_cast<long long>(g) * a.NG + n0) * HWd +
                     p;
#pragma unroll
            for (int j = 0; j < Tile::TN; ++j) {
                const int lc = regblock_col<Tile>(ty, j);
                if (n0 + lc >= a.NG) continue;  // tail columns of the last tile
                T* o = out + static_cast<long long>(lc) * HWd;
#pragma unroll
                for (int q = 0; q < 4; q += VEC) {
                    Vec16<T> chunk;
#pragma unroll
                    for (int e = 0; e < VEC; ++e) {
                        T v = acc[i0 + q + e][j];
                        if (a.has_bias) v = v + bias[g * a.NG + n0 + lc];
                        chunk.v[e] = v;
                    }
                    *reinterpret_cast<Vec16<T>*>(o + q) = chunk;
                }
            }
            continue;
        }
#pragma unroll
        for (int r = 0; r < 4; ++r) {
            const int i = i0 + r;
            const long long m = m0 + regblock_row<Tile>(tx, i);
            if (m >= a.M) continue;  // tail rows of the last tile
            const long long n = m / HoWo;
            const int p = static_cast<int>(m - n * HoWo);
            const int oh = p / a.Wo;
            const int ow = p - oh * a.Wo;
            T* out = dsplit + (n * a.Cdst + static_cast<long long>(g) * a.NG + n0) * HWd +
                     ((oh * a.osh + a.oph) * a.Wd + ow * a.osw + a.opw);
#pragma unroll
            for (int j = 0; j < Tile::TN; ++j) {
                const int lc = regblock_col<Tile>(ty, j);
                if (n0 + lc >= a.NG) continue;  // tail columns of the last tile
                T v = acc[i][j];
                if (a.has_bias) v = v + bias[g * a.NG + n0 + lc];
                out[static_cast<long long>(lc) * HWd] = v;
            }
        }
    }
}

// The second stage of a split-K launch: out[i] = part[0*total + i] + part[1*total +
// i] + ... in split order (+ bias[(i / plane) % channels] when has_bias), one thread
// per element, grid-stride.
template <typename T>
__device__ __forceinline__ void split_reduce(
    const T* __restrict__ part, const T* __restrict__ bias, T* __restrict__ out,
    int splits, int channels, int plane, int has_bias, long long total) {
    // The bias channel of element idx is (idx / plane) % channels: in 32-bit
    // arithmetic while idx fits (the usual case; a 64-bit division is several times
    // the instructions), else in 64 bits.
    const bool small = total <= 0x7fffffffLL;
    for (long long idx = global_thread_index(); idx < total; idx += grid_stride()) {
        T acc = part[idx];
        for (int sp = 1; sp < splits; ++sp) acc = acc + part[sp * total + idx];
        if (has_bias) {
            int c;
            if (small) {
                c = (static_cast<int>(idx) / plane) % channels;
            } else {
                c = static_cast<int>((idx / plane) % channels);
            }
            acc = acc + bias[c];
        }
        out[idx] = acc;
    }
}

}  // namespace gpuconv

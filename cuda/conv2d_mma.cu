// conv2d_mma.cu: conv2d on tensor cores (warp-level mma.sync, sm_80 and newer), for
// precision='tf32' on float32 data and for float16 data; FP32 accumulation.
//
// Variants (E = float: operands rounded to TF32 (cvt.rna) on their way into shared
// memory, mma.m16n8k8.tf32; E = unsigned short: float16 bits, mma.m16n8k16.f16; any
// stride, dilation, groups, asymmetric zero padding; runtime kernel size; tails
// guarded; deterministic, no atomics: every output is written once, by one lane,
// each sum in a fixed order; tiles (BM, BN, WARPS_M, WARPS_N) = (64, 64, 2, 2) and
// (128, 128, 2, 4), gpuconv._kernels). The output (OutT, a trailing template
// parameter of the forward and input-gradient kernels; the weight gradient always
// writes float) is the FP32 accumulator plus bias, either
//   - float (OutT = float, the default): the result of precision='tf32', and of
//     float16 data wherever the float16 result is not final yet (split-K slices,
//     the padding modes' input gradient before its fold, the weight gradient; the
//     float16 API then rounds the float32 result once), or
//   - float16 bits (OutT = unsigned short, E = unsigned short only): the result of
//     float16 data rounded once in the epilogue (mma_put: cvt.rn.f16.f32, round to
//     nearest even, as the API's cast of the float32 result, bit for bit) where it
//     is final: the forward pass (any padding mode: the padded copy is only its
//     input) and the input gradient of a zero-padded problem (no fold), one split
//     (gpuconv._plan_conv.mma_out_dtype decides). No float32 output is written,
//     read back and cast.
//   conv2d_forward_mma<E, BM, BN, WARPS_M, WARPS_N[, OutT]>
//       y = conv2d(x, w) + bias as the implicit GEMM of conv2d_forward.cu's
//       tiled_regblock: M = N*OH*OW pixels, NG = K/groups, KR = C/groups*KH*KW;
//       when C/groups is a multiple of the slab the reduction runs channel-inner
//       (MmaForwardSlabView: a per-slab cursor over (tap, channel), strided element
//       loads). Split-K when the planner asks (mma_splits: a small image, a long
//       reduction): split s writes slice s of a workspace, reduced in split order.
//   conv2d_backward_input_mma<E, BM, BN, WARPS_M, WARPS_N[, OutT]>
//       gx as the implicit GEMM of conv2d_backward_input.cu's tiled_regblock:
//       M = N*H*W pixels, NG = C/groups, KR = K/groups*KH*KW; channel-inner
//       (MmaBackwardInputSlabView) for stride 1 when K/groups is a multiple of the
//       slab. Split-K as the forward.
//   conv2d_backward_weight_mma<E, BM, BN, WARPS_M, WARPS_N>
//       gw: M = K/groups output channels, NG = C/groups*KH*KW, KR = N*OH*OW pixels,
//       split-K: each block reduces a balanced range of whole slabs and writes its
//       partial sums to a workspace slice (or gw itself for one split);
//       conv2d_backward_weight.cu's reduce kernel adds the slices in split order
//       (deterministic). The bias gradient is the op's separate reduction.
//   conv2d_forward_mma_nhwc<E, BM, BN, WARPS_M, WARPS_N[, OutT]>
//       the forward GEMM on operands packed once per call by conv2d_nhwc_pack_input<E>
//       (x -> NHWC) and conv2d_nhwc_pack_weight<E> (w -> (K, KH*KW, C/groups); with
//       flip the input gradient's transposed, flipped weights): a slab is whole
//       16-byte rows, copied by cp.async into STAGES shared stages (no registers on
//       the way), fragments by ldmatrix. C/groups a multiple of the slab. Also the
//       input gradient of stride-1 layers (the forward of gy with the flipped
//       weights). What 'auto' runs where gpuconv._plan_conv.nhwc_preferred (the
//       op-level 'mma_nhwc' forces it; see the section at the end).
//   conv2d_backward_weight_mma_nhwc<E, BM, BN, WARPS_M, WARPS_N>
//       the weight gradient on the same pipeline: gy packed per output channel by
//       conv2d_nhwc_pack_gy<E>, x by conv2d_nhwc_pack_input<E>; a k-major B (pixel
//       rows) read by scalar loads (TF32) or ldmatrix.trans (float16).
// Other padding modes: the op pads the input once (conv2d_pad.cu) and runs these
// on the padded geometry (folding the input gradient back), as for the FP32 kernels.
//
// Strategy (one block computes a BM x BN tile of C = A * B):
//   - gather (the "gemm views" below, one per pass): a thread fetches its share of
//     the next reduction slab from global memory into registers (0 outside the
//     problem) while the tensor cores work on the current one; then stores it to the
//     other shared-memory stage as 32-bit words (one TF32 value, rounded here once
//     per element, or two float16 values consecutive in the reduction: a .f16x2
//     register). Two stages, one barrier per slab. A slab is KWORDS = 16 words of
//     the reduction (16 TF32 / 32 float16 terms: two mma k-steps). A thread
//     gathers whole 16-byte chunks (the words t, t+4, t+8, t+12 of a row: one
//     STS.128 each; MmaRoles says which), the weight gradient's B by words. The
//     generic views decode every element (tap table, bounds, index); the slab views
//     (channel-inner forward and stride-1 input gradient, per-image weight
//     gradient) keep a cursor that steps slab by slab (no division in the loop; the
//     next tap's table entry is loaded a tap ahead), check bounds once per chunk and
//     load its elements at int offsets from one pointer.
//   - mainloop (mma_mainloop): WARPS_M x WARPS_N warps, each owning a
//     (BM/WARPS_M) x (BN/WARPS_N) sub-tile = MI x NI mma tiles of 16 x 8, with
//     MI*NI*4 FP32 accumulators per lane. The shared slab holds each lane's
//     fragment words in register order (A: rows r, r+8 paired, B: columns, see
//     MmaSmem), XOR-swizzled: per slab a lane loads its fragments for both k-steps
//     with MI*2 + NI LDS.128 (was 2*(MI*4 + NI*2) 32-bit LDS) and no moves, all
//     conflict-free.
//   - epilogue (mma_store_pixels): each lane writes its accumulators (row g / g+8,
//     columns 2t, 2t+1 of each mma tile) straight to NCHW, adding the bias, as float
//     or rounded once to float16 (mma_put, by OutT).
// The NCHW kernels use neither cp.async (the gather is element-wise with bounds
// masks and TF32 rounding, so it goes through registers; NCHW puts a word's two
// float16 values in different planes) nor ldmatrix (shared memory already holds the
// fragments in register order); the NHWC kernel uses both (its operands are packed
// and rounded beforehand). The tensor-core instructions and ldmatrix come from
// mma.cuh, cp.async from common.cuh; the CPU emulation harness executes them lane
// by lane (cp.async deferred to its wait).
#include "common.cuh"
#include "mma.cuh"

using gpuconv::TapEntry;

namespace gpuconv {

// How an operand element becomes a shared-memory word and which mma consumes it.
template <typename E>
struct MmaOperand;

template <>
struct MmaOperand<float> {
    static constexpr int PER_WORD = 1;  // elements per 32-bit word
    __device__ __forceinline__ static unsigned word(const float (&e)[1]) {
        return to_tf32(e[0]);
    }
    __device__ __forceinline__ static void mma(float (&d)[4], const unsigned (&a)[4],
                                               const unsigned (&b)[2]) {
        mma_tf32_m16n8k8(d, a, b, d);
    }
};

template <>
struct MmaOperand<unsigned short> {
    static constexpr int PER_WORD = 2;
    __device__ __forceinline__ static unsigned word(const unsigned short (&e)[2]) {
        return pack_half2(e[0], e[1]);
    }
    __device__ __forceinline__ static void mma(float (&d)[4], const unsigned (&a)[4],
                                               const unsigned (&b)[2]) {
        mma_f16_m16n8k16(d, a, b, d);
    }
};

// One tile configuration.
template <int BM_, int BN_, int WARPS_M_, int WARPS_N_>
struct MmaTile {
    static constexpr int BM = BM_;                 // tile rows (pixels)
    static constexpr int BN = BN_;                 // tile columns (channels)
    static constexpr int WARPS_M = WARPS_M_;
    static constexpr int WARPS_N = WARPS_N_;
    static constexpr int THREADS = 32 * WARPS_M * WARPS_N;
    static constexpr int WTM = BM / WARPS_M;       // warp sub-tile rows
    static constexpr int WTN = BN / WARPS_N;       // warp sub-tile columns
    static constexpr int MI = WTM / 16;            // mma tiles per warp along M
    static constexpr int NI = WTN / 8;             // mma tiles per warp along N
    static constexpr int KWORDS = 16;              // reduction words per slab
    static constexpr int KSTEPS = KWORDS / 8;      // mma k-steps per slab
    static constexpr int CHUNK = 4;                // words per 16-byte chunk
    static constexpr int CHUNKS = KWORDS / CHUNK;  // chunks per shared row
    static constexpr int STAGES = 2;
    static constexpr int A_PAIRS = BM * CHUNKS / 2 / THREADS;  // A row pairs per thread
    static constexpr int A_CHUNKS = 2 * A_PAIRS;             // A row chunks per thread
    static constexpr int B_CHUNKS = BN * CHUNKS / THREADS;  // B chunks per thread
    static constexpr int B_STEP = THREADS / KWORDS;  // word gather: columns per pass
    static constexpr int B_WORDS = BN / B_STEP;      // word gather: B words per thread
    static_assert(WTM % 16 == 0 && WTN % 8 == 0, "warp tiles are whole mma tiles");
    static_assert(THREADS % BM == 0 && (BM * CHUNKS) % THREADS == 0, "A slab must tile");
    static_assert(THREADS % BN == 0 && (BN * CHUNKS) % THREADS == 0, "B slab must tile");
    static_assert(B_WORDS == B_CHUNKS * CHUNK, "both B gathers hold the same words");
};

// Shared slab layout (a lane's fragment words are one 16-byte LDS each, no moves):
// - B: row c (a column) holds the slab's 16 words as 4 chunks of 4: chunk t holds the
//   words t, t+4, t+8, t+12 (b[0], b[1] of k-step 0, then of k-step 1, for the lanes
//   with t = lane % 4), at word 4*(t ^ ((c >> 1) & 3)) of the row;
// - A: the rows of an mma tile in pairs (r, r + 8), r = 16*i + g: pair 8*i + g holds 8
//   chunks; chunk (ks, t) is a[0..3] of k-step ks for the lanes (g, t): A[r][8ks + t],
//   A[r + 8][8ks + t], A[r][8ks + t + 4], A[r + 8][8ks + t + 4], at word
//   4*((4*ks + t) ^ 4*(g & 1) ^ (g >> 1)) of the pair.
// The XOR swizzles let the 8 lanes of each LDS.128/STS.128 phase (fragment loads: two
// rows/pairs x four chunks; gather stores: eight consecutive rows/pairs x one chunk,
// or two x four) hit 32 distinct banks.
__device__ __forceinline__ int mma_chunk_word(int row, int t) {
    return 4 * (t ^ ((row >> 1) & 3));
}
__device__ __forceinline__ int mma_pair_word(int pair, int ks, int t) {
    const int g = pair & 7;
    return 4 * ((4 * ks + t) ^ (4 * (g & 1)) ^ (g >> 1));
}

template <class Tile>
struct alignas(16) MmaSmem {
    unsigned a[Tile::STAGES][Tile::BM / 2][2 * Tile::KWORDS];
    unsigned b[Tile::STAGES][Tile::BN][Tile::KWORDS];
};

// Which shared-memory words a thread gathers: whole chunks (A always; B unless the
// view asks for words), unit idx = tid + i*THREADS as (row, t) (B) or (row pair, t)
// (A; the pair's rows are its chunks 2i and 2i + 1, the words t + 4q of each):
// row-fast (idx % rows, idx / rows: consecutive lanes gather consecutive rows) or
// chunk-fast (idx / 4, idx % 4: four lanes share a row); the word gather (B only,
// MMA_B_WORDS): word b_w = tid % 16 of the columns b_n + q*B_STEP.
enum MmaGather { MMA_ROW_FAST = 0, MMA_CHUNK_FAST = 1, MMA_B_WORDS = 2 };

template <class Tile>
struct MmaRoles {
    int a_row[Tile::A_CHUNKS], a_t[Tile::A_CHUNKS];
    int a_pair[Tile::A_PAIRS];
    int b_col[Tile::B_CHUNKS], b_t[Tile::B_CHUNKS];
    int b_w, b_n;
};

template <class Tile, int A_GATHER, int B_GATHER>
__device__ __forceinline__ MmaRoles<Tile> mma_roles(int tid) {
    MmaRoles<Tile> r;
#pragma unroll
    for (int i = 0; i < Tile::A_PAIRS; ++i) {
        const int idx = tid + i * Tile::THREADS;
        constexpr int PAIRS = Tile::BM / 2;
        const int pair = A_GATHER == MMA_ROW_FAST ? idx % PAIRS : idx / Tile::CHUNKS;
        const int t = A_GATHER == MMA_ROW_FAST ? idx / PAIRS : idx % Tile::CHUNKS;
        r.a_pair[i] = pair;
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            r.a_row[2 * i + h] = (pair / 8) * 16 + pair % 8 + 8 * h;
            r.a_t[2 * i + h] = t;
        }
    }
#pragma unroll
    for (int i = 0; i < Tile::B_CHUNKS; ++i) {
        const int idx = tid + i * Tile::THREADS;
        r.b_col[i] = B_GATHER == MMA_ROW_FAST ? idx % Tile::BN : idx / Tile::CHUNKS;
        r.b_t[i] = B_GATHER == MMA_ROW_FAST ? idx / Tile::BN : idx % Tile::CHUNKS;
    }
    r.b_w = tid % Tile::KWORDS;
    r.b_n = tid / Tile::KWORDS;
    return r;
}

// Blocks per SM the register allocation must allow (__launch_bounds__): one for
// 256-thread tiles (up to 255 registers); for 128-thread tiles two (up to 255; ~160
// used: three resident), or four where that fits in 128 registers without spills
// (four_blocks: the TF32 forward, sm_80 and sm_90; 16 warps an SM to hide the
// gather's latency, for ~10% more instructions; float16 and the TF32 input gradient
// would spill).
__host__ __device__ constexpr int mma_min_blocks(int threads, bool four_blocks) {
    return threads >= 256 ? 1 : (four_blocks ? 4 : 2);
}

// acc = 0: one lane's accumulators, before a main loop.
template <class Tile>
__device__ __forceinline__ void mma_zero(float (&acc)[Tile::MI][Tile::NI][4]) {
#pragma unroll
    for (int mi = 0; mi < Tile::MI; ++mi)
#pragma unroll
        for (int ni = 0; ni < Tile::NI; ++ni)
#pragma unroll
            for (int r = 0; r < 4; ++r) acc[mi][ni][r] = 0.0f;
}

// The whole reduction of one tile into acc (zeroed here). Every thread of the block
// must call it (barriers, warp-wide mma). Registers: reg_a[i*4 + q] is word t + 4q of
// A chunk i; reg_b likewise (chunk gathers) or the word b_w of column b_n + q*B_STEP
// (word gather).
template <typename E, class Tile, class View>
__device__ __forceinline__ void mma_mainloop(
    const View& view, MmaSmem<Tile>& s, float (&acc)[Tile::MI][Tile::NI][4]) {
    using Op = MmaOperand<E>;
    constexpr int PW = Op::PER_WORD;
    constexpr int CH = Tile::CHUNK;
    const int tid = static_cast<int>(threadIdx.x);
    const int lane = tid % 32;
    const int warp = tid / 32;
    const int wm = warp % Tile::WARPS_M;
    const int wn = warp / Tile::WARPS_M;
    const int g = lane / 4;
    const int t = lane % 4;
    const MmaRoles<Tile> roles = mma_roles<Tile, View::A_GATHER, View::B_GATHER>(tid);
    typename View::ARow arow[Tile::A_CHUNKS];
#pragma unroll
    for (int i = 0; i < Tile::A_CHUNKS; ++i) arow[i] = view.a_row(roles.a_row[i]);

    gpuconv::mma_zero<Tile>(acc);

    using Index = typename View::Index;  // int, or long long for the weight gradient
    E reg_a[Tile::A_CHUNKS * CH][PW];
    E reg_b[Tile::B_CHUNKS * CH][PW];
    constexpr int SLAB = Tile::KWORDS * PW;  // reduction terms per slab
    const Index kbeg = view.k_begin;           // this block's reduction range
    const int ktiles = static_cast<int>(ceil_div<Index>(view.k_end - kbeg, SLAB));

    // where the next slab starts: the reduction index (element views) or the view's
    // decoded position (slab views: stepped per slab, no division in the loop)
    using Cursor = typename View::Cursor;
    Cursor cursor = view.template cursor<SLAB>(kbeg);

    auto fetch = [&](const Cursor& k0) {
        if constexpr (View::SLAB_GATHER) {  // the view gathers a whole slab at once
            view.template fetch_slab<Tile, PW>(roles, arow, k0, reg_a, reg_b);
        } else {
#pragma unroll
            for (int i = 0; i < Tile::A_CHUNKS; ++i)
#pragma unroll
                for (int q = 0; q < CH; ++q)
#pragma unroll
                    for (int e = 0; e < PW; ++e)
                        reg_a[i * CH + q][e] =
                            view.load_a(arow[i], k0 + (roles.a_t[i] + 4 * q) * PW + e);
            static_assert(View::B_GATHER != MMA_B_WORDS, "element views gather chunks");
#pragma unroll
            for (int i = 0; i < Tile::B_CHUNKS; ++i)
#pragma unroll
                for (int q = 0; q < CH; ++q)
#pragma unroll
                    for (int e = 0; e < PW; ++e)
                        reg_b[i * CH + q][e] = view.load_b(
                            k0 + (roles.b_t[i] + 4 * q) * PW + e, roles.b_col[i]);
        }
    };
    auto stash = [&](int st) {
#pragma unroll
        for (int i = 0; i < Tile::A_PAIRS; ++i)  // one 16-byte store per k-step
#pragma unroll
            for (int ks = 0; ks < Tile::KSTEPS; ++ks) {
                const int p = roles.a_pair[i];
                unsigned* d = &s.a[st][p][mma_pair_word(p, ks, roles.a_t[2 * i])];
#pragma unroll
                for (int q = 0; q < CH; ++q)  // rows r, r + 8, r, r + 8; words 2ks, 2ks+1
                    d[q] = Op::word(reg_a[(2 * i + q % 2) * CH + 2 * ks + q / 2]);
            }
        if constexpr (View::B_GATHER == MMA_B_WORDS) {
#pragma unroll
            for (int q = 0; q < Tile::B_WORDS; ++q) {
                const int c = roles.b_n + q * Tile::B_STEP;
                s.b[st][c][mma_chunk_word(c, roles.b_w % CH) + roles.b_w / CH] =
                    Op::word(reg_b[q]);
            }
        } else {
#pragma unroll
            for (int i = 0; i < Tile::B_CHUNKS; ++i) {
                const int c = roles.b_col[i];
                unsigned* d = &s.b[st][c][mma_chunk_word(c, roles.b_t[i])];
#pragma unroll
                for (int q = 0; q < CH; ++q) d[q] = Op::word(reg_b[i * CH + q]);
            }
        }
    };

    // word offsets of this lane's fragments in a stage (mma tiles mi = ni = 0)
    int a_frag[Tile::KSTEPS];
#pragma unroll
    for (int ks = 0; ks < Tile::KSTEPS; ++ks) {
        const int pair = wm * Tile::WTM / 16 * 8 + g;
        a_frag[ks] = pair * 2 * Tile::KWORDS + mma_pair_word(pair, ks, t);
    }
    const int b_col = wn * Tile::WTN + g;
    const int b_frag = b_col * Tile::KWORDS + mma_chunk_word(b_col, t);

    fetch(cursor);
    stash(0);
    __syncthreads();  // stage 0 complete before any warp reads it
    for (int kt = 0; kt < ktiles; ++kt) {
        const int cur = kt & 1;
        const bool more = kt + 1 < ktiles;  // block-uniform
        if (more) {  // in flight while the tensor cores work
            view.template advance<SLAB>(cursor);
            fetch(cursor);
        }
        // this lane's fragment words of both k-steps, at lane-constant offsets plus
        // compile-time steps (the swizzles depend on g only: pair & 7 == g, and
        // column (wn*WTN + 8*ni + g) >> 1 & 3 == g >> 1 & 3)
        unsigned fa[Tile::MI][Tile::KSTEPS][CH];  // a[0..3] of mma tile mi, k-step ks
        unsigned fb[Tile::NI][CH];  // b[0..1] of k-step 0, then 1: column g, chunk t
        const unsigned* sa = &s.a[cur][0][0];
        const unsigned* sb = &s.b[cur][0][0];
#pragma unroll
        for (int mi = 0; mi < Tile::MI; ++mi)
#pragma unroll
            for (int ks = 0; ks < Tile::KSTEPS; ++ks) {
                const unsigned* src = sa + a_frag[ks] + mi * 8 * 2 * Tile::KWORDS;
#pragma unroll
                for (int q = 0; q < CH; ++q) fa[mi][ks][q] = src[q];
            }
#pragma unroll
        for (int ni = 0; ni < Tile::NI; ++ni) {
            const unsigned* src = sb + b_frag + ni * 8 * Tile::KWORDS;
#pragma unroll
            for (int q = 0; q < CH; ++q) fb[ni][q] = src[q];
        }
#pragma unroll
        for (int ks = 0; ks < Tile::KSTEPS; ++ks) {
#pragma unroll
            for (int mi = 0; mi < Tile::MI; ++mi) {
#pragma unroll
                for (int ni = 0; ni < Tile::NI; ++ni) {
                    const unsigned b[2] = {fb[ni][2 * ks], fb[ni][2 * ks + 1]};
                    Op::mma(acc[mi][ni], fa[mi][ks], b);
                }
            }
        }
        if (more) stash(cur ^ 1);
        // the other stage is complete before the next slab reads it, and every warp
        // is done reading stage `cur` before slab kt+1 overwrites it
        __syncthreads();
    }
}

// Split-K of the forward and input-gradient kernels: split s of `splits` balanced
// slices of the reduction's slabs (per_split each, one more for the first extra) owns
// the terms [k_begin, k_end) (k_end clipped to kred); 0 <= s < splits.
__device__ __forceinline__ void mma_split_range(int kred, int slab, int split,
                                                long long per_split, int extra,
                                                int& k_begin, int& k_end) {
    const SplitSlice s = split_slice(split, per_split, extra);
    k_begin = static_cast<int>(min(s.begin * slab, static_cast<long long>(kred)));
    k_end = static_cast<int>(min(s.end * slab, static_cast<long long>(kred)));
}

// Loads one chunk of a slab view's gather into r[i*4 + q][e] (word t + 4q, term e):
// element (q, e) at p[(4*q*PW + e)*step], 0 where !ok. The offsets are int: the
// kernels take the slab views only where 32*step fits.
template <typename E, int PW, int N>
__device__ __forceinline__ void mma_load_chunk(E (&r)[N][PW], int i, const E* p,
                                               int step, bool ok) {
#pragma unroll
    for (int q = 0; q < 4; ++q)
#pragma unroll
        for (int e = 0; e < PW; ++e) r[i * 4 + q][e] = ok ? p[(4 * q * PW + e) * step] : E(0);
}

// Whether every offset of mma_load_chunk with this step fits int.
__host__ __device__ constexpr bool mma_step_fits(long long step) {
    return 32 * step <= 2147483647LL;
}

// The epilogue's store of one output value (the FP32 accumulator plus bias): float
// as is; float16 bits (OutT = unsigned short) rounded once, to nearest even
// (float_to_half: cvt.rn.f16.f32, overflow to inf, subnormals kept).
__device__ __forceinline__ void mma_put(float* p, float v) { *p = v; }
__device__ __forceinline__ void mma_put(unsigned short* p, float v) {
    *p = float_to_half(v);
}

// Writes the accumulators of this lane that lie inside the problem when the GEMM
// rows are pixels: row view.m0 + lr is pixel view.p_base + lr counted from image
// view.n_base, P pixels per image; row_out(n, p) points (float* or unsigned short*:
// mma_put) at column view.n0 of pixel p of image n, columns P elements apart (NCHW);
// finish(lc, acc) is the FP32 value stored.
template <class Tile, class View, class RowOut, class Finish>
__device__ __forceinline__ void mma_store_pixels(
    const View& v, int P, int NG, const float (&acc)[Tile::MI][Tile::NI][4],
    RowOut row_out, Finish finish) {
    const int tid = static_cast<int>(threadIdx.x);
    const int lane = tid % 32;
    const int warp = tid / 32;
    const int wm = warp % Tile::WARPS_M;
    const int wn = warp / Tile::WARPS_M;
    const int g = lane / 4;
    const int t = lane % 4;
#pragma unroll
    for (int mi = 0; mi < Tile::MI; ++mi) {
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const int lr = wm * Tile::WTM + mi * 16 + g + 8 * h;
            if (v.m0 + lr >= v.M) continue;  // tail rows of the last tile
            const int pp = v.p_base + lr;
            auto* out = row_out(v.n_base + pp / P, pp % P);  // float* or half bits
#pragma unroll
            for (int ni = 0; ni < Tile::NI; ++ni) {
#pragma unroll
                for (int c = 0; c < 2; ++c) {
                    const int lc = wn * Tile::WTN + ni * 8 + 2 * t + c;
                    if (v.n0 + lc >= NG) continue;  // tail channels of the last tile
                    mma_put(out + static_cast<long long>(lc) * P,
                            finish(lc, acc[mi][ni][2 * h + c]));
                }
            }
        }
    }
}

// Hands every accumulator of this lane to store(local row, local column, value)
// (the weight gradient's epilogue; it checks the bounds).
template <class Tile, class Store>
__device__ __forceinline__ void mma_store(const float (&acc)[Tile::MI][Tile::NI][4],
                                          Store store) {
    const int tid = static_cast<int>(threadIdx.x);
    const int lane = tid % 32;
    const int warp = tid / 32;
    const int wm = warp % Tile::WARPS_M;
    const int wn = warp / Tile::WARPS_M;
#pragma unroll
    for (int mi = 0; mi < Tile::MI; ++mi)
#pragma unroll
        for (int ni = 0; ni < Tile::NI; ++ni)
#pragma unroll
            for (int r = 0; r < 4; ++r)
                store(wm * Tile::WTM + mi * 16 + lane / 4 + 8 * (r / 2),
                      wn * Tile::WTN + ni * 8 + 2 * (lane % 4) + r % 2, acc[mi][ni][r]);
}

// The channel-inner slab views' position in the reduction r = tap*per_tap + c
// (per_tap: C/groups for the forward pass, K/groups for the input gradient, a
// multiple of the slab): the slab's tap, its first channel c, the tap's (dy, dx)
// and the next tap's, loaded a tap ahead (off the critical path). The tap table
// has per_tap >= SLAB entries per tap, so taps[tap + 1] is always in bounds.
struct TapCursor {
    int tap, c;
    int dy, dx;    // taps[tap]
    int ndy, ndx;  // taps[tap + 1]

    __device__ __forceinline__ static TapCursor start(const TapEntry* taps, int k0,
                                                      int per_tap) {
        TapCursor t;
        t.tap = k0 / per_tap;
        t.c = k0 - t.tap * per_tap;
        const TapEntry a = taps[t.tap];
        const TapEntry b = taps[t.tap + 1];
        t.dy = a.dy;
        t.dx = a.dx;
        t.ndy = b.dy;
        t.ndx = b.dx;
        return t;
    }
    template <int SLAB>
    __device__ __forceinline__ void advance(const TapEntry* taps, int per_tap) {
        c += SLAB;
        if (c == per_tap) {
            c = 0;
            ++tap;
            dy = ndy;
            dx = ndx;
            const TapEntry b = taps[tap + 1];  // used a tap from now
            ndy = b.dy;
            ndx = b.dx;
        }
    }
};

}  // namespace gpuconv

// ---------------------------------------------------------------------------------
// forward: the gemm view (conv2d_forward.cu's ForwardGemmView on element type E)
template <typename E>
struct MmaForwardView {
    using Index = int;
    int k_begin, k_end;  // this block's reduction range (split-K: whole slabs)
    static constexpr bool SLAB_GATHER = false;  // element by element (load_a/load_b)
    static constexpr int A_GATHER = gpuconv::MMA_ROW_FAST;    // consecutive pixels
    static constexpr int B_GATHER = gpuconv::MMA_CHUNK_FAST;  // w[k, c..]: c fastest
    using Cursor = int;  // the reduction index of the slab
    template <int SLAB>
    __device__ __forceinline__ Cursor cursor(int k0) const { return k0; }
    template <int SLAB>
    __device__ __forceinline__ void advance(Cursor& k0) const { k0 += SLAB; }
    const E* x;
    const E* w;
    const TapEntry* taps;
    int C, H, W, HW, Cg, Kg, g, sh, sw, pt, pl, OW, OHW, n0, kred;
    long long M, m0;
    long long n_base;  // image of row m0
    int p_base;        // pixel of row m0 within its image

    struct ARow {
        const E* base;  // x[n, g*Cg]
        int ih0;        // oh*sh - pt
        int iw0;        // ow*sw - pl
        bool valid;     // m < M
    };

    __device__ __forceinline__ ARow a_row(int m_local) const {
        ARow row;
        row.valid = m0 + m_local < M;
        const int pp = p_base + m_local;  // < OHW + BM: fits int (planner checks)
        const long long n = n_base + pp / OHW;
        const int p = pp % OHW;
        const int oh = p / OW;
        const int ow = p - oh * OW;
        row.base = x + (n * C + static_cast<long long>(g) * Cg) * HW;
        row.ih0 = oh * sh - pt;
        row.iw0 = ow * sw - pl;
        return row;
    }

    __device__ __forceinline__ E load_a(const ARow& row, int r) const {
        if (!row.valid || r >= kred) return E(0);
        const TapEntry t = taps[r];
        const int ih = row.ih0 + t.dy;
        const int iw = row.iw0 + t.dx;
        if (!gpuconv::in_range(ih, H) || !gpuconv::in_range(iw, W)) return E(0);
        return row.base[static_cast<long long>(t.ch) * HW + ih * W + iw];
    }

    __device__ __forceinline__ E load_b(int r, int n) const {
        const int k = n0 + n;
        if (r >= kred || k >= Kg) return E(0);
        return w[static_cast<long long>(g * Kg + k) * kred + r];
    }
};

// The forward gather when C/groups is a multiple of the slab (16 TF32 / 32 float16
// terms: every ResNet layer but the first): the reduction runs channel-inner,
// r = tap*Cg + c, so a slab lies within one tap. Per slab a thread decodes its tap
// and checks its pixel's bounds once (taps[tap]: the first KH*KW entries of the tap
// table are (0, dy, dx, tap)), then its A elements are one channel plane (H*W)
// apart and its B elements w[k, c, tap] KH*KW apart: an address step and a load
// each, instead of a table lookup, two bounds checks and an index per element.
// The same products, in another fixed order.
template <typename E>
struct MmaForwardSlabView : MmaForwardView<E> {
    static constexpr bool SLAB_GATHER = true;
    int KHKW;

    // slab k0 = tap*Cg + c (gpuconv::TapCursor, Cg entries per tap)
    using Cursor = gpuconv::TapCursor;
    template <int SLAB>
    __device__ __forceinline__ Cursor cursor(int k0) const {
        return Cursor::start(this->taps, k0, this->Cg);  // once per block
    }
    template <int SLAB>
    __device__ __forceinline__ void advance(Cursor& c) const {
        c.template advance<SLAB>(this->taps, this->Cg);  // Cg: a multiple of SLAB
    }

    template <class Tile, int PW>
    __device__ __forceinline__ void fetch_slab(
        const gpuconv::MmaRoles<Tile>& ro,
        const typename MmaForwardView<E>::ARow (&row)[Tile::A_CHUNKS], const Cursor& cur,
        E (&ra)[Tile::A_CHUNKS * 4][PW], E (&rb)[Tile::B_CHUNKS * 4][PW]) const {
        const int tap = cur.tap;
        const int c0 = cur.c;
        const long long hw = this->HW;
#pragma unroll
        for (int i = 0; i < Tile::A_CHUNKS; ++i) {
            const int ih = row[i].ih0 + cur.dy;
            const int iw = row[i].iw0 + cur.dx;
            const bool ok = row[i].valid && gpuconv::in_range(ih, this->H) &&
                            gpuconv::in_range(iw, this->W);
            const E* src = row[i].base + (c0 + ro.a_t[i] * PW) * hw +
                           (ok ? ih * this->W + iw : 0);
            gpuconv::mma_load_chunk<E, PW>(ra, i, src, this->HW, ok);
        }
        const E* wt = this->w + (static_cast<long long>(this->g) * this->Kg * this->Cg +
                                 c0) * KHKW + tap;
#pragma unroll
        for (int i = 0; i < Tile::B_CHUNKS; ++i) {
            const int k = this->n0 + ro.b_col[i];
            const E* wk =
                wt + (static_cast<long long>(k) * this->Cg + ro.b_t[i] * PW) * KHKW;
            gpuconv::mma_load_chunk<E, PW>(rb, i, wk, KHKW, k < this->Kg);
        }
    }
};

// Grid: m_tiles * n_tiles * groups * splits blocks (1-D), block 32*WARPS_M*WARPS_N;
// static smem. taps: KR = C/groups*KH*KW entries (ch = c). bias: float (FP32 add).
// Split-K (splits > 1): split s reduces its balanced slice of the ceil(KR/SLAB)
// slabs (slabs_per_split, extra_slabs) and writes y[s*M*K + ...] (a workspace of
// splits slices; the bias in slice 0), which conv2d_backward_weight_reduce adds in
// split order; one split writes y. OutT: float (y, or the split-K workspace), or
// unsigned short (float16 bits: the accumulator plus bias rounded once, to nearest
// even; one split only: the planner never splits a float16-output launch).
template <typename E, int BM, int BN, int WARPS_M, int WARPS_N, typename OutT = float>
__global__ void __launch_bounds__(32 * WARPS_M * WARPS_N,
                                  gpuconv::mma_min_blocks(32 * WARPS_M * WARPS_N,
                                                          sizeof(E) == 4))
    conv2d_forward_mma(
        const E* __restrict__ x, const E* __restrict__ w, const float* __restrict__ bias,
        const TapEntry* __restrict__ taps, OutT* __restrict__ y, int C, int H, int W, int K,
        int KH, int KW, int groups, int sh, int sw, int pt, int pl, int OH, int OW,
        int has_bias, long long M, int m_tiles, int n_tiles, long long slabs_per_split,
        int extra_slabs) {
    using Tile = gpuconv::MmaTile<BM, BN, WARPS_M, WARPS_N>;
    __shared__ gpuconv::MmaSmem<Tile> s_tile;

    const gpuconv::GemmBlock blk = gpuconv::gemm_block(m_tiles, n_tiles, groups);
    const int m_tile = blk.m_tile, n_tile = blk.n_tile, g = blk.g, split = blk.split;
    constexpr int SLAB = Tile::KWORDS * gpuconv::MmaOperand<E>::PER_WORD;

    MmaForwardView<E> v;
    v.x = x;
    v.w = w;
    v.taps = taps;
    v.C = C;
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
    v.OW = OW;
    v.OHW = OH * OW;
    v.n0 = n_tile * Tile::BN;
    v.kred = v.Cg * KH * KW;
    gpuconv::mma_split_range(v.kred, SLAB, split, slabs_per_split, extra_slabs,
                             v.k_begin, v.k_end);
    v.M = M;
    v.m0 = static_cast<long long>(m_tile) * Tile::BM;
    v.n_base = v.m0 / v.OHW;
    v.p_base = static_cast<int>(v.m0 - v.n_base * v.OHW);

    float acc[Tile::MI][Tile::NI][4];
    if (v.Cg % SLAB == 0 && gpuconv::mma_step_fits(v.HW)) {  // the channel-inner gather
        MmaForwardSlabView<E> fv;
        static_cast<MmaForwardView<E>&>(fv) = v;
        fv.KHKW = KH * KW;
        gpuconv::mma_mainloop<E, Tile>(fv, s_tile, acc);
    } else {
        gpuconv::mma_mainloop<E, Tile>(v, s_tile, acc);
    }
    // split s writes slice s of the workspace (y itself for one split); the bias
    // goes into slice 0 only
    OutT* out = y + split * M * K;
    const bool add_bias = has_bias && split == 0;
    gpuconv::mma_store_pixels<Tile>(
        v, v.OHW, v.Kg, acc,
        [&](long long n, int p) {
            return out + (n * K + static_cast<long long>(g) * v.Kg + v.n0) * v.OHW + p;
        },
        [&](int lc, float val) { return add_bias ? val + bias[g * v.Kg + v.n0 + lc] : val; });
}

// ---------------------------------------------------------------------------------
// input gradient: the gemm view (conv2d_backward_input.cu's BackwardInputGemmView
// on element type E)
template <typename E>
struct MmaBackwardInputView {
    using Index = int;
    int k_begin, k_end;  // this block's reduction range (split-K: whole slabs)
    static constexpr bool SLAB_GATHER = false;
    static constexpr int A_GATHER = gpuconv::MMA_ROW_FAST;  // consecutive pixels
    static constexpr int B_GATHER = gpuconv::MMA_ROW_FAST;  // w[k, c, tap]: c fastest
    using Cursor = int;  // the reduction index of the slab
    template <int SLAB>
    __device__ __forceinline__ Cursor cursor(int k0) const { return k0; }
    template <int SLAB>
    __device__ __forceinline__ void advance(Cursor& k0) const { k0 += SLAB; }
    const E* gy;
    const E* w;
    const TapEntry* taps;
    int K, H, W, HW, Cg, Kg, g, sh, sw, pt, pl, OH, OW, OHW, KHKW, n0, kred;
    long long M, m0;
    long long n_base;  // image of row m0
    int p_base;        // pixel of row m0 within its image

    struct ARow {
        const E* base;  // gy[n, g*Kg]
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

    __device__ __forceinline__ E load_a(const ARow& row, int r) const {
        if (!row.valid || r >= kred) return E(0);
        const TapEntry t = taps[r];
        int oh = row.th0 - t.dy;
        int ow = row.tw0 - t.dx;
        if (oh < 0 || ow < 0) return E(0);
        if (sh != 1) {  // block-uniform branch: only multiples of the stride are hit
            if (oh % sh != 0) return E(0);
            oh /= sh;
        }
        if (sw != 1) {
            if (ow % sw != 0) return E(0);
            ow /= sw;
        }
        if (oh >= OH || ow >= OW) return E(0);
        return row.base[static_cast<long long>(t.ch) * OHW + oh * OW + ow];
    }

    __device__ __forceinline__ E load_b(int r, int n) const {
        const int c = n0 + n;
        if (r >= kred || c >= Cg) return E(0);
        const TapEntry t = taps[r];
        return w[(static_cast<long long>(g * Kg + t.ch) * Cg + c) * KHKW + t.tap];
    }
};

// The input-gradient gather for stride 1 when K/groups is a multiple of the slab:
// channel-inner, r = tap*Kg + k (as MmaForwardSlabView): per slab one tap decode
// and bounds check per pixel (oh = h + pt - dy, ow = w + pl - dx), then A elements
// an output plane (OH*OW) apart and B elements w[k, c, tap] C/groups*KH*KW apart.
template <typename E>
struct MmaBackwardInputSlabView : MmaBackwardInputView<E> {
    static constexpr bool SLAB_GATHER = true;

    // slab k0 = tap*Kg + c (gpuconv::TapCursor, Kg entries per tap)
    using Cursor = gpuconv::TapCursor;
    template <int SLAB>
    __device__ __forceinline__ Cursor cursor(int k0) const {
        return Cursor::start(this->taps, k0, this->Kg);  // once per block
    }
    template <int SLAB>
    __device__ __forceinline__ void advance(Cursor& c) const {
        c.template advance<SLAB>(this->taps, this->Kg);  // Kg: a multiple of SLAB
    }

    template <class Tile, int PW>
    __device__ __forceinline__ void fetch_slab(
        const gpuconv::MmaRoles<Tile>& ro,
        const typename MmaBackwardInputView<E>::ARow (&row)[Tile::A_CHUNKS],
        const Cursor& cur, E (&ra)[Tile::A_CHUNKS * 4][PW],
        E (&rb)[Tile::B_CHUNKS * 4][PW]) const {
        const int tap = cur.tap;
        const int k0c = cur.c;
        const long long ohw = this->OHW;
#pragma unroll
        for (int i = 0; i < Tile::A_CHUNKS; ++i) {
            const int oh = row[i].th0 - cur.dy;
            const int ow = row[i].tw0 - cur.dx;
            const bool ok = row[i].valid && gpuconv::in_range(oh, this->OH) &&
                            gpuconv::in_range(ow, this->OW);
            const E* src = row[i].base + (k0c + ro.a_t[i] * PW) * ohw +
                           (ok ? oh * this->OW + ow : 0);
            gpuconv::mma_load_chunk<E, PW>(ra, i, src, this->OHW, ok);
        }
        const long long kstride = static_cast<long long>(this->Cg) * this->KHKW;
        const E* wt = this->w + (this->g * this->Kg + k0c) * kstride + tap;
#pragma unroll
        for (int i = 0; i < Tile::B_CHUNKS; ++i) {
            const int c = this->n0 + ro.b_col[i];
            const E* wc = wt + ro.b_t[i] * PW * kstride + static_cast<long long>(c) *
                                                               this->KHKW;
            gpuconv::mma_load_chunk<E, PW>(rb, i, wc, static_cast<int>(kstride),
                                           c < this->Cg);
        }
    }
};

// Grid: m_tiles * n_tiles * groups * splits blocks (1-D), block 32*WARPS_M*WARPS_N;
// static smem. taps: KR = K/groups*KH*KW entries (ch = k). Split-K as the forward's:
// split s writes gx[s*M*C + ...]. OutT as the forward's (unsigned short: one split,
// the final gx of a zero-padded problem).
template <typename E, int BM, int BN, int WARPS_M, int WARPS_N, typename OutT = float>
__global__ void __launch_bounds__(32 * WARPS_M * WARPS_N,
                                  gpuconv::mma_min_blocks(32 * WARPS_M * WARPS_N,
                                                          false))
    conv2d_backward_input_mma(
        const E* __restrict__ gy, const E* __restrict__ w,
        const TapEntry* __restrict__ taps, OutT* __restrict__ gx, int C, int H, int W,
        int K, int KH, int KW, int groups, int sh, int sw, int pt, int pl, int OH,
        int OW, long long M, int m_tiles, int n_tiles, long long slabs_per_split,
        int extra_slabs) {
    using Tile = gpuconv::MmaTile<BM, BN, WARPS_M, WARPS_N>;
    __shared__ gpuconv::MmaSmem<Tile> s_tile;

    const gpuconv::GemmBlock blk = gpuconv::gemm_block(m_tiles, n_tiles, groups);
    const int m_tile = blk.m_tile, n_tile = blk.n_tile, g = blk.g, split = blk.split;
    constexpr int SLAB = Tile::KWORDS * gpuconv::MmaOperand<E>::PER_WORD;

    MmaBackwardInputView<E> v;
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
    gpuconv::mma_split_range(v.kred, SLAB, split, slabs_per_split, extra_slabs,
                             v.k_begin, v.k_end);
    v.M = M;
    v.m0 = static_cast<long long>(m_tile) * Tile::BM;
    v.n_base = v.m0 / v.HW;
    v.p_base = static_cast<int>(v.m0 - v.n_base * v.HW);

    float acc[Tile::MI][Tile::NI][4];
    if (sh == 1 && sw == 1 && v.Kg % SLAB == 0 && gpuconv::mma_step_fits(v.OHW) &&
        gpuconv::mma_step_fits(static_cast<long long>(v.Cg) * v.KHKW)) {  // channel-inner
        MmaBackwardInputSlabView<E> sv;
        static_cast<MmaBackwardInputView<E>&>(sv) = v;
        gpuconv::mma_mainloop<E, Tile>(sv, s_tile, acc);
    } else {
        gpuconv::mma_mainloop<E, Tile>(v, s_tile, acc);
    }
    OutT* out = gx + split * M * C;  // slice s of the workspace (gx for one split)
    gpuconv::mma_store_pixels<Tile>(
        v, v.HW, v.Cg, acc,
        [&](long long n, int p) {
            return out + (n * C + static_cast<long long>(g) * v.Cg + v.n0) * v.HW + p;
        },
        [](int, float val) { return val; });
}

// ---------------------------------------------------------------------------------
// weight gradient: A[k][r] = gy[n, g*Kg + k, p], B[r][col] = x[n, g*Cg + c, oh*sh - pt
// + dy, ow*sw - pl + dx] with col = c*KH*KW + tap -> (c, dy, dx) from the tap table
// (ch = c). The reduction runs over slabs that never straddle images: image n owns
// spi = ceil(OH*OW / SLAB) slabs, slab s covers pixels p = (s % spi)*SLAB + j of
// image s / spi (j < SLAB; p >= OH*OW is 0). Per slab a thread decodes (n, p0) once;
// its A elements are then consecutive pixels of one gy plane, and its B elements
// the PW pixels p0 + b_w*PW + e, decoded to (oh, ow) once for all its columns.
template <typename E>
struct MmaBackwardWeightView {
    using Index = long long;
    static constexpr bool SLAB_GATHER = true;
    static constexpr int A_GATHER = gpuconv::MMA_CHUNK_FAST;  // consecutive pixels
    static constexpr int B_GATHER = gpuconv::MMA_B_WORDS;     // one pixel, many columns
    const E* gy;
    const E* x;
    const TapEntry* taps;
    int K, C, H, W, HW, Cg, Kg, g, sh, sw, pt, pl, OW, OHW, n0, m0, kcols, spi;
    long long k_begin, k_end;  // this block's range of padded reduction indices

    struct ARow {
        const E* base;  // gy[0, g*Kg + k]
        bool valid;     // k < Kg
    };

    __device__ __forceinline__ ARow a_row(int m_local) const {
        ARow row;
        const int k = m0 + m_local;
        row.valid = k < Kg;
        row.base = gy + static_cast<long long>(g * Kg + k) * OHW;
        return row;
    }

    struct Cursor {  // slab: pixels p0 .. p0 + SLAB - 1 of image n
        long long n;
        int p0;
    };
    template <int SLAB>
    __device__ __forceinline__ Cursor cursor(long long k0) const {
        const long long slab = k0 / SLAB;  // k0 is a multiple of SLAB (a power of 2)
        Cursor c;
        c.n = slab / spi;  // once per block
        c.p0 = static_cast<int>(slab - c.n * spi) * SLAB;
        return c;
    }
    template <int SLAB>
    __device__ __forceinline__ void advance(Cursor& c) const {
        c.p0 += SLAB;
        if (c.p0 == spi * SLAB) {
            c.p0 = 0;
            ++c.n;
        }
    }

    // (unused: the gather is per slab; kept for the generic mainloop's interface)
    __device__ __forceinline__ E load_a(const ARow&, long long) const { return E(0); }
    __device__ __forceinline__ E load_b(long long, int) const { return E(0); }

    template <class Tile, int PW>
    __device__ __forceinline__ void fetch_slab(
        const gpuconv::MmaRoles<Tile>& ro, const ARow (&row)[Tile::A_CHUNKS],
        const Cursor& cur, E (&ra)[Tile::A_CHUNKS * 4][PW],
        E (&rb)[Tile::B_WORDS][PW]) const {
        const long long n = cur.n;
        const int p0 = cur.p0;
        const int b_w = ro.b_w;
        const int b_n = ro.b_n;
#pragma unroll
        for (int i = 0; i < Tile::A_CHUNKS; ++i) {
            const E* a_src = row[i].base + n * K * OHW + p0;
#pragma unroll
            for (int q = 0; q < 4; ++q)
#pragma unroll
                for (int e = 0; e < PW; ++e) {
                    const int j = (ro.a_t[i] + 4 * q) * PW + e;
                    ra[i * 4 + q][e] = (row[i].valid && p0 + j < OHW) ? a_src[j] : E(0);
                }
        }
        const E* x_img = x + (n * C + static_cast<long long>(g) * Cg) * HW;
#pragma unroll
        for (int e = 0; e < PW; ++e) {
            const int p = p0 + b_w * PW + e;
            const int oh = p / OW;
            const int ihb = oh * sh - pt;
            const int iwb = (p - oh * OW) * sw - pl;
            const bool pv = p < OHW;
#pragma unroll
            for (int q = 0; q < Tile::B_WORDS; ++q) {
                const int cc = n0 + b_n + q * Tile::B_STEP;
                E v = E(0);
                if (pv && cc < kcols) {
                    const TapEntry t = taps[cc];
                    const int ih = ihb + t.dy;
                    const int iw = iwb + t.dx;
                    if (gpuconv::in_range(ih, H) && gpuconv::in_range(iw, W))
                        v = x_img[static_cast<long long>(t.ch) * HW + ih * W + iw];
                }
                rb[q][e] = v;
            }
        }
    }
};

// Grid: m_tiles * n_tiles * groups * splits blocks (1-D), block 32*WARPS_M*WARPS_N;
// static smem. taps: C/groups*KH*KW entries (ch = c). The reduction is N*spi slabs
// of 16 words (16 TF32 / 32 float16 pixels, spi = ceil(OH*OW / SLAB) per image);
// split s owns the slabs [split_begin(s), split_begin(s + 1)) and writes
// gw_out[s*wcount + ...] (wcount = K*C/groups*KH*KW; gw itself for one split).
template <typename E, int BM, int BN, int WARPS_M, int WARPS_N>
__global__ void __launch_bounds__(32 * WARPS_M * WARPS_N,
                                  gpuconv::mma_min_blocks(32 * WARPS_M * WARPS_N,
                                                          false))
    conv2d_backward_weight_mma(
        const E* __restrict__ gy, const E* __restrict__ x,
        const TapEntry* __restrict__ taps, float* __restrict__ gw_out, int C, int H,
        int W, int K, int KH, int KW, int groups, int sh, int sw, int pt, int pl, int OH,
        int OW, int spi, long long slabs_per_split, int extra_slabs, int m_tiles,
        int n_tiles) {
    using Tile = gpuconv::MmaTile<BM, BN, WARPS_M, WARPS_N>;
    constexpr int SLAB = Tile::KWORDS * gpuconv::MmaOperand<E>::PER_WORD;
    __shared__ gpuconv::MmaSmem<Tile> s_tile;

    const gpuconv::GemmBlock blk = gpuconv::gemm_block(m_tiles, n_tiles, groups);
    const int m_tile = blk.m_tile, n_tile = blk.n_tile, g = blk.g, split = blk.split;

    MmaBackwardWeightView<E> v;
    v.gy = gy;
    v.x = x;
    v.taps = taps;
    v.K = K;
    v.C = C;
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
    v.OW = OW;
    v.OHW = OH * OW;
    v.kcols = v.Cg * KH * KW;
    v.spi = spi;
    v.m0 = m_tile * Tile::BM;
    v.n0 = n_tile * Tile::BN;
    const gpuconv::SplitSlice slabs = gpuconv::split_slice(split, slabs_per_split,
                                                           extra_slabs);
    v.k_begin = slabs.begin * SLAB;
    v.k_end = slabs.end * SLAB;

    float acc[Tile::MI][Tile::NI][4];
    gpuconv::mma_mainloop<E, Tile>(v, s_tile, acc);
    const long long wcount = static_cast<long long>(K) * v.kcols;
    float* out = gw_out + split * wcount + static_cast<long long>(g) * v.Kg * v.kcols;
    gpuconv::mma_store<Tile>(acc, [&](int lr, int lc, float val) {
        const int k = v.m0 + lr;
        const int cc = v.n0 + lc;
        if (k < v.Kg && cc < v.kcols) out[static_cast<long long>(k) * v.kcols + cc] = val;
    });
}

// ---------------------------------------------------------------------------------
// The NHWC forward (algorithm 'mma_nhwc'): a cp.async multistage pipeline.
//
//   conv2d_nhwc_pack_input<E>   x (N, C, H, W) -> xh (N, H, W, C): a 32 x 32 shared
//                               transpose per image (reads along pixels, writes along
//                               channels, both coalesced); with round, float rounded to
//                               TF32 here (cvt.rna, once per element, as the other
//                               kernels do on their way into shared memory; without:
//                               the FP32 'nhwc' weight gradient), float16 bits as they
//                               are.
//   conv2d_nhwc_pack_weight<E>  w (K, C/groups, KH, KW) -> wh (K, KH*KW, C/groups)
//                               (with round, rounded likewise; without: the FP32
//                               'nhwc' forward); with flip, the input gradient's
//                               weights: wh (C, KH*KW, K/groups), wh[c, t, k] =
//                               w[g*Kg + k, c - g*Cg, KH*KW - 1 - t] (both taps
//                               reversed, channels swapped within each group).
//   conv2d_forward_mma_nhwc<E, BM, BN, WARPS_M, WARPS_N[, OutT]>
//       the implicit GEMM of conv2d_forward_mma with M = N*OH*OW pixels, NG = K/groups,
//       KR = KH*KW*C/groups, reduction index r = tap*Cg + c (channel-inner), on the
//       packed operands: a slab (16 words: 16 TF32 / 32 float16 channels of one tap)
//       of pixel m is 64 contiguous bytes of xh, and of output channel k 64
//       contiguous bytes of wh, so every thread's share of a slab is whole 16-byte
//       cp.async copies straight into shared memory (zero-filled outside the image
//       and past the tails: src-size 0), no registers on the way. STAGES slabs in
//       flight (NHWC_STAGES: 3 for 128 x 128 tiles, 48 KiB; 4 for 64 x 64, 32 KiB),
//       one barrier per slab. Needs C/groups a multiple of the slab (the planner:
//       gpuconv._plan_conv.nhwc_applies). The input gradient of a stride-1 layer is
//       this kernel on gy with the flipped weights and padding dilation*(KH-1) - pt
//       (gpuconv._plan_conv.plan_conv2d_mma_nhwc).
// Shared rows of 16 words (64 bytes), logical chunk j = words 4j .. 4j+3 of the slab,
// stored at chunk j ^ ((row >> 1) & 3) (16-byte XOR swizzle: the 8 row addresses of
// one ldmatrix matrix, and the copies of one warp, hit distinct bank groups).
// Fragments by ldmatrix.x4: A, k-step ks: rows g / g + 8 of chunks 2ks and 2ks + 1
// (a[0..3]); B: chunks 0..3 of column g (b[] of k-step 0, then of k-step 1). So k-step
// ks takes words 8ks + t (k = t) and 8ks + 4 + t (k = t + 4) (words of two float16
// channels for 'f16'), the same for A and B: the same products as
// conv2d_forward_mma, in another fixed order.
namespace gpuconv {

__host__ __device__ constexpr int nhwc_stages(int bm) { return bm >= 128 ? 3 : 4; }

template <class Tile>
struct alignas(16) NhwcSmem {
    static constexpr int STAGES = nhwc_stages(Tile::BM);
    unsigned a[STAGES][Tile::BM][Tile::KWORDS];
    unsigned b[STAGES][Tile::BN][Tile::KWORDS];
};

// This lane's ldmatrix row addresses of A in an NHWC stage (word offsets, mma tile
// mi = 0 of the warp's rows; the next tiles are 16 rows further): for k-step ks,
// matrix j = lane / 8 is rows 8*(j % 2) + lane % 8 of the tile, chunk 2*ks + j / 2
// (so that d[] = a[0..3]), the chunk swizzled by (row >> 1) & 3, the same for every
// mma tile of the warp (their rows differ by multiples of 16).
template <class Tile>
__device__ __forceinline__ void nhwc_a_rows(int lane, int wm,
                                            int (&a_ld)[Tile::KSTEPS]) {
    const int row = wm * Tile::WTM + 8 * (lane / 8 % 2) + lane % 8;
#pragma unroll
    for (int ks = 0; ks < Tile::KSTEPS; ++ks)
        a_ld[ks] = row * Tile::KWORDS + 4 * ((2 * ks + lane / 16) ^ ((row >> 1) & 3));
}

// Value bits a packed operand holds: float rounded to TF32, float16 bits unchanged.
__device__ __forceinline__ float nhwc_operand(float v) {
    return __uint_as_float(to_tf32(v));
}
__device__ __forceinline__ unsigned short nhwc_operand(unsigned short v) { return v; }

}  // namespace gpuconv

// Grid: ceil(HW/32) * ceil(C/32) * N blocks (1-D: pixel tiles fastest), block 32 x 8.
template <typename E>
__global__ void __launch_bounds__(256) conv2d_nhwc_pack_input(
    const E* __restrict__ x, E* __restrict__ xh, int C, int HW, int p_tiles,
    int c_tiles, int round) {
    __shared__ E tile[32][33];
    int bid = static_cast<int>(blockIdx.x);
    const int pt = bid % p_tiles;
    bid /= p_tiles;
    const int ct = bid % c_tiles;
    const long long n = bid / c_tiles;
    const int tx = static_cast<int>(threadIdx.x);
    const int ty = static_cast<int>(threadIdx.y);
    const E* src = x + n * C * static_cast<long long>(HW);
    E* dst = xh + n * C * static_cast<long long>(HW);
    for (int r = ty; r < 32; r += 8) {  // rows: channels, columns: pixels
        const int c = ct * 32 + r;
        const int p = pt * 32 + tx;
        if (c < C && p < HW) {
            const E v = src[static_cast<long long>(c) * HW + p];
            tile[r][tx] = round ? gpuconv::nhwc_operand(v) : v;
        }
    }
    __syncthreads();  // the tile is staged before it is read transposed
    for (int r = ty; r < 32; r += 8) {  // rows: pixels, columns: channels
        const int p = pt * 32 + r;
        const int c = ct * 32 + tx;
        if (c < C && p < HW) dst[static_cast<long long>(p) * C + c] = tile[tx][r];
    }
}

// Grid-stride over the K*Cg*KH*KW elements of wh. flip: the input gradient's
// weights (see above; then wh is (groups*Cg, KHKW, Kg)).
template <typename E>
__global__ void __launch_bounds__(256) conv2d_nhwc_pack_weight(
    const E* __restrict__ w, E* __restrict__ wh, int K, int Cg, int KHKW, int groups,
    int flip, int round, long long total) {
    const int Kg = K / groups;
    for (long long o = gpuconv::global_thread_index(); o < total;
         o += gpuconv::grid_stride()) {
        long long src;
        if (!flip) {  // o = (k*KHKW + t)*Cg + c
            const int c = static_cast<int>(o % Cg);
            const long long kt = o / Cg;
            const int t = static_cast<int>(kt % KHKW);
            const long long k = kt / KHKW;
            src = (k * Cg + c) * KHKW + t;
        } else {  // o = (cc*KHKW + t)*Kg + k, cc = g*Cg + c
            const int k = static_cast<int>(o % Kg);
            const long long ct = o / Kg;
            const int t = static_cast<int>(ct % KHKW);
            const int cc = static_cast<int>(ct / KHKW);
            const int g = cc / Cg;
            src = ((static_cast<long long>(g) * Kg + k) * Cg + (cc - g * Cg)) * KHKW +
                  (KHKW - 1 - t);
        }
        wh[o] = round ? gpuconv::nhwc_operand(w[src]) : w[src];
    }
}

// Grid: m_tiles * n_tiles * groups * splits blocks (1-D), block 32*WARPS_M*WARPS_N;
// static smem. xh (N, H, W, C), wh (K, KH*KW, C/groups), both packed (above); the
// geometry of a forward pass with dilation (dh, dw) and any (even negative) padding
// pt, pl. Split-K, the bias and OutT as conv2d_forward_mma.
template <typename E, int BM, int BN, int WARPS_M, int WARPS_N, typename OutT = float>
__global__ void __launch_bounds__(32 * WARPS_M * WARPS_N,
                                  gpuconv::mma_min_blocks(32 * WARPS_M * WARPS_N, false))
    conv2d_forward_mma_nhwc(
        const E* __restrict__ xh, const E* __restrict__ wh, const float* __restrict__ bias,
        OutT* __restrict__ y, int C, int H, int W, int K, int KH, int KW, int groups,
        int sh, int sw, int dh, int dw, int pt, int pl, int OH, int OW, int has_bias,
        long long M, int m_tiles, int n_tiles, long long slabs_per_split,
        int extra_slabs) {
    using Tile = gpuconv::MmaTile<BM, BN, WARPS_M, WARPS_N>;
    using Smem = gpuconv::NhwcSmem<Tile>;
    using Op = gpuconv::MmaOperand<E>;
    constexpr int STAGES = Smem::STAGES;
    constexpr int PW = Op::PER_WORD;
    constexpr int KW_ = Tile::KWORDS;            // words per shared row
    constexpr int SLAB = KW_ * PW;               // reduction terms (channels) per slab
    constexpr int CHUNK_E = Tile::CHUNK * PW;    // elements per 16-byte chunk
    constexpr int A_COPIES = Tile::BM * Tile::CHUNKS / Tile::THREADS;
    constexpr int B_COPIES = Tile::BN * Tile::CHUNKS / Tile::THREADS;
    static_assert(Tile::CHUNKS == 4 && Tile::KSTEPS == 2, "16-word slabs");
    __shared__ Smem s;

    const gpuconv::GemmBlock blk = gpuconv::gemm_block(m_tiles, n_tiles, groups);
    const int g = blk.g;
    const int Cg = C / groups;
    const int Kg = K / groups;
    const int kred = Cg * KH * KW;
    const int OHW = OH * OW;
    int k_begin, k_end;
    gpuconv::mma_split_range(kred, SLAB, blk.split, slabs_per_split, extra_slabs,
                             k_begin, k_end);
    const int ktiles = gpuconv::ceil_div(k_end - k_begin, SLAB);

    struct Rows {  // what mma_store_pixels reads
        long long M, m0, n_base;
        int n0, p_base;
    } v;
    v.M = M;
    v.m0 = static_cast<long long>(blk.m_tile) * BM;
    v.n0 = blk.n_tile * BN;
    v.n_base = v.m0 / OHW;
    v.p_base = static_cast<int>(v.m0 - v.n_base * OHW);

    // This thread's copies: chunk idx % 4 of row (pixel) / column (output channel)
    // idx / 4 (four lanes a row: 64 contiguous bytes of global memory; a warp fills
    // 512 contiguous bytes of a stage), stored at chunk (idx % 4) ^ ((row >> 1) & 3)
    // of its shared row (the swizzle that keeps ldmatrix conflict-free).
    const int tid = static_cast<int>(threadIdx.x);
    const E* a_pix[A_COPIES];  // xh[n, 0, 0, g*Cg + 4*PW*chunk]
    int a_ih0[A_COPIES], a_iw0[A_COPIES], a_dst[A_COPIES];
    bool a_row_ok[A_COPIES];
#pragma unroll
    for (int i = 0; i < A_COPIES; ++i) {
        const int idx = tid + i * Tile::THREADS;
        const int row = idx / Tile::CHUNKS;
        const int chunk = idx % Tile::CHUNKS;
        a_dst[i] = row * KW_ + 4 * (chunk ^ ((row >> 1) & 3));
        a_row_ok[i] = v.m0 + row < M;
        const int pp = v.p_base + row;  // < OHW + BM: fits int (planner checks)
        const long long n = a_row_ok[i] ? v.n_base + pp / OHW : 0;
        const int p = pp % OHW;
        const int oh = p / OW;
        a_ih0[i] = oh * sh - pt;
        a_iw0[i] = (p - oh * OW) * sw - pl;
        a_pix[i] = xh + n * H * static_cast<long long>(W) * C +
                   static_cast<long long>(g) * Cg + chunk * CHUNK_E;
    }
    const E* b_src[B_COPIES];  // wh[g*Kg + k, k_begin + 4*PW*chunk], a slab per load
    int b_dst[B_COPIES];
    bool b_ok[B_COPIES];
#pragma unroll
    for (int i = 0; i < B_COPIES; ++i) {
        const int idx = tid + i * Tile::THREADS;
        const int col = idx / Tile::CHUNKS;
        const int chunk = idx % Tile::CHUNKS;
        b_dst[i] = col * KW_ + 4 * (chunk ^ ((col >> 1) & 3));
        b_ok[i] = v.n0 + col < Kg;
        b_src[i] = wh + static_cast<long long>(g * Kg + (b_ok[i] ? v.n0 + col : 0)) * kred +
                   k_begin + chunk * CHUNK_E;
    }

    // The next slab to load: its tap (kh, kw) and first channel (C/groups is a
    // multiple of the slab, so a slab never straddles two taps). Per tap each A copy
    // resolves its pixel's address and bounds once (a_src, a_ok); per slab it adds
    // the channel.
    int ld_tap = k_begin / Cg;
    int ld_c = k_begin - ld_tap * Cg;
    int ld_kh = ld_tap / KW;
    int ld_kw = ld_tap - ld_kh * KW;
    const E* a_src[A_COPIES];
    bool a_ok[A_COPIES];
    auto tap_rows = [&]() {
#pragma unroll
        for (int i = 0; i < A_COPIES; ++i) {
            const int ih = a_ih0[i] + ld_kh * dh;
            const int iw = a_iw0[i] + ld_kw * dw;
            a_ok[i] = a_row_ok[i] && gpuconv::in_range(ih, H) && gpuconv::in_range(iw, W);
            a_src[i] = a_pix[i] + (a_ok[i] ? (static_cast<long long>(ih) * W + iw) * C : 0);
        }
    };
    tap_rows();
    auto load = [&](int st) {
        unsigned* sa = &s.a[st][0][0];
        unsigned* sb = &s.b[st][0][0];
#pragma unroll
        for (int i = 0; i < A_COPIES; ++i)
            gpuconv::cp_async_zfill16(sa + a_dst[i], a_src[i] + (a_ok[i] ? ld_c : 0),
                                      a_ok[i]);
#pragma unroll
        for (int i = 0; i < B_COPIES; ++i) {
            gpuconv::cp_async_zfill16(sb + b_dst[i], b_src[i], b_ok[i]);
            b_src[i] += SLAB;
        }
        ld_c += SLAB;
        if (ld_c == Cg) {  // the next tap
            ld_c = 0;
            if (++ld_kw == KW) {
                ld_kw = 0;
                ++ld_kh;
            }
            tap_rows();
        }
    };

    float acc[Tile::MI][Tile::NI][4];
    gpuconv::mma_zero<Tile>(acc);

    // This lane's ldmatrix rows (word offsets in a stage; mma tiles mi = ni = 0). A,
    // k-step ks: matrix j = lane / 8 is rows 8*(j % 2) + lane % 8 of the mma tile,
    // chunk 2*ks + j / 2, so d[] = a[0..3]. B: matrix j is chunk j of columns
    // lane % 8, so d[] = b[0], b[1] of k-step 0, then of k-step 1. The swizzle
    // depends on (row >> 1) & 3 only, the same for every mma tile of the warp.
    const int lane = tid % 32;
    const int warp = tid / 32;
    const int wm = warp % WARPS_M;
    const int wn = warp / WARPS_M;
    const int mj = lane / 8;
    const int mr = lane % 8;
    int a_ld[Tile::KSTEPS];
    gpuconv::nhwc_a_rows<Tile>(lane, wm, a_ld);
    const int b_row = wn * Tile::WTN + mr;
    const int b_ld = b_row * KW_ + 4 * (mj ^ ((b_row >> 1) & 3));

    gpuconv::cp_async_pipeline<STAGES>(ktiles, load, [&](int cur) {
        const unsigned* sa = &s.a[cur][0][0];
        const unsigned* sb = &s.b[cur][0][0];
        unsigned fb[Tile::NI][4];
#pragma unroll
        for (int ni = 0; ni < Tile::NI; ++ni)
            gpuconv::ldmatrix_x4(fb[ni], sb + b_ld + ni * 8 * KW_);
#pragma unroll
        for (int ks = 0; ks < Tile::KSTEPS; ++ks)
#pragma unroll
            for (int mi = 0; mi < Tile::MI; ++mi) {
                unsigned a[4];
                gpuconv::ldmatrix_x4(a, sa + a_ld[ks] + mi * 16 * KW_);
#pragma unroll
                for (int ni = 0; ni < Tile::NI; ++ni) {
                    const unsigned b[2] = {fb[ni][2 * ks], fb[ni][2 * ks + 1]};
                    Op::mma(acc[mi][ni], a, b);
                }
            }
    });

    OutT* out = y + blk.split * M * K;
    const bool add_bias = has_bias && blk.split == 0;
    gpuconv::mma_store_pixels<Tile>(
        v, OHW, Kg, acc,
        [&](long long n, int p) {
            return out + (n * K + static_cast<long long>(g) * Kg + v.n0) * OHW + p;
        },
        [&](int lc, float val) { return add_bias ? val + bias[g * Kg + v.n0 + lc] : val; });
}

// ---------------------------------------------------------------------------------
// The NHWC weight gradient (algorithm 'mma_nhwc'): the same pipeline, reduction over
// pixels.
//
//   conv2d_nhwc_pack_gy<E>   gy (N, K, OH, OW) -> gyp (K, N, OHWp): each output
//                            channel's pixels image by image, every image padded
//                            with zeros to OHWp (a multiple of the slab), rounded as
//                            the packs above.
//   conv2d_backward_weight_mma_nhwc<E, BM, BN, WARPS_M, WARPS_N>
//       gw = sum over pixels of gy x im2col(x): M = K/groups output channels, NG =
//       KH*KW*C/groups columns (tap*Cg + c, the column order of the packed weights),
//       reduction over N*OHWp pixels, a slab (16 TF32 / 32 float16 pixels) never
//       straddling two images. A (gyp) as the forward's A: a row's slab is 64
//       contiguous bytes, ldmatrix fragments. B is k-major: shared row k is the
//       slab's pixel k and holds the tile's BN columns, each 16-byte chunk (4 TF32 /
//       8 float16 channels of one tap) one cp.async from xh (NHWC, pack_input) at the
//       pixel's input position for that tap, zero outside the image and past the
//       image's last pixel; fragments by scalar loads (TF32: b[r] = B[t + 4r][g])
//       or ldmatrix.trans (float16). Chunk swizzle by the row: (k & 3) << 1 (TF32:
//       the 32 lanes' scalar loads of one k-step hit 32 banks) or k & 7 (float16:
//       ldmatrix.trans reads 8 consecutive rows of one chunk). Split-K over balanced
//       ranges of whole slabs; split s writes gw_out[s*wcount + ...] in gw's layout
//       (K, C/groups, KH, KW), added in split order by
//       conv2d_backward_weight_reduce<float> (one split: gw itself). C/groups a
//       multiple of the chunk (4 TF32 / 8 float16 channels).
template <typename E>
__global__ void __launch_bounds__(256) conv2d_nhwc_pack_gy(
    const E* __restrict__ gy, E* __restrict__ gyp, int N, int K, int OHW, int OHWp,
    long long total) {
    for (long long o = gpuconv::global_thread_index(); o < total;
         o += gpuconv::grid_stride()) {
        const int p = static_cast<int>(o % OHWp);
        const long long kn = o / OHWp;
        const int n = static_cast<int>(kn % N);
        const long long k = kn / N;
        gyp[o] = p < OHW ? gpuconv::nhwc_operand(gy[(n * static_cast<long long>(K) + k) *
                                                    OHW + p])
                         : E(0);
    }
}

namespace gpuconv {

template <class Tile, typename E>
struct alignas(16) NhwcWgradSmem {
    static constexpr int STAGES = nhwc_stages(Tile::BM);
    static constexpr int PW = MmaOperand<E>::PER_WORD;
    static constexpr int BROWS = Tile::KWORDS * PW;  // pixels per slab
    static constexpr int BWORDS = Tile::BN / PW;     // words per B row
    unsigned a[STAGES][Tile::BM][Tile::KWORDS];
    unsigned b[STAGES][BROWS][BWORDS];
};

// The 16-byte chunk of B row k holding logical chunk c.
template <typename E>
__device__ __forceinline__ int nhwc_wgrad_chunk(int k, int c) {
    return sizeof(E) == 4 ? c ^ ((k & 3) << 1) : c ^ (k & 7);
}

}  // namespace gpuconv

// Grid: m_tiles * n_tiles * groups * splits blocks (1-D), block 32*WARPS_M*WARPS_N;
// static smem. gyp (K, N, OHWp) and xh (N, H, W, C) packed; spi = OHWp / SLAB slabs
// per image; split s owns slabs [split_begin(s), split_begin(s + 1)).
template <typename E, int BM, int BN, int WARPS_M, int WARPS_N>
__global__ void __launch_bounds__(32 * WARPS_M * WARPS_N,
                                  gpuconv::mma_min_blocks(32 * WARPS_M * WARPS_N, false))
    conv2d_backward_weight_mma_nhwc(
        const E* __restrict__ gyp, const E* __restrict__ xh, float* __restrict__ gw_out,
        int N, int C, int H, int W, int K, int KH, int KW, int groups, int sh, int sw,
        int dh, int dw, int pt, int pl, int OH, int OW, int spi, long long slabs_per_split,
        int extra_slabs, int m_tiles, int n_tiles) {
    using Tile = gpuconv::MmaTile<BM, BN, WARPS_M, WARPS_N>;
    using Smem = gpuconv::NhwcWgradSmem<Tile, E>;
    using Op = gpuconv::MmaOperand<E>;
    constexpr int STAGES = Smem::STAGES;
    constexpr int PW = Op::PER_WORD;
    constexpr int KW_ = Tile::KWORDS;
    constexpr int SLAB = KW_ * PW;               // pixels per slab
    constexpr int CHUNK_E = Tile::CHUNK * PW;    // elements per 16-byte chunk
    constexpr int CPR = Smem::BWORDS / Tile::CHUNK;  // B chunks per row
    constexpr int A_COPIES = Tile::BM * Tile::CHUNKS / Tile::THREADS;
    constexpr int B_COPIES = SLAB * CPR / Tile::THREADS;
    constexpr int B_ROW_STEP = Tile::THREADS / CPR;
    static_assert(Tile::THREADS % CPR == 0 && B_COPIES * B_ROW_STEP == SLAB, "B tiles");
    __shared__ Smem s;

    const gpuconv::GemmBlock blk = gpuconv::gemm_block(m_tiles, n_tiles, groups);
    const int g = blk.g;
    const int Cg = C / groups;
    const int Kg = K / groups;
    const int KHKW = KH * KW;
    const int ncols = Cg * KHKW;
    const int OHW = OH * OW;
    const int OHWp = spi * SLAB;
    const int m0 = blk.m_tile * BM;
    const int n0 = blk.n_tile * BN;
    const gpuconv::SplitSlice slabs =
        gpuconv::split_slice(blk.split, slabs_per_split, extra_slabs);
    const long long s_begin = slabs.begin;
    const int ktiles = static_cast<int>(slabs.end - slabs.begin);

    const int tid = static_cast<int>(threadIdx.x);
    // A copies: chunk idx % 4 of output channel m0 + idx / 4 (as the forward's A)
    const E* a_src[A_COPIES];  // gyp[g*Kg + m, 0, 4*PW*chunk]
    int a_dst[A_COPIES];
    bool a_ok[A_COPIES];
#pragma unroll
    for (int i = 0; i < A_COPIES; ++i) {
        const int idx = tid + i * Tile::THREADS;
        const int row = idx / Tile::CHUNKS;
        const int chunk = idx % Tile::CHUNKS;
        a_dst[i] = row * KW_ + 4 * (chunk ^ ((row >> 1) & 3));
        a_ok[i] = m0 + row < Kg;
        a_src[i] = gyp + static_cast<long long>(g * Kg + (a_ok[i] ? m0 + row : 0)) * N *
                             OHWp + chunk * CHUNK_E;
    }
    // B copies: logical chunk idx % CPR (a fixed column chunk: 4 / 8 channels of one
    // tap) of pixel rows idx / CPR + i*B_ROW_STEP
    const int b_chunk = tid % CPR;
    const int b_row0 = tid / CPR;
    const int col = n0 + b_chunk * CHUNK_E;  // tap*Cg + c, c a multiple of CHUNK_E
    const gpuconv::NhwcColumn bcol(col, ncols, Cg, g, KW, dh, dw, pt, pl);
    const E* b_base = xh + bcol.offset;
    const gpuconv::FastDiv div_ow(OW);

    // the next slab to load: image ld_n, first pixel ld_p (a multiple of SLAB)
    long long ld_n = s_begin / spi;
    int ld_p = static_cast<int>(s_begin - ld_n * spi) * SLAB;
    auto load = [&](int st) {
        unsigned* sa = &s.a[st][0][0];
        unsigned* sb = &s.b[st][0][0];
        const long long a_off = ld_n * OHWp + ld_p;
#pragma unroll
        for (int i = 0; i < A_COPIES; ++i)
            gpuconv::cp_async_zfill16(sa + a_dst[i], a_src[i] + a_off, a_ok[i]);
        const E* xn = b_base + ld_n * H * static_cast<long long>(W) * C;
#pragma unroll
        for (int i = 0; i < B_COPIES; ++i) {
            const int k = b_row0 + i * B_ROW_STEP;
            const int p = ld_p + k;
            const int oh = div_ow.div(p);
            const int ih = oh * sh + bcol.dy;
            const int iw = (p - oh * OW) * sw + bcol.dx;
            const bool ok = bcol.ok && p < OHW && gpuconv::in_range(ih, H) &&
                            gpuconv::in_range(iw, W);
            const E* src = xn + (ok ? (static_cast<long long>(ih) * W + iw) * C : 0);
            gpuconv::cp_async_zfill16(
                sb + k * Smem::BWORDS + 4 * gpuconv::nhwc_wgrad_chunk<E>(k, b_chunk), src,
                ok);
        }
        ld_p += SLAB;
        if (ld_p == OHWp) {  // the next image
            ld_p = 0;
            ++ld_n;
        }
    };

    float acc[Tile::MI][Tile::NI][4];
    gpuconv::mma_zero<Tile>(acc);

    const int lane = tid % 32;
    const int warp = tid / 32;
    const int wm = warp % WARPS_M;
    const int wn = warp / WARPS_M;
    const int mj = lane / 8;
    const int mr = lane % 8;
    int a_ld[Tile::KSTEPS];  // as the forward kernel
    gpuconv::nhwc_a_rows<Tile>(lane, wm, a_ld);

    gpuconv::cp_async_pipeline<STAGES>(ktiles, load, [&](int cur) {
        const unsigned* sa = &s.a[cur][0][0];
        const unsigned* sb = &s.b[cur][0][0];
#pragma unroll
        for (int ks = 0; ks < Tile::KSTEPS; ++ks) {
            unsigned fb[Tile::NI][2];
            if constexpr (sizeof(E) == 4) {  // TF32: b[r] = B[8ks + t + 4r][col g]
                const int t = lane % 4;
#pragma unroll
                for (int ni = 0; ni < Tile::NI; ++ni) {
                    const int n = wn * Tile::WTN + ni * 8 + lane / 4;
#pragma unroll
                    for (int r = 0; r < 2; ++r) {
                        const int k = 8 * ks + t + 4 * r;
                        fb[ni][r] = sb[k * Smem::BWORDS +
                                       4 * gpuconv::nhwc_wgrad_chunk<E>(k, n / 4) + n % 4];
                    }
                }
            } else {  // float16: ldmatrix.trans, two n blocks per x4
#pragma unroll
                for (int ni = 0; ni < Tile::NI; ni += 2) {
                    const int k = 16 * ks + 8 * (mj % 2) + mr;
                    const int c = (wn * Tile::WTN + (ni + mj / 2) * 8) / 8;
                    unsigned d[4];
                    gpuconv::ldmatrix_x4<true>(
                        d, sb + k * Smem::BWORDS + 4 * gpuconv::nhwc_wgrad_chunk<E>(k, c));
                    fb[ni][0] = d[0];
                    fb[ni][1] = d[1];
                    fb[ni + 1][0] = d[2];
                    fb[ni + 1][1] = d[3];
                }
            }
#pragma unroll
            for (int mi = 0; mi < Tile::MI; ++mi) {
                unsigned a[4];
                gpuconv::ldmatrix_x4(a, sa + a_ld[ks] + mi * 16 * KW_);
#pragma unroll
                for (int ni = 0; ni < Tile::NI; ++ni) Op::mma(acc[mi][ni], a, fb[ni]);
            }
        }
    });

    const long long wcount = static_cast<long long>(K) * ncols;
    float* out = gw_out + blk.split * wcount + static_cast<long long>(g) * Kg * ncols;
    gpuconv::mma_store<Tile>(acc, [&](int lr, int lc, float val) {
        const int k = m0 + lr;
        const int cc = n0 + lc;  // tap*Cg + c
        if (k < Kg && cc < ncols) {
            const int tap = cc / Cg;
            out[static_cast<long long>(k) * ncols + (cc - tap * Cg) * KHKW + tap] = val;
        }
    });
}

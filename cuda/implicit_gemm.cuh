// implicit_gemm.cuh: the register-blocked implicit-GEMM main loop shared by the
// `tiled_regblock` variants of the conv2d passes.
//
// A conv2d pass is a GEMM C[M x NG] = A[M x KR] * B[KR x NG] whose operands are
// never materialised: A and B are gathered from the tensors on the fly by a
// "gemm view" (one per pass, in its .cu file) through two functions:
//   view.a_row(m_local)  -> per-thread state of row m (decomposed once per block),
//   view.load_a(row, r)  -> A[m, r], 0 outside the problem (padding, tails),
//   view.load_b(r, n)    -> B[r, n0 + n], 0 outside the problem,
//   view.kred            -> KR, the reduction length.
// forward:         M = N*OH*OW pixels, NG = K/groups,  KR = C/groups*KH*KW
// backward_input:  M = N*H*W pixels,   NG = C/groups,  KR = K/groups*KH*KW
//
// Strategy (one thread block computes a BM x BN tile of C):
//   - THREADS = TX*TY threads; thread (tx, ty) keeps a TM x TN accumulator block in
//     registers: rows  (q*TX*4 + tx*4 + i), cols (q*TY*4 + ty*4 + j) for 4-wide
//     chunks q, so its shared-memory reads are 4 consecutive elements (vectorisable)
//     and the warp's reads of A are conflict-free while those of B are broadcasts.
//   - The reduction advances BK = 8 at a time: the A slice (BK x BM) and the B slice
//     (BK x BN) are staged in shared memory, double-buffered; the gathers of the
//     next slice are issued into registers before the FMAs of the current one
//     (latency hiding), then stored to the other buffer: one barrier per slice.
//   - Every thread performs acc = fma(A[m, r], B[r, n], acc) for r = 0, 1, ..., KR-1
//     in increasing order, the same order as the `naive` and `tiled` kernels, so on
//     finite inputs all variants give bit-identical results (tails contribute
//     fma(0, 0, acc) == acc).
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
    static constexpr int A_STEP = THREADS / BM;       // r-rows covered per A pass
    static constexpr int A_LOADS = BK / A_STEP;       // A elements per thread
    static constexpr int B_STEP = THREADS / BK;       // n-columns covered per B pass
    static constexpr int B_LOADS = BN / B_STEP;       // B elements per thread
    static_assert(TM % 4 == 0 && TN % 4 == 0, "thread blocks are 4-wide chunks");
    static_assert(THREADS % BM == 0 && BK % A_STEP == 0, "A slice must tile the block");
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

// Runs the whole reduction of one tile into acc (which the caller zeroes with
// regblock_zero and then writes out with regblock_row/regblock_col, or with
// regblock_store_pixels). Every thread of the block must call it (it contains
// barriers).
template <typename T, class Tile, class View>
__device__ __forceinline__ void regblock_mainloop(
    const View& view, RegblockSmem<T, Tile>& s, T (&acc)[Tile::TM][Tile::TN]) {
    const int tid = static_cast<int>(threadIdx.x);
    const int tx = tid % Tile::TX;
    const int ty = tid / Tile::TX;
    // Gather roles: each thread fetches A elements of one row m at A_LOADS reduction
    // indices, and B elements of one reduction index r at B_LOADS columns.
    const int a_m = tid % Tile::BM;
    const int a_r = tid / Tile::BM;
    const int b_r = tid % Tile::BK;
    const int b_n = tid / Tile::BK;
    const typename View::ARow arow = view.a_row(a_m);

    T reg_a[Tile::A_LOADS];
    T reg_b[Tile::B_LOADS];
    const int kred = view.kred;
    const int ktiles = ceil_div(kred, Tile::BK);

    auto fetch = [&](int k0) {
#pragma unroll
        for (int q = 0; q < Tile::A_LOADS; ++q)
            reg_a[q] = view.load_a(arow, k0 + a_r + q * Tile::A_STEP);
#pragma unroll
        for (int q = 0; q < Tile::B_LOADS; ++q)
            reg_b[q] = view.load_b(k0 + b_r, b_n + q * Tile::B_STEP);
    };
    auto stash = [&](int stage) {
#pragma unroll
        for (int q = 0; q < Tile::A_LOADS; ++q)
            s.a[stage][a_r + q * Tile::A_STEP][a_m] = reg_a[q];
#pragma unroll
        for (int q = 0; q < Tile::B_LOADS; ++q)
            s.b[stage][b_r][b_n + q * Tile::B_STEP] = reg_b[q];
    };

    fetch(0);
    stash(0);
    __syncthreads();  // stage 0 complete before any thread reads it
    for (int kt = 0; kt < ktiles; ++kt) {
        const int cur = kt & 1;
        const bool more = kt + 1 < ktiles;  // block-uniform
        if (more) fetch((kt + 1) * Tile::BK);  // next slice in flight during the FMAs
#pragma unroll
        for (int kk = 0; kk < Tile::BK; ++kk) {
            T a[Tile::TM];
            T b[Tile::TN];
#pragma unroll
            for (int i = 0; i < Tile::TM; ++i) a[i] = s.a[cur][kk][regblock_row<Tile>(tx, i)];
#pragma unroll
            for (int j = 0; j < Tile::TN; ++j) b[j] = s.b[cur][kk][regblock_col<Tile>(ty, j)];
#pragma unroll
            for (int i = 0; i < Tile::TM; ++i)
#pragma unroll
                for (int j = 0; j < Tile::TN; ++j) acc[i][j] = fma(a[i], b[j], acc[i][j]);
        }
        if (more) stash(cur ^ 1);
        // The other stage is complete before the next iteration reads it, and every
        // thread is done reading stage `cur` before iteration kt+1 overwrites it.
        __syncthreads();
    }
}

// Writes out the accumulators of this thread that lie inside the problem (rows
// < view.M, columns < NG) when the rows are pixels: row view.m0 + lr is pixel
// view.p_base + lr counted from the start of image view.n_base, P pixels per image.
// row_out(n, p) points at column view.n0 of pixel p of image n, the columns P
// elements apart (NCHW); finish(lc, acc) is the value stored in column view.n0 + lc.
template <typename T, class Tile, class View, class RowOut, class Finish>
__device__ __forceinline__ void regblock_store_pixels(
    const View& v, int P, int NG, const T (&acc)[Tile::TM][Tile::TN], RowOut row_out,
    Finish finish) {
    const int tx = static_cast<int>(threadIdx.x) % Tile::TX;
    const int ty = static_cast<int>(threadIdx.x) / Tile::TX;
#pragma unroll
    for (int i = 0; i < Tile::TM; ++i) {
        const int lr = regblock_row<Tile>(tx, i);
        if (v.m0 + lr >= v.M) continue;  // tail rows of the last tile
        const int pp = v.p_base + lr;
        T* out = row_out(v.n_base + pp / P, pp % P);
#pragma unroll
        for (int j = 0; j < Tile::TN; ++j) {
            const int lc = regblock_col<Tile>(ty, j);
            if (v.n0 + lc >= NG) continue;  // tail channels of the last tile
            out[static_cast<long long>(lc) * P] = finish(lc, acc[i][j]);
        }
    }
}

}  // namespace gpuconv

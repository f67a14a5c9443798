// common.cuh: device helpers shared by every gpuconv kernel source.
//
// Included by each cuda/*.cu. It must compile in three settings:
//   - NVRTC through CuPy (no host headers at all: no <cstdint>, no <cmath>),
//   - nvcc (the compile test: tests/test_nvcc.py),
//   - g++ through the CPU emulation harness, which defines GPUCONV_EMULATED and
//     includes cuda/emu_runtime.h first (it supplies the CUDA dialect).
// So: plain C++17, `int`/`long long`, no library calls besides CUDA built-ins.
//
// Index arithmetic convention: a single extent (N, C, H, W, K, OH, OW, ...) and the
// plane sizes H*W and OH*OW fit in `int` (the planner checks it); any product that
// spans planes or images (n*C*H*W, the flat element index of a tensor) is formed
// in `long long` through the helpers below.
#pragma once

#ifndef GPUCONV_EMULATED
// The dynamic shared-memory buffer of a launch, viewed as an array of T.
// The emulation harness supplies its own definition (per-block, poisoned memory).
#define GPUCONV_DYNAMIC_SHARED(T, name)                                   \
    extern __shared__ __align__(16) unsigned char gpuconv_dyn_smem[];     \
    T* name = reinterpret_cast<T*>(gpuconv_dyn_smem)
#endif

namespace gpuconv {

// Integer ceil(a / b) for a >= 0, b > 0.
template <typename I>
__host__ __device__ __forceinline__ I ceil_div(I a, I b) {
    return (a + b - 1) / b;
}

// Integer floor(a / b) for any a and b > 0 (C++ division truncates toward zero).
__host__ __device__ __forceinline__ int floor_div(int a, int b) {
    const int q = a / b;
    return (q * b > a) ? q - 1 : q;
}

// True when 0 <= i < n, with one unsigned comparison.
__host__ __device__ __forceinline__ bool in_range(int i, int n) {
    return static_cast<unsigned>(i) < static_cast<unsigned>(n);
}

// Flat offset of element (a, b, i, j) of a contiguous (A, B, P, Q) tensor whose
// plane P*Q is `plane` elements: ((a*B + b) * plane + i*Q + j), in 64 bits.
__host__ __device__ __forceinline__ long long offset4(
    long long a, int B, int b, int plane, int i, int Q, int j) {
    return (a * B + b) * static_cast<long long>(plane) + static_cast<long long>(i * Q + j);
}

// 64-bit index of this thread in a 1-D grid, and the stride of a grid-stride loop.
__device__ __forceinline__ long long global_thread_index() {
    return static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
}

__device__ __forceinline__ long long grid_stride() {
    return static_cast<long long>(gridDim.x) * blockDim.x;
}

// Linear thread id inside a (possibly 2-D) block.
__device__ __forceinline__ int block_thread_index() {
    return static_cast<int>(threadIdx.y * blockDim.x + threadIdx.x);
}

__device__ __forceinline__ int block_threads() {
    return static_cast<int>(blockDim.x * blockDim.y * blockDim.z);
}

// Split s of a balanced split-K (gpuconv._plan_conv._balanced: `per_split` units
// each, one more for the first `extra` splits) owns the units [begin, end).
struct SplitSlice {
    long long begin, end;
};

__device__ __forceinline__ SplitSlice split_slice(int split, long long per_split,
                                                  int extra) {
    return {split * per_split + min(split, extra),
            (split + 1) * per_split + min(split + 1, extra)};
}

// The tile of a 1-D grid of GEMM blocks: m tiles fastest, then n tiles, then groups,
// then split-K slices (the order every implicit-GEMM launcher plans).
struct GemmBlock {
    int m_tile, n_tile, g, split;
};

__device__ __forceinline__ GemmBlock gemm_block(int m_tiles, int n_tiles, int groups) {
    int bid = static_cast<int>(blockIdx.x);
    GemmBlock b;
    b.m_tile = bid % m_tiles;
    bid /= m_tiles;
    b.n_tile = bid % n_tiles;
    bid /= n_tiles;
    b.g = bid % groups;
    b.split = bid / groups;
    return b;
}

// Stages the window src[r0 .. r0+s_rows-1][c0 .. c0+s_cols-1] of a rows x cols
// row-major plane into s (s_size = s_rows*s_cols elements, row-major), zero where the
// window leaves the plane (which *is* the zero padding). The block's threads share
// the work: thread tid of nthreads stores elements tid, tid + nthreads, ...
template <typename T>
__device__ __forceinline__ void stage_window(
    T* s, const T* src, int r0, int c0, int rows, int cols, int s_size, int s_cols,
    int tid, int nthreads) {
    for (int i = tid; i < s_size; i += nthreads) {
        const int r = i / s_cols;
        const int col = i - r * s_cols;
        const int sr = r0 + r;
        const int sc = c0 + col;
        s[i] = (in_range(sr, rows) && in_range(sc, cols)) ? src[sr * cols + sc] : T(0);
    }
}

// Hides the origin of a precomputed offset from the optimiser, so that nvcc keeps it
// in a register instead of recomputing it (a multiply and shifts) at every use in a
// main loop. An empty asm statement: no instruction; a no-op off the device (the
// emulator, host code).
__host__ __device__ __forceinline__ void keep_in_register(long long& v) {
#if defined(__CUDA_ARCH__)
    asm volatile("" : "+l"(v));
#else
    (void)v;
#endif
}

__host__ __device__ __forceinline__ void keep_in_register(int& v) {
#if defined(__CUDA_ARCH__)
    asm volatile("" : "+r"(v));
#else
    (void)v;
#endif
}

template <typename T>
__host__ __device__ __forceinline__ void keep_in_register(const T*& p) {
#if defined(__CUDA_ARCH__)
    asm volatile("" : "+l"(p));
#else
    (void)p;
#endif
}

// Division by a runtime divisor d >= 1 through a multiply and a shift (the
// round-up method with a 32-bit magic number, as CUTLASS's FastDivmod), exact for
// dividends 0 <= n < 2^31. Set up once outside a loop; div() is 2-3 instructions.
struct FastDiv {
    int d;
    unsigned mul;
    int shift;

    __host__ __device__ explicit FastDiv(int divisor) : d(divisor), mul(0), shift(0) {
        if (d > 1) {
            int l = 0;  // ceil(log2(d))
            while ((1u << l) < static_cast<unsigned>(d)) ++l;
            mul = static_cast<unsigned>(((1ull << (31 + l)) + d - 1) / d);
            shift = l - 1;
        }
    }

    __device__ __forceinline__ int div(int n) const {
        return d == 1 ? n : static_cast<int>(__umulhi(static_cast<unsigned>(n), mul) >> shift);
    }
};

// The cp.async pipeline of the NHWC tensor-core kernels (cuda/conv2d_mma.cu):
//   cp_async_zfill16(s, g, ok)  16 bytes from global g to shared s (both 16-byte
//                               aligned; L2 only, .cg), or 16 zero bytes where !ok
//                               (src-size 0: g is not read; the callers pass a
//                               valid address anyway; s and g 16-byte aligned
//                               either way: PTX "Addresses as Operands", a
//                               misaligned address faults on a GPU, and the
//                               emulator reports it);
//   cp_async_ignore16(s, g, ok) the same with PTX's ignore-src predicate: where
//                               !ok the source is "ignored completely" (PTX ISA,
//                               cp.async), so g may lie outside the tensor (a
//                               padding tap), still 16-byte aligned: no select of
//                               a safe address per copy;
//   cp_async_commit()           closes this thread's open group of copies;
//   cp_async_wait<N>()          waits until at most the newest N committed groups
//                               are pending (cp.async.wait_group N).
// A copy is visible to its thread after the wait that covers its group, to the block
// after the barrier that follows. Emulated (cuda/emu_runtime.h) deferred, the
// copies landing at the wait, not before, or with EmulatedDevice(cp_async='eager')
// at the issue: the two ends of what a GPU may do; elsewhere (the host pass, before
// sm_80) plain copies, complete at once.
__device__ __forceinline__ void cp_async_zfill16(void* s, const void* g, bool ok) {
#if defined(GPUCONV_EMULATED)
    gpuconv_emu::cp_async_issue(s, g, 16, !ok, __FILE__, __LINE__);
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    const unsigned sa = static_cast<unsigned>(__cvta_generic_to_shared(s));
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(sa), "l"(g),
                 "r"(ok ? 16 : 0)
                 : "memory");
#else
    struct alignas(16) V { unsigned w[4]; };
    *static_cast<V*>(s) = ok ? *static_cast<const V*>(g) : V{{0u, 0u, 0u, 0u}};
#endif
}

__device__ __forceinline__ void cp_async_ignore16(void* s, const void* g, bool ok) {
#if defined(GPUCONV_EMULATED)
    gpuconv_emu::cp_async_issue(s, g, 16, !ok, __FILE__, __LINE__);
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    const unsigned sa = static_cast<unsigned>(__cvta_generic_to_shared(s));
    asm volatile(
        "{\n .reg .pred ignore;\n setp.eq.u32 ignore, %2, 0;\n"
        " cp.async.cg.shared.global [%0], [%1], 16, ignore;\n}\n" ::"r"(sa), "l"(g),
        "r"(static_cast<unsigned>(ok))
        : "memory");
#else
    struct alignas(16) V { unsigned w[4]; };
    *static_cast<V*>(s) = ok ? *static_cast<const V*>(g) : V{{0u, 0u, 0u, 0u}};
#endif
}

__device__ __forceinline__ void cp_async_commit() {
#if defined(GPUCONV_EMULATED)
    gpuconv_emu::cp_async_commit();
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("cp.async.commit_group;\n" ::: "memory");
#endif
}

template <int N>
__device__ __forceinline__ void cp_async_wait() {
#if defined(GPUCONV_EMULATED)
    gpuconv_emu::cp_async_wait(N);
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
#endif
}

// The cp.async multistage main loop of the NHWC kernels: STAGES - 1 slabs loaded
// ahead (load(stage) issues this thread's copies of the next slab into that stage
// and advances its own cursor), then per slab kt: wait for this thread's copies of
// slab kt, one barrier (everyone's copies have landed, and every thread is done with
// slab kt - 1, whose stage the next load refills), the load of slab kt + STAGES - 1
// (an empty group past the end), compute(stage of slab kt). Every thread of the
// block must call it (barriers); nothing is in flight when it returns.
template <int STAGES, class Load, class Compute>
__device__ __forceinline__ void cp_async_pipeline(int ktiles, Load&& load,
                                                  Compute&& compute) {
    static_assert(STAGES >= 2, "a pipeline needs two stages");
#pragma unroll
    for (int st = 0; st < STAGES - 1; ++st) {  // the prologue
        if (st < ktiles) load(st);
        cp_async_commit();
    }
    // the stages of slab kt and of slab kt + STAGES - 1 (kt % STAGES and (kt - 1) %
    // STAGES), advanced by a compare and a select, not a division per slab
    int cur = 0, next = STAGES - 1;
    for (int kt = 0; kt < ktiles; ++kt) {
        cp_async_wait<STAGES - 2>();  // this thread's copies of slab kt
        __syncthreads();  // everyone's; and every thread is done with slab kt - 1
        if (kt + STAGES - 1 < ktiles) load(next);  // into the stage slab kt - 1 held
        cp_async_commit();
        compute(cur);
        next = cur;
        cur = cur + 1 == STAGES ? 0 : cur + 1;
    }
    cp_async_wait<0>();  // only empty groups are left
}

// One 16-byte column chunk of the NHWC weight gradients' im2col operand: columns
// col .. col + 3 (or + 7) of the packed weights' order, tap*Cg + c (the chunk within
// one tap: Cg is a multiple of the chunk). For an output pixel (oh, ow) the chunk
// is the channels c .. at input position (oh*sh + dy, ow*sw + dx) of group g of an
// NHWC x; `ok` is false past the columns (the chunk is then never read).
struct NhwcColumn {
    bool ok;
    int dy, dx;        // kh*dh - pt, kw*dw - pl
    long long offset;  // g*Cg + c: the chunk's channel offset within a pixel

    __device__ __forceinline__ NhwcColumn(int col, int ncols, int Cg, int g, int KW,
                                          int dh, int dw, int pt, int pl) {
        ok = col < ncols;
        const int tap = ok ? col / Cg : 0;
        const int kh = tap / KW;
        dy = kh * dh - pt;
        dx = (tap - kh * KW) * dw - pl;
        offset = static_cast<long long>(g) * Cg + (ok ? col - tap * Cg : 0);
    }
};

// One entry of a reduction "tap table" (built by gpuconv._plan_conv.tap_table; used
// by the tensor-core kernels, cuda/conv2d_mma.cu): reduction index r = ch*KH*KW +
// kh*KW + kw maps to the channel `ch`, the tap offsets dy = kh*dilation_h and dx =
// kw*dilation_w, and the tap number kh*KW + kw. 16-byte aligned so that one vector
// load fetches an entry; the table replaces the div/mod chain r -> (ch, kh, kw).
struct alignas(16) TapEntry {
    int ch;
    int dy;
    int dx;
    int tap;
};

}  // namespace gpuconv

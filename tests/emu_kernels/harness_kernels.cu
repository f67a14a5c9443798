// harness_kernels.cu: correct kernels that exercise the CPU emulation harness
// (tests/test_emulator.py), plus box_sum's planted missing barriers. Valid CUDA
// (tests/test_emulator.py also compiles this file with nvcc for sm_90).
//
//   stencil_static<T>    1-D 3-point stencil; static __shared__ tile + halo.
//   box_sum<T, SKIP>     3x3 box sum over C planes, summed; a 2-D block stages each
//                        plane's tile + halo in dynamic shared memory. SKIP = 0 is
//                        correct; SKIP = 1 drops the barrier between the tile's
//                        stores and the neighbours' reads (read-after-write race),
//                        SKIP = 2 the one before the next plane overwrites the tile
//                        (write-after-read race): planted bugs the harness must catch.
//   block_sum<T>         grid-stride sum: warp __shfl_down_sync tree, per-warp
//                        partials in shared memory, a __shfl_xor_sync butterfly in
//                        warp 0, one atomicAdd per block.
//   histogram            int atomics in shared memory, then atomicAdd on global
//                        unsigned ints; atomicMax on int; a float atomic max through
//                        an atomicCAS loop.
//   warp_probe<T>        every warp intrinsic the harness emulates, results per thread.
//   index_probe          threadIdx/blockIdx/blockDim/gridDim of 3-D blocks and grids.
//   math_probe           float conversions, bit casts, min/max, fma, __ldg, float4.
//   hello                device printf (the harness forwards it to stderr).
//   shared_peek<T>,      read shared memory that no thread of the block wrote (a
//   shared_peek_int      planted read-before-write): static (template and plain
//                        kernel) and dynamic; the harness's poison must show.
#include "common.cuh"

template <typename T>
__global__ void stencil_static(const T* __restrict__ x, T* __restrict__ y, int n) {
    __shared__ T tile[256 + 2];
    const int t = static_cast<int>(threadIdx.x);
    const int i = static_cast<int>(blockIdx.x * blockDim.x) + t;
    tile[t + 1] = i < n ? x[i] : T(0);
    if (t == 0) tile[0] = (i > 0 && i - 1 < n) ? x[i - 1] : T(0);
    if (t == static_cast<int>(blockDim.x) - 1) tile[t + 2] = (i + 1 < n) ? x[i + 1] : T(0);
    __syncthreads();  // the tile and both halo cells are stored before anyone reads
    if (i < n) y[i] = tile[t] + tile[t + 1] + tile[t + 2];
}

// x: (C, H, W); y: (H, W) = sum over c of the 3x3 box sum of x[c] (zero outside).
// Block (BX, BY); dynamic shared memory (BX + 2) * (BY + 2) * sizeof(T).
template <typename T, int SKIP>
__global__ void box_sum(const T* __restrict__ x, T* __restrict__ y, int C, int H, int W) {
    GPUCONV_DYNAMIC_SHARED(T, s_tile);
    const int bx = static_cast<int>(blockDim.x);
    const int by = static_cast<int>(blockDim.y);
    const int tx = static_cast<int>(threadIdx.x);
    const int ty = static_cast<int>(threadIdx.y);
    const int pitch = bx + 2;
    const int row0 = static_cast<int>(blockIdx.y) * by - 1;
    const int col0 = static_cast<int>(blockIdx.x) * bx - 1;
    const int tid = ty * bx + tx;
    const int cells = (bx + 2) * (by + 2);
    T acc = T(0);
    for (int c = 0; c < C; ++c) {
        for (int i = tid; i < cells; i += bx * by) {
            const int r = row0 + i / pitch;
            const int q = col0 + i % pitch;
            s_tile[i] = (r >= 0 && r < H && q >= 0 && q < W)
                            ? x[(static_cast<long long>(c) * H + r) * W + q]
                            : T(0);
        }
        if (SKIP != 1) __syncthreads();  // tile + halo stored before neighbours read
        for (int dr = 0; dr < 3; ++dr)
            for (int dq = 0; dq < 3; ++dq) acc += s_tile[(ty + dr) * pitch + tx + dq];
        if (SKIP != 2) __syncthreads();  // all reads done before the next plane's stores
    }
    const int r = row0 + 1 + ty;
    const int q = col0 + 1 + tx;
    if (r < H && q < W) y[static_cast<long long>(r) * W + q] = acc;
}

template <typename T>
__global__ void block_sum(const T* __restrict__ x, long long n, T* __restrict__ out) {
    __shared__ T warp_sums[32];
    const unsigned full = 0xffffffffu;
    const int lane = static_cast<int>(threadIdx.x) & 31;
    const int warp = static_cast<int>(threadIdx.x) >> 5;
    const int nwarps = static_cast<int>(blockDim.x + 31) >> 5;
    T v = T(0);
    for (long long i = gpuconv::global_thread_index(); i < n; i += gpuconv::grid_stride())
        v += __ldg(x + i);
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(full, v, o);
    if (lane == 0) warp_sums[warp] = v;
    __syncthreads();  // every warp's partial is stored before warp 0 reads them
    if (warp == 0) {
        v = lane < nwarps ? warp_sums[lane] : T(0);
        for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(full, v, o);
        if (lane == 0) atomicAdd(out, v);
    }
}

// hist: nbins unsigned counts; vmax: max of v; fmax_bits: max of f, as float bits.
__global__ void histogram(const int* __restrict__ v, const float* __restrict__ f, int n,
                          unsigned int* __restrict__ hist, int nbins, int* __restrict__ vmax,
                          float* __restrict__ fmax_out) {
    __shared__ int s_hist[64];
    const int t = static_cast<int>(threadIdx.x);
    for (int b = t; b < nbins; b += static_cast<int>(blockDim.x)) s_hist[b] = 0;
    __syncthreads();  // bins zeroed before any thread counts
    for (long long i = gpuconv::global_thread_index(); i < n; i += gpuconv::grid_stride()) {
        atomicAdd(&s_hist[v[i] % nbins], 1);
        atomicMax(vmax, v[i]);
        // float max through a CAS loop on the bits
        int* addr = reinterpret_cast<int*>(fmax_out);
        int old = *addr;
        while (__int_as_float(old) < f[i]) {
            const int assumed = old;
            old = atomicCAS(addr, assumed, __float_as_int(f[i]));
            if (old == assumed) break;
        }
    }
    __syncthreads();  // all shared counts done before they are flushed
    for (int b = t; b < nbins; b += static_cast<int>(blockDim.x))
        atomicAdd(&hist[b], static_cast<unsigned int>(s_hist[b]));
}

// One block; per thread 8 results in out[t * 8 + k] and 16 in iout[t * 16 + k].
template <typename T>
__global__ void warp_probe(const T* __restrict__ x, T* __restrict__ out,
                           int* __restrict__ iout) {
    const unsigned full = 0xffffffffu;
    const int t = static_cast<int>(threadIdx.x);
    const int lane = t & 31;
    const T v = x[t];
    T* o = out + t * 8;
    int* io = iout + t * 16;
    o[0] = __shfl_sync(full, v, 3);                  // broadcast lane 3
    o[1] = __shfl_sync(full, v, lane + 5);           // srcLane wraps modulo 32
    o[2] = __shfl_sync(full, v, 0, 16);              // first lane of each half
    T s = v;                                         // inclusive scan
    for (int d = 1; d < 32; d <<= 1) {
        const T u = __shfl_up_sync(full, s, d);
        if (lane >= d) s += u;
    }
    o[3] = s;
    T r = v;                                         // sums of 8-lane segments
    for (int d = 4; d > 0; d >>= 1) r += __shfl_down_sync(full, r, d, 8);
    o[4] = r;
    T b = v;                                         // butterfly: total in all lanes
    for (int d = 16; d > 0; d >>= 1) b += __shfl_xor_sync(full, b, d);
    o[5] = b;
    o[6] = __shfl_down_sync(full, v, 1);             // lane 31 keeps its own value
    o[7] = __shfl_up_sync(full, v, 1);               // lane 0 keeps its own value
    const int pos = v > T(0);
    io[0] = static_cast<int>(__ballot_sync(full, pos));
    io[1] = __any_sync(full, v > T(100));
    io[2] = __all_sync(full, v > T(-1000));
    io[3] = __syncthreads_count(pos);
    io[4] = __syncthreads_and(pos);
    io[5] = __syncthreads_or(pos);
    io[6] = __popc(__ballot_sync(full, lane & 1));
    __syncwarp();
    // A half-warp rendezvous: only the lanes of the mask take part.
    if (lane < 16) io[7] = static_cast<int>(__ballot_sync(0x0000ffffu, lane % 3 == 0));
    else io[7] = -1;
    io[8] = __reduce_add_sync(full, lane);
    io[9] = static_cast<int>(__reduce_max_sync(full, static_cast<unsigned>(lane * 7 % 32)));
    const long long wide = (static_cast<long long>(lane) << 33) + 1;  // 64-bit shuffle
    const long long got = __shfl_xor_sync(full, wide, 1);
    io[10] = static_cast<int>(got >> 33);
    io[11] = static_cast<int>(__activemask() == full);
    for (int k = 12; k < 16; ++k) io[k] = 0;
}

// out[global linear thread id] = code of (block, thread); 3-D grid and block.
__global__ void index_probe(long long* __restrict__ out) {
    const long long bid =
        (static_cast<long long>(blockIdx.z) * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
    const int tid = static_cast<int>((threadIdx.z * blockDim.y + threadIdx.y) * blockDim.x +
                                     threadIdx.x);
    const long long g = bid * (blockDim.x * blockDim.y * blockDim.z) + tid;
    out[g] = ((((static_cast<long long>(blockIdx.z) * 100 + blockIdx.y) * 100 + blockIdx.x) *
                   100 + threadIdx.z) * 100 + threadIdx.y) * 100 + threadIdx.x;
}

// Per element i: 8 float results and 4 int results.
__global__ void math_probe(const float* __restrict__ x, const float4* __restrict__ x4,
                           int n, float* __restrict__ fo, int* __restrict__ io) {
    const int i = static_cast<int>(gpuconv::global_thread_index());
    if (i >= n) return;
    const float a = __ldg(x + i);
    const float4 q = x4[i / 4];
    const float qv = (i % 4 == 0) ? q.x : (i % 4 == 1) ? q.y : (i % 4 == 2) ? q.z : q.w;
    fo[i * 8 + 0] = qv;                                   // float4 load
    fo[i * 8 + 1] = fmaf(a, 3.0f, 0.5f);
    fo[i * 8 + 2] = __fmaf_rn(a, a, -1.0f);
    fo[i * 8 + 3] = min(a, 0.25f);
    fo[i * 8 + 4] = max(a, -0.25f);
    fo[i * 8 + 5] = rsqrtf(fabsf(a) + 1.0f);
    fo[i * 8 + 6] = __int_as_float(__float_as_int(a));
    fo[i * 8 + 7] = __saturatef(a);
    io[i * 4 + 0] = __float2int_rn(a * 10.0f);           // round half to even
    io[i * 4 + 1] = __float2int_rz(a * 10.0f);
    io[i * 4 + 2] = __float2int_rd(a * 10.0f);
    io[i * 4 + 3] = min(i, 7) + max(-i, -3);              // int overloads
}

__global__ void hello(int tag) {
    if (threadIdx.x == 0) printf("hello from block %d, tag %d\n", static_cast<int>(blockIdx.x), tag);
}

// out: (gridDim.x, 2, blockDim.x): the static then the dynamic cell of each thread.
template <typename T>
__global__ void shared_peek(T* __restrict__ out) {
    __shared__ T s_static[64];
    GPUCONV_DYNAMIC_SHARED(T, s_dyn);
    const int t = static_cast<int>(threadIdx.x);
    T* o = out + static_cast<long long>(blockIdx.x) * 2 * blockDim.x;
    o[t] = s_static[t];
    o[blockDim.x + t] = s_dyn[t];
    __syncthreads();  // every peek is done before the stores below
    s_static[t] = T(1);  // leave the buffers dirty for the next block
    s_dyn[t] = T(1);
}

__global__ void shared_peek_int(int* __restrict__ out) {
    __shared__ int s_static[64];
    const int t = static_cast<int>(threadIdx.x);
    out[blockIdx.x * blockDim.x + t] = s_static[t];
    __syncthreads();  // every peek is done before the stores below
    s_static[t] = 1;
}

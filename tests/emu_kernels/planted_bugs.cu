// planted_bugs.cu: kernels with planted bugs that the CPU emulation harness must
// report (tests/test_emulator.py). Each bug's line carries a `PLANTED:` tag that the
// tests look up, so they can check that the report points at it. Valid CUDA.
//
//   oob_tail_read<T>        off-by-one on the tail: reads x[n]           (ASan)
//   oob_static_shared<T>    writes one past a static __shared__ array    (ASan)
//   oob_dynamic_shared<T>   writes one past the dynamic shared buffer    (ASan)
//   int_index_overflow      32-bit index product that overflows          (UBSan)
//   early_exit_barrier<T>   tail threads return before a __syncthreads   (divergence)
//   branch_barriers         two __syncthreads in the two branches of an if
//   shfl_deadlock           a full-mask shuffle while half the warp waits at a barrier
//   shfl_bad_width          a shuffle with width 3
//   spin_forever            spins on a flag that nobody sets               (timeout)
#include "common.cuh"

template <typename T>
__global__ void oob_tail_read(const T* __restrict__ x, T* __restrict__ y, int n) {
    const int i = static_cast<int>(gpuconv::global_thread_index());
    if (i < n) y[i] = x[i] + x[i + 1];  // PLANTED: oob_tail_read
}

template <typename T>
__global__ void oob_static_shared(const T* __restrict__ x, T* __restrict__ y, int n) {
    __shared__ T tile[64];  // sized for 64 threads; the write below reaches tile[64]
    const int t = static_cast<int>(threadIdx.x);
    const int i = static_cast<int>(gpuconv::global_thread_index());
    tile[t + 1] = i < n ? x[i] : T(0);  // PLANTED: oob_static_shared
    __syncthreads();  // tile stored before it is read
    if (i < n) y[i] = tile[t];
}

template <typename T>
__global__ void oob_dynamic_shared(const T* __restrict__ x, T* __restrict__ y, int n) {
    GPUCONV_DYNAMIC_SHARED(T, s_buf);  // blockDim.x elements
    const int t = static_cast<int>(threadIdx.x);
    const int i = static_cast<int>(gpuconv::global_thread_index());
    s_buf[t + 1] = i < n ? x[i] : T(0);  // PLANTED: oob_dynamic_shared
    __syncthreads();  // buffer stored before it is read
    if (i < n) y[i] = s_buf[t];
}

// y[i] = x[(i * stride) % n]: the product is formed in int (the bug) and overflows
// for large strides; the planner passed stride as an int.
__global__ void int_index_overflow(const float* __restrict__ x, float* __restrict__ y, int n,
                                   int stride) {
    const int i = static_cast<int>(gpuconv::global_thread_index());
    if (i >= n) return;
    const int off = i * stride;  // PLANTED: int_index_overflow
    y[i] = x[(off % n + n) % n];
}

template <typename T>
__global__ void early_exit_barrier(const T* __restrict__ x, T* __restrict__ y, int n) {
    __shared__ T tile[256];
    const int t = static_cast<int>(threadIdx.x);
    const int i = static_cast<int>(gpuconv::global_thread_index());
    if (i >= n) return;  // PLANTED: early_exit_barrier (tail threads skip the barrier)
    tile[t] = x[i];
    __syncthreads();  // tile stored before the neighbour reads it
    y[i] = tile[t] + (t + 1 < static_cast<int>(blockDim.x) && i + 1 < n ? tile[t + 1] : T(0));
}

__global__ void branch_barriers(float* __restrict__ y) {
    __shared__ float s[64];
    const int t = static_cast<int>(threadIdx.x);
    if (t < 16) {
        s[t] = 1.0f;
        __syncthreads();  // PLANTED: branch_barriers (first branch)
    } else {
        s[t] = 2.0f;
        __syncthreads();  // PLANTED: branch_barriers (second branch)
    }
    y[t] = s[(t + 1) % 64];
}

__global__ void shfl_deadlock(const float* __restrict__ x, float* __restrict__ y) {
    const int t = static_cast<int>(threadIdx.x);
    float v = x[t];
    if ((t & 31) < 16) v += __shfl_down_sync(0xffffffffu, v, 1);  // PLANTED: shfl_deadlock
    __syncthreads();  // (the other half of the warp waits here)
    y[t] = v;
}

__global__ void shfl_bad_width(const float* __restrict__ x, float* __restrict__ y) {
    const int t = static_cast<int>(threadIdx.x);
    y[t] = __shfl_sync(0xffffffffu, x[t], 0, 3);  // PLANTED: shfl_bad_width
}

__global__ void spin_forever(volatile int* flag) {
    while (flag[0] == 0) {  // PLANTED: spin_forever (nobody ever sets the flag)
    }
}

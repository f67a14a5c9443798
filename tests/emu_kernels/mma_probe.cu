// mma_probe.cu: the tensor-core device API of cuda/mma.cuh on its own
// (tests/test_mma.py compares it, emulated, bit for bit with a NumPy model of the
// PTX ISA fragment layouts and of the rounding; it also compiles with nvcc for
// sm_80/sm_90, and runs on a GPU where there is one).
//
//   tf32_round_probe       y[i] = to_tf32(x[i]) (the register bits), grid-stride.
//   half_probe             h[i] = float_to_half(x[i]); back[i] = half_to_float(hin[i]).
//   mma_probe<false>       per warp w: d = mma_tf32_m16n8k8(a, b, c) (<true>:
//                          mma_f16_m16n8k16) with each lane's
//                          fragment registers read from a[w][lane][4], b[w][lane][2],
//                          c[w][lane][4] and d written to d[w][lane][4] (any number
//                          of whole warps; several in a block).
#include "common.cuh"
#include "mma.cuh"

__global__ void tf32_round_probe(const float* __restrict__ x, unsigned* __restrict__ y,
                                 long long n) {
    for (long long i = gpuconv::global_thread_index(); i < n; i += gpuconv::grid_stride())
        y[i] = gpuconv::to_tf32(x[i]);
}

__global__ void half_probe(const float* __restrict__ x, unsigned short* __restrict__ h,
                           const unsigned short* __restrict__ hin,
                           float* __restrict__ back, long long n) {
    for (long long i = gpuconv::global_thread_index(); i < n; i += gpuconv::grid_stride()) {
        h[i] = gpuconv::float_to_half(x[i]);
        back[i] = gpuconv::half_to_float(hin[i]);
    }
}

template <bool F16>
__global__ void mma_probe(const unsigned* __restrict__ a, const unsigned* __restrict__ b,
                          const float* __restrict__ c, float* __restrict__ d) {
    const long long t = gpuconv::global_thread_index();  // warp w, lane l: t = 32w + l
    unsigned ra[4], rb[2];
    float rc[4], rd[4];
    for (int r = 0; r < 4; ++r) ra[r] = a[t * 4 + r];
    for (int r = 0; r < 2; ++r) rb[r] = b[t * 2 + r];
    for (int r = 0; r < 4; ++r) rc[r] = c[t * 4 + r];
    if (F16)
        gpuconv::mma_f16_m16n8k16(rd, ra, rb, rc);
    else
        gpuconv::mma_tf32_m16n8k8(rd, ra, rb, rc);
    for (int r = 0; r < 4; ++r) d[t * 4 + r] = rd[r];
}

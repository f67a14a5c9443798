// convert.cu: the elementwise operand pre-pass of the FP32 conv2d kernels under
// precision='tf32' and for float16 data (the "SIMT route" of the tensor-core
// precisions, planned by gpuconv._plan_conv.plan_convert).
//
// Products of two TF32 values, or of two float16 values, are exact in float32, so the
// FP32 kernels run on operands converted once by these kernels compute the tensor-core
// model's numbers (gpuconv._precision): they differ from the mma kernels
// (cuda/conv2d_mma.cu) only in the order of the float32 sums. The inputs are never
// written: the converted operands go to temporaries.
//
// Variants (1-D grid-stride loops over 64-bit flat indices, one element a step):
//   convert_round_tf32     dst[i] = src[i] rounded to TF32 as cvt.rna.tf32.f32 does
//                          on sm_80/sm_90 (integer ops on the bit pattern, so the same
//                          bits on any GPU and on the CPU emulator): a finite value
//                          gets 0x1000 added to its pattern (half the weight of the
//                          13 dropped bits, a carry may reach the exponent and inf),
//                          then the 13 low bits are cleared; inf and NaN are only
//                          masked (gpuconv._precision.round_tf32 is the NumPy twin).
//   convert_half_to_float  dst[i] = float16 bits src[i] widened to float (exact:
//                          normal, subnormal, zero, inf, NaN payload kept).
#include "common.cuh"

namespace gpuconv_convert {

// TF32 keeps the sign, 8 exponent and 10 mantissa bits: 13 low bits dropped.
constexpr unsigned kTf32Half = 0x1000u;
constexpr unsigned kTf32Mask = 0xFFFFE000u;
constexpr unsigned kExpMask = 0x7F800000u;

__device__ __forceinline__ float round_tf32(float x) {
    unsigned u = __float_as_uint(x);
    if ((u & kExpMask) != kExpMask) u += kTf32Half;
    return __uint_as_float(u & kTf32Mask);
}

__device__ __forceinline__ float half_bits_to_float(unsigned short h) {
    const unsigned sign = static_cast<unsigned>(h & 0x8000u) << 16;
    const unsigned e = (static_cast<unsigned>(h) >> 10) & 0x1Fu;
    const unsigned m = static_cast<unsigned>(h) & 0x3FFu;
    if (e == 0x1Fu) return __uint_as_float(sign | kExpMask | (m << 13));  // inf, NaN
    if (e == 0u) {  // zero or subnormal: m * 2^-24, exact in float
        const float v = static_cast<float>(m) * 5.9604644775390625e-8f;
        return sign ? -v : v;
    }
    return __uint_as_float(sign | ((e + 112u) << 23) | (m << 13));
}

}  // namespace gpuconv_convert

// src, dst: total floats each (distinct buffers).
__global__ void convert_round_tf32(const float* __restrict__ src, float* __restrict__ dst,
                                   long long total) {
    for (long long idx = gpuconv::global_thread_index(); idx < total;
         idx += gpuconv::grid_stride()) {
        dst[idx] = gpuconv_convert::round_tf32(src[idx]);
    }
}

// src: total float16 bit patterns; dst: total floats.
__global__ void convert_half_to_float(const unsigned short* __restrict__ src,
                                      float* __restrict__ dst, long long total) {
    for (long long idx = gpuconv::global_thread_index(); idx < total;
         idx += gpuconv::grid_stride()) {
        dst[idx] = gpuconv_convert::half_bits_to_float(src[idx]);
    }
}

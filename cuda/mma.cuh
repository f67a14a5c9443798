// mma.cuh: gpuconv's tensor-core device API (warp-level mma.sync, sm_80 and newer).
//
//   to_tf32(x)              cvt.rna.tf32.f32: x rounded to TF32 (10 explicit mantissa
//                           bits, round to nearest, ties away from zero), as the
//                           32-bit register pattern the mma reads (low 13 bits 0;
//                           ptxas emits 3 instructions for it on sm_80/sm_90).
//   half_to_float(h)        float16 bits -> float (exact).
//   float_to_half(x)        float -> float16 bits, round to nearest even (cvt.rn;
//                           emulated: NumPy's float32 -> float16 cast, bit for bit,
//                           NaN payloads too; on a GPU a NaN stays a NaN, its
//                           payload is the hardware's).
//   mma_tf32_m16n8k8(d,a,b,c)   D(16x8) = A(16x8) * B(8x8) + C, TF32 in, FP32 out.
//   mma_f16_m16n8k16(d,a,b,c)   D(16x8) = A(16x16) * B(16x8) + C, FP16 in, FP32 out.
//   ldmatrix_x4(d, row)     ldmatrix.sync.aligned.m8n8.x4.shared.b16: four 8 x 8 b16
//                           matrices (8 rows of 16 bytes each) from shared memory;
//                           lane 8j + r names row r of matrix j (`row`: 16-byte
//                           aligned), and lane l receives in d[j] the 32-bit word l % 4
//                           of row l / 4 of matrix j. At 32-bit granularity that is
//                           the a[] of m16n8k8.tf32 (matrices: rows 0-7 / 8-15 x words
//                           0-3 / 4-7) and, two halves a word, of m16n8k16.f16.
//   ldmatrix_x4<true>(d, row)   the same with .trans: lane l receives in d[j] the
//                           halves (lo, hi) at column l / 4 of rows 2*(l % 4) and
//                           2*(l % 4) + 1 of matrix j: with rows = k and columns = n
//                           of a k-major B, the b[] of m16n8k16.f16 (matrices: k 0-7
//                           / 8-15 of one n block).
//
// Fragments (PTX ISA, "Matrix fragments for mma.m16n8k8" / "mma.m16n8k16", .row.col),
// with g = lane / 4 and t = lane % 4:
//   m16n8k8 .tf32   a[r] = A[g + 8*(r%2)][t + 4*(r/2)]                 (r = 0..3)
//                   b[r] = B[t + 4*r][g]                               (r = 0..1)
//   m16n8k16 .f16   a[r] = halves (lo, hi) A[g + 8*(r%2)][2t + 8*(r/2) + {0, 1}]
//                   b[r] = halves (lo, hi) B[2t + 8*r + {0, 1}][g]
//   both            c[r], d[r] = C/D[g + 8*(r/2)][2t + r%2]
//
// Three builds:
//   - nvcc / NVRTC for __CUDA_ARCH__ >= 800: the PTX instructions (inline asm);
//   - the CPU emulation harness (GPUCONV_EMULATED): the warp's fragments are gathered
//     lane by lane through the harness's warp exchange (one warp_allgather of
//     pointers, so every lane reads the 32 lanes' registers), each lane computes its
//     four outputs, a __syncwarp keeps every lane's registers alive until all have
//     read, then the results are written. All 32 lanes must take part (as on the
//     GPU: mma.sync is .aligned);
//   - anything else (the host pass of nvcc, an older GPU): trap.
//
// The emulated arithmetic is our model of the tensor core, and its bits define it:
// the mma reads the top 19 bits of a .tf32 operand register (the low 13 are
// ignored; to_tf32 zeroes them anyway), every product is exact (a TF32 or FP16
// product fits in FP32), and D[i][j] = C[i][j] + sum_k A[i][k]*B[k][j] is
// accumulated in FP32 in increasing k, one rounding per term (fmaf). The hardware's
// internal order and rounding inside one mma are not specified by NVIDIA, so a GPU
// result may differ from the model by FP32 summation error over K = 8 (16) terms:
// the GPU tests compare with a tolerance, the emulator tests bit for bit against
// the NumPy model of the same rules (tests/test_mma.py). Subnormal results and
// operands are kept (no flush to zero) in the model.
#pragma once

namespace gpuconv {

#if defined(GPUCONV_EMULATED)
namespace mma_emu {

inline unsigned float_bits(float x) {
    unsigned u;
    memcpy(&u, &x, 4);
    return u;
}

inline float bits_float(unsigned u) {
    float x;
    memcpy(&x, &u, 4);
    return x;
}

// cvt.rna.tf32.f32 on the bit pattern, as ptxas implements it for sm_80 and sm_90
// (FSETP |x| < inf; IADD 0x1000; LOP3 & 0xFFFFE000): a finite value gets half of the
// dropped 13 bits' weight added to its magnitude (a carry moves into the exponent,
// past the largest finite value to inf), then the 13 bits are cleared; inf stays,
// and a NaN keeps its upper payload (one whose payload lies only in the 13 low bits
// becomes inf).
inline unsigned rna_tf32(float x) {
    unsigned u = float_bits(x);
    if ((u & 0x7F800000u) != 0x7F800000u) u += 0x1000u;
    return u & 0xFFFFE000u;
}

inline float half_to_float(unsigned short h) {
    const unsigned sign = static_cast<unsigned>(h & 0x8000u) << 16;
    const unsigned e = (h >> 10) & 0x1Fu;
    const unsigned m = h & 0x3FFu;
    if (e == 0x1Fu) return bits_float(sign | 0x7F800000u | (m << 13));
    if (e == 0) {
        const float v = static_cast<float>(m) * 5.9604644775390625e-8f;  // m * 2^-24
        return sign ? -v : v;
    }
    return bits_float(sign | ((e + 112u) << 23) | (m << 13));
}

inline unsigned short float_to_half(float f) {
    const unsigned x = float_bits(f);
    const unsigned sign = (x >> 16) & 0x8000u;
    const unsigned ax = x & 0x7FFFFFFFu;
    if (ax == 0x7F800000u) return static_cast<unsigned short>(sign | 0x7C00u);  // inf
    if (ax > 0x7F800000u) {  // NaN: NumPy's rule (the payload's top 10 bits, never 0)
        const unsigned h = 0x7C00u | ((ax & 0x7FFFFFu) >> 13);
        return static_cast<unsigned short>(sign | (h == 0x7C00u ? 0x7C01u : h));
    }
    if (ax >= 0x477FF000u) return static_cast<unsigned short>(sign | 0x7C00u);  // >= 65520
    if (ax < 0x38800000u) {  // below 2^-14: a float16 subnormal (or zero), unit 2^-24
        const float q = bits_float(ax) * 16777216.0f;  // exact scaling by 2^24
        return static_cast<unsigned short>(sign | static_cast<unsigned>(nearbyintf(q)));
    }
    const unsigned m = ax & 0x7FFFFFu;
    const unsigned rem = m & 0x1FFFu;
    unsigned h = ((((ax >> 23) - 112u) << 10) | (m >> 13));
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h += 1u;  // nearest, ties even
    return static_cast<unsigned short>(sign | h);
}

struct Fragments {
    unsigned a[4];
    unsigned b[2];
    float c[4];
};

// One emulated mma.sync: K = 8 (TF32) or 16 (FP16), see the layouts above.
template <bool F16>
inline void mma(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2],
                const float (&c)[4], const char* file, int line) {
    Fragments mine;
    for (int r = 0; r < 4; ++r) mine.a[r] = a[r];
    for (int r = 0; r < 2; ++r) mine.b[r] = b[r];
    for (int r = 0; r < 4; ++r) mine.c[r] = c[r];
    uint64_t lanes[32];
    gpuconv_emu::warp_allgather(0xFFFFFFFFu, reinterpret_cast<uintptr_t>(&mine), lanes,
                                file, line);
    for (int j = 0; j < 32; ++j) {
        if (lanes[j] == ~uint64_t(0)) {
            gpuconv_emu::set_error("mma.sync at %s:%d: lane %d of the warp does not take "
                                   "part (all 32 lanes must execute it)", file, line, j);
            gpuconv_emu::fail_in_fiber();
        }
    }
    auto frag = [&](int lane) -> const Fragments& {
        return *reinterpret_cast<const Fragments*>(static_cast<uintptr_t>(lanes[lane]));
    };
    auto half_of = [](unsigned reg, int k) {
        return half_to_float(static_cast<unsigned short>((reg >> (16 * (k & 1))) & 0xFFFFu));
    };
    // A[row][k] and B[k][col] as the tensor core reads them
    auto A = [&](int row, int k) -> float {
        if (F16)
            return half_of(frag((row % 8) * 4 + (k % 8) / 2).a[(row / 8) + 2 * (k / 8)], k);
        return bits_float(frag((row % 8) * 4 + k % 4).a[(row / 8) + 2 * (k / 4)] &
                          0xFFFFE000u);
    };
    auto B = [&](int k, int col) -> float {
        if (F16) return half_of(frag(col * 4 + (k % 8) / 2).b[k / 8], k);
        return bits_float(frag(col * 4 + k % 4).b[k / 4] & 0xFFFFE000u);
    };
    const int lane = static_cast<int>(gpuconv_emu::cur()->lane);
    const int g = lane / 4;
    const int t = lane % 4;
    const int K = F16 ? 16 : 8;
    float out[4];
    for (int r = 0; r < 4; ++r) {
        const int row = g + 8 * (r / 2);
        const int col = 2 * t + r % 2;
        float acc = mine.c[r];
        for (int k = 0; k < K; ++k) acc = fmaf(A(row, k), B(k, col), acc);
        out[r] = acc;
    }
    __syncwarp(0xFFFFFFFFu, file, line);  // every lane has read every lane's fragments
    for (int r = 0; r < 4; ++r) d[r] = out[r];
}

// One emulated ldmatrix.x4 (TRANS: .trans): the 32 lanes' row addresses through the
// warp exchange, then every lane reads its words (shared memory is not written in
// between: the warp is at this instruction): word lane % 4 of the row of lane
// 8j + lane / 4, or (.trans) the 16-bit elements lane / 4 of the rows of lanes
// 8j + 2(lane % 4) and 8j + 2(lane % 4) + 1.
template <bool TRANS>
inline void ldmatrix_x4(unsigned (&d)[4], const unsigned* row, const char* file,
                        int line) {
    uint64_t rows[32];
    gpuconv_emu::warp_allgather(0xFFFFFFFFu, reinterpret_cast<uintptr_t>(row), rows,
                                file, line);
    const int lane = static_cast<int>(gpuconv_emu::cur()->lane);
    auto row_of = [&](int src_lane) -> uintptr_t {
        const uint64_t src = rows[src_lane];
        if (src == ~uint64_t(0) || src % 16 != 0) {
            gpuconv_emu::set_error(
                "ldmatrix%s at %s:%d: lane %d %s", TRANS ? ".trans" : "", file, line,
                src_lane, src == ~uint64_t(0)
                              ? "of the warp does not take part (all 32 lanes must "
                                "execute it)"
                              : "gave a row address that is not 16-byte aligned");
            gpuconv_emu::fail_in_fiber();
        }
        return static_cast<uintptr_t>(src);
    };
    for (int j = 0; j < 4; ++j) {
        if (!TRANS) {
            d[j] = reinterpret_cast<const unsigned*>(row_of(8 * j + lane / 4))[lane % 4];
            continue;
        }
        unsigned v = 0;
        for (int h = 0; h < 2; ++h) {
            const unsigned short e = reinterpret_cast<const unsigned short*>(
                row_of(8 * j + 2 * (lane % 4) + h))[lane / 4];
            v |= static_cast<unsigned>(e) << (16 * h);
        }
        d[j] = v;
    }
}

}  // namespace mma_emu
#endif  // GPUCONV_EMULATED

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
#define GPUCONV_MMA_PTX 1
#else
#define GPUCONV_MMA_PTX 0
#endif

// x rounded to TF32 (cvt.rna.tf32.f32), as the register bits an mma operand takes.
__device__ __forceinline__ unsigned to_tf32(float x) {
#if GPUCONV_MMA_PTX
    unsigned r;
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
    return r;
#elif defined(GPUCONV_EMULATED)
    return mma_emu::rna_tf32(x);
#else
    (void)x;
    __trap();
    return 0u;
#endif
}

// float16 bits -> float, exact.
__device__ __forceinline__ float half_to_float(unsigned short h) {
#if defined(GPUCONV_EMULATED)
    return mma_emu::half_to_float(h);
#elif defined(__CUDA_ARCH__)
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
#else
    (void)h;
    return 0.0f;
#endif
}

// float -> float16 bits, round to nearest even (overflow to inf).
__device__ __forceinline__ unsigned short float_to_half(float x) {
#if defined(GPUCONV_EMULATED)
    return mma_emu::float_to_half(x);
#elif defined(__CUDA_ARCH__)
    unsigned short h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(x));
    return h;
#else
    (void)x;
    return 0;
#endif
}

// Two float16 values (bits) packed as one .f16x2 register: lo in bits 0-15.
__device__ __forceinline__ unsigned pack_half2(unsigned short lo, unsigned short hi) {
    return static_cast<unsigned>(lo) | (static_cast<unsigned>(hi) << 16);
}

#if defined(GPUCONV_EMULATED)
#define GPUCONV_MMA_SITE , const char *file = __builtin_FILE(), int line = __builtin_LINE()
#else
#define GPUCONV_MMA_SITE
#endif

// D = A * B + C, m16n8k8, TF32 operands (registers from to_tf32), FP32 accumulators.
// d may be c (accumulate in place). Every lane of the warp must call it.
__device__ __forceinline__ void mma_tf32_m16n8k8(
    float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2],
    const float (&c)[4] GPUCONV_MMA_SITE) {
#if GPUCONV_MMA_PTX
    asm volatile(
        "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 "
        "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%11,%12,%13};\n"
        : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]),
          "f"(c[0]), "f"(c[1]), "f"(c[2]), "f"(c[3]));
#elif defined(GPUCONV_EMULATED)
    mma_emu::mma<false>(d, a, b, c, file, line);
#else
    (void)a; (void)b; (void)c; (void)d;
    __trap();
#endif
}

// D = A * B + C, m16n8k16, FP16 operands (pack_half2 registers), FP32 accumulators.
__device__ __forceinline__ void mma_f16_m16n8k16(
    float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2],
    const float (&c)[4] GPUCONV_MMA_SITE) {
#if GPUCONV_MMA_PTX
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
        "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%11,%12,%13};\n"
        : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]),
          "f"(c[0]), "f"(c[1]), "f"(c[2]), "f"(c[3]));
#elif defined(GPUCONV_EMULATED)
    mma_emu::mma<true>(d, a, b, c, file, line);
#else
    (void)a; (void)b; (void)c; (void)d;
    __trap();
#endif
}

// d[j] = word lane % 4 of row lane / 4 of matrix j, row r of matrix j being the 16
// bytes at the `row` of lane 8j + r (shared memory, 16-byte aligned); TRANS: the
// .trans form (see above). Every lane of the warp must call it.
template <bool TRANS = false>
__device__ __forceinline__ void ldmatrix_x4(unsigned (&d)[4],
                                            const unsigned* row GPUCONV_MMA_SITE) {
#if GPUCONV_MMA_PTX
    const unsigned sa = static_cast<unsigned>(__cvta_generic_to_shared(row));
    if constexpr (TRANS)
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                     : "=r"(d[0]), "=r"(d[1]), "=r"(d[2]), "=r"(d[3])
                     : "r"(sa));
    else
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                     : "=r"(d[0]), "=r"(d[1]), "=r"(d[2]), "=r"(d[3])
                     : "r"(sa));
#elif defined(GPUCONV_EMULATED)
    mma_emu::ldmatrix_x4<TRANS>(d, row, file, line);
#else
    (void)row;
    d[0] = d[1] = d[2] = d[3] = 0u;
    __trap();
#endif
}

#undef GPUCONV_MMA_SITE

}  // namespace gpuconv

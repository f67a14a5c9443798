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
//   ldmatrix_probe<T>      one warp: 64 x 4 words of `words` staged in shared
//                          memory; lane l names row rows[l] (< 64) and receives
//                          d[l][0..3] from ldmatrix_x4 (<true>: its .trans form).
//   cp_async_probe         thread t of one block of 64: its 16-byte shared slot set
//                          to init[t]; group 0 copies src[t] (zeros where t % 3 ==
//                          0), group 1 src[64 + t]; records the slot after
//                          cp_async_wait<1>() (seen1: group 0 must have landed) and
//                          after cp_async_wait<0>() (seen0); with early != 0 the
//                          thread also records the slot right after the issues
//                          (seen_early: no wait, so no guarantee; the emulator
//                          shows the old bytes) and returns with group 1 in flight
//                          when t == 5 and leave != 0 (the emulator reports it).
//   cp_async_align_probe   one thread: cp_async_zfill16 of `src` + src_off bytes
//                          (ok: copied, else zero-filled) into a 32-byte shared
//                          buffer at byte dst_off, then out[0..7] = the buffer (the
//                          emulator's alignment check: emulated only; on a GPU a
//                          misaligned offset faults).
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

struct alignas(16) Slot16 {
    unsigned w[4];
};

template <bool TRANS>
__global__ void ldmatrix_probe(const unsigned* __restrict__ words,
                               const int* __restrict__ rows, unsigned* __restrict__ d) {
    __shared__ Slot16 s[64];
    const int l = static_cast<int>(threadIdx.x);
    for (int i = l; i < 64 * 4; i += 32) s[i / 4].w[i % 4] = words[i];
    __syncthreads();  // staged before any lane's ldmatrix reads it
    unsigned r[4];
    if (TRANS)
        gpuconv::ldmatrix_x4<true>(r, &s[rows[l]].w[0]);
    else
        gpuconv::ldmatrix_x4(r, &s[rows[l]].w[0]);
    for (int j = 0; j < 4; ++j) d[l * 4 + j] = r[j];
}

__global__ void cp_async_probe(const Slot16* __restrict__ src, const Slot16* __restrict__ init,
                               Slot16* __restrict__ seen_early, Slot16* __restrict__ seen1,
                               Slot16* __restrict__ seen0, int early, int leave) {
    __shared__ Slot16 s[2][64];
    const int t = static_cast<int>(threadIdx.x);
    s[0][t] = init[t];
    s[1][t] = init[t];
    gpuconv::cp_async_zfill16(&s[0][t], &src[t], t % 3 != 0);
    gpuconv::cp_async_commit();
    gpuconv::cp_async_zfill16(&s[1][t], &src[64 + t], true);
    gpuconv::cp_async_commit();
    if (early) {
        seen_early[t] = s[0][t];
        if (leave && t == 5) {
            gpuconv::cp_async_wait<1>();
            return;  // group 1 still in flight
        }
    }
    gpuconv::cp_async_wait<1>();
    seen1[t] = s[0][t];
    gpuconv::cp_async_wait<0>();
    seen0[t] = s[1][t];
}

__global__ void cp_async_align_probe(const unsigned char* __restrict__ src,
                                     unsigned* __restrict__ out, int dst_off,
                                     int src_off, int ok) {
    __shared__ Slot16 s[2];
    for (int i = 0; i < 8; ++i) s[i / 4].w[i % 4] = 0xFFFFFFFFu;
    gpuconv::cp_async_zfill16(reinterpret_cast<unsigned char*>(&s[0]) + dst_off,
                              src + src_off, ok != 0);
    gpuconv::cp_async_commit();
    gpuconv::cp_async_wait<0>();
    for (int i = 0; i < 8; ++i) out[i] = s[i / 4].w[i % 4];
}

// conv2d_pad.cu: the non-zero padding modes of conv2d ('reflect', 'replicate',
// 'circular', 'symmetric'), applied outside the convolution kernels.
//
// Zero padding never comes here: the conv kernels realise it in their index
// mapping. For the other modes the op pads the input once and convolves the padded
// tensor with zero padding 0; the input gradient is computed on the padded geometry
// and folded back. The border rule lives in two small int32 index maps per axis,
// built on the host by gpuconv._padding.pad_index (the same maps as the NumPy
// backend), so every mode and any pad size (larger than the image too) is handled
// by the same two kernels.
//
// Variants (T = float or double, 1-D grid-stride loops over 64-bit flat indices):
//   conv2d_pad_gather  xp[nc, i, j] = x[nc, row_map[i], col_map[j]]
//                      (0 where a map is -1): one thread per padded element.
//   conv2d_pad_fold    gx[nc, h, w] = sum of gxp[nc, i, j] over the padded positions
//                      (i, j) that read (h, w), i.e. row_map[i] == h and
//                      col_map[j] == w. The inverse maps are CSR lists (row_ptr,
//                      row_src; col_ptr, col_src) in increasing padded index: one
//                      thread per gx element gathers in that fixed order. No atomics:
//                      deterministic, bit-identical from run to run.
#include "common.cuh"

// x (NC, H, W) -> xp (NC, Hp, Wp); total = NC*Hp*Wp.
template <typename T>
__global__ void conv2d_pad_gather(
    const T* __restrict__ x, T* __restrict__ xp, const int* __restrict__ row_map,
    const int* __restrict__ col_map, int H, int W, int Hp, int Wp, long long total) {
    for (long long idx = gpuconv::global_thread_index(); idx < total;
         idx += gpuconv::grid_stride()) {
        const int j = static_cast<int>(idx % Wp);
        const long long t = idx / Wp;
        const int i = static_cast<int>(t % Hp);
        const long long nc = t / Hp;
        const int r = row_map[i];
        const int c = col_map[j];
        xp[idx] = (r >= 0 && c >= 0) ? x[(nc * H + r) * W + c] : T(0);
    }
}

// gxp (NC, Hp, Wp) -> gx (NC, H, W); total = NC*H*W.
template <typename T>
__global__ void conv2d_pad_fold(
    const T* __restrict__ gxp, T* __restrict__ gx, const int* __restrict__ row_ptr,
    const int* __restrict__ row_src, const int* __restrict__ col_ptr,
    const int* __restrict__ col_src, int H, int W, int Hp, int Wp, long long total) {
    for (long long idx = gpuconv::global_thread_index(); idx < total;
         idx += gpuconv::grid_stride()) {
        const int w = static_cast<int>(idx % W);
        const long long t = idx / W;
        const int h = static_cast<int>(t % H);
        const long long nc = t / H;
        const T* g = gxp + nc * Hp * static_cast<long long>(Wp);
        const int c_begin = col_ptr[w];
        const int c_end = col_ptr[w + 1];
        T acc = T(0);
        for (int a = row_ptr[h]; a < row_ptr[h + 1]; ++a) {
            const T* grow = g + static_cast<long long>(row_src[a]) * Wp;
            for (int b = c_begin; b < c_end; ++b) acc = acc + grow[col_src[b]];
        }
        gx[idx] = acc;
    }
}

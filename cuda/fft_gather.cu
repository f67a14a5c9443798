// fft_gather.cu: the one pass in front of the FFT filter paths (gpuconv._gpu_filter:
// correlate2d_fft, correlate1d_fft). It reads the image once and writes the array
// the forward transform reads, zero-padded to the transform size, with the boundary
// rule applied on the way.
//
// What it replaces on the device, per call: the boundary extension (two gathers
// through index maps), CuPy's zero padding of a transform's input (a zero fill plus a
// copy per padded axis, cupy/fft/_fft.py _cook_shape) and, for the segmented 1-D FFT,
// the zero-padded signal plus the copy CuPy makes of the overlapping segment view
// (_exec_fft copies any view): one read of the input and one write of the transform's
// input instead of three to six passes.
//
// Variant (planned by gpuconv._plan_filter.plan_fft_gather):
//
//   fft_gather<T>   T in float, double, gc_complex64, gc_complex128
//       dst (B, DI, DJ), C-contiguous. Row i of image b reads the extended image at
//           (r, c) = (i * row_r, i * row_c + j),   j < DJ
//       (2-D zero padding: row_r = 1, row_c = 0; 1-D overlap-save segments of length
//       DJ starting `step` apart: row_r = 0, row_c = step) and writes
//           dst[b, i, j] = ext_b(r - ot, c - ol)   if r < ER and c < EC
//                        = 0                       otherwise (the transform's tail)
//       where ext_b is src[b] (H, W), C-contiguous, extended by the boundary rule
//       (fill: zero, the FFT paths add a fill value after the transform; wrap; symm:
//       filter_common.cuh boundary_index).
//       Blocks of FG_THREADS threads; each thread writes FG_ITEMS columns of a row,
//       FG_THREADS apart (coalesced loads and stores); grid x covers the columns,
//       grid y strides over the B * DI rows, the row's source and validity computed
//       once per row. A pure copy: no arithmetic on values, so every T is exact and
//       NaN/inf pass through unchanged.
#include "common.cuh"
#include "filter_common.cuh"

namespace gcfg {

constexpr int FG_THREADS = 256;  // threads per block (the launch bound)
constexpr int FG_ITEMS = 4;      // columns per thread, FG_THREADS apart

}  // namespace gcfg

// src (B, H, W) -> dst (B, DI, DJ); rows = B * DI <= INT32_MAX - 65535 (the planner's
// limit: the int grid stride row += gridDim.y never overflows).
template <typename T>
__global__ void __launch_bounds__(gcfg::FG_THREADS) fft_gather(
    const T* __restrict__ src, T* __restrict__ dst, int rows, int DI, int DJ, int H,
    int W, int row_r, long long row_c, int ER, long long EC, int ot, long long ol,
    int boundary) {
    constexpr int kCols = gcfg::FG_THREADS * gcfg::FG_ITEMS;
    const long long j0 = static_cast<long long>(blockIdx.x) * kCols + threadIdx.x;
    for (int row = blockIdx.y; row < rows; row += gridDim.y) {
        const int b = row / DI;
        const int i = row - b * DI;
        T* d = dst + static_cast<long long>(row) * DJ;
        const int r = i * row_r;
        // the source row (or -1: a zero row), by the boundary rule, once per row
        const long long sr =
            r < ER ? gcf::boundary_index(static_cast<long long>(r) - ot, H, boundary) : -1;
        const T* s = src + (static_cast<long long>(b) * H + (sr < 0 ? 0 : sr)) * W;
        const long long c_row = static_cast<long long>(i) * row_c;  // c at j = 0
#pragma unroll
        for (int u = 0; u < gcfg::FG_ITEMS; ++u) {
            const long long j = j0 + static_cast<long long>(u) * gcfg::FG_THREADS;
            if (j >= DJ) break;
            const long long c = c_row + j;
            T v{};
            if (sr >= 0 && c < EC) {
                const long long sc = gcf::boundary_index(c - ol, W, boundary);
                if (sc >= 0) v = s[sc];
            }
            d[j] = v;
        }
    }
}

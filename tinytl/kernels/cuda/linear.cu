// Twin of reference.py's linear section (and of csrc/linear.cpp): the epilogues of a
// Linear layer, each one pass over memory. Launched from tinytl/kernels/cuda.py.
//
// This file is compiled at run time by CuPy (NVRTC) and, in the tests, by `nvcc -ptx`:
// it includes no header and uses only CUDA built-ins, so both compilers take it as is.
// Each template is instantiated for float and double under extern "C" names
// (<kernel>_f32, <kernel>_f64): cuda.py looks them up by these names, profilers show them.
// Sizes arrive as long long (cuda.py passes np.int64) and indices are 64-bit.
//
// ReLU is written as the reference computes it: `v < 0 ? 0 : v` keeps NaN (as np.maximum
// does), and the backward mask multiplies (grad * (y > 0)), so NaN and inf propagate as
// in NumPy. `out` may be the input itself: every element is read before it is written,
// by the same thread, so no pointer here is __restrict__.
//
// The ReLU mask (reference.py's layout): (n, ceil(m / 8)) bytes, bit k (LSB first) of byte
// [i, b] is out[i, 8b + k] > 0, padding bits 0. The forward writes it as it applies the
// ReLU, one thread per byte (8 columns of a row), so no two threads write one byte; the
// backward reads one bit per element instead of the output.

// ---------------------------------------------------------------- linear ----

// out = relu?(y + bias), elementwise over (n, m) row-major, with a grid-stride loop.
// The column j = i % m is kept up to date by adding stride % m, instead of a 64-bit
// division per element. bias may be null (no bias). With a mask (relu only), the loop
// runs over the mask's bytes instead: each thread does the 8 columns of one byte.
template <typename T>
__device__ void linear_forward_epilogue(const T* y, const T* bias, int relu, T* out, unsigned char* mask,
                                        long long n, long long m) {
    const long long stride = (long long)blockDim.x * gridDim.x;
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (mask) {
        const long long mb = (m + 7) / 8;
        for (; i < n * mb; i += stride) {
            const long long r = i / mb, j0 = (i - r * mb) * 8;
            const long long j1 = j0 + 8 < m ? j0 + 8 : m;
            unsigned bits = 0;
            for (long long j = j0; j < j1; ++j) {
                T v = y[r * m + j];
                if (bias) v = v + bias[j];
                v = v < T(0) ? T(0) : v;
                out[r * m + j] = v;
                bits |= (unsigned)(v > T(0)) << (j - j0);
            }
            mask[i] = (unsigned char)bits;
        }
        return;
    }
    const long long total = n * m;
    if (i >= total) return;
    long long j = i % m;
    const long long j_step = stride % m;
    for (; i < total; i += stride) {
        T v = y[i];
        if (bias) v = v + bias[j];
        if (relu) v = v < T(0) ? T(0) : v;
        out[i] = v;
        j += j_step;
        if (j >= m) j -= m;
    }
}

extern "C" __global__ void linear_forward_epilogue_f32(const float* y, const float* bias, int relu, float* out,
                                                       unsigned char* mask, long long n, long long m) {
    linear_forward_epilogue<float>(y, bias, relu, out, mask, n, m);
}
extern "C" __global__ void linear_forward_epilogue_f64(const double* y, const double* bias, int relu, double* out,
                                                       unsigned char* mask, long long n, long long m) {
    linear_forward_epilogue<double>(y, bias, relu, out, mask, n, m);
}

// The backward kernels work on tiles of TILE_X columns by TILE_Y rows: blockDim must be
// (TILE_X, TILE_Y), as cuda.py launches them. A warp (32 threads of one threadIdx.y)
// reads 32 adjacent columns of one row, so the loads are coalesced.
#define TILE_X 32
#define TILE_Y 8

// Sum of s over the TILE_Y threads of one column of the tile, in threadIdx.y order;
// valid in the threads with threadIdx.y == 0. Every thread of the block must call it.
__device__ double tile_column_sum(double s) {
    __shared__ double part[TILE_Y][TILE_X];
    part[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    double total = part[0][threadIdx.x];
    for (int k = 1; k < TILE_Y; ++k) total += part[k][threadIdx.x];
    return total;
}

// g = relu ? grad * mask bit : grad (= grad * (out > 0) of the forward), written to out, and (when bias_grad is not null) the
// column sums of g: the bias gradient.
//
// grid = (ceil(m / TILE_X), strips). Block (bx, by) owns columns [TILE_X bx, TILE_X bx + TILE_X)
// of the rows [by * rows_per_strip, (by + 1) * rows_per_strip): each thread walks its
// column down the strip (rows threadIdx.y, threadIdx.y + TILE_Y, ...) adding in double,
// then the block adds its TILE_Y partial sums in order.
// - One strip (gridDim.y == 1): the block writes bias_grad directly. One launch.
// - Several strips: each writes its sums to partial[by * m + j] (double, no atomics) and
//   linear_backward_epilogue_sum_strips adds the strips in order. Two launches.
// Every addition happens in an order fixed by (n, m) alone (cuda.py derives the strips
// from n), so the bias gradient is deterministic: the same bits on every run and GPU.
template <typename T>
__device__ void linear_backward_epilogue(const T* grad, const unsigned char* mask, int relu, T* bias_grad,
                                         double* partial, T* out, long long n, long long m, long long rows_per_strip) {
    const long long j = (long long)blockIdx.x * TILE_X + threadIdx.x;
    const long long r0 = (long long)blockIdx.y * rows_per_strip;
    const long long r1 = r0 + rows_per_strip < n ? r0 + rows_per_strip : n;
    const long long mb = (m + 7) / 8;
    double s = 0;
    if (j < m) {
        for (long long r = r0 + threadIdx.y; r < r1; r += TILE_Y) {
            const long long k = r * m + j;
            const T g = relu ? grad[k] * T((mask[r * mb + (j >> 3)] >> (j & 7)) & 1) : grad[k];
            out[k] = g;
            s += double(g);
        }
    }
    if (!bias_grad) return;  // the same for the whole block: no thread is left at the barrier
    s = tile_column_sum(s);
    if (threadIdx.y != 0 || j >= m) return;
    if (gridDim.y == 1) bias_grad[j] = T(s);
    else partial[blockIdx.y * m + j] = s;
}

extern "C" __global__ void linear_backward_epilogue_f32(const float* grad, const unsigned char* mask, int relu,
                                                        float* bias_grad, double* partial, float* out, long long n,
                                                        long long m, long long rows_per_strip) {
    linear_backward_epilogue<float>(grad, mask, relu, bias_grad, partial, out, n, m, rows_per_strip);
}
extern "C" __global__ void linear_backward_epilogue_f64(const double* grad, const unsigned char* mask, int relu,
                                                        double* bias_grad, double* partial, double* out, long long n,
                                                        long long m, long long rows_per_strip) {
    linear_backward_epilogue<double>(grad, mask, relu, bias_grad, partial, out, n, m, rows_per_strip);
}

// Second pass of the bias gradient when there are several strips: bias_grad[j] =
// sum over strips of partial[strip * m + j], in strip order (TILE_Y threads per column,
// then the tile sum). grid = (ceil(m / TILE_X), 1), blockDim = (TILE_X, TILE_Y).
template <typename T>
__device__ void linear_backward_epilogue_sum_strips(const double* partial, long long strips, T* bias_grad,
                                                    long long m) {
    const long long j = (long long)blockIdx.x * TILE_X + threadIdx.x;
    double s = 0;
    if (j < m)
        for (long long k = threadIdx.y; k < strips; k += TILE_Y) s += partial[k * m + j];
    s = tile_column_sum(s);
    if (threadIdx.y == 0 && j < m) bias_grad[j] = T(s);
}

extern "C" __global__ void linear_backward_epilogue_sum_strips_f32(const double* partial, long long strips,
                                                                   float* bias_grad, long long m) {
    linear_backward_epilogue_sum_strips<float>(partial, strips, bias_grad, m);
}
extern "C" __global__ void linear_backward_epilogue_sum_strips_f64(const double* partial, long long strips,
                                                                   double* bias_grad, long long m) {
    linear_backward_epilogue_sum_strips<double>(partial, strips, bias_grad, m);
}

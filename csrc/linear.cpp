// Twin of reference.py's linear section: the epilogues of a Linear layer, one pass each.
//
// The loops are `omp simd`: no iteration depends on another, and out[i] may be the
// same element as in[i] (read before written), so the compiler vectorises without
// runtime alias checks. ReLU is written as the reference computes it: `v < 0 ? 0 : v`
// keeps NaN (as np.maximum does) and the mask multiplies, so NaN/inf gradients
// propagate exactly as grad * (y > 0) does in NumPy.
//
// The ReLU mask (layout in linear.h) is written by the forward as it applies the ReLU,
// eight columns to a byte, and read by the backward: one bit per element kept between
// them instead of the output. Each row owns its bytes (rows are padded to whole bytes),
// so parallel_for's threads never write the same byte.
#include "linear.h"

#include <algorithm>
#include <vector>

#include "parallel.h"

namespace tinytl {

// One row of the forward with the mask: 8 columns per byte, then the last partial byte.
template <typename T>
static void forward_row_masked(const T* yi, const T* bias, T* oi, uint8_t* mi, int64_t m) {
    const int64_t full = m / 8;
    for (int64_t b = 0; b < full; ++b) {
        unsigned bits = 0;
#pragma omp simd reduction(| : bits)
        for (int k = 0; k < 8; ++k) {
            const int64_t j = 8 * b + k;
            T v = bias ? yi[j] + bias[j] : yi[j];
            v = v < T(0) ? T(0) : v;
            oi[j] = v;
            bits |= unsigned(v > T(0)) << k;
        }
        mi[b] = uint8_t(bits);
    }
    if (full * 8 < m) {
        unsigned bits = 0;
        for (int64_t j = full * 8; j < m; ++j) {
            T v = bias ? yi[j] + bias[j] : yi[j];
            v = v < T(0) ? T(0) : v;
            oi[j] = v;
            bits |= unsigned(v > T(0)) << (j - full * 8);
        }
        mi[full] = uint8_t(bits);
    }
}

template <typename T>
void linear_forward_epilogue(const T* y, const T* bias, bool relu, T* out, uint8_t* mask, int64_t n, int64_t m) {
    const int64_t mb = (m + 7) / 8;
    parallel_for(n, m, [=](int64_t r0, int64_t r1) {
        for (int64_t i = r0; i < r1; ++i) {
            const T* yi = y + i * m;
            T* oi = out + i * m;
            if (mask) {
                forward_row_masked(yi, bias, oi, mask + i * mb, m);
            } else if (bias && relu) {
#pragma omp simd
                for (int64_t j = 0; j < m; ++j) { T v = yi[j] + bias[j]; oi[j] = v < T(0) ? T(0) : v; }
            } else if (bias) {
#pragma omp simd
                for (int64_t j = 0; j < m; ++j) oi[j] = yi[j] + bias[j];
            } else if (relu) {
#pragma omp simd
                for (int64_t j = 0; j < m; ++j) { T v = yi[j]; oi[j] = v < T(0) ? T(0) : v; }
            } else if (oi != yi) {
                std::copy(yi, yi + m, oi);
            }
        }
    });
}

// One block of rows: write the masked gradient and add its column sums into acc (double).
template <typename T>
static void backward_rows(const T* grad, const uint8_t* mask, bool relu, double* acc, T* out,
                          int64_t r0, int64_t r1, int64_t m) {
    const int64_t mb = (m + 7) / 8;
    for (int64_t i = r0; i < r1; ++i) {
        const T* gi = grad + i * m;
        const uint8_t* mi = relu ? mask + i * mb : nullptr;
        T* oi = out + i * m;
        if (relu && acc) {
#pragma omp simd
            for (int64_t j = 0; j < m; ++j) { T v = gi[j] * T((mi[j >> 3] >> (j & 7)) & 1); oi[j] = v; acc[j] += v; }
        } else if (relu) {
#pragma omp simd
            for (int64_t j = 0; j < m; ++j) oi[j] = gi[j] * T((mi[j >> 3] >> (j & 7)) & 1);
        } else {
            if (oi != gi) std::copy(gi, gi + m, oi);
            if (acc) {
#pragma omp simd
                for (int64_t j = 0; j < m; ++j) acc[j] += gi[j];
            }
        }
    }
}

// The bias gradient is accumulated in double (whatever T is), per block of rows; blocks
// have a fixed size and are combined in order, so the result does not depend on the
// number of threads.
template <typename T>
void linear_backward_epilogue(const T* grad, const uint8_t* mask, bool relu, T* bias_grad, T* out,
                              int64_t n, int64_t m) {
    if (!bias_grad) {
        parallel_for(n, m, [=](int64_t r0, int64_t r1) { backward_rows(grad, mask, relu, (double*)nullptr, out, r0, r1, m); });
        return;
    }
    const int64_t rows_per_block = std::max<int64_t>(1, (int64_t(1) << 16) / std::max<int64_t>(m, 1));
    const int64_t blocks = std::max<int64_t>(1, (n + rows_per_block - 1) / rows_per_block);
    std::vector<double> acc(size_t(blocks * m), 0.0);
    double* a = acc.data();
    parallel_for(blocks, rows_per_block * m, [=](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b)
            backward_rows(grad, mask, relu, a + b * m, out, b * rows_per_block,
                          std::min(n, (b + 1) * rows_per_block), m);
    });
    for (int64_t b = 1; b < blocks; ++b) {
        const double* ab = a + b * m;
#pragma omp simd
        for (int64_t j = 0; j < m; ++j) a[j] += ab[j];
    }
    for (int64_t j = 0; j < m; ++j) bias_grad[j] = T(a[j]);
}

template void linear_forward_epilogue<float>(const float*, const float*, bool, float*, uint8_t*, int64_t, int64_t);
template void linear_forward_epilogue<double>(const double*, const double*, bool, double*, uint8_t*, int64_t, int64_t);
template void linear_backward_epilogue<float>(const float*, const uint8_t*, bool, float*, float*, int64_t, int64_t);
template void linear_backward_epilogue<double>(const double*, const uint8_t*, bool, double*, double*, int64_t, int64_t);

}  // namespace tinytl

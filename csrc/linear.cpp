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
#include <cstring>
#include <vector>

#include "parallel.h"

namespace tinytl {

// Eight 0/1 bytes <-> the eight bits of one mask byte (LSB first), with one 64-bit
// multiply instead of eight shifts: the comparisons and the products stay in plain
// vectorised loops over a row's bytes (tmp), and only these conversions are scalar.
// pack8: byte k of x (little-endian) lands on bit 56 + k of x * 0x0102040810204080.
// unpack8: lane k of (byte * 0x01..01) & 0x80..01 is nonzero iff bit k is set; adding
// 0x7F to each lane sets its top bit iff it is nonzero (no carry out), shifted to bit 0.
static inline uint8_t pack8(const uint8_t* b) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    uint64_t x;
    std::memcpy(&x, b, 8);
    return uint8_t((x * 0x0102040810204080ULL) >> 56);
#else
    unsigned bits = 0;
    for (int k = 0; k < 8; ++k) bits |= unsigned(b[k]) << k;
    return uint8_t(bits);
#endif
}

static inline void unpack8(uint8_t byte, uint8_t* b) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    uint64_t x = (byte * 0x0101010101010101ULL) & 0x8040201008040201ULL;
    x = ((x + 0x7F7F7F7F7F7F7F7FULL) >> 7) & 0x0101010101010101ULL;
    std::memcpy(b, &x, 8);
#else
    for (int k = 0; k < 8; ++k) b[k] = uint8_t((byte >> k) & 1);
#endif
}

// The mask row mi (ceil(m / 8) bytes) of the 0/1 bytes keep[0..m).
static void pack_row(const uint8_t* keep, uint8_t* mi, int64_t m) {
    const int64_t full = m / 8;
    for (int64_t b = 0; b < full; ++b) mi[b] = pack8(keep + 8 * b);
    if (full * 8 < m) {
        uint8_t last[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        std::memcpy(last, keep + 8 * full, size_t(m - 8 * full));
        mi[full] = pack8(last);
    }
}

// The 0/1 bytes keep[0..m) of the mask row mi.
static void unpack_row(const uint8_t* mi, uint8_t* keep, int64_t m) {
    const int64_t full = m / 8;
    for (int64_t b = 0; b < full; ++b) unpack8(mi[b], keep + 8 * b);
    if (full * 8 < m) {
        uint8_t last[8];
        unpack8(mi[full], last);
        std::memcpy(keep + 8 * full, last, size_t(m - 8 * full));
    }
}

// One row of the forward with the mask: the ReLU and its 0/1 bytes in one vectorised
// loop, then the bytes packed (keep: m bytes of scratch, in cache).
template <typename T>
static void forward_row_masked(const T* yi, const T* bias, T* oi, uint8_t* mi, uint8_t* keep, int64_t m) {
    if (bias) {
#pragma omp simd
        for (int64_t j = 0; j < m; ++j) { T v = yi[j] + bias[j]; v = v < T(0) ? T(0) : v; oi[j] = v; keep[j] = uint8_t(v > T(0)); }
    } else {
#pragma omp simd
        for (int64_t j = 0; j < m; ++j) { T v = yi[j]; v = v < T(0) ? T(0) : v; oi[j] = v; keep[j] = uint8_t(v > T(0)); }
    }
    pack_row(keep, mi, m);
}

template <typename T>
void linear_forward_epilogue(const T* y, const T* bias, bool relu, T* out, uint8_t* mask, int64_t n, int64_t m) {
    const int64_t mb = (m + 7) / 8;
    parallel_for(n, m, [=](int64_t r0, int64_t r1) {
        std::vector<uint8_t> keep(mask ? size_t(m) : 0);
        for (int64_t i = r0; i < r1; ++i) {
            const T* yi = y + i * m;
            T* oi = out + i * m;
            if (mask) {
                forward_row_masked(yi, bias, oi, mask + i * mb, keep.data(), m);
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
    std::vector<uint8_t> scratch(relu ? size_t(m) : 0);
    uint8_t* keep = scratch.data();
    for (int64_t i = r0; i < r1; ++i) {
        const T* gi = grad + i * m;
        T* oi = out + i * m;
        if (relu) unpack_row(mask + i * mb, keep, m);
        if (relu && acc) {
#pragma omp simd
            for (int64_t j = 0; j < m; ++j) { T v = gi[j] * T(keep[j]); oi[j] = v; acc[j] += v; }
        } else if (relu) {
#pragma omp simd
            for (int64_t j = 0; j < m; ++j) oi[j] = gi[j] * T(keep[j]);
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

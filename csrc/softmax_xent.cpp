// Twin of reference.py's softmax_xent: per row, m = max(z), e = exp(z - m), s = sum(e),
// loss_i = log(s) + m - z[t], grad = e / s - onehot(t) (then / n for "mean").
//
// Each row is finished before the next is touched, so `out` may be `logits` itself:
// z[t] is read first, then each e_j overwrites z_j after z_j was read.
// Row losses go into a buffer summed in row order: the loss does not depend on threads.
#include "softmax_xent.h"

#include <cmath>
#include <cstring>
#include <vector>

#include "parallel.h"

namespace tinytl {

// exp(x) for x <= 0 in float, written so the compiler vectorises it (libm's expf is a
// call per element): exp(x) = 2^k * exp(r), k = round(x / ln 2), |r| <= ln(2)/2, exp(r)
// by Cephes' degree-6 polynomial (about 1 ulp). NaN stays NaN; below ln(FLT_MIN) gives 0.
static inline float exp_nonpositive(float x) {
    const float lo = -87.3365447504f;
    const float xc = x < lo ? lo : x;
    const float shifted = xc * 1.44269504089f + 12582912.0f;  // 1.5 * 2^23: rounds to integer
    const float k = shifted - 12582912.0f;
    const float r = (xc - k * 0.693359375f) + k * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    uint32_t bits;
    std::memcpy(&bits, &shifted, sizeof bits);                 // k sits in the low mantissa bits
    const uint32_t e = (bits - 0x4B400000u + 127u) << 23;      // unsigned: defined even for NaN
    float scale;
    std::memcpy(&scale, &e, sizeof scale);
    return x < lo ? 0.0f : p * scale;
}
static inline double exp_nonpositive(double x) { return std::exp(x); }

// Max and sum of a row in four independent 32-byte vector accumulators (GCC vector
// extensions: AVX2 registers in the AVX2 clone, SSE pairs in the baseline). `omp simd
// reduction` kept its accumulator on the stack, a store-load chain per vector that
// made this kernel 1.4 cycles per element. The max skips NaN (`z > m` is false), as
// the scalar form did; a NaN still comes out through exp and the sum.
template <typename T> struct Vec;
template <> struct Vec<float> { typedef float type __attribute__((vector_size(32))); };
template <> struct Vec<double> { typedef double type __attribute__((vector_size(32))); };

template <typename T>
static inline __attribute__((always_inline)) typename Vec<T>::type load(const T* p) {
    typename Vec<T>::type v;
    std::memcpy(&v, p, sizeof v);   // an unaligned load
    return v;
}

template <typename T>
static inline __attribute__((always_inline)) T row_max(const T* z, int64_t c) {
    using V = typename Vec<T>::type;
    constexpr int W = int(sizeof(V) / sizeof(T));
    V a[4];
    for (auto& v : a) v = V{} + z[0];
    int64_t j = 0;
    for (; j + 4 * W <= c; j += 4 * W)
        for (int k = 0; k < 4; ++k) {
            const V x = load(z + j + k * W);
            a[k] = x > a[k] ? x : a[k];
        }
    T m = z[0];
    for (const auto& v : a)
        for (int k = 0; k < W; ++k) m = v[k] > m ? v[k] : m;
    for (; j < c; ++j) m = z[j] > m ? z[j] : m;
    return m;
}

template <typename T>
static inline __attribute__((always_inline)) T row_sum(const T* o, int64_t c) {
    using V = typename Vec<T>::type;
    constexpr int W = int(sizeof(V) / sizeof(T));
    V a[4] = {};
    int64_t j = 0;
    for (; j + 4 * W <= c; j += 4 * W)
        for (int k = 0; k < 4; ++k) a[k] += load(o + j + k * W);
    const V v = (a[0] + a[1]) + (a[2] + a[3]);
    T s = 0;
    for (int k = 0; k < W; ++k) s += v[k];
    for (; j < c; ++j) s += o[j];
    return s;
}

template <typename T>
static inline __attribute__((always_inline)) double softmax_xent_row(const T* z, int64_t t, T* o, int64_t c, T scale) {
    const T zt = z[t];
    const T m = row_max(z, c);
#pragma omp simd
    for (int64_t j = 0; j < c; ++j) o[j] = exp_nonpositive(z[j] - m);
    const T s = row_sum(o, c);
    const T k = scale / s;
#pragma omp simd
    for (int64_t j = 0; j < c; ++j) o[j] *= k;
    o[t] -= scale;
    return std::log(double(s)) + double(m) - double(zt);
}

// The float rows are compute-bound (exp): worth an AVX2 clone. Double rows call libm's exp.
TINYTL_SIMD_CLONES static double row_f32(const float* z, int64_t t, float* o, int64_t c, float scale) {
    return softmax_xent_row(z, t, o, c, scale);
}
static double row_f64(const double* z, int64_t t, double* o, int64_t c, double scale) {
    return softmax_xent_row(z, t, o, c, scale);
}
static inline double row(const float* z, int64_t t, float* o, int64_t c, float s) { return row_f32(z, t, o, c, s); }
static inline double row(const double* z, int64_t t, double* o, int64_t c, double s) { return row_f64(z, t, o, c, s); }

template <typename T>
double softmax_xent(const T* logits, const int64_t* target, bool mean, T* out, int64_t n, int64_t c) {
    const T scale = mean ? T(1) / T(n) : T(1);
    std::vector<double> row_loss(size_t(n > 0 ? n : 0));
    double* rl = row_loss.data();
    parallel_for(n, 4 * c, [=](int64_t r0, int64_t r1) {  // exp costs ~4 element-passes
        for (int64_t i = r0; i < r1; ++i)
            rl[i] = row(logits + i * c, target[i], out + i * c, c, scale);
    });
    double loss = 0;
    for (int64_t i = 0; i < n; ++i) loss += rl[i];
    return mean ? loss / double(n) : loss;
}

template double softmax_xent<float>(const float*, const int64_t*, bool, float*, int64_t, int64_t);
template double softmax_xent<double>(const double*, const int64_t*, bool, double*, int64_t, int64_t);

}  // namespace tinytl

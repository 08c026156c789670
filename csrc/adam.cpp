// Twin of reference.py's adam_step, one pass over the elements (t = step):
//   g = -grad (maximize) | grad
//   param *= 1 - lr * weight_decay           (AdamW)   | g += weight_decay * param (Adam)
//   m += (1 - beta1) * (g - m)
//   v = v * beta2 + (1 - beta2) * g * g
//   vmax = max(vmax, v)                      (amsgrad: v_hat = vmax, else v)
//   param += (-lr / (1 - beta1^t)) * m / (sqrt(v_hat) / sqrt(1 - beta2^t) + eps)
// The reference makes five passes over memory (each NumPy operation reads and writes
// whole arrays, with temporaries); this makes one, reading param, grad and the moments
// once and writing each once. The weight-decay mode and amsgrad are template parameters
// (a branch-free loop each); maximize is a multiply by -1 (exact). sqrt and division are
// the IEEE-rounded instructions, and no FMA is formed (-ffp-contract=off), so every
// clone gives NumPy's bits.
#include "adam.h"

#include "parallel.h"

#include <cmath>
#include <cstdint>

namespace tinytl {

enum { kNoDecay = 0, kL2 = 1, kDecoupled = 2 };

template <typename T>
struct AdamScalars {
    T sign, decay, wd, b1c, b2, b2c, neg_step_size, bc2_sqrt, eps;
};

template <typename T, int WD, bool AMS>
static inline __attribute__((always_inline)) void adam_loop(T* p, const T* g, T* m, T* v, T* vmax,
                                                            const AdamScalars<T> s, int64_t i0, int64_t i1) {
#pragma omp simd
    for (int64_t i = i0; i < i1; ++i) {
        T gi = s.sign * g[i];
        T pi = p[i];
        if (WD == kDecoupled) pi = pi * s.decay;
        if (WD == kL2) gi = gi + s.wd * pi;
        const T mi = m[i] + s.b1c * (gi - m[i]);
        const T vi = v[i] * s.b2 + (s.b2c * gi) * gi;
        m[i] = mi;
        v[i] = vi;
        T vh = vi;
        if (AMS) {
            const T a = vmax[i];
            vh = (a >= vi || a != a) ? a : vi;   // np.maximum: a NaN on either side wins
            vmax[i] = vh;
        }
        const T denom = std::sqrt(vh) / s.bc2_sqrt + s.eps;
        p[i] = pi + (s.neg_step_size * mi) / denom;
    }
}

template <typename T>
static inline __attribute__((always_inline)) void adam_chunk(T* p, const T* g, T* m, T* v, T* vmax,
                                                             const AdamScalars<T>& s, int wd_mode, bool ams,
                                                             int64_t i0, int64_t i1) {
#define TINYTL_ADAM_CASES(WD)                                         \
    if (ams) adam_loop<T, WD, true>(p, g, m, v, vmax, s, i0, i1);     \
    else     adam_loop<T, WD, false>(p, g, m, v, vmax, s, i0, i1);
    if (wd_mode == kL2) { TINYTL_ADAM_CASES(kL2) }
    else if (wd_mode == kDecoupled) { TINYTL_ADAM_CASES(kDecoupled) }
    else { TINYTL_ADAM_CASES(kNoDecay) }
#undef TINYTL_ADAM_CASES
}

// sqrt and division make the loop compute-bound at cache-resident sizes: AVX2 and
// AVX-512 clones (the same IEEE operations in the same order, so the same bits).
TINYTL_SIMD_CLONES static void adam_chunk_f32(float* p, const float* g, float* m, float* v, float* vmax,
                                              const AdamScalars<float>& s, int wd_mode, bool ams, int64_t i0,
                                              int64_t i1) {
    adam_chunk<float>(p, g, m, v, vmax, s, wd_mode, ams, i0, i1);
}
TINYTL_SIMD_CLONES static void adam_chunk_f64(double* p, const double* g, double* m, double* v, double* vmax,
                                              const AdamScalars<double>& s, int wd_mode, bool ams, int64_t i0,
                                              int64_t i1) {
    adam_chunk<double>(p, g, m, v, vmax, s, wd_mode, ams, i0, i1);
}
static inline void chunk(float* p, const float* g, float* m, float* v, float* vmax, const AdamScalars<float>& s,
                         int wd_mode, bool ams, int64_t i0, int64_t i1) {
    adam_chunk_f32(p, g, m, v, vmax, s, wd_mode, ams, i0, i1);
}
static inline void chunk(double* p, const double* g, double* m, double* v, double* vmax,
                         const AdamScalars<double>& s, int wd_mode, bool ams, int64_t i0, int64_t i1) {
    adam_chunk_f64(p, g, m, v, vmax, s, wd_mode, ams, i0, i1);
}

template <typename T>
void adam_step(T* param, const T* grad, T* exp_avg, T* exp_avg_sq, T* max_exp_avg_sq, int64_t step, double lr,
               double beta1, double beta2, double eps, double weight_decay, bool amsgrad, bool maximize,
               bool decoupled_weight_decay, int64_t n) {
    // The scalars as reference.py forms them: in double (Python floats), then rounded to T.
    const double t = double(step);
    AdamScalars<T> s;
    s.sign = maximize ? T(-1) : T(1);
    s.decay = T(1 - lr * weight_decay);
    s.wd = T(weight_decay);
    s.b1c = T(1 - beta1);
    s.b2 = T(beta2);
    s.b2c = T(1 - beta2);
    s.neg_step_size = T(-(lr / (1 - std::pow(beta1, t))));
    s.bc2_sqrt = T(std::pow(1 - std::pow(beta2, t), 0.5));
    s.eps = T(eps);
    const int wd_mode = weight_decay == 0 ? kNoDecay : decoupled_weight_decay ? kDecoupled : kL2;
    parallel_for(n, 4, [=](int64_t i0, int64_t i1) {
        chunk(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, s, wd_mode, amsgrad, i0, i1);
    });
}

template void adam_step<float>(float*, const float*, float*, float*, float*, int64_t, double, double, double, double,
                               double, bool, bool, bool, int64_t);
template void adam_step<double>(double*, const double*, double*, double*, double*, int64_t, double, double, double,
                                double, double, bool, bool, bool, int64_t);

}  // namespace tinytl

// Twin of reference.py's sgd_step, one pass over the elements:
//   d = grad + weight_decay * param
//   buf = d (first step) | momentum * buf + (1 - dampening) * d
//   d = d + momentum * buf (nesterov) | buf
//   param -= lr * d
// The options are fixed for the whole call, so they are template parameters: each
// combination gets its own branch-free, vectorised loop.
//
// stream: write the new parameter values with streaming (non-temporal) stores. Same
// values, different path through the caches. After a multi-threaded BLAS GEMM has read
// the weights on every core, each line the update stores must first be taken back
// from the other cores' caches; a plain store waits for that line by line (an update
// of 784x128 floats took 92 us after OpenBLAS's 2-thread forward GEMM, 19 us without
// it), while a streaming store of a whole line invalidates the other copies without
// waiting for their data (35 us). The lines then go to memory instead of this core's
// cache, which costs the next reader when no other core holds them: the update of a
// hot 1M-float parameter alone is ~1.7x slower. So the caller chooses: SGD times whole
// iterations both ways, keeps the faster and times them again every 500 steps
// (tinytl/optim.py).
#include "sgd.h"

#include "parallel.h"

#include <cstdint>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace tinytl {

// The update of one element: returns the new parameter value; b is the element's
// momentum buffer, updated in place (nullptr without momentum: buf may be null then).
template <typename T, bool WD, bool MOM, bool FIRST, bool NEST>
static inline __attribute__((always_inline)) T sgd_elem(T p, T g, T* b, T lr, T mom, T damp1, T wd) {
    T d = WD ? g + wd * p : g;
    if (MOM) {
        const T bi = FIRST ? d : mom * *b + damp1 * d;
        *b = bi;
        d = NEST ? d + mom * bi : bi;
    }
    return p - lr * d;
}

template <typename T, bool WD, bool MOM, bool FIRST, bool NEST>
static inline __attribute__((always_inline)) void sgd_loop(T* p, const T* g, T* b, T lr, T mom, T damp1, T wd, int64_t i0, int64_t i1) {
#pragma omp simd
    for (int64_t i = i0; i < i1; ++i) p[i] = sgd_elem<T, WD, MOM, FIRST, NEST>(p[i], g[i], MOM ? b + i : nullptr, lr, mom, damp1, wd);
}

#if defined(__SSE2__)
inline void stream_line(float* dst, const float* src) {
    for (int k = 0; k < 16; k += 4) _mm_stream_ps(dst + k, _mm_load_ps(src + k));
}
inline void stream_line(double* dst, const double* src) {
    for (int k = 0; k < 8; k += 2) _mm_stream_pd(dst + k, _mm_load_pd(src + k));
}

// The same update, with the new parameter values written by streaming
// (non-temporal) stores, one whole 64-byte cache line at a time (the scalar head
// and tail, outside whole lines, use plain stores).
template <typename T, bool WD, bool MOM, bool FIRST, bool NEST>
static inline __attribute__((always_inline)) void sgd_loop_stream(T* p, const T* g, T* b, T lr, T mom, T damp1, T wd, int64_t i0, int64_t i1) {
    constexpr int64_t L = 64 / sizeof(T);
    int64_t i = i0;
    while (i < i1 && (reinterpret_cast<uintptr_t>(p + i) & 63) != 0) ++i;   // scalar head
    sgd_loop<T, WD, MOM, FIRST, NEST>(p, g, b, lr, mom, damp1, wd, i0, i);
    for (; i + L <= i1; i += L) {
        alignas(64) T out[L];
#pragma omp simd
        for (int64_t k = 0; k < L; ++k)
            out[k] = sgd_elem<T, WD, MOM, FIRST, NEST>(p[i + k], g[i + k], MOM ? b + i + k : nullptr, lr, mom, damp1, wd);
        stream_line(p + i, out);
    }
    sgd_loop<T, WD, MOM, FIRST, NEST>(p, g, b, lr, mom, damp1, wd, i, i1);
    _mm_sfence();   // the streaming stores are weakly ordered: fence them in the thread that made them
}
#endif

template <typename T, bool WD, bool MOM, bool FIRST, bool NEST>
static inline __attribute__((always_inline)) void sgd_range(T* p, const T* g, T* b, T lr, T mom, T damp1, T wd,
                                                            int64_t i0, int64_t i1, bool stream) {
#if defined(__SSE2__)
    if (stream) return sgd_loop_stream<T, WD, MOM, FIRST, NEST>(p, g, b, lr, mom, damp1, wd, i0, i1);
#endif
    sgd_loop<T, WD, MOM, FIRST, NEST>(p, g, b, lr, mom, damp1, wd, i0, i1);
}

// One chunk [i0, i1) of the update, every option combination. The loops are short and
// run out of the L2/L3 caches at the sizes of real layers, where the 4-wide SSE2 baseline
// is instruction-bound: the chunk gets AVX2 and AVX-512 clones (same operations, no FMA
// contraction in this file, so the same results).
template <typename T>
static inline __attribute__((always_inline)) void sgd_chunk(T* p, const T* g, T* b, T lr, T mom, T damp1, T wd,
                                                            bool wd_on, bool momentum_on, bool nesterov, bool first,
                                                            bool s, int64_t i0, int64_t i1) {
#define TINYTL_SGD_CASES(WD)                                                                                    \
    if (!momentum_on)           sgd_range<T, WD, false, false, false>(p, g, b, lr, mom, damp1, wd, i0, i1, s); \
    else if (first && nesterov) sgd_range<T, WD, true, true, true>(p, g, b, lr, mom, damp1, wd, i0, i1, s);    \
    else if (first)             sgd_range<T, WD, true, true, false>(p, g, b, lr, mom, damp1, wd, i0, i1, s);   \
    else if (nesterov)          sgd_range<T, WD, true, false, true>(p, g, b, lr, mom, damp1, wd, i0, i1, s);   \
    else                        sgd_range<T, WD, true, false, false>(p, g, b, lr, mom, damp1, wd, i0, i1, s);
    if (wd_on) { TINYTL_SGD_CASES(true) } else { TINYTL_SGD_CASES(false) }
#undef TINYTL_SGD_CASES
}

TINYTL_SIMD_CLONES static void sgd_chunk_f32(float* p, const float* g, float* b, float lr, float mom, float damp1,
                                             float wd, bool wd_on, bool momentum_on, bool nesterov, bool first,
                                             bool s, int64_t i0, int64_t i1) {
    sgd_chunk<float>(p, g, b, lr, mom, damp1, wd, wd_on, momentum_on, nesterov, first, s, i0, i1);
}
TINYTL_SIMD_CLONES static void sgd_chunk_f64(double* p, const double* g, double* b, double lr, double mom,
                                             double damp1, double wd, bool wd_on, bool momentum_on, bool nesterov,
                                             bool first, bool s, int64_t i0, int64_t i1) {
    sgd_chunk<double>(p, g, b, lr, mom, damp1, wd, wd_on, momentum_on, nesterov, first, s, i0, i1);
}
static inline void chunk(float* p, const float* g, float* b, float lr, float mom, float damp1, float wd, bool wd_on,
                         bool momentum_on, bool nesterov, bool first, bool s, int64_t i0, int64_t i1) {
    sgd_chunk_f32(p, g, b, lr, mom, damp1, wd, wd_on, momentum_on, nesterov, first, s, i0, i1);
}
static inline void chunk(double* p, const double* g, double* b, double lr, double mom, double damp1, double wd,
                         bool wd_on, bool momentum_on, bool nesterov, bool first, bool s, int64_t i0, int64_t i1) {
    sgd_chunk_f64(p, g, b, lr, mom, damp1, wd, wd_on, momentum_on, nesterov, first, s, i0, i1);
}

template <typename T>
void sgd_step(T* param, const T* grad, T* buf, double lr, double momentum, double dampening,
              double weight_decay, bool nesterov, bool first_step, bool stream, int64_t n) {
    const T lr_t = T(lr), mom = T(momentum), damp1 = T(1 - dampening), wd = T(weight_decay);
    const bool wd_on = weight_decay != 0, momentum_on = momentum != 0;
    parallel_for(n, 1, [=](int64_t i0, int64_t i1) {
        chunk(param, grad, buf, lr_t, mom, damp1, wd, wd_on, momentum_on, nesterov, first_step, stream, i0, i1);
    });
}

template void sgd_step<float>(float*, const float*, float*, double, double, double, double, bool, bool, bool, int64_t);
template void sgd_step<double>(double*, const double*, double*, double, double, double, double, bool, bool, bool, int64_t);

}  // namespace tinytl

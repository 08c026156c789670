// Twin of reference.py's sgd_step, one pass over the elements:
//   d = grad + weight_decay * param
//   buf = d (first step) | momentum * buf + (1 - dampening) * d
//   d = d + momentum * buf (nesterov) | buf
//   param -= lr * d
// The options are fixed for the whole call, so they are template parameters: each
// combination gets its own branch-free, vectorised loop.
#include "sgd.h"

#include "parallel.h"

namespace tinytl {

template <typename T, bool WD, bool MOM, bool FIRST, bool NEST>
static void sgd_loop(T* p, const T* g, T* b, T lr, T mom, T damp1, T wd, int64_t i0, int64_t i1) {
#pragma omp simd
    for (int64_t i = i0; i < i1; ++i) {
        T d = WD ? g[i] + wd * p[i] : g[i];
        if (MOM) {
            const T bi = FIRST ? d : mom * b[i] + damp1 * d;
            b[i] = bi;
            d = NEST ? d + mom * bi : bi;
        }
        p[i] = p[i] - lr * d;
    }
}

template <typename T, bool WD>
static void sgd_dispatch(T* p, const T* g, T* b, T lr, T mom, T damp1, T wd, bool momentum_on,
                         bool nesterov, bool first, int64_t n) {
    parallel_for(n, 1, [=](int64_t i0, int64_t i1) {
        if (!momentum_on)           sgd_loop<T, WD, false, false, false>(p, g, b, lr, mom, damp1, wd, i0, i1);
        else if (first && nesterov) sgd_loop<T, WD, true, true, true>(p, g, b, lr, mom, damp1, wd, i0, i1);
        else if (first)             sgd_loop<T, WD, true, true, false>(p, g, b, lr, mom, damp1, wd, i0, i1);
        else if (nesterov)          sgd_loop<T, WD, true, false, true>(p, g, b, lr, mom, damp1, wd, i0, i1);
        else                        sgd_loop<T, WD, true, false, false>(p, g, b, lr, mom, damp1, wd, i0, i1);
    });
}

template <typename T>
void sgd_step(T* param, const T* grad, T* buf, double lr, double momentum, double dampening,
              double weight_decay, bool nesterov, bool first_step, int64_t n) {
    const T lr_t = T(lr), mom = T(momentum), damp1 = T(1 - dampening), wd = T(weight_decay);
    const bool momentum_on = momentum != 0;
    if (weight_decay != 0)
        sgd_dispatch<T, true>(param, grad, buf, lr_t, mom, damp1, wd, momentum_on, nesterov, first_step, n);
    else
        sgd_dispatch<T, false>(param, grad, buf, lr_t, mom, damp1, wd, momentum_on, nesterov, first_step, n);
}

template void sgd_step<float>(float*, const float*, float*, double, double, double, double, bool, bool, int64_t);
template void sgd_step<double>(double*, const double*, double*, double, double, double, double, bool, bool, int64_t);

}  // namespace tinytl

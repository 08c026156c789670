// Softmax cross-entropy, loss and gradient in one pass over the logits.
// Twin: softmax_xent in tinytl/kernels/reference.py.
#pragma once
#include <cstdint>

namespace tinytl {

// logits (n, c), target (n,) in [0, c) (checked by the caller), out (n, c) may be logits.
// Writes grad = (softmax(logits) - onehot(target)) [/ n if mean] into out and returns the
// loss (mean or sum over rows of logsumexp(z_i) - z_i[t_i]), accumulated in double.
template <typename T>
double softmax_xent(const T* logits, const int64_t* target, bool mean, T* out, int64_t n, int64_t c);

}  // namespace tinytl

// SGD with momentum, dampening, weight decay and Nesterov: torch.optim.SGD's rule.
// Twin: sgd_step in tinytl/kernels/reference.py.
#pragma once
#include <cstdint>

namespace tinytl {

// In place on param (and buf, which may be nullptr when momentum == 0); n elements each.
// The scalars are rounded to T first, as NumPy does with Python floats, so float32
// updates match the reference bit for bit. stream: store the new parameter values with
// streaming (non-temporal) stores (the values are the same; see sgd.cpp for when it pays).
template <typename T>
void sgd_step(T* param, const T* grad, T* buf, double lr, double momentum, double dampening,
              double weight_decay, bool nesterov, bool first_step, bool stream, int64_t n);

}  // namespace tinytl

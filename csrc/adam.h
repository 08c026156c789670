// Adam and AdamW: torch.optim.Adam's / AdamW's rule (torch 2.x, single-tensor).
// Twin: adam_step in tinytl/kernels/reference.py.
#pragma once
#include <cstdint>

namespace tinytl {

// In place on param, exp_avg, exp_avg_sq (and max_exp_avg_sq, which may be nullptr unless
// amsgrad); n elements each. step is the number of this step (>= 1). The bias
// corrections are computed in double from step, then every scalar is rounded to T, as
// NumPy does with Python floats, so the update matches the reference bit for bit.
template <typename T>
void adam_step(T* param, const T* grad, T* exp_avg, T* exp_avg_sq, T* max_exp_avg_sq, int64_t step, double lr,
               double beta1, double beta2, double eps, double weight_decay, bool amsgrad, bool maximize,
               bool decoupled_weight_decay, int64_t n);

}  // namespace tinytl

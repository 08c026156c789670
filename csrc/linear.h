// Linear-layer epilogues: the element-wise work around the GEMM y = x @ W.T.
// Twins: linear_forward_epilogue / linear_backward_epilogue in tinytl/kernels/reference.py.
// Arrays are C-contiguous (n, m) matrices; `out` may be the input itself (same pointer).
#pragma once
#include <cstdint>

namespace tinytl {

// out = relu ? max(y + bias, 0) : y + bias; bias (m,) may be nullptr.
template <typename T>
void linear_forward_epilogue(const T* y, const T* bias, bool relu, T* out, int64_t n, int64_t m);

// out = relu ? grad * (y > 0) : grad; bias_grad (m,) = column sums of out, unless nullptr.
template <typename T>
void linear_backward_epilogue(const T* grad, const T* y, bool relu, T* bias_grad, T* out,
                              int64_t n, int64_t m);

}  // namespace tinytl

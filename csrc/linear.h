// Linear-layer epilogues: the element-wise work around the GEMM y = x @ W.T.
// Twins: linear_forward_epilogue / linear_backward_epilogue in tinytl/kernels/reference.py.
// Arrays are C-contiguous (n, m) matrices; `out` may be the input itself (same pointer).
// The ReLU mask is (n, ceil(m / 8)) bytes: bit k (LSB first) of byte [i, b] is out[i, 8b + k] > 0,
// the padding bits are 0 (reference.py's layout, np.packbits(out > 0, axis=1, bitorder="little")).
#pragma once
#include <cstdint>

namespace tinytl {

// out = relu ? max(y + bias, 0) : y + bias; bias (m,) may be nullptr; mask (relu only) may be
// nullptr, else it receives the packed ReLU mask, in the same pass.
template <typename T>
void linear_forward_epilogue(const T* y, const T* bias, bool relu, T* out, uint8_t* mask, int64_t n, int64_t m);

// out = relu ? grad * unpack(mask) : grad; bias_grad (m,) = column sums of out, unless nullptr.
template <typename T>
void linear_backward_epilogue(const T* grad, const uint8_t* mask, bool relu, T* bias_grad, T* out,
                              int64_t n, int64_t m);

}  // namespace tinytl

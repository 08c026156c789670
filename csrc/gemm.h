// The three products of a Linear layer at small batch, with their epilogues fused, on
// tinytl's own GEMM (gemm_kernel.h; one build per instruction set, picked at run time).
// Twins: linear_forward / linear_backward in tinytl/kernels/reference.py.
//
// Layout: x (M, K) and grad (M, N) C-contiguous; the weight is Linear's: W (N, K) in Fortran
// order, i.e. wt = W.T, the C-contiguous (K, N) matrix. The ReLU mask is linear.h's:
// (M, ceil(N / 8)) bytes, bit k of byte [i, b] = out[i, 8b + k] > 0.
#pragma once
#include <cstdint>

namespace tinytl {

// out = x @ wt, + bias (N,) unless nullptr, then max(., 0) if relu; mask (relu only; may be
// nullptr) gets the packed out > 0. threads: 0 = decide from the size (gemm_threads), else that many
// (at most max_threads()). Scratch buffers up to 4 MiB each (three per dtype) are kept per calling
// thread between calls.
template <typename T>
void linear_forward(const T* x, const T* wt, const T* bias, bool relu, T* out, uint8_t* mask, int64_t M, int64_t K,
                    int64_t N, int threads);

// g = relu ? grad * unpack(mask) : grad (never written: packed inside), then, each unless nullptr:
// bias_grad (N,) = g.sum(0) (summed in double); gwt (K, N) = x.T @ g (the weight gradient in the
// weight's own layout); gx (M, K) = g @ wt.T.
template <typename T>
void linear_backward(const T* grad, const uint8_t* mask, bool relu, const T* x, const T* wt, T* bias_grad, T* gwt,
                     T* gx, int64_t M, int64_t K, int64_t N, int threads);

// The instruction set the GEMM runs on: "avx512", "avx2" or "scalar" (TINYTL_GEMM_ISA may lower it).
const char* gemm_isa();

// Threads one product of this many floating-point operations uses (1 below kGemmTwoThreadFlops).
int gemm_threads(double flops);

// n iterations of the FMA peak loop of the chosen instruction set; returns the operations done.
uint64_t fma_peak(bool f32, int64_t n);

}  // namespace tinytl

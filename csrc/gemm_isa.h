// What one instruction set's build of gemm_kernel.h offers gemm.cpp: a table of plain
// functions (no templates, no std:: types cross this line; see gemm_kernel.h for why).
#pragma once
#include <cstdint>

namespace tinytl {

template <typename T>
struct GemmOps {
    const char* isa;   // "avx512", "avx2" or "scalar"
    int64_t nr;        // the column-panel width (a multiple of 8)
    int64_t kc;        // the reduction block: nn's work holds KC x nr elements per panel
    // C = A @ B (+ bias, ReLU, packed mask) on column panels [jp0, jp1); gemm_kernel.h's gemm_nn
    void (*nn)(int64_t M, int64_t N, int64_t K, const T* A, int64_t rsa, int64_t csa, const T* B, int64_t ldb,
               T* C, int64_t ldc, const T* bias, bool relu, uint8_t* mask, int64_t mask_ld, int64_t jp0,
               int64_t jp1, T* work);
    // gm = relu ? grad * mask : grad, colsum += column sums (gemm_kernel.h's pack_grad)
    void (*pack_grad)(const T* grad, const uint8_t* mask, bool relu, int64_t M, int64_t N, T* gm, int64_t ldg,
                      double* colsum);
    // dst = src.T
    void (*transpose)(const T* src, int64_t R, int64_t C, int64_t lds, T* dst, int64_t ldd);
    // FMA peak loop: returns the floating-point operations done
    uint64_t (*fma_peak)(int64_t n);
};

// One table per build and dtype, told apart by the tag's type: gemm_ops_avx2((float*)nullptr).
GemmOps<float> gemm_ops_scalar(float*);
GemmOps<double> gemm_ops_scalar(double*);
#ifdef TINYTL_GEMM_AVX2
GemmOps<float> gemm_ops_avx2(float*);
GemmOps<double> gemm_ops_avx2(double*);
#endif
#ifdef TINYTL_GEMM_AVX512
GemmOps<float> gemm_ops_avx512(float*);
GemmOps<double> gemm_ops_avx512(double*);
#endif

}  // namespace tinytl

// The table of one build (used at the end of each gemm_<isa>.cpp, after gemm_kernel.h, inside
// namespace tinytl): NAME(T*) for the vector traits NS::V and the MR x NV tile.
#define TINYTL_GEMM_OPS(NAME, NS, ISA, T, V, MR, NV)                                                    \
    GemmOps<T> NAME(T*) {                                                                               \
        GemmOps<T> o;                                                                                   \
        o.isa = ISA;                                                                                    \
        o.nr = int64_t(NV) * NS::V::W;                                                                  \
        o.kc = NS::KC;                                                                                  \
        o.nn = &NS::gemm_nn<NS::V, MR, NV>;                                                             \
        o.pack_grad = &NS::pack_grad<NS::V>;                                                            \
        o.transpose = &NS::transpose<NS::V>;                                                            \
        o.fma_peak = &NS::fma_peak<NS::V>;                                                              \
        return o;                                                                                       \
    }

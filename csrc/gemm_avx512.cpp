// gemm_kernel.h for AVX-512 (F, DQ, BW, VL; compiled with those -m flags, see CMakeLists.txt).
// 32 registers of 16 floats / 8 doubles: the tile is 4 x 64 floats (16 accumulators, 4 B
// vectors, 1 broadcast), 4 x 32 doubles. Masks of 16 / 8 lanes are the packed ReLU mask's
// bits as they are (bit l of the mask bytes = column l), read and written without shuffles.
#include "gemm_isa.h"

#ifdef TINYTL_GEMM_AVX512
#include <immintrin.h>

namespace tinytl {
namespace gemm_avx512 {

struct VF {
    using T = float;
    using R = __m512;
    static constexpr int W = 16;
    static R zero() { return _mm512_setzero_ps(); }
    static R set1(T a) { return _mm512_set1_ps(a); }
    static R load(const T* p) { return _mm512_loadu_ps(p); }
    static void store(T* p, R v) { _mm512_storeu_ps(p, v); }
    static R fma(R a, R b, R c) { return _mm512_fmadd_ps(a, b, c); }
    static R add(R a, R b) { return _mm512_add_ps(a, b); }
    static R relu(R v) { return _mm512_max_ps(_mm512_setzero_ps(), v); }  // (0 > v) ? 0 : v: NaN and -0 kept
    static uint64_t gt0_bits(R v) { return _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_GT_OQ); }
    static R mul01(R v, uint64_t bits) { return _mm512_mul_ps(v, _mm512_maskz_mov_ps(__mmask16(bits), set1(1.0f))); }
};

struct VD {
    using T = double;
    using R = __m512d;
    static constexpr int W = 8;
    static R zero() { return _mm512_setzero_pd(); }
    static R set1(T a) { return _mm512_set1_pd(a); }
    static R load(const T* p) { return _mm512_loadu_pd(p); }
    static void store(T* p, R v) { _mm512_storeu_pd(p, v); }
    static R fma(R a, R b, R c) { return _mm512_fmadd_pd(a, b, c); }
    static R add(R a, R b) { return _mm512_add_pd(a, b); }
    static R relu(R v) { return _mm512_max_pd(_mm512_setzero_pd(), v); }
    static uint64_t gt0_bits(R v) { return _mm512_cmp_pd_mask(v, _mm512_setzero_pd(), _CMP_GT_OQ); }
    static R mul01(R v, uint64_t bits) { return _mm512_mul_pd(v, _mm512_maskz_mov_pd(__mmask8(bits), set1(1.0))); }
};

constexpr int64_t KC = 128;  // a KC x 64 float (x 32 double) block of B is 32 KiB: it stays in L1 (48 KiB)
#include "gemm_kernel.h"

}  // namespace gemm_avx512

using gemm_avx512::VF;
using gemm_avx512::VD;
using gemm_avx512::gemm_nn;
using gemm_avx512::pack_grad;
using gemm_avx512::transpose;
using gemm_avx512::fma_peak;
TINYTL_GEMM_OPS(gemm_ops_avx512_f, "avx512", float, VF, 4, 4)
TINYTL_GEMM_OPS(gemm_ops_avx512_d, "avx512", double, VD, 4, 4)

}  // namespace tinytl
#endif

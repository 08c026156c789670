// gemm_kernel.h for AVX2 + FMA (x86-64-v3; compiled with -mavx2 -mfma, see CMakeLists.txt).
// 16 registers of 8 floats / 4 doubles: the tile is 6 x 16 floats (12 accumulators, 2 B
// vectors, 1 broadcast: BLIS's Haswell shape), 6 x 8 doubles.
#include "gemm_isa.h"

#ifdef TINYTL_GEMM_AVX2
#include <immintrin.h>

namespace tinytl {
namespace gemm_avx2 {

struct VF {
    using T = float;
    using R = __m256;
    static constexpr int W = 8;
    static R zero() { return _mm256_setzero_ps(); }
    static R set1(T a) { return _mm256_set1_ps(a); }
    static R load(const T* p) { return _mm256_loadu_ps(p); }
    static void store(T* p, R v) { _mm256_storeu_ps(p, v); }
    static R fma(R a, R b, R c) { return _mm256_fmadd_ps(a, b, c); }
    static R add(R a, R b) { return _mm256_add_ps(a, b); }
    static R relu(R v) { return _mm256_max_ps(_mm256_setzero_ps(), v); }  // (0 > v) ? 0 : v: NaN and -0 kept
    static uint64_t gt0_bits(R v) { return unsigned(_mm256_movemask_ps(_mm256_cmp_ps(v, zero(), _CMP_GT_OQ))); }
    static R mul01(R v, uint64_t bits) {
        const __m256i sel = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
        const __m256i on = _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32(int(bits)), sel), sel);
        return _mm256_mul_ps(v, _mm256_and_ps(_mm256_castsi256_ps(on), set1(1.0f)));
    }
    // d[c * ldd + r] = s[r * lds + c] for a W x W block: one gather per column
    static void transpose_block(const T* s, int64_t lds, T* d, int64_t ldd) {
        const __m256i idx = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(int(lds)));
        for (int c = 0; c < W; ++c) store(d + c * ldd, _mm256_i32gather_ps(s + c, idx, 4));
    }
};

struct VD {
    using T = double;
    using R = __m256d;
    static constexpr int W = 4;
    static R zero() { return _mm256_setzero_pd(); }
    static R set1(T a) { return _mm256_set1_pd(a); }
    static R load(const T* p) { return _mm256_loadu_pd(p); }
    static void store(T* p, R v) { _mm256_storeu_pd(p, v); }
    static R fma(R a, R b, R c) { return _mm256_fmadd_pd(a, b, c); }
    static R add(R a, R b) { return _mm256_add_pd(a, b); }
    static R relu(R v) { return _mm256_max_pd(_mm256_setzero_pd(), v); }
    static uint64_t gt0_bits(R v) { return unsigned(_mm256_movemask_pd(_mm256_cmp_pd(v, zero(), _CMP_GT_OQ))); }
    static R mul01(R v, uint64_t bits) {
        const __m256i sel = _mm256_setr_epi64x(1, 2, 4, 8);
        const __m256i on = _mm256_cmpeq_epi64(_mm256_and_si256(_mm256_set1_epi64x((long long)bits), sel), sel);
        return _mm256_mul_pd(v, _mm256_and_pd(_mm256_castsi256_pd(on), set1(1.0)));
    }
    static void transpose_block(const T* s, int64_t lds, T* d, int64_t ldd) {
        const __m128i idx = _mm_mullo_epi32(_mm_setr_epi32(0, 1, 2, 3), _mm_set1_epi32(int(lds)));
        for (int c = 0; c < W; ++c) store(d + c * ldd, _mm256_i32gather_pd(s + c, idx, 8));
    }
};

constexpr int64_t KC = 256;
#include "gemm_kernel.h"

}  // namespace gemm_avx2

TINYTL_GEMM_OPS(gemm_ops_avx2, gemm_avx2, "avx2", float, VF, 6, 2)
TINYTL_GEMM_OPS(gemm_ops_avx2, gemm_avx2, "avx2", double, VD, 6, 2)

}  // namespace tinytl
#endif

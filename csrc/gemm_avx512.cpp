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
    // d[c * ldd + r] = s[r * lds + c] for a 16 x 16 block, in registers: pairs of rows interleaved
    // (unpack), then quads (shuffle_ps), then 128-bit lanes twice (shuffle_f32x4)
    static void transpose_block(const T* s, int64_t lds, T* d, int64_t ldd) {
        R r[16], t[16];
        for (int i = 0; i < 16; ++i) r[i] = load(s + i * lds);
        for (int i = 0; i < 16; i += 2) {
            t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
            t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
        }
        for (int i = 0; i < 16; i += 4) {  // r[i + j]: lane k holds column 4k + j of rows i..i+3
            r[i] = _mm512_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
            r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
            r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
            r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
        }
        for (int h = 0; h < 16; h += 8)
            for (int j = 0; j < 4; ++j) {
                t[h + j] = _mm512_shuffle_f32x4(r[h + j], r[h + 4 + j], 0x88);
                t[h + 4 + j] = _mm512_shuffle_f32x4(r[h + j], r[h + 4 + j], 0xdd);
            }
        for (int j = 0; j < 8; ++j) {
            store(d + j * ldd, _mm512_shuffle_f32x4(t[j], t[8 + j], 0x88));
            store(d + (8 + j) * ldd, _mm512_shuffle_f32x4(t[j], t[8 + j], 0xdd));
        }
    }
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
    // an 8 x 8 block: pairs of rows interleaved (unpack), then 128-bit lanes twice (shuffle_f64x2)
    static void transpose_block(const T* s, int64_t lds, T* d, int64_t ldd) {
        R r[8], t[8];
        for (int i = 0; i < 8; ++i) r[i] = load(s + i * lds);
        for (int i = 0; i < 8; i += 2) {
            t[i] = _mm512_unpacklo_pd(r[i], r[i + 1]);
            t[i + 1] = _mm512_unpackhi_pd(r[i], r[i + 1]);
        }
        for (int h = 0; h < 8; h += 4)
            for (int j = 0; j < 2; ++j) {  // r[h + j]: columns j, 4 + j; r[h + 2 + j]: columns 2 + j, 6 + j
                r[h + j] = _mm512_shuffle_f64x2(t[h + j], t[h + 2 + j], 0x88);
                r[h + 2 + j] = _mm512_shuffle_f64x2(t[h + j], t[h + 2 + j], 0xdd);
            }
        for (int j = 0; j < 4; ++j) {
            store(d + j * ldd, _mm512_shuffle_f64x2(r[j], r[4 + j], 0x88));
            store(d + (4 + j) * ldd, _mm512_shuffle_f64x2(r[j], r[4 + j], 0xdd));
        }
    }
};

constexpr int64_t KC = 128;  // a KC x 64 float (x 32 double) block of B is 32 KiB: it stays in L1 (48 KiB)
#include "gemm_kernel.h"

}  // namespace gemm_avx512

TINYTL_GEMM_OPS(gemm_ops_avx512, gemm_avx512, "avx512", float, VF, 4, 4)
TINYTL_GEMM_OPS(gemm_ops_avx512, gemm_avx512, "avx512", double, VD, 4, 4)

}  // namespace tinytl
#endif

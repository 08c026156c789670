// gemm_kernel.h with one lane per "vector": the portable fallback for any CPU (compiled with
// the module's baseline flags; no FMA contraction, so a product and a sum are rounded apart).
// A 2 x 8 tile of scalars: the compiler keeps the 16 accumulators in registers.
#include "gemm_isa.h"

namespace tinytl {
namespace gemm_scalar {

template <typename TT>
struct VS {
    using T = TT;
    using R = TT;
    static constexpr int W = 1;
    static R zero() { return R(0); }
    static R set1(T a) { return a; }
    static R load(const T* p) { return *p; }
    static void store(T* p, R v) { *p = v; }
    static R fma(R a, R b, R c) { return a * b + c; }
    static R add(R a, R b) { return a + b; }
    static R relu(R v) { return v < R(0) ? R(0) : v; }
    static uint64_t gt0_bits(R v) { return v > R(0) ? 1u : 0u; }
    static R mul01(R v, uint64_t bits) { return v * R(bits & 1u); }
    static void transpose_block(const T* s, int64_t, T* d, int64_t) { *d = *s; }
};
using VF = VS<float>;
using VD = VS<double>;

constexpr int64_t KC = 256;
#include "gemm_kernel.h"

}  // namespace gemm_scalar

TINYTL_GEMM_OPS(gemm_ops_scalar, gemm_scalar, "scalar", float, VF, 2, 8)
TINYTL_GEMM_OPS(gemm_ops_scalar, gemm_scalar, "scalar", double, VD, 2, 8)

}  // namespace tinytl

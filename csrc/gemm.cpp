// Twin of reference.py's linear_forward / linear_backward: the products of a Linear layer on
// tinytl's own GEMM, with the epilogues fused (see gemm.h for the contract, gemm_kernel.h for
// the kernel). This file picks the instruction set once, owns the scratch buffers and the
// threads; the per-ISA builds (gemm_avx512.cpp, gemm_avx2.cpp, gemm_scalar.cpp) only compute.
#include "gemm.h"

#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "gemm_isa.h"
#include "parallel.h"

namespace tinytl {

// Below this many floating-point operations a product runs on one thread. Measured with
// bench/gemm_crossover.py (2-core Xeon VM): the median of two threads' time over one thread's was
// 1.4 for products of 4-16 MFLOP, 1.21 for 16-64, 1.07 for 64-256 and 0.83 for 256 MFLOP-1 GFLOP
// (float32; float64 alike): a std::thread started per call costs ~60-150 us here, and a second
// thread is also the first thing a busy neighbour delays. kernels/cpu.py sends products above
// ~16 MFLOP to the BLAS anyway, so the small-batch path runs on one thread.
constexpr double kGemmTwoThreadFlops = 256e6;

namespace {

// TINYTL_GEMM_ISA=avx2|scalar lowers the instruction set (to test and time the fallbacks);
// kernels/cpu.py warns about any other value, which leaves the best one.
int isa_cap() {
    static const int cap = [] {
        const char* e = std::getenv("TINYTL_GEMM_ISA");
        if (!e) return 2;
        const std::string s(e);
        return s == "scalar" ? 0 : s == "avx2" ? 1 : 2;
    }();
    return cap;
}

bool has_avx512() {
#if defined(TINYTL_GEMM_AVX512)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
#else
    return false;
#endif
}

bool has_avx2() {
#if defined(TINYTL_GEMM_AVX2)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return false;
#endif
}

// The best build this CPU runs, lowered by TINYTL_GEMM_ISA.
template <typename T>
GemmOps<T> pick() {
    T* tag = nullptr;
#if defined(TINYTL_GEMM_AVX512)
    if (isa_cap() >= 2 && has_avx512()) return gemm_ops_avx512(tag);
#endif
#if defined(TINYTL_GEMM_AVX2)
    if (isa_cap() >= 1 && has_avx2()) return gemm_ops_avx2(tag);
#endif
    return gemm_ops_scalar(tag);
}

template <typename T>
const GemmOps<T>& ops() {
    static const GemmOps<T> o = pick<T>();
    return o;
}

// A 64-byte-aligned scratch array (rows of packed operands start on cache lines). Up to
// kKeepBytes it is the calling thread's buffer for that slot, kept between calls: freshly
// allocated memory costs a page fault per 4 KiB on first touch (~10 us for a 128 x 128 float
// weight), more than the product it serves at small sizes. Larger ones are allocated per call.
constexpr size_t kKeepBytes = size_t(4) << 20;

struct Aligned {
    void* p = nullptr;
    size_t bytes = 0;
    ~Aligned() { std::free(p); }
};

template <typename T>
struct Scratch {
    std::unique_ptr<T, void (*)(void*)> owned{nullptr, std::free};
    T* ptr = nullptr;
    Scratch(int slot, int64_t n) {
        if (n <= 0) return;
        const size_t bytes = (size_t(n) * sizeof(T) + 63) / 64 * 64;
        if (bytes <= kKeepBytes) {
            thread_local Aligned kept[3];
            Aligned& k = kept[slot];
            if (k.bytes < bytes) {
                void* q = std::aligned_alloc(64, bytes);
                if (!q) throw std::bad_alloc();
                std::free(k.p);
                k.p = q;
                k.bytes = bytes;
            }
            ptr = static_cast<T*>(k.p);
            return;
        }
        void* q = std::aligned_alloc(64, bytes);
        if (!q) throw std::bad_alloc();
        owned.reset(static_cast<T*>(q));
        ptr = owned.get();
    }
    T* get() const { return ptr; }
};

// The scratch slots of one call (each used once per call, so none aliases another).
enum Slot { kWork = 0, kGrad = 1, kPackA = 2 };

// Elements per 64 bytes: packed rows are padded to a multiple of this.
template <typename T>
constexpr int64_t kLine = 64 / int64_t(sizeof(T));

int64_t round_up(int64_t n, int64_t to) { return (n + to - 1) / to * to; }

// C = A @ B (+ epilogue) over its column panels, on `threads` threads (each panel on one).
template <typename T>
void run_nn(int threads, int64_t M, int64_t N, int64_t K, const T* A, int64_t rsa, int64_t csa, const T* B,
            int64_t ldb, T* C, int64_t ldc, const T* bias, bool relu, uint8_t* mask, int64_t mask_ld) {
    const GemmOps<T>& o = ops<T>();
    const int64_t panels = (N + o.nr - 1) / o.nr;
    if (M == 0 || N == 0) return;
    // one packing block per panel (64-byte aligned): whichever thread computes a panel packs
    // into that panel's own block, so no split of the panels can make two threads share one
    const int64_t nt = std::max<int64_t>(1, std::min<int64_t>(threads, panels));
    Scratch<T> work(kWork, panels * o.kc * o.nr);
    T* wp = work.get();
    parallel_chunks(nt, panels, [&](int64_t j0, int64_t j1) {
        o.nn(M, N, K, A, rsa, csa, B, ldb, C, ldc, bias, relu, mask, mask_ld, j0, j1, wp + j0 * o.kc * o.nr);
    });
}

// threads: the caller's count (at most max_threads(): TINYTL_NUM_THREADS caps it), or 0 for gemm_threads's
int resolve_threads(int threads, double flops) { return threads > 0 ? std::min(threads, max_threads()) : gemm_threads(flops); }

}  // namespace

int gemm_threads(double flops) { return flops >= kGemmTwoThreadFlops ? std::min(2, max_threads()) : 1; }

const char* gemm_isa() { return ops<float>().isa; }

uint64_t fma_peak(bool f32, int64_t n) { return f32 ? ops<float>().fma_peak(n) : ops<double>().fma_peak(n); }

template <typename T>
void linear_forward(const T* x, const T* wt, const T* bias, bool relu, T* out, uint8_t* mask, int64_t M, int64_t K,
                    int64_t N, int threads) {
    threads = resolve_threads(threads, 2.0 * double(M) * double(K) * double(N));
    // x(i, p) = x[i * K + p]; B = wt, rows N apart, read in place
    run_nn<T>(threads, M, N, K, x, K, 1, wt, N, out, N, bias, relu, mask, (N + 7) / 8);
}

template <typename T>
void linear_backward(const T* grad, const uint8_t* mask, bool relu, const T* x, const T* wt, T* bias_grad, T* gwt,
                     T* gx, int64_t M, int64_t K, int64_t N, int threads) {
    const GemmOps<T>& o = ops<T>();
    // g, packed once into aligned rows (mask applied, bias gradient summed in the same pass);
    // both products read it
    const int64_t ldg = round_up(std::max<int64_t>(N, 1), kLine<T>);
    Scratch<T> gm(kGrad, M * ldg);
    std::vector<double> colsum(bias_grad ? size_t(N) : 0, 0.0);
    o.pack_grad(grad, mask, relu, M, N, gm.get(), ldg, bias_grad ? colsum.data() : nullptr);
    if (bias_grad)
        for (int64_t n = 0; n < N; ++n) bias_grad[n] = T(colsum[n]);
    if (gwt) {  // (K, N) = x.T @ g: A(i, p) = x[p * K + i], reduction over the batch
        if (M == 0) std::memset(gwt, 0, size_t(K * N) * sizeof(T));
        else run_nn<T>(resolve_threads(threads, 2.0 * double(M) * double(K) * double(N)), K, N, M, x, 1, K,
                       gm.get(), ldg, gwt, N, nullptr, false, nullptr, 0);
    }
    if (gx) {  // (M, K) = g @ W, W = wt.T: the reduction runs over N
        if (N == 0) {
            std::memset(gx, 0, size_t(M * K) * sizeof(T));
            return;
        }
        const int nt = resolve_threads(threads, 2.0 * double(M) * double(K) * double(N));
        // W = wt.T packed row-major (N, K) by blocks transposed in registers (N * K elements
        // moved, cheap beside the M * N * K multiply-adds), then gx = g @ W
        const int64_t ldw = round_up(K, kLine<T>);
        Scratch<T> w(kPackA, N * ldw);
        o.transpose(wt, K, N, N, w.get(), ldw);
        run_nn<T>(nt, M, K, N, gm.get(), ldg, 1, w.get(), ldw, gx, K, nullptr, false, nullptr, 0);
    }
}

template void linear_forward<float>(const float*, const float*, const float*, bool, float*, uint8_t*, int64_t,
                                    int64_t, int64_t, int);
template void linear_forward<double>(const double*, const double*, const double*, bool, double*, uint8_t*, int64_t,
                                     int64_t, int64_t, int);
template void linear_backward<float>(const float*, const uint8_t*, bool, const float*, const float*, float*, float*,
                                     float*, int64_t, int64_t, int64_t, int);
template void linear_backward<double>(const double*, const uint8_t*, bool, const double*, const double*, double*,
                                      double*, double*, int64_t, int64_t, int64_t, int);

}  // namespace tinytl

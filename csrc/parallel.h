// parallel_for: split [0, n) into one contiguous chunk per thread, with OpenMP when it
// pays. Below kParallelMin units of work (about elements touched) a call runs on the
// calling thread: on small arrays waking a thread team costs more than it saves.
// Built without OpenMP, every call runs on the calling thread.
//
// TINYTL_SIMD_CLONES marks a compute-bound function to be compiled twice, for the
// portable x86-64 baseline (SSE2) and for AVX2 + FMA (x86-64-v3); the loader picks the one the CPU runs
// (GCC/Clang function multiversioning). Memory-bound loops gain nothing from it.
#pragma once
#include <cstdint>
#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__x86_64__) && defined(__linux__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11
#define TINYTL_SIMD_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#elif defined(__x86_64__) && defined(__linux__) && defined(__GNUC__)
#define TINYTL_SIMD_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define TINYTL_SIMD_CLONES
#endif

namespace tinytl {

// 4M: on the 2-core machines measured, OpenMP halved memory-bound kernels on an idle
// machine but made them 5-15x slower while other processes (or BLAS threads) held the
// cores (libgomp spins at barriers); below this size the calling thread does it alone.
constexpr int64_t kParallelMin = int64_t(1) << 22;

// f(begin, end) is called on disjoint chunks covering [0, n); work = n * cost_per_item.
template <typename F>
inline void parallel_for(int64_t n, int64_t cost_per_item, F&& f) {
#ifdef _OPENMP
    if (n > 1 && n * cost_per_item >= kParallelMin && omp_get_max_threads() > 1) {
#pragma omp parallel
        {
            const int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
            const int64_t begin = n * t / nt, end = n * (t + 1) / nt;
            if (begin < end) f(begin, end);
        }
        return;
    }
#endif
    if (n > 0) f(0, n);
}

}  // namespace tinytl

// parallel_for: split [0, n) into contiguous chunks, one per thread, when the work is
// large enough to pay for starting threads.
//
// Plain std::threads, started for the call and joined at its end: no thread team that
// spins between calls. (An OpenMP build, tried first, made training steps 5-27x slower
// on 2-core machines: libgomp's idle team spun at barriers while OpenBLAS's threads
// wanted the same cores.) Starting and joining a thread costs ~20-50 us, so a call
// uses one thread per kParallelMin units of work (about element passes), up to the
// CPUs this process may run on (sched_getaffinity) or TINYTL_NUM_THREADS.
// The chunking never changes results: every kernel computes each element (or each
// fixed-size block) independently of how the range is split.
//
// TINYTL_SIMD_CLONES marks a compute-bound function to be compiled several times: for the
// portable x86-64 baseline (SSE2), for AVX2 + FMA (x86-64-v3) and, with GCC, for AVX-512
// (x86-64-v4); the loader picks the best one the CPU runs (function multiversioning). Where
// FMA contraction is off (every file but softmax_xent.cpp, see CMakeLists.txt) the clones
// do the same IEEE operations in the same order and give the same bits; the softmax rows
// may contract to FMAs, differently per clone, and are tested with a tolerance. On the
// Zen 4 development machine the float softmax rows ran
// 1.46x faster in the AVX-512 clone than in the AVX2 one (fewer instructions for the same
// work, masked tails), although Zen 4 executes 512-bit operations as two 256-bit halves.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>
#ifdef __linux__
#include <sched.h>
#endif

#if defined(__x86_64__) && defined(__linux__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11
#define TINYTL_SIMD_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#elif defined(__x86_64__) && defined(__linux__) && defined(__GNUC__)
#define TINYTL_SIMD_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define TINYTL_SIMD_CLONES
#endif

namespace tinytl {

// One more thread per this many units of work: ~1M element passes take 100-500 us.
constexpr int64_t kParallelMin = int64_t(1) << 20;
constexpr int kMaxThreads = 64;

// Threads a kernel may use: TINYTL_NUM_THREADS if set (>= 1), else the CPUs in this
// process's affinity mask (what a container or taskset allows), read once.
inline int max_threads() {
    static const int n = [] {
        if (const char* e = std::getenv("TINYTL_NUM_THREADS")) {
            const long v = std::strtol(e, nullptr, 10);
            if (v >= 1) return int(std::min<long>(v, kMaxThreads));
        }
#ifdef __linux__
        cpu_set_t set;
        if (sched_getaffinity(0, sizeof set, &set) == 0)
            return std::max(1, std::min(int(CPU_COUNT(&set)), kMaxThreads));
#endif
        const unsigned h = std::thread::hardware_concurrency();
        return h ? int(std::min<unsigned>(h, kMaxThreads)) : 1;
    }();
    return n;
}

// f(begin, end) on nt disjoint contiguous chunks covering [0, n), one thread each (fewer
// when n < nt). The calling thread runs the first chunk (and any whose thread could not start).
template <typename F>
inline void parallel_chunks(int64_t nt, int64_t n, F&& f) {
    if (n <= 0) return;
    nt = std::min(nt, n);
    if (nt <= 1) {
        f(int64_t(0), n);
        return;
    }
    std::vector<std::thread> threads;
    threads.reserve(size_t(nt - 1));
    int64_t started = 1;
    try {
        for (; started < nt; ++started) {
            const int64_t b = n * started / nt, e = n * (started + 1) / nt;
            threads.emplace_back([&f, b, e] { f(b, e); });
        }
    } catch (const std::system_error&) {  // out of threads: the calling thread does the rest
    }
    f(int64_t(0), n / nt);
    for (int64_t t = started; t < nt; ++t) f(n * t / nt, n * (t + 1) / nt);
    for (auto& th : threads) th.join();
}

// f(begin, end) is called on disjoint chunks covering [0, n); work = n * cost_per_item.
template <typename F>
inline void parallel_for(int64_t n, int64_t cost_per_item, F&& f) {
    if (n <= 0) return;
    parallel_chunks(std::min<int64_t>({int64_t(max_threads()), n, n * cost_per_item / kParallelMin}), n,
                    std::forward<F>(f));
}

}  // namespace tinytl

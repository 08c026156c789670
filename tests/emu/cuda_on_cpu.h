// CUDA C on the CPU, for the tests: just enough of the CUDA built-ins to run tinytl's
// kernels (tinytl/kernels/cuda/*.cu) unchanged, so CI checks the numbers they compute
// against reference.py without a GPU. tests/emucupy.py compiles a .cu file with g++ with
// this header in front and a launcher per kernel behind, and calls it through ctypes.
//
// How a launch runs: the blocks one after another; the threads of a block as fibers on
// one OS thread, a warp at a time. A thread runs until it reaches a barrier (__syncwarp,
// a warp shuffle, __syncthreads), then the next lane of its warp runs; when all 32 lanes
// wait at a warp barrier they go on, and the warp runs ahead until every lane waits at
// __syncthreads (or is done); then the next warp runs; when every thread of the block
// waits at __syncthreads, they all go on. So the kernel sees what a GPU guarantees and
// nothing more: a write of another thread is visible after a barrier. What a kernel reads
// from another thread without a barrier in between depends on the order the warps and
// lanes run in: the launcher takes that order as an argument (index order, reversed,
// shuffled), so such a race shows up as results that change between launches, or that
// are wrong in all of them.
//
// What is stricter than a GPU, on purpose: a barrier that some thread of the block (of
// the warp, for __syncwarp and shuffles) never reaches because it returned or waits at
// another barrier is an error, reported to Python with the kernel's name, as are threads
// waiting at two different __syncthreads (by file and line), lanes at two different warp
// primitives, a warp primitive in a block whose size is not a multiple of 32 or with a
// mask other than all 32 lanes, and (at compile time) an atomic CUDA does not have.
// Shared memory starts as garbage in every block (see __shared__ below). What it does
// not model: timing, the memory hierarchy, lost updates (a thread runs uninterrupted
// from one barrier to the next, so a plain += by many threads adds up as if atomic),
// NVRTC's math (expf
// here is glibc's, not CUDA's: results differ in the last bits, so the tests compare the
// transcendental kernels with a tolerance, as they do on a GPU). Products and sums round
// as written: the build passes -ffp-contract=off, so no FMA is formed.
#pragma once

#include <math.h>
#include <stdint.h>
#include <string.h>
#include <ucontext.h>

#include <algorithm>
#include <functional>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
// The blocks run one after another, so one static copy is one block's. The launcher
// fills every one with garbage before each block (NaN bytes or random bytes, in turn):
// on a GPU shared memory starts undefined in every block, and a kernel that reads what
// it did not write must not pass by reading zeros or the previous block's values.
// tests/emucupy.py finds them (the function-local statics of the library, which in CUDA
// C can only be __shared__) in its symbol table and passes them to emu_set_shared.
#define __shared__ static

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
};

static dim3 threadIdx, blockIdx, blockDim, gridDim;  // threadIdx: the running fiber's
static const int warpSize = 32;

namespace emu {

// ----------------------------------------------------------------- fibers ----
// A fiber is a stack and a saved stack pointer. On x86-64, switch_to saves the registers
// the SysV ABI makes the callee keep (rbx, rbp, r12-r15) on the old stack, swaps stack
// pointers and pops them from the new one: a few nanoseconds, no system call (ucontext's
// swapcontext makes one per switch to save the signal mask, and dominated the run time).
// Elsewhere, or with -DEMU_UCONTEXT (a test builds it so), ucontext does the same job.
#if defined(__x86_64__) && !defined(EMU_UCONTEXT)
extern "C" void emu_switch(void** save_sp, void* new_sp);
asm(R"(
    .text
    .globl emu_switch
    .hidden emu_switch
    .type emu_switch, @function
emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size emu_switch, .-emu_switch
)");

struct Context {
    void* sp = nullptr;
};
static void switch_to(Context& save, Context& to) { emu_switch(&save.sp, to.sp); }
// A new fiber's stack: six zero registers for switch_to to pop, then the address it
// returns to (`fn`), placed so that fn starts with the stack aligned as after a call.
static void start(Context& c, char* stack, size_t size, void (*fn)()) {
    uintptr_t top = (uintptr_t(stack) + size) & ~uintptr_t(15);
    void** sp = (void**)top;
    *--sp = nullptr;       // fn's return address: fn never returns
    *--sp = (void*)fn;     // where switch_to's ret goes
    for (int i = 0; i < 6; ++i) *--sp = nullptr;
    c.sp = sp;
}
#else
struct Context {
    ucontext_t uc;
};
static void switch_to(Context& save, Context& to) { swapcontext(&save.uc, &to.uc); }
static void start(Context& c, char* stack, size_t size, void (*fn)()) {
    getcontext(&c.uc);
    c.uc.uc_stack.ss_sp = stack;
    c.uc.uc_stack.ss_size = size;
    c.uc.uc_link = nullptr;
    makecontext(&c.uc, fn, 0);
}
#endif

enum State { kReady, kAtBlock, kAtWarp, kDone };

struct Fiber {
    Context ctx;
    State state;
    dim3 tid;
    const char* at = nullptr;  // the barrier it waits at: its kind, or its file and line
};

struct Launch {
    std::vector<Fiber> fibers;
    std::vector<char> stacks;
    std::vector<uint64_t> exchange;  // one slot per thread, for the warp shuffles
    std::function<void()> body;
    Context scheduler;
    int current = 0;
    std::string error;
};

static Launch* launch_ = nullptr;
static const size_t kStack = 64 * 1024;

static void fail(const std::string& what) {
    if (launch_->error.empty()) launch_->error = what;
}

static void wait(State s, const char* at = nullptr) {  // leave the running fiber at a barrier (or done)
    Fiber& f = launch_->fibers[size_t(launch_->current)];
    f.state = s;
    f.at = at;
    switch_to(f.ctx, launch_->scheduler);
}

static void entry() {
    launch_->body();
    wait(kDone);  // never resumed
}

static unsigned lane() { return unsigned(launch_->current) & 31u; }

static void warp_barrier(unsigned mask, const char* what) {
    if (launch_->fibers.size() % 32) fail(std::string(what) + " in a block of " + std::to_string(launch_->fibers.size()) +
                                          " threads, not a multiple of the warp size");
    if (mask != 0xffffffffu) fail(std::string(what) + " with a mask other than all 32 lanes");
    wait(kAtWarp, what);
}

// The value of `v` in lane `src` of this warp (its own value when src is out of range).
template <typename T>
static T exchange(unsigned mask, T v, int src, const char* what) {
    static_assert(sizeof(T) <= 8, "a shuffle moves at most 8 bytes");
    uint64_t bits = 0;
    memcpy(&bits, &v, sizeof(T));
    const size_t me = size_t(launch_->current);
    launch_->exchange[me] = bits;
    warp_barrier(mask, what);  // every lane has put its value
    if (src >= 0 && src < 32) bits = launch_->exchange[me - lane() + size_t(src)];
    warp_barrier(mask, what);  // every lane has taken its value: the slots can be reused
    T out;
    memcpy(&out, &bits, sizeof(T));
    return out;
}

static void run(int i) {
    Launch& L = *launch_;
    L.current = i;
    threadIdx = L.fibers[size_t(i)].tid;
    switch_to(L.scheduler, L.fibers[size_t(i)].ctx);
}

// Run warp `w` as far as it goes: its lanes in `lanes` order, each until it waits; when
// all 32 wait at a warp barrier they all go on, until every lane waits at __syncthreads
// or is done. One warp running ahead of the others is what exposes a race between
// warps: a warp that writes what another reads without a barrier between them.
static void run_warp(size_t w, const std::vector<int>& lanes) {
    Launch& L = *launch_;
    const size_t n = L.fibers.size(), first = 32 * w, count = std::min<size_t>(32, n - first);
    while (L.error.empty()) {
        for (int lane : lanes)
            if (size_t(lane) < count && L.fibers[first + size_t(lane)].state == kReady) run(int(first) + lane);
        size_t at_warp = 0;
        for (size_t i = first; i < first + count; ++i) at_warp += L.fibers[i].state == kAtWarp;
        if (at_warp == 0) return;
        if (at_warp < 32) {
            fail("a warp barrier (__syncwarp or a shuffle) that " + std::to_string(32 - at_warp) +
                 " lanes of warp " + std::to_string(w) + " did not reach (divergence or return)");
            return;
        }
        for (size_t i = first + 1; i < first + count; ++i)
            if (strcmp(L.fibers[i].at, L.fibers[first].at) != 0) {
                fail(std::string("the lanes of warp ") + std::to_string(w) + " wait at different warp primitives (" +
                     L.fibers[first].at + " and " + L.fibers[i].at + ")");
                return;
            }
        for (size_t i = first; i < first + count; ++i) L.fibers[i].state = kReady;
    }
}

// Run the block's warps one after another, each up to __syncthreads, then open the barrier.
// Returns false when the block is done or stuck (error set).
static bool run_block(const std::vector<int>& warps, const std::vector<int>& lanes) {
    Launch& L = *launch_;
    for (int w : warps) run_warp(size_t(w), lanes);
    if (!L.error.empty()) return false;
    size_t done = 0;
    for (const Fiber& f : L.fibers) done += f.state == kDone;
    if (done == L.fibers.size()) return false;
    if (done) {
        fail("__syncthreads that " + std::to_string(done) + " of the block's " + std::to_string(L.fibers.size()) +
             " threads did not reach (they returned)");
        return false;
    }
    for (const Fiber& f : L.fibers)
        if (strcmp(f.at, L.fibers[0].at) != 0) {
            fail(std::string("the threads of a block wait at different __syncthreads (") + L.fibers[0].at + " and " +
                 f.at + "): CUDA requires every thread to reach the same one");
            return false;
        }
    for (Fiber& f : L.fibers) f.state = kReady;  // all at the barrier
    return true;
}

// The kernels' __shared__ variables, (address, bytes) each: set by emu_set_shared.
static std::vector<std::pair<char*, size_t>> shared_vars;

// Fill them with garbage before a block: 0xff bytes (NaN in float and double, -1 in
// integers) on even calls of `which`, random bytes on odd ones.
static void poison_shared(unsigned which, std::mt19937& rng) {
    for (auto& [p, n] : shared_vars) {
        if (which % 2 == 0) {
            memset(p, 0xff, n);
        } else {
            for (size_t i = 0; i < n; ++i) p[i] = char(rng() & 0xff);
        }
    }
}

// order: 0 threads and blocks in index order, 1 reversed, 2 shuffled with `seed`.
static int launch(dim3 grid, dim3 block, int order, unsigned seed, std::function<void()> body, char* err,
                  size_t errlen) {
    Launch L;
    launch_ = &L;
    L.body = std::move(body);
    const size_t threads = size_t(block.x) * block.y * block.z;
    const size_t blocks = size_t(grid.x) * grid.y * grid.z;
    if (threads == 0 || threads > 1024 || blocks == 0) L.error = "bad launch dimensions";
    L.fibers.resize(threads);
    L.stacks.resize(threads * kStack);
    L.exchange.resize(threads);
    std::mt19937 rng(seed);
    std::vector<int> warps((threads + 31) / 32), lanes(32);
    std::iota(warps.begin(), warps.end(), 0);
    std::iota(lanes.begin(), lanes.end(), 0);
    std::vector<size_t> border(blocks);
    std::iota(border.begin(), border.end(), size_t(0));
    if (order == 1) {
        std::reverse(warps.begin(), warps.end());
        std::reverse(lanes.begin(), lanes.end());
        std::reverse(border.begin(), border.end());
    } else if (order == 2) {
        std::shuffle(border.begin(), border.end(), rng);
    }
    blockDim = block;
    gridDim = grid;
    for (size_t bi = 0; bi < blocks && L.error.empty(); ++bi) {
        const size_t b = border[bi];
        blockIdx.x = unsigned(b % grid.x);
        blockIdx.y = unsigned(b / grid.x % grid.y);
        blockIdx.z = unsigned(b / grid.x / grid.y);
        for (size_t t = 0; t < threads; ++t) {
            Fiber& f = L.fibers[t];
            f.tid.x = unsigned(t % block.x);
            f.tid.y = unsigned(t / block.x % block.y);
            f.tid.z = unsigned(t / block.x / block.y);
            f.state = kReady;
            start(f.ctx, &L.stacks[t * kStack], kStack, entry);
        }
        if (order == 2) {
            std::shuffle(warps.begin(), warps.end(), rng);
            std::shuffle(lanes.begin(), lanes.end(), rng);
        }
        poison_shared(seed + unsigned(bi), rng);
        while (run_block(warps, lanes)) {
        }
    }
    launch_ = nullptr;
    if (L.error.empty()) return 0;
    snprintf(err, errlen, "%s", L.error.c_str());
    return 1;
}

}  // namespace emu

// table: n pairs (address, bytes), the library's __shared__ variables.
extern "C" void emu_set_shared(const unsigned long long* table, size_t n) {
    emu::shared_vars.clear();
    for (size_t i = 0; i < n; ++i) emu::shared_vars.emplace_back((char*)uintptr_t(table[2 * i]), size_t(table[2 * i + 1]));
}

// ---------------------------------------------------------- the built-ins ----

// __syncthreads names its file and line: every thread of the block must wait at the same one.
#define EMU_STR2(x) #x
#define EMU_STR(x) EMU_STR2(x)
#define __syncthreads() emu::wait(emu::kAtBlock, __FILE__ ":" EMU_STR(__LINE__))
static inline void __syncwarp(unsigned mask = 0xffffffffu) { emu::warp_barrier(mask, "__syncwarp"); }

template <typename T>
static inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
    if (width != 32) emu::fail("a shuffle with a width other than 32");
    return emu::exchange(mask, v, int(emu::lane()) ^ lane_mask, "__shfl_xor_sync");
}
template <typename T>
static inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
    if (width != 32) emu::fail("a shuffle with a width other than 32");
    return emu::exchange(mask, v, int(emu::lane() + delta), "__shfl_down_sync");
}
template <typename T>
static inline T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
    if (width != 32) emu::fail("a shuffle with a width other than 32");
    return emu::exchange(mask, v, src & 31, "__shfl_sync");
}

// One OS thread and no preemption inside a call: a plain read-modify-write is atomic.
// Only the overloads CUDA has (sm_60+): atomicMin/Max of a float, or atomicAdd of a
// long long, fail to compile here as they would with NVRTC.
#define EMU_ATOMIC(T)                                                                     \
    static inline T atomicMin(T* a, T v) { T old = *a; *a = v < old ? v : old; return old; } \
    static inline T atomicMax(T* a, T v) { T old = *a; *a = v > old ? v : old; return old; }
EMU_ATOMIC(int)
EMU_ATOMIC(unsigned)
EMU_ATOMIC(long long)
EMU_ATOMIC(unsigned long long)
#define EMU_ATOMIC_ADD(T) \
    static inline T atomicAdd(T* a, T v) { T old = *a; *a = old + v; return old; }
EMU_ATOMIC_ADD(int)
EMU_ATOMIC_ADD(unsigned)
EMU_ATOMIC_ADD(unsigned long long)
EMU_ATOMIC_ADD(float)
EMU_ATOMIC_ADD(double)

static inline float __fmul_rn(float a, float b) { return a * b; }
static inline double __dmul_rn(double a, double b) { return a * b; }
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline double __dadd_rn(double a, double b) { return a + b; }

template <typename To, typename From>
static inline To emu_bits(From v) { To t; memcpy(&t, &v, sizeof t); return t; }
static inline float __int_as_float(int v) { return emu_bits<float>(v); }
static inline int __float_as_int(float v) { return emu_bits<int>(v); }
static inline double __longlong_as_double(long long v) { return emu_bits<double>(v); }
static inline long long __double_as_longlong(double v) { return emu_bits<long long>(v); }

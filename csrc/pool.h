// HelperPool: threads started once and kept, for the GEMM's column panels (csrc/gemm.cpp).
//
// parallel.h starts std::threads per call, which costs 60-150 us on the development VM: more
// than a small-batch GEMM takes. These helpers are started on first use and then wait for
// work; a job is a number of items (panels) that the calling thread and the helpers claim one
// at a time from a shared counter. So a helper that wakes late, or whose core a busy
// neighbour holds, only takes fewer items: the caller never waits for a helper that has not
// started, only for the item a started helper is computing. Each item is computed by one
// thread with the same code whoever it is, so results do not depend on who took what.
//
// After a job a helper spins for kSpinNs (the next GEMM of a training step is usually that
// close) and then sleeps on a condition variable. One job at a time: a second calling thread
// that finds the pool busy runs its items alone. A forked child gets a fresh, empty pool.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <system_error>
#include <thread>
#include <type_traits>
#ifdef __linux__
#include <pthread.h>
#endif

namespace tinytl {

class HelperPool {
public:
    static constexpr int64_t kSpinNs = 50000;

    // The process's pool (never destroyed: its threads may still wait on it at exit).
    static HelperPool& get() {
        static const bool registered = [] {
#ifdef __linux__
            pthread_atfork(nullptr, nullptr, [] { instance() = new HelperPool(); });
#endif
            return true;
        }();
        (void)registered;
        return *instance();
    }

    // body(i) for every i in [0, n), on the calling thread and up to `helpers` pool threads.
    template <class F>
    void run(int64_t n, int helpers, F&& body) {
        bool idle = false;
        if (helpers <= 0 || n <= 1 || !busy_.compare_exchange_strong(idle, true)) {
            for (int64_t i = 0; i < n; ++i) body(i);
            return;
        }
        using Fn = typename std::remove_reference<F>::type;
        {
            std::lock_guard<std::mutex> lk(m_);
            start_threads(helpers);
            call_ = [](void* c, int64_t i) { (*static_cast<Fn*>(c))(i); };
            ctx_ = &body;
            n_ = n;
            next_.store(0, std::memory_order_relaxed);
            wanted_ = helpers;
            open_ = true;
            gen_.fetch_add(1, std::memory_order_release);
        }
        start_.notify_all();
        for (int64_t i; (i = next_.fetch_add(1, std::memory_order_relaxed)) < n;) body(i);
        {
            std::unique_lock<std::mutex> lk(m_);
            open_ = false;  // a helper that wakes from now on skips this job
            done_.wait(lk, [this] { return active_ == 0; });
        }
        busy_.store(false, std::memory_order_release);
    }

private:
    static HelperPool*& instance() {
        static HelperPool* p = new HelperPool();
        return p;
    }

    void start_threads(int helpers) {  // under m_
        while (started_ < helpers) {
            try {
                std::thread(&HelperPool::loop, this).detach();
            } catch (const std::system_error&) {  // no more threads: the caller does the rest
                return;
            }
            ++started_;
        }
    }

    void loop() {
        uint64_t seen = gen_.load(std::memory_order_acquire);
        for (;;) {
            const auto until = std::chrono::steady_clock::now() + std::chrono::nanoseconds(kSpinNs);
            while (gen_.load(std::memory_order_acquire) == seen && std::chrono::steady_clock::now() < until)
                std::this_thread::yield();
            std::unique_lock<std::mutex> lk(m_);
            start_.wait(lk, [&] { return gen_.load(std::memory_order_relaxed) != seen; });
            seen = gen_.load(std::memory_order_relaxed);
            if (!open_ || active_ >= wanted_) continue;
            ++active_;
            void (*call)(void*, int64_t) = call_;
            void* ctx = ctx_;
            const int64_t n = n_;
            lk.unlock();
            for (int64_t i; (i = next_.fetch_add(1, std::memory_order_relaxed)) < n;) call(ctx, i);
            lk.lock();
            if (--active_ == 0) done_.notify_all();
        }
    }

    std::mutex m_;
    std::condition_variable start_, done_;
    std::atomic<uint64_t> gen_{0};
    std::atomic<int64_t> next_{0};
    std::atomic<bool> busy_{false};
    void (*call_)(void*, int64_t) = nullptr;
    void* ctx_ = nullptr;
    int64_t n_ = 0;
    int wanted_ = 0, active_ = 0, started_ = 0;
    bool open_ = false;
};

}  // namespace tinytl

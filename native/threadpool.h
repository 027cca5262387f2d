// A tiny persistent thread pool with dynamic chunk claiming: run(n, f) calls f(chunk) for chunk in [0, n).
// The caller works too and never waits for a worker that has not started (matters on an oversubscribed machine).
// Idle workers, and a caller waiting for a worker to finish, spin for up to SPIN_US before sleeping on the condition
// variable: a training step runs ~10 parallel regions back to back, and a futex wake-up per region (tens of µs on a
// VM) would otherwise leave the caller doing most chunks alone. After SPIN_US they sleep, so an idle pool costs nothing.
#pragma once
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace sf {

class Pool {
 public:
  explicit Pool(int n) : n_(std::max(1, n)) {
    for (int t = 1; t < n_; t++) th_.emplace_back([this] { loop(); });
  }
  ~Pool() {
    {
      std::lock_guard<std::mutex> g(mu_);
      stop_ = true;
      gen_++;
    }
    cv_.notify_all();
    for (auto& t : th_) t.join();
  }
  int size() const { return n_; }
  // Call f(c) for every chunk c in [0, nchunks), on the caller and the workers; returns when all are done.
  void run(int nchunks, const std::function<void(int)>& f) {
    if (nchunks <= 0) return;
    if (nchunks == 1 || n_ == 1) {
      for (int c = 0; c < nchunks; c++) f(c);
      return;
    }
    std::lock_guard<std::mutex> serial(call_mu_);
    Job job{&f, nchunks};
    {
      std::lock_guard<std::mutex> g(mu_);
      job_ = &job;
      gen_++;
    }
    cv_.notify_all();
    work(job);
    spin_until([&] { return job.refs.load(std::memory_order_acquire) == 0; });
    std::unique_lock<std::mutex> g(mu_);
    job_ = nullptr;  // late wakers skip this job
    done_cv_.wait(g, [&] { return job.refs == 0; });
  }

  static constexpr int SPIN_US = 50;

 private:
  struct Job {
    const std::function<void(int)>* f;
    int n;
    std::atomic<int> next{0};
    std::atomic<int> refs{0};  // workers inside work(); changed under mu_
    Job(const std::function<void(int)>* f_, int n_) : f(f_), n(n_) {}
  };
  // Busy-wait (with a pause hint) until done() or SPIN_US have passed.
  template <class F>
  static void spin_until(F done) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; !done(); i++) {
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#endif
      if ((i & 63) == 63 && std::chrono::steady_clock::now() - t0 > std::chrono::microseconds(SPIN_US)) return;
    }
  }
  static void work(Job& j) {
    for (;;) {
      int c = j.next.fetch_add(1);
      if (c >= j.n) return;
      (*j.f)(c);
    }
  }
  void loop() {
    int seen = 0;
    for (;;) {
      Job* j;
      spin_until([&] { return gen_.load(std::memory_order_acquire) != seen; });
      {
        std::unique_lock<std::mutex> g(mu_);
        cv_.wait(g, [&] { return gen_ != seen; });
        seen = gen_;
        if (stop_) return;
        j = job_;
        if (!j) continue;
        j->refs++;
      }
      work(*j);
      {
        std::lock_guard<std::mutex> g(mu_);
        if (--j->refs == 0) done_cv_.notify_all();
      }
    }
  }
  int n_;
  std::vector<std::thread> th_;
  std::mutex mu_, call_mu_;
  std::condition_variable cv_, done_cv_;
  Job* job_ = nullptr;
  std::atomic<int> gen_{0};  // changed under mu_, read without it while spinning
  bool stop_ = false;
};

// The process-wide pool (one thread per hardware thread, or as configure_threads set before its first use).
Pool& pool();

// Split [0, total) into chunks of at least `grain` items (about 4 per thread) and run f(begin, end) on each.
inline void parallel_for(long total, long grain, const std::function<void(long, long)>& f) {
  if (total <= 0) return;
  long nc = std::min<long>(4L * pool().size(), std::max<long>(1, total / std::max<long>(1, grain)));
  if (nc <= 1) {
    f(0, total);
    return;
  }
  pool().run((int)nc, [&](int c) {
    long b = total * c / nc, e = total * (c + 1) / nc;
    if (b < e) f(b, e);
  });
}

}  // namespace sf

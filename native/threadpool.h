// A tiny persistent thread pool: run(nt, f) calls f(tid) for tid in [0, nt) with tid 0 on the caller.
#pragma once
#include <algorithm>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace sf {

class Pool {
 public:
  explicit Pool(int n) : n_(std::max(1, n)) {
    for (int t = 1; t < n_; t++) th_.emplace_back([this, t] { loop(t); });
  }
  ~Pool() {
    { std::lock_guard<std::mutex> g(mu_); stop_ = true; gen_++; }
    cv_.notify_all();
    for (auto& t : th_) t.join();
  }
  int size() const { return n_; }
  // Call f(tid) for tid in [0, nt); blocks until all are done. Not reentrant.
  void run(int nt, const std::function<void(int)>& f) {
    nt = std::min(std::max(nt, 1), n_);
    if (nt == 1) { f(0); return; }
    std::lock_guard<std::mutex> serial(call_mu_);
    {
      std::lock_guard<std::mutex> g(mu_);
      job_ = &f; active_ = nt; pending_ = nt - 1; gen_++;
    }
    cv_.notify_all();
    f(0);
    std::unique_lock<std::mutex> g(mu_);
    done_cv_.wait(g, [this] { return pending_ == 0; });
    job_ = nullptr;
  }

 private:
  void loop(int tid) {
    int seen = 0;
    for (;;) {
      const std::function<void(int)>* job;
      {
        std::unique_lock<std::mutex> g(mu_);
        cv_.wait(g, [&] { return gen_ != seen; });
        seen = gen_;
        if (stop_) return;
        if (tid >= active_) continue;
        job = job_;
      }
      (*job)(tid);
      {
        std::lock_guard<std::mutex> g(mu_);
        if (--pending_ == 0) done_cv_.notify_one();
      }
    }
  }
  int n_;
  std::vector<std::thread> th_;
  std::mutex mu_, call_mu_;
  std::condition_variable cv_, done_cv_;
  const std::function<void(int)>* job_ = nullptr;
  int gen_ = 0, active_ = 0, pending_ = 0;
  bool stop_ = false;
};

// The process-wide pool (one thread per hardware thread, or SLIMFIT_THREADS).
Pool& pool();

// Split [0, total) into nt contiguous chunks and run f(begin, end) on each (serially when total < grain).
inline void parallel_for(long total, long grain, const std::function<void(long, long)>& f) {
  if (total <= 0) return;
  int nt = (int)std::min<long>(pool().size(), std::max<long>(1, total / std::max<long>(1, grain)));
  if (nt <= 1) { f(0, total); return; }
  pool().run(nt, [&](int t) {
    long b = total * t / nt, e = total * (t + 1) / nt;
    if (b < e) f(b, e);
  });
}

}  // namespace sf

// Transparent huge pages for the training steps' big buffers. A step streams ~10 MB (weights, Adam moments, gradient
// scratch) through the caches several times; on 4 KiB pages that is thousands of TLB misses per step, on 2 MiB pages a
// handful. Linux gives huge pages to anonymous memory only where madvise(MADV_HUGEPAGE) asks (the common "madvise" THP
// setting); elsewhere (other systems, THP set to never) these calls do nothing and the buffers are ordinary memory.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#if defined(__linux__)
#include <cstdio>
#include <sys/mman.h>
#endif

namespace sf {

constexpr size_t HUGE_PAGE = size_t(2) << 20;

#if defined(__linux__)
// False when the system's THP setting is "never": MADV_COLLAPSE ignores that setting, so it is skipped there (read once).
inline bool thp_allowed() {
  static const bool allowed = [] {
    FILE* f = std::fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
    if (!f) return false;
    char buf[128] = {0};
    const size_t n = std::fread(buf, 1, sizeof buf - 1, f);
    std::fclose(f);
    buf[n] = 0;
    return std::strstr(buf, "[never]") == nullptr;
  }();
  return allowed;
}
#endif

// Ask for huge pages on the whole 2 MiB pages inside [p, p + bytes) (memory the caller fully uses: nothing is added to
// RSS beyond those pages), and with collapse also turn its pages already present into huge pages now (MADV_COLLAPSE,
// Linux 6.1+; older kernels refuse it and khugepaged does it later). Nothing is asked where THP is set to never.
// Failures are ignored: only speed depends on it.
inline void advise_huge(void* p, size_t bytes, bool collapse) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  if (!thp_allowed()) return;
  const uintptr_t a = ((uintptr_t)p + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1);
  const uintptr_t e = ((uintptr_t)p + bytes) & ~(uintptr_t)(HUGE_PAGE - 1);
  if (e <= a) return;
  madvise((void*)a, e - a, MADV_HUGEPAGE);
#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif
  if (collapse) madvise((void*)a, e - a, MADV_COLLAPSE);
#else
  (void)p;
  (void)bytes;
  (void)collapse;
#endif
}

// A zero-initialised float buffer that only grows, 2 MiB-aligned and advised for huge pages. Growing replaces it with
// fresh zeroed memory (contents are not kept).
class HugeFloats {
 public:
  HugeFloats() = default;
  HugeFloats(const HugeFloats&) = delete;
  HugeFloats& operator=(const HugeFloats&) = delete;
  ~HugeFloats() { release(); }
  float* data() const { return p_; }
  size_t size() const { return n_; }
  // At least n floats, all zero when it had to grow.
  void ensure(size_t n) {
    if (n <= n_) return;
    release();
    bytes_ = (n * sizeof(float) + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1);
#if defined(__linux__)
    void* m = mmap(nullptr, bytes_ + HUGE_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) throw std::bad_alloc();
    map_ = m;
    p_ = (float*)(((uintptr_t)m + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1));
    advise_huge(p_, bytes_, false);
#else
    void* m = std::aligned_alloc(HUGE_PAGE, bytes_);
    if (!m) throw std::bad_alloc();
    std::memset(m, 0, bytes_);
    map_ = m;
    p_ = (float*)m;
#endif
    n_ = bytes_ / sizeof(float);
  }

 private:
  void release() {
    if (!map_) return;
#if defined(__linux__)
    munmap(map_, bytes_ + HUGE_PAGE);
#else
    std::free(map_);
#endif
    map_ = nullptr;
    p_ = nullptr;
    n_ = 0;
  }
  void* map_ = nullptr;
  float* p_ = nullptr;
  size_t n_ = 0, bytes_ = 0;
};

}  // namespace sf

// Where the fused Dense step's time goes: the bench's mlp (784-512-512-10, batch 128, Adam) trained by
// dense_train_step alone (no Node, no tfjs), with the CPU time of each phase on the calling thread from the timing
// build of native/dense_step.cc. Build and run from the repository root (drop -DSLIMFIT_HAVE_OPENBLAS -lopenblas
// without OpenBLAS):
//   g++ -O3 -std=c++17 -ffp-contract=off -fno-math-errno -Wno-ignored-attributes -DSLIMFIT_HAVE_OPENBLAS \
//     -DSLIMFIT_PROFILE_STEP -Inative bench/dense-step-profile.cc native/dense_step.cc native/kernels.cc \
//     native/gemm_own.cc native/gemm_bf16.cc -lopenblas -lpthread -o /tmp/dense-step-profile
//   /tmp/dense-step-profile THREADS [STEPS_PER_ROUND] [own] [4k]
// Phases are the calling thread's CPU time (so at 1 thread they hold on a loaded machine; at 2 they include its waits
// for the other thread); "cpu" is the whole process's CPU time per step (best of 3 rounds), "wall" the elapsed time.
// `own` runs the own GEMM kernels instead of OpenBLAS. Weights and moments sit on huge pages, as the engine advises
// them in the wasm heap (native/hugepage.h); `4k` puts them on ordinary pages. The weights' hash shows whether a change
// kept them bit-identical.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstdint>
#include <cstring>
#include <ctime>
#include <random>
#include <string>
#include <vector>

#include "dense_step.h"
#include "hugepage.h"
#include "kernels.h"

namespace sf {
extern double g_dense_prof[16];
}
using namespace sf;

static double cpu_seconds() {
  timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return t.tv_sec + 1e-9 * t.tv_nsec;
}

int main(int argc, char** argv) {
  const int threads = argc > 1 ? atoi(argv[1]) : 1;
  const int steps = argc > 2 ? atoi(argv[2]) : 100;
  if (threads < 1 || steps < 1) {
    fprintf(stderr, "usage: dense-step-profile THREADS [STEPS_PER_ROUND] [own]\n");
    return 2;
  }
  configure_threads(threads);
  bool huge = true;
  for (int i = 3; i < argc; i++) {
    if (std::string(argv[i]) == "own") set_gemm_mode(GEMM_OWN);
    else if (std::string(argv[i]) == "4k") huge = false;
    else {
      fprintf(stderr, "usage: dense-step-profile THREADS [STEPS_PER_ROUND] [own] [4k]\n");
      return 2;
    }
  }
  const int B = 128, dims[] = {784, 512, 512, 10}, L = 3;
  std::mt19937 rng(1);
  DenseStepArgs a;
  a.batch = B;
  // per layer: W, b, mW, vW, mb, vb, one after another (64-byte aligned) in one buffer
  size_t floats = 0;
  for (int l = 0; l < L; l++) floats += 3 * (((size_t)dims[l] * dims[l + 1] + 15) & ~(size_t)15) + 3 * (((size_t)dims[l + 1] + 15) & ~(size_t)15);
  HugeFloats arena;
  std::vector<float> plain;
  float* base;
  if (huge) {
    arena.ensure(floats);
    base = arena.data();
  } else {
    plain.resize(floats + 16);
    base = plain.data() + ((16 - ((uintptr_t)plain.data() / 4) % 16) % 16);
  }
  std::vector<std::pair<float*, size_t>> store;
  size_t used = 0;
  auto add = [&](size_t n, float lim) {
    std::uniform_real_distribution<float> u(-lim, lim);
    float* p = base + used;
    used += (n + 15) & ~(size_t)15;
    for (size_t i = 0; i < n; i++) p[i] = lim > 0 ? u(rng) : 0.f;
    store.push_back({p, n});
    return p;
  };
  for (int l = 0; l < L; l++) {
    const int in = dims[l], out = dims[l + 1];
    float* w = add((size_t)in * out, std::sqrt(6.f / (in + out)));  // glorotUniform, as the bench model
    float* b = add(out, 0);
    float* mw = add((size_t)in * out, 0);
    float* vw = add((size_t)in * out, 0);
    float* mb = add(out, 0);
    float* vb = add(out, 0);
    a.layers.push_back({in, out, l == L - 1 ? DENSE_SOFTMAX : DENSE_RELU, w, b, mw, vw, mb, vb});
  }
  // 100 batches of uniform random pixels and random labels, as the bench's epoch of 12800 samples
  const int NB = 100;
  std::vector<float> x((size_t)NB * B * 784), y((size_t)NB * B * 10, 0.f);
  std::uniform_real_distribution<float> u01(0, 1);
  for (float& v : x) v = u01(rng);
  for (int r = 0; r < NB * B; r++) y[(size_t)r * 10 + rng() % 10] = 1.f;
  a.adam = {1e-3f, 0.9f, 0.999f, 1e-7f, 0, 0, 0.1f, 0.001f};
  double loss = 0, correct = 0;
  int t = 0;
  auto step = [&] {
    t++;  // Adam's bias corrections as tfjs computes them for step t
    a.adam.oma1 = (float)(1 - std::pow(0.9f, t));
    a.adam.oma2 = (float)(1 - std::pow(0.999f, t));
    a.x = x.data() + (size_t)(t % NB) * B * 784;
    a.y = y.data() + (size_t)(t % NB) * B * 10;
    dense_train_step(a, &loss, &correct);
  };
  const int warm = 20, rounds = 3;
  for (int i = 0; i < warm; i++) step();
  double bestWall = 1e9, bestCpu = 1e9;
  for (int r = 0; r < rounds; r++) {
    const auto t0 = std::chrono::steady_clock::now();
    const double c0 = cpu_seconds();
    for (int i = 0; i < steps; i++) step();
    bestCpu = std::min(bestCpu, (cpu_seconds() - c0) / steps);
    bestWall = std::min(bestWall, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / steps);
  }
  const int calls = warm + rounds * steps;
  const char* names[14] = {"forward layer 0", "forward layer 1", "forward 2 + softmax", "loss total", "", "", "",
                           "backward layer 0", "backward layer 1", "backward layer 2", "", "", "",
                           "(Adam, in backward)"};
  double total = 0;
  for (int i = 0; i < 13; i++) total += g_dense_prof[i];
  printf("phase (calling thread's CPU time, mean per step)\n");
  for (int i = 0; i < 14; i++)
    if (names[i][0]) printf("  %-22s %8.1f us %6.1f%%\n", names[i], g_dense_prof[i] / calls * 1e6, 100 * g_dense_prof[i] / total);
  unsigned long long h = 1469598103934665603ULL;  // FNV-1a over every weight and moment
  for (auto& [p, n] : store)
    for (size_t i = 0; i < n; i++) {
      unsigned bits;
      memcpy(&bits, p + i, 4);
      h = (h ^ bits) * 1099511628211ULL;
    }
  const double flops = 3.21e6 * B;  // the bench's GEMM FLOPs per sample (bench/engine/models.ts)
  printf("threads %d: cpu %.1f us/step (%.1f GFLOP per CPU-second), wall %.1f us/step (%.0f samples/s, %.1f GFLOP/s); "
         "loss %.6f, weights hash %016llx\n",
         threads, bestCpu * 1e6, flops / bestCpu / 1e9, bestWall * 1e6, B / bestWall, flops / bestWall / 1e9, loss, h);
}

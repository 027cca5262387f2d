// Training kernels: GEMM dispatch, im2col convolutions and their backprops, max pooling, fused Adam.
#include "kernels.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#ifdef __SSE2__
#include <immintrin.h>
#endif
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "gemm_own.h"
#include "threadpool.h"

#ifdef SLIMFIT_HAVE_OPENBLAS
#include <cblas.h>
extern "C" void openblas_set_num_threads(int);
#endif
#ifdef SLIMFIT_HAVE_DNNL
#include <oneapi/dnnl/dnnl.h>
// Linked only with an OpenMP or sequential oneDNN build (native/detect-dnnl.cjs). An OpenMP build brings libgomp
// along; weak, so a sequential build (which has no OpenMP) links and loads too.
extern "C" void omp_set_num_threads(int) __attribute__((weak));
#endif
#if defined(SLIMFIT_HAVE_OPENBLAS) || defined(SLIMFIT_HAVE_DNNL)
#define SLIMFIT_HAVE_GEMM_LIB 1
#endif

namespace sf {

// Settings handed over by configure() (from the JS side, which reads the environment) before first use.
static int g_threads_setting = 0;  // 0 = one per hardware thread
static std::atomic<bool> g_pool_made{false};
// -1 until first use, then the GEMM mode in use (GEMM_OWN, GEMM_OPENBLAS, GEMM_ONEDNN or GEMM_AUTO).
static std::atomic<int> g_gemm_mode{-1};
static int g_gemm_setting = GEMM_DEFAULT;

Pool& pool() {
  static Pool p([] {
    int n = g_threads_setting > 0 ? g_threads_setting : (int)std::thread::hardware_concurrency();
    g_pool_made = true;
    return std::max(1, std::min(n, 256));
  }());
  return p;
}
int num_threads() { return pool().size(); }

bool configure_threads(int n) {
  if (g_pool_made) return n == g_threads_setting;
  g_threads_setting = n;
  return true;
}

bool have_openblas() {
#ifdef SLIMFIT_HAVE_OPENBLAS
  return true;
#else
  return false;
#endif
}
bool have_onednn() {
#ifdef SLIMFIT_HAVE_DNNL
  return true;
#else
  return false;
#endif
}
const char* gemm_library_name() { return have_onednn() ? "onednn" : have_openblas() ? "openblas" : "own"; }

// Whether mode can run here: its library is linked (GEMM_AUTO: either one).
static bool mode_available(int mode) {
  if (mode == GEMM_OPENBLAS) return have_openblas();
  if (mode == GEMM_ONEDNN) return have_onednn();
  if (mode == GEMM_AUTO) return have_openblas() || have_onednn();
  return mode == GEMM_OWN;
}

// Default GEMM mode: without a library the own kernels; with one on an AVX2/AVX-512 CPU GEMM_AUTO (gemm_uses_blas,
// use_tiles), on other CPUs the library throughout. configure_gemm (SLIMFIT_GEMM) overrides when its library is linked.
bool configure_gemm(int choice) {
  if (g_gemm_mode >= 0) return choice == g_gemm_setting;
  g_gemm_setting = choice;
  return true;
}
static int default_gemm_mode() {
  if (g_gemm_setting != GEMM_DEFAULT && mode_available(g_gemm_setting)) return g_gemm_setting;
  if (!mode_available(GEMM_AUTO)) return GEMM_OWN;
  if (detect_isa() != ISA_GENERIC) return GEMM_AUTO;
  return have_onednn() ? GEMM_ONEDNN : GEMM_OPENBLAS;
}
void set_gemm_mode(int mode) {
  // GEMM_DEFAULT forgets the choice: the next gemm_mode() decides again as on first use (SLIMFIT_GEMM, ISA)
  if (mode == GEMM_DEFAULT || !mode_available(mode)) g_gemm_mode = -1;
  else g_gemm_mode = mode;
}
int gemm_mode() {
  int v = g_gemm_mode;
  if (v < 0) {
    v = default_gemm_mode();
    int unset = -1;
    g_gemm_mode.compare_exchange_strong(unset, v);
    v = g_gemm_mode;
  }
  return v;
}
void set_force_own(bool on) { set_gemm_mode(on ? GEMM_OWN : GEMM_DEFAULT); }
bool force_own() { return gemm_mode() == GEMM_OWN; }
const char* gemm_mode_name(int mode) {
  return mode == GEMM_OWN ? "own" : mode == GEMM_OPENBLAS ? "openblas" : mode == GEMM_ONEDNN ? "onednn" : "auto";
}

// The rule of GEMM_AUTO: a fixed function of the shape (never of timings), so a shape always takes the same library
// and training stays bit-reproducible. Called single-threaded on the pool's slices of C, oneDNN and OpenBLAS were as
// fast or faster than the own kernels at every training shape of the engine bench (README, "Which GEMM runs where"),
// so every float32 GEMM goes to the library; convolutions keep the own kernels on L2-sized im2col tiles (use_tiles),
// float64 the own kernels unless the mode is GEMM_OPENBLAS.
bool gemm_uses_blas(bool ta, bool tb, int M, int N, int K) {
  (void)ta;
  (void)tb;
  (void)M;
  (void)N;
  switch (gemm_mode()) {
    case GEMM_OWN: return false;
    default: return K > 0;
  }
}

#ifdef SLIMFIT_HAVE_OPENBLAS
// OpenBLAS runs single-threaded, called from the engine's own pool on slices of C: no second set of threads spinning
// against the pool's, and the slicing (by shape and thread count only) is as deterministic as the own GEMM's.
static void blas_init() {
  static bool done = [] {
    openblas_set_num_threads(1);
    return true;
  }();
  (void)done;
}
#endif

#ifdef SLIMFIT_HAVE_GEMM_LIB
// One slice's float32 GEMM (m×n of C) on the calling thread by the library the mode names: oneDNN in GEMM_ONEDNN and
// (when linked) GEMM_AUTO, else OpenBLAS. Slices thinner than 16 rows or columns never go to oneDNN: there its
// matrix-vector kernels sum all of K in one float32 accumulator (relative error 2e-3 for a dot product of 4.2M terms,
// where OpenBLAS and the own kernels, which sum in blocks of K, stay below 5e-6); they go to OpenBLAS, or to the own
// kernel when OpenBLAS is not linked (the slices depend only on the shape and thread count, so this stays a fixed
// rule). oneDNN is kept to one thread per call, as OpenBLAS is: its OpenMP team size is a per-thread setting, made
// once on each thread that calls it. Should dnnl_sgemm refuse (it checks its arguments and may fail to allocate scratch
// before it writes C), the own kernel computes the slice.
static void lib_sgemm(bool ta, bool tb, int m, int n, int K, float alpha, const float* A, int lda, const float* B, int ldb,
                      float beta, float* C, int ldc) {
#ifdef SLIMFIT_HAVE_DNNL
  if (gemm_mode() != GEMM_OPENBLAS && m >= 16 && n >= 16) {
    static thread_local bool one_thread = [] {
      if (omp_set_num_threads) omp_set_num_threads(1);
      return true;
    }();
    (void)one_thread;
    if (dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', m, n, K, alpha, A, lda, B, ldb, beta, C, ldc) != dnnl_success)
      sgemm_own(ta, tb, m, n, K, alpha, A, lda, B, ldb, beta, C, ldc, 1);
    return;
  }
#endif
#ifdef SLIMFIT_HAVE_OPENBLAS
  blas_init();
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, K, alpha, A, lda, B, ldb,
              beta, C, ldc);
#else
  sgemm_own(ta, tb, m, n, K, alpha, A, lda, B, ldb, beta, C, ldc, 1);
#endif
}
#endif

#ifdef SLIMFIT_HAVE_OPENBLAS
// op on slices of C, one per pool thread, cut as gemm_f32_slices cuts (gemm_slicing, split 0), each on its thread.
template <class T, class F>
static void blas_sliced(bool ta, bool tb, int M, int N, int K, const T* A, int lda, const T* B, int ldb, T* C, int ldc, F call) {
  blas_init();
  const GemmSlicing g = gemm_slicing(M, N, K, 0);
  auto slice = [&](int t) {
    int r[4];
    if (!gemm_slice_range(g, t, M, N, r)) return;
    if (g.split_n) call(M, r[3] - r[2], A, B + (long)r[2] * (tb ? ldb : 1), C + r[2]);
    else call(r[1] - r[0], N, A + (long)r[0] * (ta ? 1 : lda), B, C + (long)r[0] * ldc);
  };
  if (g.nc == 1) slice(0);
  else pool().run(g.nc, slice);
}
#endif

void gemm_f32(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb,
              float beta, float* C, int ldc) {
  if (M <= 0 || N <= 0) return;
#ifdef SLIMFIT_HAVE_GEMM_LIB
  if (gemm_uses_blas(ta, tb, M, N, K)) {
    gemm_f32_slices(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, 0, [](int, int, int, int) {});
    return;
  }
#endif
  sgemm_own(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, num_threads());
}

GemmSlicing gemm_slicing(int M, int N, int K, int split) {
  GemmSlicing g;
  const int nt = (double)M * N * K < 2e5 ? 1 : num_threads();
  g.split_n = split == 2 || (split == 0 && N >= M);
  g.units = ((g.split_n ? N : M) + 15) / 16;
  g.nc = std::max(1, std::min(nt, g.units));
  return g;
}

bool gemm_slice_range(const GemmSlicing& g, int t, int M, int N, int* r) {
  const int u0 = g.units * t / g.nc, u1 = g.units * (t + 1) / g.nc;
  r[0] = 0, r[1] = M, r[2] = 0, r[3] = N;
  if (g.split_n) {
    r[2] = u0 * 16;
    r[3] = std::min(N, u1 * 16);
    return r[2] < r[3];
  }
  r[0] = u0 * 16;
  r[1] = std::min(M, u1 * 16);
  return r[0] < r[1];
}

bool gemm_f32_slice(const GemmSlicing& g, int t, bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda,
                    const float* B, int ldb, float beta, float* C, int ldc, int* r) {
  int q[4];
  if (!gemm_slice_range(g, t, M, N, q)) return false;
  const int i0 = q[0], i1 = q[1], j0 = q[2], j1 = q[3];
  if (g.split_n) {
    B += (long)j0 * (tb ? ldb : 1);
    C += j0;
  } else {
    A += (long)i0 * (ta ? 1 : lda);
    C += (long)i0 * ldc;
  }
  const int m = i1 - i0, n = j1 - j0;
#ifdef SLIMFIT_HAVE_GEMM_LIB
  if (gemm_uses_blas(ta, tb, M, N, K))
    lib_sgemm(ta, tb, m, n, K, alpha, A, lda, B, ldb, beta, C, ldc);
  else
#endif
    sgemm_own(ta, tb, m, n, K, alpha, A, lda, B, ldb, beta, C, ldc, 1);
  r[0] = i0;
  r[1] = i1;
  r[2] = j0;
  r[3] = j1;
  return true;
}

void gemm_f32_slices(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb,
                     float beta, float* C, int ldc, int split, const std::function<void(int, int, int, int)>& epi) {
  if (M <= 0 || N <= 0) return;
  const GemmSlicing g = gemm_slicing(M, N, K, split);
  auto slice = [&](int t) {
    int r[4];
    if (gemm_f32_slice(g, t, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, r)) epi(r[0], r[1], r[2], r[3]);
  };
  if (g.nc == 1) slice(0);
  else pool().run(g.nc, slice);
}

void gemm_f64(bool ta, bool tb, int M, int N, int K, double alpha, const double* A, int lda, const double* B, int ldb,
              double beta, double* C, int ldc) {
  if (M <= 0 || N <= 0) return;
#ifdef SLIMFIT_HAVE_OPENBLAS
  if (gemm_mode() == GEMM_OPENBLAS && K > 0) {  // float64 (the precision lab): the own kernels unless told
    blas_sliced<double>(ta, tb, M, N, K, A, lda, B, ldb, C, ldc, [&](int m, int n, const double* a, const double* b, double* c) {
      cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, K, alpha, a, lda, b,
                  ldb, beta, c, ldc);
    });
    return;
  }
#endif
  dgemm_own(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, num_threads());
}

// y[r, :] = act(y[r, :] + bias) for rows [0, rows) on the calling thread.
static void bias_act_serial(float* y, long rows, int n, const float* bias, int act) {
  for (long r = 0; r < rows; r++) {
    float* row = y + r * n;
    if (bias)
      for (int j = 0; j < n; j++) row[j] += bias[j];
    if (act == 1)
      for (int j = 0; j < n; j++) row[j] = row[j] > 0.f ? row[j] : 0.f;
  }
}

void bias_act(float* y, long rows, int n, const float* bias, int act) {
  if (!bias && act == 0) return;
  parallel_for(rows, std::max<long>(1, 16384 / std::max(1, n)),
               [&](long r0, long r1) { bias_act_serial(y + r0 * n, r1 - r0, n, bias, act); });
}

// ---- convolution via im2col ----

static bool is_pointwise(const ConvGeom& g) {
  return g.KH == 1 && g.KW == 1 && g.sh == 1 && g.sw == 1 && g.pt == 0 && g.pl == 0 && g.OH == g.H && g.OW == g.W;
}

// Samples per chunk so that the column buffer stays under ~32 MB.
static int chunk_samples(const ConvGeom& g) {
  long per = (long)g.OH * g.OW * g.KH * g.KW * g.C;
  long maxf = 8L << 20;
  return (int)std::max<long>(1, std::min<long>(g.N, maxf / std::max<long>(1, per)));
}

// col[r - r0, (kh*KW+kw)*C+c] = x[n, oh*sh-pt+kh*dh, ow*sw-pl+kw*dw, c] (0 outside) for output rows r in [r0, r1),
// r = (n*OH+oh)*OW+ow; on the calling thread.
static void im2col_rows(const ConvGeom& g, const float* x, long r0, long r1, float* col) {
  const long kkc = (long)g.KH * g.KW * g.C;
  for (long r = r0; r < r1; r++) {
    int ow = (int)(r % g.OW), oh = (int)((r / g.OW) % g.OH), n = (int)(r / ((long)g.OW * g.OH));
    float* dst = col + (r - r0) * kkc;
    for (int kh = 0; kh < g.KH; kh++) {
      int ih = oh * g.sh - g.pt + kh * g.dh;
      for (int kw = 0; kw < g.KW; kw++, dst += g.C) {
        int iw = ow * g.sw - g.pl + kw * g.dw;
        if (ih < 0 || ih >= g.H || iw < 0 || iw >= g.W) {
          for (int c = 0; c < g.C; c++) dst[c] = 0.f;
        } else {
          const float* src = x + (((long)n * g.H + ih) * g.W + iw) * g.C;
          for (int c = 0; c < g.C; c++) dst[c] = src[c];
        }
      }
    }
  }
}

// im2col of samples [n0, n0+nb) into col, rows split across threads.
static void im2col(const ConvGeom& g, const float* x, int n0, int nb, float* col) {
  const long kkc = (long)g.KH * g.KW * g.C, base = (long)n0 * g.OH * g.OW;
  parallel_for((long)nb * g.OH * g.OW, 64, [&](long r0, long r1) { im2col_rows(g, x, base + r0, base + r1, col + r0 * kkc); });
}

// dx[n, ih, iw, c] += col[...] for samples [n0, n1) (the adjoint of im2col; col starts at sample n0); calling thread.
static void col2im_samples(const ConvGeom& g, const float* col, int n0, int n1, float* dx) {
  const long kkc = (long)g.KH * g.KW * g.C;
  for (int n = n0; n < n1; n++) {
    float* img = dx + (long)n * g.H * g.W * g.C;
    const float* src = col + (long)(n - n0) * g.OH * g.OW * kkc;
    for (int oh = 0; oh < g.OH; oh++)
      for (int ow = 0; ow < g.OW; ow++)
        for (int kh = 0; kh < g.KH; kh++) {
          int ih = oh * g.sh - g.pt + kh * g.dh;
          for (int kw = 0; kw < g.KW; kw++, src += g.C) {
            int iw = ow * g.sw - g.pl + kw * g.dw;
            if (ih < 0 || ih >= g.H || iw < 0 || iw >= g.W) continue;
            float* d = img + ((long)ih * g.W + iw) * g.C;
            for (int c = 0; c < g.C; c++) d[c] += src[c];
          }
        }
  }
}

// col2im of samples [n0, n0+nb), parallel over samples.
static void col2im(const ConvGeom& g, const float* col, int n0, int nb, float* dx) {
  const long per = (long)g.OH * g.OW * g.KH * g.KW * g.C;
  parallel_for(nb, 1, [&](long b0, long b1) { col2im_samples(g, col + b0 * per, n0 + (int)b0, n0 + (int)b1, dx); });
}

// ---- direct convolution for few taps per output (KH*KW*C <= 32, e.g. a first layer on gray images) ----
// Why: im2col + GEMM with K = 9 spends its time packing (3 ms for 128x28x28x1 -> 32 channels); here each output
// pixel's OC values are accumulated in place, and the filter gradient reads dy once.
static bool is_small_taps(const ConvGeom& g) { return (long)g.KH * g.KW * g.C <= 32 && g.OC <= 512; }

__attribute__((target_clones("avx512f", "avx2", "default")))
static void conv_direct_rows(const ConvGeom& g, const float* x, const float* w, float* y, const float* bias, int act, long p0, long p1) {
  const int kkc = g.KH * g.KW * g.C, OC = g.OC;
  float t[32];
  for (long p = p0; p < p1; p++) {
    const int n = (int)(p / ((long)g.OH * g.OW)), r = (int)(p % ((long)g.OH * g.OW));
    gather_taps(g, x, n, r / g.OW, r % g.OW, t);
    float* __restrict__ out = y + p * OC;
    for (int o = 0; o < OC; o++) out[o] = bias ? bias[o] : 0.f;
    for (int k = 0; k < kkc; k++) {
      const float v = t[k];
      const float* __restrict__ wk = w + (long)k * OC;
#pragma GCC ivdep
      for (int o = 0; o < OC; o++) out[o] += v * wk[o];
    }
    if (act == 1) for (int o = 0; o < OC; o++) out[o] = out[o] > 0.f ? out[o] : (out[o] == out[o] ? 0.f : out[o]);
  }
}

__attribute__((target_clones("avx512f", "avx2", "default")))
static void conv_direct_filter_rows(const ConvGeom& g, const float* x, const float* dy, float* acc, long p0, long p1) {
  const int kkc = g.KH * g.KW * g.C, OC = g.OC;
  float t[32];
  for (long p = p0; p < p1; p++) {
    const int n = (int)(p / ((long)g.OH * g.OW)), r = (int)(p % ((long)g.OH * g.OW));
    gather_taps(g, x, n, r / g.OW, r % g.OW, t);
    const float* __restrict__ d = dy + p * OC;
    for (int k = 0; k < kkc; k++) {
      const float v = t[k];
      float* __restrict__ a = acc + (long)k * OC;
#pragma GCC ivdep
      for (int o = 0; o < OC; o++) a[o] += v * d[o];
    }
  }
}

#ifdef __x86_64__
// 3x3 taps on one channel, OC = 16*OCV: the OC accumulators stay in registers (the generic loops above are bound by
// storing and reloading them for every tap).
template <int OCV>
__attribute__((target("avx512f"))) static void conv9_rows_avx512(const ConvGeom& g, const float* x, const float* w, float* y,
                                                                   const float* bias, int act, long p0, long p1) {
  const int OC = 16 * OCV;
  __m512 wv[9][OCV], bv[OCV];
  for (int k = 0; k < 9; k++)
    for (int v = 0; v < OCV; v++) wv[k][v] = _mm512_loadu_ps(w + k * OC + 16 * v);
  for (int v = 0; v < OCV; v++) bv[v] = bias ? _mm512_loadu_ps(bias + 16 * v) : _mm512_setzero_ps();
  const __m512 zero = _mm512_setzero_ps();
  float t[32];
  for (long p = p0; p < p1; p++) {
    const int n = (int)(p / ((long)g.OH * g.OW)), r = (int)(p % ((long)g.OH * g.OW));
    gather_taps(g, x, n, r / g.OW, r % g.OW, t);
    __m512 acc[OCV];
    for (int v = 0; v < OCV; v++) acc[v] = bv[v];
    for (int k = 0; k < 9; k++) {
      const __m512 tv = _mm512_set1_ps(t[k]);
      for (int v = 0; v < OCV; v++) acc[v] = _mm512_add_ps(acc[v], _mm512_mul_ps(tv, wv[k][v]));
    }
    float* out = y + p * OC;
    for (int v = 0; v < OCV; v++) _mm512_storeu_ps(out + 16 * v, act == 1 ? _mm512_max_ps(zero, acc[v]) : acc[v]);  // NaN stays NaN
  }
}

template <int OCV>
__attribute__((target("avx512f"))) static void conv9_filter_rows_avx512(const ConvGeom& g, const float* x, const float* dy, float* part,
                                                                          long p0, long p1) {
  const int OC = 16 * OCV;
  __m512 acc[9][OCV];
  for (int k = 0; k < 9; k++)
    for (int v = 0; v < OCV; v++) acc[k][v] = _mm512_setzero_ps();
  float t[32];
  for (long p = p0; p < p1; p++) {
    const int n = (int)(p / ((long)g.OH * g.OW)), r = (int)(p % ((long)g.OH * g.OW));
    gather_taps(g, x, n, r / g.OW, r % g.OW, t);
    for (int v = 0; v < OCV; v++) {
      const __m512 d = _mm512_loadu_ps(dy + p * OC + 16 * v);
      for (int k = 0; k < 9; k++) acc[k][v] = _mm512_add_ps(acc[k][v], _mm512_mul_ps(_mm512_set1_ps(t[k]), d));
    }
  }
  for (int k = 0; k < 9; k++)
    for (int v = 0; v < OCV; v++) _mm512_storeu_ps(part + k * OC + 16 * v, acc[k][v]);
}

// The register-blocked kernels' OCV for this geometry, or 0 when they do not apply.
static int conv9_ocv(const ConvGeom& g) {
  if (detect_isa() != ISA_AVX512 || g.KH * g.KW * g.C != 9 || g.OC % 16 != 0) return 0;
  const int ocv = g.OC / 16;
  return ocv == 1 || ocv == 2 || ocv == 4 ? ocv : 0;
}
#else
static int conv9_ocv(const ConvGeom&) { return 0; }
#endif

static void conv2d_direct(const ConvGeom& g, const float* x, const float* w, float* y, const float* bias, int act) {
  const long P = (long)g.N * g.OH * g.OW;
  const int ocv = conv9_ocv(g);
  parallel_for(P, 1024, [&](long p0, long p1) {
#ifdef __x86_64__
    if (ocv == 1) return conv9_rows_avx512<1>(g, x, w, y, bias, act, p0, p1);
    if (ocv == 2) return conv9_rows_avx512<2>(g, x, w, y, bias, act, p0, p1);
    if (ocv == 4) return conv9_rows_avx512<4>(g, x, w, y, bias, act, p0, p1);
#endif
    conv_direct_rows(g, x, w, y, bias, act, p0, p1);
  });
}

// Partial sums per chunk in a fixed chunk layout, added in chunk order: the result does not depend on timing.
static void conv2d_backprop_filter_direct(const ConvGeom& g, const float* x, const float* dy, float* dw) {
  const long P = (long)g.N * g.OH * g.OW, kk = (long)g.KH * g.KW * g.C * g.OC;
  const int nc = (int)std::max<long>(1, std::min<long>(4L * pool().size(), P / 4096));
  std::vector<float> part((size_t)nc * kk, 0.f);
  pool().run(nc, [&](int c) {
    const long b = P * c / nc, e = P * (c + 1) / nc;
    float* pc = part.data() + (size_t)c * kk;
#ifdef __x86_64__
    const int ocv = conv9_ocv(g);
    if (ocv == 1) return conv9_filter_rows_avx512<1>(g, x, dy, pc, b, e);
    if (ocv == 2) return conv9_filter_rows_avx512<2>(g, x, dy, pc, b, e);
    if (ocv == 4) return conv9_filter_rows_avx512<4>(g, x, dy, pc, b, e);
#endif
    conv_direct_filter_rows(g, x, dy, pc, b, e);
  });
  for (long i = 0; i < kk; i++) {
    float s = 0.f;
    for (int c = 0; c < nc; c++) s += part[(size_t)c * kk + i];
    dw[i] = s;
  }
}

// im2col buffer, per calling thread (tfjs may run in several worker threads of one process)
static std::vector<float>& scratch() {
  thread_local std::vector<float> buf;
  return buf;
}

// ---- tiled im2col convolutions (own GEMM) ----
// Why: with the whole batch's columns in one buffer (17.8 MB for 128x13x13x32 -> 64 channels, 3x3) the column
// writes and reads go to memory and cost as much as the GEMM; a tile of output rows im2col'ed by the thread
// that multiplies it stays in that core's L2 (first-layer-sized geometries in training: 5.5 -> ~3.5 ms).
static constexpr long TILE_FLOATS = 96L << 10;  // ~384 KB of columns per tile

static bool use_tiles(const ConvGeom& g) {
  const int m = gemm_mode();
  return m != GEMM_OPENBLAS && m != GEMM_ONEDNN && !is_pointwise(g);
}

// Output rows per tile: a multiple of 16 (the GEMM's row block), at least 16.
static long tile_rows(const ConvGeom& g) {
  long kkc = (long)g.KH * g.KW * g.C;
  return std::max<long>(16, TILE_FLOATS / std::max<long>(1, kkc) / 16 * 16);
}

static void conv2d_tiled(const ConvGeom& g, const float* x, const float* w, float* y, const float* bias, int act) {
  const int kkc = g.KH * g.KW * g.C;
  const long P = (long)g.N * g.OH * g.OW, tr = tile_rows(g);
  pool().run((int)((P + tr - 1) / tr), [&](int t) {
    const long r0 = t * tr, r1 = std::min(P, r0 + tr);
    auto& col = scratch();
    if (col.size() < (size_t)(tr * kkc)) col.resize((size_t)(tr * kkc));
    im2col_rows(g, x, r0, r1, col.data());
    sgemm_own(false, false, (int)(r1 - r0), g.OC, kkc, 1.f, col.data(), kkc, w, g.OC, 0.f, y + r0 * g.OC, g.OC, 1);
    if (bias || act) bias_act_serial(y + r0 * g.OC, r1 - r0, g.OC, bias, act);
  });
}

// Whole samples per tile (col2im of one sample must not be split between threads).
static void conv2d_backprop_input_tiled(const ConvGeom& g, const float* dy, const float* w, float* dx) {
  const int kkc = g.KH * g.KW * g.C;
  const long ohw = (long)g.OH * g.OW, img = (long)g.H * g.W * g.C;
  const int ns = (int)std::max<long>(1, TILE_FLOATS / std::max<long>(1, ohw * kkc));
  pool().run((g.N + ns - 1) / ns, [&](int t) {
    const int n0 = t * ns, n1 = std::min(g.N, n0 + ns);
    auto& col = scratch();
    const size_t need = (size_t)(n1 - n0) * ohw * kkc;
    if (col.size() < need) col.resize(need);
    sgemm_own(false, true, (int)((n1 - n0) * ohw), kkc, g.OC, 1.f, dy + n0 * ohw * g.OC, g.OC, w, g.OC, 0.f, col.data(), kkc, 1);
    std::memset(dx + n0 * img, 0, sizeof(float) * (size_t)(n1 - n0) * img);
    col2im_samples(g, col.data(), n0, n1, dx);
  });
}

// A fixed number of row groups (independent of the thread count and of timing), each summing its tiles' products
// into its own partial; the partials are added in group order.
static void conv2d_backprop_filter_tiled(const ConvGeom& g, const float* x, const float* dy, float* dw) {
  const int kkc = g.KH * g.KW * g.C;
  const long P = (long)g.N * g.OH * g.OW, tr = tile_rows(g), kk = (long)kkc * g.OC;
  const long tiles = (P + tr - 1) / tr;
  const int groups = (int)std::min<long>(16, tiles);
  std::vector<float> part((size_t)groups * kk, 0.f);
  pool().run(groups, [&](int q) {
    auto& col = scratch();
    if (col.size() < (size_t)(tr * kkc)) col.resize((size_t)(tr * kkc));
    float* pq = part.data() + (size_t)q * kk;
    for (long t = tiles * q / groups; t < tiles * (q + 1) / groups; t++) {
      const long r0 = t * tr, r1 = std::min(P, r0 + tr);
      im2col_rows(g, x, r0, r1, col.data());
      sgemm_own(true, false, kkc, g.OC, (int)(r1 - r0), 1.f, col.data(), kkc, dy + r0 * g.OC, g.OC, 1.f, pq, g.OC, 1);
    }
  });
  parallel_for(kk, 4096, [&](long i0, long i1) {
    for (long i = i0; i < i1; i++) {
      float s = 0.f;
      for (int q = 0; q < groups; q++) s += part[(size_t)q * kk + i];
      dw[i] = s;
    }
  });
}

void conv2d(const ConvGeom& g, const float* x, const float* w, float* y, const float* bias, int act) {
  const int kkc = g.KH * g.KW * g.C;
  const long ohw = (long)g.OH * g.OW;
  if (is_small_taps(g) && !is_pointwise(g)) {
    conv2d_direct(g, x, w, y, bias, act);
    return;
  }
  if (use_tiles(g) && g.N > 0) {
    conv2d_tiled(g, x, w, y, bias, act);
    return;
  }
  if (is_pointwise(g)) {
    gemm_f32(false, false, (int)(g.N * ohw), g.OC, g.C, 1.f, x, g.C, w, g.OC, 0.f, y, g.OC);
  } else {
    int nb = chunk_samples(g);
    auto& col = scratch();
    col.resize((size_t)nb * ohw * kkc);
    for (int n0 = 0; n0 < g.N; n0 += nb) {
      int cnt = std::min(nb, g.N - n0);
      im2col(g, x, n0, cnt, col.data());
      gemm_f32(false, false, (int)(cnt * ohw), g.OC, kkc, 1.f, col.data(), kkc, w, g.OC, 0.f, y + n0 * ohw * g.OC, g.OC);
    }
  }
  bias_act(y, g.N * ohw, g.OC, bias, act);
}

void conv2d_backprop_input(const ConvGeom& g, const float* dy, const float* w, float* dx) {
  const int kkc = g.KH * g.KW * g.C;
  const long ohw = (long)g.OH * g.OW;
  if (is_pointwise(g)) {
    gemm_f32(false, true, (int)(g.N * ohw), g.C, g.OC, 1.f, dy, g.OC, w, g.OC, 0.f, dx, g.C);
    return;
  }
  if (use_tiles(g)) {
    conv2d_backprop_input_tiled(g, dy, w, dx);
    return;
  }
  std::memset(dx, 0, sizeof(float) * (size_t)g.N * g.H * g.W * g.C);
  int nb = chunk_samples(g);
  auto& col = scratch();
  col.resize((size_t)nb * ohw * kkc);
  for (int n0 = 0; n0 < g.N; n0 += nb) {
    int cnt = std::min(nb, g.N - n0);
    gemm_f32(false, true, (int)(cnt * ohw), kkc, g.OC, 1.f, dy + n0 * ohw * g.OC, g.OC, w, g.OC, 0.f, col.data(), kkc);
    col2im(g, col.data(), n0, cnt, dx);
  }
}

void conv2d_backprop_filter(const ConvGeom& g, const float* x, const float* dy, float* dw) {
  const int kkc = g.KH * g.KW * g.C;
  const long ohw = (long)g.OH * g.OW;
  if (is_pointwise(g)) {
    gemm_f32(true, false, g.C, g.OC, (int)(g.N * ohw), 1.f, x, g.C, dy, g.OC, 0.f, dw, g.OC);
    return;
  }
  if (is_small_taps(g)) {
    conv2d_backprop_filter_direct(g, x, dy, dw);
    return;
  }
  if (use_tiles(g) && g.N > 0) {
    conv2d_backprop_filter_tiled(g, x, dy, dw);
    return;
  }
  int nb = chunk_samples(g);
  auto& col = scratch();
  col.resize((size_t)nb * ohw * kkc);
  for (int n0 = 0; n0 < g.N; n0 += nb) {
    int cnt = std::min(nb, g.N - n0);
    im2col(g, x, n0, cnt, col.data());
    gemm_f32(true, false, kkc, g.OC, (int)(cnt * ohw), 1.f, col.data(), kkc, dy + n0 * ohw * g.OC, g.OC,
             n0 == 0 ? 0.f : 1.f, dw, g.OC);
  }
  if (g.N == 0) std::memset(dw, 0, sizeof(float) * (size_t)kkc * g.OC);
}

// ---- max pooling (padding positions never win; ties go to the first position in row-major window order) ----

void maxpool(const ConvGeom& g, const float* x, float* y) {
  const float ninf = -std::numeric_limits<float>::infinity();
  parallel_for((long)g.N * g.OH, 4, [&](long r0, long r1) {
    for (long r = r0; r < r1; r++) {
      int n = (int)(r / g.OH), oh = (int)(r % g.OH);
      for (int ow = 0; ow < g.OW; ow++) {
        float* out = y + ((long)r * g.OW + ow) * g.C;
        for (int c = 0; c < g.C; c++) out[c] = ninf;
        for (int kh = 0; kh < g.KH; kh++) {
          int ih = oh * g.sh - g.pt + kh * g.dh;
          if (ih < 0 || ih >= g.H) continue;
          for (int kw = 0; kw < g.KW; kw++) {
            int iw = ow * g.sw - g.pl + kw * g.dw;
            if (iw < 0 || iw >= g.W) continue;
            const float* in = x + (((long)n * g.H + ih) * g.W + iw) * g.C;
            for (int c = 0; c < g.C; c++) out[c] = in[c] > out[c] ? in[c] : out[c];
          }
        }
      }
    }
  });
}

// Non-overlapping windows without padding (the usual 2x2/2): every dx element is written once, no zeroing pass.
static void maxpool_grad_tiled(const ConvGeom& g, const float* x, const float* dy, float* dx) {
  const long img = (long)g.H * g.W * g.C;
  parallel_for((long)g.N * g.OH, 2, [&](long r0, long r1) {
    // locals, not g.*: the int32 stores below could otherwise alias g and block vectorization
    const int C = g.C, KH = g.KH, KW = g.KW, W = g.W, OW = g.OW, OH = g.OH;
    std::vector<float> best(C), taken(C);
    for (long r = r0; r < r1; r++) {
      long n = r / OH;
      int oh = (int)(r % OH);
      const float* xs = x + n * img;
      float* dxs = dx + n * img;
      for (int ow = 0; ow < OW; ow++) {
        // pass 1: window maximum per channel; pass 2: dy goes to the first position holding it (ties: first wins,
        // as in tfjs), everything else in the window gets 0. All-float selects so the loops vectorize.
        float* __restrict bp = best.data();
        float* __restrict tk = taken.data();
        for (int kh = 0; kh < KH; kh++)
          for (int kw = 0; kw < KW; kw++) {
            const float* __restrict in = xs + ((long)(oh * KH + kh) * W + ow * KW + kw) * C;
            if (kh == 0 && kw == 0) {
              for (int c = 0; c < C; c++) bp[c] = in[c];
            } else {
              int c = 0;
#ifdef __SSE2__
              for (; c + 4 <= C; c += 4) _mm_storeu_ps(bp + c, _mm_max_ps(_mm_loadu_ps(in + c), _mm_loadu_ps(bp + c)));
#endif
              for (; c < C; c++) bp[c] = in[c] > bp[c] ? in[c] : bp[c];
            }
          }
        for (int c = 0; c < C; c++) tk[c] = 0.f;
        const float* __restrict d = dy + (((long)n * OH + oh) * OW + ow) * C;
        for (int kh = 0; kh < KH; kh++)
          for (int kw = 0; kw < KW; kw++) {
            const long at = ((long)(oh * KH + kh) * W + ow * KW + kw) * C;
            const float* __restrict in = xs + at;
            float* __restrict o = dxs + at;
            int c = 0;
#ifdef __SSE2__
            for (; c + 4 <= C; c += 4) {
              __m128 t = _mm_loadu_ps(tk + c);
              __m128 hit = _mm_andnot_ps(t, _mm_cmpeq_ps(_mm_loadu_ps(in + c), _mm_loadu_ps(bp + c)));
              _mm_storeu_ps(o + c, _mm_and_ps(hit, _mm_loadu_ps(d + c)));
              _mm_storeu_ps(tk + c, _mm_or_ps(t, hit));
            }
#endif
            for (; c < C; c++) {
              const bool hit = in[c] == bp[c] && tk[c] == 0.f;
              o[c] = hit ? d[c] : 0.f;
              if (hit) tk[c] = -1.f;  // any nonzero bits mark "taken"
            }
          }
      }
      // columns right of the last window, in this row band
      for (int kh = 0; kh < KH; kh++) {
        float* o = dxs + ((long)(oh * KH + kh) * W + OW * KW) * C;
        for (long i = 0; i < (long)(W - OW * KW) * C; i++) o[i] = 0.f;
      }
      // rows below the last window band
      if (oh == OH - 1) {
        float* o = dxs + (long)OH * KH * W * C;
        for (long i = 0; i < (long)(g.H - OH * KH) * W * C; i++) o[i] = 0.f;
      }
    }
  });
}

void maxpool_grad(const ConvGeom& g, const float* x, const float* dy, float* dx) {
  if (g.sh == g.KH && g.sw == g.KW && g.pt == 0 && g.pl == 0 && g.dh == 1 && g.dw == 1 && g.OH > 0 && g.OW > 0 &&
      g.OH * g.KH <= g.H && g.OW * g.KW <= g.W) {
    maxpool_grad_tiled(g, x, dy, dx);
    return;
  }
  const long img = (long)g.H * g.W * g.C;
  parallel_for(g.N, 1, [&](long b0, long b1) {
    std::vector<float> best(g.C);
    std::vector<int32_t> pos(g.C);
    for (long n = b0; n < b1; n++) {
      const float* xs = x + n * img;
      float* dxs = dx + n * img;
      for (long i = 0; i < img; i++) dxs[i] = 0.f;
      for (int oh = 0; oh < g.OH; oh++)
        for (int ow = 0; ow < g.OW; ow++) {
          bool first = true;
          for (int kh = 0; kh < g.KH; kh++) {
            int ih = oh * g.sh - g.pt + kh * g.dh;
            if (ih < 0 || ih >= g.H) continue;
            for (int kw = 0; kw < g.KW; kw++) {
              int iw = ow * g.sw - g.pl + kw * g.dw;
              if (iw < 0 || iw >= g.W) continue;
              const int32_t base = (int32_t)(((long)ih * g.W + iw) * g.C);
              const float* in = xs + base;
              float* bp = best.data();
              int32_t* pp = pos.data();
              if (first) {
                for (int c = 0; c < g.C; c++) { bp[c] = in[c]; pp[c] = base + c; }
                first = false;
              } else {
                // strictly greater: ties keep the first position in row-major window order (as tfjs does)
                for (int c = 0; c < g.C; c++) {
                  bool m = in[c] > bp[c];
                  bp[c] = m ? in[c] : bp[c];
                  pp[c] = m ? base + c : pp[c];
                }
              }
            }
          }
          if (first) continue;
          const float* d = dy + (((long)n * g.OH + oh) * g.OW + ow) * g.C;
          for (int c = 0; c < g.C; c++) dxs[pos[c]] += d[c];
        }
    }
  });
}

// transpose_cols of x's rows [i0, rows) without SIMD, in 16x16 blocks (both sides of a block stay in L1).
static void transpose_cols_generic(const float* x, long ld, int rows, int i0, int c0, int c1, float* xT) {
  for (int a = i0; a < rows; a += 16)
    for (int b = c0; b < c1; b += 16) {
      const int a1 = std::min(rows, a + 16), b1 = std::min(c1, b + 16);
      for (int c = b; c < b1; c++)
        for (int i = a; i < a1; i++) xT[(size_t)c * rows + i] = x[(size_t)i * ld + c];
    }
}

#ifdef __x86_64__
// 16 rows x 16 columns per block in registers: rows paired by unpack (2x2 blocks), shuffle (4x4 within each 128-bit
// lane), then two rounds of 128-bit lane shuffles across the 4 groups of 4 rows; the edges go element by element.
__attribute__((target("avx512f"))) static void transpose_cols_avx512(const float* x, long ld, int rows, int c0, int c1, float* xT) {
  int i = 0;
  for (; i + 16 <= rows; i += 16) {
    int c = c0;
    for (; c + 16 <= c1; c += 16) {
      __m512 r[16], t[16];
      for (int q = 0; q < 16; q++) r[q] = _mm512_loadu_ps(x + (size_t)(i + q) * ld + c);
      for (int q = 0; q < 16; q += 2) {
        t[q] = _mm512_unpacklo_ps(r[q], r[q + 1]);
        t[q + 1] = _mm512_unpackhi_ps(r[q], r[q + 1]);
      }
      for (int q = 0; q < 16; q += 4) {  // r[q + j], lane L: column 4L + j of rows q..q+3
        r[q] = _mm512_shuffle_ps(t[q], t[q + 2], 0x44);
        r[q + 1] = _mm512_shuffle_ps(t[q], t[q + 2], 0xEE);
        r[q + 2] = _mm512_shuffle_ps(t[q + 1], t[q + 3], 0x44);
        r[q + 3] = _mm512_shuffle_ps(t[q + 1], t[q + 3], 0xEE);
      }
      for (int j = 0; j < 4; j++) {  // lanes 0, 2 (0x88) and 1, 3 (0xDD) of rows 0-3 with 4-7, 8-11 with 12-15
        t[j] = _mm512_shuffle_f32x4(r[j], r[4 + j], 0x88);
        t[4 + j] = _mm512_shuffle_f32x4(r[j], r[4 + j], 0xDD);
        t[8 + j] = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0x88);
        t[12 + j] = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0xDD);
      }
      for (int j = 0; j < 4; j++) {  // r[4L + j]: column 4L + j of all 16 rows
        r[j] = _mm512_shuffle_f32x4(t[j], t[8 + j], 0x88);
        r[8 + j] = _mm512_shuffle_f32x4(t[j], t[8 + j], 0xDD);
        r[4 + j] = _mm512_shuffle_f32x4(t[4 + j], t[12 + j], 0x88);
        r[12 + j] = _mm512_shuffle_f32x4(t[4 + j], t[12 + j], 0xDD);
      }
      for (int q = 0; q < 16; q++) _mm512_storeu_ps(xT + (size_t)(c + q) * rows + i, r[q]);
    }
    for (; c < c1; c++)
      for (int q = 0; q < 16; q++) xT[(size_t)c * rows + i + q] = x[(size_t)(i + q) * ld + c];
  }
  transpose_cols_generic(x, ld, rows, i, c0, c1, xT);  // the last rows < 16
}
#endif

void transpose_cols(const float* x, long ld, int rows, int c0, int c1, float* xT) {
#ifdef __x86_64__
  if (detect_isa() == ISA_AVX512) return transpose_cols_avx512(x, ld, rows, c0, c1, xT);
#endif
  transpose_cols_generic(x, ld, rows, 0, c0, c1, xT);
}

// out[j] = sum_i x[i*cols + j] (reduction over leading axes), rows split across threads with private partial sums.
void sum_rows(const float* x, long rows, long cols, float* out) {
  int nt = (int)std::min<long>(2L * pool().size(), std::max<long>(1, rows * cols / 65536));
  if (nt <= 1 || rows < 2 * nt) {
    for (long j = 0; j < cols; j++) out[j] = 0.f;
    for (long i = 0; i < rows; i++) {
      const float* r = x + i * cols;
      for (long j = 0; j < cols; j++) out[j] += r[j];
    }
    return;
  }
  std::vector<float> part((size_t)nt * cols, 0.f);
  pool().run(nt, [&](int t) {
    long r0 = rows * t / nt, r1 = rows * (t + 1) / nt;
    float* acc = part.data() + (size_t)t * cols;
    for (long i = r0; i < r1; i++) {
      const float* r = x + i * cols;
      for (long j = 0; j < cols; j++) acc[j] += r[j];
    }
  });
  for (long j = 0; j < cols; j++) {
    float s = 0.f;
    for (int t = 0; t < nt; t++) s += part[(size_t)t * cols + j];
    out[j] = s;
  }
}

// g = dy where y > 0 else 0 (ReLU's gradient through its output), db[j] = sum over rows of g[:, j]: one pass over
// dy and y instead of Step + Multiply + Sum (three passes over ~11 MB for a first conv layer). Partial sums in a
// fixed chunk layout (independent of the thread count), added in chunk order.
void relu_grad_bias(const float* __restrict y, const float* __restrict dy, float* __restrict g, float* db, long rows, int cols) {
  const int nc = (int)std::max<long>(1, std::min<long>(16, rows * cols / 65536));
  std::vector<float> part((size_t)nc * cols, 0.f);
  pool().run(nc, [&](int c) {
    const long r0 = rows * c / nc, r1 = rows * (c + 1) / nc;
    float* __restrict acc = part.data() + (size_t)c * cols;
    const float* __restrict yl = y;  // locals: through the lambda's captures gcc cannot rule out aliasing
    const float* __restrict dl = dy;
    float* __restrict gl = g;
    // blocks of 64 rows: a flat masking loop (vectorized, branch-free) and then column sums while g is in L1/L2
    for (long r = r0; r < r1; r += 64) {
      const long re = std::min(r1, r + 64);
      for (long i = r * cols; i < re * cols; i++) {
        const float d = dl[i];  // loaded unconditionally, so gcc can turn the select into a vector blend
        gl[i] = yl[i] > 0.f ? d : 0.f;
      }
      for (long q = r; q < re; q++) {
        const float* __restrict gr = gl + q * cols;
        for (int j = 0; j < cols; j++) acc[j] += gr[j];
      }
    }
  });
  if (!db) return;
  for (int j = 0; j < cols; j++) {
    float s = 0.f;
    for (int c = 0; c < nc; c++) s += part[(size_t)c * cols + j];
    db[j] = s;
  }
}

void elementwise(int op, const float* a, const float* b, float* y, long n, long m, float alpha) {
  if (m <= 0) m = n;
  // chunks are whole periods of b (m elements) so the inner loop never takes a modulo
  long periods = n / m;
  auto body = [&](long p0, long p1) {
    for (long p = p0; p < p1; p++) {
      const float* ap = a + p * m;
      float* yp = y + p * m;
      const float* bp = b;  // broadcast: the same m values for every period
      switch (op) {
        case EW_RELU:
          for (long i = 0; i < m; i++) yp[i] = ap[i] > 0.f ? ap[i] : (ap[i] != ap[i] ? ap[i] : 0.f);
          break;
        case EW_ADD:
          for (long i = 0; i < m; i++) yp[i] = ap[i] + bp[i];
          break;
        case EW_MUL:
          for (long i = 0; i < m; i++) yp[i] = ap[i] * bp[i];
          break;
        case EW_STEP:
          for (long i = 0; i < m; i++) yp[i] = ap[i] != ap[i] ? ap[i] : (ap[i] > 0.f ? 1.f : alpha);
          break;
      }
    }
  };
  if (m == n) {
    // one period: split the range itself
    parallel_for(n, 1 << 15, [&](long i0, long i1) {
#ifdef __SSE2__
      // explicit SIMD for the selects (NaN passes through like tfjs): relu = max(0, x), step = x > 0 ? 1 : alpha
      if (op == EW_RELU || op == EW_STEP) {
        const __m128 zero = _mm_setzero_ps(), one = _mm_set1_ps(1.f), al = _mm_set1_ps(alpha);
        long i = i0;
        for (; i + 4 <= i1; i += 4) {
          __m128 x = _mm_loadu_ps(a + i), r;
          if (op == EW_RELU) {
            r = _mm_max_ps(zero, x);  // returns x when x is NaN
          } else {
            __m128 gt = _mm_cmpgt_ps(x, zero), nan = _mm_cmpunord_ps(x, x);
            r = _mm_or_ps(_mm_and_ps(gt, one), _mm_andnot_ps(gt, al));
            r = _mm_or_ps(_mm_and_ps(nan, x), _mm_andnot_ps(nan, r));
          }
          _mm_storeu_ps(y + i, r);
        }
        for (; i < i1; i++)
          y[i] = a[i] != a[i] ? a[i] : op == EW_RELU ? (a[i] > 0.f ? a[i] : 0.f) : (a[i] > 0.f ? 1.f : alpha);
        return;
      }
#endif
      switch (op) {
        case EW_RELU:
          for (long i = i0; i < i1; i++) y[i] = a[i] > 0.f ? a[i] : (a[i] != a[i] ? a[i] : 0.f);
          break;
        case EW_ADD:
          for (long i = i0; i < i1; i++) y[i] = a[i] + b[i];
          break;
        case EW_MUL:
          for (long i = i0; i < i1; i++) y[i] = a[i] * b[i];
          break;
        case EW_STEP:
          for (long i = i0; i < i1; i++) y[i] = a[i] != a[i] ? a[i] : (a[i] > 0.f ? 1.f : alpha);
          break;
      }
    });
    return;
  }
  parallel_for(periods, std::max<long>(1, (1 << 15) / m), body);
}

// The Adam loop, compiled for AVX-512, AVX2 and baseline x86-64 (chosen at load time by the ifunc resolver).
__attribute__((target_clones("avx512f", "avx2", "default"))) static void adam_range(
    long i0, long i1, float* __restrict p, float* __restrict m, float* __restrict v, float* __restrict g, float lr,
    float beta1, float beta2, float eps, float oma1, float oma2, float c1, float c2, bool clear) {
  // The moments exactly as tfjs computes them; the step (m/oma1)/(sqrt(v/oma2) + eps) * -lr with the two bias
  // corrections and the learning rate as multiplications by constants: one division per parameter instead of three
  // (each constant rounds once, so the step differs from tfjs's by a few ulps).
  const float k1 = -lr / oma1, k2 = 1.f / oma2;
  for (long i = i0; i < i1; i++) {
    float gi = g[i];
    float mi = m[i] * beta1 + gi * c1;
    float vi = v[i] * beta2 + (gi * gi) * c2;
    m[i] = mi;
    v[i] = vi;
    p[i] += (mi * k1) / (std::sqrt(vi * k2) + eps);
    if (clear) g[i] = 0.f;  // loop-invariant: GCC compiles the two loops apart (-funswitch-loops at -O3)
  }
}

// Subnormal inputs and results read and written as zero (x86's FTZ and DAZ) on this thread while in scope. In Adam
// they are the squares of gradients below ~1e-19 (a softmax that saturates) and moments of parameters whose gradient
// stopped, decaying through the subnormal range: each costs a microcode assist of ~100 cycles, which made Adam half
// of a long mlp run's time here. Flushed, such a parameter's step changes by less than 1e-28.
struct FlushSubnormals {
#ifdef __SSE2__
  unsigned saved = _mm_getcsr();
  FlushSubnormals() { _mm_setcsr(saved | 0x8040); }
  ~FlushSubnormals() { _mm_setcsr(saved); }
#endif
};

void adam_update_serial(long n, float* p, float* m, float* v, const float* g, float lr, float beta1, float beta2, float eps,
                        float oma1, float oma2, float c1, float c2) {
  FlushSubnormals flush;
  adam_range(0, n, p, m, v, const_cast<float*>(g), lr, beta1, beta2, eps, oma1, oma2, c1, c2, false);
}

void adam_update_serial_clear(long n, float* p, float* m, float* v, float* g, float lr, float beta1, float beta2, float eps,
                              float oma1, float oma2, float c1, float c2) {
  FlushSubnormals flush;
  adam_range(0, n, p, m, v, g, lr, beta1, beta2, eps, oma1, oma2, c1, c2, true);
}

void adam_update(long n, float* p, float* m, float* v, const float* g, float lr, float beta1, float beta2, float eps,
                 float oma1, float oma2, float c1, float c2) {
  parallel_for(n, 1 << 15, [&](long i0, long i1) {
    FlushSubnormals flush;
    adam_range(i0, i1, p, m, v, const_cast<float*>(g), lr, beta1, beta2, eps, oma1, oma2, c1, c2, false);
  });
}

}  // namespace sf

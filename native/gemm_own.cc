// Blocked GEMM (BLIS-style loops, packed A/B panels) with micro-kernels per ISA and data type.
// Each thread computes a contiguous slice of C's rows or columns with its own packing buffers.
#include "gemm_own.h"

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <vector>

#include "threadpool.h"

namespace sf {

// The cap set by configure_isa (SLIMFIT_ISA: tests exercise every path on one machine), and the ISA in use once chosen.
static int g_isa_cap = ISA_AVX512;
static std::atomic<int> g_isa{-1};

Isa detect_isa() {
  int v = g_isa;
  if (v < 0) {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) v = ISA_AVX512;
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) v = ISA_AVX2;
    else v = ISA_GENERIC;
    v = std::min(v, g_isa_cap);
    int unset = -1;
    g_isa.compare_exchange_strong(unset, v);
    v = g_isa;
  }
  return (Isa)v;
}

bool configure_isa(Isa cap) {
  if (g_isa >= 0) return g_isa_cap == cap;
  g_isa_cap = cap;
  return true;
}
const char* isa_name(Isa isa) { return isa == ISA_AVX512 ? "avx512" : isa == ISA_AVX2 ? "avx2" : "generic"; }
bool cpu_has_avx512bf16() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512bf16");
}
bool cpu_has_avx512vnni() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512vnni");
}

namespace {

// ---- micro-kernels: tile[MR*NR] = sum over ku k-units of packed A (MR per unit) x packed B (NR per unit) ----

template <int MR, int NR, class T>
void mk_generic(int ku, const T* a, const T* b, T* tile) {
  T acc[MR][NR] = {};
  for (int u = 0; u < ku; u++, a += MR, b += NR)
    for (int r = 0; r < MR; r++)
      for (int c = 0; c < NR; c++) acc[r][c] += a[r] * b[c];
  for (int r = 0; r < MR; r++)
    for (int c = 0; c < NR; c++) tile[r * NR + c] = acc[r][c];
}

__attribute__((target("avx2,fma"))) void mk_f32_avx2(int ku, const float* a, const float* b, float* tile) {
  constexpr int MR = 6;
  __m256 acc[MR][2];
  for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
  for (int u = 0; u < ku; u++, a += MR, b += 16) {
    __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
    for (int r = 0; r < MR; r++) {
      __m256 av = _mm256_broadcast_ss(a + r);
      acc[r][0] = _mm256_fmadd_ps(av, b0, acc[r][0]);
      acc[r][1] = _mm256_fmadd_ps(av, b1, acc[r][1]);
    }
  }
  for (int r = 0; r < MR; r++) {
    _mm256_storeu_ps(tile + r * 16, acc[r][0]);
    _mm256_storeu_ps(tile + r * 16 + 8, acc[r][1]);
  }
}

__attribute__((target("avx512f"))) void mk_f32_avx512(int ku, const float* a, const float* b, float* tile) {
  constexpr int MR = 12;
  __m512 acc[MR][2];
  for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  for (int u = 0; u < ku; u++, a += MR, b += 32) {
    __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);
    for (int r = 0; r < MR; r++) {
      __m512 av = _mm512_set1_ps(a[r]);
      acc[r][0] = _mm512_fmadd_ps(av, b0, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(av, b1, acc[r][1]);
    }
  }
  for (int r = 0; r < MR; r++) {
    _mm512_storeu_ps(tile + r * 32, acc[r][0]);
    _mm512_storeu_ps(tile + r * 32 + 16, acc[r][1]);
  }
}

__attribute__((target("avx2,fma"))) void mk_f64_avx2(int ku, const double* a, const double* b, double* tile) {
  constexpr int MR = 6;
  __m256d acc[MR][2];
  for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = _mm256_setzero_pd();
  for (int u = 0; u < ku; u++, a += MR, b += 8) {
    __m256d b0 = _mm256_loadu_pd(b), b1 = _mm256_loadu_pd(b + 4);
    for (int r = 0; r < MR; r++) {
      __m256d av = _mm256_broadcast_sd(a + r);
      acc[r][0] = _mm256_fmadd_pd(av, b0, acc[r][0]);
      acc[r][1] = _mm256_fmadd_pd(av, b1, acc[r][1]);
    }
  }
  for (int r = 0; r < MR; r++) {
    _mm256_storeu_pd(tile + r * 8, acc[r][0]);
    _mm256_storeu_pd(tile + r * 8 + 4, acc[r][1]);
  }
}

__attribute__((target("avx512f"))) void mk_f64_avx512(int ku, const double* a, const double* b, double* tile) {
  constexpr int MR = 12;
  __m512d acc[MR][2];
  for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = _mm512_setzero_pd();
  for (int u = 0; u < ku; u++, a += MR, b += 16) {
    __m512d b0 = _mm512_loadu_pd(b), b1 = _mm512_loadu_pd(b + 8);
    for (int r = 0; r < MR; r++) {
      __m512d av = _mm512_set1_pd(a[r]);
      acc[r][0] = _mm512_fmadd_pd(av, b0, acc[r][0]);
      acc[r][1] = _mm512_fmadd_pd(av, b1, acc[r][1]);
    }
  }
  for (int r = 0; r < MR; r++) {
    _mm512_storeu_pd(tile + r * 16, acc[r][0]);
    _mm512_storeu_pd(tile + r * 16 + 8, acc[r][1]);
  }
}

// bf16: one k-unit = 2 consecutive k; A unit per row = one uint32 (2 bf16), B unit = 32 columns x 2 bf16.
__attribute__((target("avx512f,avx512bf16"))) void mk_bf16_avx512(int ku, const uint32_t* a, const uint32_t* b,
                                                                   float* tile) {
  constexpr int MR = 12;
  __m512 acc[MR][2];
  for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  for (int u = 0; u < ku; u++, a += MR, b += 32) {
    __m512bh b0 = (__m512bh)_mm512_loadu_si512(b), b1 = (__m512bh)_mm512_loadu_si512(b + 16);
    for (int r = 0; r < MR; r++) {
      __m512bh av = (__m512bh)_mm512_set1_epi32((int)a[r]);
      acc[r][0] = _mm512_dpbf16_ps(acc[r][0], av, b0);
      acc[r][1] = _mm512_dpbf16_ps(acc[r][1], av, b1);
    }
  }
  for (int r = 0; r < MR; r++) {
    _mm512_storeu_ps(tile + r * 32, acc[r][0]);
    _mm512_storeu_ps(tile + r * 32 + 16, acc[r][1]);
  }
}

// int8: one k-unit = 4 consecutive k; A unit per row = 4 uint8, B unit = 32 columns x 4 int8 (vpdpbusd).
__attribute__((target("avx512f,avx512vnni"))) void mk_u8s8_avx512(int ku, const uint32_t* a, const uint32_t* b,
                                                                   int32_t* tile) {
  constexpr int MR = 8;  // 16 accumulators: GCC 12 spills the 24 of a 12-row vpdpbusd tile
  __m512i acc[MR][2];
  for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = _mm512_setzero_si512();
  for (int u = 0; u < ku; u++, a += MR, b += 32) {
    __m512i b0 = _mm512_loadu_si512(b), b1 = _mm512_loadu_si512(b + 16);
    for (int r = 0; r < MR; r++) {
      __m512i av = _mm512_set1_epi32((int)a[r]);
      acc[r][0] = _mm512_dpbusd_epi32(acc[r][0], av, b0);
      acc[r][1] = _mm512_dpbusd_epi32(acc[r][1], av, b1);
    }
  }
  for (int r = 0; r < MR; r++) {
    _mm512_storeu_si512(tile + r * 32, acc[r][0]);
    _mm512_storeu_si512(tile + r * 32 + 16, acc[r][1]);
  }
}

// ---- the blocked driver ----
// In: element type of A/B in memory; P: packed unit type; KU: k elements per packed unit; Acc: accumulator/C type.
template <class In, class P, int KU, class Acc>
struct Spec {
  int MR, NR;
  void (*mk)(int, const P*, const P*, Acc*);
};

template <class In, class P, int KU, class Acc>
void gemm_slice(const Spec<In, P, KU, Acc>& sp, int M, int N, int K, Acc alpha, const In* A, long rsa, long csa,
                const In* B, long rsb, long csb, Acc beta, Acc* C, long ldc) {
  const int MR = sp.MR, NR = sp.NR;
  // k blocks of at most 384 units, balanced (K = 288 is one block, not 256 + 32)
  const int KU_total = (K + KU - 1) / KU;
  const int nkb = std::max(1, (KU_total + 383) / 384);
  const int KCU = (KU_total + nkb - 1) / nkb;
  const int MC = MR * std::max(1, 120 / MR);
  const int NC = NR * 64;
  const int KC = KCU * KU;
  // per-thread packing buffers, reused across calls
  thread_local std::vector<P> ap, bp;
  if (ap.size() < (size_t)MC * KCU + 64) ap.resize((size_t)MC * KCU + 64);
  if (bp.size() < (size_t)NC * KCU + 64) bp.resize((size_t)NC * KCU + 64);
  alignas(64) Acc tile[32 * 32];
  for (int jc = 0; jc < N; jc += NC) {
    int nc = std::min(NC, N - jc);
    for (int pc = 0; pc < K; pc += KC) {
      int kc = std::min(KC, K - pc), ku = (kc + KU - 1) / KU;
      // pack B[pc:pc+kc, jc:jc+nc] as panels [jr][u][NR][KU] (viewed as In elements; zero padding)
      for (int jr = 0; jr < nc; jr += NR) {
        In* dst = reinterpret_cast<In*>(bp.data() + (size_t)(jr / NR) * ku * NR);
        int nn = std::min(NR, nc - jr);
        for (int u = 0; u < ku; u++)
          for (int t = 0; t < KU; t++) {
            int k = pc + u * KU + t;
            In* d = dst + (size_t)u * NR * KU + t;
            if (k < pc + kc) {
              const In* src = B + (long)k * rsb + (long)(jc + jr) * csb;
              int c = 0;
              if (KU == 1 && csb == 1) {  // row-major B: the panel row is a contiguous copy
                std::memcpy(d, src, sizeof(In) * nn);
                c = nn;
              }
              for (; c < nn; c++) d[c * KU] = src[(long)c * csb];
              for (; c < NR; c++) d[c * KU] = In(0);
            } else {
              for (int c = 0; c < NR; c++) d[c * KU] = In(0);
            }
          }
      }
      const bool first = pc == 0;
      for (int ic = 0; ic < M; ic += MC) {
        int mc = std::min(MC, M - ic);
        // pack A[ic:ic+mc, pc:pc+kc] as panels [ir][u][MR][KU]
        for (int ir = 0; ir < mc; ir += MR) {
          In* dst = reinterpret_cast<In*>(ap.data() + (size_t)(ir / MR) * ku * MR);
          if (KU == 1 && rsa == 1 && ic + ir + MR <= M) {  // transposed A: the MR rows are contiguous for each k
            const In* src = A + (long)(ic + ir) + (long)pc * csa;
            for (int k = 0; k < kc; k++) std::memcpy(dst + (size_t)k * MR, src + (long)k * csa, sizeof(In) * MR);
            continue;
          }
          for (int r = 0; r < MR; r++) {
            int i = ic + ir + r;
            if (i < M) {
              const In* src = A + (long)i * rsa + (long)pc * csa;
              int k = 0;
              if (csa == 1)  // contiguous row: whole k-units at once
                for (; k + KU <= kc; k += KU) std::memcpy(dst + ((size_t)(k / KU) * MR + r) * KU, src + k, sizeof(In) * KU);
              for (; k < ku * KU; k++) dst[((size_t)(k / KU) * MR + r) * KU + (k % KU)] = k < kc ? src[(long)k * csa] : In(0);
            } else {
              for (int k = 0; k < ku * KU; k++) dst[((size_t)(k / KU) * MR + r) * KU + (k % KU)] = In(0);
            }
          }
        }
        for (int jr = 0; jr < nc; jr += NR) {
          const P* bpan = bp.data() + (size_t)(jr / NR) * ku * NR;
          int nn = std::min(NR, nc - jr);
          for (int ir = 0; ir < mc; ir += MR) {
            sp.mk(ku, ap.data() + (size_t)(ir / MR) * ku * MR, bpan, tile);
            int mm = std::min(MR, mc - ir);
            for (int r = 0; r < mm; r++) {
              Acc* crow = C + (long)(ic + ir + r) * ldc + jc + jr;
              const Acc* t = tile + r * NR;
              if (first) {
                if (beta == Acc(0))
                  for (int c = 0; c < nn; c++) crow[c] = alpha * t[c];
                else
                  for (int c = 0; c < nn; c++) crow[c] = alpha * t[c] + beta * crow[c];
              } else {
                for (int c = 0; c < nn; c++) crow[c] += alpha * t[c];
              }
            }
          }
        }
      }
    }
  }
  if (K == 0)
    for (int i = 0; i < M; i++)
      for (int j = 0; j < N; j++) C[(long)i * ldc + j] = beta == Acc(0) ? Acc(0) : beta * C[(long)i * ldc + j];
}

// Split C into nthreads slices along its larger dimension (aligned to the tile size) and run gemm_slice on each.
template <class In, class P, int KU, class Acc>
void gemm_parallel(const Spec<In, P, KU, Acc>& sp, int M, int N, int K, Acc alpha, const In* A, long rsa, long csa,
                   const In* B, long rsb, long csb, Acc beta, Acc* C, long ldc, int nthreads) {
  double work = (double)M * N * K;
  int nt = work < 2e5 ? 1 : std::max(1, nthreads);
  bool split_n = (N / sp.NR) >= (M / sp.MR);
  int units = split_n ? (N + sp.NR - 1) / sp.NR : (M + sp.MR - 1) / sp.MR;
  nt = std::min(nt, std::max(1, units));
  if (nt == 1) {
    gemm_slice(sp, M, N, K, alpha, A, rsa, csa, B, rsb, csb, beta, C, ldc);
    return;
  }
  // chunks are claimed dynamically; two per thread only when each is big enough to hide re-packing the shared operand
  int nc = std::min(units, work / nt > 4e7 ? 2 * nt : nt);
  pool().run(nc, [&](int t) {
    int u0 = units * t / nc, u1 = units * (t + 1) / nc;
    if (split_n) {
      int j0 = u0 * sp.NR, j1 = std::min(N, u1 * sp.NR);
      if (j0 < j1) gemm_slice(sp, M, j1 - j0, K, alpha, A, rsa, csa, B + (long)j0 * csb, rsb, csb, beta, C + j0, ldc);
    } else {
      int i0 = u0 * sp.MR, i1 = std::min(M, u1 * sp.MR);
      if (i0 < i1) gemm_slice(sp, i1 - i0, N, K, alpha, A + (long)i0 * rsa, rsa, csa, B, rsb, csb, beta, C + (long)i0 * ldc, ldc);
    }
  });
}

}  // namespace

void sgemm_own(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb,
               float beta, float* C, int ldc, int nthreads) {
  Spec<float, float, 1, float> sp;
  switch (detect_isa()) {
    case ISA_AVX512: sp = {12, 32, mk_f32_avx512}; break;
    case ISA_AVX2: sp = {6, 16, mk_f32_avx2}; break;
    default: sp = {4, 16, mk_generic<4, 16, float>}; break;
  }
  gemm_parallel(sp, M, N, K, alpha, A, ta ? 1 : lda, ta ? lda : 1, B, tb ? 1 : ldb, tb ? ldb : 1, beta, C, ldc, nthreads);
}

void dgemm_own(bool ta, bool tb, int M, int N, int K, double alpha, const double* A, int lda, const double* B, int ldb,
               double beta, double* C, int ldc, int nthreads) {
  Spec<double, double, 1, double> sp;
  switch (detect_isa()) {
    case ISA_AVX512: sp = {12, 16, mk_f64_avx512}; break;
    case ISA_AVX2: sp = {6, 8, mk_f64_avx2}; break;
    default: sp = {4, 8, mk_generic<4, 8, double>}; break;
  }
  gemm_parallel(sp, M, N, K, alpha, A, ta ? 1 : lda, ta ? lda : 1, B, tb ? 1 : ldb, tb ? ldb : 1, beta, C, ldc, nthreads);
}

bool bf16gemm_own(int M, int N, int K, const uint16_t* A, int lda, const uint16_t* B, int ldb, float* C, int ldc,
                  int nthreads) {
  if (!cpu_has_avx512bf16()) return false;
  Spec<uint16_t, uint32_t, 2, float> sp{12, 32, mk_bf16_avx512};
  gemm_parallel(sp, M, N, K, 1.0f, A, lda, 1, B, ldb, 1, 0.0f, C, ldc, nthreads);
  return true;
}

bool u8s8gemm_own(int M, int N, int K, const uint8_t* A, int lda, const int8_t* B, int ldb, int32_t* C, int ldc,
                  int nthreads) {
  if (!cpu_has_avx512vnni()) return false;
  Spec<uint8_t, uint32_t, 4, int32_t> sp{8, 32, mk_u8s8_avx512};
  gemm_parallel(sp, M, N, K, 1, A, lda, 1, reinterpret_cast<const uint8_t*>(B), ldb, 1, 0, C, ldc, nthreads);
  return true;
}

}  // namespace sf

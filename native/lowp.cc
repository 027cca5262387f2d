// Low-precision storage kernels for the precision lab's speed section (single-threaded, one instruction path each):
// a GEMM whose B is stored as fp16 and converted to fp32 while packing (vcvtph2ps), beside the same kernel on fp32 B,
// and bandwidth-bound GEMVs y = W x (W: N x K, row-major) with W stored as fp32, bf16 (widened by a 16-bit shift),
// fp16 (vcvtph2ps) or int8 (vpdpbusd with uint8 activations); and a GEMM in fp16 arithmetic (AVX512_FP16) where the
// CPU and compiler have it. Registered into the engine addon by RegisterLowp.
#include <node_api.h>
#include <cpuid.h>
#include <immintrin.h>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace {

struct Cpu {
  bool avx2, fma, f16c, avx512f, avx512bw, vnni, fp16;
};

bool has_fp16() {
  // CPUID leaf 7, EDX bit 23 = AVX512_FP16 (used only together with AVX-512F, whose detection covers the OS's ZMM state)
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid_max(0, nullptr) < 7) return false;
  __cpuid_count(7, 0, a, b, c, d);
  return (d >> 23) & 1;
}

Cpu cpu() {
  static Cpu c = [] {
    __builtin_cpu_init();
    return Cpu{(bool)__builtin_cpu_supports("avx2"), (bool)__builtin_cpu_supports("fma"), (bool)__builtin_cpu_supports("f16c"),
               (bool)__builtin_cpu_supports("avx512f"), (bool)__builtin_cpu_supports("avx512bw"),
               (bool)__builtin_cpu_supports("avx512vnni"), has_fp16()};
  }();
  return c;
}

// ---- GEMM: C[M x N] = A[M x K] (fp32) * B[K x N] (fp32 or fp16), B packed per K-block into 32-column fp32 strips ----

constexpr int KC = 256, NC = 512, MR = 4, NR = 32;

template <bool F16>
__attribute__((target("avx512f,f16c"))) void pack_avx512(const void* B, int N, int k0, int kc, int j0, int nc, float* P) {
  for (int s = 0; s < nc; s += NR) {
    int w = nc - s < NR ? nc - s : NR;
    float* dst = P + (size_t)(s / NR) * kc * NR;
    for (int k = 0; k < kc; k++) {
      size_t off = (size_t)(k0 + k) * N + j0 + s;
      float* d = dst + (size_t)k * NR;
      if (w == NR) {
        if (F16) {
          const uint16_t* b = (const uint16_t*)B + off;
          _mm512_storeu_ps(d, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)b)));
          _mm512_storeu_ps(d + 16, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)(b + 16))));
        } else {
          const float* b = (const float*)B + off;
          _mm512_storeu_ps(d, _mm512_loadu_ps(b));
          _mm512_storeu_ps(d + 16, _mm512_loadu_ps(b + 16));
        }
      } else {
        for (int j = 0; j < NR; j++) d[j] = j < w ? (F16 ? _cvtsh_ss(((const uint16_t*)B)[off + j]) : ((const float*)B)[off + j]) : 0.f;
      }
    }
  }
}

template <int R>
__attribute__((target("avx512f"))) void micro_avx512(int kc, const float* A, int lda, const float* P, float* C, int ldc, int w, bool first) {
  __m512 acc[R][2];
  for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  for (int k = 0; k < kc; k++) {
    __m512 b0 = _mm512_loadu_ps(P + (size_t)k * NR), b1 = _mm512_loadu_ps(P + (size_t)k * NR + 16);
    for (int r = 0; r < R; r++) {
      __m512 a = _mm512_set1_ps(A[(size_t)r * lda + k]);
      acc[r][0] = _mm512_fmadd_ps(a, b0, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(a, b1, acc[r][1]);
    }
  }
  for (int r = 0; r < R; r++) {
    float* c = C + (size_t)r * ldc;
    if (w == NR) {
      if (!first) { acc[r][0] = _mm512_add_ps(acc[r][0], _mm512_loadu_ps(c)); acc[r][1] = _mm512_add_ps(acc[r][1], _mm512_loadu_ps(c + 16)); }
      _mm512_storeu_ps(c, acc[r][0]);
      _mm512_storeu_ps(c + 16, acc[r][1]);
    } else {
      alignas(64) float t[NR];
      _mm512_store_ps(t, acc[r][0]);
      _mm512_store_ps(t + 16, acc[r][1]);
      for (int j = 0; j < w; j++) c[j] = first ? t[j] : c[j] + t[j];
    }
  }
}

template <bool F16>
void gemm_avx512(int M, int N, int K, const float* A, const void* B, float* C) {
  std::vector<float> P((size_t)KC * (NC + NR));
  for (int j0 = 0; j0 < N; j0 += NC) {
    int nc = N - j0 < NC ? N - j0 : NC;
    for (int k0 = 0; k0 < K; k0 += KC) {
      int kc = K - k0 < KC ? K - k0 : KC;
      pack_avx512<F16>(B, N, k0, kc, j0, nc, P.data());
      for (int i = 0; i < M; i += MR) {
        int mr = M - i < MR ? M - i : MR;
        for (int s = 0; s < nc; s += NR) {
          int w = nc - s < NR ? nc - s : NR;
          const float* a = A + (size_t)i * K + k0;
          const float* p = P.data() + (size_t)(s / NR) * kc * NR;
          float* c = C + (size_t)i * N + j0 + s;
          switch (mr) {
            case 4: micro_avx512<4>(kc, a, K, p, c, N, w, k0 == 0); break;
            case 3: micro_avx512<3>(kc, a, K, p, c, N, w, k0 == 0); break;
            case 2: micro_avx512<2>(kc, a, K, p, c, N, w, k0 == 0); break;
            default: micro_avx512<1>(kc, a, K, p, c, N, w, k0 == 0); break;
          }
        }
      }
    }
  }
}

// ---- GEMM in fp16 arithmetic (AVX512_FP16 vfmadd231ph): A, B fp16, products and sums rounded to fp16 ----

#if (defined(__clang__) && __clang_major__ >= 14) || (!defined(__clang__) && defined(__GNUC__) && __GNUC__ >= 12)
#define SLIMFIT_HAVE_FP16_ISA 1
constexpr int NRH = 64;

template <int R>
__attribute__((target("avx512fp16,avx512f,avx512bw,avx512vl"))) void micro_fp16(int kc, const _Float16* A, int lda, const _Float16* P, float* C, int ldc, int w, bool first) {
  __m512h acc[R][2];
  for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ph();
  for (int k = 0; k < kc; k++) {
    __m512h b0 = _mm512_loadu_ph(P + (size_t)k * NRH), b1 = _mm512_loadu_ph(P + (size_t)k * NRH + 32);
    for (int r = 0; r < R; r++) {
      __m512h a = _mm512_set1_ph(A[(size_t)r * lda + k]);
      acc[r][0] = _mm512_fmadd_ph(a, b0, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ph(a, b1, acc[r][1]);
    }
  }
  for (int r = 0; r < R; r++) {
    alignas(64) _Float16 t[NRH];
    _mm512_store_ph(t, acc[r][0]);
    _mm512_store_ph(t + 32, acc[r][1]);
    float* c = C + (size_t)r * ldc;
    for (int j = 0; j < w; j++) c[j] = first ? (float)t[j] : c[j] + (float)t[j];
  }
}

void gemm_fp16(int M, int N, int K, const _Float16* A, const _Float16* B, float* C) {
  std::vector<_Float16> P((size_t)KC * (NC + NRH));
  for (int j0 = 0; j0 < N; j0 += NC) {
    int nc = N - j0 < NC ? N - j0 : NC;
    for (int k0 = 0; k0 < K; k0 += KC) {
      int kc = K - k0 < KC ? K - k0 : KC;
      for (int s = 0; s < nc; s += NRH) {
        int w = nc - s < NRH ? nc - s : NRH;
        _Float16* dst = P.data() + (size_t)(s / NRH) * kc * NRH;
        for (int k = 0; k < kc; k++) {
          const _Float16* src = B + (size_t)(k0 + k) * N + j0 + s;
          _Float16* d = dst + (size_t)k * NRH;
          if (w == NRH) std::memcpy(d, src, NRH * sizeof(_Float16));
          else for (int j = 0; j < NRH; j++) d[j] = j < w ? src[j] : (_Float16)0;
        }
      }
      for (int i = 0; i < M; i += MR) {
        int mr = M - i < MR ? M - i : MR;
        for (int s = 0; s < nc; s += NRH) {
          int w = nc - s < NRH ? nc - s : NRH;
          const _Float16* a = A + (size_t)i * K + k0;
          const _Float16* p = P.data() + (size_t)(s / NRH) * kc * NRH;
          float* c = C + (size_t)i * N + j0 + s;
          switch (mr) {
            case 4: micro_fp16<4>(kc, a, K, p, c, N, w, k0 == 0); break;
            case 3: micro_fp16<3>(kc, a, K, p, c, N, w, k0 == 0); break;
            case 2: micro_fp16<2>(kc, a, K, p, c, N, w, k0 == 0); break;
            default: micro_fp16<1>(kc, a, K, p, c, N, w, k0 == 0); break;
          }
        }
      }
    }
  }
}
#endif

// ---- GEMV: y[n] = sum_k W[n, k] x[k], four rows at a time sharing the x loads ----

__attribute__((target("avx512f"))) inline float hsum512(__m512 v) { return _mm512_reduce_add_ps(v); }

// Widen 16 stored weights to fp32: bf16 by a 16-bit left shift, fp16 by vcvtph2ps, fp32 as is.
template <int T>
__attribute__((target("avx512f,avx512bw,f16c"))) inline __m512 load16(const void* w, size_t off) {
  if (T == 0) return _mm512_loadu_ps((const float*)w + off);
  __m256i h = _mm256_loadu_si256((const __m256i*)((const uint16_t*)w + off));
  if (T == 1) return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  return _mm512_cvtph_ps(h);
}

template <int T>
__attribute__((target("f16c"))) inline float scalar_w(const void* w, size_t i) {
  if (T == 0) return ((const float*)w)[i];
  uint16_t h = ((const uint16_t*)w)[i];
  if (T == 1) { uint32_t u = (uint32_t)h << 16; float f; std::memcpy(&f, &u, 4); return f; }
  return _cvtsh_ss(h);
}

template <int T>
__attribute__((target("avx512f,avx512bw,f16c"))) void gemv_avx512(int N, int K, const void* W, const float* x, float* y) {
  int K16 = K & ~15;
  int n = 0;
  for (; n + 4 <= N; n += 4) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    size_t r0 = (size_t)n * K, r1 = r0 + K, r2 = r1 + K, r3 = r2 + K;
    for (int k = 0; k < K16; k += 16) {
      __m512 xv = _mm512_loadu_ps(x + k);
      a0 = _mm512_fmadd_ps(load16<T>(W, r0 + k), xv, a0);
      a1 = _mm512_fmadd_ps(load16<T>(W, r1 + k), xv, a1);
      a2 = _mm512_fmadd_ps(load16<T>(W, r2 + k), xv, a2);
      a3 = _mm512_fmadd_ps(load16<T>(W, r3 + k), xv, a3);
    }
    float s[4] = {hsum512(a0), hsum512(a1), hsum512(a2), hsum512(a3)};
    for (int k = K16; k < K; k++) for (int r = 0; r < 4; r++) s[r] += scalar_w<T>(W, (size_t)(n + r) * K + k) * x[k];
    for (int r = 0; r < 4; r++) y[n + r] = s[r];
  }
  for (; n < N; n++) {
    float s = 0;
    for (int k = 0; k < K; k++) s += scalar_w<T>(W, (size_t)n * K + k) * x[k];
    y[n] = s;
  }
}

template <int T>
__attribute__((target("avx2,fma,f16c"))) inline __m256 load8(const void* w, size_t off) {
  if (T == 0) return _mm256_loadu_ps((const float*)w + off);
  __m128i h = _mm_loadu_si128((const __m128i*)((const uint16_t*)w + off));
  if (T == 1) return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  return _mm256_cvtph_ps(h);
}

__attribute__((target("avx2"))) inline float hsum256(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}

template <int T>
__attribute__((target("avx2,fma,f16c"))) void gemv_avx2(int N, int K, const void* W, const float* x, float* y) {
  int K8 = K & ~7;
  int n = 0;
  for (; n + 4 <= N; n += 4) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    size_t r0 = (size_t)n * K, r1 = r0 + K, r2 = r1 + K, r3 = r2 + K;
    for (int k = 0; k < K8; k += 8) {
      __m256 xv = _mm256_loadu_ps(x + k);
      a0 = _mm256_fmadd_ps(load8<T>(W, r0 + k), xv, a0);
      a1 = _mm256_fmadd_ps(load8<T>(W, r1 + k), xv, a1);
      a2 = _mm256_fmadd_ps(load8<T>(W, r2 + k), xv, a2);
      a3 = _mm256_fmadd_ps(load8<T>(W, r3 + k), xv, a3);
    }
    float s[4] = {hsum256(a0), hsum256(a1), hsum256(a2), hsum256(a3)};
    for (int k = K8; k < K; k++) for (int r = 0; r < 4; r++) s[r] += scalar_w<T>(W, (size_t)(n + r) * K + k) * x[k];
    for (int r = 0; r < 4; r++) y[n + r] = s[r];
  }
  for (; n < N; n++) {
    float s = 0;
    for (int k = 0; k < K; k++) s += scalar_w<T>(W, (size_t)n * K + k) * x[k];
    y[n] = s;
  }
}

// int8 weights (N x K) times uint8 activations (K): y[n] = sum_k x[k] * W[n, k] in int32 (vpdpbusd).
__attribute__((target("avx512f,avx512bw,avx512vnni"))) void gemv_i8_vnni(int N, int K, const int8_t* W, const uint8_t* x, int32_t* y) {
  int K64 = K & ~63;
  int n = 0;
  for (; n + 4 <= N; n += 4) {
    __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
    const int8_t *w0 = W + (size_t)n * K, *w1 = w0 + K, *w2 = w1 + K, *w3 = w2 + K;
    for (int k = 0; k < K64; k += 64) {
      __m512i xv = _mm512_loadu_si512((const void*)(x + k));
      a0 = _mm512_dpbusd_epi32(a0, xv, _mm512_loadu_si512((const void*)(w0 + k)));
      a1 = _mm512_dpbusd_epi32(a1, xv, _mm512_loadu_si512((const void*)(w1 + k)));
      a2 = _mm512_dpbusd_epi32(a2, xv, _mm512_loadu_si512((const void*)(w2 + k)));
      a3 = _mm512_dpbusd_epi32(a3, xv, _mm512_loadu_si512((const void*)(w3 + k)));
    }
    int32_t s[4] = {_mm512_reduce_add_epi32(a0), _mm512_reduce_add_epi32(a1), _mm512_reduce_add_epi32(a2), _mm512_reduce_add_epi32(a3)};
    for (int k = K64; k < K; k++) for (int r = 0; r < 4; r++) s[r] += (int32_t)x[k] * W[(size_t)(n + r) * K + k];
    for (int r = 0; r < 4; r++) y[n + r] = s[r];
  }
  for (; n < N; n++) {
    int32_t s = 0;
    for (int k = 0; k < K; k++) s += (int32_t)x[k] * W[(size_t)n * K + k];
    y[n] = s;
  }
}

// ---- N-API ----

bool buffer_of(napi_env env, napi_value v, void** data, size_t* bytes) {
  napi_typedarray_type t;
  size_t len, off;
  napi_value ab;
  if (napi_get_typedarray_info(env, v, &t, &len, data, &ab, &off) != napi_ok) return false;
  size_t esz = (t == napi_float32_array || t == napi_int32_array || t == napi_uint32_array) ? 4
               : (t == napi_uint16_array || t == napi_int16_array) ? 2 : (t == napi_float64_array) ? 8 : 1;
  *bytes = len * esz;
  return true;
}

// lowp(kind, M, N, K, A, B, C) -> instruction string, or null when this CPU lacks what the kind needs.
//   gemm_f32 / gemm_f16: C[M x N] = A[M x K] (Float32Array) * B[K x N] (Float32Array / Uint16Array fp16 codes)
//   gemm_f16fma: C[M x N] (Float32Array) = A (Uint16Array fp16 codes) * B (fp16 codes), accumulated in fp16
//   gemv_f32 / gemv_bf16 / gemv_f16: y = C[N] (Float32Array) = W (A: N x K) * x (B: K floats); M must be 1
//   gemv_i8: y = C[N] (Int32Array) = W (A: Int8Array N x K) * x (B: Uint8Array K)
napi_value Lowp(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value v[7];
  napi_get_cb_info(env, info, &argc, v, nullptr, nullptr);
  char kind[16] = {0};
  size_t klen = 0;
  int32_t M = 0, N = 0, K = 0;
  void *A, *B, *C;
  size_t la, lb, lc;
  if (argc < 7 || napi_get_value_string_utf8(env, v[0], kind, sizeof kind, &klen) != napi_ok || napi_get_value_int32(env, v[1], &M) != napi_ok ||
      napi_get_value_int32(env, v[2], &N) != napi_ok || napi_get_value_int32(env, v[3], &K) != napi_ok || M < 1 || N < 1 || K < 1 ||
      !buffer_of(env, v[4], &A, &la) || !buffer_of(env, v[5], &B, &lb) || !buffer_of(env, v[6], &C, &lc)) {
    napi_throw_error(env, nullptr, "slimfit engine: lowp(kind, M, N, K, A, B, C) with positive sizes and typed arrays");
    return nullptr;
  }
  std::string k(kind);
  Cpu c = cpu();
  const char* ins = nullptr;
  auto need = [&](size_t a, size_t b, size_t cc) {
    if (la < a || lb < b || lc < cc) { napi_throw_error(env, nullptr, "slimfit engine: lowp buffers too small"); return false; }
    return true;
  };
  size_t m = M, n = N, kk = K;
  if (k == "gemm_f32" || k == "gemm_f16") {
    bool f16 = k == "gemm_f16";
    if (!need(m * kk * 4, kk * n * (f16 ? 2 : 4), m * n * 4)) return nullptr;
    if (c.avx512f && c.f16c) {
      if (f16) { gemm_avx512<true>(M, N, K, (const float*)A, B, (float*)C); ins = "vcvtph2ps while packing + vfmadd231ps (AVX-512)"; }
      else { gemm_avx512<false>(M, N, K, (const float*)A, B, (float*)C); ins = "vfmadd231ps (AVX-512)"; }
    }
  } else if (k == "gemm_f16fma") {
    if (!need(m * kk * 2, kk * n * 2, m * n * 4)) return nullptr;
#ifdef SLIMFIT_HAVE_FP16_ISA
    if (c.avx512f && c.avx512bw && c.fp16) { gemm_fp16(M, N, K, (const _Float16*)A, (const _Float16*)B, (float*)C); ins = "vfmadd231ph (AVX512_FP16), fp16 products and sums"; }
#endif
  } else if (k == "gemv_f32" || k == "gemv_bf16" || k == "gemv_f16") {
    int t = k == "gemv_f32" ? 0 : k == "gemv_bf16" ? 1 : 2;
    if (M != 1) { napi_throw_error(env, nullptr, "slimfit engine: lowp gemv needs M = 1"); return nullptr; }
    if (!need(n * kk * (t ? 2 : 4), kk * 4, n * 4)) return nullptr;
    static const char* i512[] = {"vfmadd231ps (AVX-512)", "vpmovzxwd + vpslld 16 (bf16 -> fp32) + vfmadd231ps (AVX-512)", "vcvtph2ps + vfmadd231ps (AVX-512)"};
    static const char* i256[] = {"vfmadd231ps (AVX2)", "vpmovzxwd + vpslld 16 (bf16 -> fp32) + vfmadd231ps (AVX2)", "vcvtph2ps (F16C) + vfmadd231ps (AVX2)"};
    if (c.avx512f && c.avx512bw && c.f16c) {
      if (t == 0) gemv_avx512<0>(N, K, A, (const float*)B, (float*)C);
      else if (t == 1) gemv_avx512<1>(N, K, A, (const float*)B, (float*)C);
      else gemv_avx512<2>(N, K, A, (const float*)B, (float*)C);
      ins = i512[t];
    } else if (c.avx2 && c.fma && c.f16c) {
      if (t == 0) gemv_avx2<0>(N, K, A, (const float*)B, (float*)C);
      else if (t == 1) gemv_avx2<1>(N, K, A, (const float*)B, (float*)C);
      else gemv_avx2<2>(N, K, A, (const float*)B, (float*)C);
      ins = i256[t];
    }
  } else if (k == "gemv_i8") {
    if (M != 1) { napi_throw_error(env, nullptr, "slimfit engine: lowp gemv needs M = 1"); return nullptr; }
    if (!need(n * kk, kk, n * 4)) return nullptr;
    if (c.avx512f && c.avx512bw && c.vnni) { gemv_i8_vnni(N, K, (const int8_t*)A, (const uint8_t*)B, (int32_t*)C); ins = "vpdpbusd (AVX512_VNNI), uint8 x int8 -> int32"; }
  } else {
    napi_throw_error(env, nullptr, "slimfit engine: lowp kind is one of gemm_f32, gemm_f16, gemm_f16fma, gemv_f32, gemv_bf16, gemv_f16, gemv_i8");
    return nullptr;
  }
  napi_value r;
  if (ins) napi_create_string_utf8(env, ins, NAPI_AUTO_LENGTH, &r);
  else napi_get_null(env, &r);
  return r;
}

}  // namespace

// Adds `lowp` to the engine addon's exports (called from Init in addon.cc).
napi_value RegisterLowp(napi_env env, napi_value exports) {
  napi_value fn;
  napi_create_function(env, "lowp", NAPI_AUTO_LENGTH, Lowp, nullptr, &fn);
  napi_set_named_property(env, exports, "lowp", fn);
  return exports;
}

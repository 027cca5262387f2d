// The precision lab's per-element kernels (single-threaded): rounding float32 arrays to fixed point / scaled integers
// and to float formats (nearest-even, toward zero, stochastic with the xoshiro128** stream of src/precision/rng.ts),
// the round-to-odd float32 sum of quantizeSum, the update meters of lab/update.ts and the optimizer loops of
// lab/train.ts. Each is a line-by-line port of its JavaScript twin (src/precision/formats.ts, lab/update.ts,
// lab/train.ts) with the same double arithmetic in the same order, so results, counters and the generator's state are
// bit-identical (test/precision-native.test.ts). Built with -ffp-contract=off (no fused multiply-add) and without
// -ffast-math (no reassociation), as binding.gyp sets for the engine. Registered into the engine addon by RegisterQuant.
#include <node_api.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#if defined(__x86_64__)
#include <immintrin.h>
#endif
#include <cmath>
#include <cstdint>
#include <cstring>

#include "gemm_own.h"
#include "napi_args.h"

namespace {

struct QArgs : sf::NapiArgs<20> {
  QArgs(napi_env e, napi_callback_info info) : NapiArgs(e, info, "slimfit quant") {}
  bool isNull(size_t i) {
    napi_valuetype t = napi_undefined;
    return i >= n || (napi_typeof(env, v[i], &t) == napi_ok && (t == napi_null || t == napi_undefined));
  }
  // Data of a typed array of element type `want` (float32/uint32/float64) and its length; null with `nullable` allowed.
  template <class T>
  T* arr(size_t i, napi_typedarray_type want, size_t* len, bool nullable = false) {
    *len = 0;
    if (nullable && isNull(i)) return nullptr;
    bool is = false;
    if (i < n && napi_is_typedarray(env, v[i], &is) == napi_ok && is) {
      napi_typedarray_type t;
      size_t length, offset;
      void* data;
      napi_value ab;
      napi_get_typedarray_info(env, v[i], &t, &length, &data, &ab, &offset);
      if (t == want || (want == napi_uint32_array && t == napi_float32_array) || (want == napi_float32_array && t == napi_uint32_array)) {
        *len = length;
        return (T*)data;
      }
    }
    fail("slimfit quant: expected a typed array of the kernel's element type");
    return nullptr;
  }
};

napi_value undef(napi_env env) {
  napi_value u;
  napi_get_undefined(env, &u);
  return u;
}

napi_value num_value(napi_env env, double d) {
  napi_value r;
  napi_create_double(env, d, &r);
  return r;
}

inline uint32_t f2u(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float u2f(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
const uint32_t CANONICAL_NAN = 0x7fc00000u;

// One xoshiro128** step: the output of the current state, then the state advanced (src/precision/rng.ts).
struct Xoshiro {
  uint32_t s0, s1, s2, s3;
  inline uint32_t next() {
    uint32_t m = s1 * 5u;
    uint32_t r = ((m << 7) | (m >> 25)) * 9u;
    uint32_t t = s1 << 9;
    s2 ^= s0; s3 ^= s1; s1 ^= s2; s0 ^= s3; s2 ^= t; s3 = (s3 << 11) | (s3 >> 21);
    return r;
  }
};

// ---- fixed point / scaled integers (qScaledCore) ----

// Integer counters, incremented without branches where the outcome is data-dependent (an underflow of a tiny gradient
// is a coin flip under stochastic rounding).
struct Counters { uint64_t ov = 0, uf = 0, nan = 0; };

// floor(y) for |y| < 2^62 without a libm call (SSE2 has no roundsd): the same double as std::floor up to the sign of a
// zero, which no caller can see (it is added to 0 or 1 and compared with a nonnegative number).
inline double floor_small(double y) {
  // t = trunc(y), minus 1 where t > y, with SSE2 compare-and-mask (a branch would mispredict: the sign of y is random)
#if defined(__SSE2__)
  const __m128d yv = _mm_set_sd(y);
  const __m128d tv = _mm_cvtsi64_sd(_mm_setzero_pd(), (long long)y);
  const __m128d one = _mm_and_pd(_mm_cmpgt_sd(tv, yv), _mm_set_sd(1.0));
  return _mm_cvtsd_f64(_mm_sub_sd(tv, one));
#else
  const double t = (double)(int64_t)y;
  return t - (double)(int)(t > y);
#endif
}

// One element of qScaledCore: v (a float32 value) to q * step, q an integer in [lo, hi].
template <int MODE, bool DIVIDE>
inline float scaled_elem(double v, double mul, double step, double lo, double hi, Xoshiro& g, Counters& c) {
  const double MAGIC = 6755399441055744.0;  // 2^52 + 2^51: (y + MAGIC) - MAGIC rounds half-to-even for |y| < 2^51
  if (v != v) { c.nan++; return u2f(CANONICAL_NAN); }
  const double y = DIVIDE ? v / step : v * mul;
  double q;
  if (MODE == 0) {
    if (y >= hi + 0.5) { q = hi; c.ov++; } else if (y < lo - 0.5) { q = lo; c.ov++; } else q = (y + MAGIC) - MAGIC;
  } else if (MODE == 1) {
    if (y >= hi + 1) { q = hi; c.ov++; } else if (y <= lo - 1) { q = lo; c.ov++; } else q = (double)(int64_t)y;
  } else {
    const uint32_t rnd = g.next();
    if (y > hi) { q = hi; c.ov++; } else if (y < lo) { q = lo; c.ov++; } else {
      const double fl0 = floor_small(y);
      // up with probability frac (a comparison turned into 0/1, not a branch: it is random)
      q = fl0 + (double)(int)((double)rnd < (y - fl0) * 4294967296.0);
    }
  }
  c.uf += (uint64_t)((q == 0) & (v != 0));
  return (float)(q * step + 0.0);
}

// (The generator and counters are locals of each loop: through a reference they were stored and reloaded every
// element, which put a store-to-load round trip on the generator's dependency chain.)
template <int MODE, bool DIVIDE>
void scaled_loop(const float* x, float* out, size_t n, double mul, double step, double lo, double hi, Xoshiro& gio, double* cnt) {
  Counters c;
  Xoshiro g = gio;
  for (size_t i = 0; i < n; i++) out[i] = scaled_elem<MODE, DIVIDE>(x[i], mul, step, lo, hi, g, c);
  gio = g;
  cnt[0] = (double)c.ov; cnt[1] = (double)c.uf; cnt[2] = (double)c.nan;
}

#if defined(__x86_64__)
// scaled_elem<MODE, false> on 8 values at once (AVX-512, doubles): the same arithmetic per element, the generator drawn
// once per element in order (stochastic); the caller keeps NaN inputs out (scaled_elem counts and replaces them).
template <int MODE>
struct Scaled8 {
  __m512d mul, step, lo, hi, hiH, loH;
  __attribute__((target("avx512f,avx512dq,avx512vl"))) Scaled8(double m, double s, double l, double h)
      : mul(_mm512_set1_pd(m)), step(_mm512_set1_pd(s)), lo(_mm512_set1_pd(l)), hi(_mm512_set1_pd(h)), hiH(_mm512_set1_pd(h + 0.5)), loH(_mm512_set1_pd(l - 0.5)) {}
  __attribute__((target("avx512f,avx512dq,avx512vl"))) inline __m256 round(__m512d vd, Xoshiro& g, Counters& c) const {
    const __m512d zero = _mm512_setzero_pd();
    const __m512d yy = _mm512_mul_pd(vd, mul);
    __m512d q;
    __mmask8 ovHi, ovLo;
    if (MODE == 0) {
      const __m512d magic = _mm512_set1_pd(6755399441055744.0);  // as scaled_elem: rounds half-to-even
      ovHi = _mm512_cmp_pd_mask(yy, hiH, _CMP_GE_OQ);
      ovLo = _mm512_cmp_pd_mask(yy, loH, _CMP_LT_OQ);
      q = _mm512_sub_pd(_mm512_add_pd(yy, magic), magic);
    } else {
      alignas(32) uint32_t rnd[8];
      for (int k = 0; k < 8; k++) rnd[k] = g.next();
      const __m512d r = _mm512_cvtepu32_pd(_mm256_load_si256((const __m256i*)rnd));
      ovHi = _mm512_cmp_pd_mask(yy, hi, _CMP_GT_OQ);
      ovLo = _mm512_cmp_pd_mask(yy, lo, _CMP_LT_OQ);
      const __m512d fl0 = _mm512_roundscale_pd(yy, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
      const __mmask8 up = _mm512_cmp_pd_mask(r, _mm512_mul_pd(_mm512_sub_pd(yy, fl0), _mm512_set1_pd(4294967296.0)), _CMP_LT_OQ);
      q = _mm512_add_pd(fl0, _mm512_mask_blend_pd(up, zero, _mm512_set1_pd(1.0)));
    }
    q = _mm512_mask_blend_pd(ovHi, q, hi);
    q = _mm512_mask_blend_pd((__mmask8)(ovLo & ~ovHi), q, lo);
    c.ov += (uint64_t)__builtin_popcount((unsigned)(ovHi | ovLo));
    c.uf += (uint64_t)__builtin_popcount((unsigned)(_mm512_cmp_pd_mask(q, zero, _CMP_EQ_OQ) & _mm512_cmp_pd_mask(vd, zero, _CMP_NEQ_UQ)));
    return _mm512_cvtpd_ps(_mm512_add_pd(_mm512_mul_pd(q, step), zero));
  }
};

bool fused_avx512() {
  static const bool ok = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
  return ok && sf::detect_isa() == sf::ISA_AVX512;
}

// scaled_loop<MODE, false> with Scaled8: blocks holding a NaN go through scaled_elem.
template <int MODE>
__attribute__((target("avx512f,avx512dq,avx512vl"))) void scaled_loop_avx512(const float* x, float* out, size_t n, double mul, double step, double lo, double hi, Xoshiro& gio, double* cnt) {
  Counters c;
  Xoshiro g = gio;
  const Scaled8<MODE> sk(mul, step, lo, hi);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m512d vd = _mm512_cvtps_pd(_mm256_loadu_ps(x + i));
    if (_mm512_cmp_pd_mask(vd, vd, _CMP_UNORD_Q)) {
      for (size_t k = i; k < i + 8; k++) out[k] = scaled_elem<MODE, false>(x[k], mul, step, lo, hi, g, c);
      continue;
    }
    _mm256_storeu_ps(out + i, sk.round(vd, g, c));
  }
  for (; i < n; i++) out[i] = scaled_elem<MODE, false>(x[i], mul, step, lo, hi, g, c);
  gio = g;
  cnt[0] = (double)c.ov; cnt[1] = (double)c.uf; cnt[2] = (double)c.nan;
}
#endif

// quantScaled(x, out, mul, step, lo, hi, mode, divide, state|null, counts): mode 0 nearest-even, 1 toward zero,
// 2 stochastic (needs state); divide: y = x / step (int8) instead of x * mul. counts[0..2] = overflow, underflow, NaN.
napi_value QuantScaled(napi_env env, napi_callback_info info) {
  QArgs a(env, info);
  size_t nx, no, ns = 0, nc;
  const float* x = a.arr<float>(0, napi_float32_array, &nx);
  float* out = a.arr<float>(1, napi_float32_array, &no);
  double mul = a.num(2), step = a.num(3), lo = a.num(4), hi = a.num(5);
  int mode = (int)a.num(6);
  bool divide = a.num(7) != 0;
  uint32_t* st = a.arr<uint32_t>(8, napi_uint32_array, &ns, true);
  double* cnt = a.arr<double>(9, napi_float64_array, &nc);
  if (!a.ok) return nullptr;
  if (no != nx || nc < 3 || mode < 0 || mode > 2 || (mode == 2 && ns < 4) || (st && ns < 4)) { a.fail("slimfit quant: quantScaled got mismatched arguments"); return nullptr; }
  Xoshiro g{0, 0, 0, 0};
  if (st) g = Xoshiro{st[0], st[1], st[2], st[3]};
#if defined(__x86_64__)
  if (!divide && mode != 1 && fused_avx512()) mode == 0 ? scaled_loop_avx512<0>(x, out, nx, mul, step, lo, hi, g, cnt) : scaled_loop_avx512<2>(x, out, nx, mul, step, lo, hi, g, cnt);
  else
#endif
  if (mode == 0) divide ? scaled_loop<0, true>(x, out, nx, mul, step, lo, hi, g, cnt) : scaled_loop<0, false>(x, out, nx, mul, step, lo, hi, g, cnt);
  else if (mode == 1) divide ? scaled_loop<1, true>(x, out, nx, mul, step, lo, hi, g, cnt) : scaled_loop<1, false>(x, out, nx, mul, step, lo, hi, g, cnt);
  else divide ? scaled_loop<2, true>(x, out, nx, mul, step, lo, hi, g, cnt) : scaled_loop<2, false>(x, out, nx, mul, step, lo, hi, g, cnt);
  if (st) { st[0] = g.s0; st[1] = g.s1; st[2] = g.s2; st[3] = g.s3; }
  return undef(env);
}

// ---- float formats (qFloatNearest / qFloatZero / qFloatStochastic) ----

struct FloatK {
  int shift;
  uint32_t notMask, minNormBits, maxBits, ovBits, infBits;
  int sub0, qExp;
};

inline uint32_t bits_of_multiple(uint32_t q, int qExp) {
  int p = 31 - __builtin_clz(q);
  int be = p + qExp + 127;
  return be >= 1 ? ((uint32_t)be << 23) | ((q << ((23 - p) & 31)) & 0x7fffffu) : q << ((qExp + 149) & 31);
}

// One element of qFloatNearest / qFloatZero / qFloatStochastic: float32 bits to the bits of the rounded value.
template <int MODE>
inline uint32_t float_elem(uint32_t b, const FloatK& k, Xoshiro& g, Counters& c) {
  uint32_t rnd = 0;
  if (MODE == 2) rnd = g.next();  // drawn for every element, NaN and inf included
  const uint32_t a = b & 0x7fffffffu;
  const uint32_t s = b & 0x80000000u;
  uint32_t r;
  if (a >= k.minNormBits) {
    if (a >= 0x7f800000u) {
      if (a > 0x7f800000u) { c.nan++; return CANONICAL_NAN; }
      return k.infBits == CANONICAL_NAN ? k.infBits : s | k.infBits;  // a NaN result is the canonical one, unsigned
    }
    if (MODE == 0) { r = (a + ((1u << (k.shift - 1)) - 1) + ((a >> k.shift) & 1)) & k.notMask; if (r > k.maxBits) { r = k.ovBits; c.ov++; } }
    else if (MODE == 1) { r = a & k.notMask; if (r > k.maxBits) { r = k.maxBits; c.ov++; } }
    else { r = (a + (rnd >> (32 - k.shift))) & k.notMask; if (r > k.maxBits) { r = k.ovBits; c.ov++; } }
  } else {
    const uint32_t e = a >> 23;
    const uint32_t m = e ? (a & 0x7fffffu) | 0x800000u : a;
    const int sh = k.sub0 - (int)(e ? e : 1);
    uint32_t q = 0;
    if (MODE == 0) {
      if (sh < 25) {
        q = m >> sh;
        const uint32_t rem = m & ((1u << sh) - 1);
        const uint32_t half = 1u << (sh - 1);
        if (rem > half || (rem == half && (q & 1))) q++;
      }
    } else if (MODE == 1) {
      q = sh < 25 ? m >> sh : 0;
    } else {
      uint32_t rem;
      if (sh < 32) { q = m >> sh; rem = m & ((1u << sh) - 1); } else { q = 0; rem = m; }
      if ((double)rnd < (double)rem * std::ldexp(1.0, 32 - sh)) q++;
    }
    if (q == 0) { r = 0; if (a != 0) c.uf++; } else r = bits_of_multiple(q, k.qExp);
  }
  return r == CANONICAL_NAN ? r : s | r;
}

template <int MODE>
void float_loop(const uint32_t* inp, uint32_t* out, size_t n, const FloatK& kio, Xoshiro& gio, double* cnt) {
  Counters c;
  Xoshiro g = gio;
  const FloatK k = kio;
  for (size_t i = 0; i < n; i++) out[i] = float_elem<MODE>(inp[i], k, g, c);
  gio = g;
  cnt[0] = (double)c.ov; cnt[1] = (double)c.uf; cnt[2] = (double)c.nan;
}

// quantFloat(in: Uint32Array, out: Uint32Array, mode, shift, notMask, minNormBits, maxBits, ovBits, infBits, sub0,
// qExp, state|null, counts): float32 bit patterns rounded to a float format (the constants of floatConsts).
napi_value QuantFloat(napi_env env, napi_callback_info info) {
  QArgs a(env, info);
  size_t nx, no, ns = 0, nc;
  const uint32_t* x = a.arr<uint32_t>(0, napi_uint32_array, &nx);
  uint32_t* out = a.arr<uint32_t>(1, napi_uint32_array, &no);
  int mode = (int)a.num(2);
  FloatK k;
  k.shift = (int)a.num(3);
  k.notMask = (uint32_t)(int64_t)a.num(4);
  k.minNormBits = (uint32_t)(int64_t)a.num(5);
  k.maxBits = (uint32_t)(int64_t)a.num(6);
  k.ovBits = (uint32_t)(int64_t)a.num(7);
  k.infBits = (uint32_t)(int64_t)a.num(8);
  k.sub0 = (int)a.num(9);
  k.qExp = (int)a.num(10);
  uint32_t* st = a.arr<uint32_t>(11, napi_uint32_array, &ns, true);
  double* cnt = a.arr<double>(12, napi_float64_array, &nc);
  if (!a.ok) return nullptr;
  if (no != nx || nc < 3 || mode < 0 || mode > 2 || (mode == 2 && ns < 4) || (st && ns < 4) || k.shift < 1 || k.shift > 22 || k.sub0 <= k.shift || k.qExp < -149) {
    a.fail("slimfit quant: quantFloat got mismatched arguments");
    return nullptr;
  }
  Xoshiro g{0, 0, 0, 0};
  if (st) g = Xoshiro{st[0], st[1], st[2], st[3]};
  if (mode == 0) float_loop<0>(x, out, nx, k, g, cnt);
  else if (mode == 1) float_loop<1>(x, out, nx, k, g, cnt);
  else float_loop<2>(x, out, nx, k, g, cnt);
  if (st) { st[0] = g.s0; st[1] = g.s1; st[2] = g.s2; st[3] = g.s3; }
  return undef(env);
}

// ---- quantizeSum's first stage: the exact sum a + b rounded to float32 with round-to-odd ----

inline float sum_to_odd(float xf, float yf) {
  const double x = xf, y = yf;
  const double s = x + y;
  const double bv = s - x;
  const double e = (x - (s - bv)) + (y - bv);
  const float f = (float)s;
  uint32_t u = f2u(f);
  const double fd = f;
  // branch-free form of: if (inexact && s is finite && u is even) u += up ? 1 : -1 (the sign of the rounding is random);
  // an infinite addend makes s infinite and e NaN: the sum is exactly ±inf (or NaN), nothing to round
  const bool rounded = fd != s;
  const bool fix = (rounded | (e != 0)) & (s - s == 0) & ((u & 1) == 0);
  const bool up = rounded ? std::fabs(s) > std::fabs(fd) : (s > 0) == (e > 0);
  u += (uint32_t)fix * ((uint32_t)up * 2u - 1u);
  return u2f(u);
}

// sumOdd(a, b, out): out[i] = the exact a[i] + b[i] rounded to float32 with round-to-odd (out may be a or b).
napi_value SumOdd(napi_env env, napi_callback_info info) {
  QArgs a(env, info);
  size_t na, nb, no;
  const float* x = a.arr<float>(0, napi_float32_array, &na);
  const float* y = a.arr<float>(1, napi_float32_array, &nb);
  float* out = a.arr<float>(2, napi_float32_array, &no);
  if (!a.ok) return nullptr;
  if (na != nb || na != no) { a.fail("slimfit quant: sumOdd got arrays of different lengths"); return nullptr; }
  for (size_t i = 0; i < na; i++) out[i] = sum_to_odd(x[i], y[i]);
  return undef(env);
}

// ---- lab/update.ts ----

// updateMaster(u, y, master, target, comp|null, compOld, acc): target = master + y (float32), the Kahan compensation,
// and acc[0..2] += Σ|u|, Σ|u − applied| (expected), Σ|u − applied| (realized), in element order.
napi_value UpdateMaster(napi_env env, napi_callback_info info) {
  QArgs a(env, info);
  size_t nu, ny, nm, nt, nc = 0, nco, nacc;
  const float* u = a.arr<float>(0, napi_float32_array, &nu);
  const float* y = a.arr<float>(1, napi_float32_array, &ny);
  const float* master = a.arr<float>(2, napi_float32_array, &nm);
  float* target = a.arr<float>(3, napi_float32_array, &nt);
  float* comp = a.arr<float>(4, napi_float32_array, &nc, true);
  const float* compOld = a.arr<float>(5, napi_float32_array, &nco);
  double* acc = a.arr<double>(6, napi_float64_array, &nacc);
  if (!a.ok) return nullptr;
  const size_t n = nu;
  if (ny < n || nm < n || nt < n || (comp && (nc < n || nco < n)) || nacc < 3) { a.fail("slimfit quant: updateMaster got arrays that are too short"); return nullptr; }
  for (size_t i = 0; i < n; i++) target[i] = (float)((double)master[i] + (double)y[i]);
  if (comp) for (size_t i = 0; i < n; i++) comp[i] = (float)(((double)target[i] - (double)master[i]) - (double)y[i]);
  double mass = acc[0], lostE = acc[1], lostR = acc[2];
  for (size_t i = 0; i < n; i++) {
    const double applied = comp ? ((double)target[i] - (double)comp[i]) - ((double)master[i] - (double)compOld[i]) : (double)target[i] - (double)master[i];
    const double d = std::fabs((double)u[i] - applied);
    mass += std::fabs((double)u[i]); lostE += d; lostR += d;
  }
  acc[0] = mass; acc[1] = lostE; acc[2] = lostR;
  return undef(env);
}

// updateDirect(u, y, old, next, comp|null, compOld, sr, ess, lo, hi, start, acc): the meter of a direct update from
// element `start` on (the compensation is written by the caller). ess: 0 no expectation (lostExpected untouched under
// sr), 1 fp32, 2 narrow (round-to-odd in float32), 3 wide, 4 int8. Returns the index of the first element whose
// expectation leaves [lo, hi] (the caller rounds that one in JavaScript and continues after it), or n when done.
napi_value UpdateDirect(napi_env env, napi_callback_info info) {
  QArgs a(env, info);
  size_t nu, ny, no, nn, nc = 0, nco = 0, nacc;
  const float* u = a.arr<float>(0, napi_float32_array, &nu);
  const float* y = a.arr<float>(1, napi_float32_array, &ny);
  const float* old = a.arr<float>(2, napi_float32_array, &no);
  const float* next = a.arr<float>(3, napi_float32_array, &nn);
  const float* comp = a.arr<float>(4, napi_float32_array, &nc, true);
  const float* compOld = a.arr<float>(5, napi_float32_array, &nco, true);
  const bool sr = a.num(6) != 0;
  const int ess = (int)a.num(7);
  const double lo = a.num(8), hi = a.num(9);
  const double start = a.num(10);
  double* acc = a.arr<double>(11, napi_float64_array, &nacc);
  if (!a.ok) return nullptr;
  const size_t n = nu;
  if (ny < n || no < n || nn < n || (comp && (nc < n || !compOld || nco < n)) || nacc < 3 || !(start >= 0) || ess < 0 || ess > 4) {
    a.fail("slimfit quant: updateDirect got mismatched arguments");
    return nullptr;
  }
  double mass = acc[0], lostE = acc[1], lostR = acc[2];
  size_t i = (size_t)start;
  for (; i < n; i++) {
    const double ui = u[i], oi = old[i];
    double ex = 0;
    if (sr && ess) {
      // expectedStochasticSum(fmt, old, y) (lab/update.ts)
      const float yf = y[i];
      double v;
      if (ess == 2) v = sum_to_odd(old[i], yf);  // narrow formats see the round-to-odd float32 sum
      else {
        const double yi = yf;
        const double s = oi + yi;
        const double bv = s - oi;
        const double e = (oi - (s - bv)) + (yi - bv);
        v = ess == 1 ? (double)(float)s : s + e;
      }
      if ((ess == 2 || ess == 3) && (v > hi || v < lo)) break;  // the JavaScript side rounds it (quantizeScalar)
      ex = v;
    }
    const double applied = comp ? ((double)next[i] - (double)comp[i]) - (oi - (double)compOld[i]) : (double)next[i] - oi;
    mass += std::fabs(ui);
    lostR += std::fabs(ui - applied);
    if (!sr) lostE += std::fabs(ui - applied);
    else if (ess) lostE += std::fabs(ui - (ex - oi));
  }
  acc[0] = mass; acc[1] = lostE; acc[2] = lostR;
  return num_value(env, (double)i);
}

// updateFused(u, old, next, par, state|null, acc, counts): a direct update w + u without master copy or compensation,
// onto a static site of a fixed point or narrow float format, in one pass: quantizeSum (round-to-odd float32 sum, then
// the format's rounding) into next, the meter (acc[0..2] += Σ|u|, Σ|u − E[applied]|, Σ|u − applied| in element order;
// under stochastic rounding E[round(w + u)] is the round-to-odd sum) and acc[3..4] += updates, unchanged; counts[0..2] +=
// the rounding's overflow, underflow, NaN. par = [kind (0 fixed, 1 float), mode, start, eLo, eHi, then for fixed mul,
// step, lo, hi, for float shift, notMask, minNormBits, maxBits, ovBits, infBits, sub0, qExp]. Returns the index of the
// first element whose expectation leaves [eLo, eHi] (next[i] and the counts are done; the caller adds its meter terms
// and continues after it), or n.
template <class Q>
size_t fused_loop(const float* u, const float* old, float* next, size_t i, size_t n, bool sr, double eLo, double eHi, Q q, Xoshiro& gio, Counters& cio, double* acc) {
  double mass = acc[0], lostE = acc[1], lostR = acc[2];
  uint64_t upd = 0, same = 0;
  Xoshiro g = gio;
  Counters c = cio;
  for (; i < n; i++) {
    const float uf = u[i], of = old[i];
    const float v = sum_to_odd(of, uf);
    const float nx = q(v, g, c);
    next[i] = nx;
    const uint64_t nz = uf != 0;  // counted without branches: whether a weight moved is random
    upd += nz;
    same += nz & (uint64_t)(nx == of);
    if (sr && (v > eHi || v < eLo)) break;
    const double ui = uf, oi = of;
    const double applied = (double)nx - oi;
    mass += std::fabs(ui);
    lostR += std::fabs(ui - applied);
    lostE += sr ? std::fabs(ui - ((double)v - oi)) : std::fabs(ui - applied);
  }
  acc[0] = mass; acc[1] = lostE; acc[2] = lostR; acc[3] += (double)upd; acc[4] += (double)same;
  gio = g;
  cio = c;
  return i;
}

#if defined(__x86_64__)
// fused_loop for a static fixed point site (scaled_elem<MODE, false>, MODE 0 nearest-even or 2 stochastic) with
// AVX-512 (Scaled8): 8 elements at a time, the same double arithmetic element by element (round-to-odd sum, scaling, rounding,
// saturation), so next[], the counters and the generator's state are bit-identical; the meter terms are formed in
// vectors and added in element order. A block holding a NaN sum, or under stochastic rounding an expectation outside
// [eLo, eHi], goes through the scalar loop instead (which stops at such an element as fused_loop does). Returns the
// index fused_loop would return.
template <int MODE>
__attribute__((target("avx512f,avx512dq,avx512vl"))) size_t fused_fixed_avx512(const float* u, const float* old, float* next, size_t i, size_t n, double eLo,
                                                                             double eHi, double mul, double step, double lo, double hi, Xoshiro& gio,
                                                                             Counters& cio, double* acc) {
  constexpr bool sr = MODE == 2;
  double mass = acc[0], lostE = acc[1], lostR = acc[2];
  uint64_t upd = 0, same = 0;
  Xoshiro g = gio;
  Counters c = cio;
  const Scaled8<MODE> sk(mul, step, lo, hi);
  const __m512d zero = _mm512_setzero_pd();
  const __m512d veLo = _mm512_set1_pd(eLo), veHi = _mm512_set1_pd(eHi);
  const __m256i ione = _mm256_set1_epi32(1);
  alignas(64) double tm[8], tr[8], te[8];
  while (i < n) {
    if (i + 8 > n) {
      // the tail: the scalar loop
      for (; i < n; i++) {
        const float uf = u[i], of = old[i];
        const float v = sum_to_odd(of, uf);
        const float nx = scaled_elem<MODE, false>(v, mul, step, lo, hi, g, c);
        next[i] = nx;
        const uint64_t nz = uf != 0;
        upd += nz;
        same += nz & (uint64_t)(nx == of);
        if (sr && (v > eHi || v < eLo)) break;
        const double ui = uf, oi = of;
        const double applied = (double)nx - oi;
        mass += std::fabs(ui);
        lostR += std::fabs(ui - applied);
        lostE += sr ? std::fabs(ui - ((double)v - oi)) : std::fabs(ui - applied);
      }
      break;
    }
    const __m256 uf8 = _mm256_loadu_ps(u + i), of8 = _mm256_loadu_ps(old + i);
    const __m512d x = _mm512_cvtps_pd(of8), y = _mm512_cvtps_pd(uf8);
    // sum_to_odd
    const __m512d sv = _mm512_add_pd(x, y);
    const __m512d bv = _mm512_sub_pd(sv, x);
    const __m512d e = _mm512_add_pd(_mm512_sub_pd(x, _mm512_sub_pd(sv, bv)), _mm512_sub_pd(y, bv));
    const __m256 f = _mm512_cvtpd_ps(sv);
    const __m512d fd = _mm512_cvtps_pd(f);
    const __mmask8 rounded = _mm512_cmp_pd_mask(fd, sv, _CMP_NEQ_UQ);
    const __mmask8 enz = _mm512_cmp_pd_mask(e, zero, _CMP_NEQ_UQ);
    const __mmask8 finite = _mm512_cmp_pd_mask(_mm512_sub_pd(sv, sv), zero, _CMP_EQ_OQ);
    const __m256i fb = _mm256_castps_si256(f);
    const __mmask8 even = _mm256_testn_epi32_mask(fb, ione);
    const __mmask8 fix = (__mmask8)((rounded | enz) & finite & even);
    const __mmask8 upR = _mm512_cmp_pd_mask(_mm512_abs_pd(sv), _mm512_abs_pd(fd), _CMP_GT_OQ);
    const __mmask8 upE = (__mmask8)~(_mm512_cmp_pd_mask(sv, zero, _CMP_GT_OQ) ^ _mm512_cmp_pd_mask(e, zero, _CMP_GT_OQ));
    const __mmask8 up = (__mmask8)((rounded & upR) | (~rounded & upE));
    __m256i vb = _mm256_mask_add_epi32(fb, (__mmask8)(fix & up), fb, ione);
    vb = _mm256_mask_sub_epi32(vb, (__mmask8)(fix & ~up), vb, ione);
    const __m256 v8 = _mm256_castsi256_ps(vb);
    const __m512d vd = _mm512_cvtps_pd(v8);
    __mmask8 odd = _mm512_cmp_pd_mask(vd, vd, _CMP_UNORD_Q);  // a NaN sum: counted and stored by the scalar loop
    if (sr) odd |= _mm512_cmp_pd_mask(vd, veHi, _CMP_GT_OQ) | _mm512_cmp_pd_mask(vd, veLo, _CMP_LT_OQ);
    if (odd) {
      const size_t end = i + 8;
      bool stop = false;
      for (; i < end; i++) {
        const float uf = u[i], of = old[i];
        const float v = sum_to_odd(of, uf);
        const float nx = scaled_elem<MODE, false>(v, mul, step, lo, hi, g, c);
        next[i] = nx;
        const uint64_t nz = uf != 0;
        upd += nz;
        same += nz & (uint64_t)(nx == of);
        if (sr && (v > eHi || v < eLo)) { stop = true; break; }
        const double ui = uf, oi = of;
        const double applied = (double)nx - oi;
        mass += std::fabs(ui);
        lostR += std::fabs(ui - applied);
        lostE += sr ? std::fabs(ui - ((double)v - oi)) : std::fabs(ui - applied);
      }
      if (stop) break;
      continue;
    }
    const __m256 nx8 = sk.round(vd, g, c);
    _mm256_storeu_ps(next + i, nx8);
    const __mmask8 nz = _mm256_cmp_ps_mask(uf8, _mm256_setzero_ps(), _CMP_NEQ_UQ);
    upd += (uint64_t)__builtin_popcount((unsigned)nz);
    same += (uint64_t)__builtin_popcount((unsigned)(nz & _mm256_cmp_ps_mask(nx8, of8, _CMP_EQ_OQ)));
    const __m512d applied = _mm512_sub_pd(_mm512_cvtps_pd(nx8), x);
    const __m512d dR = _mm512_abs_pd(_mm512_sub_pd(y, applied));
    _mm512_store_pd(tm, _mm512_abs_pd(y));
    _mm512_store_pd(tr, dR);
    _mm512_store_pd(te, sr ? _mm512_abs_pd(_mm512_sub_pd(y, _mm512_sub_pd(vd, x))) : dR);
    for (int k = 0; k < 8; k++) {
      mass += tm[k];
      lostR += tr[k];
      lostE += te[k];
    }
    i += 8;
  }
  acc[0] = mass; acc[1] = lostE; acc[2] = lostR; acc[3] += (double)upd; acc[4] += (double)same;
  gio = g;
  cio = c;
  return i;
}
#endif

napi_value UpdateFused(napi_env env, napi_callback_info info) {
  QArgs a(env, info);
  size_t nu, no, nn, np, ns = 0, nacc, nc;
  const float* u = a.arr<float>(0, napi_float32_array, &nu);
  const float* old = a.arr<float>(1, napi_float32_array, &no);
  float* next = a.arr<float>(2, napi_float32_array, &nn);
  const double* par = a.arr<double>(3, napi_float64_array, &np);
  uint32_t* st = a.arr<uint32_t>(4, napi_uint32_array, &ns, true);
  double* acc = a.arr<double>(5, napi_float64_array, &nacc);
  double* cnt = a.arr<double>(6, napi_float64_array, &nc);
  if (!a.ok) return nullptr;
  const size_t n = nu;
  const int kind = np >= 5 ? (int)par[0] : -1, mode = np >= 5 ? (int)par[1] : -1;
  if (no < n || nn < n || nacc < 5 || nc < 3 || np < (kind == 0 ? 9u : 13u) || (kind != 0 && kind != 1) || mode < 0 || mode > 2 || (mode == 2 && (!st || ns < 4)) || !(par[2] >= 0)) {
    a.fail("slimfit quant: updateFused got mismatched arguments");
    return nullptr;
  }
  const size_t start = (size_t)par[2];
  const bool sr = mode == 2;
  const double eLo = par[3], eHi = par[4];
  Xoshiro g{0, 0, 0, 0};
  if (st) g = Xoshiro{st[0], st[1], st[2], st[3]};
  Counters c;
  size_t stop;
  if (kind == 0) {
    const double mul = par[5], step = par[6], lo = par[7], hi = par[8];
#if defined(__x86_64__)
    if (mode != 1 && fused_avx512())
      stop = mode == 0 ? fused_fixed_avx512<0>(u, old, next, start, n, eLo, eHi, mul, step, lo, hi, g, c, acc)
                       : fused_fixed_avx512<2>(u, old, next, start, n, eLo, eHi, mul, step, lo, hi, g, c, acc);
    else
#endif
    if (mode == 0) stop = fused_loop(u, old, next, start, n, sr, eLo, eHi, [=](float v, Xoshiro& r, Counters& k) { return scaled_elem<0, false>(v, mul, step, lo, hi, r, k); }, g, c, acc);
    else if (mode == 1) stop = fused_loop(u, old, next, start, n, sr, eLo, eHi, [=](float v, Xoshiro& r, Counters& k) { return scaled_elem<1, false>(v, mul, step, lo, hi, r, k); }, g, c, acc);
    else stop = fused_loop(u, old, next, start, n, sr, eLo, eHi, [=](float v, Xoshiro& r, Counters& k) { return scaled_elem<2, false>(v, mul, step, lo, hi, r, k); }, g, c, acc);
  } else {
    FloatK k;
    k.shift = (int)par[5];
    k.notMask = (uint32_t)(int64_t)par[6];
    k.minNormBits = (uint32_t)(int64_t)par[7];
    k.maxBits = (uint32_t)(int64_t)par[8];
    k.ovBits = (uint32_t)(int64_t)par[9];
    k.infBits = (uint32_t)(int64_t)par[10];
    k.sub0 = (int)par[11];
    k.qExp = (int)par[12];
    if (k.shift < 2 || k.shift > 22 || k.sub0 <= k.shift || k.qExp < -149) { a.fail("slimfit quant: updateFused got bad float constants"); return nullptr; }
    if (mode == 0) stop = fused_loop(u, old, next, start, n, sr, eLo, eHi, [=](float v, Xoshiro& r, Counters& cc) { return u2f(float_elem<0>(f2u(v), k, r, cc)); }, g, c, acc);
    else if (mode == 1) stop = fused_loop(u, old, next, start, n, sr, eLo, eHi, [=](float v, Xoshiro& r, Counters& cc) { return u2f(float_elem<1>(f2u(v), k, r, cc)); }, g, c, acc);
    else stop = fused_loop(u, old, next, start, n, sr, eLo, eHi, [=](float v, Xoshiro& r, Counters& cc) { return u2f(float_elem<2>(f2u(v), k, r, cc)); }, g, c, acc);
  }
  cnt[0] += (double)c.ov; cnt[1] += (double)c.uf; cnt[2] += (double)c.nan;
  if (st) { st[0] = g.s0; st[1] = g.s1; st[2] = g.s2; st[3] = g.s3; }
  return num_value(env, (double)stop);
}

// updateCount(u, old, next, acc): acc[0] = elements with u != 0, acc[1] = of those, next == old.
napi_value UpdateCount(napi_env env, napi_callback_info info) {
  QArgs a(env, info);
  size_t nu, no, nn, nacc;
  const float* u = a.arr<float>(0, napi_float32_array, &nu);
  const float* old = a.arr<float>(1, napi_float32_array, &no);
  const float* next = a.arr<float>(2, napi_float32_array, &nn);
  double* acc = a.arr<double>(3, napi_float64_array, &nacc);
  if (!a.ok) return nullptr;
  if (no < nu || nn < nu || nacc < 2) { a.fail("slimfit quant: updateCount got arrays that are too short"); return nullptr; }
  uint64_t upd = 0, same = 0;
  for (size_t i = 0; i < nu; i++) {
    const uint64_t nz = u[i] != 0;
    upd += nz;
    same += nz & (uint64_t)(next[i] == old[i]);
  }
  acc[0] = (double)upd; acc[1] = (double)same;
  return undef(env);
}

// updateComp(u, comp, compOld, y): compOld = comp, y = u − comp (float32 of the double difference).
napi_value UpdateComp(napi_env env, napi_callback_info info) {
  QArgs a(env, info);
  size_t nu, nc, nco, ny;
  const float* u = a.arr<float>(0, napi_float32_array, &nu);
  const float* comp = a.arr<float>(1, napi_float32_array, &nc);
  float* compOld = a.arr<float>(2, napi_float32_array, &nco);
  float* y = a.arr<float>(3, napi_float32_array, &ny);
  if (!a.ok) return nullptr;
  if (nc < nu || nco < nc || ny < nu) { a.fail("slimfit quant: updateComp got arrays that are too short"); return nullptr; }
  std::memcpy(compOld, comp, nc * 4);
  for (size_t i = 0; i < nu; i++) y[i] = (float)((double)u[i] - (double)comp[i]);
  return undef(env);
}

// directComp(next, old, y, comp): comp = (next − old) − y (the Kahan compensation of a direct update).
napi_value DirectComp(napi_env env, napi_callback_info info) {
  QArgs a(env, info);
  size_t nn, no, ny, nc;
  const float* next = a.arr<float>(0, napi_float32_array, &nn);
  const float* old = a.arr<float>(1, napi_float32_array, &no);
  const float* y = a.arr<float>(2, napi_float32_array, &ny);
  float* comp = a.arr<float>(3, napi_float32_array, &nc);
  if (!a.ok) return nullptr;
  if (no < nc || ny < nc || nn < nc) { a.fail("slimfit quant: directComp got arrays that are too short"); return nullptr; }
  for (size_t i = 0; i < nc; i++) comp[i] = (float)(((double)next[i] - (double)old[i]) - (double)y[i]);
  return undef(env);
}

// ---- lab/train.ts ----

// gradCount(raw, minPos, acc): acc[0] = nonzero elements, acc[1] = of those, |x| < minPos.
napi_value GradCount(napi_env env, napi_callback_info info) {
  QArgs a(env, info);
  size_t nr, nacc;
  const float* raw = a.arr<float>(0, napi_float32_array, &nr);
  const double minPos = a.num(1);
  double* acc = a.arr<double>(2, napi_float64_array, &nacc);
  if (!a.ok) return nullptr;
  if (nacc < 2) { a.fail("slimfit quant: gradCount needs 2 counters"); return nullptr; }
  uint64_t nz = 0, under = 0;
  for (size_t i = 0; i < nr; i++) {
    const double x = std::fabs((double)raw[i]);
    nz += (uint64_t)(x != 0);  // no branches: which gradients are tiny is data
    under += (uint64_t)((x != 0) & (x < minPos));
  }
  acc[0] = (double)nz; acc[1] = (double)under;
  return undef(env);
}

// gradScale(g, inv): g *= inv (float32 of the double product); returns whether every result is finite.
napi_value GradScale(napi_env env, napi_callback_info info) {
  QArgs a(env, info);
  size_t ng;
  float* g = a.arr<float>(0, napi_float32_array, &ng);
  const double inv = a.num(1);
  if (!a.ok) return nullptr;
  bool finite = true;
  for (size_t i = 0; i < ng; i++) { g[i] = (float)((double)g[i] * inv); if (!std::isfinite(g[i])) finite = false; }
  napi_value r;
  napi_get_boolean(env, finite, &r);
  return r;
}

// optimStep(phase, g, d, m, v, lr, p1, p2, p3, p4): the optimizer loops of lab/train.ts in double arithmetic.
// phase 0 sgd: d = −lr·g. 1 momentum state: m = p1·m + g. 2 momentum direction: d = −lr·m. 3 Adam moments:
// m = p1·m + p2·g, v = p3·v + p4·g·g (p2 = 1 − β1, p4 = 1 − β2). 4 Adam direction: d = −lr·(m/p1)/(√(v/p2) + p3).
napi_value OptimStep(napi_env env, napi_callback_info info) {
  QArgs a(env, info);
  size_t ng = 0, nd = 0, nm = 0, nv = 0;
  const int phase = (int)a.num(0);
  float* g = a.arr<float>(1, napi_float32_array, &ng, true);
  float* d = a.arr<float>(2, napi_float32_array, &nd, true);
  float* m = a.arr<float>(3, napi_float32_array, &nm, true);
  float* v = a.arr<float>(4, napi_float32_array, &nv, true);
  const double lr = a.num(5), p1 = a.num(6), p2 = a.num(7), p3 = a.num(8), p4 = a.num(9);
  if (!a.ok) return nullptr;
  size_t n;
  switch (phase) {
    case 0:
      if (!g || !d || nd < ng) break;
      for (size_t i = 0; i < ng; i++) d[i] = (float)(-lr * (double)g[i]);
      return undef(env);
    case 1:
      if (!g || !m || nm < ng) break;
      for (size_t i = 0; i < ng; i++) m[i] = (float)(p1 * (double)m[i] + (double)g[i]);
      return undef(env);
    case 2:
      if (!m || !d || nd < nm) break;
      for (size_t i = 0; i < nm; i++) d[i] = (float)(-lr * (double)m[i]);
      return undef(env);
    case 3:
      if (!g || !m || !v || nm < ng || nv < ng) break;
      for (size_t i = 0; i < ng; i++) {
        const double gi = g[i];
        m[i] = (float)(p1 * (double)m[i] + p2 * gi);
        v[i] = (float)(p3 * (double)v[i] + p4 * gi * gi);
      }
      return undef(env);
    case 4:
      if (!m || !v || !d || nv < nm || nd < nm) break;
      n = nm;
      for (size_t i = 0; i < n; i++) d[i] = (float)(-lr * ((double)m[i] / p1) / (std::sqrt((double)v[i] / p2) + p3));
      return undef(env);
    default: break;
  }
  a.fail("slimfit quant: optimStep got an unknown phase or mismatched arrays");
  return nullptr;
}

// ---- OCP MX block quantization (quantizeBlocks of src/precision/mx.ts, without the scale output) ----

// Exponent of a float32 (bits): Infinity for inf/NaN, -Infinity for zero, subnormals by their leading bit.
inline double exp_of(uint32_t bits) {
  const uint32_t e = (bits >> 23) & 0xff;
  if (e == 0xff) return INFINITY;
  if (e) return (double)e - 127;
  const uint32_t m = bits & 0x7fffff;
  return m ? (double)(31 - __builtin_clz(m) - 149) : -INFINITY;
}

// mxQuantize(x, out, par, counts): par = [outer, len, inner, blockSize, hasElement, emin, man, emax, maxNormal];
// counts[0..2] += overflow, underflow, NaN (elements of NaN blocks). out may be x.
napi_value MxQuantize(napi_env env, napi_callback_info info) {
  QArgs a(env, info);
  size_t nx, no, np, nc;
  const float* x = a.arr<float>(0, napi_float32_array, &nx);
  float* out = a.arr<float>(1, napi_float32_array, &no);
  const double* par = a.arr<double>(2, napi_float64_array, &np);
  double* cnt = a.arr<double>(3, napi_float64_array, &nc);
  if (!a.ok) return nullptr;
  if (np < 9 || nc < 3 || no != nx) { a.fail("slimfit quant: mxQuantize got mismatched arguments"); return nullptr; }
  const size_t outer = (size_t)par[0], len = (size_t)par[1], inner = (size_t)par[2], B = (size_t)par[3];
  const bool elem = par[4] != 0;
  const int emin = (int)par[5], man = (int)par[6];
  const double emax = par[7], maxNormal = par[8];
  if (B == 0 || (double)outer * (double)len * (double)inner != (double)nx) { a.fail("slimfit quant: mxQuantize layout does not match the array"); return nullptr; }
  const double MAGIC = 6755399441055744.0;
  const uint32_t* xb = (const uint32_t*)x;
  uint32_t* ob = (uint32_t*)out;
  uint64_t ov = 0, uf = 0, nan = 0;
  double* maxE = new double[inner ? inner : 1];
  const size_t blocks = (len + B - 1) / B;
  for (size_t o = 0; o < outer; o++) {
    for (size_t b = 0; b < blocks; b++) {
      const size_t j0 = b * B, j1 = len < j0 + B ? len : j0 + B;
      for (size_t i = 0; i < inner; i++) maxE[i] = -INFINITY;
      for (size_t j = j0; j < j1; j++) {
        const uint32_t* row = xb + (o * len + j) * inner;
        for (size_t i = 0; i < inner; i++) { const double e = exp_of(row[i]); if (e > maxE[i]) maxE[i] = e; }
      }
      for (size_t i = 0; i < inner; i++) {
        // sharedExp: NaN for a block with inf/NaN; an all-zero block takes -126; clamped at E8M0's -127
        const double m = maxE[i];
        if (m == INFINITY) { maxE[i] = NAN; continue; }
        const double e = (m == -INFINITY ? -126 : m) - emax;
        maxE[i] = e < -127 ? -127 : e;
      }
      for (size_t j = j0; j < j1; j++) {
        const size_t base = (o * len + j) * inner;
        for (size_t i = 0; i < inner; i++) {
          const double se = maxE[i];
          const size_t at = base + i;
          if (se != se) { ob[at] = CANONICAL_NAN; nan++; continue; }
          const double xv = x[at];
          double r;
          if (xv == 0) r = elem ? xv : 0.0;
          else {
            const double av = std::fabs(xv);
            int qe;
            if (elem) {
              const int ey = (int)(exp_of(xb[at]) - se);
              qe = (ey > emin ? ey : emin) - man;
            } else qe = -6;
            const int sh = (int)se + qe;
            double k = (av * std::ldexp(1.0, -sh) + MAGIC) - MAGIC;
            const double kmax = maxNormal * std::ldexp(1.0, -qe);
            if (k > kmax) { k = kmax; ov++; }
            r = k * std::ldexp(1.0, sh);
            uf += (uint64_t)(r == 0);
            r = elem ? (xv < 0 ? -r : r) : (xv < 0 && r != 0 ? -r : r);
          }
          out[at] = (float)r;
        }
      }
    }
  }
  delete[] maxE;
  cnt[0] += (double)ov; cnt[1] += (double)uf; cnt[2] += (double)nan;
  return undef(env);
}

// ---- lab/dynfixed.ts: per-tensor scaling of dynamic fixed point and delayed-scaling sites ----

// scaleF32(x, out, s): out = x·s (float32 of the double product; out may be x).
napi_value ScaleF32(napi_env env, napi_callback_info info) {
  QArgs a(env, info);
  size_t nx, no;
  const float* x = a.arr<float>(0, napi_float32_array, &nx);
  float* out = a.arr<float>(1, napi_float32_array, &no);
  const double sc = a.num(2);
  if (!a.ok) return nullptr;
  if (no != nx) { a.fail("slimfit quant: scaleF32 got arrays of different lengths"); return nullptr; }
  for (size_t i = 0; i < nx; i++) out[i] = (float)((double)x[i] * sc);
  return undef(env);
}

// addF32(a, b, out): out = a + b (float32 of the double sum).
napi_value AddF32(napi_env env, napi_callback_info info) {
  QArgs a(env, info);
  size_t na, nb, no;
  const float* x = a.arr<float>(0, napi_float32_array, &na);
  const float* y = a.arr<float>(1, napi_float32_array, &nb);
  float* out = a.arr<float>(2, napi_float32_array, &no);
  if (!a.ok) return nullptr;
  if (no != na || nb < na) { a.fail("slimfit quant: addF32 got arrays of different lengths"); return nullptr; }
  for (size_t i = 0; i < na; i++) out[i] = (float)((double)x[i] + (double)y[i]);
  return undef(env);
}

// countAbsGe(x, t): how many |x[i]| >= t.
napi_value CountAbsGe(napi_env env, napi_callback_info info) {
  QArgs a(env, info);
  size_t nx;
  const float* x = a.arr<float>(0, napi_float32_array, &nx);
  const double t = a.num(1);
  if (!a.ok) return nullptr;
  uint64_t c = 0;
  for (size_t i = 0; i < nx; i++) c += (uint64_t)(std::fabs((double)x[i]) >= t);
  return num_value(env, (double)c);
}

// absMax(x, skipInf): the largest |x[i]| (NaN never counts; with skipInf, neither does ±inf); 0 for none.
napi_value AbsMax(napi_env env, napi_callback_info info) {
  QArgs a(env, info);
  size_t nx;
  const float* x = a.arr<float>(0, napi_float32_array, &nx);
  const bool skipInf = a.num(1) != 0;
  if (!a.ok) return nullptr;
  double m = 0;
  for (size_t i = 0; i < nx; i++) {
    const double v = std::fabs((double)x[i]);
    if (v > m && (!skipInf || v != INFINITY)) m = v;
  }
  return num_value(env, m);
}

}  // namespace

// Adds the `quant` object (the kernels above) to the engine addon's exports (called from Init in addon.cc).
napi_value RegisterQuant(napi_env env, napi_value exports) {
  struct { const char* name; napi_callback cb; } fns[] = {
      {"quantScaled", QuantScaled}, {"quantFloat", QuantFloat}, {"sumOdd", SumOdd}, {"updateMaster", UpdateMaster},
      {"updateDirect", UpdateDirect}, {"updateFused", UpdateFused}, {"updateCount", UpdateCount}, {"updateComp", UpdateComp}, {"directComp", DirectComp},
      {"gradCount", GradCount}, {"gradScale", GradScale}, {"optimStep", OptimStep}, {"mxQuantize", MxQuantize}, {"scaleF32", ScaleF32}, {"addF32", AddF32}, {"countAbsGe", CountAbsGe}, {"absMax", AbsMax},
  };
  napi_value obj;
  napi_create_object(env, &obj);
  for (auto& f : fns) {
    napi_value fn;
    napi_create_function(env, f.name, NAPI_AUTO_LENGTH, f.cb, nullptr, &fn);
    napi_set_named_property(env, obj, f.name, fn);
  }
  napi_set_named_property(env, exports, "quant", obj);
  return exports;
}

// slimfit_csv: the hot loop of the numeric text reader (src/formats/csv.ts) for lines that are plainly numbers.
// Why native: the JS scanner tops out near 100 MB/s on MNIST-shaped CSV (one bounds-checked byte load per char);
// this loop does the same work at several hundred MB/s. It only takes lines it can parse exactly as the JS parser
// would (same doubles: integer mantissa <= 15 digits times an exact power of ten, i.e. Clinger's fast path, and the
// same float32/float16 rounding); at the first line that is anything else (a header, comment, blank line, quote,
// nan/inf, a long or out-of-range number, a value that does not fit the dtype, a wrong field count) it stops and
// the JS parser takes that line, with its error messages and counters.
#include <node_api.h>
#include <stdint.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

static const double POW10[23] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

// Same rounding as floatToHalf in csv.ts: double -> float32 (nearest even) -> half (nearest even).
static uint16_t to_half(double v) {
  float f = (float)v;
  uint32_t x;
  memcpy(&x, &f, 4);
  uint32_t sign = (x >> 16) & 0x8000, e = (x >> 23) & 0xff, m = x & 0x7fffff;
  if (e == 0xff) return (uint16_t)(sign | 0x7c00 | (m ? 0x200 : 0));
  int he = (int)e - 127 + 15;
  if (he >= 0x1f) return (uint16_t)(sign | 0x7c00);
  if (he <= 0) {
    if (he < -10) return (uint16_t)sign;
    m |= 0x800000;
    int shift = 14 - he;
    uint32_t hm = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (hm & 1))) hm++;
    return (uint16_t)(sign | hm);
  }
  uint32_t hm = m >> 13, rem = m & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (hm & 1))) {
    hm++;
    if (hm == 0x400) { hm = 0; he++; if (he >= 0x1f) return (uint16_t)(sign | 0x7c00); }
  }
  return (uint16_t)(sign | ((uint32_t)he << 10) | hm);
}

// Parse one number at b[*pp] (< e). 1 = ok (value in *out), 0 = not a plain number (let JS decide).
static inline int number(const uint8_t* b, size_t* pp, size_t e, double* out) {
  size_t p = *pp;
  int neg = 0;
  if (b[p] == '-' || b[p] == '+') { neg = b[p] == '-'; p++; }
  uint64_t mant = 0;
  int digits = 0, exp = 0, any = 0;
  while (p < e && (unsigned)(b[p] - '0') <= 9) {
    mant = mant * 10 + (b[p] - '0');
    if (mant) digits++;
    if (digits > 15) return 0;
    any = 1;
    p++;
  }
  if (p < e && b[p] == '.') {
    p++;
    while (p < e && (unsigned)(b[p] - '0') <= 9) {
      mant = mant * 10 + (b[p] - '0');
      if (mant) digits++;
      if (digits > 15) return 0;
      exp--;
      any = 1;
      p++;
    }
  }
  if (!any) return 0;
  if (p < e && (b[p] == 'e' || b[p] == 'E')) {
    size_t j = p + 1;
    int eneg = 0, ev = 0, eany = 0;
    if (j < e && (b[j] == '-' || b[j] == '+')) { eneg = b[j] == '-'; j++; }
    while (j < e && (unsigned)(b[j] - '0') <= 9) {
      if (ev < 100000) ev = ev * 10 + (b[j] - '0');
      eany = 1;
      j++;
    }
    if (!eany) return 0;
    exp += eneg ? -ev : ev;
    p = j;
  }
  double m = (double)mant, v;
  if (exp == 0) v = m;
  else if (exp < 0 && exp >= -22) v = m / POW10[-exp];
  else if (exp > 0 && exp <= 22 && m * POW10[exp] <= 9007199254740991.0) v = m * POW10[exp];
  else return 0;
  *out = neg ? -v : v;
  *pp = p;
  return 1;
}

// Store value v as feature k of a row in the output dtype; 0 = it does not fit (the JS parser counts and warns).
static inline __attribute__((always_inline)) int put(uint8_t* xr, int k, double v, int kind) {
  switch (kind) {
    case 0: if (!(v >= 0 && v <= 255 && v == (double)(int)v)) return 0; xr[k] = (uint8_t)(int)v; return 1;
    case 1: if (v > 65504 || v < -65504) return 0; { uint16_t h = to_half(v); memcpy(xr + 2 * (size_t)k, &h, 2); } return 1;
    case 2: { float fv = (float)v; memcpy(xr + 4 * (size_t)k, &fv, 4); return 1; }
    default: memcpy(xr + 8 * (size_t)k, &v, 8); return 1;
  }
}

// put() for a whole number u < 10^7 (the SWAR path): no double round trip for uint8.
static inline __attribute__((always_inline)) int put_u32(uint8_t* xr, int k, uint32_t u, int kind) {
  if (kind == 0) { if (u > 255) return 0; xr[k] = (uint8_t)u; return 1; }
  if (kind == 2) { float fv = (float)u; memcpy(xr + 4 * (size_t)k, &fv, 4); return 1; }
  return put(xr, k, (double)u, kind);
}

// Length of the run of ASCII digits at the start of the 8 bytes in w (8 = all digits), SWAR.
static inline __attribute__((always_inline)) int digit_run(uint64_t w) {
  const uint64_t hi = (w & 0xF0F0F0F0F0F0F0F0ull) ^ 0x3030303030303030ull;          // 0 for bytes 0x30..0x3F
  const uint64_t lo = ((w + 0x0606060606060606ull) & 0xF0F0F0F0F0F0F0F0ull) ^ 0x3030303030303030ull; // 0 for 0x2A..0x39
  const uint64_t bad = hi | lo;
  return bad ? __builtin_ctzll(bad) >> 3 : 8;
}

// Value of the first n (1..7) digit characters of w (little-endian: first character in the lowest byte).
static inline __attribute__((always_inline)) uint32_t digits_value(uint64_t w, int n) {
  uint64_t d = (w - 0x3030303030303030ull) << (8 * (8 - n)); // leading zeros fill the low bytes
  d = (d * 10) + (d >> 8);
  d = (((d & 0x000000FF000000FFull) * (100 + (1000000ull << 32))) + (((d >> 16) & 0x000000FF000000FFull) * (1 + (10000ull << 32)))) >> 32;
  return (uint32_t)d;
}

// The line loop, specialised by the compiler for each output kind (see js_parse). Returns rows written.
static inline __attribute__((always_inline)) int run(const uint8_t* b, size_t bn, size_t* pp, size_t e, int ncols, int labelCol, int delim,
                                                     int kind, uint8_t* x, int64_t* y, int row, int maxRow, uint8_t eol) {
  static const int ELEM[4] = {1, 2, 4, 8};
  const int nfeat = ncols - 1, ws = delim < 0;
  const uint8_t alt = eol == '\n' ? '\r' : '\n'; // the other line-end byte: a blank before eol
  size_t p = *pp;
  int r = row;
  while (r < maxRow && p < e) {
    const size_t lineStart = p;
    size_t q = p;
    if (ws) while (q < e && (b[q] == ' ' || b[q] == '\t')) q++;
    int f = 0, ok = 1;
    double label = 0;
    uint8_t* xr = x + (size_t)r * nfeat * ELEM[kind];
    for (;;) {
      double v;
      if (q >= e || f >= ncols) { ok = 0; break; }
      // Fast path: a short unsigned integer followed by a non-digit that is not '.', 'e' or 'E' (8-byte load).
      int n = 0;
      if (q + 8 <= bn) {
        uint64_t w;
        memcpy(&w, b + q, 8);
        n = digit_run(w);
        if (n >= 1 && n <= 7 && q + n <= e) {
          const uint8_t c = q + n < e ? b[q + n] : eol;
          if (c != '.' && c != 'e' && c != 'E') { v = (double)digits_value(w, n); q += n; }
          else n = 0;
        } else n = 0;
      }
      if (n == 0 && !number(b, &q, e, &v)) { ok = 0; break; }
      if (f == labelCol) label = v;
      else if (!put(xr, f < labelCol ? f : f - 1, v, kind)) { ok = 0; break; }
      f++;
      if (ws) {
        while (q < e && (b[q] == ' ' || b[q] == '\t' || b[q] == alt)) q++;
        if (q >= e || b[q] == eol) break;
      } else {
        const uint8_t c = q < e ? b[q] : eol;
        if (c == (uint8_t)delim) { q++; continue; }
        if (c == alt) q++;
        if (q >= e || b[q] == eol) break;
        ok = 0;
        break;
      }
    }
    if (!ok || f != ncols || !(label == (double)(int64_t)label) || label > 9007199254740991.0 || label < -9007199254740991.0) { p = lineStart; break; }
    y[r] = (int64_t)label;
    r++;
    p = q < e ? q + 1 : e;
  }
  *pp = p;
  return r - row;
}

// Bit i set = b[at + i] is the delimiter or the line end eol (64 bytes from at; bytes at or past bn are not separators).
static inline __attribute__((always_inline)) uint64_t sep_mask(const uint8_t* b, size_t bn, size_t at, uint8_t delim, uint8_t eol) {
#ifdef __SSE2__
  if (at + 64 <= bn) {
    const __m128i d = _mm_set1_epi8((char)delim), nl = _mm_set1_epi8((char)eol);
    uint64_t m = 0;
    for (int k = 0; k < 4; k++) {
      const __m128i v = _mm_loadu_si128((const __m128i*)(b + at + 16 * k));
      m |= (uint64_t)(uint16_t)_mm_movemask_epi8(_mm_or_si128(_mm_cmpeq_epi8(v, d), _mm_cmpeq_epi8(v, nl))) << (16 * k);
    }
    return m;
  }
#endif
  uint64_t m = 0;
  for (size_t i = 0; i < 64 && at + i < bn; i++) if (b[at + i] == delim || b[at + i] == eol) m |= 1ull << i;
  return m;
}

// The line loop for a one-byte delimiter: separators found 64 bytes at a time, so the scan does not wait on each
// field's length; a field of 1-7 digits is converted with SWAR, anything else goes through number().
static inline __attribute__((always_inline)) int run_delim(const uint8_t* b, size_t bn, size_t* pp, size_t e, int ncols, int labelCol,
                                                           uint8_t delim, int kind, uint8_t* x, int64_t* y, int row, int maxRow, uint8_t eol) {
  static const int ELEM[4] = {1, 2, 4, 8};
  const int nfeat = ncols - 1;
  const uint8_t alt = eol == '\n' ? '\r' : '\n'; // the other line-end byte: a blank before eol
  size_t p = *pp;
  int r = row;
  size_t blk = p;
  uint64_t mask = p < e ? sep_mask(b, bn, blk, delim, eol) : 0;
  while (r < maxRow && p < e) {
    const size_t lineStart = p;
    size_t fs = p;
    int f = 0, ok = 1, end = 0;
    double label = 0;
    uint8_t* xr = x + (size_t)r * nfeat * ELEM[kind];
    do {
      // Next separator at or after fs (capped at e).
      while (mask == 0 && blk + 64 < e) { blk += 64; mask = sep_mask(b, bn, blk, delim, eol); }
      size_t se = mask ? blk + (size_t)__builtin_ctzll(mask) : e;
      if (se >= e) se = e; else mask &= mask - 1;
      end = se >= e || b[se] == eol;
      if (f >= ncols) { ok = 0; break; }
      const size_t len = se - fs;
      const int k = f < labelCol ? f : f - 1;
      uint64_t w;
      if (len >= 1 && len <= 7 && fs + 8 <= bn && (memcpy(&w, b + fs, 8), digit_run(w) >= (int)len)) {
        const uint32_t u = digits_value(w, (int)len);
        if (f == labelCol) label = (double)u;
        else if (!put_u32(xr, k, u, kind)) { ok = 0; break; }
      } else {
        size_t q = fs;
        double v;
        if (len == 0 || !number(b, &q, se, &v)) { ok = 0; break; }
        if (q != se && !(end && q + 1 == se && b[q] == alt)) { ok = 0; break; }
        if (f == labelCol) label = v;
        else if (!put(xr, k, v, kind)) { ok = 0; break; }
      }
      f++;
      fs = se + 1;
    } while (!end);
    if (!ok || f != ncols || !(label == (double)(int64_t)label) || label > 9007199254740991.0 || label < -9007199254740991.0) { p = lineStart; break; }
    y[r] = (int64_t)label;
    r++;
    p = fs < e ? fs : e;
  }
  *pp = p;
  return r - row;
}

// parse(b, p, e, ncols, labelCol, delim, kind, x, y, row, maxRow, state[, eol]): parse whole lines of b[p, e) (lines
// end at eol, '\n' (10) by default or '\r' (13) for a file with CR-only line ends, or at e) into rows row.. of x (kind 0 uint8, 1 float16, 2 float32, 3 float64; ncols-1 features per row)
// and y (int64). Stops at maxRow, at e, or before the first line it does not take. Returns the rows written;
// state[0] = where it stopped (a line start, or e).
static napi_value js_parse(napi_env env, napi_callback_info info) {
  size_t argc = 13;
  napi_value argv[13];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 12) { napi_throw_error(env, "EINVAL", "parse: 12 arguments expected"); return NULL; }
  void *bp, *xp, *yp, *sp; size_t bn, xn, yn, sn;
  napi_typedarray_type t; napi_value ab; size_t off;
  double pd, ed; int32_t ncols, labelCol, delim, kind, row, maxRow;
  if (napi_get_typedarray_info(env, argv[0], &t, &bn, &bp, &ab, &off) != napi_ok || t != napi_uint8_array
      || napi_get_typedarray_info(env, argv[7], &t, &xn, &xp, &ab, &off) != napi_ok || t != napi_uint8_array
      || napi_get_typedarray_info(env, argv[8], &t, &yn, &yp, &ab, &off) != napi_ok || t != napi_uint8_array
      || napi_get_typedarray_info(env, argv[11], &t, &sn, &sp, &ab, &off) != napi_ok || t != napi_float64_array || sn < 1
      || napi_get_value_double(env, argv[1], &pd) != napi_ok || napi_get_value_double(env, argv[2], &ed) != napi_ok
      || napi_get_value_int32(env, argv[3], &ncols) != napi_ok || napi_get_value_int32(env, argv[4], &labelCol) != napi_ok
      || napi_get_value_int32(env, argv[5], &delim) != napi_ok || napi_get_value_int32(env, argv[6], &kind) != napi_ok
      || napi_get_value_int32(env, argv[9], &row) != napi_ok || napi_get_value_int32(env, argv[10], &maxRow) != napi_ok) {
    napi_throw_error(env, "EINVAL", "parse(b, p, e, ncols, labelCol, delim, kind, x, y, row, maxRow, state): bad arguments");
    return NULL;
  }
  int32_t eol = '\n';
  if (argc >= 13 && napi_get_value_int32(env, argv[12], &eol) != napi_ok) eol = -1;
  static const int ELEM[4] = {1, 2, 4, 8};
  if ((eol != '\n' && eol != '\r') || kind < 0 || kind > 3 || ncols < 2 || labelCol < 0 || labelCol >= ncols || ed > (double)bn || pd < 0 || pd > ed || row < 0 || maxRow < row
      || (size_t)maxRow * (ncols - 1) * ELEM[kind] > xn || (size_t)maxRow * 8 > yn) {
    napi_throw_range_error(env, "ERANGE", "parse: buffers too small or arguments out of range");
    return NULL;
  }
  const uint8_t* b = (const uint8_t*)bp;
  size_t p = (size_t)pd;
  const size_t e = (size_t)ed;
  uint8_t* x = (uint8_t*)xp;
  int64_t* y = (int64_t*)yp;
  int rows;
  const uint8_t nl = (uint8_t)eol;
  if (delim >= 0 && delim < 256 && delim != '\n' && delim != '\r') switch (kind) {
    case 0: rows = run_delim(b, bn, &p, e, ncols, labelCol, (uint8_t)delim, 0, x, y, row, maxRow, nl); break;
    case 1: rows = run_delim(b, bn, &p, e, ncols, labelCol, (uint8_t)delim, 1, x, y, row, maxRow, nl); break;
    case 2: rows = run_delim(b, bn, &p, e, ncols, labelCol, (uint8_t)delim, 2, x, y, row, maxRow, nl); break;
    default: rows = run_delim(b, bn, &p, e, ncols, labelCol, (uint8_t)delim, 3, x, y, row, maxRow, nl); break;
  }
  else switch (kind) {
    case 0: rows = run(b, bn, &p, e, ncols, labelCol, delim, 0, x, y, row, maxRow, nl); break;
    case 1: rows = run(b, bn, &p, e, ncols, labelCol, delim, 1, x, y, row, maxRow, nl); break;
    case 2: rows = run(b, bn, &p, e, ncols, labelCol, delim, 2, x, y, row, maxRow, nl); break;
    default: rows = run(b, bn, &p, e, ncols, labelCol, delim, 3, x, y, row, maxRow, nl); break;
  }
  ((double*)sp)[0] = (double)p;
  napi_value res;
  napi_create_int32(env, rows, &res);
  return res;
}

NAPI_MODULE_INIT() {
  napi_value f;
  napi_create_function(env, "parse", NAPI_AUTO_LENGTH, js_parse, NULL, &f);
  napi_set_named_property(env, exports, "parse", f);
  return exports;
}

// slimfit_gather: memory-mapped row gathers for the loader (opt-in io: 'mmap').
// A truncated file would raise SIGBUS on access; gathers run under a thread-local sigsetjmp guard and report it instead.
#define _GNU_SOURCE
#include <node_api.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

// One mapping per file per process, shared by every worker thread (refcounted), so pages are counted once.
typedef struct Map { int fd; uint8_t* base; size_t size; dev_t dev; ino_t ino; int refs; struct Map* next; } Map;
static Map* maps = NULL;
static pthread_mutex_t maps_lock = PTHREAD_MUTEX_INITIALIZER;

static __thread sigjmp_buf* tl_jump = NULL;
static struct sigaction prev_bus;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void on_bus(int sig, siginfo_t* si, void* uc) {
  if (tl_jump) siglongjmp(*tl_jump, 1);
  sigaction(SIGBUS, &prev_bus, NULL); // not ours: behave as before
  raise(sig);
  (void)si; (void)uc;
}
static void install(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_bus;
  sa.sa_flags = SA_SIGINFO | SA_NODEFER;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGBUS, &sa, &prev_bus);
}

// uint8 -> float32 as out = (float)((double)x * a + b), the same rounding as the JS path (double math, then one
// rounding to float). Vectorized by hand: the compiler turns the table lookup into a slow gather, and converting is
// most of a batch's cost once rows come from memory. Runtime dispatch: AVX-512F, AVX2, else the 256-entry table.
#include <immintrin.h>
typedef struct { double a, b; float lut[256]; } Conv;

__attribute__((target("avx512f"))) static void convert_avx512(const uint8_t* restrict src, float* restrict out, size_t n, const Conv* c) {
  const __m512d va = _mm512_set1_pd(c->a), vb = _mm512_set1_pd(c->b);
  size_t e = 0;
  for (; e + 16 <= n; e += 16) {
    __m512i w = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i*)(src + e)));
    __m512d lo = _mm512_cvtepi32_pd(_mm512_castsi512_si256(w));
    __m512d hi = _mm512_cvtepi32_pd(_mm512_extracti64x4_epi64(w, 1));
    _mm256_storeu_ps(out + e, _mm512_cvtpd_ps(_mm512_add_pd(_mm512_mul_pd(lo, va), vb)));
    _mm256_storeu_ps(out + e + 8, _mm512_cvtpd_ps(_mm512_add_pd(_mm512_mul_pd(hi, va), vb)));
  }
  for (; e < n; e++) out[e] = c->lut[src[e]];
}

__attribute__((target("avx2"))) static void convert_avx2(const uint8_t* restrict src, float* restrict out, size_t n, const Conv* c) {
  const __m256d va = _mm256_set1_pd(c->a), vb = _mm256_set1_pd(c->b);
  size_t e = 0;
  for (; e + 8 <= n; e += 8) {
    __m256i w = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i*)(src + e)));
    __m256d lo = _mm256_cvtepi32_pd(_mm256_castsi256_si128(w));
    __m256d hi = _mm256_cvtepi32_pd(_mm256_extracti128_si256(w, 1));
    _mm_storeu_ps(out + e, _mm256_cvtpd_ps(_mm256_add_pd(_mm256_mul_pd(lo, va), vb)));
    _mm_storeu_ps(out + e + 4, _mm256_cvtpd_ps(_mm256_add_pd(_mm256_mul_pd(hi, va), vb)));
  }
  for (; e < n; e++) out[e] = c->lut[src[e]];
}

static void convert_table(const uint8_t* restrict src, float* restrict out, size_t n, const Conv* c) {
  for (size_t e = 0; e < n; e++) out[e] = c->lut[src[e]];
}

typedef void (*ConvertFn)(const uint8_t* restrict, float* restrict, size_t, const Conv*);
// The cap configure() set (SLIMFIT_ISA, read on the JS side: tests run every path on one machine): 2 = AVX-512,
// 1 = AVX2, 0 = the table. The choice is made once, at the first conversion (or isa() call).
static int isa_cap = 2;
static ConvertFn pick_convert(void) {
  __builtin_cpu_init();
  if (isa_cap >= 2 && __builtin_cpu_supports("avx512f")) return convert_avx512;
  if (isa_cap >= 1 && __builtin_cpu_supports("avx2")) return convert_avx2;
  return convert_table;
}
static ConvertFn convert_fn = NULL;
static pthread_once_t convert_once = PTHREAD_ONCE_INIT;
static void init_convert(void) { convert_fn = pick_convert(); }
static const char* convert_name(void) {
  pthread_once(&convert_once, init_convert);
  return convert_fn == convert_avx512 ? "avx512" : convert_fn == convert_avx2 ? "avx2" : "generic";
}

static void make_conv(Conv* c, double a, double b) {
  c->a = a; c->b = b;
  for (int v = 0; v < 256; v++) c->lut[v] = (float)((double)v * a + b);
  pthread_once(&convert_once, init_convert);
}
static inline void convert_row(const uint8_t* src, float* out, size_t n, const Conv* c) { convert_fn(src, out, n, c); }

static napi_value throw_err(napi_env env, const char* code, const char* msg) {
  napi_throw_error(env, code, msg);
  return NULL;
}

static void finalize(napi_env env, void* data, void* hint) {
  Map* m = (Map*)data;
  pthread_mutex_lock(&maps_lock);
  if (--m->refs == 0) {
    for (Map** pp = &maps; *pp; pp = &(*pp)->next) if (*pp == m) { *pp = m->next; break; }
    munmap(m->base, m->size);
    close(m->fd);
    free(m);
  }
  pthread_mutex_unlock(&maps_lock);
  (void)env; (void)hint;
}

// open(path) -> handle; the whole file is mapped read-only.
static napi_value js_open(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char path[4096];
  size_t len = 0;
  if (argc < 1 || napi_get_value_string_utf8(env, argv[0], path, sizeof path, &len) != napi_ok) return throw_err(env, "EINVAL", "open(path) needs a path");
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return throw_err(env, errno == ENOENT ? "ENOENT" : "EIO", strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0 || st.st_size <= 0) { close(fd); return throw_err(env, "EIO", "cannot map an empty file"); }
  pthread_mutex_lock(&maps_lock);
  Map* m = maps;
  while (m && !(m->dev == st.st_dev && m->ino == st.st_ino && m->size == (size_t)st.st_size)) m = m->next;
  if (m) {
    m->refs++;
    close(fd);
  } else {
    void* p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) { int e = errno; close(fd); pthread_mutex_unlock(&maps_lock); return throw_err(env, "EIO", strerror(e)); }
    m = (Map*)malloc(sizeof(Map));
    m->fd = fd; m->base = (uint8_t*)p; m->size = (size_t)st.st_size; m->dev = st.st_dev; m->ino = st.st_ino; m->refs = 1;
    m->next = maps; maps = m;
  }
  pthread_mutex_unlock(&maps_lock);
  napi_value ext;
  napi_create_external(env, m, finalize, NULL, &ext);
  return ext;
}

static int get_buf(napi_env env, napi_value v, uint8_t** data, size_t* bytes) {
  bool is = false;
  if (napi_is_typedarray(env, v, &is) == napi_ok && is) {
    napi_typedarray_type t; size_t length, offset; napi_value ab; void* d;
    napi_get_typedarray_info(env, v, &t, &length, &d, &ab, &offset);
    size_t esz = (t == napi_float32_array || t == napi_uint32_array || t == napi_int32_array) ? 4 : (t == napi_float64_array || t == napi_bigint64_array || t == napi_biguint64_array) ? 8 : (t == napi_uint16_array || t == napi_int16_array) ? 2 : 1;
    *data = (uint8_t*)d; *bytes = length * esz;
    return 1;
  }
  return 0;
}

// gather(handle, dataStart, rowBytes, rows: Float64Array, dest: Uint32Array, count, out: TypedArray, mode, a, b)
// For r < count: row rows[r] goes to output sample dest[r]. mode 0: copy bytes; mode 1: uint8 -> float32 out = x * a + b.
// Returns 0, or -1 if the file is now shorter than a row needs (checked with fstat, and by the SIGBUS guard).
static napi_value js_gather(napi_env env, napi_callback_info info) {
  size_t argc = 10;
  napi_value argv[10];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 10) return throw_err(env, "EINVAL", "gather needs 10 arguments");
  Map* m; double dataStart, rowBytes, countD, modeD, a, b;
  napi_get_value_external(env, argv[0], (void**)&m);
  napi_get_value_double(env, argv[1], &dataStart);
  napi_get_value_double(env, argv[2], &rowBytes);
  napi_get_value_double(env, argv[5], &countD);
  napi_get_value_double(env, argv[7], &modeD);
  napi_get_value_double(env, argv[8], &a);
  napi_get_value_double(env, argv[9], &b);
  uint8_t *rowsP, *destP, *outP; size_t rowsB, destB, outB;
  if (!get_buf(env, argv[3], &rowsP, &rowsB) || !get_buf(env, argv[4], &destP, &destB) || !get_buf(env, argv[6], &outP, &outB)) return throw_err(env, "EINVAL", "gather: bad buffers");
  const double* rows = (const double*)rowsP;
  const uint32_t* dest = (const uint32_t*)destP;
  size_t count = (size_t)countD, rb = (size_t)rowBytes, ds = (size_t)dataStart;
  int mode = (int)modeD;
  if (count * 8 > rowsB || count * 4 > destB) return throw_err(env, "ERANGE", "gather: index arrays too short");
  size_t outRow = mode == 1 ? rb * 4 : rb;
  size_t maxRow = 0;
  for (size_t r = 0; r < count; r++) {
    if ((size_t)rows[r] > maxRow) maxRow = (size_t)rows[r];
    if ((size_t)dest[r] * outRow + outRow > outB) return throw_err(env, "ERANGE", "gather: output too small");
  }
  struct stat st;
  if (fstat(m->fd, &st) != 0 || (size_t)st.st_size < ds + (maxRow + 1) * rb || ds + (maxRow + 1) * rb > m->size) {
    napi_value res; napi_create_int32(env, -1, &res); return res;
  }
  pthread_once(&once, install);
  sigjmp_buf jb;
  if (sigsetjmp(jb, 1)) {
    tl_jump = NULL;
    napi_value res; napi_create_int32(env, -1, &res); return res;
  }
  tl_jump = &jb;
  Conv conv;
  static __thread uint8_t row_buf[65536];
  if (mode == 1) make_conv(&conv, a, b);
  if (mode == 1) {
    // Gather the raw rows first (chunks of up to 64 kB), then convert them: converting straight from random mapped
    // rows into the (4x larger) float output is several times slower (cache traffic), as numpy's gather-then-cast shows.
    size_t per = rb <= sizeof row_buf ? sizeof row_buf / rb : 0;
    size_t r = 0;
    while (r < count) {
      if (per == 0) { convert_row(m->base + ds + (size_t)rows[r] * rb, (float*)(outP + (size_t)dest[r] * outRow), rb, &conv); r++; continue; }
      size_t end = r + per < count ? r + per : count;
      for (size_t q = r; q < end; q++) memcpy(row_buf + (q - r) * rb, m->base + ds + (size_t)rows[q] * rb, rb);
      for (size_t q = r; q < end; q++) convert_row(row_buf + (q - r) * rb, (float*)(outP + (size_t)dest[q] * outRow), rb, &conv);
      r = end;
    }
  } else {
    for (size_t r = 0; r < count; r++) memcpy(outP + (size_t)dest[r] * outRow, m->base + ds + (size_t)rows[r] * rb, rb);
  }
  tl_jump = NULL;
  napi_value res; napi_create_int32(env, 0, &res);
  return res;
}

// Cleared the first time the kernel refuses RWF_NOWAIT reads (old kernels, some file systems): plain preads then.
static volatile int nowait_ok = 1;

// pgather(fd, dataStart, rowBytes, rows, dest, count, out, mode, a, b): like gather, with one pread per row
// (no mapping, so nothing of the file counts in RSS). Returns 0, or -1 if the file ended early.
static napi_value js_pgather(napi_env env, napi_callback_info info) {
  size_t argc = 10;
  napi_value argv[10];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 10) return throw_err(env, "EINVAL", "pgather needs 10 arguments");
  double fdD, dataStart, rowBytes, countD, modeD, a, b;
  napi_get_value_double(env, argv[0], &fdD);
  napi_get_value_double(env, argv[1], &dataStart);
  napi_get_value_double(env, argv[2], &rowBytes);
  napi_get_value_double(env, argv[5], &countD);
  napi_get_value_double(env, argv[7], &modeD);
  napi_get_value_double(env, argv[8], &a);
  napi_get_value_double(env, argv[9], &b);
  uint8_t *rowsP, *destP, *outP; size_t rowsB, destB, outB;
  if (!get_buf(env, argv[3], &rowsP, &rowsB) || !get_buf(env, argv[4], &destP, &destB) || !get_buf(env, argv[6], &outP, &outB)) return throw_err(env, "EINVAL", "pgather: bad buffers");
  const double* rows = (const double*)rowsP;
  const uint32_t* dest = (const uint32_t*)destP;
  size_t count = (size_t)countD, rb = (size_t)rowBytes;
  int fd = (int)fdD, mode = (int)modeD;
  if (count * 8 > rowsB || count * 4 > destB) return throw_err(env, "ERANGE", "pgather: index arrays too short");
  size_t outRow = mode == 1 ? rb * 4 : rb;
  uint8_t stack[65536];
  uint8_t* tmp = mode == 1 ? (rb <= sizeof stack ? stack : (uint8_t*)malloc(rb)) : NULL;
  int status = 0;
  Conv conv;
  if (mode == 1) make_conv(&conv, a, b);
  // Each row is first read with RWF_NOWAIT (page cache only). The first row not in the cache means the data is cold:
  // then every remaining row of the call is hinted with posix_fadvise(WILLNEED) so the disk serves them in parallel,
  // and the reads block as usual. A warm batch costs no extra system call, whatever the machine's load.
  int hinted = 0;
  for (size_t r = 0; r < count && status == 0; r++) {
    if ((size_t)dest[r] * outRow + outRow > outB) { status = -2; break; }
    uint8_t* dst = mode == 1 ? tmp : outP + (size_t)dest[r] * outRow;
    off_t pos = (off_t)dataStart + (off_t)rows[r] * (off_t)rb;
    size_t done = 0;
#ifdef RWF_NOWAIT
    if (!hinted && nowait_ok) {
      struct iovec iov = { dst, rb };
      ssize_t got = preadv2(fd, &iov, 1, pos, RWF_NOWAIT);
      if (got > 0) done = (size_t)got;
      else if (got < 0 && errno == EAGAIN) {
        for (size_t q = r; q < count; q++) posix_fadvise(fd, (off_t)dataStart + (off_t)rows[q] * (off_t)rb, (off_t)rb, POSIX_FADV_WILLNEED);
        hinted = 1;
      } else if (got < 0 && (errno == EOPNOTSUPP || errno == EINVAL || errno == ENOSYS)) nowait_ok = 0;
    }
#endif
    while (done < rb) {
      ssize_t got = pread(fd, dst + done, rb - done, pos + (off_t)done);
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) { status = -1; break; }
      done += (size_t)got;
    }
    if (status == 0 && mode == 1) {
      convert_row(tmp, (float*)(outP + (size_t)dest[r] * outRow), rb, &conv);
    }
  }
  if (tmp && tmp != stack) free(tmp);
  if (status == -2) return throw_err(env, "ERANGE", "pgather: output too small");
  napi_value res; napi_create_int32(env, status, &res);
  return res;
}

// willneed(fd, dataStart, rowBytes, rows, count): ask the kernel to start reading these rows now (posix_fadvise
// WILLNEED), so a batch's reads from a cold disk overlap instead of waiting one by one.
static napi_value js_willneed(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 5) return throw_err(env, "EINVAL", "willneed needs 5 arguments");
  double fdD, dataStart, rowBytes, countD;
  napi_get_value_double(env, argv[0], &fdD);
  napi_get_value_double(env, argv[1], &dataStart);
  napi_get_value_double(env, argv[2], &rowBytes);
  napi_get_value_double(env, argv[4], &countD);
  uint8_t* rowsP; size_t rowsB;
  if (!get_buf(env, argv[3], &rowsP, &rowsB)) return throw_err(env, "EINVAL", "willneed: bad buffer");
  const double* rows = (const double*)rowsP;
  size_t count = (size_t)countD;
  if (count * 8 > rowsB) return throw_err(env, "ERANGE", "willneed: rows too short");
  for (size_t r = 0; r < count; r++) {
    posix_fadvise((int)fdD, (off_t)dataStart + (off_t)rows[r] * (off_t)rowBytes, (off_t)rowBytes, POSIX_FADV_WILLNEED);
  }
  return NULL;
}

// The murmur3-style mix of src/core/permutation.ts hash32, in uint32 arithmetic (Math.imul and >>> give the same bits).
static inline uint32_t mix32(uint32_t a, uint32_t b) {
  uint32_t h = ((a ^ 0x9e3779b9u) * 0x85ebca6bu) ^ ((b + 0x7f4a7c15u) * 0xc2b2ae35u);
  h ^= h >> 16; h *= 0x85ebca6bu; h ^= h >> 13; h *= 0xc2b2ae35u; h ^= h >> 16;
  return h;
}

// permute(keys: Uint32Array, half, n, start, count, out: Float64Array): out[k] = P.at(start + k) for the Feistel
// permutation P of [0, n) with these round keys (permutation.ts: the same network, cycle-walking above n).
static napi_value js_permute(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 6) return throw_err(env, "EINVAL", "permute needs 6 arguments");
  double halfD, nD, startD, countD;
  napi_get_value_double(env, argv[1], &halfD);
  napi_get_value_double(env, argv[2], &nD);
  napi_get_value_double(env, argv[3], &startD);
  napi_get_value_double(env, argv[4], &countD);
  uint8_t *keysP, *outP; size_t keysB, outB;
  if (!get_buf(env, argv[0], &keysP, &keysB) || !get_buf(env, argv[5], &outP, &outB)) return throw_err(env, "EINVAL", "permute: bad buffers");
  const uint32_t* keys = (const uint32_t*)keysP;
  size_t rounds = keysB / 4, count = (size_t)countD;
  unsigned half = (unsigned)halfD;
  uint64_t n = (uint64_t)nD, start = (uint64_t)startD, mask = (half >= 32 ? 0 : ((uint64_t)1 << half)) - 1;
  if (half < 1 || half > 26 || rounds == 0 || count * 8 > outB || startD < 0 || nD > 4503599627370496.0 || start + count > n) return throw_err(env, "ERANGE", "permute: bad arguments");
  double* out = (double*)outP;
  // Eight positions at a time: each round is one long chain of multiplies, so interleaving independent chains lets
  // the core overlap them (one at a time ran at the JS speed, ~40 ns per id). Cycle-walking (y >= n) continues per id.
  enum { L = 8 };
  for (size_t k0 = 0; k0 < count; k0 += L) {
    size_t m = count - k0 < L ? count - k0 : L;
    uint32_t l[L], r[L];
    for (size_t j = 0; j < L; j++) { uint64_t y = start + k0 + (j < m ? j : 0); l[j] = (uint32_t)(y >> half); r[j] = (uint32_t)(y & mask); }
    for (size_t q = 0; q < rounds; q++) {
      for (size_t j = 0; j < L; j++) { uint32_t t = l[j] ^ (mix32(r[j], keys[q]) & (uint32_t)mask); l[j] = r[j]; r[j] = t; }
    }
    for (size_t j = 0; j < m; j++) {
      uint64_t y = ((uint64_t)l[j] << half) | r[j];
      while (y >= n) {
        uint32_t a = (uint32_t)(y >> half), b = (uint32_t)(y & mask);
        for (size_t q = 0; q < rounds; q++) { uint32_t t = a ^ (mix32(b, keys[q]) & (uint32_t)mask); a = b; b = t; }
        y = ((uint64_t)a << half) | b;
      }
      out[k0 + j] = (double)y;
    }
  }
  return NULL;
}

// configure({ isa }): '' | 'avx512' | 'avx2' | 'generic' caps the conversion path; called by the JS side right after
// loading. Throws on an unknown value, or when the path was already chosen under another cap.
static napi_value js_configure(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], v;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char isa[16] = "";
  size_t len = 0;
  if (argc >= 1 && napi_get_named_property(env, argv[0], "isa", &v) == napi_ok) napi_get_value_string_utf8(env, v, isa, sizeof isa, &len);
  int cap = !isa[0] || strcmp(isa, "avx512") == 0 ? 2 : strcmp(isa, "avx2") == 0 ? 1 : strcmp(isa, "generic") == 0 ? 0 : -1;
  if (cap < 0) return throw_err(env, "EINVAL", "configure: isa must be '', avx512, avx2 or generic");
  pthread_mutex_lock(&maps_lock);
  int late = convert_fn != NULL && cap != isa_cap;
  if (!late) isa_cap = cap;
  pthread_mutex_unlock(&maps_lock);
  if (late) return throw_err(env, "EINVAL", "configure: the conversion path was already chosen with another isa");
  return NULL;
}

// isa(): the uint8 -> float32 conversion path in use ('avx512', 'avx2' or 'generic').
static napi_value js_isa(napi_env env, napi_callback_info info) {
  napi_value s;
  napi_create_string_utf8(env, convert_name(), NAPI_AUTO_LENGTH, &s);
  (void)info;
  return s;
}

NAPI_MODULE_INIT() {
  napi_value f2;
  napi_create_function(env, "configure", NAPI_AUTO_LENGTH, js_configure, NULL, &f2);
  napi_set_named_property(env, exports, "configure", f2);
  napi_create_function(env, "isa", NAPI_AUTO_LENGTH, js_isa, NULL, &f2);
  napi_set_named_property(env, exports, "isa", f2);
  napi_create_function(env, "permute", NAPI_AUTO_LENGTH, js_permute, NULL, &f2);
  napi_set_named_property(env, exports, "permute", f2);
  napi_value f1;
  napi_create_function(env, "willneed", NAPI_AUTO_LENGTH, js_willneed, NULL, &f1);
  napi_set_named_property(env, exports, "willneed", f1);
  napi_value f0;
  napi_create_function(env, "pgather", NAPI_AUTO_LENGTH, js_pgather, NULL, &f0);
  napi_set_named_property(env, exports, "pgather", f0);
  napi_value f;
  napi_create_function(env, "open", NAPI_AUTO_LENGTH, js_open, NULL, &f);
  napi_set_named_property(env, exports, "open", f);
  napi_create_function(env, "gather", NAPI_AUTO_LENGTH, js_gather, NULL, &f);
  napi_set_named_property(env, exports, "gather", f);
  return exports;
}

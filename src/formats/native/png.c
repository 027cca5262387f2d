// slimfit_png: batch decode of small 8-bit PNGs (chunks, CRCs, zlib inflate, row filters), for `slimfit convert`.
// Why: @napi-rs/image costs ~13 us per call for a 28x28 PNG, most of it per-call overhead, and libpng ~5 us (its
// per-file setup); notMNIST-style datasets are hundreds of thousands of such files. Only the plain case is handled
// (8-bit gray / gray+alpha / RGB / RGBA, not interlaced, no palette or tRNS, exactly the target size and channel
// count); every other file, and every file with anything wrong in it, is reported back so the caller decodes it with
// @napi-rs/image and gets its pixels or its reason.
// Also reads files itself (readFiles), so the decode workers, not the main thread, pay for open/read/close.
#include <node_api.h>
#include <zlib.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>
#include <errno.h>
#include <sys/stat.h>

static inline uint32_t be32(const uint8_t* p) { return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3]; }

static inline int paeth(int a, int b, int c) {
  int p = a + b - c, pa = abs(p - a), pb = abs(p - b), pc = abs(p - c);
  return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

// Per-thread inflate state and raw (filtered) row buffer, reused across files (the decode workers are threads).
static __thread z_stream zs;
static __thread int zsReady;
static __thread uint8_t* raw;
static __thread size_t rawCap;

// 0 = decoded into out (w*h*c bytes), 1 = not handled here (decode it the general way). Handles exactly: 8-bit
// gray / gray+alpha / RGB / RGBA, not interlaced, no tRNS/PLTE, every chunk CRC valid, one zlib stream (adler32
// checked) that inflates to exactly h rows, filters 0-4, IEND present.
static int decode_one(const uint8_t* d, size_t n, uint32_t w, uint32_t h, int c, uint8_t* out) {
  static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', 13, 10, 26, 10};
  if (n < 8 + 25 || memcmp(d, sig, 8) != 0) return 1;
  const size_t stride = (size_t)w * c, rawSize = (stride + 1) * h;
  if (!zsReady) { memset(&zs, 0, sizeof zs); if (inflateInit(&zs) != Z_OK) return 1; zsReady = 1; }
  else if (inflateReset(&zs) != Z_OK) return 1;
  if (rawCap < rawSize) {
    uint8_t* nb = (uint8_t*)realloc(raw, rawSize);
    if (!nb) return 1;
    raw = nb; rawCap = rawSize;
  }
  zs.next_out = raw; zs.avail_out = (uInt)rawSize;
  size_t pos = 8;
  int seenHdr = 0, idat = 0 /* 0 none yet, 1 in IDATs, 2 after them */, ended = 0;
  for (;;) {
    if (pos + 12 > n) return 1;
    const uint32_t len = be32(d + pos);
    if (len > n - pos - 12) return 1;
    const uint8_t* type = d + pos + 4;
    const uint8_t* body = type + 4;
    if ((uint32_t)crc32(0, type, len + 4) != be32(body + len)) return 1;
    pos += 12 + (size_t)len;
    if (!seenHdr) {
      if (memcmp(type, "IHDR", 4) != 0 || len != 13) return 1;
      const int ctype = body[9];
      const int pc = ctype == 0 ? 1 : ctype == 4 ? 2 : ctype == 2 ? 3 : ctype == 6 ? 4 : 0;
      if (be32(body) != w || be32(body + 4) != h || body[8] != 8 || pc != c || body[10] || body[11] || body[12]) return 1;
      seenHdr = 1;
      continue;
    }
    if (memcmp(type, "IDAT", 4) == 0) {
      if (idat == 2 || ended) return 1;
      idat = 1;
      zs.next_in = (Bytef*)body; zs.avail_in = len;
      while (zs.avail_in > 0) {
        const int r = inflate(&zs, Z_NO_FLUSH);
        if (r == Z_STREAM_END) { ended = 1; if (zs.avail_in) return 1; break; }
        if (r != Z_OK) return 1;
        if (zs.avail_out == 0 && zs.avail_in > 0) {
          // Output is full: only the stream's end (adler32) may remain.
          const int r2 = inflate(&zs, Z_NO_FLUSH);
          if (r2 != Z_STREAM_END || zs.avail_in) return 1;
          ended = 1;
          break;
        }
      }
      continue;
    }
    if (idat == 1) idat = 2;
    if (memcmp(type, "IEND", 4) == 0) break;
    if (!(type[0] & 0x20)) return 1;              // another critical chunk (PLTE, ...): not ours
    if (memcmp(type, "tRNS", 4) == 0) return 1;    // transparency changes the pixels
  }
  if (!ended) {
    if (!idat) return 1;
    zs.next_in = NULL; zs.avail_in = 0;
    if (inflate(&zs, Z_FINISH) != Z_STREAM_END) return 1;
  }
  if (zs.total_out != rawSize) return 1;
  // Unfilter into out (rows of `stride` bytes; the previous output row is "up").
  for (uint32_t y = 0; y < h; y++) {
    const uint8_t* src = raw + (size_t)y * (stride + 1);
    const uint8_t f = src[0];
    src++;
    uint8_t* dst = out + (size_t)y * stride;
    const uint8_t* up = y ? dst - stride : NULL;
    switch (f) {
      case 0: memcpy(dst, src, stride); break;
      case 1:
        for (size_t i = 0; i < stride; i++) dst[i] = (uint8_t)(src[i] + (i >= (size_t)c ? dst[i - c] : 0));
        break;
      case 2:
        if (up) for (size_t i = 0; i < stride; i++) dst[i] = (uint8_t)(src[i] + up[i]);
        else memcpy(dst, src, stride);
        break;
      case 3:
        for (size_t i = 0; i < stride; i++) {
          const int a = i >= (size_t)c ? dst[i - c] : 0, b = up ? up[i] : 0;
          dst[i] = (uint8_t)(src[i] + ((a + b) >> 1));
        }
        break;
      case 4:
        for (size_t i = 0; i < stride; i++) {
          const int a = i >= (size_t)c ? dst[i - c] : 0, b = up ? up[i] : 0, cc = (up && i >= (size_t)c) ? up[i - c] : 0;
          dst[i] = (uint8_t)(src[i] + paeth(a, b, cc));
        }
        break;
      default: return 1;
    }
  }
  return 0;
}

static int get_u8(napi_env env, napi_value v, uint8_t** d, size_t* n) {
  napi_typedarray_type t; size_t len; void* p; napi_value ab; size_t off;
  bool is = false;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is) return 0;
  napi_get_typedarray_info(env, v, &t, &len, &p, &ab, &off);
  size_t esz = (t == napi_uint32_array || t == napi_int32_array || t == napi_float32_array) ? 4 : (t == napi_float64_array) ? 8 : (t == napi_uint16_array || t == napi_int16_array) ? 2 : 1;
  *d = (uint8_t*)p; *n = len * esz;
  return 1;
}

// decode(data: Uint8Array, offsets: Uint32Array (n+1), w, h, c, out: Uint8Array (n*w*h*c), status: Uint8Array (n)):
// file i is data[offsets[i], offsets[i+1]); its pixels go to out[i*w*h*c ...] with status 0, else status 1.
static napi_value js_decode(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  uint8_t *data, *offP, *out, *st; size_t dataN, offN, outN, stN;
  uint32_t w, h, c;
  if (argc < 7 || !get_u8(env, argv[0], &data, &dataN) || !get_u8(env, argv[1], &offP, &offN) || !get_u8(env, argv[5], &out, &outN) || !get_u8(env, argv[6], &st, &stN)
      || napi_get_value_uint32(env, argv[2], &w) != napi_ok || napi_get_value_uint32(env, argv[3], &h) != napi_ok || napi_get_value_uint32(env, argv[4], &c) != napi_ok) {
    napi_throw_error(env, "EINVAL", "decode(data, offsets, w, h, c, out, status): bad arguments");
    return NULL;
  }
  const uint32_t* off = (const uint32_t*)offP;
  size_t n = offN / 4 - 1, sample = (size_t)w * h * c;
  if (offN < 4 || stN < n || outN < n * sample) { napi_throw_range_error(env, "ERANGE", "decode: output too small"); return NULL; }
  for (size_t i = 0; i < n; i++) {
    if (off[i] > off[i + 1] || off[i + 1] > dataN) { st[i] = 1; continue; }
    st[i] = (uint8_t)decode_one(data + off[i], off[i + 1] - off[i], w, h, (int)c, out + i * sample);
  }
  return NULL;
}

// readFiles(paths: string (NUL-separated), count, maxBytes, maxTotal) -> { data, offsets, errors, read }: the bytes of
// the first `read` files back to back (it stops once maxTotal bytes are held, after at least one file); errors[i] is 0,
// an errno, or -1 when the file exceeds maxBytes (its data is empty).
static napi_value js_read_files(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  size_t plen = 0;
  uint32_t count = 0; double maxD = 0, totalD = 0;
  if (argc < 4 || napi_get_value_string_utf8(env, argv[0], NULL, 0, &plen) != napi_ok || napi_get_value_uint32(env, argv[1], &count) != napi_ok || napi_get_value_double(env, argv[2], &maxD) != napi_ok || napi_get_value_double(env, argv[3], &totalD) != napi_ok) {
    napi_throw_error(env, "EINVAL", "readFiles(paths, count, maxBytes, maxTotal): bad arguments");
    return NULL;
  }
  char* paths = (char*)malloc(plen + 1);
  napi_get_value_string_utf8(env, argv[0], paths, plen + 1, &plen);
  size_t cap = 1 << 16, used = 0, maxBytes = (size_t)maxD, maxTotal = (size_t)totalD;
  // Optional 5th argument: an ArrayBuffer to read into (recycled by the caller); reading stops before a file that
  // does not fit, unless it is the first one, which then gets memory of its own.
  void* extData = NULL;
  size_t extCap = 0;
  bool isAb = false;
  int external = argc >= 5 && napi_is_arraybuffer(env, argv[4], &isAb) == napi_ok && isAb && napi_get_arraybuffer_info(env, argv[4], &extData, &extCap) == napi_ok && extCap > 0;
  uint8_t* buf = external ? (uint8_t*)extData : (uint8_t*)malloc(cap);
  if (external) cap = extCap;
  napi_value offsV, errsV, offAb, errAb;
  uint32_t* offs; int32_t* errs;
  napi_create_arraybuffer(env, 4 * ((size_t)count + 1), (void**)&offs, &offAb);
  napi_create_arraybuffer(env, 4 * (size_t)(count ? count : 1), (void**)&errs, &errAb);
  const char* p = paths;
  uint32_t i = 0;
  // Files of one folder come in a row: open the folder once and each file relative to it (one path step, not all).
  int dfd = -1;
  size_t dlen = 0;
  char dname[4096];
  for (; i < count && (i == 0 || used < maxTotal); i++) {
    offs[i] = (uint32_t)used;
    errs[i] = 0;
    size_t len = strlen(p);
    const char* slash = strrchr(p, '/');
    int fd;
    if (slash && slash > p && (size_t)(slash - p) < sizeof dname) {
      const size_t dl = (size_t)(slash - p);
      if (dfd < 0 || dl != dlen || memcmp(dname, p, dl) != 0) {
        if (dfd >= 0) close(dfd);
        memcpy(dname, p, dl); dname[dl] = 0; dlen = dl;
        dfd = open(dname, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      }
      fd = dfd >= 0 ? openat(dfd, slash + 1, O_RDONLY | O_CLOEXEC) : open(p, O_RDONLY | O_CLOEXEC);
    } else fd = open(p, O_RDONLY | O_CLOEXEC);
    p += len + 1;
    if (fd < 0) { errs[i] = errno; continue; }
    struct stat s;
    if (fstat(fd, &s) != 0) { errs[i] = errno; close(fd); continue; }
    if ((size_t)s.st_size > maxBytes) { errs[i] = -1; close(fd); continue; }
    size_t want = (size_t)s.st_size;
    if (used + want >= 0xffffffffu) { errs[i] = EFBIG; close(fd); continue; }
    if (used + want > cap && external) {
      if (used > 0) { close(fd); break; } // file i is left for the next call
      external = 0; // the first file alone is bigger than the given buffer
      cap = 1 << 16;
      buf = (uint8_t*)malloc(cap);
      if (!buf) { errs[i] = ENOMEM; close(fd); continue; }
    }
    if (used + want > cap) {
      while (used + want > cap) cap *= 2;
      uint8_t* nb = (uint8_t*)realloc(buf, cap);
      if (!nb) { errs[i] = ENOMEM; close(fd); continue; }
      buf = nb;
    }
    size_t got = 0;
    while (got < want) {
      ssize_t r = read(fd, buf + used + got, want - got);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) { errs[i] = errno; break; }
      if (r == 0) break; // shrank while reading: keep what is there (the decoder reports it)
      got += (size_t)r;
    }
    close(fd);
    if (errs[i] == 0) used += got;
  }
  if (dfd >= 0) close(dfd);
  uint32_t nread = i;
  for (; i <= count; i++) offs[i] = (uint32_t)used;
  for (i = nread; i < count; i++) errs[i] = 0;
  free(paths);
  napi_value dataV;
  if (external) napi_create_typedarray(env, napi_uint8_array, used, argv[4], 0, &dataV);
  else {
    void* dst;
    napi_create_buffer_copy(env, used, buf, &dst, &dataV);
    free(buf);
  }
  napi_create_typedarray(env, napi_uint32_array, (size_t)count + 1, offAb, 0, &offsV);
  napi_create_typedarray(env, napi_int32_array, count ? count : 1, errAb, 0, &errsV);
  napi_value res;
  napi_create_object(env, &res);
  napi_set_named_property(env, res, "data", dataV);
  napi_set_named_property(env, res, "offsets", offsV);
  napi_set_named_property(env, res, "errors", errsV);
  napi_value readV;
  napi_create_uint32(env, nread, &readV);
  napi_set_named_property(env, res, "read", readV);
  return res;
}

// The same 64-bit hash as src/util/hash64.ts (bit for bit: the duplicate index mixes both), and the per-channel
// value counts of src/util/histogram.ts, for decoded samples while they are still in cache.
static inline uint32_t rotl32(uint32_t x, int r) { return (x << r) | (x >> (32 - r)); }
static inline uint32_t fmix32(uint32_t h) { h ^= h >> 16; h *= 0x85ebca6bu; h ^= h >> 13; h *= 0xc2b2ae35u; return h ^ (h >> 16); }
static void hash64(const uint8_t* s, size_t len, uint32_t* out) {
  const size_t n4 = len >> 2;
  uint32_t h1 = 0x9747b28cu ^ (uint32_t)len, h2 = 0x5bd1e995u ^ (uint32_t)len;
  for (size_t i = 0; i < n4; i++) {
    uint32_t k;
    memcpy(&k, s + 4 * i, 4);
    h1 ^= rotl32(k * 0xcc9e2d51u, 15) * 0x1b873593u; h1 = rotl32(h1, 13); h1 = h1 * 5 + 0xe6546b64u;
    h2 ^= rotl32(k * 0x85ebca77u, 17) * 0xc2b2ae3du; h2 = rotl32(h2, 11); h2 = h2 * 5 + 0x52dce729u;
  }
  uint32_t t = 0;
  for (size_t i = len; i > n4 * 4; i--) t = (t << 8) | s[i - 1];
  if (len & 3) { h1 ^= rotl32(t * 0xcc9e2d51u, 15) * 0x1b873593u; h2 ^= rotl32(t * 0x85ebca77u, 17) * 0xc2b2ae3du; }
  h1 = fmix32(h1); h2 = fmix32(h2 ^ 0x27d4eb2fu);
  h1 += h2; h2 += h1;
  out[0] = h1; out[1] = h2;
}

// digest(x: Uint8Array, sampleBytes, n, channels, hashes: Uint32Array (2n), counts: Float64Array (256*channels)):
// hashes[2i], hashes[2i+1] = hash64 of sample i; counts[k*256+v] += how often channel k holds value v.
static napi_value js_digest(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  uint8_t *x, *hp, *cp; size_t xn, hn, cn;
  uint32_t sb, n, c;
  if (argc < 6 || !get_u8(env, argv[0], &x, &xn) || !get_u8(env, argv[4], &hp, &hn) || !get_u8(env, argv[5], &cp, &cn)
      || napi_get_value_uint32(env, argv[1], &sb) != napi_ok || napi_get_value_uint32(env, argv[2], &n) != napi_ok
      || napi_get_value_uint32(env, argv[3], &c) != napi_ok || c == 0 || c > 4) {
    napi_throw_error(env, "EINVAL", "digest(x, sampleBytes, n, channels, hashes, counts): bad arguments");
    return NULL;
  }
  if ((size_t)sb * n > xn || hn < 8 * (size_t)n || cn < 8 * 256 * (size_t)c) { napi_throw_range_error(env, "ERANGE", "digest: arrays too small"); return NULL; }
  uint32_t* h = (uint32_t*)hp;
  double* counts = (double*)cp;
  for (uint32_t i = 0; i < n; i++) hash64(x + (size_t)i * sb, sb, h + 2 * (size_t)i);
  const size_t len = (size_t)sb * n;
  uint32_t lanes[4][4 * 256];
  memset(lanes, 0, sizeof lanes);
  if (c == 1) {
    size_t i = 0;
    for (; i + 4 <= len; i += 4) { lanes[0][x[i]]++; lanes[1][x[i + 1]]++; lanes[2][x[i + 2]]++; lanes[3][x[i + 3]]++; }
    for (; i < len; i++) lanes[0][x[i]]++;
    for (int v = 0; v < 256; v++) counts[v] += (double)lanes[0][v] + lanes[1][v] + lanes[2][v] + lanes[3][v];
  } else {
    for (size_t i = 0; i < len; i++) lanes[0][(i % c) * 256 + x[i]]++;
    for (uint32_t k = 0; k < 256 * c; k++) counts[k] += (double)lanes[0][k];
  }
  return NULL;
}

NAPI_MODULE_INIT() {
  napi_value f;
  napi_create_function(env, "decode", NAPI_AUTO_LENGTH, js_decode, NULL, &f);
  napi_set_named_property(env, exports, "decode", f);
  napi_create_function(env, "readFiles", NAPI_AUTO_LENGTH, js_read_files, NULL, &f);
  napi_set_named_property(env, exports, "readFiles", f);
  napi_create_function(env, "digest", NAPI_AUTO_LENGTH, js_digest, NULL, &f);
  napi_set_named_property(env, exports, "digest", f);
  return exports;
}

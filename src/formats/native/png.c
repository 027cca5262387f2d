// slimfit_png: batch decode of small 8-bit PNGs (chunks, CRCs, zlib inflate, row filters), for `slimfit convert`.
// Why: @napi-rs/image costs ~13 us per call for a 28x28 PNG, most of it per-call overhead, and libpng ~5 us (its
// per-file setup); notMNIST-style datasets are hundreds of thousands of such files. Only the plain case is handled
// (8-bit gray / gray+alpha / RGB / RGBA, not interlaced, no palette or tRNS, exactly the target size and channel
// count); every other file, and every file with anything wrong in it, is reported back so the caller decodes it with
// @napi-rs/image and gets its pixels or its reason.
// Also lists image folders (listImages), reads files (readFiles) and runs a pool of decode threads (decoderCreate/decoderSubmit/decoderClose).
#include <node_api.h>
#include <zlib.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>
#include <errno.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <pthread.h>
#include <malloc.h>
#include <dirent.h>

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

// Free this thread's decode state (a decode thread that ends would otherwise leave it behind).
static void thread_state_free(void) {
  if (zsReady) { inflateEnd(&zs); zsReady = 0; }
  free(raw);
  raw = NULL;
  rawCap = 0;
}

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

// Decode files data[off[i], off[i+1]) into out (status 0), or mark them status 1 for the general decoder.
static void decode_all(const uint8_t* data, size_t dataN, const uint32_t* off, size_t n, uint32_t w, uint32_t h, uint32_t c, uint8_t* out, uint8_t* st) {
  const size_t sample = (size_t)w * h * c;
  for (size_t i = 0; i < n; i++) {
    if (off[i] > off[i + 1] || off[i + 1] > dataN) { st[i] = 1; continue; }
    st[i] = (uint8_t)decode_one(data + off[i], off[i + 1] - off[i], w, h, (int)c, out + i * sample);
  }
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
  decode_all(data, dataN, off, n, w, h, c, out, st);
  return NULL;
}

// Files of one folder come in a row: the folder is opened once and each file relative to it (one path step, not
// all). One cache per reading loop. eofShort: a read that returns less than asked ends the file, so no second read
// to see end of file (Linux reads regular files in full but at the end; FUSE with direct_io may not, so not there).
typedef struct { int dfd; int eofShort; size_t dlen; char dname[4096]; } FolderCache;

#define FUSE_SUPER_MAGIC 0x65735546
static int open_in_folder(const char* path, FolderCache* fc) {
  const char* slash = strrchr(path, '/');
  if (!slash || slash == path || (size_t)(slash - path) >= sizeof fc->dname) { fc->eofShort = 0; return open(path, O_RDONLY | O_CLOEXEC); }
  const size_t dl = (size_t)(slash - path);
  if (fc->dfd < 0 || dl != fc->dlen || memcmp(fc->dname, path, dl) != 0) {
    if (fc->dfd >= 0) close(fc->dfd);
    memcpy(fc->dname, path, dl); fc->dname[dl] = 0; fc->dlen = dl;
    fc->dfd = open(fc->dname, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    struct statfs sf;
    fc->eofShort = fc->dfd >= 0 && fstatfs(fc->dfd, &sf) == 0 && sf.f_type != FUSE_SUPER_MAGIC;
  }
  if (fc->dfd < 0) { fc->eofShort = 0; return open(path, O_RDONLY | O_CLOEXEC); }
  return openat(fc->dfd, slash + 1, O_RDONLY | O_CLOEXEC);
}

// True when NUL-separated `paths` (plen bytes) holds at least `count` paths (so walking them stays inside it).
static int has_paths(const char* paths, size_t plen, uint32_t count) {
  if (count == 0) return 1;
  uint32_t n = 1;
  for (size_t i = 0; i < plen && n < count; i++) n += paths[i] == 0;
  return n >= count;
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
  if (!paths) { napi_throw_error(env, "ENOMEM", "readFiles: out of memory"); return NULL; }
  napi_get_value_string_utf8(env, argv[0], paths, plen + 1, &plen);
  if (!has_paths(paths, plen, count)) { free(paths); napi_throw_range_error(env, "ERANGE", "readFiles: fewer paths than count"); return NULL; }
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
  FolderCache fc = {.dfd = -1};
  for (; i < count && (i == 0 || used < maxTotal); i++) {
    offs[i] = (uint32_t)used;
    errs[i] = 0;
    const int fd = open_in_folder(p, &fc);
    p += strlen(p) + 1;
    if (fd < 0) { errs[i] = errno; continue; }
    // One read into the room left usually takes the whole (small) file; the size is asked for only when the room
    // ran out (open + read + close: fstat was a quarter of the system calls).
    size_t got = 0, want = (size_t)-1;
    int err = 0;
    for (;;) {
      size_t room = cap - used - got;
      if (want != (size_t)-1 && got >= want) break;
      if (room == 0) {
        struct stat s;
        if (want == (size_t)-1) {
          if (fstat(fd, &s) != 0) { err = errno; break; }
          if ((size_t)s.st_size > maxBytes) { err = -1; break; }
          want = (size_t)s.st_size;
          if (got == want) break;           // it exactly filled the room
          if (got > want) want = got + 1;   // it grew while being read: read on until end of file
        }
        if (used + want >= 0xffffffffu) { err = EFBIG; break; }
        if (external) {
          if (used > 0) { err = -2; break; } // file i does not fit: left for the next call
          // The first file alone is bigger than the given buffer: it gets memory of its own.
          uint8_t* nb = (uint8_t*)malloc(want > 1 << 16 ? want : 1 << 16);
          if (!nb) { err = ENOMEM; break; }
          memcpy(nb, buf, got);
          buf = nb; cap = want > 1 << 16 ? want : 1 << 16; external = 0;
          continue;
        }
        size_t ncap = cap;
        while (used + want > ncap || ncap - used - got == 0) ncap *= 2;
        uint8_t* nb = (uint8_t*)realloc(buf, ncap);
        if (!nb) { err = ENOMEM; break; }
        buf = nb; cap = ncap;
        continue;
      }
      ssize_t r = read(fd, buf + used + got, room);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) { err = errno; break; }
      if (r == 0) break; // end of file
      got += (size_t)r;
      if (got > maxBytes) { err = -1; break; }
      if ((size_t)r < room && fc.eofShort) break;
    }
    if (err == -2) { close(fd); break; }
    errs[i] = err;
    close(fd);
    if (errs[i] == 0) used += got;
  }
  if (fc.dfd >= 0) close(fc.dfd);
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

// listImages(dir, exts: ".png\0.jpg...", into?: ArrayBuffer) -> { names: Uint8Array, count } | { errno }: the names in
// `dir` that end in one of exts (ASCII case-insensitive) and do not start with "._", sorted by their UTF-8 bytes,
// each followed by a NUL. Why native: readdir() of a 21k-file folder made 21k JS strings and two 170 KB arrays that
// V8 promoted and freed only at a full GC (8 MB of a 210k-file conversion's peak RSS). With `into` large enough,
// names is a view of it (the caller recycles one buffer across folders).
static int ext_matches(const char* name, size_t len, const char* exts, size_t extsLen) {
  for (size_t o = 0; o < extsLen;) {
    const char* e = exts + o;
    size_t el = strlen(e);
    if (el > 0 && el < len) {
      size_t k = 0;
      const char* t = name + len - el;
      for (; k < el; k++) { char ch = t[k]; if (ch >= 'A' && ch <= 'Z') ch = (char)(ch + 32); if (ch != e[k]) break; }
      if (k == el) return 1;
    }
    o += el + 1;
  }
  return 0;
}

static const char* sort_base;
static int by_bytes(const void* a, const void* b) {
  return strcmp(sort_base + *(const uint32_t*)a, sort_base + *(const uint32_t*)b);
}

static napi_value js_list_images(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char dir[4096], exts[256];
  size_t dl = 0, el = 0;
  if (argc < 2 || napi_get_value_string_utf8(env, argv[0], dir, sizeof dir, &dl) != napi_ok || dl >= sizeof dir - 1
      || napi_get_value_string_utf8(env, argv[1], exts, sizeof exts, &el) != napi_ok || el >= sizeof exts - 1) {
    napi_throw_error(env, "EINVAL", "listImages(dir, exts[, into]): bad arguments");
    return NULL;
  }
  napi_value res;
  napi_create_object(env, &res);
  DIR* d = opendir(dir);
  if (!d) {
    napi_value e; napi_create_int32(env, errno, &e);
    napi_set_named_property(env, res, "errno", e);
    return res;
  }
  size_t cap = 1 << 16, used = 0, ncap = 1024, n = 0;
  char* buf = (char*)malloc(cap);
  uint32_t* at = (uint32_t*)malloc(ncap * sizeof *at);
  int err = buf && at ? 0 : ENOMEM;
  for (struct dirent* de; !err && (errno = 0, de = readdir(d)) != NULL;) {
    const char* nm = de->d_name;
    size_t len = strlen(nm);
    if ((nm[0] == '.' && nm[1] == '_') || !ext_matches(nm, len, exts, el)) continue;
    if (used + len + 1 > cap || used + len + 1 >= 0xffffffffu) {
      while (used + len + 1 > cap) cap *= 2;
      char* nb = cap < 0xffffffffu ? (char*)realloc(buf, cap) : NULL;
      if (!nb) { err = ENOMEM; break; }
      buf = nb;
    }
    if (n == ncap) {
      uint32_t* na = (uint32_t*)realloc(at, 2 * ncap * sizeof *at);
      if (!na) { err = ENOMEM; break; }
      at = na; ncap *= 2;
    }
    at[n++] = (uint32_t)used;
    memcpy(buf + used, nm, len + 1);
    used += len + 1;
  }
  if (!err && errno != 0) err = errno;
  closedir(d);
  if (err) {
    free(buf); free(at);
    napi_value e; napi_create_int32(env, err, &e);
    napi_set_named_property(env, res, "errno", e);
    return res;
  }
  sort_base = buf; // main thread only (N-API calls are on the JS thread)
  qsort(at, n, sizeof *at, by_bytes);
  void* ext = NULL; size_t extCap = 0; bool isAb = false;
  napi_value namesV;
  uint8_t* dst;
  if (argc >= 3 && napi_is_arraybuffer(env, argv[2], &isAb) == napi_ok && isAb && napi_get_arraybuffer_info(env, argv[2], &ext, &extCap) == napi_ok && extCap >= used && used > 0) {
    dst = (uint8_t*)ext;
    napi_create_typedarray(env, napi_uint8_array, used, argv[2], 0, &namesV);
  } else {
    napi_value ab;
    napi_create_arraybuffer(env, used, (void**)&dst, &ab);
    napi_create_typedarray(env, napi_uint8_array, used, ab, 0, &namesV);
  }
  size_t o = 0;
  for (size_t i = 0; i < n; i++) { size_t len = strlen(buf + at[i]) + 1; memcpy(dst + o, buf + at[i], len); o += len; }
  free(buf); free(at);
  napi_value countV;
  napi_create_uint32(env, (uint32_t)n, &countV);
  napi_set_named_property(env, res, "names", namesV);
  napi_set_named_property(env, res, "count", countV);
  return res;
}

// The same 64-bit hash as src/core/hash64.ts (bit for bit: the duplicate index mixes both), and the per-channel
// value counts of src/core/histogram.ts, for decoded samples while they are still in cache.
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

// hash64 of each sample into h[2i..2i+1], and per-channel value counts added into counts.
static void digest_all(const uint8_t* x, uint32_t sb, uint32_t n, uint32_t c, uint32_t* h, double* counts) {
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
  digest_all(x, sb, n, c, (uint32_t*)hp, (double*)cp);
  return NULL;
}

// A pool of decode threads (decoderCreate(n)): decoderSubmit(pool, data, offsets, w, h, c, out, status, hashes,
// counts) -> Promise<boolean> decodes like decode() on one of the pool's threads, then, when every file decoded here
// (all status 0), digests out into hashes/counts and resolves true, else false (the caller decodes the rest another
// way and digests itself). No argument may be touched until it settles. Batches wait in a queue here, so a thread
// goes on with the next one at once instead of waiting for the JS thread (as libuv's pool work would).
typedef struct DecodeJob {
  const uint8_t* data; size_t dataN; const uint32_t* off; size_t n; uint32_t w, h, c;
  char* paths; size_t maxBytes; int32_t* errs;  // with paths (NUL-separated, owned): the thread reads the files
  uint8_t* out; uint8_t* st; uint32_t* hashes; double* counts;
  int digested;
  napi_ref keep[6];
  napi_deferred deferred;
  struct DecodeJob* next;
} DecodeJob;

typedef struct {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  DecodeJob *head, *tail;
  int stop, closed, nthreads;
  int refs;  // the JS external and the completion queue; freed when both are finalized (JS thread only)
  uint32_t outstanding;  // submitted and not yet settled (JS thread only)
  pthread_t th[64];
  napi_threadsafe_function tsfn;
} DecodePool;

// One whole file into *buf (grown as needed, kept for the next file): 0, an errno, or -1 when above maxBytes.
static int read_whole(const char* path, FolderCache* fc, uint8_t** buf, size_t* cap, size_t maxBytes, size_t* got) {
  *got = 0;
  const int fd = open_in_folder(path, fc);
  if (fd < 0) return errno;
  int err = 0;
  for (;;) {
    if (*got == *cap) {  // full: how big is it?
      struct stat s;
      if (fstat(fd, &s) != 0) { err = errno; break; }
      if ((size_t)s.st_size > maxBytes) { err = -1; break; }
      if ((size_t)s.st_size == *got) break;
      size_t ncap = *cap ? *cap : 1 << 16;
      while (ncap <= (size_t)s.st_size || ncap == *got) ncap *= 2;
      uint8_t* nb = (uint8_t*)realloc(*buf, ncap);
      if (!nb) { err = ENOMEM; break; }
      *buf = nb; *cap = ncap;
    }
    const size_t room = *cap - *got;
    ssize_t r = read(fd, *buf + *got, room);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) { err = errno; break; }
    if (r == 0) break;
    *got += (size_t)r;
    if (*got > maxBytes) { err = -1; break; }
    if ((size_t)r < room && fc->eofShort) break;
  }
  close(fd);
  return err;
}

// Each decode thread's file buffer (freed when the thread ends).
static __thread uint8_t* fbuf;
static __thread size_t fcap;

static void decode_job_run(DecodeJob* j) {
  if (j->paths) {
    // Read each file here (a buffer per thread, reused), then decode it; unreadable ones get errs[i] and status 1.
    FolderCache fc = {.dfd = -1};
    size_t got = 0;
    const char* p = j->paths;
    const size_t sample = (size_t)j->w * j->h * j->c;
    for (size_t i = 0; i < j->n; i++) {
      const size_t len = strlen(p);
      j->errs[i] = read_whole(p, &fc, &fbuf, &fcap, j->maxBytes, &got);
      p += len + 1;
      j->st[i] = j->errs[i] != 0 ? 1 : (uint8_t)decode_one(fbuf, got, j->w, j->h, (int)j->c, j->out + i * sample);
    }
    if (fc.dfd >= 0) close(fc.dfd);
    free(j->paths);
    j->paths = NULL;
  } else decode_all(j->data, j->dataN, j->off, j->n, j->w, j->h, j->c, j->out, j->st);
  for (size_t i = 0; i < j->n; i++) if (j->st[i] != 0) return;
  digest_all(j->out, j->w * j->h * j->c, (uint32_t)j->n, j->c, j->hashes, j->counts);
  j->digested = 1;
}

static void* decode_thread(void* arg) {
  DecodePool* p = (DecodePool*)arg;
  for (;;) {
    pthread_mutex_lock(&p->mu);
    while (!p->head && !p->stop) pthread_cond_wait(&p->cv, &p->mu);
    DecodeJob* j = p->head;
    if (j) { p->head = j->next; if (!p->head) p->tail = NULL; }
    pthread_mutex_unlock(&p->mu);
    if (!j) break;  // stopping and nothing left
    decode_job_run(j);
    napi_call_threadsafe_function(p->tsfn, j, napi_tsfn_nonblocking);  // unbounded queue: never blocks
  }
  free(fbuf);
  fbuf = NULL;
  fcap = 0;
  thread_state_free();
  return NULL;
}

// On the JS thread: settle a finished job's promise (env is NULL while node shuts down: just free it).
static void decode_settle(napi_env env, napi_value cb, void* context, void* data) {
  (void)cb;
  DecodePool* p = (DecodePool*)context;
  DecodeJob* j = (DecodeJob*)data;
  if (env) {
    for (int k = 0; k < 6; k++) napi_delete_reference(env, j->keep[k]);
    napi_value v;
    napi_get_boolean(env, j->digested != 0, &v);
    napi_resolve_deferred(env, j->deferred, v);
    if (--p->outstanding == 0 && !p->closed) napi_unref_threadsafe_function(env, p->tsfn);
  }
  free(j);
}

static void decode_pool_stop(DecodePool* p) {
  pthread_mutex_lock(&p->mu);
  p->stop = 1;
  pthread_cond_broadcast(&p->cv);
  pthread_mutex_unlock(&p->mu);
  for (int i = 0; i < p->nthreads; i++) pthread_join(p->th[i], NULL);
  p->nthreads = 0;
}

static void decode_pool_unref(DecodePool* p) {
  if (--p->refs > 0) return;
  pthread_mutex_destroy(&p->mu);
  pthread_cond_destroy(&p->cv);
  free(p);
}

// The completion queue is gone (after every queued settle ran).
static void decode_tsfn_finalize(napi_env env, void* data, void* hint) {
  (void)env; (void)hint;
  decode_pool_unref((DecodePool*)data);
}

// The JS handle was collected: close the pool if the caller did not.
static void decode_pool_finalize(napi_env env, void* data, void* hint) {
  (void)env; (void)hint;
  DecodePool* p = (DecodePool*)data;
  if (!p->closed) { p->closed = 1; decode_pool_stop(p); napi_release_threadsafe_function(p->tsfn, napi_tsfn_release); }
  decode_pool_unref(p);
}

static DecodePool* get_pool(napi_env env, napi_value v) {
  void* p = NULL;
  if (napi_get_value_external(env, v, &p) != napi_ok || !p) { napi_throw_type_error(env, "EINVAL", "not a decoder pool"); return NULL; }
  return (DecodePool*)p;
}

// decoderCreate(threads) -> pool
static napi_value js_decoder_create(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  uint32_t n = 0;
  if (argc < 1 || napi_get_value_uint32(env, argv[0], &n) != napi_ok || n < 1 || n > 64) { napi_throw_range_error(env, "ERANGE", "decoderCreate(threads): 1..64 threads"); return NULL; }
  DecodePool* p = (DecodePool*)calloc(1, sizeof(DecodePool));
  if (!p) { napi_throw_error(env, "ENOMEM", "decoderCreate: out of memory"); return NULL; }
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->cv, NULL);
  napi_value name;
  napi_create_string_utf8(env, "slimfit.decodePng", NAPI_AUTO_LENGTH, &name);
  p->refs = 2;
  if (napi_create_threadsafe_function(env, NULL, NULL, name, 0, 1, p, decode_tsfn_finalize, p, decode_settle, &p->tsfn) != napi_ok) {
    free(p); napi_throw_error(env, "EIO", "decoderCreate: cannot create the completion queue"); return NULL;
  }
  napi_unref_threadsafe_function(env, p->tsfn);  // idle pools do not keep node running
  for (uint32_t i = 0; i < n; i++) {
    if (pthread_create(&p->th[i], NULL, decode_thread, p) != 0) break;
    p->nthreads++;
  }
  if (p->nthreads == 0) {
    p->refs = 1;  // no external: the queue's finalizer frees it
    napi_release_threadsafe_function(p->tsfn, napi_tsfn_release);
    napi_throw_error(env, "EAGAIN", "decoderCreate: cannot start threads"); return NULL;
  }
  napi_value ext;
  napi_create_external(env, p, decode_pool_finalize, NULL, &ext);
  return ext;
}

static napi_value js_decoder_submit(napi_env env, napi_callback_info info) {
  size_t argc = 11;
  napi_value argv[11];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 10) { napi_throw_error(env, "EINVAL", "decoderSubmit(pool, data, offsets, w, h, c, out, status, hashes, counts): bad arguments"); return NULL; }
  DecodePool* p = get_pool(env, argv[0]);
  if (!p) return NULL;
  if (p->closed) { napi_throw_error(env, "EINVAL", "decoderSubmit: the pool is closed"); return NULL; }
  napi_value* a = argv + 1;
  uint8_t *data = NULL, *offP = NULL, *out, *st, *hp, *cp, *ep = NULL; size_t dataN = 0, offN = 0, outN, stN, hn, cn, en = 0;
  uint32_t w, h, c;
  // With paths: a[0] is the NUL-separated paths, a[1] a Uint32Array [count, maxBytes], and an 11th argument errs.
  napi_valuetype t0;
  napi_typeof(env, a[0], &t0);
  char* paths = NULL;
  size_t nPaths = 0, maxBytes = 0;
  if (t0 == napi_string) {
    size_t plen = 0;
    uint8_t* cnt; size_t cntN;
    if (argc < 11 || napi_get_value_string_utf8(env, a[0], NULL, 0, &plen) != napi_ok || !get_u8(env, a[1], &cnt, &cntN) || cntN < 8 || !get_u8(env, argv[10], &ep, &en)) {
      napi_throw_error(env, "EINVAL", "decoderSubmit(pool, paths, [count, maxBytes], w, h, c, out, status, hashes, counts, errs): bad arguments");
      return NULL;
    }
    nPaths = ((uint32_t*)cnt)[0]; maxBytes = ((uint32_t*)cnt)[1];
    if (en < 4 * nPaths) { napi_throw_range_error(env, "ERANGE", "decoderSubmit: errs too small"); return NULL; }
    paths = (char*)malloc(plen + 1);
    if (!paths) { napi_throw_error(env, "ENOMEM", "decoderSubmit: out of memory"); return NULL; }
    napi_get_value_string_utf8(env, a[0], paths, plen + 1, &plen);
    if (!has_paths(paths, plen, (uint32_t)nPaths)) { free(paths); napi_throw_range_error(env, "ERANGE", "decoderSubmit: fewer paths than count"); return NULL; }
  }
  if ((!paths && (!get_u8(env, a[0], &data, &dataN) || !get_u8(env, a[1], &offP, &offN))) || !get_u8(env, a[5], &out, &outN) || !get_u8(env, a[6], &st, &stN)
      || !get_u8(env, a[7], &hp, &hn) || !get_u8(env, a[8], &cp, &cn)
      || napi_get_value_uint32(env, a[2], &w) != napi_ok || napi_get_value_uint32(env, a[3], &h) != napi_ok || napi_get_value_uint32(env, a[4], &c) != napi_ok || c == 0 || c > 4) {
    free(paths);
    napi_throw_error(env, "EINVAL", "decoderSubmit(pool, data, offsets, w, h, c, out, status, hashes, counts): bad arguments");
    return NULL;
  }
  size_t n = paths ? nPaths : offN / 4 - 1, sample = (size_t)w * h * c;
  if ((!paths && offN < 4) || stN < n || outN < n * sample || hn < 8 * n || cn < 8 * 256 * (size_t)c) { free(paths); napi_throw_range_error(env, "ERANGE", "decoderSubmit: arrays too small"); return NULL; }
  DecodeJob* j = (DecodeJob*)calloc(1, sizeof(DecodeJob));
  if (!j) { free(paths); napi_throw_error(env, "ENOMEM", "decoderSubmit: out of memory"); return NULL; }
  j->data = data; j->dataN = dataN; j->off = (const uint32_t*)offP; j->n = n; j->w = w; j->h = h; j->c = c;
  j->out = out; j->st = st; j->hashes = (uint32_t*)hp; j->counts = (double*)cp;
  j->paths = paths; j->maxBytes = maxBytes; j->errs = (int32_t*)ep;
  // Keep every typed array alive until settled (paths variant: a[0] is a string, so errs takes its slot).
  const int idx[6] = {0, 1, 5, 6, 7, 8};
  for (int k = 0; k < 6; k++) napi_create_reference(env, k == 0 && paths ? argv[10] : a[idx[k]], 1, &j->keep[k]);
  napi_value promise;
  napi_create_promise(env, &j->deferred, &promise);
  if (p->outstanding++ == 0) napi_ref_threadsafe_function(env, p->tsfn);  // pending work keeps node running
  pthread_mutex_lock(&p->mu);
  if (p->tail) p->tail->next = j; else p->head = j;
  p->tail = j;
  pthread_cond_signal(&p->cv);
  pthread_mutex_unlock(&p->mu);
  return promise;
}

// decoderClose(pool): finish queued batches, stop the threads (their promises still settle).
static napi_value js_decoder_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  DecodePool* p = argc >= 1 ? get_pool(env, argv[0]) : NULL;
  if (!p) return NULL;
  if (!p->closed) {
    decode_pool_stop(p);
    p->closed = 1;
    napi_release_threadsafe_function(p->tsfn, napi_tsfn_release);
  }
  return NULL;
}

void gunzip_register(napi_env env, napi_value exports);  // gunzip.c

NAPI_MODULE_INIT() {
  // Decoded batches (~200 KB each) are freed by V8's garbage collector in no particular order. glibc's dynamic mmap
  // threshold then moves such blocks into the brk heap, which fragments and grew with run length (10 MB after 21k
  // PNGs, 44 MB after 210k). A fixed threshold keeps them mmapped, so each free returns its memory (heap: 3 MB).
  mallopt(M_MMAP_THRESHOLD, 128 * 1024);
  napi_value f;
  napi_create_function(env, "decode", NAPI_AUTO_LENGTH, js_decode, NULL, &f);
  napi_set_named_property(env, exports, "decode", f);
  napi_create_function(env, "decoderCreate", NAPI_AUTO_LENGTH, js_decoder_create, NULL, &f);
  napi_set_named_property(env, exports, "decoderCreate", f);
  napi_create_function(env, "decoderSubmit", NAPI_AUTO_LENGTH, js_decoder_submit, NULL, &f);
  napi_set_named_property(env, exports, "decoderSubmit", f);
  napi_create_function(env, "decoderClose", NAPI_AUTO_LENGTH, js_decoder_close, NULL, &f);
  napi_set_named_property(env, exports, "decoderClose", f);
  napi_create_function(env, "readFiles", NAPI_AUTO_LENGTH, js_read_files, NULL, &f);
  napi_set_named_property(env, exports, "readFiles", f);
  napi_create_function(env, "digest", NAPI_AUTO_LENGTH, js_digest, NULL, &f);
  napi_set_named_property(env, exports, "digest", f);
  napi_create_function(env, "listImages", NAPI_AUTO_LENGTH, js_list_images, NULL, &f);
  napi_set_named_property(env, exports, "listImages", f);
  gunzip_register(env, exports);
  return exports;
}

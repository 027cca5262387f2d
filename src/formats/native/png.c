// slimfit_png: batch decode of small 8-bit PNGs with libpng, for `slimfit convert` on image trees and archives.
// Why: @napi-rs/image costs ~13 us per call for a 28x28 PNG, most of it per-call overhead; notMNIST-style datasets
// are hundreds of thousands of such files. Only the plain case is handled here (8-bit gray / gray+alpha / RGB / RGBA,
// not interlaced, no palette or tRNS, exactly the target size and channel count); every other file, and every file
// libpng rejects, is reported back so the caller decodes it with @napi-rs/image and gets the same pixels or reason.
// Also reads files itself (readFiles), so the decode workers, not the main thread, pay for open/read/close.
#include <node_api.h>
#include <png.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>
#include <errno.h>
#include <sys/stat.h>

typedef struct { const uint8_t* p; size_t n, at; } Mem;

static void mem_read(png_structp png, png_bytep out, png_size_t len) {
  Mem* m = (Mem*)png_get_io_ptr(png);
  if (m->at + len > m->n) png_error(png, "truncated");
  memcpy(out, m->p + m->at, len);
  m->at += len;
}
static void quiet(png_structp png, png_const_charp msg) { (void)png; (void)msg; }
static void fail(png_structp png, png_const_charp msg) { (void)msg; png_longjmp(png, 1); }

// 0 = decoded into out (w*h*c bytes), 1 = not handled here (decode it the general way).
static int decode_one(const uint8_t* data, size_t n, uint32_t w, uint32_t h, int c, uint8_t* out) {
  static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', 13, 10, 26, 10};
  if (n < 33 || memcmp(data, sig, 8) != 0) return 1;
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, NULL, fail, quiet);
  if (!png) return 1;
  png_infop info = png_create_info_struct(png);
  if (!info) { png_destroy_read_struct(&png, NULL, NULL); return 1; }
  Mem m = {data, n, 0};
  png_bytep* rows = NULL;
  volatile int status = 1;
  if (setjmp(png_jmpbuf(png))) goto done;
  png_set_read_fn(png, &m, mem_read);
  png_set_crc_action(png, PNG_CRC_ERROR_QUIT, PNG_CRC_ERROR_QUIT);
  png_read_info(png, info);
  {
    png_uint_32 pw, ph;
    int depth, ctype, interlace;
    png_get_IHDR(png, info, &pw, &ph, &depth, &ctype, &interlace, NULL, NULL);
    int pc = ctype == PNG_COLOR_TYPE_GRAY ? 1 : ctype == PNG_COLOR_TYPE_GRAY_ALPHA ? 2 : ctype == PNG_COLOR_TYPE_RGB ? 3 : ctype == PNG_COLOR_TYPE_RGB_ALPHA ? 4 : 0;
    if (pw != w || ph != h || depth != 8 || pc != c || interlace != PNG_INTERLACE_NONE || png_get_valid(png, info, PNG_INFO_tRNS)) goto done;
    if (png_get_rowbytes(png, info) != (size_t)w * c) goto done;
    rows = (png_bytep*)malloc(sizeof(png_bytep) * h);
    if (!rows) goto done;
    for (uint32_t r = 0; r < h; r++) rows[r] = out + (size_t)r * w * c;
    png_read_image(png, rows);
    png_read_end(png, NULL); // the rest of the file must be valid too (CRCs, IEND), as for the general decoder
    status = 0;
  }
done:
  free(rows);
  png_destroy_read_struct(&png, &info, NULL);
  return status;
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
  size_t argc = 4;
  napi_value argv[4];
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
  uint8_t* buf = (uint8_t*)malloc(cap);
  napi_value offsV, errsV, offAb, errAb;
  uint32_t* offs; int32_t* errs;
  napi_create_arraybuffer(env, 4 * ((size_t)count + 1), (void**)&offs, &offAb);
  napi_create_arraybuffer(env, 4 * (size_t)(count ? count : 1), (void**)&errs, &errAb);
  const char* p = paths;
  uint32_t i = 0;
  for (; i < count && (i == 0 || used < maxTotal); i++) {
    offs[i] = (uint32_t)used;
    errs[i] = 0;
    size_t len = strlen(p);
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    p += len + 1;
    if (fd < 0) { errs[i] = errno; continue; }
    struct stat s;
    if (fstat(fd, &s) != 0) { errs[i] = errno; close(fd); continue; }
    if ((size_t)s.st_size > maxBytes) { errs[i] = -1; close(fd); continue; }
    size_t want = (size_t)s.st_size;
    if (used + want >= 0xffffffffu) { errs[i] = EFBIG; close(fd); continue; }
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
  uint32_t nread = i;
  for (; i <= count; i++) offs[i] = (uint32_t)used;
  for (i = nread; i < count; i++) errs[i] = 0;
  free(paths);
  napi_value dataV;
  void* dst;
  napi_create_buffer_copy(env, used, buf, &dst, &dataV);
  free(buf);
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

NAPI_MODULE_INIT() {
  napi_value f;
  napi_create_function(env, "decode", NAPI_AUTO_LENGTH, js_decode, NULL, &f);
  napi_set_named_property(env, exports, "decode", f);
  napi_create_function(env, "readFiles", NAPI_AUTO_LENGTH, js_read_files, NULL, &f);
  napi_set_named_property(env, exports, "readFiles", f);
  return exports;
}

// Streaming gunzip into buffers the caller owns and reuses (part of the slimfit_png addon, which links zlib).
// Why: node:zlib's stream hands out a new ~1 MB Buffer per output chunk; over a 210k-member .tar.gz those (235 MB
// a pass) lingered until V8 ran a full collection and raised peak RSS by ~40 MB. Here the caller passes the same
// two output buffers again and again. inflate runs on libuv's thread pool, so the caller parses one buffer while
// the next is filled, as with node:zlib.
//
// gunzipCreate(): handle. gunzipRun(handle, input, output): Promise<[consumed, produced, status]> inflates input
// into output until either runs out; status 1 = a gzip member ended with no input left, 0 = more to come. A member
// followed by more input is continued (concatenated .gz files); bytes after a member that do not start another
// gzip header are ignored, as gzip does. Corrupt data rejects with zlib's message.
#include <node_api.h>
#include <zlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  z_stream zs;
  int member_ended;  // the last member ended exactly at the end of the last input
  int busy;
  // One run in flight.
  napi_async_work work;
  napi_deferred deferred;
  napi_ref keep_h, keep_in, keep_out;
  unsigned char* in;
  size_t in_len;
  unsigned char* out;
  size_t out_len;
  size_t consumed, produced;
  int status;  // 0 more to come, 1 member ended at the end of input, -1 error (msg)
  char msg[160];
} Gunzip;

static void gunzip_finalize(napi_env env, void* data, void* hint) {
  (void)env; (void)hint;
  Gunzip* g = (Gunzip*)data;
  inflateEnd(&g->zs);
  free(g);
}

static napi_value js_gunzip_create(napi_env env, napi_callback_info info) {
  (void)info;
  Gunzip* g = (Gunzip*)calloc(1, sizeof(Gunzip));
  if (!g || inflateInit2(&g->zs, 15 + 16) != Z_OK) {
    free(g);
    napi_throw_error(env, NULL, "gunzip: out of memory");
    return NULL;
  }
  napi_value h;
  napi_create_external(env, g, gunzip_finalize, NULL, &h);
  return h;
}

static void gunzip_execute(napi_env env, void* data) {
  (void)env;
  Gunzip* g = (Gunzip*)data;
  z_stream* zs = &g->zs;
  zs->next_in = g->in;
  zs->avail_in = (uInt)g->in_len;
  zs->next_out = g->out;
  zs->avail_out = (uInt)g->out_len;
  g->status = 0;
  while (zs->avail_out > 0 && zs->avail_in > 0) {
    if (g->member_ended) {
      // Another member only if a gzip header follows; anything else after the last member is ignored.
      if (zs->avail_in >= 2 && (zs->next_in[0] != 0x1f || zs->next_in[1] != 0x8b)) { zs->next_in += zs->avail_in; zs->avail_in = 0; g->status = 1; break; }
      if (zs->avail_in < 2 && zs->next_in[0] != 0x1f) { zs->next_in += zs->avail_in; zs->avail_in = 0; g->status = 1; break; }
      inflateReset(zs);
      g->member_ended = 0;
    }
    int r = inflate(zs, Z_NO_FLUSH);
    if (r == Z_STREAM_END) {
      g->member_ended = 1;
      if (zs->avail_in == 0) g->status = 1;
      continue;
    }
    if (r == Z_BUF_ERROR) break;  // needs more input or more room
    if (r != Z_OK) {
      g->status = -1;
      snprintf(g->msg, sizeof g->msg, "corrupt gzip data: %s", zs->msg ? zs->msg : "inflate failed");
      break;
    }
  }
  if (g->status == 0 && g->member_ended && zs->avail_in == 0) g->status = 1;
  g->consumed = g->in_len - zs->avail_in;
  g->produced = g->out_len - zs->avail_out;
}

static void gunzip_complete(napi_env env, napi_status st, void* data) {
  Gunzip* g = (Gunzip*)data;
  napi_delete_reference(env, g->keep_in);
  napi_delete_reference(env, g->keep_out);
  napi_ref keep_h = g->keep_h;  // released last: it may be what keeps g alive
  napi_delete_async_work(env, g->work);
  g->busy = 0;
  if (st != napi_ok || g->status < 0) {
    napi_value msg, err;
    napi_create_string_utf8(env, st != napi_ok ? "gunzip: cancelled" : g->msg, NAPI_AUTO_LENGTH, &msg);
    napi_create_error(env, NULL, msg, &err);
    napi_reject_deferred(env, g->deferred, err);
    napi_delete_reference(env, keep_h);
    return;
  }
  napi_value arr, v;
  napi_create_array_with_length(env, 3, &arr);
  napi_create_double(env, (double)g->consumed, &v);
  napi_set_element(env, arr, 0, v);
  napi_create_double(env, (double)g->produced, &v);
  napi_set_element(env, arr, 1, v);
  napi_create_int32(env, g->status, &v);
  napi_set_element(env, arr, 2, v);
  napi_resolve_deferred(env, g->deferred, arr);
  napi_delete_reference(env, keep_h);
}

static int bytes_of(napi_env env, napi_value v, unsigned char** p, size_t* len) {
  napi_typedarray_type t;
  void* data;
  napi_value ab;
  size_t off;
  if (napi_get_typedarray_info(env, v, &t, len, &data, &ab, &off) != napi_ok || t != napi_uint8_array) return 0;
  *p = (unsigned char*)data;
  return 1;
}

// gunzipRun(handle, input: Uint8Array, output: Uint8Array): Promise<[consumed, produced, status]>
static napi_value js_gunzip_run(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  Gunzip* g = NULL;
  if (argc < 3 || napi_get_value_external(env, argv[0], (void**)&g) != napi_ok || !g) {
    napi_throw_type_error(env, NULL, "gunzipRun(handle, input, output)");
    return NULL;
  }
  if (g->busy) {
    napi_throw_error(env, NULL, "gunzipRun: a run is already in flight");
    return NULL;
  }
  if (!bytes_of(env, argv[1], &g->in, &g->in_len) || !bytes_of(env, argv[2], &g->out, &g->out_len) || g->in_len > 0x7fffffff || g->out_len > 0x7fffffff) {
    napi_throw_type_error(env, NULL, "gunzipRun: input and output must be Uint8Arrays under 2 GB");
    return NULL;
  }
  napi_create_reference(env, argv[0], 1, &g->keep_h);
  napi_create_reference(env, argv[1], 1, &g->keep_in);
  napi_create_reference(env, argv[2], 1, &g->keep_out);
  napi_value promise, name;
  napi_create_promise(env, &g->deferred, &promise);
  napi_create_string_utf8(env, "slimfit_gunzip", NAPI_AUTO_LENGTH, &name);
  napi_create_async_work(env, argv[0], name, gunzip_execute, gunzip_complete, g, &g->work);
  g->busy = 1;
  napi_queue_async_work(env, g->work);
  return promise;
}

/** Add gunzipCreate and gunzipRun to the addon's exports. */
void gunzip_register(napi_env env, napi_value exports) {
  napi_value f;
  napi_create_function(env, "gunzipCreate", NAPI_AUTO_LENGTH, js_gunzip_create, NULL, &f);
  napi_set_named_property(env, exports, "gunzipCreate", f);
  napi_create_function(env, "gunzipRun", NAPI_AUTO_LENGTH, js_gunzip_run, NULL, &f);
  napi_set_named_property(env, exports, "gunzipRun", f);
}

// slimfit_sha256: SHA-256 of shard bytes on libuv's thread pool, so the main thread of `slimfit convert` does not
// spend ~0.2 s per 165 MB hashing (node's crypto Hash.update runs on the calling thread). The hashing itself is
// node's own OpenSSL (EVP, SHA-NI/AVX2 where the CPU has them); its symbols come from the node binary.
#include <node_api.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdlib.h>

typedef struct {
  EVP_MD_CTX* ctx;
  int busy;  // an update is running on the pool: no second update or digest until it settles
} Hasher;

typedef struct {
  Hasher* h;
  const uint8_t* data;
  size_t len;
  napi_ref keep;  // the bytes' ArrayBuffer, alive until the update settles
  napi_ref keepHasher;  // and the hasher
  napi_deferred deferred;
  napi_async_work work;
  int ok;
} Update;

static void hasher_free(napi_env env, void* data, void* hint) {
  (void)env; (void)hint;
  Hasher* h = (Hasher*)data;
  EVP_MD_CTX_free(h->ctx);
  free(h);
}

static Hasher* get_hasher(napi_env env, napi_value v) {
  void* p = NULL;
  if (napi_get_value_external(env, v, &p) != napi_ok || !p) { napi_throw_type_error(env, "EINVAL", "not a sha256 hasher"); return NULL; }
  return (Hasher*)p;
}

// create() -> hasher (an external)
static napi_value js_create(napi_env env, napi_callback_info info) {
  (void)info;
  Hasher* h = (Hasher*)calloc(1, sizeof(Hasher));
  if (h) h->ctx = EVP_MD_CTX_new();
  if (!h || !h->ctx || EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL) != 1) {
    if (h) { EVP_MD_CTX_free(h->ctx); free(h); }
    napi_throw_error(env, "ENOMEM", "sha256: cannot create a hasher");
    return NULL;
  }
  napi_value ext;
  napi_create_external(env, h, hasher_free, NULL, &ext);
  return ext;
}

static void update_execute(napi_env env, void* data) {
  (void)env;
  Update* u = (Update*)data;
  u->ok = EVP_DigestUpdate(u->h->ctx, u->data, u->len) == 1;
}

static void update_complete(napi_env env, napi_status status, void* data) {
  Update* u = (Update*)data;
  u->h->busy = 0;
  napi_delete_reference(env, u->keep);
  napi_delete_reference(env, u->keepHasher);
  if (status == napi_ok && u->ok) {
    napi_value undef;
    napi_get_undefined(env, &undef);
    napi_resolve_deferred(env, u->deferred, undef);
  } else {
    napi_value msg, err;
    napi_create_string_utf8(env, "sha256: update failed", NAPI_AUTO_LENGTH, &msg);
    napi_create_error(env, NULL, msg, &err);
    napi_reject_deferred(env, u->deferred, err);
  }
  napi_delete_async_work(env, u->work);
  free(u);
}

// update(hasher, bytes: Uint8Array) -> Promise<void>, hashed on libuv's pool; bytes must not change until it settles.
static napi_value js_update(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 2) { napi_throw_type_error(env, "EINVAL", "update(hasher, bytes)"); return NULL; }
  Hasher* h = get_hasher(env, argv[0]);
  if (!h) return NULL;
  napi_typedarray_type t; size_t len; void* p; napi_value ab; size_t off;
  bool isTa = false;
  if (napi_is_typedarray(env, argv[1], &isTa) != napi_ok || !isTa || napi_get_typedarray_info(env, argv[1], &t, &len, &p, &ab, &off) != napi_ok || t != napi_uint8_array) {
    napi_throw_type_error(env, "EINVAL", "update: bytes must be a Uint8Array");
    return NULL;
  }
  if (h->busy) { napi_throw_error(env, "EBUSY", "sha256: the previous update has not settled"); return NULL; }
  Update* u = (Update*)calloc(1, sizeof(Update));
  if (!u) { napi_throw_error(env, "ENOMEM", "sha256: out of memory"); return NULL; }
  u->h = h; u->data = (const uint8_t*)p; u->len = len;
  h->busy = 1;
  napi_create_reference(env, ab, 1, &u->keep);
  napi_create_reference(env, argv[0], 1, &u->keepHasher);
  napi_value promise, name;
  napi_create_promise(env, &u->deferred, &promise);
  napi_create_string_utf8(env, "slimfit.sha256", NAPI_AUTO_LENGTH, &name);
  napi_create_async_work(env, NULL, name, update_execute, update_complete, u, &u->work);
  napi_queue_async_work(env, u->work);
  return promise;
}

// digest(hasher) -> hex string (the hasher is finished after this)
static napi_value js_digest(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1) { napi_throw_type_error(env, "EINVAL", "digest(hasher)"); return NULL; }
  Hasher* h = get_hasher(env, argv[0]);
  if (!h) return NULL;
  if (h->busy) { napi_throw_error(env, "EBUSY", "sha256: an update has not settled"); return NULL; }
  unsigned char md[32];
  unsigned int n = 0;
  if (EVP_DigestFinal_ex(h->ctx, md, &n) != 1 || n != 32) { napi_throw_error(env, "EIO", "sha256: digest failed"); return NULL; }
  static const char hex[] = "0123456789abcdef";
  char out[65];
  for (int i = 0; i < 32; i++) { out[2 * i] = hex[md[i] >> 4]; out[2 * i + 1] = hex[md[i] & 15]; }
  out[64] = 0;
  napi_value s;
  napi_create_string_utf8(env, out, 64, &s);
  return s;
}

NAPI_MODULE_INIT() {
  napi_value f;
  napi_create_function(env, "create", NAPI_AUTO_LENGTH, js_create, NULL, &f);
  napi_set_named_property(env, exports, "create", f);
  napi_create_function(env, "update", NAPI_AUTO_LENGTH, js_update, NULL, &f);
  napi_set_named_property(env, exports, "update", f);
  napi_create_function(env, "digest", NAPI_AUTO_LENGTH, js_digest, NULL, &f);
  napi_set_named_property(env, exports, "digest", f);
  return exports;
}

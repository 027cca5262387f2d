// trim(): hand the free memory of every malloc arena back to the system (glibc malloc_trim). Threads that malloc
// and free in turn (decoders, libuv's readdir and file reads) leave arenas that only grow with run length.
#include <node_api.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

static napi_value js_trim(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value r;
#ifdef __GLIBC__
  napi_get_boolean(env, malloc_trim(0) != 0, &r);
#else
  napi_get_boolean(env, false, &r);
#endif
  return r;
}

NAPI_MODULE_INIT() {
  napi_value f;
  napi_create_function(env, "trim", NAPI_AUTO_LENGTH, js_trim, NULL, &f);
  napi_set_named_property(env, exports, "trim", f);
  return exports;
}

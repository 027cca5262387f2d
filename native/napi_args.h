// The arguments of one N-API call: read by index, with the first type error thrown to JavaScript once (later reads
// return zeros and the caller checks `ok` before using them). Shared by the engine's and the lab's bindings.
#pragma once
#include <node_api.h>

#include <cstddef>
#include <string>

namespace sf {

template <size_t N>
struct NapiArgs {
  napi_env env;
  napi_value v[N];
  size_t n = N;
  bool ok = true;
  const char* who;  // "slimfit engine", "slimfit quant": the start of every message
  NapiArgs(napi_env e, napi_callback_info info, const char* name) : env(e), who(name) { napi_get_cb_info(e, info, &n, v, nullptr, nullptr); }
  void fail(const char* msg) {
    if (ok) napi_throw_type_error(env, nullptr, msg);
    ok = false;
  }
  void failWith(const char* what) { fail((std::string(who) + ": " + what).c_str()); }
  // Argument i as a short string (at most 15 bytes); false when it is missing or not a string.
  bool str(size_t i, std::string* out) {
    char buf[16] = {0};
    size_t len = 0;
    if (i >= n || napi_get_value_string_utf8(env, v[i], buf, sizeof buf, &len) != napi_ok) return false;
    out->assign(buf, len);
    return true;
  }
  double num(size_t i) {
    double d = 0;
    if (i >= n || napi_get_value_double(env, v[i], &d) != napi_ok) failWith("expected a number argument");
    return d;
  }
};

}  // namespace sf

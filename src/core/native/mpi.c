// slimfit_mpi: the few MPI calls data-parallel training needs (Open MPI, or any MPI with a C API), called from the
// JS main thread only (MPI_THREAD_FUNNELED). Buffers are float32/float64 typed arrays reduced or broadcast in place.
// Errors come back as return codes (MPI_ERRORS_RETURN on MPI_COMM_WORLD) and are thrown as JS errors with MPI's text.
#define OMPI_SKIP_MPICXX 1
#include <mpi.h>
#include <node_api.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

static int g_inited = 0, g_finalized = 0;

static napi_value undef(napi_env env) {
  napi_value u;
  napi_get_undefined(env, &u);
  return u;
}

static napi_value fail(napi_env env, const char* what, int code) {
  char text[MPI_MAX_ERROR_STRING + 1];
  int len = 0;
  if (MPI_Error_string(code, text, &len) != MPI_SUCCESS) len = 0;
  text[len] = 0;
  char msg[MPI_MAX_ERROR_STRING + 128];
  snprintf(msg, sizeof msg, "%s failed: %s (MPI error %d)", what, len ? text : "unknown error", code);
  napi_throw_error(env, "SLIMFIT_MPI", msg);
  return NULL;
}

static int ready(napi_env env) {
  if (!g_inited || g_finalized) {
    napi_throw_error(env, "SLIMFIT_MPI", g_finalized ? "slimfit_mpi: MPI is already finalized" : "slimfit_mpi: call init() first");
    return 0;
  }
  return 1;
}

// A float32 or float64 typed array argument: its data, element count and MPI type.
static int typed(napi_env env, napi_value v, void** data, size_t* n, MPI_Datatype* type, size_t* esize) {
  bool is = false;
  napi_is_typedarray(env, v, &is);
  napi_typedarray_type t;
  napi_value ab;
  size_t off;
  if (!is || napi_get_typedarray_info(env, v, &t, n, data, &ab, &off) != napi_ok || (t != napi_float32_array && t != napi_float64_array)) {
    napi_throw_type_error(env, NULL, "slimfit_mpi: expected a Float32Array or Float64Array");
    return 0;
  }
  *type = t == napi_float32_array ? MPI_FLOAT : MPI_DOUBLE;
  *esize = t == napi_float32_array ? 4 : 8;
  return 1;
}

static napi_value num(napi_env env, double x) {
  napi_value r;
  napi_create_double(env, x, &r);
  return r;
}

// init() -> { rank, size, library }: MPI_Init_thread (funneled) once per process; later calls return the same.
static napi_value js_init(napi_env env, napi_callback_info info) {
  (void)info;
  if (g_finalized) {
    ready(env);
    return NULL;
  }
  if (!g_inited) {
    int already = 0;
    MPI_Initialized(&already);
    if (!already) {
      int provided = 0;
      int rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
      if (rc != MPI_SUCCESS) return fail(env, "MPI_Init_thread", rc);
    }
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    g_inited = 1;
  }
  int rank = 0, size = 1, len = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  char lib[MPI_MAX_LIBRARY_VERSION_STRING + 1];
  if (MPI_Get_library_version(lib, &len) != MPI_SUCCESS) len = 0;
  lib[len] = 0;
  char* nl = strchr(lib, '\n');
  if (nl) *nl = 0;
  char* comma = strchr(lib, ',');  // "Open MPI v4.1.4, package: ..." -> "Open MPI v4.1.4"
  if (comma) *comma = 0;
  napi_value o, s;
  napi_create_object(env, &o);
  napi_set_named_property(env, o, "rank", num(env, rank));
  napi_set_named_property(env, o, "size", num(env, size));
  napi_create_string_utf8(env, lib, NAPI_AUTO_LENGTH, &s);
  napi_set_named_property(env, o, "library", s);
  return o;
}

// allreduce(buf, mean): sum `buf` over all ranks in place (MPI_IN_PLACE); mean = true divides by the world size.
static napi_value js_allreduce(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (!ready(env)) return NULL;
  void* data;
  size_t n, es;
  MPI_Datatype type;
  if (argc < 1 || !typed(env, argv[0], &data, &n, &type, &es)) return NULL;
  bool mean = false;
  if (argc > 1) napi_get_value_bool(env, argv[1], &mean);
  for (size_t done = 0; done < n;) {  // counts are ints: reduce huge buffers in pieces
    size_t k = n - done > (size_t)INT_MAX ? (size_t)INT_MAX : n - done;
    int rc = MPI_Allreduce(MPI_IN_PLACE, (char*)data + done * es, (int)k, type, MPI_SUM, MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS) return fail(env, "MPI_Allreduce", rc);
    done += k;
  }
  if (mean) {
    int size = 1;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (type == MPI_FLOAT) {
      float* f = (float*)data;
      const float inv = 1.0f / (float)size;
      for (size_t i = 0; i < n; i++) f[i] *= inv;
    } else {
      double* d = (double*)data;
      for (size_t i = 0; i < n; i++) d[i] /= (double)size;
    }
  }
  return undef(env);
}

// bcast(buf, root): rank `root`'s contents of `buf` into every rank's `buf`.
static napi_value js_bcast(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (!ready(env)) return NULL;
  void* data;
  size_t n, es;
  MPI_Datatype type;
  if (argc < 1 || !typed(env, argv[0], &data, &n, &type, &es)) return NULL;
  int root = 0;
  if (argc > 1) napi_get_value_int32(env, argv[1], &root);
  for (size_t done = 0; done < n;) {
    size_t k = n - done > (size_t)INT_MAX ? (size_t)INT_MAX : n - done;
    int rc = MPI_Bcast((char*)data + done * es, (int)k, type, root, MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS) return fail(env, "MPI_Bcast", rc);
    done += k;
  }
  return undef(env);
}

static napi_value js_barrier(napi_env env, napi_callback_info info) {
  (void)info;
  if (!ready(env)) return NULL;
  int rc = MPI_Barrier(MPI_COMM_WORLD);
  if (rc != MPI_SUCCESS) return fail(env, "MPI_Barrier", rc);
  return undef(env);
}

// finalize(): MPI_Finalize once (only after a successful run: it waits for every rank).
static napi_value js_finalize(napi_env env, napi_callback_info info) {
  (void)info;
  if (g_inited && !g_finalized) {
    g_finalized = 1;
    int rc = MPI_Finalize();
    if (rc != MPI_SUCCESS) return fail(env, "MPI_Finalize", rc);
  }
  return undef(env);
}

// abort(code): MPI_Abort on the world: mpirun ends every rank (does not return).
static napi_value js_abort(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int code = 1;
  if (argc > 0) napi_get_value_int32(env, argv[0], &code);
  if (g_inited && !g_finalized) MPI_Abort(MPI_COMM_WORLD, code);
  return undef(env);
}

NAPI_MODULE_INIT() {
  const struct { const char* name; napi_callback fn; } fns[] = {
    {"init", js_init}, {"allreduce", js_allreduce}, {"bcast", js_bcast}, {"barrier", js_barrier}, {"finalize", js_finalize}, {"abort", js_abort},
  };
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
    napi_value f;
    napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].fn, NULL, &f);
    napi_set_named_property(env, exports, fns[i].name, f);
  }
  return exports;
}

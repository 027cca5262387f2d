// Training kernels on raw float32 NHWC buffers: GEMM dispatch (oneDNN, OpenBLAS or own), conv via im2col, max pooling.
#pragma once
#include <cstdint>
#include <functional>

namespace sf {

// True when built against OpenBLAS's cblas (SLIMFIT_HAVE_OPENBLAS) / oneDNN's dnnl_sgemm (SLIMFIT_HAVE_DNNL).
bool have_openblas();
bool have_onednn();
// The library float32 GEMMs go to outside GEMM_OWN mode: "onednn" when linked, else "openblas", else "own".
const char* gemm_library_name();
int num_threads();

// Settings from the JS side (configure() in addon.cc), applied before their first use. Each returns false when it
// comes too late to change anything: the pool already runs with another size, or the GEMM choice was already made.
enum { GEMM_DEFAULT = 0, GEMM_OWN = 1, GEMM_OPENBLAS = 2, GEMM_AUTO = 3, GEMM_ONEDNN = 4 };
bool configure_threads(int n);  // n <= 0: one per hardware thread
bool configure_gemm(int choice);

// The float32 GEMM mode in use (made at first use): GEMM_OWN, GEMM_OPENBLAS, GEMM_ONEDNN (that library throughout;
// oneDNN hands slices thinner than 16 to OpenBLAS or the own kernels, kernels.cc lib_sgemm),
// or GEMM_AUTO (the linked library for plain GEMMs, oneDNN before OpenBLAS, and the own kernels' tiles for
// convolutions: the default when a library is linked on an AVX2/AVX-512 CPU). set_gemm_mode switches it (benchmarks
// and tests compare the paths in one process; GEMM_DEFAULT = the default; a mode whose library is not linked falls
// back to the default).
int gemm_mode();
void set_gemm_mode(int mode);
const char* gemm_mode_name(int mode);
// Whether the float32 GEMM of this shape goes to the library (oneDNN or OpenBLAS, as the mode says) rather than the own
// kernels under the current mode (a fixed function of the shape).
bool gemm_uses_blas(bool ta, bool tb, int M, int N, int K);
// set_gemm_mode(on ? GEMM_OWN : GEMM_DEFAULT) / gemm_mode() == GEMM_OWN.
void set_force_own(bool on);
bool force_own();

// C = alpha*op(A)*op(B) + beta*C (row-major), via the library or sgemm_own as gemm_uses_blas says (float64: OpenBLAS
// only in GEMM_OPENBLAS mode).
void gemm_f32(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb,
              float beta, float* C, int ldc);
// gemm_f32 cut into one slice of C per pool thread (split: 0 along the larger of M and N, 1 rows, 2 columns), each
// slice multiplied on its thread by the library gemm_uses_blas picks for the whole shape, then epi(i0, i1, j0, j1) on
// the same thread while the slice is still in that core's cache (bias + activation, a ReLU mask, an optimizer step).
// Deterministic: the slices depend only on the shape, split and thread count.
void gemm_f32_slices(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb,
                     float beta, float* C, int ldc, int split, const std::function<void(int, int, int, int)>& epi);
// The slicing gemm_f32_slices uses: nc slices (one per pool thread at most) of whole 16-wide units of N (split_n) or
// of M, a fixed function of the shape, split and thread count.
struct GemmSlicing {
  int nc, units;
  bool split_n;
};
GemmSlicing gemm_slicing(int M, int N, int K, int split);
// Slice t's rows [r[0], r[1]) and columns [r[2], r[3]) of C; false when it is empty.
bool gemm_slice_range(const GemmSlicing& g, int t, int M, int N, int* r);
// Slice t of that GEMM on the calling thread (for callers that run several GEMMs' slices in one parallel region);
// false when the slice is empty, else its rows [r[0], r[1]) and columns [r[2], r[3]) of C.
bool gemm_f32_slice(const GemmSlicing& g, int t, bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda,
                    const float* B, int ldb, float beta, float* C, int ldc, int* r);
void gemm_f64(bool ta, bool tb, int M, int N, int K, double alpha, const double* A, int lda, const double* B, int ldb,
              double beta, double* C, int ldc);

// y[rows, n] += bias[n] then activation (0 none, 1 relu), in parallel.
void bias_act(float* y, long rows, int n, const float* bias, int act);

// Convolution geometry (NHWC input, filter [KH, KW, C, OC], output NHWC).
struct ConvGeom {
  int N, H, W, C, KH, KW, OC, OH, OW, sh, sw, dh, dw, pt, pl;
};

// The input values under output pixel (n, oh, ow), in (kh, kw, c) order (0 outside the image).
inline void gather_taps(const ConvGeom& g, const float* x, int n, int oh, int ow, float* t) {
  int k = 0;
  for (int kh = 0; kh < g.KH; kh++) {
    const int ih = oh * g.sh - g.pt + kh * g.dh;
    for (int kw = 0; kw < g.KW; kw++) {
      const int iw = ow * g.sw - g.pl + kw * g.dw;
      const bool in = ih >= 0 && ih < g.H && iw >= 0 && iw < g.W;
      const float* src = x + (((long)n * g.H + ih) * g.W + iw) * g.C;
      // One channel (gray input) is the common case: a plain load (GCC made the general loop a memcpy call per tap).
      if (g.C == 1) t[k++] = in ? *src : 0.f;
      else for (int c = 0; c < g.C; c++) t[k++] = in ? src[c] : 0.f;
    }
  }
}

void conv2d(const ConvGeom& g, const float* x, const float* w, float* y, const float* bias, int act);
void conv2d_backprop_input(const ConvGeom& g, const float* dy, const float* w, float* dx);
void conv2d_backprop_filter(const ConvGeom& g, const float* x, const float* dy, float* dw);

// Max pooling (geometry: C = channels, KH/KW window, OC unused).
void maxpool(const ConvGeom& g, const float* x, float* y);
void maxpool_grad(const ConvGeom& g, const float* x, const float* dy, float* dx);

// Columns [c0, c1) of x (rows x ld floats, row-major) transposed into rows [c0, c1) of xT (row stride `rows`, at least
// c1 * rows floats): xT[c * rows + i] = x[i * ld + c], on the calling thread (16x16 register blocks on AVX-512, cache
// blocks elsewhere).
void transpose_cols(const float* x, long ld, int rows, int c0, int c1, float* xT);

// out[j] = sum over rows of x[rows, cols] (TensorFlow.js Sum over leading axes, e.g. bias gradients).
void sum_rows(const float* x, long rows, long cols, float* out);

// g = (y > 0 ? dy : 0) over rows x cols, and db[j] = sum of g[:, j] (db may be null).
void relu_grad_bias(const float* y, const float* dy, float* g, float* db, long rows, int cols);

// y = op(a, b) on n floats; b (for add/mul) has period m (m == n: same shape; m < n: broadcast over rows of m).
enum { EW_RELU = 0, EW_ADD = 1, EW_MUL = 2, EW_STEP = 3 };
void elementwise(int op, const float* a, const float* b, float* y, long n, long m, float alpha);

// Fused Adam step on n parameters in place: the moments in tfjs's order of operations, the step with one division
// (the bias corrections and lr as multiplications, a few ulps from tfjs's); oma1 = 1-beta1^t, oma2 = 1-beta2^t,
// c1 = 1-beta1, c2 = 1-beta2 (each rounded to float32 as tfjs does).
void adam_update(long n, float* p, float* m, float* v, const float* g, float lr, float beta1, float beta2, float eps,
                 float oma1, float oma2, float c1, float c2);

// adam_update on the calling thread only (inside a parallel region).
void adam_update_serial(long n, float* p, float* m, float* v, const float* g, float lr, float beta1, float beta2, float eps,
                        float oma1, float oma2, float c1, float c2);
// adam_update_serial that also sets g to zero as it goes (in cache right after reading it), for a caller that
// accumulates the next gradient into g with beta = 1 instead of having the GEMM clear it first (OpenBLAS clears C in
// a separate pass when beta = 0).
void adam_update_serial_clear(long n, float* p, float* m, float* v, float* g, float lr, float beta1, float beta2, float eps,
                              float oma1, float oma2, float c1, float c2);

}  // namespace sf

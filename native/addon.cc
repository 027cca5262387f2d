// N-API bindings: every kernel takes an ArrayBuffer (e.g. the wasm heap) or typed array plus byte offsets, zero copy.
#include <node_api.h>

#include <algorithm>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "conv_step.h"
#include "dense_step.h"
#include "gemm_bf16.h"
#include "gemm_own.h"
#include "kernels.h"
#include "hugepage.h"
#include "napi_args.h"

napi_value RegisterLowp(napi_env env, napi_value exports);  // native/lowp.cc: the precision lab's storage kernels
napi_value RegisterQuant(napi_env env, napi_value exports);  // native/quant.cc: the precision lab's rounding kernels

using namespace sf;

namespace {

struct Args : NapiArgs<24> {
  Args(napi_env e, napi_callback_info info) : NapiArgs(e, info, "slimfit engine") {}
  int i32(size_t i) { return (int)num(i); }
  // Base pointer of an ArrayBuffer or typed array (byte 0 of its view) and its byte length.
  uint8_t* base(size_t i, size_t* len) {
    bool is = false;
    void* data = nullptr;
    *len = 0;
    if (i < n && napi_is_arraybuffer(env, v[i], &is) == napi_ok && is) {
      napi_get_arraybuffer_info(env, v[i], &data, len);
      return (uint8_t*)data;
    }
    if (i < n && napi_is_typedarray(env, v[i], &is) == napi_ok && is) {
      napi_typedarray_type t;
      size_t length, offset, esz = 1;
      napi_value ab;
      napi_get_typedarray_info(env, v[i], &t, &length, &data, &ab, &offset);
      switch (t) {
        case napi_int16_array: case napi_uint16_array: esz = 2; break;
        case napi_int32_array: case napi_uint32_array: case napi_float32_array: esz = 4; break;
        case napi_float64_array: case napi_bigint64_array: case napi_biguint64_array: esz = 8; break;
        default: esz = 1;
      }
      *len = length * esz;
      return (uint8_t*)data;
    }
    fail("slimfit engine: expected an ArrayBuffer or typed array");
    return nullptr;
  }
};

// Heap-style pointer: (buffer, byteOffset, bytesNeeded); byteOffset < 0 means "absent".
template <class T>
T* at(Args& a, uint8_t* base, size_t len, double off, double count) {
  if (off < 0) return nullptr;
  if (off + count * sizeof(T) > (double)len || ((uint64_t)off % alignof(T)) != 0) {
    a.fail("slimfit engine: tensor view outside its buffer or misaligned");
    return nullptr;
  }
  return (T*)(base + (size_t)off);
}

napi_value undef(napi_env env) {
  napi_value u;
  napi_get_undefined(env, &u);
  return u;
}

// gemm(buf, ta, tb, M, N, K, aOff, lda, bOff, ldb, cOff, ldc, batch, strideA, strideB, strideC, biasOff, act, beta)
// Strides are in elements (0 broadcasts an operand over the batch).
napi_value Gemm(napi_env env, napi_callback_info info) {
  Args a(env, info);
  size_t len;
  uint8_t* b = a.base(0, &len);
  bool ta = a.num(1) != 0, tb = a.num(2) != 0;
  int M = a.i32(3), N = a.i32(4), K = a.i32(5);
  double aOff = a.num(6), bOff = a.num(8), cOff = a.num(10);
  int lda = a.i32(7), ldb = a.i32(9), ldc = a.i32(11), batch = a.i32(12);
  double sA = a.num(13), sB = a.num(14), sC = a.num(15), biasOff = a.num(16);
  int act = a.i32(17);
  float beta = (float)a.num(18);
  if (!a.ok) return nullptr;
  double aN = (batch - 1) * sA + (double)(ta ? K : M) * lda, bN = (batch - 1) * sB + (double)(tb ? N : K) * ldb;
  float* A = at<float>(a, b, len, aOff, aN);
  float* B = at<float>(a, b, len, bOff, bN);
  float* C = at<float>(a, b, len, cOff, (batch - 1) * sC + (double)M * ldc);
  float* bias = at<float>(a, b, len, biasOff, N);
  if (!a.ok) return nullptr;
  for (int i = 0; i < batch; i++) {
    float* Ci = C + (long)(i * sC);
    gemm_f32(ta, tb, M, N, K, 1.f, A + (long)(i * sA), lda, B + (long)(i * sB), ldb, beta, Ci, ldc);
    if (ldc == N) bias_act(Ci, M, N, bias, act);
  }
  return undef(env);
}

bool geom(Args& a, size_t i, ConvGeom& g) {
  int* f = &g.N;
  for (int k = 0; k < 15; k++) f[k] = a.i32(i + k);
  return a.ok;
}

// conv2d(buf, xOff, wOff, yOff, biasOff, act, ...geom15)
napi_value Conv2d(napi_env env, napi_callback_info info) {
  Args a(env, info);
  size_t len;
  uint8_t* b = a.base(0, &len);
  ConvGeom g;
  if (!geom(a, 6, g)) return nullptr;
  int act = a.i32(5);
  float* x = at<float>(a, b, len, a.num(1), (double)g.N * g.H * g.W * g.C);
  float* w = at<float>(a, b, len, a.num(2), (double)g.KH * g.KW * g.C * g.OC);
  float* y = at<float>(a, b, len, a.num(3), (double)g.N * g.OH * g.OW * g.OC);
  float* bias = at<float>(a, b, len, a.num(4), g.OC);
  if (!a.ok) return nullptr;
  conv2d(g, x, w, y, bias, act);
  return undef(env);
}

// conv2dBackpropInput(buf, dyOff, wOff, dxOff, ...geom15)
napi_value Conv2dBpInput(napi_env env, napi_callback_info info) {
  Args a(env, info);
  size_t len;
  uint8_t* b = a.base(0, &len);
  ConvGeom g;
  if (!geom(a, 4, g)) return nullptr;
  float* dy = at<float>(a, b, len, a.num(1), (double)g.N * g.OH * g.OW * g.OC);
  float* w = at<float>(a, b, len, a.num(2), (double)g.KH * g.KW * g.C * g.OC);
  float* dx = at<float>(a, b, len, a.num(3), (double)g.N * g.H * g.W * g.C);
  if (!a.ok) return nullptr;
  conv2d_backprop_input(g, dy, w, dx);
  return undef(env);
}

// conv2dBackpropFilter(buf, xOff, dyOff, dwOff, ...geom15)
napi_value Conv2dBpFilter(napi_env env, napi_callback_info info) {
  Args a(env, info);
  size_t len;
  uint8_t* b = a.base(0, &len);
  ConvGeom g;
  if (!geom(a, 4, g)) return nullptr;
  float* x = at<float>(a, b, len, a.num(1), (double)g.N * g.H * g.W * g.C);
  float* dy = at<float>(a, b, len, a.num(2), (double)g.N * g.OH * g.OW * g.OC);
  float* dw = at<float>(a, b, len, a.num(3), (double)g.KH * g.KW * g.C * g.OC);
  if (!a.ok) return nullptr;
  conv2d_backprop_filter(g, x, dy, dw);
  return undef(env);
}

// maxPool(buf, xOff, yOff, ...geom15)
napi_value MaxPool(napi_env env, napi_callback_info info) {
  Args a(env, info);
  size_t len;
  uint8_t* b = a.base(0, &len);
  ConvGeom g;
  if (!geom(a, 3, g)) return nullptr;
  float* x = at<float>(a, b, len, a.num(1), (double)g.N * g.H * g.W * g.C);
  float* y = at<float>(a, b, len, a.num(2), (double)g.N * g.OH * g.OW * g.C);
  if (!a.ok) return nullptr;
  maxpool(g, x, y);
  return undef(env);
}

// maxPoolGrad(buf, xOff, dyOff, dxOff, ...geom15)
napi_value MaxPoolGrad(napi_env env, napi_callback_info info) {
  Args a(env, info);
  size_t len;
  uint8_t* b = a.base(0, &len);
  ConvGeom g;
  if (!geom(a, 4, g)) return nullptr;
  float* x = at<float>(a, b, len, a.num(1), (double)g.N * g.H * g.W * g.C);
  float* dy = at<float>(a, b, len, a.num(2), (double)g.N * g.OH * g.OW * g.C);
  float* dx = at<float>(a, b, len, a.num(3), (double)g.N * g.H * g.W * g.C);
  if (!a.ok) return nullptr;
  maxpool_grad(g, x, dy, dx);
  return undef(env);
}

// adam(buf, n, pOff, mOff, vOff, gOff, lr, beta1, beta2, eps, oneMinusAccBeta1, oneMinusAccBeta2, 1-beta1, 1-beta2)
napi_value Adam(napi_env env, napi_callback_info info) {
  Args a(env, info);
  size_t len;
  uint8_t* b = a.base(0, &len);
  double n = a.num(1);
  float* p = at<float>(a, b, len, a.num(2), n);
  float* m = at<float>(a, b, len, a.num(3), n);
  float* v = at<float>(a, b, len, a.num(4), n);
  float* g = at<float>(a, b, len, a.num(5), n);
  float lr = (float)a.num(6), b1 = (float)a.num(7), b2 = (float)a.num(8), eps = (float)a.num(9);
  float o1 = (float)a.num(10), o2 = (float)a.num(11), c1 = (float)a.num(12), c2 = (float)a.num(13);
  if (!a.ok) return nullptr;
  adam_update((long)n, p, m, v, g, lr, b1, b2, eps, o1, o2, c1, c2);
  return undef(env);
}

// Huge pages (hugepage.h) for the weights and Adam moments a step streams through: every 2 MiB page that holds part
// of such a tensor of at least 1 MiB (smaller ones are left alone: a page around them would be mostly other memory).
// Done once per heap and model (again when the heap or the tensors move: a grown heap, another model).
void advise_weights_huge(uint8_t* heap, size_t hlen, const DenseStepArgs& s) {
  std::vector<std::pair<uintptr_t, uintptr_t>> r;
  for (const DenseLayer& d : s.layers)
    for (const float* t : {(const float*)d.w, (const float*)d.mw, (const float*)d.vw}) {
      const size_t bytes = (size_t)d.in * d.out * sizeof(float);
      if (bytes < (1u << 20)) continue;
      r.push_back({(uintptr_t)t & ~(uintptr_t)(HUGE_PAGE - 1), ((uintptr_t)t + bytes + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1)});
    }
  if (r.empty()) return;
  std::sort(r.begin(), r.end());
  size_t k = 0;  // merge overlapping or touching page ranges
  for (size_t i = 1; i < r.size(); i++)
    if (r[i].first <= r[k].second) r[k].second = std::max(r[k].second, r[i].second);
    else r[++k] = r[i];
  r.resize(k + 1);
  static std::mutex mu;
  static std::vector<std::pair<uintptr_t, uintptr_t>> last;
  static uintptr_t lastHeap = 0;
  static size_t lastLen = 0;
  std::lock_guard<std::mutex> g(mu);
  if (lastHeap == (uintptr_t)heap && lastLen == hlen && last == r) return;
  lastHeap = (uintptr_t)heap, lastLen = hlen, last = r;
  const uintptr_t h0 = (uintptr_t)heap, h1 = h0 + hlen;  // stay inside the heap
  for (auto& [lo, hi] : r) {
    const uintptr_t a = std::max(lo, h0), e = std::min(hi, h1);
    if (e > a) advise_huge((void*)a, e - a, true);
  }
}

// denseStep(heap, x, y, batch, plan, out): plan = Float64Array [nLayers, lr, beta1, beta2, eps, oma1, oma2, c1, c2,
// then per layer: in, out, act, wOff, bOff, mwOff, vwOff, mbOff, vbOff] (byte offsets into heap, -1 = no bias);
// x, y are float32 typed arrays; out (Float64Array) receives [mean loss, correct count]. An optional gOff (byte offset
// into heap of room for every weight's gradient, in plan order W then b per layer; -1 = none) makes it compute
// gradients only; an optional precision 1 runs every GEMM in the bf16 mixed-precision mode (0 = float32; throws when
// the CPU has no bf16 kernel: the JS side checks bf16Info() first and says so as a SlimfitError).
napi_value DenseStep(napi_env env, napi_callback_info info) {
  Args a(env, info);
  size_t hlen, xlen, ylen, plen, olen;
  uint8_t* heap = a.base(0, &hlen);
  uint8_t* xb = a.base(1, &xlen);
  uint8_t* yb = a.base(2, &ylen);
  int B = a.i32(3);
  uint8_t* pb = a.base(4, &plen);
  uint8_t* ob = a.base(5, &olen);
  if (!a.ok) return nullptr;
  const double* plan = (const double*)pb;
  if (plen < 9 * sizeof(double) || olen < 2 * sizeof(double) || B <= 0) {
    a.fail("slimfit engine: bad denseStep arguments");
    return nullptr;
  }
  int L = (int)plan[0];
  if (L <= 0 || plen < (9 + 9 * (size_t)L) * sizeof(double)) {
    a.fail("slimfit engine: bad denseStep plan");
    return nullptr;
  }
  DenseStepArgs s;
  s.batch = B;
  s.adam = {(float)plan[1], (float)plan[2], (float)plan[3], (float)plan[4], (float)plan[5], (float)plan[6], (float)plan[7], (float)plan[8]};
  for (int l = 0; l < L; l++) {
    const double* q = plan + 9 + 9 * l;
    DenseLayer d;
    d.in = (int)q[0];
    d.out = (int)q[1];
    d.act = (int)q[2];
    double nw = (double)d.in * d.out;
    if (d.in <= 0 || d.out <= 0 || (l > 0 && d.in != s.layers[l - 1].out) || d.act < 0 || d.act > 2 || ((d.act == DENSE_SOFTMAX) != (l == L - 1))) {
      a.fail("slimfit engine: bad denseStep layer");
      return nullptr;
    }
    d.w = at<float>(a, heap, hlen, q[3], nw);
    d.b = at<float>(a, heap, hlen, q[4], d.out);
    d.mw = at<float>(a, heap, hlen, q[5], nw);
    d.vw = at<float>(a, heap, hlen, q[6], nw);
    d.mb = at<float>(a, heap, hlen, q[7], d.out);
    d.vb = at<float>(a, heap, hlen, q[8], d.out);
    if (!a.ok) return nullptr;
    if (!d.w || !d.mw || !d.vw || (d.b && (!d.mb || !d.vb))) {
      a.fail("slimfit engine: denseStep layer without weights or moments");
      return nullptr;
    }
    s.layers.push_back(d);
  }
  for (const DenseLayer& d : s.layers)  // the kernels index batch x width products with int
    if ((double)B * d.in >= 2147483648.0 || (double)B * d.out >= 2147483648.0) {
      a.fail("slimfit engine: denseStep batch x layer width must stay below 2^31");
      return nullptr;
    }
  if (xlen < (size_t)B * s.layers[0].in * sizeof(float) || ylen < (size_t)B * s.layers[L - 1].out * sizeof(float)) {
    a.fail("slimfit engine: denseStep batch smaller than batch x features");
    return nullptr;
  }
  s.x = (const float*)xb;
  s.y = (const float*)yb;
  if (a.n > 6) {
    double total = 0;
    for (const DenseLayer& d : s.layers) total += (double)d.in * d.out + (d.b ? d.out : 0);
    s.grads = at<float>(a, heap, hlen, a.num(6), total);
    if (!a.ok) return nullptr;
  }
  if (a.n > 7) {
    int prec = a.i32(7);
    if (!a.ok) return nullptr;
    if (prec != 0 && prec != 1) {
      a.fail("slimfit engine: denseStep precision must be 0 (float32) or 1 (bf16)");
      return nullptr;
    }
    if (prec == 1 && bf16_best_kernel() == BF16_NONE) {
      a.fail("slimfit engine: denseStep in bf16 needs AVX512_BF16 or AMX-BF16");
      return nullptr;
    }
    s.bf16 = prec == 1;
  }
  advise_weights_huge(heap, hlen, s);
  double* out = (double*)ob;
  dense_train_step(s, &out[0], &out[1]);
  return undef(env);
}

// convStep(heap, x, y, batch, plan, out[, prof[, noFusedPool[, gOff]]]): plan = Float64Array [nLayers, lr, beta1, beta2, eps, oma1, oma2, c1,
// c2, then per layer 26: kind, act, in, out, geom15 (N ignored), wOff, bOff, mwOff, vwOff, mbOff, vbOff, chain] (byte
// offsets into heap, -1 = none; pool layers have none; chain: see ConvStepLayer); out receives [mean loss, correct count]; prof (Float64Array, 4L+2)
// accumulates seconds per phase (see conv_step.h; an empty array: none); noFusedPool 1 runs a first conv and its pool
// as separate kernels; gOff >= 0 (byte offset into heap of room for every weight's gradient, in plan order W then b per
// layer) makes it compute gradients only.
napi_value ConvStep(napi_env env, napi_callback_info info) {
  Args a(env, info);
  size_t hlen, xlen, ylen, plen, olen, flen = 0;
  uint8_t* heap = a.base(0, &hlen);
  uint8_t* xb = a.base(1, &xlen);
  uint8_t* yb = a.base(2, &ylen);
  int B = a.i32(3);
  uint8_t* pb = a.base(4, &plen);
  uint8_t* ob = a.base(5, &olen);
  uint8_t* fb = a.n > 6 ? a.base(6, &flen) : nullptr;
  if (!a.ok) return nullptr;
  const double* plan = (const double*)pb;
  const int P = 26;
  int L = plen >= 9 * sizeof(double) ? (int)plan[0] : 0;
  if (olen < 2 * sizeof(double) || B <= 0 || L <= 0 || L > 1000 || plen < (9 + (size_t)P * L) * sizeof(double) ||
      (flen && flen < (4 * (size_t)L + 2) * sizeof(double))) {
    a.fail("slimfit engine: bad convStep arguments");
    return nullptr;
  }
  ConvStepArgs s;
  s.batch = B;
  s.adam = {(float)plan[1], (float)plan[2], (float)plan[3], (float)plan[4], (float)plan[5], (float)plan[6], (float)plan[7], (float)plan[8]};
  const double big = 1 << 30;
  double branchOut = 0;  // outputs of the chains before the current one
  std::vector<int> chainStart;
  for (int l = 0; l < L; l++) {
    const double* q = plan + 9 + P * l;
    ConvStepLayer d;
    d.kind = (int)q[0];
    d.act = (int)q[1];
    d.in = (int)q[2];
    d.out = (int)q[3];
    int* f = &d.g.N;
    bool geomOk = true;
    for (int k = 0; k < 15; k++) {
      if (!(q[4 + k] >= 0 && q[4 + k] < big)) geomOk = false;
      f[k] = geomOk ? (int)q[4 + k] : 0;
    }
    const ConvGeom& g = d.g;
    double nw = 0, nb = 0;
    bool ok = geomOk && q[2] >= 1 && q[3] >= 1 && q[2] < big && q[3] < big && (double)B * q[2] < 2 * big && (double)B * q[3] < 2 * big &&
              d.act >= 0 && d.act <= 2 && ((d.act == DENSE_SOFTMAX) == (l == L - 1)) && (l < L - 1 || d.kind == CS_DENSE);
    // chains: consecutive indices from 0; each branch starts at the input, the last (head) at the branches' outputs
    d.chain = (int)q[25];
    const int prevChain = l ? s.layers[l - 1].chain : -1;
    if (ok && q[25] == prevChain) {
      ok = d.in == s.layers[l - 1].out;
    } else if (ok && q[25] == prevChain + 1) {
      ok = l == 0 || s.layers[l - 1].act != DENSE_SOFTMAX;
      branchOut += l ? (double)s.layers[l - 1].out : 0;
      chainStart.push_back(l);
    } else {
      ok = false;
    }
    if (ok && d.kind == CS_DENSE) {
      nw = (double)d.in * d.out;
      nb = d.out;
    } else if (ok && (d.kind == CS_CONV || d.kind == CS_POOL)) {
      const int oc = d.kind == CS_CONV ? g.OC : g.C;
      ok = g.H >= 1 && g.W >= 1 && g.C >= 1 && g.KH >= 1 && g.KW >= 1 && oc >= 1 && g.OH >= 1 && g.OW >= 1 && g.sh >= 1 &&
           g.sw >= 1 && g.dh >= 1 && g.dw >= 1 && (double)g.H * g.W * g.C == d.in && (double)g.OH * g.OW * oc == d.out &&
           (d.kind == CS_CONV || d.act == DENSE_LINEAR);
      if (d.kind == CS_CONV) nw = (double)g.KH * g.KW * g.C * g.OC, nb = g.OC;
      else d.g.OC = g.C;
    } else {
      ok = false;
    }
    if (!ok) {
      a.fail("slimfit engine: bad convStep layer");
      return nullptr;
    }
    d.w = d.b = d.mw = d.vw = d.mb = d.vb = nullptr;
    if (d.kind != CS_POOL) {
      d.w = at<float>(a, heap, hlen, q[19], nw);
      d.b = at<float>(a, heap, hlen, q[20], nb);
      d.mw = at<float>(a, heap, hlen, q[21], nw);
      d.vw = at<float>(a, heap, hlen, q[22], nw);
      d.mb = at<float>(a, heap, hlen, q[23], nb);
      d.vb = at<float>(a, heap, hlen, q[24], nb);
      if (!a.ok) return nullptr;
      if (!d.w || !d.mw || !d.vw || (d.b && (!d.mb || !d.vb))) {
        a.fail("slimfit engine: convStep layer without weights or moments");
        return nullptr;
      }
    }
    s.layers.push_back(d);
  }
  // several chains: every branch reads the input; the head reads the branches' outputs side by side
  const size_t nChains = chainStart.size();
  bool chainsOk = nChains < 2 || s.layers[chainStart.back()].in == branchOut;
  for (size_t c = 0; c + 1 < nChains; c++) chainsOk = chainsOk && s.layers[chainStart[c]].in == s.layers[0].in;
  if (!chainsOk) {
    a.fail("slimfit engine: bad convStep chains");
    return nullptr;
  }
  if (xlen < (size_t)B * s.layers[0].in * sizeof(float) || ylen < (size_t)B * s.layers[L - 1].out * sizeof(float)) {
    a.fail("slimfit engine: convStep batch smaller than batch x features");
    return nullptr;
  }
  s.x = (const float*)xb;
  s.y = (const float*)yb;
  s.prof = flen ? (double*)fb : nullptr;
  if (a.n > 7) s.noFusedPool = a.num(7) != 0;
  if (a.n > 8 && a.num(8) >= 0) {
    double total = 0;
    for (const ConvStepLayer& d : s.layers) {
      if (d.kind == CS_CONV) total += (double)d.g.KH * d.g.KW * d.g.C * d.g.OC + (d.b ? d.g.OC : 0);
      if (d.kind == CS_DENSE) total += (double)d.in * d.out + (d.b ? d.out : 0);
    }
    s.grads = at<float>(a, heap, hlen, a.num(8), total);
    if (!a.ok) return nullptr;
  }
  double* out = (double*)ob;
  conv_train_step(s, &out[0], &out[1]);
  return undef(env);
}

// sumRows(buf, xOff, rows, cols, outOff)
napi_value SumRows(napi_env env, napi_callback_info info) {
  Args a(env, info);
  size_t len;
  uint8_t* b = a.base(0, &len);
  double rows = a.num(2), cols = a.num(3);
  float* x = at<float>(a, b, len, a.num(1), rows * cols);
  float* out = at<float>(a, b, len, a.num(4), cols);
  if (!a.ok) return nullptr;
  sum_rows(x, (long)rows, (long)cols, out);
  return undef(env);
}

// reluGradBias(buf, yOff, dyOff, gOff, dbOff, rows, cols): dbOff -1 = no bias gradient.
napi_value ReluGradBias(napi_env env, napi_callback_info info) {
  Args a(env, info);
  size_t len;
  uint8_t* b = a.base(0, &len);
  double rows = a.num(5), cols = a.num(6);
  float* y = at<float>(a, b, len, a.num(1), rows * cols);
  float* dy = at<float>(a, b, len, a.num(2), rows * cols);
  float* g = at<float>(a, b, len, a.num(3), rows * cols);
  float* db = a.num(4) < 0 ? nullptr : at<float>(a, b, len, a.num(4), cols);
  if (!a.ok) return nullptr;
  relu_grad_bias(y, dy, g, db, (long)rows, (int)cols);
  return undef(env);
}

// elementwise(buf, op, aOff, bOff, yOff, n, m, alpha): op 0 relu, 1 add, 2 mul, 3 step; b has period m.
napi_value Elementwise(napi_env env, napi_callback_info info) {
  Args a(env, info);
  size_t len;
  uint8_t* b = a.base(0, &len);
  int op = a.i32(1);
  double n = a.num(5), m = a.num(6);
  float alpha = (float)a.num(7);
  float* x = at<float>(a, b, len, a.num(2), n);
  float* y2 = at<float>(a, b, len, a.num(3), m);
  float* out = at<float>(a, b, len, a.num(4), n);
  if (!a.ok) return nullptr;
  if (op < 0 || op > 3 || ((op == EW_ADD || op == EW_MUL) && !y2) || m <= 0 || (long)n % (long)m != 0) {
    a.fail("slimfit engine: bad elementwise arguments");
    return nullptr;
  }
  elementwise(op, x, y2, out, (long)n, (long)m, alpha);
  return undef(env);
}

// gemmDtype(kind, M, N, K, A, B, C) on whole typed arrays; kind: 'f64' | 'f32' (current choice), 'f64blas' | 'f32blas'
// (OpenBLAS), 'f64own' | 'f32own' | 'bf16' | 'i8' (own kernels). Returns false when the CPU (or build) lacks it.
napi_value GemmDtype(napi_env env, napi_callback_info info) {
  Args a(env, info);
  char kind[16] = {0};
  size_t klen = 0;
  if (a.n < 7 || napi_get_value_string_utf8(env, a.v[0], kind, sizeof kind, &klen) != napi_ok) {
    a.fail("slimfit engine: gemmDtype(kind, M, N, K, A, B, C)");
    return nullptr;
  }
  int M = a.i32(1), N = a.i32(2), K = a.i32(3);
  size_t la, lb, lc;
  uint8_t *A = a.base(4, &la), *B = a.base(5, &lb), *C = a.base(6, &lc);
  if (!a.ok) return nullptr;
  std::string k(kind);
  bool f64 = k == "f64" || k == "f64own" || k == "f64blas";
  size_t esz = f64 ? 8 : (k == "bf16") ? 2 : (k == "i8") ? 1 : 4;
  size_t csz = f64 ? 8 : 4;
  if (la < (size_t)M * K * esz || lb < (size_t)K * N * esz || lc < (size_t)M * N * csz) {
    a.fail("slimfit engine: gemmDtype buffers too small");
    return nullptr;
  }
  bool ok = true;
  if (k == "f64blas" || k == "f32blas") {
    if (!have_openblas()) ok = false;
    else {
      int saved = gemm_mode();
      set_gemm_mode(GEMM_OPENBLAS);
      if (k == "f64blas") gemm_f64(false, false, M, N, K, 1.0, (double*)A, K, (double*)B, N, 0.0, (double*)C, N);
      else gemm_f32(false, false, M, N, K, 1.f, (float*)A, K, (float*)B, N, 0.f, (float*)C, N);
      set_gemm_mode(saved);
    }
  } else if (k == "f64") gemm_f64(false, false, M, N, K, 1.0, (double*)A, K, (double*)B, N, 0.0, (double*)C, N);
  else if (k == "f64own") dgemm_own(false, false, M, N, K, 1.0, (double*)A, K, (double*)B, N, 0.0, (double*)C, N, num_threads());
  else if (k == "f32") gemm_f32(false, false, M, N, K, 1.f, (float*)A, K, (float*)B, N, 0.f, (float*)C, N);
  else if (k == "f32own") sgemm_own(false, false, M, N, K, 1.f, (float*)A, K, (float*)B, N, 0.f, (float*)C, N, num_threads());
  else if (k == "bf16") ok = bf16gemm_own(M, N, K, (uint16_t*)A, K, (uint16_t*)B, N, (float*)C, N, num_threads());
  else if (k == "i8") ok = u8s8gemm_own(M, N, K, A, K, (int8_t*)B, N, (int32_t*)C, N, num_threads());
  else {
    a.fail("slimfit engine: unknown gemm kind");
    return nullptr;
  }
  napi_value r;
  napi_get_boolean(env, ok, &r);
  return r;
}

napi_value prop_str(napi_env env, napi_value obj, const char* k, const char* val);

// gemmBf16(kind, ta, tb, M, N, K, A, B, C): C = op(A)·op(B) on whole Float32Arrays (A is MxK or KxM, B KxN or NxK,
// row-major) with bf16 operands and float32 accumulation; kind 'amx' | 'avx512bf16' | '' (the best). Returns false
// when that kernel is not available here.
napi_value GemmBf16(napi_env env, napi_callback_info info) {
  Args a(env, info);
  std::string kind = a.n > 0 ? [&] {
    char buf[16] = {0};
    size_t len = 0;
    napi_get_value_string_utf8(env, a.v[0], buf, sizeof buf, &len);
    return std::string(buf, len);
  }() : "";
  bool ta = a.num(1) != 0, tb = a.num(2) != 0;
  int M = a.i32(3), N = a.i32(4), K = a.i32(5);
  size_t la, lb, lc;
  uint8_t *A = a.base(6, &la), *B = a.base(7, &lb), *C = a.base(8, &lc);
  if (!a.ok) return nullptr;
  int k = kind.empty() ? BF16_DEFAULT : kind == "amx" ? BF16_AMX : kind == "avx512bf16" ? BF16_AVX512 : -2;
  if (k == -2 || M < 0 || N < 0 || K < 0 || la < (size_t)M * K * 4 || lb < (size_t)K * N * 4 || lc < (size_t)M * N * 4) {
    a.fail("slimfit engine: gemmBf16(kind 'amx' | 'avx512bf16' | '', ta, tb, M, N, K, A, B, C) with big enough arrays");
    return nullptr;
  }
  bool ok = k == BF16_DEFAULT ? bf16_best_kernel() != BF16_NONE : bf16_kernel_available(k);
  if (ok)
    gemm_bf16_slices(k, ta, tb, M, N, K, (float*)A, ta ? M : K, (float*)B, tb ? K : N, (float*)C, N, 0, [](int, int, int, int) {});
  napi_value r;
  napi_get_boolean(env, ok, &r);
  return r;
}

// setBf16Kernel('amx' | 'avx512bf16' | ''): the kernel the bf16 mode uses ('' = the best; one this CPU lacks is
// ignored); returns the kernel now in use. For tests and benchmarks.
napi_value SetBf16Kernel(napi_env env, napi_callback_info info) {
  Args a(env, info);
  std::string k;
  if (!a.str(0, &k)) {
    a.fail("slimfit engine: setBf16Kernel(kind)");
    return nullptr;
  }
  int kind = k.empty() ? BF16_DEFAULT : k == "amx" ? BF16_AMX : k == "avx512bf16" ? BF16_AVX512 : -2;
  if (kind == -2) {
    a.fail("slimfit engine: setBf16Kernel expects amx, avx512bf16 or ''");
    return nullptr;
  }
  napi_value r;
  napi_create_string_utf8(env, bf16_kernel_name(set_bf16_kernel(kind)), NAPI_AUTO_LENGTH, &r);
  return r;
}

// bf16Info(): { kernel: 'amx' | 'avx512bf16' | 'none', avx512bf16, amx, amxNote } (the first call requests AMX from Linux).
napi_value Bf16Info(napi_env env, napi_callback_info) {
  napi_value o, v;
  napi_create_object(env, &o);
  prop_str(env, o, "kernel", bf16_kernel_name(bf16_best_kernel()));
  napi_get_boolean(env, bf16_kernel_available(BF16_AVX512), &v);
  napi_set_named_property(env, o, "avx512bf16", v);
  napi_get_boolean(env, bf16_kernel_available(BF16_AMX), &v);
  napi_set_named_property(env, o, "amx", v);
  prop_str(env, o, "amxNote", bf16_amx_note().c_str());
  return o;
}

// setForceOwn(bool): use the hand-written SGEMM even when a library is linked (false: back to the default mode).
napi_value SetForceOwn(napi_env env, napi_callback_info info) {
  Args a(env, info);
  bool on = false;
  if (a.n >= 1) napi_get_value_bool(env, a.v[0], &on);
  set_force_own(on);
  return undef(env);
}

// setGemmMode('own' | 'openblas' | 'onednn' | 'auto' | ''): the float32 GEMM mode ('' = the default; a mode whose
// library is not linked falls back to the default). Returns the mode now in use. For benchmarks and tests: a training run
// takes its mode from configure() (SLIMFIT_GEMM) and keeps it.
napi_value SetGemmMode(napi_env env, napi_callback_info info) {
  Args a(env, info);
  std::string m;
  if (!a.str(0, &m)) {
    a.fail("slimfit engine: setGemmMode(mode)");
    return nullptr;
  }
  int mode = m.empty() ? GEMM_DEFAULT : m == "own" ? GEMM_OWN : m == "openblas" ? GEMM_OPENBLAS : m == "onednn" ? GEMM_ONEDNN : m == "auto" ? GEMM_AUTO : -1;
  if (mode < 0) {
    a.fail("slimfit engine: setGemmMode expects own, openblas, onednn, auto or ''");
    return nullptr;
  }
  set_gemm_mode(mode);
  napi_value r;
  napi_create_string_utf8(env, gemm_mode_name(gemm_mode()), NAPI_AUTO_LENGTH, &r);
  return r;
}

// gemmUsesBlas(ta, tb, M, N, K): whether a float32 GEMM of this shape goes to the library (oneDNN or OpenBLAS) rather
// than the own kernels under the current mode.
napi_value GemmUsesBlas(napi_env env, napi_callback_info info) {
  Args a(env, info);
  bool ta = a.num(0) != 0, tb = a.num(1) != 0;
  int M = a.i32(2), N = a.i32(3), K = a.i32(4);
  if (!a.ok) return nullptr;
  napi_value r;
  napi_get_boolean(env, gemm_uses_blas(ta, tb, M, N, K), &r);
  return r;
}

// A string property of obj ("" when absent or not a string).
std::string get_str(napi_env env, napi_value obj, const char* k) {
  napi_value v;
  char buf[32];
  size_t len = 0;
  if (napi_get_named_property(env, obj, k, &v) != napi_ok || napi_get_value_string_utf8(env, v, buf, sizeof buf, &len) != napi_ok) return "";
  return std::string(buf, len);
}

// configure({ threads, gemm, isa }): settings the JS side read from the environment (src/core/config.ts), called
// right after loading and before any kernel runs. threads 0 = one per hardware thread; gemm '' | 'own' | 'openblas' |
// 'onednn';
// isa '' | 'avx512' | 'avx2' | 'generic' (a cap). Throws when a value is unknown, or when the pool or a dispatch
// choice was already made with different settings (configure came too late to apply them).
napi_value Configure(napi_env env, napi_callback_info info) {
  Args a(env, info);
  napi_valuetype t = napi_undefined;
  if (a.n < 1 || napi_typeof(env, a.v[0], &t) != napi_ok || t != napi_object) {
    napi_throw_type_error(env, nullptr, "slimfit engine: configure expects { threads, gemm, isa }");
    return nullptr;
  }
  napi_value tv;
  double threads = 0;
  if (napi_get_named_property(env, a.v[0], "threads", &tv) == napi_ok) napi_get_value_double(env, tv, &threads);
  std::string gemm = get_str(env, a.v[0], "gemm"), isa = get_str(env, a.v[0], "isa");
  int g = gemm.empty() ? GEMM_DEFAULT : gemm == "own" ? GEMM_OWN : gemm == "openblas" ? GEMM_OPENBLAS : gemm == "onednn" ? GEMM_ONEDNN : -1;
  int cap = isa.empty() || isa == "avx512" ? ISA_AVX512 : isa == "avx2" ? ISA_AVX2 : isa == "generic" ? ISA_GENERIC : -1;
  if (g < 0 || cap < 0 || !(threads >= 0 && threads <= 256)) {
    napi_throw_type_error(env, nullptr, "slimfit engine: configure got an unknown gemm, isa or threads value");
    return nullptr;
  }
  if (!configure_threads((int)threads) || !configure_gemm(g) || !configure_isa((Isa)cap)) {
    napi_throw_error(env, nullptr, "slimfit engine: configure came after first use with different settings");
    return nullptr;
  }
  return undef(env);
}

napi_value prop_str(napi_env env, napi_value obj, const char* k, const char* val) {
  napi_value s;
  napi_create_string_utf8(env, val, NAPI_AUTO_LENGTH, &s);
  napi_set_named_property(env, obj, k, s);
  return obj;
}

// info(): { blas (the float32 library: onednn, openblas or own), openblas, onednn (linked), isa, threads, bf16, vnni,
// forceOwn, gemm }
napi_value Info(napi_env env, napi_callback_info) {
  napi_value o, v;
  napi_create_object(env, &o);
  prop_str(env, o, "blas", gemm_library_name());
  napi_get_boolean(env, have_openblas(), &v);
  napi_set_named_property(env, o, "openblas", v);
  napi_get_boolean(env, have_onednn(), &v);
  napi_set_named_property(env, o, "onednn", v);
  prop_str(env, o, "isa", isa_name(detect_isa()));
  napi_create_int32(env, num_threads(), &v);
  napi_set_named_property(env, o, "threads", v);
  napi_get_boolean(env, cpu_has_avx512bf16(), &v);
  napi_set_named_property(env, o, "bf16", v);
  napi_get_boolean(env, cpu_has_avx512vnni(), &v);
  napi_set_named_property(env, o, "vnni", v);
  napi_get_boolean(env, force_own(), &v);
  napi_set_named_property(env, o, "forceOwn", v);
  prop_str(env, o, "gemm", gemm_mode_name(gemm_mode()));
  return o;
}

napi_value Init(napi_env env, napi_value exports) {
  struct { const char* name; napi_callback cb; } fns[] = {
      {"gemm", Gemm}, {"conv2d", Conv2d}, {"conv2dBackpropInput", Conv2dBpInput},
      {"conv2dBackpropFilter", Conv2dBpFilter}, {"maxPool", MaxPool}, {"maxPoolGrad", MaxPoolGrad},
      {"adam", Adam}, {"denseStep", DenseStep}, {"convStep", ConvStep}, {"sumRows", SumRows}, {"reluGradBias", ReluGradBias}, {"elementwise", Elementwise}, {"gemmDtype", GemmDtype}, {"setForceOwn", SetForceOwn}, {"setGemmMode", SetGemmMode}, {"gemmUsesBlas", GemmUsesBlas}, {"info", Info}, {"configure", Configure}, {"gemmBf16", GemmBf16}, {"bf16Info", Bf16Info}, {"setBf16Kernel", SetBf16Kernel},
  };
  for (auto& f : fns) {
    napi_value fn;
    napi_create_function(env, f.name, NAPI_AUTO_LENGTH, f.cb, nullptr, &fn);
    napi_set_named_property(env, exports, f.name, fn);
  }
  RegisterLowp(env, exports);
  return RegisterQuant(env, exports);
}

}  // namespace

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)

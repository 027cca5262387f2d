// One whole training step of a sequential conv net in one native call (see conv_step.h). Each piece is the engine
// kernel trainOnBatch runs on the engine for the same op (conv2d with its bias/ReLU epilogue, relu_grad_bias, the
// conv backprops, max pooling and its gradient, GEMM + bias_act for Dense, the fused Adam), without tfjs's per-op
// dispatch, tensor allocation, and the extra passes autodiff makes (a Dense layer's ReLU gradient as Step + Multiply).
#include "conv_step.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>

namespace sf {

namespace {

// Per-thread scratch (the JS thread that calls the step); grows to the largest model and batch seen.
struct Scratch {
  std::vector<std::vector<float>> act;  // act[l]: output of layer l, [B, out_l]
  std::vector<float> dOut, dIn, g, dw, db;
};
thread_local Scratch scratch;

void ensure(std::vector<float>& v, size_t n) {
  if (v.size() < n) v.resize(n);
}

struct Clock {
  double* prof;
  std::chrono::steady_clock::time_point t = std::chrono::steady_clock::now();
  void lap(int slot) {
    if (!prof) return;
    auto now = std::chrono::steady_clock::now();
    prof[slot] += std::chrono::duration<double>(now - t).count();
    t = now;
  }
};

// Softmax in place over p [B, C], tfjs's categorical cross-entropy (p / sum p, clip to [eps, 1-eps], -sum y log q,
// mean over the batch) and its exact gradient with respect to the logits into dz; accuracy as tf.argMax (first
// maximum wins). The same arithmetic as dense_step.cc.
void softmax_xent(float* p, const float* y, float* dz, int B, int C, double* lossOut, double* correctOut) {
  const float eps = 1e-7f, hi = 1.f - 1e-7f;
  double loss = 0, correct = 0;
  for (int r = 0; r < B; r++) {
    float* pr = p + (size_t)r * C;
    const float* yr = y + (size_t)r * C;
    float mx = pr[0];
    for (int c = 1; c < C; c++) mx = std::max(mx, pr[c]);
    float sum = 0;
    for (int c = 0; c < C; c++) {
      pr[c] = std::exp(pr[c] - mx);
      sum += pr[c];
    }
    for (int c = 0; c < C; c++) pr[c] /= sum;
    float ps = 0;
    for (int c = 0; c < C; c++) ps += pr[c];
    int ay = 0, ap = 0;
    double gq = 0;
    float* dzr = dz + (size_t)r * C;
    for (int c = 0; c < C; c++) {
      float q = std::min(hi, std::max(eps, pr[c] / ps));
      loss -= (double)yr[c] * std::log(q);
      float qr = pr[c] / ps;
      float g = (qr >= eps && qr <= hi) ? -yr[c] / (qr * (float)B) : 0.f;
      dzr[c] = g;
      gq += (double)g * qr;
      if (yr[c] > yr[ay]) ay = c;
      if (pr[c] > pr[ap]) ap = c;
    }
    if (ay == ap) correct++;
    double ph = 0;
    for (int c = 0; c < C; c++) {
      dzr[c] = (float)((dzr[c] - gq) / ps);
      ph += (double)pr[c] * dzr[c];
    }
    for (int c = 0; c < C; c++) dzr[c] = pr[c] * (float)(dzr[c] - ph);
  }
  *lossOut = loss / B;
  *correctOut = correct;
}

}  // namespace

void conv_train_step(const ConvStepArgs& s, double* lossOut, double* correctOut) {
  const int L = (int)s.layers.size();
  const int B = s.batch;
  Scratch& sc = scratch;
  if ((int)sc.act.size() < L) sc.act.resize(L);
  size_t widest = 0, biggestW = 0, widestOut = 0;
  int firstTrainable = L;
  for (int l = 0; l < L; l++) {
    const ConvStepLayer& d = s.layers[l];
    widest = std::max(widest, (size_t)std::max(d.in, d.out));
    widestOut = std::max(widestOut, (size_t)d.out);
    if (d.kind == CS_CONV) biggestW = std::max(biggestW, (size_t)d.g.KH * d.g.KW * d.g.C * d.g.OC);
    if (d.kind == CS_DENSE) biggestW = std::max(biggestW, (size_t)d.in * d.out);
    if (d.kind != CS_POOL && firstTrainable == L) firstTrainable = l;
  }
  ensure(sc.dOut, (size_t)B * widest);
  ensure(sc.dIn, (size_t)B * widest);
  ensure(sc.g, (size_t)B * widestOut);
  ensure(sc.dw, biggestW);
  ensure(sc.db, widestOut);
  Clock clk{s.prof};

  // Forward.
  const float* a = s.x;
  for (int l = 0; l < L; l++) {
    const ConvStepLayer& d = s.layers[l];
    ensure(sc.act[l], (size_t)B * d.out);
    float* z = sc.act[l].data();
    ConvGeom g = d.g;
    g.N = B;
    if (d.kind == CS_CONV) {
      conv2d(g, a, d.w, z, d.b, d.act == DENSE_RELU ? 1 : 0);
    } else if (d.kind == CS_POOL) {
      maxpool(g, a, z);
    } else {
      gemm_f32(false, false, B, d.out, d.in, 1.f, a, d.in, d.w, d.out, 0.f, z, d.out);
      bias_act(z, B, d.out, d.b, d.act == DENSE_RELU ? 1 : 0);
    }
    a = z;
    clk.lap(4 * l);
  }

  const ConvStepLayer& last = s.layers[L - 1];
  softmax_xent(sc.act[L - 1].data(), s.y, sc.g.data(), B, last.out, lossOut, correctOut);
  clk.lap(4 * L + 1);

  // Backward, last layer first. dOut = gradient with respect to layer l's output (after its activation); for the
  // output layer, g already holds the gradient with respect to its logits.
  const AdamArgs& o = s.adam;
  for (int l = L - 1; l >= 0; l--) {
    const ConvStepLayer& d = s.layers[l];
    const float* ain = l == 0 ? s.x : sc.act[l - 1].data();
    const bool needIn = l > firstTrainable;  // no trainable layer below: the input gradient is never used
    ConvGeom g = d.g;
    g.N = B;
    if (d.kind == CS_POOL) {
      if (needIn) maxpool_grad(g, ain, sc.dOut.data(), sc.dIn.data());
      clk.lap(4 * l + 1);
    } else {
      const bool rows = d.kind == CS_DENSE;
      const long R = rows ? B : (long)B * g.OH * g.OW;
      const int cols = rows ? d.out : g.OC;
      // gz: gradient with respect to the pre-activation output; db its column sums (tfjs: relu grad then bias Sum)
      float* gz = sc.g.data();
      float* db = d.b ? sc.db.data() : nullptr;
      if (l != L - 1) {
        if (d.act == DENSE_RELU) {
          relu_grad_bias(sc.act[l].data(), sc.dOut.data(), gz, db, R, cols);
        } else {
          gz = sc.dOut.data();
          if (db) sum_rows(gz, R, cols, db);
        }
      } else if (db) {
        sum_rows(gz, R, cols, db);
      }
      clk.lap(4 * l + 1);
      float* dw = sc.dw.data();
      if (rows) gemm_f32(true, false, d.in, d.out, B, 1.f, ain, d.in, gz, d.out, 0.f, dw, d.out);
      else conv2d_backprop_filter(g, ain, gz, dw);
      clk.lap(4 * l + 2);
      if (needIn) {
        if (rows) gemm_f32(false, true, B, d.in, d.out, 1.f, gz, d.out, d.w, d.out, 0.f, sc.dIn.data(), d.in);
        else conv2d_backprop_input(g, gz, d.w, sc.dIn.data());
      }
      clk.lap(4 * l + 3);
      const long nw = rows ? (long)d.in * d.out : (long)g.KH * g.KW * g.C * g.OC;
      adam_update(nw, d.w, d.mw, d.vw, dw, o.lr, o.beta1, o.beta2, o.eps, o.oma1, o.oma2, o.c1, o.c2);
      if (d.b) adam_update(cols, d.b, d.mb, d.vb, db, o.lr, o.beta1, o.beta2, o.eps, o.oma1, o.oma2, o.c1, o.c2);
      clk.lap(4 * L);
    }
    if (!needIn) break;
    std::swap(sc.dOut, sc.dIn);
  }
}

}  // namespace sf

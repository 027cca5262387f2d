// One whole training step of a chain of Dense layers (relu/linear hidden, softmax output, categorical cross-entropy,
// Adam), in one native call: forward, loss, backward and the optimizer, with tfjs's formulas (see dense_step.h).
#include "dense_step.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels.h"

namespace sf {

namespace {

// Per-thread scratch (the JS thread that calls the step); grows to the largest model seen.
struct Scratch {
  std::vector<std::vector<float>> act;  // act[l]: output of layer l, [B, out_l]
  std::vector<float> dz, dzPrev, dw, db;
};
thread_local Scratch scratch;

void ensure(std::vector<float>& v, size_t n) {
  if (v.size() < n) v.resize(n);
}

}  // namespace

void dense_train_step(const DenseStepArgs& s, double* lossOut, double* correctOut) {
  const int L = (int)s.layers.size();
  const int B = s.batch;
  Scratch& sc = scratch;
  if ((int)sc.act.size() < L) sc.act.resize(L);
  size_t widest = 0, biggestW = 0;
  for (const DenseLayer& l : s.layers) {
    widest = std::max(widest, (size_t)std::max(l.in, l.out));
    biggestW = std::max(biggestW, (size_t)l.in * l.out);
  }
  ensure(sc.dz, (size_t)B * widest);
  ensure(sc.dzPrev, (size_t)B * widest);
  ensure(sc.dw, biggestW);
  ensure(sc.db, widest);

  // Forward: z = a·W (+ b), then relu in place (bias_act fuses both); the output layer keeps logits for softmax.
  const float* a = s.x;
  for (int l = 0; l < L; l++) {
    const DenseLayer& d = s.layers[l];
    ensure(sc.act[l], (size_t)B * d.out);
    float* z = sc.act[l].data();
    gemm_f32(false, false, B, d.out, d.in, 1.f, a, d.in, d.w, d.out, 0.f, z, d.out);
    bias_act(z, B, d.out, d.b, d.act == DENSE_RELU ? 1 : 0);
    a = z;
  }

  // Softmax, tfjs's categorical cross-entropy (p / sum p, clip to [eps, 1-eps], -sum y log q, mean over the batch) and
  // its exact gradient: dL/dq_i = -y_i/(q_i B) inside the clip range (0 outside), through the division by the sum and
  // the softmax back to the logits. Accuracy: argmax(y) == argmax(p), first maximum wins (tf.argMax).
  const DenseLayer& last = s.layers[L - 1];
  const int C = last.out;
  float* p = sc.act[L - 1].data();
  float* dz = sc.dz.data();
  const float eps = 1e-7f, hi = 1.f - 1e-7f;
  double loss = 0, correct = 0;
  for (int r = 0; r < B; r++) {
    float* pr = p + (size_t)r * C;
    const float* yr = s.y + (size_t)r * C;
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
    double gq = 0;  // sum_i g_i q_i
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
    // h = (g - sum g q) / s, then softmax backward dz = p (h - sum p h).
    double ph = 0;
    for (int c = 0; c < C; c++) {
      dzr[c] = (float)((dzr[c] - gq) / ps);
      ph += (double)pr[c] * dzr[c];
    }
    for (int c = 0; c < C; c++) dzr[c] = pr[c] * (float)(dzr[c] - ph);
  }
  *lossOut = loss / B;
  *correctOut = correct;

  // Backward, last layer first: dW = aᵀ·dz, db = column sums, da = dz·Wᵀ (with the old W), relu mask, then Adam on
  // this layer's W and b (no later step reads them); with s.grads, dW and db go there instead of into Adam.
  std::vector<size_t> goff(L + 1, 0);
  for (int l = 0; l < L; l++) goff[l + 1] = goff[l] + (size_t)s.layers[l].in * s.layers[l].out + (s.layers[l].b ? s.layers[l].out : 0);
  for (int l = L - 1; l >= 0; l--) {
    const DenseLayer& d = s.layers[l];
    const float* ain = l == 0 ? s.x : sc.act[l - 1].data();
    float* dw = s.grads ? s.grads + goff[l] : sc.dw.data();
    gemm_f32(true, false, d.in, d.out, B, 1.f, ain, d.in, dz, d.out, 0.f, dw, d.out);
    if (l > 0) {
      float* da = sc.dzPrev.data();
      gemm_f32(false, true, B, d.in, d.out, 1.f, dz, d.out, d.w, d.out, 0.f, da, d.in);
      if (s.layers[l - 1].act == DENSE_RELU) {  // tfjs's relu gradient: dy * step(y), step(0) = 0
        const long n = (long)B * d.in;
        for (long i = 0; i < n; i++) da[i] = ain[i] > 0.f ? da[i] : 0.f;
      }
    }
    if (s.grads) {
      if (d.b) sum_rows(dz, B, d.out, s.grads + goff[l] + (size_t)d.in * d.out);
    } else {
      const AdamArgs& o = s.adam;
      adam_update((long)d.in * d.out, d.w, d.mw, d.vw, dw, o.lr, o.beta1, o.beta2, o.eps, o.oma1, o.oma2, o.c1, o.c2);
      if (d.b) {
        sum_rows(dz, B, d.out, sc.db.data());
        adam_update(d.out, d.b, d.mb, d.vb, sc.db.data(), o.lr, o.beta1, o.beta2, o.eps, o.oma1, o.oma2, o.c1, o.c2);
      }
    }
    if (l > 0) {
      std::swap(sc.dz, sc.dzPrev);
      dz = sc.dz.data();
    }
  }
}

}  // namespace sf

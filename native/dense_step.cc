// One whole training step of a chain of Dense layers (relu/linear hidden, softmax output, categorical cross-entropy,
// Adam), in one native call: forward, loss, backward and the optimizer, with tfjs's formulas (see dense_step.h).
#include "dense_step.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "gemm_bf16.h"
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

// C = op(A)·op(B) in the step's matrix-product precision, sliced as gemm_f32_slices.
void gemm_slices(bool bf16, bool ta, bool tb, int M, int N, int K, const float* A, int lda, const float* B, int ldb, float* C,
                 int ldc, int split, const std::function<void(int, int, int, int)>& epi) {
  if (bf16) gemm_bf16_slices(BF16_DEFAULT, ta, tb, M, N, K, A, lda, B, ldb, C, ldc, split, epi);
  else gemm_f32_slices(ta, tb, M, N, K, 1.f, A, lda, B, ldb, 0.f, C, ldc, split, epi);
}

}  // namespace

// Softmax in place over p [B, C], tfjs's categorical cross-entropy (p / sum p, clip to [eps, 1-eps], -sum y log q,
// mean over the batch) and its exact gradient with respect to the logits into dz; accuracy as tf.argMax (first
// maximum wins). dL/dq_i = -y_i/(q_i B) inside the clip range (0 outside), through the division by the sum and the
// softmax back to the logits. Shared by the fused Dense and conv steps.
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

  // Forward: z = a·W (+ b), then relu, each thread adding the bias and applying relu to its slice of z right after
  // multiplying it (one parallel region per layer); the output layer keeps logits for softmax.
  const float* a = s.x;
  for (int l = 0; l < L; l++) {
    const DenseLayer& d = s.layers[l];
    ensure(sc.act[l], (size_t)B * d.out);
    float* z = sc.act[l].data();
    const bool relu = d.act == DENSE_RELU;
    gemm_slices(s.bf16, false, false, B, d.out, d.in, a, d.in, d.w, d.out, z, d.out, 0, [&](int i0, int i1, int j0, int j1) {
      if (!d.b && !relu) return;
      for (int r = i0; r < i1; r++) {
        float* row = z + (size_t)r * d.out;
        if (d.b)
          for (int j = j0; j < j1; j++) row[j] += d.b[j];
        if (relu)
          for (int j = j0; j < j1; j++) row[j] = row[j] > 0.f ? row[j] : 0.f;
      }
    });
    a = z;
  }

  // Softmax, tfjs's categorical cross-entropy (p / sum p, clip to [eps, 1-eps], -sum y log q, mean over the batch) and
  // its exact gradient: dL/dq_i = -y_i/(q_i B) inside the clip range (0 outside), through the division by the sum and
  // the softmax back to the logits. Accuracy: argmax(y) == argmax(p), first maximum wins (tf.argMax).
  const DenseLayer& last = s.layers[L - 1];
  const int C = last.out;
  float* p = sc.act[L - 1].data();
  float* dz = sc.dz.data();
  softmax_xent(p, s.y, dz, B, C, lossOut, correctOut);

  // Backward, last layer first: da = dz·Wᵀ with the old W (each thread masking its slice by the ReLU of the layer
  // below right after multiplying it), then dW = aᵀ·dz cut into row slices, each thread running Adam on its rows of W
  // while their gradient is still in its cache; db = column sums of dz and Adam on b on the calling thread. With
  // s.grads, dW and db go there instead of into Adam.
  std::vector<size_t> goff(L + 1, 0);
  for (int l = 0; l < L; l++) goff[l + 1] = goff[l] + (size_t)s.layers[l].in * s.layers[l].out + (s.layers[l].b ? s.layers[l].out : 0);
  const AdamArgs& o = s.adam;
  for (int l = L - 1; l >= 0; l--) {
    const DenseLayer& d = s.layers[l];
    const float* ain = l == 0 ? s.x : sc.act[l - 1].data();
    if (l > 0) {
      float* da = sc.dzPrev.data();
      const bool relu = s.layers[l - 1].act == DENSE_RELU;
      gemm_slices(s.bf16, false, true, B, d.in, d.out, dz, d.out, d.w, d.out, da, d.in, 0, [&](int i0, int i1, int j0, int j1) {
        if (!relu) return;  // tfjs's relu gradient: dy * step(y), step(0) = 0
        for (int r = i0; r < i1; r++) {
          float* dr = da + (size_t)r * d.in;
          const float* ar = ain + (size_t)r * d.in;
          for (int j = j0; j < j1; j++) dr[j] = ar[j] > 0.f ? dr[j] : 0.f;
        }
      });
    }
    float* dw = s.grads ? s.grads + goff[l] : sc.dw.data();
    gemm_slices(s.bf16, true, false, d.in, d.out, B, ain, d.in, dz, d.out, dw, d.out, 1, [&](int i0, int i1, int, int) {
      if (s.grads) return;
      const long b0 = (long)i0 * d.out, n = (long)(i1 - i0) * d.out;
      adam_update_serial(n, d.w + b0, d.mw + b0, d.vw + b0, dw + b0, o.lr, o.beta1, o.beta2, o.eps, o.oma1, o.oma2, o.c1, o.c2);
    });
    if (d.b) {
      float* db = s.grads ? s.grads + goff[l] + (size_t)d.in * d.out : sc.db.data();
      sum_rows(dz, B, d.out, db);
      if (!s.grads) adam_update_serial(d.out, d.b, d.mb, d.vb, db, o.lr, o.beta1, o.beta2, o.eps, o.oma1, o.oma2, o.c1, o.c2);
    }
    if (l > 0) {
      std::swap(sc.dz, sc.dzPrev);
      dz = sc.dz.data();
    }
  }
}

}  // namespace sf

// One whole training step of a chain of Dense layers (relu/linear hidden, softmax output, categorical cross-entropy,
// Adam), in one native call: forward, loss, backward and the optimizer, with tfjs's formulas (see dense_step.h).
#include "dense_step.h"

#include <algorithm>
#include <ctime>
#include <thread>
#include <cmath>
#include <vector>

#include "gemm_bf16.h"
#include "hugepage.h"
#include "kernels.h"
#include "threadpool.h"

namespace sf {

#ifdef SLIMFIT_PROFILE_STEP
// Timing build (-DSLIMFIT_PROFILE_STEP, bench/dense-step-profile.cc): CPU time of each phase on the calling thread,
// summed over calls: [l] forward of layer l (layers past 2 add to [2]), [3] the loss total, [7 + l] backward of layer l
// (likewise), [13] Adam on the weights inside the backward.
double g_dense_prof[16];
// CPU time of the calling thread: at one thread, a phase's cost without the time other processes take the core.
static inline double prof_now() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}
#define PROF_MARK(i) do { double t_ = prof_now(); g_dense_prof[i] += t_ - prof_t; prof_t = t_; } while (0)
#define PROF_START double prof_t = prof_now(); const auto caller = std::this_thread::get_id()
#else
#define PROF_MARK(i) do {} while (0)
#define PROF_START do {} while (0)
#endif

namespace {

// Per-thread scratch (the JS thread that calls the step), on huge pages (hugepage.h); grows to the largest model seen.
struct Scratch {
  HugeFloats dw;    // all zero between steps: each step adds dW into it and Adam clears what it reads
  HugeFloats work;  // dz, dzPrev, db, then each layer's output act[l]: [out_l, B] for float32 hidden layers (dz and
                    // dzPrev then hold dzᵀ, daᵀ), [B, out_l] for the output layer and with bf16 products
  HugeFloats part;  // a hidden layer cut by K: the product over its second block of W's rows ([out, B])
  HugeFloats xt;    // float32: xᵀ [in, B], the first layer's input feature-major as every later layer's
  std::vector<double> rowLoss;
  std::vector<unsigned char> rowHit;
};
thread_local Scratch scratch;

}  // namespace

// Softmax in place over rows [r0, r1) of p [B, C], tfjs's categorical cross-entropy (p / sum p, clip to [eps, 1-eps],
// -sum y log q) of each row into rowLoss[r] (not yet divided by B) and its exact gradient with respect to the logits
// into dz (the loss is the mean over the batch); rowHit[r] = 1 when argmax(y) == argmax(p) as tf.argMax (first maximum
// wins). dL/dq_i = -y_i/(q_i B) inside the clip range (0 outside), through the division by the sum and the softmax
// back to the logits. Rows are independent, so slices of a batch can run on different threads.
static void softmax_xent_rows(float* p, const float* y, float* dz, int r0, int r1, int B, int C, double* rowLoss, unsigned char* rowHit) {
  const float eps = 1e-7f, hi = 1.f - 1e-7f;
  for (int r = r0; r < r1; r++) {
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
    double gq = 0, loss = 0;
    float* dzr = dz + (size_t)r * C;
    for (int c = 0; c < C; c++) {
      float q = std::min(hi, std::max(eps, pr[c] / ps));
      if (yr[c] != 0.f) loss -= (double)yr[c] * std::log(q);  // a zero target adds exactly zero (q is clipped, so log(q) is finite)
      float qr = pr[c] / ps;
      float g = (qr >= eps && qr <= hi) ? -yr[c] / (qr * (float)B) : 0.f;
      dzr[c] = g;
      gq += (double)g * qr;
      if (yr[c] > yr[ay]) ay = c;
      if (pr[c] > pr[ap]) ap = c;
    }
    rowLoss[r] = loss;
    rowHit[r] = ay == ap;
    double ph = 0;
    for (int c = 0; c < C; c++) {
      dzr[c] = (float)((dzr[c] - gq) / ps);
      ph += (double)pr[c] * dzr[c];
    }
    for (int c = 0; c < C; c++) dzr[c] = pr[c] * (float)(dzr[c] - ph);
  }
}

// The batch's mean loss and number of argmax matches from softmax_xent_rows's per-row values (added in row order, so
// the result does not depend on how the rows were cut).
static void xent_totals(const double* rowLoss, const unsigned char* rowHit, int B, double* lossOut, double* correctOut) {
  double loss = 0, correct = 0;
  for (int r = 0; r < B; r++) {
    loss += rowLoss[r];
    correct += rowHit[r];
  }
  *lossOut = loss / B;
  *correctOut = correct;
}

void softmax_xent(float* p, const float* y, float* dz, int B, int C, double* lossOut, double* correctOut) {
  std::vector<double> rowLoss(B);
  std::vector<unsigned char> rowHit(B);
  softmax_xent_rows(p, y, dz, 0, B, B, C, rowLoss.data(), rowHit.data());
  xent_totals(rowLoss.data(), rowHit.data(), B, lossOut, correctOut);
}

// Sum of p[0, n) in 16 lanes (lane q adds p[q], p[q + 16], ... in order), then the lanes in order and the tail:
// one fixed order, whatever the thread count, that the compiler can vectorize.
static float sum_row_lanes(const float* p, int n) {
  float lane[16] = {};
  int i = 0;
  for (; i + 16 <= n; i += 16)
    for (int q = 0; q < 16; q++) lane[q] += p[i + q];
  float s = 0.f;
  for (int q = 0; q < 16; q++) s += lane[q];
  for (; i < n; i++) s += p[i];
  return s;
}

void dense_train_step(const DenseStepArgs& s, double* lossOut, double* correctOut) {
  PROF_START;
  const int L = (int)s.layers.size();
  const int B = s.batch;
  Scratch& sc = scratch;
  size_t widest = 0, biggestW = 0, acts = 0;
  for (const DenseLayer& l : s.layers) {
    widest = std::max(widest, (size_t)std::max(l.in, l.out));
    biggestW = std::max(biggestW, (size_t)l.in * l.out);
    acts += ((size_t)B * l.out + 15) & ~(size_t)15;  // each act[l] starts on a 64-byte line
  }
  const size_t dzN = ((size_t)B * widest + 15) & ~(size_t)15, dbN = (widest + 15) & ~(size_t)15;
  sc.dw.ensure(biggestW);
  sc.work.ensure(2 * dzN + dbN + acts);
  float* dzBuf = sc.work.data();
  float* dzPrevBuf = dzBuf + dzN;
  float* dbBuf = dzPrevBuf + dzN;
  std::vector<float*> act(L);
  act[0] = dbBuf + dbN;
  for (int l = 1; l < L; l++) act[l] = act[l - 1] + (((size_t)B * s.layers[l - 1].out + 15) & ~(size_t)15);
  if (sc.rowLoss.size() < (size_t)B) {
    sc.rowLoss.resize(B);
    sc.rowHit.resize(B);
  }

  // Forward. With float32 products the hidden layers keep their outputs feature-major, act[l] = zᵀ [out, B]:
  // zᵀ = Wᵀ·aᵀ cut by rows of zᵀ (features; by columns, samples, when the batch is the larger side), then the bias
  // added and relu in one pass over the slice while the product is in cache (Σ + b, as tfjs adds it; oneDNN and the
  // own kernels write a beta = 0 product without reading C, OpenBLAS clears C first). That orientation gives the
  // library taller GEMMs than z = a·W cut into column slices. At exactly two threads a cut by features becomes a cut
  // by K (two products over halves of W's rows, then added with the bias and relu; below). The batch x [B, in] is
  // transposed first into sc.xt (at a cut by K by the thread that multiplies those rows of xᵀ, else in a region of its
  // own), so the first layer's products, and its weight gradient in the backward, read a feature-major input like every
  // later layer's instead of the library packing a transposed one (README, "The fused Dense step").
  // The output layer computes z = a·W [B, C] (sample-major), cut by rows (whole rows of logits per slice); each slice
  // adds the bias and goes on to softmax, the loss and its gradient dz (softmax_xent_rows) for its rows.
  // bf16 products keep every act[l] sample-major [B, out] (gemm_bf16_slices, bias and relu after the product).
  const int C = s.layers[L - 1].out;
  float* dz = dzBuf;
  float* xT = nullptr;
  if (!s.bf16) {
    sc.xt.ensure((size_t)s.layers[0].in * B);
    xT = sc.xt.data();
  }
  // columns [c0, c1) of x into rows [c0, c1) of xᵀ; all of them on nc threads, cut as a GEMM cuts xᵀ's rows (16-row
  // units, gemm_slice_range)
  auto transpose_x = [&](int c0, int c1) { transpose_cols(s.x, s.layers[0].in, B, c0, c1, xT); };
  auto transpose_x_all = [&](int nc) {
    const int in = s.layers[0].in, units = (in + 15) / 16;
    const GemmSlicing rows{std::max(1, std::min(nc, units)), units, false};
    auto part = [&](int t) {
      int r[4];
      if (gemm_slice_range(rows, t, in, B, r)) transpose_x(r[0], r[1]);
    };
    if (rows.nc == 1) part(0);
    else pool().run(rows.nc, part);
  };
  const float* a = s.x;  // the layer's input: x [B, in] (with float32 products xᵀ), then act[l - 1] (feature-major unless bf16)
  for (int l = 0; l < L; l++) {
    const DenseLayer& d = s.layers[l];
    float* z = act[l];
    const bool relu = d.act == DENSE_RELU, out = l == L - 1;
    const bool inT = !s.bf16;  // input is feature-major aᵀ [in, B] (xᵀ for the first layer)
    if (!out && !s.bf16) {
      // Bias and relu on rows [i0, i1) (features), columns [c0, c1) (samples) of zᵀ, adding `q` (the product over
      // the second block of K, for a cut by K) first when given: (Σ + Σ') + b.
      auto finish = [&](int i0, int i1, int c0, int c1, const float* q) {
        for (int j = i0; j < i1; j++) {
          const float bj = d.b ? d.b[j] : 0.f;
          float* p0 = z + (size_t)j * B + c0;
          float* p1 = z + (size_t)j * B + c1;
          if (q) {
            const float* qj = q + (size_t)j * B + c0;
            for (float* p = p0; p < p1; p++, qj++) *p += *qj;
          }
          if (relu)
            for (float* p = p0; p < p1; p++) {
              const float v = d.b ? *p + bj : *p;
              *p = v > 0.f ? v : 0.f;
            }
          else if (d.b)
            for (float* p = p0; p < p1; p++) *p += bj;
        }
      };
      // cut along the larger of units and batch (a narrow layer with a big batch is cut into ranges of samples)
      const GemmSlicing g = gemm_slicing(d.out, B, d.in, 0);
      if (g.nc == 2 && !g.split_n && pool().size() == 2 && d.in >= 32) {
        // Two threads cutting by features: cut K instead. Each multiplies one contiguous block of W's rows, [0, kh) or
        // [kh, in), by the matching rows of xᵀ or aᵀ into a product of its own (in training W is cold from the last
        // step's Adam, and a block of whole rows streams from memory faster than the strided half of every row a cut
        // by features reads); then the two are added in that order, whichever thread computed which, with the bias
        // and relu, cut by features. Measured only at this cut and thread count (README, "The fused Dense step").
        const int kh = std::min(d.in, (d.in + 15) / 16 / 2 * 16);
        sc.part.ensure((size_t)d.out * B);
        float* part = sc.part.data();
        GemmSlicing whole = gemm_slicing(d.out, B, kh, 0);
        whole.nc = 1;
        pool().run(2, [&](int t) {
          const int k0 = t ? kh : 0, k1 = t ? d.in : kh;
          int r[4];
          if (l == 0) transpose_x(k0, k1);  // the rows of xᵀ this thread multiplies
          gemm_f32_slice(whole, 0, true, false, d.out, B, k1 - k0, 1.f, d.w + (size_t)k0 * d.out, d.out,
                         (l == 0 ? xT : a) + (size_t)k0 * B, B, 0.f, t ? part : z, B, r);
        });
        pool().run(2, [&](int t) { finish(d.out * t / 2, d.out * (t + 1) / 2, 0, B, part); });
      } else {
        // zᵀ cut by rows (features) or columns (samples); each slice finished while it is in cache
        if (l == 0) {
          transpose_x_all(g.nc);
          a = xT;
        }
        auto slice = [&](int t) {
          int r[4];
          if (gemm_f32_slice(g, t, true, false, d.out, B, d.in, 1.f, d.w, d.out, a, B, 0.f, z, B, r))
            finish(r[0], r[1], r[2], r[3], nullptr);
        };
        if (g.nc == 1) slice(0);
        else pool().run(g.nc, slice);
      }
    } else {
      auto epi = [&](int i0, int i1, int j0, int j1) {
        if (d.b || relu) {
          for (int r = i0; r < i1; r++) {
            float* row = z + (size_t)r * d.out;
            if (d.b)
              for (int j = j0; j < j1; j++) row[j] += d.b[j];
            if (relu)
              for (int j = j0; j < j1; j++) row[j] = row[j] > 0.f ? row[j] : 0.f;
          }
        }
        if (out) softmax_xent_rows(z, s.y, dz, i0, i1, B, C, sc.rowLoss.data(), sc.rowHit.data());
      };
      if (l == 0 && inT) {  // a model of one layer: xᵀ for its product
        transpose_x_all(gemm_slicing(B, d.out, d.in, 1).nc);
        a = xT;
      }
      if (s.bf16) gemm_bf16_slices(BF16_DEFAULT, false, false, B, d.out, d.in, a, d.in, d.w, d.out, z, d.out, out ? 1 : 0, epi);
      else gemm_f32_slices(inT, false, B, d.out, d.in, 1.f, a, inT ? B : d.in, d.w, d.out, 0.f, z, d.out, 1, epi);
    }
    a = z;
    PROF_MARK(std::min(l, 2));
  }
  xent_totals(sc.rowLoss.data(), sc.rowHit.data(), B, lossOut, correctOut);
  PROF_MARK(3);

  // Backward, last layer first, one parallel region per layer. Slice t of the region owns rows [j0, j1) of W (the same
  // 16-wide units for both GEMMs): it computes the input gradient of features [j0, j1) with the old W (those read only
  // W's rows [j0, j1)) and masks them by the ReLU of the layer below, then rows [j0, j1) of dW = aᵀ·dz and Adam on
  // those rows of W while their gradient is still in its cache, so no slice ever waits for another inside a layer. The
  // bias gradient (sums over the batch in a fixed order) and its Adam step are cut into nc ranges of [0, out).
  // With s.grads, dW and db go there instead of into Adam.
  std::vector<size_t> goff(L + 1, 0);
  for (int l = 0; l < L; l++) goff[l + 1] = goff[l] + (size_t)s.layers[l].in * s.layers[l].out + (s.layers[l].b ? s.layers[l].out : 0);
  const AdamArgs& o = s.adam;
  for (int l = L - 1; l >= 0; l--) {
    const DenseLayer& d = s.layers[l];
    const float* ain = l > 0 ? act[l - 1] : s.bf16 ? s.x : xT;
    float* da = dzPrevBuf;
    const bool relu = l > 0 && s.layers[l - 1].act == DENSE_RELU;
    float* dw = s.grads ? s.grads + goff[l] : sc.dw.data();
    float* db = d.b ? (s.grads ? s.grads + goff[l] + (size_t)d.in * d.out : dbBuf) : nullptr;
    if (s.bf16) {
      // bf16 products (gemm_bf16_slices): dA, then dW with Adam on each thread's rows (two regions: dA reads the old W).
      if (l > 0)
        gemm_bf16_slices(BF16_DEFAULT, false, true, B, d.in, d.out, dz, d.out, d.w, d.out, da, d.in, 0, [&](int i0, int i1, int j0, int j1) {
          if (!relu) return;  // tfjs's relu gradient: dy * step(y), step(0) = 0
          for (int r = i0; r < i1; r++) {
            float* dr = da + (size_t)r * d.in;
            const float* ar = ain + (size_t)r * d.in;
            for (int j = j0; j < j1; j++) dr[j] = ar[j] > 0.f ? dr[j] : 0.f;
          }
        });
      gemm_bf16_slices(BF16_DEFAULT, true, false, d.in, d.out, B, ain, d.in, dz, d.out, dw, d.out, 1, [&](int i0, int i1, int, int) {
        if (s.grads) return;
        const long b0 = (long)i0 * d.out, n = (long)(i1 - i0) * d.out;
        adam_update_serial_clear(n, d.w + b0, d.mw + b0, d.vw + b0, dw + b0, o.lr, o.beta1, o.beta2, o.eps, o.oma1, o.oma2, o.c1, o.c2);
      });
      if (db) {
        sum_rows(dz, B, d.out, db);
        if (!s.grads) adam_update_serial(d.out, d.b, d.mb, d.vb, db, o.lr, o.beta1, o.beta2, o.eps, o.oma1, o.oma2, o.c1, o.c2);
      }
      if (l > 0) {
        std::swap(dzBuf, dzPrevBuf);
        dz = dzBuf;
      }
      continue;
    }
    // Float32: the output layer's dz is sample-major [B, C], every hidden layer's feature-major dzᵀ [out, B] (the daᵀ
    // the layer above produced), every input aᵀ [in, B] (xᵀ for the first layer) and daᵀ = W·dzᵀ [in, B] are
    // feature-major. daᵀ and dW = aᵀ·dz both have M = in and the same M*N*K, so the same 16-wide units of [0, in) and
    // slice count.
    const bool zT = l < L - 1;
    const GemmSlicing gw = gemm_slicing(d.in, d.out, B, 1);
    const GemmSlicing ga = gemm_slicing(d.in, B, d.out, 1);
    const int nc = gw.nc;
    const int ldz = zT ? B : d.out;
    auto slice = [&](int t) {
      int r[4];
      if (l > 0 && gemm_f32_slice(ga, t, false, !zT, d.in, B, d.out, 1.f, d.w, d.out, dz, ldz, 0.f, da, B, r) && relu) {
        // tfjs's relu gradient: dy * step(y), step(0) = 0
        const size_t e0 = (size_t)r[0] * B, e1 = (size_t)r[1] * B;
        for (size_t e = e0; e < e1; e++) da[e] = ain[e] > 0.f ? da[e] : 0.f;
      }
      // Without s.grads, dW goes into scratch that Adam leaves all zero (adam_update_serial_clear), so the GEMM adds
      // to it (beta = 1) and skips the library's separate pass that clears C for beta = 0 (OpenBLAS has one).
      if (gemm_f32_slice(gw, t, false, zT, d.in, d.out, B, 1.f, ain, B, dz, ldz, s.grads ? 0.f : 1.f, dw, d.out, r) &&
          !s.grads) {
        const long b0 = (long)r[0] * d.out, n = (long)(r[1] - r[0]) * d.out;
#ifdef SLIMFIT_PROFILE_STEP
        const bool me = std::this_thread::get_id() == caller;
        const double ta = me ? prof_now() : 0;
#endif
        adam_update_serial_clear(n, d.w + b0, d.mw + b0, d.vw + b0, dw + b0, o.lr, o.beta1, o.beta2, o.eps, o.oma1, o.oma2, o.c1, o.c2);
#ifdef SLIMFIT_PROFILE_STEP
        if (me) g_dense_prof[13] += prof_now() - ta;
#endif
      }
      if (db) {
        const int c0 = (int)((long)d.out * t / nc), c1 = (int)((long)d.out * (t + 1) / nc);
        if (zT) {
          for (int j = c0; j < c1; j++) db[j] = sum_row_lanes(dz + (size_t)j * B, B);
        } else {
          for (int j = c0; j < c1; j++) db[j] = 0.f;
          for (int i = 0; i < B; i++) {
            const float* zr = dz + (size_t)i * d.out;
            for (int j = c0; j < c1; j++) db[j] += zr[j];
          }
        }
        if (!s.grads && c1 > c0)
          adam_update_serial(c1 - c0, d.b + c0, d.mb + c0, d.vb + c0, db + c0, o.lr, o.beta1, o.beta2, o.eps, o.oma1, o.oma2, o.c1, o.c2);
      }
    };
    if (nc == 1) slice(0);
    else pool().run(nc, slice);
    PROF_MARK(7 + std::min(l, 2));
    if (l > 0) {
      std::swap(dzBuf, dzPrevBuf);
      dz = dzBuf;
    }
  }
}

}  // namespace sf

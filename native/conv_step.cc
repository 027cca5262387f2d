// One whole training step of a sequential conv net in one native call (see conv_step.h). Each piece is the engine
// kernel trainOnBatch runs on the engine for the same op (conv2d with its bias/ReLU epilogue, relu_grad_bias, the
// conv backprops, max pooling and its gradient, GEMM + bias_act for Dense, the fused Adam), without tfjs's per-op
// dispatch, tensor allocation, and the extra passes autodiff makes (a Dense layer's ReLU gradient as Step + Multiply).
#include "conv_step.h"

#include <algorithm>
#include <ctime>
#include <cmath>
#include <cstring>

#include "gemm_own.h"
#include "threadpool.h"
#ifdef __x86_64__
#include <immintrin.h>
#endif

namespace sf {

namespace {

// Per-thread scratch (the JS thread that calls the step); grows to the largest model and batch seen.
struct Scratch {
  std::vector<std::vector<float>> act;  // act[l]: output of layer l, [B, out_l]
  std::vector<float> dOut, dIn, g, dw, db, part, cat;
  std::vector<std::vector<uint8_t>> argmax;  // argmax[l]: window position of each value pooled by layer l
};
thread_local std::vector<Scratch> scratches;  // one per chain

void ensure(std::vector<float>& v, size_t n) {
  if (v.size() < n) v.resize(n);
}

// Phase timer: CPU time of the calling thread (on a busy machine wall time mostly measures the other processes; with
// SLIMFIT_THREADS=1 all of a step's work is on this thread).
struct Clock {
  double* prof;
  double t = prof ? now() : 0;
  static double now() {
    timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
  }
  void lap(int slot) {
    if (!prof) return;
    const double n = now();
    prof[slot] += n - t;
    t = n;
  }
};



// ---- a first conv layer (9 taps, relu) and the max pool after it as one kernel ----
// Why: the conv's full-size output (11 MB for the cnn's 128x26x26x32) was written, read by the pool, read twice more by
// the pool's gradient and the ReLU gradient, and once more by the filter gradient. Here each conv output pixel is made
// in registers, pooled at once (the pooled value and its window position are stored), and the filter and bias
// gradients are taken straight from the pooled gradient: only a quarter of the data, and no full-size pass.
// The forward arithmetic is the engine's (bias, then + tap * w in tap order, max with 0; ties keep the first window
// position, as tfjs's MaxPoolGrad does), so the pooled values equal what conv2d + maxpool give.

// The taps of conv output (n, oh, ow) for a one-channel 3x3 'valid' conv with stride and dilation 1 (every tap inside).
static inline void gather_taps9_valid(const ConvGeom& g, const float* x, int n, int oh, int ow, float* t) {
  const float* src = x + ((long)n * g.H + oh) * g.W + ow;
  for (int kh = 0; kh < 3; kh++, src += g.W)
    for (int kw = 0; kw < 3; kw++) t[kh * 3 + kw] = src[kw];
}

static inline bool taps9_valid(const ConvGeom& g) {
  return g.C == 1 && g.KH == 3 && g.KW == 3 && g.sh == 1 && g.sw == 1 && g.dh == 1 && g.dw == 1 && g.pt == 0 && g.pl == 0 &&
         g.OH + 2 <= g.H && g.OW + 2 <= g.W;
}

#ifdef __x86_64__
template <int OCV>
__attribute__((target("avx512f"))) static void conv_relu_pool_rows(const ConvGeom& cg, const ConvGeom& pg, const float* x, const float* w,
                                                                     const float* bias, float* y, uint8_t* idx, long r0, long r1) {
  const int OC = 16 * OCV;
  __m512 wv[9][OCV], bv[OCV];
  for (int k = 0; k < 9; k++)
    for (int v = 0; v < OCV; v++) wv[k][v] = _mm512_loadu_ps(w + k * OC + 16 * v);
  for (int v = 0; v < OCV; v++) bv[v] = bias ? _mm512_loadu_ps(bias + 16 * v) : _mm512_setzero_ps();
  const __m512 zero = _mm512_setzero_ps();
  const bool valid = taps9_valid(cg);
  float t[9];
  for (long r = r0; r < r1; r++) {
    const int n = (int)(r / pg.OH), ph = (int)(r % pg.OH);
    for (int pw = 0; pw < pg.OW; pw++) {
      __m512 best[OCV];
      __m512i bi[OCV];
      int q = 0;
      for (int qh = 0; qh < pg.KH; qh++)
        for (int qw = 0; qw < pg.KW; qw++, q++) {
          if (valid) gather_taps9_valid(cg, x, n, ph * pg.sh + qh, pw * pg.sw + qw, t);
          else gather_taps(cg, x, n, ph * pg.sh + qh, pw * pg.sw + qw, t);
          for (int v = 0; v < OCV; v++) {
            __m512 acc = bv[v];
            for (int k = 0; k < 9; k++) acc = _mm512_add_ps(acc, _mm512_mul_ps(_mm512_set1_ps(t[k]), wv[k][v]));
            acc = _mm512_max_ps(zero, acc);
            if (q == 0) {
              best[v] = acc;
              bi[v] = _mm512_setzero_si512();
            } else {
              const __mmask16 m = _mm512_cmp_ps_mask(acc, best[v], _CMP_GT_OQ);
              best[v] = _mm512_mask_mov_ps(best[v], m, acc);
              bi[v] = _mm512_mask_mov_epi32(bi[v], m, _mm512_set1_epi32(q));
            }
          }
        }
      const long o = ((long)r * pg.OW + pw) * OC;
      for (int v = 0; v < OCV; v++) {
        _mm512_storeu_ps(y + o + 16 * v, best[v]);
        _mm_storeu_si128((__m128i*)(idx + o + 16 * v), _mm512_cvtepi32_epi8(bi[v]));
      }
    }
  }
}

// Filter and bias gradient partials of pooled pixels [p0, p1): the conv output at each value's window position gets
// the pooled gradient when the pooled value is > 0 (ReLU's gradient through its output), every other position 0.
template <int OCV>
__attribute__((target("avx512f"))) static void conv_relu_pool_grad_rows(const ConvGeom& cg, const ConvGeom& pg, const float* x, const float* y,
                                                                          const uint8_t* idx, const float* dy, float* part, float* dbPart, long p0, long p1) {
  const int OC = 16 * OCV;
  __m512 acc[9][OCV], dba[OCV];
  for (int v = 0; v < OCV; v++) {
    dba[v] = _mm512_setzero_ps();
    for (int k = 0; k < 9; k++) acc[k][v] = _mm512_setzero_ps();
  }
  const __m512 zero = _mm512_setzero_ps();
  const bool valid = taps9_valid(cg);
  float t[9];
  for (long p = p0; p < p1; p++) {
    const int n = (int)(p / ((long)pg.OH * pg.OW)), rr = (int)(p % ((long)pg.OH * pg.OW)), ph = rr / pg.OW, pw = rr % pg.OW;
    __m512 d[OCV];
    __mmask16 pos[OCV];
    __m512i gi[OCV];
    for (int v = 0; v < OCV; v++) {
      pos[v] = _mm512_cmp_ps_mask(_mm512_loadu_ps(y + p * OC + 16 * v), zero, _CMP_GT_OQ);
      d[v] = _mm512_maskz_mov_ps(pos[v], _mm512_loadu_ps(dy + p * OC + 16 * v));
      gi[v] = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i*)(idx + p * OC + 16 * v)));
      dba[v] = _mm512_add_ps(dba[v], d[v]);
    }
    int q = 0;
    for (int qh = 0; qh < pg.KH; qh++)
      for (int qw = 0; qw < pg.KW; qw++, q++) {
        __mmask16 mq[OCV];
        bool any = false;
        for (int v = 0; v < OCV; v++) {
          mq[v] = pos[v] & _mm512_cmpeq_epi32_mask(gi[v], _mm512_set1_epi32(q));
          any |= mq[v] != 0;
        }
        if (!any) continue;
        if (valid) gather_taps9_valid(cg, x, n, ph * pg.sh + qh, pw * pg.sw + qw, t);
        else gather_taps(cg, x, n, ph * pg.sh + qh, pw * pg.sw + qw, t);
        for (int v = 0; v < OCV; v++) {
          const __m512 g = _mm512_maskz_mov_ps(mq[v], d[v]);
          for (int k = 0; k < 9; k++) acc[k][v] = _mm512_add_ps(acc[k][v], _mm512_mul_ps(_mm512_set1_ps(t[k]), g));
        }
      }
  }
  for (int v = 0; v < OCV; v++) {
    _mm512_storeu_ps(dbPart + 16 * v, dba[v]);
    for (int k = 0; k < 9; k++) _mm512_storeu_ps(part + k * OC + 16 * v, acc[k][v]);
  }
}
#endif

// OCV (output channels / 16) when conv layer c (relu) and pool layer p can run as one kernel, else 0.
int conv_pool_ocv(const ConvStepLayer& c, const ConvStepLayer& p) {
#ifdef __x86_64__
  const ConvGeom &cg = c.g, &pg = p.g;
  if (detect_isa() != ISA_AVX512 || c.kind != CS_CONV || c.act != DENSE_RELU || p.kind != CS_POOL) return 0;
  if (cg.KH * cg.KW * cg.C != 9 || cg.OC % 16 != 0 || pg.C != cg.OC) return 0;
  if (pg.KH != pg.sh || pg.KW != pg.sw || pg.pt != 0 || pg.pl != 0 || pg.dh != 1 || pg.dw != 1 || pg.KH * pg.KW > 255) return 0;
  if (pg.H != cg.OH || pg.W != cg.OW || pg.OH * pg.KH > pg.H || pg.OW * pg.KW > pg.W) return 0;
  const int ocv = cg.OC / 16;
  return ocv == 1 || ocv == 2 || ocv == 4 ? ocv : 0;
#else
  (void)c, (void)p;
  return 0;
#endif
}

void conv_relu_pool(int ocv, const ConvGeom& cg, const ConvGeom& pg, const float* x, const float* w, const float* bias, float* y, uint8_t* idx) {
#ifdef __x86_64__
  parallel_for((long)pg.N * pg.OH, 4, [&](long r0, long r1) {
    if (ocv == 1) conv_relu_pool_rows<1>(cg, pg, x, w, bias, y, idx, r0, r1);
    if (ocv == 2) conv_relu_pool_rows<2>(cg, pg, x, w, bias, y, idx, r0, r1);
    if (ocv == 4) conv_relu_pool_rows<4>(cg, pg, x, w, bias, y, idx, r0, r1);
  });
#endif
}

// Partial sums over a fixed number of pooled-pixel ranges (independent of the thread count), added in range order.
void conv_relu_pool_grad(int ocv, const ConvGeom& cg, const ConvGeom& pg, const float* x, const float* y, const uint8_t* idx,
                         const float* dy, float* dw, float* db, std::vector<float>& part) {
#ifdef __x86_64__
  const long P = (long)pg.N * pg.OH * pg.OW, kk = 9L * cg.OC, per = kk + cg.OC;
  const int nc = (int)std::max<long>(1, std::min<long>(16, P / 256));
  ensure(part, (size_t)nc * per);
  pool().run(nc, [&](int c) {
    const long b = P * c / nc, e = P * (c + 1) / nc;
    float* pc = part.data() + (size_t)c * per;
    if (ocv == 1) conv_relu_pool_grad_rows<1>(cg, pg, x, y, idx, dy, pc, pc + kk, b, e);
    if (ocv == 2) conv_relu_pool_grad_rows<2>(cg, pg, x, y, idx, dy, pc, pc + kk, b, e);
    if (ocv == 4) conv_relu_pool_grad_rows<4>(cg, pg, x, y, idx, dy, pc, pc + kk, b, e);
  });
  for (long i = 0; i < per; i++) {
    float s = 0.f;
    for (int c = 0; c < nc; c++) s += part[(size_t)c * per + i];
    if (i < kk) dw[i] = s;
    else if (db) db[i - kk] = s;
  }
#endif
}

// ---- a max pool after a ReLU conv, with its window positions kept for the backward pass ----
// Why: the pool's gradient (maxpool_grad: find each window's maximum again, write dx) and then the ReLU's gradient
// (relu_grad_bias: read y and dx, write g) make two full-size passes; with the positions stored, one pass writes g.

// Non-overlapping, unpadded windows inside the image.
bool pool_tiles(const ConvGeom& g) {
  return g.KH == g.sh && g.KW == g.sw && g.pt == 0 && g.pl == 0 && g.dh == 1 && g.dw == 1 && g.KH * g.KW <= 255 &&
         g.OH * g.KH <= g.H && g.OW * g.KW <= g.W;
}

#ifdef __x86_64__
// One output pixel of maxpool_argmax / relu_pool_grad, 16 channels per vector (C % 16 == 0).
__attribute__((target("avx512f"))) static void pool_argmax_px16(const float* const* in, int nq, int C, float* out, uint8_t* id) {
  for (int c = 0; c < C; c += 16) {
    __m512 best = _mm512_loadu_ps(in[0] + c);
    __m512i bi = _mm512_setzero_si512();
    for (int q = 1; q < nq; q++) {
      const __m512 v = _mm512_loadu_ps(in[q] + c);
      const __mmask16 m = _mm512_cmp_ps_mask(v, best, _CMP_GT_OQ);
      best = _mm512_mask_mov_ps(best, m, v);
      bi = _mm512_mask_mov_epi32(bi, m, _mm512_set1_epi32(q));
    }
    _mm512_storeu_ps(out + c, best);
    _mm_storeu_si128((__m128i*)(id + c), _mm512_cvtepi32_epi8(bi));
  }
}
__attribute__((target("avx512f"))) static void relu_pool_grad_px16(float* const* o, int nq, int C, const float* yv, const float* d,
                                                                     const uint8_t* id, float* acc) {
  const __m512 zero = _mm512_setzero_ps();
  for (int c = 0; c < C; c += 16) {
    const __mmask16 pos = _mm512_cmp_ps_mask(_mm512_loadu_ps(yv + c), zero, _CMP_GT_OQ);
    const __m512 dm = _mm512_maskz_mov_ps(pos, _mm512_loadu_ps(d + c));
    _mm512_storeu_ps(acc + c, _mm512_add_ps(_mm512_loadu_ps(acc + c), dm));
    const __m512i gi = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i*)(id + c)));
    for (int q = 0; q < nq; q++) _mm512_storeu_ps(o[q] + c, _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(gi, _mm512_set1_epi32(q)), dm));
  }
}
#endif

static bool vec16(int C) {
#ifdef __x86_64__
  return C % 16 == 0 && detect_isa() == ISA_AVX512;
#else
  (void)C;
  return false;
#endif
}

// y = max over each window, idx = its first position holding the maximum (row-major window order, as tfjs's MaxPoolGrad).
void maxpool_argmax(const ConvGeom& g, const float* x, float* y, uint8_t* idx) {
  const bool v16 = vec16(g.C);
  parallel_for((long)g.N * g.OH, 2, [&](long r0, long r1) {
    const int C = g.C, KH = g.KH, KW = g.KW, W = g.W, H = g.H, OW = g.OW, OH = g.OH;
    for (long r = r0; r < r1; r++) {
      const long n = r / OH;
      const int oh = (int)(r % OH);
      for (int ow = 0; ow < OW; ow++) {
        float* __restrict out = y + (r * OW + ow) * C;
        uint8_t* __restrict id = idx + (r * OW + ow) * C;
#ifdef __x86_64__
        if (v16) {
          const float* in[255];
          for (int kh = 0, q = 0; kh < KH; kh++)
            for (int kw = 0; kw < KW; kw++, q++) in[q] = x + ((n * H + oh * KH + kh) * W + ow * KW + kw) * C;
          pool_argmax_px16(in, KH * KW, C, out, id);
          continue;
        }
#endif
        int q = 0;
        for (int kh = 0; kh < KH; kh++)
          for (int kw = 0; kw < KW; kw++, q++) {
            const float* __restrict in = x + ((n * H + oh * KH + kh) * W + ow * KW + kw) * C;
            if (q == 0) {
              for (int c = 0; c < C; c++) out[c] = in[c], id[c] = 0;
            } else {
              for (int c = 0; c < C; c++) {
                const bool m = in[c] > out[c];
                out[c] = m ? in[c] : out[c];
                id[c] = m ? (uint8_t)q : id[c];
              }
            }
          }
      }
    }
  });
}

// g (the conv's output shape) = dy at each pooled value's window position where the pooled value is > 0 (ReLU's
// gradient through its output), else 0; db[c] = column sums of g, from partials over a fixed number of row ranges.
void relu_pool_grad(const ConvGeom& pg, const float* y, const uint8_t* idx, const float* dy, float* g, float* db, std::vector<float>& part) {
  const long rows = (long)pg.N * pg.OH;
  const int C = pg.C, nc = (int)std::max<long>(1, std::min<long>(16, rows / 4));
  const bool v16 = vec16(C);
  ensure(part, (size_t)nc * C);
  std::fill(part.begin(), part.begin() + (size_t)nc * C, 0.f);
  pool().run(nc, [&](int chunk) {
    const int KH = pg.KH, KW = pg.KW, W = pg.W, H = pg.H, OW = pg.OW, OH = pg.OH;
    float* __restrict acc = part.data() + (size_t)chunk * C;
    for (long r = rows * chunk / nc; r < rows * (chunk + 1) / nc; r++) {
      const long n = r / OH;
      const int oh = (int)(r % OH);
      for (int ow = 0; ow < OW; ow++) {
        const float* __restrict yv = y + (r * OW + ow) * C;
        const float* __restrict d = dy + (r * OW + ow) * C;
        const uint8_t* __restrict id = idx + (r * OW + ow) * C;
#ifdef __x86_64__
        if (v16) {
          float* o[255];
          for (int kh = 0, q = 0; kh < KH; kh++)
            for (int kw = 0; kw < KW; kw++, q++) o[q] = g + ((n * H + oh * KH + kh) * W + ow * KW + kw) * C;
          relu_pool_grad_px16(o, KH * KW, C, yv, d, id, acc);
          continue;
        }
#endif
        for (int c = 0; c < C; c++) acc[c] += yv[c] > 0.f ? d[c] : 0.f;
        int q = 0;
        for (int kh = 0; kh < KH; kh++)
          for (int kw = 0; kw < KW; kw++, q++) {
            float* __restrict o = g + ((n * H + oh * KH + kh) * W + ow * KW + kw) * C;
            for (int c = 0; c < C; c++) o[c] = (id[c] == q && yv[c] > 0.f) ? d[c] : 0.f;
          }
      }
      for (int kh = 0; kh < KH; kh++) {  // columns right of the last window
        float* o = g + ((n * H + oh * KH + kh) * W + (long)OW * KW) * C;
        std::fill(o, o + (long)(W - OW * KW) * C, 0.f);
      }
      if (oh == OH - 1) {  // rows below the last window band
        float* o = g + (n * H + (long)OH * KH) * W * C;
        std::fill(o, o + (long)(H - OH * KH) * W * C, 0.f);
      }
    }
  });
  if (!db) return;
  for (int c = 0; c < C; c++) {
    float sum = 0.f;
    for (int k = 0; k < nc; k++) sum += part[(size_t)k * C + c];
    db[c] = sum;
  }
}

}  // namespace

namespace {

// One chain of layers (a whole sequential model, or one branch, or the head after a concatenation) with its scratch.
struct ChainRun {
  const ConvStepArgs& s;
  int first, L, B;  // layers s.layers[first .. first + L)
  bool needInput;   // the gradient with respect to the chain's input is wanted (a head after a concatenation)
  Scratch& sc;
  Clock& clk;
  const std::vector<size_t>& goff;  // per layer of s.layers: offset of its W in s.grads (b follows)
  int firstTrainable = 0, fl = -1, fusedOcv = 0;
  std::vector<char> paired;

  const ConvStepLayer& layer(int l) const { return s.layers[first + l]; }

  // Adam on layer l's W and b with gradients dw and db, or (with s.grads) only store the gradients there.
  void apply(int l, long nw, int nb, const float* dw, const float* db) {
    const ConvStepLayer& d = layer(l);
    const AdamArgs& o = s.adam;
    if (s.grads) {
      std::memcpy(s.grads + goff[first + l], dw, sizeof(float) * nw);
      if (d.b) std::memcpy(s.grads + goff[first + l] + nw, db, sizeof(float) * nb);
    } else {
      adam_update(nw, d.w, d.mw, d.vw, dw, o.lr, o.beta1, o.beta2, o.eps, o.oma1, o.oma2, o.c1, o.c2);
      if (d.b) adam_update(nb, d.b, d.mb, d.vb, db, o.lr, o.beta1, o.beta2, o.eps, o.oma1, o.oma2, o.c1, o.c2);
    }
  }
  int slot(int l, int k) const { return 4 * (first + l) + k; }
  int adamSlot() const { return 4 * (int)s.layers.size(); }

  void setup() {
    if ((int)sc.act.size() < L) sc.act.resize(L);
    if ((int)sc.argmax.size() < L) sc.argmax.resize(L);
    firstTrainable = L;
    for (int l = 0; l < L; l++)
      if (layer(l).kind != CS_POOL && firstTrainable == L) firstTrainable = l;
    // The first trainable layer, a conv with relu followed by a max pool, may run with the pool as one kernel (when
    // nothing needs its input gradient, the conv's full-size output need not exist).
    fl = !needInput && firstTrainable < L - 1 && !s.noFusedPool ? firstTrainable : -1;
    fusedOcv = fl >= 0 ? conv_pool_ocv(layer(fl), layer(fl + 1)) : 0;
    size_t widest = 0, biggestW = 0, widestOut = 0;
    for (int l = 0; l < L; l++) {
      const ConvStepLayer& d = layer(l);
      const size_t out = fusedOcv && l == fl ? 0 : (size_t)d.out;  // never stored
      widest = std::max(widest, std::max((size_t)d.in, out));
      widestOut = std::max(widestOut, out);
      if (d.kind == CS_CONV) biggestW = std::max(biggestW, (size_t)d.g.KH * d.g.KW * d.g.C * d.g.OC);
      if (d.kind == CS_DENSE) biggestW = std::max(biggestW, (size_t)d.in * d.out);
      if (d.kind == CS_CONV) widestOut = std::max(widestOut, (size_t)d.g.OC);  // bias gradient
    }
    ensure(sc.dOut, (size_t)B * widest);
    ensure(sc.dIn, (size_t)B * widest);
    ensure(sc.g, (size_t)B * widestOut);
    ensure(sc.dw, biggestW);
    ensure(sc.db, widestOut);
    // A conv with relu followed by a tiled max pool (other than the pair above): the pool keeps its window positions
    // and the backward pass goes through both in one pass (relu_pool_grad).
    paired.assign(L, 0);
    for (int l = 0; l + 1 < L; l++) {
      const ConvStepLayer &c = layer(l), &p = layer(l + 1);
      paired[l] = !(fusedOcv && l == fl) && !s.noFusedPool && c.kind == CS_CONV && c.act == DENSE_RELU && p.kind == CS_POOL &&
                  pool_tiles(p.g) && p.g.H == c.g.OH && p.g.W == c.g.OW && p.g.C == c.g.OC;
    }
  }

  // Forward from x [B, layer(0).in]; returns the chain's output [B, layer(L-1).out].
  float* forward(const float* x) {
    const float* a = x;
    for (int l = 0; l < L; l++) {
      const ConvStepLayer& d = layer(l);
      if (!(fusedOcv && l == fl)) ensure(sc.act[l], (size_t)B * d.out);
      float* z = sc.act[l].data();
      ConvGeom g = d.g;
      g.N = B;
      if (fusedOcv && l == fl + 1) {
        continue;  // made together with layer fl
      } else if (fusedOcv && l == fl) {
        const ConvStepLayer& p = layer(l + 1);
        ConvGeom pg = p.g;
        pg.N = B;
        ensure(sc.act[l + 1], (size_t)B * p.out);
        if (sc.argmax[l + 1].size() < (size_t)B * p.out) sc.argmax[l + 1].resize((size_t)B * p.out);
        conv_relu_pool(fusedOcv, g, pg, a, d.w, d.b, sc.act[l + 1].data(), sc.argmax[l + 1].data());
        z = sc.act[l + 1].data();
      } else if (d.kind == CS_CONV) {
        conv2d(g, a, d.w, z, d.b, d.act == DENSE_RELU ? 1 : 0);
      } else if (d.kind == CS_POOL && l > 0 && paired[l - 1]) {
        if (sc.argmax[l].size() < (size_t)B * d.out) sc.argmax[l].resize((size_t)B * d.out);
        maxpool_argmax(g, a, z, sc.argmax[l].data());
      } else if (d.kind == CS_POOL) {
        maxpool(g, a, z);
      } else {
        gemm_f32(false, false, B, d.out, d.in, 1.f, a, d.in, d.w, d.out, 0.f, z, d.out);
        bias_act(z, B, d.out, d.b, d.act == DENSE_RELU ? 1 : 0);
      }
      a = z;
      clk.lap(slot(l, 0));
    }
    return sc.act[L - 1].data();
  }

  // Backward, last layer first, with Adam on each layer once its gradients exist. The top gradient is in sc.g with
  // respect to the last layer's logits (logits = true), or in sc.dOut with respect to the chain's output. With
  // needInput, returns the gradient with respect to the chain's input (in sc.dOut), else null.
  float* backward(const float* x, bool logits) {
    for (int l = L - 1; l >= 0; l--) {
      const ConvStepLayer& d = layer(l);
      const float* ain = l == 0 ? x : sc.act[l - 1].data();
      const bool needIn = needInput || l > firstTrainable;
      ConvGeom g = d.g;
      g.N = B;
      if (fusedOcv && l == fl + 1) {
        clk.lap(slot(l, 1));
        continue;  // sc.dOut stays the pooled gradient, which layer fl's kernel reads
      }
      if (fusedOcv && l == fl) {
        ConvGeom pg = layer(l + 1).g;
        pg.N = B;
        conv_relu_pool_grad(fusedOcv, g, pg, ain, sc.act[l + 1].data(), sc.argmax[l + 1].data(), sc.dOut.data(), sc.dw.data(),
                            d.b ? sc.db.data() : nullptr, sc.part);
        clk.lap(slot(l, 2));
        apply(l, (long)g.KH * g.KW * g.C * g.OC, g.OC, sc.dw.data(), sc.db.data());
        clk.lap(adamSlot());
        return nullptr;  // fl is the first trainable layer and needInput is false
      }
      if (d.kind == CS_POOL && l > 0 && paired[l - 1]) {
        clk.lap(slot(l, 1));
        continue;  // sc.dOut stays the pooled gradient, which layer l - 1 reads through relu_pool_grad
      }
      if (d.kind == CS_POOL) {
        if (needIn) maxpool_grad(g, ain, sc.dOut.data(), sc.dIn.data());
        clk.lap(slot(l, 1));
      } else {
        const bool rows = d.kind == CS_DENSE;
        const long R = rows ? B : (long)B * g.OH * g.OW;
        const int cols = rows ? d.out : g.OC;
        // gz: gradient with respect to the pre-activation output; db its column sums (tfjs: relu grad then bias Sum)
        float* gz = sc.g.data();
        float* db = d.b ? sc.db.data() : nullptr;
        if (paired[l]) {
          ConvGeom pg = layer(l + 1).g;
          pg.N = B;
          relu_pool_grad(pg, sc.act[l + 1].data(), sc.argmax[l + 1].data(), sc.dOut.data(), gz, db, sc.part);
        } else if (l != L - 1 || !logits) {
          if (d.act == DENSE_RELU) {
            relu_grad_bias(sc.act[l].data(), sc.dOut.data(), gz, db, R, cols);
          } else {
            gz = sc.dOut.data();
            if (db) sum_rows(gz, R, cols, db);
          }
        } else if (db) {
          sum_rows(gz, R, cols, db);
        }
        clk.lap(slot(l, 1));
        float* dw = sc.dw.data();
        if (rows) gemm_f32(true, false, d.in, d.out, B, 1.f, ain, d.in, gz, d.out, 0.f, dw, d.out);
        else conv2d_backprop_filter(g, ain, gz, dw);
        clk.lap(slot(l, 2));
        if (needIn) {
          if (rows) gemm_f32(false, true, B, d.in, d.out, 1.f, gz, d.out, d.w, d.out, 0.f, sc.dIn.data(), d.in);
          else conv2d_backprop_input(g, gz, d.w, sc.dIn.data());
        }
        clk.lap(slot(l, 3));
        const long nw = rows ? (long)d.in * d.out : (long)g.KH * g.KW * g.C * g.OC;
        apply(l, nw, cols, dw, db);
        clk.lap(adamSlot());
      }
      if (!needIn) return nullptr;
      std::swap(sc.dOut, sc.dIn);
    }
    return needInput ? sc.dOut.data() : nullptr;
  }
};

}  // namespace

void conv_train_step(const ConvStepArgs& s, double* lossOut, double* correctOut) {
  const int B = s.batch;
  // chains: [start, end) ranges of s.layers with the same chain index; the last is the head
  std::vector<std::pair<int, int>> ranges;
  for (int l = 0; l < (int)s.layers.size(); l++) {
    if (ranges.empty() || s.layers[l].chain != s.layers[l - 1].chain) ranges.push_back({l, l});
    ranges.back().second = l + 1;
  }
  const int nc = (int)ranges.size();
  if ((int)scratches.size() < nc) scratches.resize(nc);
  Clock clk{s.prof};
  std::vector<size_t> goff(s.layers.size() + 1, 0);
  for (size_t l = 0; l < s.layers.size(); l++) {
    const ConvStepLayer& d = s.layers[l];
    const size_t nw = d.kind == CS_CONV ? (size_t)d.g.KH * d.g.KW * d.g.C * d.g.OC : d.kind == CS_DENSE ? (size_t)d.in * d.out : 0;
    const size_t nb = d.kind == CS_POOL || !d.b ? 0 : d.kind == CS_CONV ? d.g.OC : d.out;
    goff[l + 1] = goff[l] + nw + nb;
  }
  std::vector<ChainRun> runs;
  runs.reserve(nc);
  for (int c = 0; c < nc; c++) {
    runs.push_back(ChainRun{s, ranges[c].first, ranges[c].second - ranges[c].first, B, nc > 1 && c == nc - 1, scratches[c], clk, goff});
    runs.back().setup();
  }
  ChainRun& head = runs[nc - 1];
  const float* headIn = s.x;
  std::vector<float>& cat = scratches[nc - 1].cat;
  if (nc > 1) {
    // branches from the input, their outputs concatenated per sample (in branch order) into the head's input
    const int width = head.layer(0).in;
    ensure(cat, (size_t)B * width);
    for (int c = 0, off = 0; c < nc - 1; c++) {
      const float* out = runs[c].forward(s.x);
      const int w = runs[c].layer(runs[c].L - 1).out;
      for (int r = 0; r < B; r++) std::memcpy(cat.data() + (size_t)r * width + off, out + (size_t)r * w, sizeof(float) * w);
      off += w;
    }
    headIn = cat.data();
  }
  float* logits = head.forward(headIn);
  softmax_xent(logits, s.y, head.sc.g.data(), B, head.layer(head.L - 1).out, lossOut, correctOut);
  clk.lap(4 * (int)s.layers.size() + 1);
  const float* dcat = head.backward(headIn, true);
  if (nc > 1) {
    const int width = head.layer(0).in;
    for (int c = 0, off = 0; c < nc - 1; c++) {
      const int w = runs[c].layer(runs[c].L - 1).out;
      float* d = runs[c].sc.dOut.data();
      for (int r = 0; r < B; r++) std::memcpy(d + (size_t)r * w, dcat + (size_t)r * width + off, sizeof(float) * w);
      off += w;
      runs[c].backward(s.x, false);
    }
  }
}

}  // namespace sf

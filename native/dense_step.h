// A fused training step for chains of Dense layers: the whole forward, loss, backward and Adam update in one call.
#pragma once
#include <vector>

namespace sf {

enum DenseAct { DENSE_LINEAR = 0, DENSE_RELU = 1, DENSE_SOFTMAX = 2 };

// One Dense layer: W [in, out] row-major, b [out] (null when the layer has no bias), Adam moments of each.
struct DenseLayer {
  int in, out, act;
  float *w, *b, *mw, *vw, *mb, *vb;
};

// Adam constants as tfjs computes them for this step (oma = 1 - beta^t, c = 1 - beta, all float32).
struct AdamArgs {
  float lr, beta1, beta2, eps, oma1, oma2, c1, c2;
};

struct DenseStepArgs {
  int batch;
  const float* x;  // [batch, layers[0].in]
  const float* y;  // [batch, layers.back().out], one-hot or soft targets
  std::vector<DenseLayer> layers;  // hidden layers relu/linear, the last softmax
  AdamArgs adam;
  // When set: the step only computes the gradients, into grads (layer 0's W then b, layer 1's W then b, ...; sizes as
  // the weights), and leaves weights and moments alone (data-parallel training all-reduces them before Adam).
  float* grads = nullptr;
  // Matrix-product precision: false = float32; true = the bf16 mixed-precision mode (every GEMM's operands rounded to
  // bfloat16, float32 accumulation, via gemm_bf16_slices' best kernel; the caller checked it exists). Everything
  // else (bias, activations, softmax, loss, gradients' sums over the batch, Adam, the weights) stays float32.
  bool bf16 = false;
};

// Train one batch in place (or, with grads, only compute its gradients); *loss = mean categorical cross-entropy (tfjs's clipping), *correct = argmax matches.
// Softmax in place over p [B, C], tfjs's categorical cross-entropy (mean over the batch) and its gradient w.r.t. the
// logits into dz; the number of rows whose argmax matches y's (dense_step.cc).
void softmax_xent(float* p, const float* y, float* dz, int B, int C, double* lossOut, double* correctOut);

void dense_train_step(const DenseStepArgs& args, double* loss, double* correct);

}  // namespace sf

// A fused training step for conv nets (chains of Conv2D / MaxPooling2D / Flatten / Dense, relu or linear, or branches
// of them concatenated before a Dense head; softmax output, categorical cross-entropy, Adam): forward, loss, backward
// and the optimizer in one call, with the engine's kernels and tfjs's formulas, so it matches trainOnBatch on the
// engine (see conv_step.cc).
#pragma once
#include <vector>

#include "dense_step.h"
#include "kernels.h"

namespace sf {

enum ConvStepKind { CS_CONV = 0, CS_POOL = 1, CS_DENSE = 2 };

// One layer. Conv/pool: g holds the per-sample geometry (N is set per call; pool uses C as its channels and OC = C).
// Dense: in -> out. in/out are the per-sample float counts of the layer's input and output (flatten is free: NHWC
// rows are already the flattened vectors). Conv W is [KH, KW, C, OC], Dense W is [in, out]; b, moments may be null.
struct ConvStepLayer {
  int kind, act;  // act: DENSE_LINEAR, DENSE_RELU, or DENSE_SOFTMAX (last Dense only)
  // Layers of one chain are consecutive with the same chain index. One chain: a sequential model. Several: each but
  // the last is a branch from the input, and their outputs, concatenated per sample in chain order, feed the last.
  int chain;
  int in, out;
  ConvGeom g;
  float *w, *b, *mw, *vw, *mb, *vb;
};

struct ConvStepArgs {
  int batch;
  const float* x;  // [batch, layers[0].in]
  const float* y;  // [batch, classes], one-hot or soft targets
  std::vector<ConvStepLayer> layers;
  AdamArgs adam;
  // Optional: CPU seconds of the calling thread spent per phase are added here (per layer l: [4l] forward, [4l+1] activation/bias gradient or
  // pool backward, [4l+2] weight gradient, [4l+3] input gradient; then [4L] Adam, [4L+1] softmax and loss).
  double* prof = nullptr;
  // Run the first conv layer and its max pool as separate kernels (the fused one is checked against them).
  bool noFusedPool = false;
  // When set: the step only computes the gradients, into grads (each Conv2D / Dense layer's W then b, in layer order;
  // sizes as the weights), and leaves weights and moments alone (data-parallel training all-reduces them before Adam).
  float* grads = nullptr;
};

// Train one batch in place (or, with grads, only compute its gradients); *loss = mean categorical cross-entropy (tfjs's clipping), *correct = argmax matches.
void conv_train_step(const ConvStepArgs& args, double* loss, double* correct);

}  // namespace sf

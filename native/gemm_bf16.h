// The opt-in bf16 mixed-precision GEMM (gemm_bf16.cc): float32 in and out, operands rounded to bfloat16 (round to
// nearest even), products accumulated in float32. Kernel chosen at run time: AMX tiles, else AVX512_BF16.
#pragma once
#include <functional>
#include <string>

namespace sf {

enum { BF16_NONE = 0, BF16_AVX512 = 1, BF16_AMX = 2, BF16_DEFAULT = -1 };

// The bf16 kernel in use: the best this CPU and OS allow (BF16_AMX, BF16_AVX512 or BF16_NONE); the first call asks Linux for the
// AMX tile state (arch_prctl ARCH_REQ_XCOMP_PERM) when the CPU has AMX-BF16.
int bf16_best_kernel();
// Make BF16_DEFAULT mean `kind` (BF16_DEFAULT: the best again; an unavailable kind is ignored) and return the kernel
// now in use. For tests and benchmarks, which compare the kernels in one process.
int set_bf16_kernel(int kind);
bool bf16_kernel_available(int kind);
const char* bf16_kernel_name(int kind);
// Why AMX is not used ("" when it is).
std::string bf16_amx_note();
// C = op(A) * op(B) (beta 0) with bf16 operands and float32 accumulation, cut into one slice of C per pool thread like
// gemm_f32_slices (split: 0 along the larger of M and N, 1 rows, 2 columns), epi(i0, i1, j0, j1) on each slice's
// thread right after it. kind: BF16_DEFAULT (the best available) or a specific kernel (tests and benchmarks; the
// caller checks bf16_kernel_available). Each operand is converted to bf16 once per call. Deterministic: no element's
// sum depends on the thread count.
void gemm_bf16_slices(int kind, bool ta, bool tb, int M, int N, int K, const float* A, int lda, const float* B, int ldb,
                      float* C, int ldc, int split, const std::function<void(int, int, int, int)>& epi);

}  // namespace sf

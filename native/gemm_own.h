// Hand-written GEMM kernels (packed panels + SIMD micro-kernels, runtime CPU dispatch), row-major.
#pragma once
#include <cstdint>

namespace sf {

enum Isa { ISA_GENERIC = 0, ISA_AVX2 = 1, ISA_AVX512 = 2 };
// Best float ISA usable on this CPU (AVX-512F > AVX2+FMA > portable C++), at most the cap configure_isa set.
Isa detect_isa();
// Cap the ISA detect_isa picks (ISA_AVX512 = no cap); false when the choice was already made with another cap.
bool configure_isa(Isa cap);
const char* isa_name(Isa isa);
bool cpu_has_avx512bf16();
bool cpu_has_avx512vnni();

// C = alpha * op(A) * op(B) + beta * C with op = transpose when ta/tb; A is MxK (or KxM), B is KxN (or NxK).
void sgemm_own(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb,
               float beta, float* C, int ldc, int nthreads);
void dgemm_own(bool ta, bool tb, int M, int N, int K, double alpha, const double* A, int lda, const double* B, int ldb,
               double beta, double* C, int ldc, int nthreads);
// C (float32) = A (bfloat16 bits, MxK) * B (bfloat16 bits, KxN); needs AVX512_BF16 (returns false otherwise).
bool bf16gemm_own(int M, int N, int K, const uint16_t* A, int lda, const uint16_t* B, int ldb, float* C, int ldc,
                  int nthreads);
// C (int32) = A (uint8, MxK) * B (int8, KxN); needs AVX512_VNNI (returns false otherwise).
bool u8s8gemm_own(int M, int N, int K, const uint8_t* A, int lda, const int8_t* B, int ldb, int32_t* C, int ldc,
                  int nthreads);

}  // namespace sf

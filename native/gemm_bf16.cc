// Mixed-precision GEMM for the opt-in bf16 training mode: float32 operands rounded to bfloat16 (round to nearest even)
// while packing, products accumulated in float32, float32 result. Two kernels, chosen at run time: AMX tiles
// (TDPBF16PS) when the CPU has AMX-BF16 and Linux grants the process the tile state, else AVX512_BF16 (VDPBF16PS).
// Everything that executes those instructions carries a target attribute, so the addon loads on CPUs without them.
#include "gemm_bf16.h"

#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "kernels.h"
#include "threadpool.h"

namespace sf {

namespace {

constexpr int NR = 32;  // columns per packed B panel (two AMX B tiles, two zmm for VDPBF16PS)

// ---- CPU and OS support ----

bool cpuid_amx_bf16() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid_max(0, nullptr) < 7) return false;
  __cpuid_count(7, 0, a, b, c, d);
  const bool tile = (d >> 24) & 1, bf16 = (d >> 22) & 1;
  if (!tile || !bf16) return false;
  __cpuid(1, a, b, c, d);
  if (!((c >> 27) & 1)) return false;  // OSXSAVE: xgetbv is allowed
  unsigned lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  (void)hi;
  // XCR0 bits 17 (XTILECFG) and 18 (XTILEDATA): the OS saves the tile state
  return ((lo >> 17) & 3) == 3;
}

// Linux hands out the 8 KB tile-data state only on request (once per process, for all its threads).
bool linux_grant_amx(std::string* why) {
  const long ARCH_REQ_XCOMP_PERM_ = 0x1023, XFEATURE_XTILEDATA_ = 18;
  long r = syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM_, XFEATURE_XTILEDATA_);
  if (r != 0) {
    *why = "the kernel refused the AMX tile state (arch_prctl ARCH_REQ_XCOMP_PERM)";
    return false;
  }
  return true;
}

struct Support {
  int best = BF16_NONE;
  bool avx512bf16 = false, amx = false;
  std::string amx_note;
};

const Support& support() {
  static Support s = [] {
    Support s;
    __builtin_cpu_init();
    s.avx512bf16 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512bf16");
    if (cpuid_amx_bf16()) {
      if (!s.avx512bf16) s.amx_note = "AMX without AVX512_BF16 (not used: packing needs AVX-512)";
      else s.amx = linux_grant_amx(&s.amx_note);
    } else {
      s.amx_note = "no AMX-BF16";
    }
    s.best = s.amx ? BF16_AMX : s.avx512bf16 ? BF16_AVX512 : BF16_NONE;
    return s;
  }();
  return s;
}

// ---- fp32 -> bf16, round to nearest even (NaN stays a quiet NaN; subnormals kept, unlike VCVTNEPS2BF16) ----

__attribute__((target("avx512f,avx512bw"))) inline uint32_t bf16_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (u >> 16) | 0x40u;
  return (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
}

__attribute__((target("avx512f,avx512bw"))) inline __m512i bf16_bits16(__m512 x) {
  __m512i u = _mm512_castps_si512(x);
  __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  __m512i r = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)), lsb), 16);
  __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)), _mm512_set1_epi32(0x7f800000));
  return _mm512_mask_or_epi32(r, nan, _mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
}

// op(A) [M x K] -> bf16 rows [Mp][Kp] (zero padding), rows [r0, r1) of the output.
__attribute__((target("avx512f,avx512bw"))) void pack_a_rows(bool ta, int M, int K, const float* A, int lda, int Kp,
                                                            uint16_t* out, int r0, int r1) {
  if (ta) {
    // columns of A become rows: 16 rows at a time, two k per 32-bit word (k even in the low half), scattered down the
    // 16 output rows; the k tail and rows past a multiple of 16 go through the scalar loop below
    const int KE = K & ~1;
    const __m512i rowStep = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), _mm512_set1_epi32(Kp / 2));
    int i0 = r0;
    for (; i0 + 16 <= std::min(r1, M); i0 += 16) {
      uint32_t* o = reinterpret_cast<uint32_t*>(out + (size_t)i0 * Kp);
      for (int k = 0; k < KE; k += 2) {
        __m512i lo = bf16_bits16(_mm512_loadu_ps(A + (size_t)k * lda + i0)), hi = bf16_bits16(_mm512_loadu_ps(A + (size_t)(k + 1) * lda + i0));
        _mm512_i32scatter_epi32(o + k / 2, rowStep, _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16)), 4);
      }
      for (int r = 0; r < 16; r++) {
        uint16_t* orow = out + (size_t)(i0 + r) * Kp;
        for (int k = KE; k < Kp; k++) orow[k] = k < K ? (uint16_t)bf16_bits(A[(size_t)k * lda + i0 + r]) : 0;
      }
    }
    r0 = i0;
  }
  for (int i = r0; i < r1; i++) {
    uint16_t* o = out + (size_t)i * Kp;
    if (i >= M) {
      std::memset(o, 0, sizeof(uint16_t) * Kp);
      continue;
    }
    int k = 0;
    if (!ta) {
      const float* src = A + (size_t)i * lda;
      for (; k + 16 <= K; k += 16)
        _mm256_storeu_si256((__m256i*)(o + k), _mm512_cvtepi32_epi16(bf16_bits16(_mm512_loadu_ps(src + k))));
      for (; k < K; k++) o[k] = (uint16_t)bf16_bits(src[k]);
    } else {
      for (; k < K; k++) o[k] = (uint16_t)bf16_bits(A[(size_t)k * lda + i]);
    }
    for (; k < Kp; k++) o[k] = 0;
  }
}

// op(A) [M x K] -> blocks of 12 rows [Mp/12][Kp/2][12] of uint32 k-pairs (low half: even k) for VDPBF16PS, whose
// kernel then reads one contiguous stream (row-major rows 4 KB apart would share L1 sets); blocks [b0, b1).
__attribute__((target("avx512f,avx512bw"))) void pack_a_pairs(bool ta, int M, int K, const float* A, int lda, int Kp,
                                                             uint32_t* out, int b0, int b1) {
  constexpr int R = 12;
  const int KU = Kp / 2;
  for (int blk = b0; blk < b1; blk++) {
    uint32_t* P = out + (size_t)blk * KU * R;
    for (int r = 0; r < R; r++) {
      const int i = blk * R + r;
      if (i >= M) {
        for (int u = 0; u < KU; u++) P[(size_t)u * R + r] = 0;
        continue;
      }
      if (!ta) {
        const float* row = A + (size_t)i * lda;
        for (int u = 0; u < KU; u++) {
          const int k = 2 * u;
          P[(size_t)u * R + r] = (k < K ? bf16_bits(row[k]) : 0u) | ((k + 1 < K ? bf16_bits(row[k + 1]) : 0u) << 16);
        }
      } else {
        for (int u = 0; u < KU; u++) {
          const int k = 2 * u;
          P[(size_t)u * R + r] = (k < K ? bf16_bits(A[(size_t)k * lda + i]) : 0u) | ((k + 1 < K ? bf16_bits(A[(size_t)(k + 1) * lda + i]) : 0u) << 16);
        }
      }
    }
  }
}

// op(B) [K x N] -> panels [Np/32][Kp/2][32] of uint32 k-pairs (low half: even k), panels [p0, p1).
__attribute__((target("avx512f,avx512bw"))) void pack_b_panels(bool tb, int K, int N, const float* B, int ldb, int Kp,
                                                              uint32_t* out, int p0, int p1) {
  const int KU = Kp / 2;
  for (int p = p0; p < p1; p++) {
    uint32_t* P = out + (size_t)p * KU * NR;
    const int j0 = p * NR, nn = std::min(NR, N - j0);
    if (!tb) {
      for (int u = 0; u < KU; u++) {
        const int k = 2 * u;
        uint32_t* d = P + (size_t)u * NR;
        const float* r0 = k < K ? B + (size_t)k * ldb + j0 : nullptr;
        const float* r1 = k + 1 < K ? B + (size_t)(k + 1) * ldb + j0 : nullptr;
        int c = 0;
        if (r0 && r1)
          for (; c + 16 <= nn; c += 16) {
            __m512i lo = bf16_bits16(_mm512_loadu_ps(r0 + c)), hi = bf16_bits16(_mm512_loadu_ps(r1 + c));
            _mm512_storeu_si512(d + c, _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16)));
          }
        for (; c < nn; c++) d[c] = (r0 ? bf16_bits(r0[c]) : 0u) | ((r1 ? bf16_bits(r1[c]) : 0u) << 16);
        for (; c < NR; c++) d[c] = 0;
      }
    } else {
      for (int c = 0; c < NR; c++) {
        if (c >= nn) {
          for (int u = 0; u < KU; u++) P[(size_t)u * NR + c] = 0;
          continue;
        }
        const float* row = B + (size_t)(j0 + c) * ldb;
        // 32 k (16 pairs) of the row at once, each pair word scattered to its k-pair row of the panel
        int u = 0;
        const __m512i pairStep = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), _mm512_set1_epi32(NR));
        for (; 2 * u + 32 <= K; u += 16) {
          __m256i h0 = _mm512_cvtepi32_epi16(bf16_bits16(_mm512_loadu_ps(row + 2 * u)));
          __m256i h1 = _mm512_cvtepi32_epi16(bf16_bits16(_mm512_loadu_ps(row + 2 * u + 16)));
          __m512i w = _mm512_inserti64x4(_mm512_castsi256_si512(h0), h1, 1);
          _mm512_i32scatter_epi32(P + (size_t)u * NR + c, pairStep, w, 4);
        }
        for (; u < KU; u++) {
          const int k = 2 * u;
          P[(size_t)u * NR + c] = (k < K ? bf16_bits(row[k]) : 0u) | ((k + 1 < K ? bf16_bits(row[k + 1]) : 0u) << 16);
        }
      }
    }
  }
}

// ---- kernels: tile[mr x 32] (float) = A rows (bf16, stride lda elements) x one B panel, over ku k-pairs ----

constexpr int MR_AVX = 12;

// a: one 12-row block of pack_a_pairs from its k-pair kc on (12 uint32 per pair).
__attribute__((target("avx512f,avx512bw,avx512bf16"))) void mk_avx512(int ku, const uint32_t* a, const uint32_t* b, float* tile) {
  __m512 acc[MR_AVX][2];
  for (int r = 0; r < MR_AVX; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  for (int u = 0; u < ku; u++, a += MR_AVX, b += NR) {
    __m512bh b0 = (__m512bh)_mm512_loadu_si512(b), b1 = (__m512bh)_mm512_loadu_si512(b + 16);
    for (int r = 0; r < MR_AVX; r++) {
      __m512bh av = (__m512bh)_mm512_set1_epi32((int)a[r]);
      acc[r][0] = _mm512_dpbf16_ps(acc[r][0], av, b0);
      acc[r][1] = _mm512_dpbf16_ps(acc[r][1], av, b1);
    }
  }
  for (int r = 0; r < MR_AVX; r++) {
    _mm512_storeu_ps(tile + r * NR, acc[r][0]);
    _mm512_storeu_ps(tile + r * NR + 16, acc[r][1]);
  }
}

// AMX: 32 x 32 of C as 2 x 2 tiles (tmm0..3), A tiles tmm4/5 (16 rows x 32 bf16), B tiles tmm6/7 (16 k-pairs x 16 cols).
struct alignas(64) TileCfg {
  uint8_t palette, start_row, reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
};

// Every tile 16 rows x 64 bytes. A constant in memory: GCC 12 drops stores to a stack copy that only ldtilecfg reads.
const TileCfg kTileCfg = {1, 0, {0}, {64, 64, 64, 64, 64, 64, 64, 64}, {16, 16, 16, 16, 16, 16, 16, 16}};

__attribute__((target("amx-tile,amx-bf16"))) void amx_config() { _tile_loadconfig(&kTileCfg); }

__attribute__((target("amx-tile,amx-bf16"))) void amx_release() { _tile_release(); }

// Kp is a multiple of 32: each step takes 32 k (16 pairs).
__attribute__((target("amx-tile,amx-bf16"))) void mk_amx(int Kp, const uint16_t* a, int lda, const uint32_t* b, float* tile) {
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  const long sa = (long)lda * 2, sb = NR * 4;
  for (int k = 0; k < Kp; k += 32) {
    const uint32_t* bk = b + (size_t)(k / 2) * NR;
    _tile_loadd(4, a + k, sa);
    _tile_loadd(5, a + (size_t)16 * lda + k, sa);
    _tile_loadd(6, bk, sb);
    _tile_loadd(7, bk + 16, sb);
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
  }
  _tile_stored(0, tile, NR * 4);
  _tile_stored(1, tile + 16, NR * 4);
  _tile_stored(2, tile + 16 * NR, NR * 4);
  _tile_stored(3, tile + 16 * NR + 16, NR * 4);
}

// Per-thread bytes for the packed operands, owned by the thread that calls the GEMM.
thread_local std::vector<uint16_t> g_apack;
thread_local std::vector<uint32_t> g_bpack;

}  // namespace

static std::atomic<int> g_bf16_choice{BF16_DEFAULT};

int bf16_best_kernel() {
  const int c = g_bf16_choice;
  return c != BF16_DEFAULT && bf16_kernel_available(c) ? c : support().best;
}

int set_bf16_kernel(int kind) {
  g_bf16_choice = kind == BF16_DEFAULT || bf16_kernel_available(kind) ? kind : BF16_DEFAULT;
  return bf16_best_kernel();
}

bool bf16_kernel_available(int kind) {
  const Support& s = support();
  return kind == BF16_AMX ? s.amx : kind == BF16_AVX512 ? s.avx512bf16 : false;
}

const char* bf16_kernel_name(int kind) { return kind == BF16_AMX ? "amx" : kind == BF16_AVX512 ? "avx512bf16" : "none"; }

std::string bf16_amx_note() { return support().amx_note; }

void gemm_bf16_slices(int kind, bool ta, bool tb, int M, int N, int K, const float* A, int lda, const float* B, int ldb,
                      float* C, int ldc, int split, const std::function<void(int, int, int, int)>& epi) {
  if (M <= 0 || N <= 0) return;
  if (kind == BF16_DEFAULT) kind = bf16_best_kernel();
  if (!bf16_kernel_available(kind)) kind = BF16_NONE;
  if (kind == BF16_NONE && K > 0) {
    // Callers check support first (bf16Kernel() in src/engine/dense-step.ts): zeros here would train on zero gradients.
    std::fprintf(stderr, "slimfit: internal error: a bf16 matrix product was requested on a CPU without a bf16 kernel\n");
    std::abort();
  }
  if (K <= 0) {  // an all-zero product
    for (int i = 0; i < M; i++) std::fill(C + (size_t)i * ldc, C + (size_t)i * ldc + N, 0.f);
    epi(0, M, 0, N);
    return;
  }
  const bool amx = kind == BF16_AMX;
  const int MB = amx ? 32 : MR_AVX;  // rows per kernel call
  const int Kp = amx ? (K + 31) / 32 * 32 : (K + 1) / 2 * 2;
  const int Mp = (M + MB - 1) / MB * MB;
  const int panels = (N + NR - 1) / NR;
  if (g_apack.size() < (size_t)Mp * Kp + 32) g_apack.resize((size_t)Mp * Kp + 32);
  if (g_bpack.size() < (size_t)panels * (Kp / 2) * NR + 16) g_bpack.resize((size_t)panels * (Kp / 2) * NR + 16);
  uint16_t* ap = g_apack.data();
  uint32_t* bp = g_bpack.data();

  const double work = (double)M * N * K;
  const int nt = work < 2e5 ? 1 : num_threads();
  // Packing: each operand converted once, rows of A and panels of B shared out among the threads.
  {
    const int RB = amx ? 16 : MR_AVX;  // rows per packing unit
    const int ablocks = Mp / RB;
    const int chunks = nt == 1 ? 1 : std::min(4 * nt, ablocks + panels);
    auto pack = [&](int t) {
      const int total = ablocks + panels;
      const int u0 = total * t / chunks, u1 = total * (t + 1) / chunks;
      const int a0 = std::min(u0, ablocks), a1 = std::min(u1, ablocks);
      if (a0 < a1) {
        if (amx) pack_a_rows(ta, M, K, A, lda, Kp, ap, a0 * RB, a1 * RB);
        else pack_a_pairs(ta, M, K, A, lda, Kp, reinterpret_cast<uint32_t*>(ap), a0, a1);
      }
      const int b0 = std::max(u0, ablocks) - ablocks, b1 = std::max(u1, ablocks) - ablocks;
      if (b0 < b1) pack_b_panels(tb, K, N, B, ldb, Kp, bp, b0, b1);
    };
    if (chunks == 1) pack(0);
    else pool().run(chunks, pack);
  }

  // Compute: C cut into one slice per thread (rows or panels); each element's sum runs in a fixed order (k blocks of
  // KCU pairs, in order), so results do not depend on the thread count.
  const bool split_n = split == 2 || (split == 0 && N >= M);
  const int units = split_n ? panels : Mp / MB;
  const int nc = std::max(1, std::min(nt, units));
  const int KU = Kp / 2;
  const int nkb = amx ? 1 : std::max(1, (KU + 255) / 256);  // AVX: balanced k blocks of at most 256 pairs
  const int KCU = (KU + nkb - 1) / nkb;
  auto slice = [&](int t) {
    const int u0 = units * t / nc, u1 = units * (t + 1) / nc;
    int i0, i1, p0, p1;
    if (split_n) { i0 = 0; i1 = Mp; p0 = u0; p1 = u1; }
    else { i0 = u0 * MB; i1 = u1 * MB; p0 = 0; p1 = panels; }
    if (i0 >= i1 || p0 >= p1) return;
    alignas(64) float tile[32 * NR];
    if (amx) amx_config();
    const int PB = 8;  // panels per column block: the B block stays in L2 while the row blocks stream past
    for (int pc = p0; pc < p1; pc += PB) {
      const int pe = std::min(p1, pc + PB);
      for (int kc = 0; kc < KU; kc += KCU) {
        const int ku = std::min(KCU, KU - kc);
        for (int i = i0; i < i1; i += MB) {
          const uint16_t* arow = ap + (size_t)i * Kp + 2 * kc;  // AMX: row i; AVX: block i / 12 at pair kc
          for (int p = pc; p < pe; p++) {
            const uint32_t* bpan = bp + ((size_t)p * KU + kc) * NR;
            if (amx) mk_amx(2 * ku, arow, Kp, bpan, tile);
            else mk_avx512(ku, reinterpret_cast<const uint32_t*>(ap) + ((size_t)(i / MB) * KU + kc) * MB, bpan, tile);
            const int mm = std::min(MB, M - i), j0 = p * NR, nn = std::min(NR, N - j0);
            for (int r = 0; r < mm; r++) {
              float* crow = C + (size_t)(i + r) * ldc + j0;
              const float* tr = tile + r * NR;
              if (kc == 0) std::memcpy(crow, tr, sizeof(float) * nn);
              else for (int c = 0; c < nn; c++) crow[c] += tr[c];
            }
          }
        }
      }
    }
    if (amx) amx_release();
    epi(std::min(i0, M), std::min(i1, M), p0 * NR, std::min(N, p1 * NR));
  };
  if (nc == 1) slice(0);
  else pool().run(nc, slice);
}

}  // namespace sf

// The bf16 tile path on AMX (Intel Sapphire Rapids and later): TDPBF16PS multiplies a 16 x 32
// bf16 tile by a 32 x 16 one into 16 x 16 fp32 sums, 16K FLOP per instruction, sixteen times an
// AVX-512 FMA's. It reads the VNNI pair layouts of the AVX512-BF16 path (kt16, v16), so the two
// share pack and load_q; head dims are padded to 32 (one A tile is 32 bf16 wide).
//
// Eight tile registers, all 16 rows x 64 bytes: tmm0-3 hold a 32 x 32 block of C (2 x 2 tiles),
// tmm4-5 two A tiles (rows), tmm6-7 two B tiles (columns). Each A and B load feeds two products.
// The kernel must grant the process AMX state first (arch_prctl ARCH_REQ_XCOMP_PERM), or the first
// tile instruction faults; available() asks once.
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "kernels/cpu.h"
#include "kernels/flash_tiles.h"

namespace longattn {
namespace {

#define LONGATTN_AMX_TARGET __attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512vl,avx512bf16")))

// Keys per block. More than the AVX-512 paths' 64: each load and store of a 16 x 16 C tile of O
// then serves bk / 32 products instead of 2 (measured: P V took twice Q K^T's time at 64).
constexpr int64_t kAmxBk = 256;

struct alignas(64) TileConfig {
  uint8_t palette = 1, start_row = 0, reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

LONGATTN_AMX_TARGET void configure_tiles() {
  TileConfig c;
  for (int t = 0; t < 8; ++t) c.colsb[t] = 64, c.rows[t] = 16;
  _tile_loadconfig(&c);
}

bool amx_permitted() {
  constexpr long kReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
  static const bool ok = cpu_info().amx_bf16 && cpu_info().avx512_bf16 &&
                         syscall(SYS_arch_prctl, kReqXcompPerm, kXfeatureXtiledata) == 0;
  return ok;
}

// One TDPBF16PS (16 x 16 x 32 multiply-adds) every 16 cycles per core (Intel's optimization manual).
double amx_peak() { return 2.0 * 16 * 16 * 32 / 16; }

// C[32 x 32] (tmm0-3) = sum over `chunks` of A[32 x 32 bf16] B[32 bf16 x 32]: A rows at a, a_stride
// bytes apart, the next 32 reduced elements 64 bytes on; B pair-rows at b, b_stride bytes apart,
// the next 16 pair-rows b_next bytes on, its second 16 columns 64 bytes on.
LONGATTN_AMX_TARGET inline void block_32x32(const uint16_t* a, int64_t a_stride, const uint16_t* b,
                                            int64_t b_stride, int64_t b_next, int64_t chunks) {
  const char* ap = reinterpret_cast<const char*>(a);
  const char* bp = reinterpret_cast<const char*>(b);
  for (int64_t c = 0; c < chunks; ++c, ap += 64, bp += b_next) {
    _tile_loadd(4, ap, a_stride);
    _tile_loadd(5, ap + 16 * a_stride, a_stride);
    _tile_loadd(6, bp, b_stride);
    _tile_loadd(7, bp + 64, b_stride);
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
  }
}

LONGATTN_AMX_TARGET inline void store_32x32(float* c, int64_t stride) {
  char* p = reinterpret_cast<char*>(c);
  _tile_stored(0, p, stride);
  _tile_stored(1, p + 64, stride);
  _tile_stored(2, p + 16 * stride, stride);
  _tile_stored(3, p + 16 * stride + 64, stride);
}

LONGATTN_AMX_TARGET inline void load_32x32(const float* c, int64_t stride) {
  const char* p = reinterpret_cast<const char*>(c);
  _tile_loadd(0, p, stride);
  _tile_loadd(1, p + 64, stride);
  _tile_loadd(2, p + 16 * stride, stride);
  _tile_loadd(3, p + 16 * stride + 64, stride);
}

// scores = qscale * Q K_kb^T: q16 [Bq][dp] row-major (A), kt16 [dp/2][Bk][2] (B).
LONGATTN_AMX_TARGET float qk(FlashScratch& s, const PackedKV& kv, int64_t kb, const KeySpans*, float qscale,
                             float* scores) {
  const int64_t dp = kv.dp;
  const uint16_t* kt = kv.kt16.data() + kb * dp * kAmxBk;
  configure_tiles();
  for (int64_t r = 0; r < kFlashBq; r += 32)
    for (int64_t j = 0; j < kAmxBk; j += 32) {
      _tile_zero(0);
      _tile_zero(1);
      _tile_zero(2);
      _tile_zero(3);
      block_32x32(s.q16.data() + r * dp, dp * 2, kt + j * 2, kAmxBk * 4, 16 * kAmxBk * 4, dp / 32);
      store_32x32(scores + r * kAmxBk + j, kAmxBk * 4);
    }
  if (qscale > 0) return qscale;  // left to the softmax's FMAs
  const __m512 sc = _mm512_set1_ps(qscale);
  for (int64_t i = 0; i < kFlashBq * kAmxBk; i += 16)
    _mm512_storeu_ps(scores + i, _mm512_mul_ps(_mm512_loadu_ps(scores + i), sc));
  return 1.0f;
}

// o = alpha * o + P V_kb: P rows to bf16 (A, [Bq][Bk]), v16 [Bk/2][dp][2] (B), o [Bq][dp] as C.
LONGATTN_AMX_TARGET void pv(FlashScratch& s, const PackedKV& kv, int64_t kb, const KeySpans*, int64_t cols) {
  if (kv.v_nonfinite) return bf16_tiles::pv_nonfinite(s, kv, kb, cols);
  const int64_t dp = kv.dp;
  float* o = s.o.data();
  for (int64_t r = 0; r < kFlashBq; ++r) {
    if (s.alpha[r] == 1.0f) continue;  // the row's max held: the common case once a row has seen a few blocks
    const __m512 a = _mm512_set1_ps(s.alpha[r]);
    for (int64_t c = 0; c < dp; c += 16) _mm512_storeu_ps(o + r * dp + c, _mm512_mul_ps(_mm512_loadu_ps(o + r * dp + c), a));
  }
  const uint16_t* v = kv.v16.data() + kb * kAmxBk * dp;
  const int64_t chunks = (cols + 31) / 32;  // key pairs past `cols` hold P = 0 and V = 0
  configure_tiles();
  for (int64_t r = 0; r < kFlashBq; r += 32)
    for (int64_t c = 0; c < dp; c += 32) {
      load_32x32(o + r * dp + c, dp * 4);
      block_32x32(s.p16.data() + r * kAmxBk, kAmxBk * 2, v + c * 2, dp * 4, 16 * dp * 4, chunks);
      store_32x32(o + r * dp + c, dp * 4);
    }
}

}  // namespace

const TilePath kTileBf16Amx = {"bf16-amx", DType::bf16, "amx_bf16 (and the kernel's leave to use AMX state)", 32, kAmxBk, true, false,
                               amx_permitted, amx_peak, bf16_tiles::pack, bf16_tiles::load_q, qk, pv};

}  // namespace longattn

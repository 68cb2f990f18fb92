// dist-heads (He & Kabic's distributed multi-head attention, SPEC §3): every rank holds the whole
// Q, K, V; rank p computes heads [p H/P, (p+1) H/P) over the full sequence with the fastest kernel
// for the pattern, and one all-gather gives every rank the whole O and LSE.
// Communication per rank: (P-1) B N (H/P) (d + 1) elements.
#include <omp.h>

#include <algorithm>

#include "kernels/registry.h"
#include "suite/method.h"

namespace longattn {

// Copy heads [h0, h0 + hp) of a [B, N, H, d] tensor to or from a [B, N, hp, d] one.
static void copy_heads(const float* src, int64_t src_heads, float* dst, int64_t dst_heads, int64_t rows,
                       int64_t hp, int64_t src_h0, int64_t dst_h0, int64_t d, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t t = 0; t < rows; ++t)
    std::copy_n(src + (t * src_heads + src_h0) * d, hp * d, dst + (t * dst_heads + dst_h0) * d);
}

void dist_heads(const MethodCall& c) {
  const Shape g = c.global;
  const int P = c.comm->size(), p = c.comm->rank();
  const int64_t hp = g.H / P, rows = g.B * g.N, slab = rows * hp * g.d, lslab = rows * hp;
  const int threads = c.threads > 0 ? c.threads : omp_get_max_threads();
  auto& q = c.buffers->buf[0];
  auto& k = c.buffers->buf[1];
  auto& v = c.buffers->buf[2];
  auto& o = c.buffers->buf[3];
  auto& gathered = c.buffers->buf[4];
  // o: this rank's O heads, then their LSE [B, hp, N]: one all-gather carries both.
  q.resize(slab), k.resize(slab), v.resize(slab), o.resize(slab + lslab), gathered.resize((slab + lslab) * P);
  copy_heads(c.q, g.H, q.data(), hp, rows, hp, p * hp, 0, g.d, threads);
  copy_heads(c.k, g.H, k.data(), hp, rows, hp, p * hp, 0, g.d, threads);
  copy_heads(c.v, g.H, v.data(), hp, rows, hp, p * hp, 0, g.d, threads);

  AttentionArgs a = c.local_args(g.N);
  a.shape.H = hp;
  a.head0 = p * hp;
  a.q = q.data(), a.k = k.data(), a.v = v.data(), a.o = o.data(), a.lse = o.data() + slab;
  auto_kernel(a.pattern, a.shape, a.dtype, c.device()).run(a);  // the device's fastest kernel

  c.comm->all_gather(o.data(), (slab + lslab) * sizeof(float), gathered.data());
  for (int r = 0; r < P; ++r) {
    const float* part = gathered.data() + r * (slab + lslab);
    copy_heads(part, hp, c.o, g.H, rows, hp, 0, r * hp, g.d, threads);
    if (c.lse)  // [B, hp, N] of heads r hp .. into [B, H, N]
      for (int64_t b = 0; b < g.B; ++b)
        std::copy_n(part + slab + b * hp * g.N, hp * g.N, c.lse + (b * g.H + r * hp) * g.N);
  }
}

// Backward (SPEC §6): each rank's heads locally, from the forward's slices still in the buffers
// (Q, K, V, O and LSE of heads [p H/P, (p+1) H/P)); one all-gather of dQ, dK, dV gives every rank
// all heads. Communication per rank: 3 (P-1) B N (H/P) d elements.
void dist_heads_backward(const MethodCall& c, const float* dout, float* dq, float* dk, float* dv) {
  const Shape g = c.global;
  const int P = c.comm->size(), p = c.comm->rank();
  const int64_t hp = g.H / P, rows = g.B * g.N, slab = rows * hp * g.d;
  const int threads = c.threads > 0 ? c.threads : omp_get_max_threads();
  auto& q = c.buffers->buf[0];
  auto& k = c.buffers->buf[1];
  auto& v = c.buffers->buf[2];
  auto& o = c.buffers->buf[3];         // O then LSE of this rank's heads (the forward's)
  auto& gathered = c.buffers->buf[4];
  auto& grads = c.buffers->buf[5];     // dO, then dQ, dK, dV of this rank's heads
  grads.resize(4 * slab), gathered.resize(3 * slab * P);
  copy_heads(dout, g.H, grads.data(), hp, rows, hp, p * hp, 0, g.d, threads);
  AttentionArgs a = c.local_args(g.N);
  a.shape.H = hp;
  a.head0 = p * hp;
  a.q = q.data(), a.k = k.data(), a.v = v.data(), a.o = o.data(), a.lse = o.data() + slab;
  auto_kernel(a.pattern, a.shape, a.dtype, c.device())
      .backward({a, grads.data(), grads.data() + slab, grads.data() + 2 * slab, grads.data() + 3 * slab});
  c.comm->all_gather(grads.data() + slab, 3 * slab * sizeof(float), gathered.data());
  float* const out[3] = {dq, dk, dv};
  for (int r = 0; r < P; ++r)
    for (int t = 0; t < 3; ++t)
      copy_heads(gathered.data() + (3 * r + t) * slab, hp, out[t], g.H, rows, hp, 0, r * hp, g.d, threads);
}

// SPEC §3: the other ranks' O and LSE of their heads.
uint64_t dist_heads_bytes(const Pattern&, const Shape& g, int P, int) {
  return uint64_t(P - 1) * g.N * (g.H / P) * (g.d + 1) * g.B * sizeof(float);
}

}  // namespace longattn

// dist-heads (He & Kabic's distributed multi-head attention, SPEC §3): every rank holds the whole
// Q, K, V; rank p computes heads [p H/P, (p+1) H/P) over the full sequence with the fastest kernel
// for the pattern, and one all-gather gives every rank the whole O and LSE. With GQA a rank takes
// the KV heads its query heads read (split_heads, method.h).
// Communication per rank: (P-1) B N (H/P) (d + 1) elements.
#include <omp.h>

#include <algorithm>

#include "kernels/registry.h"
#include "suite/method.h"

namespace longattn {

// Copy heads [h0, h0 + hp) of a [B, N, H, d] tensor to or from a [B, N, hp, d] one.
static void copy_heads(const Place& at, const float* src, int64_t src_heads, float* dst, int64_t dst_heads,
                       int64_t rows, int64_t hp, int64_t src_h0, int64_t dst_h0, int64_t d) {
  copy_rows(at, dst + dst_h0 * d, dst_heads * d, src + src_h0 * d, src_heads * d, hp * d, rows);
}

void dist_heads(const MethodCall& c) {
  const Shape g = c.global;
  const int P = c.comm->size(), p = c.comm->rank();
  const HeadSplit x = split_heads(g, P, p);
  const int64_t hp = x.hp, hk = g.kv_heads(), rows = g.B * g.N, slab = rows * hp * g.d, lslab = rows * hp;
  auto& q = c.buffers->buf[0];
  auto& k = c.buffers->buf[1];
  auto& v = c.buffers->buf[2];
  auto& o = c.buffers->buf[3];
  auto& gathered = c.buffers->buf[4];
  // o: this rank's O heads, then their LSE [B, hp, N]: one all-gather carries both.
  q.resize(slab), k.resize(rows * x.kvp * g.d), v.resize(k.size()), o.resize(slab + lslab), gathered.resize((slab + lslab) * P);
  const Place at = c.place();
  copy_heads(at, c.q, g.H, q.data(), hp, rows, hp, x.h0, 0, g.d);
  copy_heads(at, c.k, hk, k.data(), x.kvp, rows, x.kvp, x.kv0, 0, g.d);
  copy_heads(at, c.v, hk, v.data(), x.kvp, rows, x.kvp, x.kv0, 0, g.d);

  AttentionArgs a = c.local_args(g.N);
  a.shape.H = hp, a.shape.H_kv = x.kvp;
  a.head0 = c.head0 + x.h0;
  a.q = q.data(), a.k = k.data(), a.v = v.data(), a.o = o.data(), a.lse = o.data() + slab;
  if (at.device == Device::cpu)
    auto_kernel(a.pattern, a.shape, a.dtype).run(a);  // the CPU's fastest kernel
  else
    attention_by_steps(a, c.step());  // GPU buffers: the tile kernel, through attention steps

  c.comm->all_gather(o.data(), (slab + lslab) * sizeof(float), gathered.data());
  for (int r = 0; r < P; ++r) {
    const float* part = gathered.data() + r * (slab + lslab);
    copy_heads(at, part, hp, c.o, g.H, rows, hp, 0, r * hp, g.d);
    if (c.lse)  // [B, hp, N] of heads r hp .. into [B, H, N]
      copy_rows(at, c.lse + r * hp * g.N, g.H * g.N, part + slab, hp * g.N, hp * g.N, g.B);
  }
}

// Backward (SPEC §6): each rank's heads locally, from the forward's slices still in the buffers
// (Q, K, V, O and LSE of its heads); one all-gather of dQ, dK, dV gives every rank all heads, the
// dK, dV of a replicated KV head summed over the ranks that share it.
// Communication per rank: (P-1) B N (H/P + 2 kvp) d elements.
void dist_heads_backward(const MethodCall& c, const float* dout, float* dq, float* dk, float* dv) {
  const Shape g = c.global;
  const int P = c.comm->size(), p = c.comm->rank();
  const HeadSplit x = split_heads(g, P, p);
  const int64_t hp = x.hp, hk = g.kv_heads(), rows = g.B * g.N, slab = rows * hp * g.d, kv_slab = rows * x.kvp * g.d;
  const int64_t part = slab + 2 * kv_slab;  // one rank's dQ, dK, dV
  const int threads = c.threads > 0 ? c.threads : omp_get_max_threads();
  auto& q = c.buffers->buf[0];
  auto& k = c.buffers->buf[1];
  auto& v = c.buffers->buf[2];
  auto& o = c.buffers->buf[3];         // O then LSE of this rank's heads (the forward's)
  auto& gathered = c.buffers->buf[4];
  auto& grads = c.buffers->buf[5];     // dO, then dQ, dK, dV of this rank's heads
  grads.resize(slab + part), gathered.resize(part * P);
  const Place host{Device::cpu, nullptr, threads};  // the backward runs on host buffers
  copy_heads(host, dout, g.H, grads.data(), hp, rows, hp, x.h0, 0, g.d);
  AttentionArgs a = c.local_args(g.N);
  a.shape.H = hp, a.shape.H_kv = x.kvp;
  a.head0 = c.head0 + x.h0;
  a.q = q.data(), a.k = k.data(), a.v = v.data(), a.o = o.data(), a.lse = o.data() + slab;
  float* mine = grads.data() + slab;
  auto_kernel(a.pattern, a.shape, a.dtype, c.device())
      .backward({a, grads.data(), mine, mine + slab, mine + slab + kv_slab});
  c.comm->all_gather(mine, part * sizeof(float), gathered.data());
  if (x.replicated) std::fill_n(dk, g.kv_numel(), 0.0f), std::fill_n(dv, g.kv_numel(), 0.0f);
  for (int r = 0; r < P; ++r) {
    const float* in = gathered.data() + r * part;
    const HeadSplit y = split_heads(g, P, r);
    copy_heads(host, in, hp, dq, g.H, rows, hp, 0, y.h0, g.d);
    float* const out[2] = {dk, dv};
    for (int t = 0; t < 2; ++t) {
      const float* src = in + slab + t * kv_slab;
      if (!x.replicated) {
        copy_heads(host, src, x.kvp, out[t], hk, rows, x.kvp, 0, y.kv0, g.d);
        continue;
      }
#pragma omp parallel for num_threads(threads) schedule(static)
      for (int64_t i = 0; i < rows; ++i)  // a replicated KV head: the ranks' parts add up
        for (int64_t e = 0; e < g.d; ++e) out[t][(i * hk + y.kv0) * g.d + e] += src[i * g.d + e];
    }
  }
}

// SPEC §3: the other ranks' O and LSE of their heads.
uint64_t dist_heads_bytes(const Pattern&, const Shape& g, int P, int, int) {
  return uint64_t(P - 1) * g.N * (g.H / P) * (g.d + 1) * g.B * sizeof(float);
}

}  // namespace longattn

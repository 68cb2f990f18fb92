// dist-ulysses (DeepSpeed-Ulysses, SPEC §3): sequence-sharded Q, K, V; one all-to-all turns
// [n, H, d] token shards into [N, H/P, d] head shards, each rank runs the fastest kernel for the
// pattern on its heads over the whole sequence, and a second all-to-all returns O and LSE to token
// shards. Communication per rank: B n H (4 d + 1) (P-1)/P elements (Q, K, V in; O and LSE out).
#include <omp.h>

#include <algorithm>

#include "kernels/registry.h"
#include "suite/method.h"

namespace longattn {

void dist_ulysses(const MethodCall& c) {
  const Shape g = c.global;
  const int P = c.comm->size(), p = c.comm->rank();
  const int64_t n = c.shard(), hp = g.H / P, d = g.d;
  const int64_t block = g.B * n * hp * d;  // one rank's tokens x another rank's heads
  const int64_t lblock = g.B * hp * n;     // their LSE
  const int threads = c.threads > 0 ? c.threads : omp_get_max_threads();
  auto& send = c.buffers->buf[0];
  auto& recv = c.buffers->buf[1];
  auto& qkv = c.buffers->buf[2];  // [3][B, N, hp, d]
  auto& o = c.buffers->buf[3];
  auto& lse = c.buffers->buf[4];  // [B, hp, N]
  send.resize(3 * block * P), recv.resize(3 * block * P), qkv.resize(3 * block * P), o.resize(block * P);
  lse.resize(lblock * P);

  // send[r][t][b][i][hh][:] = X_t[b, i, r hp + hh, :] for X = Q, K, V.
  const float* in[3] = {c.q, c.k, c.v};
#pragma omp parallel for collapse(2) num_threads(threads)
  for (int r = 0; r < P; ++r)
    for (int64_t bi = 0; bi < g.B * n; ++bi)
      for (int t = 0; t < 3; ++t)
        std::copy_n(in[t] + (bi * g.H + r * hp) * d, hp * d, send.data() + ((r * 3 + t) * g.B * n + bi) * hp * d);
  c.comm->all_to_all(send.data(), 3 * block * sizeof(float), recv.data());
  // recv[s][t][b][i] holds tokens s n + i: lay them out as [t][b][N][hp][d].
#pragma omp parallel for collapse(2) num_threads(threads)
  for (int s = 0; s < P; ++s)
    for (int64_t b = 0; b < g.B; ++b)
      for (int t = 0; t < 3; ++t)
        std::copy_n(recv.data() + ((s * 3 + t) * g.B + b) * n * hp * d, n * hp * d,
                    qkv.data() + ((t * g.B + b) * g.N + s * n) * hp * d);

  AttentionArgs a = c.local_args(g.N);
  a.shape.H = hp;
  a.head0 = p * hp;
  a.q = qkv.data(), a.k = qkv.data() + P * block, a.v = qkv.data() + 2 * P * block;
  a.o = o.data(), a.lse = lse.data();
  auto_kernel(a.pattern, a.shape, a.dtype, c.device()).run(a);  // the device's fastest kernel

  // Back, per destination r: O [b][i][hh] = O[b, r n + i, hh], then LSE [b][hh][i]; received from
  // s: my tokens, heads of s.
  const int64_t part = block + lblock;
#pragma omp parallel for collapse(2) num_threads(threads)
  for (int r = 0; r < P; ++r)
    for (int64_t b = 0; b < g.B; ++b) {
      std::copy_n(o.data() + (b * g.N + r * n) * hp * d, n * hp * d, send.data() + r * part + b * n * hp * d);
      for (int64_t hh = 0; hh < hp; ++hh)
        std::copy_n(lse.data() + (b * hp + hh) * g.N + r * n, n, send.data() + r * part + block + (b * hp + hh) * n);
    }
  c.comm->all_to_all(send.data(), part * sizeof(float), recv.data());
#pragma omp parallel for collapse(2) num_threads(threads)
  for (int s = 0; s < P; ++s)
    for (int64_t bi = 0; bi < g.B * n; ++bi)
      std::copy_n(recv.data() + s * part + bi * hp * d, hp * d, c.o + (bi * g.H + s * hp) * d);
  if (c.lse)  // [B, H, n]
    for (int s = 0; s < P; ++s)
      for (int64_t b = 0; b < g.B; ++b)
        for (int64_t hh = 0; hh < hp; ++hh)
          std::copy_n(recv.data() + s * part + block + (b * hp + hh) * n, n, c.lse + (b * g.H + s * hp + hh) * n);
}

// Backward (SPEC §6), the all-to-alls reversed: dO goes to head shards as Q went, each rank runs
// its kernel's backward on its heads over the whole sequence (Q, K, V, O and LSE of the forward,
// still in the buffers), and dQ, dK, dV come back to token shards as O did.
// Communication per rank: 4 B n H d (P-1)/P elements.
void dist_ulysses_backward(const MethodCall& c, const float* dout, float* dq, float* dk, float* dv) {
  const Shape g = c.global;
  const int P = c.comm->size(), p = c.comm->rank();
  const int64_t n = c.shard(), hp = g.H / P, d = g.d;
  const int64_t block = g.B * n * hp * d;
  const int threads = c.threads > 0 ? c.threads : omp_get_max_threads();
  auto& send = c.buffers->buf[0];
  auto& recv = c.buffers->buf[1];
  auto& qkv = c.buffers->buf[2];  // the forward's [3][B, N, hp, d]
  auto& o = c.buffers->buf[3];
  auto& lse = c.buffers->buf[4];
  auto& grads = c.buffers->buf[5];  // [4][B, N, hp, d]: dO, dQ, dK, dV of this rank's heads
  grads.resize(4 * block * P);
#pragma omp parallel for collapse(2) num_threads(threads)
  for (int r = 0; r < P; ++r)
    for (int64_t bi = 0; bi < g.B * n; ++bi)
      std::copy_n(dout + (bi * g.H + r * hp) * d, hp * d, send.data() + (r * g.B * n + bi) * hp * d);
  c.comm->all_to_all(send.data(), block * sizeof(float), recv.data());
#pragma omp parallel for collapse(2) num_threads(threads)
  for (int s = 0; s < P; ++s)
    for (int64_t b = 0; b < g.B; ++b)
      std::copy_n(recv.data() + (s * g.B + b) * n * hp * d, n * hp * d, grads.data() + (b * g.N + s * n) * hp * d);

  AttentionArgs a = c.local_args(g.N);
  a.shape.H = hp;
  a.head0 = p * hp;
  a.q = qkv.data(), a.k = qkv.data() + P * block, a.v = qkv.data() + 2 * P * block;
  a.o = o.data(), a.lse = lse.data();
  float* gq = grads.data() + P * block;
  auto_kernel(a.pattern, a.shape, a.dtype, c.device()).backward({a, grads.data(), gq, gq + P * block, gq + 2 * P * block});

  // Back, per destination r: [t][b][i][hh] = dX_t[b, r n + i, hh]; from s: my tokens, heads of s.
#pragma omp parallel for collapse(2) num_threads(threads)
  for (int r = 0; r < P; ++r)
    for (int64_t b = 0; b < g.B; ++b)
      for (int t = 0; t < 3; ++t)
        std::copy_n(gq + t * P * block + (b * g.N + r * n) * hp * d, n * hp * d,
                    send.data() + ((r * 3 + t) * g.B + b) * n * hp * d);
  c.comm->all_to_all(send.data(), 3 * block * sizeof(float), recv.data());
  float* const out[3] = {dq, dk, dv};
#pragma omp parallel for collapse(2) num_threads(threads)
  for (int s = 0; s < P; ++s)
    for (int64_t bi = 0; bi < g.B * n; ++bi)
      for (int t = 0; t < 3; ++t)
        std::copy_n(recv.data() + ((s * 3 + t) * g.B * n + bi) * hp * d, hp * d, out[t] + (bi * g.H + s * hp) * d);
}

// SPEC §3: Q, K, V in and O, LSE out, (P-1)/P of each.
uint64_t dist_ulysses_bytes(const Pattern&, const Shape& g, int P, int) {
  return uint64_t(4 * g.d + 1) * (g.N / P) * g.H * (P - 1) / P * g.B * sizeof(float);
}

}  // namespace longattn

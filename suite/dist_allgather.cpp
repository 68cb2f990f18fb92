// dist-allgather (all-gather context parallelism, as Llama 3's training shards long sequences, SPEC
// §3): sequence-sharded Q, K, V; one all-gather gives every rank the whole K and V, and each rank
// attends its own queries to all of them in one attention step. The ring's bytes, sent at once and
// not overlapped with compute, for one pass of the online softmax over all keys instead of P merges.
// Communication per rank: 2 (P-1) B n H_kv d elements.
#include <algorithm>
#include <limits>

#include "kernels/backward.h"
#include "kernels/step.h"
#include "suite/method.h"

namespace longattn {

static int64_t kv_row(const Shape& g) { return g.kv_heads() * g.d; }  // one token's K (or V) heads

void dist_allgather(const MethodCall& c) {
  const Shape g = c.global;
  const int P = c.comm->size(), p = c.comm->rank();
  const int64_t n = c.shard(), row = g.H * g.d, shard = g.B * n * kv_row(g), whole = g.B * g.N * kv_row(g);
  auto& send = c.buffers->buf[0];      // this rank's [K; V]
  auto& gathered = c.buffers->buf[1];  // [P][K; V] as the ranks sent them
  auto& kv = c.buffers->buf[2];        // [K; V], each [B, N, H_kv, d]
  auto& lse_own = c.buffers->buf[3];
  send.resize(2 * shard), gathered.resize(2 * shard * P), kv.resize(2 * whole);
  const Place at = c.place();  // host, or the GPU's compute stream
  copy_floats(at, send.data(), c.k, shard);
  copy_floats(at, send.data() + shard, c.v, shard);
  c.comm->all_gather(send.data(), 2 * shard * sizeof(float), gathered.data());
  for (int r = 0; r < P; ++r)  // rank r's shard holds tokens [r n, (r+1) n) of every batch
    for (int t = 0; t < 2; ++t)
      copy_rows(at, kv.data() + t * whole + r * n * kv_row(g), g.N * kv_row(g), gathered.data() + (2 * r + t) * shard,
                n * kv_row(g), n * kv_row(g), g.B);

  float* lse = c.lse;
  if (!lse) lse_own.resize(g.B * g.H * n), lse = lse_own.data();
  fill_floats(at, c.o, g.B * n * row, 0.0f);
  fill_floats(at, lse, g.B * g.H * n, -std::numeric_limits<float>::infinity());
  AttentionStep step = c.step();
  for (int64_t b = 0; b < g.B; ++b)
    for (int64_t h = 0; h < g.H; ++h) {
      const float* k = kv.data() + b * g.N * kv_row(g) + h / g.group() * g.d;  // GQA: the group's KV head
      step.blocks.push_back({c.q + b * n * row + h * g.d, row, n, p * n, k, k + whole, kv_row(g), g.N, 0, g.N, h,
                             c.o + b * n * row + h * g.d, row, lse + (b * g.H + h) * n, 1});
    }
  attention_step(step);
}

// Backward (SPEC §6): each rank's queries against the gathered K, V (still in the buffers) give its
// dQ whole and a part of every key's dK, dV; an all-to-all hands each rank the parts of its own
// keys, summed there (a reduce-scatter). Communication per rank: 2 (P-1) B n H_kv d elements.
void dist_allgather_backward(const MethodCall& c, const float* dout, float* dq, float* dk, float* dv) {
  const Shape g = c.global;
  const int P = c.comm->size(), p = c.comm->rank();
  const int64_t n = c.shard(), row = g.H * g.d, kvr = kv_row(g), G = g.group();
  const int64_t shard = g.B * n * kvr, whole = g.B * g.N * kvr;
  auto& kv = c.buffers->buf[2];  // the forward's [K; V], each [B, N, H_kv, d]
  const float* lse = c.lse ? c.lse : c.buffers->buf[3].data();
  auto& dkv = c.buffers->buf[4];   // [dK; dV] parts of every key from this rank's queries
  auto& delta = c.buffers->buf[5];  // D = rowsum(dO ∘ O), [B, H, n]
  dkv.assign(2 * whole, 0.0f), delta.resize(g.B * g.H * n);
  row_deltas(dout, c.o, g.B, n, g.H, g.d, delta.data(), c.threads);
  std::fill_n(dq, g.B * n * row, 0.0f);
  std::vector<StepGradBlock> blocks;
  for (int64_t j = 0; j < G; ++j) {  // one call per member of a GQA group: no two blocks share dK, dV rows
    blocks.clear();
    for (int64_t b = 0; b < g.B; ++b)
      for (int64_t h = j; h < g.H; h += G) {
        const int64_t qa = b * n * row + h * g.d, ka = b * g.N * kvr + h / G * g.d;
        const float* k = kv.data() + ka;
        StepGradBlock blk;
        blk.fwd = {c.q + qa, row, n, p * n, k, k + whole, kvr, g.N, 0, g.N, h, nullptr, row,
                   const_cast<float*>(lse) + (b * g.H + h) * n, 1};
        blk.dout = dout + qa, blk.delta = delta.data() + (b * g.H + h) * n;
        blk.dq = dq + qa, blk.dk = dkv.data() + ka, blk.dv = dkv.data() + whole + ka;
        blocks.push_back(blk);
      }
    attention_step_backward(c.step(), blocks);
  }

  // Reduce-scatter through one all-to-all: block r holds rank r's tokens of dK then dV.
  auto& send = c.buffers->buf[0];
  auto& recv = c.buffers->buf[1];
  send.resize(2 * shard * P), recv.resize(2 * shard * P);
  for (int r = 0; r < P; ++r)
    for (int t = 0; t < 2; ++t)
      for (int64_t b = 0; b < g.B; ++b)
        std::copy_n(dkv.data() + t * whole + (b * g.N + r * n) * kvr, n * kvr, send.data() + (2 * r + t) * shard + b * n * kvr);
  c.comm->all_to_all(send.data(), 2 * shard * sizeof(float), recv.data());
  std::fill_n(dk, shard, 0.0f);
  std::fill_n(dv, shard, 0.0f);
  for (int s = 0; s < P; ++s)
    for (int64_t x = 0; x < shard; ++x) dk[x] += recv[2 * s * shard + x], dv[x] += recv[(2 * s + 1) * shard + x];
}

// SPEC §3: every other rank's K and V, in one all-gather.
uint64_t dist_allgather_bytes(const Pattern&, const Shape& g, int P, int, int) {
  return uint64_t(2) * (P - 1) * (g.N / P) * g.kv_heads() * g.d * g.B * sizeof(float);
}

}  // namespace longattn

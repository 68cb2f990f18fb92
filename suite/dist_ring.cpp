// dist-ring (ring attention, SPEC §3): sequence-sharded Q, K, V. For P steps each rank attends its
// queries to the K/V shard in hand and merges (o, lse), while that shard is already on its way to
// the next rank (the exchange starts before the compute and is waited for after it). With a causal
// pattern, blocks wholly in the future are not computed, but still passed on.
// dist-ring-zigzag is the same ring over zig-zag shards: rank p holds chunks p and 2P-1-p of 2P,
// so under a causal mask every rank has the same work (plain shards give rank P-1 P times rank 0's).
// Communication per rank: 2 (P-1) B n H_kv d elements, either way (only the KV heads travel).
#include <algorithm>
#include <limits>
#include <memory>

#include "kernels/backward.h"
#include "kernels/step.h"
#include "suite/method.h"
#include "suite/ring.h"

namespace longattn {

void ring_forward(const MethodCall& c, Layout layout, const RingView& ring) {
  const Shape g = c.global;
  const int P = ring.size, p = ring.pos;
  const int64_t n = g.N / P, row = g.H * g.d, kv_row = g.kv_heads() * g.d, G = g.group();
  const int64_t shard = g.B * n * row, kv_shard = g.B * n * kv_row, rows = g.B * g.H * n;
  auto& held = c.buffers->buf[0];  // [K; V] of the rank whose tokens we hold now
  auto& next = c.buffers->buf[1];  // [K; V] arriving
  auto& lse_own = c.buffers->buf[2];
  held.resize(2 * kv_shard), next.resize(2 * kv_shard);
  float* lse = c.lse;
  if (!lse) lse_own.resize(rows), lse = lse_own.data();
  const Place at = c.place();  // host, or the GPU's compute stream
  copy_floats(at, held.data(), c.k, kv_shard);
  copy_floats(at, held.data() + kv_shard, c.v, kv_shard);
  fill_floats(at, c.o, shard, 0.0f);
  fill_floats(at, lse, rows, -std::numeric_limits<float>::infinity());
  const std::vector<TokenRange> mine = held_tokens(layout, g.N, p, P);
  AttentionStep step = c.step();

  for (int s = 0; s < P; ++s) {
    const int src = (p - s + P) % P;  // whose K/V we hold now
    std::unique_ptr<PendingExchange> ex;
    if (s + 1 < P)
      ex = c.comm->start_send_recv(held.data(), 2 * kv_shard * sizeof(float), ring.member(p + 1), next.data(),
                                   2 * kv_shard * sizeof(float), ring.member(p - 1));
    // One attention step per key range held (zig-zag holds two), so that no two blocks of a step
    // merge into the same rows: every query range, batch and head against that range.
    int64_t k_off = 0;
    for (const TokenRange& kr : held_tokens(layout, g.N, src, P)) {
      step.blocks.clear();
      int64_t q_off = 0;
      for (const TokenRange& qr : mine) {
        if (c.pattern.classify(qr.pos0, qr.pos0 + qr.rows, kr.pos0, kr.pos0 + kr.rows) != BlockKind::empty)
          for (int64_t b = 0; b < g.B; ++b)
            for (int64_t h = 0; h < g.H; ++h) {
              const float* k = held.data() + (b * n + k_off) * kv_row + h / G * g.d;  // GQA: the group's KV head
              step.blocks.push_back({c.q + (b * n + q_off) * row + h * g.d, row, qr.rows, qr.pos0, k, k + kv_shard,
                                     kv_row, kr.rows, kr.pos0, g.N, c.head0 + h, c.o + (b * n + q_off) * row + h * g.d, row,
                                     lse + (b * g.H + h) * n + q_off, 1});
            }
        q_off += qr.rows;
      }
      attention_step(step);
      k_off += kr.rows;
    }
    if (ex) {
      ex->wait();
      swap(held, next);
    }
  }
}

// Backward (SPEC §6): the ring again, with dK and dV travelling beside K and V. At step s a rank
// adds its queries' part of the held shard's dK, dV to the travelling sums (and of its own dQ), then
// passes [K; V; dK; dV] on; after the last step one more hop of [dK; dV] reaches the shard's owner.
// Communication per rank: (4 (P-1) + 2) B n H_kv d elements when P > 1.
void ring_backward(const MethodCall& c, Layout layout, const RingView& ring, const float* dout, float* dq, float* dk,
                   float* dv) {
  const Shape g = c.global;
  const int P = ring.size, p = ring.pos;
  const int64_t n = g.N / P, row = g.H * g.d, kv_row = g.kv_heads() * g.d, G = g.group();
  const int64_t shard = g.B * n * row, kv_shard = g.B * n * kv_row, rows = g.B * g.H * n;
  const float* lse = c.lse ? c.lse : c.buffers->buf[2].data();
  auto& held = c.buffers->buf[0];  // [K; V; dK; dV] of the shard in hand
  auto& next = c.buffers->buf[1];
  auto& delta = c.buffers->buf[3];  // D = rowsum(dO ∘ O), [B, H, n]
  held.resize(4 * kv_shard), next.resize(4 * kv_shard), delta.resize(rows);
  std::copy_n(c.k, kv_shard, held.data());
  std::copy_n(c.v, kv_shard, held.data() + kv_shard);
  std::fill_n(held.data() + 2 * kv_shard, 2 * kv_shard, 0.0f);
  std::fill_n(dq, shard, 0.0f);
  row_deltas(dout, c.o, g.B, n, g.H, g.d, delta.data(), c.threads);
  const std::vector<TokenRange> mine = held_tokens(layout, g.N, p, P);
  const AttentionStep step = c.step();
  std::vector<StepGradBlock> blocks;
  for (int s = 0; s < P; ++s) {
    const int src = (p - s + P) % P;
    // One call per key range, query range and member of a GQA group: no two blocks of a call share
    // dK, dV rows (zig-zag's two query ranges both reach a key range; a group's heads share a KV head).
    int64_t k_off = 0;
    for (const TokenRange& kr : held_tokens(layout, g.N, src, P)) {
      int64_t q_off = 0;
      for (const TokenRange& qr : mine) {
        if (c.pattern.classify(qr.pos0, qr.pos0 + qr.rows, kr.pos0, kr.pos0 + kr.rows) != BlockKind::empty)
          for (int64_t j = 0; j < G; ++j) {
            blocks.clear();
            for (int64_t b = 0; b < g.B; ++b)
              for (int64_t h = j; h < g.H; h += G) {
                const int64_t qa = (b * n + q_off) * row + h * g.d, ka = (b * n + k_off) * kv_row + h / G * g.d;
                StepGradBlock blk;
                blk.fwd = {c.q + qa, row, qr.rows, qr.pos0, held.data() + ka, held.data() + kv_shard + ka, kv_row,
                           kr.rows, kr.pos0, g.N, c.head0 + h, nullptr, row, const_cast<float*>(lse) + (b * g.H + h) * n + q_off, 1};
                blk.dout = dout + qa, blk.delta = delta.data() + (b * g.H + h) * n + q_off;
                blk.dq = dq + qa, blk.dk = held.data() + 2 * kv_shard + ka, blk.dv = held.data() + 3 * kv_shard + ka;
                blocks.push_back(blk);
              }
            attention_step_backward(step, blocks);
          }
        q_off += qr.rows;
      }
      k_off += kr.rows;
    }
    if (P == 1) break;
    // Pass the shard on; after the last step only its gradients travel, the one hop home.
    const bool last = s + 1 == P;
    const float* send = held.data() + (last ? 2 * kv_shard : 0);
    const size_t bytes = (last ? 2 : 4) * kv_shard * sizeof(float);
    c.comm->start_send_recv(send, bytes, ring.member(p + 1), next.data() + (last ? 2 * kv_shard : 0), bytes,
                            ring.member(p - 1))->wait();
    std::swap(held, next);
  }
  // Now held holds this rank's own shard's dK, dV.
  std::copy_n(held.data() + 2 * kv_shard, kv_shard, dk);
  std::copy_n(held.data() + 3 * kv_shard, kv_shard, dv);
}

void dist_ring(const MethodCall& c) { ring_forward(c, Layout::sharded, RingView::whole(*c.comm)); }
void dist_ring_zigzag(const MethodCall& c) { ring_forward(c, Layout::zigzag, RingView::whole(*c.comm)); }
void dist_ring_backward(const MethodCall& c, const float* dout, float* dq, float* dk, float* dv) {
  ring_backward(c, Layout::sharded, RingView::whole(*c.comm), dout, dq, dk, dv);
}
void dist_ring_zigzag_backward(const MethodCall& c, const float* dout, float* dq, float* dk, float* dv) {
  ring_backward(c, Layout::zigzag, RingView::whole(*c.comm), dout, dq, dk, dv);
}

// SPEC §3: every other rank's K and V, one shard a step (causal skips compute, not the exchange).
uint64_t dist_ring_bytes(const Pattern&, const Shape& g, int P, int, int) {
  return uint64_t(2) * (P - 1) * (g.N / P) * g.kv_heads() * g.d * g.B * sizeof(float);
}

}  // namespace longattn

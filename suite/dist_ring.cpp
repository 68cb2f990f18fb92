// dist-ring (ring attention, SPEC §3): sequence-sharded Q, K, V. For P steps each rank attends its
// queries to the K/V shard in hand and merges (o, lse), while that shard is already on its way to
// the next rank (the exchange starts before the compute and is waited for after it). With a causal
// pattern, blocks wholly in the future are not computed, but still passed on.
// dist-ring-zigzag is the same ring over zig-zag shards: rank p holds chunks p and 2P-1-p of 2P,
// so under a causal mask every rank has the same work (plain shards give rank P-1 P times rank 0's).
// Communication per rank: 2 (P-1) B n H d elements, either way.
#include <omp.h>

#include <algorithm>
#include <limits>
#include <memory>

#include "kernels/flash_cpu.h"
#include "kernels/merge.h"
#include "suite/method.h"

namespace longattn {
namespace {

void ring(const MethodCall& c, Layout layout) {
  const Shape g = c.global;
  const int P = c.comm->size(), p = c.comm->rank();
  const int64_t n = c.shard(), row = g.H * g.d, shard = g.B * n * row, rows = g.B * g.H * n;
  const int threads = c.threads > 0 ? c.threads : omp_get_max_threads();
  auto& held = c.ws->buf[0];  // [K; V] of the rank whose tokens we hold now
  auto& next = c.ws->buf[1];  // [K; V] arriving
  auto& o_step = c.ws->buf[2];
  auto& lse_step = c.ws->buf[3];
  auto& lse_own = c.ws->buf[4];
  held.resize(2 * shard), next.resize(2 * shard), o_step.resize(g.B * n * row), lse_step.resize(rows);
  float* lse = c.lse;
  if (!lse) lse_own.resize(rows), lse = lse_own.data();
  std::copy_n(c.k, shard, held.data());
  std::copy_n(c.v, shard, held.data() + shard);
  std::fill_n(c.o, shard, 0.0f);
  std::fill_n(lse, rows, -std::numeric_limits<float>::infinity());
  const std::vector<TokenRange> mine = held_tokens(layout, g.N, p, P);

  for (int step = 0; step < P; ++step) {
    const int src = (p - step + P) % P;  // whose K/V we hold now
    std::unique_ptr<PendingExchange> ex;
    if (step + 1 < P)
      ex = c.comm->start_send_recv(held.data(), 2 * shard * sizeof(float), (p + 1) % P, next.data(),
                                   2 * shard * sizeof(float), (p - 1 + P) % P);
    const std::vector<TokenRange> theirs = held_tokens(layout, g.N, src, P);
    // Every (query range, key range) pair of this step: attend, then merge into the accumulators.
    int64_t q_off = 0;
    for (const TokenRange& qr : mine) {
      int64_t k_off = 0;
      for (const TokenRange& kr : theirs) {
        if (c.pattern.classify(qr.pos0, qr.pos0 + qr.rows, kr.pos0, kr.pos0 + kr.rows) != BlockKind::empty) {
          for (int64_t b = 0; b < g.B; ++b) {
            // One batch of one range: [rows, H, d] rows are contiguous; lse_step is [H, rows].
            AttentionArgs a = c.local_args(qr.rows);
            a.shape.B = 1;
            a.q = c.q + (b * n + q_off) * row;
            a.o = o_step.data();
            a.lse = lse_step.data();
            const float* k = held.data() + (b * n + k_off) * row;
            flash_attention_at(a, k, k + shard, kr.rows, qr.pos0, kr.pos0, g.N);
#pragma omp parallel for num_threads(threads) schedule(static)
            for (int64_t t = 0; t < g.H * qr.rows; ++t) {
              const int64_t h = t / qr.rows, i = t % qr.rows;
              merge_row(c.o + (b * n + q_off + i) * row + h * g.d, lse[(b * g.H + h) * n + q_off + i],
                        o_step.data() + i * row + h * g.d, lse_step[h * qr.rows + i], g.d);
            }
          }
        }
        k_off += kr.rows;
      }
      q_off += qr.rows;
    }
    if (ex) {
      ex->wait();
      std::swap(held, next);
    }
  }
}

}  // namespace

void dist_ring(const MethodCall& c) { ring(c, Layout::sharded); }
void dist_ring_zigzag(const MethodCall& c) { ring(c, Layout::zigzag); }

}  // namespace longattn

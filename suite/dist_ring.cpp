// dist-ring (ring attention, SPEC §3): sequence-sharded Q, K, V. For P steps each rank attends its
// queries to the K/V shard in hand and merges (o, lse), while that shard is already on its way to
// the next rank (the exchange starts before the compute and is waited for after it). With a causal
// pattern, shards wholly in the future are not computed, but still passed on.
// Communication per rank: 2 (P-1) B n H d elements.
#include <omp.h>

#include <algorithm>
#include <limits>
#include <memory>

#include "kernels/flash_cpu.h"
#include "kernels/merge.h"
#include "suite/method.h"

namespace longattn {

void dist_ring(const MethodCall& c) {
  const Shape g = c.global;
  const int P = c.comm->size(), p = c.comm->rank();
  const int64_t n = c.shard(), shard = g.B * n * g.H * g.d, rows = g.B * g.H * n;
  const int threads = c.threads > 0 ? c.threads : omp_get_max_threads();
  auto& held = c.ws->buf[0];  // [K; V] shard being attended to
  auto& next = c.ws->buf[1];  // [K; V] shard arriving
  auto& o_step = c.ws->buf[2];
  auto& lse_step = c.ws->buf[3];
  auto& lse_own = c.ws->buf[4];
  held.resize(2 * shard), next.resize(2 * shard), o_step.resize(shard), lse_step.resize(rows);
  float* lse = c.lse;
  if (!lse) lse_own.resize(rows), lse = lse_own.data();
  std::copy_n(c.k, shard, held.data());
  std::copy_n(c.v, shard, held.data() + shard);
  std::fill_n(c.o, shard, 0.0f);
  std::fill_n(lse, rows, -std::numeric_limits<float>::infinity());

  AttentionArgs a = c.local_args(n);
  a.o = o_step.data();
  a.lse = lse_step.data();
  for (int step = 0; step < P; ++step) {
    const int src = (p - step + P) % P;  // whose K/V we hold now
    std::unique_ptr<PendingExchange> ex;
    if (step + 1 < P)
      ex = c.comm->start_send_recv(held.data(), 2 * shard * sizeof(float), (p + 1) % P, next.data(),
                                   2 * shard * sizeof(float), (p - 1 + P) % P);
    const bool visible = c.pattern.classify(p * n, (p + 1) * n, src * n, (src + 1) * n) != BlockKind::empty;
    if (visible) {
      flash_attention_at(a, held.data(), held.data() + shard, n, p * n, src * n, g.N);
#pragma omp parallel for num_threads(threads) schedule(static)
      for (int64_t r = 0; r < rows; ++r) {  // r = (b H + h) n + i
        const int64_t b = r / (g.H * n), h = (r / n) % g.H, i = r % n;
        const int64_t at = ((b * n + i) * g.H + h) * g.d;
        merge_row(c.o + at, lse[r], o_step.data() + at, lse_step[r], g.d);
      }
    }
    if (ex) {
      ex->wait();
      std::swap(held, next);
    }
  }
}

}  // namespace longattn

// dist-ulysses (DeepSpeed-Ulysses, SPEC §3): sequence-sharded Q, K, V; one all-to-all turns
// [n, H, d] token shards into [N, H/P, d] head shards, each rank runs the fastest kernel for the
// pattern on its heads over the whole sequence, and a second all-to-all returns O and LSE to token
// shards. With GQA each rank receives only the KV heads its query heads read (split_heads).
// The exchange itself (ulysses_forward/backward) also serves dist-usp's Ulysses groups.
#include <omp.h>

#include <algorithm>

#include "kernels/registry.h"
#include "suite/ulysses.h"

namespace longattn {
namespace {

// Where each member's rows land in the head shard's token order: per member, per held range, a
// run {pos0: offset in `target` order, rows}.
std::vector<std::vector<TokenRange>> member_runs(Layout layout, int64_t N, int world, const UlyssesGroup& grp,
                                                 const std::vector<TokenRange>& target) {
  std::vector<std::vector<TokenRange>> runs(grp.size);
  for (int r = 0; r < grp.size; ++r)
    for (const TokenRange& t : held_tokens(layout, N, grp.first + r, world)) {
      int64_t off = 0;
      for (const TokenRange& x : target) {
        if (t.pos0 >= x.pos0 && t.pos0 + t.rows <= x.pos0 + x.rows) {
          runs[r].push_back({off + t.pos0 - x.pos0, t.rows});
          break;
        }
        off += x.rows;
      }
    }
  return runs;
}

// The group's exchange plan for this rank: m rows per member, T = size m in the head shard.
struct Plan {
  UlyssesGroup grp;
  HeadSplit mine;
  int64_t m = 0, T = 0;
  std::vector<std::vector<TokenRange>> runs;
  std::vector<size_t> counts, offsets;  // all_to_all_v's, in bytes, per world rank
  // Blocks of `block` floats to each member, zero bytes to ranks outside the group.
  void size_blocks(int world, int64_t block) {
    counts.assign(world, 0), offsets.assign(world, 0);
    for (int r = 0; r < grp.size; ++r)
      counts[grp.first + r] = block * sizeof(float), offsets[grp.first + r] = r * block * sizeof(float);
  }
};

Plan plan(const MethodCall& c, Layout layout, const UlyssesGroup& grp, const std::vector<TokenRange>& target) {
  Plan x;
  x.grp = grp;
  x.mine = split_heads(c.global, grp.size, grp.pos);
  for (const TokenRange& t : held_tokens(layout, c.global.N, c.comm->rank(), c.comm->size())) x.m += t.rows;
  x.T = x.m * grp.size;
  x.runs = member_runs(layout, c.global.N, c.comm->size(), grp, target);
  return x;
}

// The head shard's call: its tensors in buffers 8 (Q, K, V), 9 (O), 10 (LSE).
MethodCall head_shard_call(const MethodCall& c, const Plan& x) {
  const Shape g = c.global;
  const int64_t hp = x.mine.hp, kvp = x.mine.kvp, q_size = g.B * x.T * hp * g.d, kv_size = g.B * x.T * kvp * g.d;
  auto& qkv = c.buffers->buf[8];
  auto& o = c.buffers->buf[9];
  auto& lse = c.buffers->buf[10];
  qkv.resize(q_size + 2 * kv_size), o.resize(q_size), lse.resize(g.B * hp * x.T);
  MethodCall ic = c;
  ic.global = {g.B, g.N, hp, g.d, kvp};
  ic.head0 = c.head0 + x.mine.h0;
  ic.q = qkv.data(), ic.k = qkv.data() + q_size, ic.v = qkv.data() + q_size + kv_size;
  ic.o = o.data(), ic.lse = lse.data();
  return ic;
}

// Token shard -> head shard, for tensors of `heads` heads per token of which member r takes
// `count` from first(r): send[r] = [t][B][m][count][d], unpacked into each out[t] [B][T][count][d].
template <class First>
void to_heads(const MethodCall& c, Plan& x, std::initializer_list<const float*> in, int64_t heads, int64_t count,
              First first, std::initializer_list<float*> out) {
  const Shape g = c.global;
  const int64_t nt = static_cast<int64_t>(in.size()), part = g.B * x.m * count * g.d, block = nt * part;
  const int64_t w = count * g.d;  // one token's share of heads
  const Place at = c.place();
  auto& send = c.buffers->buf[6];
  auto& recv = c.buffers->buf[7];
  send.resize(block * x.grp.size), recv.resize(block * x.grp.size);
  const float* const* src = in.begin();
  float* const* dst = out.begin();
  for (int r = 0; r < x.grp.size; ++r)
    for (int64_t t = 0; t < nt; ++t)
      copy_rows(at, send.data() + r * block + t * part, w, src[t] + first(r) * g.d, heads * g.d, w, g.B * x.m);
  x.size_blocks(c.comm->size(), block);
  c.comm->all_to_all_v(send.data(), x.counts, x.offsets, recv.data(), x.counts, x.offsets);
  for (int r = 0; r < x.grp.size; ++r)
    for (int64_t t = 0; t < nt; ++t) {
      int64_t i = 0;
      for (const TokenRange& run : x.runs[r]) {  // each batch's rows of the run
        copy_rows(at, dst[t] + run.pos0 * w, x.T * w, recv.data() + r * block + t * part + i * w, x.m * w,
                  run.rows * w, g.B);
        i += run.rows;
      }
    }
}

}  // namespace

void ulysses_forward(const MethodCall& c, Layout layout, const UlyssesGroup& grp, const std::vector<TokenRange>& target,
                     const HeadShardRun& attend) {
  const Shape g = c.global;
  Plan x = plan(c, layout, grp, target);
  const MethodCall ic = head_shard_call(c, x);
  const int64_t hp = x.mine.hp, d = g.d;
  auto q_first = [&](int r) { return split_heads(g, grp.size, r).h0; };
  auto kv_first = [&](int r) { return split_heads(g, grp.size, r).kv0; };
  to_heads(c, x, {c.q}, g.H, hp, q_first, {const_cast<float*>(ic.q)});
  to_heads(c, x, {c.k, c.v}, g.kv_heads(), x.mine.kvp, kv_first, {const_cast<float*>(ic.k), const_cast<float*>(ic.v)});
  attend(ic);

  // Back, per member r: its rows of O [b][i][hh], then LSE [b][hh][i]; received from r: this
  // rank's rows of r's heads.
  const int64_t block = g.B * x.m * hp * (d + 1), olen = g.B * x.m * hp * d, w = hp * d;
  const Place at = c.place();
  auto& send = c.buffers->buf[6];
  auto& recv = c.buffers->buf[7];
  send.resize(block * grp.size), recv.resize(block * grp.size);
  for (int r = 0; r < grp.size; ++r) {
    int64_t i = 0;
    for (const TokenRange& run : x.runs[r]) {  // O rows [b][i][hh], then LSE [b][hh][i]
      copy_rows(at, send.data() + r * block + i * w, x.m * w, ic.o + run.pos0 * w, x.T * w, run.rows * w, g.B);
      copy_rows(at, send.data() + r * block + olen + i, x.m, ic.lse + run.pos0, x.T, run.rows, g.B * hp);
      i += run.rows;
    }
  }
  x.size_blocks(c.comm->size(), block);
  c.comm->all_to_all_v(send.data(), x.counts, x.offsets, recv.data(), x.counts, x.offsets);
  for (int r = 0; r < grp.size; ++r) {
    copy_rows(at, c.o + q_first(r) * d, g.H * d, recv.data() + r * block, w, w, g.B * x.m);
    if (c.lse)  // [B, H, m]: heads q_first(r) .. of each batch
      copy_rows(at, c.lse + q_first(r) * x.m, g.H * x.m, recv.data() + r * block + olen, hp * x.m, hp * x.m, g.B);
  }
}

void ulysses_backward(const MethodCall& c, Layout layout, const UlyssesGroup& grp, const std::vector<TokenRange>& target,
                      const HeadShardBackward& backward, const float* dout, float* dq, float* dk, float* dv) {
  const Shape g = c.global;
  Plan x = plan(c, layout, grp, target);
  const MethodCall ic = head_shard_call(c, x);
  const int64_t hp = x.mine.hp, kvp = x.mine.kvp, hk = g.kv_heads(), d = g.d;
  const int64_t q_size = g.B * x.T * hp * d, kv_size = g.B * x.T * kvp * d;
  auto& grads = c.buffers->buf[11];  // dO, dQ, dK, dV of the head shard
  grads.resize(2 * q_size + 2 * kv_size);
  float *hdo = grads.data(), *hdq = hdo + q_size, *hdk = hdq + q_size, *hdv = hdk + kv_size;
  auto q_first = [&](int r) { return split_heads(g, grp.size, r).h0; };
  to_heads(c, x, {dout}, g.H, hp, q_first, {hdo});
  backward(ic, hdo, hdq, hdk, hdv);

  // Back, per member r: its rows of dQ [b][i][hh], dK, dV [b][i][kvp]; from r: this rank's rows of
  // r's heads, added where r's KV head is replicated.
  const int64_t qpart = g.B * x.m * hp * d, kvpart = g.B * x.m * kvp * d, block = qpart + 2 * kvpart;
  const int threads = c.threads > 0 ? c.threads : omp_get_max_threads();
  auto& send = c.buffers->buf[6];
  auto& recv = c.buffers->buf[7];
  send.resize(block * grp.size), recv.resize(block * grp.size);
#pragma omp parallel for collapse(2) num_threads(threads)
  for (int r = 0; r < grp.size; ++r)
    for (int64_t b = 0; b < g.B; ++b) {
      int64_t i = 0;
      for (const TokenRange& run : x.runs[r]) {
        float* out = send.data() + r * block;
        std::copy_n(hdq + (b * x.T + run.pos0) * hp * d, run.rows * hp * d, out + (b * x.m + i) * hp * d);
        std::copy_n(hdk + (b * x.T + run.pos0) * kvp * d, run.rows * kvp * d, out + qpart + (b * x.m + i) * kvp * d);
        std::copy_n(hdv + (b * x.T + run.pos0) * kvp * d, run.rows * kvp * d, out + qpart + kvpart + (b * x.m + i) * kvp * d);
        i += run.rows;
      }
    }
  x.size_blocks(c.comm->size(), block);
  c.comm->all_to_all_v(send.data(), x.counts, x.offsets, recv.data(), x.counts, x.offsets);
  const int64_t rows = g.B * x.m;
  if (x.mine.replicated) std::fill_n(dk, rows * hk * d, 0.0f), std::fill_n(dv, rows * hk * d, 0.0f);
  for (int r = 0; r < grp.size; ++r) {
    const HeadSplit y = split_heads(g, grp.size, r);
    const float* in = recv.data() + r * block;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t bi = 0; bi < rows; ++bi) {
      std::copy_n(in + bi * hp * d, hp * d, dq + (bi * g.H + y.h0) * d);
      float* const out[2] = {dk, dv};
      for (int t = 0; t < 2; ++t) {
        const float* src = in + qpart + t * kvpart + bi * kvp * d;
        float* dst = out[t] + (bi * hk + y.kv0) * d;
        if (y.replicated)
          for (int64_t e = 0; e < kvp * d; ++e) dst[e] += src[e];
        else
          std::copy_n(src, kvp * d, dst);
      }
    }
  }
}

uint64_t ulysses_bytes(const Shape& g, int u, int64_t m) {
  const HeadSplit x = split_heads(g, u, 0);
  // From each other member: Q (hp heads), K and V (kvp heads) of its m rows in; O and LSE out.
  return uint64_t(u - 1) * g.B * m * (x.hp * (2 * g.d + 1) + 2 * x.kvp * g.d) * sizeof(float);
}

namespace {
std::vector<TokenRange> whole_sequence(const MethodCall& c) { return {{0, c.global.N}}; }
}  // namespace

void dist_ulysses(const MethodCall& c) {
  const UlyssesGroup all{c.comm->size(), c.comm->rank(), 0};
  ulysses_forward(c, Layout::sharded, all, whole_sequence(c), [](const MethodCall& ic) {
    const AttentionArgs a = ic.local_args(ic.global.N);
    if (ic.device() == Device::cpu)
      auto_kernel(a.pattern, a.shape, a.dtype).run(a);  // the CPU's fastest kernel
    else
      attention_by_steps(a, ic.step());  // GPU buffers: the tile kernel, through attention steps
  });
}

// Backward (SPEC §6), the all-to-alls reversed: dO goes to head shards as Q went, each rank runs
// its kernel's backward on its heads over the whole sequence (Q, K, V, O and LSE of the forward,
// still in the buffers), and dQ, dK, dV come back to token shards as O did.
// Communication per rank: B n (2 H/P + 2 kvp) d (P-1) elements.
void dist_ulysses_backward(const MethodCall& c, const float* dout, float* dq, float* dk, float* dv) {
  const UlyssesGroup all{c.comm->size(), c.comm->rank(), 0};
  ulysses_backward(
      c, Layout::sharded, all, whole_sequence(c),
      [](const MethodCall& ic, const float* hdo, float* hdq, float* hdk, float* hdv) {
        const AttentionArgs a = ic.local_args(ic.global.N);
        auto_kernel(a.pattern, a.shape, a.dtype, ic.device()).backward({a, hdo, hdq, hdk, hdv});
      },
      dout, dq, dk, dv);
}

// SPEC §3: Q, K, V in and O, LSE out, from each of the P-1 other ranks.
uint64_t dist_ulysses_bytes(const Pattern&, const Shape& g, int P, int, int) { return ulysses_bytes(g, P, g.N / P); }

}  // namespace longattn

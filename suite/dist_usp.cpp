// dist-usp (unified sequence parallelism: yunchang's USP, TransformerEngine's a2a+p2p; SPEC §3).
// The P ranks form u x R: Ulysses groups of u consecutive ranks, a ring of R = P/u across the
// groups. Q, K, V are zig-zag sharded over all P ranks (rank p: chunks p and 2P-1-p of 2P). The
// all-to-all inside a group gives each member H/u heads of the group's tokens, and those tokens are
// exactly the group's zig-zag shard of 2R chunks, so ring attention over the R groups (members of
// the same index) balances causal work as dist-ring-zigzag does; O and LSE return by all-to-all.
// u = P is dist-ulysses (on zig-zag shards), u = 1 is dist-ring-zigzag.
// Communication per rank: the Ulysses exchange in the group, (u-1) B m (H/u (2d+1) + 2 kvp d) with
// m = N/P rows per rank, plus the ring's 2 B (N/R) kvp d, kvp = the KV heads a member holds.

#include "suite/ring.h"
#include "suite/ulysses.h"

namespace longattn {
namespace {

struct Grid {
  int u, R;
  UlyssesGroup group;
  RingView ring;
};

Grid grid(const MethodCall& c) {
  const int P = c.comm->size(), p = c.comm->rank(), u = usp_degree(c.global, P, c.ulysses);
  Grid x{u, P / u, {u, p % u, p - p % u}, {}};
  x.ring = {x.R, p / u, p % u, u};  // the members of the other groups with this rank's index
  return x;
}

}  // namespace

std::string dist_usp_unsupported(const Pattern& p, const Shape& s, int world, int ulysses) {
  const int u = usp_degree(s, world, ulysses);
  // Not a "shape:" reason: a suite's degrees serve several rank counts, and a run skips those that
  // do not divide this one; `attend --ulysses` refuses it (exit 2).
  if (u < 1 || world % u != 0)
    return "ulysses = " + std::to_string(u) + " does not divide the world size " + std::to_string(world) +
           "; choose a Ulysses degree that divides the rank count (the ring degree is P / ulysses)";
  if (auto r = heads_split_unsupported(s, u, "the Ulysses degree"); !r.empty()) return r;
  return find_method("dist-ring-zigzag")->unsupported(p, s, world, 0);  // its tokens are zig-zag over all P ranks
}

void dist_usp(const MethodCall& c) {
  const Grid x = grid(c);
  if (x.u == 1) return ring_forward(c, Layout::zigzag, x.ring);  // no Ulysses exchange: the ring alone
  const std::vector<TokenRange> target = held_tokens(Layout::zigzag, c.global.N, x.ring.pos, x.R);
  ulysses_forward(c, Layout::zigzag, x.group, target,
                  [&](const MethodCall& ic) { ring_forward(ic, Layout::zigzag, x.ring); });
}

// Backward (SPEC §6): dO to head shards, the ring's backward across the groups, dQ, dK, dV back.
void dist_usp_backward(const MethodCall& c, const float* dout, float* dq, float* dk, float* dv) {
  const Grid x = grid(c);
  if (x.u == 1) return ring_backward(c, Layout::zigzag, x.ring, dout, dq, dk, dv);
  const std::vector<TokenRange> target = held_tokens(Layout::zigzag, c.global.N, x.ring.pos, x.R);
  ulysses_backward(
      c, Layout::zigzag, x.group, target,
      [&](const MethodCall& ic, const float* hdo, float* hdq, float* hdk, float* hdv) {
        ring_backward(ic, Layout::zigzag, x.ring, hdo, hdq, hdk, hdv);
      },
      dout, dq, dk, dv);
}

uint64_t dist_usp_bytes(const Pattern&, const Shape& g, int P, int, int ulysses) {
  const int u = usp_degree(g, P, ulysses), R = P / u;
  const int64_t kvp = split_heads(g, u, 0).kvp;
  return ulysses_bytes(g, u, g.N / P) + uint64_t(2) * (R - 1) * (g.N / R) * kvp * g.d * g.B * sizeof(float);
}

}  // namespace longattn

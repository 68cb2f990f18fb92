#pragma once
// The Ulysses exchange, shared by dist-ulysses (one group: every rank) and dist-usp (groups of u
// consecutive ranks, ring across them): an all-to-all within the group turns its members' token
// shards into head shards (each member: its heads, every token of the group), attention runs on
// the head shard, and a second all-to-all returns O and LSE to the token shards (suite/dist_ulysses.cpp).
#include <functional>
#include <vector>

#include "suite/method.h"

namespace longattn {

// World ranks first .. first + size - 1; this rank is member pos.
struct UlyssesGroup {
  int size = 1, pos = 0, first = 0;
};

// c: the rank's token shard (held_tokens(layout, ...) of the world). `target`: the order of the
// group's tokens in the head shard. `attend` gets the head shard's call: global {B, N, H/u, d,
// H_kv = kvp}, head0, q/k/v/o/lse over target's tokens ([B, T, ., d], LSE [B, H/u, T]), buffers 0-5
// free for it; the exchange keeps its own in buffers 6-11.
using HeadShardRun = std::function<void(const MethodCall&)>;
void ulysses_forward(const MethodCall& c, Layout layout, const UlyssesGroup& grp, const std::vector<TokenRange>& target,
                     const HeadShardRun& attend);
// The backward: dO to head shards, `backward` (the head shard's call as the forward left it, and its
// dO, dQ, dK, dV), dQ, dK, dV back, a replicated KV head's dK, dV summed over its members.
using HeadShardBackward = std::function<void(const MethodCall&, const float*, float*, float*, float*)>;
void ulysses_backward(const MethodCall& c, Layout layout, const UlyssesGroup& grp, const std::vector<TokenRange>& target,
                      const HeadShardBackward& backward, const float* dout, float* dq, float* dk, float* dv);
// SPEC §3: the bytes a member receives in one forward exchange (both all-to-alls).
uint64_t ulysses_bytes(const Shape& g, int group_size, int64_t rows_per_member);

}  // namespace longattn

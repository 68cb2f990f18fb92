// The table of methods `longattn run` can time. Single-device methods run a kernel on rank 0;
// dist-* methods spread one problem over every rank.
#include "suite/method.h"

#include "kernels/registry.h"

namespace longattn {

AttentionArgs MethodCall::local_args(int64_t rows) const {
  AttentionArgs a;
  a.shape = global;
  a.shape.N = rows;
  a.q = q;
  a.k = k;
  a.v = v;
  a.o = o;
  a.lse = lse;
  a.pattern = pattern;
  a.scale = scale;
  a.threads = threads;
  a.dtype = dtype;
  a.head0 = head0;
  return a;
}

AttentionStep MethodCall::step() const {
  AttentionStep s;
  s.device = device();
  s.dtype = dtype;
  s.d = global.d;
  s.scale = scale;
  s.mask = pattern;
  s.threads = threads;
  s.stream = comm->compute_stream();  // nccl: the stream its exchanges are ordered with
  return s;
}

std::vector<TokenRange> held_tokens(Layout layout, int64_t N, int rank, int world) {
  switch (layout) {
    case Layout::single: return {{0, rank == 0 ? N : 0}};
    case Layout::replicated: return {{0, N}};
    case Layout::sharded: return {{rank * (N / world), N / world}};
    case Layout::zigzag: {
      const int64_t c = N / (2 * world);
      return {{rank * c, c}, {(2 * world - 1 - rank) * c, c}};
    }
  }
  return {};
}

HeadSplit split_heads(const Shape& s, int world, int rank) {
  HeadSplit x;
  x.hp = s.H / world, x.h0 = rank * x.hp;
  const int64_t hk = s.kv_heads();
  if (hk % world == 0) {
    x.kvp = hk / world, x.kv0 = rank * x.kvp;
  } else {  // world % hk == 0: the ranks of one KV head's group share it
    x.kvp = 1, x.kv0 = x.h0 / s.group(), x.replicated = true;
  }
  return x;
}

std::string heads_split_unsupported(const Shape& s, int world, const char* degree) {
  if (auto r = kv_heads_unsupported(s); !r.empty()) return r;
  const std::string P = std::to_string(world);
  if (s.H % world != 0)
    return "shape: H = " + std::to_string(s.H) + " is not divisible by " + degree + " " + P +
           "; choose H a multiple of it or another degree";
  if (s.kv_heads() % world != 0 && world % s.kv_heads() != 0)
    return "shape: H_kv = " + std::to_string(s.kv_heads()) + " and " + degree + " " + P +
           " do not divide one another, so the KV heads cannot be split or replicated evenly; choose H_kv a "
           "multiple or a divisor of it";
  return {};
}

namespace {

template <const char* Kernel>
void run_kernel(const MethodCall& c) {
  if (c.comm->rank() == 0) find_kernel(Kernel)->run(c.local_args(c.global.N));
}
template <const char* Kernel>
void run_kernel_backward(const MethodCall& c, const float* dout, float* dq, float* dk, float* dv) {
  if (c.comm->rank() == 0) find_kernel(Kernel)->backward({c.local_args(c.global.N), dout, dq, dk, dv});
}
template <const char* Kernel>
std::string kernel_unsupported(const Pattern& p, const Shape& s, int, int) {
  return find_kernel(Kernel)->unsupported(p, s, DType::fp32);  // the case's dtype is checked where it is read
}

std::string divides(const char* what, int64_t value, int world) {
  if (value % world == 0) return {};
  return std::string("shape: ") + what + " = " + std::to_string(value) + " is not divisible by the world size " +
         std::to_string(world) + "; choose " + what + " a multiple of the rank count or run with another -np";
}

std::string heads_unsupported(const Pattern&, const Shape& s, int world, int) { return heads_split_unsupported(s, world); }
std::string ulysses_unsupported(const Pattern&, const Shape& s, int world, int) {
  if (auto r = divides("N", s.N, world); !r.empty()) return r;
  return heads_split_unsupported(s, world);
}
std::string ring_unsupported(const Pattern& p, const Shape& s, int world, int) {
  if (auto r = divides("N", s.N, world); !r.empty()) return r;
  if (auto r = kv_heads_unsupported(s); !r.empty()) return r;
  if (p.kind == PatternKind::dilated) return "dist-ring passes whole K/V shards; dilated patterns run on dist-dilated";
  return find_kernel("flash")->unsupported(p, s, DType::fp32);
}
std::string zigzag_unsupported(const Pattern& p, const Shape& s, int world, int) {
  if (s.N % (2 * world) != 0)
    return "shape: N = " + std::to_string(s.N) + " is not divisible by 2 x the world size " + std::to_string(2 * world) +
           " (zig-zag cuts the sequence in 2P chunks); choose N a multiple of " + std::to_string(2 * world);
  return ring_unsupported(p, s, world, 0);
}
std::string allgather_unsupported(const Pattern& p, const Shape& s, int world, int) {
  if (auto r = divides("N", s.N, world); !r.empty()) return r;
  if (auto r = kv_heads_unsupported(s); !r.empty()) return r;
  if (p.kind == PatternKind::dilated) return "dist-allgather runs single-level patterns; dilated ones run on dist-dilated";
  return find_kernel("flash")->unsupported(p, s, DType::fp32);
}
std::string dilated_unsupported_dist(const Pattern& p, const Shape& s, int world, int) {
  if (auto r = divides("N", s.N, world); !r.empty()) return r;
  if (auto r = kv_heads_unsupported(s); !r.empty()) return r;
  return find_kernel("dilated")->unsupported(p, s, DType::fp32);
}

std::string comm_unsupported(const Pattern&, const Shape& s, int world, int) {
  if (auto r = divides("N", s.N, world); !r.empty()) return r;
  if ((s.numel() / world) % world != 0) return "the shard does not cut into P equal all-to-all blocks";
  return {};
}

}  // namespace

// The methods of the table, one file each (suite/NAME.cpp): distributed algorithms (SPEC §3) and
// communication microbenchmarks (comm_bench.cpp).
void dist_heads(const MethodCall& c);
void dist_heads_backward(const MethodCall& c, const float* dout, float* dq, float* dk, float* dv);
void dist_ulysses(const MethodCall& c);
void dist_ulysses_backward(const MethodCall& c, const float* dout, float* dq, float* dk, float* dv);
void dist_ring(const MethodCall& c);
void dist_ring_zigzag(const MethodCall& c);
void dist_ring_backward(const MethodCall& c, const float* dout, float* dq, float* dk, float* dv);
void dist_ring_zigzag_backward(const MethodCall& c, const float* dout, float* dq, float* dk, float* dv);
void dist_allgather(const MethodCall& c);
void dist_allgather_backward(const MethodCall& c, const float* dout, float* dq, float* dk, float* dv);
void dist_dilated(const MethodCall& c);
void dist_dilated_backward(const MethodCall& c, const float* dout, float* dq, float* dk, float* dv);
uint64_t dist_heads_bytes(const Pattern&, const Shape&, int world, int rank, int ulysses);
uint64_t dist_ulysses_bytes(const Pattern&, const Shape&, int world, int rank, int ulysses);
uint64_t dist_ring_bytes(const Pattern&, const Shape&, int world, int rank, int ulysses);
uint64_t dist_allgather_bytes(const Pattern&, const Shape&, int world, int rank, int ulysses);
uint64_t dist_dilated_bytes(const Pattern&, const Shape&, int world, int rank, int ulysses);
void dist_usp(const MethodCall& c);
void dist_usp_backward(const MethodCall& c, const float* dout, float* dq, float* dk, float* dv);
uint64_t dist_usp_bytes(const Pattern&, const Shape&, int world, int rank, int ulysses);
std::string dist_usp_unsupported(const Pattern&, const Shape&, int world, int ulysses);
void comm_all_gather(const MethodCall& c);
void comm_all_to_all(const MethodCall& c);
void comm_send_recv(const MethodCall& c);

namespace {

constexpr char kVanilla[] = "vanilla", kFlash[] = "flash", kDilated[] = "dilated", kReference[] = "reference";

// Memory: Q, K, V and O plus the kernel's working set (vanilla its N x N scores); distributed
// methods their shard, the buffers they exchange, and (dist-heads) the whole inputs.
const Method kMethods[] = {
    {"vanilla", "unfused multi-head attention on one rank: sgemm, mask, softmax, sgemm", Layout::single, true,
     false, true, {4, 0, 4}, CommOp::count_, kernel_unsupported<kVanilla>, run_kernel<kVanilla>,
     run_kernel_backward<kVanilla>},
    {"flash", "tiled online-softmax attention on one rank", Layout::single, true, false, false, {6, 0, 0}, CommOp::count_,
     kernel_unsupported<kFlash>, run_kernel<kFlash>, run_kernel_backward<kFlash>},
    {"dilated", "LongNet dilated attention on one rank", Layout::single, true, false, false, {4, 0, 0}, CommOp::count_,
     kernel_unsupported<kDilated>, run_kernel<kDilated>,
     run_kernel_backward<kDilated>},
    {"reference", "the double-precision oracle on one rank (slow)", Layout::single, true, false, false, {4, 0, 0}, CommOp::count_,
     kernel_unsupported<kReference>, run_kernel<kReference>,
     run_kernel_backward<kReference>},
    {"dist-heads", "distributed multi-head attention: H/P heads per rank on full Q, K, V; all-gather O",
     Layout::replicated, true, false, false, {5, 6, 0}, CommOp::all_gather, heads_unsupported, dist_heads,
     dist_heads_backward, dist_heads_bytes},
    {"dist-ulysses", "all-to-all to head shards, any kernel on the full sequence, all-to-all back", Layout::sharded,
     true, false, false, {0, 16, 0}, CommOp::all_to_all, ulysses_unsupported, dist_ulysses, dist_ulysses_backward,
     dist_ulysses_bytes},
    {"dist-ring", "ring attention: K/V shards circulate, (o, lse) merged, next shard in flight", Layout::sharded, true,
     false, false, {0, 10, 0}, CommOp::send_recv, ring_unsupported, dist_ring, dist_ring_backward, dist_ring_bytes},
    {"dist-ring-zigzag", "ring attention over zig-zag shards (chunks p and 2P-1-p): causal work balanced",
     Layout::zigzag, true, false, false, {0, 10, 0}, CommOp::send_recv, zigzag_unsupported, dist_ring_zigzag,
     dist_ring_zigzag_backward, dist_ring_bytes},
    {"dist-usp", "Ulysses x ring (USP): all-to-all in groups of u ranks, zig-zag ring across the P/u groups",
     Layout::zigzag, true, false, false, {0, 16, 0}, CommOp::send_recv, dist_usp_unsupported, dist_usp,
     dist_usp_backward, dist_usp_bytes},
    {"dist-allgather", "all-gather K/V context parallelism: every rank's queries against the gathered keys",
     Layout::sharded, true, false, false, {4, 6, 0}, CommOp::all_gather, allgather_unsupported, dist_allgather,
     dist_allgather_backward, dist_allgather_bytes},
    {"dist-dilated", "LongNet distributed: local segments locally, multi-rank segments all-gather kept K/V",
     Layout::sharded, true, false, false, {0, 8, 0}, CommOp::all_to_all, dilated_unsupported_dist, dist_dilated,
     dist_dilated_backward, dist_dilated_bytes},
    {"comm-all-gather", "microbenchmark: all-gather of each rank's shard (no attention)", Layout::sharded, false,
     true, false, {0, 8, 0}, CommOp::all_gather, comm_unsupported, comm_all_gather},
    {"comm-all-to-all", "microbenchmark: all-to-all of each rank's shard in P blocks", Layout::sharded, false, true,
     false, {0, 8, 0}, CommOp::all_to_all, comm_unsupported, comm_all_to_all},
    {"comm-send-recv", "microbenchmark: ring send/receive of each rank's shard", Layout::sharded, false, true, false,
     {0, 8, 0}, CommOp::send_recv, comm_unsupported, comm_send_recv},
};

}  // namespace

std::span<const Method> methods() { return kMethods; }

const char* layout_name(Layout l) {
  switch (l) {
    case Layout::single: return "single";
    case Layout::replicated: return "replicated";
    case Layout::sharded: return "sharded";
    case Layout::zigzag: return "zigzag";
  }
  return "?";
}

const Method* find_method(const std::string& name) {
  for (const Method& m : kMethods)
    if (name == m.name) return &m;
  return nullptr;
}

}  // namespace longattn

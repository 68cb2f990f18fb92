#pragma once
// A method under test: a single-device kernel, or a distributed algorithm composed of kernels and
// a communicator. Like the kernel table, one entry answers both "does it run this case?" and "run".
#include <cstdint>
#include <numeric>
#include <span>
#include <string>
#include <vector>

#include "comm/communicator.h"
#include "kernels/attention.h"
#include "kernels/memory.h"
#include "kernels/step.h"

namespace longattn {

// How a method's inputs and outputs are spread over ranks.
enum class Layout {
  single,      // rank 0 holds and computes everything; other ranks wait (one device)
  replicated,  // every rank holds the whole Q, K, V and ends with the whole O
  sharded,     // rank p holds tokens [p n, (p+1) n) of Q, K, V and O, n = N / P (SPEC §3)
  zigzag,      // rank p holds chunks p and 2P-1-p of 2P equal chunks (load-balanced causal ring)
};

const char* layout_name(Layout l);  // "single", "replicated", "sharded", "zigzag"

// A run of consecutive global token positions [pos0, pos0 + rows).
struct TokenRange {
  int64_t pos0 = 0, rows = 0;
};
// The token ranges rank `rank` of `world` holds under a layout, in the order of its local rows.
std::vector<TokenRange> held_tokens(Layout layout, int64_t N, int rank, int world);

// Buffers a method reuses across iterations, so allocation is not timed; on the device of the
// call's communicator (host memory, or the GPU under nccl).
struct MethodBuffers {
  explicit MethodBuffers(Device device = Device::cpu) {
    for (FloatBuffer& b : buf) b = FloatBuffer(device);
  }
  FloatBuffer buf[12];  // dist-usp: 0-5 its ring's, 6-11 its own
};

// Heads spread over `world` ranks (dist-heads, dist-ulysses, dist-usp's Ulysses groups): rank `rank`
// takes query heads [h0, h0 + hp), hp = H / P, and the KV heads they read, [kv0, kv0 + kvp): H_kv / P
// of them when P divides H_kv, else one, replicated on the P / H_kv ranks whose queries read it
// (yunchang's and Megatron's rule). heads_split_unsupported says why a shape does not split.
struct HeadSplit {
  int64_t h0 = 0, hp = 0, kv0 = 0, kvp = 0;
  bool replicated = false;  // kvp = 1 and P > H_kv: other ranks hold the same KV head
};
HeadSplit split_heads(const Shape& s, int world, int rank);
// dist-usp's Ulysses degree: `requested`, or by default the largest that divides both P and H_kv.
// (Inline: case names use it, and the suite loader's fuzz target links no method.)
inline int usp_degree(const Shape& s, int world, int requested) {
  return requested > 0 ? requested : std::gcd(world, static_cast<int>(s.kv_heads()));
}
std::string heads_split_unsupported(const Shape& s, int world, const char* degree = "the world size");

// One call. `global` is the whole problem; q/k/v/o/lse are this rank's part as `layout` says:
// single and replicated: [B, N, H, d] (lse [B, H, N]); sharded and zigzag: [B, n, H, d]
// (lse [B, H, n]), the rows of held_tokens() back to back; K and V (and dK, dV) have H_kv heads.
struct MethodCall {
  Shape global;
  Pattern pattern;
  float scale = 0;
  int threads = 0;
  const float* q = nullptr;
  const float* k = nullptr;
  const float* v = nullptr;
  float* o = nullptr;
  float* lse = nullptr;  // written only by methods with returns_lse
  Communicator* comm = nullptr;
  MethodBuffers* buffers = nullptr;
  DType dtype = DType::fp32;  // the inputs' values are of this type; the harness rounds O to it
  int64_t head0 = 0;          // global index of head 0 (a method running on a head shard of a larger problem)
  int ulysses = 0;            // dist-usp's Ulysses degree (0: usp_degree's default)

  int64_t shard() const { return global.N / comm->size(); }  // n
  // The local tensors as kernel arguments ([B, rows, H, d]; K, V [B, rows, H_kv, d]).
  AttentionArgs local_args(int64_t rows) const;
  // Where the buffers live and the work runs: the communicator's device.
  Device device() const { return comm->device_buffers() ? Device::cuda : Device::cpu; }
  // Where the method's own moves run: that device, on the communicator's compute stream.
  Place place() const { return {device(), comm->compute_stream(), threads}; }
  // An attention step (kernels/step.h) on that device, with no blocks yet.
  AttentionStep step() const;
};

// Bytes a rank holds for a case, roughly: full x the whole problem's Q (4 B N H d), part x this
// rank's share of it (full / P), nn x N^2 floats. The harness refuses a case that will not fit.
struct Footprint {
  double full = 0, part = 0, nn = 0;
};

struct Method {
  const char* name;
  const char* summary;
  Layout layout;
  bool returns_lse;
  bool microbenchmark;  // times communication only: no attention, no FLOPs, nothing to verify
  bool dense_cost;      // its time grows with N^2 whatever the pattern (vanilla: dense scores)
  Footprint memory;
  // The exchange that carries its traffic (dist-dilated's variable all-to-all counts as all_to_all),
  // or CommOp::count_ for none: what the model times its bytes with, and a microbenchmark's op.
  CommOp exchange;
  // Empty when the method runs this pattern on `world` ranks; otherwise why not. Shape violations
  // (P not dividing N or H) are reported as "shape:" reasons, which the harness treats as errors.
  // `ulysses`: dist-usp's Ulysses degree (0: its default, usp_degree), ignored by the others.
  std::string (*unsupported)(const Pattern&, const Shape&, int world, int ulysses);
  void (*run)(const MethodCall&);
  // The backward pass (SPEC §6) after run() on the same call: dQ, dK, dV ([B, rows, H, d] as the
  // layout says) from dO; null where the method has none yet.
  void (*backward)(const MethodCall&, const float* dout, float* dq, float* dk, float* dv) = nullptr;
  // SPEC §3: the bytes rank `rank` of `world` receives in one forward call (fp32 elements x 4), as
  // the communicator must count them; null for single-device methods and microbenchmarks.
  uint64_t (*spec_bytes)(const Pattern&, const Shape&, int world, int rank, int ulysses) = nullptr;
};

std::span<const Method> methods();
const Method* find_method(const std::string& name);

}  // namespace longattn

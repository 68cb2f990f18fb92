#include "harness/run.h"

#include <omp.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <map>

#include "harness/atomic_file.h"
#include "harness/context.h"
#include "harness/inputs.h"
#include "harness/memory.h"
#include "harness/stats.h"
#include "harness/suite_file.h"
#include "harness/verify.h"
#include "kernels/blas.h"
#include "kernels/cpu.h"
#include "kernels/flash_cpu.h"
#include "kernels/flash_tiles.h"
#include "kernels/input_error.h"
#include "kernels/memory.h"
#include "kernels/reference.h"
#include "kernels/registry.h"
#include "suite/method.h"
#ifdef LONGATTN_HAVE_CUDA
#include "kernels/cuda/cuda_attention.h"
#endif
#ifdef LONGATTN_HAVE_NCCL
#include "comm/nccl_comm.h"
#endif

namespace longattn {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// Ranks that compute a case: one for single-device methods, all for distributed ones.

int computing_ranks(const Method& m, int world) { return m.layout == Layout::single ? 1 : world; }

// The tokens this rank holds, as global ranges, and where a global position sits locally.
struct Holding {
  std::vector<TokenRange> ranges;
  int64_t rows = 0;  // local rows per batch
  Holding(Layout l, int64_t N, int rank, int world) : ranges(held_tokens(l, N, rank, world)) {
    for (const TokenRange& r : ranges) rows += r.rows;
  }
  int64_t local_row(int64_t pos) const {  // -1 if not held
    int64_t off = 0;
    for (const TokenRange& r : ranges) {
      if (pos >= r.pos0 && pos < r.pos0 + r.rows) return off + pos - r.pos0;
      off += r.rows;
    }
    return -1;
  }
  bool whole(int64_t N) const { return ranges.size() == 1 && ranges[0].pos0 == 0 && rows == N; }
  // This rank's rows of input tensor t, [B, rows, H, d].
  void generate(InputTensor t, uint64_t seed, const Shape& g, float* out) const {
    const int64_t row = g.H * g.d;
    for (int64_t b = 0; b < g.B; ++b) {
      int64_t off = 0;
      for (const TokenRange& r : ranges) {
        generate_rows(t, seed, g, b, r.pos0, r.rows, out + (b * rows + off) * row);
        off += r.rows;
      }
    }
  }
};

// Bytes per rank a case needs, roughly: the method's footprint, and verification.
double estimate_bytes(const Case& c, const Method& m, int world) {
  const double full = 4.0 * c.shape.numel(), n = static_cast<double>(c.shape.N);
  double b = m.memory.full * full + m.memory.part * full / world + m.memory.nn * n * n;
  if (c.verify && (m.layout == Layout::sharded || m.layout == Layout::zigzag)) b += 2 * full;
  return 1.2 * b + 64e6;
}

// SPEC §1: FLOPs of the pattern's pairs, and of the dense (full or causal) equivalent; a backward
// pass counts 2.5 forwards (SPEC §6).
double exact_flops(const Case& c) {
  const Shape s = c.shape;
  return pass_factor(c.pass) * 4.0 * s.d * static_cast<double>(c.pattern.pairs_all_heads(s.H, s.N)) * s.B;
}
double dense_flops(const Case& c) {
  const Shape s = c.shape;
  const double n = static_cast<double>(s.N);
  return pass_factor(c.pass) * 4.0 * s.d * (c.pattern.causal ? n * (n + 1) / 2 : n * n) * s.H * s.B;
}

// FLOPs a method's time grows with: the pattern's pairs, except vanilla, which computes the dense
// N x N scores whatever the pattern (causal included).
double cost_flops(const Case& c, const Method& m) {
  const Shape s = c.shape;
  if (m.dense_cost) return pass_factor(c.pass) * 4.0 * s.d * static_cast<double>(s.N) * s.N * s.H * s.B;
  return exact_flops(c);
}

// Rates measured earlier in this run (cost FLOPs per second per computing rank), by method and
// pattern family: the budget estimate of a case comes from the same kernel at a smaller N, never
// from a calibration that can be 20x off on a machine the BLAS misjudges.
struct MeasuredRates {
  std::map<std::string, double> by_key;
  static std::string key(const Case& c, const Method& m) {
    return std::string(m.name) + " " + kind_name(c.pattern.kind) + (c.pattern.causal ? " causal" : "") + " d=" +
           std::to_string(c.shape.d) + " " + c.dtype + " " + c.device + " " + c.pass;
  }
  void record(const Case& c, const Method& m, double seconds) {
    if (seconds <= 0) return;
    const double rate = cost_flops(c, m) / seconds;
    double& r = by_key[key(c, m)];
    r = std::max(r, rate);
  }
  // Seconds per iteration, or 0 when no case of this kind has run yet.
  double estimate(const Case& c, const Method& m) const {
    const auto it = by_key.find(key(c, m));
    return it == by_key.end() || m.microbenchmark ? 0.0 : cost_flops(c, m) / it->second;
  }
};
struct CaseResult {
  json j;
  bool failed = false;
};

json skipped(json j, const std::string& why) {
  j["status"] = "skipped";
  j["reason"] = why;
  return j;
}

class Runner {
 public:
  Runner(Communicator& comm, const RunEnvironment& env, const InjectedSlowdown& slowdown)
      : comm_(comm), env_(env), slowdown_(slowdown) {}

  CaseResult run(const Case& c) {
    const Method& m = *find_method(c.method);
    json j = describe(c, m);
    if (auto why = m.unsupported(c.pattern, c.shape, comm_.size(), c.ulysses); !why.empty()) return {skipped(j, why)};
    if (c.pass != "forward" && !m.backward)
      return {skipped(j, "pass: " + c.method + " has no backward pass yet (SPEC §6); the CPU kernels (flash, vanilla, "
                         "dilated) and the dist-* methods have one")};
    if (c.device == "cuda") return run_cuda(c, m, j);
    return run_on(comm_, c, m, j);
  }

 private:
  // The case on `comm`'s device: the world's host buffers, or (nccl) GPU buffers, every rank
  // uploading its part of the inputs first and downloading its outputs after timing.
  CaseResult run_on(Communicator& comm, const Case& c, const Method& m, json j) {
    const int P = comm.size(), rank = comm.rank();
    const Shape g = c.shape;
    const bool forward = c.pass != "backward", backward = c.pass != "forward";
    const Place at{comm.device_buffers() ? Device::cuda : Device::cpu, comm.compute_stream()};
    const bool gpu = at.device == Device::cuda;
    const int runs = c.warmup + c.iterations;
    // Skipped before it starts only when the estimate passes the budget twice over (a rate from a
    // smaller N carries more overhead); closer calls are decided by the first iteration.
    if (const double est = rates_.estimate(c, m) * runs; est > 2 * c.budget_s)
      return {skipped(j, "budget: estimated " + fmt(est) + " s for " + std::to_string(runs) +
                             " iterations from this run's rate of the same method and pattern family; exceeds twice budget_s " +
                             fmt(c.budget_s))};

    release_kept_buffers();  // the last case's kept kernel buffers are not this case's memory
    reset_peak_rss();
    const Holding hold(m.layout, g.N, rank, P);
    const int64_t local = g.B * hold.rows * g.H * g.d, kv_local = g.B * hold.rows * g.kv_heads() * g.d;
    std::vector<float> q(local), k(kv_local), v(kv_local), o(local), lse(g.B * g.H * hold.rows);
    hold.generate(kQ, c.seed, g, q.data());
    hold.generate(kK, c.seed, g.kv_shape(), k.data());  // GQA: K and V have H_kv heads
    hold.generate(kV, c.seed, g.kv_shape(), v.data());
    const DType dtype = parse_dtype(c.dtype, "dtype");
    for (std::vector<float>* t : {&q, &k, &v}) round_all(dtype, t->data(), t->size());  // exact values of the dtype
    std::vector<float> dout(backward ? local : 0), dq(dout.size()), dk(backward ? kv_local : 0), dv(dk.size());
    if (backward) hold.generate(kDO, c.seed, g, dout.data()), round_all(dtype, dout.data(), local);
    MethodBuffers buffers(at.device);
    MethodCall call;
    call.global = g;
    call.pattern = c.pattern;
    call.scale = c.scale > 0 ? c.scale : default_scale(g.d);
    call.threads = env_.threads_per_rank;
    call.dtype = dtype;
    call.ulysses = c.ulysses;
    call.q = q.data(), call.k = k.data(), call.v = v.data(), call.o = o.data();
    call.lse = m.returns_lse ? lse.data() : nullptr;
    call.comm = &comm;
    call.buffers = &buffers;
    FloatBuffer on_device[5];  // gpu: Q, K, V, O, LSE of this rank
    if (gpu) {
      float* host[5] = {q.data(), k.data(), v.data(), o.data(), lse.data()};
      const size_t sizes[5] = {q.size(), k.size(), v.size(), o.size(), lse.size()};
      for (int t = 0; t < 5; ++t) {
        on_device[t] = FloatBuffer(Device::cuda);
        on_device[t].resize(sizes[t]);
        if (t < 3) upload(at, on_device[t].data(), host[t], sizes[t]);
      }
      call.q = on_device[0].data(), call.k = on_device[1].data(), call.v = on_device[2].data();
      call.o = on_device[3].data(), call.lse = m.returns_lse ? on_device[4].data() : nullptr;
    }
    // gpu: overwritten before each iteration unless the suite keeps the L2 cache warm.
    FloatBuffer flush(at.device);
    if (gpu && c.l2 == "flush") flush.resize(cache_flush_bytes(at) / sizeof(float));
    PlaceTimer timer(at);

    // Fault injection for the tests: LONGATTN_FAULT_RANK=r makes rank r fail inside its first case,
    // while the other ranks wait in a collective; the job must abort with the message, not hang.
    if (const char* f = std::getenv("LONGATTN_FAULT_RANK"); f && std::atoi(f) == rank)
      throw std::runtime_error("injected fault (LONGATTN_FAULT_RANK=" + std::string(f) + ")");
    // One iteration: barrier, then the method, timed per rank; the slowest rank is the time.
    const int repeat = slowdown_.method == c.method ? slowdown_.factor : 1;
    // A backward pass alone starts from a forward's O and LSE, made once, untimed.
    auto forward_once = [&] {
      m.run(call);
      // O in the dtype, as the kernel's caller gets it (gpu: after it comes back, untimed)
      if (!m.microbenchmark && !gpu) round_all(dtype, o.data(), local);
    };
    if (!forward) forward_once();
    auto iterate = [&](double* comm_seconds) {
      comm.barrier();
      fill_floats(at, flush.data(), flush.size(), 0.0f);  // queued before the timer starts
      const double c0 = comm.counters.seconds;
      timer.start();
      for (int r = 0; r < repeat; ++r) {
        if (forward) forward_once();
        if (backward) {
          m.backward(call, dout.data(), dq.data(), dk.data(), dv.data());
          for (std::vector<float>* t : {&dq, &dk, &dv}) round_all(dtype, t->data(), t->size());
        }
      }
      const double t = timer.stop_ms() * 1e-3;  // gpu: cudaEvents around the method on its stream
      if (comm_seconds) *comm_seconds = comm.counters.seconds - c0;
      return t;
    };
    // The first iteration (warm-up or timed) decides the budget on its own measured time. The
    // decision uses only the max-reduced time, identical on every rank: ranks that decided
    // differently would leave the others waiting in a collective.
    auto over_budget = [&](double t) {
      rates_.record(c, m, t / repeat);
      return t * runs > c.budget_s;
    };
    auto budget_reason = [&](double t) {
      return "budget: one iteration took " + fmt(t) + " s; " + std::to_string(runs) + " exceed budget_s " + fmt(c.budget_s);
    };
    for (int w = 0; w < c.warmup; ++w) {
      const double t = comm.max(iterate(nullptr));
      if (w == 0 && over_budget(t)) return {skipped(j, budget_reason(t))};
    }
    comm.reset_counters();
    std::vector<double> samples(c.iterations), comm_samples(c.iterations);
    for (int it = 0; it < c.iterations; ++it) {
      samples[it] = iterate(&comm_samples[it]);
      if (it == 0 && c.warmup == 0)
        if (const double t = comm.max(samples[0]); over_budget(t)) return {skipped(j, budget_reason(t))};
    }
    comm.max(samples.data(), samples.size());
    comm.max(comm_samples.data(), comm_samples.size());
    if (gpu && !m.microbenchmark) {
      download(at, o.data(), call.o, o.size());
      if (call.lse) download(at, lse.data(), call.lse, lse.size());
      round_all(dtype, o.data(), local);
    }
    for (double& s : samples) s *= 1e3;
    for (double& s : comm_samples) s *= 1e3;

    // Bytes per iteration; the heaviest rank's.
    double bytes[2 + 2 * static_cast<int>(CommOp::count_)] = {
        double(comm.counters.total_received()) / c.iterations, double(comm.counters.total_sent()) / c.iterations};
    for (int op = 0; op < static_cast<int>(CommOp::count_); ++op)
      bytes[2 + op] = double(comm.counters.bytes_received[op]) / c.iterations;
    comm.max(bytes, 2 + static_cast<int>(CommOp::count_));
    const double peak = comm.max(static_cast<double>(peak_rss_bytes()));

    const Stats st = summarize(samples);
    rates_.record(c, m, st.median * 1e-3 / repeat);
    j["time_ms"] = to_json(st);
    j["samples_ms"] = samples;
    j["gflops"] = j["flops"].get<double>() / (st.median * 1e-3) / 1e9;
    if (repeat > 1) j["injected_slowdown"] = repeat;
    json by_op = json::object();
    for (int op = 0; op < static_cast<int>(CommOp::count_); ++op)
      if (bytes[2 + op] > 0) by_op[op_name(static_cast<CommOp>(op))] = bytes[2 + op];
    const Stats cs = summarize(comm_samples);
    j["comm"] = {{"bytes_received_per_rank", bytes[0]}, {"bytes_sent_per_rank", bytes[1]},
                 {"received_by_op", by_op},           {"time_ms", cs.median},
                 {"samples_ms", comm_samples},        {"share", st.median > 0 ? cs.median / st.median : 0.0}};
    j["peak_memory_bytes_per_rank"] = peak;
    if (m.microbenchmark) {
      // nccl-tests' definitions: algbw = bytes / time; busbw corrects collectives for P.
      const double bytes_rank = 4.0 * g.numel() / P;
      const double size = m.exchange == CommOp::all_gather ? bytes_rank * P : bytes_rank;
      const double algbw = size / (st.median * 1e-3) / 1e9;
      const double factor = m.exchange == CommOp::send_recv ? 1.0 : (P - 1.0) / P;
      j["comm_bench"] = {{"message_bytes", bytes_rank}, {"size_bytes", size}, {"algbw_GBps", algbw},
                         {"busbw_GBps", algbw * factor}};
    }

    bool ok = true;
    if (c.verify && !m.microbenchmark) {
      const Gradients grads{dout.data(), dq.data(), dk.data(), dv.data()};
      ok = verify(c, m, hold, q, k, v, o, lse, backward ? &grads : nullptr, j);
    }
    j["status"] = ok ? "ok" : "failed";
    if (!ok) j["reason"] = "verification: error exceeds the SPEC §4 (or §6) tolerance";
    return {j, !ok};
  }

 private:
  static std::string fmt(double x) {
    char b[32];
    std::snprintf(b, sizeof b, "%.3g", x);
    return b;
  }

  json describe(const Case& c, const Method& m) const {
    const Shape s = c.shape;
    const bool attention = !m.microbenchmark;
    const double exact = attention ? exact_flops(c) : 0, dense = attention ? dense_flops(c) : 0;
    json j = {{"name", c.id(computing_ranks(m, comm_.size()))},
            {"method", c.method},
            {"layout", layout_name(m.layout)},
            {"device", c.device},
            {"dtype", c.dtype},
            {"B", s.B},
            {"H", s.H},
            {"H_kv", s.kv_heads()},
            {"N", s.N},
            {"d", s.d},
            {"pattern", to_json(c.pattern)},
            {"pattern_name", c.pattern.name()},
            {"world", computing_ranks(m, comm_.size())},
            {"ranks", comm_.size()},
            {"threads_per_rank", env_.threads_per_rank},
            {"warmup", c.warmup},
            {"iterations", c.iterations},
            {"flops", exact},
            {"flops_dense", dense},
            {"pass", c.pass},
            {"status", "ok"}};
    if (c.device == "cuda") j["l2"] = c.l2;
    if (c.method == "dist-usp") {  // both degrees of the 2-D grid, the default resolved
      const int u = usp_degree(s, comm_.size(), c.ulysses);
      j["ulysses"] = u;
      j["ring"] = u > 0 && comm_.size() % u == 0 ? comm_.size() / u : 0;
    }
    return j;
  }

  // Checks this rank's rows against the oracle: every row for small cases, a fixed sample of
  // query rows (the same on every rank) for large ones. Errors are reduced by max over ranks.
  struct Gradients {
    const float *dout, *dq, *dk, *dv;
  };
  // With grads (a backward pass of a single-device method, every tensor whole on rank 0), the same
  // rows of dQ, dK and dV are checked too (SPEC §6).
  bool verify(const Case& c, const Method& m, const Holding& hold, const std::vector<float>& q,
              const std::vector<float>& k, const std::vector<float>& v, const std::vector<float>& o,
              const std::vector<float>& lse, const Gradients* grads, json& j) {
    const Shape g = c.shape;
    std::vector<SampleRow> rows;
    const bool checker = m.layout == Layout::sharded || m.layout == Layout::zigzag || comm_.rank() == 0;
    for (const SampleRow& r : sample_rows(g, c.seed))
      if (checker && hold.local_row(r.i) >= 0) rows.push_back(r);
    // Global K and V for the oracle: the rank's own when it holds every token, else made again.
    std::vector<float> kg, vg;
    const bool whole = hold.whole(g.N);
    if (!rows.empty() && !whole) {
      kg.resize(g.kv_numel()), vg.resize(g.kv_numel());
      generate_slice(kK, c.seed, g.kv_shape(), 0, g.N, kg.data());
      generate_slice(kV, c.seed, g.kv_shape(), 0, g.N, vg.data());
      const DType dtype = parse_dtype(c.dtype, "dtype");  // the same rounded values the method read
      round_all(dtype, kg.data(), g.kv_numel());
      round_all(dtype, vg.data(), g.kv_numel());
    }
    const std::vector<float>& K = whole ? k : kg;
    const std::vector<float>& V = whole ? v : vg;
    AttentionArgs ref;
    ref.shape = g;
    ref.k = K.data(), ref.v = V.data();
    ref.pattern = c.pattern;
    ref.scale = c.scale > 0 ? c.scale : default_scale(g.d);
    auto at = [&](const SampleRow& r) { return ((r.b * hold.rows + hold.local_row(r.i)) * g.H + r.h) * g.d; };
    RowAccess access;
    access.q = [&](const SampleRow& r) { return q.data() + at(r); };
    access.o = [&](const SampleRow& r) { return o.data() + at(r); };
    if (m.returns_lse)
      access.lse = [&](const SampleRow& r) { return lse.data() + (r.b * g.H + r.h) * hold.rows + hold.local_row(r.i); };
    const RowErrors e = check_rows(ref, rows, access);
    GradErrors ge;
    // Decided by the layout, alike on every rank: the other branch is a collective.
    if (grads && (m.layout == Layout::single || m.layout == Layout::replicated)) {
      AttentionArgs fwd = ref;
      fwd.q = q.data(), fwd.o = const_cast<float*>(o.data()), fwd.lse = const_cast<float*>(lse.data());
      if (!rows.empty()) ge = check_grad_rows(fwd, grads->dout, grads->dq, grads->dk, grads->dv, rows);
    } else if (grads) {
      // Token shards (sharded, zig-zag): a key's gradient sums over every rank's queries, so the
      // check takes the whole tensors, gathered (a collective: every rank calls it) and put back
      // where each rank's held token ranges say.
      const int64_t n = hold.rows, row = g.H * g.d, kv_row = g.kv_heads() * g.d;
      auto whole_of = [&](const float* local, int64_t outer, int64_t inner) {
        const int P = comm_.size();
        std::vector<float> all(P * outer * n * inner), out(outer * g.N * inner);
        comm_.all_gather(local, outer * n * inner * sizeof(float), all.data());
        for (int r = 0; r < P; ++r)
          for (int64_t x = 0; x < outer; ++x) {
            int64_t off = 0;
            for (const TokenRange& t : held_tokens(m.layout, g.N, r, P)) {
              std::copy_n(all.data() + ((r * outer + x) * n + off) * inner, t.rows * inner,
                          out.data() + (x * g.N + t.pos0) * inner);
              off += t.rows;
            }
          }
        return out;
      };
      const auto qw = whole_of(q.data(), g.B, row), ow = whole_of(o.data(), g.B, row), lw = whole_of(lse.data(), g.B * g.H, 1);
      const auto gw = whole_of(grads->dout, g.B, row), dqw = whole_of(grads->dq, g.B, row);
      const auto dkw = whole_of(grads->dk, g.B, kv_row), dvw = whole_of(grads->dv, g.B, kv_row);
      if (!rows.empty()) {
        AttentionArgs fwd = ref;
        fwd.q = qw.data(), fwd.o = const_cast<float*>(ow.data()), fwd.lse = const_cast<float*>(lw.data());
        ge = check_grad_rows(fwd, gw.data(), dqw.data(), dkw.data(), dvw.data(), rows);
      }
    }
    double err[7] = {e.o, e.lse, 0, ge.dq, ge.dk, ge.dv, ge.max_ref};  // O, LSE, max |V|, gradients
    for (float x : V) err[2] = std::max(err[2], double(std::abs(x)));
    comm_.max(err, 7);
    const double checked = comm_.sum(static_cast<double>(rows.size()));
    const GradErrors reduced{err[3], err[4], err[5], err[6]};
    j["error"] = error_report({err[0], err[1]}, err[2], c.dtype, m.returns_lse, checked, grads ? &reduced : nullptr);
    return j["error"]["passed"].get<bool>();
  }

  CaseResult run_cuda(const Case& c, const Method& m, json j) {
#ifdef LONGATTN_HAVE_CUDA
    // Every rank must take the same branch (the GPU path ends in collectives): skip if any lacks a GPU.
    std::string why;
    const bool here = cuda_available(&why);
    if (comm_.max(here ? 0.0 : 1.0) > 0) return {skipped(j, "no GPU: " + (here ? "on another rank" : why))};
    // GPU single-device cases are run by run_cuda_single (rank 0); distributed ones through NCCL.
    if (m.layout == Layout::single) return run_cuda_single(c, m, j);
    if (c.pass != "forward")
      return {skipped(j, "pass: the distributed methods' backward runs on host buffers only so far (device cpu)")};
    if (!m.microbenchmark)
      if (std::string no = attention_step_unsupported(Device::cuda, parse_dtype(c.dtype, "dtype"), c.shape.d); !no.empty())
        return {skipped(j, no)};
    Communicator* nccl = nccl_communicator(&why);
    if (!nccl) return {skipped(j, why)};
    return run_on(*nccl, c, m, j);
#else
    (void)c;
    (void)m;
    return {skipped(j, "no GPU: built without CUDA")};
#endif
  }

  // The NCCL communicator over the world's ranks, made by the first GPU case that needs it (every
  // rank reaches it at the same case); null, with the reason, where it cannot be made.
  Communicator* nccl_communicator(std::string* why) {
#ifdef LONGATTN_HAVE_NCCL
    if (!nccl_ && nccl_error_.empty()) {
      try {
        nccl_ = make_nccl_communicator();
      } catch (const std::exception& e) {  // thrown on every rank alike (nccl_comm.h)
        nccl_error_ = e.what();
      }
    }
    if (!nccl_) *why = "nccl: " + nccl_error_;
    return nccl_.get();
#else
    *why = "the distributed methods on GPUs need the NCCL communicator; this build has none (nccl.h and libnccl at "
           "configure time)";
    return nullptr;
#endif
  }

#ifdef LONGATTN_HAVE_CUDA
  CaseResult run_cuda_single(const Case& c, const Method& m, json j) {
    const Shape g = c.shape;
    const DType dt = parse_dtype(c.dtype, "dtype");
    const Kernel* kernel = find_kernel(c.method, Device::cuda);
    if (!kernel) return {skipped(j, c.method + " has no CUDA kernel; the CUDA kernels are " + kernel_names(Device::cuda))};
    if (auto why = kernel->unsupported(c.pattern, g, dt); !why.empty()) return {skipped(j, why)};
    const bool forward = c.pass != "backward", backward = c.pass != "forward";
    if (backward && !kernel->time_backward_on_device)
      return {skipped(j, "pass: " + c.method + " on cuda has no backward pass yet (SPEC §6); flash and dilated have one")};
    std::vector<double> samples;
    std::vector<float> q, k, v, o, lse, dout, dq, dk, dv;
    if (comm_.rank() == 0) {
      q.resize(g.numel()), k.resize(g.kv_numel()), v.resize(g.kv_numel()), o.resize(g.numel()), lse.resize(g.B * g.H * g.N);
      generate_slice(kQ, c.seed, g, 0, g.N, q.data());
      generate_slice(kK, c.seed, g.kv_shape(), 0, g.N, k.data());
      generate_slice(kV, c.seed, g.kv_shape(), 0, g.N, v.data());
      for (std::vector<float>* t : {&q, &k, &v}) round_all(dt, t->data(), t->size());
      AttentionArgs a;
      a.shape = g, a.q = q.data(), a.k = k.data(), a.v = v.data(), a.o = o.data(), a.lse = lse.data();
      a.pattern = c.pattern, a.scale = c.scale > 0 ? c.scale : default_scale(g.d), a.dtype = dt;
      // A backward pass alone starts from the forward's O and LSE (its warm-up runs, untimed); a
      // forward+backward iteration is the sum of the two timed passes of the same index.
      const DeviceTiming timing{c.warmup, c.iterations, c.l2 == "flush"};
      samples = kernel->time_on_device(a, {c.warmup, forward ? c.iterations : 0, timing.flush_l2});
      if (backward) {
        round_all(dt, o.data(), g.numel());  // O in the dtype, as the kernel's caller gets it
        dout.resize(g.numel()), dq.resize(g.numel()), dk.resize(g.kv_numel()), dv.resize(g.kv_numel());
        generate_slice(kDO, c.seed, g, 0, g.N, dout.data());
        round_all(dt, dout.data(), g.numel());
        const std::vector<double> back =
            kernel->time_backward_on_device({a, dout.data(), dq.data(), dk.data(), dv.data()}, timing);
        samples.resize(back.size(), 0.0);
        for (size_t i = 0; i < back.size(); ++i) samples[i] += back[i];
      }
    }
    samples.resize(c.iterations);
    comm_.max(samples.data(), samples.size());
    const Stats st = summarize(samples);
    j["time_ms"] = to_json(st);
    j["samples_ms"] = samples;
    j["gflops"] = j["flops"].get<double>() / (st.median * 1e-3) / 1e9;
    j["comm"] = {{"bytes_received_per_rank", 0}, {"bytes_sent_per_rank", 0}, {"received_by_op", json::object()},
                 {"time_ms", 0}, {"samples_ms", std::vector<double>(c.iterations, 0.0)}, {"share", 0}};
    j["peak_memory_bytes_per_rank"] = comm_.max(static_cast<double>(peak_rss_bytes()));
    bool ok = true;
    const Gradients grads{dout.data(), dq.data(), dk.data(), dv.data()};
    if (c.verify)
      ok = verify(c, m, Holding(m.layout, g.N, comm_.rank(), comm_.size()), q, k, v, o, lse, backward ? &grads : nullptr, j);
    j["status"] = ok ? "ok" : "failed";
    if (!ok) j["reason"] = "verification: error exceeds the SPEC §4 (or §6) tolerance";
    return {j, !ok};
  }
#endif

  Communicator& comm_;
  std::unique_ptr<Communicator> nccl_;  // GPU cases of the distributed methods
  std::string nccl_error_;
  const RunEnvironment& env_;
  const InjectedSlowdown slowdown_;
  MeasuredRates rates_;
};

// Each distributed case's rate as a share of P x the rate of the single-device kernel it computes
// with (dilated for dilated patterns, else flash) on the same case (pattern, B, N, H, d, dtype,
// device, pass) in the same file: 100% = P ranks each running the kernel as fast as one alone
// (ring-flash-attention's per-device figure). Absent where the file has no such single-device case.
void add_efficiency(json& cases) {
  auto key = [](const json& c, const std::string& method) {
    return method + "|" + c["pattern_name"].get<std::string>() + "|" + c["B"].dump() + "|" + c["N"].dump() + "|" +
           c["H"].dump() + "|" + c.value("H_kv", c["H"]).dump() + "|" + c["d"].dump() + "|" + c["dtype"].get<std::string>() + "|" +
           c["device"].get<std::string>() + "|" + c.value("pass", "forward");
  };
  std::map<std::string, const json*> single;
  for (const json& c : cases)
    if (c["status"] == "ok" && c["layout"] == "single") single[key(c, c["method"])] = &c;
  for (json& c : cases) {
    const Method* m = find_method(c["method"]);
    if (c["status"] != "ok" || c["layout"] == "single" || !m || m->microbenchmark) continue;
    const std::string kernel = c["pattern"]["kind"] == "dilated" ? "dilated" : "flash";
    const auto it = single.find(key(c, kernel));
    if (it == single.end()) continue;
    const double P = c["world"].get<double>(), one = (*it->second)["gflops"].get<double>();
    if (one > 0)
      c["efficiency"] = {{"pct", 100.0 * c["gflops"].get<double>() / (P * one)},
                         {"single_device_case", (*it->second)["name"]}};
  }
}

void print_table(const json& cases) {
  std::printf("%-62s %8s %11s %9s %9s\n", "case", "status", "median ms", "GFLOP/s", "max err");
  for (const json& c : cases) {
    const bool timed = c.contains("time_ms");
    std::printf("%-62s %8s %11s %9s %9s\n", c["name"].get<std::string>().c_str(),
                c["status"].get<std::string>().c_str(),
                timed ? std::to_string(c["time_ms"]["median"].get<double>()).substr(0, 9).c_str() : "-",
                timed ? std::to_string(c["gflops"].get<double>()).substr(0, 7).c_str() : "-",
                c.contains("error") ? std::to_string(c["error"]["o_max_abs"].get<double>()).substr(0, 9).c_str()
                                    : "-");
  }
}

// The expanded cases as JSON: what `run` would time, for tools that time the same cases (the
// PyTorch peers) without parsing suite files a second time.
json plan(const Suite& suite, int P) {
  json cases = json::array();
  for (const Case& c : suite.cases) {
    const Method* m = find_method(c.method);
    const int world = m ? computing_ranks(*m, P) : 1;
    const Shape s = c.shape;
    cases.push_back({{"name", c.id(world)},
                     {"method", c.method},
                     {"pattern", to_json(c.pattern)},
                     {"pattern_name", c.pattern.name()},
                     {"B", s.B}, {"H", s.H}, {"H_kv", s.kv_heads()}, {"N", s.N}, {"d", s.d},
                     {"dtype", c.dtype},
                     {"device", c.device},
                     {"pass", c.pass},
                     {"world", world},
                     {"warmup", c.warmup},
                     {"iterations", c.iterations},
                     {"verify", c.verify},
                     {"budget_s", c.budget_s},
                     {"scale", c.scale > 0 ? c.scale : default_scale(s.d)},
                     {"seed", c.seed},
                     {"l2", c.l2},
                     {"flops", exact_flops(c)},
                     {"flops_dense", dense_flops(c)}});
    if (c.pattern.kind == PatternKind::dilated) {  // the levels this N resolves to (longnet: SPEC §2)
      json levels = json::array();
      for (const DilatedLevel& l : c.pattern.dilated_levels(s.N)) levels.push_back({l.w, l.r});
      cases.back()["levels"] = levels;
    }
  }
  return {{"suite", suite.name}, {"path", suite.path}, {"ranks", P}, {"suite_file", suite.source}, {"cases", cases}};
}

}  // namespace

InjectedSlowdown injected_slowdown() {
  InjectedSlowdown s;
  const char* v = std::getenv("LONGATTN_INJECT_SLOWDOWN");
  if (!v || !*v) return s;
  const std::string text = v;
  const std::string shown = text.size() > 60 ? text.substr(0, 60) + "..." : text;
  const auto colon = text.find(':');
  const std::string fix = "; give METHOD:FACTOR with a method from `longattn list` and a whole factor 1..100, e.g. flash:2";
  if (colon == std::string::npos)
    throw InputError("LONGATTN_INJECT_SLOWDOWN: \"" + shown + "\" has no ':'" + fix);
  s.method = text.substr(0, colon);
  if (!find_method(s.method))
    throw InputError("LONGATTN_INJECT_SLOWDOWN: unknown method \"" + s.method.substr(0, 60) + "\"" + fix);
  const std::string f = text.substr(colon + 1);
  if (f.empty() || f.size() > 3 || f.find_first_not_of("0123456789") != std::string::npos || std::stoi(f) < 1 ||
      std::stoi(f) > 100)
    throw InputError("LONGATTN_INJECT_SLOWDOWN: factor \"" + f.substr(0, 60) + "\" is not a whole number 1..100" + fix);
  s.factor = std::stoi(f);
  return s;
}

int run_suite(Communicator& comm, const RunOptions& opt) {
  const Suite suite = load_suite(opt.suite, comm.size());
  const int P = comm.size();
  if (opt.plan) {
    if (comm.rank() == 0) std::printf("%s\n", plan(suite, P).dump(1).c_str());
    return 0;
  }
  const InjectedSlowdown slowdown = injected_slowdown();  // bad input before anything runs
  force_tile_path_from_environment();
  RunEnvironment env = detect_environment(comm, opt.threads);
  // The smallest over ranks, so every rank reaches the same verdict (a rank alone refusing a case
  // would leave the others waiting in a collective).
  const double avail = -comm.max(-static_cast<double>(available_memory_bytes()) / env.local_ranks);
  for (size_t i = 0; i < suite.cases.size(); ++i) {
    const Case& c = suite.cases[i];
    const std::string id = c.id(P);
    const std::string at = suite.path.substr(0, 100) + ": case " + std::to_string(i + 1) + " (" +
                           (id.size() > 120 ? id.substr(0, 120) + "..." : id) + "): ";
    const Method* m = find_method(c.method);
    if (!m)
      throw InputError(at + "methods: unknown method \"" + c.method.substr(0, 100) + "\"; `longattn list` shows the methods");
    if (const auto why = m->unsupported(c.pattern, c.shape, P, c.ulysses); why.rfind("shape:", 0) == 0)
      throw InputError(at + why.substr(7));
    if (m->microbenchmark && c.pass != "forward")
      throw InputError(at + "pass: " + c.method + " times communication only; it has no backward pass (use \"forward\")");
    if (const double need = estimate_bytes(c, *m, P); c.device == "cpu" && need > avail)
      throw InputError(at + "memory: needs about " + std::to_string(int64_t(need / 1e9 * 10) / 10.0).substr(0, 5) +
                       " GB per rank, this node has " + std::to_string(int64_t(avail / 1e9 * 10) / 10.0).substr(0, 5) +
                       " GB per rank available; lower N, B or H, or use more nodes");
  }
  const std::string out = opt.out.empty() ? "results/" + suite.name + ".json" : opt.out;
  // Where the results go is checked before the first case: a long sweep must not fail at its end.
  // Every rank takes rank 0's verdict (only rank 0 writes).
  std::string out_error;
  if (comm.rank() == 0) try {
      check_output_path(out, "--out");
    } catch (const InputError& e) {
      out_error = e.what();
    }
  if (comm.max(out_error.empty() ? 0.0 : 1.0) > 0)
    throw InputError(out_error.empty() ? "--out: rank 0 cannot write the results file" : out_error);
  env.sgemm_gflops = calibrate_sgemm(comm, env.threads_per_rank);
  env.cpu_peak = cpu_peak(env.threads_per_rank);
  omp_set_num_threads(env.threads_per_rank);
  if (comm.rank() == 0 && !opt.quiet) {
    std::fprintf(stderr, "longattn: %s; BLAS: OpenBLAS core %s\n", cpu_info().model.c_str(), blas_core().c_str());
    std::fprintf(stderr, "longattn: %s\n", cpu_peak_line(env.cpu_peak, env.sgemm_gflops).c_str());
  }
  if (comm.rank() == 0 && blas_core_is_generic())
    std::fprintf(stderr, "longattn: warning: OpenBLAS runs its generic %s core on this %s CPU: vanilla and the "
                 "calibration run below the CPU's speed (context.blas says why)\n", blas_core().c_str(), cpu_info().isa());
  if (comm.rank() == 0 && slowdown.factor > 1)
    std::fprintf(stderr, "longattn: LONGATTN_INJECT_SLOWDOWN: %s runs %d times per iteration (test hook)\n",
                 slowdown.method.c_str(), slowdown.factor);
  json results = {{"schema_version", 1},
                  {"suite", suite.name},
                  {"context", run_context(comm, env, opt.command_line)},
                  {"cases", json::array()}};
  results["context"]["suite_file"] = suite.source;

  Runner runner(comm, env, slowdown);
  bool any_failed = false;
  const auto start = Clock::now();
  for (size_t i = 0; i < suite.cases.size(); ++i) {
    CaseResult r;
    try {
      r = runner.run(suite.cases[i]);
    } catch (const InputError&) {
      throw;
    } catch (const std::exception& e) {
      // A rank-local failure: the other ranks may be inside a collective; abort them all.
      comm.abort("case " + suite.cases[i].id(P) + " failed: " + e.what(), 3);
    }
    any_failed |= r.failed;
    if (comm.rank() == 0 && !opt.quiet) {
      const double el = seconds_since(start), left = el / (i + 1) * (suite.cases.size() - i - 1);
      const json& c = r.j;
      std::string what = c["status"].get<std::string>();
      if (c.contains("time_ms")) {
        char b[96];
        std::snprintf(b, sizeof b, "%.3f ms, %.2f GFLOP/s", c["time_ms"]["median"].get<double>(), c["gflops"].get<double>());
        what = b;
      } else if (c.contains("reason")) {
        what += ": " + c["reason"].get<std::string>();
      }
      std::fprintf(stderr, "[%zu/%zu] %s: %s | elapsed %.0f s, ~%.0f s left\n", i + 1, suite.cases.size(),
                   c["name"].get<std::string>().c_str(), what.c_str(), el, left);
    }
    results["cases"].push_back(std::move(r.j));
  }
  if (comm.rank() == 0) {
    add_efficiency(results["cases"]);
    AtomicFile f(out);
    f.write(results.dump(1) + "\n");
    f.commit();
    if (!opt.quiet) print_table(results["cases"]);
    std::fprintf(stderr, "longattn: wrote %s (%zu cases)\n", out.c_str(), suite.cases.size());
  }
  return any_failed ? 1 : 0;
}

}  // namespace longattn

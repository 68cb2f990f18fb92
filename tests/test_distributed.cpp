// Run under mpirun with 1, 2, 3 and 4 ranks (ctest does). Every distributed method's output equals
// the single-rank kernel's on the same global inputs within SPEC §4's 1e-5 (fp32), causal and not,
// dilated levels spanning 1 to P ranks, awkward head offsets; and the bytes each rank received,
// from the communicator's own counts, equal SPEC §3's formulas exactly.
#include <gtest/gtest.h>

#include <cmath>

#include "comm/communicator.h"
#include "harness/inputs.h"
#include "kernels/dilated_cpu.h"
#include "kernels/registry.h"
#include "kernels/tolerance.h"
#include "suite/method.h"

using namespace longattn;
using nlohmann::json;

namespace {

Communicator* g_comm = nullptr;

struct Outcome {
  double o_err = 0, lse_err = 0;
  uint64_t received = 0, sent = 0;
  // With a backward pass: max |dX - dX_ref| over dQ, dK, dV relative to max(1, max |dX_ref|), and
  // the bytes the backward alone received.
  double grad_err = 0;
  uint64_t grad_received = 0;
};

// Runs method m on this rank's part of the global problem and compares with `kernel` run on the
// whole problem here, both on inputs rounded to dt.
Outcome run_and_compare(const Method& m, const char* kernel, const Pattern& p, const Shape& g,
                        DType dt = DType::fp32, bool backward = false, int ulysses = 0) {
  Communicator& comm = *g_comm;
  const int P = comm.size(), rank = comm.rank();
  const Shape gk = g.kv_shape();  // GQA: K, V (and dK, dV) have H_kv heads
  std::vector<float> q(g.numel()), k(g.kv_numel()), v(g.kv_numel()), o_ref(g.numel()), lse_ref(g.B * g.H * g.N);
  generate_slice(kQ, 5, g, 0, g.N, q.data());
  generate_slice(kK, 5, gk, 0, g.N, k.data());
  generate_slice(kV, 5, gk, 0, g.N, v.data());
  for (auto* t : {&q, &k, &v}) round_all(dt, t->data(), int64_t(t->size()));
  AttentionArgs a;
  a.dtype = dt;
  a.shape = g, a.q = q.data(), a.k = k.data(), a.v = v.data(), a.o = o_ref.data(), a.lse = lse_ref.data();
  a.pattern = p, a.scale = default_scale(g.d);
  const Kernel& single = kernel ? *find_kernel(kernel) : auto_kernel(p, g);
  single.run(a);
  std::vector<float> dout(backward ? g.numel() : 0), dq_ref(dout.size()), dk_ref(backward ? g.kv_numel() : 0),
      dv_ref(dk_ref.size());
  if (backward) {
    generate_slice(kDO, 5, g, 0, g.N, dout.data());
    round_all(dt, dout.data(), g.numel());
    single.backward({a, dout.data(), dq_ref.data(), dk_ref.data(), dv_ref.data()});
  }

  const std::vector<TokenRange> held = held_tokens(m.layout, g.N, rank, P);
  int64_t n = 0;
  for (const TokenRange& r : held) n += r.rows;
  const int64_t row = g.H * g.d, kv_row = g.kv_heads() * g.d;
  std::vector<float> ql(g.B * n * row), kl(g.B * n * kv_row), vl(kl.size()), ol(ql.size()), ll(g.B * g.H * n);
  std::vector<int64_t> pos;  // global position of each local row
  for (const TokenRange& r : held)
    for (int64_t i = 0; i < r.rows; ++i) pos.push_back(r.pos0 + i);
  for (int64_t b = 0; b < g.B; ++b)
    for (int64_t i = 0; i < n; ++i) {
      generate_rows(kQ, 5, g, b, pos[i], 1, ql.data() + (b * n + i) * row);
      generate_rows(kK, 5, gk, b, pos[i], 1, kl.data() + (b * n + i) * kv_row);
      generate_rows(kV, 5, gk, b, pos[i], 1, vl.data() + (b * n + i) * kv_row);
    }
  for (auto* t : {&ql, &kl, &vl}) round_all(dt, t->data(), int64_t(t->size()));
  MethodBuffers buffers;
  MethodCall c{g, p, default_scale(g.d), 0, ql.data(), kl.data(), vl.data(), ol.data(), ll.data(), &comm, &buffers, dt};
  c.ulysses = ulysses;
  comm.reset_counters();
  m.run(c);
  Outcome out;
  out.received = comm.counters.total_received();
  out.sent = comm.counters.total_sent();
  for (int64_t b = 0; b < g.B; ++b)
    for (int64_t i = 0; i < n; ++i)
      for (int64_t x = 0; x < row; ++x) {
        const float got = ol[(b * n + i) * row + x], want = o_ref[(b * g.N + pos[i]) * row + x];
        out.o_err = std::max(out.o_err, std::isfinite(got) ? double(std::abs(got - want)) : INFINITY);
      }
  if (m.returns_lse)
    for (int64_t b = 0; b < g.B; ++b)
      for (int64_t h = 0; h < g.H; ++h)
        for (int64_t i = 0; i < n; ++i) {
          const float got = ll[(b * g.H + h) * n + i], want = lse_ref[(b * g.H + h) * g.N + pos[i]];
          if (std::isinf(want) && got == want) continue;
          out.lse_err = std::max(out.lse_err, std::isfinite(got) ? double(std::abs(got - want)) : INFINITY);
        }
  if (backward) {
    std::vector<float> doutl(ql.size()), dql(ql.size()), dkl(kl.size()), dvl(kl.size());
    for (int64_t b = 0; b < g.B; ++b)
      for (int64_t i = 0; i < n; ++i) std::copy_n(dout.data() + (b * g.N + pos[i]) * row, row, doutl.data() + (b * n + i) * row);
    comm.reset_counters();
    m.backward(c, doutl.data(), dql.data(), dkl.data(), dvl.data());
    out.grad_received = comm.counters.total_received();
    double max_ref = 0, err = 0;
    for (const auto* r : {&dq_ref, &dk_ref, &dv_ref})
      for (float x : *r) max_ref = std::max(max_ref, double(std::abs(x)));
    for (auto [got, want, w] : {std::tuple{&dql, &dq_ref, row}, std::tuple{&dkl, &dk_ref, kv_row}, std::tuple{&dvl, &dv_ref, kv_row}})
      for (int64_t b = 0; b < g.B; ++b)
        for (int64_t i = 0; i < n; ++i)
          for (int64_t x = 0; x < w; ++x) {
            const float gv = (*got)[(b * n + i) * w + x], wv = (*want)[(b * g.N + pos[i]) * w + x];
            err = std::max(err, std::isfinite(gv) ? double(std::abs(gv - wv)) : INFINITY);
          }
    out.grad_err = err / std::max(1.0, max_ref);
  }
  return out;
}

// SPEC §3's bytes, as each method's row states them (Method::spec_bytes, in the method's file).
uint64_t formula(const std::string& m, const Pattern& p, const Shape& g, int P, int rank, int ulysses = 0) {
  return find_method(m)->spec_bytes(p, g, P, rank, ulysses);
}

struct DistCase {
  const char* method;
  const char* kernel;  // single-rank kernel it must equal (null: auto)
  json pattern;
  Shape shape;
};

}  // namespace

TEST(Distributed, EqualsSingleRankAndCountsBytesExactly) {
  const int P = g_comm->size();
  // N = 168 is divisible by 2P for P = 1..4 (zig-zag) and by no flash block; H = 12 by 1..4.
  const Shape s12{1, 168, 12, 16}, s1{2, 168, 1, 80}, s_odd{1, 168, 4, 3};
  const std::vector<json> patterns = {
      {{"kind", "full"}},
      {{"kind", "full"}, {"causal", true}},
      {{"kind", "local"}, {"left", 40}, {"right", 7}},
      {{"kind", "local"}, {"left", 50}, {"right", 0}, {"causal", true}},
      {{"kind", "strided"}, {"stride", 9}},
      {{"kind", "fixed"}, {"block", 20}, {"summary", 3}, {"causal", true}},
  };
  // Levels whose segments lie within one rank, straddle shard boundaries, and span all ranks;
  // rates 3 and 5 give head offsets that wrap differently across 12 heads.
  const std::vector<json> dilated = {
      {{"kind", "dilated"}, {"levels", {{11, 1}, {44, 3}, {132, 5}}}},
      {{"kind", "dilated"}, {"levels", {{33, 1}, {66, 2}, {200, 5}}}, {"causal", true}},
      {{"kind", "dilated"}, {"levels", "longnet"}, {"causal", true}},
  };
  std::vector<DistCase> cases;
  for (const Shape& s : {s12, s1, s_odd}) {
    for (const json& p : patterns) {
      if (s.H % P == 0) cases.push_back({"dist-heads", nullptr, p, s});
      if (s.H % P == 0) cases.push_back({"dist-ulysses", nullptr, p, s});
      cases.push_back({"dist-ring", "flash", p, s});
      if (s.N % (2 * P) == 0) cases.push_back({"dist-ring-zigzag", "flash", p, s});
      cases.push_back({"dist-allgather", "flash", p, s});
    }
    for (const json& p : dilated) {
      if (s.H % P == 0) cases.push_back({"dist-heads", nullptr, p, s});
      if (s.H % P == 0) cases.push_back({"dist-ulysses", nullptr, p, s});
      cases.push_back({"dist-dilated", "dilated", p, s});
    }
  }
  for (const DistCase& c : cases) {
    const Pattern p = parse_pattern(c.pattern);
    SCOPED_TRACE(std::string(c.method) + " " + p.name() + " P=" + std::to_string(P) + " B=" +
                 std::to_string(c.shape.B) + " H=" + std::to_string(c.shape.H) + " d=" + std::to_string(c.shape.d));
    const Method& m = *find_method(c.method);
    ASSERT_EQ(m.unsupported(p, c.shape, P, 0), "");
    const Outcome out = run_and_compare(m, c.kernel, p, c.shape);
    EXPECT_LE(out.o_err, 1e-5);
    EXPECT_LE(out.lse_err, 1e-5);
    EXPECT_EQ(out.received, formula(c.method, p, c.shape, P, g_comm->rank()));
  }
}

// bf16: every method computes its local kernels in bf16 (the tile path this CPU has for it) and
// equals the single-rank kernel in bf16 within SPEC §4's 2e-2; messages still carry fp32 containers.
TEST(Distributed, Bf16EqualsSingleRankBf16) {
  const int P = g_comm->size();
  const Shape s{1, 168, 12, 64};
  const std::vector<json> patterns = {
      {{"kind", "full"}, {"causal", true}},
      {{"kind", "local"}, {"left", 50}, {"right", 0}, {"causal", true}},
      {{"kind", "strided"}, {"stride", 9}},
      {{"kind", "dilated"}, {"levels", "longnet"}, {"causal", true}},
  };
  for (const json& pj : patterns) {
    const Pattern p = parse_pattern(pj);
    const bool dilated = p.kind == PatternKind::dilated;
    for (const char* name : {"dist-heads", "dist-ulysses", "dist-ring", "dist-ring-zigzag", "dist-allgather", "dist-dilated"}) {
      if (dilated != (std::string(name) == "dist-dilated") && std::string(name) != "dist-heads" &&
          std::string(name) != "dist-ulysses")
        continue;
      const Method& m = *find_method(name);
      if (!m.unsupported(p, s, P, 0).empty()) continue;
      SCOPED_TRACE(std::string(name) + " " + p.name() + " bf16 P=" + std::to_string(P));
      const bool flash = std::string(name).starts_with("dist-ring") || std::string(name) == "dist-allgather";
      const char* kernel = dilated ? "dilated" : flash ? "flash" : nullptr;
      const Outcome out = run_and_compare(m, kernel, p, s, DType::bf16);
      EXPECT_LE(out.o_err, lse_tolerance(DType::bf16));
      EXPECT_LE(out.lse_err, lse_tolerance(DType::bf16));
      EXPECT_EQ(out.received, formula(name, p, s, P, g_comm->rank()));
    }
  }
}

// SPEC §6: a distributed backward equals the single-rank kernel's on the same inputs and dO, and
// receives the bytes its reversed exchanges carry.
TEST(Distributed, BackwardEqualsSingleRank) {
  const int P = g_comm->size();
  int ran = 0;
  for (const Shape& s : {Shape{1, 168, 12, 16}, Shape{2, 168, 4, 3}}) {
    for (const json& pj : {json{{"kind", "full"}}, json{{"kind", "full"}, {"causal", true}},
                           json{{"kind", "local"}, {"left", 50}, {"right", 0}, {"causal", true}},
                           json{{"kind", "strided"}, {"stride", 9}},
                           json{{"kind", "dilated"}, {"levels", {{33, 1}, {66, 2}, {200, 5}}}, {"causal", true}}}) {
      const Pattern p = parse_pattern(pj);
      for (const char* name :
           {"dist-heads", "dist-ulysses", "dist-allgather", "dist-ring", "dist-ring-zigzag", "dist-dilated"}) {
        const Method& m = *find_method(name);
        if (!m.unsupported(p, s, P, 0).empty()) continue;
        const bool ag = std::string(name) == "dist-allgather", ring = std::string(name).starts_with("dist-ring");
        SCOPED_TRACE(std::string(name) + " " + p.name() + " P=" + std::to_string(P) + " H=" + std::to_string(s.H) +
                     " d=" + std::to_string(s.d));
        const bool dil = std::string(name) == "dist-dilated";
        const Outcome out =
            run_and_compare(m, ag || ring ? "flash" : dil ? "dilated" : nullptr, p, s, DType::fp32, /*backward=*/true);
        EXPECT_LE(out.o_err, 1e-5);
        EXPECT_LE(out.grad_err, 1e-5);
        const uint64_t f = sizeof(float), n = s.N / P, hp = s.H / P;
        // dist-dilated: the forward's exchange again, then reversed (the rows it sent come back as gradients).
        const uint64_t want = dil  ? out.received + out.sent
                              : ring ? (P > 1 ? (4 * (P - 1) + 2) * s.B * n * s.H * s.d * f : 0)
                              : ag                               ? 2 * (P - 1) * s.B * n * s.H * s.d * f
                              : std::string(name) == "dist-heads" ? 3 * (P - 1) * s.B * s.N * hp * s.d * f
                                                                 : 4 * s.B * n * s.H * s.d * (P - 1) / P * f;
        EXPECT_EQ(out.grad_received, want);
        ++ran;
      }
    }
  }
  EXPECT_GE(ran, 5);
}

// GQA and MQA (SPEC §1): H = 8 query heads on H_kv = 1 and 2 KV heads, every dist-* method forward
// and backward against the single-rank kernel on the same grouped inputs (itself checked against
// the oracle in test_kernels), bytes as SPEC §3 counts the KV heads actually sent. On 4 ranks
// Ulysses replicates a KV head over 4 / H_kv ranks.
TEST(Distributed, GroupedQueryEqualsSingleRank) {
  const int P = g_comm->size();
  int ran = 0;
  for (const Shape& s : {Shape{1, 168, 8, 16, 1}, Shape{2, 120, 8, 5, 2}}) {
    for (const json& pj : {json{{"kind", "full"}, {"causal", true}}, json{{"kind", "local"}, {"left", 30}, {"right", 9}},
                           json{{"kind", "strided"}, {"stride", 9}},
                           json{{"kind", "dilated"}, {"levels", {{30, 1}, {60, 3}, {120, 6}}}, {"causal", true}}}) {
      const Pattern p = parse_pattern(pj);
      for (const char* name : {"dist-heads", "dist-ulysses", "dist-allgather", "dist-ring", "dist-ring-zigzag",
                               "dist-usp", "dist-dilated"}) {
        const Method& m = *find_method(name);
        if (!m.unsupported(p, s, P, 0).empty()) continue;
        SCOPED_TRACE(std::string(name) + " " + p.name() + " P=" + std::to_string(P) + " H_kv=" + std::to_string(s.H_kv));
        const Outcome out = run_and_compare(m, p.kind == PatternKind::dilated ? "dilated" : "flash", p, s, DType::fp32, true);
        EXPECT_LE(out.o_err, 1e-5);
        EXPECT_LE(out.lse_err, 1e-5);
        EXPECT_LE(out.grad_err, 1e-5);
        EXPECT_EQ(out.received, formula(name, p, s, P, g_comm->rank()));
        ++ran;
      }
    }
  }
  EXPECT_GE(ran, P == 3 ? 8 : 20);  // on 3 ranks only the dilated methods and the rings divide 8 heads... or N
}

// dist-usp on every factorisation u x P/u of the ranks, forward and backward, causal included (zig-zag
// in the ring dimension), against flash on one rank; bytes equal SPEC §3 for the forward, and the
// backward's reversed exchanges: dO out and dQ, dK, dV back in the groups, the ring's backward across.
TEST(Distributed, UspEveryFactorisationEqualsSingleRank) {
  const int P = g_comm->size();
  int ran = 0;
  for (const Shape& s : {Shape{1, 168, 12, 16}, Shape{2, 120, 4, 7, 2}}) {
    for (const json& pj : {json{{"kind", "full"}}, json{{"kind", "full"}, {"causal", true}},
                           json{{"kind", "local"}, {"left", 40}, {"right", 0}, {"causal", true}},
                           json{{"kind", "strided"}, {"stride", 9}}}) {
      const Pattern p = parse_pattern(pj);
      for (int u = 1; u <= P; ++u) {
        if (P % u != 0) continue;
        const Method& m = *find_method("dist-usp");
        if (!m.unsupported(p, s, P, u).empty()) continue;
        SCOPED_TRACE(p.name() + " P=" + std::to_string(P) + " u=" + std::to_string(u) + " H=" + std::to_string(s.H) +
                     " H_kv=" + std::to_string(s.kv_heads()));
        const Outcome out = run_and_compare(m, "flash", p, s, DType::fp32, true, u);
        EXPECT_LE(out.o_err, 1e-5);
        EXPECT_LE(out.lse_err, 1e-5);
        EXPECT_LE(out.grad_err, 1e-5);
        EXPECT_EQ(out.received, formula("dist-usp", p, s, P, g_comm->rank(), u));
        const uint64_t f = sizeof(float), R = P / u, m_rows = s.N / P, hp = s.H / u;
        const uint64_t kvp = split_heads(s, u, 0).kvp;
        const uint64_t ulysses_back = (u - 1) * s.B * m_rows * (2 * hp + 2 * kvp) * s.d * f;
        const uint64_t ring_back = R > 1 ? (4 * (R - 1) + 2) * s.B * (s.N / R) * kvp * s.d * f : 0;
        EXPECT_EQ(out.grad_received, ulysses_back + ring_back);
        ++ran;
      }
    }
  }
  EXPECT_GE(ran, 8);
  // The default degree: the largest dividing both P and H_kv.
  EXPECT_EQ(usp_degree(Shape{1, 8, 8, 4, 2}, 4, 0), 2);
  EXPECT_EQ(usp_degree(Shape{1, 8, 8, 4}, 4, 0), 4);
  EXPECT_EQ(usp_degree(Shape{1, 8, 8, 4, 1}, 4, 0), 1);
}

TEST(Distributed, DilatedLevelsSpanningSeveralRanksReallyCommunicate) {
  // Guard against a formula and an algorithm that agree on zero: with P > 1 and a level spanning
  // the whole sequence, every rank must receive something.
  const int P = g_comm->size();
  if (P == 1) GTEST_SKIP() << "one rank: nothing to exchange";
  const Shape s{1, 132, 4, 16};
  const Pattern p = parse_pattern(json{{"kind", "dilated"}, {"levels", {{132, 2}}}});
  const Outcome out = run_and_compare(*find_method("dist-dilated"), "dilated", p, s);
  EXPECT_GT(out.received, 0u);
  EXPECT_LE(out.o_err, 1e-5);
}

TEST(Distributed, ShapeViolationsAreNamed) {
  const int P = g_comm->size();
  if (P == 1) GTEST_SKIP() << "every shape divides by one rank";
  const Pattern full = parse_pattern(json{{"kind", "full"}});
  const Shape bad_h{1, 12 * P, P + 1, 16}, bad_n{1, P * 10 + 1, P, 16};
  EXPECT_NE(find_method("dist-heads")->unsupported(full, bad_h, P, 0).find("shape: H = "), std::string::npos);
  EXPECT_NE(find_method("dist-ring")->unsupported(full, bad_n, P, 0).find("shape: N = "), std::string::npos);
  EXPECT_NE(find_method("dist-ulysses")->unsupported(full, bad_h, P, 0).find("shape: H = "), std::string::npos);
  // GQA and USP: H_kv not dividing H; a Ulysses degree not dividing P; H_kv and the degree not
  // dividing one another (H = 12, H_kv = 3 on 2 or 4 ranks).
  const Shape bad_kv{1, 24 * P, 8, 16, 3}, kv3{1, 24 * P, 12, 16, 3};
  for (const char* name : {"dist-heads", "dist-ulysses", "dist-ring", "dist-allgather", "dist-dilated", "dist-usp"})
    EXPECT_NE(find_method(name)->unsupported(full, bad_kv, P, 0).find("shape: H_kv = 3 does not divide H = 8"),
              std::string::npos) << name;
  EXPECT_NE(find_method("dist-usp")->unsupported(full, Shape{1, 24 * P, 12, 16}, P, P + 1).find("ulysses = "),
            std::string::npos);
  if (P % 3 != 0) {
    EXPECT_NE(find_method("dist-usp")->unsupported(full, kv3, P, P).find("do not divide one another"), std::string::npos);
  }
}

TEST(Communicator, ReductionsAndCountsAgreeAcrossRanks) {
  Communicator& c = *g_comm;
  const int P = c.size(), r = c.rank();
  double v[2] = {double(r), double(r + 1)};
  c.max(v, 2);
  EXPECT_EQ(v[0], P - 1);
  EXPECT_EQ(c.sum(1.0), P);
  c.reset_counters();
  std::vector<int> mine(3, r), all(3 * P);
  c.all_gather(mine.data(), 3 * sizeof(int), all.data());
  for (int q = 0; q < P; ++q) EXPECT_EQ(all[3 * q], q);
  EXPECT_EQ(c.counters.total_received(), uint64_t(3 * sizeof(int) * (P - 1)));
  // Variable sizes: rank q sends q + 1 ints.
  std::vector<size_t> counts;
  size_t total = 0;
  for (int q = 0; q < P; ++q) counts.push_back((q + 1) * sizeof(int)), total += (q + 1);
  std::vector<int> send(r + 1, r * 10), recv(total);
  c.all_gather_v(send.data(), counts, recv.data());
  EXPECT_EQ(recv.back(), (P - 1) * 10);
  // Ring exchange.
  int out = r, in = -1;
  auto ex = c.start_send_recv(&out, sizeof out, (r + 1) % P, &in, sizeof in, (r - 1 + P) % P);
  ex->wait();
  EXPECT_EQ(in, (r - 1 + P) % P);
}

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  auto comm = make_world_communicator(&argc, &argv);
  g_comm = comm.get();
  // Only rank 0 prints; every rank runs every test, and a failure on any rank fails the job.
  if (comm->rank() != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  int rc = RUN_ALL_TESTS();
  const double worst = comm->max(static_cast<double>(rc));
  comm.reset();
  return worst != 0 ? 1 : 0;
}

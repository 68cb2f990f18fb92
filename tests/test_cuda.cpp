// The CUDA kernels against the CPU oracle, and the NCCL communicator on one rank.
// Bounds (SPEC §4), in max |O - O_ref| and max |LSE - LSE_ref| against the double-precision oracle:
//   fp32 inputs:       O within 1e-4 max(1, max|V|), LSE within 1e-4;
//   bf16/fp16 inputs:  O within 2e-2 max(1, max|V|), LSE within 2e-2 (fp32 accumulation).
// Without a GPU every test that needs one calls GTEST_SKIP() with the reason. Three groups need no
// device and always run: the device copy of the pattern against Pattern, the tile kernel's
// grid-to-rows mapping against the CPU dilated kernel's segments, and the static support checks.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <tuple>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "kernels/backward.h"
#include "kernels/cuda/cuda_attention.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device_pattern.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/tile_attention.h"
#include "kernels/dilated_cpu.h"
#include "kernels/input_error.h"
#include "kernels/registry.h"
#include "suite/method.h"
#include "tests/check.h"

#ifdef LONGATTN_HAVE_NCCL
#include <cuda_runtime_api.h>

#include "comm/nccl_comm.h"
#endif

using namespace longattn;
using nlohmann::json;

#define SKIP_WITHOUT_GPU()                                 \
  do {                                                     \
    std::string why_no_gpu;                                \
    if (!cuda_available(&why_no_gpu)) GTEST_SKIP() << why_no_gpu; \
  } while (0)

namespace {

// The CUDA rows of the kernel table, as the harness reaches them.
const Kernel& gpu_kernel(const std::string& name) {
  const Kernel* k = find_kernel(name, Device::cuda);
  if (!k) throw std::logic_error("no CUDA kernel " + name);
  return *k;
}
std::string unsupported(const std::string& name, const Pattern& p, const Shape& s, DType t) {
  return gpu_kernel(name).unsupported(p, s, t);
}
std::vector<double> timed(const std::string& name, AttentionArgs a, DType t, int warmup, int iterations) {
  a.dtype = t;
  return gpu_kernel(name).time_on_device(a, {warmup, iterations, true});
}

std::vector<Pattern> patterns() {
  return test::with_and_without_causal({
      {{"kind", "full"}},
      {{"kind", "local"}, {"left", 5}, {"right", 3}},
      {{"kind", "local"}, {"left", 70}, {"right", 0}},
      {{"kind", "local"}, {"left", 100}, {"right", 30}},
      {{"kind", "strided"}, {"stride", 4}},
      {{"kind", "strided"}, {"stride", 70}},
      {{"kind", "fixed"}, {"block", 8}, {"summary", 2}},
      {{"kind", "fixed"}, {"block", 64}, {"summary", 16}},
      {{"kind", "fixed"}, {"block", 100}, {"summary", 7}},
      {{"kind", "dilated"}, {"levels", {{8, 1}, {16, 2}}}},
      {{"kind", "dilated"}, {"levels", {{8, 2}, {40, 4}, {1000, 3}}}},  // w > N; unkept queries
      {{"kind", "dilated"}, {"levels", {{16, 3}}}},                       // most queries see nothing
      {{"kind", "dilated"}, {"levels", {{64, 1}, {128, 2}, {300, 4}}}},  // segments across tiles
      {{"kind", "dilated"}, {"levels", "longnet"}},
  });
}

// N = 1; N not a multiple of the 64-row tiles; one head; twelve heads (dilated offsets h mod r
// wrap); d = 64 and 128 (the tile kernels), plus odd head dims only vanilla takes.
const Shape kShapes[] = {
    {1, 1, 1, 64}, {1, 67, 12, 64}, {2, 130, 3, 128}, {1, 200, 1, 128}, {1, 257, 2, 64}, {1, 45, 5, 17}, {1, 129, 2, 3},
};

const DType kDTypes[] = {DType::fp32, DType::bf16, DType::fp16};

struct Bounds {
  double o, lse;
};
Bounds bounds(DType t, const std::vector<float>& v) {
  const DType d = t == DType::fp32 ? DType::fp32 : t == DType::bf16 ? DType::bf16 : DType::fp16;
  return {o_tolerance(d, test::max_abs(v)), lse_tolerance(d)};
}

std::string label(const std::string& kernel, DType t, const Pattern& p, const Shape& s) {
  return kernel + " " + dtype_name(t) + " " + p.name() + " B=" + std::to_string(s.B) + " N=" +
         std::to_string(s.N) + " H=" + std::to_string(s.H) + " d=" + std::to_string(s.d);
}

// Runs every CUDA kernel and dtype that supports (p, a.shape) and checks it against the oracle.
// Returns how many ran.
int check_all_kernels(const test::Problem& prob, const Pattern& p, int64_t head0 = 0) {
  std::vector<float> o_ref, lse_ref;
  AttentionArgs ref = prob.args(p, o_ref, lse_ref);
  ref.head0 = head0;
  reference_attention(ref);
  int ran = 0;
  for (const Kernel& row : kernels()) {
    if (row.device != Device::cuda) continue;
    const std::string kernel = row.name;
    for (DType t : kDTypes) {
      if (!unsupported(kernel, p, prob.shape, t).empty()) continue;
      SCOPED_TRACE(label(kernel, t, p, prob.shape) + " head0=" + std::to_string(head0));
      std::vector<float> o, lse;
      AttentionArgs a = prob.args(p, o, lse);
      a.head0 = head0;
      EXPECT_EQ(timed(kernel, a, t, /*warmup=*/0, /*iterations=*/1).size(), 1u);
      const test::Errors e = test::compare(o, lse, o_ref, lse_ref);
      const Bounds b = bounds(t, prob.v);
      EXPECT_LE(e.o, b.o);
      EXPECT_LE(e.lse, b.lse);
      ++ran;
    }
  }
  return ran;
}

}  // namespace

// ---- no device needed ----

TEST(CudaHostSide, DevicePatternMirrorsPattern) {
  for (const Pattern& p : patterns()) {
    for (int64_t n : {1, 7, 40, 67, 130}) {
      SCOPED_TRACE(p.name() + " n=" + std::to_string(n));
      const DevicePattern d = device_pattern(p, n);
      const int levels = p.level_count(n);
      ASSERT_EQ(d.base.kind == PatternKind::dilated ? d.levels : 1, levels);
      for (int64_t h = 0; h < 13; ++h)
        for (int64_t i = 0; i < n; ++i)
          for (int64_t j = 0; j < n; ++j) {
            int m = 0;
            for (int l = 0; l < levels; ++l) {
              const bool c = p.contains(l, h, i, j, n);
              m += c;
              ASSERT_EQ(d.contains(l, h, i, j, n), c) << "level " << l << " h=" << h << " i=" << i << " j=" << j;
            }
            ASSERT_EQ(d.multiplicity(h, i, j, n), m) << "h=" << h << " i=" << i << " j=" << j;
          }
      if (p.kind == PatternKind::dilated) continue;  // classify, key_range: single-level patterns only
      for (int64_t bs : {1, 3, 16, 64})
        for (int64_t i0 = 0; i0 < n; i0 += bs) {
          const int64_t i1 = std::min(n, i0 + bs);
          for (int64_t j0 = 0; j0 < n; j0 += bs) {
            const int64_t j1 = std::min(n, j0 + bs);
            ASSERT_EQ(static_cast<int>(d.classify(i0, i1, j0, j1)), static_cast<int>(p.classify(i0, i1, j0, j1)))
                << "block [" << i0 << "," << i1 << ") x [" << j0 << "," << j1 << ")";
          }
          int64_t k0 = -1, k1 = -1;
          d.key_range(i0, i1, n, &k0, &k1);
          ASSERT_TRUE(0 <= k0 && k1 <= n) << "[" << k0 << "," << k1 << ")";
          for (int64_t i = i0; i < i1; ++i)
            for (int64_t j = 0; j < n; ++j)
              if (p.contains(0, 0, i, j, n)) {
                ASSERT_TRUE(k0 <= j && j < k1) << "i=" << i << " j=" << j << " outside [" << k0 << "," << k1 << ")";
              }
        }
    }
  }
}

TEST(CudaHostSide, TileViewCoversEveryKeptQueryOnce) {
  // The grid of the tile kernel, block by block, against the CPU kernel's segments: the same
  // segments, and every kept query of every level, head and batch in exactly one block.
  const Shape s{2, 300, 5, 64};
  for (int64_t head0 : {0, 7}) {
    for (const Pattern& p : patterns()) {
      if (p.kind != PatternKind::dilated) continue;
      for (const DilatedLevel& lv : p.dilated_levels(s.N)) {
        SCOPED_TRACE(p.name() + " level (" + std::to_string(lv.w) + "," + std::to_string(lv.r) + ") head0=" +
                     std::to_string(head0));
        const cuda::TileView view{s.B, s.H, s.N, s.d, lv.w, lv.r, head0};
        std::map<int64_t, int> covered;  // (b, h, position) -> times
        std::set<std::tuple<int64_t, int64_t, int64_t>> segments;  // (h, first, count)
        for (int64_t blk = 0; blk < view.blocks(); ++blk) {
          const cuda::TileTask t = cuda::tile_task(view, blk);
          if (!t.valid) continue;
          segments.insert({t.h, t.first, t.count});
          for (int64_t q = t.t0; q < std::min(t.count, t.t0 + cuda::kTileQ); ++q)
            ++covered[(t.b * s.H + t.h) * s.N + t.first + q * lv.r];
        }
        std::map<int64_t, int> expected;
        std::set<std::tuple<int64_t, int64_t, int64_t>> expected_segments;
        for (int64_t b = 0; b < s.B; ++b)
          for (int64_t h = 0; h < s.H; ++h)
            for (const DilatedSegment& seg : dilated_segments(lv, head0 + h, 0, s.N, s.N)) {
              expected_segments.insert({h, seg.first, seg.count});
              for (int64_t t = 0; t < seg.count; ++t) ++expected[(b * s.H + h) * s.N + seg.first + t * lv.r];
            }
        EXPECT_EQ(segments, expected_segments);
        EXPECT_EQ(covered, expected);
      }
    }
  }
  // flash's view: one segment of N tokens, rate 1: every position exactly once.
  const cuda::TileView flash{s.B, s.H, s.N, s.d, s.N, 1, 3};
  std::vector<int> seen(s.B * s.H * s.N, 0);
  for (int64_t blk = 0; blk < flash.blocks(); ++blk) {
    const cuda::TileTask t = cuda::tile_task(flash, blk);
    ASSERT_TRUE(t.valid);
    EXPECT_EQ(t.first, 0);
    EXPECT_EQ(t.count, s.N);
    for (int64_t q = t.t0; q < std::min(t.count, t.t0 + cuda::kTileQ); ++q) ++seen[(t.b * s.H + t.h) * s.N + q];
  }
  for (int x : seen) ASSERT_EQ(x, 1);
}

// A view launch as the tile kernel runs it, on the CPU: each thread block's job (view_job) cut to
// its 64-query tile, as an attention step block over the problem's fp32 tensors under the
// launch's mask, merged into o and lse.
void emulate(const cuda::ViewLaunch& l, const test::Problem& prob, std::vector<float>& o, std::vector<float>& lse) {
  AttentionStep step;
  step.d = prob.shape.d;
  step.scale = default_scale(prob.shape.d);
  static_cast<PatternParams&>(step.mask) = l.mask;
  for (int64_t blk = 0; blk < l.view.blocks(); ++blk) {
    StepBlock j;
    int64_t t0 = 0;
    if (!cuda::view_job(l.view, prob.q.data(), prob.k.data(), prob.v.data(), o.data(), lse.data(), blk, j, t0)) continue;
    j.q = static_cast<const float*>(j.q) + t0 * j.q_stride;
    j.nq = std::min(cuda::kTileQ, j.nq - t0);
    j.q_pos0 += t0;
    j.o += t0 * j.o_stride;
    j.lse += t0 * j.lse_stride;
    step.blocks.push_back(j);
  }
  attention_step(step);
}

// fixed's summary launches as the tile kernel runs them, on the CPU: the gather's copies on host
// memory, then each thread block's job (summary_job) as an unmasked attention step block.
void emulate(const std::vector<cuda::SummaryView>& views, const test::Problem& prob, std::vector<float>& o,
             std::vector<float>& lse) {
  if (views.empty()) return;
  const int64_t S = views[0].summary_count(), row = prob.shape.H * prob.shape.d;
  std::vector<float> ks(prob.shape.B * S * row, std::nanf("")), vs(ks.size(), std::nanf(""));
  for (const cuda::Copy2D& x : cuda::summary_gather(views[0], sizeof(float)))
    for (auto [src, dst] : {std::pair{&prob.k, &ks}, std::pair{&prob.v, &vs}})
      for (size_t r = 0; r < x.rows; ++r)
        std::memcpy(reinterpret_cast<char*>(dst->data()) + x.dst + r * x.dst_pitch,
                    reinterpret_cast<const char*>(src->data()) + x.src + r * x.src_pitch, x.width);
  for (const cuda::SummaryView& v : views) {
    AttentionStep step;
    step.d = prob.shape.d;
    step.scale = default_scale(prob.shape.d);  // mask: full, not causal
    for (int64_t blk = 0; blk < v.blocks(); ++blk) {
      StepBlock j;
      int64_t t0 = 0;
      if (!cuda::summary_job(v, prob.q.data(), ks.data(), vs.data(), o.data(), lse.data(), blk, j, t0)) continue;
      j.q = static_cast<const float*>(j.q) + t0 * j.q_stride;
      j.nq = std::min(cuda::kTileQ, j.nq - t0);
      j.o += t0 * j.o_stride;
      j.lse += t0 * j.lse_stride;
      step.blocks.push_back(j);
    }
    attention_step(step);
  }
}

TEST(CudaHostSide, FlashLaunchesComputeThePattern) {
  // flash's launches on the GPU (one view, or strided's band and residue classes), run block by
  // block on the CPU's attention step: together they are the pattern, each pair once.
  int ran = 0;
  for (const Shape& s : {Shape{2, 130, 3, 64}, Shape{1, 200, 2, 128}}) {
    const test::Problem prob(s, 5 + s.N);
    for (const Pattern& p : test::with_and_without_causal({{{"kind", "full"}},
                                                           {{"kind", "local"}, {"left", 70}, {"right", 5}},
                                                           {{"kind", "strided"}, {"stride", 1}},
                                                           {{"kind", "strided"}, {"stride", 4}},
                                                           {{"kind", "strided"}, {"stride", 50}},
                                                           {{"kind", "strided"}, {"stride", 64}},
                                                           {{"kind", "strided"}, {"stride", 300}},
                                                           {{"kind", "fixed"}, {"block", 8}, {"summary", 2}},
                                                           {{"kind", "fixed"}, {"block", 100}, {"summary", 7}},
                                                           {{"kind", "fixed"}, {"block", 64}, {"summary", 64}}})) {
      SCOPED_TRACE(p.name() + " N=" + std::to_string(s.N));
      std::vector<float> o_ref, lse_ref, o(s.numel(), 0.0f), lse(s.B * s.H * s.N, -INFINITY);
      reference_attention(prob.args(p, o_ref, lse_ref));
      const auto launches = cuda::flash_launches(s.B, s.N, s.H, s.d, p, 0);
      for (size_t i = 0; i < launches.size(); ++i) {
        EXPECT_EQ(launches[i].merge, i > 0);  // the first writes, the rest merge
        emulate(launches[i], prob, o, lse);
      }
      emulate(cuda::summary_views(s.B, s.N, s.H, s.d, p), prob, o, lse);
      EXPECT_EQ(launches.size(), p.kind != PatternKind::strided ? 1u : p.causal ? 2u : 3u);
      const test::Errors e = test::compare(o, lse, o_ref, lse_ref);
      EXPECT_LE(e.o, test::o_tolerance_fp32(prob.v));
      EXPECT_LE(e.lse, test::kLseToleranceFp32);
      ++ran;
    }
  }
  EXPECT_EQ(ran, 2 * 20);
}

TEST(CudaHostSide, UnsupportedNamesTheReasonBeforeLookingForADevice) {
  const Pattern full = parse_pattern(json{{"kind", "full"}});
  const Pattern dil = parse_pattern(json{{"kind", "dilated"}, {"levels", "longnet"}});
  const Shape s{1, 128, 2, 64};
  EXPECT_EQ(find_kernel("nope", Device::cuda), nullptr);
  EXPECT_EQ(kernel_names(Device::cuda), "dilated, flash, vanilla");
  EXPECT_NE(unsupported("flash", full, s, DType::fp32).find("fp32"), std::string::npos);
  EXPECT_NE(unsupported("flash", full, Shape{1, 128, 2, 80}, DType::bf16).find("64 and 128"),
            std::string::npos);
  EXPECT_NE(unsupported("flash", dil, s, DType::bf16).find("single-level"), std::string::npos);
  EXPECT_NE(unsupported("dilated", full, s, DType::bf16).find("dilated patterns only"), std::string::npos);
  EXPECT_NE(unsupported("dilated", dil, s, DType::fp32).find("fp32"), std::string::npos);
  // A case every kernel takes: empty exactly when a device is here, the device's absence otherwise.
  std::string why;
  const bool gpu = cuda_available(&why);
  for (const char* k : {"vanilla", "flash"}) {
    const std::string no = unsupported(k, full, s, DType::bf16);
    EXPECT_EQ(no, gpu ? "" : why) << k;
  }
  EXPECT_EQ(unsupported("dilated", dil, s, DType::fp16), gpu ? "" : why);
  if (!gpu) {
    EXPECT_FALSE(why.empty());
    EXPECT_EQ(cuda_device_description(), "");
    std::vector<float> o, lse;
    const test::Problem prob(s, 1);
    EXPECT_THROW(timed("flash", prob.args(full, o, lse), DType::bf16, 0, 1), InputError);
  }
}

// ---- on a GPU ----

TEST(Cuda, DeviceIsDescribed) {
  SKIP_WITHOUT_GPU();
  const std::string d = cuda_device_description();
  std::printf("device: %s\n", d.c_str());
  EXPECT_NE(d.find("SM clock"), std::string::npos);
}

TEST(Cuda, EveryKernelMatchesTheOracle) {
  SKIP_WITHOUT_GPU();
  int ran = 0;
  for (const Shape& s : kShapes) {
    const test::Problem prob(s, 4321 + s.N * 7 + s.d);
    for (const Pattern& p : patterns()) ran += check_all_kernels(prob, p);
  }
  EXPECT_GT(ran, 200);  // every kernel x dtype x supported pattern x shape, not a vacuous pass
}

TEST(Cuda, DilatedOffsetsUseTheGlobalHead) {
  SKIP_WITHOUT_GPU();
  // Heads 5, 6, 7 of a larger model: offsets (5 + h) mod r, not h mod r.
  const test::Problem prob(Shape{1, 150, 3, 64}, 99);
  for (json levels : {json{{16, 3}, {64, 4}}, json{{150, 6}}}) {
    for (bool causal : {false, true}) {
      const Pattern p = parse_pattern(json{{"kind", "dilated"}, {"levels", levels}, {"causal", causal}});
      // dilated in bf16 and fp16, vanilla in fp32, bf16 and fp16
      EXPECT_EQ(check_all_kernels(prob, p, /*head0=*/5), 5) << p.name();
    }
  }
}

TEST(Cuda, LongerSequencesSkipEmptyBlocksCorrectly) {
  SKIP_WITHOUT_GPU();
  // Many 64-key blocks: empty, full and partial ones all occur, and LongNet's first level (2048, 1)
  // has a segment boundary inside the sequence.
  const test::Problem prob(Shape{1, 2100, 2, 128}, 5);
  for (json spec : {json{{"kind", "local"}, {"left", 256}, {"right", 0}, {"causal", true}},
                    json{{"kind", "fixed"}, {"block", 128}, {"summary", 8}},
                    json{{"kind", "strided"}, {"stride", 128}, {"causal", true}},
                    json{{"kind", "dilated"}, {"levels", "longnet"}, {"causal", true}}}) {
    EXPECT_GT(check_all_kernels(prob, parse_pattern(spec)), 0) << spec.dump();
  }
}

TEST(Cuda, EmptySetGivesZeroOutputAndMinusInfinityLse) {
  SKIP_WITHOUT_GPU();
  const Shape s{1, 40, 1, 64};
  const test::Problem prob(s, 7);
  const Pattern p = parse_pattern(json{{"kind", "dilated"}, {"levels", {{16, 3}}}});
  for (const char* kernel : {"dilated", "vanilla"}) {
    std::vector<float> o, lse;
    timed(kernel, prob.args(p, o, lse), DType::bf16, 0, 1);
    for (int64_t i = 0; i < s.N; ++i) {
      const bool kept = (i % 16) % 3 == 0;
      EXPECT_EQ(std::isinf(lse[i]) && lse[i] < 0, !kept) << kernel << " i=" << i;
      if (!kept) {
        for (int64_t c = 0; c < s.d; ++c) ASSERT_EQ(o[i * s.d + c], 0.0f) << kernel << " i=" << i;
      }
    }
  }
}

TEST(Cuda, AttentionStepsOverSplitKeysMatchTheOracle) {
  // The device's attention step, as the CPU test runs it (tests/test_kernels.cpp): two steps over a
  // split of the keys, two query blocks per head, merged into zeroed accumulators in device memory.
  SKIP_WITHOUT_GPU();
  int ran = 0;
  for (const Shape& s : {Shape{1, 200, 2, 64}, Shape{2, 67, 3, 128}}) {
    const test::Problem prob(s, 31 + s.N);
    const size_t n = s.numel(), n_lse = s.B * s.H * s.N;
    for (const Pattern& p : test::with_and_without_causal({{{"kind", "full"}},
                                                           {{"kind", "local"}, {"left", 70}, {"right", 5}},
                                                           {{"kind", "strided"}, {"stride", 7}}})) {
      std::vector<float> o_ref, lse_ref;
      reference_attention(prob.args(p, o_ref, lse_ref));
      for (DType t : {DType::bf16, DType::fp16}) {
        SCOPED_TRACE(label("step", t, p, s));
        // fp32 containers of the dtype's values, as the distributed methods hold them
        cuda::DeviceBuffer q(n * sizeof(float)), k(n * sizeof(float)), v(n * sizeof(float)), o(n * sizeof(float)),
            lse(n_lse * sizeof(float));
        for (auto [dst, src] : {std::pair{&q, &prob.q}, std::pair{&k, &prob.k}, std::pair{&v, &prob.v}}) {
          std::vector<float> rounded = *src;
          round_all(t, rounded.data(), rounded.size());
          LONGATTN_CUDA_CHECK(cudaMemcpy(dst->get(), rounded.data(), n * sizeof(float), cudaMemcpyHostToDevice));
        }
        LONGATTN_CUDA_CHECK(cudaMemset(o.get(), 0, o.bytes()));
        cuda::launch_fill(lse.get<float>(), int64_t(n_lse), -INFINITY, nullptr);
        const int64_t k_cut = s.N / 2, q_cut = s.N / 3;
        for (auto [k0, k1] : {std::pair{int64_t{0}, k_cut}, std::pair{k_cut, s.N}}) {
          AttentionStep step = test::split_step(s, p, q.get(), k.get(), v.get(), 2, o.get<float>(), lse.get<float>(),
                                                k0, k1, q_cut);
          step.device = Device::cuda, step.dtype = t;
          attention_step(step);
        }
        std::vector<float> oh(n), lh(n_lse);
        LONGATTN_CUDA_CHECK(cudaMemcpy(oh.data(), o.get(), o.bytes(), cudaMemcpyDeviceToHost));
        LONGATTN_CUDA_CHECK(cudaMemcpy(lh.data(), lse.get(), lse.bytes(), cudaMemcpyDeviceToHost));
        const test::Errors e = test::compare(oh, lh, o_ref, lse_ref);
        const Bounds b = bounds(t, prob.v);
        EXPECT_LE(e.o, b.o);
        EXPECT_LE(e.lse, b.lse);
        ++ran;
      }
    }
  }
  EXPECT_EQ(ran, 24);
}

TEST(CudaHostSide, AttentionStepRefusesWhatTheTileKernelCannotRun) {
  AttentionStep step;
  step.device = Device::cuda;
  step.d = 64;
  step.dtype = DType::fp32;
  EXPECT_THROW(attention_step(step), InputError);  // fp32: tensor cores take bf16/fp16
  step.dtype = DType::bf16;
  step.d = 80;
  EXPECT_THROW(attention_step(step), InputError);
}

TEST(Cuda, TimingGivesOneSamplePerIterationAndOutputWithoutAny) {
  SKIP_WITHOUT_GPU();
  const Shape s{1, 256, 4, 64};
  const test::Problem prob(s, 11);
  const Pattern p = parse_pattern(json{{"kind", "full"}, {"causal", true}});
  std::vector<float> o, lse;
  const std::vector<double> r = timed("flash", prob.args(p, o, lse), DType::bf16, 2, 5);
  ASSERT_EQ(r.size(), 5u);
  for (double ms : r) EXPECT_GT(ms, 0.0);
  std::vector<float> o0, lse0;
  const std::vector<double> none = timed("flash", prob.args(p, o0, lse0), DType::bf16, 0, 0);
  EXPECT_TRUE(none.empty());
  EXPECT_EQ(o0, o);  // deterministic: same kernel, same inputs
}

TEST(CudaHostSide, BackwardRowsAndTheirLimits) {
  // flash and dilated have a device backward; vanilla has none; the backward names what it cannot take.
  for (const Kernel& row : kernels())
    if (row.device == Device::cuda) {
      const bool tiles = std::string(row.name) != "vanilla";
      EXPECT_EQ(row.backward != nullptr, tiles) << row.name;
      EXPECT_EQ(row.time_backward_on_device != nullptr, tiles) << row.name;
    }
  const Pattern full = parse_pattern(json{{"kind", "full"}});
  EXPECT_EQ(cuda_backward_unsupported(full, Shape{1, 64, 1, 128}), "");
  EXPECT_NE(cuda_backward_unsupported(full, Shape{1, 64, 1, 129}).find("d = 129"), std::string::npos);
}

TEST(Cuda, BackwardMatchesTheOracle) {
  // SPEC §6 on the device: dQ, dK, dV from the device forward's O and LSE, against the float64
  // oracle's gradients of the same (rounded) inputs, within the bf16/fp16 bound 2e-2 max(1, max|ref|):
  // N off the tiles, one and twelve heads, d = 64 and 128, every pattern family, empty rows.
  SKIP_WITHOUT_GPU();
  int ran = 0;
  for (const Shape& s : {Shape{1, 67, 12, 64}, Shape{2, 130, 3, 128}, Shape{1, 257, 1, 64}}) {
    for (const Pattern& p : patterns()) {
      for (const Kernel& row : kernels()) {
        if (row.device != Device::cuda || !row.time_backward_on_device) continue;
        for (DType t : {DType::bf16, DType::fp16}) {
          if (!row.unsupported(p, s, t).empty()) continue;
          SCOPED_TRACE(label(row.name, t, p, s));
          test::Problem prob(s, 17 + s.N), grad(s, 23 + s.N);  // grad.q is dO
          for (std::vector<float>* x : {&prob.q, &prob.k, &prob.v, &grad.q}) round_all(t, x->data(), s.numel());
          std::vector<float> o_ref, lse_ref, dq_ref(s.numel()), dk_ref(s.numel()), dv_ref(s.numel());
          reference_backward({prob.args(p, o_ref, lse_ref), grad.q.data(), dq_ref.data(), dk_ref.data(), dv_ref.data()});
          std::vector<float> o, lse, dq(s.numel(), NAN), dk(s.numel(), NAN), dv(s.numel(), NAN);
          AttentionArgs a = prob.args(p, o, lse);
          a.dtype = t;
          row.time_on_device(a, {0, 1, true});
          round_all(t, o.data(), s.numel());
          EXPECT_EQ(row.time_backward_on_device({a, grad.q.data(), dq.data(), dk.data(), dv.data()}, {1, 2, false}).size(), 2u);
          const double bound = grad_tolerance(t, std::max({test::max_abs(dq_ref), test::max_abs(dk_ref),
                                                            test::max_abs(dv_ref)}));
          for (auto [x, r, name] : {std::tuple{&dq, &dq_ref, "dQ"}, std::tuple{&dk, &dk_ref, "dK"},
                                    std::tuple{&dv, &dv_ref, "dV"}}) {
            double err = 0;
            for (size_t i = 0; i < x->size(); ++i)
              err = std::max(err, std::isfinite((*x)[i]) ? std::abs(double((*x)[i]) - (*r)[i]) : INFINITY);
            EXPECT_LE(err, bound) << name;
          }
          ++ran;
        }
      }
    }
  }
  EXPECT_GT(ran, 100);  // flash on the single-level patterns, dilated on the dilated ones, two dtypes, three shapes
}

TEST(Cuda, MemoryMovesMatchTheHosts) {
  SKIP_WITHOUT_GPU();
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  EXPECT_EQ(test::memory_script({Device::cuda, stream}), test::memory_script_expected);
  cudaStreamDestroy(stream);
}

TEST(Cuda, NcclCommunicatorOnOneRank) {
  SKIP_WITHOUT_GPU();
#ifndef LONGATTN_HAVE_NCCL
  GTEST_SKIP() << "built without NCCL (needs nccl.h and libnccl at configure time)";
#else
  auto comm = make_nccl_communicator();
  ASSERT_STREQ(comm->kind(), "nccl");
  EXPECT_TRUE(comm->device_buffers());
  EXPECT_EQ(comm->size(), 1);
  EXPECT_EQ(comm->rank(), 0);
  EXPECT_NE(comm->library().find("NCCL 2."), std::string::npos) << comm->library();

  const size_t n = 1000;
  std::vector<unsigned char> host(n), back(n);
  for (size_t i = 0; i < n; ++i) host[i] = static_cast<unsigned char>(i * 7 + 3);
  void *send = nullptr, *recv = nullptr;
  ASSERT_EQ(cudaMalloc(&send, n), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&recv, n), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(send, host.data(), n, cudaMemcpyHostToDevice), cudaSuccess);
  auto expect_copied = [&](const char* what) {
    ASSERT_EQ(cudaMemcpy(back.data(), recv, n, cudaMemcpyDeviceToHost), cudaSuccess);
    EXPECT_EQ(back, host) << what;
    ASSERT_EQ(cudaMemset(recv, 0, n), cudaSuccess);
  };
  // Compute queued on the communicator's compute stream lands before an exchange reads it.
  const auto compute = static_cast<cudaStream_t>(comm->compute_stream());
  ASSERT_NE(compute, nullptr);
  ASSERT_EQ(cudaMemcpy(send, host.data(), n, cudaMemcpyHostToDevice), cudaSuccess);
  std::vector<unsigned char> first(n, 0x5a);
  void* staged = nullptr;
  ASSERT_EQ(cudaMalloc(&staged, n), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(staged, first.data(), n, cudaMemcpyHostToDevice), cudaSuccess);
  ASSERT_EQ(cudaMemcpyAsync(send, staged, n, cudaMemcpyDeviceToDevice, compute), cudaSuccess);
  comm->all_gather(send, n, recv);
  ASSERT_EQ(cudaMemcpy(back.data(), recv, n, cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_EQ(back, first) << "all_gather after compute-stream work";
  cudaFree(staged);
  ASSERT_EQ(cudaMemcpy(send, host.data(), n, cudaMemcpyHostToDevice), cudaSuccess);
  comm->all_gather(send, n, recv);
  expect_copied("all_gather");
  comm->all_gather_v(send, {n}, recv);
  expect_copied("all_gather_v");
  comm->all_to_all(send, n, recv);
  expect_copied("all_to_all");
  comm->all_to_all_v(send, {n}, {0}, recv, {n}, {0});
  expect_copied("all_to_all_v");
  comm->start_send_recv(send, n, 0, recv, n, 0)->wait();
  expect_copied("send_recv");
  comm->broadcast(send, n, 0);
  ASSERT_EQ(cudaMemcpy(back.data(), send, n, cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_EQ(back, host) << "broadcast";
  comm->barrier();
  EXPECT_EQ(comm->max(3.5), 3.5);
  EXPECT_EQ(comm->sum(2.0), 2.0);
  // One rank receives nothing from another and sends nothing to one: every count stays zero.
  for (int op = 0; op < static_cast<int>(CommOp::count_); ++op) {
    EXPECT_EQ(comm->counters.bytes_received[op], 0u) << op;
    EXPECT_EQ(comm->counters.bytes_sent[op], 0u) << op;
  }
  cudaFree(send);
  cudaFree(recv);
#endif
}

// Every distributed method's forward on one rank of `comm`, on its device's buffers (bf16 values in
// fp32 containers, as the harness uploads them), against the oracle; how many ran.
int expect_distributed_methods_match_oracle(Communicator& comm) {
  const Place at{comm.device_buffers() ? Device::cuda : Device::cpu, comm.compute_stream()};
  int ran = 0;
  for (const Shape& s : {Shape{1, 256, 4, 64}, Shape{2, 200, 2, 128, 1}}) {
    test::Problem prob(s, 71 + s.N);
    for (std::vector<float>* t : {&prob.q, &prob.k, &prob.v}) round_all(DType::bf16, t->data(), t->size());
    for (const Method& m : methods()) {
      if (m.layout == Layout::single || m.microbenchmark) continue;
      const Pattern p = parse_pattern(m.name == std::string("dist-dilated")
                                          ? json{{"kind", "dilated"}, {"levels", {{64, 1}, {128, 2}}}, {"causal", true}}
                                          : json{{"kind", "local"}, {"left", 90}, {"right", 0}});
      if (!m.unsupported(p, s, 1, 0).empty()) continue;
      SCOPED_TRACE(label(m.name, DType::bf16, p, s) + " on " + comm.kind());
      std::vector<float> o_ref, lse_ref;
      reference_attention(prob.args(p, o_ref, lse_ref));
      FloatBuffer q(at.device), k(at.device), v(at.device), o(at.device), lse(at.device);
      for (auto [buf, host] : {std::pair{&q, &prob.q}, std::pair{&k, &prob.k}, std::pair{&v, &prob.v}}) {
        buf->resize(host->size());
        upload(at, buf->data(), host->data(), host->size());
      }
      o.resize(o_ref.size()), lse.resize(lse_ref.size());
      MethodBuffers buffers(at.device);
      MethodCall c;
      c.global = s, c.pattern = p, c.scale = default_scale(s.d), c.dtype = DType::bf16;
      c.q = q.data(), c.k = k.data(), c.v = v.data(), c.o = o.data(), c.lse = lse.data();
      c.comm = &comm, c.buffers = &buffers;
      for (int call = 0; call < 2; ++call) m.run(c);  // the second with its buffers kept
      std::vector<float> oh(o_ref.size()), lh(lse_ref.size());
      download(at, oh.data(), o.data(), oh.size());
      download(at, lh.data(), lse.data(), lh.size());
      const test::Errors e = test::compare(oh, lh, o_ref, lse_ref);
      const Bounds b = bounds(DType::bf16, prob.v);
      EXPECT_LE(e.o, b.o);
      if (m.returns_lse) {
        EXPECT_LE(e.lse, b.lse);
      }
      ++ran;
    }
  }
  return ran;
}

TEST(CudaHostSide, DistributedMethodsOnHostBuffersMatchTheOracle) {
  // The GPU test's own logic, on the self communicator's host buffers: every build runs it.
  auto self = make_self_communicator();
  EXPECT_EQ(expect_distributed_methods_match_oracle(*self), 2 * 7);  // 7 methods, two shapes
}

TEST(Cuda, DistributedMethodsThroughNcclMatchTheOracle) {
  // The same through NCCL on one rank: GPU buffers, exchanges as copies to self.
  SKIP_WITHOUT_GPU();
#ifndef LONGATTN_HAVE_NCCL
  GTEST_SKIP() << "built without NCCL (needs nccl.h and libnccl at configure time)";
#else
  auto comm = make_nccl_communicator();
  EXPECT_EQ(expect_distributed_methods_match_oracle(*comm), 2 * 7);
#endif
}

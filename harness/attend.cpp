#include "harness/attend.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>

#include "harness/atomic_file.h"
#include "harness/json_input.h"
#include "harness/npy.h"
#include "harness/verify.h"
#include "kernels/input_error.h"
#include "kernels/registry.h"
#include "suite/method.h"

namespace longattn {

Pattern load_pattern(const std::string& text) {
  const bool inline_json = !text.empty() && text.front() == '{';
  if (inline_json) return parse_pattern(parse_json_input(text, "--pattern"), "--pattern");
  std::ifstream in(text);
  if (!in)
    throw InputError("--pattern: \"" + text.substr(0, 100) + "\" is neither inline JSON nor a readable file");
  return parse_pattern(parse_json_input(in, "--pattern"), "--pattern");
}

namespace {

void check_scale(bool given, float scale) {
  if (given && !(std::isfinite(scale) && scale > 0))
    throw InputError("--scale: must be a positive finite number; leave it out for 1/sqrt(d)");
}

Shape shape_of(const NpyArray& a, const std::string& flag) {
  if (a.shape.size() != 4)
    throw InputError(flag + ": expected a 4-d array [B, N, H, d], got " + std::to_string(a.shape.size()) + " dims");
  for (int64_t s : a.shape)
    if (s <= 0) throw InputError(flag + ": every dimension must be positive");
  return {a.shape[0], a.shape[1], a.shape[2], a.shape[3]};
}

std::string dims(const Shape& s) {
  return "[" + std::to_string(s.B) + ", " + std::to_string(s.N) + ", " + std::to_string(s.H) + ", " +
         std::to_string(s.d) + "]";
}

// Q's shape with K's and V's heads (GQA, SPEC §1): K and V are [B, N, H_kv, d], H_kv dividing H.
Shape with_kv_heads(const Shape& q, const NpyArray& k, const NpyArray& v, const char* k_flag, const char* v_flag) {
  const Shape ks = shape_of(k, k_flag), vs = shape_of(v, v_flag);
  if (ks.B != q.B || ks.d != q.d)
    throw InputError(std::string(k_flag) + ": shape " + dims(ks) + " does not match --q " + dims(q) +
                     " in B or d; K is [B, N, H_kv, d] with Q's B, N and d");
  if (ks.N != q.N)
    throw InputError(std::string(k_flag) + ": N = " + std::to_string(ks.N) + " differs from --q's N = " +
                     std::to_string(q.N) + "; every method attends a sequence to itself, so K and V need Q's N");
  if (q.H % ks.H != 0)
    throw InputError(std::string(k_flag) + ": " + std::to_string(ks.H) + " heads do not divide --q's H = " +
                     std::to_string(q.H) + "; give K and V H_kv heads, H_kv a divisor of H (GQA; 1: multi-query)");
  if (v.shape != k.shape)
    throw InputError(std::string(v_flag) + ": shape " + dims(vs) + " does not match " + k_flag + " " + dims(ks));
  Shape g = q;
  g.H_kv = ks.H == q.H ? 0 : ks.H;
  return g;
}

std::vector<int64_t> kv_dims(const Shape& g) { return {g.B, g.N, g.kv_heads(), g.d}; }

}  // namespace

// Every rank checks the input; if any rank fails, all fail together (each failing rank says why).
// A rank failing alone would leave the others waiting in a collective: on several nodes one of
// them may lack a file or a directory the others have.
template <class Checks>
void on_every_rank(Communicator& comm, Checks&& checks) {
  std::string error;
  try {
    checks();
  } catch (const InputError& e) {
    error = e.what();
  }
  if (comm.max(error.empty() ? 0.0 : 1.0) == 0) return;
  if (!error.empty() && comm.rank() != 0) std::fprintf(stderr, "longattn: rank %d: error: %s\n", comm.rank(), error.c_str());
  throw InputError(error.empty() ? "another rank's input check failed (its message is above)" : error);
}

void attend(Communicator& comm, const AttendOptions& opt) {
  const int P = comm.size();
  const int threads = opt.threads > 0 ? opt.threads : omp_get_max_threads();
  Pattern pattern;
  NpyArray q, k, v, dout;
  Shape g;
  const bool backward = !opt.dout.empty();
  // The outputs, O first; each written only if named.
  const std::pair<const std::string*, const char*> outputs[] = {
      {&opt.out, "--out"}, {&opt.lse, "--lse"}, {&opt.dq, "--dq"}, {&opt.dk, "--dk"}, {&opt.dv, "--dv"}};
  const Kernel* kernel = nullptr;  // a single-device kernel by name (or auto) ...
  const Method* method = nullptr;  // ... or a distributed method from the suite table
  on_every_rank(comm, [&] {
    pattern = load_pattern(opt.pattern);
    q = read_npy(opt.q), k = read_npy(opt.k), v = read_npy(opt.v);
    g = with_kv_heads(shape_of(q, "--q"), k, v, "--k", "--v");
    for (const auto& [path, flag] : {outputs[2], outputs[3], outputs[4]})
      if (!path->empty() && !backward) throw InputError(std::string(flag) + ": the backward pass needs --dout dO.npy");
    if (backward && opt.dq.empty() && opt.dk.empty() && opt.dv.empty())
      throw InputError("--dout: give --dq, --dk or --dv, the gradients to write");
    if (backward) {
      dout = read_npy(opt.dout);
      if (dout.shape != q.shape)
        throw InputError("--dout: shape " + dims(shape_of(dout, "--dout")) + " does not match O's " + dims(g) +
                         " (dO is the gradient of the loss with respect to O)");
    }
    check_scale(opt.scale_given, opt.scale);
    if (!opt.allow_nonfinite)
      for (const auto& [a, flag] :
           {std::pair{&q, "--q"}, std::pair{&k, "--k"}, std::pair{&v, "--v"}, std::pair{&dout, "--dout"}}) {
        const auto bad = std::find_if(a->data.begin(), a->data.end(), [](float x) { return !std::isfinite(x); });
        if (bad == a->data.end()) continue;
        const int64_t e = bad - a->data.begin(), heads = a->shape[2];
        const int64_t c = e % g.d, h = (e / g.d) % heads, i = (e / (g.d * heads)) % g.N, b = e / (g.d * heads * g.N);
        throw InputError(std::string(flag) + ": element [" + std::to_string(b) + ", " + std::to_string(i) + ", " +
                         std::to_string(h) + ", " + std::to_string(c) + "] is " + (std::isnan(*bad) ? "NaN" : "infinite") +
                         "; inputs must be finite, or pass --allow-nonfinite to let NaN reach the outputs of the rows it touches");
      }
    const Device device = parse_device(opt.device, "--device");
    if (opt.ulysses != 0 && opt.method != "dist-usp")
      throw InputError("--ulysses: sets dist-usp's Ulysses degree; use it with --method dist-usp or drop it");
    if (opt.ulysses < 0) throw InputError("--ulysses: must be a positive divisor of the rank count");
    kernel = opt.method == "auto" ? &auto_kernel(pattern, g, DType::fp32, device) : find_kernel(opt.method, device);
    method = kernel ? nullptr : find_method(opt.method);
    if (method && device != Device::cpu)
      throw InputError("--device: " + opt.method + " runs on host buffers; use --device cpu");
    if (!kernel && !method) {
      // From the tables: every kernel of the device, auto, every distributed attention method.
      std::string names = kernel_names(device) + ", auto";
      for (const Method& m : methods())
        if (m.layout != Layout::single && !m.microbenchmark) names += std::string(", ") + m.name;
      throw InputError("--method: unknown method \"" + opt.method.substr(0, 100) + "\"; use one of " + names);
    }
    if (backward && method && !method->backward)
      throw InputError("--dout: " + opt.method + " has no backward pass yet; use a single-device kernel (" +
                       kernel_names(Device::cpu) + ")");
    if (backward && kernel && !kernel->backward)
      throw InputError("--dout: kernel " + std::string(kernel->name) + " on " + device_name(device) +
                       " has no backward pass yet; use --device cpu");
    if (kernel) {
      if (auto why = kernel->unsupported(pattern, g, DType::fp32); !why.empty())
        throw InputError("--method: " + std::string(kernel->name) + " cannot run " + pattern.name() + ": " + why +
                         "; use --method auto");
    } else {
      if (auto why = method->unsupported(pattern, g, P, opt.ulysses); !why.empty())
        throw InputError("--method: " + opt.method + " cannot run this case on " + std::to_string(P) +
                         " ranks: " + why);
      if (!opt.lse.empty() && !method->returns_lse)
        throw InputError("--lse: " + opt.method + " does not return LSE; drop --lse");
    }
    // Fail before computing if an output cannot be written (nothing is written on error). Only
    // rank 0 writes, so only its filesystem counts.
    if (comm.rank() == 0) {
      namespace fs = std::filesystem;
      std::error_code ec;
      for (size_t i = 0; i < std::size(outputs); ++i) {
        const auto& [path, flag] = outputs[i];
        if (path->empty()) continue;
        check_output_path(*path, flag);
        for (size_t j = 0; j < i; ++j)
          if (!outputs[j].first->empty() && fs::weakly_canonical(*path, ec) == fs::weakly_canonical(*outputs[j].first, ec) &&
              !(fs::exists(*path, ec) && !fs::is_regular_file(*path, ec)))
            throw InputError(std::string(flag) + ": names the same file as " + outputs[j].second + "; give each output its own file");
      }
    }
  });
  const float scale = opt.scale > 0 ? opt.scale : default_scale(g.d);

  std::vector<float> o(g.numel()), lse(g.B * g.H * g.N), dq, dk, dv;
  if (kernel || method->layout == Layout::single || method->layout == Layout::replicated) {
    // Every rank holds the whole problem; single-device kernels run on rank 0.
    if (kernel && comm.rank() == 0) {
      AttentionArgs a;
      a.shape = g, a.q = q.data.data(), a.k = k.data.data(), a.v = v.data.data(), a.o = o.data(), a.lse = lse.data();
      a.pattern = pattern, a.scale = scale, a.threads = threads;
      kernel->run(a);
      if (backward) {
        dq.resize(g.numel()), dk.resize(g.kv_numel()), dv.resize(g.kv_numel());
        kernel->backward({a, dout.data.data(), dq.data(), dk.data(), dv.data()});
      }
    } else if (method) {
      MethodBuffers buffers;
      MethodCall c{g, pattern, scale, threads, q.data.data(), k.data.data(), v.data.data(), o.data(), lse.data(),
                   &comm, &buffers};
      c.ulysses = opt.ulysses;
      method->run(c);
      if (backward) {
        dq.resize(g.numel()), dk.resize(g.kv_numel()), dv.resize(g.kv_numel());
        method->backward(c, dout.data.data(), dq.data(), dk.data(), dv.data());
      }
    }
  } else {
    // Sharded or zig-zag: each rank takes its tokens, rank 0 puts every rank's output in place.
    const int64_t n = g.N / P, q_row = g.H * g.d, kv_row = g.kv_heads() * g.d;
    auto place = [&](int rank, auto&& copy) {  // copy(global_pos, local_row, rows) per held range
      int64_t off = 0;
      for (const TokenRange& r : held_tokens(method->layout, g.N, rank, P)) copy(r.pos0, off, r.rows), off += r.rows;
    };
    auto slice = [&](const NpyArray& a, int64_t row) {  // row: one token's heads x d
      std::vector<float> s(g.B * n * row);
      for (int64_t b = 0; b < g.B; ++b)
        place(comm.rank(), [&](int64_t pos, int64_t off, int64_t rows) {
          std::copy_n(a.data.data() + (b * g.N + pos) * row, rows * row, s.data() + (b * n + off) * row);
        });
      return s;
    };
    const auto ql = slice(q, q_row), kl = slice(k, kv_row), vl = slice(v, kv_row);
    std::vector<float> ol(g.B * n * q_row), ll(g.B * g.H * n);
    MethodBuffers buffers;
    MethodCall c{g, pattern, scale, threads, ql.data(), kl.data(), vl.data(), ol.data(), ll.data(), &comm, &buffers};
    c.ulysses = opt.ulysses;
    method->run(c);
    // Every rank's rows of a [B, n, ., d] tensor into their places in the whole one (on every rank).
    auto gather_rows = [&](const std::vector<float>& local, std::vector<float>& whole, int64_t row) {
      std::vector<float> all(local.size() * P);
      comm.all_gather(local.data(), local.size() * sizeof(float), all.data());
      whole.resize(g.B * g.N * row);
      for (int r = 0; r < P; ++r)
        for (int64_t b = 0; b < g.B; ++b)
          place(r, [&](int64_t pos, int64_t off, int64_t rows) {
            std::copy_n(all.data() + ((r * g.B + b) * n + off) * row, rows * row, whole.data() + (b * g.N + pos) * row);
          });
    };
    gather_rows(ol, o, q_row);
    std::vector<float> lg(ll.size() * P);
    comm.all_gather(ll.data(), ll.size() * sizeof(float), lg.data());
    for (int r = 0; r < P; ++r)
      for (int64_t b = 0; b < g.B; ++b)
        place(r, [&](int64_t pos, int64_t off, int64_t rows) {
          for (int64_t h = 0; h < g.H; ++h)
            std::copy_n(lg.data() + ((r * g.B + b) * g.H + h) * n + off, rows, lse.data() + (b * g.H + h) * g.N + pos);
        });
    if (backward) {
      const auto gl = slice(dout, q_row);
      std::vector<float> dql(gl.size()), dkl(kl.size()), dvl(kl.size());
      method->backward(c, gl.data(), dql.data(), dkl.data(), dvl.data());
      gather_rows(dql, dq, q_row), gather_rows(dkl, dk, kv_row), gather_rows(dvl, dv, kv_row);
    }
  }
  if (comm.rank() == 0) {
    // Every output complete before any is renamed into place: never some without the others.
    const float* data[] = {o.data(), lse.data(), dq.data(), dk.data(), dv.data()};
    std::vector<std::unique_ptr<AtomicFile>> files;
    for (size_t i = 0; i < std::size(outputs); ++i) {
      if (outputs[i].first->empty()) continue;
      files.push_back(std::make_unique<AtomicFile>(*outputs[i].first));
      if (i == 1) write_npy(*files.back(), {g.B, g.H, g.N}, data[i]);
      else if (i >= 3) write_npy(*files.back(), kv_dims(g), data[i]);  // dK, dV: K's shape
      else write_npy(*files.back(), {g.B, g.N, g.H, g.d}, data[i]);
      files.back()->finish();
    }
    for (auto& f : files) f->rename();
  }
}

int verify_outputs(const VerifyOptions& opt) {
  const Pattern pattern = load_pattern(opt.pattern);
  if (opt.dtype != "fp32" && opt.dtype != "bf16" && opt.dtype != "fp16")
    throw InputError("--dtype: \"" + opt.dtype.substr(0, 40) + "\" is not fp32, bf16 or fp16");
  check_scale(opt.scale_given, opt.scale);
  const NpyArray q = read_npy(opt.q), k = read_npy(opt.k), v = read_npy(opt.v), o = read_npy(opt.o);
  const Shape g = with_kv_heads(shape_of(q, "--q"), k, v, "--k", "--v");
  if (o.shape != q.shape) throw InputError("--o: shape " + dims(shape_of(o, "--o")) + " does not match --q " + dims(g));
  const bool grads = !opt.dout.empty() || !opt.dq.empty() || !opt.dk.empty() || !opt.dv.empty();
  NpyArray dout, dq, dk, dv;
  if (grads)
    for (const auto& [path, a, flag] : {std::tuple{&opt.dout, &dout, "--dout"}, std::tuple{&opt.dq, &dq, "--dq"},
                                        std::tuple{&opt.dk, &dk, "--dk"}, std::tuple{&opt.dv, &dv, "--dv"}}) {
      if (path->empty())
        throw InputError(std::string(flag) + ": the gradients are checked together: give --dout, --dq, --dk and --dv");
      *a = read_npy(*path);
      const bool kv = a == &dk || a == &dv;  // dK, dV have K's shape
      if (a->shape != (kv ? k.shape : q.shape))
        throw InputError(std::string(flag) + ": shape " + dims(shape_of(*a, flag)) + " does not match " +
                         (kv ? "--k " + dims(g.kv_shape()) : "--q " + dims(g)));
    }
  NpyArray lse;
  if (!opt.lse.empty()) {
    lse = read_npy(opt.lse);
    if (lse.shape != std::vector<int64_t>{g.B, g.H, g.N})
      throw InputError("--lse: expected shape [B, H, N] = [" + std::to_string(g.B) + ", " + std::to_string(g.H) + ", " +
                       std::to_string(g.N) + "]");
  }
  AttentionArgs ref;
  ref.shape = g, ref.k = k.data.data(), ref.v = v.data.data(), ref.pattern = pattern;
  ref.scale = opt.scale > 0 ? opt.scale : default_scale(g.d);
  auto at = [&](const SampleRow& r) { return ((r.b * g.N + r.i) * g.H + r.h) * g.d; };
  RowAccess access;
  access.q = [&](const SampleRow& r) { return q.data.data() + at(r); };
  access.o = [&](const SampleRow& r) { return o.data.data() + at(r); };
  if (!opt.lse.empty()) access.lse = [&](const SampleRow& r) { return lse.data.data() + (r.b * g.H + r.h) * g.N + r.i; };
  const std::vector<SampleRow> rows = sample_rows(g, opt.seed);
  const RowErrors e = check_rows(ref, rows, access);
  double vmax = 0;
  for (float x : v.data) vmax = std::max(vmax, double(std::abs(x)));
  GradErrors ge;
  if (grads) {
    // A key's gradient sums over every query that sees it, which needs every row's O and LSE: made
    // here by the CPU's fp32 kernel (itself within SPEC §4 of the oracle), not taken from the
    // program under test. The sums over pairs are float64 (check_grad_rows).
    std::vector<float> o_here(g.numel()), lse_here(g.B * g.H * g.N);
    AttentionArgs fwd = ref;
    fwd.q = q.data.data(), fwd.o = o_here.data(), fwd.lse = lse_here.data();
    auto_kernel(pattern, g, DType::fp32, Device::cpu).run(fwd);
    ge = check_grad_rows(fwd, dout.data.data(), dq.data.data(), dk.data.data(), dv.data.data(), rows);
  }
  const nlohmann::json report = error_report(e, vmax, opt.dtype, !opt.lse.empty(), static_cast<double>(rows.size()),
                                             grads ? &ge : nullptr);
  std::printf("%s\n", report.dump().c_str());
  return report["passed"].get<bool>() ? 0 : 1;
}

}  // namespace longattn

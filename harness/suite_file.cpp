#include "harness/suite_file.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>

#include "harness/json_input.h"
#include "harness/paths.h"
#include "kernels/checked.h"
#include "kernels/cpu.h"
#include "kernels/input_error.h"
#include "suite/method.h"

namespace longattn {
namespace {

using nlohmann::json;

std::vector<int64_t> int_axis(const json& j, const std::string& key, const std::string& where) {
  const auto& v = j.at(key);
  std::vector<int64_t> out;
  auto one = [&](const json& x, const std::string& at) {
    if (!x.is_number_integer() || (!x.is_number_unsigned() && x.get<int64_t>() <= 0))
      throw InputError(at + ": must be a positive integer, got " + quote_value(x));
    if (x.is_number_unsigned() && x.get<uint64_t>() > static_cast<uint64_t>(kMaxElements))
      throw InputError(at + ": " + quote_value(x) + " is too large; sizes go up to 2^50");
    if (x.get<int64_t>() <= 0) throw InputError(at + ": must be a positive integer, got " + quote_value(x));
    out.push_back(x.get<int64_t>());
  };
  if (v.is_array()) {
    if (v.empty()) throw InputError(where + key + ": must not be empty");
    for (size_t i = 0; i < v.size(); ++i) one(v[i], where + key + "[" + std::to_string(i) + "]");
  } else {
    one(v, where + key);
  }
  return out;
}

std::vector<std::string> string_axis(const json& j, const std::string& key, const std::string& where) {
  const auto& v = j.at(key);
  std::vector<std::string> out;
  for (const auto& x : v.is_array() ? v : json::array({v})) {
    if (!x.is_string()) throw InputError(where + key + ": must be a string or a list of strings, got " + quote_value(x));
    out.push_back(x.get<std::string>());
  }
  if (out.empty()) throw InputError(where + key + ": must not be empty");
  return out;
}

const std::set<std::string> kCaseKeys = {"method", "methods", "pattern", "patterns", "B", "H", "H_kv", "N",
                                         "N_per_rank", "d", "dtype", "device", "warmup", "iterations", "verify",
                                         "budget_s", "scale", "seed", "pass", "ulysses", "l2"};

// Expands one block (the suite's top level, or one entry of `cases`) into cases; `base` supplies
// the defaults a block does not set.
void expand(const json& j, const std::string& where, const Case& base, int world, std::vector<Case>& out) {
  for (const auto& [key, value] : j.items()) {
    if (key == "cases")
      throw InputError(where + "cases: a case cannot hold cases; list every case in the top-level cases");
    if (!kCaseKeys.count(key) && key != "name" && key != "description")
      throw InputError(where + key.substr(0, 100) + ": unknown field; known fields: method(s), pattern(s), B, H, H_kv, "
                                                    "N, N_per_rank, d, dtype, device, pass, ulysses, warmup, iterations, "
                                                    "verify, budget_s, scale, seed, l2, cases");
  }
  Case c = base;
  auto get_int = [&](const char* key, int& field, int min, int max) {
    if (!j.contains(key)) return;
    const json& v = j[key];
    // nlohmann reads non-negative integers as unsigned: compare in that type, or the value wraps.
    const bool in_range = v.is_number_unsigned()
                              ? v.get<uint64_t>() >= static_cast<uint64_t>(min) && v.get<uint64_t>() <= static_cast<uint64_t>(max)
                              : v.is_number_integer() && v.get<int64_t>() >= min && v.get<int64_t>() <= max;
    if (!in_range)
      throw InputError(where + key + ": must be an integer from " + std::to_string(min) + " to " + std::to_string(max) +
                       ", got " + quote_value(v));
    field = static_cast<int>(v.get<int64_t>());
  };
  get_int("warmup", c.warmup, 0, 100000);
  get_int("iterations", c.iterations, 1, 100000);
  if (j.contains("verify")) {
    if (!j["verify"].is_boolean()) throw InputError(where + "verify: must be true or false");
    c.verify = j["verify"].get<bool>();
  }
  if (j.contains("budget_s")) {
    if (!j["budget_s"].is_number() || !(j["budget_s"].get<double>() > 0) || !std::isfinite(j["budget_s"].get<double>()))
      throw InputError(where + "budget_s: must be a positive number of seconds");
    c.budget_s = j["budget_s"].get<double>();
  }
  if (j.contains("scale")) {
    if (!j["scale"].is_number() || !(j["scale"].get<double>() > 0) || !std::isfinite(j["scale"].get<float>()))
      throw InputError(where + "scale: must be a positive finite number, got " + quote_value(j["scale"]));
    c.scale = j["scale"].get<float>();
  }
  if (j.contains("l2")) {
    if (!j["l2"].is_string() || (j["l2"] != "flush" && j["l2"] != "warm"))
      throw InputError(where + "l2: must be \"flush\" (evict the GPU's L2 cache before each timed iteration, the "
                               "default) or \"warm\" (leave it), got " + quote_value(j["l2"]));
    c.l2 = j["l2"].get<std::string>();
  }
  if (j.contains("seed")) {
    if (!j["seed"].is_number_unsigned()) throw InputError(where + "seed: must be a non-negative integer");
    c.seed = j["seed"].get<uint64_t>();
  }

  auto pick = [&](const char* one, const char* many) -> const char* {
    if (j.contains(one) && j.contains(many)) throw InputError(where + many + ": give either " + one + " or " + many);
    return j.contains(one) ? one : j.contains(many) ? many : nullptr;
  };
  const char* mkey = pick("method", "methods");
  const char* pkey = pick("pattern", "patterns");
  if (!mkey) throw InputError(where + "methods: missing; list the methods to time (longattn list shows them)");
  if (!pkey) throw InputError(where + "patterns: missing; list patterns as in SPEC §5, e.g. [{\"kind\": \"full\"}]");
  const auto methods = string_axis(j, mkey, where);
  std::vector<Pattern> patterns;
  const json pj = j.at(pkey).is_array() && std::string(pkey) == "patterns" ? j.at(pkey) : json::array({j.at(pkey)});
  for (size_t i = 0; i < pj.size(); ++i) {
    // Appends only: GCC 12 warns (-Wrestrict, a false positive) on "[" + std::to_string(i) here.
    std::string field = where + pkey;
    if (std::string(pkey) == "patterns") field += '[', field += std::to_string(i), field += ']';
    patterns.push_back(parse_pattern(pj[i], field));
  }

  if (j.contains("N") && j.contains("N_per_rank")) throw InputError(where + "N_per_rank: give either N or N_per_rank");
  for (const char* key : {"B", "H", "d"})
    if (!j.contains(key)) throw InputError(where + key + ": missing; give a positive integer or a list of them");
  if (!j.contains("N") && !j.contains("N_per_rank"))
    throw InputError(where + "N: missing; give N (global tokens) or N_per_rank (weak scaling)");
  std::vector<int64_t> Ns = j.contains("N") ? int_axis(j, "N", where) : int_axis(j, "N_per_rank", where);
  if (!j.contains("N"))
    for (int64_t& n : Ns) n = checked_mul(n, world, where + "N_per_rank x the world size");
  const auto Bs = int_axis(j, "B", where), Hs = int_axis(j, "H", where), ds = int_axis(j, "d", where);
  // GQA (SPEC §1): 0 is H_kv = H. The Ulysses degree multiplies dist-usp's cases only.
  const auto kv_heads = j.contains("H_kv") ? int_axis(j, "H_kv", where) : std::vector<int64_t>{0};
  const auto degrees = j.contains("ulysses") ? int_axis(j, "ulysses", where) : std::vector<int64_t>{0};
  const auto dtypes = j.contains("dtype") ? string_axis(j, "dtype", where) : std::vector<std::string>{base.dtype};
  const auto devices = j.contains("device") ? string_axis(j, "device", where) : std::vector<std::string>{base.device};
  const auto passes = j.contains("pass") ? string_axis(j, "pass", where) : std::vector<std::string>{base.pass};
  for (const auto& ps : passes)
    if (pass_factor(ps) == 0)
      throw InputError(where + "pass: unknown pass \"" + ps.substr(0, 40) + "\"; use forward, backward or forward+backward");
  for (const auto& dev : devices)
    if (dev != "cpu" && dev != "cuda") throw InputError(where + "device: unknown device \"" + dev + "\"; use cpu or cuda");
  for (const auto& dt : dtypes)
    if (dt != "fp32" && dt != "bf16" && dt != "fp16")
      throw InputError(where + "dtype: unknown dtype \"" + dt.substr(0, 40) + "\"; use fp32, bf16 or fp16");
  for (int64_t d : ds)
    if (d > 256) throw InputError(where + "d: head dim " + std::to_string(d) + " is not supported; use 1..256");

  for (const auto& dt : dtypes)
    for (const auto& dev : devices)
      if (dev == "cpu" && dt == "fp16" && !cpu_info().avx512_fp16)
        throw InputError(where + "dtype: fp16 on device cpu needs AVX512-FP16, which this CPU (" +
                         cpu_info().model.substr(0, 60) + ") lacks; use bf16 or fp32 here, or device cuda");
  std::vector<Shape> shapes;  // the shape axes' product, B outermost
  for (int64_t B : Bs)
    for (int64_t H : Hs)
      for (int64_t hk : kv_heads) {
        if (hk > 0 && H % hk != 0)
          throw InputError(where + "H_kv: " + std::to_string(hk) + " does not divide H = " + std::to_string(H) +
                           "; choose H_kv a divisor of H (1: multi-query, H: multi-head)");
        for (int64_t N : Ns)
          for (int64_t d : ds) {
            checked_mul(checked_mul(checked_mul(B, N, where + "B x N"), H, where + "B x N x H"), d, where + "B x N x H x d");
            shapes.push_back({B, N, H, d, hk == H ? 0 : hk});
          }
      }
  for (const auto& m : methods)
    for (const auto& p : patterns)
      for (const Shape& shape : shapes)
        for (int64_t u : m == "dist-usp" ? degrees : std::vector<int64_t>{0})  // an axis of dist-usp's cases only
          for (const auto& dt : dtypes)
            for (const auto& dev : devices)
              for (const auto& ps : passes) {
                Case x = c;
                x.method = m, x.pattern = p, x.shape = shape, x.dtype = dt, x.device = dev, x.pass = ps;
                x.ulysses = static_cast<int>(u);
                out.push_back(x);
              }
}

}  // namespace

std::string Case::id(int world) const {
  // dist-usp's degree as it runs, the default resolved: a suite that spells out the default names
  // the same case as one that leaves it out (and the gate matches them).
  const int u = method == "dist-usp" ? usp_degree(shape, world, ulysses) : ulysses;
  return method + " " + pattern.name() + " B=" + std::to_string(shape.B) + " N=" + std::to_string(shape.N) +
         " H=" + std::to_string(shape.H) + (shape.grouped() ? " H_kv=" + std::to_string(shape.H_kv) : "") +
         " d=" + std::to_string(shape.d) + " " + dtype + " " + device + " P=" + std::to_string(world) +
         (u > 0 ? " u=" + std::to_string(u) : "") + (pass == "forward" ? "" : " " + pass) +
         (device == "cuda" && l2 == "warm" ? " l2=warm" : "");
}

double pass_factor(const std::string& pass) {
  return pass == "forward" ? 1.0 : pass == "backward" ? 2.5 : pass == "forward+backward" ? 3.5 : 0.0;
}

std::string suite_dir() { return data_dir() + "/suite"; }

Suite load_suite(const std::string& name_or_path, int world) {
  Suite s;
  namespace fs = std::filesystem;
  s.path = name_or_path;
  if (!fs::is_regular_file(s.path)) {
    const fs::path named = fs::path(suite_dir()) / (name_or_path + ".json");
    if (name_or_path.find('/') != std::string::npos || !fs::is_regular_file(named))
      throw InputError(name_or_path.substr(0, 100) + ": no such suite file; give a path or a name from `longattn list`");
    s.path = named.string();
  }
  std::ifstream in(s.path);
  s.source = parse_json_input(in, s.path);
  if (!s.source.is_object()) throw InputError(s.path + ": a suite is a JSON object");
  for (const char* key : {"name", "description"})
    if (s.source.contains(key) && !s.source[key].is_string())
      throw InputError(s.path + ": " + key + ": must be a string, got " + quote_value(s.source[key]));
  s.name = s.source.value("name", fs::path(s.path).stem().string());
  if (s.name.empty() || s.name.size() > 100 || s.name.find('/') != std::string::npos)
    throw InputError(s.path + ": name: must be 1 to 100 characters without '/'");
  s.description = s.source.value("description", "");
  const std::string where = s.path + ": ";
  Case defaults;
  json top = s.source;
  top.erase("cases");
  if (top.contains("methods") || top.contains("method")) expand(top, where, defaults, world, s.cases);
  if (s.source.contains("cases")) {
    const auto& cs = s.source["cases"];
    if (!cs.is_array()) throw InputError(where + "cases: must be a list of case objects");
    // Explicit cases inherit the top level's settings (warm-up, iterations, axes they do not set).
    json inherit = top;
    for (size_t i = 0; i < cs.size(); ++i) {
      if (!cs[i].is_object()) throw InputError(where + "cases[" + std::to_string(i) + "]: must be an object");
      json merged = inherit;
      for (const auto& [key, value] : cs[i].items()) {
        if (key == "N" || key == "N_per_rank") merged.erase("N"), merged.erase("N_per_rank");
        if (key == "method" || key == "methods") merged.erase("method"), merged.erase("methods");
        if (key == "pattern" || key == "patterns") merged.erase("pattern"), merged.erase("patterns");
        merged[key] = value;
      }
      merged.erase("name"), merged.erase("description");
      expand(merged, where + "cases[" + std::to_string(i) + "].", defaults, world, s.cases);
    }
  }
  if (s.cases.empty()) throw InputError(where + "no cases: give methods, patterns and shapes, or a cases list");
  return s;
}

}  // namespace longattn

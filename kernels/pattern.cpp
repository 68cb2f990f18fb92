#include "kernels/pattern.h"

#include <algorithm>
#include <initializer_list>
#include <set>
#include <string>

#include "kernels/input_error.h"

namespace longattn {
namespace {

// Dilated level: the kept positions of the segment holding i are seg0 + o + t*r, t >= 0.
struct Segment {
  int64_t begin, end;  // [begin, end)
};
Segment segment_of(int64_t i, int64_t w, int64_t n) {
  const int64_t b = (i / w) * w;
  return {b, std::min(b + w, n)};
}
int64_t kept_count(Segment s, int64_t o, int64_t r) {
  const int64_t len = s.end - s.begin;
  return len > o ? (len - o + r - 1) / r : 0;
}

}  // namespace

const char* kind_name(PatternKind k) {
  switch (k) {
    case PatternKind::full: return "full";
    case PatternKind::local: return "local";
    case PatternKind::strided: return "strided";
    case PatternKind::fixed: return "fixed";
    case PatternKind::dilated: return "dilated";
  }
  return "?";
}

std::vector<DilatedLevel> Pattern::dilated_levels(int64_t n) const {
  if (kind != PatternKind::dilated) return {};
  if (!longnet) return levels;
  // LongNet §4.2 list, continued by doubling w and r, cut at the first w >= n (whose w becomes n).
  std::vector<DilatedLevel> out;
  const DilatedLevel base[] = {{2048, 1}, {4096, 2}, {8192, 4}, {16384, 6}, {32768, 12}};
  DilatedLevel cur{};
  for (int64_t k = 0;; ++k) {
    cur = k < 5 ? base[k] : DilatedLevel{cur.w * 2, cur.r * 2};
    if (cur.w >= n) {
      out.push_back({n, cur.r});
      return out;
    }
    out.push_back(cur);
  }
}

int Pattern::level_count(int64_t n) const {
  return kind == PatternKind::dilated ? static_cast<int>(dilated_levels(n).size()) : 1;
}

PatternLevel Pattern::level(int level, int64_t n) const {
  PatternLevel l;
  static_cast<PatternParams&>(l) = *this;
  if (kind == PatternKind::dilated) {
    const DilatedLevel lv = dilated_levels(n).at(level);
    l.w = lv.w, l.r = lv.r;
  }
  return l;
}

bool Pattern::contains(int level_index, int64_t h, int64_t i, int64_t j, int64_t n) const {
  return level(level_index, n).contains(h, i, j, n);
}

bool Pattern::key_interval(int64_t i, int64_t n, int64_t& lo, int64_t& hi) const {
  const bool blocks = kind == PatternKind::fixed && summary == 0;  // block-diagonal
  if (kind != PatternKind::full && kind != PatternKind::local && !blocks) return false;
  lo = 0, hi = n - 1;
  if (kind == PatternKind::local) lo = std::max(lo, i - left), hi = std::min(hi, i + right);
  if (blocks && i >= 0) lo = i / block * block, hi = std::min(hi, lo + block - 1);
  if (causal) hi = std::min(hi, i);
  if (i < 0 || i >= n) lo = 1, hi = 0;
  return true;
}

void Pattern::keys(int level, int64_t h, int64_t i, int64_t n, std::vector<int64_t>& out) const {
  const int64_t last = causal ? i : n - 1;  // largest key any set may hold
  switch (kind) {
    case PatternKind::full:
      for (int64_t j = 0; j <= last; ++j) out.push_back(j);
      return;
    case PatternKind::local:
      for (int64_t j = std::max<int64_t>(0, i - left); j <= std::min(last, i + right); ++j) out.push_back(j);
      return;
    case PatternKind::strided: {
      const int64_t lo = std::max<int64_t>(0, i - stride + 1), hi = std::min(last, i + stride - 1);
      for (int64_t j = i - stride; j >= 0; j -= stride) out.push_back(j);  // below the band
      for (int64_t j = lo; j <= hi; ++j) out.push_back(j);
      for (int64_t j = i + stride; j <= last; j += stride) out.push_back(j);  // above the band
      return;
    }
    case PatternKind::fixed: {
      const int64_t b0 = (i / block) * block;
      for (int64_t j = b0; j <= std::min(last, b0 + block - 1); ++j) out.push_back(j);
      for (int64_t s = 0; s < n; s += block) {
        if (s == b0) continue;
        for (int64_t j = s + block - summary; j < s + block && j <= last; ++j) out.push_back(j);
      }
      return;
    }
    case PatternKind::dilated: {
      const DilatedLevel lv = dilated_levels(n).at(level);
      const int64_t o = h % lv.r;
      const Segment s = segment_of(i, lv.w, n);
      if (!PatternLevel::kept(i, s.begin, o, lv.r)) return;
      for (int64_t j = s.begin + o; j < s.end && j <= last; j += lv.r) out.push_back(j);
      return;
    }
  }
}

int64_t Pattern::pairs(int64_t h, int64_t n) const {
  int64_t total = 0;
  switch (kind) {
    case PatternKind::full:
      return causal ? n * (n + 1) / 2 : n * n;
    case PatternKind::local:
      for (int64_t i = 0; i < n; ++i)
        total += std::min(n - 1, causal ? i : i + right) - std::max<int64_t>(0, i - left) + 1;
      return total;
    case PatternKind::strided:
      for (int64_t i = 0; i < n; ++i) {
        const int64_t lo = std::max<int64_t>(0, i - stride + 1);
        const int64_t hi = causal ? i : std::min(n - 1, i + stride - 1);
        total += hi - lo + 1 + i / stride + (causal ? 0 : (n - 1 - i) / stride);
      }
      return total;
    case PatternKind::fixed:
      for (int64_t i = 0; i < n; ++i) {
        const int64_t b0 = (i / block) * block, b1 = std::min(b0 + block, n);
        const int64_t own = causal ? i - b0 + 1 : b1 - b0;
        const PatternLevel l = level(0, n);
        total += own + l.summary_before(b0) + (causal ? 0 : l.summary_before(n) - l.summary_before(b1));
      }
      return total;
    case PatternKind::dilated:
      for (const DilatedLevel& lv : dilated_levels(n)) {
        const int64_t o = h % lv.r;
        for (int64_t b = 0; b < n; b += lv.w) {
          const int64_t m = kept_count({b, std::min(b + lv.w, n)}, o, lv.r);
          total += causal ? m * (m + 1) / 2 : m * m;
        }
      }
      return total;
  }
  return total;
}

int64_t Pattern::pairs_all_heads(int64_t H, int64_t n) const {
  if (kind != PatternKind::dilated) return H * pairs(0, n);  // head-independent
  int64_t total = 0;
  for (int64_t h = 0; h < H; ++h) total += pairs(h, n);
  return total;
}

BlockKind Pattern::classify(int64_t i0, int64_t i1, int64_t j0, int64_t j1) const {
  if (kind == PatternKind::dilated) return BlockKind::partial;  // its levels are classified one by one
  return level(0, /*n: single-level kinds do not need it*/ 0).classify(i0, i1, j0, j1);
}

std::string Pattern::name() const {
  // Appends only: GCC 12 warns (-Wrestrict, a false positive) on "(" + std::to_string(x).
  std::string s = kind_name(kind);
  auto args = [&s](std::initializer_list<int64_t> xs) {
    s += '(';
    for (int64_t x : xs) s += (s.back() == '(' ? "" : ","), s += std::to_string(x);
    s += ')';
  };
  switch (kind) {
    case PatternKind::full: break;
    case PatternKind::local: args({left, right}); break;
    case PatternKind::strided: args({stride}); break;
    case PatternKind::fixed: args({block, summary}); break;
    case PatternKind::dilated:
      if (longnet) {
        s += "(longnet)";
      } else {
        s += '(';
        for (size_t k = 0; k < levels.size(); ++k) {
          if (k) s += ',';
          s += std::to_string(levels[k].w), s += 'x', s += std::to_string(levels[k].r);
        }
        s += ')';
      }
      break;
  }
  if (causal) s += "+causal";
  return s;
}

// ---- SPEC §5 spelling ----

namespace {

int64_t get_size(const nlohmann::json& j, const std::string& key, const std::string& where, int64_t min) {
  if (!j.contains(key))
    throw InputError(where + "." + key + ": missing; this pattern kind needs it (see SPEC §5)");
  const auto& v = j.at(key);
  if (!v.is_number_integer())
    throw InputError(where + "." + key + ": must be an integer, got " + v.dump().substr(0, 100));
  if (!v.is_number_unsigned() && v.get<int64_t>() < min)
    throw InputError(where + "." + key + ": must be " + (min == 0 ? "non-negative" : "positive") +
                     ", got " + v.dump().substr(0, 40));
  if (v.is_number_unsigned() && v.get<uint64_t>() < static_cast<uint64_t>(min))
    throw InputError(where + "." + key + ": must be positive, got 0");
  // No sequence is longer than kMaxPatternSize, so a larger size means the same as it; the clamp
  // keeps i + right, i - stride and r * row far from int64 overflow.
  return v.is_number_unsigned() ? static_cast<int64_t>(std::min<uint64_t>(v.get<uint64_t>(), kMaxPatternSize))
                                : std::min<int64_t>(v.get<int64_t>(), kMaxPatternSize);
}

}  // namespace

Pattern parse_pattern(const nlohmann::json& j, const std::string& where) {
  if (!j.is_object())
    throw InputError(where + ": must be a JSON object like {\"kind\": \"full\"}, got " + j.dump().substr(0, 100));
  if (!j.contains("kind") || !j.at("kind").is_string())
    throw InputError(where + ".kind: missing or not a string; use one of full, local, strided, fixed, dilated");
  Pattern p;
  const std::string kind = j.at("kind").get<std::string>();
  std::set<std::string> allowed = {"kind", "causal"};
  if (kind == "full") {
    p.kind = PatternKind::full;
  } else if (kind == "local") {
    p.kind = PatternKind::local;
    p.left = get_size(j, "left", where, 0);
    p.right = get_size(j, "right", where, 0);
    allowed.insert({"left", "right"});
  } else if (kind == "strided") {
    p.kind = PatternKind::strided;
    p.stride = get_size(j, "stride", where, 1);
    allowed.insert("stride");
  } else if (kind == "fixed") {
    p.kind = PatternKind::fixed;
    p.block = get_size(j, "block", where, 1);
    p.summary = get_size(j, "summary", where, 1);
    if (p.summary > p.block)
      throw InputError(where + ".summary: must not exceed block (" + std::to_string(p.block) + "), got " +
                       std::to_string(p.summary));
    allowed.insert({"block", "summary"});
  } else if (kind == "dilated") {
    p.kind = PatternKind::dilated;
    allowed.insert("levels");
    if (!j.contains("levels"))
      throw InputError(where + ".levels: missing; give [[w, r], ...] or \"longnet\"");
    const auto& lv = j.at("levels");
    if (lv.is_string()) {
      if (lv.get<std::string>() != "longnet")
        throw InputError(where + ".levels: unknown configuration " + lv.dump().substr(0, 100) + "; the named one is \"longnet\"");
      p.longnet = true;
    } else if (lv.is_array() && !lv.empty()) {
      for (size_t k = 0; k < lv.size(); ++k) {
        const std::string at = where + ".levels[" + std::to_string(k) + "]";
        const auto& e = lv[k];
        if (!e.is_array() || e.size() != 2 || !e[0].is_number_integer() || !e[1].is_number_integer())
          throw InputError(at + ": must be a pair [w, r] of integers, got " + e.dump().substr(0, 100));
        auto size = [&](const nlohmann::json& x) {
          return x.is_number_unsigned() ? static_cast<int64_t>(std::min<uint64_t>(x.get<uint64_t>(), kMaxPatternSize))
                                        : std::min<int64_t>(x.get<int64_t>(), kMaxPatternSize);
        };
        const DilatedLevel d{size(e[0]), size(e[1])};
        if (d.w <= 0 || d.r <= 0)
          throw InputError(at + ": segment length w and rate r must be positive, got " + e.dump().substr(0, 100));
        if (p.levels.size() >= 64) throw InputError(at + ": at most 64 levels");
        p.levels.push_back(d);
      }
    } else {
      throw InputError(where + ".levels: must be a non-empty list [[w, r], ...] or \"longnet\", got " + lv.dump().substr(0, 100));
    }
  } else {
    throw InputError(where + ".kind: unknown kind \"" + kind.substr(0, 100) + "\"; use one of full, local, strided, fixed, dilated");
  }
  if (j.contains("causal")) {
    if (!j.at("causal").is_boolean())
      throw InputError(where + ".causal: must be true or false, got " + j.at("causal").dump().substr(0, 100));
    p.causal = j.at("causal").get<bool>();
  }
  for (const auto& [key, value] : j.items())
    if (!allowed.count(key))
      throw InputError(where + "." + key.substr(0, 100) + ": unknown field for kind \"" + kind + "\"; remove it (see SPEC §5)");
  return p;
}

nlohmann::json to_json(const Pattern& p) {
  nlohmann::json j = {{"kind", kind_name(p.kind)}};
  switch (p.kind) {
    case PatternKind::full: break;
    case PatternKind::local: j["left"] = p.left; j["right"] = p.right; break;
    case PatternKind::strided: j["stride"] = p.stride; break;
    case PatternKind::fixed: j["block"] = p.block; j["summary"] = p.summary; break;
    case PatternKind::dilated:
      if (p.longnet) {
        j["levels"] = "longnet";
      } else {
        j["levels"] = nlohmann::json::array();
        for (const auto& l : p.levels) j["levels"].push_back({l.w, l.r});
      }
      break;
  }
  if (p.causal) j["causal"] = true;
  return j;
}

}  // namespace longattn

#include "harness/json_input.h"

#include <set>
#include <vector>

#include "kernels/input_error.h"

namespace longattn {
namespace {

constexpr int kMaxDepth = 64;

template <class Source>
nlohmann::json parse(Source&& src, const std::string& where) {
  using nlohmann::json;
  std::vector<std::set<std::string>> keys;  // per open object
  std::string problem;
  json::parser_callback_t cb = [&](int depth, json::parse_event_t event, json& parsed) {
    if (depth > kMaxDepth) {
      problem = "nested deeper than " + std::to_string(kMaxDepth) + " levels";
      throw InputError(problem);
    }
    switch (event) {
      case json::parse_event_t::object_start: keys.emplace_back(); break;
      case json::parse_event_t::object_end:
        if (!keys.empty()) keys.pop_back();
        break;
      case json::parse_event_t::key:
        if (!keys.empty() && !keys.back().insert(parsed.get<std::string>()).second) {
          problem = "duplicate key \"" + parsed.get<std::string>().substr(0, 60) + "\"";
          throw InputError(problem);
        }
        break;
      default: break;
    }
    return true;
  };
  try {
    return json::parse(src, cb);
  } catch (const InputError&) {
    throw InputError(where + ": " + problem + "; fix the file");
  } catch (const json::exception& e) {
    std::string what = e.what();
    if (what.size() > 200) what = what.substr(0, 200) + "...";
    throw InputError(where + ": malformed JSON: " + what);
  }
}

}  // namespace

nlohmann::json parse_json_input(std::istream& in, const std::string& where) { return parse(in, where); }
nlohmann::json parse_json_input(const std::string& text, const std::string& where) { return parse(text, where); }

std::string quote_value(const nlohmann::json& v) {
  std::string s = v.dump();
  return s.size() > 100 ? s.substr(0, 100) + "..." : s;
}

}  // namespace longattn

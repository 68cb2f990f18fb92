#pragma once
// JSON from users (suite files, --pattern) read defensively: nesting deeper than 64 levels,
// duplicate keys and numbers outside the double range are bad input (InputError naming `where`),
// never a stack overflow, a silently kept last value or an exit 3.
#include <istream>
#include <string>

#include <nlohmann/json.hpp>

namespace longattn {

nlohmann::json parse_json_input(std::istream& in, const std::string& where);
nlohmann::json parse_json_input(const std::string& text, const std::string& where);

// At most ~100 characters of a value, for messages (a 200 MB string must not land on stderr).
std::string quote_value(const nlohmann::json& v);

}  // namespace longattn

#pragma once
// InputError: the user gave us something we cannot run. The program prints the message (which
// names the field and the fix) and exits with code 2; nothing is written.
#include <stdexcept>
#include <string>

namespace longattn {

struct InputError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace longattn

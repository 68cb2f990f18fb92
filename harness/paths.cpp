#include "harness/paths.h"

#include <filesystem>
#include <system_error>

namespace longattn {

std::string program_path() {
  std::error_code ec;
  const std::filesystem::path p = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::string() : p.string();
}

std::string data_dir() {
  static const std::string dir = [] {
    namespace fs = std::filesystem;
    std::error_code ec;
    const std::string exe = program_path();
    if (!exe.empty()) {
      const fs::path installed = fs::path(exe).parent_path().parent_path() / "share" / "longattn";
      if (fs::is_directory(installed / "suite", ec)) return installed.string();
    }
    return std::string(LONGATTN_SOURCE_DIR);
  }();
  return dir;
}

std::string python_executable() { return LONGATTN_PYTHON; }

}  // namespace longattn

#pragma once
// Memory as Linux reports it: the peak resident set of this process (resettable between cases),
// and the memory available to new work.
#include <cstdint>
#include <fstream>
#include <string>

namespace longattn {

inline int64_t read_kib(const char* file, const std::string& field) {
  std::ifstream in(file);
  std::string key;
  int64_t value = -1;
  while (in >> key) {
    if (key == field + ":") {
      in >> value;
      return value;
    }
    std::getline(in, key);
  }
  return -1;
}

// Restart the peak-RSS count (VmHWM) from the current RSS.
inline void reset_peak_rss() { std::ofstream("/proc/self/clear_refs") << "5"; }
inline int64_t peak_rss_bytes() { return read_kib("/proc/self/status", "VmHWM") * 1024; }
inline int64_t available_memory_bytes() { return read_kib("/proc/meminfo", "MemAvailable") * 1024; }

}  // namespace longattn

#pragma once
// Results are never half written: write to PATH.tmp.PID, rename over PATH on commit(), remove the
// temporary if commit() was never reached.
#include <cstdio>
#include <fstream>
#include <string>
#include <unistd.h>

#include "kernels/input_error.h"

namespace longattn {

struct AtomicFile {
  std::string path, tmp;
  std::ofstream out;
  explicit AtomicFile(const std::string& p) : path(p), tmp(p + ".tmp." + std::to_string(getpid())) {
    out.open(tmp, std::ios::binary);
    if (!out) throw InputError(path + ": cannot write here; check the directory exists and is writable");
  }
  void commit() {
    out.close();
    if (!out || std::rename(tmp.c_str(), path.c_str()) != 0) throw InputError(path + ": writing failed");
    tmp.clear();
  }
  ~AtomicFile() {
    if (!tmp.empty()) {
      out.close();
      std::remove(tmp.c_str());
    }
  }
};

}  // namespace longattn

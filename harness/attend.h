#pragma once
// `longattn attend`: one attention from .npy files to .npy files, so anyone can check longattn
// against NumPy or PyTorch; under mpirun with a dist-* method, a distributed run of the same.
#include <string>

#include "comm/communicator.h"

namespace longattn {

struct AttendOptions {
  std::string q, k, v, pattern, method = "auto", out, lse;
  float scale = 0;
  int threads = 0;
};

// Throws InputError (exit 2) before writing anything.
void attend(Communicator& comm, const AttendOptions& opt);

}  // namespace longattn

#pragma once
// `longattn attend`: one attention from .npy files to .npy files, so anyone can check longattn
// against NumPy or PyTorch; under mpirun with a dist-* method, a distributed run of the same.
#include <string>

#include "comm/communicator.h"
#include "kernels/pattern.h"

namespace longattn {

struct AttendOptions {
  std::string q, k, v, pattern, method = "auto", out, lse, device = "cpu";
  std::string dout, dq, dk, dv;  // the backward pass (SPEC §6): dO in, any of dQ, dK, dV out
  float scale = 0;
  bool scale_given = false;  // then it must be positive and finite
  int threads = 0;
  int ulysses = 0;  // dist-usp's Ulysses degree (0: its default)
  bool allow_nonfinite = false;  // else NaN or inf in Q, K or V is bad input (SPEC §4)
};

// Throws InputError (exit 2) before writing anything.
void attend(Communicator& comm, const AttendOptions& opt);

// --pattern: inline JSON (starting with '{') or a file; InputError naming --pattern otherwise.
Pattern load_pattern(const std::string& text);

// `longattn verify`: outputs another program computed (O, optionally LSE) checked against the
// oracle on the same rows `run` checks (SPEC §4); with --dout, its gradients too (SPEC §6).
// Prints the results' `error` object as JSON; returns 0 when within tolerance, 1 otherwise;
// InputError (exit 2) on bad input.
struct VerifyOptions {
  std::string q, k, v, o, lse, pattern, dtype = "fp32";
  std::string dout, dq, dk, dv;  // all four, or none
  float scale = 0;
  bool scale_given = false;
  uint64_t seed = 1;
};
int verify_outputs(const VerifyOptions& opt);

}  // namespace longattn

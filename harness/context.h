#pragma once
// The `context` block of a results file: where, when, how and on what a run happened.
#include <string>

#include <nlohmann/json.hpp>

#include "comm/communicator.h"

namespace longattn {

struct RunEnvironment {
  int world = 1;
  int local_ranks = 1;       // ranks sharing this node
  int threads_per_rank = 1;  // OpenMP and BLAS threads of each rank
  int cores_allowed = 1;     // CPUs in this rank's affinity mask
  double sgemm_gflops = 0;   // median over ranks of each rank's calibration sgemm
  nlohmann::json cpu_peak;   // this rank's fp32 FMA peak (kernels/cpu.h)
};

// Ranks on this node (from the launcher), and the threads each gets when the user did not say.
RunEnvironment detect_environment(Communicator& comm, int threads_option);
// Times an sgemm on every rank at once with the rank's threads; the median rate over ranks.
double calibrate_sgemm(Communicator& comm, int threads);
nlohmann::json run_context(Communicator& comm, const RunEnvironment& env, const std::string& command_line);

}  // namespace longattn

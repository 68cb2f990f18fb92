#pragma once
// `longattn run SUITE`: every case of a suite on every rank, timed, verified, written as one JSON
// results file (results/schema.json).
#include <string>

#include "comm/communicator.h"

namespace longattn {

struct RunOptions {
  std::string suite;
  std::string out;  // empty: results/<suite>.json
  bool quiet = false;
  int threads = 0;  // per rank; 0: cores / ranks on the node
  bool plan = false;  // print the expanded cases as JSON (rank 0) and run nothing
  std::string command_line;
};

// Returns the exit code: 0 all cases ok or skipped, 1 some case failed verification or raised.
// Bad input throws InputError (exit 2) on every rank alike, before anything runs.
int run_suite(Communicator& comm, const RunOptions& opt);

// The test hook LONGATTN_INJECT_SLOWDOWN=METHOD:FACTOR (e.g. "flash:2"): the named method runs its
// computation FACTOR times per timed iteration, so the regression gate can be shown to catch a
// slowdown. Unset: factor 1. Malformed: InputError naming the variable.
struct InjectedSlowdown {
  std::string method;
  int factor = 1;
};
InjectedSlowdown injected_slowdown();

}  // namespace longattn

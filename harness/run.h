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
  std::string command_line;
};

// Returns the exit code: 0 all cases ok or skipped, 1 some case failed verification or raised.
// Bad input throws InputError (exit 2) on every rank alike, before anything runs.
int run_suite(Communicator& comm, const RunOptions& opt);

}  // namespace longattn

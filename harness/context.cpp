#include "harness/context.h"

#include "kernels/flash_tiles.h"

#include <cblas.h>
#include <omp.h>
#include <sched.h>
#include <unistd.h>

#include <cstdio>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <thread>
#include <vector>

#ifdef LONGATTN_HAVE_CUDA
#include "kernels/cuda/cuda_attention.h"
#endif
#include "git_commit.h"  // LONGATTN_GIT_COMMIT, written at every build (harness/git_commit.cmake)
#include "kernels/blas.h"
#include "kernels/cpu.h"

namespace longattn {

RunEnvironment detect_environment(Communicator& comm, int threads_option) {
  RunEnvironment env;
  env.world = comm.size();
  env.local_ranks = comm.size();
  for (const char* var : {"OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS_PER_NODE"})
    if (const char* v = std::getenv(var)) {
      env.local_ranks = std::max(1, std::atoi(v));
      break;
    }
  // The cores this rank may run on: mpirun binds each rank to one core by default (also with
  // -np 1), and two threads on one core would halve every figure. An unbound rank shares the
  // machine with the node's other ranks.
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  cpu_set_t mask;
  const int allowed = sched_getaffinity(0, sizeof mask, &mask) == 0 ? CPU_COUNT(&mask) : cores;
  env.cores_allowed = allowed;
  const int share = allowed < cores ? allowed : std::max(1, cores / env.local_ranks);
  env.threads_per_rank = threads_option > 0 ? threads_option : share;
  if (comm.rank() == 0 && env.local_ranks == 1 && allowed < cores)
    std::fprintf(stderr, "longattn: this rank is bound to %d of %d cores (mpirun binds by default); run without "
                 "mpirun or with --bind-to none to use them all\n", allowed, cores);
  omp_set_num_threads(env.threads_per_rank);
  openblas_set_num_threads(env.threads_per_rank);
  return env;
}

double calibrate_sgemm(Communicator& comm, int threads) {
  // n = 2048: OpenBLAS reaches its peak from about here (at 1024 it reads 10-20% lower).
  const int n = 2048;
  std::vector<float> a(n * n, 0.5f), b(n * n, 0.25f), c(n * n);
  openblas_set_num_threads(threads);
  double best = 1e30;
  comm.barrier();
  for (int rep = 0; rep < 3; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n);
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  // Median over ranks: every rank's rate, gathered.
  std::vector<double> rates(comm.size());
  const double mine = 2.0 * n * n * n / best / 1e9;
  comm.all_gather(&mine, sizeof mine, rates.data());
  std::sort(rates.begin(), rates.end());
  return rates[rates.size() / 2];
}

namespace {

std::string now_iso8601() {
  const std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

}  // namespace

// Which tile path each dtype's flash tiles take on this CPU, and every path with its availability.
nlohmann::json tile_path_context() {
  nlohmann::json chosen = nlohmann::json::object(), all = nlohmann::json::array();
  for (DType t : {DType::fp32, DType::bf16, DType::fp16}) chosen[dtype_name(t)] = select_tile_path(t).name;
  for (const TilePath& p : tile_paths())
    all.push_back({{"name", p.name}, {"dtype", dtype_name(p.dtype)}, {"needs", p.needs}, {"available", p.available()}});
  return {{"chosen", chosen}, {"paths", all}, {"forced_by", std::getenv("LONGATTN_TILE_PATH") ? "LONGATTN_TILE_PATH" : "none"}};
}

nlohmann::json run_context(Communicator& comm, const RunEnvironment& env, const std::string& command_line) {
  // Host names of every rank, gathered as fixed-size records.
  char host[64] = {};
  gethostname(host, sizeof host - 1);
  std::vector<char> all(64 * comm.size());
  comm.all_gather(host, 64, all.data());
  std::vector<std::string> hosts;
  for (int r = 0; r < comm.size(); ++r) hosts.emplace_back(all.data() + 64 * r);
  std::vector<std::string> unique = hosts;
  std::sort(unique.begin(), unique.end());
  unique.erase(std::unique(unique.begin(), unique.end()), unique.end());

  // The BLAS core of every rank's machine: ranks on different nodes may run different cores.
  char core[32] = {};
  const std::string mine = blas_core();
  std::copy_n(mine.c_str(), std::min<size_t>(mine.size(), sizeof core - 1), core);
  std::vector<char> cores(32 * comm.size());
  comm.all_gather(core, 32, cores.data());
  nlohmann::json blas = blas_description(env.threads_per_rank);
  nlohmann::json per_host = nlohmann::json::object();
  for (int r = 0; r < comm.size(); ++r) per_host[hosts[r]] = std::string(cores.data() + 32 * r);
  blas["core_by_host"] = per_host;

  nlohmann::json gpu = nullptr;
#ifdef LONGATTN_HAVE_CUDA
  std::string why;
  if (cuda_available(&why)) gpu = cuda_device_description();
  else gpu = nlohmann::json{{"available", false}, {"reason", why}};
#endif
  return {
      {"date", now_iso8601()},
      {"host_names", unique},
      {"cpu_model", cpu_info().model},
      {"cores", std::thread::hardware_concurrency()},
      {"gpu", gpu},
      {"compiler", std::string("g++ ") + __VERSION__},
      {"compiler_flags", LONGATTN_CXX_FLAGS},
      {"build_type", LONGATTN_BUILD_TYPE},
      {"communicator", comm.kind()},
      {"mpi_library", comm.library()},
      {"comm_progress", comm.progress()},
      {"world_size", env.world},
      {"ranks_per_node", env.local_ranks},
      {"threads_per_rank", env.threads_per_rank},
      {"cores_per_rank", env.cores_allowed},
      {"oversubscribed", env.local_ranks * env.threads_per_rank > static_cast<int>(std::thread::hardware_concurrency())},
      {"git_commit", LONGATTN_GIT_COMMIT},
      {"command_line", command_line},
      {"sgemm_gflops_per_rank", env.sgemm_gflops},
      {"sgemm_shape", "2048x2048x2048, fp32, OpenBLAS, threads_per_rank threads, best of 3"},
      {"blas", blas},
      {"cpu_peak", env.cpu_peak},
      {"tile_paths", tile_path_context()},
  };
}

}  // namespace longattn

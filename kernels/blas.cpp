#include "kernels/blas.h"

#include <dlfcn.h>

#include <cblas.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>

#include "kernels/cpu.h"

namespace longattn {
namespace {

// OpenBLAS 0.3.21's DYNAMIC_ARCH cores by the widest vector ISA their kernels use. A name not
// here (a core of a newer OpenBLAS) is left alone.
int core_class(const std::string& core) {
  static const std::map<std::string, int> classes = {
      {"Katmai", 0},      {"Coppermine", 0}, {"Northwood", 0},  {"Prescott", 0},     {"Banias", 0},
      {"Atom", 0},        {"Core2", 0},      {"Penryn", 0},     {"Dunnington", 0},   {"Nehalem", 0},
      {"Athlon", 0},      {"Opteron", 0},    {"Opteron_SSE3", 0}, {"Barcelona", 0},  {"Nano", 0},
      {"Bobcat", 0},      {"Sandybridge", 1}, {"Bulldozer", 1}, {"Piledriver", 1},   {"Steamroller", 1},
      {"Excavator", 1},   {"Haswell", 2},    {"Zen", 2},        {"SkylakeX", 3},     {"Cooperlake", 3},
      {"SapphireRapids", 3}};
  const auto it = classes.find(core);
  return it == classes.end() ? -1 : it->second;
}

// The core whose kernels match this CPU. SkylakeX for any AVX-512 CPU: its sgemm is the one
// Cooperlake and Sapphire Rapids builds use too, and it was measured right (and 6x faster than
// Prescott) on the Sapphire Rapids this fix was made for.
std::string matching_core(const CpuInfo& c) {
  const std::string isa = c.isa();
  if (isa == "avx512") return "SkylakeX";
  if (isa == "avx2") return c.vendor == "AuthenticAMD" ? "Zen" : "Haswell";
  return {};
}
int isa_class(const CpuInfo& c) {
  const std::string isa = c.isa();
  return isa == "avx512" ? 3 : isa == "avx2" ? 2 : 0;
}

const char* env(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? v : nullptr;
}

}  // namespace

std::string blas_core() { return openblas_get_corename(); }

bool blas_core_is_generic() {
  const int have = core_class(blas_core());
  return have >= 0 && have < isa_class(cpu_info());
}

void ensure_blas_core(char** argv) {
  if (env("LONGATTN_BLAS_CORE_BEFORE")) return;  // this is the re-run: never loop
  const std::string policy = env("LONGATTN_BLAS_CORE") ? env("LONGATTN_BLAS_CORE") : "auto";
  if (policy == "keep") return;
  const std::string now = blas_core();
  std::string want;
  if (policy != "auto") {
    want = policy;
  } else {
    const CpuInfo& c = cpu_info();
    const int have = core_class(now);
    if (have < 0 || have >= isa_class(c)) return;
    want = matching_core(c);
  }
  if (want.empty() || want == now) return;
  setenv("LONGATTN_BLAS_CORE_BEFORE", now.c_str(), 1);
  if (const char* user = env("OPENBLAS_CORETYPE")) setenv("LONGATTN_OPENBLAS_CORETYPE_BEFORE", user, 1);
  setenv("OPENBLAS_CORETYPE", want.c_str(), 1);
  execv("/proc/self/exe", argv);
  std::fprintf(stderr, "longattn: warning: could not restart with OPENBLAS_CORETYPE=%s (%s); OpenBLAS runs %s\n",
               want.c_str(), std::strerror(errno), now.c_str());
}

SbgemmFn blas_sbgemm() {
  static const SbgemmFn f = reinterpret_cast<SbgemmFn>(dlsym(RTLD_DEFAULT, "cblas_sbgemm"));
  return f;
}

nlohmann::json blas_description(int threads) {
  const std::string core = blas_core();
  std::string config = openblas_get_config();
  // "OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH ..." -> "0.3.21"
  std::string version = config.rfind("OpenBLAS ", 0) == 0 ? config.substr(9, config.find(' ', 9) - 9) : "unknown";
  nlohmann::json j = {{"library", "OpenBLAS"}, {"version", version},          {"config", config},
                      {"core", core},          {"threads", threads},          {"core_below_cpu_isa", blas_core_is_generic()},
                      {"bf16_gemm", blas_sbgemm() ? "cblas_sbgemm" : "none: bf16 vanilla runs sgemm on the bf16 values"}};
  const char* before = env("LONGATTN_BLAS_CORE_BEFORE");
  const char* forced = env("OPENBLAS_CORETYPE");
  if (before && core != before) {
    j["core_chosen_by"] = "longattn";
    j["core_replaced"] = before;
    j["core_reason"] = env("LONGATTN_BLAS_CORE") ? std::string("LONGATTN_BLAS_CORE=") + env("LONGATTN_BLAS_CORE")
                                                 : std::string("OpenBLAS ran a generic core below this CPU's ISA (") +
                                                       cpu_info().isa() + ")";
    if (const char* user = env("LONGATTN_OPENBLAS_CORETYPE_BEFORE"))
      j["core_reason"] = j["core_reason"].get<std::string>() + "; OPENBLAS_CORETYPE=" + user + " was set";
  } else if (before) {
    j["core_chosen_by"] = "OpenBLAS";
    j["core_reason"] = std::string("longattn asked for ") + (forced ? forced : "?") + "; OpenBLAS kept " + core;
  } else if (forced) {
    j["core_chosen_by"] = "environment";
    j["core_reason"] = std::string("OPENBLAS_CORETYPE=") + forced;
  } else {
    j["core_chosen_by"] = "OpenBLAS";
  }
  return j;
}

}  // namespace longattn

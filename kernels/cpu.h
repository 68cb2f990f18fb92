#pragma once
// What this CPU can do, from cpuid and /proc/cpuinfo: its vector ISA, its fp32 FMA peak, and the
// clock it really runs at (measured: under a hypervisor /proc/cpuinfo shows the nominal clock,
// and turbo runs above it). Every figure a run reports can then be read against the peak.
#include <string>

#include <nlohmann/json.hpp>

namespace longattn {

struct CpuInfo {
  std::string vendor;  // "AuthenticAMD", "GenuineIntel", ...
  std::string model;   // /proc/cpuinfo "model name"
  int family = 0, model_id = 0;
  bool avx2 = false, fma = false, avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false;
  bool avx512_bf16 = false, avx512_fp16 = false, amx_bf16 = false;
  // The widest ISA class the BLAS and the kernels can use: "avx512", "avx2", or "sse".
  const char* isa() const;
  int fp32_lanes() const;  // per vector register of that ISA
  // 512-bit (or 256-bit on AVX2) FMA instructions retired per cycle per core. Not in cpuid: taken
  // from the vendor and family, and said to be assumed (fma_units_basis).
  int fma_units() const;
  const char* fma_units_basis() const;
};

const CpuInfo& cpu_info();  // detected once

double nominal_clock_ghz();   // /proc/cpuinfo "cpu MHz" (0 if absent)
double measured_clock_ghz();  // a chain of dependent 1-cycle adds, timed on the calling thread

// cores x lanes x FMA units x 2 x clock, at both clocks, for `threads` cores; as JSON for the
// results context, and as one line for the console.
nlohmann::json cpu_peak(int threads);
std::string cpu_peak_line(const nlohmann::json& peak, double sgemm_gflops);

}  // namespace longattn

#include "kernels/cpu.h"

#include <cpuid.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>

namespace longattn {

const char* CpuInfo::isa() const {
  if (avx512f && avx512bw && avx512vl && avx512dq) return "avx512";
  if (avx2 && fma) return "avx2";
  return "sse";
}

int CpuInfo::fp32_lanes() const {
  const std::string i = isa();
  return i == "avx512" ? 16 : i == "avx2" ? 8 : 4;
}

int CpuInfo::fma_units() const {
  const std::string i = isa();
  if (i == "sse") return 1;
  if (vendor == "AuthenticAMD") {
    // Zen 4 (family 0x19 with AVX-512) runs a 512-bit FMA as two 256-bit halves: one per cycle.
    // Zen 5 (0x1A) has two full 512-bit pipes; Zen 1 (0x17, model < 0x30) two 128-bit ones.
    if (family >= 0x1A) return 2;
    if (i == "avx512") return 1;
    if (family == 0x17 && model_id < 0x30) return 1;
    return 2;
  }
  return 2;  // Intel since Haswell; Xeon Gold/Platinum and Sapphire Rapids have two 512-bit FMAs
}

const char* CpuInfo::fma_units_basis() const {
  if (vendor == "AuthenticAMD")
    return "assumed from the AMD family (Zen 4: one 512-bit FMA per cycle as two 256-bit halves; Zen 2/3: two 256-bit; "
           "Zen 5: two 512-bit)";
  return "assumed: two FMA units (Intel since Haswell; some Xeon Bronze/Silver parts have one 512-bit unit)";
}

namespace {

std::string proc_cpuinfo(const std::string& key) {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(key, 0) == 0 && line.find(':') != std::string::npos) {
      const auto at = line.find(':') + 1;
      return line.substr(line.find_first_not_of(' ', at) == std::string::npos ? at : line.find_first_not_of(' ', at));
    }
  return {};
}

CpuInfo detect() {
  CpuInfo c;
  unsigned a, b, cx, d;
  char vendor[13] = {};
  if (__get_cpuid(0, &a, &b, &cx, &d)) {
    std::copy_n(reinterpret_cast<char*>(&b), 4, vendor);
    std::copy_n(reinterpret_cast<char*>(&d), 4, vendor + 4);
    std::copy_n(reinterpret_cast<char*>(&cx), 4, vendor + 8);
  }
  c.vendor = vendor;
  if (__get_cpuid(1, &a, &b, &cx, &d)) {
    const unsigned base_family = (a >> 8) & 0xf, base_model = (a >> 4) & 0xf;
    c.family = static_cast<int>(base_family == 0xf ? base_family + ((a >> 20) & 0xff) : base_family);
    c.model_id = static_cast<int>(base_family >= 0x6 ? base_model | (((a >> 16) & 0xf) << 4) : base_model);
    c.fma = cx & (1u << 12);
    // The OS must save the wide registers (OSXSAVE, XCR0) for the ISA to be usable at all.
    const bool osxsave = cx & (1u << 27);
    unsigned long long xcr0 = 0;
    if (osxsave) {
      unsigned lo, hi;
      __asm__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
      xcr0 = (static_cast<unsigned long long>(hi) << 32) | lo;
    }
    const bool ymm = (xcr0 & 0x6) == 0x6, zmm = (xcr0 & 0xe6) == 0xe6;
    if (__get_cpuid_count(7, 0, &a, &b, &cx, &d)) {
      c.avx2 = ymm && (b & (1u << 5));
      c.avx512f = zmm && (b & (1u << 16));
      c.avx512dq = zmm && (b & (1u << 17));
      c.avx512bw = zmm && (b & (1u << 30));
      c.avx512vl = zmm && (b & (1u << 31));
      c.avx512_fp16 = zmm && (d & (1u << 23));
      c.amx_bf16 = d & (1u << 22);
    }
    if (__get_cpuid_count(7, 1, &a, &b, &cx, &d)) c.avx512_bf16 = zmm && (a & (1u << 5));
    if (!c.fma) c.avx2 = false;
  }
  c.model = proc_cpuinfo("model name");
  if (c.model.empty()) c.model = "unknown";
  return c;
}

}  // namespace

const CpuInfo& cpu_info() {
  static const CpuInfo info = detect();
  return info;
}

double nominal_clock_ghz() {
  const std::string mhz = proc_cpuinfo("cpu MHz");
  return mhz.empty() ? 0.0 : std::strtod(mhz.c_str(), nullptr) / 1e3;
}

double measured_clock_ghz() {
  // 64 dependent register adds per loop trip: one cycle each on every x86 since the P6, so
  // cycles = adds. (Not `add $1`: Intel's Golden Cove renamer folds immediate adds, 8x too fast.)
  constexpr long kTrips = 200000;
  double best = 0;
  for (int rep = 0; rep < 5; ++rep) {
    unsigned long x = 0, one = 1;
    const auto t0 = std::chrono::steady_clock::now();
    for (long t = 0; t < kTrips; ++t) {
      __asm__ volatile(
          ".rept 64\n\t"
          "add %1, %0\n\t"
          ".endr"
          : "+r"(x)
          : "r"(one));
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, 64.0 * kTrips / s / 1e9);
  }
  return best;
}

nlohmann::json cpu_peak(int threads) {
  const CpuInfo& c = cpu_info();
  const double nominal = nominal_clock_ghz(), measured = measured_clock_ghz();
  const double per_ghz = static_cast<double>(threads) * c.fp32_lanes() * c.fma_units() * 2;
  return {{"isa", c.isa()},
          {"fp32_lanes", c.fp32_lanes()},
          {"fma_units", c.fma_units()},
          {"fma_units_basis", c.fma_units_basis()},
          {"cores", threads},
          {"clock_ghz_nominal", nominal},
          {"clock_ghz_measured", measured},
          {"fp32_gflops_nominal_clock", per_ghz * nominal},
          {"fp32_gflops_measured_clock", per_ghz * measured},
          {"features", {{"avx2", c.avx2}, {"fma", c.fma}, {"avx512f", c.avx512f}, {"avx512_bf16", c.avx512_bf16},
                        {"avx512_fp16", c.avx512_fp16}, {"amx_bf16", c.amx_bf16}}}};
}

std::string cpu_peak_line(const nlohmann::json& p, double sgemm_gflops) {
  char b[320];
  const double peak = p["fp32_gflops_measured_clock"].get<double>();
  std::snprintf(b, sizeof b,
                "sgemm %.1f GFLOP/s per rank = %.0f%% of the fp32 FMA peak %.1f GFLOP/s (%d cores x %d lanes x %d FMA x 2 "
                "x %.2f GHz measured; %.2f GHz nominal gives %.1f)",
                sgemm_gflops, peak > 0 ? 100.0 * sgemm_gflops / peak : 0.0, peak, p["cores"].get<int>(),
                p["fp32_lanes"].get<int>(), p["fma_units"].get<int>(), p["clock_ghz_measured"].get<double>(),
                p["clock_ghz_nominal"].get<double>(), p["fp32_gflops_nominal_clock"].get<double>());
  return b;
}

}  // namespace longattn

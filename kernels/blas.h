#pragma once
// The BLAS under `vanilla` and the sgemm calibration, on its proper core. Debian's OpenBLAS 0.3.21
// does not recognise some newer CPUs (Sapphire Rapids, seen) and silently runs its generic
// Prescott (SSE3) kernels there, 5x slower. OpenBLAS reads OPENBLAS_CORETYPE only while it loads,
// before main(), so the fix is to run the program again with it set: ensure_blas_core() does that
// as the first thing in main(), before MPI or any thread starts.
//
// LONGATTN_BLAS_CORE: unset or "auto" fixes a core below the CPU's ISA; "keep" keeps whatever
// OpenBLAS chose; a core name (e.g. "Haswell") forces that one. The choice is recorded.
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

namespace longattn {

// May replace the process (execv of /proc/self/exe with the same argv); returns when no change
// is needed or possible.
void ensure_blas_core(char** argv);

std::string blas_core();  // openblas_get_corename()
// True when the running core is one whose kernels are below this CPU's vector ISA (the forced
// restart did not take, or LONGATTN_BLAS_CORE kept or chose it): vanilla's figures then say little.
bool blas_core_is_generic();
// OpenBLAS's bf16 GEMM (cblas_sbgemm, bf16 operands, fp32 result), looked up at run time: only
// OpenBLAS built with BUILD_BFLOAT16 has it (Debian's 0.3.21 does not). Null when absent.
using SbgemmFn = void (*)(int order, int trans_a, int trans_b, int m, int n, int k, float alpha, const uint16_t* a,
                          int lda, const uint16_t* b, int ldb, float beta, float* c, int ldc);
SbgemmFn blas_sbgemm();
// Library, version, core, threads, and who chose the core (OpenBLAS, the environment, longattn).
nlohmann::json blas_description(int threads);

}  // namespace longattn

#pragma once
// LONGATTN_HD marks the few functions host and device code share (the pattern's predicates, the
// merge's weights): compiled for both by nvcc, plain inline functions elsewhere. They are defined
// once, in headers, and mean the same in every translation unit.
#if defined(__CUDACC__)
#define LONGATTN_HD __host__ __device__ __forceinline__
#else
#define LONGATTN_HD inline
#endif

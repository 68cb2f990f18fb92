#pragma once
// LONGATTN_HD marks the few functions host and device code share (the pattern's predicates, the
// merge's weights): compiled for both by nvcc, plain inline functions elsewhere. They are defined
// once, in headers. Both spellings are `inline` and nothing else that changes the host's code:
// __host__ __device__ only says where nvcc compiles a function, so a .cu and a .cpp file define the
// same host function (no one-definition-rule hazard; __forceinline__ in .cu files alone made one).
#if defined(__CUDACC__)
#define LONGATTN_HD __host__ __device__ inline
#else
#define LONGATTN_HD inline
#endif

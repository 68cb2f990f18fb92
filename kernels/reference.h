#pragma once
// The oracle: SPEC §1 literally, in double precision, one query row at a time, for any pattern.
// Slow on purpose; every fast path is checked against it.
#include <cstdint>
#include <vector>

#include "kernels/attention.h"

namespace longattn {

// o_row[d] and lse of query i of head h (local index; global head a.head0 + h) of batch b. The
// query row is read from q_row when given (a caller holding only some rows of Q), else from a.q.
void reference_row(const AttentionArgs& a, int64_t b, int64_t h, int64_t i, double* o_row, double* lse,
                   const float* q_row = nullptr);

// Every row, written to a.o and a.lse (as float).
void reference_attention(const AttentionArgs& a);

}  // namespace longattn

#pragma once
// `nccl`: the ranks of MPI_COMM_WORLD, one GPU each, moving payload with NCCL between device
// buffers (device_buffers() is true: every pointer handed to a collective is device memory).
// Built into longattn_cuda when NCCL and MPI are found (LONGATTN_HAVE_NCCL is then defined).
//
// Semantics match comm/mpi_comm.cpp: collectives return when their data has arrived (the
// communicator's stream is synchronised); start_send_recv returns at once and wait() blocks until
// both directions are done. The communicator's stream is a blocking stream, so work the caller
// queued on the legacy default stream is ordered before it; work on other streams must be
// synchronised by the caller first. Byte counters are counted exactly as the MPI communicator
// counts them. max() and sum() of host doubles go over MPI.
#include <memory>

#include "comm/communicator.h"

namespace longattn {

// Initialises MPI if nobody has (and finalises it at exit), picks GPU (node-local rank mod device
// count), shares NCCL's unique id from rank 0 over MPI and creates the NCCL communicator. Throws
// std::runtime_error on every rank if any rank has no usable GPU or NCCL fails.
std::unique_ptr<Communicator> make_nccl_communicator();

}  // namespace longattn

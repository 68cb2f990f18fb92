#pragma once
// `nccl`: the ranks of MPI_COMM_WORLD (one rank without MPI), one GPU each, moving payload with
// NCCL between device buffers (device_buffers() is true: every pointer handed to a collective is
// device memory). Built as longattn_nccl when nccl.h and libnccl are found (LONGATTN_HAVE_NCCL is
// then defined); MPI, where built in, carries NCCL's unique id and the host reductions.
//
// Semantics match comm/mpi_comm.cpp: collectives return when their data has arrived;
// start_send_recv returns at once and wait() blocks until both directions are done. Compute that
// feeds or reads an exchange runs on compute_stream(): each exchange waits for the work queued
// there first, and work queued there after it waits for the exchange (events, not host syncs).
// Work on any other stream must be synchronised by the caller first. Byte counters are counted
// exactly as the MPI communicator counts them.
#include <memory>

#include "comm/communicator.h"

namespace longattn {

// Initialises MPI if built in and nobody has (and finalises it at exit), takes the GPU the kernels
// use (cuda_available: local rank mod device count), shares NCCL's unique id from rank 0 and creates
// the NCCL communicator. Throws std::runtime_error on every rank if any rank has no usable GPU, or
// NCCL's initialisation fails on any rank or takes longer than LONGATTN_NCCL_INIT_TIMEOUT_S
// seconds (default 300): the ranks agree on the outcome, so none is left waiting.
std::unique_ptr<Communicator> make_nccl_communicator();

}  // namespace longattn

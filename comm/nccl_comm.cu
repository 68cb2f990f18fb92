// `nccl`: see comm/nccl_comm.h. Payload moves as ncclUint8 (bytes) on one stream per
// communicator; the variable-size collectives NCCL lacks are grouped point-to-point calls
// (all_to_all_v) or grouped broadcasts (all_gather_v). Copies to self are device memcpys.
#include <cuda_runtime_api.h>
#include <mpi.h>
#include <nccl.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "comm/nccl_comm.h"

namespace longattn {
namespace {

void check(ncclResult_t r, const char* what) {
  if (r != ncclSuccess) throw std::runtime_error(std::string("NCCL ") + what + " failed: " + ncclGetErrorString(r));
}

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess)
    throw std::runtime_error(std::string(what) + " failed: " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) +
                             ")");
}

// Adds the wall time of a scope to counters.seconds.
struct Timer {
  CommCounters* c;
  std::chrono::steady_clock::time_point t0 = std::chrono::steady_clock::now();
  explicit Timer(CommCounters* c) : c(c) {}
  ~Timer() { c->seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); }
};

struct NcclExchange : PendingExchange {
  cudaEvent_t done = nullptr;
  CommCounters* counters = nullptr;
  ~NcclExchange() override {
    if (done) cudaEventDestroy(done);
  }
  void wait() override {
    Timer t(counters);
    check(cudaEventSynchronize(done), "cudaEventSynchronize (send/recv)");
  }
};

const char* at(const void* p, size_t offset) { return static_cast<const char*>(p) + offset; }
char* at(void* p, size_t offset) { return static_cast<char*>(p) + offset; }

class NcclCommunicator : public Communicator {
 public:
  NcclCommunicator() {
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
    // Every rank picks its GPU first and all agree it worked: a rank that throws alone would
    // leave the others waiting in the broadcast below.
    std::string why;
    try {
      select_device();
    } catch (const std::exception& e) {
      why = e.what();
    }
    int ok = why.empty() ? 1 : 0;
    MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (!ok)
      throw std::runtime_error(why.empty() ? std::string("nccl communicator: another rank has no usable GPU")
                                           : "nccl communicator: rank " + std::to_string(rank_) + ": " + why);
    ncclUniqueId id{};
    if (rank_ == 0) check(ncclGetUniqueId(&id), "ncclGetUniqueId");
    MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, MPI_COMM_WORLD);
    check(ncclCommInitRank(&comm_, size_, id, rank_), "ncclCommInitRank");
    check(cudaStreamCreate(&stream_), "cudaStreamCreate");  // blocking: ordered after the legacy stream
  }
  ~NcclCommunicator() override {
    if (stream_) cudaStreamSynchronize(stream_);
    if (comm_) {
      ncclCommFinalize(comm_);
      ncclCommDestroy(comm_);
    }
    if (stream_) cudaStreamDestroy(stream_);
  }

  const char* kind() const override { return "nccl"; }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  bool device_buffers() const override { return true; }
  std::string library() const override {
    int v = 0;
    ncclGetVersion(&v);  // major * 10000 + minor * 100 + patch
    return "NCCL " + std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." + std::to_string(v % 100);
  }

  void barrier() override {
    Timer t(&counters);
    check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize (barrier)");
    MPI_Barrier(MPI_COMM_WORLD);
  }

  void all_gather(const void* send, size_t bytes, void* recv) override {
    Timer t(&counters);
    check(ncclAllGather(send, recv, bytes, ncclUint8, comm_, stream_), "ncclAllGather");
    finish("all_gather");
    count(CommOp::all_gather, bytes * (size_ - 1), bytes * (size_ - 1));
  }

  void all_gather_v(const void* send, const std::vector<size_t>& counts, void* recv) override {
    Timer t(&counters);
    size_t total = 0;
    check(ncclGroupStart(), "ncclGroupStart");
    for (int r = 0; r < size_; ++r) {  // rank r broadcasts its counts[r] bytes to their place
      if (counts[r])
        check(ncclBroadcast(send, at(recv, total), counts[r], ncclUint8, r, comm_, stream_), "ncclBroadcast");
      total += counts[r];
    }
    check(ncclGroupEnd(), "ncclGroupEnd");
    finish("all_gather_v");
    count(CommOp::all_gather, total - counts[rank_], counts[rank_] * (size_ - 1));
  }

  void all_to_all(const void* send, size_t bytes, void* recv) override {
    Timer t(&counters);
    const std::vector<size_t> sizes(size_, bytes);
    std::vector<size_t> offsets(size_);
    for (int r = 0; r < size_; ++r) offsets[r] = r * bytes;
    exchange(send, sizes, offsets, recv, sizes, offsets);
    finish("all_to_all");
    count(CommOp::all_to_all, bytes * (size_ - 1), bytes * (size_ - 1));
  }

  void all_to_all_v(const void* send, const std::vector<size_t>& sc, const std::vector<size_t>& so, void* recv,
                    const std::vector<size_t>& rc, const std::vector<size_t>& ro) override {
    Timer t(&counters);
    exchange(send, sc, so, recv, rc, ro);
    finish("all_to_all_v");
    size_t in = 0, out = 0;
    for (int r = 0; r < size_; ++r)
      if (r != rank_) in += rc[r], out += sc[r];
    count(CommOp::all_to_all, in, out);
  }

  std::unique_ptr<PendingExchange> start_send_recv(const void* send, size_t send_bytes, int dest, void* recv,
                                                   size_t recv_bytes, int src) override {
    auto ex = std::make_unique<NcclExchange>();
    ex->counters = &counters;
    check(cudaEventCreateWithFlags(&ex->done, cudaEventDisableTiming), "cudaEventCreate");
    if (dest == rank_ && src == rank_) {
      copy(recv, send, send_bytes);
    } else {
      check(ncclGroupStart(), "ncclGroupStart");
      check(ncclRecv(recv, recv_bytes, ncclUint8, src, comm_, stream_), "ncclRecv");
      check(ncclSend(send, send_bytes, ncclUint8, dest, comm_, stream_), "ncclSend");
      check(ncclGroupEnd(), "ncclGroupEnd");
    }
    check(cudaEventRecord(ex->done, stream_), "cudaEventRecord");
    count(CommOp::send_recv, src == rank_ ? 0 : recv_bytes, dest == rank_ ? 0 : send_bytes);
    return ex;
  }

  void broadcast(void* buf, size_t bytes, int root) override {
    Timer t(&counters);
    check(ncclBroadcast(buf, buf, bytes, ncclUint8, root, comm_, stream_), "ncclBroadcast");
    finish("broadcast");
    count(CommOp::broadcast, rank_ == root ? 0 : bytes, rank_ == root ? bytes * (size_ - 1) : 0);
  }

  void max(double* values, size_t n) override {
    MPI_Allreduce(MPI_IN_PLACE, values, static_cast<int>(n), MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  }
  void sum(double* values, size_t n) override {
    MPI_Allreduce(MPI_IN_PLACE, values, static_cast<int>(n), MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
  }

  [[noreturn]] void abort(const std::string& message, int code) override {
    std::fprintf(stderr, "longattn: rank %d: %s\n", rank_, message.c_str());
    std::fflush(stderr);
    if (comm_) ncclCommAbort(comm_);
    comm_ = nullptr;
    MPI_Abort(MPI_COMM_WORLD, code);
    std::_Exit(code);
  }

 private:
  void select_device() {
    int devices = 0;
    check(cudaGetDeviceCount(&devices), "cudaGetDeviceCount");
    if (devices == 0) throw std::runtime_error("no CUDA device");
    MPI_Comm node;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node);
    int local = 0;
    MPI_Comm_rank(node, &local);
    MPI_Comm_free(&node);
    check(cudaSetDevice(local % devices), "cudaSetDevice");
  }

  // Point-to-point exchange with every rank in one NCCL group; the block for this rank is copied.
  void exchange(const void* send, const std::vector<size_t>& sc, const std::vector<size_t>& so, void* recv,
                const std::vector<size_t>& rc, const std::vector<size_t>& ro) {
    copy(at(recv, ro[rank_]), at(send, so[rank_]), sc[rank_]);
    check(ncclGroupStart(), "ncclGroupStart");
    for (int r = 0; r < size_; ++r) {
      if (r == rank_) continue;
      if (sc[r]) check(ncclSend(at(send, so[r]), sc[r], ncclUint8, r, comm_, stream_), "ncclSend");
      if (rc[r]) check(ncclRecv(at(recv, ro[r]), rc[r], ncclUint8, r, comm_, stream_), "ncclRecv");
    }
    check(ncclGroupEnd(), "ncclGroupEnd");
  }

  void copy(void* dst, const void* src, size_t bytes) {
    if (bytes && dst != src)
      check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream_), "cudaMemcpyAsync (to self)");
  }

  // Blocking semantics, as MPI's collectives: return once the data has arrived.
  void finish(const char* what) {
    check(cudaStreamSynchronize(stream_), what);
  }

  void count(CommOp op, size_t in, size_t out) {
    counters.bytes_received[static_cast<int>(op)] += in;
    counters.bytes_sent[static_cast<int>(op)] += out;
  }

  int rank_ = 0, size_ = 1;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
};

void finalize_mpi_at_exit() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

}  // namespace

std::unique_ptr<Communicator> make_nccl_communicator() {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) {
    MPI_Init(nullptr, nullptr);
    std::atexit(finalize_mpi_at_exit);  // we started MPI, so we end it; whoever started it ends it otherwise
  }
  return std::make_unique<NcclCommunicator>();
}

}  // namespace longattn

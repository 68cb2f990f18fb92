#pragma once
// Communicator: the collectives distributed attention needs, over one process (self), MPI ranks
// (mpi) or GPUs (nccl). Each counts the bytes it receives per kind of call at the level of the
// logical exchange (SPEC §3), so algorithms report communication volume from the counts, not from
// formulas, and tests check the counts against the formulas.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace longattn {

enum class CommOp { all_gather, all_to_all, send_recv, broadcast, reduce, count_ };
const char* op_name(CommOp op);

struct CommCounters {
  uint64_t bytes_received[static_cast<int>(CommOp::count_)] = {};
  uint64_t bytes_sent[static_cast<int>(CommOp::count_)] = {};
  double seconds = 0;  // wall time spent inside communicator calls (waits included)
  uint64_t total_received() const;
  uint64_t total_sent() const;
  void add(CommOp op, uint64_t received, uint64_t sent);
  // A variable all-to-all: what every rank but `self` sends this one (recv_counts) and gets from it.
  void add_all_to_all_v(const std::vector<size_t>& send_counts, const std::vector<size_t>& recv_counts, int self);
};

// A send/receive pair in flight; wait() completes both.
struct PendingExchange {
  virtual ~PendingExchange() = default;
  virtual void wait() = 0;
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual const char* kind() const = 0;  // "self", "mpi", "nccl"
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string library() const = 0;  // e.g. "Open MPI v4.1.4"
  // How a started send/receive progresses during compute (mpi: a progress thread, or none).
  virtual std::string progress() const { return "not needed"; }
  // Whether buffers live on the GPU (nccl) or in host memory.
  virtual bool device_buffers() const { return false; }
  // The device stream (a cudaStream_t) that compute feeding or reading exchanges runs on, ordered
  // with them by the communicator; null for host communicators.
  virtual void* compute_stream() const { return nullptr; }

  virtual void barrier() = 0;
  // recv[r * bytes .. (r+1) * bytes) <- rank r's send; every rank sends `bytes`.
  virtual void all_gather(const void* send, size_t bytes, void* recv) = 0;
  // Variable sizes: rank r sends counts[r] bytes; recv holds them back to back in rank order.
  virtual void all_gather_v(const void* send, const std::vector<size_t>& counts, void* recv) = 0;
  // Block r of send (bytes each) goes to rank r; block r of recv comes from rank r.
  virtual void all_to_all(const void* send, size_t bytes, void* recv) = 0;
  // Variable all-to-all: send_counts[r] bytes to rank r (at send_offsets[r]), recv likewise.
  virtual void all_to_all_v(const void* send, const std::vector<size_t>& send_counts,
                            const std::vector<size_t>& send_offsets, void* recv,
                            const std::vector<size_t>& recv_counts, const std::vector<size_t>& recv_offsets) = 0;
  // Start sending `send` to rank dest and receiving into `recv` from rank src; overlaps with compute.
  virtual std::unique_ptr<PendingExchange> start_send_recv(const void* send, size_t send_bytes, int dest,
                                                           void* recv, size_t recv_bytes, int src) = 0;
  virtual void broadcast(void* buf, size_t bytes, int root) = 0;
  // Element-wise max / sum of host doubles across ranks, for timings and error counts; not
  // counted as payload traffic.
  virtual void max(double* values, size_t n) = 0;
  virtual void sum(double* values, size_t n) = 0;
  // Abort every rank with a message: a failing rank must never leave the others hanging.
  [[noreturn]] virtual void abort(const std::string& message, int code) = 0;

  CommCounters counters;
  void reset_counters() { counters = CommCounters{}; }
  double max(double x) { max(&x, 1); return x; }
  double sum(double x) { sum(&x, 1); return x; }
};

// The communicator for this process: MPI when launched under mpirun with more than one rank (or
// whenever MPI is built in), otherwise `self`.
std::unique_ptr<Communicator> make_world_communicator(int* argc, char*** argv);
std::unique_ptr<Communicator> make_self_communicator();

}  // namespace longattn

// `nccl`: see comm/nccl_comm.h. Payload moves as ncclUint8 (bytes) on the communicator's own
// stream; the variable-size collectives NCCL lacks are grouped point-to-point calls (all_to_all_v)
// or grouped broadcasts (all_gather_v). Copies to self are device memcpys.
//
// Two streams, ordered by events: compute (compute_stream(), where the methods' attention steps run)
// and communication. Every exchange first makes the communication stream wait for what compute has
// queued (its send buffers may be compute's output), and compute waits for the exchange before it
// reads what arrived; the host waits too, as MPI's blocking calls do.
//
// The communicator is non-blocking (NCCL's config.blocking = 0) so that initialisation can be
// given a deadline and its outcome agreed across ranks: a rank whose init fails or hangs never
// leaves the others waiting in a collective. Every NCCL call therefore settles (polls until it is
// no longer in progress) before the next.
#include <cuda_runtime_api.h>
#include <nccl.h>
#ifdef LONGATTN_HAVE_MPI
#include <mpi.h>
#endif

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <thread>

#include "comm/nccl_comm.h"
#include "kernels/cuda/cuda_attention.h"

namespace longattn {
namespace {

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

const char* at(const void* p, size_t offset) { return static_cast<const char*>(p) + offset; }
char* at(void* p, size_t offset) { return static_cast<char*>(p) + offset; }

// Seconds a rank waits for ncclCommInitRank before it counts as failed: LONGATTN_NCCL_INIT_TIMEOUT_S,
// default 300 (a cold start of many ranks takes tens of seconds).
double init_timeout_s() {
  if (const char* v = std::getenv("LONGATTN_NCCL_INIT_TIMEOUT_S"); v && *v) {
    char* end = nullptr;
    const double s = std::strtod(v, &end);
    if (end && *end == '\0' && s > 0) return s;
  }
  return 300;
}

#ifdef LONGATTN_HAVE_MPI
int all_ok(bool ok) {  // 1 when every rank says ok
  int x = ok ? 1 : 0;
  MPI_Allreduce(MPI_IN_PLACE, &x, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  return x;
}
#else
int all_ok(bool ok) { return ok ? 1 : 0; }
#endif

class NcclCommunicator : public Communicator {
 public:
  NcclCommunicator() {
#ifdef LONGATTN_HAVE_MPI
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
#endif
    // The device the kernels use (cuda_available picks it by local rank), then the id, then the
    // communicator: after each stage every rank learns whether all got through, and all throw if not.
    std::string why;
    if (!cuda_available(&why)) why = "no usable GPU: " + why;
    try {
      if (why.empty()) {
        check(cudaStreamCreateWithFlags(&compute_, cudaStreamNonBlocking), "cudaStreamCreate (compute)");
        check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate (communication)");
        check(cudaEventCreateWithFlags(&computed_, cudaEventDisableTiming), "cudaEventCreate");
        check(cudaEventCreateWithFlags(&exchanged_, cudaEventDisableTiming), "cudaEventCreate");
      }
    } catch (const std::exception& e) {
      why = e.what();
    }
    agree(why, "setting up its GPU");
    ncclUniqueId id{};
    if (rank_ == 0) why = describe(ncclGetUniqueId(&id), "ncclGetUniqueId");
    agree(why, "making NCCL's unique id");
#ifdef LONGATTN_HAVE_MPI
    MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, MPI_COMM_WORLD);
#endif
    why = init(id);
    agree(why, "initialising NCCL");
  }
  ~NcclCommunicator() override { release(); }

  const char* kind() const override { return "nccl"; }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  bool device_buffers() const override { return true; }
  void* compute_stream() const override { return compute_; }
  std::string library() const override {
    int v = 0;
    ncclGetVersion(&v);  // major * 10000 + minor * 100 + patch
    return "NCCL " + std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." + std::to_string(v % 100);
  }

  void barrier() override {
    Timer t(&counters);
    check(cudaStreamSynchronize(compute_), "cudaStreamSynchronize (barrier)");
    check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize (barrier)");
#ifdef LONGATTN_HAVE_MPI
    MPI_Barrier(MPI_COMM_WORLD);
#endif
  }

  void all_gather(const void* send, size_t bytes, void* recv) override {
    Timer t(&counters);
    after_compute();
    call(ncclAllGather(send, recv, bytes, ncclUint8, comm_, stream_), "ncclAllGather");
    finish("all_gather");
    counters.add(CommOp::all_gather, bytes * (size_ - 1), bytes * (size_ - 1));
  }

  void all_gather_v(const void* send, const std::vector<size_t>& counts, void* recv) override {
    Timer t(&counters);
    after_compute();
    size_t total = 0;
    call(ncclGroupStart(), "ncclGroupStart");
    for (int r = 0; r < size_; ++r) {  // rank r broadcasts its counts[r] bytes to their place
      if (counts[r]) call(ncclBroadcast(send, at(recv, total), counts[r], ncclUint8, r, comm_, stream_), "ncclBroadcast");
      total += counts[r];
    }
    call(ncclGroupEnd(), "ncclGroupEnd");
    finish("all_gather_v");
    counters.add(CommOp::all_gather, total - counts[rank_], counts[rank_] * (size_ - 1));
  }

  void all_to_all(const void* send, size_t bytes, void* recv) override {
    Timer t(&counters);
    const std::vector<size_t> sizes(size_, bytes);
    std::vector<size_t> offsets(size_);
    for (int r = 0; r < size_; ++r) offsets[r] = r * bytes;
    after_compute();
    exchange(send, sizes, offsets, recv, sizes, offsets);
    finish("all_to_all");
    counters.add(CommOp::all_to_all, bytes * (size_ - 1), bytes * (size_ - 1));
  }

  void all_to_all_v(const void* send, const std::vector<size_t>& sc, const std::vector<size_t>& so, void* recv,
                    const std::vector<size_t>& rc, const std::vector<size_t>& ro) override {
    Timer t(&counters);
    after_compute();
    exchange(send, sc, so, recv, rc, ro);
    finish("all_to_all_v");
    counters.add_all_to_all_v(sc, rc, rank_);
  }

  // Returns once the exchange is queued behind compute's work; wait() orders compute after it.
  std::unique_ptr<PendingExchange> start_send_recv(const void* send, size_t send_bytes, int dest, void* recv,
                                                   size_t recv_bytes, int src) override {
    auto ex = std::make_unique<Exchange>(this);
    after_compute();
    if (dest == rank_ && src == rank_) {
      copy(recv, send, send_bytes);
    } else {
      call(ncclGroupStart(), "ncclGroupStart");
      call(ncclRecv(recv, recv_bytes, ncclUint8, src, comm_, stream_), "ncclRecv");
      call(ncclSend(send, send_bytes, ncclUint8, dest, comm_, stream_), "ncclSend");
      call(ncclGroupEnd(), "ncclGroupEnd");
    }
    check(cudaEventRecord(ex->done, stream_), "cudaEventRecord (send/recv)");
    counters.add(CommOp::send_recv, src == rank_ ? 0 : recv_bytes, dest == rank_ ? 0 : send_bytes);
    return ex;
  }

  void broadcast(void* buf, size_t bytes, int root) override {
    Timer t(&counters);
    after_compute();
    call(ncclBroadcast(buf, buf, bytes, ncclUint8, root, comm_, stream_), "ncclBroadcast");
    finish("broadcast");
    counters.add(CommOp::broadcast, rank_ == root ? 0 : bytes, rank_ == root ? bytes * (size_ - 1) : 0);
  }

  void max(double* values, size_t n) override {
#ifdef LONGATTN_HAVE_MPI
    MPI_Allreduce(MPI_IN_PLACE, values, static_cast<int>(n), MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
#else
    (void)values, (void)n;  // one rank
#endif
  }
  void sum(double* values, size_t n) override {
#ifdef LONGATTN_HAVE_MPI
    MPI_Allreduce(MPI_IN_PLACE, values, static_cast<int>(n), MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
#else
    (void)values, (void)n;
#endif
  }

  [[noreturn]] void abort(const std::string& message, int code) override {
    std::fprintf(stderr, "longattn: rank %d: %s\n", rank_, message.c_str());
    std::fflush(stderr);
    if (comm_) ncclCommAbort(comm_);
    comm_ = nullptr;
#ifdef LONGATTN_HAVE_MPI
    MPI_Abort(MPI_COMM_WORLD, code);
#endif
    std::_Exit(code);
  }

 private:
  struct Exchange : PendingExchange {
    NcclCommunicator* c;
    cudaEvent_t done = nullptr;
    explicit Exchange(NcclCommunicator* c) : c(c) {
      check(cudaEventCreateWithFlags(&done, cudaEventDisableTiming), "cudaEventCreate (send/recv)");
    }
    ~Exchange() override { cudaEventDestroy(done); }
    void wait() override {
      Timer t(&c->counters);
      check(cudaStreamWaitEvent(c->compute_, done, 0), "cudaStreamWaitEvent (send/recv)");
      check(cudaEventSynchronize(done), "cudaEventSynchronize (send/recv)");
    }
  };

  std::string describe(ncclResult_t r, const char* what) const {
    if (r == ncclSuccess) return {};
    std::string s = std::string(what) + " failed: " + ncclGetErrorString(r);
    if (const char* last = ncclGetLastError(comm_); last && *last) s += std::string(" (") + last + ")";
    return s;
  }
  // A non-blocking communicator's call may return ncclInProgress: poll until it has an outcome.
  ncclResult_t settle(ncclResult_t r) const {
    while (r == ncclInProgress && comm_) ncclCommGetAsyncError(comm_, &r);
    return r;
  }
  void call(ncclResult_t r, const char* what) const {
    if (std::string why = describe(settle(r), what); !why.empty()) throw std::runtime_error("NCCL " + why);
  }

  // ncclCommInitRank with a deadline; empty on success, else why (and no communicator).
  std::string init(const ncclUniqueId& id) {
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    ncclResult_t r = ncclCommInitRankConfig(&comm_, size_, id, rank_, &config);
    const double limit = init_timeout_s();
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(limit);
    while (r == ncclInProgress && comm_) {
      if (std::chrono::steady_clock::now() > deadline) {
        ncclCommAbort(comm_);
        comm_ = nullptr;
        return "ncclCommInitRank did not finish within " + std::to_string(static_cast<int>(limit)) +
               " s (LONGATTN_NCCL_INIT_TIMEOUT_S sets the limit)";
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
      ncclCommGetAsyncError(comm_, &r);
    }
    std::string why = describe(r, "ncclCommInitRank");
    if (!why.empty() && comm_) ncclCommAbort(comm_), comm_ = nullptr;
    return why;
  }

  // Every rank learns whether every rank got through `stage`; if not, all release what they hold
  // and throw, the failing ranks with their reason.
  void agree(const std::string& why, const char* stage) {
    if (all_ok(why.empty())) return;
    release();
    throw std::runtime_error(why.empty() ? std::string("nccl communicator: another rank failed ") + stage
                                         : "nccl communicator: rank " + std::to_string(rank_) + " failed " + stage +
                                               ": " + why);
  }

  void release() {
    if (stream_) cudaStreamSynchronize(stream_);
    if (comm_) {
      if (settle(ncclCommFinalize(comm_)) == ncclSuccess) ncclCommDestroy(comm_);
      else ncclCommAbort(comm_);
      comm_ = nullptr;
    }
    for (cudaEvent_t* e : {&computed_, &exchanged_})
      if (*e) cudaEventDestroy(*e), *e = nullptr;
    for (cudaStream_t* s : {&stream_, &compute_})
      if (*s) cudaStreamDestroy(*s), *s = nullptr;
  }

  // Before an exchange: the communication stream waits for everything queued on compute.
  void after_compute() {
    check(cudaEventRecord(computed_, compute_), "cudaEventRecord (compute)");
    check(cudaStreamWaitEvent(stream_, computed_, 0), "cudaStreamWaitEvent (communication)");
  }
  // After one: compute waits for it, and so does the host (blocking semantics, as MPI's collectives).
  void finish(const char* what) {
    check(cudaEventRecord(exchanged_, stream_), what);
    check(cudaStreamWaitEvent(compute_, exchanged_, 0), what);
    check(cudaStreamSynchronize(stream_), what);
  }

  // Point-to-point exchange with every rank in one NCCL group; the block for this rank is copied.
  void exchange(const void* send, const std::vector<size_t>& sc, const std::vector<size_t>& so, void* recv,
                const std::vector<size_t>& rc, const std::vector<size_t>& ro) {
    copy(at(recv, ro[rank_]), at(send, so[rank_]), sc[rank_]);
    call(ncclGroupStart(), "ncclGroupStart");
    for (int r = 0; r < size_; ++r) {
      if (r == rank_) continue;
      if (sc[r]) call(ncclSend(at(send, so[r]), sc[r], ncclUint8, r, comm_, stream_), "ncclSend");
      if (rc[r]) call(ncclRecv(at(recv, ro[r]), rc[r], ncclUint8, r, comm_, stream_), "ncclRecv");
    }
    call(ncclGroupEnd(), "ncclGroupEnd");
  }

  void copy(void* dst, const void* src, size_t bytes) {
    if (bytes && dst != src)
      check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream_), "cudaMemcpyAsync (to self)");
  }


  int rank_ = 0, size_ = 1;
  ncclComm_t comm_ = nullptr;
  cudaStream_t compute_ = nullptr, stream_ = nullptr;  // compute's, and the exchanges'
  cudaEvent_t computed_ = nullptr, exchanged_ = nullptr;
};

#ifdef LONGATTN_HAVE_MPI
void finalize_mpi_at_exit() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}
#endif

}  // namespace

std::unique_ptr<Communicator> make_nccl_communicator() {
#ifdef LONGATTN_HAVE_MPI
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) {
    MPI_Init(nullptr, nullptr);
    std::atexit(finalize_mpi_at_exit);  // we started MPI, so we end it; whoever started it ends it otherwise
  }
#endif
  return std::make_unique<NcclCommunicator>();
}

}  // namespace longattn

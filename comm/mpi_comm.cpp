// `mpi`: ranks of MPI_COMM_WORLD (OpenMPI). Payload moves as MPI_BYTE; sizes above 2 GiB per
// message are refused with a clear error rather than silently truncated.
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "comm/communicator.h"

namespace longattn {
namespace {

int as_int(size_t bytes) {
  if (bytes > static_cast<size_t>(INT_MAX))
    throw std::runtime_error("a single MPI message of " + std::to_string(bytes) +
                             " bytes exceeds 2 GiB; use more ranks or a smaller case");
  return static_cast<int>(bytes);
}

std::vector<int> as_ints(const std::vector<size_t>& v) {
  std::vector<int> out;
  for (size_t x : v) out.push_back(as_int(x));
  return out;
}

class MpiCommunicator;

// Open MPI's TCP and shared-memory transports move a large message (past the eager limit) only
// inside MPI calls: started before the compute and waited for after it, it would not move during
// the compute at all. A progress thread tests the requests every 50 us until they complete, so the
// transfer overlaps the compute; wait() joins it before its own MPI call (the caller makes none in
// between), and MPI was initialised with MPI_THREAD_MULTIPLE. LONGATTN_MPI_PROGRESS=none turns it
// off (to measure the exposed wait without it).
constexpr size_t kProgressBytes = 64 << 10;  // Open MPI's TCP eager limit: smaller messages go at once

bool progress_thread_wanted() {
  static const bool on = [] {
    const char* v = std::getenv("LONGATTN_MPI_PROGRESS");
    int provided = 0;
    MPI_Query_thread(&provided);
    return provided >= MPI_THREAD_MULTIPLE && !(v && std::strcmp(v, "none") == 0);
  }();
  return on;
}

struct MpiExchange : PendingExchange {
  MPI_Request req[2];
  CommCounters* counters;
  std::thread progress;
  std::mutex m;
  std::condition_variable cv;
  bool stop = false;  // wait() has come: the thread leaves at once, wait() finishes the requests
  void start_progress() {
    progress = std::thread([this] {
      int done = 0;
      std::unique_lock<std::mutex> lock(m);
      while (!stop) {
        lock.unlock();
        MPI_Testall(2, req, &done, MPI_STATUSES_IGNORE);
        lock.lock();
        if (done || cv.wait_for(lock, std::chrono::microseconds(50), [this] { return stop; })) break;
      }
    });
  }
  void join_progress() {
    if (!progress.joinable()) return;
    {
      std::lock_guard<std::mutex> lock(m);
      stop = true;
    }
    cv.notify_one();
    progress.join();
  }
  void wait() override {
    const auto t0 = std::chrono::steady_clock::now();
    join_progress();  // no MPI call of ours while the thread may make one
    MPI_Waitall(2, req, MPI_STATUSES_IGNORE);  // what the thread left (completed requests are null)
    counters->seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  ~MpiExchange() override { join_progress(); }
};

class MpiCommunicator : public Communicator {
 public:
  MpiCommunicator() {
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
  }
  ~MpiCommunicator() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Finalize();
  }
  const char* kind() const override { return "mpi"; }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string progress() const override {
    return progress_thread_wanted() ? "progress thread for send/receive of 64 KiB and more" : "none";
  }
  std::string library() const override {
    char v[MPI_MAX_LIBRARY_VERSION_STRING];
    int len = 0;
    MPI_Get_library_version(v, &len);
    std::string s(v, len);
    const size_t cut = s.find_first_of(",\n");
    return cut == std::string::npos ? s : s.substr(0, cut);
  }
  void barrier() override {
    Timer t(this);
    MPI_Barrier(MPI_COMM_WORLD);
  }
  void all_gather(const void* send, size_t bytes, void* recv) override {
    Timer t(this);
    MPI_Allgather(send, as_int(bytes), MPI_BYTE, recv, as_int(bytes), MPI_BYTE, MPI_COMM_WORLD);
    counters.add(CommOp::all_gather, bytes * (size_ - 1), bytes * (size_ - 1));
  }
  void all_gather_v(const void* send, const std::vector<size_t>& counts, void* recv) override {
    Timer t(this);
    std::vector<size_t> displs(size_);
    size_t total = 0;
    for (int r = 0; r < size_; ++r) displs[r] = total, total += counts[r];
    MPI_Allgatherv(send, as_int(counts[rank_]), MPI_BYTE, recv, as_ints(counts).data(), as_ints(displs).data(),
                   MPI_BYTE, MPI_COMM_WORLD);
    counters.add(CommOp::all_gather, total - counts[rank_], counts[rank_] * (size_ - 1));
  }
  void all_to_all(const void* send, size_t bytes, void* recv) override {
    Timer t(this);
    MPI_Alltoall(send, as_int(bytes), MPI_BYTE, recv, as_int(bytes), MPI_BYTE, MPI_COMM_WORLD);
    counters.add(CommOp::all_to_all, bytes * (size_ - 1), bytes * (size_ - 1));
  }
  void all_to_all_v(const void* send, const std::vector<size_t>& sc, const std::vector<size_t>& so, void* recv,
                    const std::vector<size_t>& rc, const std::vector<size_t>& ro) override {
    Timer t(this);
    MPI_Alltoallv(send, as_ints(sc).data(), as_ints(so).data(), MPI_BYTE, recv, as_ints(rc).data(),
                  as_ints(ro).data(), MPI_BYTE, MPI_COMM_WORLD);
    counters.add_all_to_all_v(sc, rc, rank_);
  }
  std::unique_ptr<PendingExchange> start_send_recv(const void* send, size_t send_bytes, int dest, void* recv,
                                                   size_t recv_bytes, int src) override {
    auto ex = std::make_unique<MpiExchange>();
    ex->counters = &counters;
    MPI_Irecv(recv, as_int(recv_bytes), MPI_BYTE, src, 17, MPI_COMM_WORLD, &ex->req[0]);
    MPI_Isend(send, as_int(send_bytes), MPI_BYTE, dest, 17, MPI_COMM_WORLD, &ex->req[1]);
    counters.add(CommOp::send_recv, src == rank_ ? 0 : recv_bytes, dest == rank_ ? 0 : send_bytes);
    if (std::max(send_bytes, recv_bytes) >= kProgressBytes && progress_thread_wanted()) ex->start_progress();
    return ex;
  }
  void broadcast(void* buf, size_t bytes, int root) override {
    Timer t(this);
    MPI_Bcast(buf, as_int(bytes), MPI_BYTE, root, MPI_COMM_WORLD);
    counters.add(CommOp::broadcast, rank_ == root ? 0 : bytes, rank_ == root ? bytes * (size_ - 1) : 0);
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
    MPI_Abort(MPI_COMM_WORLD, code);
    std::_Exit(code);
  }

 private:
  struct Timer {
    MpiCommunicator* c;
    std::chrono::steady_clock::time_point t0 = std::chrono::steady_clock::now();
    explicit Timer(MpiCommunicator* c) : c(c) {}
    ~Timer() { c->counters.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); }
  };
  int rank_ = 0, size_ = 1;
};

}  // namespace

std::unique_ptr<Communicator> make_mpi_communicator(int* argc, char*** argv) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) {
    int provided = 0;  // MULTIPLE for the progress thread (MpiExchange); less is accepted, without it
    MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &provided);
  }
  return std::make_unique<MpiCommunicator>();
}

}  // namespace longattn

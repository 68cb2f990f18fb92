// `self`: one process, no MPI. Collectives are copies; nothing is received from another rank, so
// every count stays zero.
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "comm/communicator.h"

namespace longattn {
namespace {

struct Done : PendingExchange {
  void wait() override {}
};

class SelfCommunicator : public Communicator {
 public:
  const char* kind() const override { return "self"; }
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string library() const override { return "none (single process)"; }
  void barrier() override {}
  void all_gather(const void* send, size_t bytes, void* recv) override { copy(recv, send, bytes); }
  void all_gather_v(const void* send, const std::vector<size_t>& counts, void* recv) override {
    copy(recv, send, counts.at(0));
  }
  void all_to_all(const void* send, size_t bytes, void* recv) override { copy(recv, send, bytes); }
  void all_to_all_v(const void* send, const std::vector<size_t>& sc, const std::vector<size_t>& so, void* recv,
                    const std::vector<size_t>&, const std::vector<size_t>& ro) override {
    copy(static_cast<char*>(recv) + ro.at(0), static_cast<const char*>(send) + so.at(0), sc.at(0));
  }
  std::unique_ptr<PendingExchange> start_send_recv(const void* send, size_t send_bytes, int, void* recv, size_t,
                                                   int) override {
    copy(recv, send, send_bytes);
    return std::make_unique<Done>();
  }
  void broadcast(void*, size_t, int) override {}
  void max(double*, size_t) override {}
  void sum(double*, size_t) override {}
  [[noreturn]] void abort(const std::string& message, int code) override {
    std::fprintf(stderr, "longattn: %s\n", message.c_str());
    std::exit(code);
  }

 private:
  static void copy(void* dst, const void* src, size_t bytes) {
    if (dst != src && bytes) std::memmove(dst, src, bytes);
  }
};

}  // namespace

std::unique_ptr<Communicator> make_self_communicator() { return std::make_unique<SelfCommunicator>(); }

}  // namespace longattn

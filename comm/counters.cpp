#include "comm/communicator.h"

namespace longattn {

const char* op_name(CommOp op) {
  switch (op) {
    case CommOp::all_gather: return "all_gather";
    case CommOp::all_to_all: return "all_to_all";
    case CommOp::send_recv: return "send_recv";
    case CommOp::broadcast: return "broadcast";
    case CommOp::reduce: return "reduce";
    case CommOp::count_: break;
  }
  return "?";
}

uint64_t CommCounters::total_received() const {
  uint64_t t = 0;
  for (uint64_t b : bytes_received) t += b;
  return t;
}

uint64_t CommCounters::total_sent() const {
  uint64_t t = 0;
  for (uint64_t b : bytes_sent) t += b;
  return t;
}

void CommCounters::add(CommOp op, uint64_t received, uint64_t sent) {
  bytes_received[static_cast<int>(op)] += received;
  bytes_sent[static_cast<int>(op)] += sent;
}

void CommCounters::add_all_to_all_v(const std::vector<size_t>& sc, const std::vector<size_t>& rc, int self) {
  uint64_t in = 0, out = 0;
  for (int r = 0; r < static_cast<int>(rc.size()); ++r)
    if (r != self) in += rc[r], out += sc[r];
  add(CommOp::all_to_all, in, out);
}

}  // namespace longattn

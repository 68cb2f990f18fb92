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

}  // namespace longattn

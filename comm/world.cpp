// Which communicator a process gets: MPI when built in, `self` otherwise (a GPU machine without
// MPI still runs every single-rank case).
#include "comm/communicator.h"

namespace longattn {

#ifdef LONGATTN_HAVE_MPI
std::unique_ptr<Communicator> make_mpi_communicator(int* argc, char*** argv);
#endif

std::unique_ptr<Communicator> make_world_communicator(int* argc, char*** argv) {
#ifdef LONGATTN_HAVE_MPI
  return make_mpi_communicator(argc, argv);
#else
  (void)argc;
  (void)argv;
  return make_self_communicator();
#endif
}

}  // namespace longattn

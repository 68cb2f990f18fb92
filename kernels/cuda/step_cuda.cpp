// attention_step on a CUDA device: one tile-kernel launch over a table of (job, first query row),
// built on the host and copied to the device beside the step's buffers.
#include "kernels/cuda/step_cuda.h"

#include <cuda_runtime_api.h>

#include "kernels/cuda/cuda_attention.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/gpu_kernels.h"
#include "kernels/cuda/tile_attention.h"
#include "kernels/input_error.h"

namespace longattn::cuda {

void attention_step_cuda(const AttentionStep& step) {
  if (std::string why; !cuda_available(&why)) throw InputError("attention step on cuda: " + why);  // also picks the device
  Shape s;
  s.d = step.d;
  if (std::string why = tile_unsupported("an attention step on cuda", s, step.dtype); !why.empty()) throw InputError(why);
  std::vector<TileJob> jobs;
  std::vector<TileRef> tiles;
  for (const StepBlock& b : step.blocks) {
    if (b.nq == 0 || b.nk == 0) continue;  // nothing to add
    for (int64_t t0 = 0; t0 < b.nq; t0 += kTileQ) tiles.push_back({static_cast<int64_t>(jobs.size()), t0});
    jobs.push_back(b);
  }
  if (tiles.empty()) return;
  const auto stream = static_cast<cudaStream_t>(step.stream);
  // The tables' device memory is kept from step to step (grown, never shrunk): cudaMalloc and
  // cudaFree synchronise the device, and a distributed method's steps sit in its timed iterations.
  static DeviceBuffer job_table, tile_table;
  const size_t job_bytes = jobs.size() * sizeof(TileJob), tile_bytes = tiles.size() * sizeof(TileRef);
  if (job_table.bytes() < job_bytes) job_table = DeviceBuffer(job_bytes);
  if (tile_table.bytes() < tile_bytes) tile_table = DeviceBuffer(tile_bytes);
  LONGATTN_CUDA_CHECK(cudaMemcpyAsync(job_table.get(), jobs.data(), job_bytes, cudaMemcpyHostToDevice, stream));
  LONGATTN_CUDA_CHECK(cudaMemcpyAsync(tile_table.get(), tiles.data(), tile_bytes, cudaMemcpyHostToDevice, stream));
  StepTileParams p;
  p.jobs = job_table.get<TileJob>();
  p.tiles = tile_table.get<TileRef>();
  p.tile_count = static_cast<int64_t>(tiles.size());
  p.mask = device_pattern(step.mask, 0);  // single-level: no levels to resolve
  p.scale = step.scale;
  p.merge = true;
  launch_tile_step(p, step.d, step.dtype, stream);
  LONGATTN_CUDA_CHECK(cudaStreamSynchronize(stream));  // the next step rewrites the tables; `jobs` ends here
}

}  // namespace longattn::cuda

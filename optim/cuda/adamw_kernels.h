// Launcher of the multi-tensor AdamW kernel: one launch updates every tensor
// of a table (fp32 weight or master, both moments, and the bfloat16 parameter
// rounded from the master in the same pass). `tensors` and `chunks` are
// device arrays (optim/cuda/adamw_rows.cuh); chunk i covers elements
// [start, start + chunk_size) of its tensor. Queued on `stream`; the launch is
// checked (throws std::runtime_error); returns without waiting.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "optim/cuda/adamw_rows.cuh"

namespace moxie::kernels {

void launch_adamw(const AdamWTensor* tensors, const AdamWChunk* chunks, int64_t n_chunks,
                  AdamWHyper hyper, cudaStream_t stream);

}  // namespace moxie::kernels

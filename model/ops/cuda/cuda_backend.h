// The CUDA backend: the Backend interface (model/ops/backend.h) in f32 on the memory of one
// NVIDIA GPU (device 0).
//
// Memory comes from the device's stream-ordered memory pool (cudaMallocAsync / cudaFreeAsync on
// the backend's stream; the pool keeps freed memory cached and hands it out again, so steps with
// the same shapes cost no driver calls). Out of device memory, Allocate throws DeviceOutOfMemory
// (a std::bad_alloc naming the bytes and the memory held; device_memory.h). Every op and
// transfer is enqueued on the backend's one stream, in call order. Host->device copies go
// through pinned staging buffers (the host source may be reused as soon as the call returns);
// device->host copies land in pinned staging and reach the caller's bytes at Synchronize().
// GEMMs run through cuBLASLt with f32 accumulation: f32 operands with f32 compute (TF32 off);
// LinearWeights over bf16 weights multiplies in bf16 (the activations rounded to bf16 on the
// device; its backward's dx likewise, dw and db in f32), over FP8 weights it runs cuBLASLt's
// block-scaled FP8 GEMM on Hopper (the activations quantized per 1x128 block on the device,
// core/cuda/fp8_block_cuda.h; the weight's 128x128 block scales), so both differ from the CPU
// backend's widened f32 products by that rounding of the activations. Where cuBLASLt cannot
// take a narrow product (FP8: k not a multiple of 128, n not of 16, a view not starting at a
// 128-row boundary, not compute capability 9.0; either: no algorithm), W is widened to f32 as
// on the CPU and the reason is written once to stderr. Every other op is a kernel of
// model/ops/cuda/*.cu. Launch metadata (packed-batch offsets, sampling options) is uploaded per
// call and counted in TransferStats like any other host->device copy.
//
// Sample follows the CPU sampler's formulas but sums in parallel: its tokens equal
// rollout/sampler.h's except for a draw within rounding of a step of the CDF (not bit-identical
// as the CPU backend's are), and its logprobs agree to rounding.
//
// Status: compiled and its host logic tested on machines without a GPU; the kernels have not
// yet run on a GPU (docs/gpu.md says what has been verified where).
#ifndef GRPO_MODEL_OPS_CUDA_CUDA_BACKEND_H_
#define GRPO_MODEL_OPS_CUDA_CUDA_BACKEND_H_

#include "model/ops/backend.h"

namespace grpo {

// The process's CUDA backend on device 0, created on first use. Call it only where a device is
// present (the registry checks CudaAvailability() first, model/ops/cuda/cuda_devices.h); without
// one, creating it is a fatal error naming the failed CUDA call.
Backend& CudaBackend();

}  // namespace grpo

#endif  // GRPO_MODEL_OPS_CUDA_CUDA_BACKEND_H_

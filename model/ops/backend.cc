#include "model/ops/backend.h"

#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>

namespace grpo {

void AbortBufferDType(DType have, DType want) {
  std::fprintf(stderr, "fatal: Buffer of %s used as %s\n", std::string(DTypeName(have)).c_str(),
               std::string(DTypeName(want)).c_str());
  std::abort();
}

Buffer::Buffer(Backend* backend, int64_t numel, DType dtype)
    : backend_(backend), numel_(numel), dtype_(dtype) {
  if (numel > 0) data_ = backend->Allocate(bytes());
}

Buffer::~Buffer() { Release(); }

void Buffer::Release() {
  if (data_ && owned_) backend_->Free(data_);
  data_ = nullptr;
}

Buffer::Buffer(Buffer&& other) noexcept
    : backend_(other.backend_), data_(std::exchange(other.data_, nullptr)),
      numel_(std::exchange(other.numel_, 0)), dtype_(other.dtype_), owned_(other.owned_) {}

Buffer& Buffer::operator=(Buffer&& other) noexcept {
  if (this != &other) {
    Release();
    backend_ = other.backend_;
    data_ = std::exchange(other.data_, nullptr);
    numel_ = std::exchange(other.numel_, 0);
    dtype_ = other.dtype_;
    owned_ = other.owned_;
  }
  return *this;
}

Buffer Backend::MakeBuffer(DevicePtr<void> data, DType dtype, int64_t numel, bool owned) {
  Buffer b;
  b.backend_ = this;
  b.data_ = data;
  b.numel_ = numel;
  b.dtype_ = dtype;
  b.owned_ = owned;
  return b;
}

Buffer Backend::ImportHost(const void* host, DType dtype, int64_t numel) {
  Buffer b(this, numel, dtype);
  if (numel > 0) CopyHostToDevice(host, b.raw(), b.bytes());
  return b;
}

void Backend::LinearWeightsSameInput(DevicePtr<const float> x, std::span<const LinearOutput> outs,
                                     int64_t m, int64_t k) {
  for (const LinearOutput& out : outs) LinearWeights(x, out.w, out.b, out.y, m, k, out.n);
}

void Backend::SwiGluLinearWeights(DevicePtr<const float> gate, DevicePtr<const float> up,
                                  const WeightView& w, DevicePtr<const float> b, DevicePtr<float> y,
                                  int64_t m, int64_t k, int64_t n) {
  Buffer act(this, m * k);
  SwiGlu(gate, up, act.data(), m * k);
  LinearWeights(act.data(), w, b, y, m, k, n);
}

void Backend::LinearWeightsBackward(DevicePtr<const float> dy, DevicePtr<const float> x,
                                    const WeightView& w, DevicePtr<float> dx, DevicePtr<float> dw,
                                    DevicePtr<float> db, int64_t m, int64_t k, int64_t n,
                                    bool accumulate_dx) {
  if (w.dtype == DType::kF32) {
    LinearBackward(dy, x, w.f32(), dx, dw, db, m, k, n, accumulate_dx);
    return;
  }
  Buffer widened;
  if (dx != nullptr) {
    widened = Buffer(this, n * k);
    WidenWeightRows(w, 0, n, widened.data());
  }
  LinearBackward(dy, x, widened.data(), dx, dw, db, m, k, n, accumulate_dx);
}

void Backend::CopyHostToDevice(const void* host, DevicePtr<void> dst, int64_t bytes) {
  if (bytes <= 0) return;
  h2d_bytes_.fetch_add(bytes, std::memory_order_relaxed);
  h2d_calls_.fetch_add(1, std::memory_order_relaxed);
  DoCopyHostToDevice(host, dst, bytes);
}

void Backend::CopyDeviceToHost(DevicePtr<const void> src, void* host, int64_t bytes) {
  if (bytes <= 0) return;
  d2h_bytes_.fetch_add(bytes, std::memory_order_relaxed);
  d2h_calls_.fetch_add(1, std::memory_order_relaxed);
  DoCopyDeviceToHost(src, host, bytes);
}

TransferStats Backend::transfer_stats() const {
  TransferStats s;
  s.host_to_device_bytes = h2d_bytes_.load(std::memory_order_relaxed);
  s.host_to_device_calls = h2d_calls_.load(std::memory_order_relaxed);
  s.device_to_host_bytes = d2h_bytes_.load(std::memory_order_relaxed);
  s.device_to_host_calls = d2h_calls_.load(std::memory_order_relaxed);
  return s;
}

void Backend::ResetTransferStats() {
  h2d_bytes_ = 0;
  h2d_calls_ = 0;
  d2h_bytes_ = 0;
  d2h_calls_ = 0;
}

Buffer Upload(Backend& backend, std::span<const int32_t> values) {
  Buffer b(&backend, static_cast<int64_t>(values.size()), DType::kI32);
  backend.CopyHostToDevice(values.data(), b.raw(), b.bytes());
  return b;
}

Buffer Upload(Backend& backend, std::span<const float> values) {
  Buffer b(&backend, static_cast<int64_t>(values.size()), DType::kF32);
  backend.CopyHostToDevice(values.data(), b.raw(), b.bytes());
  return b;
}

std::vector<float> DownloadF32(Backend& backend, const Buffer& buffer) {
  std::vector<float> out(buffer.numel());
  backend.CopyDeviceToHost(buffer.data(), out.data(), buffer.bytes());
  backend.Synchronize();
  return out;
}

std::vector<int32_t> DownloadI32(Backend& backend, const Buffer& buffer) {
  std::vector<int32_t> out(buffer.numel());
  backend.CopyDeviceToHost(buffer.i32(), out.data(), buffer.bytes());
  backend.Synchronize();
  return out;
}

}  // namespace grpo

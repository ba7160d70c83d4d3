// libFuzzer entry point for the safetensors reader. Not a Bazel target (Bazel builds with gcc);
// build and run with clang from the repository root:
//
//   clang++ -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -I. \
//       core/safetensors_fuzz.cc core/safetensors.cc core/tensor.cc core/dtype.cc \
//       core/float_formats.cc core/status.cc -o /tmp/st_fuzz
//   /tmp/st_fuzz -max_total_time=60
//
// Every input must either be rejected with an error or give tensors that lie inside the input;
// each accepted tensor is read in full (and widened to f32 when it is a float) so that the
// sanitizers see any out-of-bounds view.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "core/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::StatusOr<grpo::SafetensorsFile> f = grpo::SafetensorsFile::FromBytes(
      std::string(reinterpret_cast<const char*>(data), size), "fuzz");
  if (!f.ok()) {
    if (f.status().message().empty()) std::abort();
    return 0;
  }
  const std::span<const uint8_t> file = f->file_bytes();
  const uint8_t* buffer = file.data() + f->buffer_offset();
  const uint8_t* end = file.data() + file.size();
  uint64_t covered = 0;
  unsigned sum = 0;
  for (const std::string& name : f->names()) {
    absl::StatusOr<grpo::Tensor> t = f->Get(name);
    if (!t.ok()) std::abort();
    const auto* p = static_cast<const uint8_t*>(t->raw_data());
    if (p < buffer || t->nbytes() > static_cast<size_t>(end - p)) std::abort();
    for (size_t i = 0; i < t->nbytes(); ++i) sum += p[i];
    if (grpo::IsFloatingPoint(t->dtype())) {
      const grpo::Tensor wide = t->ToF32();
      for (int64_t i = 0; i < wide.numel(); ++i) sum += wide.data<float>()[i] > 0;
    }
    covered += t->nbytes();
  }
  if (f->buffer_offset() + covered != size) std::abort();
  for (const auto& [k, v] : f->metadata()) sum += static_cast<unsigned>(k.size() + v.size());
  volatile unsigned sink = sum;
  (void)sink;
  return 0;
}

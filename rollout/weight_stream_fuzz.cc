// libFuzzer target: the chunk stream of RolloutService.UpdateWeights into a WeightAssembler, for
// a model shaped like qwen3_moe-nano, only smaller. Not a Bazel target: tools/fuzz_smoke.sh
// builds it with clang, ASan and UBSan and runs it under its memory limits.
//
// The first input byte picks what the rest is:
//   even ("raw"): messages as [u16 little-endian length][serialized WeightUpdateChunk]. Bit 1 of
//     the first byte sets each chunk's crc32c to that of its data and bit 2 fills a summary's
//     totals from what was fed, so mutations get past the checksums to the checks behind them;
//     bit 3 keeps the wire tensors (WeightAssemblerOptions::keep_wire_tensors).
//   odd ("planned"): a whole push of the model, built from input-chosen dtypes (F32, BF16, F16;
//     FP8 with its scale tensor for projection weights), values (from a seed, with input-chosen
//     bytes poked into the encoded tensors, so NaN, infinity and FP8 NaN codes occur), chunk
//     sizes and version; then up to three input-chosen edits of the messages (drop, duplicate or
//     swap one, flip a data byte with or without fixing its crc32c, change a version, a shape, a
//     name, is_last or the summary).
// Properties: no crash or sanitizer report; once an Add fails, every later Add and Finish fails;
// an accepted update has every tensor of the model, with its shape, all values finite, and the
// summary's version. An unedited planned push is accepted exactly when every value it decodes to
// is finite, and then each tensor is bit for bit the decoding of the bytes sent (computed here
// independently: F32 as is, BF16/F16 widened, FP8 code x its block's scale). A planned push with
// one message dropped, or one data byte flipped under a stale crc32c, is rejected.
#include <fuzzer/FuzzedDataProvider.h>
#include <google/protobuf/stubs/logging.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "core/crc32c.h"
#include "core/float_formats.h"
#include "core/fp8_block.h"
#include "model/presets.h"
#include "rollout/weight_stream.h"

namespace {

using grpo::DType;
using grpo::Shape;
using Chunk = grpo::v1::WeightUpdateChunk;

constexpr uint64_t kServingVersion = 7;

#define CHECK(cond)                                                              \
  do {                                                                           \
    if (!(cond)) {                                                               \
      std::fprintf(stderr, "weight_stream_fuzz: property failed: %s\n", #cond);  \
      std::abort();                                                              \
    }                                                                            \
  } while (0)

struct Model {
  grpo::ModelConfig config;
  std::vector<grpo::ParameterSpec> specs;
  uint64_t f32_bytes = 0;
};

const Model& M() {
  static const Model* m = [] {
    auto* m = new Model;
    auto c = grpo::PresetConfig("qwen3_moe-nano");
    if (!c.ok()) std::abort();
    // Smaller still (a push is built per input), with expert matrices of 2 FP8 blocks.
    c->vocab_size = 32;
    c->hidden_size = 16;
    c->num_hidden_layers = 1;
    c->num_attention_heads = 2;
    c->num_key_value_heads = 1;
    c->head_dim = 8;
    c->num_experts = 2;
    c->num_experts_per_tok = 1;
    c->moe_intermediate_size = 130;
    m->config = *c;
    m->specs = grpo::ExpectedParameters(m->config);
    for (const auto& s : m->specs) m->f32_bytes += static_cast<uint64_t>(grpo::NumElements(s.shape)) * 4;
    return m;
  }();
  return *m;
}

std::span<const uint8_t> Bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// Feeds `chunks` and checks the properties that hold for any stream. Returns whether the update
// was accepted, and its weights in `out`.
bool Feed(const std::vector<Chunk>& chunks, bool keep_wire, grpo::StagedWeights* out) {
  grpo::WeightAssemblerOptions o;
  o.serving_version = kServingVersion;
  o.max_version_step = 1000;
  o.max_total_bytes = M().f32_bytes;  // an all-F32 push fits exactly; anything more does not
  o.keep_wire_tensors = keep_wire;
  auto a = grpo::WeightAssembler::Create(M().config, o);
  CHECK(a.ok());
  bool failed = false;
  for (const Chunk& c : chunks) {
    const absl::Status s = a->Add(c);
    if (failed) CHECK(!s.ok());  // the first error poisons the assembler
    if (!s.ok()) {
      CHECK(!s.message().empty());
      failed = true;
    }
  }
  absl::StatusOr<grpo::StagedWeights> w = a->Finish();
  if (failed) CHECK(!w.ok());
  if (!w.ok()) {
    CHECK(!w.status().message().empty());
    CHECK(!a->Finish().ok());
    return false;
  }
  CHECK(!a->Finish().ok());  // spent
  const auto& specs = M().specs;
  CHECK(w->params.size() == specs.size());
  CHECK(w->version > kServingVersion && w->version <= kServingVersion + 1000);
  for (size_t i = 0; i < specs.size(); ++i) {
    const grpo::Tensor& v = w->params[i].value;
    CHECK(w->params[i].spec.name == specs[i].name);
    CHECK(v.dtype() == DType::kF32 && v.shape() == specs[i].shape);
    const float* f = static_cast<const float*>(v.raw_data());
    for (int64_t k = 0; k < v.numel(); ++k) CHECK(std::isfinite(f[k]));
  }
  if (keep_wire) {
    std::set<std::string> names;
    for (const auto& t : w->wire) CHECK(names.insert(t.name).second);
    CHECK(names.size() >= specs.size());
  }
  *out = std::move(*w);
  return true;
}

void RunRaw(const uint8_t* data, size_t size, uint8_t flags) {
  std::vector<Chunk> chunks;
  uint64_t total = 0;
  uint32_t crc = 0;
  std::set<std::string> names;
  size_t pos = 0;
  while (pos + 2 <= size && chunks.size() < 256) {
    const size_t len = std::min<size_t>(data[pos] | (size_t{data[pos + 1]} << 8), size - pos - 2);
    Chunk c;
    const bool parsed = c.ParseFromArray(data + pos + 2, static_cast<int>(len));
    pos += 2 + len;
    if (!parsed) continue;
    if (flags & 2) c.set_crc32c(grpo::Crc32c(Bytes(c.data())));
    if (!c.tensor_name().empty()) names.insert(c.tensor_name());
    total += c.data().size();
    crc = grpo::Crc32cExtend(crc, Bytes(c.data()));
    if ((flags & 4) && c.has_summary()) {
      c.mutable_summary()->set_version(c.version());
      c.mutable_summary()->set_num_tensors(static_cast<uint32_t>(names.size()));
      c.mutable_summary()->set_total_bytes(total);
      c.mutable_summary()->set_crc32c(crc);
    }
    chunks.push_back(std::move(c));
  }
  grpo::StagedWeights w;
  Feed(chunks, flags & 8, &w);
}

// The f32 values `bytes` of `dtype` decode to (FP8: with `scale` [ceil(r/128), ceil(c/128)]).
std::vector<float> Decode(DType dtype, const std::string& bytes, const Shape& shape, const std::string* scale) {
  const int64_t n = grpo::NumElements(shape);
  std::vector<float> v(n);
  for (int64_t k = 0; k < n; ++k) {
    switch (dtype) {
      case DType::kF32: std::memcpy(&v[k], bytes.data() + 4 * k, 4); break;
      case DType::kBF16:
      case DType::kF16: {
        uint16_t h;
        std::memcpy(&h, bytes.data() + 2 * k, 2);
        v[k] = dtype == DType::kBF16 ? grpo::Bf16ToF32(h) : grpo::F16ToF32(h);
        break;
      }
      default: {  // FP8 block-scaled
        const int64_t cols = shape[1], gc = (cols + 127) / 128;
        const int64_t b = (k / cols) / 128 * gc + (k % cols) / 128;
        float s;
        std::memcpy(&s, scale->data() + 4 * b, 4);
        v[k] = grpo::Fp8E4M3ToF32(static_cast<uint8_t>(bytes[k])) * s;
      }
    }
  }
  return v;
}

struct Sent {
  std::string name;
  DType dtype;
  Shape shape;
  std::string bytes;
};

// Input-chosen changes to a planned push, read before the per-tensor choices so that short
// inputs already reach them; positions are taken modulo what they index.
struct Poke {
  uint32_t tensor, offset;
  uint8_t value;
};
struct Edit {
  int kind;
  uint32_t message, where;
  uint64_t value;
};

void RunPlanned(FuzzedDataProvider& in) {
  const auto& specs = M().specs;
  std::vector<Poke> pokes(in.ConsumeIntegralInRange<int>(0, 3));
  for (Poke& p : pokes) p = {in.ConsumeIntegral<uint32_t>(), in.ConsumeIntegral<uint32_t>(), in.ConsumeIntegral<uint8_t>()};
  std::vector<Edit> edits(in.ConsumeIntegralInRange<int>(0, 3));
  for (Edit& e : edits) {
    e = {in.ConsumeIntegralInRange<int>(0, 9), in.ConsumeIntegral<uint32_t>(), in.ConsumeIntegral<uint32_t>(),
         in.ConsumeIntegral<uint64_t>()};
  }
  const uint64_t version = kServingVersion + 1 + in.ConsumeIntegralInRange<uint32_t>(0, 3);
  const bool keep_wire = in.ConsumeBool();
  uint64_t rng = in.ConsumeIntegral<uint32_t>() | 1;
  auto next = [&rng] {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return rng;
  };
  // The tensors, encoded.
  std::vector<Sent> sent;
  std::vector<size_t> sent_of(specs.size());  // index into `sent` of each spec's tensor
  for (size_t i = 0; i < specs.size(); ++i) {
    const grpo::ParameterSpec& spec = specs[i];
    const int64_t n = grpo::NumElements(spec.shape);
    auto f = grpo::Tensor::Zeros(DType::kF32, spec.shape);
    float* fv = f.mutable_data<float>();
    const double range = std::ldexp(1.0, in.ConsumeIntegralInRange<int>(-8, 8));
    for (int64_t k = 0; k < n; ++k) {
      fv[k] = static_cast<float>((static_cast<double>(next() >> 11) / 9007199254740992.0 * 2 - 1) * range);
    }
    int choice = in.ConsumeIntegralInRange<int>(0, 3);
    if (choice == 3 && !spec.is_matrix) choice = 0;
    sent_of[i] = sent.size();
    if (choice == 3) {
      auto q = grpo::QuantizeFp8Block(f);
      CHECK(q.ok());
      sent.push_back({spec.name, DType::kF8E4M3, spec.shape,
                      std::string(static_cast<const char*>(q->weight.raw_data()), q->weight.nbytes())});
      sent.push_back({spec.name + "_scale_inv", DType::kF32, q->scale_inv.shape(),
                      std::string(static_cast<const char*>(q->scale_inv.raw_data()), q->scale_inv.nbytes())});
      continue;
    }
    const DType d = choice == 0 ? DType::kF32 : choice == 1 ? DType::kBF16 : DType::kF16;
    std::string b(static_cast<size_t>(n) * grpo::DTypeSize(d), '\0');
    for (int64_t k = 0; k < n; ++k) {
      if (d == DType::kF32) {
        std::memcpy(&b[4 * k], &fv[k], 4);
      } else {
        const uint16_t h = d == DType::kBF16 ? grpo::F32ToBf16(fv[k]) : grpo::F32ToF16(fv[k]);
        std::memcpy(&b[2 * k], &h, 2);
      }
    }
    sent.push_back({spec.name, d, spec.shape, std::move(b)});
  }
  // Bytes poked into the encoded tensors (NaN, infinity, FP8 NaN codes, huge scales...).
  for (const Poke& p : pokes) {
    Sent& t = sent[p.tensor % sent.size()];
    t.bytes[p.offset % t.bytes.size()] = static_cast<char>(p.value);
  }
  // Tensors in order (optionally rotated), each cut into chunks.
  const size_t rotate = in.ConsumeIntegralInRange<size_t>(0, sent.size() - 1);
  std::vector<Chunk> chunks;
  uint64_t total = 0;
  uint32_t crc = 0;
  for (size_t j = 0; j < sent.size(); ++j) {
    const Sent& t = sent[(j + rotate) % sent.size()];
    const int k = 17 - in.ConsumeIntegralInRange<int>(0, 8);  // 2^9 .. 2^16 bytes, or 17: whole
    const size_t step = k == 17 ? t.bytes.size() : size_t{1} << k;
    for (size_t off = 0; off < t.bytes.size(); off += step) {
      Chunk c;
      c.set_version(version);
      c.set_tensor_name(t.name);
      c.set_dtype(*grpo::ToProtoDType(t.dtype));
      for (int64_t d : t.shape) c.add_shape(static_cast<uint64_t>(d));
      c.set_offset(off);
      c.set_data(t.bytes.substr(off, step));
      c.set_crc32c(grpo::Crc32c(Bytes(c.data())));
      c.set_is_last(off + step >= t.bytes.size());
      if (t.dtype == DType::kF8E4M3) {
        c.mutable_fp8()->add_block_shape(128);
        c.mutable_fp8()->add_block_shape(128);
        c.mutable_fp8()->set_scale_tensor_name(t.name + "_scale_inv");
      }
      total += c.data().size();
      crc = grpo::Crc32cExtend(crc, Bytes(c.data()));
      chunks.push_back(std::move(c));
    }
  }
  Chunk last;
  last.set_version(version);
  last.mutable_summary()->set_version(version);
  last.mutable_summary()->set_num_tensors(static_cast<uint32_t>(sent.size()));
  last.mutable_summary()->set_total_bytes(total);
  last.mutable_summary()->set_crc32c(crc);
  chunks.push_back(std::move(last));

  // The edits. A lone drop, or a lone flipped byte under a stale crc32c, must be rejected.
  bool must_fail = false;
  for (const Edit& e : edits) {
    const size_t i = e.message % chunks.size();
    Chunk& c = chunks[i];
    switch (e.kind) {
      case 0:  // every message carries data or the summary: a dropped one is always missed
        chunks.erase(chunks.begin() + static_cast<std::ptrdiff_t>(i));
        must_fail = must_fail || edits.size() == 1;
        break;
      case 1: chunks.insert(chunks.begin() + static_cast<std::ptrdiff_t>(i), Chunk(c)); break;
      case 2:
        if (i + 1 < chunks.size()) std::swap(chunks[i], chunks[i + 1]);
        break;
      case 3:
      case 4:
        if (!c.data().empty()) {
          (*c.mutable_data())[e.where % c.data().size()] ^= static_cast<char>(1 + e.value % 255);
          if (e.kind == 4) {
            c.set_crc32c(grpo::Crc32c(Bytes(c.data())));
          } else {
            must_fail = must_fail || edits.size() == 1;
          }
        }
        break;
      case 5: c.set_version(e.value); break;
      case 6:
        if (c.shape_size() > 0 && e.where % 2 == 0) {
          c.set_shape(static_cast<int>(e.where / 2 % c.shape_size()), e.value);
        } else {
          c.add_shape(e.value);
        }
        break;
      case 7: c.set_is_last(!c.is_last()); break;
      case 8: {
        auto* s = chunks.back().mutable_summary();
        switch (e.where % 3) {
          case 0: s->set_num_tensors(s->num_tensors() + 1 + static_cast<uint32_t>(e.value % 3)); break;
          case 1: s->set_total_bytes(e.value); break;
          default: s->set_crc32c(static_cast<uint32_t>(e.value));
        }
        break;
      }
      default: c.set_tensor_name(specs[e.where % specs.size()].name);
    }
  }

  grpo::StagedWeights w;
  const bool accepted = Feed(chunks, keep_wire, &w);
  if (must_fail) CHECK(!accepted);
  if (!edits.empty()) return;
  // Unedited: accepted exactly when everything decodes finite, and then to exactly those values.
  bool finite = true;
  std::vector<std::vector<float>> want(specs.size());
  for (size_t i = 0; i < specs.size(); ++i) {
    const Sent& t = sent[sent_of[i]];
    want[i] = Decode(t.dtype, t.bytes, t.shape, t.dtype == DType::kF8E4M3 ? &sent[sent_of[i] + 1].bytes : nullptr);
    for (float v : want[i]) finite = finite && std::isfinite(v);
  }
  CHECK(accepted == finite);
  if (!accepted) return;
  CHECK(w.version == version);
  for (size_t i = 0; i < specs.size(); ++i) {
    CHECK(std::memcmp(w.params[i].value.raw_data(), want[i].data(), want[i].size() * 4) == 0);
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);  // not a line per invalid UTF-8 string refused
  M();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  if ((data[0] & 1) == 0) {
    RunRaw(data + 1, size - 1, data[0]);
  } else {
    FuzzedDataProvider in(data + 1, size - 1);
    RunPlanned(in);
  }
  return 0;
}

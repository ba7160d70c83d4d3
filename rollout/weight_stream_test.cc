// WeightAssembler against streams built here by hand (independently of learner/weight_push):
// a valid FP8 + bf16 stream assembles to the CPU dequantization bit for bit, and every kind of
// broken stream is rejected with an error naming what was wrong, leaving nothing staged.
#include "rollout/weight_stream.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <set>

#include "core/crc32c.h"
#include "core/fp8_block.h"
#include "model/presets.h"

namespace grpo {
namespace {

using Chunk = grpo::v1::WeightUpdateChunk;
using Chunks = std::vector<Chunk>;

ModelConfig Config(const char* preset) {
  auto c = PresetConfig(preset);
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  return *c;
}

// FP8 for is_matrix weights (weight then scale), bf16 for the rest.
std::vector<WireTensor> Wire(const std::vector<Parameter>& params) {
  std::vector<WireTensor> out;
  for (const Parameter& p : params) {
    if (p.spec.is_matrix) {
      auto q = QuantizeFp8Block(p.value);
      EXPECT_TRUE(q.ok());
      out.push_back({p.spec.name, q->weight});
      out.push_back({p.spec.name + "_scale_inv", q->scale_inv});
    } else {
      out.push_back({p.spec.name, *p.value.CastTo(DType::kBF16)});
    }
  }
  return out;
}

void Resummarize(Chunks& chunks, uint64_t version) {
  if (!chunks.empty() && chunks.back().has_summary()) chunks.pop_back();
  std::set<std::string> names;
  uint64_t total = 0;
  uint32_t crc = 0;
  for (const Chunk& c : chunks) {
    names.insert(c.tensor_name());
    total += c.data().size();
    crc = Crc32cExtend(crc, {reinterpret_cast<const uint8_t*>(c.data().data()), c.data().size()});
  }
  Chunk last;
  last.set_version(version);
  last.mutable_summary()->set_version(version);
  last.mutable_summary()->set_num_tensors(static_cast<uint32_t>(names.size()));
  last.mutable_summary()->set_total_bytes(total);
  last.mutable_summary()->set_crc32c(crc);
  chunks.push_back(last);
}

Chunks Stream(const std::vector<WireTensor>& tensors, uint64_t version, size_t chunk_bytes) {
  Chunks out;
  for (const WireTensor& t : tensors) {
    const auto* bytes = static_cast<const uint8_t*>(t.data.raw_data());
    const size_t n = t.data.nbytes();
    for (size_t off = 0; off == 0 || off < n; off += chunk_bytes) {
      const size_t len = std::min(chunk_bytes, n - off);
      Chunk c;
      c.set_version(version);
      c.set_tensor_name(t.name);
      c.set_dtype(*ToProtoDType(t.data.dtype()));
      for (int64_t d : t.data.shape()) c.add_shape(d);
      c.set_offset(off);
      c.set_data(bytes + off, len);
      c.set_crc32c(Crc32c(std::span<const uint8_t>(bytes + off, len)));
      c.set_is_last(off + len == n);
      if (t.data.dtype() == DType::kF8E4M3) {
        c.mutable_fp8()->add_block_shape(128);
        c.mutable_fp8()->add_block_shape(128);
        c.mutable_fp8()->set_scale_tensor_name(t.name + "_scale_inv");
      }
      out.push_back(std::move(c));
      if (len == 0) break;
    }
  }
  Resummarize(out, version);
  return out;
}

absl::StatusOr<StagedWeights> Assemble(const ModelConfig& config, const Chunks& chunks,
                               WeightAssemblerOptions options = {}) {
  GRPO_ASSIGN_OR_RETURN(WeightAssembler a, WeightAssembler::Create(config, options));
  for (const Chunk& c : chunks) {
    absl::Status s = a.Add(c);
    if (!s.ok()) {
      EXPECT_EQ(a.Finish().status().message(), s.message()) << "the error must stick";
      return s;
    }
  }
  return a.Finish();
}

class WeightStreamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config_ = Config("deepseek_v3-nano");
    config_.hidden_size = 160;  // blocks: one full 128 and one partial per row/column
    params_ = InitParameters(config_, 11);
    wire_ = Wire(params_);
    good_ = Stream(wire_, 7, 1000);
  }
  // Expects the stream to be rejected with `code` and a message containing every `parts`.
  void ExpectRejected(const Chunks& chunks, absl::StatusCode code, std::vector<std::string> parts,
                      WeightAssemblerOptions o = {}) {
    auto r = Assemble(config_, chunks, o);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), code) << r.status().ToString();
    for (const std::string& p : parts) {
      EXPECT_NE(r.status().message().find(p), std::string::npos)
          << "'" << p << "' not in: " << r.status().ToString();
    }
  }
  // Index of the k-th chunk (0-based) of tensor `name`.
  size_t Find(const Chunks& c, const std::string& name, int k = 0) {
    for (size_t i = 0; i < c.size(); ++i) {
      if (c[i].tensor_name() == name && k-- == 0) return i;
    }
    ADD_FAILURE() << name;
    return 0;
  }

  ModelConfig config_;
  std::vector<Parameter> params_;
  std::vector<WireTensor> wire_;
  Chunks good_;
  const std::string q_ = "model.layers.0.self_attn.kv_a_proj_with_mqa.weight";  // FP8 [40, 160]: 7 chunks
};

TEST_F(WeightStreamTest, AssemblesFp8AndBf16BitForBit) {
  WeightAssemblerOptions o;
  o.keep_wire_tensors = true;
  auto r = Assemble(config_, good_, o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->version, 7u);
  uint64_t bytes = 0;
  for (const WireTensor& w : wire_) bytes += w.data.nbytes();
  EXPECT_EQ(r->bytes, bytes);
  ASSERT_EQ(r->params.size(), params_.size());
  int fp8 = 0;
  for (size_t i = 0; i < params_.size(); ++i) {
    const Parameter& got = r->params[i];
    ASSERT_EQ(got.spec.name, params_[i].spec.name);
    ASSERT_EQ(got.value.dtype(), DType::kF32);
    ASSERT_TRUE(got.value.writable()) << got.spec.name;
    ASSERT_EQ(got.value.shape(), params_[i].spec.shape);
    Tensor want;
    if (params_[i].spec.is_matrix) {
      auto q = QuantizeFp8Block(params_[i].value);
      want = *DequantizeFp8Block(q->weight, q->scale_inv);
      ++fp8;
    } else {
      want = params_[i].value.CastTo(DType::kBF16)->ToF32();
    }
    ASSERT_EQ(std::memcmp(got.value.raw_data(), want.raw_data(), want.nbytes()), 0)
        << got.spec.name;
    // FP8 loses precision but stays within half an e4m3 step (2^-4 relative) of the master.
    const float* m = params_[i].value.data<float>();
    const float* g = got.value.data<float>();
    for (int64_t k = 0; k < want.numel(); ++k) ASSERT_NEAR(g[k], m[k], 0.07f * std::abs(m[k]) + 1e-4f);
  }
  EXPECT_GT(fp8, 10);
  ASSERT_EQ(r->wire.size(), wire_.size());
  EXPECT_EQ(r->wire[1].name, wire_[1].name);
  EXPECT_EQ(r->wire[1].data.dtype(), wire_[1].data.dtype());
}

TEST_F(WeightStreamTest, FlippedDataByteFailsChunkCrc) {
  Chunks c = good_;
  std::string& d = *c[Find(c, q_, 2)].mutable_data();
  d[17] ^= 0x04;
  ExpectRejected(c, absl::StatusCode::kDataLoss, {"crc32c mismatch", q_, "offset 2000", "v7"});
  // With the chunk's crc recomputed, the summary's whole-stream crc still catches it.
  Chunk& ch = c[Find(c, q_, 2)];
  ch.set_crc32c(Crc32c(ch.data()));
  ExpectRejected(c, absl::StatusCode::kDataLoss, {"summary crc32c"});
}

TEST_F(WeightStreamTest, DroppedDuplicatedReorderedChunks) {
  Chunks dropped = good_;
  dropped.erase(dropped.begin() + Find(dropped, q_, 1));
  ExpectRejected(dropped, absl::StatusCode::kInvalidArgument, {q_, "offset 2000", "gap", "expected offset 1000"});

  Chunks dropped_last = good_;
  dropped_last.erase(dropped_last.begin() + Find(dropped_last, q_, 6));
  ExpectRejected(dropped_last, absl::StatusCode::kInvalidArgument, {"'" + q_ + "' is incomplete", "6000 of 6400"});

  Chunks dup = good_;
  dup.insert(dup.begin() + Find(dup, q_, 1), dup[Find(dup, q_, 1)]);
  ExpectRejected(dup, absl::StatusCode::kInvalidArgument, {q_, "overlaps", "expected offset 2000"});

  Chunks dup_tensor = good_;
  const size_t norm = Find(dup_tensor, "model.norm.weight");
  dup_tensor.insert(dup_tensor.begin() + norm + 1, dup_tensor[norm]);
  ExpectRejected(dup_tensor, absl::StatusCode::kInvalidArgument, {"model.norm.weight", "already received"});

  Chunks reordered = good_;
  std::swap(reordered[Find(reordered, q_, 1)], reordered[Find(reordered, q_, 2)]);
  ExpectRejected(reordered, absl::StatusCode::kInvalidArgument, {q_, "offset 2000", "gap"});
}

TEST_F(WeightStreamTest, WrongShapeDtypeUnknownTensor) {
  Chunks shape = good_;
  for (int k = 0; k < 7; ++k) shape[Find(shape, q_, k)].set_shape(1, 999);
  ExpectRejected(shape, absl::StatusCode::kInvalidArgument, {q_, "shape [40, 999]", "[40, 160]"});

  Chunks mid_shape = good_;  // shape changes between chunks of one tensor
  mid_shape[Find(mid_shape, q_, 3)].set_shape(0, 24);
  ExpectRejected(mid_shape, absl::StatusCode::kInvalidArgument, {q_, "differ from the tensor's first"});

  Chunks fp8_norm = Stream({{"model.norm.weight", *Tensor::Zeros(DType::kF32, {160}).CastTo(DType::kF8E4M3)}}, 7, 1000);
  ExpectRejected(fp8_norm, absl::StatusCode::kInvalidArgument, {"model.norm.weight", "F8_E4M3 is only allowed"});

  Chunks no_fp8 = good_;
  no_fp8[Find(no_fp8, q_, 0)].clear_fp8();
  ExpectRejected(no_fp8, absl::StatusCode::kInvalidArgument, {q_, "block_shape"});

  Chunks unknown = good_;
  unknown[0].set_tensor_name("model.layers.9.mlp.up_proj.weight");
  ExpectRejected(unknown, absl::StatusCode::kNotFound, {"unknown tensor 'model.layers.9.mlp.up_proj.weight'"});
}

TEST_F(WeightStreamTest, MissingTensorAndMissingScale) {
  Chunks missing;
  for (const Chunk& c : good_) {
    if (c.tensor_name() != "model.layers.1.post_attention_layernorm.weight") missing.push_back(c);
  }
  Resummarize(missing, 7);
  ExpectRejected(missing, absl::StatusCode::kInvalidArgument,
                 {"missing tensor 'model.layers.1.post_attention_layernorm.weight'"});

  Chunks no_scale;
  for (const Chunk& c : good_) {
    if (c.tensor_name() != q_ + "_scale_inv") no_scale.push_back(c);
  }
  Resummarize(no_scale, 7);
  ExpectRejected(no_scale, absl::StatusCode::kInvalidArgument, {"missing scale tensor '" + q_ + "_scale_inv'"});

  Chunks bad_grid = good_;  // scale tensor with the wrong block grid
  bad_grid[Find(bad_grid, q_ + "_scale_inv")].set_shape(1, 1);
  ExpectRejected(bad_grid, absl::StatusCode::kInvalidArgument, {q_ + "_scale_inv", "shape [1, 1]", "[1, 2]"});
}

TEST_F(WeightStreamTest, VersionAndSummary) {
  Chunks version = good_;
  version[Find(version, q_, 3)].set_version(8);
  ExpectRejected(version, absl::StatusCode::kInvalidArgument, {q_, "has version 8", "stream is version 7"});

  ExpectRejected(Stream(wire_, 0, 1000), absl::StatusCode::kInvalidArgument, {"version 0 is reserved"});

  Chunks no_summary = good_;
  no_summary.pop_back();
  ExpectRejected(no_summary, absl::StatusCode::kInvalidArgument, {"missing summary"});

  Chunks total = good_;
  total.back().mutable_summary()->set_total_bytes(total.back().summary().total_bytes() + 1);
  ExpectRejected(total, absl::StatusCode::kDataLoss, {"total bytes"});

  Chunks count = good_;
  count.back().mutable_summary()->set_num_tensors(3);
  ExpectRejected(count, absl::StatusCode::kDataLoss, {"summary says 3 tensors"});

  Chunks after = good_;
  after.push_back(good_[0]);
  ExpectRejected(after, absl::StatusCode::kInvalidArgument, {"after the summary"});
}

// Overwrites bytes of tensor `name` from byte `at` (within one chunk), with that chunk's crc and
// the summary recomputed: the stream is intact, only the values are wrong.
void Overwrite(Chunks& chunks, const std::string& name, uint64_t at, const std::string& bytes, uint64_t version) {
  for (Chunk& c : chunks) {
    if (c.tensor_name() != name || at < c.offset() || at + bytes.size() > c.offset() + c.data().size()) continue;
    c.mutable_data()->replace(at - c.offset(), bytes.size(), bytes);
    c.set_crc32c(Crc32c(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(c.data().data()), c.data().size())));
    Resummarize(chunks, version);
    return;
  }
  ADD_FAILURE() << name << " has no chunk holding bytes " << at << ".." << at + bytes.size();
}

template <typename T>
std::string BytesOf(T v) {
  return std::string(reinterpret_cast<const char*>(&v), sizeof(v));
}

TEST_F(WeightStreamTest, VersionMustBeNewerAndWithinTheStep) {
  WeightAssemblerOptions o;
  o.serving_version = 7;
  ExpectRejected(good_, absl::StatusCode::kInvalidArgument, {"version 7 is not newer than the serving version 7"}, o);
  WeightAssembler stale = *WeightAssembler::Create(config_, o);
  EXPECT_FALSE(stale.Add(good_[0]).ok()) << "refused at the first message, before staging";
  o.serving_version = 6;
  EXPECT_TRUE(Assemble(config_, good_, o).ok());

  // Issue 19: version 2^64-1 was accepted, and then every real push was stale.
  ExpectRejected(Stream(wire_, UINT64_MAX, 1000), absl::StatusCode::kInvalidArgument,
                 {"version 18446744073709551615 is more than 4294967296 (max_version_step) beyond the serving "
                  "version 0"});
  o = {};
  o.serving_version = 5;
  o.max_version_step = 10;
  ExpectRejected(Stream(wire_, 16, 1000), absl::StatusCode::kInvalidArgument, {"more than 10"}, o);
  EXPECT_TRUE(Assemble(config_, Stream(wire_, 15, 1000), o).ok());
}

TEST_F(WeightStreamTest, NonFiniteValuesAreRejected) {
  // Issue 19: a NaN weight was accepted and then served NaN logprobs. bf16 NaN in a norm:
  Chunks nan = good_;
  Overwrite(nan, "model.norm.weight", 2 * 5, BytesOf<uint16_t>(0x7fc0), 7);
  ExpectRejected(nan, absl::StatusCode::kInvalidArgument, {"v7", "'model.norm.weight' element 5 is NaN"});

  // The FP8 NaN code (0x7f) in a projection matrix.
  Chunks fp8_nan = good_;
  Overwrite(fp8_nan, q_, 161, std::string(1, '\x7f'), 7);
  ExpectRejected(fp8_nan, absl::StatusCode::kInvalidArgument, {"'" + q_ + "' element 161 is NaN"});

  // A finite FP8 code times an infinite block scale.
  Chunks inf_scale = good_;
  Overwrite(inf_scale, q_ + "_scale_inv", 4, BytesOf<float>(INFINITY), 7);  // block (0, 1): columns 128..159
  ExpectRejected(inf_scale, absl::StatusCode::kInvalidArgument, {"'" + q_ + "' element 128 is"});

  // An all-F32 stream with -inf in its first tensor.
  std::vector<WireTensor> f32;
  for (const Parameter& p : params_) f32.push_back({p.spec.name, p.value});
  Chunks inf = Stream(f32, 7, 1000);
  EXPECT_TRUE(Assemble(config_, inf).ok());
  Overwrite(inf, params_[0].spec.name, 4 * 3, BytesOf<float>(-INFINITY), 7);
  ExpectRejected(inf, absl::StatusCode::kInvalidArgument, {"'" + params_[0].spec.name + "' element 3 is -inf"});
}

TEST_F(WeightStreamTest, SizeLimit) {
  WeightAssemblerOptions o;
  o.max_total_bytes = 20000;
  ExpectRejected(good_, absl::StatusCode::kResourceExhausted, {"20000-byte limit"}, o);
  o.max_total_bytes = good_.back().summary().total_bytes();
  EXPECT_TRUE(Assemble(config_, good_, o).ok());
}

TEST_F(WeightStreamTest, ChunkSizesDoNotMatter) {
  auto base = Assemble(config_, good_);
  ASSERT_TRUE(base.ok());
  for (size_t chunk : {1, 7, 128, 4096, 1 << 20}) {
    auto r = Assemble(config_, Stream(wire_, 7, chunk));
    ASSERT_TRUE(r.ok()) << chunk << ": " << r.status().ToString();
    for (size_t i = 0; i < base->params.size(); ++i) {
      ASSERT_EQ(std::memcmp(r->params[i].value.raw_data(), base->params[i].value.raw_data(),
                            base->params[i].value.nbytes()), 0);
    }
  }
}


TEST(WireToServing, LargeTensorsSplitIntoPiecesMatchTheCpuReference) {
  // 1100 x 2000: decoded in ~1M-element pieces (rows 0-523, 524-1047, 1048-1099).
  std::vector<float> v(1100 * 2000);
  uint32_t x = 1;
  for (float& f : v) {
    x = x * 1664525u + 1013904223u;
    f = (static_cast<float>(x >> 8) / 16777216.0f - 0.5f) * (f == v[0] ? 3.0f : 0.2f);
  }
  const Tensor master = *Tensor::FromF32({1100, 2000}, v);
  auto q = QuantizeFp8Block(master);
  ASSERT_TRUE(q.ok());
  const Tensor bf16 = *master.CastTo(DType::kBF16);
  auto out = WireToServing({{&q->weight, &q->scale_inv}, {&bf16, nullptr}, {&master, nullptr}});
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  const Tensor want_fp8 = *DequantizeFp8Block(q->weight, q->scale_inv);
  const Tensor want_bf16 = bf16.ToF32();
  ASSERT_EQ((*out)[0].shape(), master.shape());
  EXPECT_EQ(std::memcmp((*out)[0].raw_data(), want_fp8.raw_data(), want_fp8.nbytes()), 0);
  EXPECT_EQ(std::memcmp((*out)[1].raw_data(), want_bf16.raw_data(), want_bf16.nbytes()), 0);
  // Models update f32 parameters in place (CausalLM binds only writable f32 tensors).
  EXPECT_TRUE((*out)[0].writable());
  EXPECT_TRUE((*out)[1].writable());
  EXPECT_EQ((*out)[2].raw_data(), master.raw_data());  // F32 passes through
  const Tensor view = Tensor::View(DType::kF32, master.shape(), master.raw_data(), nullptr);
  auto copied = WireToServing(view, nullptr);
  ASSERT_TRUE(copied.ok());
  EXPECT_TRUE(copied->writable());
  EXPECT_NE(copied->raw_data(), master.raw_data());
  EXPECT_EQ(std::memcmp(copied->raw_data(), master.raw_data(), master.nbytes()), 0);
  // Some values really changed in quantization, so the comparison above is not vacuous.
  EXPECT_NE(std::memcmp(want_fp8.raw_data(), master.raw_data(), master.nbytes()), 0);

  const Tensor wrong_scale = Tensor::Zeros(DType::kF32, {9, 15});
  auto bad = WireToServing(q->weight, &wrong_scale);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("needs F32 scales [9, 16], got F32 [9, 15]"), std::string::npos)
      << bad.status().ToString();
  EXPECT_FALSE(WireToServing(q->weight, nullptr).ok());
}

}  // namespace
}  // namespace grpo

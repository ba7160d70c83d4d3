#include "core/tensor.h"

#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <vector>

#include "core/float_formats.h"

namespace grpo {
namespace {

TEST(Tensor, ZerosShapeAndBytes) {
  Tensor t = Tensor::Zeros(DType::kBF16, {2, 3, 4});
  EXPECT_EQ(t.rank(), 3);
  EXPECT_EQ(t.numel(), 24);
  EXPECT_EQ(t.nbytes(), 48u);
  EXPECT_EQ(t.dim(-1), 4);
  for (int i = 0; i < 24; ++i) EXPECT_EQ(t.data<uint16_t>()[i], 0);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t.raw_data()) % 64, 0u);
  Tensor scalar = Tensor::Zeros(DType::kF32, {});
  EXPECT_EQ(scalar.numel(), 1);
  Tensor empty = Tensor::Zeros(DType::kF32, {0, 5});
  EXPECT_EQ(empty.numel(), 0);
}

TEST(Tensor, FromF32ChecksCount) {
  EXPECT_FALSE(Tensor::FromF32({2, 2}, std::vector<float>{1, 2, 3}).ok());
  auto t = Tensor::FromF32({3}, std::vector<float>{1, 2, 3});
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->data<float>()[2], 3.0f);
}

TEST(Tensor, ReshapeSharesStorageCloneDoesNot) {
  Tensor t = *Tensor::FromF32({2, 3}, std::vector<float>{0, 1, 2, 3, 4, 5});
  auto r = t.Reshape({3, 2});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->raw_data(), t.raw_data());
  EXPECT_FALSE(t.Reshape({4}).ok());
  Tensor c = t.Clone();
  c.mutable_data<float>()[0] = 42;
  EXPECT_EQ(t.data<float>()[0], 0.0f);
}

TEST(Tensor, CastRoundTripsThroughNarrowFormats) {
  std::vector<float> v{0.0f, 1.0f, -2.5f, 448.0f, 1000.0f, 0.0078125f, 3.14159f};
  Tensor t = *Tensor::FromF32({7}, v);
  for (DType d : {DType::kBF16, DType::kF16, DType::kF8E4M3, DType::kF8E5M2, DType::kF64}) {
    auto narrow = t.CastTo(d);
    ASSERT_TRUE(narrow.ok()) << DTypeName(d);
    EXPECT_EQ(narrow->dtype(), d);
    Tensor back = narrow->ToF32();
    for (int i = 0; i < 7; ++i) {
      float want = v[i];
      switch (d) {
        case DType::kBF16: want = Bf16ToF32(F32ToBf16(v[i])); break;
        case DType::kF16: want = F16ToF32(F32ToF16(v[i])); break;
        case DType::kF8E4M3: want = Fp8E4M3ToF32(F32ToFp8E4M3(v[i])); break;
        case DType::kF8E5M2: want = Fp8E5M2ToF32(F32ToFp8E5M2(v[i])); break;
        default: break;
      }
      EXPECT_EQ(back.data<float>()[i], want) << DTypeName(d) << " " << i;
    }
  }
  EXPECT_EQ(Tensor::Zeros(DType::kF8E4M3, {1}).ToF32().data<float>()[0], 0.0f);
  EXPECT_FALSE(t.CastTo(DType::kI32).ok());
}

TEST(Tensor, IntegerWidening) {
  Tensor t = Tensor::Zeros(DType::kI64, {3});
  int64_t vals[3] = {-5, 0, 1LL << 40};
  std::memcpy(t.mutable_raw_data(), vals, sizeof(vals));
  Tensor f = t.ToF32();
  EXPECT_EQ(f.data<float>()[0], -5.0f);
  EXPECT_EQ(f.data<float>()[2], static_cast<float>(1LL << 40));
}

TEST(Tensor, ViewsAreReadOnlyAndKeepOwnerAlive) {
  auto owner = std::make_shared<std::vector<unsigned char>>(13, 0);
  float x = 1.5f;
  std::memcpy(owner->data() + 1, &x, 4);  // deliberately unaligned
  std::weak_ptr<std::vector<unsigned char>> weak = owner;
  Tensor v = Tensor::View(DType::kF32, {1}, owner->data() + 1, owner);
  owner.reset();
  EXPECT_FALSE(weak.expired());
  EXPECT_FALSE(v.writable());
  EXPECT_EQ(v.ToF32().data<float>()[0], 1.5f);
  EXPECT_DEATH(v.mutable_raw_data(), "read-only");
  v = Tensor();
  EXPECT_TRUE(weak.expired());
}

TEST(DType, NamesRoundTrip) {
  for (int i = 0; i <= static_cast<int>(DType::kU64); ++i) {
    const DType d = static_cast<DType>(i);
    auto parsed = ParseDType(DTypeName(d));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, d);
  }
  auto bad = ParseDType("F7");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("'F7'"), std::string::npos);
  EXPECT_EQ(DTypeSize(DType::kBF16), 2u);
  EXPECT_EQ(DTypeSize(DType::kF8E4M3), 1u);
}

}  // namespace
}  // namespace grpo

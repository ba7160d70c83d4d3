// CRC-32C against the standard check value, RFC 3720 (iSCSI) test vectors, a bit-at-a-time
// reference, and the extend identity; the SSE4.2 and table paths must agree.
#include "core/crc32c.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

namespace grpo {
namespace {

uint32_t BitwiseReference(const std::vector<uint8_t>& data) {
  uint32_t c = 0xFFFFFFFFu;
  for (uint8_t b : data) {
    c ^= b;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
  }
  return ~c;
}

TEST(Crc32c, StandardCheckValue) {
  EXPECT_EQ(Crc32c(std::string_view("123456789")), 0xE3069283u);
  const std::string s = "123456789";
  EXPECT_EQ(Crc32cExtendPortable(0, {reinterpret_cast<const uint8_t*>(s.data()), s.size()}),
            0xE3069283u);
  EXPECT_EQ(Crc32c(std::string_view("")), 0u);
}

TEST(Crc32c, Rfc3720Vectors) {
  std::vector<uint8_t> zeros(32, 0), ones(32, 0xFF), inc(32), dec(32);
  for (int i = 0; i < 32; ++i) {
    inc[i] = static_cast<uint8_t>(i);
    dec[i] = static_cast<uint8_t>(31 - i);
  }
  EXPECT_EQ(Crc32c(zeros), 0x8A9136AAu);
  EXPECT_EQ(Crc32c(ones), 0x62A8AB43u);
  EXPECT_EQ(Crc32c(inc), 0x46DD794Eu);
  EXPECT_EQ(Crc32c(dec), 0x113FDB5Cu);
}

TEST(Crc32c, MatchesBitwiseReferenceAndExtends) {
  std::mt19937 rng(7);
  for (size_t n : {1, 3, 7, 8, 9, 15, 16, 17, 63, 64, 65, 1000, 4099}) {
    std::vector<uint8_t> data(n);
    for (auto& b : data) b = static_cast<uint8_t>(rng());
    const uint32_t want = BitwiseReference(data);
    EXPECT_EQ(Crc32c(data), want) << n;
    EXPECT_EQ(Crc32cExtendPortable(0, data), want) << n;
    // Misaligned start.
    std::vector<uint8_t> shifted(n + 1);
    std::copy(data.begin(), data.end(), shifted.begin() + 1);
    EXPECT_EQ(Crc32c(std::span<const uint8_t>(shifted).subspan(1)), want) << n;
    for (size_t cut : {size_t{0}, n / 3, n / 2, n}) {
      std::span<const uint8_t> all(data);
      EXPECT_EQ(Crc32cExtend(Crc32c(all.first(cut)), all.subspan(cut)), want) << n << " " << cut;
    }
  }
}

}  // namespace
}  // namespace grpo

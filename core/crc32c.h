// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78): the checksum of gRPC weight updates
// (rollout.proto), TFRecord/TensorBoard event files, and iSCSI.
//
// Crc32c(data) is the standard CRC (init 0xFFFFFFFF, final xor 0xFFFFFFFF), so
// Crc32c("123456789") == 0xE3069283. Crc32cExtend(crc, data) continues a finished CRC over more
// bytes: Crc32cExtend(Crc32c(a), b) == Crc32c(a + b), and Crc32cExtend(0, b) == Crc32c(b).
// Uses the SSE4.2 crc32 instruction when the CPU has it (checked once at run time), else a
// slicing-by-8 table; both give identical results.
#ifndef GRPO_CORE_CRC32C_H_
#define GRPO_CORE_CRC32C_H_

#include <cstdint>
#include <span>
#include <string_view>

namespace grpo {

uint32_t Crc32cExtend(uint32_t crc, std::span<const uint8_t> data);

inline uint32_t Crc32c(std::span<const uint8_t> data) { return Crc32cExtend(0, data); }

inline uint32_t Crc32c(std::string_view data) {
  return Crc32c(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(data.data()), data.size()));
}

// The table-driven implementation alone (for tests and for CPUs without SSE4.2).
uint32_t Crc32cExtendPortable(uint32_t crc, std::span<const uint8_t> data);

}  // namespace grpo

#endif  // GRPO_CORE_CRC32C_H_

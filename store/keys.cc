#include "store/keys.h"

namespace grpo::store {

void AppendU32(std::string* out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out->push_back(static_cast<char>((v >> shift) & 0xff));
}

void AppendU64(std::string* out, uint64_t v) {
  for (int shift = 56; shift >= 0; shift -= 8) out->push_back(static_cast<char>((v >> shift) & 0xff));
}

uint32_t ReadU32(const char* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

uint64_t ReadU64(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

std::string RunKey(uint32_t run_id) {
  std::string k;
  AppendU32(&k, run_id);
  return k;
}

std::string StepKey(uint32_t run_id, uint64_t step) {
  std::string k = RunKey(run_id);
  AppendU64(&k, step);
  return k;
}

std::string PromptKey(uint32_t run_id, uint64_t step, uint32_t prompt_index) {
  std::string k = StepKey(run_id, step);
  AppendU32(&k, prompt_index);
  return k;
}

std::string SampleKeyString(const SampleKey& key) {
  std::string k = PromptKey(key.run_id, key.step, key.prompt_index);
  AppendU32(&k, key.sample_index);
  return k;
}

std::optional<uint32_t> DecodeRunKey(std::string_view key) {
  if (key.size() != kRunKeySize) return std::nullopt;
  return ReadU32(key.data());
}

std::optional<std::pair<uint32_t, uint64_t>> DecodeStepKey(std::string_view key) {
  if (key.size() != kStepKeySize) return std::nullopt;
  return std::make_pair(ReadU32(key.data()), ReadU64(key.data() + 4));
}

std::optional<SampleKey> DecodeSampleKey(std::string_view key) {
  if (key.size() != kSampleKeySize) return std::nullopt;
  return SampleKey{ReadU32(key.data()), ReadU64(key.data() + 4), ReadU32(key.data() + 12),
                   ReadU32(key.data() + 16)};
}

std::string PrefixSuccessor(std::string_view prefix) {
  std::string s(prefix);
  while (!s.empty()) {
    unsigned char last = static_cast<unsigned char>(s.back());
    if (last != 0xff) {
      s.back() = static_cast<char>(last + 1);
      return s;
    }
    s.pop_back();
  }
  return s;
}

}  // namespace grpo::store

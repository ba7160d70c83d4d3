// libFuzzer target (built by tools/tokenizer_fuzz.sh): arbitrary bytes as a JSON Lines dataset of
// each format. Parsing must return; every non-blank line is an example or a reported bad row.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "data/dataset.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  size_t nonblank = 0;
  for (size_t pos = 0; pos < text.size();) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    if (text.substr(pos, end - pos).find_first_not_of(" \t\r\n") != std::string::npos) ++nonblank;
    pos = end + 1;
  }
  for (auto format : {grpo::data::DatasetFormat::kGsm8k, grpo::data::DatasetFormat::kMath,
                      grpo::data::DatasetFormat::kCountdown, grpo::data::DatasetFormat::kGeneric}) {
    grpo::data::DatasetOptions o;
    o.format = format;
    auto d = grpo::data::ParseJsonl(text, o);
    if (!d.ok()) std::abort();
    if (d->examples.size() + d->bad_rows.size() != nonblank) std::abort();
    (void)grpo::data::ExtractBoxed(text);
    (void)grpo::data::ExtractGsm8kAnswer(text);
  }
  return 0;
}

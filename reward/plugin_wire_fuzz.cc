// libFuzzer target: the plugin pipe protocol decoders (reward/plugin_wire.h) on arbitrary
// bytes, and the round trip of what decodes. Built by tools/fuzz_smoke.sh with ASan + UBSan.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "reward/plugin_wire.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace grpo::reward::wire;
  std::string_view in(reinterpret_cast<const char*>(data), size);
  auto req = DecodeRequest(in);
  if (req.ok()) {
    auto again = DecodeRequest(EncodeRequest(*req));
    if (!again.ok() || again->completion != req->completion || again->meta != req->meta) std::abort();
  }
  auto rep = DecodeReply(in);
  if (rep.ok()) {
    auto again = DecodeReply(EncodeReply(*rep));
    if (!again.ok() || again->message != rep->message) std::abort();
  }
  return 0;
}

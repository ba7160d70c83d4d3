#include "tokenizer/chat_template.h"

namespace grpo::tokenizer {
namespace {

// Python's str.strip(chars) family for one set of characters.
std::string_view LStrip(std::string_view s, std::string_view chars) {
  const size_t b = s.find_first_not_of(chars);
  return b == std::string_view::npos ? std::string_view() : s.substr(b);
}
std::string_view RStrip(std::string_view s, std::string_view chars) {
  const size_t e = s.find_last_not_of(chars);
  return e == std::string_view::npos ? std::string_view() : s.substr(0, e + 1);
}
std::string_view Strip(std::string_view s, std::string_view chars) { return LStrip(RStrip(s, chars), chars); }

// Python's str.strip() with no argument: Unicode whitespace (ASCII part and the common others).
std::string_view StripWhitespace(std::string_view s) {
  static constexpr std::string_view kAscii = " \t\n\r\v\f\x1c\x1d\x1e\x1f";
  // Non-ASCII whitespace (U+0085, U+00A0, U+2000.., U+3000, ...) at the ends.
  auto lead_ws = [](std::string_view t) -> size_t {
    static const std::string_view kMulti[] = {"\xC2\x85", "\xC2\xA0", "\xE1\x9A\x80", "\xE2\x80\x80", "\xE2\x80\x81",
                                              "\xE2\x80\x82", "\xE2\x80\x83", "\xE2\x80\x84", "\xE2\x80\x85",
                                              "\xE2\x80\x86", "\xE2\x80\x87", "\xE2\x80\x88", "\xE2\x80\x89",
                                              "\xE2\x80\x8A", "\xE2\x80\xA8", "\xE2\x80\xA9", "\xE2\x80\xAF",
                                              "\xE2\x81\x9F", "\xE3\x80\x80"};
    if (!t.empty() && kAscii.find(t[0]) != std::string_view::npos) return 1;
    for (std::string_view m : kMulti) {
      if (t.substr(0, m.size()) == m) return m.size();
    }
    return 0;
  };
  auto trail_ws = [&](std::string_view t) -> size_t {
    for (size_t n = 1; n <= 3 && n <= t.size(); ++n) {
      if (lead_ws(t.substr(t.size() - n)) == n) return n;
    }
    return 0;
  };
  for (size_t n; (n = lead_ws(s)) > 0;) s.remove_prefix(n);
  for (size_t n; (n = trail_ws(s)) > 0;) s.remove_suffix(n);
  return s;
}

absl::Status CheckRoles(std::span<const ChatMessage> messages) {
  for (size_t i = 0; i < messages.size(); ++i) {
    const std::string& r = messages[i].role;
    if (r != "system" && r != "user" && r != "assistant") {
      return absl::InvalidArgumentError("chat message " + std::to_string(i) + ": role '" + r +
                                     "' (only system, user and assistant are rendered)");
    }
  }
  return absl::OkStatus();
}

std::string RenderQwen25(std::span<const ChatMessage> m, const ChatOptions& o) {
  std::string s;
  if (!m.empty() && m[0].role == "system") {
    s += "<|im_start|>system\n" + m[0].content + "<|im_end|>\n";
  } else {
    s += "<|im_start|>system\n" + o.qwen25_default_system + "<|im_end|>\n";
  }
  for (size_t i = 0; i < m.size(); ++i) {
    if (m[i].role == "system" && i == 0) continue;
    s += "<|im_start|>" + m[i].role + "\n" + m[i].content + "<|im_end|>\n";
  }
  if (o.add_generation_prompt) s += "<|im_start|>assistant\n";
  return s;
}

std::string RenderQwen3(std::span<const ChatMessage> m, const ChatOptions& o) {
  std::string s;
  if (!m.empty() && m[0].role == "system") s += "<|im_start|>system\n" + m[0].content + "<|im_end|>\n";
  // The last user turn that is not a tool response.
  long last_query = static_cast<long>(m.size()) - 1;
  for (long i = static_cast<long>(m.size()) - 1; i >= 0; --i) {
    const std::string& c = m[i].content;
    const bool tool_response = c.starts_with("<tool_response>") && c.ends_with("</tool_response>");
    if (m[i].role == "user" && !tool_response) {
      last_query = i;
      break;
    }
  }
  for (size_t i = 0; i < m.size(); ++i) {
    const ChatMessage& msg = m[i];
    if (msg.role == "user" || (msg.role == "system" && i > 0)) {
      s += "<|im_start|>" + msg.role + "\n" + msg.content + "<|im_end|>\n";
    } else if (msg.role == "assistant") {
      std::string_view content = msg.content;
      std::string_view reasoning;
      const size_t close = content.find("</think>");
      if (close != std::string_view::npos) {
        // content.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n')
        std::string_view before = RStrip(content.substr(0, close), "\n");
        const size_t open = before.rfind("<think>");
        reasoning = LStrip(open == std::string_view::npos ? before : before.substr(open + 7), "\n");
        // content.split('</think>')[-1].lstrip('\n')
        content = LStrip(content.substr(content.rfind("</think>") + 8), "\n");
      }
      const bool last = i + 1 == m.size();
      if (static_cast<long>(i) > last_query && (last || !reasoning.empty())) {
        s += "<|im_start|>assistant\n<think>\n" + std::string(Strip(reasoning, "\n")) + "\n</think>\n\n" +
             std::string(LStrip(content, "\n"));
      } else {
        s += "<|im_start|>assistant\n" + std::string(content);
      }
      s += "<|im_end|>\n";
    }
  }
  if (o.add_generation_prompt) {
    s += "<|im_start|>assistant\n";
    if (!o.enable_thinking) s += "<think>\n\n</think>\n\n";
  }
  return s;
}

std::string RenderDeepSeekV3(std::span<const ChatMessage> m, const ChatOptions& o) {
  std::string system;
  bool first_system = true;
  for (const ChatMessage& msg : m) {
    if (msg.role != "system") continue;
    system += (first_system ? "" : "\n\n") + msg.content;
    first_system = false;
  }
  std::string s = (o.bos_token.empty() ? std::string("<｜begin▁of▁sentence｜>") : o.bos_token) + system;
  for (const ChatMessage& msg : m) {
    if (msg.role == "user") s += "<｜User｜>" + msg.content;
    if (msg.role == "assistant") s += "<｜Assistant｜>" + msg.content + "<｜end▁of▁sentence｜>";
  }
  if (o.add_generation_prompt) s += "<｜Assistant｜>";
  return s;
}

std::string RenderLlama3(std::span<const ChatMessage> m, const ChatOptions& o) {
  std::string s;
  for (size_t i = 0; i < m.size(); ++i) {
    if (i == 0) s += o.bos_token.empty() ? std::string("<|begin_of_text|>") : o.bos_token;
    s += "<|start_header_id|>" + m[i].role + "<|end_header_id|>\n\n" +
         std::string(StripWhitespace(m[i].content)) + "<|eot_id|>";
  }
  s += "<|start_header_id|>assistant<|end_header_id|>\n\n";
  return s;
}

}  // namespace

absl::StatusOr<ChatFormat> ChatFormatFromName(std::string_view name) {
  if (name == "qwen2.5" || name == "qwen2_5" || name == "qwen2") return ChatFormat::kQwen25;
  if (name == "qwen3") return ChatFormat::kQwen3;
  if (name == "deepseek_v3" || name == "deepseek-v3") return ChatFormat::kDeepSeekV3;
  if (name == "llama3" || name == "llama-3") return ChatFormat::kLlama3;
  return absl::InvalidArgumentError("chat format '" + std::string(name) +
                                 "' (known: qwen2.5, qwen3, deepseek_v3, llama3)");
}

absl::StatusOr<ChatFormat> DetectChatFormat(std::string_view t) {
  if (t.find("<｜User｜>") != std::string_view::npos) return ChatFormat::kDeepSeekV3;
  if (t.find("<|start_header_id|>") != std::string_view::npos) return ChatFormat::kLlama3;
  if (t.find("<|im_start|>") != std::string_view::npos) {
    if (t.find("reasoning_content") != std::string_view::npos) return ChatFormat::kQwen3;
    return ChatFormat::kQwen25;
  }
  return absl::NotFoundError("chat template: no known format (Qwen2.5, Qwen3, DeepSeek-V3, Llama-3)");
}

absl::StatusOr<std::string> RenderChat(ChatFormat format, std::span<const ChatMessage> messages,
                               const ChatOptions& options) {
  GRPO_RETURN_IF_ERROR(CheckRoles(messages));
  switch (format) {
    case ChatFormat::kQwen25: return RenderQwen25(messages, options);
    case ChatFormat::kQwen3: return RenderQwen3(messages, options);
    case ChatFormat::kDeepSeekV3: return RenderDeepSeekV3(messages, options);
    case ChatFormat::kLlama3: return RenderLlama3(messages, options);
  }
  return absl::InternalError("unknown chat format");
}

}  // namespace grpo::tokenizer

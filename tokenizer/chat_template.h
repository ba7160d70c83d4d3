// Chat formats: system/user/assistant turns rendered exactly as the models' Jinja
// `chat_template` renders them (without tools), plus the generation prompt.
//
//   kQwen25      Qwen2.5 (-Instruct): "<|im_start|>role\n…<|im_end|>\n"; without a system turn
//                the template inserts its default system prompt.
//   kQwen3       Qwen3: as Qwen2.5 but no default system prompt; assistant turns after the last
//                user turn carry their reasoning as "<think>\n…\n</think>\n\n" (split out of
//                "<think>…</think>" in the content), earlier ones have it removed;
//                enable_thinking = false adds an empty think block to the generation prompt.
//   kDeepSeekV3  DeepSeek-V3: BOS, the system prompts joined by "\n\n", then "<｜User｜>…" and
//                "<｜Assistant｜>…<｜end▁of▁sentence｜>"; generation prompt "<｜Assistant｜>".
//   kLlama3      Llama-3 (-Instruct): BOS, then "<|start_header_id|>role<|end_header_id|>\n\n"
//                + stripped content + "<|eot_id|>"; that template always ends with the
//                assistant header, whatever add_generation_prompt says.
// Roles other than system/user/assistant are an InvalidArgument error (tool turns are not
// rendered by this function).
#ifndef GRPO_TOKENIZER_CHAT_TEMPLATE_H_
#define GRPO_TOKENIZER_CHAT_TEMPLATE_H_

#include <span>
#include <string>
#include <string_view>

#include "core/status.h"

namespace grpo::tokenizer {

struct ChatMessage {
  std::string role;  // "system", "user" or "assistant"
  std::string content;
};

enum class ChatFormat { kQwen25, kQwen3, kDeepSeekV3, kLlama3 };

struct ChatOptions {
  bool add_generation_prompt = true;
  bool enable_thinking = true;  // Qwen3 only
  // Qwen2.5's default system prompt (used when the first turn is not a system turn).
  std::string qwen25_default_system = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.";
  // BOS text for DeepSeek-V3 / Llama-3; empty: the format's usual token.
  std::string bos_token;
};

// "qwen2.5", "qwen3", "deepseek_v3", "llama3" (also "qwen2", "deepseek-v3", "llama-3").
absl::StatusOr<ChatFormat> ChatFormatFromName(std::string_view name);
// Guesses the format of a tokenizer_config.json chat_template by its markers; NotFound if none.
absl::StatusOr<ChatFormat> DetectChatFormat(std::string_view chat_template);

absl::StatusOr<std::string> RenderChat(ChatFormat format, std::span<const ChatMessage> messages,
                               const ChatOptions& options = {});

}  // namespace grpo::tokenizer

#endif  // GRPO_TOKENIZER_CHAT_TEMPLATE_H_

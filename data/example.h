// Example: one task instance as the trainer sees it, whatever dataset or generator it came from.
#ifndef GRPO_DATA_EXAMPLE_H_
#define GRPO_DATA_EXAMPLE_H_

#include <nlohmann/json.hpp>

#include <map>
#include <string>

namespace grpo::data {

struct Example {
  std::string task;      // "gsm8k", "math", "countdown", "arithmetic" or "generic"
  std::string question;  // the problem statement, ready for a prompt template's {question}
  std::string answer;    // the gold final answer (what the reward compares against)
  std::string solution;  // a worked solution when the source has one ("" otherwise)
  // Named values for prompt templates: at least "question" and "answer"; Countdown adds "nums"
  // ("[3, 7, 25]") and "target".
  std::map<std::string, std::string> fields;
  // Task data for rewards (Countdown: {"nums": [...], "target": n}); an object, maybe empty.
  nlohmann::json meta = nlohmann::json::object();
  int64_t line = 0;  // 1-based source line (0 for generated examples)
};

}  // namespace grpo::data

#endif  // GRPO_DATA_EXAMPLE_H_

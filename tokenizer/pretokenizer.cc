#include "tokenizer/pretokenizer.h"

#include <utility>

namespace grpo::tokenizer {
namespace {

// (begin, end, is_match) ranges of one piece's text.
struct Range {
  size_t begin;
  size_t end;
  bool match;
};

// The ranges of the HF `tokenizers` SplitDelimiterBehavior, given alternating match/gap ranges.
std::vector<Range> ApplyBehavior(std::vector<Range> r, int behavior) {
  std::vector<Range> acc;
  acc.reserve(r.size());
  bool previous_match = false;
  switch (behavior) {
    case 0:  // Isolated
      return r;
    case 1:  // Removed
      for (const Range& x : r) {
        if (!x.match) acc.push_back(x);
      }
      return acc;
    case 2:  // MergedWithPrevious
      for (const Range& x : r) {
        if (x.match && !previous_match && !acc.empty()) {
          acc.back().end = x.end;
        } else {
          acc.push_back({x.begin, x.end, false});
        }
        previous_match = x.match;
      }
      return acc;
    case 3:  // MergedWithNext
      for (auto it = r.rbegin(); it != r.rend(); ++it) {
        if (it->match && !previous_match && !acc.empty()) {
          acc.back().begin = it->begin;
        } else {
          acc.push_back({it->begin, it->end, false});
        }
        previous_match = it->match;
      }
      return std::vector<Range>(acc.rbegin(), acc.rend());
    default:  // Contiguous
      for (size_t i = 0; i < r.size(); ++i) {
        if (i > 0 && r[i].match == previous_match) {
          acc.back().end = r[i].end;
        } else {
          acc.push_back({r[i].begin, r[i].end, false});
        }
        previous_match = r[i].match;
      }
      return acc;
  }
}

}  // namespace

absl::Status PreTokenizer::AddSteps(const nlohmann::json& config, std::vector<Step>& steps,
                              bool& byte_level) {
  if (config.is_null()) return absl::OkStatus();
  if (!config.is_object()) return absl::InvalidArgumentError("pre_tokenizer: not an object");
  const auto type_it = config.find("type");
  if (type_it == config.end() || !type_it->is_string()) {
    return absl::InvalidArgumentError("pre_tokenizer: missing \"type\"");
  }
  const std::string type = type_it->get<std::string>();
  if (type == "Sequence") {
    auto list = config.find("pretokenizers");
    if (list == config.end() || !list->is_array()) {
      return absl::InvalidArgumentError("pre_tokenizer Sequence: \"pretokenizers\" is not an array");
    }
    for (const auto& sub : *list) GRPO_RETURN_IF_ERROR(AddSteps(sub, steps, byte_level));
    return absl::OkStatus();
  }
  Step step;
  if (type == "Split") {
    step.kind = Step::Kind::kSplit;
    auto pattern = config.find("pattern");
    if (pattern == config.end() || !pattern->is_object()) {
      return absl::InvalidArgumentError("pre_tokenizer Split: \"pattern\" is not an object");
    }
    std::string regex;
    if (auto r = pattern->find("Regex"); r != pattern->end() && r->is_string()) {
      regex = r->get<std::string>();
    } else if (auto s = pattern->find("String"); s != pattern->end() && s->is_string()) {
      regex = "\\Q" + s->get<std::string>() + "\\E";
      if (s->get<std::string>().find("\\E") != std::string::npos) {
        return absl::UnimplementedError("pre_tokenizer Split: a String pattern containing \\E");
      }
    } else {
      return absl::InvalidArgumentError("pre_tokenizer Split: pattern has neither Regex nor String");
    }
    GRPO_ASSIGN_OR_RETURN(Regex compiled, Regex::Compile(regex));
    step.regex = std::move(compiled);
    const std::string behavior = config.value("behavior", std::string("Isolated"));
    static const std::pair<const char*, Behavior> kBehaviors[] = {
        {"Isolated", Behavior::kIsolated},
        {"Removed", Behavior::kRemoved},
        {"MergedWithPrevious", Behavior::kMergedWithPrevious},
        {"MergedWithNext", Behavior::kMergedWithNext},
        {"Contiguous", Behavior::kContiguous}};
    bool known = false;
    for (const auto& [name, value] : kBehaviors) {
      if (behavior == name) {
        step.behavior = value;
        known = true;
      }
    }
    if (!known) return absl::InvalidArgumentError("pre_tokenizer Split: unknown behavior '" + behavior + "'");
    if (auto inv = config.find("invert"); inv != config.end() && inv->is_boolean()) {
      step.invert = inv->get<bool>();
    }
  } else if (type == "ByteLevel") {
    step.kind = Step::Kind::kByteLevel;
    byte_level = true;
    if (auto a = config.find("add_prefix_space"); a != config.end() && a->is_boolean()) {
      step.add_prefix_space = a->get<bool>();
    }
    bool use_regex = true;
    if (auto u = config.find("use_regex"); u != config.end() && u->is_boolean()) {
      use_regex = u->get<bool>();
    }
    if (use_regex) {
      GRPO_ASSIGN_OR_RETURN(Regex compiled, Regex::Compile(kGpt2Pattern));
      step.regex = std::move(compiled);
    }
  } else {
    return absl::UnimplementedError("pre_tokenizer type '" + type + "'");
  }
  steps.push_back(std::move(step));
  return absl::OkStatus();
}

absl::StatusOr<PreTokenizer> PreTokenizer::FromJson(const nlohmann::json& config) {
  PreTokenizer p;
  GRPO_RETURN_IF_ERROR(AddSteps(config, p.steps_, p.has_byte_level_));
  return p;
}

absl::Status PreTokenizer::ApplyStep(const Step& step, std::string_view text, const Piece& piece,
                               std::vector<Piece>& out) {
  // The piece's text, with its added space if it has one.
  std::string prefixed;
  std::string_view view = text.substr(piece.begin, piece.end - piece.begin);
  bool prefix = piece.prefix_space;
  if (step.kind == Step::Kind::kByteLevel && step.add_prefix_space && !prefix &&
      (view.empty() || view[0] != ' ')) {
    prefix = true;
  }
  if (prefix) {
    prefixed.reserve(view.size() + 1);
    prefixed.push_back(' ');
    prefixed.append(view);
    view = prefixed;
  }
  const size_t shift = prefix ? 1 : 0;
  auto emit = [&](size_t b, size_t e) {
    if (e <= b) return;
    if (b < shift) {
      out.push_back({piece.begin, piece.begin + e - shift, true});
    } else {
      out.push_back({piece.begin + b - shift, piece.begin + e - shift, false});
    }
  };
  if (!step.regex) {  // ByteLevel without regex: the piece stays whole
    emit(0, view.size());
    return absl::OkStatus();
  }
  thread_local std::vector<std::pair<size_t, size_t>> matches;
  matches.clear();
  GRPO_RETURN_IF_ERROR(step.regex->FindAll(view, matches));
  if (step.kind == Step::Kind::kByteLevel || (step.behavior == Behavior::kIsolated && !step.invert)) {
    // The common case, without building ranges: matches and the gaps between them.
    out.reserve(out.size() + 2 * matches.size() + 1);
    size_t prev = 0;
    for (const auto& [b, e] : matches) {
      emit(prev, b);
      emit(b, e);
      prev = e;
    }
    emit(prev, view.size());
    return absl::OkStatus();
  }
  std::vector<Range> ranges;
  size_t prev = 0;
  for (const auto& [b, e] : matches) {
    if (b > prev) ranges.push_back({prev, b, step.invert});
    ranges.push_back({b, e, !step.invert});
    prev = e;
  }
  if (prev < view.size()) ranges.push_back({prev, view.size(), step.invert});
  for (const Range& r : ApplyBehavior(std::move(ranges), static_cast<int>(step.behavior))) {
    emit(r.begin, r.end);
  }
  return absl::OkStatus();
}

absl::Status PreTokenizer::Split(std::string_view text, std::vector<Piece>& pieces) const {
  pieces.clear();
  if (text.empty()) return absl::OkStatus();
  pieces.push_back({0, text.size(), false});
  thread_local std::vector<Piece> next;
  for (const Step& step : steps_) {
    next.clear();
    next.reserve(pieces.size() * 2);
    for (const Piece& p : pieces) GRPO_RETURN_IF_ERROR(ApplyStep(step, text, p, next));
    pieces.swap(next);
  }
  return absl::OkStatus();
}

}  // namespace grpo::tokenizer

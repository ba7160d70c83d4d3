#include "tokenizer/tokenizer.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <deque>
#include <filesystem>

#include "absl/container/flat_hash_map.h"
#include "core/file.h"
#include "tokenizer/bpe.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/unicode.h"

namespace grpo::tokenizer {
namespace {

using nlohmann::json;

// A byte trie over the added tokens' contents.
class AddedTokenTrie {
 public:
  void Insert(std::string_view s, int32_t token_index) {
    int node = 0;
    for (unsigned char c : s) {
      auto& ch = nodes_[node].children;
      auto it = std::lower_bound(ch.begin(), ch.end(), c,
                                 [](const std::pair<uint8_t, int>& p, uint8_t v) { return p.first < v; });
      if (it != ch.end() && it->first == c) {
        node = it->second;
      } else {
        const int fresh = static_cast<int>(nodes_.size());
        ch.insert(it, {c, fresh});
        nodes_.emplace_back();
        node = fresh;
      }
    }
    nodes_[node].token = token_index;
    first_byte_[static_cast<unsigned char>(s[0])] = true;
  }
  bool MayStart(unsigned char c) const { return first_byte_[c]; }
  // Appends (end offset, token index) for every token starting at `pos`, shortest first.
  void MatchesAt(std::string_view text, size_t pos, std::vector<std::pair<size_t, int>>& out) const {
    int node = 0;
    for (size_t i = pos; i < text.size(); ++i) {
      const auto& ch = nodes_[node].children;
      const unsigned char c = static_cast<unsigned char>(text[i]);
      auto it = std::lower_bound(ch.begin(), ch.end(), c,
                                 [](const std::pair<uint8_t, int>& p, uint8_t v) { return p.first < v; });
      if (it == ch.end() || it->first != c) return;
      node = it->second;
      if (nodes_[node].token >= 0) out.emplace_back(i + 1, nodes_[node].token);
    }
  }

 private:
  struct Node {
    std::vector<std::pair<uint8_t, int>> children;
    int token = -1;
  };
  std::vector<Node> nodes_ = std::vector<Node>(1);
  std::array<bool, 256> first_byte_{};
};

bool IsWhiteSpace(char32_t c) {
  return (c >= 0x9 && c <= 0xD) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
         c == 0x205F || c == 0x3000;
}

bool IsAsciiWordByte(unsigned char c) {
  return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}

// Start of the trailing White_Space run of text[begin, end).
size_t TrimEnd(std::string_view text, size_t begin, size_t end) {
  while (end > begin) {
    size_t start = end - 1;
    while (start > begin && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) --start;
    size_t i = start;
    if (!IsWhiteSpace(NextCodePoint(text, &i))) break;
    end = start;
  }
  return end;
}

size_t TrimStart(std::string_view text, size_t begin, size_t end) {
  while (begin < end) {
    size_t i = begin;
    if (!IsWhiteSpace(NextCodePoint(text, &i))) break;
    begin = i;
  }
  return begin;
}

std::string CleanUpTokenization(std::string s) {
  static const std::pair<std::string_view, std::string_view> kRules[] = {
      {" .", "."}, {" ?", "?"}, {" !", "!"}, {" ,", ","}, {" ' ", "'"}, {" n't", "n't"},
      {" 'm", "'m"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}};
  for (const auto& [from, to] : kRules) {
    std::string out;
    size_t pos = 0;
    for (size_t hit; (hit = s.find(from, pos)) != std::string::npos; pos = hit + from.size()) {
      out.append(s, pos, hit - pos).append(to);
    }
    out.append(s, pos);
    s = std::move(out);
  }
  return s;
}

// A token named in tokenizer_config.json: a string or {"content": ...}.
std::string ConfigToken(const json& config, const char* key) {
  auto it = config.find(key);
  if (it == config.end()) return "";
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object()) {
    auto c = it->find("content");
    if (c != it->end() && c->is_string()) return c->get<std::string>();
  }
  return "";
}

}  // namespace

struct Tokenizer::Impl {
  std::optional<Bpe> bpe;
  PreTokenizer pre;
  bool nfc = false;
  std::vector<AddedToken> added;
  absl::flat_hash_map<int32_t, size_t> added_by_id;  // probed for every id decoded
  absl::flat_hash_map<std::string, size_t> added_by_content;
  AddedTokenTrie trie;
  std::vector<int32_t> post_prefix, post_suffix;
  std::vector<bool> special;
  int32_t vocab_size = 0;
  std::optional<int32_t> bos, eos, pad;
  std::string bos_token, eos_token, chat_template, tokenizer_class;
  bool clean_up = true;

  absl::Status ParseNormalizer(const json& n);
  absl::Status ParseDecoder(const json& d) const;
  absl::Status ParsePostProcessor(const json& p, bool& has_template);
  absl::Status EncodeSection(std::string_view section, std::vector<int32_t>& ids) const;
};

absl::Status Tokenizer::Impl::ParseNormalizer(const json& n) {
  if (n.is_null()) return absl::OkStatus();
  if (!n.is_object() || !n.contains("type") || !n["type"].is_string()) {
    return absl::InvalidArgumentError("normalizer: not an object with a \"type\"");
  }
  const std::string type = n["type"].get<std::string>();
  if (type == "NFC") {
    nfc = true;
    return absl::OkStatus();
  }
  if (type == "Sequence") {
    auto list = n.find("normalizers");
    if (list == n.end() || !list->is_array()) {
      return absl::InvalidArgumentError("normalizer Sequence: \"normalizers\" is not an array");
    }
    for (const auto& sub : *list) GRPO_RETURN_IF_ERROR(ParseNormalizer(sub));
    return absl::OkStatus();
  }
  return absl::UnimplementedError("normalizer type '" + type + "'");
}

absl::Status Tokenizer::Impl::ParseDecoder(const json& d) const {
  if (d.is_null()) return absl::OkStatus();
  if (!d.is_object() || !d.contains("type") || !d["type"].is_string()) {
    return absl::InvalidArgumentError("decoder: not an object with a \"type\"");
  }
  const std::string type = d["type"].get<std::string>();
  if (type == "ByteLevel") return absl::OkStatus();
  if (type == "Sequence") {
    auto list = d.find("decoders");
    if (list == d.end() || !list->is_array()) {
      return absl::InvalidArgumentError("decoder Sequence: \"decoders\" is not an array");
    }
    for (const auto& sub : *list) GRPO_RETURN_IF_ERROR(ParseDecoder(sub));
    return absl::OkStatus();
  }
  return absl::UnimplementedError("decoder type '" + type + "'");
}

absl::Status Tokenizer::Impl::ParsePostProcessor(const json& p, bool& has_template) {
  if (p.is_null()) return absl::OkStatus();
  if (!p.is_object() || !p.contains("type") || !p["type"].is_string()) {
    return absl::InvalidArgumentError("post_processor: not an object with a \"type\"");
  }
  const std::string type = p["type"].get<std::string>();
  if (type == "ByteLevel") return absl::OkStatus();
  if (type == "Sequence") {
    auto list = p.find("processors");
    if (list == p.end() || !list->is_array()) {
      return absl::InvalidArgumentError("post_processor Sequence: \"processors\" is not an array");
    }
    for (const auto& sub : *list) GRPO_RETURN_IF_ERROR(ParsePostProcessor(sub, has_template));
    return absl::OkStatus();
  }
  if (type != "TemplateProcessing") return absl::UnimplementedError("post_processor type '" + type + "'");
  has_template = true;
  auto single = p.find("single");
  auto specials = p.find("special_tokens");
  if (single == p.end() || !single->is_array()) {
    return absl::InvalidArgumentError("post_processor TemplateProcessing: \"single\" is not an array");
  }
  bool seen_sequence = false;
  for (const auto& piece : *single) {
    if (piece.is_object() && piece.contains("Sequence")) {
      seen_sequence = true;
      continue;
    }
    if (!piece.is_object() || !piece.contains("SpecialToken") || !piece["SpecialToken"].is_object() ||
        !piece["SpecialToken"].contains("id") || !piece["SpecialToken"]["id"].is_string()) {
      return absl::InvalidArgumentError("post_processor TemplateProcessing: bad piece " + piece.dump());
    }
    const std::string name = piece["SpecialToken"]["id"].get<std::string>();
    if (specials == p.end() || !specials->is_object() || !specials->contains(name) ||
        !(*specials)[name].is_object() || !(*specials)[name].contains("ids") ||
        !(*specials)[name]["ids"].is_array()) {
      return absl::InvalidArgumentError("post_processor TemplateProcessing: special token '" + name +
                                     "' has no ids");
    }
    for (const auto& id : (*specials)[name]["ids"]) {
      if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= (1 << 24)) {
        return absl::InvalidArgumentError("post_processor TemplateProcessing: bad id for '" + name + "'");
      }
      (seen_sequence ? post_suffix : post_prefix).push_back(id.get<int32_t>());
    }
  }
  return absl::OkStatus();
}

absl::Status Tokenizer::Impl::EncodeSection(std::string_view section, std::vector<int32_t>& ids) const {
  std::string normalized_storage;
  std::string_view text = section;
  if (nfc && !IsNfcQuick(section)) {
    normalized_storage = ToNfc(section);
    text = normalized_storage;
  }
  thread_local std::vector<Piece> pieces;
  thread_local std::vector<std::string_view> views;
  thread_local std::deque<std::string> prefixed;  // stable addresses for " " + piece
  GRPO_RETURN_IF_ERROR(pre.Split(text, pieces));
  views.clear();
  prefixed.clear();
  for (const Piece& p : pieces) {
    std::string_view piece = text.substr(p.begin, p.end - p.begin);
    if (p.prefix_space) {
      prefixed.push_back(" " + std::string(piece));
      piece = prefixed.back();
    }
    views.push_back(piece);
  }
  bpe->EncodePieces(views, ids);
  return absl::OkStatus();
}

absl::StatusOr<Tokenizer> Tokenizer::FromJson(std::string_view tokenizer_json, std::string_view config_json) {
  json tj, cj;
  try {
    tj = json::parse(tokenizer_json);
    if (!config_json.empty()) cj = json::parse(config_json);
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(std::string("tokenizer JSON: ") + e.what());
  }
  if (!tj.is_object()) return absl::InvalidArgumentError("tokenizer.json: not an object");
  if (!cj.is_null() && !cj.is_object()) return absl::InvalidArgumentError("tokenizer_config.json: not an object");
  if (cj.is_null()) cj = json::object();
  auto impl = std::make_shared<Impl>();
  try {
    if (!tj.contains("model")) return absl::InvalidArgumentError("tokenizer.json: no \"model\"");
    GRPO_ASSIGN_OR_RETURN(Bpe bpe, Bpe::FromJson(tj["model"]));
    impl->bpe = std::move(bpe);
    GRPO_RETURN_IF_ERROR(grpo::WithContext(impl->ParseNormalizer(tj.value("normalizer", json())), "tokenizer.json"));
    GRPO_ASSIGN_OR_RETURN(impl->pre, PreTokenizer::FromJson(tj.value("pre_tokenizer", json())));
    if (!impl->pre.has_byte_level()) {
      return absl::UnimplementedError("tokenizer.json: no ByteLevel pre-tokenizer (only byte-level BPE is supported)");
    }
    GRPO_RETURN_IF_ERROR(grpo::WithContext(impl->ParseDecoder(tj.value("decoder", json())), "tokenizer.json"));
    bool has_template = false;
    GRPO_RETURN_IF_ERROR(
        grpo::WithContext(impl->ParsePostProcessor(tj.value("post_processor", json()), has_template), "tokenizer.json"));

    impl->vocab_size = impl->bpe->id_limit();
    const json added = tj.value("added_tokens", json::array());
    if (!added.is_array()) return absl::InvalidArgumentError("tokenizer.json: added_tokens is not an array");
    for (const auto& a : added) {
      if (!a.is_object() || !a.contains("id") || !a["id"].is_number_integer() ||
          !a.contains("content") || !a["content"].is_string()) {
        return absl::InvalidArgumentError("tokenizer.json: bad added token " + a.dump().substr(0, 200));
      }
      AddedToken t;
      const int64_t id = a["id"].get<int64_t>();
      if (id < 0 || id >= (1 << 24)) {
        return absl::InvalidArgumentError("tokenizer.json: added token id " + std::to_string(id) + " out of range");
      }
      t.id = static_cast<int32_t>(id);
      t.content = a["content"].get<std::string>();
      if (t.content.empty() || !IsValidUtf8(t.content)) {
        return absl::InvalidArgumentError("tokenizer.json: added token " + std::to_string(id) + " has empty content");
      }
      auto flag = [&](const char* k) { return a.contains(k) && a[k].is_boolean() && a[k].get<bool>(); };
      t.special = flag("special");
      t.lstrip = flag("lstrip");
      t.rstrip = flag("rstrip");
      t.single_word = flag("single_word");
      t.normalized = flag("normalized");
      if (impl->added_by_content.count(t.content)) continue;  // first definition wins
      const size_t index = impl->added.size();
      impl->added_by_id[t.id] = index;
      impl->added_by_content[t.content] = index;
      impl->trie.Insert(t.content, static_cast<int32_t>(index));
      impl->vocab_size = std::max(impl->vocab_size, t.id + 1);
      impl->added.push_back(std::move(t));
    }
    impl->special.assign(impl->vocab_size, false);
    for (const AddedToken& t : impl->added) {
      if (t.special) impl->special[t.id] = true;
    }
    if (auto extra = cj.find("additional_special_tokens"); extra != cj.end() && extra->is_array()) {
      for (const auto& e : *extra) {
        std::string name = e.is_string() ? e.get<std::string>()
                           : (e.is_object() && e.contains("content") && e["content"].is_string())
                               ? e["content"].get<std::string>()
                               : "";
        auto it = impl->added_by_content.find(name);
        if (it != impl->added_by_content.end()) impl->special[impl->added[it->second].id] = true;
      }
    }
    auto lookup = [&](const std::string& name) -> std::optional<int32_t> {
      if (name.empty()) return std::nullopt;
      auto it = impl->added_by_content.find(name);
      if (it != impl->added_by_content.end()) return impl->added[it->second].id;
      return impl->bpe->TokenId(name);
    };
    impl->bos_token = ConfigToken(cj, "bos_token");
    impl->eos_token = ConfigToken(cj, "eos_token");
    impl->bos = lookup(impl->bos_token);
    impl->eos = lookup(impl->eos_token);
    impl->pad = lookup(ConfigToken(cj, "pad_token"));
    impl->tokenizer_class = cj.value("tokenizer_class", std::string());
    if (auto ct = cj.find("chat_template"); ct != cj.end()) {
      if (ct->is_string()) {
        impl->chat_template = ct->get<std::string>();
      } else if (ct->is_array()) {
        for (const auto& entry : *ct) {
          if (entry.is_object() && entry.value("name", std::string()) == "default" &&
              entry.contains("template") && entry["template"].is_string()) {
            impl->chat_template = entry["template"].get<std::string>();
          }
        }
      }
    }
    if (auto c = cj.find("clean_up_tokenization_spaces"); c != cj.end() && c->is_boolean()) {
      impl->clean_up = c->get<bool>();
    }
    // transformers' LlamaTokenizer(Fast) rebuilds its post-processor from add_bos/add_eos_token.
    const bool llama_class = impl->tokenizer_class == "LlamaTokenizerFast" ||
                             impl->tokenizer_class == "LlamaTokenizer";
    if (llama_class) {
      impl->post_prefix.clear();
      impl->post_suffix.clear();
      const bool add_bos = cj.contains("add_bos_token") && cj["add_bos_token"].is_boolean()
                               ? cj["add_bos_token"].get<bool>()
                               : true;
      const bool add_eos = cj.contains("add_eos_token") && cj["add_eos_token"].is_boolean() &&
                           cj["add_eos_token"].get<bool>();
      if (add_bos && impl->bos) impl->post_prefix.push_back(*impl->bos);
      if (add_eos && impl->eos) impl->post_suffix.push_back(*impl->eos);
    }
    for (int32_t id : impl->post_prefix) impl->vocab_size = std::max(impl->vocab_size, id + 1);
    for (int32_t id : impl->post_suffix) impl->vocab_size = std::max(impl->vocab_size, id + 1);
    impl->special.resize(impl->vocab_size, false);
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(std::string("tokenizer JSON: ") + e.what());
  }
  return Tokenizer(std::move(impl));
}

absl::StatusOr<Tokenizer> Tokenizer::Load(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::path json_path = path, config_path;
  if (fs::is_directory(path, ec)) {
    json_path = fs::path(path) / "tokenizer.json";
    config_path = fs::path(path) / "tokenizer_config.json";
  } else {
    config_path = fs::path(path).parent_path() / "tokenizer_config.json";
  }
  GRPO_ASSIGN_OR_RETURN(std::string tokenizer_json, ReadFile(json_path.string()));
  std::string config_json;
  if (fs::exists(config_path, ec)) {
    GRPO_ASSIGN_OR_RETURN(config_json, ReadFile(config_path.string()));
  }
  auto result = FromJson(tokenizer_json, config_json);
  if (!result.ok()) return grpo::WithContext(result.status(), json_path.string());
  return result;
}

absl::StatusOr<std::vector<int32_t>> Tokenizer::Encode(std::string_view text, const EncodeOptions& options) const {
  const Impl& m = *impl_;
  if (const size_t bad = FirstInvalidUtf8(text); bad != text.size()) {
    return absl::InvalidArgumentError("text is not valid UTF-8 at byte " + std::to_string(bad));
  }
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  if (options.add_special_tokens) ids.insert(ids.end(), m.post_prefix.begin(), m.post_prefix.end());
  size_t section_begin = 0;
  size_t pos = 0;
  std::vector<std::pair<size_t, int>> candidates;
  if (options.match_added_tokens && !m.added.empty()) {
    while (pos < text.size()) {
      if (!m.trie.MayStart(static_cast<unsigned char>(text[pos]))) {
        ++pos;
        continue;
      }
      candidates.clear();
      m.trie.MatchesAt(text, pos, candidates);
      int chosen = -1;
      size_t end = 0;
      for (auto it = candidates.rbegin(); it != candidates.rend(); ++it) {  // longest first
        const AddedToken& t = m.added[it->second];
        if (t.single_word &&
            ((pos > 0 && IsAsciiWordByte(text[pos - 1])) ||
             (it->first < text.size() && IsAsciiWordByte(text[it->first])))) {
          continue;
        }
        chosen = it->second;
        end = it->first;
        break;
      }
      if (chosen < 0) {
        ++pos;
        continue;
      }
      const AddedToken& t = m.added[chosen];
      const size_t section_end = t.lstrip ? TrimEnd(text, section_begin, pos) : pos;
      if (section_end > section_begin) {
        GRPO_RETURN_IF_ERROR(m.EncodeSection(text.substr(section_begin, section_end - section_begin), ids));
      }
      ids.push_back(t.id);
      pos = end;
      if (t.rstrip) pos = TrimStart(text, pos, text.size());
      section_begin = pos;
    }
  }
  if (section_begin < text.size()) {
    GRPO_RETURN_IF_ERROR(m.EncodeSection(text.substr(section_begin), ids));
  }
  if (options.add_special_tokens) ids.insert(ids.end(), m.post_suffix.begin(), m.post_suffix.end());
  return ids;
}

const std::string* Tokenizer::IdToBytes(int32_t id) const {
  auto it = impl_->added_by_id.find(id);
  if (it != impl_->added_by_id.end()) return &impl_->added[it->second].content;
  return impl_->bpe->TokenBytes(id);
}

absl::StatusOr<std::string> Tokenizer::Decode(std::span<const int32_t> ids, const DecodeOptions& options) const {
  const Impl& m = *impl_;
  std::string out, pending;
  for (int32_t id : ids) {
    if (options.skip_special_tokens && IsSpecial(id)) continue;
    auto added = m.added_by_id.find(id);
    if (added != m.added_by_id.end()) {
      out += Utf8Lossy(pending);
      pending.clear();
      out += m.added[added->second].content;
      continue;
    }
    const std::string* bytes = m.bpe->TokenBytes(id);
    if (bytes == nullptr) {
      return absl::InvalidArgumentError("token id " + std::to_string(id) + " is not in the vocabulary (size " +
                                     std::to_string(m.vocab_size) + ")");
    }
    pending += *bytes;
  }
  out += Utf8Lossy(pending);
  if (options.clean_up_tokenization_spaces.value_or(m.clean_up)) out = CleanUpTokenization(std::move(out));
  return out;
}

std::optional<int32_t> Tokenizer::TokenToId(std::string_view token) const {
  auto it = impl_->added_by_content.find(std::string(token));
  if (it != impl_->added_by_content.end()) return impl_->added[it->second].id;
  auto bytes = ByteLevelToBytes(token);
  if (!bytes) return std::nullopt;
  return impl_->bpe->TokenId(*bytes);
}

bool Tokenizer::IsSpecial(int32_t id) const {
  return id >= 0 && id < static_cast<int32_t>(impl_->special.size()) && impl_->special[id];
}

int32_t Tokenizer::vocab_size() const { return impl_->vocab_size; }
const std::vector<AddedToken>& Tokenizer::added_tokens() const { return impl_->added; }
std::optional<int32_t> Tokenizer::bos_id() const { return impl_->bos; }
std::optional<int32_t> Tokenizer::eos_id() const { return impl_->eos; }
std::optional<int32_t> Tokenizer::pad_id() const { return impl_->pad; }
const std::string& Tokenizer::bos_token() const { return impl_->bos_token; }
const std::string& Tokenizer::eos_token() const { return impl_->eos_token; }
const std::string& Tokenizer::chat_template() const { return impl_->chat_template; }
const std::string& Tokenizer::tokenizer_class() const { return impl_->tokenizer_class; }

absl::StatusOr<std::string> StreamDecoder::Push(int32_t id) {
  if (skip_special_ && tokenizer_.IsSpecial(id)) return std::string();
  const std::string* bytes = tokenizer_.IdToBytes(id);
  if (bytes == nullptr) {
    return absl::InvalidArgumentError("token id " + std::to_string(id) + " is not in the vocabulary");
  }
  pending_ += *bytes;
  const size_t keep = IncompleteUtf8Suffix(pending_);
  std::string ready = Utf8Lossy(std::string_view(pending_).substr(0, pending_.size() - keep));
  pending_.erase(0, pending_.size() - keep);
  return ready;
}

std::string StreamDecoder::Finish() {
  std::string rest = Utf8Lossy(pending_);
  pending_.clear();
  return rest;
}

}  // namespace grpo::tokenizer

#include "tokenizer/bpe.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <functional>
#include <queue>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/hash/hash.h"
#include "tokenizer/unicode.h"

namespace grpo::tokenizer {
namespace {

struct ByteTables {
  std::array<char32_t, 256> to_unicode{};
  absl::flat_hash_map<char32_t, uint8_t> to_byte;
  ByteTables() {
    int extra = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
      to_unicode[b] = printable ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + extra++);
      to_byte[to_unicode[b]] = static_cast<uint8_t>(b);
    }
  }
};

const ByteTables& Tables() {
  static const ByteTables tables;
  return tables;
}

// Token bytes -> id, looked up by std::string_view without a copy.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return absl::Hash<std::string_view>()(s); }
};

using TokenMap = absl::flat_hash_map<std::string, int32_t, StringHash, std::equal_to<>>;

// The per-thread cache of piece -> ids: open addressing over 64-byte slots that hold short
// pieces and their ids inline (one cache line per lookup); longer ones live in an arena. Emptied
// when full.
class WordCache {
 public:
  WordCache() : slots_(kCapacity * 2) {}
  // The cached ids of `piece`, or nullptr.
  const int32_t* Find(std::string_view piece, uint64_t hash, uint32_t* count) const {
    for (size_t i = hash & (slots_.size() - 1);; i = (i + 1) & (slots_.size() - 1)) {
      const Slot& s = slots_[i];
      if (s.key_len == 0) return nullptr;
      if (s.hash != hash || s.key_len != piece.size()) continue;
      const char* key = piece.size() <= kInlineKey ? s.key : keys_.data() + s.key_off;
      if (!Equal(key, piece)) continue;
      *count = s.n_ids;
      return s.n_ids <= kInlineIds ? s.ids : ids_.data() + s.ids_off;
    }
  }
  void Prefetch(uint64_t hash) const { __builtin_prefetch(&slots_[hash & (slots_.size() - 1)]); }
  void Insert(std::string_view piece, uint64_t hash, const int32_t* ids, size_t n) {
    if (size_ >= kCapacity || n > 0xFFFF) Clear();
    if (n > 0xFFFF) return;
    size_t i = hash & (slots_.size() - 1);
    while (slots_[i].key_len != 0) i = (i + 1) & (slots_.size() - 1);
    Slot& s = slots_[i];
    s.hash = hash;
    s.key_len = static_cast<uint16_t>(piece.size());
    s.n_ids = static_cast<uint16_t>(n);
    if (piece.size() <= kInlineKey) {
      std::memcpy(s.key, piece.data(), piece.size());
    } else {
      s.key_off = static_cast<uint32_t>(keys_.size());
      keys_.append(piece);
    }
    if (n <= kInlineIds) {
      std::memcpy(s.ids, ids, n * sizeof(int32_t));
    } else {
      s.ids_off = static_cast<uint32_t>(ids_.size());
      ids_.insert(ids_.end(), ids, ids + n);
    }
    ++size_;
  }

 private:
  static constexpr size_t kCapacity = 1 << 16;
  static constexpr size_t kInlineKey = 20;
  static constexpr size_t kInlineIds = 8;
  struct alignas(64) Slot {
    uint64_t hash = 0;
    uint16_t key_len = 0;  // 0: empty (empty pieces are never cached)
    uint16_t n_ids = 0;
    union {
      char key[kInlineKey];
      uint32_t key_off;
    };
    union {
      int32_t ids[kInlineIds];
      uint32_t ids_off;
    };
  };
  static_assert(sizeof(Slot) == 64);
  static bool Equal(const char* a, std::string_view b) {
    for (size_t k = 0; k < b.size(); ++k) {
      if (a[k] != b[k]) return false;
    }
    return true;
  }
  void Clear() {
    std::fill(slots_.begin(), slots_.end(), Slot{});
    keys_.clear();
    ids_.clear();
    size_ = 0;
  }
  std::vector<Slot> slots_;
  std::string keys_;
  std::vector<int32_t> ids_;
  size_t size_ = 0;
};

// FNV-1a over 8-byte words, then a final mix: fast for the short pieces of typical text.
uint64_t HashPiece(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ull ^ s.size();
  size_t i = 0;
  for (; i + 8 <= s.size(); i += 8) {
    uint64_t w;
    std::memcpy(&w, s.data() + i, 8);
    h = (h ^ w) * 0x100000001b3ull;
    h ^= h >> 29;
  }
  uint64_t tail = 0;
  std::memcpy(&tail, s.data() + i, s.size() - i);
  h = (h ^ tail) * 0x100000001b3ull;
  h ^= h >> 32;
  h *= 0xd6e8feb86659fd93ull;
  h ^= h >> 32;
  return h;
}

constexpr int32_t kMaxIdLimit = 1 << 24;
constexpr size_t kMaxCachedPieceBytes = 256;

struct Merge {
  int32_t rank;
  int32_t id;
};

uint64_t PairKey(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

std::atomic<uint64_t> next_uid{1};

}  // namespace

char32_t ByteToUnicode(uint8_t byte) { return Tables().to_unicode[byte]; }

int UnicodeToByte(char32_t cp) {
  const auto& m = Tables().to_byte;
  auto it = m.find(cp);
  return it == m.end() ? -1 : it->second;
}

std::optional<std::string> ByteLevelToBytes(std::string_view token) {
  if (!IsValidUtf8(token)) return std::nullopt;
  std::string out;
  out.reserve(token.size());
  for (size_t i = 0; i < token.size();) {
    const int b = UnicodeToByte(NextCodePoint(token, &i));
    if (b < 0) return std::nullopt;
    out.push_back(static_cast<char>(b));
  }
  return out;
}

std::string BytesToByteLevel(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char b : bytes) AppendUtf8(ByteToUnicode(b), &out);
  return out;
}

struct Bpe::Impl {
  uint64_t uid = next_uid.fetch_add(1);
  TokenMap token_to_id;
  std::vector<std::string> id_to_bytes;
  std::vector<bool> id_present;
  std::array<int32_t, 256> byte_id{};
  absl::flat_hash_map<uint64_t, Merge> merges;  // PairKey(left, right); probed for every pair
  std::optional<int32_t> unk;
  bool ignore_merges = false;

  const Merge* FindMerge(int32_t a, int32_t b) const {
    auto it = merges.find(PairKey(a, b));
    return it == merges.end() ? nullptr : &it->second;
  }
  void MergeSymbols(std::vector<int32_t>& ids) const;
  void EncodeUncached(std::string_view piece, std::vector<int32_t>& out) const;
};

void Bpe::Impl::MergeSymbols(std::vector<int32_t>& ids) const {
  const int n = static_cast<int>(ids.size());
  if (n < 2) return;
  std::vector<int32_t> prev(n), next(n);
  std::vector<bool> alive(n, true);
  for (int i = 0; i < n; ++i) {
    prev[i] = i - 1;
    next[i] = i + 1 < n ? i + 1 : -1;
  }
  using Entry = std::pair<int32_t, int32_t>;  // (rank, position of the left symbol)
  std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> heap;
  for (int i = 0; i + 1 < n; ++i) {
    if (const Merge* m = FindMerge(ids[i], ids[i + 1])) heap.emplace(m->rank, i);
  }
  while (!heap.empty()) {
    const auto [rank, i] = heap.top();
    heap.pop();
    if (!alive[i] || next[i] < 0) continue;
    const int j = next[i];
    const Merge* m = FindMerge(ids[i], ids[j]);
    if (m == nullptr || m->rank != rank) continue;  // stale entry
    ids[i] = m->id;
    alive[j] = false;
    next[i] = next[j];
    if (next[j] >= 0) prev[next[j]] = i;
    if (prev[i] >= 0) {
      if (const Merge* l = FindMerge(ids[prev[i]], ids[i])) heap.emplace(l->rank, prev[i]);
    }
    if (next[i] >= 0) {
      if (const Merge* r = FindMerge(ids[i], ids[next[i]])) heap.emplace(r->rank, i);
    }
  }
  int w = 0;
  for (int i = 0; i >= 0; i = next[i]) ids[w++] = ids[i];
  ids.resize(w);
}

void Bpe::Impl::EncodeUncached(std::string_view piece, std::vector<int32_t>& out) const {
  if (ignore_merges) {
    auto it = token_to_id.find(piece);
    if (it != token_to_id.end()) {
      out.push_back(it->second);
      return;
    }
  }
  std::vector<int32_t> ids;
  ids.reserve(piece.size());
  for (unsigned char b : piece) {
    if (byte_id[b] >= 0) {
      ids.push_back(byte_id[b]);
    } else if (unk) {
      ids.push_back(*unk);
    }
  }
  MergeSymbols(ids);
  out.insert(out.end(), ids.begin(), ids.end());
}

namespace {

// The calling thread's cache for the model `uid`.
WordCache& ThreadCache(uint64_t uid) {
  thread_local absl::flat_hash_map<uint64_t, std::unique_ptr<WordCache>> caches;
  thread_local uint64_t last_uid = 0;
  thread_local WordCache* last_cache = nullptr;
  if (last_uid != uid) {
    if (caches.size() > 8) caches.clear();
    auto& slot = caches[uid];
    if (!slot) slot = std::make_unique<WordCache>();
    last_cache = slot.get();
    last_uid = uid;
  }
  return *last_cache;
}

}  // namespace

void Bpe::EncodePiece(std::string_view piece, std::vector<int32_t>& ids) const {
  EncodePieces(std::span<const std::string_view>(&piece, 1), ids);
}

void Bpe::EncodePieces(std::span<const std::string_view> pieces, std::vector<int32_t>& ids) const {
  WordCache& cache = ThreadCache(impl_->uid);
  thread_local std::vector<uint64_t> hashes;
  hashes.resize(pieces.size());
  for (size_t i = 0; i < pieces.size(); ++i) hashes[i] = HashPiece(pieces[i]);
  // Look-ups miss the CPU caches often: prefetch the slots of the pieces a few steps ahead.
  constexpr size_t kAhead = 8;
  for (size_t i = 0; i < std::min(kAhead, pieces.size()); ++i) cache.Prefetch(hashes[i]);
  for (size_t i = 0; i < pieces.size(); ++i) {
    if (i + kAhead < pieces.size()) cache.Prefetch(hashes[i + kAhead]);
    const std::string_view piece = pieces[i];
    if (piece.empty()) continue;
    if (piece.size() > kMaxCachedPieceBytes) {
      impl_->EncodeUncached(piece, ids);
      continue;
    }
    uint32_t count = 0;
    if (const int32_t* cached = cache.Find(piece, hashes[i], &count)) {
      for (uint32_t k = 0; k < count; ++k) ids.push_back(cached[k]);
      continue;
    }
    const size_t before = ids.size();
    impl_->EncodeUncached(piece, ids);
    cache.Insert(piece, hashes[i], ids.data() + before, ids.size() - before);
  }
}

std::optional<int32_t> Bpe::TokenId(std::string_view bytes) const {
  auto it = impl_->token_to_id.find(bytes);
  if (it == impl_->token_to_id.end()) return std::nullopt;
  return it->second;
}

const std::string* Bpe::TokenBytes(int32_t id) const {
  if (id < 0 || id >= static_cast<int32_t>(impl_->id_to_bytes.size()) || !impl_->id_present[id]) {
    return nullptr;
  }
  return &impl_->id_to_bytes[id];
}

int32_t Bpe::id_limit() const { return static_cast<int32_t>(impl_->id_to_bytes.size()); }
size_t Bpe::num_merges() const { return impl_->merges.size(); }

absl::StatusOr<Bpe> Bpe::FromJson(const nlohmann::json& model) {
  if (!model.is_object()) return absl::InvalidArgumentError("model: not an object");
  const std::string type = model.value("type", std::string("BPE"));
  if (type != "BPE") return absl::UnimplementedError("model type '" + type + "' (only BPE is supported)");
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    auto it = model.find(key);
    if (it != model.end() && !it->is_null() && !(it->is_string() && it->get<std::string>().empty())) {
      return absl::UnimplementedError(std::string("model.") + key + " (not used by byte-level BPE)");
    }
  }
  if (auto it = model.find("byte_fallback"); it != model.end() && it->is_boolean() && it->get<bool>()) {
    return absl::UnimplementedError("model.byte_fallback (SentencePiece-style BPE)");
  }
  if (auto it = model.find("dropout"); it != model.end() && !it->is_null()) {
    if (!it->is_number() || it->get<double>() != 0.0) {
      return absl::UnimplementedError("model.dropout (BPE dropout is for training tokenizers)");
    }
  }
  auto impl = std::make_shared<Impl>();
  if (auto it = model.find("ignore_merges"); it != model.end() && it->is_boolean()) {
    impl->ignore_merges = it->get<bool>();
  }
  auto vocab = model.find("vocab");
  if (vocab == model.end() || !vocab->is_object()) {
    return absl::InvalidArgumentError("model.vocab: missing or not an object");
  }
  int32_t limit = 0;
  std::vector<std::pair<std::string, int32_t>> entries;
  entries.reserve(vocab->size());
  for (auto it = vocab->begin(); it != vocab->end(); ++it) {
    if (!it.value().is_number_integer()) {
      return absl::InvalidArgumentError("model.vocab['" + it.key() + "']: id is not an integer");
    }
    const int64_t id = it.value().get<int64_t>();
    if (id < 0 || id >= kMaxIdLimit) {
      return absl::InvalidArgumentError("model.vocab['" + it.key() + "']: id " + std::to_string(id) +
                                     " outside [0, " + std::to_string(kMaxIdLimit) + ")");
    }
    // Tokens outside the byte-level alphabet (unusual) keep their UTF-8 bytes.
    std::optional<std::string> bytes = ByteLevelToBytes(it.key());
    entries.emplace_back(bytes ? std::move(*bytes) : it.key(), static_cast<int32_t>(id));
    limit = std::max(limit, static_cast<int32_t>(id + 1));
  }
  impl->id_to_bytes.resize(limit);
  impl->id_present.assign(limit, false);
  impl->token_to_id.reserve(entries.size());
  for (auto& [bytes, id] : entries) {
    impl->id_to_bytes[id] = bytes;
    impl->id_present[id] = true;
    impl->token_to_id.emplace(std::move(bytes), id);
  }
  for (int b = 0; b < 256; ++b) {
    auto it = impl->token_to_id.find(std::string(1, static_cast<char>(b)));
    impl->byte_id[b] = it == impl->token_to_id.end() ? -1 : it->second;
  }
  if (auto it = model.find("unk_token"); it != model.end() && it->is_string()) {
    auto bytes = ByteLevelToBytes(it->get<std::string>());
    auto found = impl->token_to_id.find(bytes ? *bytes : it->get<std::string>());
    if (found != impl->token_to_id.end()) impl->unk = found->second;
  }
  auto merges = model.find("merges");
  if (merges == model.end() || !merges->is_array()) {
    return absl::InvalidArgumentError("model.merges: missing or not an array");
  }
  impl->merges.reserve(merges->size());
  // Merge parts are looked up by their text in the file (no byte conversion per lookup).
  absl::flat_hash_map<std::string_view, int32_t> by_text;
  by_text.reserve(vocab->size());
  for (auto it = vocab->begin(); it != vocab->end(); ++it) {
    by_text.emplace(std::string_view(it.key()), static_cast<int32_t>(it.value().get<int64_t>()));
  }
  std::string joined;
  int32_t rank = 0;
  for (const auto& m : *merges) {
    std::string_view a, b;
    if (m.is_string()) {
      const std::string& s = m.get_ref<const std::string&>();
      const size_t space = s.find(' ');
      if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos) {
        return absl::InvalidArgumentError("model.merges[" + std::to_string(rank) + "]: '" + s +
                                       "' is not two tokens separated by a space");
      }
      a = std::string_view(s).substr(0, space);
      b = std::string_view(s).substr(space + 1);
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      a = m[0].get_ref<const std::string&>();
      b = m[1].get_ref<const std::string&>();
    } else {
      return absl::InvalidArgumentError("model.merges[" + std::to_string(rank) + "]: neither \"a b\" nor [\"a\", \"b\"]");
    }
    joined.assign(a).append(b);
    auto ia = by_text.find(a), ib = by_text.find(b), im = by_text.find(joined);
    if (ia == by_text.end() || ib == by_text.end() || im == by_text.end()) {
      const std::string missing(ia == by_text.end() ? a : ib == by_text.end() ? b : std::string_view(joined));
      return absl::InvalidArgumentError("model.merges[" + std::to_string(rank) + "]: '" + missing +
                                     "' is not in the vocabulary");
    }
    // A repeated pair takes its last rank, as in HF tokenizers and transformers.js.
    impl->merges.insert_or_assign(PairKey(ia->second, ib->second), Merge{rank, im->second});
    ++rank;
  }
  return Bpe(std::move(impl));
}

}  // namespace grpo::tokenizer

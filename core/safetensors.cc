#include "core/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <unordered_set>

#include "core/file.h"
#include "core/utf8.h"

namespace grpo {
namespace {

using json = nlohmann::json;

absl::Status Corrupt(const std::string& file, const std::string& what) {
  return absl::DataLossError(file + ": " + what);
}

std::string Quote(std::string_view s) {
  // Names in messages are quoted and cut short; they come from untrusted files.
  constexpr size_t kMax = 200;
  std::string out = "'";
  out.append(s.substr(0, kMax));
  if (s.size() > kMax) out += "...";
  out += "'";
  return out;
}

std::string Range(uint64_t begin, uint64_t end) {
  return "[" + std::to_string(begin) + ", " + std::to_string(end) + ")";
}

// A short description of a JSON value for error messages (never a full dump of a big value).
std::string Describe(const json& v) {
  if (v.is_primitive()) {
    std::string s = v.dump(-1, ' ', false, json::error_handler_t::replace);
    if (s.size() > 64) s = s.substr(0, 64) + "...";
    return s;
  }
  return std::string("an ") + v.type_name();
}

// A valid header nests 3 levels deep (object, entry, shape). Deeper input is refused before
// parsing: deeply nested JSON costs the DOM (and our duplicate tracking) far more memory per byte.
constexpr int kMaxJsonDepth = 64;

// The deepest nesting of arrays and objects in `text`, scanning no further than `limit + 1`.
int JsonDepth(std::string_view text, int limit) {
  int depth = 0, max_depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      max_depth = std::max(max_depth, ++depth);
      if (max_depth > limit) break;
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
  return max_depth;
}

// Parses JSON text, rejecting duplicate keys in any object (nlohmann would keep the last one).
// `what` prefixes error messages.
absl::StatusOr<json> ParseJsonNoDuplicates(std::string_view text, const std::string& what) {
  if (JsonDepth(text, kMaxJsonDepth) > kMaxJsonDepth) {
    return absl::DataLossError(what + " nests arrays and objects deeper than " +
                              std::to_string(kMaxJsonDepth) + " levels");
  }
  struct Tracker {
    std::vector<std::unordered_set<std::string>> open;  // keys seen, per open object
    std::string top_key;                                // last key of the outermost object
    bool duplicate = false;
    std::string dup_key;
    std::string dup_parent;  // enclosing top-level key, when nested
    size_t dup_depth = 0;
  } t;
  json::parser_callback_t cb = [&t](int /*depth*/, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
        t.open.emplace_back();
        break;
      case json::parse_event_t::object_end:
        if (!t.open.empty()) t.open.pop_back();
        break;
      case json::parse_event_t::key: {
        if (t.open.empty() || !parsed.is_string()) break;
        const std::string& k = parsed.get_ref<const std::string&>();
        if (!t.open.back().insert(k).second && !t.duplicate) {
          t.duplicate = true;
          t.dup_key = k;
          t.dup_depth = t.open.size();
          t.dup_parent = t.top_key;
        }
        if (t.open.size() == 1) t.top_key = k;
        break;
      }
      default:
        break;
    }
    return true;
  };
  json value;
  try {
    value = json::parse(text.begin(), text.end(), cb, /*allow_exceptions=*/true,
                        /*ignore_comments=*/false);
  } catch (const json::exception& e) {
    return absl::DataLossError(what + " is not valid JSON: " + e.what());
  } catch (const std::exception& e) {  // bad_alloc and friends: never let them escape
    return absl::DataLossError(what + " could not be parsed: " + e.what());
  }
  if (t.duplicate) {
    if (t.dup_depth == 1) {
      return absl::DataLossError(what + " has the key " + Quote(t.dup_key) +
                                " twice (duplicate keys are ambiguous)");
    }
    return absl::DataLossError(what + " has the key " + Quote(t.dup_key) +
                              " twice inside the entry " + Quote(t.dup_parent) +
                              " (duplicate keys are ambiguous)");
  }
  return value;
}

// A JSON number that is a non-negative integer, as u64; false otherwise (floats, negatives, ...).
bool AsU64(const json& v, uint64_t* out) {
  if (v.is_number_unsigned()) {
    *out = v.get<uint64_t>();
    return true;
  }
  if (v.is_number_integer()) {
    const int64_t x = v.get<int64_t>();
    if (x < 0) return false;
    *out = static_cast<uint64_t>(x);
    return true;
  }
  return false;
}

struct Entry {
  std::string name;
  SafetensorsTensorInfo info;
};

absl::Status ParseEntry(const std::string& file, const std::string& name, const json& v,
                  SafetensorsTensorInfo* info) {
  const std::string where = "tensor " + Quote(name);
  if (!v.is_object()) {
    return Corrupt(file, where + ": header entry is " + Describe(v) + ", not an object");
  }
  const auto dtype_it = v.find("dtype");
  const auto shape_it = v.find("shape");
  const auto offsets_it = v.find("data_offsets");
  if (dtype_it == v.end()) return Corrupt(file, where + ": header entry has no \"dtype\"");
  if (shape_it == v.end()) return Corrupt(file, where + ": header entry has no \"shape\"");
  if (offsets_it == v.end()) return Corrupt(file, where + ": header entry has no \"data_offsets\"");

  if (!dtype_it->is_string()) {
    return Corrupt(file, where + ": \"dtype\" is " + Describe(*dtype_it) + ", not a string");
  }
  const std::string& dtype_name = dtype_it->get_ref<const std::string&>();
  absl::StatusOr<DType> dtype = ParseDType(dtype_name);
  if (!dtype.ok()) return Corrupt(file, where + ": unknown dtype " + Quote(dtype_name));
  info->dtype = *dtype;

  if (!shape_it->is_array()) {
    return Corrupt(file, where + ": \"shape\" is " + Describe(*shape_it) + ", not an array");
  }
  info->shape.clear();
  info->shape.reserve(shape_it->size());
  // Elements and bytes, checked for overflow step by step as the reference does (a zero dim after
  // an overflowing prefix is still an overflow).
  uint64_t numel = 1;
  for (size_t i = 0; i < shape_it->size(); ++i) {
    const json& d = (*shape_it)[i];
    uint64_t dim;
    if (!AsU64(d, &dim)) {
      return Corrupt(file, where + ": shape[" + std::to_string(i) + "] is " + Describe(d) +
                               ", not a non-negative integer");
    }
    if (dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
        __builtin_mul_overflow(numel, dim, &numel) ||
        numel > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return Corrupt(file, where + ": shape overflows: the product of its first " +
                               std::to_string(i + 1) + " dims does not fit in 63 bits");
    }
    info->shape.push_back(static_cast<int64_t>(dim));
  }
  uint64_t nbytes;
  if (__builtin_mul_overflow(numel, static_cast<uint64_t>(DTypeSize(info->dtype)), &nbytes)) {
    return Corrupt(file, where + ": shape " + ShapeToString(info->shape) + " of " + dtype_name +
                             " overflows 64 bits of bytes");
  }

  if (!offsets_it->is_array() || offsets_it->size() != 2) {
    return Corrupt(file, where + ": \"data_offsets\" is " + Describe(*offsets_it) +
                             (offsets_it->is_array()
                                  ? " of " + std::to_string(offsets_it->size()) + " elements"
                                  : std::string()) +
                             ", not [begin, end]");
  }
  for (int i = 0; i < 2; ++i) {
    const json& o = (*offsets_it)[i];
    if (!AsU64(o, i == 0 ? &info->begin : &info->end)) {
      return Corrupt(file, where + ": data_offsets[" + std::to_string(i) + "] is " + Describe(o) +
                               ", not a non-negative integer");
    }
  }
  if (info->begin > info->end) {
    return Corrupt(
        file, where + ": data_offsets " + Range(info->begin, info->end) + " begin after they end");
  }
  if (info->end - info->begin != nbytes) {
    return Corrupt(file, where + ": " + dtype_name + " " + ShapeToString(info->shape) + " needs " +
                             std::to_string(nbytes) + " bytes but data_offsets " +
                             Range(info->begin, info->end) + " hold " +
                             std::to_string(info->end - info->begin));
  }
  return absl::OkStatus();
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// SafetensorsFile

absl::StatusOr<SafetensorsFile> SafetensorsFile::Validate(std::shared_ptr<const void> owner,
                                                  const uint8_t* base, size_t size,
                                                  std::string display_name) {
  const std::string& file = display_name;
  if (size < 8) {
    return Corrupt(
        file, "file is " + std::to_string(size) + " bytes, shorter than the 8-byte header length");
  }
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | base[i];
  if (n > kSafetensorsMaxHeaderBytes) {
    return Corrupt(file, "header length " + std::to_string(n) + " exceeds the limit of " +
                             std::to_string(kSafetensorsMaxHeaderBytes) + " bytes");
  }
  if (n > size - 8) {
    return Corrupt(file, "header length " + std::to_string(n) + " is larger than the file (" +
                             std::to_string(size) + " bytes, so at most " +
                             std::to_string(size - 8) + " for the header)");
  }
  const std::string_view header(reinterpret_cast<const char*>(base) + 8, n);
  if (header.empty() || header[0] != '{') {
    char buf[64];
    if (header.empty()) {
      std::snprintf(buf, sizeof buf, "is empty");
    } else {
      std::snprintf(buf, sizeof buf, "starts with byte 0x%02x",
                    static_cast<unsigned>(static_cast<unsigned char>(header[0])));
    }
    return Corrupt(file, std::string("header does not start with '{' (it ") + buf + ")");
  }
  if (const size_t bad = FirstInvalidUtf8(header); bad != header.size()) {
    return Corrupt(
        file, "header is not valid UTF-8 (bad byte at header offset " + std::to_string(bad) + ")");
  }
  absl::StatusOr<json> parsed = ParseJsonNoDuplicates(header, file + ": header");
  if (!parsed.ok()) return parsed.status();
  const json& root = *parsed;
  if (!root.is_object()) {
    return Corrupt(file, std::string("header is a JSON ") + root.type_name() + ", not an object");
  }

  const uint64_t buffer_size = size - 8 - n;
  SafetensorsFile out;
  std::vector<Entry> entries;
  entries.reserve(root.size());
  for (auto it = root.begin(); it != root.end(); ++it) {
    const std::string& name = it.key();
    const json& v = it.value();
    if (name == "__metadata__") {
      if (v.is_null()) continue;
      if (!v.is_object()) {
        return Corrupt(file, "__metadata__ is " + Describe(v) + ", not an object of strings");
      }
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string()) {
          return Corrupt(file, "__metadata__ value of " + Quote(m.key()) + " is " +
                                   Describe(m.value()) + ", not a string");
        }
        out.metadata_.emplace(m.key(), m.value().get<std::string>());
      }
      continue;
    }
    Entry e;
    e.name = name;
    GRPO_RETURN_IF_ERROR(ParseEntry(file, name, v, &e.info));
    if (e.info.end > buffer_size) {
      return Corrupt(file, "tensor " + Quote(name) + " ends at byte " + std::to_string(e.info.end) +
                               " of the data buffer but the buffer has " +
                               std::to_string(buffer_size) + " bytes (truncated file?)");
    }
    entries.push_back(std::move(e));
  }

  // Layout: sorted by offsets the tensors must tile [0, buffer_size) exactly.
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    if (a.info.begin != b.info.begin) return a.info.begin < b.info.begin;
    if (a.info.end != b.info.end) return a.info.end < b.info.end;
    return a.name < b.name;
  });
  uint64_t covered = 0;
  const Entry* prev = nullptr;
  for (const Entry& e : entries) {
    if (e.info.begin < covered) {
      return Corrupt(file, "tensors " + Quote(prev->name) + " " +
                               Range(prev->info.begin, prev->info.end) + " and " + Quote(e.name) +
                               " " + Range(e.info.begin, e.info.end) + " overlap");
    }
    if (e.info.begin > covered) {
      return Corrupt(file, "bytes " + Range(covered, e.info.begin) +
                               " of the data buffer belong to no tensor (a hole " +
                               (prev ? "between " + Quote(prev->name) + " and " : "before ") +
                               Quote(e.name) +
                               "); like the reference implementation we require the tensors to "
                               "cover the buffer contiguously");
    }
    covered = e.info.end;
    prev = &e;
  }
  if (covered != buffer_size) {
    return Corrupt(file, "the data buffer has " + std::to_string(buffer_size) +
                             " bytes but the tensors cover only the first " +
                             std::to_string(covered) +
                             "; like the reference implementation we require the tensors to "
                             "cover the buffer contiguously, with no trailing bytes");
  }

  for (Entry& e : entries) out.entries_.emplace(std::move(e.name), std::move(e.info));
  out.display_name_ = std::move(display_name);
  out.owner_ = std::move(owner);
  out.base_ = base;
  out.size_ = size;
  out.buffer_offset_ = 8 + n;
  return out;
}

absl::StatusOr<SafetensorsFile> SafetensorsFile::FromBytes(std::string bytes, std::string display_name) {
  auto holder = std::make_shared<const std::string>(std::move(bytes));
  const auto* base = reinterpret_cast<const uint8_t*>(holder->data());
  const size_t size = holder->size();
  std::shared_ptr<const void> owner(holder, holder->data());
  return Validate(std::move(owner), base, size, std::move(display_name));
}

absl::StatusOr<SafetensorsFile> SafetensorsFile::Open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    if (err == ENOENT) return absl::NotFoundError(path + ": no such file");
    return grpo::ErrnoError(path + ": open", err);
  }
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return grpo::ErrnoError(path + ": fstat", err);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return absl::InvalidArgumentError(path + ": not a regular file");
  }
  const size_t size = static_cast<size_t>(st.st_size);
  if (size < 8) {
    ::close(fd);
    return Corrupt(
        path, "file is " + std::to_string(size) + " bytes, shorter than the 8-byte header length");
  }
  void* addr = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  const int err = errno;
  ::close(fd);  // the mapping stays valid
  if (addr == MAP_FAILED) return grpo::ErrnoError(path + ": mmap", err);
  std::shared_ptr<const void> owner(
      addr, [size](const void* p) { ::munmap(const_cast<void*>(p), size); });
  return Validate(std::move(owner), static_cast<const uint8_t*>(addr), size, path);
}

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> out;
  out.reserve(entries_.size());
  for (const auto& [name, info] : entries_) out.push_back(name);
  return out;
}

bool SafetensorsFile::Contains(std::string_view name) const {
  return entries_.find(name) != entries_.end();
}

absl::StatusOr<SafetensorsTensorInfo> SafetensorsFile::Info(std::string_view name) const {
  const auto it = entries_.find(name);
  if (it == entries_.end()) {
    return absl::NotFoundError(display_name_ + ": no tensor " + Quote(name));
  }
  return it->second;
}

absl::StatusOr<Tensor> SafetensorsFile::Get(std::string_view name) const {
  const auto it = entries_.find(name);
  if (it == entries_.end()) {
    return absl::NotFoundError(display_name_ + ": no tensor " + Quote(name));
  }
  const SafetensorsTensorInfo& info = it->second;
  return Tensor::View(info.dtype, info.shape, base_ + buffer_offset_ + info.begin, owner_);
}

// ---------------------------------------------------------------------------------------------
// SafetensorsDir

namespace {

std::string JoinPath(const std::string& dir, const std::string& name) {
  if (dir.empty()) return name;
  if (dir.back() == '/') return dir + name;
  return dir + "/" + name;
}

bool FileExists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

}  // namespace

absl::StatusOr<SafetensorsDir> SafetensorsDir::Open(const std::string& dir) {
  SafetensorsDir out;
  out.dir_ = dir;
  const std::string index_path = JoinPath(dir, kSafetensorsIndexFile);
  if (!FileExists(index_path)) {
    const std::string single = JoinPath(dir, kSafetensorsSingleFile);
    if (!FileExists(single)) {
      return absl::NotFoundError(dir + ": has neither " + kSafetensorsIndexFile + " nor " +
                              kSafetensorsSingleFile);
    }
    GRPO_ASSIGN_OR_RETURN(SafetensorsFile f, SafetensorsFile::Open(single));
    for (const std::string& name : f.names()) out.where_.emplace(name, 0);
    out.shards_.push_back(std::move(f));
    return out;
  }

  out.sharded_ = true;
  GRPO_ASSIGN_OR_RETURN(std::string text, ReadFile(index_path));
  if (const size_t bad = FirstInvalidUtf8(text); bad != text.size()) {
    return Corrupt(index_path, "not valid UTF-8 (bad byte at offset " + std::to_string(bad) + ")");
  }
  GRPO_ASSIGN_OR_RETURN(json index, ParseJsonNoDuplicates(text, index_path));
  if (!index.is_object()) {
    return Corrupt(index_path, std::string("is a JSON ") + index.type_name() + ", not an object");
  }
  const auto wm = index.find("weight_map");
  if (wm == index.end()) return Corrupt(index_path, "has no \"weight_map\"");
  if (!wm->is_object()) {
    return Corrupt(index_path, "\"weight_map\" is " + Describe(*wm) + ", not an object");
  }

  // Shard file name -> tensors the index places there.
  std::map<std::string, std::vector<std::string>> by_shard;
  for (auto it = wm->begin(); it != wm->end(); ++it) {
    if (!it.value().is_string()) {
      return Corrupt(index_path, "weight_map value of " + Quote(it.key()) + " is " +
                                     Describe(it.value()) + ", not a file name");
    }
    const std::string& shard = it.value().get_ref<const std::string&>();
    if (shard.empty() || shard == "." || shard == ".." || shard.find('/') != std::string::npos ||
        shard.find('\0') != std::string::npos) {
      return Corrupt(index_path, "weight_map places " + Quote(it.key()) + " in " + Quote(shard) +
                                     ", which is not a plain file name in the directory");
    }
    by_shard[shard].push_back(it.key());
  }

  for (const auto& [shard, mapped] : by_shard) {
    const std::string shard_path = JoinPath(dir, shard);
    absl::StatusOr<SafetensorsFile> f = SafetensorsFile::Open(shard_path);
    if (!f.ok()) {
      return grpo::WithContext(f.status(), index_path + ": shard " + Quote(shard) + " of " +
                                    Quote(mapped.front()));
    }
    for (const std::string& name : mapped) {
      if (!f->Contains(name)) {
        return Corrupt(index_path, "weight_map places tensor " + Quote(name) + " in shard " +
                                       Quote(shard) + ", which does not contain it");
      }
    }
    const size_t idx = out.shards_.size();
    for (const std::string& name : f->names()) {
      const auto [it, inserted] = out.where_.emplace(name, idx);
      if (!inserted) {
        return Corrupt(dir, "tensor " + Quote(name) + " appears in two shards, " +
                                Quote(out.shards_[it->second].display_name()) + " and " +
                                Quote(shard_path));
      }
    }
    out.shards_.push_back(std::move(*f));
  }
  return out;
}

std::vector<std::string> SafetensorsDir::names() const {
  std::vector<std::string> out;
  out.reserve(where_.size());
  for (const auto& [name, idx] : where_) out.push_back(name);
  return out;
}

bool SafetensorsDir::Contains(std::string_view name) const {
  return where_.find(name) != where_.end();
}

const SafetensorsFile* SafetensorsDir::ShardOf(std::string_view name) const {
  const auto it = where_.find(name);
  return it == where_.end() ? nullptr : &shards_[it->second];
}

absl::StatusOr<Tensor> SafetensorsDir::Get(std::string_view name) const {
  const SafetensorsFile* f = ShardOf(name);
  if (f == nullptr) return absl::NotFoundError(dir_ + ": no tensor " + Quote(name));
  return f->Get(name);
}

absl::StatusOr<SafetensorsTensorInfo> SafetensorsDir::Info(std::string_view name) const {
  const SafetensorsFile* f = ShardOf(name);
  if (f == nullptr) return absl::NotFoundError(dir_ + ": no tensor " + Quote(name));
  return f->Info(name);
}

// ---------------------------------------------------------------------------------------------
// Writing

namespace {

// The reference orders dtypes by alignment (its enum order) and lays tensors out by that order
// descending, then by name.
int DTypeRank(DType d) {
  switch (d) {
    case DType::kBool:
      return 0;
    case DType::kU8:
      return 1;
    case DType::kI8:
      return 2;
    case DType::kF8E5M2:
      return 3;
    case DType::kF8E4M3:
      return 4;
    case DType::kI16:
      return 5;
    case DType::kU16:
      return 6;
    case DType::kF16:
      return 7;
    case DType::kBF16:
      return 8;
    case DType::kI32:
      return 9;
    case DType::kU32:
      return 10;
    case DType::kF32:
      return 11;
    case DType::kF64:
      return 12;
    case DType::kI64:
      return 13;
    case DType::kU64:
      return 14;
  }
  return 0;
}

// A JSON string literal for `s` (which must be valid UTF-8), escaped like serde_json does.
std::string JsonString(const std::string& s) {
  return json(s).dump(-1, ' ', /*ensure_ascii=*/false, json::error_handler_t::strict);
}

struct Plan {
  std::string prefix;                // 8-byte length + padded header
  std::vector<const Tensor*> order;  // tensors in buffer order
  uint64_t data_bytes = 0;
};

absl::Status CheckTensors(const NamedTensors& tensors) {
  std::unordered_set<std::string_view> seen;
  for (const auto& [name, t] : tensors) {
    if (name == "__metadata__") {
      return absl::InvalidArgumentError("tensor name \"__metadata__\" is reserved by safetensors");
    }
    if (!IsValidUtf8(name)) {
      return absl::InvalidArgumentError("tensor name " + Quote(name) + " is not valid UTF-8");
    }
    if (!seen.insert(name).second) {
      return absl::InvalidArgumentError("tensor name " + Quote(name) + " appears twice");
    }
    if (!t.defined()) {
      return absl::InvalidArgumentError("tensor " + Quote(name) + " has no data");
    }
    for (int64_t d : t.shape()) {
      if (d < 0) {
        return absl::InvalidArgumentError("tensor " + Quote(name) + " has negative shape " +
                                       ShapeToString(t.shape()));
      }
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<Plan> MakePlan(const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata) {
  GRPO_RETURN_IF_ERROR(CheckTensors(tensors));
  for (const auto& [k, v] : metadata) {
    if (!IsValidUtf8(k) || !IsValidUtf8(v)) {
      return absl::InvalidArgumentError("metadata entry " + Quote(k) + " is not valid UTF-8");
    }
  }
  std::vector<size_t> idx(tensors.size());
  for (size_t i = 0; i < idx.size(); ++i) idx[i] = i;
  std::sort(idx.begin(), idx.end(), [&](size_t a, size_t b) {
    const int ra = DTypeRank(tensors[a].second.dtype());
    const int rb = DTypeRank(tensors[b].second.dtype());
    if (ra != rb) return ra > rb;
    return tensors[a].first < tensors[b].first;
  });

  Plan plan;
  std::string header = "{";
  bool first = true;
  try {
    if (!metadata.empty()) {
      header += "\"__metadata__\":{";
      bool mfirst = true;
      for (const auto& [k, v] : metadata) {
        if (!mfirst) header += ',';
        mfirst = false;
        header += JsonString(k);
        header += ':';
        header += JsonString(v);
      }
      header += '}';
      first = false;
    }
    uint64_t offset = 0;
    for (size_t i : idx) {
      const auto& [name, t] = tensors[i];
      const uint64_t nbytes = t.nbytes();
      if (!first) header += ',';
      first = false;
      header += JsonString(name);
      header += ":{\"dtype\":\"";
      header += DTypeName(t.dtype());
      header += "\",\"shape\":[";
      for (size_t d = 0; d < t.shape().size(); ++d) {
        if (d) header += ',';
        header += std::to_string(t.shape()[d]);
      }
      header += "],\"data_offsets\":[";
      header += std::to_string(offset);
      header += ',';
      header += std::to_string(offset + nbytes);
      header += "]}";
      offset += nbytes;
      plan.order.push_back(&t);
    }
    plan.data_bytes = offset;
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(std::string("cannot encode the header: ") + e.what());
  }
  header += '}';
  header.append((8 - header.size() % 8) % 8, ' ');
  if (header.size() > kSafetensorsMaxHeaderBytes) {
    return absl::InvalidArgumentError("header of " + std::to_string(header.size()) +
                                   " bytes exceeds the safetensors limit of " +
                                   std::to_string(kSafetensorsMaxHeaderBytes));
  }
  uint64_t n = header.size();
  plan.prefix.resize(8);
  for (int i = 0; i < 8; ++i) {
    plan.prefix[i] = static_cast<char>(n & 0xFF);
    n >>= 8;
  }
  plan.prefix += header;
  return plan;
}

absl::Status RemoveIfExists(const std::string& path) {
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return grpo::ErrnoError(path + ": remove stale file", errno);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> SerializeSafetensors(const NamedTensors& tensors,
                                         const std::map<std::string, std::string>& metadata) {
  GRPO_ASSIGN_OR_RETURN(Plan plan, MakePlan(tensors, metadata));
  std::string out = std::move(plan.prefix);
  out.reserve(out.size() + plan.data_bytes);
  for (const Tensor* t : plan.order) {
    if (t->nbytes() > 0) out.append(static_cast<const char*>(t->raw_data()), t->nbytes());
  }
  return out;
}

absl::Status WriteSafetensors(const std::string& path, const NamedTensors& tensors,
                        const std::map<std::string, std::string>& metadata) {
  absl::StatusOr<Plan> plan = MakePlan(tensors, metadata);
  if (!plan.ok()) return grpo::WithContext(plan.status(), path);
  GRPO_ASSIGN_OR_RETURN(std::unique_ptr<AtomicFileWriter> file, AtomicFileWriter::Open(path));
  GRPO_RETURN_IF_ERROR(file->Append(plan->prefix));
  for (const Tensor* t : plan->order) {
    if (t->nbytes() > 0) {
      GRPO_RETURN_IF_ERROR(
          file->Append(std::string_view(static_cast<const char*>(t->raw_data()), t->nbytes())));
    }
  }
  return file->Commit();
}

absl::Status WriteShardedSafetensors(const std::string& dir, const NamedTensors& tensors,
                               uint64_t max_shard_bytes,
                               const std::map<std::string, std::string>& metadata) {
  if (max_shard_bytes == 0) return absl::InvalidArgumentError(dir + ": max_shard_bytes must be > 0");
  {
    const absl::Status s = CheckTensors(tensors);
    if (!s.ok()) return grpo::WithContext(s, dir);
  }
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return grpo::ErrnoError(dir + ": mkdir", errno);
  }

  // Greedy assignment in the caller's order, as transformers does.
  std::vector<NamedTensors> shards;
  uint64_t current = 0;
  uint64_t total = 0;
  for (const auto& named : tensors) {
    const uint64_t nbytes = named.second.nbytes();
    if (shards.empty() || (!shards.back().empty() && current + nbytes > max_shard_bytes)) {
      shards.emplace_back();
      current = 0;
    }
    shards.back().push_back(named);
    current += nbytes;
    total += nbytes;
  }
  if (shards.size() <= 1) {
    const NamedTensors empty;
    GRPO_RETURN_IF_ERROR(WriteSafetensors(JoinPath(dir, kSafetensorsSingleFile),
                                          shards.empty() ? empty : shards[0], metadata));
    return RemoveIfExists(JoinPath(dir, kSafetensorsIndexFile));
  }

  json weight_map = json::object();
  for (size_t i = 0; i < shards.size(); ++i) {
    char name[64];
    std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", i + 1, shards.size());
    GRPO_RETURN_IF_ERROR(WriteSafetensors(JoinPath(dir, name), shards[i], metadata));
    for (const auto& named : shards[i]) weight_map[named.first] = name;
  }
  json index = json::object();
  index["metadata"]["total_size"] = total;
  index["weight_map"] = std::move(weight_map);
  std::string text;
  try {
    text = index.dump(2, ' ', false, json::error_handler_t::strict) + "\n";
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(dir + ": cannot encode the index: " + e.what());
  }
  const std::string index_path = JoinPath(dir, kSafetensorsIndexFile);
  GRPO_RETURN_IF_ERROR(WriteFileAtomic(index_path, text));
  return RemoveIfExists(JoinPath(dir, kSafetensorsSingleFile));
}

}  // namespace grpo

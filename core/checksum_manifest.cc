#include "core/checksum_manifest.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <map>
#include <span>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/crc32c.h"
#include "core/file.h"

namespace grpo {
namespace {

namespace fs = std::filesystem;

constexpr char kFormat[] = "grpo.checksums.v1";
constexpr size_t kMaxManifestBytes = 16 << 20;
constexpr size_t kChunkBytes = 4 << 20;

std::string Hex(uint32_t v) {
  char buf[9];
  std::snprintf(buf, sizeof(buf), "%08x", v);
  return buf;
}

bool ParseHex(const std::string& s, uint32_t* v) {
  if (s.size() != 8) return false;
  uint32_t r = 0;
  for (char c : s) {
    r <<= 4;
    if (c >= '0' && c <= '9') {
      r |= static_cast<uint32_t>(c - '0');
    } else if (c >= 'a' && c <= 'f') {
      r |= static_cast<uint32_t>(c - 'a' + 10);
    } else {
      return false;
    }
  }
  *v = r;
  return true;
}

// A name the manifest may list: one path component inside the directory.
bool PlainName(const std::string& name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos &&
         name.find('\0') == std::string::npos;
}

}  // namespace

absl::StatusOr<FileChecksum> ChecksumFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoError("cannot open " + path, errno);
  std::vector<uint8_t> buf(kChunkBytes);
  FileChecksum sum;
  for (;;) {
    const ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd);
      return ErrnoError("cannot read " + path, err);
    }
    if (n == 0) break;
    sum.crc32c = Crc32cExtend(sum.crc32c, std::span<const uint8_t>(buf.data(), static_cast<size_t>(n)));
    sum.size += static_cast<uint64_t>(n);
  }
  ::close(fd);
  return sum;
}

absl::Status WriteChecksumManifest(const std::string& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name == kChecksumManifestName) continue;
    if (name.size() >= 4 && name.compare(name.size() - 4, 4, ".tmp") == 0) continue;
    std::error_code type_ec;
    if (!it->is_regular_file(type_ec)) continue;
    names.push_back(name);
  }
  if (ec) return absl::UnknownError("cannot list " + dir + ": " + ec.message());
  std::sort(names.begin(), names.end());
  nlohmann::json files = nlohmann::json::array();
  for (const std::string& name : names) {
    GRPO_ASSIGN_OR_RETURN(FileChecksum sum, ChecksumFile(dir + "/" + name));
    files.push_back({{"name", name}, {"size", sum.size}, {"crc32c", Hex(sum.crc32c)}});
  }
  const nlohmann::json manifest = {{"format", kFormat}, {"files", std::move(files)}};
  return WriteFileAtomic(dir + "/" + kChecksumManifestName, manifest.dump(1) + "\n");
}

absl::StatusOr<bool> VerifyChecksumManifest(const std::string& dir,
                                            const std::function<bool(std::string_view name)>& select) {
  const std::string manifest_path = dir + "/" + kChecksumManifestName;
  std::error_code ec;
  if (!fs::exists(manifest_path, ec)) {
    if (ec) return absl::UnknownError("cannot check " + manifest_path + ": " + ec.message());
    return false;
  }
  absl::StatusOr<std::string> text = ReadFile(manifest_path, kMaxManifestBytes);
  if (!text.ok()) {
    if (text.status().code() == absl::StatusCode::kResourceExhausted) {
      return absl::DataLossError(manifest_path + " is damaged: larger than " +
                                 std::to_string(kMaxManifestBytes) + " bytes");
    }
    return text.status();
  }
  const nlohmann::json j = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
  auto bad_manifest = [&](const std::string& why) {
    return absl::DataLossError(manifest_path + " is damaged: " + why);
  };
  if (j.is_discarded() || !j.is_object()) return bad_manifest("not a JSON object");
  if (!j.contains("format") || !j["format"].is_string() || j["format"].get<std::string>() != kFormat) {
    return bad_manifest(std::string("not a checksum manifest (format ") + kFormat + ")");
  }
  if (!j.contains("files") || !j["files"].is_array()) return bad_manifest("no \"files\" array");
  std::map<std::string, FileChecksum> want;
  for (const nlohmann::json& e : j["files"]) {
    uint32_t crc = 0;
    if (!e.is_object() || !e.contains("name") || !e["name"].is_string() || !e.contains("size") ||
        !e["size"].is_number_unsigned() || !e.contains("crc32c") || !e["crc32c"].is_string() ||
        !ParseHex(e["crc32c"].get<std::string>(), &crc)) {
      return bad_manifest("an entry is not {\"name\": string, \"size\": integer, \"crc32c\": 8 hex digits}");
    }
    const std::string name = e["name"].get<std::string>();
    if (!PlainName(name)) return bad_manifest("it names '" + name + "', not a file of " + dir);
    if (!want.emplace(name, FileChecksum{e["size"].get<uint64_t>(), crc}).second) {
      return bad_manifest("it lists '" + name + "' twice");
    }
  }
  for (const auto& [name, expected] : want) {
    if (select && !select(name)) continue;
    const std::string path = dir + "/" + name;
    if (!fs::exists(path, ec)) return absl::DataLossError(path + " is missing (listed in " + manifest_path + ")");
    const uint64_t size = fs::file_size(path, ec);
    if (ec) return absl::UnknownError("cannot stat " + path + ": " + ec.message());
    if (size != expected.size) {
      return absl::DataLossError(path + " is damaged: " + std::to_string(size) + " bytes but " + manifest_path +
                                 " records " + std::to_string(expected.size));
    }
    GRPO_ASSIGN_OR_RETURN(FileChecksum got, ChecksumFile(path));
    if (got.size != expected.size || got.crc32c != expected.crc32c) {
      return absl::DataLossError(path + " is damaged: CRC-32C 0x" + Hex(got.crc32c) + " (" +
                                 std::to_string(got.size) + " bytes) but " + manifest_path + " records 0x" +
                                 Hex(expected.crc32c) + " (" + std::to_string(expected.size) + " bytes)");
    }
  }
  return true;
}

}  // namespace grpo

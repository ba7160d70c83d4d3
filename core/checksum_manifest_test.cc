#include "core/checksum_manifest.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "core/crc32c.h"
#include "core/file.h"

namespace grpo {
namespace {

namespace fs = std::filesystem;

std::string Dir(const std::string& name) {
  const std::string d = (fs::path(::testing::TempDir()) / name).string();
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

void Write(const std::string& path, const std::string& text) { ASSERT_TRUE(WriteFileAtomic(path, text).ok()) << path; }

std::string Read(const std::string& path) { return ReadFile(path).value_or(""); }

void FlipByte(const std::string& path, size_t offset) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(static_cast<std::streamoff>(offset));
  char c = 0;
  f.get(c);
  f.seekp(static_cast<std::streamoff>(offset));
  f.put(static_cast<char>(c ^ 0x10));
}

std::string Message(const absl::Status& s) { return std::string(s.message()); }

TEST(ChecksumFile, MatchesCrc32cOfTheWholeFileAcrossChunks) {
  const std::string d = Dir("ck_file");
  std::string big(9 << 20, '\0');  // more than two read chunks
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>((i * 131) >> 3);
  Write(d + "/big", big);
  auto sum = ChecksumFile(d + "/big");
  ASSERT_TRUE(sum.ok()) << sum.status();
  EXPECT_EQ(sum->size, big.size());
  EXPECT_EQ(sum->crc32c, Crc32c(std::string_view(big)));
  auto missing = ChecksumFile(d + "/none");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
}

TEST(ChecksumManifest, ListsTheDirectorysFilesAndVerifiesThem) {
  const std::string d = Dir("ck_ok");
  Write(d + "/config.json", "{\"a\": 1}\n");
  Write(d + "/model.safetensors", std::string(1000, 'w'));
  Write(d + "/leftover.tmp", "partial");
  fs::create_directories(d + "/sub");
  EXPECT_EQ(*VerifyChecksumManifest(d), false);  // no manifest yet: nothing verified
  ASSERT_TRUE(WriteChecksumManifest(d).ok());
  EXPECT_FALSE(fs::exists(d + "/checksums.json.tmp"));
  const nlohmann::json j = nlohmann::json::parse(Read(d + "/checksums.json"));
  EXPECT_EQ(j["format"], "grpo.checksums.v1");
  ASSERT_EQ(j["files"].size(), 2u);  // not the .tmp file, the subdirectory or itself
  EXPECT_EQ(j["files"][0]["name"], "config.json");
  EXPECT_EQ(j["files"][1]["name"], "model.safetensors");
  EXPECT_EQ(j["files"][1]["size"], 1000);
  EXPECT_EQ(j["files"][1]["crc32c"].get<std::string>().size(), 8u);
  auto ok = VerifyChecksumManifest(d);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_TRUE(*ok);
  // Files added later are not the manifest's business.
  Write(d + "/README.md", "notes");
  EXPECT_TRUE(VerifyChecksumManifest(d).ok());
}

TEST(ChecksumManifest, AFlippedByteIsNamedWithBothChecksums) {
  const std::string d = Dir("ck_flip");
  Write(d + "/config.json", "{}");
  Write(d + "/optimizer.safetensors", std::string(4096, 'o'));
  ASSERT_TRUE(WriteChecksumManifest(d).ok());
  FlipByte(d + "/optimizer.safetensors", 2000);
  auto r = VerifyChecksumManifest(d);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(Message(r.status()).find(d + "/optimizer.safetensors is damaged: CRC-32C 0x"), std::string::npos)
      << r.status();
  EXPECT_NE(Message(r.status()).find(d + "/checksums.json records 0x"), std::string::npos) << r.status();
  // A selection that leaves the damaged file out passes; one that includes it fails.
  auto model_only = VerifyChecksumManifest(d, [](std::string_view n) { return n == "config.json"; });
  ASSERT_TRUE(model_only.ok()) << model_only.status();
  EXPECT_TRUE(*model_only);
  EXPECT_FALSE(VerifyChecksumManifest(d, [](std::string_view n) { return n != "config.json"; }).ok());
}

TEST(ChecksumManifest, TruncatedMissingAndReplacedFilesAreNamed) {
  const std::string d = Dir("ck_size");
  Write(d + "/a.bin", std::string(100, 'a'));
  Write(d + "/b.bin", std::string(100, 'b'));
  ASSERT_TRUE(WriteChecksumManifest(d).ok());
  Write(d + "/a.bin", std::string(60, 'a'));
  auto r = VerifyChecksumManifest(d);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(Message(r.status()).find("a.bin is damaged: 60 bytes but"), std::string::npos) << r.status();
  EXPECT_NE(Message(r.status()).find("records 100"), std::string::npos) << r.status();
  Write(d + "/a.bin", std::string(100, 'a'));
  EXPECT_TRUE(VerifyChecksumManifest(d).ok());
  Write(d + "/b.bin", std::string(100, 'c'));  // same size, other contents
  r = VerifyChecksumManifest(d);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(Message(r.status()).find("b.bin is damaged: CRC-32C"), std::string::npos) << r.status();
  fs::remove(d + "/b.bin");
  r = VerifyChecksumManifest(d);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(Message(r.status()).find("b.bin is missing (listed in " + d + "/checksums.json)"), std::string::npos)
      << r.status();
}

TEST(ChecksumManifest, ADamagedOrHostileManifestIsNamed) {
  const std::string d = Dir("ck_bad");
  Write(d + "/a.bin", "a");
  const std::string m = d + "/checksums.json";
  for (const std::string& text : {
           std::string("{\"format\": \"grpo.checksums.v1\", \"files\": [{\"name\": \"a.bin\", \"size\": 1,"),
           std::string("[1, 2]"),
           std::string("{\"format\": \"other\", \"files\": []}"),
           std::string("{\"format\": \"grpo.checksums.v1\"}"),
           std::string("{\"format\": \"grpo.checksums.v1\", \"files\": [{\"name\": \"a.bin\", \"size\": -1, "
                       "\"crc32c\": \"00000000\"}]}"),
           std::string("{\"format\": \"grpo.checksums.v1\", \"files\": [{\"name\": \"a.bin\", \"size\": 1, "
                       "\"crc32c\": \"xyz\"}]}"),
           std::string("{\"format\": \"grpo.checksums.v1\", \"files\": [{\"name\": \"../a.bin\", \"size\": 1, "
                       "\"crc32c\": \"00000000\"}]}"),
           std::string("{\"format\": \"grpo.checksums.v1\", \"files\": [{\"name\": \"a.bin\", \"size\": 1, "
                       "\"crc32c\": \"00000000\"}, {\"name\": \"a.bin\", \"size\": 1, \"crc32c\": \"00000000\"}]}"),
       }) {
    Write(m, text);
    auto r = VerifyChecksumManifest(d);
    ASSERT_FALSE(r.ok()) << text;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss) << text;
    EXPECT_NE(Message(r.status()).find(m + " is damaged"), std::string::npos) << r.status();
  }
}

}  // namespace
}  // namespace grpo

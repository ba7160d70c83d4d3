#include "core/safetensors.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <set>

#include "core/file.h"
#include "core/float_formats.h"

#include "testing/python_reference.h"

namespace grpo {
namespace {

using json = nlohmann::json;

std::string TmpDir() {
  const char* d = std::getenv("TEST_TMPDIR");
  return d != nullptr ? d : "/tmp";
}

std::string TmpPath(const std::string& name) { return TmpDir() + "/" + name; }

void WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

bool Exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

std::string LengthPrefix(uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((n >> (8 * i)) & 0xFF);
  return s;
}

// A file from a literal header (unpadded) and buffer.
std::string MakeFile(const std::string& header, const std::string& buffer) {
  return LengthPrefix(header.size()) + header + buffer;
}

template <typename T>
Tensor FromValues(DType dtype, Shape shape, const std::vector<T>& values) {
  Tensor t = Tensor::Zeros(dtype, std::move(shape));
  EXPECT_EQ(t.nbytes(), values.size() * sizeof(T));
  if (!values.empty()) std::memcpy(t.mutable_raw_data(), values.data(), t.nbytes());
  return t;
}

Tensor FloatTensor(DType dtype, Shape shape, const std::vector<float>& values) {
  absl::StatusOr<Tensor> f = Tensor::FromF32(std::move(shape), values);
  EXPECT_TRUE(f.ok()) << f.status().ToString();
  absl::StatusOr<Tensor> t = f->CastTo(dtype);
  EXPECT_TRUE(t.ok()) << t.status().ToString();
  return *t;
}

std::string Bytes(const Tensor& t) {
  return std::string(static_cast<const char*>(t.raw_data()), t.nbytes());
}

// One tensor of every dtype, with values that exercise the edges of each.
NamedTensors EveryDtype() {
  const std::vector<float> fvals = {
      1.5f, -2.25f, 0.0f, -0.0f, 3.0e-3f, 100.0f, std::numeric_limits<float>::infinity(), 1e-40f};
  NamedTensors out;
  out.emplace_back("f32", FloatTensor(DType::kF32, {2, 4}, fvals));
  out.emplace_back("bf16", FloatTensor(DType::kBF16, {4, 2}, fvals));
  out.emplace_back("f16", FloatTensor(DType::kF16, {8}, fvals));
  out.emplace_back("f8_e4m3",
                   FloatTensor(DType::kF8E4M3, {2, 2, 2},
                               {1.5f, -2.25f, 0.0f, -0.0f, 448.0f, -448.0f, 0.015625f, 3.0f}));
  out.emplace_back("f8_e5m2", FloatTensor(DType::kF8E5M2, {8}, fvals));
  out.emplace_back("f64", FromValues<double>(DType::kF64, {3}, {1.0 / 3.0, -1e300, 5e-324}));
  out.emplace_back("i64",
                   FromValues<int64_t>(DType::kI64, {5},
                                       {std::numeric_limits<int64_t>::min(), -1, 0,
                                        std::numeric_limits<int64_t>::max(), 123456789012345}));
  out.emplace_back(
      "u64", FromValues<uint64_t>(DType::kU64, {2}, {0, std::numeric_limits<uint64_t>::max()}));
  out.emplace_back("i32", FromValues<int32_t>(DType::kI32, {2, 2},
                                              {std::numeric_limits<int32_t>::min(), -7, 0,
                                               std::numeric_limits<int32_t>::max()}));
  out.emplace_back("u32", FromValues<uint32_t>(DType::kU32, {2}, {7, 0xFFFFFFFFu}));
  out.emplace_back("i16", FromValues<int16_t>(DType::kI16, {3}, {-32768, 1, 32767}));
  out.emplace_back("u16", FromValues<uint16_t>(DType::kU16, {3}, {0, 1, 65535}));
  out.emplace_back("i8", FromValues<int8_t>(DType::kI8, {3}, {-128, 5, 127}));
  out.emplace_back("u8", FromValues<uint8_t>(DType::kU8, {3}, {0, 200, 255}));
  out.emplace_back("bool", FromValues<uint8_t>(DType::kBool, {5}, {1, 0, 0, 1, 1}));
  return out;
}

void ExpectSameTensor(const Tensor& want, const Tensor& got, const std::string& name) {
  EXPECT_EQ(got.dtype(), want.dtype()) << name;
  EXPECT_EQ(got.shape(), want.shape()) << name;
  EXPECT_EQ(Bytes(got), Bytes(want)) << name;
  EXPECT_FALSE(got.writable()) << name;
}

// ---------------------------------------------------------------------------------------------
// Round trips

TEST(SafetensorsTest, RoundTripEveryDtype) {
  const NamedTensors tensors = EveryDtype();
  const std::map<std::string, std::string> meta = {{"format", "pt"}, {"note", "héllo \"q\"\n"}};
  const std::string path = TmpPath("every_dtype.safetensors");
  ASSERT_TRUE(WriteSafetensors(path, tensors, meta).ok());
  EXPECT_FALSE(Exists(path + ".tmp"));

  absl::StatusOr<SafetensorsFile> f = SafetensorsFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(f->metadata(), meta);
  EXPECT_EQ(f->num_tensors(), tensors.size());
  std::vector<std::string> want_names;
  for (const auto& [name, t] : tensors) want_names.push_back(name);
  std::sort(want_names.begin(), want_names.end());
  EXPECT_EQ(f->names(), want_names);
  for (const auto& [name, t] : tensors) {
    EXPECT_TRUE(f->Contains(name));
    absl::StatusOr<Tensor> got = f->Get(name);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    ExpectSameTensor(t, *got, name);
    // Files we write align every tensor to its element size (the buffer starts 8-aligned and
    // tensors are laid out by dtype size, descending).
    const auto addr = reinterpret_cast<uintptr_t>(got->raw_data());
    EXPECT_EQ(addr % DTypeSize(t.dtype()), 0u) << name;
    if (IsFloatingPoint(t.dtype())) {
      const Tensor a = t.ToF32(), b = got->ToF32();
      EXPECT_EQ(Bytes(a), Bytes(b)) << name;
    }
  }
  // Real values survive, not just bytes.
  const Tensor bf16 = f->Get("bf16")->ToF32();
  EXPECT_EQ(bf16.data<float>()[0], 1.5f);
  EXPECT_EQ(bf16.data<float>()[1], -2.25f);
  EXPECT_TRUE(std::isinf(bf16.data<float>()[6]));
  const Tensor e4m3 = f->Get("f8_e4m3")->ToF32();
  EXPECT_EQ(e4m3.data<float>()[4], 448.0f);
  EXPECT_FALSE(f->Contains("missing"));
  absl::StatusOr<Tensor> missing = f->Get("missing");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("'missing'"), std::string::npos);

  // In-memory serialization gives the same bytes as the file.
  absl::StatusOr<std::string> bytes = SerializeSafetensors(tensors, meta);
  ASSERT_TRUE(bytes.ok());
  EXPECT_EQ(*bytes, ReadFile(path).value_or(""));
}

TEST(SafetensorsTest, ScalarAndZeroSizeTensors) {
  NamedTensors tensors;
  tensors.emplace_back("scalar", FloatTensor(DType::kF32, {}, {42.5f}));
  tensors.emplace_back("empty", Tensor::Zeros(DType::kBF16, {0}));
  tensors.emplace_back("empty3", Tensor::Zeros(DType::kI64, {3, 0, 2}));
  tensors.emplace_back("empty_u8", Tensor::Zeros(DType::kU8, {0}));
  tensors.emplace_back("x", FromValues<uint8_t>(DType::kU8, {1}, {9}));
  absl::StatusOr<std::string> bytes = SerializeSafetensors(tensors);
  ASSERT_TRUE(bytes.ok());
  absl::StatusOr<SafetensorsFile> f = SafetensorsFile::FromBytes(*bytes, "mem");
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  for (const auto& [name, t] : tensors) ExpectSameTensor(t, *f->Get(name), name);
  EXPECT_EQ(f->Get("scalar")->rank(), 0);
  EXPECT_EQ(f->Get("scalar")->ToF32().data<float>()[0], 42.5f);
  EXPECT_EQ(f->Get("empty3")->numel(), 0);
  EXPECT_EQ(f->Get("empty3")->shape(), (Shape{3, 0, 2}));

  // An empty file (no tensors at all) is valid too.
  absl::StatusOr<std::string> none = SerializeSafetensors({});
  ASSERT_TRUE(none.ok());
  absl::StatusOr<SafetensorsFile> g = SafetensorsFile::FromBytes(*none, "none");
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  EXPECT_EQ(g->num_tensors(), 0u);
}

TEST(SafetensorsTest, ViewsKeepTheMappingAlive) {
  const std::string path = TmpPath("keepalive.safetensors");
  const Tensor t = FloatTensor(DType::kF32, {3}, {1, 2, 3});
  ASSERT_TRUE(WriteSafetensors(path, {{"w", t}}).ok());
  Tensor view;
  {
    absl::StatusOr<SafetensorsFile> f = SafetensorsFile::Open(path);
    ASSERT_TRUE(f.ok());
    view = *f->Get("w");
  }
  ASSERT_EQ(::unlink(path.c_str()), 0);
  EXPECT_EQ(Bytes(view), Bytes(t));
}

TEST(SafetensorsTest, OverwriteIsAtomicAndLeavesNoTmp) {
  const std::string path = TmpPath("overwrite.safetensors");
  ASSERT_TRUE(WriteSafetensors(path, {{"a", FloatTensor(DType::kF32, {2}, {1, 2})}}).ok());
  absl::StatusOr<SafetensorsFile> old = SafetensorsFile::Open(path);  // still mapped while we replace it
  ASSERT_TRUE(old.ok());
  ASSERT_TRUE(WriteSafetensors(path, {{"b", FloatTensor(DType::kF32, {1}, {3})}}).ok());
  EXPECT_FALSE(Exists(path + ".tmp"));
  absl::StatusOr<SafetensorsFile> now = SafetensorsFile::Open(path);
  ASSERT_TRUE(now.ok());
  EXPECT_EQ(now->names(), std::vector<std::string>{"b"});
  EXPECT_EQ(old->Get("a")->ToF32().data<float>()[1], 2.0f);  // the old inode is untouched

  // A write that fails up front leaves the old file alone.
  absl::Status bad = WriteSafetensors(path, {{"__metadata__", FloatTensor(DType::kF32, {1}, {3})}});
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.message().find(path), std::string::npos);
  EXPECT_TRUE(SafetensorsFile::Open(path).ok());
  // A directory that does not exist: NotFound (from errno), nothing left behind.
  absl::Status io = WriteSafetensors(TmpPath("no/such/dir/x.safetensors"), {});
  EXPECT_EQ(io.code(), absl::StatusCode::kNotFound);
}

TEST(SafetensorsTest, WriterRejectsBadInput) {
  const Tensor t = FloatTensor(DType::kF32, {1}, {1});
  absl::StatusOr<std::string> dup = SerializeSafetensors({{"a", t}, {"a", t}});
  ASSERT_FALSE(dup.ok());
  EXPECT_EQ(dup.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(dup.status().message().find("'a' appears twice"), std::string::npos);

  absl::StatusOr<std::string> reserved = SerializeSafetensors({{"__metadata__", t}});
  ASSERT_FALSE(reserved.ok());
  EXPECT_NE(reserved.status().message().find("reserved"), std::string::npos);

  absl::StatusOr<std::string> undefined = SerializeSafetensors({{"u", Tensor()}});
  ASSERT_FALSE(undefined.ok());
  EXPECT_NE(undefined.status().message().find("'u' has no data"), std::string::npos);

  absl::StatusOr<std::string> bad_utf8 = SerializeSafetensors({{std::string("a\xff", 2), t}});
  ASSERT_FALSE(bad_utf8.ok());
  EXPECT_NE(bad_utf8.status().message().find("UTF-8"), std::string::npos);

  absl::StatusOr<std::string> bad_meta = SerializeSafetensors({}, {{"k", std::string("\xc3", 1)}});
  ASSERT_FALSE(bad_meta.ok());
  EXPECT_NE(bad_meta.status().message().find("UTF-8"), std::string::npos);
}

// ---------------------------------------------------------------------------------------------
// Byte-exact layout. The `safetensors` Python module is not installed here, so the expected bytes
// are built by hand from the format's rules (they equal the reference implementation's own test
// vectors in safetensors/src/tensor.rs).

std::string F32Bytes(const std::vector<float>& v) {
  std::string s(v.size() * 4, '\0');
  std::memcpy(s.data(), v.data(), s.size());
  return s;
}

TEST(SafetensorsTest, ByteExactSingleTensor) {
  const Tensor t = FloatTensor(DType::kF32, {1, 2, 3}, {0, 1, 2, 3, 4, 5});
  // The header is exactly 64 bytes: no padding.
  const std::string header = R"({"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}})";
  ASSERT_EQ(header.size(), 64u);
  const std::string want = LengthPrefix(64) + header + F32Bytes({0, 1, 2, 3, 4, 5});
  absl::StatusOr<std::string> got = SerializeSafetensors({{"attn.0", t}});
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(*got, want);
}

TEST(SafetensorsTest, ByteExactPaddedHeader) {
  const Tensor t = FloatTensor(DType::kF32, {1, 1, 2, 3}, {0, 1, 2, 3, 4, 5});
  // 65 bytes of JSON, padded with 7 spaces to 72 so the buffer starts 8-aligned.
  const std::string json_text =
      R"({"attn0":{"dtype":"F32","shape":[1,1,2,3],"data_offsets":[0,24]}})";
  ASSERT_EQ(json_text.size(), 65u);
  const std::string want = LengthPrefix(72) + json_text + "       " + F32Bytes({0, 1, 2, 3, 4, 5});
  const std::string path = TmpPath("padded.safetensors");
  ASSERT_TRUE(WriteSafetensors(path, {{"attn0", t}}).ok());
  EXPECT_EQ(ReadFile(path).value_or(""), want);
}

TEST(SafetensorsTest, ByteExactEmptyAndMetadata) {
  absl::StatusOr<std::string> empty = SerializeSafetensors({});
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(*empty, LengthPrefix(8) + "{}      ");
  absl::StatusOr<std::string> meta = SerializeSafetensors({}, {{"framework", "pt"}});
  ASSERT_TRUE(meta.ok());
  EXPECT_EQ(*meta, LengthPrefix(40) + R"({"__metadata__":{"framework":"pt"}})" + "     ");
}

TEST(SafetensorsTest, ByteExactLayoutOrdersByDtypeSizeThenName) {
  // Reference order: dtype descending in its alignment order (..., F32, ..., BF16, ..., U8, BOOL),
  // then name. "__metadata__" first. Keys of metadata sorted.
  NamedTensors in;
  in.emplace_back("z_u8", FromValues<uint8_t>(DType::kU8, {3}, {1, 2, 3}));
  in.emplace_back("b_bf16", FromValues<uint16_t>(DType::kBF16, {1}, {0x3F80}));
  in.emplace_back("a_bf16", FromValues<uint16_t>(DType::kBF16, {2}, {0x4000, 0xC000}));
  in.emplace_back("c_f32", FromValues<float>(DType::kF32, {1}, {0.5f}));
  in.emplace_back("flag", FromValues<uint8_t>(DType::kBool, {}, {1}));
  const std::string header = R"({"__metadata__":{"a":"1","b":"x"},)"
                             R"("c_f32":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                             R"("a_bf16":{"dtype":"BF16","shape":[2],"data_offsets":[4,8]},)"
                             R"("b_bf16":{"dtype":"BF16","shape":[1],"data_offsets":[8,10]},)"
                             R"("z_u8":{"dtype":"U8","shape":[3],"data_offsets":[10,13]},)"
                             R"("flag":{"dtype":"BOOL","shape":[],"data_offsets":[13,14]}})";
  std::string padded = header;
  padded.append((8 - header.size() % 8) % 8, ' ');
  std::string buffer = F32Bytes({0.5f});
  buffer += std::string("\x00\x40\x00\xC0\x80\x3F\x01\x02\x03\x01", 10);
  const std::string want = LengthPrefix(padded.size()) + padded + buffer;
  absl::StatusOr<std::string> got = SerializeSafetensors(in, {{"b", "x"}, {"a", "1"}});
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(*got, want);
  // And the reader accepts headers in any key order.
  absl::StatusOr<SafetensorsFile> f = SafetensorsFile::FromBytes(want, "layout");
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(f->Info("z_u8")->begin, 10u);
}

// ---------------------------------------------------------------------------------------------
// Interop with PyTorch (without the safetensors module: the header is parsed with json + struct).

// Exit code 77: torch unavailable.
constexpr const char kPyReadScript[] = R"PY(
import json, math, struct, sys
try:
    import torch
except Exception as e:
    print("no torch:", e); sys.exit(77)
path, exp_path = sys.argv[1], sys.argv[2]
data = open(path, "rb").read()
n = struct.unpack("<Q", data[:8])[0]
assert n % 8 == 0, n
text = data[8:8 + n].decode("utf-8")
header = json.loads(text)
assert text == text.rstrip(" ") + " " * (len(text) - len(text.rstrip(" ")))
buf = bytearray(data[8 + n:])
exp = json.load(open(exp_path))
meta = header.pop("__metadata__", {})
assert meta == exp["metadata"], (meta, exp["metadata"])
assert sorted(header) == sorted(exp["tensors"]), (sorted(header), sorted(exp["tensors"]))
DT = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
      "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
      "U8": torch.uint8, "BOOL": torch.bool,
      "F8_E4M3": getattr(torch, "float8_e4m3fn", None), "F8_E5M2": getattr(torch, "float8_e5m2", None)}
end = 0
checked = 0
for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"]):
    b, e = info["data_offsets"]
    assert b == end, (name, b, end)
    end = e
    want = exp["tensors"][name]
    assert info["dtype"] == want["dtype"] and info["shape"] == want["shape"], (name, info, want)
    assert bytes(buf[b:e]).hex() == want["hex"], name
    dt = DT.get(info["dtype"])
    if dt is None:
        continue
    size = torch.empty(0, dtype=dt).element_size()
    assert b % size == 0, ("unaligned", name)
    count = (e - b) // size
    t = torch.frombuffer(buf, dtype=dt, count=count, offset=b) if count else torch.empty(0, dtype=dt)
    t = t.reshape(info["shape"])
    got = t.flatten().tolist() if not t.is_floating_point() else t.double().flatten().tolist()
    for g, w in zip(got, want["values"]):
        if isinstance(w, str):
            w = float(w)
        assert g == w or (isinstance(w, float) and math.isnan(w) and math.isnan(g)), (name, got, want["values"])
    assert len(got) == len(want["values"]), name
    checked += 1
assert end == len(buf), (end, len(buf))
print("OK", checked)
)PY";

// Writes tensors built by torch in the reference layout; we read them back.
constexpr const char kPyWriteScript[] = R"PY(
import json, struct, sys
try:
    import torch
except Exception as e:
    print("no torch:", e); sys.exit(77)
out = sys.argv[1]
vals = [0.1, -2.5, 3.0e38, 1.0e-30, 65504.0, 70000.0, -0.0, 1.0 / 3.0, 0.0078125, 1234.5678]
# The reference's dtype order (by alignment); tensors are laid out by it descending, then name.
order = ["BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "I16", "U16", "F16", "BF16", "I32", "U32",
         "F32", "F64", "I64", "U64"]
ts = {
    "f64": torch.tensor(vals, dtype=torch.float64),
    "i64": torch.arange(-3, 3, dtype=torch.int64).reshape(2, 3) * (2 ** 40),
    "f32": torch.tensor(vals, dtype=torch.float32).reshape(5, 2),
    "i32": torch.tensor([-7, 2 ** 31 - 1], dtype=torch.int32),
    "bf16": torch.tensor(vals, dtype=torch.float32).to(torch.bfloat16),
    "f16": torch.tensor(vals, dtype=torch.float32).to(torch.float16),
    "i16": torch.tensor([-32768, 12], dtype=torch.int16),
    "u8": torch.tensor([[0, 255]], dtype=torch.uint8),
    "bool": torch.tensor([True, False, True]),
    "scalar": torch.tensor(2.5, dtype=torch.float32),
}
names = {"f64": "F64", "i64": "I64", "f32": "F32", "i32": "I32", "bf16": "BF16", "f16": "F16",
         "i16": "I16", "u8": "U8", "bool": "BOOL", "scalar": "F32"}
items = sorted(ts.items(), key=lambda kv: (-order.index(names[kv[0]]), kv[0]))
header, blobs, off = {}, [], 0
for name, t in items:
    raw = t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
    header[name] = {"dtype": names[name], "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
    blobs.append(raw)
    off += len(raw)
header = {"__metadata__": {"format": "pt"}, **header}
text = json.dumps(header, separators=(",", ":")).encode()
text += b" " * ((8 - len(text) % 8) % 8)
with open(out, "wb") as f:
    f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))
print("OK")
)PY";

std::string Hex(const std::string& bytes) {
  static const char* d = "0123456789abcdef";
  std::string s;
  for (unsigned char c : bytes) {
    s += d[c >> 4];
    s += d[c & 15];
  }
  return s;
}

json ExpectedValues(const Tensor& t) {
  json values = json::array();
  const auto* p = static_cast<const unsigned char*>(t.raw_data());
  auto read = [&](auto zero, int64_t i) {
    decltype(zero) v;
    std::memcpy(&v, p + i * sizeof(v), sizeof(v));
    return v;
  };
  for (int64_t i = 0; i < t.numel(); ++i) {
    switch (t.dtype()) {
      case DType::kI64:
        values.push_back(read(int64_t{}, i));
        break;
      case DType::kU64:
        values.push_back(read(uint64_t{}, i));
        break;
      case DType::kI32:
        values.push_back(read(int32_t{}, i));
        break;
      case DType::kU32:
        values.push_back(read(uint32_t{}, i));
        break;
      case DType::kI16:
        values.push_back(read(int16_t{}, i));
        break;
      case DType::kU16:
        values.push_back(read(uint16_t{}, i));
        break;
      case DType::kI8:
        values.push_back(read(int8_t{}, i));
        break;
      case DType::kU8:
        values.push_back(read(uint8_t{}, i));
        break;
      case DType::kBool:
        values.push_back(read(uint8_t{}, i) != 0);
        break;
      case DType::kF64:
        values.push_back(read(double{}, i));
        break;
      default: {
        const float f = t.ToF32().data<float>()[i];
        if (std::isfinite(f)) {
          values.push_back(static_cast<double>(f));
        } else {  // JSON has no inf/nan: send them as strings for float()
          values.push_back(std::isnan(f) ? "nan" : (f > 0 ? "inf" : "-inf"));
        }
      }
    }
  }
  return values;
}

TEST(SafetensorsTest, PyTorchReadsOurOutput) {
  NamedTensors tensors = EveryDtype();
  tensors.emplace_back("scalar", FloatTensor(DType::kF32, {}, {-7.25f}));
  tensors.emplace_back("zero_size", Tensor::Zeros(DType::kBF16, {2, 0}));
  const std::map<std::string, std::string> meta = {{"format", "pt"}};
  const std::string path = TmpPath("for_torch.safetensors");
  ASSERT_TRUE(WriteSafetensors(path, tensors, meta).ok());
  json exp;
  exp["metadata"] = meta;
  exp["tensors"] = json::object();
  for (const auto& [name, t] : tensors) {
    exp["tensors"][name] = {{"dtype", std::string(DTypeName(t.dtype()))},
                            {"shape", t.shape()},
                            {"hex", Hex(Bytes(t))},
                            {"values", ExpectedValues(t)}};
  }
  const std::string exp_path = TmpPath("for_torch.json");
  WriteFile(exp_path, exp.dump());
  GRPO_REQUIRE_TORCH();
  auto log = testing::RunPythonScript(kPyReadScript, {path, exp_path});
  ASSERT_TRUE(log.ok()) << log.status().ToString();
  EXPECT_EQ(log->substr(0, 2), "OK") << *log;
}

TEST(SafetensorsTest, WeReadPyTorchOutput) {
  const std::string path = TmpPath("from_torch.safetensors");
  GRPO_REQUIRE_TORCH();
  auto log = testing::RunPythonScript(kPyWriteScript, {path});
  ASSERT_TRUE(log.ok()) << log.status().ToString();
  absl::StatusOr<SafetensorsFile> f = SafetensorsFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(f->metadata().at("format"), "pt");
  EXPECT_EQ(f->num_tensors(), 10u);

  const std::vector<double> vals = {0.1,     -2.5, 3.0e38,    1.0e-30,   65504.0,
                                    70000.0, -0.0, 1.0 / 3.0, 0.0078125, 1234.5678};
  std::vector<float> fvals;
  for (double v : vals) fvals.push_back(static_cast<float>(v));
  // torch's f32 -> bf16 / f16 rounding must equal ours, bit for bit.
  for (DType dt : {DType::kF32, DType::kBF16, DType::kF16}) {
    const std::string name = dt == DType::kF32 ? "f32" : dt == DType::kBF16 ? "bf16" : "f16";
    const Tensor mine = FloatTensor(dt, {static_cast<int64_t>(fvals.size())}, fvals);
    absl::StatusOr<Tensor> theirs = f->Get(name);
    ASSERT_TRUE(theirs.ok());
    EXPECT_EQ(theirs->dtype(), dt);
    EXPECT_EQ(Bytes(*theirs), Bytes(mine)) << name;
  }
  EXPECT_EQ(f->Get("f32")->shape(), (Shape{5, 2}));
  EXPECT_EQ(Bytes(*f->Get("f64")),
            std::string(reinterpret_cast<const char*>(vals.data()), vals.size() * sizeof(double)));
  EXPECT_EQ(
      Bytes(*f->Get("i64")),
      Bytes(FromValues<int64_t>(DType::kI64, {2, 3},
                                {-3LL << 40, -2LL << 40, -1LL << 40, 0, 1LL << 40, 2LL << 40})));
  EXPECT_EQ(Bytes(*f->Get("i32")), Bytes(FromValues<int32_t>(DType::kI32, {2}, {-7, 2147483647})));
  EXPECT_EQ(Bytes(*f->Get("i16")), Bytes(FromValues<int16_t>(DType::kI16, {2}, {-32768, 12})));
  EXPECT_EQ(f->Get("u8")->shape(), (Shape{1, 2}));
  EXPECT_EQ(Bytes(*f->Get("bool")), std::string("\x01\x00\x01", 3));
  EXPECT_EQ(f->Get("scalar")->rank(), 0);
  EXPECT_EQ(f->Get("scalar")->ToF32().data<float>()[0], 2.5f);

  // Rewriting what torch wrote gives back the identical file: same layout rules.
  NamedTensors again;
  for (const std::string& name : f->names()) again.emplace_back(name, *f->Get(name));
  absl::StatusOr<std::string> bytes = SerializeSafetensors(again, f->metadata());
  ASSERT_TRUE(bytes.ok());
  EXPECT_EQ(*bytes, ReadFile(path).value_or(""));
}

// ---------------------------------------------------------------------------------------------
// Sharded directories

NamedTensors ShardInput() {
  NamedTensors t;
  t.emplace_back("model.embed.weight",
                 FloatTensor(DType::kF32, {4, 4}, std::vector<float>(16, 1.0f)));
  t.emplace_back("model.layers.0.w", FloatTensor(DType::kBF16, {8}, std::vector<float>(8, 2.0f)));
  t.emplace_back("model.layers.0.b", FloatTensor(DType::kF32, {2}, {3.0f, 4.0f}));
  t.emplace_back("model.layers.1.w",
                 FloatTensor(DType::kF8E4M3, {40}, std::vector<float>(40, 0.5f)));
  t.emplace_back("lm_head.weight", FloatTensor(DType::kF32, {30}, std::vector<float>(30, -1.0f)));
  return t;
}

TEST(SafetensorsTest, ShardedRoundTrip) {
  const std::string dir = TmpPath("sharded");
  const NamedTensors tensors = ShardInput();
  // Sizes 64, 16, 8, 40, 120 with a 64-byte limit: [64] [16 8 40] [120].
  ASSERT_TRUE(WriteShardedSafetensors(dir, tensors, 64, {{"format", "pt"}}).ok());
  EXPECT_TRUE(Exists(dir + "/model-00001-of-00003.safetensors"));
  EXPECT_TRUE(Exists(dir + "/model-00002-of-00003.safetensors"));
  EXPECT_TRUE(Exists(dir + "/model-00003-of-00003.safetensors"));
  EXPECT_FALSE(Exists(dir + "/model.safetensors"));
  const json index = json::parse(ReadFile(dir + "/model.safetensors.index.json").value_or(""));
  EXPECT_EQ(index["metadata"]["total_size"], 248);
  EXPECT_EQ(index["weight_map"].size(), 5u);
  EXPECT_EQ(index["weight_map"]["model.embed.weight"], "model-00001-of-00003.safetensors");
  EXPECT_EQ(index["weight_map"]["model.layers.0.b"], "model-00002-of-00003.safetensors");
  EXPECT_EQ(index["weight_map"]["model.layers.1.w"], "model-00002-of-00003.safetensors");
  EXPECT_EQ(index["weight_map"]["lm_head.weight"], "model-00003-of-00003.safetensors");

  absl::StatusOr<SafetensorsDir> d = SafetensorsDir::Open(dir);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_TRUE(d->sharded());
  EXPECT_EQ(d->shards().size(), 3u);
  EXPECT_EQ(d->num_tensors(), 5u);
  for (const auto& [name, t] : tensors) {
    EXPECT_TRUE(d->Contains(name));
    ExpectSameTensor(t, *d->Get(name), name);
    EXPECT_EQ(d->Info(name)->dtype, t.dtype());
  }
  EXPECT_EQ(d->shards()[0].metadata().at("format"), "pt");
  EXPECT_EQ(d->Get("nope").status().code(), absl::StatusCode::kNotFound);

  // Rewriting into one shard: model.safetensors, and the stale index goes away.
  ASSERT_TRUE(WriteShardedSafetensors(dir, tensors, 1 << 20).ok());
  EXPECT_TRUE(Exists(dir + "/model.safetensors"));
  EXPECT_FALSE(Exists(dir + "/model.safetensors.index.json"));
  absl::StatusOr<SafetensorsDir> single = SafetensorsDir::Open(dir);
  ASSERT_TRUE(single.ok()) << single.status().ToString();
  EXPECT_FALSE(single->sharded());
  std::vector<std::string> want_names;
  for (const auto& [name, t] : tensors) {
    want_names.push_back(name);
    ExpectSameTensor(t, *single->Get(name), name);
  }
  std::sort(want_names.begin(), want_names.end());
  EXPECT_EQ(single->names(), want_names);
}

TEST(SafetensorsTest, ShardedRejectsBadInput) {
  EXPECT_EQ(WriteShardedSafetensors(TmpPath("s0"), ShardInput(), 0).code(),
            absl::StatusCode::kInvalidArgument);
  NamedTensors dup = ShardInput();
  dup.push_back(dup.front());
  const absl::Status s = WriteShardedSafetensors(TmpPath("sdup"), dup, 64);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("appears twice"), std::string::npos);
}

// Builds a directory by hand: shard files and an index text.
std::string MakeDir(const std::string& name, const std::map<std::string, NamedTensors>& shards,
                    const std::string& index) {
  const std::string dir = TmpPath(name);
  ::mkdir(dir.c_str(), 0755);
  for (const auto& [file, tensors] : shards) {
    EXPECT_TRUE(WriteSafetensors(dir + "/" + file, tensors).ok());
  }
  if (!index.empty()) WriteFile(dir + "/model.safetensors.index.json", index);
  return dir;
}

TEST(SafetensorsDirTest, MappedTensorMissingFromItsShard) {
  const Tensor t = FloatTensor(DType::kF32, {1}, {1});
  const std::string dir =
      MakeDir("missing_in_shard", {{"a.safetensors", {{"x", t}}}},
              R"({"weight_map": {"x": "a.safetensors", "y": "a.safetensors"}})");
  absl::StatusOr<SafetensorsDir> d = SafetensorsDir::Open(dir);
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(d.status().message().find("'y'"), std::string::npos) << d.status().message();
  EXPECT_NE(d.status().message().find("'a.safetensors'"), std::string::npos);
}

TEST(SafetensorsDirTest, TensorInTwoShards) {
  const Tensor t = FloatTensor(DType::kF32, {1}, {1});
  const std::string dir = MakeDir(
      "two_shards", {{"a.safetensors", {{"x", t}}}, {"b.safetensors", {{"x", t}, {"y", t}}}},
      R"({"weight_map": {"x": "a.safetensors", "y": "b.safetensors"}})");
  absl::StatusOr<SafetensorsDir> d = SafetensorsDir::Open(dir);
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(d.status().message().find("'x' appears in two shards"), std::string::npos)
      << d.status().message();
  EXPECT_NE(d.status().message().find("a.safetensors"), std::string::npos);
  EXPECT_NE(d.status().message().find("b.safetensors"), std::string::npos);
}

TEST(SafetensorsDirTest, MissingShardFile) {
  const std::string dir = MakeDir("no_shard", {}, R"({"weight_map": {"x": "gone.safetensors"}})");
  absl::StatusOr<SafetensorsDir> d = SafetensorsDir::Open(dir);
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(d.status().message().find("gone.safetensors"), std::string::npos);
}

TEST(SafetensorsDirTest, ShardNameOutsideTheDirectory) {
  const std::string dir = MakeDir("escape", {}, R"({"weight_map": {"x": "../x.safetensors"}})");
  absl::StatusOr<SafetensorsDir> d = SafetensorsDir::Open(dir);
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(d.status().message().find("not a plain file name"), std::string::npos);
}

TEST(SafetensorsDirTest, BadIndexJson) {
  absl::StatusOr<SafetensorsDir> a = SafetensorsDir::Open(MakeDir("idx_a", {}, R"({"weight_map": 3})"));
  ASSERT_FALSE(a.ok());
  EXPECT_NE(a.status().message().find("\"weight_map\" is 3"), std::string::npos);
  absl::StatusOr<SafetensorsDir> b = SafetensorsDir::Open(MakeDir("idx_b", {}, R"({"metadata": {}})"));
  ASSERT_FALSE(b.ok());
  EXPECT_NE(b.status().message().find("no \"weight_map\""), std::string::npos);
  absl::StatusOr<SafetensorsDir> c = SafetensorsDir::Open(MakeDir("idx_c", {}, R"({"weight_map": {)"));
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("not valid JSON"), std::string::npos);
  absl::StatusOr<SafetensorsDir> e = SafetensorsDir::Open(
      MakeDir("idx_e", {}, R"({"weight_map": {"x": "a.safetensors", "x": "b.safetensors"}})"));
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.status().message().find("'x' twice"), std::string::npos) << e.status().message();
}

TEST(SafetensorsDirTest, EmptyDirectory) {
  absl::StatusOr<SafetensorsDir> d = SafetensorsDir::Open(MakeDir("empty_dir", {}, ""));
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(d.status().message().find("model.safetensors"), std::string::npos);
}

// ---------------------------------------------------------------------------------------------
// Malformed files: one test per rule. Each asserts the code and that the message names the file
// and the problem.

void ExpectCorrupt(const std::string& bytes, const std::vector<std::string>& needles) {
  absl::StatusOr<SafetensorsFile> f = SafetensorsFile::FromBytes(bytes, "bad.safetensors");
  ASSERT_FALSE(f.ok()) << "accepted a malformed file";
  EXPECT_EQ(f.status().code(), absl::StatusCode::kDataLoss) << f.status().ToString();
  EXPECT_EQ(f.status().message().rfind("bad.safetensors: ", 0), 0u) << f.status().message();
  for (const std::string& n : needles) {
    EXPECT_NE(f.status().message().find(n), std::string::npos)
        << "message lacks \"" << n << "\": " << f.status().message();
  }
}

const std::string kFour(4, '\0');

TEST(SafetensorsMalformedTest, ShorterThanEightBytes) {
  ExpectCorrupt(std::string(5, '\0'), {"5 bytes", "shorter than the 8-byte header length"});
  ExpectCorrupt("", {"0 bytes"});
  const std::string path = TmpPath("short.safetensors");
  WriteFile(path, "abc");
  absl::StatusOr<SafetensorsFile> f = SafetensorsFile::Open(path);
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(f.status().message().find(path), std::string::npos);
}

TEST(SafetensorsMalformedTest, HeaderLengthBeyondFile) {
  ExpectCorrupt(LengthPrefix(100) + "{}", {"header length 100 is larger than the file (10 bytes"});
}

TEST(SafetensorsMalformedTest, HeaderLengthOverLimit) {
  ExpectCorrupt(LengthPrefix(100'000'001) + "{}", {"header length 100000001 exceeds the limit"});
  ExpectCorrupt(LengthPrefix(~uint64_t{0}) + "{}", {"exceeds the limit"});
}

TEST(SafetensorsMalformedTest, HeaderNotJson) {
  ExpectCorrupt(MakeFile(R"({"a": )", ""), {"header is not valid JSON"});
  ExpectCorrupt(MakeFile(R"({"a": {}} trailing)", ""), {"header is not valid JSON"});
  ExpectCorrupt(MakeFile("{} // comment", ""), {"header is not valid JSON"});
}

TEST(SafetensorsMalformedTest, HeaderNestsTooDeep) {
  const std::string deep = R"({"a":)" + std::string(100000, '[') + std::string(100000, ']') + "}";
  ExpectCorrupt(MakeFile(deep, ""), {"header nests arrays and objects deeper than 64 levels"});
  // Brackets inside strings do not count.
  absl::StatusOr<SafetensorsFile> ok = SafetensorsFile::FromBytes(
      MakeFile(R"({"__metadata__":{"k":")" + std::string(1000, '[') + R"(\"{"}})", ""), "ok");
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(ok->metadata().at("k"), std::string(1000, '[') + "\"{");
}

TEST(SafetensorsMalformedTest, HeaderDoesNotStartWithBrace) {
  ExpectCorrupt(MakeFile("[1, 2]", ""), {"header does not start with '{'", "0x5b"});
  ExpectCorrupt(MakeFile(" {}", ""), {"header does not start with '{'"});
  ExpectCorrupt(MakeFile("", ""), {"header does not start with '{'", "empty"});
}

TEST(SafetensorsMalformedTest, HeaderNotUtf8) {
  ExpectCorrupt(MakeFile("{\"a\xff\": 1}", ""), {"not valid UTF-8", "offset 3"});
  ExpectCorrupt(MakeFile("{\"\xed\xa0\x80\": 1}", ""), {"not valid UTF-8"});  // surrogate
  ExpectCorrupt(MakeFile("{\"\xc0\xaf\": 1}", ""), {"not valid UTF-8"});      // overlong
}

TEST(SafetensorsMalformedTest, EntryMissingFields) {
  ExpectCorrupt(MakeFile(R"({"w":{"shape":[1],"data_offsets":[0,4]}})", kFour),
                {"tensor 'w'", "no \"dtype\""});
  ExpectCorrupt(MakeFile(R"({"w":{"dtype":"F32","data_offsets":[0,4]}})", kFour),
                {"tensor 'w'", "no \"shape\""});
  ExpectCorrupt(MakeFile(R"({"w":{"dtype":"F32","shape":[1]}})", kFour),
                {"tensor 'w'", "no \"data_offsets\""});
}

TEST(SafetensorsMalformedTest, EntryWrongJsonTypes) {
  ExpectCorrupt(MakeFile(R"({"w":[1]})", ""), {"tensor 'w'", "not an object"});
  ExpectCorrupt(MakeFile(R"({"w":{"dtype":4,"shape":[1],"data_offsets":[0,4]}})", kFour),
                {"tensor 'w'", "\"dtype\" is 4, not a string"});
  ExpectCorrupt(MakeFile(R"({"w":{"dtype":"F32","shape":"1","data_offsets":[0,4]}})", kFour),
                {"tensor 'w'", "\"shape\" is \"1\", not an array"});
  ExpectCorrupt(MakeFile(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0]}})", kFour),
                {"tensor 'w'", "\"data_offsets\" is an array of 1 elements"});
  ExpectCorrupt(MakeFile(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":{"a":1}}})", kFour),
                {"tensor 'w'", "\"data_offsets\" is an object"});
  ExpectCorrupt(MakeFile(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,"4"]}})", kFour),
                {"tensor 'w'", "data_offsets[1] is \"4\""});
  ExpectCorrupt(MakeFile(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}})", kFour),
                {"tensor 'w'", "data_offsets[0] is -4"});
}

TEST(SafetensorsMalformedTest, UnknownDtype) {
  ExpectCorrupt(MakeFile(R"({"w":{"dtype":"F4","shape":[1],"data_offsets":[0,1]}})", "x"),
                {"tensor 'w'", "unknown dtype 'F4'"});
  ExpectCorrupt(MakeFile(R"({"w":{"dtype":"f32","shape":[1],"data_offsets":[0,4]}})", kFour),
                {"unknown dtype 'f32'"});
}

TEST(SafetensorsMalformedTest, NegativeOrNonIntegerDims) {
  ExpectCorrupt(MakeFile(R"({"w":{"dtype":"U8","shape":[2,-1],"data_offsets":[0,0]}})", ""),
                {"tensor 'w'", "shape[1] is -1, not a non-negative integer"});
  ExpectCorrupt(MakeFile(R"({"w":{"dtype":"U8","shape":[2.5],"data_offsets":[0,2]}})", "ab"),
                {"tensor 'w'", "shape[0] is 2.5"});
  ExpectCorrupt(MakeFile(R"({"w":{"dtype":"U8","shape":[2.0],"data_offsets":[0,2]}})", "ab"),
                {"shape[0] is 2.0"});
  ExpectCorrupt(MakeFile(R"({"w":{"dtype":"U8","shape":[[2]],"data_offsets":[0,2]}})", "ab"),
                {"shape[0] is an array"});
  ExpectCorrupt(MakeFile(R"({"w":{"dtype":"U8","shape":[null],"data_offsets":[0,2]}})", "ab"),
                {"shape[0] is null"});
}

TEST(SafetensorsMalformedTest, ShapeOverflow) {
  // Elements overflow 63 bits (even though a later dim is 0: the reference fails this too).
  ExpectCorrupt(
      MakeFile(R"({"w":{"dtype":"U8","shape":[4294967296,4294967296,0],"data_offsets":[0,0]}})",
               ""),
      {"tensor 'w'", "shape overflows"});
  ExpectCorrupt(
      MakeFile(R"({"w":{"dtype":"U8","shape":[18446744073709551615],"data_offsets":[0,0]}})", ""),
      {"tensor 'w'", "shape overflows"});
  // Elements fit, bytes do not.
  ExpectCorrupt(
      MakeFile(R"({"w":{"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,0]}})", ""),
      {"tensor 'w'", "overflows 64 bits of bytes"});
}

TEST(SafetensorsMalformedTest, BeginAfterEnd) {
  ExpectCorrupt(MakeFile(R"({"w":{"dtype":"U8","shape":[0],"data_offsets":[4,0]}})", kFour),
                {"tensor 'w'", "[4, 0) begin after they end"});
}

TEST(SafetensorsMalformedTest, EndBeyondBuffer) {
  ExpectCorrupt(MakeFile(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", kFour),
                {"tensor 'w' ends at byte 8", "buffer has 4 bytes"});
  ExpectCorrupt(
      MakeFile(
          R"({"w":{"dtype":"U8","shape":[0],"data_offsets":[18446744073709551615,18446744073709551615]}})",
          ""),
      {"tensor 'w' ends at byte 18446744073709551615"});
}

TEST(SafetensorsMalformedTest, SizeMismatch) {
  ExpectCorrupt(MakeFile(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", kFour),
                {"tensor 'w'", "F32 [2] needs 8 bytes", "hold 4"});
}

TEST(SafetensorsMalformedTest, OverlappingTensors) {
  ExpectCorrupt(MakeFile(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                         R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                         std::string(12, 'x')),
                {"tensors 'a' [0, 8) and 'b' [4, 12) overlap"});
  // The same bytes for two tensors is an overlap too (the reference rejects aliasing).
  ExpectCorrupt(MakeFile(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                         R"("b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
                         kFour),
                {"'a' [0, 4) and 'b' [0, 4) overlap"});
  // A zero-size tensor strictly inside another one.
  ExpectCorrupt(MakeFile(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                         R"("z":{"dtype":"F32","shape":[0],"data_offsets":[4,4]}})",
                         std::string(8, 'x')),
                {"'a' [0, 8) and 'z' [4, 4) overlap"});
}

TEST(SafetensorsMalformedTest, HolesAreRejectedLikeTheReference) {
  ExpectCorrupt(MakeFile(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                         R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                         std::string(12, 'x')),
                {"bytes [4, 8) of the data buffer belong to no tensor", "between 'a' and 'b'",
                 "contiguously"});
  ExpectCorrupt(
      MakeFile(R"({"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", std::string(8, 'x')),
      {"bytes [0, 4)", "before 'b'"});
  ExpectCorrupt(
      MakeFile(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", std::string(6, 'x')),
      {"buffer has 6 bytes but the tensors cover only the first 4", "trailing"});
  ExpectCorrupt(MakeFile("{}", "x"), {"buffer has 1 bytes but the tensors cover only the first 0"});
}

TEST(SafetensorsMalformedTest, DuplicateTensorNames) {
  ExpectCorrupt(MakeFile(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                         R"("a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                         std::string(8, 'x')),
                {"header has the key 'a' twice"});
  ExpectCorrupt(
      MakeFile(R"({"a":{"dtype":"F32","dtype":"U8","shape":[1],"data_offsets":[0,4]}})", kFour),
      {"the key 'dtype' twice inside the entry 'a'"});
  ExpectCorrupt(MakeFile(R"({"__metadata__":{"k":"1","k":"2"}})", ""),
                {"the key 'k' twice inside the entry '__metadata__'"});
}

TEST(SafetensorsMalformedTest, MetadataNotStrings) {
  ExpectCorrupt(MakeFile(R"({"__metadata__":{"k":1}})", ""),
                {"__metadata__ value of 'k' is 1, not a string"});
  ExpectCorrupt(MakeFile(R"({"__metadata__":{"k":{"x":"y"}}})", ""),
                {"__metadata__ value of 'k' is an object"});
  ExpectCorrupt(MakeFile(R"({"__metadata__":["a"]})", ""), {"__metadata__ is an array"});
  // null means "no metadata", as in the reference.
  absl::StatusOr<SafetensorsFile> f =
      SafetensorsFile::FromBytes(MakeFile(R"({"__metadata__":null})", ""), "n");
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_TRUE(f->metadata().empty());
}

TEST(SafetensorsMalformedTest, OpenErrors) {
  absl::StatusOr<SafetensorsFile> none = SafetensorsFile::Open(TmpPath("does_not_exist.safetensors"));
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(none.status().message().find("does_not_exist.safetensors"), std::string::npos);
  absl::StatusOr<SafetensorsFile> dir = SafetensorsFile::Open(TmpDir());
  ASSERT_FALSE(dir.ok());
  EXPECT_EQ(dir.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(dir.status().message().find("not a regular file"), std::string::npos);
}

TEST(SafetensorsMalformedTest, AcceptsUnknownEntryKeysAndTrailingSpaces) {
  // Unknown keys inside an entry are ignored (serde does the same); padding spaces are fine.
  absl::StatusOr<SafetensorsFile> f = SafetensorsFile::FromBytes(
      MakeFile(R"({"w":{"dtype":"U8","shape":[2],"data_offsets":[0,2],"extra":[1]}}   )", "ab"),
      "ok");
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(Bytes(*f->Get("w")), "ab");
}

// ---------------------------------------------------------------------------------------------
// Property test: mutated valid files never crash the reader, and whatever it accepts is safe.

std::string RandomName(std::mt19937_64& rng) {
  static const char* kParts[] = {"a", "b", "x", ".", "_", "0", "7", "\xc3\xa9", "layers", "w"};
  std::string s;
  const int len = 1 + static_cast<int>(rng() % 6);
  for (int i = 0; i < len; ++i) s += kParts[rng() % (sizeof(kParts) / sizeof(kParts[0]))];
  return s;
}

constexpr DType kAllDtypes[] = {DType::kBool,   DType::kU8,  DType::kI8,  DType::kF8E4M3,
                                DType::kF8E5M2, DType::kI16, DType::kU16, DType::kF16,
                                DType::kBF16,   DType::kI32, DType::kU32, DType::kF32,
                                DType::kF64,    DType::kI64, DType::kU64};

std::string RandomValidFile(std::mt19937_64& rng) {
  NamedTensors tensors;
  std::set<std::string> used;
  const int n = static_cast<int>(rng() % 6);
  for (int i = 0; i < n; ++i) {
    const std::string name = RandomName(rng);
    if (!used.insert(name).second) continue;
    const DType dtype = kAllDtypes[rng() % std::size(kAllDtypes)];
    Shape shape(rng() % 4);
    for (int64_t& d : shape) d = static_cast<int64_t>(rng() % 4);
    Tensor t = Tensor::Zeros(dtype, shape);
    auto* p = static_cast<uint8_t*>(t.mutable_raw_data());
    for (size_t k = 0; k < t.nbytes(); ++k) p[k] = static_cast<uint8_t>(rng());
    tensors.emplace_back(name, t);
  }
  std::map<std::string, std::string> meta;
  if (rng() % 3 == 0) meta["format"] = "pt";
  if (rng() % 5 == 0) meta[RandomName(rng)] = RandomName(rng);
  absl::StatusOr<std::string> bytes = SerializeSafetensors(tensors, meta);
  EXPECT_TRUE(bytes.ok()) << bytes.status().ToString();
  return bytes.ok() ? *bytes : std::string();
}

uint64_t HeaderLength(const std::string& b) {
  uint64_t n = 0;
  for (int i = 7; i >= 0 && b.size() >= 8; --i) n = (n << 8) | static_cast<uint8_t>(b[i]);
  return n;
}

void SetHeaderLength(std::string& b, uint64_t n) {
  if (b.size() < 8) return;
  for (int i = 0; i < 8; ++i) b[i] = static_cast<char>((n >> (8 * i)) & 0xFF);
}

void Mutate(std::string& b, std::mt19937_64& rng) {
  static const char kInteresting[] = "{}[]\":,-0123456789.eE \\nul";
  const uint64_t n = HeaderLength(b);
  const size_t header_end = std::min<uint64_t>(b.size(), 8 + n);
  switch (rng() % 8) {
    case 0: {  // flip random bytes anywhere
      const int k = 1 + static_cast<int>(rng() % 8);
      for (int i = 0; i < k && !b.empty(); ++i)
        b[rng() % b.size()] ^= static_cast<char>(1 + rng() % 255);
      break;
    }
    case 1: {  // flip bytes inside the header
      if (header_end <= 8) break;
      const int k = 1 + static_cast<int>(rng() % 3);
      for (int i = 0; i < k; ++i)
        b[8 + rng() % (header_end - 8)] ^= static_cast<char>(1 + rng() % 255);
      break;
    }
    case 2:  // truncate
      b.resize(b.empty() ? 0 : rng() % b.size());
      break;
    case 3: {  // extend
      const int k = 1 + static_cast<int>(rng() % 16);
      for (int i = 0; i < k; ++i) b += static_cast<char>(rng());
      break;
    }
    case 4: {  // splice the header length
      switch (rng() % 4) {
        case 0:
          SetHeaderLength(b, n + (rng() % 33) - 16);
          break;
        case 1:
          SetHeaderLength(b, rng());
          break;
        case 2:
          SetHeaderLength(b, rng() % (b.size() + 1));
          break;
        default:
          SetHeaderLength(b, kSafetensorsMaxHeaderBytes + rng() % 3 - 1);
          break;
      }
      break;
    }
    case 5: {  // a structural character or digit in the header
      if (header_end <= 8) break;
      b[8 + rng() % (header_end - 8)] = kInteresting[rng() % (sizeof(kInteresting) - 1)];
      break;
    }
    case 7: {  // flip bytes of the data buffer only: always still valid
      if (header_end >= b.size()) break;
      b[header_end + rng() % (b.size() - header_end)] ^= static_cast<char>(1 + rng() % 255);
      break;
    }
    default: {  // insert or delete a digit inside the header, fixing up the length prefix
      if (header_end <= 9) break;
      const size_t pos = 9 + rng() % (header_end - 9);
      if (rng() % 2) {
        b.insert(b.begin() + static_cast<std::ptrdiff_t>(pos), static_cast<char>('0' + rng() % 10));
        SetHeaderLength(b, n + 1);
      } else {
        b.erase(pos, 1);
        SetHeaderLength(b, n - 1);
      }
      break;
    }
  }
}

TEST(SafetensorsPropertyTest, MutatedFilesNeverCrashAndAcceptedFilesAreSafe) {
  std::mt19937_64 rng(20240531);
  int accepted = 0, rejected = 0;
  for (int iter = 0; iter < 2000; ++iter) {
    std::string bytes = RandomValidFile(rng);
    {
      absl::StatusOr<SafetensorsFile> clean = SafetensorsFile::FromBytes(bytes, "clean");
      ASSERT_TRUE(clean.ok()) << "iteration " << iter << ": " << clean.status().ToString();
    }
    const int mutations = 1 + static_cast<int>(rng() % 3);
    for (int m = 0; m < mutations; ++m) Mutate(bytes, rng);
    absl::StatusOr<SafetensorsFile> f = SafetensorsFile::FromBytes(bytes, "mutated");
    if (!f.ok()) {
      ++rejected;
      EXPECT_EQ(f.status().message().rfind("mutated: ", 0), 0u) << f.status().message();
      EXPECT_EQ(f.status().code(), absl::StatusCode::kDataLoss) << f.status().ToString();
      continue;
    }
    ++accepted;
    const std::span<const uint8_t> file = f->file_bytes();
    ASSERT_EQ(file.size(), bytes.size());
    const uint8_t* buffer = file.data() + f->buffer_offset();
    const uint8_t* file_end = file.data() + file.size();
    uint64_t covered = 0;
    for (const std::string& name : f->names()) {
      absl::StatusOr<SafetensorsTensorInfo> info = f->Info(name);
      absl::StatusOr<Tensor> t = f->Get(name);
      ASSERT_TRUE(info.ok() && t.ok());
      const auto* p = static_cast<const uint8_t*>(t->raw_data());
      ASSERT_GE(p, buffer) << name;
      ASSERT_LE(t->nbytes(), static_cast<size_t>(file_end - p)) << name;
      ASSERT_EQ(t->nbytes(), info->end - info->begin) << name;
      ASSERT_EQ(p, buffer + info->begin) << name;
      unsigned sum = 0;
      for (size_t k = 0; k < t->nbytes(); ++k) sum += p[k];
      (void)sum;
      if (IsFloatingPoint(t->dtype())) (void)t->ToF32();
      covered += t->nbytes();
    }
    EXPECT_EQ(f->buffer_offset() + covered, bytes.size());
  }
  // The mutations must exercise both outcomes.
  EXPECT_GT(accepted, 100);
  EXPECT_GT(rejected, 1000);
  std::printf("property test: %d accepted, %d rejected\n", accepted, rejected);
}

}  // namespace
}  // namespace grpo

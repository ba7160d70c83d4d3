// The registry finds compiled-in backends by name and refuses unknown or unavailable ones with
// a message that lists the available names.
#include "model/ops/registry.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>

namespace grpo {
namespace {

absl::Status NoDevice() { return absl::UnavailableError("no device found"); }
absl::Status Available() { return absl::OkStatus(); }

// Never called for an unavailable entry.
Backend& MustNotBeCalled() {
  ADD_FAILURE() << "instance() of an unavailable backend was called";
  return CpuBackend();
}

constexpr BackendEntry kTestTable[] = {
    {"host", "a host backend", &Available, &CpuBackend, nullptr},
    {"gpu", "a device backend without its device", &NoDevice, &MustNotBeCalled, nullptr},
    {"host2", "another host backend", &Available, &CpuBackend, nullptr},
};

TEST(RegistryTest, CpuIsRegisteredAndAvailable) {
  absl::StatusOr<Backend*> cpu = GetBackend("cpu");
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  EXPECT_EQ(*cpu, &CpuBackend());
  EXPECT_STREQ((*cpu)->name(), "cpu");
  absl::StatusOr<Backend*> by_default = GetBackend(kDefaultBackendName);
  ASSERT_TRUE(by_default.ok());
  EXPECT_EQ(*by_default, *cpu);
}

TEST(RegistryTest, CpuGuardedIsRegistered) {
  absl::StatusOr<Backend*> guarded = GetBackend("cpu_guarded");
  ASSERT_TRUE(guarded.ok()) << guarded.status();
  EXPECT_STREQ((*guarded)->name(), "cpu_guarded");
  EXPECT_NE(*guarded, &CpuBackend());
  EXPECT_NE(AvailableBackendNames().find("cpu_guarded"), std::string::npos) << AvailableBackendNames();
}

TEST(RegistryTest, ListsEveryBackendWithItsAvailability) {
  const std::vector<BackendInfo> all = ListBackends();
  ASSERT_FALSE(all.empty());
  EXPECT_EQ(all[0].name, "cpu");
  EXPECT_TRUE(all[0].available);
  EXPECT_EQ(all[0].unavailable_reason, "");
  for (const BackendInfo& b : all) EXPECT_FALSE(b.description.empty()) << b.name;
  EXPECT_EQ(AvailableBackendNames().rfind("cpu", 0), 0u) << AvailableBackendNames();
}

TEST(RegistryTest, DevicesIncludeTheHostCpu) {
  const std::vector<DeviceInfo> devices = ListDevices();
  ASSERT_FALSE(devices.empty());
  EXPECT_EQ(devices[0].id, "cpu");
  EXPECT_FALSE(devices[0].name.empty());
  const std::string& d = devices[0].details;
  EXPECT_NE(d.find("cores usable"), std::string::npos) << d;
  EXPECT_NE(d.find("available"), std::string::npos) << d;
  for (const DeviceInfo& dev : devices) {
    if (dev.id == "cpu") {
      EXPECT_EQ(&dev, &devices[0]) << "the host CPU is listed twice";
    }
  }
}

TEST(RegistryTest, UnknownNameListsTheAvailableOnes) {
  absl::StatusOr<Backend*> b = GetBackend("nosuch");
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.status().code(), absl::StatusCode::kInvalidArgument);
  const std::string msg(b.status().message());
  EXPECT_NE(msg.find("unknown backend 'nosuch'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("available backends: " + AvailableBackendNames()), std::string::npos) << msg;
  // Names are exact: no case folding, no prefixes.
  EXPECT_FALSE(GetBackend("CPU").ok());
  EXPECT_FALSE(GetBackend("").ok());
}

TEST(RegistryTest, KnownNameNotCompiledInSaysSo) {
  if (GetBackend("cuda").ok()) GTEST_SKIP() << "this build has the cuda backend";
  absl::StatusOr<Backend*> b = GetBackend("cuda");
  const std::string msg(b.status().message());
  if (absl::IsFailedPrecondition(b.status())) {  // compiled in, no device here
    EXPECT_NE(msg.find("unavailable here"), std::string::npos) << msg;
    return;
  }
  EXPECT_EQ(b.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(msg.find("backend 'cuda' is not compiled into this build"), std::string::npos) << msg;
  EXPECT_NE(msg.find("available backends: cpu"), std::string::npos) << msg;
}

TEST(RegistryTest, CudaIsCompiledInAndSaysWhetherADeviceIsHere) {
  const std::vector<BackendInfo> all = ListBackends();
  auto cuda = std::find_if(all.begin(), all.end(), [](const BackendInfo& b) { return b.name == "cuda"; });
  ASSERT_NE(cuda, all.end()) << "the cuda backend is not in the registry";
  const std::vector<DeviceInfo> devices = ListDevices();
  const bool gpu_listed = std::any_of(devices.begin(), devices.end(),
                                      [](const DeviceInfo& d) { return d.id.rfind("cuda:", 0) == 0; });
  if (cuda->available) {  // a GPU machine
    ASSERT_TRUE(gpu_listed);
    for (const DeviceInfo& d : devices) {
      if (d.id == "cuda:0") {
        EXPECT_NE(d.details.find("compute capability"), std::string::npos) << d.details;
      }
    }
    return;
  }
  EXPECT_NE(cuda->unavailable_reason.find("no CUDA device found ("), std::string::npos) << cuda->unavailable_reason;
  EXPECT_FALSE(gpu_listed) << "an unavailable backend's devices are listed";
  absl::StatusOr<Backend*> b = GetBackend("cuda");
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.status().code(), absl::StatusCode::kFailedPrecondition);
  const std::string msg(b.status().message());
  EXPECT_NE(msg.find("backend 'cuda' is compiled in but unavailable here: no CUDA device found"), std::string::npos) << msg;
  EXPECT_EQ(AvailableBackendNames().find("cuda"), std::string::npos) << AvailableBackendNames();
}

TEST(RegistryTest, UnavailableBackendGivesItsReason) {
  absl::StatusOr<Backend*> b = GetBackendFrom(kTestTable, "gpu");
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(std::string(b.status().message()),
            "backend 'gpu' is compiled in but unavailable here: no device found; available backends: host, host2");
}

TEST(RegistryTest, TableLookupAndListing) {
  absl::StatusOr<Backend*> host2 = GetBackendFrom(kTestTable, "host2");
  ASSERT_TRUE(host2.ok());
  EXPECT_EQ(*host2, &CpuBackend());
  const std::vector<BackendInfo> all = ListBackendsFrom(kTestTable);
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[1].name, "gpu");
  EXPECT_FALSE(all[1].available);
  EXPECT_EQ(all[1].unavailable_reason, "no device found");
  EXPECT_TRUE(all[2].available);
  EXPECT_EQ(AvailableBackendNamesFrom(kTestTable), "host, host2");
  EXPECT_EQ(AvailableBackendNamesFrom(std::span<const BackendEntry>(kTestTable + 1, 1)), "none");
}

}  // namespace
}  // namespace grpo

// cuBLASLt's run-time loading, on the host: the toolkit's library loads without a GPU or driver.
#include "model/ops/cuda/cublaslt_library.h"

#include <gtest/gtest.h>

#include <string>

namespace grpo::cuda {
namespace {

TEST(CublasLtLibrary, NamesTheToolkitsMajorVersion) {
  EXPECT_EQ(std::string(CublasLtLibraryName()), "libcublasLt.so." + std::to_string(CUBLAS_VER_MAJOR));
}

TEST(CublasLtLibrary, LoadsEveryEntryPointOnce) {
  absl::StatusOr<const CublasLtApi*> api = LoadCublasLt();
  ASSERT_TRUE(api.ok()) << api.status();
  const CublasLtApi& f = **api;
  for (const void* p : {reinterpret_cast<const void*>(f.Create), reinterpret_cast<const void*>(f.Matmul),
                        reinterpret_cast<const void*>(f.MatmulAlgoGetHeuristic),
                        reinterpret_cast<const void*>(f.MatmulDescCreate),
                        reinterpret_cast<const void*>(f.MatmulDescDestroy),
                        reinterpret_cast<const void*>(f.MatmulDescSetAttribute),
                        reinterpret_cast<const void*>(f.MatmulPreferenceCreate),
                        reinterpret_cast<const void*>(f.MatmulPreferenceDestroy),
                        reinterpret_cast<const void*>(f.MatmulPreferenceSetAttribute),
                        reinterpret_cast<const void*>(f.MatrixLayoutCreate),
                        reinterpret_cast<const void*>(f.MatrixLayoutDestroy)}) {
    EXPECT_NE(p, nullptr);
  }
  EXPECT_EQ(*LoadCublasLt(), *api);  // cached
}

}  // namespace
}  // namespace grpo::cuda

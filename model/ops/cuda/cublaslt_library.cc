#include "model/ops/cuda/cublaslt_library.h"

#include <dlfcn.h>

#include <string>

namespace grpo::cuda {
namespace {

#define GRPO_STRINGIFY_INNER(x) #x
#define GRPO_STRINGIFY(x) GRPO_STRINGIFY_INNER(x)

// Resolves `name` into `fn`, or records the first failure in `error`.
template <class Fn>
void Resolve(void* handle, const char* name, Fn* fn, std::string* error) {
  *fn = reinterpret_cast<Fn>(dlsym(handle, name));
  if (*fn == nullptr && error->empty()) error->assign(std::string("no symbol ") + name);
}

absl::StatusOr<const CublasLtApi*> Load() {
  void* handle = dlopen(CublasLtLibraryName(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* why = dlerror();
    return absl::FailedPreconditionError(std::string("cannot load ") + CublasLtLibraryName() + ": " +
                                         (why != nullptr ? why : "unknown error"));
  }
  static CublasLtApi api;  // filled once, under LoadCublasLt's static initialization
  std::string error;
  Resolve(handle, "cublasLtCreate", &api.Create, &error);
  Resolve(handle, "cublasLtMatmul", &api.Matmul, &error);
  Resolve(handle, "cublasLtMatmulAlgoGetHeuristic", &api.MatmulAlgoGetHeuristic, &error);
  Resolve(handle, "cublasLtMatmulDescCreate", &api.MatmulDescCreate, &error);
  Resolve(handle, "cublasLtMatmulDescDestroy", &api.MatmulDescDestroy, &error);
  Resolve(handle, "cublasLtMatmulDescSetAttribute", &api.MatmulDescSetAttribute, &error);
  Resolve(handle, "cublasLtMatmulPreferenceCreate", &api.MatmulPreferenceCreate, &error);
  Resolve(handle, "cublasLtMatmulPreferenceDestroy", &api.MatmulPreferenceDestroy, &error);
  Resolve(handle, "cublasLtMatmulPreferenceSetAttribute", &api.MatmulPreferenceSetAttribute, &error);
  Resolve(handle, "cublasLtMatrixLayoutCreate", &api.MatrixLayoutCreate, &error);
  Resolve(handle, "cublasLtMatrixLayoutDestroy", &api.MatrixLayoutDestroy, &error);
  if (!error.empty()) {
    return absl::FailedPreconditionError(std::string(CublasLtLibraryName()) + ": " + error);
  }
  return &api;
}

}  // namespace

const char* CublasLtLibraryName() { return "libcublasLt.so." GRPO_STRINGIFY(CUBLAS_VER_MAJOR); }

absl::StatusOr<const CublasLtApi*> LoadCublasLt() {
  static const absl::StatusOr<const CublasLtApi*> loaded = Load();
  return loaded;
}

}  // namespace grpo::cuda

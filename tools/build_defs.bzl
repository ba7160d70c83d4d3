"""Build macros of ours: protobuf/gRPC code generation and CUDA compilation, all offline.

Both run the tools Debian and the CUDA toolkit install (protoc, grpc_cpp_plugin, nvcc) through
plain genrules, so no rules repository has to be downloaded.
"""

def grpo_proto_library(name, srcs, deps = [], grpc = False, visibility = None):
    """C++ library generated from .proto files.

    Args:
      name: the cc_library to create; depend on it from C++.
      srcs: .proto files in this package.
      deps: other grpo_proto_library targets whose .proto files these import.
      grpc: also generate gRPC service stubs (*.grpc.pb.{h,cc}).
      visibility: visibility of the cc_library.
    """
    stems = [s[:-len(".proto")] for s in srcs]
    outs = [s + ".pb.h" for s in stems] + [s + ".pb.cc" for s in stems]
    if grpc:
        outs += [s + ".grpc.pb.h" for s in stems] + [s + ".grpc.pb.cc" for s in stems]
    plugin = ""
    if grpc:
        plugin = " --plugin=protoc-gen-grpc=/usr/bin/grpc_cpp_plugin --grpc_out=$(GENDIR)"
    dep_protos = [d + "_protos" for d in deps]
    native.filegroup(
        name = name + "_protos",
        srcs = srcs + dep_protos,
        visibility = ["//visibility:public"],
    )
    native.genrule(
        name = name + "_codegen",
        srcs = srcs + dep_protos,
        outs = outs,
        cmd = "/usr/bin/protoc -I. -I/usr/include --cpp_out=$(GENDIR)" + plugin +
              " " + " ".join(["$(location %s)" % s for s in srcs]),
        message = "protoc " + name,
    )
    native.cc_library(
        name = name,
        srcs = [o for o in outs if o.endswith(".cc")],
        hdrs = [o for o in outs if o.endswith(".h")],
        deps = deps + ["//third_party:protobuf"] + (["//third_party:grpc"] if grpc else []),
        visibility = visibility,
    )

# nvcc wrongly applies a class's [[nodiscard]] (our Status) to assignment expressions (#2810).
NVCC_FLAGS = ["-diag-suppress=2810"]

# Architectures the CUDA kernels are built for: Hopper (H100/H200) as SASS, plus PTX for newer.
CUDA_ARCH_FLAGS = [
    "-gencode=arch=compute_90,code=sm_90",
    "-gencode=arch=compute_90,code=compute_90",
]

def cuda_library(name, srcs, hdrs = [], hdr_deps = [], deps = [], copts = [], visibility = None):
    """A C++ library whose sources are CUDA (.cu), compiled by /usr/local/cuda/bin/nvcc.

    The objects link against cudart only (add "//third_party:cublas" or "//third_party:nccl" to
    `deps` where a library calls them: every binary that links them maps them at startup, ~800 MB
    of address space for cuBLASLt and NCCL). Headers in `hdrs` must be plain C++ (no CUDA
    syntax) so host code can include them.

    Args:
      hdr_deps: filegroups of headers from other packages that the .cu files include (nvcc runs
        in a genrule, which sees only the files it is given), e.g. "//core:headers".
    """
    objs = []
    for src in srcs:
        obj = name + "_" + src.replace("/", "_").replace(".cu", ".o")
        native.genrule(
            name = obj + "_nvcc",
            srcs = [src] + hdr_deps + native.glob(["**/*.h", "**/*.cuh"]),
            outs = [obj],
            cmd = ("/usr/local/cuda/bin/nvcc -std=c++20 -O3 -Xcompiler -fPIC " +
                   " ".join(NVCC_FLAGS + CUDA_ARCH_FLAGS + copts) +
                   " -I. -I$(GENDIR) -c $(location %s) -o $@") % src,
            message = "nvcc " + src,
        )
        objs.append(obj)
    native.cc_library(
        name = name,
        srcs = objs,
        hdrs = hdrs,
        deps = deps + ["//third_party:cuda_runtime"],
        linkstatic = True,
        visibility = visibility,
    )

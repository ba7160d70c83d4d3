#include "learner/weight_push.h"

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <map>
#include <thread>

#include "collective/collective.h"
#include "core/crc32c.h"
#include "core/fp8_block.h"
#include "core/thread_pool.h"
#include "rollout/push_token.h"

namespace grpo {
namespace {

// Runs fn(i) for i in [0, n) on the shared pool, handing out indices one by one (tensor sizes
// vary a lot, so static ranges would leave threads idle). Results go to per-index slots, so the
// outcome does not depend on which thread ran what.
void ForEachIndex(size_t n, const std::function<void(size_t)>& fn) {
  std::atomic<size_t> next{0};
  ThreadPool& pool = ThreadPool::Default();
  pool.ParallelFor(pool.num_threads(), 1, [&](int64_t, int64_t) {
    for (size_t i; (i = next.fetch_add(1)) < n;) fn(i);
  });
}

absl::Status FromGrpc(const grpc::Status& s, const std::string& what) {
  const std::string m = what + ": " + s.error_message();
  switch (s.error_code()) {
    case grpc::StatusCode::DEADLINE_EXCEEDED: return absl::DeadlineExceededError(m);
    case grpc::StatusCode::CANCELLED: return absl::CancelledError(m);
    case grpc::StatusCode::RESOURCE_EXHAUSTED: return absl::ResourceExhaustedError(m);
    case grpc::StatusCode::INVALID_ARGUMENT: return absl::InvalidArgumentError(m);
    case grpc::StatusCode::UNIMPLEMENTED: return absl::UnimplementedError(m);
    case grpc::StatusCode::FAILED_PRECONDITION: return absl::FailedPreconditionError(m);
    case grpc::StatusCode::UNAUTHENTICATED: return absl::UnauthenticatedError(m);
    case grpc::StatusCode::PERMISSION_DENIED: return absl::PermissionDeniedError(m);
    case grpc::StatusCode::INTERNAL: return absl::InternalError(m);
    default: return absl::UnavailableError(m);
  }
}

}  // namespace

DType WireDType(const ParameterSpec& spec, const WeightPushOptions& options) {
  switch (options.format) {
    case WeightFormat::kBF16: return DType::kBF16;
    case WeightFormat::kFp8Block: return spec.is_matrix ? DType::kF8E4M3 : options.fp8_other_dtype;
    default: return DType::kF32;
  }
}

absl::StatusOr<EncodedWeights> EncodeWeights(const std::vector<Parameter>& params, uint64_t version,
                                     const WeightPushOptions& options) {
  if (version == 0) return absl::InvalidArgumentError("weight version 0 is reserved for the weights loaded from disk");
  if (options.format == WeightFormat::kStored) {
    return absl::InvalidArgumentError("weight format 'stored' is not a wire format (f32, bf16 or fp8)");
  }
  if (options.format == WeightFormat::kFp8Block && options.fp8_other_dtype != DType::kBF16 &&
      options.fp8_other_dtype != DType::kF32) {
    return absl::InvalidArgumentError("fp8_other_dtype must be BF16 or F32, not " +
                                   std::string(DTypeName(options.fp8_other_dtype)));
  }
  // One job per FP8 matrix (quantized whole) and per ~1M-element piece of a narrowed tensor, so
  // a big embedding is converted by all threads.
  struct Job {
    size_t param;
    int64_t begin = 0, end = 0;
  };
  constexpr int64_t kJobElements = int64_t{1} << 20;
  std::vector<Job> jobs;
  std::vector<std::vector<WireTensor>> out(params.size());
  std::vector<Tensor> f32(params.size());
  std::vector<uint8_t*> dst(params.size(), nullptr);
  for (size_t i = 0; i < params.size(); ++i) {
    const Parameter& p = params[i];
    if (p.value.shape() != p.spec.shape || !p.value.defined()) {
      return absl::InvalidArgumentError("tensor '" + p.spec.name + "' has shape " +
                                     ShapeToString(p.value.shape()) + ", its spec says " +
                                     ShapeToString(p.spec.shape));
    }
    f32[i] = p.value;
    if (f32[i].dtype() != DType::kF32) {  // a serving model's BF16/FP8 matrix
      GRPO_ASSIGN_OR_RETURN(f32[i], ParameterToF32(p));
    }
    const DType dt = WireDType(p.spec, options);
    if (dt == DType::kF8E4M3) {
      jobs.push_back({i});
      continue;
    }
    if (dt == DType::kF32) {
      out[i].push_back({p.spec.name, f32[i]});
      continue;
    }
    auto [t, data] = NewWeightTensor(dt, p.spec.shape);
    out[i].push_back({p.spec.name, std::move(t)});
    dst[i] = data;
    for (int64_t e = 0; e < f32[i].numel(); e += kJobElements) {
      jobs.push_back({i, e, std::min(f32[i].numel(), e + kJobElements)});
    }
  }
  std::vector<absl::Status> errors(jobs.size());
  ForEachIndex(jobs.size(), [&](size_t j) {
    const Job& job = jobs[j];
    const Parameter& p = params[job.param];
    if (dst[job.param] == nullptr) {
      auto q = QuantizeFp8Block(f32[job.param]);
      if (!q.ok()) {
        errors[j] = grpo::WithContext(q.status(), "tensor '" + p.spec.name + "'");
        return;
      }
      out[job.param] = {{p.spec.name, std::move(q->weight)},
                        {p.spec.name + "_scale_inv", std::move(q->scale_inv)}};
      return;
    }
    const DType dt = out[job.param][0].data.dtype();
    errors[j] = ConvertFromF32(f32[job.param].data<float>() + job.begin,
                               static_cast<size_t>(job.end - job.begin), dt,
                               dst[job.param] + job.begin * DTypeSize(dt));
  });
  for (const absl::Status& e : errors) GRPO_RETURN_IF_ERROR(e);
  EncodedWeights w;
  w.version = version;
  for (auto& r : out) {
    for (WireTensor& t : r) {
      w.total_bytes += t.data.nbytes();
      w.tensors.push_back(std::move(t));
    }
  }
  return w;
}

std::vector<Parameter> ParametersOfShard(const std::vector<Parameter>& params, int shard, int num_shards) {
  size_t total = 0;
  for (const Parameter& p : params) total += static_cast<size_t>(p.value.numel());
  const std::vector<size_t> counts = EvenShards(total, num_shards);
  const size_t begin = ShardOffset(counts, shard), end = begin + counts[shard];
  std::vector<Parameter> mine;
  size_t offset = 0;
  for (const Parameter& p : params) {
    if (offset >= begin && (offset < end || (shard == num_shards - 1 && offset == total))) mine.push_back(p);
    offset += static_cast<size_t>(p.value.numel());
  }
  return mine;
}

absl::StatusOr<EncodedWeights> EncodeWeightShard(const std::vector<Parameter>& params, uint64_t version,
                                                 const WeightPushOptions& options, int shard, int num_shards) {
  if (num_shards < 1 || shard < 0 || shard >= num_shards) {
    return absl::InvalidArgumentError("weight shard " + std::to_string(shard) + " of " + std::to_string(num_shards) +
                                      ": the shard must be in [0, num_shards)");
  }
  GRPO_ASSIGN_OR_RETURN(EncodedWeights w, EncodeWeights(ParametersOfShard(params, shard, num_shards), version, options));
  w.shard_index = static_cast<uint32_t>(shard);
  w.shard_count = static_cast<uint32_t>(num_shards);
  return w;
}

absl::Status EmitWeightUpdate(const EncodedWeights& weights, size_t chunk_bytes,
                        const std::function<absl::Status(const grpo::v1::WeightUpdateChunk&)>& emit) {
  if (chunk_bytes == 0) return absl::InvalidArgumentError("chunk_bytes must be > 0");
  if (weights.version == 0) return absl::InvalidArgumentError("weight version 0 is reserved");
  uint32_t stream_crc = 0;
  uint64_t total = 0;
  grpo::v1::WeightUpdateChunk c;
  auto start_message = [&c, &weights] {
    c.Clear();
    c.set_version(weights.version);
    if (weights.shard_count > 1) {
      c.set_shard_index(weights.shard_index);
      c.set_shard_count(weights.shard_count);
    }
  };
  for (const WireTensor& t : weights.tensors) {
    GRPO_ASSIGN_OR_RETURN(grpo::v1::DType dtype, ToProtoDType(t.data.dtype()));
    start_message();
    c.set_tensor_name(t.name);
    c.set_dtype(dtype);
    for (int64_t d : t.data.shape()) c.add_shape(static_cast<uint64_t>(d));
    if (t.data.dtype() == DType::kF8E4M3) {
      c.mutable_fp8()->add_block_shape(kFp8BlockSize);
      c.mutable_fp8()->add_block_shape(kFp8BlockSize);
      c.mutable_fp8()->set_scale_tensor_name(t.name + "_scale_inv");
    }
    const auto* bytes = static_cast<const uint8_t*>(t.data.raw_data());
    const size_t n = t.data.nbytes();
    size_t off = 0;
    do {  // an empty tensor is one empty chunk
      const size_t len = std::min(chunk_bytes, n - off);
      const std::span<const uint8_t> data(bytes + off, len);
      c.set_offset(off);
      c.set_data(data.data(), len);
      c.set_crc32c(Crc32c(data));
      c.set_is_last(off + len == n);
      stream_crc = Crc32cExtend(stream_crc, data);
      total += len;
      GRPO_RETURN_IF_ERROR(emit(c));
      off += len;
    } while (off < n);
  }
  start_message();
  grpo::v1::WeightUpdateSummary* s = c.mutable_summary();
  s->set_version(weights.version);
  s->set_num_tensors(static_cast<uint32_t>(weights.tensors.size()));
  s->set_total_bytes(total);
  s->set_crc32c(stream_crc);
  return emit(c);
}

absl::Status EncodeWeightUpdate(const std::vector<Parameter>& params, uint64_t version,
                          const WeightPushOptions& options,
                          const std::function<absl::Status(const grpo::v1::WeightUpdateChunk&)>& emit) {
  GRPO_ASSIGN_OR_RETURN(EncodedWeights w, EncodeWeights(params, version, options));
  return EmitWeightUpdate(w, options.chunk_bytes, emit);
}

absl::StatusOr<grpo::v1::WeightUpdateAck> PushWeights(grpo::v1::RolloutService::StubInterface& stub,
                                              const EncodedWeights& weights, size_t chunk_bytes,
                                              absl::Time deadline, const std::string& push_token) {
  const std::string what = "UpdateWeights v" + std::to_string(weights.version);
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(deadline));
  if (!push_token.empty()) ctx.AddMetadata(kPushTokenMetadataKey, push_token);
  grpo::v1::WeightUpdateAck ack;
  std::unique_ptr<grpc::ClientWriterInterface<grpo::v1::WeightUpdateChunk>> writer =
      stub.UpdateWeights(&ctx, &ack);
  bool stream_broken = false;
  absl::Status sent = EmitWeightUpdate(weights, chunk_bytes, [&](const grpo::v1::WeightUpdateChunk& c) {
    if (writer->Write(c)) return absl::OkStatus();
    stream_broken = true;
    return absl::UnavailableError("the stream closed early");
  });
  if (sent.ok()) {
    writer->WritesDone();
  } else if (!stream_broken) {
    ctx.TryCancel();
  }
  const grpc::Status rpc = writer->Finish();
  if (!sent.ok() && !stream_broken) return grpo::WithContext(sent, what);
  if (!rpc.ok()) return FromGrpc(rpc, what);
  // An engine that rejects an update may answer before reading all of it (stream_broken).
  if (!ack.accepted()) {
    return absl::FailedPreconditionError(what + " rejected by the engine (serving v" +
                                      std::to_string(ack.serving_version()) + "): " + ack.reason());
  }
  if (!sent.ok()) return grpo::WithContext(sent, what);
  return ack;
}

absl::StatusOr<grpo::v1::WeightUpdateAck> PushWeights(grpo::v1::RolloutService::StubInterface& stub,
                                              const std::vector<Parameter>& params,
                                              uint64_t version, const WeightPushOptions& options,
                                              absl::Time deadline, const std::string& push_token) {
  GRPO_ASSIGN_OR_RETURN(EncodedWeights w, EncodeWeights(params, version, options));
  return PushWeights(stub, w, options.chunk_bytes, deadline, push_token);
}

std::vector<absl::StatusOr<grpo::v1::WeightUpdateAck>> PushWeightsToAll(
    const std::vector<grpo::v1::RolloutService::StubInterface*>& stubs,
    const EncodedWeights& weights, size_t chunk_bytes,
    absl::Time deadline, const std::string& push_token) {
  std::vector<absl::StatusOr<grpo::v1::WeightUpdateAck>> results(
      stubs.size(), absl::InternalError("push not run"));
  std::vector<std::thread> threads;
  for (size_t i = 0; i < stubs.size(); ++i) {
    threads.emplace_back([&, i] {
      if (stubs[i] == nullptr) {
        results[i] = absl::InvalidArgumentError("engine " + std::to_string(i) + ": no stub");
        return;
      }
      auto r = PushWeights(*stubs[i], weights, chunk_bytes, deadline, push_token);
      results[i] = r.ok() ? std::move(r) : absl::StatusOr<grpo::v1::WeightUpdateAck>(
                                              grpo::WithContext(r.status(), "engine " + std::to_string(i)));
    });
  }
  for (std::thread& t : threads) t.join();
  return results;
}

std::vector<absl::Status> PushWeightShards(Collective& ranks,
                                           const std::vector<grpo::v1::RolloutService::StubInterface*>& stubs,
                                           const std::vector<Parameter>& params, uint64_t version,
                                           const WeightPushOptions& options, absl::Time deadline,
                                           const std::string& push_token) {
  std::vector<absl::Status> results(stubs.size());
  std::vector<grpo::v1::RolloutService::StubInterface*> targets = stubs;
  auto shard = EncodeWeightShard(params, version, options, ranks.rank(), ranks.size());
  if (!shard.ok()) {
    for (auto& r : results) r = shard.status();
    targets.assign(stubs.size(), nullptr);
  }
  std::vector<double> failed(stubs.size(), 0.0);
  if (shard.ok()) {
    auto acks = PushWeightsToAll(targets, *shard, options.chunk_bytes, deadline, push_token);
    for (size_t i = 0; i < stubs.size(); ++i) {
      if (stubs[i] != nullptr && !acks[i].ok()) results[i] = acks[i].status();
    }
  }
  for (size_t i = 0; i < stubs.size(); ++i) failed[i] = results[i].ok() ? 0.0 : 1.0;
  if (absl::Status sum = ranks.AllReduceSum(absl::MakeSpan(failed)); !sum.ok()) {
    for (auto& r : results) r = sum;
    return results;
  }
  for (size_t i = 0; i < stubs.size(); ++i) {
    if (results[i].ok() && failed[i] > 0) {
      results[i] = absl::AbortedError("engine " + std::to_string(i) + ": the shard of " +
                                      std::to_string(static_cast<int>(failed[i])) + " other rank(s) of version " +
                                      std::to_string(version) + " failed (the engine does not serve the version)");
    }
  }
  return results;
}

absl::StatusOr<std::vector<Parameter>> ServingWeights(const ModelConfig& config,
                                              const std::vector<Parameter>& masters,
                                              const WeightPushOptions& options) {
  const std::vector<ParameterSpec> specs = ExpectedParameters(config);
  if (masters.size() != specs.size()) {
    return absl::InvalidArgumentError("ServingWeights: " + std::to_string(masters.size()) +
                                   " parameters, the config implies " +
                                   std::to_string(specs.size()));
  }
  for (size_t i = 0; i < specs.size(); ++i) {
    const ParameterSpec& m = masters[i].spec;
    if (m.name != specs[i].name || m.shape != specs[i].shape || m.is_matrix != specs[i].is_matrix) {
      return absl::InvalidArgumentError("ServingWeights: parameter " + std::to_string(i) + " is '" +
                                     m.name + "' " + ShapeToString(m.shape) + ", expected '" +
                                     specs[i].name + "' " + ShapeToString(specs[i].shape));
    }
  }
  GRPO_ASSIGN_OR_RETURN(EncodedWeights w, EncodeWeights(masters, /*version=*/1, options));
  std::map<std::string, const Tensor*> by_name;
  for (const WireTensor& t : w.tensors) by_name[t.name] = &t.data;
  std::vector<WireInput> inputs;
  for (const Parameter& m : masters) {
    const auto scale = by_name.find(m.spec.name + "_scale_inv");
    inputs.push_back({by_name.at(m.spec.name), scale == by_name.end() ? nullptr : scale->second});
  }
  GRPO_ASSIGN_OR_RETURN(std::vector<Tensor> values, WireToServing(inputs));
  for (size_t i = 0; i < masters.size(); ++i) {
    if (values[i].raw_data() == masters[i].value.raw_data()) {
      values[i] = values[i].Clone();  // F32 passes the master through: never alias it
    }
  }
  std::vector<Parameter> out;
  out.reserve(masters.size());
  for (size_t i = 0; i < masters.size(); ++i) out.push_back({specs[i], std::move(values[i])});
  return out;
}

absl::StatusOr<std::vector<Parameter>> ServingWeights(const ModelConfig& config,
                                              const std::vector<Parameter>& masters,
                                              WeightFormat format) {
  WeightPushOptions o;
  o.format = format;
  return ServingWeights(config, masters, o);
}

}  // namespace grpo

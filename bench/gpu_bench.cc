// Benchmarks of the cuda backend on one GPU, run by tools/gpu_check.sh (docs/PERFORMANCE.md, GPU
// section). Models are real architectures (model/presets.h) with random weights made on the
// device: no checkpoint files, and host memory stays small (one 64 MiB block of N(0, 0.02)
// values is uploaded once and copied device-to-device into every weight, then converted to the
// served format there, QuantizeOnDevice).
//
//   gpu_bench ceilings
//       copy_gb_s: a 1 GiB device-to-device copy, bytes read plus bytes written over its time;
//       bf16_gemm_tflops: LinearWeights of an 8192 x 8192 f32 activation by an 8192 x 8192 bf16
//       weight (the bf16 GEMM path of serving and of the learner, the activation's rounding to
//       bf16 included).
//   gpu_bench decode PRESET [--formats bf16,fp8] [--batches 1,64,256] [--budget-s S]
//       tokens/s of greedy decoding by the rollout engine (prompts of 16 tokens; the tokens after
//       each sequence's first over the time from the first prefill's end to the last sequence's
//       end, by the engine's GroupTiming) per served format and batch size; at batch 1 also the
//       HBM roofline: the
//       copy bandwidth over the weight bytes one token reads (active_weight_bytes: every
//       projection, the routers and norms, one embedding row (the whole table when it is the
//       tied output head), the output head, routed experts scaled by top_k / num_experts; FP8
//       block scales included; the KV cache is left out) and the fraction of it reached.
//   gpu_bench learn PRESET [--seqs N] [--seq-len T]
//       forward + backward of CausalLM with learner.precision bf16 (f32 masters, bf16 compute
//       copies) over N sequences of T tokens: model FLOPs per second (TrainFlops) and MFU
//       against the card's dense bf16 datasheet peak.
//   gpu_bench config PRESET DIR
//       writes DIR/config.json of the preset (bench/torch_gpu_learner_bench.py builds the same
//       model from it).
//   gpu_bench flops PRESET SEQS SEQ_LEN
//       prints TrainFlops as JSON (tests/gpu_bench_test.sh checks the PyTorch peer counts alike).
// `--backend NAME` (default cuda) runs decode or learn on another backend: tests run this
// program's logic on the CPU with nano presets (smaller random block and copy, no memory check).
//
// Every measurement prints one JSON line as soon as it is done, and a line
// "ROW<TAB>check<TAB>-<TAB>numbers" for gpu_check's table; a model that does not fit the
// device's free memory prints a row saying so instead. Exit 0; 1 on an error; 2 on bad
// arguments or no usable cuda backend.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <new>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/causal_lm.h"
#include "model/model_config.h"
#include "model/ops/registry.h"
#include "model/parameters.h"
#include "model/presets.h"
#include "rollout/engine.h"

namespace grpo {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Prints a table row for tools/gpu_check.sh (result "-": a measurement, not a check).
void Row(const std::string& check, const std::string& numbers) {
  std::printf("ROW\t%s\t-\t%s\n", check.c_str(), numbers.c_str());
  std::fflush(stdout);
}

void Json(const nlohmann::json& j) {
  std::printf("%s\n", j.dump().c_str());
  std::fflush(stdout);
}

template <class... Args>
std::string Format(const char* fmt, Args... args) {
  char buf[512];
  std::snprintf(buf, sizeof buf, fmt, args...);
  return buf;
}

[[noreturn]] void Fail(const std::string& what) {
  std::fprintf(stderr, "gpu_bench: %s\n", what.c_str());
  std::exit(1);
}

// The device: its name (registry's ListDevices) and the driver's count of its free memory.
std::string DeviceName() {
  for (const DeviceInfo& d : ListDevices()) {
    if (d.id == "cuda:0") return d.name;
  }
  return "unknown device";
}

// On another backend (--backend, for tests of this program): unlimited.
double FreeDeviceBytes(const Backend& be) {
  if (std::string(be.name()) != "cuda") return 1e30;
  size_t free_bytes = 0, total_bytes = 0;
  if (cudaMemGetInfo(&free_bytes, &total_bytes) != cudaSuccess) return 0;
  return static_cast<double>(free_bytes);
}

// Dense bf16 tensor-core peak of the datasheet in TFLOP/s (no sparsity), 0 when unknown.
double DatasheetBf16Tflops(const std::string& name) {
  if (name.find("H100") == std::string::npos && name.find("H200") == std::string::npos) return 0;
  if (name.find("PCIe") != std::string::npos) return 756;
  if (name.find("NVL") != std::string::npos) return 835;
  return 989;  // SXM
}

// Device f32 buffers filled with N(0, 0.02) values: copies (device to device) of one uploaded
// random block at offsets that vary with the salt and the chunk, so no two weights are equal.
class RandomFill {
 public:
  // 64 MiB of values on the GPU; 1 MiB on another backend (--backend, tests of this program).
  explicit RandomFill(Backend& be)
      : be_(be), chunk_(std::string(be.name()) == "cuda" ? int64_t{1} << 24 : int64_t{1} << 18),
        block_size_(chunk_ + 4099) {
    std::mt19937_64 rng(20261206);
    std::normal_distribution<float> normal(0.0f, 0.02f);
    std::vector<float> host(block_size_);
    for (float& v : host) v = normal(rng);
    block_ = Upload(be, host);
  }

  Buffer Make(int64_t n, int64_t salt) {
    Buffer out(&be_, n);
    int64_t chunk = 0;
    for (int64_t pos = 0; pos < n; ++chunk) {
      const int64_t len = std::min(n - pos, chunk_);
      const int64_t offset = (salt * 104729 + chunk * 7919) % (block_size_ - len + 1);
      be_.CopyDeviceToDevice(block_.data() + offset, out.data() + pos, len * static_cast<int64_t>(sizeof(float)));
      pos += len;
    }
    return out;
  }

 private:
  Backend& be_;
  const int64_t chunk_, block_size_;
  Buffer block_;
};

// Median of `windows` timings of `reps` back-to-back calls of `op`, per call, in seconds.
double TimePerCall(Backend& be, const std::function<void()>& op, int reps, int windows) {
  op();
  be.Synchronize();
  std::vector<double> t;
  for (int w = 0; w < windows; ++w) {
    const auto t0 = Clock::now();
    for (int r = 0; r < reps; ++r) op();
    be.Synchronize();
    t.push_back(Seconds(t0) / reps);
  }
  return Median(t);
}

// Device-to-device copy bandwidth in GB/s, counting bytes read plus bytes written.
double CopyGBs(Backend& be, RandomFill& fill) {
  // 1 GiB of f32 on the GPU; 16 MiB on another backend (--backend, for tests of this program).
  const int64_t n = std::string(be.name()) == "cuda" ? int64_t{1} << 28 : int64_t{1} << 22;
  Buffer src = fill.Make(n, 1), dst(&be, n);
  const int64_t bytes = n * static_cast<int64_t>(sizeof(float));
  const double t = TimePerCall(be, [&] { be.CopyDeviceToDevice(src.data(), dst.data(), bytes); }, 10, 5);
  return 2.0 * bytes / t / 1e9;
}

int Ceilings(Backend& be) {
  RandomFill fill(be);
  const double gbs = CopyGBs(be, fill);
  const int64_t d = 8192;
  Buffer x = fill.Make(d * d, 2), y(&be, d * d);
  DeviceParameter w;
  {
    Buffer w32 = fill.Make(d * d, 3);
    w = QuantizeOnDevice(be, w32, d, d, DType::kBF16, nullptr);
  }
  const WeightView view{DType::kBF16, w.value.raw(), nullptr, d, d, 0};
  const double t = TimePerCall(be, [&] { be.LinearWeights(x.data(), view, nullptr, y.data(), d, d, d); }, 5, 5);
  const double tflops = 2.0 * d * d * d / t / 1e12;
  const std::string name = DeviceName();
  Json({{"bench", "ceilings"}, {"device", name}, {"copy_gb_s", gbs}, {"bf16_gemm_tflops", tflops},
        {"datasheet_bf16_tflops", DatasheetBf16Tflops(name)}});
  Row("ceiling: device copy", Format("%.0f GB/s (1 GiB copy, read + write)", gbs));
  Row("ceiling: bf16 GEMM 8192^3", Format("%.0f TFLOP/s through LinearWeights (datasheet %.0f)", tflops,
                                          DatasheetBf16Tflops(name)));
  return 0;
}

// ---- models with random weights on the device ---------------------------------------------------

struct DeviceModel {
  std::unique_ptr<CausalLM> model;
  double active_weight_bytes = 0;  // per decoded token (see the file comment)
};

DType HeldDType(const ParameterSpec& spec, WeightFormat format) {
  if (!ServedNarrow(spec) || spec.shape.size() != 2 || format == WeightFormat::kF32) return DType::kF32;
  return format == WeightFormat::kBF16 ? DType::kBF16 : DType::kF8E4M3;
}

// Bytes parameter `spec` takes held as `dtype` (FP8: codes plus f32 128x128 block scales).
double HeldBytes(const ParameterSpec& spec, DType dtype) {
  const double n = static_cast<double>(NumElements(spec.shape));
  if (dtype == DType::kF32) return 4 * n;
  if (dtype == DType::kBF16) return 2 * n;
  const double blocks = std::ceil(spec.shape[0] / 128.0) * std::ceil(spec.shape[1] / 128.0);
  return n + 4 * blocks;
}

// The share of parameter `spec` (held as `bytes`) that decoding one token reads.
double ActiveBytes(const ModelConfig& c, const ParameterSpec& spec, double bytes) {
  if (spec.name == "model.embed_tokens.weight") {
    return c.tie_word_embeddings ? bytes : bytes / static_cast<double>(c.vocab_size);
  }
  if (spec.name.find(".mlp.experts.") != std::string::npos) {
    return bytes * static_cast<double>(c.num_experts_per_tok) / static_cast<double>(c.num_experts);
  }
  return bytes;
}

double ModelBytes(const ModelConfig& c, WeightFormat format) {
  double total = 0;
  for (const ParameterSpec& spec : ExpectedParameters(c)) total += HeldBytes(spec, HeldDType(spec, format));
  return total;
}

// The preset's model with random weights (HF's init: N(0, 0.02), norms 1, biases and the
// router's correction bias 0), its served matrices in `format`, built on the device.
DeviceModel BuildModel(Backend& be, const ModelConfig& c, WeightFormat format) {
  RandomFill fill(be);
  Buffer nonfinite = Upload(be, std::vector<int32_t>{0});
  std::vector<DeviceParameter> values;
  DeviceModel out;
  const std::vector<ParameterSpec> specs = ExpectedParameters(c);
  for (size_t i = 0; i < specs.size(); ++i) {
    const ParameterSpec& spec = specs[i];
    const int64_t n = NumElements(spec.shape);
    const DType dtype = HeldDType(spec, format);
    DeviceParameter p;
    if (spec.name.ends_with("norm.weight") || spec.name.ends_with("layernorm.weight")) {
      p.value = Upload(be, std::vector<float>(n, 1.0f));
    } else if (spec.name.ends_with(".bias") || spec.name.ends_with("e_score_correction_bias")) {
      p.value = Buffer(&be, n);
      be.Zero(p.value.data(), n);
    } else if (dtype == DType::kF32) {
      p.value = fill.Make(n, static_cast<int64_t>(i));
    } else {
      Buffer f32 = fill.Make(n, static_cast<int64_t>(i));
      p = QuantizeOnDevice(be, f32, spec.shape[0], spec.shape[1], dtype, nonfinite.i32());
    }
    out.active_weight_bytes += ActiveBytes(c, spec, HeldBytes(spec, dtype));
    values.push_back(std::move(p));
  }
  if (DownloadI32(be, nonfinite)[0] != 0) Fail("random weights: non-finite values");
  auto model = CausalLM::CreateOnDevice(c, std::move(values), be);
  if (!model.ok()) Fail(model.status().ToString());
  out.model = std::move(model).value();
  return out;
}

// ---- decode ----------------------------------------------------------------------------------

std::vector<GroupRequest> Prompts(int batch, int new_tokens, int salt, int64_t vocab) {
  std::vector<GroupRequest> rs(batch);
  for (int i = 0; i < batch; ++i) {
    for (int j = 0; j < 16; ++j) rs[i].prompt.push_back(static_cast<int32_t>((7919 * i + 104729 * salt + 31 * j) % vocab));
    rs[i].sampling.temperature = 0.0;
    rs[i].max_new_tokens = new_tokens;
  }
  return rs;
}

// Tokens decoded after the prefill and the seconds they took, from the engine's timing of each
// group (all submitted together): from the first group's first token (its prefill done) to the
// last group's end; each sequence's first token comes with its prefill and is not counted.
struct DecodeRun {
  double tokens = 0, seconds = 0;
};

DecodeRun RunDecode(RolloutEngine& engine, int64_t vocab, int batch, int new_tokens, int salt) {
  auto r = engine.GenerateGroups(Prompts(batch, new_tokens, salt, vocab));
  if (!r.ok()) Fail(r.status().ToString());
  double first = 1e30, last = 0;
  DecodeRun run;
  for (const GroupResult& g : *r) {
    first = std::min(first, g.timing.queue_seconds + g.timing.prefill_seconds);
    last = std::max(last, g.timing.total_seconds);
    run.tokens += static_cast<double>(g.timing.completion_tokens - 1);
  }
  run.seconds = last - first;
  return run;
}

// Decoding tokens/s at `batch`: a warm-up run of 4 new tokens per sequence (kernels, GEMM
// heuristics, the memory pool) sizes the measured run to about budget_s.
double DecodeTokS(RolloutEngine& engine, int64_t vocab, int batch, double budget_s, int* salt) {
  const DecodeRun warm = RunDecode(engine, vocab, batch, 4, (*salt)++);
  const double per_step = std::max(warm.seconds / 3.0, 1e-5);
  const int steps = static_cast<int>(std::clamp(budget_s / per_step, 4.0, batch == 1 ? 128.0 : 48.0));
  const DecodeRun run = RunDecode(engine, vocab, batch, steps, (*salt)++);
  if (!(run.seconds > 0) || run.tokens != batch * (steps - 1.0)) {
    Fail("decode batch " + std::to_string(batch) + ": " + std::to_string(run.tokens) + " tokens in " +
         std::to_string(run.seconds) + " s (expected " + std::to_string(batch * (steps - 1)) + " tokens)");
  }
  return run.tokens / run.seconds;
}

int Decode(Backend& be, const std::string& preset, const std::vector<std::string>& formats,
           const std::vector<int>& batches, double budget_s) {
  auto config = PresetConfig(preset);
  if (!config.ok()) Fail(config.status().ToString());
  // Free memory before this process allocates anything: later, memory a freed model held stays
  // in the backend's pool (free to it, not to cudaMemGetInfo).
  const double free_bytes = FreeDeviceBytes(be);
  double gbs = 0;
  {
    RandomFill fill(be);
    gbs = CopyGBs(be, fill);
  }
  for (const std::string& name : formats) {
    auto format = ParseWeightFormat(name);
    if (!format.ok()) Fail(format.status().ToString());
    const std::string label = "decode " + preset + " " + name;
    const int64_t kv_bytes = int64_t{6} << 30;
    const double need = ModelBytes(*config, *format) + static_cast<double>(kv_bytes) + (int64_t{3} << 30);
    if (need > free_bytes) {
      Json({{"bench", "decode"}, {"preset", preset}, {"format", name}, {"skipped", "does not fit"},
            {"need_bytes", need}, {"free_bytes", free_bytes}});
      Row(label, Format("skipped: needs %.1f GB (weights + 6 GiB KV + 3 GiB work), %.1f GB free", need / 1e9,
                        free_bytes / 1e9));
      continue;
    }
    try {
      const auto t0 = Clock::now();
      DeviceModel m = BuildModel(be, *config, *format);
      const double build_s = Seconds(t0);
      const double active = m.active_weight_bytes;
      EngineOptions o;
      o.kv_memory_bytes = kv_bytes;
      o.max_running_sequences = *std::max_element(batches.begin(), batches.end());
      auto engine = RolloutEngine::Create(std::move(m.model), o);
      if (!engine.ok()) Fail(engine.status().ToString());
      int salt = 1;
      for (int b : batches) {
        const double tok_s = DecodeTokS(**engine, config->vocab_size, b, budget_s, &salt);
        nlohmann::json j = {{"bench", "decode"}, {"preset", preset}, {"format", name}, {"batch", b},
                            {"tok_s", tok_s}, {"build_s", build_s}};
        if (b == 1) {
          const double bound = gbs * 1e9 / active;
          j["active_weight_bytes"] = active;
          j["copy_gb_s"] = gbs;
          j["roofline_tok_s"] = bound;
          j["roofline_fraction"] = tok_s / bound;
          Row(label + " b1", Format("%.1f tok/s = %.0f%% of HBM roofline (%.0f tok/s: %.2f GB/token at %.0f GB/s)",
                                    tok_s, 100 * tok_s / bound, bound, active / 1e9, gbs));
        } else {
          Row(label + " b" + std::to_string(b), Format("%.0f tok/s (%.1f per sequence)", tok_s, tok_s / b));
        }
        Json(j);
      }
    } catch (const std::bad_alloc& e) {
      Json({{"bench", "decode"}, {"preset", preset}, {"format", name}, {"skipped", e.what()}});
      Row(label, std::string("skipped: out of device memory: ") + e.what());
    }
  }
  return 0;
}

// ---- learn -----------------------------------------------------------------------------------

// Model FLOPs of one forward + backward over `seqs` sequences of `len` tokens, as
// bench/torch_gpu_learner_bench.py counts them: 2 per multiply-add of every projection matrix
// and the output head (not the embedding lookup, not the router) per token, plus causal
// attention's q.k and p.v over the len * (len + 1) / 2 position pairs of each sequence in every
// head and layer; the backward twice the forward.
double TrainFlops(const ModelConfig& c, int64_t seqs, int64_t len) {
  double matrix = static_cast<double>(c.vocab_size) * static_cast<double>(c.hidden_size);  // the output head
  for (const ParameterSpec& spec : ExpectedParameters(c)) {
    if (spec.is_matrix) matrix += static_cast<double>(NumElements(spec.shape));
  }
  const double tokens = static_cast<double>(seqs * len);
  const double pairs = static_cast<double>(seqs) * len * (len + 1) / 2.0;
  const double attention = 2.0 * static_cast<double>(c.qk_head_dim() + c.value_head_dim()) *
                           static_cast<double>(c.num_attention_heads * c.num_hidden_layers) * pairs;
  return 3.0 * (2.0 * matrix * tokens + attention);
}

int Learn(Backend& be, const std::string& preset, int64_t seqs, int64_t len) {
  auto config = PresetConfig(preset);
  if (!config.ok()) Fail(config.status().ToString());
  const std::string label = "learn " + preset + " grpo bf16";
  try {
    DeviceModel m = BuildModel(be, *config, WeightFormat::kF32);
    CausalLM& model = *m.model;
    if (absl::Status s = model.SetComputeDType(DType::kBF16); !s.ok()) Fail(s.ToString());
    std::vector<std::vector<int32_t>> tokens(seqs);
    for (int64_t s = 0; s < seqs; ++s) {
      for (int64_t t = 0; t < len; ++t) tokens[s].push_back(static_cast<int32_t>((7919 * s + 31 * t + 17) % config->vocab_size));
    }
    const TokenBatch batch = TokenBatch::FromSequences(tokens);
    const std::vector<float> weights(batch.num_targets(), 1.0f / static_cast<float>(batch.num_targets()));
    std::vector<Buffer> grads = model.NewGradients();
    auto step = [&] {
      auto out = model.Forward(batch, {.keep_activations = true});
      if (!out.ok()) Fail(out.status().ToString());
      if (absl::Status s = model.Backward(weights, &grads); !s.ok()) Fail(s.ToString());
      be.Synchronize();
    };
    step();  // warm-up
    std::vector<double> t;
    for (int r = 0; r < 3; ++r) {
      const auto t0 = Clock::now();
      step();
      t.push_back(Seconds(t0));
    }
    const double secs = Median(t);
    const double tflops = TrainFlops(*config, seqs, len) / secs / 1e12;
    const std::string device = DeviceName();
    const double peak = DatasheetBf16Tflops(device);
    Json({{"bench", "learn"}, {"impl", "grpo"}, {"preset", preset}, {"seqs", seqs}, {"seq_len", len},
          {"step_s", secs}, {"flops", TrainFlops(*config, seqs, len)}, {"tflops", tflops}, {"peak_tflops", peak}, {"mfu", peak > 0 ? tflops / peak : 0.0},
          {"device", device}});
    Row(label, Format("%.1f TFLOP/s = %.1f%% MFU of %.0f (%lld x %lld tokens, %.0f ms/step)", tflops,
                      peak > 0 ? 100 * tflops / peak : 0.0, peak, static_cast<long long>(seqs),
                      static_cast<long long>(len), secs * 1e3));
  } catch (const std::bad_alloc& e) {
    Json({{"bench", "learn"}, {"impl", "grpo"}, {"preset", preset}, {"skipped", e.what()}});
    Row(label, std::string("skipped: out of device memory: ") + e.what());
  }
  return 0;
}

int WriteConfig(const std::string& preset, const std::string& dir) {
  auto config = PresetConfig(preset);
  if (!config.ok()) Fail(config.status().ToString());
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/config.json") << config->ToJson().dump(2) << "\n";
  return 0;
}

int Usage();

int PrintFlops(const std::string& preset, int64_t seqs, int64_t len) {
  auto config = PresetConfig(preset);
  if (!config.ok()) Fail(config.status().ToString());
  if (seqs <= 0 || len <= 0) return Usage();
  Json({{"preset", preset}, {"seqs", seqs}, {"seq_len", len}, {"flops", TrainFlops(*config, seqs, len)}});
  return 0;
}

std::vector<std::string> SplitList(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    const size_t comma = s.find(',', start);
    out.push_back(s.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

int Usage() {
  std::fprintf(stderr,
               "usage: gpu_bench ceilings\n"
               "       gpu_bench decode PRESET [--formats bf16,fp8] [--batches 1,64,256] [--budget-s 2] [--backend cuda]\n"
               "       gpu_bench learn PRESET [--seqs 4] [--seq-len 1024] [--backend cuda]\n"
               "       gpu_bench config PRESET DIR\n"
               "       gpu_bench flops PRESET SEQS SEQ_LEN\n");
  return 2;
}

int Main(int argc, char** argv) {
  if (argc < 2) return Usage();
  const std::string mode = argv[1];
  if (mode == "config") return argc == 4 ? WriteConfig(argv[2], argv[3]) : Usage();
  if (mode == "flops") return argc == 5 ? PrintFlops(argv[2], std::atoll(argv[3]), std::atoll(argv[4])) : Usage();
  if (mode != "ceilings" && mode != "decode" && mode != "learn") return Usage();
  if (mode != "ceilings" && argc < 3) return Usage();
  std::string formats = "bf16,fp8", batches = "1,64,256", backend_name = "cuda";
  double budget_s = 2;
  int64_t seqs = 4, len = 1024;
  for (int i = mode == "ceilings" ? 2 : 3; i < argc; ++i) {
    const std::string arg = argv[i];
    if (i + 1 >= argc) return Usage();
    const std::string value = argv[++i];
    if (arg == "--formats") {
      formats = value;
    } else if (arg == "--batches") {
      batches = value;
    } else if (arg == "--budget-s") {
      budget_s = std::atof(value.c_str());
    } else if (arg == "--seqs") {
      seqs = std::atoll(value.c_str());
    } else if (arg == "--seq-len") {
      len = std::atoll(value.c_str());
    } else if (arg == "--backend") {
      backend_name = value;
    } else {
      return Usage();
    }
  }
  std::vector<int> batch_sizes;
  for (const std::string& b : SplitList(batches)) batch_sizes.push_back(std::atoi(b.c_str()));
  if (budget_s <= 0 || seqs <= 0 || len < 2 ||
      std::any_of(batch_sizes.begin(), batch_sizes.end(), [](int b) { return b <= 0 || b > 4096; })) {
    return Usage();
  }
  auto backend = GetBackend(backend_name);
  if (!backend.ok()) {
    std::fprintf(stderr, "gpu_bench: %s\n", std::string(backend.status().message()).c_str());
    return 2;
  }
  Backend& be = **backend;
  if (mode == "ceilings") return Ceilings(be);
  if (mode == "decode") return Decode(be, argv[2], SplitList(formats), batch_sizes, budget_s);
  return Learn(be, argv[2], seqs, len);
}

}  // namespace
}  // namespace grpo

int main(int argc, char** argv) { return grpo::Main(argc, argv); }

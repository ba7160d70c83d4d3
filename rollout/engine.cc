#include "rollout/engine.h"

#include <algorithm>
#include <cstdio>
#include <deque>
#include <map>
#include <new>
#include <optional>
#include <random>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/checked_math.h"
#include "core/memory_plan.h"
#include "core/thread_pool.h"
#include "core/utf8.h"
#include "model/model_memory.h"
#include "rollout/paged_kv_cache.h"

namespace grpo {
namespace {

// Elapsed times (GroupTiming) are measured on the monotonic clock; absl::Time is wall time.
using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// One tool call running on a worker thread (EngineOptions::tool_call_threads): the worker sets
// `result` and then `done`, both under `mu`; the loop thread takes the result once done.
struct PendingCall {
  absl::Mutex mu;
  bool done ABSL_GUARDED_BY(mu) = false;
  absl::StatusOr<ToolResult> result ABSL_GUARDED_BY(mu) = absl::UnknownError("no result yet");
};

// Threads that run environment calls off the engine's loop thread, in submission order. A call
// whose sample was aborted meanwhile runs to its end and its result is dropped. The destructor
// waits for the calls that run (each bounded by its tool's own deadline) and drops the queued.
class ToolCallWorkers {
 public:
  // `on_done` runs on a worker after each call.
  ToolCallWorkers(int threads, std::function<void()> on_done) : on_done_(std::move(on_done)) {
    for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { Work(); });
  }
  ~ToolCallWorkers() {
    {
      absl::MutexLock l(&mu_);
      stopping_ = true;
    }
    for (std::thread& t : threads_) t.join();
  }
  void Run(std::shared_ptr<Environment> env, std::string text, std::shared_ptr<PendingCall> call) {
    absl::MutexLock l(&mu_);
    queue_.push_back({std::move(env), std::move(text), std::move(call)});
  }

 private:
  struct Task {
    std::shared_ptr<Environment> env;
    std::string text;
    std::shared_ptr<PendingCall> call;
  };
  bool HasWork() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_ || !queue_.empty(); }
  void Work() {
    for (;;) {
      Task t;
      {
        absl::MutexLock l(&mu_);
        mu_.Await(absl::Condition(this, &ToolCallWorkers::HasWork));
        if (stopping_) return;
        t = std::move(queue_.front());
        queue_.pop_front();
      }
      absl::StatusOr<ToolResult> result = t.env->Call(t.text);
      {
        absl::MutexLock l(&t.call->mu);
        t.call->result = std::move(result);
        t.call->done = true;
      }
      on_done_();
    }
  }
  std::function<void()> on_done_;
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<Task> queue_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> threads_;
};

struct SampleState {
  SampleResult r;
  std::mt19937_64 rng;
  int64_t seq = -1;     // cache sequence while it holds blocks
  int64_t cached = 0;   // positions of prompt + tokens in its cache
  bool done = false;
  std::optional<tokenizer::StreamDecoder> decoder;  // for stop strings and tool calls
  std::string text;
  int64_t tool_calls = 0;
  // The tool call it waits for (off the loop thread); it takes no steps meanwhile.
  std::shared_ptr<PendingCall> pending;
  // A tool result spent max_new_tokens and the request wants routing: the result's tokens are
  // fed (their routing recorded) and then the sample ends (kLength), with no token drawn.
  bool finish_after_feed = false;
};

struct Group {
  uint64_t id = 0;
  GroupRequest req;
  GroupCallbacks cb;
  int64_t plen = 0;
  int64_t prompt_seq = -1;
  int64_t prefilled = 0;        // prompt positions in prompt_seq
  bool admitted = false;
  bool first_sampled = false;   // the first token of every sample is drawn
  bool cancelled = false;
  int64_t unfinished = 0;
  std::vector<SampleState> samples;
  std::vector<int32_t> prompt_routing;
  Clock::time_point submitted, admitted_at, prefilled_at;
  bool timed_admission = false;
};

// One entry of a step: a prompt chunk of a group or the new tokens of a sample.
struct Entry {
  Group* g = nullptr;
  int64_t sample = -1;  // -1: prompt chunk
  int64_t from = 0, to = 0;
  bool samples_next = false;  // its logits give a token
};

// A token to draw: from row `row` of the step's output logits for sample `s` of `g`; `last`
// is the index in the step's input of the token whose logits these are.
struct Draw {
  Group* g;
  int64_t s;
  int64_t row;
  int64_t last;
  SampledToken t;  // filled by DrawTokens
};

// The step's new tokens, sequence by sequence, with their cache sequences and past positions.
StepInput BuildStepInput(const std::vector<Entry>& entries) {
  StepInput in;
  for (const Entry& e : entries) {
    if (e.sample < 0) {
      in.tokens.insert(in.tokens.end(), e.g->req.prompt.begin() + e.from, e.g->req.prompt.begin() + e.to);
      in.cache_seq.push_back(e.g->prompt_seq);
    } else {
      const SampleState& s = e.g->samples[e.sample];
      for (int64_t p = e.from; p < e.to; ++p) {
        in.tokens.push_back(p < e.g->plen ? e.g->req.prompt[p] : s.r.tokens[p - e.g->plen]);
      }
      in.cache_seq.push_back(s.seq);
    }
    in.past.push_back(e.from);
    in.offsets.push_back(static_cast<int64_t>(in.tokens.size()));
    in.return_routing = in.return_routing || e.g->req.return_routing;
  }
  return in;
}

// Draws every token on the backend (Backend::Sample through CausalLM::SampleNext): each sample's
// own RNG gives its uniform draw, so draws depend only on the sample's seed; only ids and
// logprobs come back to the host.
void DrawTokens(CausalLM& model, const StepOutput& out, std::vector<Draw>* draws) {
  std::vector<SamplingRow> rows(draws->size());
  for (size_t i = 0; i < draws->size(); ++i) {
    const Draw& d = (*draws)[i];
    const SamplingOptions& so = d.g->req.sampling;
    rows[i] = {.temperature = so.temperature, .top_p = so.top_p, .top_k = so.top_k, .min_p = so.min_p,
               .uniform = so.temperature == 0.0
                              ? 0.0
                              : std::generate_canonical<double, 64>(d.g->samples[d.s].rng),
               .row = d.row};
  }
  const SampledTokens sampled = model.SampleNext(out, rows);
  for (size_t i = 0; i < draws->size(); ++i) {
    (*draws)[i].t = {sampled.tokens[i], sampled.logprobs[i], sampled.raw_logprobs[i]};
  }
}

// Whether the text that grew from `old` bytes completed `marker`.
bool Completes(const std::string& text, size_t old, const std::string& marker) {
  const size_t from = old >= marker.size() ? old - marker.size() + 1 : 0;
  return text.find(marker, from) != std::string::npos;
}

// What follows `token` (appended to s.r.tokens): the sample ends (a stop token, a stop string
// completed in its text, max_new_tokens reached, or the tool-call marker after the last call
// allowed), or, with *tool_call set, the environment runs the call that the token completed.
std::optional<FinishReason> StopReason(const GroupRequest& req, int32_t token, SampleState* s, bool* tool_call) {
  *tool_call = false;
  const auto& stops = req.stop_tokens;
  if (std::find(stops.begin(), stops.end(), token) != stops.end()) return FinishReason::kStop;
  if (s->decoder) {
    const size_t old = s->text.size();
    auto piece = s->decoder->Push(token);
    if (piece.ok()) s->text += *piece;
    for (const std::string& stop : req.stop_strings) {
      if (Completes(s->text, old, stop)) return FinishReason::kStop;
    }
    if (req.environment && Completes(s->text, old, req.environment->call_end())) {
      if (s->tool_calls >= req.max_tool_calls) return FinishReason::kStop;
      if (static_cast<int64_t>(s->r.tokens.size()) < req.max_new_tokens) {
        *tool_call = true;
        return std::nullopt;
      }
    }
  }
  if (static_cast<int64_t>(s->r.tokens.size()) >= req.max_new_tokens) return FinishReason::kLength;
  return std::nullopt;
}

}  // namespace

class RolloutEngine::Impl {
 public:
  Impl(std::unique_ptr<CausalLM> model, EngineOptions o, int64_t num_blocks)
      : model_(std::move(model)), o_(o), pool_(model_->config(), num_blocks, o.block_size, model_->backend()), cache_(pool_) {
    const auto& specs = model_->parameter_specs();
    for (size_t i = 0; i < specs.size(); ++i) {
      index_[specs[i].name] = static_cast<int>(i);
      held_.push_back({specs[i].shape, model_->parameter_dtype(i)});
    }
    const ModelConfig& c = model_->config();
    L_ = c.NumMoeLayers();
    K_ = L_ > 0 ? c.num_experts_per_tok : 0;
    stats_.total_blocks = stats_.free_blocks = num_blocks;
    if (o_.tool_call_threads > 0) {
      tool_workers_ = std::make_unique<ToolCallWorkers>(static_cast<int>(o_.tool_call_threads), [this] {
        absl::MutexLock l(&mu_);  // wakes the loop thread (HasInput)
        ++tool_results_;
      });
    }
    thread_ = std::thread([this] { Loop(); });
  }

  ~Impl() {
    {
      absl::MutexLock l(&mu_);
      stopping_ = true;
    }
    thread_.join();
  }

  absl::Status Validate(const GroupRequest& r) const {
    const ModelConfig& c = model_->config();
    if (r.prompt.empty()) return absl::InvalidArgumentError("empty prompt");
    for (size_t i = 0; i < r.prompt.size(); ++i) {
      if (r.prompt[i] < 0 || r.prompt[i] >= c.vocab_size) {
        return absl::InvalidArgumentError(absl::StrCat("prompt token ", r.prompt[i], " at position ", i,
                                                       " is outside the vocabulary [0, ", c.vocab_size, ")"));
      }
    }
    if (r.n <= 0) return absl::InvalidArgumentError("n (group size) must be positive, got " + std::to_string(r.n));
    if (r.max_new_tokens <= 0) {
      return absl::InvalidArgumentError("max_new_tokens must be positive, got " + std::to_string(r.max_new_tokens));
    }
    GRPO_RETURN_IF_ERROR(ValidateSampling(r.sampling));
    const int64_t plen = static_cast<int64_t>(r.prompt.size());
    if (plen + r.max_new_tokens > c.max_position_embeddings) {
      return absl::InvalidArgumentError(absl::StrCat("prompt (", plen, " tokens) + max_new_tokens (",
                                                     r.max_new_tokens, ") exceeds max_position_embeddings ",
                                                     c.max_position_embeddings));
    }
    if (!r.stop_strings.empty() && o_.tokenizer == nullptr) {
      return absl::InvalidArgumentError("stop_strings need a tokenizer, and the engine has none");
    }
    for (const std::string& s : r.stop_strings) {
      if (s.empty()) return absl::InvalidArgumentError("empty stop string");
    }
    GRPO_RETURN_IF_ERROR(ValidateToolUse(r));
    // The prompt's blocks (held by the group) plus one sample's own blocks must fit.
    const int64_t bs = o_.block_size;
    const int64_t need = CeilDiv(plen, bs) + CeilDiv(plen + r.max_new_tokens - 1, bs) - plen / bs;
    if (need > pool_.num_blocks()) {
      return absl::ResourceExhaustedError(absl::StrCat("a sample of this request needs up to ", need,
                                                       " KV blocks, the pool has ", pool_.num_blocks()));
    }
    return absl::OkStatus();
  }

  absl::Status ValidateToolUse(const GroupRequest& r) const {
    if (r.environment == nullptr) return absl::OkStatus();
    if (o_.tokenizer == nullptr) return absl::InvalidArgumentError("an environment (tool use) needs a tokenizer, and the engine has none");
    if (r.environment->call_end().empty()) return absl::InvalidArgumentError("the environment's call marker is empty");
    if (r.max_tool_calls < 0) {
      return absl::InvalidArgumentError("max_tool_calls must be >= 0, got " + std::to_string(r.max_tool_calls));
    }
    if (r.max_tool_output_tokens <= 0) {
      return absl::InvalidArgumentError("max_tool_output_tokens must be positive, got " +
                                        std::to_string(r.max_tool_output_tokens));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<uint64_t> Submit(GroupRequest r, GroupCallbacks cb) {
    GRPO_RETURN_IF_ERROR(Validate(r));
    std::vector<GroupRequest> rs;
    std::vector<GroupCallbacks> cbs;
    rs.push_back(std::move(r));
    cbs.push_back(std::move(cb));
    GRPO_ASSIGN_OR_RETURN(std::vector<uint64_t> ids, SubmitAll(std::move(rs), std::move(cbs)));
    return ids[0];
  }

  // Validated requests, queued together: the engine thread takes them in one step, so their
  // admission (and with it which tokens share a batch, which decides the last bits of the
  // results) does not depend on how fast the caller hands them over.
  absl::StatusOr<std::vector<uint64_t>> SubmitAll(std::vector<GroupRequest> rs,
                                          std::vector<GroupCallbacks> cbs) {
    std::vector<std::unique_ptr<Group>> gs;
    for (size_t i = 0; i < rs.size(); ++i) gs.push_back(MakeGroup(std::move(rs[i]), std::move(cbs[i])));
    std::vector<uint64_t> ids;
    absl::MutexLock l(&mu_);  // the loop thread wakes when it is released (HasInput)
    if (draining_) return absl::UnavailableError("the rollout engine is draining and takes no new requests");
    for (auto& g : gs) {
      ids.push_back(g->id = next_id_++);
      incoming_.push_back(std::move(g));
      ++in_flight_;
    }
    return ids;
  }

  std::unique_ptr<Group> MakeGroup(GroupRequest r, GroupCallbacks cb) {
    auto g = std::make_unique<Group>();
    g->req = std::move(r);
    g->cb = std::move(cb);
    g->plen = static_cast<int64_t>(g->req.prompt.size());
    g->unfinished = g->req.n;
    g->submitted = Clock::now();
    g->samples.resize(g->req.n);
    for (int64_t s = 0; s < g->req.n; ++s) {
      const uint64_t seed = g->req.seed;
      std::seed_seq seq{static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32),
                        static_cast<uint32_t>(s), static_cast<uint32_t>(s >> 32)};
      g->samples[s].rng.seed(seq);
      g->samples[s].r.index = s;
      if (!g->req.stop_strings.empty() || g->req.environment) g->samples[s].decoder.emplace(*o_.tokenizer);
    }
    return g;
  }

  void Cancel(uint64_t id) {
    absl::MutexLock l(&mu_);
    cancels_.push_back(id);
  }

  std::pair<int64_t, int64_t> Drain(absl::Duration grace) {
    absl::MutexLock l(&mu_);
    draining_ = true;
    const int64_t done0 = completed_, aborted0 = aborted_;
    const absl::Condition idle(this, &Impl::Idle);
    if (!mu_.AwaitWithTimeout(idle, std::max(grace, absl::ZeroDuration()))) {
      cancel_all_ = true;  // Await releases mu_, which wakes the loop thread (HasInput)
      mu_.Await(idle);
    }
    return {completed_ - done0, aborted_ - aborted0};
  }

  absl::Status StageWeights(uint64_t version, std::vector<Parameter> params) {
    // Shapes and dtypes from the snapshot: the loop thread may be swapping tensors right now.
    const auto& specs = ExpectedParameters(model_->config());
    std::vector<std::pair<int, Parameter>> checked;
    for (Parameter& p : params) {
      auto it = index_.find(p.spec.name);
      if (it == index_.end()) return absl::InvalidArgumentError("weight update names unknown tensor '" + p.spec.name + "'");
      if (p.value.dtype() != DType::kF32 && p.value.dtype() != DType::kBF16 && p.value.dtype() != DType::kF16) {
        return absl::InvalidArgumentError("weight update tensor '" + p.spec.name + "' must be F32, BF16 or F16, got " +
                                       std::string(DTypeName(p.value.dtype())));
      }
      const auto& [shape, held] = held_[it->second];
      if (p.value.shape() != shape) {
        return absl::InvalidArgumentError("weight update tensor '" + p.spec.name + "' has shape " +
                                       ShapeToString(p.value.shape()) + ", the model has " +
                                       ShapeToString(shape));
      }
      Parameter v{specs[it->second], p.value.dtype() == DType::kF32 ? std::move(p.value) : p.value.ToF32(), {}};
      // A model serving bf16 / FP8 matrices gets the update in its own format (converted here,
      // on the caller's thread, so the switch itself is a swap).
      if (held == DType::kBF16 || held == DType::kF8E4M3) {
        std::vector<Parameter> one{std::move(v)};
        GRPO_RETURN_IF_ERROR(grpo::WithContext(
            ConvertMatrices(held == DType::kBF16 ? WeightFormat::kBF16 : WeightFormat::kFp8Block, &one),
            "weight update tensor '" + p.spec.name + "': "));
        v = std::move(one[0]);
      }
      checked.emplace_back(it->second, std::move(v));
    }
    return StageChecked(version, checked);
  }

  absl::Status StageWeights(uint64_t version, const std::vector<DeviceWeight>& weights) {
    Backend& be = model_->backend();
    std::vector<std::pair<int, DeviceParameter>> checked;
    try {
      Buffer nonfinite = Upload(be, std::vector<int32_t>{0});
      for (const DeviceWeight& w : weights) {
        auto it = index_.find(w.name);
        if (it == index_.end()) return absl::InvalidArgumentError("weight update names unknown tensor '" + w.name + "'");
        const auto& [shape, held] = held_[it->second];
        if (w.f32 == nullptr || w.f32->backend() != &be || w.f32->dtype() != DType::kF32 ||
            w.f32->numel() != NumElements(shape)) {
          return absl::InvalidArgumentError(
              "weight update tensor '" + w.name + "' must be F32 of " + std::to_string(NumElements(shape)) +
              " elements on backend " + be.name() + ", got " +
              (w.f32 == nullptr ? std::string("none")
                                : std::string(DTypeName(w.f32->dtype())) + " of " + std::to_string(w.f32->numel()) +
                                      " on " + (w.f32->backend() ? w.f32->backend()->name() : "no backend")));
        }
        const int64_t rows = shape.size() == 2 ? shape[0] : 1;
        checked.emplace_back(it->second, QuantizeOnDevice(be, *w.f32, rows, NumElements(shape) / std::max<int64_t>(rows, 1),
                                                          held, nonfinite.i32()));
      }
      const int32_t bad = DownloadI32(be, nonfinite)[0];  // the update's only transfer: 4 bytes
      if (bad != 0) {
        return absl::InvalidArgumentError("weight update: " + std::to_string(bad) +
                                          " non-finite values (NaN or infinite); not staged");
      }
    } catch (const std::bad_alloc&) {
      return absl::ResourceExhaustedError("weight update: out of device memory for the serving copy on " +
                                          std::string(be.name()));
    }
    return StageChecked(version, checked);
  }

  // Stages checked tensors (model parameter index, new value) as weight version `version`:
  // refused unless it is newer than both the served and the staged version.
  template <class T>
  absl::Status StageChecked(uint64_t version, std::vector<std::pair<int, T>>& checked)
      ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock l(&mu_);
    const uint64_t floor = staged_ ? staged_version_ : version_;
    if (version <= floor) {
      return absl::InvalidArgumentError(absl::StrCat("weight version ", version, " is not newer than ", floor,
                                                     staged_ ? " (staged)" : " (serving)"));
    }
    for (auto& [i, t] : checked) StageTensor(i, std::move(t));
    staged_version_ = version;
    staged_ = true;
    return absl::OkStatus();
  }
  // A newer stage of a tensor overrides an older one, whichever form each came in.
  void StageTensor(int i, Parameter p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    staged_device_.erase(i);
    staged_params_[i] = std::move(p);
  }
  void StageTensor(int i, DeviceParameter p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    staged_params_.erase(i);
    staged_device_[i] = std::move(p);
  }

  uint64_t weight_version() const {
    absl::MutexLock l(&mu_);
    return version_;
  }

  void WaitForStagedWeights() {
    absl::MutexLock l(&mu_);
    mu_.Await(absl::Condition(this, &Impl::NothingStaged));
  }

  EngineStats stats() const {
    absl::MutexLock l(&mu_);
    EngineStats s = stats_;
    s.weight_version = version_;
    s.waiting_groups += static_cast<int64_t>(incoming_.size());
    return s;
  }

  const ModelConfig& config() const { return model_->config(); }
  int64_t block_size() const { return o_.block_size; }

 private:
  // Conditions (absl::Condition) over the shared state; a waiter is woken when a thread
  // releases mu_ and its condition holds.
  // Something for the loop thread to take in: requests, cancellations, weights, or stop.
  bool HasInput() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return stopping_ || cancel_all_ || staged_ || !incoming_.empty() || !cancels_.empty() || tool_results_ > 0;
  }
  bool Idle() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return in_flight_ == 0; }
  bool NothingStaged() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !staged_; }

  void Loop();
  // Moves incoming groups in, applies cancellations and staged weights. Returns false to stop.
  bool Intake() ABSL_LOCKS_EXCLUDED(mu_);
  // Between two steps (nothing of the model in use): hands the staged weights of `version` to
  // the model (CausalLM::UpdateParameters), drops the caches when they are to be recomputed,
  // and makes `version` the serving one.
  void ApplyWeights(std::map<int, Parameter> staged, std::map<int, DeviceParameter> staged_device,
                    uint64_t version) ABSL_LOCKS_EXCLUDED(mu_);
  // The step and its parts, in order (RunStep).
  void RunStep();
  // Which sequences run this step: running samples (ScheduleRunning), then, unless that had to
  // preempt, prompt chunks and samples starting in admitted groups (ScheduleAdmitted) and newly
  // admitted groups (AdmitWaiting), within the step's prefill token budget. Reserves their
  // cache rows.
  std::vector<Entry> ScheduleStep();
  // Returns whether it preempted a sample.
  bool ScheduleRunning(std::vector<Entry>* entries, int64_t* budget);
  void ScheduleAdmitted(std::vector<Entry>* entries, int64_t* budget, int64_t* running);
  // False when the prompt chunk did not fit: later groups then wait too.
  bool SchedulePromptChunk(Group* g, std::vector<Entry>* entries, int64_t* budget);
  void ScheduleWaitingSamples(Group* g, std::vector<Entry>* entries, int64_t* budget, int64_t* running);
  void AdmitWaiting(std::vector<Entry>* entries, int64_t* budget, int64_t running);
  // Nothing could be scheduled: frees a prompt when admitted prompts hold the pool, else waits
  // briefly for input.
  void WaitForRoom();
  // A failed forward step aborts every group in it.
  void AbortStep(const std::vector<Entry>& entries, const absl::Status& error);
  // Records what the step computed (cached positions, prefill progress, prompt routing, the
  // routing of fed tool-result tokens) and returns the tokens due: one per sample whose sequence
  // is complete, every sample of a group whose prompt just finished. `fed`: the samples whose
  // last tool result is now fed through (finish_after_feed), to be finished after the draws.
  std::vector<Draw> AdvanceEntries(const std::vector<Entry>& entries, const StepInput& in, const StepOutput& out,
                                   std::vector<std::pair<uint64_t, int64_t>>* fed);
  // Where a sample's feed ends: every position of prompt + tokens, or, for a sample that ends
  // once its last tool result is fed (finish_after_feed), all but the last (whose output would
  // be the routing and logits of a token that is never drawn).
  int64_t FeedEnd(const Group& g, const SampleState& s) const {
    return g.plen + static_cast<int64_t>(s.r.tokens.size()) - (s.finish_after_feed ? 1 : 0);
  }
  // Appends to s->r.routing the routing of the positions of `e` (a sample's entry starting at
  // row `first_row` of the step) that produce a token of the sample not yet recorded, short of
  // the position whose token is drawn now (EmitToken records that one): the tokens a tool's
  // environment appended, whose routing comes from the step that feeds them.
  void RecordFedRouting(const Group& g, const Entry& e, int64_t first_row, const StepOutput& out,
                        SampleState* s) const {
    const int64_t recorded = static_cast<int64_t>(s->r.routing.size()) / (L_ * K_);
    const int64_t len = static_cast<int64_t>(s->r.tokens.size());
    // Token t's routing is that of position plen + t - 1.
    for (int64_t p = std::max(e.from, g.plen + recorded - 1); p < std::min(e.to, g.plen + len - 1); ++p) {
      CopyRouting(out, first_row + p - e.from, &s->r.routing);
    }
  }
  // Appends the drawn token to its sample (version span, logprobs, routing), fires on_prefill
  // before a group's first token, and finishes the sample when it stops (on_sample, on_done).
  void EmitToken(const Draw& d, const StepOutput& out);
  // Runs the tool call that the sample's last token completed and appends the environment's
  // tokens; returns why the sample ends, if it does (the token budget is spent: kLength; the
  // environment or the tokenizer failed: kAborted).
  std::optional<FinishReason> RunToolCall(const GroupRequest& req, SampleState* s);
  // The same for a call's result: appends its tokens to the sample.
  std::optional<FinishReason> AppendToolResult(const GroupRequest& req, SampleState* s, absl::StatusOr<ToolResult> result);
  // Hands the call the sample's last token completed to a worker; the sample waits for it.
  void DispatchToolCall(const GroupRequest& req, SampleState* s);
  // Appends the results of the calls that came back and lets their samples go on.
  void CollectToolResults();
  // The ids of `result`'s text: markers with added tokens recognized, the output as plain text.
  absl::StatusOr<std::vector<int32_t>> EncodeToolResult(const ToolResult& result) const;
  void PublishStats() ABSL_LOCKS_EXCLUDED(mu_);
  bool ReserveWithPreemption(Entry& e);
  bool PreemptOne(const Group* self_group, int64_t self_sample);
  // Frees every cache sequence; in-flight groups go back to waiting (in admission order) and
  // recompute their caches (under the new weights) when readmitted.
  void PreemptAll() {
    for (auto& [g, si] : running_) {
      cache_.FreeSequence(g->samples[si].seq);
      g->samples[si].seq = -1;
      g->samples[si].cached = 0;
    }
    running_.clear();
    for (auto it = admitted_.rbegin(); it != admitted_.rend(); ++it) {
      Group* g = *it;
      cache_.FreeSequence(g->prompt_seq);
      g->prompt_seq = -1;
      g->prefilled = 0;
      g->admitted = false;
      waiting_.push_front(g);
    }
    admitted_.clear();
  }
  void AbortGroup(uint64_t id) {
    auto it = groups_.find(id);
    if (it == groups_.end()) return;
    Group& g = *it->second;
    g.cancelled = true;
    const int64_t n = g.req.n;
    for (int64_t s = 0; s < n; ++s) {
      if (!g.samples[s].done && FinishSample(g, s, FinishReason::kAborted)) return;  // the group is gone
    }
  }
  // Returns true when it was the group's last sample (the group is then destroyed).
  bool FinishSample(Group& g, int64_t s, FinishReason reason);
  void FinishGroup(Group& g) ABSL_LOCKS_EXCLUDED(mu_);
  void CopyRouting(const StepOutput& out, int64_t t, std::vector<int32_t>* dst) const {
    if (L_ == 0) return;
    const int64_t T = out.routing.num_tokens;
    for (int64_t l = 0; l < L_; ++l) {
      const int32_t* src = out.routing.experts.data() + (l * T + t) * K_;
      dst->insert(dst->end(), src, src + K_);
    }
  }

  std::unique_ptr<CausalLM> model_;
  EngineOptions o_;
  std::map<std::string, int> index_;
  std::vector<std::pair<Shape, DType>> held_;  // per parameter, as the model holds it
  int64_t L_ = 0, K_ = 0;
  KvBlockPool pool_;
  PagedKvCache cache_;

  // Shared with callers.
  mutable absl::Mutex mu_;
  std::vector<std::unique_ptr<Group>> incoming_ ABSL_GUARDED_BY(mu_);
  std::vector<uint64_t> cancels_ ABSL_GUARDED_BY(mu_);
  bool cancel_all_ ABSL_GUARDED_BY(mu_) = false;
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  int64_t in_flight_ ABSL_GUARDED_BY(mu_) = 0;  // submitted, on_done not yet returned
  int64_t completed_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t aborted_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t version_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t staged_version_ ABSL_GUARDED_BY(mu_) = 0;
  bool staged_ ABSL_GUARDED_BY(mu_) = false;
  int64_t tool_results_ ABSL_GUARDED_BY(mu_) = 0;  // calls that came back since the last Intake
  std::map<int, Parameter> staged_params_ ABSL_GUARDED_BY(mu_);   // from the host
  std::map<int, DeviceParameter> staged_device_ ABSL_GUARDED_BY(mu_);  // made on the device
  EngineStats stats_ ABSL_GUARDED_BY(mu_);

  // Loop thread only.
  std::map<uint64_t, std::unique_ptr<Group>> groups_;
  std::deque<Group*> waiting_;                       // FIFO; preempted groups go to the front
  std::vector<Group*> admitted_;                     // admission order
  std::vector<std::pair<Group*, int64_t>> running_;  // samples holding blocks, admission order
  uint64_t step_version_ = 0;
  int64_t preemptions_ = 0;
  int64_t forwarded_tokens_ = 0;
  int64_t pending_calls_ = 0;  // samples waiting for a tool call
  // Declared after what its callback touches, so it is destroyed (joined) first.
  std::unique_ptr<ToolCallWorkers> tool_workers_;
  std::thread thread_;  // started last, in the constructor body
};

void RolloutEngine::Impl::ApplyWeights(std::map<int, Parameter> staged,
                                       std::map<int, DeviceParameter> staged_device, uint64_t version) {
  std::vector<std::pair<int64_t, Parameter>> updates;
  for (auto& [i, p] : staged) updates.emplace_back(i, std::move(p));
  std::vector<std::pair<int64_t, DeviceParameter>> device_updates;
  for (auto& [i, p] : staged_device) device_updates.emplace_back(i, std::move(p));
  // StageWeights checked them as the model checks them, so this cannot fail short of a bug;
  // if it does, the model keeps its weights (each kind of update is all or nothing) and says so.
  absl::Status applied = model_->UpdateParameters(std::move(updates));
  if (applied.ok()) applied = model_->UpdateParameterBuffers(std::move(device_updates));
  if (!applied.ok()) {
    std::fprintf(stderr, "rollout engine: weight version %llu not applied: %s\n",
                 static_cast<unsigned long long>(version), applied.ToString().c_str());
  }
  if (applied.ok() && o_.recompute_on_weight_update) PreemptAll();
  absl::MutexLock l(&mu_);  // WaitForStagedWeights wakes on release (NothingStaged)
  if (applied.ok()) version_ = version;
  staged_ = staged_version_ != version ? staged_ : false;
}

bool RolloutEngine::Impl::Intake() {
  std::vector<uint64_t> cancels;
  std::map<int, Parameter> staged;
  std::map<int, DeviceParameter> staged_device;
  bool apply = false;
  uint64_t staged_version = 0;
  {
    absl::MutexLock l(&mu_);
    if (groups_.empty()) mu_.Await(absl::Condition(this, &Impl::HasInput));  // idle: sleep
    if (stopping_) cancel_all_ = true;
    for (auto& g : incoming_) {
      waiting_.push_back(g.get());
      groups_[g->id] = std::move(g);
    }
    incoming_.clear();
    tool_results_ = 0;
    cancels.swap(cancels_);
    if (cancel_all_) {
      for (auto& [id, g] : groups_) cancels.push_back(id);
      cancel_all_ = stopping_;
    }
    if (staged_) {
      staged.swap(staged_params_);
      staged_device.swap(staged_device_);
      staged_version = staged_version_;
      apply = true;
    }
  }
  if (apply) ApplyWeights(std::move(staged), std::move(staged_device), staged_version);
  {
    absl::MutexLock l(&mu_);
    step_version_ = version_;
  }
  for (uint64_t id : cancels) AbortGroup(id);
  absl::MutexLock l(&mu_);
  return !(stopping_ && groups_.empty() && incoming_.empty());
}

void RolloutEngine::Impl::Loop() {
  while (Intake()) {
    if (!groups_.empty()) RunStep();
  }
}

// Frees the blocks of the most recently admitted running sample other than (self_group,
// self_sample), or else the prompt blocks of the most recently admitted group that has no
// running sample. Returns false when there is nothing to take.
bool RolloutEngine::Impl::PreemptOne(const Group* self_group, int64_t self_sample) {
  for (auto it = running_.rbegin(); it != running_.rend(); ++it) {
    if (it->first == self_group && it->second == self_sample) continue;
    SampleState& s = it->first->samples[it->second];
    cache_.FreeSequence(s.seq);
    s.seq = -1;
    s.cached = 0;
    running_.erase(std::next(it).base());
    ++preemptions_;
    return true;
  }
  for (auto it = admitted_.rbegin(); it != admitted_.rend(); ++it) {
    Group* g = *it;
    if (g == self_group || g->prompt_seq < 0) continue;
    bool has_running = false;
    for (const auto& r : running_) has_running |= r.first == g;
    if (has_running) continue;
    cache_.FreeSequence(g->prompt_seq);
    g->prompt_seq = -1;
    g->prefilled = 0;
    g->admitted = false;
    admitted_.erase(std::next(it).base());
    waiting_.push_front(g);
    ++preemptions_;
    return true;
  }
  return false;
}

bool RolloutEngine::Impl::ReserveWithPreemption(Entry& e) {
  SampleState& s = e.g->samples[e.sample];
  for (;;) {
    if (cache_.Reserve(s.seq, e.to, e.from).ok()) return true;
    if (!PreemptOne(e.g, e.sample)) return false;
  }
}

// One step: which sequences run (ScheduleStep), their new tokens as one batch
// (BuildStepInput), the forward step, cache positions and routing the outputs advance
// (AdvanceEntries), one token drawn per sample that is due one (DrawTokens), and each drawn
// token appended with its stop check and callbacks (EmitToken).
void RolloutEngine::Impl::RunStep() {
  if (pending_calls_ > 0) CollectToolResults();
  if (groups_.empty()) return;
  const std::vector<Entry> entries = ScheduleStep();
  if (entries.empty()) {
    WaitForRoom();
    return;
  }
  const StepInput in = BuildStepInput(entries);
  forwarded_tokens_ += static_cast<int64_t>(in.tokens.size());
  absl::StatusOr<StepOutput> out;
  std::vector<Draw> draws;
  std::vector<std::pair<uint64_t, int64_t>> fed;  // (group id, sample): fed through, now ending
  try {
    out = model_->ForwardStep(in, cache_);
    if (out.ok()) {
      draws = AdvanceEntries(entries, in, *out, &fed);
      DrawTokens(*model_, *out, &draws);
    }
  } catch (const std::bad_alloc&) {  // the step's device memory: its groups fail, the engine goes on
    out = absl::ResourceExhaustedError("out of memory in the forward step of " +
                                       std::to_string(in.tokens.size()) + " tokens");
  }
  if (!out.ok()) {
    AbortStep(entries, out.status());
    return;
  }
  for (const Draw& d : draws) EmitToken(d, *out);
  for (auto [id, si] : fed) {  // tool results that spent the token budget, now with their routing
    auto it = groups_.find(id);
    if (it != groups_.end()) FinishSample(*it->second, si, FinishReason::kLength);
  }
  PublishStats();
}

std::vector<Entry> RolloutEngine::Impl::ScheduleStep() {
  std::vector<Entry> entries;
  int64_t budget = o_.max_prefill_tokens_per_step;
  // A preemption means the pool is short: nothing new starts this step.
  if (ScheduleRunning(&entries, &budget)) return entries;
  int64_t running = static_cast<int64_t>(running_.size());
  ScheduleAdmitted(&entries, &budget, &running);
  AdmitWaiting(&entries, &budget, running);
  return entries;
}

bool RolloutEngine::Impl::ScheduleRunning(std::vector<Entry>* entries, int64_t* budget) {
  const int64_t before = preemptions_;
  for (size_t i = 0; i < running_.size(); ++i) {
    auto [g, si] = running_[i];
    SampleState& s = g->samples[si];
    if (s.pending) continue;  // waits for its tool call, keeping its blocks
    Entry e{g, si, s.cached, FeedEnd(*g, s), !s.finish_after_feed};
    if (e.to - e.from > 1) {  // recompute
      if (*budget <= 0) continue;
      if (e.to - e.from > *budget) {
        e.to = e.from + *budget;
        e.samples_next = false;
      }
      *budget -= e.to - e.from;
    }
    if (!ReserveWithPreemption(e)) {  // nothing left to take: wait for this sample's turn
      cache_.FreeSequence(s.seq);
      s.seq = -1;
      s.cached = 0;
      running_.erase(running_.begin() + i);
      ++preemptions_;
      break;
    }
    entries->push_back(e);
  }
  // Entries may point at samples preempted after they were reserved: drop those.
  std::erase_if(*entries, [](const Entry& e) { return e.g->samples[e.sample].seq < 0; });
  return preemptions_ != before;
}

void RolloutEngine::Impl::ScheduleAdmitted(std::vector<Entry>* entries, int64_t* budget, int64_t* running) {
  for (Group* g : admitted_) {
    if (g->prefilled < g->plen) {
      if (!SchedulePromptChunk(g, entries, budget)) return;
      continue;
    }
    ScheduleWaitingSamples(g, entries, budget, running);
  }
}

bool RolloutEngine::Impl::SchedulePromptChunk(Group* g, std::vector<Entry>* entries, int64_t* budget) {
  if (*budget <= 0) return false;
  Entry e{g, -1, g->prefilled, std::min(g->plen, g->prefilled + *budget), false};
  if (!cache_.Reserve(g->prompt_seq, e.to, e.from).ok()) return false;
  e.samples_next = e.to == g->plen;
  *budget -= e.to - e.from;
  entries->push_back(e);
  return true;
}

void RolloutEngine::Impl::ScheduleWaitingSamples(Group* g, std::vector<Entry>* entries, int64_t* budget,
                                                 int64_t* running) {
  const int64_t bs = o_.block_size;
  for (int64_t si = 0; si < g->req.n; ++si) {
    SampleState& s = g->samples[si];
    if (s.done || s.seq >= 0 || s.pending || *running >= o_.max_running_sequences) continue;
    const int64_t len = static_cast<int64_t>(s.r.tokens.size());
    // Its own blocks (a CoW copy of the prompt's partial block included), plus one of
    // headroom unless nothing runs (Validate guarantees the exact need fits then).
    const int64_t need = CeilDiv(FeedEnd(*g, s), bs) - g->plen / bs + (*running > 0 ? 1 : 0);
    if (need > pool_.free_blocks()) return;
    const bool recompute = len > 1;
    if (recompute && *budget <= 0) return;
    s.seq = cache_.Fork(g->prompt_seq);
    s.cached = g->plen;
    running_.emplace_back(g, si);
    ++*running;
    if (!recompute) {  // the decode of its next token
      Entry e{g, si, s.cached, g->plen + len, true};
      if (cache_.Reserve(s.seq, e.to, e.from).ok()) entries->push_back(e);
      continue;
    }
    const int64_t end = FeedEnd(*g, s);
    Entry e{g, si, s.cached, std::min(end, s.cached + *budget), false};
    e.samples_next = e.to == end && !s.finish_after_feed;
    if (!cache_.Reserve(s.seq, e.to, e.from).ok()) continue;
    *budget -= e.to - e.from;
    entries->push_back(e);
  }
}

void RolloutEngine::Impl::AdmitWaiting(std::vector<Entry>* entries, int64_t* budget, int64_t running) {
  const int64_t bs = o_.block_size;
  while (!waiting_.empty() && *budget > 0 && running < o_.max_running_sequences) {
    Group* g = waiting_.front();
    // Its prompt, plus a block of headroom for a sample when other groups hold blocks.
    if (CeilDiv(g->plen, bs) + (admitted_.empty() ? 0 : 1) > pool_.free_blocks()) break;
    waiting_.pop_front();
    g->admitted = true;
    g->prompt_seq = cache_.AddSequence();
    g->prefilled = 0;
    admitted_.push_back(g);
    if (!g->timed_admission) {
      g->timed_admission = true;
      g->admitted_at = Clock::now();
    }
    Entry e{g, -1, 0, std::min(g->plen, *budget), false};
    if (!cache_.Reserve(g->prompt_seq, e.to, e.from).ok()) break;
    e.samples_next = e.to == g->plen;
    *budget -= e.to;
    entries->push_back(e);
  }
}

void RolloutEngine::Impl::WaitForRoom() {
  // Nothing runs and nothing fits: the prompts of admitted groups hold the pool. Give the
  // newest group's prompt blocks back (it re-prefills later) so the oldest can go on.
  if (running_.empty() && admitted_.size() > 1 && PreemptOne(admitted_.front(), -1)) return;
  absl::MutexLock l(&mu_);
  mu_.AwaitWithTimeout(absl::Condition(this, &Impl::HasInput), absl::Milliseconds(5));
}

void RolloutEngine::Impl::AbortStep(const std::vector<Entry>& entries, const absl::Status& error) {
  std::fprintf(stderr, "rollout engine: step failed: %s\n", error.ToString().c_str());
  std::vector<uint64_t> ids;
  for (const Entry& e : entries) ids.push_back(e.g->id);
  for (uint64_t id : ids) AbortGroup(id);
}

std::vector<Draw> RolloutEngine::Impl::AdvanceEntries(const std::vector<Entry>& entries, const StepInput& in,
                                                      const StepOutput& out,
                                                      std::vector<std::pair<uint64_t, int64_t>>* fed) {
  std::vector<Draw> draws;
  for (size_t i = 0; i < entries.size(); ++i) {
    const Entry& e = entries[i];
    Group& g = *e.g;
    const int64_t row = static_cast<int64_t>(i);  // the row of out.logits its tokens come from
    const int64_t last = in.offsets[i + 1] - 1;
    if (e.sample >= 0) {
      SampleState& s = g.samples[e.sample];
      s.cached = e.to;
      if (g.req.return_routing && L_ > 0) RecordFedRouting(g, e, in.offsets[i], out, &s);
      if (e.samples_next) draws.push_back({&g, e.sample, row, last, {}});
      if (s.finish_after_feed && e.to == FeedEnd(g, s)) fed->emplace_back(g.id, e.sample);
      continue;
    }
    g.prefilled = e.to;
    if (g.req.return_routing && L_ > 0) {  // positions not recorded yet (a re-prefill repeats some)
      const int64_t recorded = static_cast<int64_t>(g.prompt_routing.size()) / (L_ * K_);
      for (int64_t p = std::max(e.from, recorded); p < std::min(e.to, g.plen - 1); ++p) {
        CopyRouting(out, in.offsets[i] + p - e.from, &g.prompt_routing);
      }
    }
    if (e.samples_next && !g.first_sampled) {
      g.first_sampled = true;
      g.prefilled_at = Clock::now();
      for (int64_t s = 0; s < g.req.n; ++s) draws.push_back({&g, s, row, last, {}});
    }
  }
  return draws;
}

void RolloutEngine::Impl::EmitToken(const Draw& d, const StepOutput& out) {
  Group& g = *d.g;
  SampleState& s = g.samples[d.s];
  SampleResult& r = s.r;
  if (r.tokens.empty() && d.s == 0 && g.cb.on_prefill) {
    GroupResult p;
    p.prompt_routing = g.prompt_routing;
    p.num_moe_layers = g.req.return_routing ? L_ : 0;
    p.top_k = g.req.return_routing ? K_ : 0;
    g.cb.on_prefill(p);
  }
  if (r.versions.empty() || r.versions.back().version != step_version_) {
    r.versions.push_back({step_version_, static_cast<int64_t>(r.tokens.size())});
  }
  r.tokens.push_back(d.t.token);
  r.logprobs.push_back(d.t.logprob);
  r.raw_logprobs.push_back(d.t.raw_logprob);
  if (g.req.return_routing) CopyRouting(out, d.last, &r.routing);
  bool tool_call = false;
  std::optional<FinishReason> reason = StopReason(g.req, d.t.token, &s, &tool_call);
  if (tool_call && tool_workers_) {
    DispatchToolCall(g.req, &s);
  } else if (tool_call) {
    reason = RunToolCall(g.req, &s);
  }
  if (reason) FinishSample(g, d.s, *reason);
}

absl::StatusOr<std::vector<int32_t>> RolloutEngine::Impl::EncodeToolResult(const ToolResult& result) const {
  const tokenizer::Tokenizer& tok = *o_.tokenizer;
  GRPO_ASSIGN_OR_RETURN(std::vector<int32_t> ids, tok.Encode(result.result_start));
  GRPO_ASSIGN_OR_RETURN(std::vector<int32_t> output, tok.Encode(result.output, {.match_added_tokens = false}));
  GRPO_ASSIGN_OR_RETURN(std::vector<int32_t> end, tok.Encode(result.result_end));
  ids.insert(ids.end(), output.begin(), output.end());
  ids.insert(ids.end(), end.begin(), end.end());
  const int64_t vocab = model_->config().vocab_size;
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab) {
      return absl::OutOfRangeError(absl::StrCat("the tokenizer gave id ", id, " for a tool result, outside the model's vocabulary of ", vocab));
    }
  }
  return ids;
}

std::optional<FinishReason> RolloutEngine::Impl::RunToolCall(const GroupRequest& req, SampleState* s) {
  ++s->tool_calls;
  return AppendToolResult(req, s, req.environment->Call(s->text));
}

void RolloutEngine::Impl::DispatchToolCall(const GroupRequest& req, SampleState* s) {
  ++s->tool_calls;
  s->pending = std::make_shared<PendingCall>();
  ++pending_calls_;
  tool_workers_->Run(req.environment, s->text, s->pending);
}

void RolloutEngine::Impl::CollectToolResults() {
  std::vector<std::pair<uint64_t, int64_t>> back;  // (group id, sample) whose call is done
  for (auto& [id, g] : groups_) {
    for (int64_t si = 0; si < g->req.n; ++si) {
      const std::shared_ptr<PendingCall>& call = g->samples[si].pending;
      if (call == nullptr) continue;
      absl::MutexLock l(&call->mu);
      if (call->done) back.emplace_back(id, si);
    }
  }
  for (auto [id, si] : back) {
    auto it = groups_.find(id);
    if (it == groups_.end()) continue;  // the group ended with an earlier sample
    Group& g = *it->second;
    SampleState& s = g.samples[si];
    std::shared_ptr<PendingCall> call = std::move(s.pending);
    --pending_calls_;
    absl::StatusOr<ToolResult> result = absl::UnknownError("no result");
    {
      absl::MutexLock l(&call->mu);
      result = std::move(call->result);
    }
    if (std::optional<FinishReason> reason = AppendToolResult(g.req, &s, std::move(result))) FinishSample(g, si, *reason);
  }
}

std::optional<FinishReason> RolloutEngine::Impl::AppendToolResult(const GroupRequest& req, SampleState* s,
                                                                  absl::StatusOr<ToolResult> result) {
  if (result.ok()) {  // tools answer with arbitrary bytes; texts for tokenizers and protos are UTF-8
    for (std::string* text : {&result->tool, &result->call, &result->arguments, &result->output,
                              &result->result_start, &result->result_end}) {
      *text = Utf8Lossy(*text);
    }
  }
  absl::StatusOr<std::vector<int32_t>> ids =
      result.ok() ? EncodeToolResult(*result) : absl::StatusOr<std::vector<int32_t>>(result.status());
  if (!ids.ok()) {
    std::fprintf(stderr, "rollout engine: tool call failed, sample aborted: %s\n", ids.status().ToString().c_str());
    return FinishReason::kAborted;
  }
  SampleResult& r = s->r;
  const int64_t first = static_cast<int64_t>(r.tokens.size());
  const int64_t n = std::min({static_cast<int64_t>(ids->size()), req.max_tool_output_tokens, req.max_new_tokens - first});
  for (int64_t i = 0; i < n; ++i) {
    r.tokens.push_back((*ids)[i]);
    r.logprobs.push_back(0.0f);
    r.raw_logprobs.push_back(0.0f);
    if (auto piece = s->decoder->Push((*ids)[i]); piece.ok()) s->text += *piece;
  }
  r.environment_spans.push_back({first, n, std::move(*result)});
  if (static_cast<int64_t>(r.tokens.size()) < req.max_new_tokens) return std::nullopt;
  if (n > 0 && req.return_routing && L_ > 0) {  // the result's routing comes from feeding it
    s->finish_after_feed = true;
    return std::nullopt;
  }
  return FinishReason::kLength;
}

void RolloutEngine::Impl::PublishStats() {
  absl::MutexLock l(&mu_);
  stats_.waiting_groups = static_cast<int64_t>(waiting_.size());
  stats_.running_sequences = static_cast<int64_t>(running_.size());
  stats_.free_blocks = pool_.free_blocks();
  stats_.preemptions = preemptions_;
  stats_.forwarded_tokens = forwarded_tokens_;
}

bool RolloutEngine::Impl::FinishSample(Group& g, int64_t si, FinishReason reason) {
  SampleState& s = g.samples[si];
  s.done = true;
  if (s.pending) {  // aborted while its tool call runs: the call's result is dropped
    s.pending.reset();
    --pending_calls_;
  }
  s.r.finish_reason = reason;
  if (s.seq >= 0) {
    cache_.FreeSequence(s.seq);
    s.seq = -1;
    std::erase_if(running_, [&](const auto& r) { return r.first == &g && r.second == si; });
  }
  if (!g.req.return_raw_logprobs) s.r.raw_logprobs.clear();
  if (g.cb.on_sample) g.cb.on_sample(s.r);
  if (--g.unfinished > 0) return false;
  FinishGroup(g);
  return true;
}

void RolloutEngine::Impl::FinishGroup(Group& g) {
  const auto now = Clock::now();
  if (g.prompt_seq >= 0) cache_.FreeSequence(g.prompt_seq);
  std::erase(admitted_, &g);
  std::erase(waiting_, &g);
  GroupResult result;
  result.num_moe_layers = g.req.return_routing ? L_ : 0;
  result.top_k = g.req.return_routing ? K_ : 0;
  result.prompt_routing = std::move(g.prompt_routing);
  GroupTiming& t = result.timing;
  t.prompt_tokens = g.plen;
  const auto admitted = g.timed_admission ? g.admitted_at : now;
  const auto prefilled = g.first_sampled ? g.prefilled_at : now;
  t.queue_seconds = Seconds(g.submitted, admitted);
  t.prefill_seconds = Seconds(admitted, prefilled);
  t.decode_seconds = Seconds(prefilled, now);
  t.total_seconds = Seconds(g.submitted, now);
  for (SampleState& s : g.samples) {
    t.completion_tokens += static_cast<int64_t>(s.r.tokens.size());
    result.samples.push_back(std::move(s.r));
  }
  const bool cancelled = g.cancelled;
  GroupCallbacks cb = std::move(g.cb);
  groups_.erase(g.id);  // g is gone from here on
  {
    absl::MutexLock l(&mu_);
    stats_.free_blocks = pool_.free_blocks();
    stats_.running_sequences = static_cast<int64_t>(running_.size());
    stats_.waiting_groups = static_cast<int64_t>(waiting_.size());
    stats_.preemptions = preemptions_;
    stats_.forwarded_tokens = forwarded_tokens_;
    ++(cancelled ? aborted_ : completed_);
  }
  if (cb.on_done) cb.on_done(std::move(result));
  absl::MutexLock l(&mu_);
  --in_flight_;  // after on_done: Drain returns once every answer was delivered (Idle)
}

// ---------------------------------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<RolloutEngine>> RolloutEngine::Create(std::unique_ptr<CausalLM> model,
                                                             EngineOptions options) {
  if (model == nullptr) return absl::InvalidArgumentError("no model");
  if (options.block_size <= 0) return absl::InvalidArgumentError("block_size must be positive");
  if (options.max_running_sequences <= 0) return absl::InvalidArgumentError("max_running_sequences must be positive");
  if (options.tool_call_threads < 0 || options.tool_call_threads > 256) {
    return absl::InvalidArgumentError("tool_call_threads must be in [0, 256], got " + std::to_string(options.tool_call_threads));
  }
  if (options.max_prefill_tokens_per_step <= 0) {
    return absl::InvalidArgumentError("max_prefill_tokens_per_step must be positive");
  }
  const ModelConfig& c = model->config();
  const bool invariant = model->backend().batch_invariant();  // MLA caches more per position
  const CheckedInt64 checked_block_bytes = KvBytesPerPosition(c, invariant) * options.block_size;
  if (checked_block_bytes.overflowed()) {
    return absl::InvalidArgumentError(absl::StrCat("block_size ", options.block_size, " is too large"));
  }
  const int64_t block_bytes = checked_block_bytes.value();
  const int64_t blocks = options.num_blocks > 0 ? options.num_blocks : options.kv_memory_bytes / block_bytes;
  if (blocks < 2) {
    return absl::InvalidArgumentError(absl::StrCat("KV budget of ", options.kv_memory_bytes,
                                                   " bytes holds fewer than 2 blocks of ", block_bytes, " bytes"));
  }
  {
    // The pool is allocated whole here: check it against memory first.
    MemoryPlan plan;
    plan.Add(absl::StrCat("KV cache (", blocks, " blocks of ", options.block_size, " positions)"),
             CheckedInt64(blocks) * KvBytesPerPosition(c, invariant) * options.block_size);
    GRPO_RETURN_IF_ERROR(plan.Check("the rollout engine"));
  }
  return std::unique_ptr<RolloutEngine>(
      new RolloutEngine(std::make_unique<Impl>(std::move(model), options, blocks)));
}

RolloutEngine::RolloutEngine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
RolloutEngine::~RolloutEngine() = default;

absl::Status RolloutEngine::Validate(const GroupRequest& r) const { return impl_->Validate(r); }
absl::StatusOr<uint64_t> RolloutEngine::Submit(GroupRequest r, GroupCallbacks cb) {
  return impl_->Submit(std::move(r), std::move(cb));
}
void RolloutEngine::Cancel(uint64_t id) { impl_->Cancel(id); }
std::pair<int64_t, int64_t> RolloutEngine::Drain(absl::Duration grace) { return impl_->Drain(grace); }
absl::Status RolloutEngine::StageWeights(uint64_t version, std::vector<Parameter> params) {
  return impl_->StageWeights(version, std::move(params));
}

absl::Status RolloutEngine::StageWeights(uint64_t version, const std::vector<DeviceWeight>& weights) {
  return impl_->StageWeights(version, weights);
}
uint64_t RolloutEngine::weight_version() const { return impl_->weight_version(); }
void RolloutEngine::WaitForStagedWeights() { impl_->WaitForStagedWeights(); }
EngineStats RolloutEngine::stats() const { return impl_->stats(); }
const ModelConfig& RolloutEngine::config() const { return impl_->config(); }
int64_t RolloutEngine::block_size() const { return impl_->block_size(); }

absl::StatusOr<std::vector<GroupResult>> RolloutEngine::GenerateGroups(const std::vector<GroupRequest>& requests) {
  for (size_t i = 0; i < requests.size(); ++i) {
    GRPO_RETURN_IF_ERROR(grpo::WithContext(Validate(requests[i]), "request " + std::to_string(i) + ": "));
  }
  std::vector<GroupResult> results(requests.size());
  absl::Mutex mu;
  size_t done = 0;  // under mu, as results
  std::vector<GroupCallbacks> callbacks(requests.size());
  for (size_t i = 0; i < requests.size(); ++i) {
    callbacks[i].on_done = [&, i](GroupResult r) {
      absl::MutexLock l(&mu);
      results[i] = std::move(r);
      ++done;
    };
  }
  // All at once (see SubmitAll): results do not depend on the caller's timing.
  GRPO_RETURN_IF_ERROR(impl_->SubmitAll(requests, std::move(callbacks)).status());
  const auto all_done = [&] { return done == requests.size(); };
  absl::MutexLock l(&mu);
  mu.Await(absl::Condition(&all_done));
  return results;
}

}  // namespace grpo

#include "learner/rl_update.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>

#include "learner/data_parallel.h"

namespace grpo {
namespace {

// One mini-batch packed for the model and the loss.
struct Packed {
  TokenBatch batch;
  std::vector<int64_t> target_index;  // per completion token: its index in Forward's logprobs
  std::vector<int64_t> offsets{0};    // per sample, into the completion-token arrays
  std::vector<double> advantages;     // per sample
  std::vector<float> rollout_logprobs;
  std::vector<double> token_advantages;  // per completion token, when the samples have them
  std::vector<float> teacher_logits;     // [completion tokens, vocab], when the samples have them
  std::vector<uint8_t> mask;          // per completion token
  std::vector<uint8_t> sampled;       // per completion token: 0 for a tool's environment tokens
  Routing routing;
  bool has_routing = false;
  int64_t trained_samples = 0;        // packed samples with trained true
};

// The samples of groups [first, last), counted across those groups, that one rank trains.
struct SampleRange {
  size_t begin = 0, end = SIZE_MAX;
  bool contains(size_t i) const { return i >= begin && i < end; }
};

// Rollout logprobs are packed when every sample of the mini-batch has them (the mismatch metrics
// read them); a correction that needs them (`require_rollout_logprobs`) fails without them.
// Teacher logits (`vocab` per token): with `want_teacher` every sample must have them (and
// otherwise none may); they are packed when `pack_teacher` says so too. vocab 0: they are not
// looked at.
absl::Status Pack(const std::vector<RlGroup>& groups, size_t first, size_t last, bool want_routing,
            bool require_rollout_logprobs, bool want_teacher, bool pack_teacher, int64_t vocab, SampleRange range,
            Packed* p) {
  int64_t teacher_values = 0;
  bool all_have_logprobs = true;
  for (size_t g = first; g < last; ++g) {
    for (const RlSample& s : groups[g].samples) {
      all_have_logprobs = all_have_logprobs && s.rollout_logprobs.size() == s.completion.size();
    }
  }
  const bool want_rollout_logprobs = require_rollout_logprobs || all_have_logprobs;
  int64_t targets = 0;
  size_t sample_index = 0;
  for (size_t g = first; g < last; ++g) {
    const RlGroup& group = groups[g];
    const int64_t P = static_cast<int64_t>(group.prompt.size());
    if (P == 0) return absl::InvalidArgumentError("rl update: group " + std::to_string(g) + " has an empty prompt");
    for (const RlSample& s : group.samples) {
      if (!range.contains(sample_index++)) continue;
      const int64_t T = static_cast<int64_t>(s.completion.size());
      if (T == 0) return absl::InvalidArgumentError("rl update: a sample of group " + std::to_string(g) + " is empty");
      if (!s.loss_mask.empty() && static_cast<int64_t>(s.loss_mask.size()) != T) {
        return absl::InvalidArgumentError("rl update: a sample of group " + std::to_string(g) + " has " +
                                          std::to_string(s.loss_mask.size()) + " loss mask entries for " +
                                          std::to_string(T) + " tokens");
      }
      p->batch.tokens.insert(p->batch.tokens.end(), group.prompt.begin(), group.prompt.end());
      p->batch.tokens.insert(p->batch.tokens.end(), s.completion.begin(), s.completion.end());
      p->batch.offsets.push_back(static_cast<int64_t>(p->batch.tokens.size()));
      for (int64_t j = 0; j < T; ++j) {
        p->target_index.push_back(targets + (P - 1) + j);
        const bool sampled = s.loss_mask.empty() || s.loss_mask[j] != 0;
        p->mask.push_back(s.trained && sampled ? 1 : 0);
        p->sampled.push_back(sampled ? 1 : 0);
      }
      targets += P + T - 1;
      p->trained_samples += s.trained ? 1 : 0;
      p->offsets.push_back(static_cast<int64_t>(p->target_index.size()));
      p->advantages.push_back(s.advantage);
      if (want_rollout_logprobs) {
        if (static_cast<int64_t>(s.rollout_logprobs.size()) != T) {
          return absl::InvalidArgumentError("rl update: rollout logprobs missing for a sample of group " +
                                         std::to_string(g) + " (the correction needs raw logprobs)");
        }
        p->rollout_logprobs.insert(p->rollout_logprobs.end(), s.rollout_logprobs.begin(), s.rollout_logprobs.end());
      }
      if (!s.token_advantages.empty() && static_cast<int64_t>(s.token_advantages.size()) != T) {
        return absl::InvalidArgumentError("rl update: a sample of group " + std::to_string(g) + " has " +
                                          std::to_string(s.token_advantages.size()) + " token advantages for " +
                                          std::to_string(T) + " tokens");
      }
      p->token_advantages.insert(p->token_advantages.end(), s.token_advantages.begin(), s.token_advantages.end());
      if (vocab > 0 && !s.teacher_logits.empty() && static_cast<int64_t>(s.teacher_logits.size()) != T * vocab) {
        return absl::InvalidArgumentError("rl update: a sample of group " + std::to_string(g) + " has " +
                                          std::to_string(s.teacher_logits.size()) + " teacher logits for " +
                                          std::to_string(T) + " tokens of vocab " + std::to_string(vocab));
      }
      teacher_values += static_cast<int64_t>(s.teacher_logits.size());
      if (pack_teacher) p->teacher_logits.insert(p->teacher_logits.end(), s.teacher_logits.begin(), s.teacher_logits.end());
      if (want_routing && s.routing.empty()) {
        return absl::InvalidArgumentError("rl update: routing replay is on but a sample of group " + std::to_string(g) +
                                       " has no routing (the rollout must return the experts it chose)");
      }
    }
  }
  if (!p->token_advantages.empty() && p->token_advantages.size() != p->target_index.size()) {
    return absl::InvalidArgumentError("rl update: some samples have token advantages and others not");
  }
  if (vocab > 0 && teacher_values != (want_teacher ? static_cast<int64_t>(p->target_index.size()) * vocab : 0)) {
    return absl::InvalidArgumentError(want_teacher ? "rl update: divergence_coef > 0 needs teacher logits for every sample"
                                                   : "rl update: samples carry teacher logits but divergence_coef is 0");
  }
  if (!want_routing) return absl::OkStatus();
  p->routing.num_tokens = p->batch.num_tokens();
  p->has_routing = true;
  return absl::OkStatus();
}

// Token-major [pos][L][K] routing of each sequence -> the model's layer-major layout.
absl::Status FillRouting(const std::vector<RlGroup>& groups, size_t first, size_t last, int64_t L, int64_t K,
                   SampleRange range, Packed* p) {
  const int64_t N = p->routing.num_tokens;
  p->routing.num_moe_layers = L;
  p->routing.top_k = K;
  p->routing.experts.assign(N * L * K, 0);
  int64_t base = 0;
  size_t sample_index = 0;
  for (size_t g = first; g < last; ++g) {
    const RlGroup& group = groups[g];
    const int64_t P = static_cast<int64_t>(group.prompt.size());
    if (static_cast<int64_t>(group.prompt_routing.size()) != (P - 1) * L * K) {
      return absl::InvalidArgumentError("rl update: prompt routing of group " + std::to_string(g) +
                                     " has " + std::to_string(group.prompt_routing.size()) +
                                     " entries, expected " + std::to_string((P - 1) * L * K));
    }
    for (const RlSample& s : group.samples) {
      if (!range.contains(sample_index++)) continue;
      const int64_t T = static_cast<int64_t>(s.completion.size());
      if (static_cast<int64_t>(s.routing.size()) != T * L * K) {
        return absl::InvalidArgumentError("rl update: a sample routing of group " + std::to_string(g) +
                                       " does not cover its tokens");
      }
      for (int64_t pos = 0; pos < P + T; ++pos) {
        const int32_t* src;
        if (pos < P - 1) {
          src = group.prompt_routing.data() + pos * L * K;
        } else if (pos < P - 1 + T) {
          src = s.routing.data() + (pos - (P - 1)) * L * K;
        } else {
          src = s.routing.data() + (T - 1) * L * K;  // the last token predicts nothing
        }
        for (int64_t l = 0; l < L; ++l) {
          std::memcpy(&p->routing.experts[(l * N + base + pos) * K], src + l * K, K * sizeof(int32_t));
        }
      }
      base += P + T;
    }
  }
  return absl::OkStatus();
}

std::vector<float> Gather(const std::vector<float>& all, const std::vector<int64_t>& index) {
  std::vector<float> out(index.size());
  for (size_t i = 0; i < index.size(); ++i) out[i] = all[index[i]];
  return out;
}

// |rollout logprob - learner logprob| over the completion tokens, summed into `sum`, max into
// `max`, counted into `n`.
// Over the sampled tokens only: a tool's environment tokens were not sampled, and the engine
// reports no logprob for them (0).
void AddMismatch(const Packed& p, std::span<const float> learner, double* sum, double* max, int64_t* n) {
  for (size_t i = 0; i < p.rollout_logprobs.size(); ++i) {
    if (!p.sampled[i]) continue;
    const double d = std::fabs(static_cast<double>(p.rollout_logprobs[i]) - static_cast<double>(learner[i]));
    *sum += d;
    *max = std::max(*max, d);
    ++*n;
  }
}

// One mini-batch as this rank sees it: the whole mini-batch's packing (`full`, which the loss
// runs over on every rank) and the packing of this rank's own samples (`local`, which the
// forward and backward run over). With one rank they are the same.
struct Shard {
  Packed full, local;
  std::vector<size_t> token_counts;  // completion tokens of each rank's samples
  size_t first_token = 0;            // where this rank's tokens start in the full arrays
  bool distributed = false;
  const Packed& own() const { return distributed ? local : full; }
};

std::vector<int64_t> SampleCosts(const std::vector<RlGroup>& groups, size_t first, size_t last) {
  std::vector<int64_t> costs;
  for (size_t g = first; g < last; ++g) {
    for (const RlSample& s : groups[g].samples) {
      costs.push_back(static_cast<int64_t>(groups[g].prompt.size() + s.completion.size()));
    }
  }
  return costs;
}

absl::Status MakeShard(const std::vector<RlGroup>& groups, size_t first, size_t last, bool routing,
                       bool want_rollout, bool want_teacher, int64_t vocab, int64_t L, int64_t K, Collective* c,
                       Shard* sh) {
  sh->distributed = c != nullptr && c->size() > 1;
  // With ranks the forward runs over `local` only: the teacher logits are packed there alone.
  GRPO_RETURN_IF_ERROR(
      Pack(groups, first, last, routing, want_rollout, want_teacher, !sh->distributed, vocab, SampleRange{}, &sh->full));
  if (sh->full.has_routing) GRPO_RETURN_IF_ERROR(FillRouting(groups, first, last, L, K, SampleRange{}, &sh->full));
  if (!sh->distributed) return absl::OkStatus();
  const std::vector<size_t> bounds = SplitByTokens(SampleCosts(groups, first, last), c->size());
  for (int r = 0; r < c->size(); ++r) {
    sh->token_counts.push_back(sh->full.offsets[bounds[r + 1]] - sh->full.offsets[bounds[r]]);
  }
  sh->first_token = sh->full.offsets[bounds[c->rank()]];
  const SampleRange mine{bounds[c->rank()], bounds[c->rank() + 1]};
  GRPO_RETURN_IF_ERROR(Pack(groups, first, last, routing, want_rollout, want_teacher, true, vocab, mine, &sh->local));
  if (sh->local.has_routing && mine.begin < mine.end) {
    GRPO_RETURN_IF_ERROR(FillRouting(groups, first, last, L, K, mine, &sh->local));
  }
  return absl::OkStatus();
}

// Per-token values of the whole mini-batch from each rank's own (`mine`): an all-gather.
absl::StatusOr<std::vector<float>> GatherTokens(Collective* c, const Shard& sh, std::vector<float> mine) {
  if (!sh.distributed) return mine;
  std::vector<float> all(sh.full.target_index.size());
  std::copy(mine.begin(), mine.end(), all.begin() + sh.first_token);
  GRPO_RETURN_IF_ERROR(c->AllGather(absl::MakeSpan(all), sh.token_counts));
  return all;
}

bool Empty(const Packed& p) { return p.target_index.empty(); }

// Sums the ranks' gradients, clips and steps the optimizer (replicated AdamW, or the sharded one
// of options.sharded_optimizer); `*lr` is the learning rate it used. nullopt: a non-finite norm,
// nothing changed.
absl::StatusOr<std::optional<double>> ApplyGradients(CausalLM& policy, AdamW& optimizer,
                                                     const RlUpdateOptions& o, std::vector<Buffer>* grads,
                                                     double* lr) {
  const bool distributed = o.collective != nullptr && o.collective->size() > 1;
  if (o.sharded_optimizer != nullptr) {
    *lr = LearningRate(o.schedule, o.sharded_optimizer->step());
    if (o.gradient_reducer == nullptr) {
      return o.sharded_optimizer->Step(&policy.parameter_buffers(), *grads, *lr, o.max_grad_norm);
    }
    GRPO_RETURN_IF_ERROR(o.gradient_reducer->Finish(*grads));
    return o.sharded_optimizer->StepOnShard(&policy.parameter_buffers(), o.gradient_reducer->shard_sums(), *lr,
                                            o.max_grad_norm, o.gradient_reducer->staging());
  }
  if (distributed) GRPO_RETURN_IF_ERROR(AllReduceGradients(*o.collective, policy.parameter_specs(), grads));
  absl::StatusOr<double> norm = o.max_grad_norm > 0 ? ClipGradNorm(policy.parameter_specs(), grads, o.max_grad_norm)
                                                    : GlobalGradNorm(policy.parameter_specs(), *grads);
  if (!norm.ok()) return std::optional<double>();
  *lr = LearningRate(o.schedule, optimizer.step());
  GRPO_RETURN_IF_ERROR(optimizer.Step(&policy.parameter_buffers(), *grads, *lr));
  return std::optional<double>(*norm);
}

}  // namespace

absl::StatusOr<Routing> ReplayRouting(const std::vector<RlGroup>& groups, int64_t num_moe_layers, int64_t top_k) {
  Packed p;
  GRPO_RETURN_IF_ERROR(Pack(groups, 0, groups.size(), true, false, false, false, 0, SampleRange{}, &p));
  GRPO_RETURN_IF_ERROR(FillRouting(groups, 0, groups.size(), num_moe_layers, top_k, SampleRange{}, &p));
  return p.routing;
}

absl::StatusOr<RlUpdateStats> RlUpdate(CausalLM& policy, CausalLM* reference, AdamW& optimizer,
                               const std::vector<RlGroup>& groups, const RlUpdateOptions& options,
                               std::vector<Buffer>* grads) {
  if (groups.empty()) return absl::InvalidArgumentError("rl update: no groups");
  if (options.mini_batches <= 0 || options.epochs <= 0 ||
      groups.size() % static_cast<size_t>(options.mini_batches) != 0) {
    return absl::InvalidArgumentError("rl update: mini_batches must divide the number of groups (" +
                                   std::to_string(groups.size()) + ")");
  }
  if (options.loss.kl_beta > 0 && reference == nullptr) {
    return absl::InvalidArgumentError("rl update: kl_beta > 0 needs a reference model");
  }
  if (options.gradient_reducer != nullptr && options.sharded_optimizer == nullptr) {
    return absl::InvalidArgumentError("rl update: the gradient reducer feeds the sharded optimizer; set both");
  }
  GRPO_RETURN_IF_ERROR(ValidatePolicyLossOptions(options.loss));
  const ModelConfig& cfg = policy.config();
  const bool moe = cfg.NumMoeLayers() > 0;
  const int64_t L = moe ? cfg.NumMoeLayers() : 0;
  const int64_t K = moe ? cfg.num_experts_per_tok : 0;
  const bool want_rollout = options.loss.is_correction != IsCorrection::kNone;
  const bool want_teacher = options.loss.divergence_coef > 0;
  const size_t per_batch = groups.size() / static_cast<size_t>(options.mini_batches);
  Collective* c = options.collective;
  const bool distributed = c != nullptr && c->size() > 1;
  if (distributed && grads->empty()) *grads = policy.NewGradients();  // a rank may have no samples

  std::vector<Shard> shards(options.mini_batches);
  for (int64_t b = 0; b < options.mini_batches; ++b) {
    const size_t first = b * per_batch, last = first + per_batch;
    GRPO_RETURN_IF_ERROR(MakeShard(groups, first, last, options.routing_replay && moe, want_rollout, want_teacher,
                                   cfg.vocab_size, L, K, c, &shards[b]));
  }

  RlUpdateStats stats;
  const bool multi = options.mini_batches * options.epochs > 1;
  // old and reference logprobs, before any update
  std::vector<std::vector<float>> old_lp(shards.size()), ref_lp(shards.size());
  double entropy_sum = 0, mismatch_sum = 0;  // mismatch: over the whole mini-batch, alike on every rank
  int64_t entropy_n = 0, mismatch_n = 0;
  for (size_t b = 0; b < shards.size(); ++b) {
    const Packed& own = shards[b].own();
    ForwardOptions fo;
    fo.forced_routing = own.has_routing ? &own.routing : nullptr;
    if (multi) {
      fo.need_entropy = options.need_entropy;
      std::vector<float> lp;
      if (!Empty(own)) {
        GRPO_ASSIGN_OR_RETURN(ForwardOutput out, policy.Forward(own.batch, fo));
        lp = Gather(out.logprobs, own.target_index);
        if (options.need_entropy) {
          for (int64_t i : own.target_index) entropy_sum += out.entropy[i];
          entropy_n += static_cast<int64_t>(own.target_index.size());
        }
      }
      GRPO_ASSIGN_OR_RETURN(old_lp[b], GatherTokens(c, shards[b], std::move(lp)));
      if (!shards[b].full.rollout_logprobs.empty()) {
        AddMismatch(shards[b].full, old_lp[b], &mismatch_sum, &stats.mismatch_max_abs_logprob, &mismatch_n);
      }
    }
    if (options.loss.kl_beta > 0) {
      ForwardOptions ro;
      ro.forced_routing = fo.forced_routing;
      std::vector<float> lp;
      if (!Empty(own)) {
        GRPO_ASSIGN_OR_RETURN(ForwardOutput out, reference->Forward(own.batch, ro));
        lp = Gather(out.logprobs, own.target_index);
      }
      GRPO_ASSIGN_OR_RETURN(ref_lp[b], GatherTokens(c, shards[b], std::move(lp)));
    }
  }

  double loss_sum = 0, norm_sum = 0, clip_sum = 0, kl_sum = 0, isw_sum = 0, div_sum = 0;
  for (int64_t epoch = 0; epoch < options.epochs; ++epoch) {
    for (size_t b = 0; b < shards.size(); ++b) {
      const Packed& p = shards[b].full;
      const Packed& own = shards[b].own();
      ForwardOptions fo;
      fo.keep_activations = true;
      fo.need_entropy = !multi && options.need_entropy;
      fo.forced_routing = own.has_routing ? &own.routing : nullptr;
      // Full-distribution distillation: D_t at every completion token of this rank's samples.
      const DivergenceTargets div_targets{options.divergence, own.target_index, own.teacher_logits};
      if (want_teacher) fo.divergence = &div_targets;
      std::optional<ForwardOutput> out;
      std::vector<float> own_lp, own_div;
      if (!Empty(own)) {
        GRPO_ASSIGN_OR_RETURN(out, policy.Forward(own.batch, fo));
        own_lp = Gather(out->logprobs, own.target_index);
        own_div = std::move(out->divergence);
        if (fo.need_entropy) {
          for (int64_t i : own.target_index) entropy_sum += out->entropy[i];
          entropy_n += static_cast<int64_t>(own.target_index.size());
        }
      }
      absl::StatusOr<std::vector<float>> lp = GatherTokens(c, shards[b], std::move(own_lp));
      absl::StatusOr<std::vector<float>> div =
          want_teacher && lp.ok() ? GatherTokens(c, shards[b], std::move(own_div)) : std::vector<float>();
      if (!div.ok()) lp = div.status();
      absl::StatusOr<PolicyLossResult> loss = absl::UnknownError("unset");
      if (lp.ok()) {
        if (!multi && !p.rollout_logprobs.empty()) {  // this forward is the old-logprob pass
          AddMismatch(p, *lp, &mismatch_sum, &stats.mismatch_max_abs_logprob, &mismatch_n);
        }
        PolicyLossInputs in;
        in.logprobs = *lp;
        in.old_logprobs = multi ? std::span<const float>(old_lp[b]) : std::span<const float>(*lp);
        if (want_rollout) in.rollout_logprobs = p.rollout_logprobs;
        if (options.loss.kl_beta > 0) in.ref_logprobs = ref_lp[b];
        in.advantages = p.advantages;
        in.offsets = p.offsets;
        in.mask = p.mask;
        in.token_advantages = p.token_advantages;
        in.divergences = *div;
        loss = ComputePolicyLoss(in, options.loss);
      } else {
        loss = lp.status();
      }
      if (!loss.ok()) {
        if (out) policy.ReleaseActivations();
        return loss.status();
      }
      ZeroGrads(grads);
      if (out) {
        std::vector<float> weights(out->logprobs.size(), 0.0f);
        const size_t first = shards[b].distributed ? shards[b].first_token : 0;
        for (size_t i = 0; i < own.target_index.size(); ++i) weights[own.target_index[i]] = loss->grad[first + i];
        std::vector<float> div_weights;
        if (want_teacher) {
          div_weights.assign(loss->divergence_grad.begin() + first,
                             loss->divergence_grad.begin() + first + own.target_index.size());
        }
        // The update's only backward before the reduction (no accumulation), so it may overlap.
        const GradientsReady on_ready =
            distributed && options.gradient_reducer != nullptr ? options.gradient_reducer->Hook(grads) : nullptr;
        absl::Status st = policy.Backward(weights, div_weights, grads, on_ready);
        policy.ReleaseActivations();
        GRPO_RETURN_IF_ERROR(st);
      }
      double lr = 0;
      GRPO_ASSIGN_OR_RETURN(std::optional<double> norm, ApplyGradients(policy, optimizer, options, grads, &lr));
      loss_sum += loss->loss;
      clip_sum += loss->metrics.clip_frac;
      kl_sum += loss->metrics.kl_mean;
      isw_sum += loss->metrics.is_weight_mean;
      div_sum += loss->metrics.divergence_mean;
      stats.ratio_max = std::max(stats.ratio_max, loss->metrics.ratio_max);
      stats.tokens += epoch == 0 ? loss->metrics.num_tokens : 0;
      ++stats.optimizer_steps;
      if (!norm) {  // non-finite gradient: the update was skipped (on every rank alike)
        ++stats.skipped_steps;
        continue;
      }
      norm_sum += *norm;
      stats.lr = lr;
    }
  }
  for (const Shard& sh : shards) stats.samples_trained += sh.own().trained_samples;
  if (distributed) {  // the entropy metric over every rank's tokens, each rank's trained samples
    double e[3] = {entropy_sum, static_cast<double>(entropy_n), static_cast<double>(stats.samples_trained)};
    GRPO_RETURN_IF_ERROR(c->AllReduceSum(absl::MakeSpan(e, 3)));
    entropy_sum = e[0];
    entropy_n = static_cast<int64_t>(e[1]);
    stats.samples_trained = static_cast<int64_t>(e[2]);
  }
  const double n = static_cast<double>(stats.optimizer_steps);
  stats.loss = loss_sum / n;
  stats.clip_frac = clip_sum / n;
  stats.kl = kl_sum / n;
  stats.is_weight_mean = isw_sum / n;
  stats.divergence = div_sum / n;
  stats.grad_norm = stats.optimizer_steps > stats.skipped_steps ? norm_sum / (n - stats.skipped_steps) : 0;
  stats.entropy = entropy_n > 0 ? entropy_sum / static_cast<double>(entropy_n) : 0;
  stats.mismatch_tokens = mismatch_n;
  stats.mismatch_mean_abs_logprob = mismatch_n > 0 ? mismatch_sum / static_cast<double>(mismatch_n) : 0;
  return stats;
}

}  // namespace grpo

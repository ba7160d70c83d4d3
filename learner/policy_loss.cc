#include "learner/policy_loss.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

namespace grpo {
namespace {

std::string Num(double v) { return std::to_string(v); }

absl::Status CheckLength(std::string_view field, size_t got, size_t want) {
  if (got == want) return absl::OkStatus();
  return absl::InvalidArgumentError(std::string(field) + " has " + std::to_string(got) +
                                 " values, expected " + std::to_string(want));
}

}  // namespace

PolicyLossOptions PolicyLossPreset(Objective objective) {
  PolicyLossOptions o;
  switch (objective) {
    case Objective::kGrpo:
      o.aggregation = LossAggregation::kSeqMeanTokenMean;
      o.kl_beta = 0.04;
      o.kl_estimator = KlEstimator::kK3;
      break;
    case Objective::kDrGrpo:
      o.aggregation = LossAggregation::kSeqMeanTokenSumNorm;
      break;
    case Objective::kDapo:
      o.clip_eps_high = 0.28;
      o.aggregation = LossAggregation::kTokenMean;
      break;
    case Objective::kGspo:
      o.clip_eps_low = 3e-4;
      o.clip_eps_high = 4e-4;
      o.ratio_level = RatioLevel::kSequence;
      o.aggregation = LossAggregation::kSeqMeanTokenMean;
      break;
  }
  return o;
}

absl::StatusOr<LossAggregation> ParseLossAggregation(std::string_view name) {
  if (name == "token-mean") return LossAggregation::kTokenMean;
  if (name == "seq-mean-token-mean") return LossAggregation::kSeqMeanTokenMean;
  if (name == "seq-mean-token-sum-norm") return LossAggregation::kSeqMeanTokenSumNorm;
  return absl::InvalidArgumentError("loss aggregation: unknown name \"" + std::string(name) +
                                 "\" (expected token-mean, seq-mean-token-mean or "
                                 "seq-mean-token-sum-norm)");
}

absl::StatusOr<KlEstimator> ParseKlEstimator(std::string_view name) {
  if (name == "k1") return KlEstimator::kK1;
  if (name == "k2") return KlEstimator::kK2;
  if (name == "k3") return KlEstimator::kK3;
  return absl::InvalidArgumentError("kl estimator: unknown name \"" + std::string(name) +
                                 "\" (expected k1, k2 or k3)");
}

absl::StatusOr<IsCorrection> ParseIsCorrection(std::string_view name) {
  if (name == "none") return IsCorrection::kNone;
  if (name == "token_tis") return IsCorrection::kTokenTis;
  if (name == "seq_tis") return IsCorrection::kSeqTis;
  if (name == "token_mask") return IsCorrection::kTokenMask;
  if (name == "seq_mask") return IsCorrection::kSeqMask;
  return absl::InvalidArgumentError("is correction: unknown name \"" + std::string(name) +
                                 "\" (expected none, token_tis, seq_tis, token_mask or seq_mask)");
}

absl::StatusOr<RatioLevel> ParseRatioLevel(std::string_view name) {
  if (name == "token") return RatioLevel::kToken;
  if (name == "sequence") return RatioLevel::kSequence;
  return absl::InvalidArgumentError("ratio level: unknown name \"" + std::string(name) +
                                 "\" (expected token or sequence)");
}

absl::Status ValidatePolicyLossOptions(const PolicyLossOptions& o) {
  if (!(o.clip_eps_low >= 0 && o.clip_eps_low < 1)) {
    return absl::InvalidArgumentError("clip_eps_low must be in [0, 1), got " + Num(o.clip_eps_low));
  }
  if (!(o.clip_eps_high >= 0) || !std::isfinite(o.clip_eps_high)) {
    return absl::InvalidArgumentError("clip_eps_high must be finite and >= 0, got " +
                                   Num(o.clip_eps_high));
  }
  if (o.aggregation == LossAggregation::kSeqMeanTokenSumNorm &&
      !(o.norm_length > 0 && std::isfinite(o.norm_length))) {
    return absl::InvalidArgumentError(
        "norm_length must be finite and > 0 for seq-mean-token-sum-norm (set it to the maximum "
        "response length), got " + Num(o.norm_length));
  }
  if (!(o.kl_beta >= 0) || !std::isfinite(o.kl_beta)) {
    return absl::InvalidArgumentError("kl_beta must be finite and >= 0, got " + Num(o.kl_beta));
  }
  if (o.is_correction != IsCorrection::kNone && !(o.is_cap >= 1 && std::isfinite(o.is_cap))) {
    return absl::InvalidArgumentError("is_cap must be finite and >= 1, got " + Num(o.is_cap));
  }
  return absl::OkStatus();
}

absl::StatusOr<PolicyLossResult> ComputePolicyLoss(const PolicyLossInputs& in, const PolicyLossOptions& o) {
  GRPO_RETURN_IF_ERROR(ValidatePolicyLossOptions(o));
  const size_t n = in.logprobs.size();
  const bool use_is = o.is_correction != IsCorrection::kNone;
  const bool use_kl = o.kl_beta > 0;
  GRPO_RETURN_IF_ERROR(CheckLength("old_logprobs", in.old_logprobs.size(), n));
  if (use_is || !in.rollout_logprobs.empty()) {
    GRPO_RETURN_IF_ERROR(CheckLength("rollout_logprobs", in.rollout_logprobs.size(), n));
  }
  if (use_kl || !in.ref_logprobs.empty()) {
    GRPO_RETURN_IF_ERROR(CheckLength("ref_logprobs", in.ref_logprobs.size(), n));
  }
  if (!in.mask.empty()) GRPO_RETURN_IF_ERROR(CheckLength("mask", in.mask.size(), n));
  if (in.offsets.empty() || in.offsets.front() != 0 ||
      in.offsets.back() != static_cast<int64_t>(n)) {
    return absl::InvalidArgumentError("offsets must start at 0 and end at the number of tokens (" +
                                   std::to_string(n) + ")");
  }
  const size_t num_seqs = in.offsets.size() - 1;
  for (size_t i = 0; i < num_seqs; ++i) {
    if (in.offsets[i + 1] < in.offsets[i]) {
      return absl::InvalidArgumentError("offsets decrease at sequence " + std::to_string(i));
    }
  }
  GRPO_RETURN_IF_ERROR(CheckLength("advantages", in.advantages.size(), num_seqs));
  for (size_t i = 0; i < num_seqs; ++i) {
    if (!std::isfinite(in.advantages[i])) {
      return absl::InvalidArgumentError("advantages[" + std::to_string(i) + "] is not finite");
    }
  }
  auto counted = [&](size_t t) { return in.mask.empty() || in.mask[t] != 0; };
  std::vector<int64_t> seq_tokens(num_seqs, 0);
  int64_t total_tokens = 0;
  for (size_t i = 0; i < num_seqs; ++i) {
    for (int64_t t = in.offsets[i]; t < in.offsets[i + 1]; ++t) {
      if (!counted(t)) continue;
      const auto bad = [&](std::string_view field, float v) {
        return std::isfinite(v) ? absl::OkStatus()
                                : absl::InvalidArgumentError(std::string(field) + "[" +
                                                          std::to_string(t) + "] is not finite");
      };
      GRPO_RETURN_IF_ERROR(bad("logprobs", in.logprobs[t]));
      GRPO_RETURN_IF_ERROR(bad("old_logprobs", in.old_logprobs[t]));
      if (use_is) GRPO_RETURN_IF_ERROR(bad("rollout_logprobs", in.rollout_logprobs[t]));
      if (use_kl) GRPO_RETURN_IF_ERROR(bad("ref_logprobs", in.ref_logprobs[t]));
      ++seq_tokens[i];
    }
    total_tokens += seq_tokens[i];
  }

  PolicyLossResult out;
  out.grad.assign(n, 0.0f);
  PolicyLossMetrics& m = out.metrics;
  m.num_tokens = total_tokens;
  m.has_kl = use_kl;
  if (total_tokens == 0) return out;

  const double lo = 1.0 - o.clip_eps_low, hi = 1.0 + o.clip_eps_high;
  const double log_cap = use_is ? std::log(o.is_cap) : 0.0;
  const double big = std::numeric_limits<double>::infinity();
  double loss = 0, ratio_sum = 0, kl_sum = 0, w_sum = 0;
  int64_t clipped_low = 0, clipped_high = 0, capped = 0, masked = 0;
  m.ratio_min = big;
  m.ratio_max = -big;

  for (size_t i = 0; i < num_seqs; ++i) {
    const int64_t b = in.offsets[i], e = in.offsets[i + 1];
    if (seq_tokens[i] == 0) continue;
    const double adv = in.advantages[i];
    double coef = 0;  // dLoss / d l_t for every token of this sequence
    switch (o.aggregation) {
      case LossAggregation::kTokenMean: coef = 1.0 / static_cast<double>(total_tokens); break;
      case LossAggregation::kSeqMeanTokenMean:
        coef = 1.0 / (static_cast<double>(num_seqs) * static_cast<double>(seq_tokens[i]));
        break;
      case LossAggregation::kSeqMeanTokenSumNorm:
        coef = 1.0 / (static_cast<double>(num_seqs) * o.norm_length);
        break;
    }
    // Sequence-level quantities over the counted tokens.
    double seq_ratio = 0, seq_is_log = 0;
    if (o.ratio_level == RatioLevel::kSequence) {
      double s = 0;
      for (int64_t t = b; t < e; ++t) {
        if (counted(t)) s += static_cast<double>(in.logprobs[t]) - static_cast<double>(in.old_logprobs[t]);
      }
      seq_ratio = std::exp(s / static_cast<double>(seq_tokens[i]));
    }
    if (o.is_correction == IsCorrection::kSeqTis || o.is_correction == IsCorrection::kSeqMask) {
      for (int64_t t = b; t < e; ++t) {
        if (counted(t)) {
          seq_is_log += static_cast<double>(in.old_logprobs[t]) - static_cast<double>(in.rollout_logprobs[t]);
        }
      }
    }
    double seq_loss = 0;
    for (int64_t t = b; t < e; ++t) {
      if (!counted(t)) continue;
      const double logp = in.logprobs[t], old = in.old_logprobs[t];
      // Ratio; d ratio / d logp = ratio at both levels (GSPO-token: sg(s_i) * exp(logp - sg(logp))).
      const double r = o.ratio_level == RatioLevel::kToken ? std::exp(logp - old) : seq_ratio;
      const double c = std::clamp(r, lo, hi);
      const double unclipped = r * adv, clipped = c * adv;
      const bool in_range = lo <= r && r <= hi;  // clamp passes its gradient (bounds inclusive)
      double dmin_dr;                             // d min(unclipped, clipped) / d r, torch's rule
      if (unclipped < clipped) {
        dmin_dr = adv;
      } else if (unclipped > clipped) {
        dmin_dr = in_range ? adv : 0.0;
      } else {
        dmin_dr = 0.5 * adv + (in_range ? 0.5 * adv : 0.0);
      }
      const double pg = -std::min(unclipped, clipped);
      const double dpg = -dmin_dr * r;
      if (r < lo && adv < 0) ++clipped_low;
      if (r > hi && adv > 0) ++clipped_high;

      double w = 1;
      switch (o.is_correction) {
        case IsCorrection::kNone: break;
        case IsCorrection::kTokenTis: {
          const double d = old - static_cast<double>(in.rollout_logprobs[t]);
          if (d > log_cap) ++capped;
          w = std::min(std::exp(d), o.is_cap);
          break;
        }
        case IsCorrection::kSeqTis:
          if (seq_is_log > log_cap) ++capped;
          w = std::min(std::exp(seq_is_log), o.is_cap);
          break;
        case IsCorrection::kTokenMask: {
          const double d = old - static_cast<double>(in.rollout_logprobs[t]);
          w = std::abs(d) <= log_cap ? 1.0 : 0.0;
          break;
        }
        case IsCorrection::kSeqMask: w = std::abs(seq_is_log) <= log_cap ? 1.0 : 0.0; break;
      }
      if ((o.is_correction == IsCorrection::kTokenMask || o.is_correction == IsCorrection::kSeqMask) &&
          w == 0) {
        ++masked;
      }

      double kl = 0, dkl = 0;
      if (use_kl) {
        const double diff = logp - static_cast<double>(in.ref_logprobs[t]);  // logp - ref
        switch (o.kl_estimator) {
          case KlEstimator::kK1: kl = diff; dkl = 1; break;
          case KlEstimator::kK2: kl = 0.5 * diff * diff; dkl = diff; break;
          case KlEstimator::kK3: {
            const double e_ = std::exp(-diff);  // exp(ref - logp)
            kl = e_ + diff - 1;                 // exp(ref - logp) - (ref - logp) - 1
            dkl = 1 - e_;
            break;
          }
        }
      }
      seq_loss += w * pg + o.kl_beta * kl;
      out.grad[t] = static_cast<float>(coef * (w * dpg + o.kl_beta * dkl));
      ratio_sum += r;
      m.ratio_min = std::min(m.ratio_min, r);
      m.ratio_max = std::max(m.ratio_max, r);
      kl_sum += kl;
      w_sum += w;
    }
    loss += coef * seq_loss;
  }
  const double T = static_cast<double>(total_tokens);
  out.loss = loss;
  m.clip_frac_low = clipped_low / T;
  m.clip_frac_high = clipped_high / T;
  m.clip_frac = (clipped_low + clipped_high) / T;
  m.ratio_mean = ratio_sum / T;
  m.kl_mean = use_kl ? kl_sum / T : 0.0;
  m.is_weight_mean = w_sum / T;
  m.is_capped_frac = capped / T;
  m.is_masked_frac = masked / T;
  return out;
}

}  // namespace grpo

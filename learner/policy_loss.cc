#include "learner/policy_loss.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <utility>
#include <vector>

namespace grpo {
namespace {

std::string Num(double v) { return std::to_string(v); }

absl::Status CheckLength(std::string_view field, size_t got, size_t want) {
  if (got == want) return absl::OkStatus();
  return absl::InvalidArgumentError(std::string(field) + " has " + std::to_string(got) +
                                 " values, expected " + std::to_string(want));
}

// dLoss / d l_t for every token of a sequence with `seq_tokens` counted tokens.
double AggregationCoef(const PolicyLossOptions& o, int64_t total_tokens, size_t num_seqs, int64_t seq_tokens) {
  switch (o.aggregation) {
    case LossAggregation::kTokenMean: return 1.0 / static_cast<double>(total_tokens);
    case LossAggregation::kSeqMeanTokenMean:
      return 1.0 / (static_cast<double>(num_seqs) * static_cast<double>(seq_tokens));
    case LossAggregation::kSeqMeanTokenSumNorm: return 1.0 / (static_cast<double>(num_seqs) * o.norm_length);
    case LossAggregation::kSeqMeanTokenSum: return 1.0 / static_cast<double>(num_seqs);
  }
  return 0;
}

// The IS weight w_t of one token: `d` = old_t - rollout_t, `seq_sum` = sum of d over the
// sequence, `seq_mean` = its mean (the log of the geometric-mean ratio).
struct IsWeight {
  double w = 1;
  bool capped = false;  // TIS modes: the raw ratio exceeded C
  bool masked = false;  // mask modes: w = 0
};

IsWeight ImportanceWeight(const PolicyLossOptions& o, double log_cap, double d, double seq_sum, double seq_mean) {
  IsWeight iw;
  switch (o.is_correction) {
    case IsCorrection::kNone: return iw;
    case IsCorrection::kTokenTis:
      iw.capped = d > log_cap;
      iw.w = std::min(std::exp(d), o.is_cap);
      return iw;
    case IsCorrection::kSeqTis:
      iw.capped = seq_sum > log_cap;
      iw.w = std::min(std::exp(seq_sum), o.is_cap);
      return iw;
    case IsCorrection::kSeqTisGeo:
      iw.capped = seq_mean > log_cap;
      iw.w = std::min(std::exp(seq_mean), o.is_cap);
      return iw;
    case IsCorrection::kTokenMask: iw.w = std::abs(d) <= log_cap ? 1.0 : 0.0; break;
    case IsCorrection::kSeqMask: iw.w = std::abs(seq_sum) <= log_cap ? 1.0 : 0.0; break;
    case IsCorrection::kSeqMaskGeo: iw.w = std::abs(seq_mean) <= log_cap ? 1.0 : 0.0; break;
    case IsCorrection::kIcePop: {
      const double ratio = std::exp(d);
      iw.w = o.icepop_low <= ratio && ratio <= o.icepop_high ? 1.0 : 0.0;
      break;
    }
  }
  iw.masked = iw.w == 0;
  return iw;
}

// The policy term of one token (kClip, kCispo, kSapo) and its derivative d pg / d logp.
struct TokenTerm {
  double pg = 0, dpg = 0;
  bool clipped_low = false, clipped_high = false;
};

// kClip: -min(r A, clip(r) A) with torch's gradient rules; dr/dlogp = r at both ratio levels.
TokenTerm ClipTerm(double r, double adv, double lo, double hi) {
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
  TokenTerm t;
  t.pg = -std::min(unclipped, clipped);
  t.dpg = -dmin_dr * r;
  t.clipped_low = r < lo && adv < 0;
  t.clipped_high = r > hi && adv > 0;
  return t;
}

// kCispo: -sg(clip(r)) A logp.
TokenTerm CispoTerm(double r, double adv, double logp, double lo, double hi) {
  const double c = std::clamp(r, lo, hi);
  TokenTerm t;
  t.pg = -c * adv * logp;
  t.dpg = -c * adv;
  t.clipped_low = r < lo;
  t.clipped_high = r > hi;
  return t;
}

// kSapo: -(4 / tau) sigmoid(tau (r - 1)) A; d/dlogp = -4 s (1 - s) r A.
TokenTerm SapoTerm(double r, double adv, const PolicyLossOptions& o) {
  const double tau = adv > 0 ? o.sapo_tau_pos : o.sapo_tau_neg;
  const double s = 1.0 / (1.0 + std::exp(-tau * (r - 1.0)));
  TokenTerm t;
  t.pg = -(4.0 / tau) * s * adv;
  t.dpg = -4.0 * s * (1.0 - s) * r * adv;
  return t;
}

// kGmpo for one sequence: pg = -A exp(mean_u c_u), the same for each of its tokens; dpg[k] is
// d pg / d logp of its k-th counted token.
struct GmpoTerm {
  double pg = 0;
  std::vector<double> dpg;
  std::vector<uint8_t> clipped_low, clipped_high;
};

GmpoTerm GmpoSequence(const std::vector<double>& log_ratios, double adv, double eps_low, double eps_high) {
  const double sgn = adv > 0 ? 1.0 : adv < 0 ? -1.0 : 0.0;
  const size_t n = log_ratios.size();
  GmpoTerm g;
  std::vector<double> dc(n);  // d c_u / d lr_u, torch's rules for min and clamp
  double sum = 0;
  for (size_t k = 0; k < n; ++k) {
    const double lr = log_ratios[k];
    const double cl = std::clamp(lr, -eps_low, eps_high);
    const double a = sgn * lr, b = sgn * cl;
    const double dcl = -eps_low <= lr && lr <= eps_high ? 1.0 : 0.0;
    sum += sgn * std::min(a, b);
    dc[k] = a < b ? sgn * sgn : a > b ? sgn * sgn * dcl : sgn * sgn * (0.5 + 0.5 * dcl);
    g.clipped_low.push_back(adv < 0 && lr < -eps_low);
    g.clipped_high.push_back(adv > 0 && lr > eps_high);
  }
  const double ratio = std::exp(sum / static_cast<double>(n));
  g.pg = -adv * ratio;
  for (size_t k = 0; k < n; ++k) g.dpg.push_back(-adv * ratio * dc[k] / static_cast<double>(n));
  return g;
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
    case Objective::kCispo:
      o.surrogate = Surrogate::kCispo;
      o.clip_eps_low = 1.0;  // no lower bound on the IS weight, as in MiniMax-M1
      o.clip_eps_high = 0.28;
      o.aggregation = LossAggregation::kTokenMean;
      break;
    case Objective::kSapo:
      o.surrogate = Surrogate::kSapo;
      o.aggregation = LossAggregation::kSeqMeanTokenMean;
      break;
    case Objective::kGmpo:
      o.surrogate = Surrogate::kGmpo;
      o.clip_eps_low = 0.4;  // log-space range (e^-0.4, e^0.4), as in the GMPO paper
      o.clip_eps_high = 0.4;
      o.aggregation = LossAggregation::kSeqMeanTokenMean;
      break;
  }
  return o;
}

absl::StatusOr<LossAggregation> ParseLossAggregation(std::string_view name) {
  if (name == "token-mean") return LossAggregation::kTokenMean;
  if (name == "seq-mean-token-mean") return LossAggregation::kSeqMeanTokenMean;
  if (name == "seq-mean-token-sum-norm") return LossAggregation::kSeqMeanTokenSumNorm;
  if (name == "seq-mean-token-sum") return LossAggregation::kSeqMeanTokenSum;
  return absl::InvalidArgumentError("loss aggregation: unknown name \"" + std::string(name) +
                                 "\" (expected token-mean, seq-mean-token-mean, "
                                 "seq-mean-token-sum-norm or seq-mean-token-sum)");
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
  if (name == "seq_tis_geo") return IsCorrection::kSeqTisGeo;
  if (name == "seq_mask_geo") return IsCorrection::kSeqMaskGeo;
  if (name == "icepop") return IsCorrection::kIcePop;
  return absl::InvalidArgumentError("is correction: unknown name \"" + std::string(name) +
                                 "\" (expected none, token_tis, seq_tis, token_mask, seq_mask, "
                                 "seq_tis_geo, seq_mask_geo or icepop)");
}

absl::StatusOr<RatioLevel> ParseRatioLevel(std::string_view name) {
  if (name == "token") return RatioLevel::kToken;
  if (name == "sequence") return RatioLevel::kSequence;
  return absl::InvalidArgumentError("ratio level: unknown name \"" + std::string(name) +
                                 "\" (expected token or sequence)");
}

absl::Status ValidatePolicyLossOptions(const PolicyLossOptions& o) {
  switch (o.surrogate) {
    case Surrogate::kClip:
      if (!(o.clip_eps_low >= 0 && o.clip_eps_low < 1)) {
        return absl::InvalidArgumentError("clip_eps_low must be in [0, 1), got " + Num(o.clip_eps_low));
      }
      break;
    case Surrogate::kCispo:
      if (!(o.clip_eps_low >= 0 && o.clip_eps_low <= 1)) {
        return absl::InvalidArgumentError("clip_eps_low must be in [0, 1] for cispo (1: no lower bound), got " +
                                          Num(o.clip_eps_low));
      }
      break;
    case Surrogate::kGmpo:
      if (!(o.clip_eps_low >= 0) || !std::isfinite(o.clip_eps_low)) {
        return absl::InvalidArgumentError("clip_eps_low must be finite and >= 0 for gmpo (a log-space bound), got " +
                                          Num(o.clip_eps_low));
      }
      break;
    case Surrogate::kSapo:
      for (const auto& [name, tau] : {std::pair{"sapo_tau_pos", o.sapo_tau_pos}, std::pair{"sapo_tau_neg", o.sapo_tau_neg}}) {
        if (!(tau > 0) || !std::isfinite(tau)) {
          return absl::InvalidArgumentError(std::string(name) + " must be finite and > 0, got " + Num(tau));
        }
      }
      break;
  }
  if (!(o.clip_eps_high >= 0) || !std::isfinite(o.clip_eps_high)) {
    return absl::InvalidArgumentError("clip_eps_high must be finite and >= 0, got " +
                                   Num(o.clip_eps_high));
  }
  if (o.surrogate != Surrogate::kClip && o.ratio_level != RatioLevel::kToken) {
    return absl::InvalidArgumentError(
        "ratio_level must be token for cispo, sapo and gmpo (the sequence ratio is GSPO's, with the PPO-clip "
        "surrogate)");
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
  if (o.is_correction == IsCorrection::kIcePop) {
    if (!(o.icepop_low >= 0 && o.icepop_low <= 1 && o.icepop_high >= 1 && std::isfinite(o.icepop_high))) {
      return absl::InvalidArgumentError("icepop bounds must satisfy 0 <= icepop_low <= 1 <= icepop_high (finite), got [" +
                                        Num(o.icepop_low) + ", " + Num(o.icepop_high) + "]");
    }
  } else if (o.is_correction != IsCorrection::kNone && !(o.is_cap >= 1 && std::isfinite(o.is_cap))) {
    return absl::InvalidArgumentError("is_cap must be finite and >= 1, got " + Num(o.is_cap));
  }
  if (!(o.divergence_coef >= 0) || !std::isfinite(o.divergence_coef)) {
    return absl::InvalidArgumentError("divergence_coef must be finite and >= 0, got " + Num(o.divergence_coef));
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
  const bool use_div = !in.divergences.empty();
  if (use_div) GRPO_RETURN_IF_ERROR(CheckLength("divergences", in.divergences.size(), n));
  if (use_div != (o.divergence_coef > 0)) {
    return absl::InvalidArgumentError(use_div ? "divergences are given but divergence_coef is 0"
                                              : "divergence_coef > 0 needs divergences");
  }
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
  const bool token_adv = !in.token_advantages.empty();
  if (token_adv) {
    GRPO_RETURN_IF_ERROR(CheckLength("token_advantages", in.token_advantages.size(), n));
    if (o.surrogate == Surrogate::kGmpo) {
      return absl::InvalidArgumentError("token_advantages: the gmpo objective takes one advantage per sequence");
    }
  }
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
      if (use_div) GRPO_RETURN_IF_ERROR(bad("divergences", in.divergences[t]));
      if (token_adv && !std::isfinite(in.token_advantages[t])) {
        return absl::InvalidArgumentError("token_advantages[" + std::to_string(t) + "] is not finite");
      }
      ++seq_tokens[i];
    }
    total_tokens += seq_tokens[i];
  }

  PolicyLossResult out;
  out.grad.assign(n, 0.0f);
  if (use_div) out.divergence_grad.assign(n, 0.0f);
  PolicyLossMetrics& m = out.metrics;
  m.num_tokens = total_tokens;
  m.has_kl = use_kl;
  if (total_tokens == 0) return out;

  const double lo = 1.0 - o.clip_eps_low, hi = 1.0 + o.clip_eps_high;
  const double log_cap = use_is && o.is_correction != IsCorrection::kIcePop ? std::log(o.is_cap) : 0.0;
  const double big = std::numeric_limits<double>::infinity();
  double loss = 0, ratio_sum = 0, kl_sum = 0, w_sum = 0, div_sum = 0;
  int64_t clipped_low = 0, clipped_high = 0, capped = 0, masked = 0;
  m.ratio_min = big;
  m.ratio_max = -big;

  for (size_t i = 0; i < num_seqs; ++i) {
    const int64_t b = in.offsets[i], e = in.offsets[i + 1];
    if (seq_tokens[i] == 0) continue;
    const double adv = in.advantages[i];
    const double coef = AggregationCoef(o, total_tokens, num_seqs, seq_tokens[i]);
    // Sequence-level quantities over the counted tokens.
    double seq_ratio = 0, seq_is_log = 0;
    if (o.ratio_level == RatioLevel::kSequence) {
      double s = 0;
      for (int64_t t = b; t < e; ++t) {
        if (counted(t)) s += static_cast<double>(in.logprobs[t]) - static_cast<double>(in.old_logprobs[t]);
      }
      seq_ratio = std::exp(s / static_cast<double>(seq_tokens[i]));
    }
    if (use_is) {
      for (int64_t t = b; t < e; ++t) {
        if (counted(t)) {
          seq_is_log += static_cast<double>(in.old_logprobs[t]) - static_cast<double>(in.rollout_logprobs[t]);
        }
      }
    }
    const double seq_is_mean = seq_is_log / static_cast<double>(seq_tokens[i]);
    // IS weights of the counted tokens, in order; their sum multiplies GMPO's sequence term.
    std::vector<double> weights;
    double seq_w_sum = 0;
    for (int64_t t = b; t < e; ++t) {
      if (!counted(t)) continue;
      const double d = use_is ? static_cast<double>(in.old_logprobs[t]) - static_cast<double>(in.rollout_logprobs[t]) : 0.0;
      const IsWeight iw = ImportanceWeight(o, log_cap, d, seq_is_log, seq_is_mean);
      capped += iw.capped;
      masked += iw.masked;
      weights.push_back(iw.w);
      seq_w_sum += iw.w;
    }
    GmpoTerm gmpo;
    if (o.surrogate == Surrogate::kGmpo) {
      std::vector<double> log_ratios;
      for (int64_t t = b; t < e; ++t) {
        if (counted(t)) log_ratios.push_back(static_cast<double>(in.logprobs[t]) - static_cast<double>(in.old_logprobs[t]));
      }
      gmpo = GmpoSequence(log_ratios, adv, o.clip_eps_low, o.clip_eps_high);
    }
    double seq_loss = 0;
    size_t k = 0;  // index among the counted tokens
    for (int64_t t = b; t < e; ++t) {
      if (!counted(t)) continue;
      const double logp = in.logprobs[t], old = in.old_logprobs[t];
      // Ratio; d ratio / d logp = ratio at both levels (GSPO-token: sg(s_i) * exp(logp - sg(logp))).
      const double r = o.ratio_level == RatioLevel::kToken ? std::exp(logp - old) : seq_ratio;
      TokenTerm term;
      double dpg_weight = weights[k];  // what multiplies d pg / d logp_t in the gradient
      const double a_t = token_adv ? adv + in.token_advantages[t] : adv;
      switch (o.surrogate) {
        case Surrogate::kClip: term = ClipTerm(r, a_t, lo, hi); break;
        case Surrogate::kCispo: term = CispoTerm(r, a_t, logp, lo, hi); break;
        case Surrogate::kSapo: term = SapoTerm(r, a_t, o); break;
        case Surrogate::kGmpo:
          term = {gmpo.pg, gmpo.dpg[k], gmpo.clipped_low[k] != 0, gmpo.clipped_high[k] != 0};
          dpg_weight = seq_w_sum;  // pg_i appears in every token's term of the sequence
          break;
      }
      clipped_low += term.clipped_low;
      clipped_high += term.clipped_high;
      const double w = weights[k++];

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
      const double div = use_div ? static_cast<double>(in.divergences[t]) : 0.0;
      seq_loss += w * term.pg + o.kl_beta * kl + o.divergence_coef * div;
      out.grad[t] = static_cast<float>(coef * (dpg_weight * term.dpg + o.kl_beta * dkl));
      if (use_div) out.divergence_grad[t] = static_cast<float>(coef * o.divergence_coef);
      div_sum += div;
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
  m.divergence_mean = div_sum / T;
  return out;
}

absl::StatusOr<std::vector<double>> DistillationAdvantages(std::span<const float> student_logprobs,
                                                           std::span<const float> teacher_logprobs,
                                                           double coef) {
  GRPO_RETURN_IF_ERROR(CheckLength("teacher_logprobs", teacher_logprobs.size(), student_logprobs.size()));
  if (!(coef > 0 && std::isfinite(coef))) {
    return absl::InvalidArgumentError("distillation coef must be finite and > 0, got " + Num(coef));
  }
  std::vector<double> out(student_logprobs.size());
  for (size_t t = 0; t < out.size(); ++t) {
    const double s = student_logprobs[t], teacher = teacher_logprobs[t];
    if (!std::isfinite(s) || !std::isfinite(teacher)) {
      return absl::InvalidArgumentError("distillation logprobs of token " + std::to_string(t) + " are not finite");
    }
    out[t] = -coef * (s - teacher);
  }
  return out;
}

}  // namespace grpo

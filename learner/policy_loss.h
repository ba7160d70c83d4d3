// The policy-gradient objectives of GRPO, Dr.GRPO, DAPO, GSPO (PPO-clip), CISPO, SAPO and GMPO,
// with an optional KL penalty to a frozen reference policy and rollout/training mismatch
// correction (truncated importance sampling or masking). docs/learner.md gives every formula as
// implemented here.
//
// Inputs are per completion token, sequence after sequence (token t of sequence i lies in
// [offsets[i], offsets[i+1])). The result is the loss value and dLoss/dlogprob for every token:
// the trainer passes that gradient as `weights` to CausalLM::Backward, which accumulates the
// parameter gradients of sum_t weights[t] * logprob[t]. f32 in and out; every sum, ratio and
// gradient is computed in double.
//
// Per token (mask m_t = 1 unless a per-token mask excludes it; excluded tokens have loss and
// gradient 0, do not count in any denominator, any sequence mean or any IS product):
//   ratio    r_t = exp(logp_t - old_t)                           (RatioLevel::kToken)
//            r_t = sg(s_i) * exp(logp_t - sg(logp_t)),  s_i = exp(mean_t(logp - old))
//                                                               (kSequence, GSPO-token form)
//   policy   pg_t, by Surrogate:
//     kClip   -min(r_t A_i, clip(r_t, 1 - eps_low, 1 + eps_high) A_i)
//     kCispo  -sg(clip(r_t, 1 - eps_low, 1 + eps_high)) A_i logp_t
//     kSapo   -(4 / tau_i) sigmoid(tau_i (r_t - 1)) A_i,  tau_i = tau_pos if A_i > 0 else tau_neg
//     kGmpo   -A_i exp(mean_u c_u) for every token of sequence i, where
//             c_u = sgn(A_i) min(sgn(A_i) lr_u, sgn(A_i) clip(lr_u, -eps_low, eps_high)),
//             lr_u = logp_u - old_u (clipping in log space)
//   IS       w_t  (constant; 1 without correction)
//   kl       kl_t = k1 | k2 | k3 (logp_t, ref_t)                 (only when kl_beta > 0)
//   div      D_t, the token's full-distribution divergence to a teacher (only when given:
//            on-policy distillation over the whole vocabulary, CausalLM's DivergenceTargets)
//   l_t = w_t * pg_t + kl_beta * kl_t + divergence_coef * D_t
// aggregated as `aggregation` says. The gradient is what autograd of that expression gives,
// torch conventions included: clamp passes the gradient at its bounds (inclusive), and where
// both arguments of min are equal each receives half of it.
#ifndef GRPO_LEARNER_POLICY_LOSS_H_
#define GRPO_LEARNER_POLICY_LOSS_H_

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "learner/objective.h"

namespace grpo {

enum class RatioLevel { kToken, kSequence };

// The per-token policy term pg_t (see the top of this file).
enum class Surrogate {
  kClip,   // PPO-clip: GRPO, Dr.GRPO, DAPO, GSPO
  kCispo,  // clipped IS weight under a stop-gradient, on every token (MiniMax-M1)
  kSapo,   // soft adaptive gate (SAPO)
  kGmpo,   // geometric mean of the sequence's clipped token ratios (GMPO)
};

enum class LossAggregation {
  kTokenMean,            // sum_i sum_t m l / sum_i n_i                  (DAPO)
  kSeqMeanTokenMean,     // (1/N) sum_i (1/n_i) sum_t m l                 (GRPO, GSPO)
  kSeqMeanTokenSumNorm,  // (1/(N * norm_length)) sum_i sum_t m l         (Dr.GRPO)
  kSeqMeanTokenSum,      // (1/N) sum_i sum_t m l
};

enum class KlEstimator {
  kK1,  // logp - ref
  kK2,  // 0.5 (logp - ref)^2
  kK3,  // exp(ref - logp) - (ref - logp) - 1
};

enum class IsCorrection {
  kNone,
  kTokenTis,   // w_t = min(exp(old_t - rollout_t), C)
  kSeqTis,     // w_t = min(exp(sum_{t in seq}(old - rollout)), C) for every token of the sequence
  kTokenMask,  // w_t = 1 if |old_t - rollout_t| <= log C else 0
  kSeqMask,    // w_t = 1 if |sum_{t in seq}(old - rollout)| <= log C else 0, whole sequence
  // "geo" variants: the sequence's geometric-mean ratio, g_i = mean_{t in seq}(old - rollout)
  kSeqTisGeo,   // w_t = min(exp(g_i), C) for every token of the sequence
  kSeqMaskGeo,  // w_t = 1 if |g_i| <= log C else 0, whole sequence
  kIcePop,      // w_t = 1 if icepop_low <= exp(old_t - rollout_t) <= icepop_high else 0 (two-sided)
};

struct PolicyLossOptions {
  Surrogate surrogate = Surrogate::kClip;
  // kClip: eps_low in [0, 1); kCispo: in [0, 1] (1: no lower bound); kGmpo: log-space bounds,
  // any finite value >= 0. eps_high finite and >= 0. Unused by kSapo.
  double clip_eps_low = 0.2;
  double clip_eps_high = 0.2;
  double sapo_tau_pos = 1.0;   // kSapo temperatures, finite and > 0
  double sapo_tau_neg = 1.05;
  // Token ratios only (kSequence is GSPO's, with kClip).
  RatioLevel ratio_level = RatioLevel::kToken;
  LossAggregation aggregation = LossAggregation::kTokenMean;
  // The constant L of kSeqMeanTokenSumNorm (e.g. the maximum response length); must be > 0 there.
  double norm_length = 0;
  double kl_beta = 0;  // >= 0; 0 = no KL term, ref_logprobs may be empty
  KlEstimator kl_estimator = KlEstimator::kK3;
  IsCorrection is_correction = IsCorrection::kNone;
  double is_cap = 2.0;  // C >= 1 (used by every correction but kNone and kIcePop)
  double icepop_low = 0.5, icepop_high = 5.0;  // kIcePop: 0 <= low <= 1 <= high, finite
  // Finite and > 0 exactly when PolicyLossInputs::divergences are given.
  double divergence_coef = 0;
};

// Defaults of an objective:
//   kGrpo:    eps 0.2/0.2,   token ratio, seq-mean-token-mean, beta 0.04, k3  (DeepSeekMath)
//   kDrGrpo:  eps 0.2/0.2,   token ratio, seq-mean-token-sum-norm, beta 0     (Dr.GRPO;
//             norm_length is left 0: the caller must set it, e.g. to max_new_tokens)
//   kDapo:    eps 0.2/0.28,  token ratio, token-mean, beta 0                  (DAPO)
//   kGspo:    eps 3e-4/4e-4, sequence ratio, seq-mean-token-mean, beta 0      (GSPO)
//   kCispo:   CISPO surrogate, eps 1/0.28 (no lower bound), token-mean, beta 0 (MiniMax-M1)
//   kSapo:    SAPO surrogate, tau_pos 1, tau_neg 1.05, seq-mean-token-mean, beta 0
//   kGmpo:    GMPO surrogate, eps 0.4/0.4 (log space), seq-mean-token-mean, beta 0
// All with is_correction kNone.
PolicyLossOptions PolicyLossPreset(Objective objective);

// Names used in configs: "token-mean" | "seq-mean-token-mean" | "seq-mean-token-sum-norm" |
// "seq-mean-token-sum"; "k1" | "k2" | "k3"; "none" | "token_tis" | "seq_tis" | "token_mask" |
// "seq_mask" | "seq_tis_geo" | "seq_mask_geo" | "icepop"; "token" | "sequence".
absl::StatusOr<LossAggregation> ParseLossAggregation(std::string_view name);
absl::StatusOr<KlEstimator> ParseKlEstimator(std::string_view name);
absl::StatusOr<IsCorrection> ParseIsCorrection(std::string_view name);
absl::StatusOr<RatioLevel> ParseRatioLevel(std::string_view name);

// OK, or InvalidArgument naming the bad field.
absl::Status ValidatePolicyLossOptions(const PolicyLossOptions& options);

struct PolicyLossInputs {
  std::span<const float> logprobs;          // current policy, per token (the differentiated input)
  std::span<const float> old_logprobs;      // policy that the ratio is taken against
  std::span<const float> rollout_logprobs;  // rollout engine's; may be empty when is_correction is kNone
  std::span<const float> ref_logprobs;      // reference policy; may be empty when kl_beta == 0
  std::span<const double> advantages;       // one per sequence
  std::span<const int64_t> offsets;         // num_sequences + 1; 0 ... logprobs.size(), non-decreasing
  std::span<const uint8_t> mask;            // optional per token: 0 excludes the token
  // Optional per token: added to its sequence's advantage, A_t = advantages[i] + token_advantages[t]
  // (on-policy distillation's -(log pi_student - log pi_teacher), DistillationAdvantages).
  // kClip, kCispo and kSapo use A_t wherever A_i stands above; kGmpo refuses them (its term is
  // one per sequence).
  std::span<const double> token_advantages;
  // Optional per token: D_t >= 0, the divergence of the token's next-token distribution from a
  // teacher's (ForwardOutput::divergence); differentiated (PolicyLossResult::divergence_grad).
  std::span<const float> divergences;
};

// On-policy distillation (reverse KL to a teacher): the per-token advantage of a sampled token,
// coef * -(student_t - teacher_t), from the student's logprob of the token (the rollout's raw
// logprob) and the teacher's. InvalidArgument on mismatched lengths, a non-finite logprob or a
// coef that is not finite and > 0.
absl::StatusOr<std::vector<double>> DistillationAdvantages(std::span<const float> student_logprobs,
                                                           std::span<const float> teacher_logprobs,
                                                           double coef);

struct PolicyLossMetrics {
  int64_t num_tokens = 0;     // tokens counted (mask 1)
  // kClip, kGmpo: fraction of tokens where the clipped branch is strictly the min; kCispo:
  // fraction of tokens whose IS weight was clipped; kSapo: 0 (nothing is clipped).
  double clip_frac = 0;
  double clip_frac_low = 0;   // ... kClip/kGmpo: with r below the range and A < 0; kCispo: r below
  double clip_frac_high = 0;  // ... kClip/kGmpo: with r above the range and A > 0; kCispo: r above
  double ratio_mean = 0, ratio_min = 0, ratio_max = 0;  // of r_t over counted tokens
  bool has_kl = false;        // kl_mean is set only when kl_beta > 0 (ref logprobs given)
  double kl_mean = 0;         // mean of kl_t over counted tokens
  double is_weight_mean = 1;  // mean of w_t over counted tokens
  double is_capped_frac = 0;  // TIS modes: fraction of tokens whose raw ratio exceeded C
  double is_masked_frac = 0;  // mask modes (icepop included): fraction of tokens with w_t = 0
  double divergence_mean = 0; // mean of D_t over counted tokens, when divergences are given
};

struct PolicyLossResult {
  double loss = 0;
  std::vector<float> grad;  // dLoss/dlogprobs, one per token (0 for masked tokens)
  // dLoss/dD_t, one per token when divergences are given (0 for masked tokens), else empty.
  std::vector<float> divergence_grad;
  PolicyLossMetrics metrics;
};

// InvalidArgument naming the field for mismatched lengths, bad offsets, non-finite inputs
// (counted tokens only need finite values; masked tokens are ignored) or bad options.
// With no counted token the loss and every gradient are 0.
absl::StatusOr<PolicyLossResult> ComputePolicyLoss(const PolicyLossInputs& inputs,
                                           const PolicyLossOptions& options);

}  // namespace grpo

#endif  // GRPO_LEARNER_POLICY_LOSS_H_

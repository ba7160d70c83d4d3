// learner/policy_loss against a PyTorch float64 autograd reference
// (learner/testdata/policy_loss_reference.py, written TRL/verl-style over padded tensors) for
// every preset, surrogate, aggregation, ratio level, KL estimator and IS correction; gradients
// against central finite differences; validation errors.
#include "learner/policy_loss.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "testing/python_reference.h"

namespace grpo {
namespace {

using nlohmann::json;

struct Case {
  std::string label;
  PolicyLossOptions options;
  std::vector<float> logprobs, old_logprobs, rollout_logprobs, ref_logprobs;
  std::vector<double> advantages;
  std::vector<int64_t> offsets;
  std::vector<uint8_t> mask;
  std::vector<double> token_advantages;  // optional (on-policy distillation)
  std::vector<float> divergences;        // optional (full-distribution distillation)

  PolicyLossInputs Inputs() const {
    return {logprobs, old_logprobs, rollout_logprobs, ref_logprobs, advantages, offsets, mask, token_advantages,
            divergences};
  }
};

const char* AggName(LossAggregation a) {
  switch (a) {
    case LossAggregation::kTokenMean: return "token-mean";
    case LossAggregation::kSeqMeanTokenMean: return "seq-mean-token-mean";
    case LossAggregation::kSeqMeanTokenSumNorm: return "seq-mean-token-sum-norm";
    case LossAggregation::kSeqMeanTokenSum: return "seq-mean-token-sum";
  }
  return "";
}
const char* SurrogateName(Surrogate s) {
  switch (s) {
    case Surrogate::kClip: return "clip";
    case Surrogate::kCispo: return "cispo";
    case Surrogate::kSapo: return "sapo";
    case Surrogate::kGmpo: return "gmpo";
  }
  return "";
}
constexpr LossAggregation kAllAggregations[] = {LossAggregation::kTokenMean, LossAggregation::kSeqMeanTokenMean,
                                                LossAggregation::kSeqMeanTokenSumNorm,
                                                LossAggregation::kSeqMeanTokenSum};
constexpr IsCorrection kAllIsCorrections[] = {IsCorrection::kTokenTis,   IsCorrection::kSeqTis,
                                              IsCorrection::kTokenMask,  IsCorrection::kSeqMask,
                                              IsCorrection::kSeqTisGeo,  IsCorrection::kSeqMaskGeo,
                                              IsCorrection::kIcePop};
const char* KlName(KlEstimator k) {
  switch (k) {
    case KlEstimator::kK1: return "k1";
    case KlEstimator::kK2: return "k2";
    case KlEstimator::kK3: return "k3";
  }
  return "";
}
const char* IsName(IsCorrection c) {
  switch (c) {
    case IsCorrection::kNone: return "none";
    case IsCorrection::kTokenTis: return "token_tis";
    case IsCorrection::kSeqTis: return "seq_tis";
    case IsCorrection::kTokenMask: return "token_mask";
    case IsCorrection::kSeqMask: return "seq_mask";
    case IsCorrection::kSeqTisGeo: return "seq_tis_geo";
    case IsCorrection::kSeqMaskGeo: return "seq_mask_geo";
    case IsCorrection::kIcePop: return "icepop";
  }
  return "";
}

// Random inputs: sequences of different lengths (one empty), ratios on both sides of the clip
// range (their spread follows the clip range), exact on-policy ties, both advantage signs and a
// zero advantage, rollout logprobs that put some IS ratios beyond the cap.
Case MakeCase(std::string label, const PolicyLossOptions& o, uint32_t seed, bool with_mask) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> unif(0.0, 1.0);
  std::normal_distribution<double> normal(0.0, 1.0);
  Case c;
  c.label = std::move(label);
  c.options = o;
  const std::vector<int> lengths = {6, 1, 9, 0, 4, 12, 3};
  const double spread = o.ratio_level == RatioLevel::kToken ? 0.3 : 3 * o.clip_eps_high;
  c.offsets.push_back(0);
  for (size_t i = 0; i < lengths.size(); ++i) {
    const double seq_shift = o.ratio_level == RatioLevel::kSequence ? spread * normal(rng) : 0.0;
    for (int t = 0; t < lengths[i]; ++t) {
      const float logp = static_cast<float>(-0.05 - 3.0 * unif(rng));
      const bool tie = unif(rng) < 0.1;
      const float old = tie ? logp : static_cast<float>(logp + seq_shift + spread * normal(rng));
      c.logprobs.push_back(logp);
      c.old_logprobs.push_back(old);
      c.rollout_logprobs.push_back(static_cast<float>(old + 0.4 * normal(rng)));
      c.ref_logprobs.push_back(static_cast<float>(logp + 0.3 * normal(rng)));
      c.mask.push_back(with_mask && unif(rng) < 0.2 ? 0 : 1);
    }
    c.offsets.push_back(static_cast<int64_t>(c.logprobs.size()));
    c.advantages.push_back(i == 4 ? 0.0 : (i % 2 == 0 ? 1.0 : -1.0) * (0.2 + unif(rng)));
  }
  if (!with_mask) c.mask.clear();
  if (o.is_correction == IsCorrection::kNone) c.rollout_logprobs.clear();
  if (o.kl_beta == 0) c.ref_logprobs.clear();
  return c;
}

std::vector<Case> AllCases() {
  std::vector<Case> cases;
  uint32_t seed = 100;
  for (Objective objective : kAllObjectives) {
    PolicyLossOptions o = PolicyLossPreset(objective);
    if (o.aggregation == LossAggregation::kSeqMeanTokenSumNorm) o.norm_length = 16;
    for (bool with_mask : {false, true}) {
      cases.push_back(MakeCase(std::string("preset ") + ObjectiveName(objective) + (with_mask ? " masked" : ""), o,
                               seed++, with_mask));
    }
  }
  for (LossAggregation agg : kAllAggregations) {
    for (RatioLevel level : {RatioLevel::kToken, RatioLevel::kSequence}) {
      PolicyLossOptions o = PolicyLossPreset(level == RatioLevel::kToken ? Objective::kDapo : Objective::kGspo);
      o.aggregation = agg;
      o.norm_length = 20;
      cases.push_back(MakeCase(std::string("aggregation ") + AggName(agg) +
                                   (level == RatioLevel::kToken ? " token" : " sequence"),
                               o, seed++, true));
    }
  }
  for (KlEstimator kl : {KlEstimator::kK1, KlEstimator::kK2, KlEstimator::kK3}) {
    for (LossAggregation agg : {LossAggregation::kTokenMean, LossAggregation::kSeqMeanTokenSumNorm}) {
      PolicyLossOptions o = PolicyLossPreset(Objective::kGrpo);
      o.kl_beta = 0.1;
      o.kl_estimator = kl;
      o.aggregation = agg;
      o.norm_length = 12;
      cases.push_back(MakeCase(std::string("kl ") + KlName(kl) + " " + AggName(agg), o, seed++, true));
    }
  }
  for (IsCorrection mode : kAllIsCorrections) {
    for (RatioLevel level : {RatioLevel::kToken, RatioLevel::kSequence}) {
      PolicyLossOptions o = PolicyLossPreset(level == RatioLevel::kToken ? Objective::kGrpo : Objective::kGspo);
      o.is_correction = mode;
      o.is_cap = 1.5;
      o.icepop_low = 0.8;  // narrower than the defaults so that both sides mask some tokens
      o.icepop_high = 1.3;
      cases.push_back(MakeCase(std::string("is ") + IsName(mode) +
                                   (level == RatioLevel::kToken ? " token" : " sequence"),
                               o, seed++, level == RatioLevel::kSequence));
    }
  }
  // CISPO, SAPO and GMPO under every aggregation, and with an IS correction and a KL term.
  for (Objective objective : {Objective::kCispo, Objective::kSapo, Objective::kGmpo}) {
    for (LossAggregation agg : kAllAggregations) {
      PolicyLossOptions o = PolicyLossPreset(objective);
      o.aggregation = agg;
      o.norm_length = 14;
      cases.push_back(MakeCase(std::string(ObjectiveName(objective)) + " " + AggName(agg), o, seed++, true));
    }
    for (IsCorrection mode : {IsCorrection::kTokenTis, IsCorrection::kSeqTisGeo, IsCorrection::kIcePop}) {
      PolicyLossOptions o = PolicyLossPreset(objective);
      o.is_correction = mode;
      o.is_cap = 1.5;
      o.icepop_low = 0.8;
      o.icepop_high = 1.3;
      o.kl_beta = 0.05;
      cases.push_back(MakeCase(std::string(ObjectiveName(objective)) + " kl is " + IsName(mode), o, seed++, true));
    }
  }
  // Per-token advantages (on-policy distillation: -(student - teacher) per token, here random of
  // both signs), alone (sequence advantages 0) and added to rule-reward advantages.
  for (Objective objective : {Objective::kGrpo, Objective::kDapo, Objective::kGspo, Objective::kCispo, Objective::kSapo}) {
    for (bool with_rewards : {false, true}) {
      PolicyLossOptions o = PolicyLossPreset(objective);
      if (objective == Objective::kGrpo) {
        o.is_correction = IsCorrection::kTokenTis;
        o.is_cap = 1.5;
      }
      Case c = MakeCase(std::string("token advantages ") + ObjectiveName(objective) +
                            (with_rewards ? " + rewards" : " alone"),
                        o, seed++, true);
      std::mt19937 rng(seed);
      std::normal_distribution<double> normal(0.0, 0.7);
      for (size_t t = 0; t < c.logprobs.size(); ++t) c.token_advantages.push_back(normal(rng));
      if (!with_rewards) std::fill(c.advantages.begin(), c.advantages.end(), 0.0);
      cases.push_back(std::move(c));
    }
  }
  // Full-distribution distillation: a divergence D_t >= 0 per token, alone (sequence advantages
  // 0) and beside rule-reward advantages, under each aggregation.
  for (LossAggregation agg : kAllAggregations) {
    for (bool with_rewards : {false, true}) {
      PolicyLossOptions o = PolicyLossPreset(Objective::kGrpo);
      o.kl_beta = 0;
      o.aggregation = agg;
      o.norm_length = 14;
      o.divergence_coef = with_rewards ? 0.5 : 1.0;
      Case c = MakeCase(std::string("divergence ") + AggName(agg) + (with_rewards ? " + rewards" : " alone"), o,
                        seed++, true);
      std::mt19937 rng(seed);
      std::exponential_distribution<float> d(2.0f);
      for (size_t t = 0; t < c.logprobs.size(); ++t) c.divergences.push_back(d(rng));
      if (!with_rewards) std::fill(c.advantages.begin(), c.advantages.end(), 0.0);
      cases.push_back(std::move(c));
    }
  }
  {
    PolicyLossOptions o = PolicyLossPreset(Objective::kCispo);  // with a lower bound
    o.clip_eps_low = 0.2;
    cases.push_back(MakeCase("cispo eps_low 0.2", o, seed++, false));
    o = PolicyLossPreset(Objective::kSapo);
    o.sapo_tau_pos = 3;
    o.sapo_tau_neg = 0.5;
    cases.push_back(MakeCase("sapo temperatures", o, seed++, false));
    o = PolicyLossPreset(Objective::kGmpo);
    o.clip_eps_low = 0.1;
    o.clip_eps_high = 0.25;
    cases.push_back(MakeCase("gmpo asymmetric", o, seed++, false));
  }
  return cases;
}

json ToJson(const Case& c) {
  const PolicyLossOptions& o = c.options;
  json opts = {{"surrogate", SurrogateName(o.surrogate)},
               {"sapo_tau_pos", o.sapo_tau_pos},
               {"sapo_tau_neg", o.sapo_tau_neg},
               {"icepop_low", o.icepop_low},
               {"icepop_high", o.icepop_high},
               {"clip_eps_low", o.clip_eps_low},
               {"clip_eps_high", o.clip_eps_high},
               {"ratio_level", o.ratio_level == RatioLevel::kToken ? "token" : "sequence"},
               {"aggregation", AggName(o.aggregation)},
               {"norm_length", o.norm_length},
               {"kl_beta", o.kl_beta},
               {"kl_estimator", KlName(o.kl_estimator)},
               {"is_correction", IsName(o.is_correction)},
               {"is_cap", o.is_cap},
               {"divergence_coef", o.divergence_coef}};
  auto to_d = [](const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); };
  return {{"options", opts},
          {"logprobs", to_d(c.logprobs)},
          {"old", to_d(c.old_logprobs)},
          {"rollout", to_d(c.rollout_logprobs)},
          {"ref", to_d(c.ref_logprobs)},
          {"adv", c.advantages},
          {"offsets", c.offsets},
          {"mask", std::vector<int>(c.mask.begin(), c.mask.end())},
          {"token_adv", c.token_advantages},
          {"divergences", to_d(c.divergences)}};
}

TEST(PolicyLossTest, MatchesPyTorchAutogradForEveryObjective) {
  GRPO_REQUIRE_TORCH();
  const std::vector<Case> cases = AllCases();
  json input = {{"cases", json::array()}};
  for (const Case& c : cases) input["cases"].push_back(ToJson(c));
  auto run = testing::RunJsonReference("learner/testdata/policy_loss_reference.py", input);
  ASSERT_TRUE(run.ok()) << run.status().ToString();
  const json results = run->at("results");
  ASSERT_EQ(results.size(), cases.size());

  int64_t clipped_cases = 0, two_sided_clip_cases = 0, nonzero_kl = 0, capped_or_masked = 0, with_kl = 0,
          with_divergence = 0;
  for (size_t k = 0; k < cases.size(); ++k) {
    const Case& c = cases[k];
    SCOPED_TRACE(c.label);
    const json& ref = results[k];
    auto got = ComputePolicyLoss(c.Inputs(), c.options);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    const double ref_loss = ref.at("loss").get<double>();
    EXPECT_NEAR(got->loss, ref_loss, 1e-9 + 1e-7 * std::abs(ref_loss));
    const auto ref_grad = ref.at("grad").get<std::vector<double>>();
    ASSERT_EQ(got->grad.size(), ref_grad.size());
    double grad_norm = 0;
    for (size_t t = 0; t < ref_grad.size(); ++t) {
      EXPECT_NEAR(got->grad[t], ref_grad[t], 1e-9 + 1e-6 * std::abs(ref_grad[t])) << "token " << t;
      grad_norm += ref_grad[t] * ref_grad[t];
    }
    const auto ref_div_grad = ref.at("divergence_grad").get<std::vector<double>>();
    ASSERT_EQ(got->divergence_grad.size(), ref_div_grad.size());
    for (size_t t = 0; t < ref_div_grad.size(); ++t) {
      EXPECT_NEAR(got->divergence_grad[t], ref_div_grad[t], 1e-9 + 1e-6 * std::abs(ref_div_grad[t])) << "token " << t;
      grad_norm += ref_div_grad[t] * ref_div_grad[t];
    }
    EXPECT_NEAR(got->metrics.divergence_mean, ref.at("divergence_mean").get<double>(), 1e-9);
    with_divergence += !c.divergences.empty();
    EXPECT_GT(grad_norm, 0.0);
    EXPECT_NEAR(got->metrics.clip_frac, ref.at("clip_frac").get<double>(), 1e-12);
    EXPECT_NEAR(got->metrics.ratio_mean, ref.at("ratio_mean").get<double>(), 1e-9);
    EXPECT_NEAR(got->metrics.kl_mean, ref.at("kl_mean").get<double>(), 1e-9);
    EXPECT_NEAR(got->metrics.is_weight_mean, ref.at("is_weight_mean").get<double>(), 1e-9);
    EXPECT_EQ(got->metrics.has_kl, c.options.kl_beta > 0);
    if (got->metrics.clip_frac_low > 0 && got->metrics.clip_frac_high > 0) ++clipped_cases;
    // SAPO does not clip; CISPO's presets have no lower bound.
    const bool two_sided = c.options.surrogate == Surrogate::kClip || c.options.surrogate == Surrogate::kGmpo;
    two_sided_clip_cases += two_sided;
    if (c.options.surrogate == Surrogate::kSapo) {
      EXPECT_EQ(got->metrics.clip_frac, 0.0);
    }
    if (got->metrics.kl_mean != 0) ++nonzero_kl;
    if (c.options.kl_beta > 0) ++with_kl;
    if (got->metrics.is_capped_frac > 0 || got->metrics.is_masked_frac > 0) ++capped_or_masked;
  }
  // The inputs exercise both clip sides, the KL term and the IS corrections.
  EXPECT_GE(clipped_cases, two_sided_clip_cases / 2);
  EXPECT_EQ(nonzero_kl, with_kl);
  EXPECT_GE(with_kl, 6);
  EXPECT_GE(capped_or_masked, 6);
  EXPECT_EQ(with_divergence, 8);
}

// The loss of `c` with the logprobs of `tokens` moved by `h` (rounded to f32); `delta` gets the
// actual moves.
double ShiftedLoss(Case c, const std::vector<int64_t>& tokens, double h, std::vector<double>* delta) {
  delta->clear();
  for (int64_t t : tokens) {
    const float moved = static_cast<float>(c.logprobs[t] + h);
    delta->push_back(double(moved) - double(c.logprobs[t]));
    c.logprobs[t] = moved;
  }
  return ComputePolicyLoss(c.Inputs(), c.options)->loss;
}

// Token-level ratios: every gradient entry against a central difference of the loss (double
// precision; f32 inputs are moved by exactly representable steps, and the actual step is used).
// Sequence-level ratios (GSPO-token) are not the gradient of the loss value in every direction
// (the stop-gradients make d ratio_t / d logp_u = 0 for u != t), but along a uniform shift of one
// sequence's tokens they are: there the sum of the sequence's gradients must match the
// directional difference. Points within a margin of a clip bound are skipped. CISPO's gradient
// is not that of its loss value either (the stop-gradient on the clipped weight): the autograd
// reference above checks it.
TEST(PolicyLossTest, GradientMatchesFiniteDifferencesAwayFromKinks) {
  int64_t checked = 0, checked_seq = 0;
  for (const Case& c : AllCases()) {
    SCOPED_TRACE(c.label);
    if (c.options.surrogate == Surrogate::kCispo) continue;
    auto base = ComputePolicyLoss(c.Inputs(), c.options);
    ASSERT_TRUE(base.ok()) << base.status().ToString();
    const bool gmpo = c.options.surrogate == Surrogate::kGmpo;  // bounds in log space
    const double lo = gmpo ? std::exp(-c.options.clip_eps_low) : 1 - c.options.clip_eps_low;
    const double hi = gmpo ? std::exp(c.options.clip_eps_high) : 1 + c.options.clip_eps_high;
    const bool token_level = c.options.ratio_level == RatioLevel::kToken;
    for (size_t i = 0; i + 1 < c.offsets.size(); ++i) {
      std::vector<int64_t> counted;
      double s = 0;
      for (int64_t t = c.offsets[i]; t < c.offsets[i + 1]; ++t) {
        if (!c.mask.empty() && !c.mask[t]) {
          EXPECT_EQ(base->grad[t], 0.0f) << "masked token " << t;
          continue;
        }
        counted.push_back(t);
        s += double(c.logprobs[t]) - c.old_logprobs[t];
      }
      if (counted.empty()) continue;
      std::vector<double> up, down;
      if (token_level) {
        for (int64_t t : counted) {
          const double r = std::exp(double(c.logprobs[t]) - c.old_logprobs[t]);
          if (std::abs(r - lo) < 2e-3 || std::abs(r - hi) < 2e-3) continue;
          const double fd = (ShiftedLoss(c, {t}, 1e-4, &up) - ShiftedLoss(c, {t}, -1e-4, &down)) /
                            (up[0] - down[0]);
          EXPECT_NEAR(base->grad[t], fd, 2e-4 * std::abs(fd) + 1e-7) << "token " << t;
          ++checked;
        }
      } else {
        const double r = std::exp(s / counted.size());
        if (std::abs(r - lo) < 5e-5 || std::abs(r - hi) < 5e-5) continue;
        const double h = std::ldexp(1.0, -17);
        const double diff = ShiftedLoss(c, counted, h, &up) - ShiftedLoss(c, counted, -h, &down);
        double predicted = 0;
        for (size_t k = 0; k < counted.size(); ++k) predicted += base->grad[counted[k]] * (up[k] - down[k]);
        EXPECT_NEAR(predicted, diff, 1e-3 * std::abs(diff) + 1e-10) << "sequence " << i;
        ++checked_seq;
      }
    }
  }
  EXPECT_GT(checked, 300);
  EXPECT_GT(checked_seq, 40);
}

TEST(PolicyLossTest, TokenRatioTieAndClipBranches) {
  // One sequence of three tokens, A = +1, token-mean: ratio 1 (tie, full gradient), ratio above
  // 1 + eps_high (clipped, no gradient), ratio below 1 - eps_low (unclipped branch is the min).
  PolicyLossOptions o = PolicyLossPreset(Objective::kDapo);
  std::vector<float> logp = {-1.0f, -1.0f, -1.0f};
  std::vector<float> old = {-1.0f, -1.5f, -0.5f};
  std::vector<double> adv = {1.0};
  std::vector<int64_t> offsets = {0, 3};
  auto r = ComputePolicyLoss({logp, old, {}, {}, adv, offsets, {}}, o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const double r2 = std::exp(0.5), r3 = std::exp(-0.5);
  EXPECT_NEAR(r->loss, -(1.0 + 1.28 + r3) / 3, 1e-12);
  EXPECT_NEAR(r->grad[0], -1.0 / 3, 1e-7);
  EXPECT_EQ(r->grad[1], 0.0f);
  EXPECT_NEAR(r->grad[2], -r3 / 3, 1e-7);
  EXPECT_NEAR(r->metrics.clip_frac, 1.0 / 3, 1e-12);
  EXPECT_NEAR(r->metrics.clip_frac_high, 1.0 / 3, 1e-12);
  EXPECT_EQ(r->metrics.clip_frac_low, 0.0);
  EXPECT_NEAR(r->metrics.ratio_max, r2, 1e-12);
  EXPECT_NEAR(r->metrics.ratio_min, r3, 1e-12);
  EXPECT_EQ(r->metrics.num_tokens, 3);
  EXPECT_FALSE(r->metrics.has_kl);
}

TEST(PolicyLossTest, CispoSapoGmpoByHand) {
  const std::vector<int64_t> offsets = {0, 2};
  const std::vector<double> adv = {1.0};
  // CISPO preset (no lower bound, upper 1.28, token-mean): ratios 1 and e^0.5 (weight 1.28).
  std::vector<float> logp = {-1.0f, -1.0f}, old = {-1.0f, -1.5f};
  auto cispo = ComputePolicyLoss({logp, old, {}, {}, adv, offsets, {}}, PolicyLossPreset(Objective::kCispo));
  ASSERT_TRUE(cispo.ok()) << cispo.status().ToString();
  EXPECT_NEAR(cispo->loss, (1.0 + 1.28) / 2, 1e-12);  // -(1 * 1 * -1 + 1.28 * 1 * -1) / 2
  EXPECT_NEAR(cispo->grad[0], -0.5, 1e-7);
  EXPECT_NEAR(cispo->grad[1], -0.64, 1e-7);             // the clipped token keeps its gradient
  EXPECT_NEAR(cispo->metrics.clip_frac_high, 0.5, 1e-12);
  // SAPO at ratio 1 with tau_pos 1: pg = -(4/1) sigmoid(0) = -2, d/dlogp = -4 * 1/4 = -1.
  std::vector<float> one = {-1.0f}, one_old = {-1.0f};
  const std::vector<int64_t> one_off = {0, 1};
  auto sapo = ComputePolicyLoss({one, one_old, {}, {}, adv, one_off, {}}, PolicyLossPreset(Objective::kSapo));
  ASSERT_TRUE(sapo.ok()) << sapo.status().ToString();
  EXPECT_NEAR(sapo->loss, -2.0, 1e-12);
  EXPECT_NEAR(sapo->grad[0], -1.0, 1e-7);
  // GMPO: log ratios 0.2 and -0.1 (inside +-0.4): sequence ratio exp(0.05), each token's
  // gradient -exp(0.05) / 2; a log ratio of 0.6 with A > 0 is clipped to 0.4 (no gradient).
  std::vector<float> g_old = {-1.2f, -0.9f};
  auto gmpo = ComputePolicyLoss({logp, g_old, {}, {}, adv, offsets, {}}, PolicyLossPreset(Objective::kGmpo));
  ASSERT_TRUE(gmpo.ok()) << gmpo.status().ToString();
  const double lr0 = double(-1.0f) - double(-1.2f), lr1 = double(-1.0f) - double(-0.9f);
  const double R = std::exp((lr0 + lr1) / 2);
  EXPECT_NEAR(gmpo->loss, -R, 1e-12);
  EXPECT_NEAR(gmpo->grad[0], -R / 2, 1e-7);
  EXPECT_NEAR(gmpo->grad[1], -R / 2, 1e-7);
  std::vector<float> far_old = {-1.6f, -0.9f};
  auto clipped = ComputePolicyLoss({logp, far_old, {}, {}, adv, offsets, {}}, PolicyLossPreset(Objective::kGmpo));
  ASSERT_TRUE(clipped.ok());
  EXPECT_NEAR(clipped->loss, -std::exp((0.4 + lr1) / 2), 1e-7);
  EXPECT_EQ(clipped->grad[0], 0.0f);
  EXPECT_NEAR(clipped->metrics.clip_frac_high, 0.5, 1e-12);
}

TEST(PolicyLossTest, GeoAndIcePopWeightsByHand) {
  // Two tokens with old - rollout = 0.6 and -0.2: geometric mean ratio exp(0.2).
  std::vector<float> logp = {-1.0f, -1.0f}, rollout = {-1.6f, -0.8f};
  const std::vector<int64_t> offsets = {0, 2};
  const std::vector<double> adv = {1.0};
  PolicyLossOptions o = PolicyLossPreset(Objective::kDapo);
  o.is_cap = 1.5;
  const double g = ((double(-1.0f) - double(-1.6f)) + (double(-1.0f) - double(-0.8f))) / 2;
  o.is_correction = IsCorrection::kSeqTisGeo;
  auto tis = ComputePolicyLoss({logp, logp, rollout, {}, adv, offsets, {}}, o);
  ASSERT_TRUE(tis.ok()) << tis.status().ToString();
  EXPECT_NEAR(tis->metrics.is_weight_mean, std::exp(g), 1e-9);  // below the cap
  EXPECT_NEAR(tis->loss, -std::exp(g), 1e-9);
  o.is_correction = IsCorrection::kSeqMaskGeo;
  o.is_cap = 1.1;  // log 1.1 < 0.2: the whole sequence is masked
  auto mask = ComputePolicyLoss({logp, logp, rollout, {}, adv, offsets, {}}, o);
  ASSERT_TRUE(mask.ok());
  EXPECT_EQ(mask->metrics.is_masked_frac, 1.0);
  EXPECT_EQ(mask->grad, std::vector<float>({0.0f, 0.0f}));
  o.is_correction = IsCorrection::kIcePop;  // ratios e^0.6 (above 1.5: masked) and e^-0.2 (kept)
  o.icepop_low = 0.5;
  o.icepop_high = 1.5;
  auto ice = ComputePolicyLoss({logp, logp, rollout, {}, adv, offsets, {}}, o);
  ASSERT_TRUE(ice.ok());
  EXPECT_EQ(ice->metrics.is_masked_frac, 0.5);
  EXPECT_EQ(ice->grad[0], 0.0f);
  EXPECT_NEAR(ice->grad[1], -0.5, 1e-7);
  // seq-mean-token-sum: (1/N) sum_i sum_t l.
  PolicyLossOptions sum = PolicyLossPreset(Objective::kDapo);
  sum.aggregation = LossAggregation::kSeqMeanTokenSum;
  const std::vector<int64_t> two_seqs = {0, 1, 2};
  const std::vector<double> adv2 = {1.0, 2.0};
  auto agg = ComputePolicyLoss({logp, logp, {}, {}, adv2, two_seqs, {}}, sum);
  ASSERT_TRUE(agg.ok());
  EXPECT_NEAR(agg->loss, -(1.0 + 2.0) / 2, 1e-12);
  EXPECT_NEAR(agg->grad[1], -1.0, 1e-7);
}

TEST(PolicyLossTest, DivergencesNeedTheirCoefficientAndFiniteValues) {
  const std::vector<float> logp = {-1.0f, -2.0f}, div = {0.5f, 0.25f};
  const std::vector<double> zero = {0.0};
  const std::vector<int64_t> offsets = {0, 2};
  PolicyLossInputs in{logp, logp, {}, {}, zero, offsets, {}, {}, div};
  PolicyLossOptions o = PolicyLossPreset(Objective::kDapo);  // token-mean
  auto missing_coef = ComputePolicyLoss(in, o);
  ASSERT_FALSE(missing_coef.ok());
  EXPECT_NE(missing_coef.status().message().find("divergence_coef is 0"), std::string::npos);
  o.divergence_coef = 2.0;
  auto r = ComputePolicyLoss(in, o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_NEAR(r->loss, 2.0 * (0.5 + 0.25) / 2, 1e-9);  // advantages 0: only the divergence term
  EXPECT_EQ(r->divergence_grad, (std::vector<float>{1.0f, 1.0f}));
  EXPECT_EQ(r->grad, (std::vector<float>{0.0f, 0.0f}));
  in.divergences = {};
  EXPECT_NE(ComputePolicyLoss(in, o).status().message().find("needs divergences"), std::string::npos);
  const std::vector<float> one = {0.5f}, bad = {0.5f, NAN};
  in.divergences = one;
  EXPECT_NE(ComputePolicyLoss(in, o).status().message().find("divergences has 1 values"), std::string::npos);
  in.divergences = bad;
  EXPECT_NE(ComputePolicyLoss(in, o).status().message().find("divergences[1] is not finite"), std::string::npos);
  o.divergence_coef = -1;
  EXPECT_FALSE(ValidatePolicyLossOptions(o).ok());
}

TEST(PolicyLossTest, DistillationAdvantagesAreTheNegativeLogRatio) {
  const std::vector<float> student = {-1.0f, -0.25f, -3.0f}, teacher = {-2.0f, -0.25f, -0.5f};
  auto a = DistillationAdvantages(student, teacher, 0.5);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(*a, (std::vector<double>{-0.5, 0.0, 1.25}));  // -coef (student - teacher)
  const std::vector<float> one = {-1.0f};
  EXPECT_FALSE(DistillationAdvantages(student, one, 1.0).ok());
  EXPECT_FALSE(DistillationAdvantages(student, teacher, 0.0).ok());
  const std::vector<float> bad = {-1.0f, -INFINITY, -1.0f};
  EXPECT_FALSE(DistillationAdvantages(student, bad, 1.0).ok());
  // With sequence advantages 0 the clipped surrogate's gradient at ratio 1 is -A_t / n: it raises
  // the tokens the teacher likes more than the student and lowers the others.
  PolicyLossInputs in;
  in.logprobs = student;
  in.old_logprobs = student;
  const std::vector<double> zero = {0.0};
  const std::vector<int64_t> offsets = {0, 3};
  in.advantages = zero;
  in.offsets = offsets;
  in.token_advantages = *a;
  PolicyLossOptions o = PolicyLossPreset(Objective::kDapo);
  auto r = ComputePolicyLoss(in, o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_NEAR(r->grad[0], 0.5 / 3, 1e-7);
  EXPECT_NEAR(r->grad[1], 0.0, 1e-7);
  EXPECT_NEAR(r->grad[2], -1.25 / 3, 1e-7);
  EXPECT_NEAR(r->loss, -(-0.5 + 0.0 + 1.25) / 3, 1e-9);
  // GMPO has one term per sequence: per-token advantages are refused, naming the field.
  auto g = ComputePolicyLoss(in, PolicyLossPreset(Objective::kGmpo));
  ASSERT_FALSE(g.ok());
  EXPECT_NE(std::string(g.status().message()).find("token_advantages"), std::string::npos);
  const std::vector<double> short_adv = {1.0};
  in.token_advantages = short_adv;
  EXPECT_FALSE(ComputePolicyLoss(in, o).ok());
}

TEST(PolicyLossTest, AllMaskedGivesZeroLoss) {
  PolicyLossOptions o;
  std::vector<float> lp = {-1, -2};
  std::vector<double> adv = {1.0};
  std::vector<int64_t> off = {0, 2};
  std::vector<uint8_t> mask = {0, 0};
  std::vector<float> nan = {std::numeric_limits<float>::quiet_NaN(), -1};  // masked: ignored
  auto r = ComputePolicyLoss({lp, nan, {}, {}, adv, off, mask}, o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->loss, 0.0);
  EXPECT_EQ(r->grad, std::vector<float>({0.0f, 0.0f}));
  EXPECT_EQ(r->metrics.num_tokens, 0);
}

TEST(PolicyLossTest, ErrorsNameTheField) {
  std::vector<float> lp = {-1, -2, -3}, old = {-1, -2, -3}, short2 = {-1, -2};
  std::vector<double> adv = {1.0, -1.0};
  std::vector<int64_t> off = {0, 1, 3};
  PolicyLossOptions o;
  auto expect_error = [](const absl::StatusOr<PolicyLossResult>& r, const std::string& field) {
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find(field), std::string::npos) << r.status().message();
  };
  expect_error(ComputePolicyLoss({lp, short2, {}, {}, adv, off, {}}, o), "old_logprobs");
  std::vector<double> adv1 = {1.0};
  expect_error(ComputePolicyLoss({lp, old, {}, {}, adv1, off, {}}, o), "advantages");
  std::vector<int64_t> bad_off = {0, 2, 1, 3};
  std::vector<double> adv3 = {1, 1, 1};
  expect_error(ComputePolicyLoss({lp, old, {}, {}, adv3, bad_off, {}}, o), "offsets");
  std::vector<int64_t> short_off = {0, 2};
  expect_error(ComputePolicyLoss({lp, old, {}, {}, adv1, short_off, {}}, o), "offsets");
  std::vector<uint8_t> mask2 = {1, 1};
  expect_error(ComputePolicyLoss({lp, old, {}, {}, adv, off, mask2}, o), "mask");
  std::vector<float> inf = {-1, std::numeric_limits<float>::infinity(), -3};
  expect_error(ComputePolicyLoss({inf, old, {}, {}, adv, off, {}}, o), "logprobs[1]");
  std::vector<double> nan_adv = {1.0, std::nan("")};
  expect_error(ComputePolicyLoss({lp, old, {}, {}, nan_adv, off, {}}, o), "advantages[1]");

  PolicyLossOptions kl = o;
  kl.kl_beta = 0.1;
  expect_error(ComputePolicyLoss({lp, old, {}, {}, adv, off, {}}, kl), "ref_logprobs");
  EXPECT_TRUE(ComputePolicyLoss({lp, old, {}, lp, adv, off, {}}, kl).ok());
  PolicyLossOptions tis = o;
  tis.is_correction = IsCorrection::kTokenTis;
  expect_error(ComputePolicyLoss({lp, old, {}, {}, adv, off, {}}, tis), "rollout_logprobs");
  tis.is_cap = 0.5;
  expect_error(ComputePolicyLoss({lp, old, old, {}, adv, off, {}}, tis), "is_cap");

  PolicyLossOptions bad = o;
  bad.clip_eps_low = 1.0;
  expect_error(ComputePolicyLoss({lp, old, {}, {}, adv, off, {}}, bad), "clip_eps_low");
  bad = o;
  bad.clip_eps_high = -0.1;
  expect_error(ComputePolicyLoss({lp, old, {}, {}, adv, off, {}}, bad), "clip_eps_high");
  bad = PolicyLossPreset(Objective::kDrGrpo);  // norm_length left 0
  expect_error(ComputePolicyLoss({lp, old, {}, {}, adv, off, {}}, bad), "norm_length");
  bad = o;
  bad.kl_beta = -1;
  expect_error(ComputePolicyLoss({lp, old, {}, {}, adv, off, {}}, bad), "kl_beta");
  bad = PolicyLossPreset(Objective::kCispo);
  EXPECT_TRUE(ComputePolicyLoss({lp, old, {}, {}, adv, off, {}}, bad).ok());  // eps_low 1: no lower bound
  bad.clip_eps_low = 1.1;
  expect_error(ComputePolicyLoss({lp, old, {}, {}, adv, off, {}}, bad), "clip_eps_low");
  bad = PolicyLossPreset(Objective::kSapo);
  bad.sapo_tau_neg = 0;
  expect_error(ComputePolicyLoss({lp, old, {}, {}, adv, off, {}}, bad), "sapo_tau_neg");
  bad = PolicyLossPreset(Objective::kGmpo);
  bad.ratio_level = RatioLevel::kSequence;
  expect_error(ComputePolicyLoss({lp, old, {}, {}, adv, off, {}}, bad), "ratio_level");
  bad = PolicyLossPreset(Objective::kGmpo);
  bad.clip_eps_low = -0.1;
  expect_error(ComputePolicyLoss({lp, old, {}, {}, adv, off, {}}, bad), "clip_eps_low");
  bad = o;
  bad.is_correction = IsCorrection::kIcePop;
  bad.icepop_low = 1.5;
  expect_error(ComputePolicyLoss({lp, old, old, {}, adv, off, {}}, bad), "icepop");
}

TEST(PolicyLossTest, PresetsAndNames) {
  const PolicyLossOptions dapo = PolicyLossPreset(Objective::kDapo);
  EXPECT_EQ(dapo.clip_eps_low, 0.2);
  EXPECT_EQ(dapo.clip_eps_high, 0.28);
  EXPECT_EQ(dapo.aggregation, LossAggregation::kTokenMean);
  const PolicyLossOptions gspo = PolicyLossPreset(Objective::kGspo);
  EXPECT_EQ(gspo.ratio_level, RatioLevel::kSequence);
  EXPECT_EQ(gspo.clip_eps_low, 3e-4);
  EXPECT_EQ(gspo.clip_eps_high, 4e-4);
  const PolicyLossOptions grpo = PolicyLossPreset(Objective::kGrpo);
  EXPECT_EQ(grpo.kl_beta, 0.04);
  EXPECT_EQ(grpo.aggregation, LossAggregation::kSeqMeanTokenMean);
  EXPECT_EQ(PolicyLossPreset(Objective::kDrGrpo).aggregation, LossAggregation::kSeqMeanTokenSumNorm);
  EXPECT_FALSE(ParseObjective("ppo").ok());
  EXPECT_EQ(*ParseLossAggregation("seq-mean-token-sum-norm"), LossAggregation::kSeqMeanTokenSumNorm);
  EXPECT_EQ(*ParseKlEstimator("k2"), KlEstimator::kK2);
  EXPECT_EQ(*ParseIsCorrection("seq_mask"), IsCorrection::kSeqMask);
  EXPECT_EQ(*ParseRatioLevel("sequence"), RatioLevel::kSequence);
  EXPECT_EQ(*ParseLossAggregation("seq-mean-token-sum"), LossAggregation::kSeqMeanTokenSum);
  EXPECT_EQ(*ParseIsCorrection("seq_tis_geo"), IsCorrection::kSeqTisGeo);
  EXPECT_EQ(*ParseIsCorrection("seq_mask_geo"), IsCorrection::kSeqMaskGeo);
  EXPECT_EQ(*ParseIsCorrection("icepop"), IsCorrection::kIcePop);
  const PolicyLossOptions cispo = PolicyLossPreset(Objective::kCispo);
  EXPECT_EQ(cispo.surrogate, Surrogate::kCispo);
  EXPECT_EQ(cispo.clip_eps_low, 1.0);
  EXPECT_EQ(cispo.aggregation, LossAggregation::kTokenMean);
  const PolicyLossOptions sapo = PolicyLossPreset(Objective::kSapo);
  EXPECT_EQ(sapo.surrogate, Surrogate::kSapo);
  EXPECT_EQ(sapo.sapo_tau_pos, 1.0);
  EXPECT_EQ(sapo.sapo_tau_neg, 1.05);
  const PolicyLossOptions gmpo = PolicyLossPreset(Objective::kGmpo);
  EXPECT_EQ(gmpo.surrogate, Surrogate::kGmpo);
  EXPECT_EQ(gmpo.clip_eps_low, 0.4);
  EXPECT_EQ(gmpo.aggregation, LossAggregation::kSeqMeanTokenMean);
  EXPECT_FALSE(ParseLossAggregation("mean").ok());
  EXPECT_FALSE(ParseKlEstimator("k4").ok());
  EXPECT_FALSE(ParseIsCorrection("tis").ok());
  EXPECT_FALSE(ParseRatioLevel("seq").ok());
}

}  // namespace
}  // namespace grpo

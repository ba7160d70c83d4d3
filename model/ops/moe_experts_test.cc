// Backend::MoeExperts / MoeExpertsBackward against a direct double-precision evaluation of the
// definition, y[t] = sum_j w[t, j] * down_e(silu(gate_e . x[t]) * (up_e . x[t])) with
// e = experts[t, j], and its analytic gradient, on a decode-sized batch (the CPU runs the experts
// side by side) and a prefill-sized one, each with an expert that no token chose. Also: the
// permutation saved in the acts ((expert, token, j) order and its offsets), and that the forward
// is, bit for bit, the same products made one expert at a time through the backend's public ops
// (GatherRows, LinearWeights, SwiGlu, ScatterAddRows: the model's path before the op existed).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "model/ops/backend.h"
#include "model/ops/cpu_guarded/guarded_backend.h"

namespace grpo {
namespace {

constexpr int64_t kExperts = 6, kTopK = 2, kHidden = 24, kInter = 20;

struct Problem {
  int64_t tokens = 0;
  std::vector<int32_t> experts;     // [tokens, k], distinct per token, never kExperts - 1
  std::vector<float> weights;       // [tokens, k]
  std::vector<float> x, dy;         // [tokens, hidden]
  std::vector<std::vector<float>> gate, up, down;  // per expert: [inter, hidden] x2, [hidden, inter]
};

std::vector<float> Normal(std::mt19937& rng, int64_t n, float scale) {
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (float& f : v) f = d(rng);
  return v;
}

Problem MakeProblem(int64_t tokens, uint32_t seed) {
  std::mt19937 rng(seed);
  Problem p;
  p.tokens = tokens;
  std::vector<int32_t> chosen(kExperts - 1);
  for (int64_t t = 0; t < tokens; ++t) {
    for (int32_t e = 0; e < kExperts - 1; ++e) chosen[e] = e;
    std::shuffle(chosen.begin(), chosen.end(), rng);
    p.experts.insert(p.experts.end(), chosen.begin(), chosen.begin() + kTopK);
  }
  p.weights = Normal(rng, tokens * kTopK, 0.5f);
  p.x = Normal(rng, tokens * kHidden, 1.0f);
  p.dy = Normal(rng, tokens * kHidden, 1.0f);
  for (int64_t e = 0; e < kExperts; ++e) {
    p.gate.push_back(Normal(rng, kInter * kHidden, 0.3f));
    p.up.push_back(Normal(rng, kInter * kHidden, 0.3f));
    p.down.push_back(Normal(rng, kHidden * kInter, 0.3f));
  }
  return p;
}

// The definition in double: the output, dx, dweights and the experts' weight gradients.
struct Reference {
  std::vector<double> y, dx, dweights;
  std::vector<std::vector<double>> dgate, dup, ddown;
};

Reference RunReference(const Problem& p) {
  Reference r;
  r.y.assign(p.tokens * kHidden, 0.0);
  r.dx.assign(p.tokens * kHidden, 0.0);
  r.dweights.assign(p.tokens * kTopK, 0.0);
  r.dgate.assign(kExperts, std::vector<double>(kInter * kHidden, 0.0));
  r.dup = r.dgate;
  r.ddown.assign(kExperts, std::vector<double>(kHidden * kInter, 0.0));
  std::vector<double> a(kInter), u(kInter), act(kInter), out(kHidden), dact(kInter);
  for (int64_t t = 0; t < p.tokens; ++t) {
    const float* x = &p.x[t * kHidden];
    const float* dy = &p.dy[t * kHidden];
    for (int64_t j = 0; j < kTopK; ++j) {
      const int32_t e = p.experts[t * kTopK + j];
      const double w = p.weights[t * kTopK + j];
      const std::vector<float>&G = p.gate[e], &U = p.up[e], &D = p.down[e];
      for (int64_t i = 0; i < kInter; ++i) {
        a[i] = u[i] = 0;
        for (int64_t c = 0; c < kHidden; ++c) {
          a[i] += double{G[i * kHidden + c]} * x[c];
          u[i] += double{U[i * kHidden + c]} * x[c];
        }
        act[i] = a[i] / (1 + std::exp(-a[i])) * u[i];
      }
      double dot = 0;
      for (int64_t h = 0; h < kHidden; ++h) {
        out[h] = 0;
        for (int64_t i = 0; i < kInter; ++i) out[h] += double{D[h * kInter + i]} * act[i];
        r.y[t * kHidden + h] += w * out[h];
        dot += dy[h] * out[h];
      }
      r.dweights[t * kTopK + j] = dot;
      std::fill(dact.begin(), dact.end(), 0.0);
      for (int64_t h = 0; h < kHidden; ++h) {
        for (int64_t i = 0; i < kInter; ++i) {
          dact[i] += double{D[h * kInter + i]} * w * dy[h];
          r.ddown[e][h * kInter + i] += w * dy[h] * act[i];
        }
      }
      for (int64_t i = 0; i < kInter; ++i) {
        const double s = 1 / (1 + std::exp(-a[i]));
        const double da = dact[i] * u[i] * s * (1 + a[i] * (1 - s)), du = dact[i] * a[i] * s;
        for (int64_t c = 0; c < kHidden; ++c) {
          r.dgate[e][i * kHidden + c] += da * x[c];
          r.dup[e][i * kHidden + c] += du * x[c];
          r.dx[t * kHidden + c] += da * G[i * kHidden + c] + du * U[i * kHidden + c];
        }
      }
    }
  }
  return r;
}

void ExpectNear(const std::vector<float>& got, const std::vector<double>& want, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_NEAR(got[i], want[i], 2e-5 * (1 + std::abs(want[i]))) << what << " [" << i << "]";
  }
}

// The device side of a problem: inputs, the experts' weights and gradients (starting from
// `grad_init`), the acts and the outputs.
struct Device {
  Backend& be = BackendForTests();
  Buffer x, dy, experts, weights;
  std::vector<Buffer> gate, up, down, dgate, dup, ddown;
  Buffer slots, offsets, act_gate, act_up, act, out, y, dx, dweights;

  Device(const Problem& p, const std::vector<float>& grad_init) {
    const int64_t n = p.tokens * kTopK;
    x = Upload(be, p.x);
    dy = Upload(be, p.dy);
    experts = Upload(be, p.experts);
    weights = Upload(be, p.weights);
    for (int64_t e = 0; e < kExperts; ++e) {
      gate.push_back(Upload(be, p.gate[e]));
      up.push_back(Upload(be, p.up[e]));
      down.push_back(Upload(be, p.down[e]));
      dgate.push_back(Upload(be, grad_init));
      dup.push_back(Upload(be, grad_init));
      ddown.push_back(Upload(be, grad_init));
    }
    slots = Buffer(&be, n, DType::kI32);
    offsets = Buffer(&be, kExperts + 1, DType::kI32);
    act_gate = Buffer(&be, n * kInter);
    act_up = Buffer(&be, n * kInter);
    act = Buffer(&be, n * kInter);
    out = Buffer(&be, n * kHidden);
    y = Buffer(&be, p.tokens * kHidden);
    dx = Buffer(&be, p.tokens * kHidden);
    dweights = Buffer(&be, n);
  }
  MoeExpertActs acts() {
    return {slots.i32(), offsets.i32(), act_gate.data(), act_up.data(), act.data(), out.data()};
  }
  static std::vector<WeightView> Views(std::vector<Buffer>& m, int64_t rows, int64_t cols) {
    std::vector<WeightView> v;
    for (Buffer& b : m) v.push_back(WeightView::F32(b.data(), rows, cols));
    return v;
  }
  static std::vector<DevicePtr<float>> Ptrs(std::vector<Buffer>& m) {
    std::vector<DevicePtr<float>> v;
    for (Buffer& b : m) v.push_back(b.data());
    return v;
  }
  void Run(int64_t tokens) {
    const std::vector<WeightView> g = Views(gate, kInter, kHidden), u = Views(up, kInter, kHidden),
                                  d = Views(down, kHidden, kInter);
    const std::vector<DevicePtr<float>> dg = Ptrs(dgate), du = Ptrs(dup), dd = Ptrs(ddown);
    const MoeExpertWeights w{g, u, d, kHidden, kInter};
    be.MoeExperts(w, x.data(), experts.i32(), weights.data(), tokens, kTopK, acts(), y.data());
    be.MoeExpertsBackward(w, {dg, du, dd}, x.data(), weights.data(), acts(), dy.data(), tokens,
                          kTopK, dx.data(), dweights.data());
  }
};

std::vector<double> Plus(const std::vector<float>& a, const std::vector<double>& b) {
  std::vector<double> s(b.size());
  for (size_t i = 0; i < b.size(); ++i) s[i] = a[i] + b[i];
  return s;
}

class MoeExpertsTest : public ::testing::TestWithParam<int64_t> {};

TEST_P(MoeExpertsTest, ForwardAndBackwardMatchTheDefinition) {
  const Problem p = MakeProblem(GetParam(), 11);
  std::mt19937 rng(3);
  const std::vector<float> grad_init = Normal(rng, kInter * kHidden, 1.0f);
  Device d(p, grad_init);
  d.Run(p.tokens);
  const Reference ref = RunReference(p);
  Backend& be = d.be;
  ExpectNear(DownloadF32(be, d.y), ref.y, "y");
  ExpectNear(DownloadF32(be, d.dx), ref.dx, "dx");
  ExpectNear(DownloadF32(be, d.dweights), ref.dweights, "dweights");
  for (int64_t e = 0; e < kExperts; ++e) {
    const std::string name = "expert " + std::to_string(e);
    ExpectNear(DownloadF32(be, d.dgate[e]), Plus(grad_init, ref.dgate[e]), name + " dgate");
    ExpectNear(DownloadF32(be, d.dup[e]), Plus(grad_init, ref.dup[e]), name + " dup");
    ExpectNear(DownloadF32(be, d.ddown[e]), Plus(grad_init, ref.ddown[e]), name + " ddown");
  }
  EXPECT_EQ(DownloadF32(be, d.ddown[kExperts - 1]), grad_init) << "the expert no token chose";

  // The permutation: choices grouped by expert in (expert, token, j) order.
  std::vector<int32_t> want_slots, want_offsets = {0};
  for (int32_t e = 0; e < kExperts; ++e) {
    for (int64_t i = 0; i < p.tokens * kTopK; ++i) {
      if (p.experts[i] == e) want_slots.push_back(static_cast<int32_t>(i));
    }
    want_offsets.push_back(static_cast<int32_t>(want_slots.size()));
  }
  EXPECT_EQ(DownloadI32(be, d.slots), want_slots);
  EXPECT_EQ(DownloadI32(be, d.offsets), want_offsets);
}

// The same products, one expert at a time through the public ops, summed into y in expert order.
TEST_P(MoeExpertsTest, ForwardEqualsThePerExpertOpsBitForBit) {
  const Problem p = MakeProblem(GetParam(), 12);
  Device d(p, std::vector<float>(kInter * kHidden, 0.0f));
  d.Run(p.tokens);
  Backend& be = d.be;
  const std::vector<int32_t> slots = DownloadI32(be, d.slots), offsets = DownloadI32(be, d.offsets);
  std::vector<int32_t> rows(slots.size());
  std::vector<float> slot_weights(slots.size());
  for (size_t i = 0; i < slots.size(); ++i) {
    rows[i] = slots[i] / kTopK;
    slot_weights[i] = p.weights[slots[i]];
  }
  const Buffer rows_d = Upload(be, rows), slot_weights_d = Upload(be, slot_weights);
  Buffer y(&be, p.tokens * kHidden);
  be.Zero(y.data(), p.tokens * kHidden);
  for (int64_t e = 0; e < kExperts; ++e) {
    const int64_t at = offsets[e], n = offsets[e + 1] - at;
    if (n == 0) continue;
    Buffer xe(&be, n * kHidden), gate(&be, n * kInter), up(&be, n * kInter), act(&be, n * kInter),
        out(&be, n * kHidden);
    be.GatherRows(d.x.data(), rows_d.i32() + at, nullptr, xe.data(), n, kHidden);
    be.LinearWeights(xe.data(), WeightView::F32(d.gate[e].data(), kInter, kHidden), nullptr, gate.data(), n,
                     kHidden, kInter);
    be.LinearWeights(xe.data(), WeightView::F32(d.up[e].data(), kInter, kHidden), nullptr, up.data(), n,
                     kHidden, kInter);
    be.SwiGlu(gate.data(), up.data(), act.data(), n * kInter);
    be.LinearWeights(act.data(), WeightView::F32(d.down[e].data(), kHidden, kInter), nullptr, out.data(), n,
                     kInter, kHidden);
    be.ScatterAddRows(out.data(), rows_d.i32() + at, slot_weights_d.data() + at, y.data(), n, kHidden);
  }
  EXPECT_EQ(DownloadF32(be, y), DownloadF32(be, d.y));
}

// 5 tokens: decode-sized (the CPU runs the experts side by side); 70: one expert at a time.
INSTANTIATE_TEST_SUITE_P(Batches, MoeExpertsTest, ::testing::Values(5, 70),
                         [](const auto& info) { return "tokens" + std::to_string(info.param); });

}  // namespace
}  // namespace grpo

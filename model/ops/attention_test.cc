// Backend::Attention / AttentionBackward against a direct double-precision evaluation of the
// definition (softmax of the full masked score matrix, its analytic gradient), on sequences that
// cross the CPU kernels' query and key blocks (64 and 256 rows), with GQA and MLA-like
// asymmetric head dims. Also: the saved log-sum-exp is the definition's, results are
// bit-for-bit repeatable and independent of the other sequences in the pack; and the paged-cache
// ops (WriteCache, CachedAttention through block tables, CopyCacheBlocks) agree with them.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "model/ops/backend.h"
#include "model/ops/cpu_guarded/guarded_backend.h"

namespace grpo {
namespace {

struct Problem {
  std::vector<int64_t> offsets;
  AttentionHeads heads;
  std::vector<float> q, k, v, dout;
  int64_t tokens() const { return offsets.back(); }
};

Problem MakeProblem(const std::vector<int64_t>& lengths, AttentionHeads heads, uint32_t seed) {
  Problem p;
  p.heads = heads;
  p.offsets = {0};
  for (int64_t len : lengths) p.offsets.push_back(p.offsets.back() + len);
  const int64_t T = p.tokens();
  std::mt19937 rng(seed);
  std::normal_distribution<float> n(0.0f, 1.0f);
  auto fill = [&](std::vector<float>& x, int64_t size) {
    x.resize(size);
    for (float& f : x) f = n(rng);
  };
  fill(p.q, T * heads.nh * heads.dqk);
  fill(p.k, T * heads.nkv * heads.dqk);
  fill(p.v, T * heads.nkv * heads.dv);
  fill(p.dout, T * heads.nh * heads.dv);
  return p;
}

struct Result {
  std::vector<float> out, lse, dq, dk, dv;
};

Result RunBackend(const Problem& p) {
  Backend& be = BackendForTests();
  const AttentionHeads& h = p.heads;
  const int64_t T = p.tokens();
  const Buffer q = Upload(be, p.q), k = Upload(be, p.k), v = Upload(be, p.v), dout = Upload(be, p.dout);
  Buffer out(&be, T * h.nh * h.dv), lse(&be, T * h.nh);
  Buffer dq(&be, T * h.nh * h.dqk), dk(&be, T * h.nkv * h.dqk), dv(&be, T * h.nkv * h.dv);
  be.Attention(q.data(), k.data(), v.data(), out.data(), lse.data(), p.offsets, h);
  be.AttentionBackward(dout.data(), q.data(), k.data(), v.data(), out.data(), lse.data(), dq.data(),
                       dk.data(), dv.data(), p.offsets, h);
  auto vec = [&](const Buffer& b) { return DownloadF32(be, b); };
  return {vec(out), vec(lse), vec(dq), vec(dk), vec(dv)};
}

// The definition, in double: S = scale Q K^T (causal), P = softmax(S), O = P V;
// dV = P^T dO, dP = dO V^T, dS = P (dP - rowsum(P dP)), dQ = scale dS K, dK = scale dS^T Q.
struct Reference {
  std::vector<double> out, lse, dq, dk, dv;
};

Reference RunReference(const Problem& p) {
  const AttentionHeads& h = p.heads;
  const int64_t T = p.tokens(), group = h.nh / h.nkv;
  Reference r;
  r.out.assign(T * h.nh * h.dv, 0.0);
  r.lse.assign(T * h.nh, 0.0);
  r.dq.assign(T * h.nh * h.dqk, 0.0);
  r.dk.assign(T * h.nkv * h.dqk, 0.0);
  r.dv.assign(T * h.nkv * h.dv, 0.0);
  auto Q = [&](int64_t t, int64_t hd, int64_t d) { return double{p.q[(t * h.nh + hd) * h.dqk + d]}; };
  auto K = [&](int64_t t, int64_t g, int64_t d) { return double{p.k[(t * h.nkv + g) * h.dqk + d]}; };
  auto V = [&](int64_t t, int64_t g, int64_t d) { return double{p.v[(t * h.nkv + g) * h.dv + d]}; };
  auto dO = [&](int64_t t, int64_t hd, int64_t d) { return double{p.dout[(t * h.nh + hd) * h.dv + d]}; };
  for (size_t s = 0; s + 1 < p.offsets.size(); ++s) {
    const int64_t start = p.offsets[s], len = p.offsets[s + 1] - start;
    for (int64_t hd = 0; hd < h.nh; ++hd) {
      const int64_t g = hd / group;
      for (int64_t i = start; i < start + len; ++i) {
        std::vector<double> sc(i - start + 1), prob(sc.size()), dp(sc.size());
        double mx = -INFINITY, sum = 0.0;
        for (int64_t j = start; j <= i; ++j) {
          double dot = 0.0;
          for (int64_t d = 0; d < h.dqk; ++d) dot += Q(i, hd, d) * K(j, g, d);
          sc[j - start] = h.scale * dot;
          mx = std::max(mx, sc[j - start]);
        }
        for (double x : sc) sum += std::exp(x - mx);
        r.lse[i * h.nh + hd] = mx + std::log(sum);
        double pdp = 0.0;
        for (int64_t j = start; j <= i; ++j) {
          const double pj = std::exp(sc[j - start] - mx) / sum;
          prob[j - start] = pj;
          double dpj = 0.0;
          for (int64_t d = 0; d < h.dv; ++d) {
            r.out[(i * h.nh + hd) * h.dv + d] += pj * V(j, g, d);
            r.dv[(j * h.nkv + g) * h.dv + d] += pj * dO(i, hd, d);
            dpj += dO(i, hd, d) * V(j, g, d);
          }
          dp[j - start] = dpj;
          pdp += pj * dpj;
        }
        for (int64_t j = start; j <= i; ++j) {
          const double ds = prob[j - start] * (dp[j - start] - pdp) * h.scale;
          for (int64_t d = 0; d < h.dqk; ++d) {
            r.dq[(i * h.nh + hd) * h.dqk + d] += ds * K(j, g, d);
            r.dk[(j * h.nkv + g) * h.dqk + d] += ds * Q(i, hd, d);
          }
        }
      }
    }
  }
  return r;
}

// |got - want| <= tol * (1 + |want|) everywhere; reports the worst element.
void ExpectClose(const std::vector<float>& got, const std::vector<double>& want, double tol,
                 const char* what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  double worst = 0.0;
  size_t at = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double err = std::abs(got[i] - want[i]) / (1.0 + std::abs(want[i]));
    if (!(err <= worst)) worst = err, at = i;
  }
  EXPECT_LE(worst, tol) << what << "[" << at << "] = " << got[at] << ", want " << want[at];
}

void ExpectMatchesDefinition(const std::vector<int64_t>& lengths, AttentionHeads heads) {
  const Problem p = MakeProblem(lengths, heads, 7);
  const Result got = RunBackend(p);
  const Reference want = RunReference(p);
  ExpectClose(got.out, want.out, 2e-6, "out");
  ExpectClose(got.lse, want.lse, 2e-6, "lse");
  ExpectClose(got.dq, want.dq, 1e-5, "dq");
  ExpectClose(got.dk, want.dk, 1e-5, "dk");
  ExpectClose(got.dv, want.dv, 1e-5, "dv");
}

TEST(Attention, GqaMatchesTheDefinitionAcrossBlocks) {
  // 1, the query block's edges (63, 64, 65), several key blocks (300, 520).
  ExpectMatchesDefinition({1, 63, 64, 65, 300, 520},
                          {.nh = 4, .nkv = 2, .dqk = 16, .dv = 16, .scale = 0.25f});
}

TEST(Attention, MlaShapedHeadsMatchTheDefinition) {
  // q/k heads wider than v heads (DeepSeek-V3: nope + rope dims vs v_head_dim), nkv = nh.
  ExpectMatchesDefinition({5, 257, 130}, {.nh = 3, .nkv = 3, .dqk = 24, .dv = 8, .scale = 0.2f});
}

TEST(Attention, LargeScoresStayFinite) {
  // Scores far beyond exp's range: the online softmax must rescale, not overflow.
  Problem p = MakeProblem({600}, {.nh = 1, .nkv = 1, .dqk = 8, .dv = 8, .scale = 30.0f}, 3);
  const Result got = RunBackend(p);
  const Reference want = RunReference(p);
  for (float x : got.out) ASSERT_TRUE(std::isfinite(x));
  for (float x : got.dq) ASSERT_TRUE(std::isfinite(x));
  ExpectClose(got.out, want.out, 1e-4, "out");
  ExpectClose(got.lse, want.lse, 1e-6, "lse");
}

TEST(Attention, RepeatableAndIndependentOfThePack) {
  const AttentionHeads heads{.nh = 4, .nkv = 1, .dqk = 8, .dv = 8, .scale = 0.35f};
  const Problem packed = MakeProblem({70, 400, 3}, heads, 11);
  const Result a = RunBackend(packed), b = RunBackend(packed);
  EXPECT_EQ(a.out, b.out);
  EXPECT_EQ(a.dq, b.dq);
  EXPECT_EQ(a.dk, b.dk);
  EXPECT_EQ(a.dv, b.dv);
  // The 400-token sequence alone gives the same bits as inside the pack.
  Problem alone;
  alone.heads = heads;
  alone.offsets = {0, 400};
  auto slice = [](const std::vector<float>& x, int64_t row_floats) {
    return std::vector<float>(x.begin() + 70 * row_floats, x.begin() + 470 * row_floats);
  };
  alone.q = slice(packed.q, 4 * 8);
  alone.k = slice(packed.k, 8);
  alone.v = slice(packed.v, 8);
  alone.dout = slice(packed.dout, 4 * 8);
  const Result c = RunBackend(alone);
  EXPECT_EQ(c.out, slice(a.out, 4 * 8));
  EXPECT_EQ(c.lse, slice(a.lse, 4));
  EXPECT_EQ(c.dq, slice(a.dq, 4 * 8));
  EXPECT_EQ(c.dk, slice(a.dk, 8));
}

// The paged-cache path: rows written through shuffled block tables (WriteCache), then every
// token attending over its prefix (CachedAttention) equals training attention; a block copied
// (CopyCacheBlocks) and swapped into the table reads back the same bits.
TEST(Attention, CachedAttentionThroughBlockTablesEqualsTrainingAttention) {
  const AttentionHeads heads{.nh = 4, .nkv = 2, .dqk = 8, .dv = 8, .scale = 0.3f};
  const Problem p = MakeProblem({7, 13}, heads, 5);
  const Result want = RunBackend(p);
  Backend& be = BackendForTests();
  const int64_t T = p.tokens(), kv = heads.nkv * heads.dqk, layers = 2, bs = 4, blocks = 12;
  Buffer data(&be, blocks * layers * bs * 2 * kv);
  const KvCachePool pool{data.data(), blocks, layers, bs, 2 * kv};
  const std::vector<int32_t> ids = {9, 2, 5, 0, 11, 3, 7};  // 2 blocks for 7 positions, 4 for 13 (+1 spare)
  const std::vector<int64_t> table_offsets = {0, 2, 6};
  const Buffer ids_d = Upload(be, ids);
  const BlockTables tables{ids_d.i32(), table_offsets};
  const std::vector<int64_t> past = {0, 0};
  const Buffer q = Upload(be, p.q), k = Upload(be, p.k), v = Upload(be, p.v);
  Buffer out(&be, T * heads.nh * heads.dv);
  be.WriteCache(k.data(), kv, pool, 1, tables, p.offsets, past, 0, kv);
  be.WriteCache(v.data(), kv, pool, 1, tables, p.offsets, past, kv, kv);
  be.CachedAttention(q.data(), out.data(), p.offsets, past, pool, 1, tables, heads, {.k_offset = 0, .v_offset = kv});
  const std::vector<float> got = DownloadF32(be, out);
  for (size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got[i], want.out[i], 2e-6) << i;
  // Copy-on-write: block 3 (positions 8..11 of sequence 1) into the spare block 7.
  const Buffer from = Upload(be, std::vector<int32_t>{3}), to = Upload(be, std::vector<int32_t>{7});
  be.CopyCacheBlocks(pool, from.i32(), to.i32(), 1);
  std::vector<int32_t> moved = ids;
  moved[5] = 7;
  const Buffer moved_d = Upload(be, moved);
  const BlockTables moved_tables{moved_d.i32(), table_offsets};
  be.CachedAttention(q.data(), out.data(), p.offsets, past, pool, 1, moved_tables, heads, {.k_offset = 0, .v_offset = kv});
  EXPECT_EQ(DownloadF32(be, out), got);
}

// A prompt's rows attending together (8 or more per sequence: on AVX-512 the CPU backend
// transposes each KV head's keys once, cpu::AttendQueriesTransposed) give every row the bits it
// gets decoded alone (one query over its prefix, cpu::AttendQueries): several sequences, KV
// heads, and runs of the heads sharing one (tasks that reuse the transposed keys).
TEST(Attention, CachedPrefillRowsHaveTheBitsOfDecodingEachRowAlone) {
  for (const AttentionHeads heads : {AttentionHeads{.nh = 4, .nkv = 1, .dqk = 16, .dv = 16, .scale = 0.3f},
                                     AttentionHeads{.nh = 6, .nkv = 2, .dqk = 32, .dv = 16, .scale = 0.2f}}) {
    const std::vector<int64_t> lengths = {9, 20, 20};
    const Problem p = MakeProblem(lengths, heads, 8);
    Backend& be = BackendForTests();
    const int64_t T = p.tokens(), kw = heads.nkv * heads.dqk, vw = heads.nkv * heads.dv;
    const int64_t bs = 4, layers = 1, blocks = 13;  // 3 + 5 + 5 blocks of 4 positions
    Buffer data(&be, blocks * layers * bs * (kw + vw));
    const KvCachePool pool{data.data(), blocks, layers, bs, kw + vw};
    std::vector<int32_t> ids(blocks);
    for (int32_t b = 0; b < blocks; ++b) ids[b] = (b * 5) % blocks;  // shuffled
    const std::vector<int64_t> table_offsets = {0, 3, 8, 13};
    const Buffer ids_d = Upload(be, ids);
    const BlockTables tables{ids_d.i32(), table_offsets};
    const std::vector<int64_t> past = {0, 0, 0};
    const Buffer q = Upload(be, p.q), k = Upload(be, p.k), v = Upload(be, p.v);
    be.WriteCache(k.data(), kw, pool, 0, tables, p.offsets, past, 0, kw);
    be.WriteCache(v.data(), vw, pool, 0, tables, p.offsets, past, kw, vw);
    const CacheRowLayout layout{.k_offset = 0, .v_offset = kw};
    Buffer out(&be, T * heads.nh * heads.dv);
    be.CachedAttention(q.data(), out.data(), p.offsets, past, pool, 0, tables, heads, layout);
    const std::vector<float> prefill = DownloadF32(be, out);
    for (size_t s = 0; s < lengths.size(); ++s) {
      const std::vector<int32_t> seq_ids(ids.begin() + table_offsets[s], ids.begin() + table_offsets[s + 1]);
      const Buffer seq_ids_d = Upload(be, seq_ids);
      const std::vector<int64_t> seq_offsets = {0, static_cast<int64_t>(seq_ids.size())};
      const BlockTables seq_table{seq_ids_d.i32(), seq_offsets};
      for (int64_t i = 0; i < lengths[s]; ++i) {
        const int64_t t = p.offsets[s] + i;
        const std::vector<float> row(p.q.begin() + t * heads.nh * heads.dqk,
                                     p.q.begin() + (t + 1) * heads.nh * heads.dqk);
        const Buffer q1 = Upload(be, row);
        Buffer out1(&be, heads.nh * heads.dv);
        const std::vector<int64_t> one = {0, 1}, at = {i};
        be.CachedAttention(q1.data(), out1.data(), one, at, pool, 0, seq_table, heads, layout);
        const std::vector<float> decoded = DownloadF32(be, out1);
        ASSERT_EQ(std::memcmp(decoded.data(), prefill.data() + t * heads.nh * heads.dv,
                              decoded.size() * sizeof(float)), 0)
            << "sequence " << s << " row " << i << " dqk " << heads.dqk;
      }
    }
  }
}

}  // namespace
}  // namespace grpo

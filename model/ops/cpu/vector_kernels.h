// Small f32 vector kernels of the CPU backend's hot loops that BLAS does not cover well: one
// decode query attending over KV-cache rows, few-row linear layers, softmax, log-softmax, SwiGLU
// (exp) and RMSNorm rows. Each is compiled twice
// (x86-64-v3: AVX2 + FMA, and the build's baseline) and picked at load time by the CPU's
// features (GCC target_clones), so a binary built for x86-64-v2 runs 8-wide where it can.
// Results are deterministic for a given CPU (fixed summation order: 8 lanes, then the lanes in
// order, then the tail).
#ifndef GRPO_MODEL_OPS_CPU_VECTOR_KERNELS_H_
#define GRPO_MODEL_OPS_CPU_VECTOR_KERNELS_H_

#include <cstdint>

namespace grpo::cpu {

// y[m, n] = x[m, k] . w[n, k]^T (row i of y at y + i * ldy) for few rows (m <= kSmallLinearRows): each weight row is read
// once for all rows of x (sgemm would pack the weights first, costing more than the product at
// decode sizes). Rows are independent: y[i] depends only on x[i], whatever m is.
constexpr int64_t kSmallLinearRows = 8;
void LinearSmallM(const float* x, const float* w, float* y, int64_t m, int64_t k, int64_t n,
                  int64_t ldy);

// One query over `len` positions: scores[j] = scale * q . (krows[j] + k_offset)[0:dqk],
// p = softmax(scores), out[0:dv] = sum_j p[j] * (vrows[j] + v_offset)[0:dv] (overwritten);
// *lse = log sum_j exp(scores[j]) unless lse is null. `scores` is scratch of at least len floats.
// len >= 1. Decoding (rows of the paged cache) and batch-invariant training attention (rows of
// packed activations) both call it, so a query row gets the same bits either way.
void AttendQuery(const float* q, const float* const* krows, int64_t k_offset,
                 const float* const* vrows, int64_t v_offset, int64_t len, int64_t dqk, int64_t dv,
                 float scale, float* scores, float* out, float* lse);

// AttendQuery for `count` queries over the same rows (the heads of one token that share a KV
// head): query i at q + i * q_stride, its output at out + i * out_stride, its log-sum-exp at
// lse[i] (lse may be null); `scores` is scratch of count * len floats. Each key and value row is
// read once for all the queries instead of once per query, and every query's output is the bits
// AttendQuery gives it alone.
void AttendQueries(const float* q, int64_t q_stride, int64_t count, const float* const* krows,
                   int64_t k_offset, const float* const* vrows, int64_t v_offset, int64_t len,
                   int64_t dqk, int64_t dv, float scale, float* scores, float* out,
                   int64_t out_stride, float* lse);

// AttendQueries over keys transposed once for many queries (prefill: every token of a prompt
// attends over the same keys): the same bits as AttendQueries, query for query, computed 16 keys
// at a time on AVX-512 (each key's 8 lane sums in 16 lanes, without AttendQueries' per-key
// shuffles), with up to 4 queries sharing each value row's loads.
//
// TransposedKeysAvailable: whether this CPU and shape take it (AVX-512F, and dqk and dv
// multiples of 16); otherwise use AttendQueries. TransposedKeysFloats: the floats TransposeKeys
// writes for `len` keys (len rounded up to 16, times dqk). TransposeKeys: key j's entry d
// (krows[j] + k_offset)[d] to kt[(j / 16) * dqk * 16 + d * 16 + j % 16], keys from len to the
// next multiple of 16 zero; kt 64-byte aligned. AttendQueriesTransposed: AttendQueries for the
// first `len` of those keys (kt may hold more).
bool TransposedKeysAvailable(int64_t dqk, int64_t dv);
int64_t TransposedKeysFloats(int64_t len, int64_t dqk);
void TransposeKeys(const float* const* krows, int64_t k_offset, int64_t len, int64_t dqk,
                   float* kt);
void AttendQueriesTransposed(const float* q, int64_t q_stride, int64_t count, const float* kt,
                             const float* const* vrows, int64_t v_offset, int64_t len, int64_t dqk,
                             int64_t dv, float scale, float* scores, float* out,
                             int64_t out_stride, float* lse);

// One row of RMSNorm: y = x * r * w with r = 1 / sqrt(mean(x^2) + eps), returned. Sums of
// squares are f32 within chunks of 256 and f64 across them.
float RmsNormRow(const float* x, const float* w, float* y, int64_t dim, float eps);
// Its dx for one row, given r: dx_i = r dy_i w_i - x_i r^3 / dim * sum_j dy_j w_j x_j.
void RmsNormRowBackward(const float* dy, const float* x, const float* w, float rstd, float* dx,
                        int64_t dim);

// The elementwise kernels below compute exp with one vectorized polynomial (within 2 ulp of
// expf; 0 below -87.34, +inf above 88.38, NaN stays NaN), the same for every element and CPU.

// x[0:n] = softmax(x[0:n]) in place (n >= 1).
void Softmax(float* x, int64_t n);

// The row kernels of blocked (FlashAttention-style) attention over one block of scores:
// RowMax(x) = max_i x_i (-inf for n = 0); ExpShiftedRow sets x[i] = exp(x[i] - shift) in place
// and returns their sum; SoftmaxGradRow recomputes the probabilities p_i = exp(s_i - lse) into
// s and sets dp_i = p_i * (dp_i - d) * scale (the softmax backward with d = rowsum(dO * O)).
float RowMax(const float* x, int64_t n);
float ExpShiftedRow(float* x, int64_t n, float shift);
void SoftmaxGradRow(float* s, float* dp, int64_t n, float lse, float d, float scale);

// What a log-softmax of the row x[0:n] needs: max = max_i x_i, log_sum = log sum_i exp(x_i - max)
// (so log p_i = x_i - max - log_sum), and, if asked, the entropy -sum_i p_i log p_i. Sums are
// f32 within chunks of 512 and f64 across them.
struct LogSoftmaxStats {
  float max = 0.0f;
  double log_sum = 0.0;
  double entropy = 0.0;
};
LogSoftmaxStats LogSoftmaxRow(const float* x, int64_t n, bool need_entropy);

// out[i] = scale * exp(x[i] - shift) for i < n (out may be x).
void ScaledExp(const float* x, int64_t n, float shift, float scale, float* out);

// out = silu(gate) * up, silu(g) = g / (1 + exp(-g)), elementwise over n.
void SwiGlu(const float* gate, const float* up, float* out, int64_t n);
// Its backward: dup = dout * silu(gate), dgate = dout * up * silu'(gate).
void SwiGluBackward(const float* dout, const float* gate, const float* up, float* dgate,
                    float* dup, int64_t n);

}  // namespace grpo::cpu

#endif  // GRPO_MODEL_OPS_CPU_VECTOR_KERNELS_H_

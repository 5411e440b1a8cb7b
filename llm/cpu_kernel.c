/* One decode step of a mixture-of-experts layer on the CPU, straight from MXFP4.
 *
 * For one token: for each chosen expert, gate_up = W_gu x + b_gu (MXFP4 weights), the clamped
 * swiglu, down = W_down h + b_down, and the router-weighted sum. Weights are read as stored:
 * 4.25 bits each instead of 32 for a decoded float32 copy, which is what bounds decode speed.
 *
 * Arithmetic: each weight is FP4[nibble] * 2^(scale - 127), exactly as the decoded copy holds it;
 * products and sums are float32. Within a group of 32 values the sum is formed first and then
 * scaled by the group's power of two (exact), so results differ from a float32 GEMV on the
 * decoded weights only in summation order.
 *
 * An E8M0 exponent of 255 (NaN in the OCP format) is read as 2^128 = inf; checkpoints do not use it.
 *
 * Built at run time by llm/cpu_kernel.py (cc -O3 -march=native -fopenmp): AVX-512 when the CPU has
 * it, else AVX2 with FMA, else portable C.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

static const float FP4[16] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f,
                              -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f};

/* 2^(s - 127) for an E8M0 exponent s, exactly: the float whose exponent field is s (s = 0 is the
 * subnormal 2^-127). Same value as ldexpf(1, s - 127), without a library call per group. */
static inline float pow2_e8m0(uint8_t s) {
    union { uint32_t bits; float value; } u;
    u.bits = s ? (uint32_t)s << 23 : (uint32_t)1 << 22;
    return u.value;
}

/* The AVX-512 loop takes 128 values (4 groups, 64 bytes) at a time without unpacking the bytes:
 * viewed as 16 dwords, nibble n of dword l is value 8l + n, and vpermps looks up the FP4 table
 * with the low 4 bits of each dword, so shifting by 4n gives 16 weights in one instruction.
 * The activations are permuted to match once per token: xp[128c + 16n + l] = x[128c + 8l + n].
 * Groups past the last full 128 (gpt-oss: 2880 = 22 * 128 + 64) keep their natural order. */
#define CHUNK 128

#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
#define VECTOR_CHUNKS 1
#else
#define VECTOR_CHUNKS 0  /* the portable loop reads every group in natural order */
#endif

static void permute_activations(const float *x, int n, float *xp) {
    int full = VECTOR_CHUNKS ? n / CHUNK * CHUNK : 0;
    for (int c = 0; c < full; c += CHUNK)
        for (int k = 0; k < 8; k++)
            for (int l = 0; l < 16; l++) xp[c + 16 * k + l] = x[c + 8 * l + k];
    for (int i = full; i < n; i++) xp[i] = x[i];
}

#if defined(__AVX512F__)
/* Full 128-value chunks of one row: the sum over groups [0, *g), *g advanced past them. */
static float row_chunks(const uint8_t *b, const uint8_t *s, const float *xp, int groups, int *g_out) {
    const __m512 table = _mm512_loadu_ps(FP4);
    const __m512i group_shift = _mm512_set_epi32(24, 24, 24, 24, 16, 16, 16, 16, 8, 8, 8, 8, 0, 0, 0, 0);
    const __m512i byte = _mm512_set1_epi32(0xFF), subnormal = _mm512_set1_epi32(1 << 22);
    __m512 acc = _mm512_setzero_ps();
    int g = 0;
    for (; g + 4 <= groups; g += 4) {
        __m512i raw = _mm512_loadu_si512((const void *)(b + g * 16));
        const float *xc = xp + g * 32;
        __m512 part0 = _mm512_mul_ps(_mm512_permutexvar_ps(raw, table), _mm512_loadu_ps(xc));
        __m512 part1 = _mm512_mul_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(raw, 4), table),
                                     _mm512_loadu_ps(xc + 16));
        for (int k = 2; k < 8; k += 2) {
            part0 = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(raw, 4 * k), table),
                                    _mm512_loadu_ps(xc + 16 * k), part0);
            part1 = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(raw, 4 * k + 4), table),
                                    _mm512_loadu_ps(xc + 16 * k + 16), part1);
        }
        /* lane l belongs to group g + l / 4: its scale's exponent field, shifted into place */
        uint32_t four;
        memcpy(&four, s + g, 4);
        __m512i e = _mm512_and_si512(_mm512_srlv_epi32(_mm512_set1_epi32((int)four), group_shift), byte);
        __m512i bits = _mm512_slli_epi32(e, 23);  /* 2^(s - 127) as pow2_e8m0 computes it */
        bits = _mm512_mask_mov_epi32(bits, _mm512_cmpeq_epi32_mask(e, _mm512_setzero_si512()), subnormal);
        acc = _mm512_fmadd_ps(_mm512_add_ps(part0, part1), _mm512_castsi512_ps(bits), acc);
    }
    *g_out = g;
    return _mm512_reduce_add_ps(acc);
}
#elif defined(__AVX2__) && defined(__FMA__)
/* Nibble k of each of 8 dwords -> 8 FP4 values: vpermps looks up the magnitude by the low 3 bits
 * (8-entry table), the nibble's top bit becomes the float's sign bit. */
static inline __m256 fp4_lanes(__m256i raw, int k, __m256 magnitudes) {
    __m256 mag = _mm256_permutevar8x32_ps(magnitudes, _mm256_srli_epi32(raw, 4 * k));
    __m256i sign = _mm256_and_si256(_mm256_slli_epi32(raw, 28 - 4 * k), _mm256_set1_epi32((int)0x80000000u));
    return _mm256_xor_ps(mag, _mm256_castsi256_ps(sign));
}

static float row_chunks(const uint8_t *b, const uint8_t *s, const float *xp, int groups, int *g_out) {
    const __m256 magnitudes = _mm256_loadu_ps(FP4);
    __m256 acc = _mm256_setzero_ps();
    int g = 0;
    for (; g + 4 <= groups; g += 4) {
        for (int half = 0; half < 2; half++) {  /* dwords 0-7 (groups g, g+1), 8-15 (g+2, g+3) */
            __m256i raw = _mm256_loadu_si256((const __m256i *)(b + g * 16 + 32 * half));
            const float *xc = xp + g * 32 + 8 * half;
            __m256 part0 = _mm256_mul_ps(fp4_lanes(raw, 0, magnitudes), _mm256_loadu_ps(xc));
            __m256 part1 = _mm256_mul_ps(fp4_lanes(raw, 1, magnitudes), _mm256_loadu_ps(xc + 16));
            for (int k = 2; k < 8; k += 2) {
                part0 = _mm256_fmadd_ps(fp4_lanes(raw, k, magnitudes), _mm256_loadu_ps(xc + 16 * k), part0);
                part1 = _mm256_fmadd_ps(fp4_lanes(raw, k + 1, magnitudes), _mm256_loadu_ps(xc + 16 * k + 16), part1);
            }
            float lo = pow2_e8m0(s[g + 2 * half]), hi = pow2_e8m0(s[g + 2 * half + 1]);
            __m256 scale = _mm256_set_ps(hi, hi, hi, hi, lo, lo, lo, lo);
            acc = _mm256_fmadd_ps(_mm256_add_ps(part0, part1), scale, acc);
        }
    }
    *g_out = g;
    __m128 four = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    four = _mm_add_ps(four, _mm_movehl_ps(four, four));
    return _mm_cvtss_f32(_mm_add_ss(four, _mm_shuffle_ps(four, four, 1)));
}
#endif

/* One row's dot product over `groups` groups, activations permuted as above. */
static float row_dot(const uint8_t *b, const uint8_t *s, const float *xp, int groups) {
    int g = 0;
    float sum = 0.0f;
#if VECTOR_CHUNKS
    sum = row_chunks(b, s, xp, groups, &g);
#endif
    for (; g < groups; g++) {  /* natural order: byte j holds values 2j (low) and 2j + 1 (high) */
        float part = 0.0f;
        const float *xg = xp + g * 32;
        for (int j = 0; j < 16; j++) {
            uint8_t v = b[g * 16 + j];
            part += FP4[v & 15] * xg[2 * j] + FP4[v >> 4] * xg[2 * j + 1];
        }
        sum += part * pow2_e8m0(s[g]);
    }
    return sum;
}

/* y[o] = bias[o] + sum_i W[o, i] x[i]; blocks [rows, groups, 16] uint8, scales [rows, groups]. */
static void gemv_mxfp4(const uint8_t *blocks, const uint8_t *scales, const float *bias, const float *xp,
                       int rows, int groups, float *y) {
#pragma omp parallel for schedule(static)
    for (int o = 0; o < rows; o++)
        y[o] = row_dot(blocks + (size_t)o * groups * 16, scales + (size_t)o * groups, xp, groups) + bias[o];
}

/* x [hidden] -> out [hidden] += sum over the k chosen experts of weight * expert(x).
 * Expert tensors are the whole layer's: gu_blocks [E, 2I, hidden/32, 16], gu_scales
 * [E, 2I, hidden/32], gu_bias [E, 2I] (float32); dn_* likewise with [E, hidden, I/32, ...].
 * Returns 0, or -1 if scratch memory could not be allocated. */
int moe_one_token(const float *x, int hidden, int inter, int k, const int64_t *experts, const float *weights,
                  const uint8_t *gu_blocks, const uint8_t *gu_scales, const float *gu_bias,
                  const uint8_t *dn_blocks, const uint8_t *dn_scales, const float *dn_bias,
                  float limit, float alpha, float *out) {
    float *buf = malloc(sizeof(float) * (size_t)(2 * inter + inter + hidden + hidden + inter));
    if (!buf) return -1;
    float *gate_up = buf, *act = gate_up + 2 * inter, *xp = act + inter, *y = xp + hidden, *ap = y + hidden;
    int hidden_groups = hidden / 32, inter_groups = inter / 32;
    size_t gu_rows = (size_t)2 * inter, dn_rows = (size_t)hidden;
    permute_activations(x, hidden, xp);
    for (int j = 0; j < k; j++) {
        int64_t e = experts[j];
        gemv_mxfp4(gu_blocks + e * gu_rows * hidden_groups * 16, gu_scales + e * gu_rows * hidden_groups,
                   gu_bias + e * gu_rows, xp, (int)gu_rows, hidden_groups, gate_up);
        for (int i = 0; i < inter; i++) {  /* interleaved: even = gate, odd = linear */
            float gate = fminf(gate_up[2 * i], limit);
            float lin = fminf(fmaxf(gate_up[2 * i + 1], -limit), limit);
            act[i] = (lin + 1.0f) * (gate / (1.0f + expf(-gate * alpha)));
        }
        permute_activations(act, inter, ap);
        gemv_mxfp4(dn_blocks + e * dn_rows * inter_groups * 16, dn_scales + e * dn_rows * inter_groups,
                   dn_bias + e * dn_rows, ap, (int)dn_rows, inter_groups, y);
        for (int i = 0; i < hidden; i++) out[i] += weights[j] * y[i];
    }
    free(buf);
    return 0;
}

/* ---- several tokens at once (continuous batching, short prefill chunks) --------------------
 * Each chosen expert is read once for all the tokens routed to it: its 128-value chunks are
 * decoded (FP4 lookup) into registers and multiplied with every token's activations before the
 * next chunk is read; each group's sum is then scaled by its exact power of two, as in row_dot.
 * Sums therefore differ from float32 matrix products on the decoded weights only in order. */
#define TILE 8  /* tokens per pass over a row: their accumulators stay in registers */

#if defined(__AVX512F__)
static inline __attribute__((always_inline)) void rows_tile(
        const uint8_t *b, const uint8_t *s, const float *const *xs, int nt_const, int groups, float *sums) {
    const __m512 table = _mm512_loadu_ps(FP4);
    const __m512i group_shift = _mm512_set_epi32(24, 24, 24, 24, 16, 16, 16, 16, 8, 8, 8, 8, 0, 0, 0, 0);
    const __m512i byte = _mm512_set1_epi32(0xFF), subnormal = _mm512_set1_epi32(1 << 22);
    __m512 acc[TILE];
    for (int t = 0; t < nt_const; t++) acc[t] = _mm512_setzero_ps();
    int g = 0;
    for (; g + 4 <= groups; g += 4) {
        __m512i raw = _mm512_loadu_si512((const void *)(b + g * 16));
        uint32_t four;
        memcpy(&four, s + g, 4);
        __m512i e = _mm512_and_si512(_mm512_srlv_epi32(_mm512_set1_epi32((int)four), group_shift), byte);
        __m512i bits = _mm512_slli_epi32(e, 23);
        bits = _mm512_mask_mov_epi32(bits, _mm512_cmpeq_epi32_mask(e, _mm512_setzero_si512()), subnormal);
        __m512 part[TILE];
        for (int t = 0; t < nt_const; t++) part[t] = _mm512_setzero_ps();
        for (int k = 0; k < 8; k++) {
            __m512 w = _mm512_permutexvar_ps(_mm512_srli_epi32(raw, 4 * k), table);
            for (int t = 0; t < nt_const; t++)
                part[t] = _mm512_fmadd_ps(w, _mm512_loadu_ps(xs[t] + g * 32 + 16 * k), part[t]);
        }
        /* each lane's sum belongs to one group: scaled by its power of two once (exact) */
        __m512 scale = _mm512_castsi512_ps(bits);
        for (int t = 0; t < nt_const; t++) acc[t] = _mm512_fmadd_ps(part[t], scale, acc[t]);
    }
    for (int t = 0; t < nt_const; t++) {
        float sum = _mm512_reduce_add_ps(acc[t]);
        for (int gg = g; gg < groups; gg++) {  /* the tail, natural order, as row_dot */
            float part = 0.0f;
            const float *xg = xs[t] + gg * 32;
            for (int j = 0; j < 16; j++) {
                uint8_t v = b[gg * 16 + j];
                part += FP4[v & 15] * xg[2 * j] + FP4[v >> 4] * xg[2 * j + 1];
            }
            sum += part * pow2_e8m0(s[gg]);
        }
        sums[t] = sum;
    }
}

/* One row against nt (<= TILE) tokens; the constant cases let the compiler keep acc in registers. */
static void row_tokens(const uint8_t *b, const uint8_t *s, const float *const *xs, int nt, int groups, float *sums) {
    switch (nt) {
        case 1: rows_tile(b, s, xs, 1, groups, sums); break;
        case 2: rows_tile(b, s, xs, 2, groups, sums); break;
        case 3: rows_tile(b, s, xs, 3, groups, sums); break;
        case 4: rows_tile(b, s, xs, 4, groups, sums); break;
        case 5: rows_tile(b, s, xs, 5, groups, sums); break;
        case 6: rows_tile(b, s, xs, 6, groups, sums); break;
        case 7: rows_tile(b, s, xs, 7, groups, sums); break;
        default: rows_tile(b, s, xs, 8, groups, sums); break;
    }
}
#else
static void row_tokens(const uint8_t *b, const uint8_t *s, const float *const *xs, int nt, int groups, float *sums) {
    for (int t = 0; t < nt; t++) sums[t] = row_dot(b, s, xs[t], groups);
}
#endif

/* Y[t, o] = bias[o] + sum_i W[o, i] X_t[i] for the n tokens whose permuted activations are xs[t]
 * (one thread: the batch kernel shares out whole experts, not rows). */
static void gemm_mxfp4(const uint8_t *blocks, const uint8_t *scales, const float *bias, const float *const *xs,
                       int n, int rows, int groups, float *y, int ldy) {
    for (int o = 0; o < rows; o++) {
        const uint8_t *b = blocks + (size_t)o * groups * 16, *s = scales + (size_t)o * groups;
        for (int t0 = 0; t0 < n; t0 += TILE) {
            int nt = n - t0 < TILE ? n - t0 : TILE;
            float sums[TILE];
            row_tokens(b, s, xs + t0, nt, groups, sums);
            for (int t = 0; t < nt; t++) y[(size_t)(t0 + t) * ldy + o] = sums[t] + bias[o];
        }
    }
}

/* One expert for its m tokens (pairs[j]: token * k + slot): gate_up, clamped swiglu, down; each
 * token's result goes to ys[pair] (hidden floats). scratch: m * (3 * inter + hidden) floats, xs/as: m. */
static void expert_tokens(int e, const int *pairs, int m, int k, int hidden, int inter, const float *xp,
                          const uint8_t *gu_blocks, const uint8_t *gu_scales, const float *gu_bias,
                          const uint8_t *dn_blocks, const uint8_t *dn_scales, const float *dn_bias,
                          float limit, float alpha, float *scratch, const float **xs, const float **as, float *ys) {
    int hidden_groups = hidden / 32, inter_groups = inter / 32;
    size_t gu_rows = (size_t)2 * inter, dn_rows = (size_t)hidden;
    float *gate_up = scratch, *ap = scratch + (size_t)m * gu_rows, act[inter];
    for (int j = 0; j < m; j++) {
        xs[j] = xp + (size_t)(pairs[j] / k) * hidden;
        as[j] = ap + (size_t)j * inter;
    }
    gemm_mxfp4(gu_blocks + e * gu_rows * hidden_groups * 16, gu_scales + e * gu_rows * hidden_groups,
               gu_bias + e * gu_rows, xs, m, (int)gu_rows, hidden_groups, gate_up, (int)gu_rows);
    for (int j = 0; j < m; j++) {
        const float *gu = gate_up + (size_t)j * gu_rows;
        for (int i = 0; i < inter; i++) {  /* interleaved: even = gate, odd = linear */
            float gate = fminf(gu[2 * i], limit);
            float lin = fminf(fmaxf(gu[2 * i + 1], -limit), limit);
            act[i] = (lin + 1.0f) * (gate / (1.0f + expf(-gate * alpha)));
        }
        permute_activations(act, inter, ap + (size_t)j * inter);
    }
    float *down = ap + (size_t)m * inter;
    gemm_mxfp4(dn_blocks + e * dn_rows * inter_groups * 16, dn_scales + e * dn_rows * inter_groups,
               dn_bias + e * dn_rows, as, m, (int)dn_rows, inter_groups, down, (int)dn_rows);
    for (int j = 0; j < m; j++)  /* each (token, slot) result apart, summed in order later */
        memcpy(ys + (size_t)pairs[j] * hidden, down + (size_t)j * hidden, sizeof(float) * hidden);
}

/* x [n, hidden] -> out [n, hidden] (zeroed by the caller) += for each token, over its k experts
 * in ascending expert order (as the reference sums), weight * expert(x). experts, weights [n, k].
 * Tokens are grouped by expert, so each chosen expert's weights are read once per call. Threads
 * take whole experts (few synchronisations: a shared CPU stalls a barrier), each token's k
 * results are kept apart, then summed in ascending expert order.
 * Returns 0, or -1 if scratch memory could not be allocated. */
int moe_batch(const float *x, int n, int hidden, int inter, int k, int num_experts, const int64_t *experts,
              const float *weights, const uint8_t *gu_blocks, const uint8_t *gu_scales, const float *gu_bias,
              const uint8_t *dn_blocks, const uint8_t *dn_scales, const float *dn_bias,
              float limit, float alpha, float *out) {
    size_t nk = (size_t)n * k;
    int *count = calloc((size_t)num_experts + 1, sizeof(int)), *pairs = malloc(sizeof(int) * nk);
    int *fill = malloc(sizeof(int) * ((size_t)num_experts + 1));
    float *xp = malloc(sizeof(float) * (size_t)n * hidden), *ys = malloc(sizeof(float) * nk * hidden);
    int failed = !count || !pairs || !fill || !xp || !ys;
    if (!failed) {
        /* counting sort of (token, slot) pairs by expert: tokens ascending within each expert */
        for (size_t i = 0; i < nk; i++) count[experts[i] + 1]++;
        for (int e = 0; e < num_experts; e++) count[e + 1] += count[e];
        memcpy(fill, count, sizeof(int) * (size_t)num_experts);
        for (size_t i = 0; i < nk; i++) pairs[fill[experts[i]]++] = (int)i;
#pragma omp parallel reduction(| : failed)
        {
            float *scratch = malloc(sizeof(float) * (size_t)n * (3 * inter + hidden));
            const float **xs = malloc(sizeof(float *) * (size_t)n), **as = malloc(sizeof(float *) * (size_t)n);
            if (!scratch || !xs || !as) failed = 1;
#pragma omp for schedule(static)
            for (int t = 0; t < n; t++) permute_activations(x + (size_t)t * hidden, hidden, xp + (size_t)t * hidden);
#pragma omp for schedule(dynamic)
            for (int e = 0; e < num_experts; e++) {
                int m = count[e + 1] - count[e];
                if (m && scratch && xs && as)
                    expert_tokens(e, pairs + count[e], m, k, hidden, inter, xp, gu_blocks, gu_scales, gu_bias,
                                  dn_blocks, dn_scales, dn_bias, limit, alpha, scratch, xs, as, ys);
            }
#pragma omp for schedule(static)
            for (int t = 0; t < n; t++) {
                int order[k];  /* this token's slots by ascending expert (k is small) */
                for (int j = 0; j < k; j++) {
                    int at = j;
                    while (at > 0 && experts[(size_t)t * k + order[at - 1]] > experts[(size_t)t * k + j]) {
                        order[at] = order[at - 1];
                        at--;
                    }
                    order[at] = j;
                }
                for (int j = 0; j < k; j++) {
                    const float *y = ys + ((size_t)t * k + order[j]) * hidden;
                    float w = weights[(size_t)t * k + order[j]];
                    for (int i = 0; i < hidden; i++) out[(size_t)t * hidden + i] += w * y[i];
                }
            }
            free(scratch); free(xs); free(as);
        }
    }
    free(count); free(pairs); free(fill); free(xp); free(ys);
    return failed ? -1 : 0;
}

/* ---- decode attention of a continuous batch -------------------------------------------------
 * B sequences, one new token each, in their own slots of the cache: write each new key/value at
 * its position (index p, or p % window on a sliding layer's ring), then attend to the keys it
 * may see (indices 0..min(p, window - 1): the ring's order does not matter, keys carry rotary),
 * with the sink logit in the softmax's denominator (it carries no value), as model.Attention. */
#if defined(__AVX512F__)
/* e^x for x <= 0 (scores minus their max): 2^n * p(r), |r| <= ln2/2, degree-6 Taylor (about
 * 1 ulp); _mm512_scalef_ps applies 2^n, underflowing to 0 smoothly. */
static inline __m512 exp_neg512(__m512 x) {
    x = _mm512_max_ps(x, _mm512_set1_ps(-104.0f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.0f / 720);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}
#endif

/* row[j] = e^(row[j] - max) for j < n; returns their sum. */
static float exp_row(float *row, int n, float max) {
    int j = 0;
    float sum = 0.0f;
#if defined(__AVX512F__)
    __m512 acc = _mm512_setzero_ps(), m = _mm512_set1_ps(max);
    for (; j + 16 <= n; j += 16) {
        __m512 e = exp_neg512(_mm512_sub_ps(_mm512_loadu_ps(row + j), m));
        _mm512_storeu_ps(row + j, e);
        acc = _mm512_add_ps(acc, e);
    }
    sum = _mm512_reduce_add_ps(acc);
#endif
    for (; j < n; j++) {
        row[j] = expf(row[j] - max);
        sum += row[j];
    }
    return sum;
}

/* q [B, H, D], k_new, v_new [B, KV, D]; k_buf, v_buf [slots, KV, cap, D]; slots, positions [B];
 * window: the ring size of a sliding layer (cap == window), 0 for a full layer; sinks [H];
 * out [B, H, D]. Returns 0, or -1 if scratch memory could not be allocated. */
int attend_decode(const float *q, const float *k_new, const float *v_new, float *k_buf, float *v_buf, int cap,
                  const int64_t *slots, const int64_t *positions, int b, int heads, int kv_heads, int d, int window,
                  const float *sinks, float scale, float *out) {
    int group = heads / kv_heads, failed = 0;
    for (int i = 0; i < b; i++)
        for (int h = 0; h < kv_heads; h++) {
            int64_t index = window ? positions[i] % window : positions[i];
            size_t at = (((size_t)slots[i] * kv_heads + h) * cap + index) * d;
            memcpy(k_buf + at, k_new + ((size_t)i * kv_heads + h) * d, sizeof(float) * d);
            memcpy(v_buf + at, v_new + ((size_t)i * kv_heads + h) * d, sizeof(float) * d);
        }
#pragma omp parallel for schedule(dynamic) reduction(| : failed)
    for (int task = 0; task < b * kv_heads; task++) {
        int i = task / kv_heads, h = task % kv_heads;
        int seen = (int)(positions[i] + 1);
        if (window && seen > window) seen = window;
        const float *keys = k_buf + ((size_t)slots[i] * kv_heads + h) * cap * d;
        const float *values = v_buf + ((size_t)slots[i] * kv_heads + h) * cap * d;
        float *scores = malloc(sizeof(float) * (size_t)group * seen);
        if (!scores) { failed = 1; continue; }
        for (int g = 0; g < group; g++) {
            int head = h * group + g;
            const float *qg = q + ((size_t)i * heads + head) * d;
            float *row = scores + (size_t)g * seen, max = sinks[head];
            for (int j = 0; j < seen; j++) {
                const float *kj = keys + (size_t)j * d;
                float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
                for (int c = 0; c < d; c++) dot += qg[c] * kj[c];
                row[j] = dot * scale;
                max = row[j] > max ? row[j] : max;
            }
            float total = exp_row(row, seen, max) + expf(sinks[head] - max);
            float *o = out + ((size_t)i * heads + head) * d;
            for (int c = 0; c < d; c++) o[c] = 0.0f;
            for (int j = 0; j < seen; j++) {
                const float *vj = values + (size_t)j * d;
                float p = row[j] / total;
#pragma omp simd
                for (int c = 0; c < d; c++) o[c] += p * vj[c];
            }
        }
        free(scores);
    }
    return failed ? -1 : 0;
}

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

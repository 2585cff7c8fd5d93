/*
 * sparse_avx2.c -- AVX2+FMA row kernel of dc_spmm (sparse row times dense matrix).
 *
 * Compiled with -mavx2 -mfma (MSVC: /arch:AVX2) and nothing else is: sparse.c calls it
 * only when the AVX2 path is selected.
 *
 * Up to 64 output columns are held in 8 ymm accumulators; each entry of the sparse row
 * costs one broadcast and one FMA (with its load of D) per 8 columns, so a row of nnz
 * entries is nnz * w / 16 cycles at two FMAs a cycle, against K * w / 16 dense.
 */
#include <immintrin.h>

#include "sparse_internal.h"

#if !defined(__AVX2__) || (!defined(__FMA__) && !defined(_MSC_VER))
#error "sparse_avx2.c must be compiled with -mavx2 -mfma (MSVC: /arch:AVX2)"
#endif

#if defined(_MSC_VER)
#include <intrin.h>
#define dc_popcount32(m) ((int)__popcnt(m))
#else
#define dc_popcount32(m) __builtin_popcount(m)
#endif

/* alpha * acc + beta * old + bias, then the activation; `mask` selects the columns of a
 * partial vector (all ones for a full one). */
DC_INLINE void finish(float *out, __m256 acc, const float *bias, __m256i mask, int partial,
                      float alpha, float beta, int act, float act_alpha)
{
    __m256 r = _mm256_mul_ps(_mm256_set1_ps(alpha), acc);
    if (beta != 0.0f) {
        const __m256 old = partial ? _mm256_maskload_ps(out, mask) : _mm256_loadu_ps(out);
        r = _mm256_add_ps(_mm256_mul_ps(_mm256_set1_ps(beta), old), r);
    }
    if (bias != NULL)
        r = _mm256_add_ps(r, partial ? _mm256_maskload_ps(bias, mask) : _mm256_loadu_ps(bias));
    if (act == DC_ACT_RELU) {
        /* maxps returns its second operand for NaN, 0: the NaN lanes are put back
         * (dc_relu_neg) */
        const __m256 nan = _mm256_cmp_ps(r, r, _CMP_UNORD_Q);
        r = _mm256_or_ps(_mm256_max_ps(r, _mm256_setzero_ps()), _mm256_and_ps(nan, r));
    } else if (act == DC_ACT_LEAKY_RELU) {
        const __m256 pos = _mm256_cmp_ps(r, _mm256_setzero_ps(), _CMP_GT_OQ);
        r = _mm256_blendv_ps(_mm256_mul_ps(_mm256_set1_ps(act_alpha), r), r, pos);
    }
    if (partial)
        _mm256_maskstore_ps(out, mask, r);
    else
        _mm256_storeu_ps(out, r);
}

/* NV full vectors (8 * NV columns). NV is a constant after inlining; the accumulators
 * are named variables (an array of them gets spilled to the stack every iteration). */
/* clang-format off */
#define DC_FMA_IF(k, acc)                                                                  \
    if (nv > k)                                                                            \
    acc = _mm256_fmadd_ps(x, _mm256_loadu_ps(dr + 8 * k), acc)
#define DC_FINISH_IF(k, acc)                                                               \
    if (nv > k)                                                                            \
    finish(out + 8 * k, acc, bias ? bias + 8 * k : NULL, all, 0, alpha, beta, act, act_alpha)
/* clang-format on */

/* NV full vectors and (tail) the last w % 8 columns through masked loads, which never
 * touch memory past them, all in one pass over the entries: with few columns the
 * accumulators' FMA chains are the bound, and the tail's is one more chain beside them. */
DC_INLINE void row_nv(int nv, int tail, float *out, const int32_t *idx, const float *val,
                      const int64_t *ptr, int64_t pstride, int64_t parts, const float *d,
                      int64_t ldd, int64_t w, float alpha, float beta, const float *bias,
                      int act, float act_alpha)
{
    const int64_t jt = 8 * (int64_t)nv;
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(w - jt)), lane);
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0,
           a7 = a0, at = a0;
    for (int64_t p = 0; p < parts; ++p) {
        const int64_t e1 = ptr[p * pstride + 1];
        for (int64_t e = ptr[p * pstride]; e < e1; ++e) {
            const float *dr = d + (int64_t)idx[e] * ldd;
            const __m256 x = _mm256_broadcast_ss(val + e);
            DC_FMA_IF(0, a0);
            DC_FMA_IF(1, a1);
            DC_FMA_IF(2, a2);
            DC_FMA_IF(3, a3);
            DC_FMA_IF(4, a4);
            DC_FMA_IF(5, a5);
            DC_FMA_IF(6, a6);
            DC_FMA_IF(7, a7);
            if (tail)
                at = _mm256_fmadd_ps(x, _mm256_maskload_ps(dr + jt, mask), at);
        }
    }
    const __m256i all = _mm256_set1_epi32(-1);
    DC_FINISH_IF(0, a0);
    DC_FINISH_IF(1, a1);
    DC_FINISH_IF(2, a2);
    DC_FINISH_IF(3, a3);
    DC_FINISH_IF(4, a4);
    DC_FINISH_IF(5, a5);
    DC_FINISH_IF(6, a6);
    DC_FINISH_IF(7, a7);
    if (tail)
        finish(out + jt, at, bias ? bias + jt : NULL, mask, 1, alpha, beta, act, act_alpha);
}

#define DC_ROW_CASE(nv)                                                                        \
    case nv:                                                                                   \
        if (w % 8)                                                                             \
            row_nv(nv, 1, out, idx, val, ptr, pstride, parts, d, ldd, w, alpha, beta, bias,    \
                   act, act_alpha);                                                            \
        else                                                                                   \
            row_nv(nv, 0, out, idx, val, ptr, pstride, parts, d, ldd, w, alpha, beta, bias,    \
                   act, act_alpha);                                                            \
        break

void dc_spmm_row_avx2(float *out, const int32_t *idx, const float *val, const int64_t *ptr,
                      int64_t pstride, int64_t parts, const float *d, int64_t ldd, int64_t w,
                      float alpha, float beta, const float *bias, int act, float act_alpha)
{
    switch (w / 8) { /* one pass over the entries for any width up to 64 */
        DC_ROW_CASE(8);
        DC_ROW_CASE(7);
        DC_ROW_CASE(6);
        DC_ROW_CASE(5);
        DC_ROW_CASE(4);
        DC_ROW_CASE(3);
        DC_ROW_CASE(2);
        DC_ROW_CASE(1);
        DC_ROW_CASE(0);
    default:
        break;
    }
}

/* ---- the sweep of dc_spmm_t_sel: rows in order, each entry into its column's row of acc -- */

/* NV full vectors of D's row, then (tail) a masked one: the row kernel's FMA per lane,
 * with D's row in registers and the accumulators in memory (acc's rows are whole vectors,
 * so its loads and stores need no mask). */
#define DC_SWEEP_IF(k, g)                                                                      \
    if (nv > k)                                                                                \
    _mm256_storeu_ps(a + 8 * k, _mm256_fmadd_ps(x, g, _mm256_loadu_ps(a + 8 * k)))
#define DC_LOAD_IF(k, g)                                                                       \
    if (nv > k)                                                                                \
    g = _mm256_loadu_ps(dr + 8 * k)

DC_INLINE void sweep_nv(int nv, float *acc, int64_t lda, int64_t k0, const int32_t *idx,
                        const float *val, const int64_t *ptr, const int64_t *sel, int64_t rows,
                        const float *d, int64_t ldd, int64_t w)
{
    const int64_t jt = 8 * (int64_t)nv;
    const int tail = w > jt;
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(w - jt)), lane);
    for (int64_t r = 0; r < rows; ++r) {
        const float *dr = d + r * ldd;
        __m256 g0 = _mm256_setzero_ps(), g1 = g0, g2 = g0, g3 = g0, g4 = g0, g5 = g0, g6 = g0,
               g7 = g0, gt = g0;
        DC_LOAD_IF(0, g0);
        DC_LOAD_IF(1, g1);
        DC_LOAD_IF(2, g2);
        DC_LOAD_IF(3, g3);
        DC_LOAD_IF(4, g4);
        DC_LOAD_IF(5, g5);
        DC_LOAD_IF(6, g6);
        DC_LOAD_IF(7, g7);
        if (tail)
            gt = _mm256_maskload_ps(dr + jt, mask);
        dc_sweep_prefetch(idx, val, ptr, sel, r, rows);
        const int64_t e1 = ptr[sel[r] + 1];
        for (int64_t e = ptr[sel[r]]; e < e1; ++e) {
            float *a = acc + ((int64_t)idx[e] - k0) * lda;
            const __m256 x = _mm256_broadcast_ss(val + e);
            DC_SWEEP_IF(0, g0);
            DC_SWEEP_IF(1, g1);
            DC_SWEEP_IF(2, g2);
            DC_SWEEP_IF(3, g3);
            DC_SWEEP_IF(4, g4);
            DC_SWEEP_IF(5, g5);
            DC_SWEEP_IF(6, g6);
            DC_SWEEP_IF(7, g7);
            if (tail)
                _mm256_storeu_ps(a + jt, _mm256_fmadd_ps(x, gt, _mm256_loadu_ps(a + jt)));
        }
    }
}

void dc_spmm_sweep_avx2(float *acc, int64_t lda, int64_t k0, const int32_t *idx,
                        const float *val, const int64_t *ptr, const int64_t *sel, int64_t rows,
                        const float *d, int64_t ldd, int64_t w)
{
    /* clang-format off */
    switch (w / 8) {
    case 8: sweep_nv(8, acc, lda, k0, idx, val, ptr, sel, rows, d, ldd, w); break;
    case 7: sweep_nv(7, acc, lda, k0, idx, val, ptr, sel, rows, d, ldd, w); break;
    case 6: sweep_nv(6, acc, lda, k0, idx, val, ptr, sel, rows, d, ldd, w); break;
    case 5: sweep_nv(5, acc, lda, k0, idx, val, ptr, sel, rows, d, ldd, w); break;
    case 4: sweep_nv(4, acc, lda, k0, idx, val, ptr, sel, rows, d, ldd, w); break;
    case 3: sweep_nv(3, acc, lda, k0, idx, val, ptr, sel, rows, d, ldd, w); break;
    case 2: sweep_nv(2, acc, lda, k0, idx, val, ptr, sel, rows, d, ldd, w); break;
    case 1: sweep_nv(1, acc, lda, k0, idx, val, ptr, sel, rows, d, ldd, w); break;
    default: sweep_nv(0, acc, lda, k0, idx, val, ptr, sel, rows, d, ldd, w); break;
    }
    /* clang-format on */
}

void dc_spmm_finish_avx2(float *out, int64_t ldo, const float *acc, int64_t lda,
                         const int32_t *count, int64_t n, int64_t w, float alpha, float beta)
{
    const int64_t jt = w / 8 * 8;
    const __m256i all = _mm256_set1_epi32(-1);
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(w - jt)), lane);
    for (int64_t c = 0; c < n; ++c) {
        if (count != NULL && count[c] == 0)
            continue;
        float *o = out + c * ldo;
        const float *a = acc + c * lda;
        for (int64_t j = 0; j < jt; j += 8)
            finish(o + j, _mm256_loadu_ps(a + j), NULL, all, 0, alpha, beta, DC_ACT_IDENTITY,
                   0.0f);
        if (jt < w)
            finish(o + jt, _mm256_loadu_ps(a + jt), NULL, mask, 1, alpha, beta, DC_ACT_IDENTITY,
                   0.0f);
    }
}

/* Left-packing 8 lanes: entry m holds, in nibble k, the lane of the k-th set bit of m. */
/* clang-format off */
static const uint32_t pack_lut[256] = {
    0x00000000, 0x00000000, 0x00000001, 0x00000010, 0x00000002, 0x00000020, 0x00000021, 0x00000210,
    0x00000003, 0x00000030, 0x00000031, 0x00000310, 0x00000032, 0x00000320, 0x00000321, 0x00003210,
    0x00000004, 0x00000040, 0x00000041, 0x00000410, 0x00000042, 0x00000420, 0x00000421, 0x00004210,
    0x00000043, 0x00000430, 0x00000431, 0x00004310, 0x00000432, 0x00004320, 0x00004321, 0x00043210,
    0x00000005, 0x00000050, 0x00000051, 0x00000510, 0x00000052, 0x00000520, 0x00000521, 0x00005210,
    0x00000053, 0x00000530, 0x00000531, 0x00005310, 0x00000532, 0x00005320, 0x00005321, 0x00053210,
    0x00000054, 0x00000540, 0x00000541, 0x00005410, 0x00000542, 0x00005420, 0x00005421, 0x00054210,
    0x00000543, 0x00005430, 0x00005431, 0x00054310, 0x00005432, 0x00054320, 0x00054321, 0x00543210,
    0x00000006, 0x00000060, 0x00000061, 0x00000610, 0x00000062, 0x00000620, 0x00000621, 0x00006210,
    0x00000063, 0x00000630, 0x00000631, 0x00006310, 0x00000632, 0x00006320, 0x00006321, 0x00063210,
    0x00000064, 0x00000640, 0x00000641, 0x00006410, 0x00000642, 0x00006420, 0x00006421, 0x00064210,
    0x00000643, 0x00006430, 0x00006431, 0x00064310, 0x00006432, 0x00064320, 0x00064321, 0x00643210,
    0x00000065, 0x00000650, 0x00000651, 0x00006510, 0x00000652, 0x00006520, 0x00006521, 0x00065210,
    0x00000653, 0x00006530, 0x00006531, 0x00065310, 0x00006532, 0x00065320, 0x00065321, 0x00653210,
    0x00000654, 0x00006540, 0x00006541, 0x00065410, 0x00006542, 0x00065420, 0x00065421, 0x00654210,
    0x00006543, 0x00065430, 0x00065431, 0x00654310, 0x00065432, 0x00654320, 0x00654321, 0x06543210,
    0x00000007, 0x00000070, 0x00000071, 0x00000710, 0x00000072, 0x00000720, 0x00000721, 0x00007210,
    0x00000073, 0x00000730, 0x00000731, 0x00007310, 0x00000732, 0x00007320, 0x00007321, 0x00073210,
    0x00000074, 0x00000740, 0x00000741, 0x00007410, 0x00000742, 0x00007420, 0x00007421, 0x00074210,
    0x00000743, 0x00007430, 0x00007431, 0x00074310, 0x00007432, 0x00074320, 0x00074321, 0x00743210,
    0x00000075, 0x00000750, 0x00000751, 0x00007510, 0x00000752, 0x00007520, 0x00007521, 0x00075210,
    0x00000753, 0x00007530, 0x00007531, 0x00075310, 0x00007532, 0x00075320, 0x00075321, 0x00753210,
    0x00000754, 0x00007540, 0x00007541, 0x00075410, 0x00007542, 0x00075420, 0x00075421, 0x00754210,
    0x00007543, 0x00075430, 0x00075431, 0x00754310, 0x00075432, 0x00754320, 0x00754321, 0x07543210,
    0x00000076, 0x00000760, 0x00000761, 0x00007610, 0x00000762, 0x00007620, 0x00007621, 0x00076210,
    0x00000763, 0x00007630, 0x00007631, 0x00076310, 0x00007632, 0x00076320, 0x00076321, 0x00763210,
    0x00000764, 0x00007640, 0x00007641, 0x00076410, 0x00007642, 0x00076420, 0x00076421, 0x00764210,
    0x00007643, 0x00076430, 0x00076431, 0x00764310, 0x00076432, 0x00764320, 0x00764321, 0x07643210,
    0x00000765, 0x00007650, 0x00007651, 0x00076510, 0x00007652, 0x00076520, 0x00076521, 0x00765210,
    0x00007653, 0x00076530, 0x00076531, 0x00765310, 0x00076532, 0x00765320, 0x00765321, 0x07653210,
    0x00007654, 0x00076540, 0x00076541, 0x00765410, 0x00076542, 0x00765420, 0x00765421, 0x07654210,
    0x00076543, 0x00765430, 0x00765431, 0x07654310, 0x00765432, 0x07654320, 0x07654321, 0x76543210,
};
/* clang-format on */

/* Lanes `m` of x and of the column numbers j..j+7, packed to the front of val/idx.
 * Whole vectors are stored while the row has room for them (n: the row's count); the
 * row's last vectors go through a buffer, so nothing past it is written, also when the
 * row has more entries than counted (another thread wrote to it): the count returned
 * then tells. */
DC_INLINE int64_t pack8(int32_t *idx, float *val, int64_t p, int64_t n, __m256 x, int64_t j,
                        int m)
{
    const __m256i perm = _mm256_srlv_epi32(_mm256_set1_epi32((int)pack_lut[m]),
                                           _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28));
    const __m256i col = _mm256_add_epi32(_mm256_set1_epi32((int32_t)j),
                                         _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    const __m256 pv = _mm256_permutevar8x32_ps(x, perm);
    const __m256i pi = _mm256_permutevar8x32_epi32(col, perm);
    const int k = dc_popcount32((uint32_t)m);
    if (p + 8 <= n) {
        _mm256_storeu_ps(val + p, pv);
        _mm256_storeu_si256((__m256i *)(void *)(idx + p), pi);
    } else {
        float tv[8];
        int32_t ti[8];
        _mm256_storeu_ps(tv, pv);
        _mm256_storeu_si256((__m256i *)(void *)ti, pi);
        for (int q = 0; q < k && p + q < n; ++q) {
            val[p + q] = tv[q];
            idx[p + q] = ti[q];
        }
    }
    return p + k;
}

int64_t dc_csr_fill_avx2(int32_t *idx, float *val, int64_t n, const uint8_t *s8,
                         const float *s32, int64_t F, int64_t j0, float scale, const float *bg)
{
    int64_t p = 0, j = 0;
    const __m256 sc = _mm256_set1_ps(scale);
    if (s8 != NULL) {
        for (; j + 8 <= F; j += 8) {
            const __m128i b = _mm_loadl_epi64((const __m128i *)(const void *)(s8 + j));
            /* background; with room for a whole row (dc_csr_fill_rows) it is packed as
             * no entry instead: MNIST's blank groups are too irregular to branch on */
            if (n < F && _mm_testz_si128(b, b))
                continue;
            const __m256i v = _mm256_cvtepu8_epi32(b);
            const int m = _mm256_movemask_ps(
                _mm256_castsi256_ps(_mm256_cmpgt_epi32(v, _mm256_setzero_si256())));
            p = pack8(idx, val, p, n, _mm256_mul_ps(_mm256_cvtepi32_ps(v), sc), j0 + j, m);
        }
        for (; j < F; ++j)
            if (s8[j] != 0) {
                if (p < n) {
                    idx[p] = (int32_t)(j0 + j);
                    val[p] = (float)s8[j] * scale;
                }
                ++p;
            }
    } else if (bg == NULL) {
        for (; j + 8 <= F; j += 8) {
            const __m256 x = _mm256_mul_ps(_mm256_loadu_ps(s32 + j), sc);
            /* unordered: NaN is kept, as in the count */
            const int m =
                _mm256_movemask_ps(_mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_NEQ_UQ));
            if (m != 0)
                p = pack8(idx, val, p, n, x, j0 + j, m);
        }
        for (; j < F; ++j) {
            const float x = s32[j] * scale;
            if (x != 0.0f) {
                if (p < n) {
                    idx[p] = (int32_t)(j0 + j);
                    val[p] = x;
                }
                ++p;
            }
        }
    } else { /* off a background: the entries x != bg, as x - bg */
        for (; j + 8 <= F; j += 8) {
            const __m256 x = _mm256_mul_ps(_mm256_loadu_ps(s32 + j), sc);
            const __m256 b = _mm256_loadu_ps(bg + j);
            const int m = _mm256_movemask_ps(_mm256_cmp_ps(x, b, _CMP_NEQ_UQ));
            if (m != 0)
                p = pack8(idx, val, p, n, _mm256_sub_ps(x, b), j0 + j, m);
        }
        for (; j < F; ++j) {
            const float x = s32[j] * scale;
            if (x != bg[j]) {
                if (p < n) {
                    idx[p] = (int32_t)(j0 + j);
                    val[p] = x - bg[j];
                }
                ++p;
            }
        }
    }
    return p;
}

/* colcnt[j..j+8) += 1 where the low 8 bytes of nzb are 0xFF. */
DC_INLINE void add_counts8(int32_t *colcnt, __m128i nzb)
{
    __m256i *c = (__m256i *)(void *)colcnt;
    _mm256_storeu_si256(c, _mm256_sub_epi32(_mm256_loadu_si256(c), _mm256_cvtepi8_epi32(nzb)));
}

int64_t dc_csr_count_avx2(const uint8_t *s8, const float *s32, int64_t F, float scale,
                          const float *bg, int32_t *colcnt)
{
    int64_t c = 0, j = 0;
    if (s8 != NULL) {
        const __m256i zero = _mm256_setzero_si256();
        if (colcnt == NULL) /* no branch on the data: MNIST's blanks are unpredictable */
            for (; j + 32 <= F; j += 32) {
                const __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)(s8 + j));
                c += dc_popcount32(~(uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(v, zero)));
            }
        for (; j + 32 <= F; j += 32) {
            const __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)(s8 + j));
            const __m256i z = _mm256_cmpeq_epi8(v, zero);
            const uint32_t m = ~(uint32_t)_mm256_movemask_epi8(z);
            if (m == 0)
                continue;
            c += dc_popcount32(m);
            if (colcnt != NULL) {
                const __m256i nz = _mm256_xor_si256(z, _mm256_set1_epi8(-1));
                const __m128i lo = _mm256_castsi256_si128(nz),
                              hi = _mm256_extracti128_si256(nz, 1);
                add_counts8(colcnt + j, lo);
                add_counts8(colcnt + j + 8, _mm_srli_si128(lo, 8));
                add_counts8(colcnt + j + 16, hi);
                add_counts8(colcnt + j + 24, _mm_srli_si128(hi, 8));
            }
        }
        for (; j + 8 <= F; j += 8) { /* (a group may end off a multiple of 32) */
            const __m128i v = _mm_loadl_epi64((const __m128i *)(const void *)(s8 + j));
            const __m128i nz =
                _mm_xor_si128(_mm_cmpeq_epi8(v, _mm_setzero_si128()), _mm_set1_epi8(-1));
            const uint32_t m = (uint32_t)_mm_movemask_epi8(nz) & 0xFFu;
            if (m == 0)
                continue;
            c += dc_popcount32(m);
            if (colcnt != NULL)
                add_counts8(colcnt + j, nz);
        }
        for (; j < F; ++j)
            if (s8[j] != 0) {
                ++c;
                if (colcnt != NULL)
                    colcnt[j] += 1;
            }
    } else {
        const __m256 sc = _mm256_set1_ps(scale);
        for (; j + 8 <= F; j += 8) {
            const __m256 b = bg != NULL ? _mm256_loadu_ps(bg + j) : _mm256_setzero_ps();
            const __m256 nz =
                _mm256_cmp_ps(_mm256_mul_ps(_mm256_loadu_ps(s32 + j), sc), b, _CMP_NEQ_UQ);
            const int m = _mm256_movemask_ps(nz);
            if (m == 0)
                continue;
            c += dc_popcount32((uint32_t)m);
            if (colcnt != NULL) {
                __m256i *cc = (__m256i *)(void *)(colcnt + j);
                _mm256_storeu_si256(
                    cc, _mm256_sub_epi32(_mm256_loadu_si256(cc), _mm256_castps_si256(nz)));
            }
        }
        for (; j < F; ++j)
            if (s32[j] * scale != (bg != NULL ? bg[j] : 0.0f)) {
                ++c;
                if (colcnt != NULL)
                    colcnt[j] += 1;
            }
    }
    return c;
}

/* ---- a narrow block's row in two chains (full-batch descent) ----------------------------- */

/* A row of a block of w <= 16 columns is one or two chains of FMAs, each entry waiting for
 * the one before it. Here entries 0, 2, 4, ... and 1, 3, 5, ... go to two sets of
 * accumulators, added at the end: other bits than row_nv's, two independent chains per
 * vector. */
DC_INLINE void row2_w(int two, int whole0, int whole1, float *out, const int32_t *idx,
                      const float *val, int64_t e0, int64_t e1, const float *d, int64_t ldd,
                      int64_t w, float alpha, float beta, const float *bias, int act,
                      float act_alpha)
{
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)w), lane);
    const __m256i m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(w - 8)), lane);
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, b0 = a0, b1 = a0;
    int64_t e = e0;
    for (; e + 2 <= e1; e += 2) {
        const float *dr = d + (int64_t)idx[e] * ldd, *dq = d + (int64_t)idx[e + 1] * ldd;
        const __m256 x = _mm256_broadcast_ss(val + e), y = _mm256_broadcast_ss(val + e + 1);
        a0 = _mm256_fmadd_ps(x, whole0 ? _mm256_loadu_ps(dr) : _mm256_maskload_ps(dr, m0), a0);
        b0 = _mm256_fmadd_ps(y, whole0 ? _mm256_loadu_ps(dq) : _mm256_maskload_ps(dq, m0), b0);
        if (two) {
            a1 = _mm256_fmadd_ps(
                x, whole1 ? _mm256_loadu_ps(dr + 8) : _mm256_maskload_ps(dr + 8, m1), a1);
            b1 = _mm256_fmadd_ps(
                y, whole1 ? _mm256_loadu_ps(dq + 8) : _mm256_maskload_ps(dq + 8, m1), b1);
        }
    }
    if (e < e1) {
        const float *dr = d + (int64_t)idx[e] * ldd;
        const __m256 x = _mm256_broadcast_ss(val + e);
        a0 = _mm256_fmadd_ps(x, whole0 ? _mm256_loadu_ps(dr) : _mm256_maskload_ps(dr, m0), a0);
        if (two)
            a1 = _mm256_fmadd_ps(
                x, whole1 ? _mm256_loadu_ps(dr + 8) : _mm256_maskload_ps(dr + 8, m1), a1);
    }
    finish(out, _mm256_add_ps(a0, b0), bias, m0, 1, alpha, beta, act, act_alpha);
    if (two)
        finish(out + 8, _mm256_add_ps(a1, b1), bias ? bias + 8 : NULL, m1, 1, alpha, beta, act,
               act_alpha);
}

void dc_spmm_row2_avx2(float *out, const int32_t *idx, const float *val, int64_t e0, int64_t e1,
                       const float *d, int64_t ldd, int64_t w, float alpha, float beta,
                       const float *bias, int act, float act_alpha)
{
    /* D's rows 16 floats apart are read whole (lanes past w are never stored); else
     * masked past w */
    if (ldd >= 16 && w > 8)
        row2_w(1, 1, 1, out, idx, val, e0, e1, d, ldd, w, alpha, beta, bias, act, act_alpha);
    else if (ldd >= 16)
        row2_w(0, 1, 0, out, idx, val, e0, e1, d, ldd, w, alpha, beta, bias, act, act_alpha);
    else if (w > 8)
        row2_w(1, 1, 0, out, idx, val, e0, e1, d, ldd, w, alpha, beta, bias, act, act_alpha);
    else if (w == 8)
        row2_w(0, 1, 0, out, idx, val, e0, e1, d, ldd, w, alpha, beta, bias, act, act_alpha);
    else
        row2_w(0, 0, 0, out, idx, val, e0, e1, d, ldd, w, alpha, beta, bias, act, act_alpha);
}

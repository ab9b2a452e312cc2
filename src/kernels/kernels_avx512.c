/* AVX-512 kernels (compiled with -mavx512f; called only when the CPU and
 * the OS support it, see dispatch.c): tiles of 16 rows, vectors of 8
 * doubles and 16 floats. The kernels themselves are kernels_simd.h; here
 * only the vocabulary it is written in (AVX-512F alone, no DQ or VL). */
#include <immintrin.h>

#define TILE 16
#define GEMM_NV 4 /* gemm_f64 panels of 4 vectors: 24 accumulators */
#define VD __m512d
#define VD_N 8
#define VF __m512

#define VD_ZERO() _mm512_setzero_pd()
#define VD_SET1(x) _mm512_set1_pd(x)
#define VD_LOAD(p) _mm512_load_pd(p)
#define VD_LOADU(p) _mm512_loadu_pd(p)
#define VD_STORE(p, v) _mm512_store_pd(p, v)
#define VD_STOREU(p, v) _mm512_storeu_pd(p, v)
#define VD_ADD(a, b) _mm512_add_pd(a, b)
#define VD_SUB(a, b) _mm512_sub_pd(a, b)
#define VD_MUL(a, b) _mm512_mul_pd(a, b)
#define VD_FMA(a, b, c) _mm512_fmadd_pd(a, b, c)
#define VD_MIN(a, b) _mm512_min_pd(a, b)
#define VD_MAX(a, b) _mm512_max_pd(a, b)
#define VD_ABS(v) _mm512_abs_pd(v)
#define VD_SQRT(v) _mm512_sqrt_pd(v)
#define VD_POSITIVE_OR_ZERO(v) \
    _mm512_maskz_mov_pd(_mm512_cmp_pd_mask(v, _mm512_setzero_pd(), _CMP_GT_OQ), v)
#define VD_WHERE_EQ(a, b, s, v) _mm512_mask_mov_pd(v, _mm512_cmp_pd_mask(a, b, _CMP_EQ_OQ), s)
#define VD_LE_BITS(a, b) ((unsigned)_mm512_cmp_pd_mask(a, b, _CMP_LE_OQ))
#define VD_EQ_BITS(a, b) ((unsigned)_mm512_cmp_pd_mask(a, b, _CMP_EQ_OQ))
#define VD_FROM_F32U(p) _mm512_cvtps_pd(_mm256_loadu_ps(p))

#define VF_LOAD(p) _mm512_load_ps(p)
#define VF_LOADU(p) _mm512_loadu_ps(p)
#define VF_STORE(p, v) _mm512_store_ps(p, v)
#define VF_LO(v) _mm512_cvtps_pd(_mm512_castps512_ps256(v))
#define VF_HI(v) _mm512_cvtps_pd(upper8(v))
#define VF_SET1(x) _mm512_set1_ps(x)
#define VF_ZERO() _mm512_setzero_ps()
#define VF_ADD(a, b) _mm512_add_ps(a, b)
#define VF_SUB(a, b) _mm512_sub_ps(a, b)
#define VF_MUL(a, b) _mm512_mul_ps(a, b)
#define VF_EQ_BITS(a, b) ((unsigned)_mm512_cmp_ps_mask(a, b, _CMP_EQ_OQ))

#define KERNELS_NAME "avx512"
#define KERNELS_LEVEL FIB_SIMD_AVX512
#define KERNELS_GETTER fib_kernels_avx512

/* In: rows r[0..8) of 8 doubles. Out: columns c[0..8) of 8 doubles. */
static inline void transpose_vd(const __m512d r[8], __m512d c[8])
{
    __m512d a[8], b[8];
    for (int i = 0; i < 4; i++) {
        a[2 * i] = _mm512_unpacklo_pd(r[2 * i], r[2 * i + 1]);
        a[2 * i + 1] = _mm512_unpackhi_pd(r[2 * i], r[2 * i + 1]);
    }
    /* b[0]: columns 0, 4 of rows 0-3; b[1]: 2, 6; b[2]: 1, 5; b[3]: 3, 7;
     * b[4..8) the same for rows 4-7. */
    for (int h = 0; h < 2; h++) {
        b[4 * h + 0] = _mm512_shuffle_f64x2(a[4 * h + 0], a[4 * h + 2], 0x88);
        b[4 * h + 1] = _mm512_shuffle_f64x2(a[4 * h + 0], a[4 * h + 2], 0xDD);
        b[4 * h + 2] = _mm512_shuffle_f64x2(a[4 * h + 1], a[4 * h + 3], 0x88);
        b[4 * h + 3] = _mm512_shuffle_f64x2(a[4 * h + 1], a[4 * h + 3], 0xDD);
    }
    c[0] = _mm512_shuffle_f64x2(b[0], b[4], 0x88);
    c[4] = _mm512_shuffle_f64x2(b[0], b[4], 0xDD);
    c[2] = _mm512_shuffle_f64x2(b[1], b[5], 0x88);
    c[6] = _mm512_shuffle_f64x2(b[1], b[5], 0xDD);
    c[1] = _mm512_shuffle_f64x2(b[2], b[6], 0x88);
    c[5] = _mm512_shuffle_f64x2(b[2], b[6], 0xDD);
    c[3] = _mm512_shuffle_f64x2(b[3], b[7], 0x88);
    c[7] = _mm512_shuffle_f64x2(b[3], b[7], 0xDD);
}

/* The upper 8 floats of a vector of 16 (AVX-512F only, no DQ). */
static inline __m256 upper8(__m512 v)
{
    return _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
}

/* In: 16 rows of 16 floats. Out: r[j] holds column j (rows 0-15). */
static inline void transpose_vf(__m512 r[16])
{
    __m512 t[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    /* u[4 g + q], 128-bit lane l: rows 4g .. 4g+3 of column 4l + q */
    __m512 u[16];
    for (int g = 0; g < 4; g++) {
        u[4 * g + 0] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
        u[4 * g + 1] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0xEE);
        u[4 * g + 2] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
        u[4 * g + 3] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xEE);
    }
    for (int q = 0; q < 4; q++) {
        __m512 a = _mm512_shuffle_f32x4(u[q], u[4 + q], 0x88);
        __m512 b = _mm512_shuffle_f32x4(u[q], u[4 + q], 0xDD);
        __m512 c = _mm512_shuffle_f32x4(u[8 + q], u[12 + q], 0x88);
        __m512 d = _mm512_shuffle_f32x4(u[8 + q], u[12 + q], 0xDD);
        r[q] = _mm512_shuffle_f32x4(a, c, 0x88);
        r[8 + q] = _mm512_shuffle_f32x4(a, c, 0xDD);
        r[4 + q] = _mm512_shuffle_f32x4(b, d, 0x88);
        r[12 + q] = _mm512_shuffle_f32x4(b, d, 0xDD);
    }
}

#include "kernels/kernels_simd.h"

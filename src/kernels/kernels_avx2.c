/* AVX2 kernels (compiled with -mavx2 -mfma; called only when the CPU and
 * the OS support both, see dispatch.c): tiles of 8 rows, vectors of 4
 * doubles and 8 floats. The kernels themselves are kernels_simd.h; here
 * only the vocabulary it is written in. */
#include <immintrin.h>

#define TILE 8
#define VD __m256d
#define VD_N 4
#define VF __m256

#define VD_ZERO() _mm256_setzero_pd()
#define VD_SET1(x) _mm256_set1_pd(x)
#define VD_LOAD(p) _mm256_load_pd(p)
#define VD_LOADU(p) _mm256_loadu_pd(p)
#define VD_STORE(p, v) _mm256_store_pd(p, v)
#define VD_STOREU(p, v) _mm256_storeu_pd(p, v)
#define VD_ADD(a, b) _mm256_add_pd(a, b)
#define VD_SUB(a, b) _mm256_sub_pd(a, b)
#define VD_MUL(a, b) _mm256_mul_pd(a, b)
#define VD_FMA(a, b, c) _mm256_fmadd_pd(a, b, c)
#define VD_MIN(a, b) _mm256_min_pd(a, b)
#define VD_MAX(a, b) _mm256_max_pd(a, b)
#define VD_ABS(v) _mm256_andnot_pd(_mm256_set1_pd(-0.0), v)
#define VD_SQRT(v) _mm256_sqrt_pd(v)
#define VD_POSITIVE_OR_ZERO(v) \
    _mm256_and_pd(v, _mm256_cmp_pd(v, _mm256_setzero_pd(), _CMP_GT_OQ))
#define VD_WHERE_EQ(a, b, s, v) _mm256_blendv_pd(v, s, _mm256_cmp_pd(a, b, _CMP_EQ_OQ))
#define VD_LE_BITS(a, b) ((unsigned)_mm256_movemask_pd(_mm256_cmp_pd(a, b, _CMP_LE_OQ)))
#define VD_EQ_BITS(a, b) ((unsigned)_mm256_movemask_pd(_mm256_cmp_pd(a, b, _CMP_EQ_OQ)))
#define VD_FROM_F32U(p) _mm256_cvtps_pd(_mm_loadu_ps(p))

#define VF_LOAD(p) _mm256_load_ps(p)
#define VF_LOADU(p) _mm256_loadu_ps(p)
#define VF_STORE(p, v) _mm256_store_ps(p, v)
#define VF_LO(v) _mm256_cvtps_pd(_mm256_castps256_ps128(v))
#define VF_HI(v) _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1))
#define VF_SET1(x) _mm256_set1_ps(x)
#define VF_ZERO() _mm256_setzero_ps()
#define VF_ADD(a, b) _mm256_add_ps(a, b)
#define VF_SUB(a, b) _mm256_sub_ps(a, b)
#define VF_MUL(a, b) _mm256_mul_ps(a, b)
#define VF_EQ_BITS(a, b) ((unsigned)_mm256_movemask_ps(_mm256_cmp_ps(a, b, _CMP_EQ_OQ)))

#define KERNELS_NAME "avx2"
#define KERNELS_LEVEL FIB_SIMD_AVX2
#define KERNELS_GETTER fib_kernels_avx2

/* In: rows r[0..4) of 4 doubles. Out: columns c[0..4). */
static inline void transpose_vd(const __m256d r[4], __m256d c[4])
{
    __m256d t0 = _mm256_unpacklo_pd(r[0], r[1]); /* r0_0 r1_0 r0_2 r1_2 */
    __m256d t1 = _mm256_unpackhi_pd(r[0], r[1]); /* r0_1 r1_1 r0_3 r1_3 */
    __m256d t2 = _mm256_unpacklo_pd(r[2], r[3]);
    __m256d t3 = _mm256_unpackhi_pd(r[2], r[3]);
    c[0] = _mm256_permute2f128_pd(t0, t2, 0x20);
    c[2] = _mm256_permute2f128_pd(t0, t2, 0x31);
    c[1] = _mm256_permute2f128_pd(t1, t3, 0x20);
    c[3] = _mm256_permute2f128_pd(t1, t3, 0x31);
}

/* In: 8 rows of 8 floats. Out: r[j] holds column j (rows 0-7). */
static inline void transpose_vf(__m256 r[8])
{
    __m256 t[8], u[8];
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    /* u[4 g + q], 128-bit lane l: rows 4g .. 4g+3 of column 4l + q */
    for (int g = 0; g < 2; g++) {
        u[4 * g + 0] = _mm256_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
        u[4 * g + 1] = _mm256_shuffle_ps(t[4 * g], t[4 * g + 2], 0xEE);
        u[4 * g + 2] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
        u[4 * g + 3] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xEE);
    }
    for (int q = 0; q < 4; q++) {
        r[q] = _mm256_permute2f128_ps(u[q], u[4 + q], 0x20);
        r[4 + q] = _mm256_permute2f128_ps(u[q], u[4 + q], 0x31);
    }
}

#include "kernels/kernels_simd.h"

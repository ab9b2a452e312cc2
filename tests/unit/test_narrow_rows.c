/* Rows held in float32 (fib_rows_narrow, what a budget's first clustering
 * of a layer's float32 weights reads): normalised and agglomerated by the
 * rank-1 Ward linkage and the cosine linkage they give the norms and the
 * merges, heights bit for bit, of the same rows held in double, near-
 * parallel rows (whose cosines are made again from the rows), a zero row
 * and negative zeros included; rows with a value float32 does not hold or
 * with allowances stay in double; the linkages that read rows directly
 * refuse float32 ones. */
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "checks.h"
#include "color/linkage.h"
#include "testing.h"

int test_failures;

enum { N = 160, D = 48 };

/* N x D float32 values: random rows, every fifth a near copy of the one
 * before (cosine above 0.5), row 7 zero, some negative zeros. */
static void fill_rows(fib_rows *r)
{
    uint64_t rng = 5;
    CHECK_OK(fib_rows_alloc(r, N, D));
    fib_free(r->tol); /* a budget's rows have no allowances */
    r->tol = NULL;
    double *x = test_random_array(&rng, N * D, -1, 1);
    for (int64_t i = 0; i < N; i++)
        for (int64_t j = 0; j < D; j++) {
            float v = (float)x[i * D + j];
            if (i % 5 == 4)
                v = (float)r->value[(i - 1) * D + j] * 1.5f + 0.01f * v;
            if (i == 7)
                v = 0.0f;
            if ((i * D + j) % 97 == 3)
                v = -0.0f;
            r->value[i * D + j] = v;
        }
    free(x);
    r->float_cosines = true;
    r->n_threads = 1;
}

static void check_same_merges(const fib_merges *a, const fib_merges *b)
{
    CHECK(a->n_merges == b->n_merges && a->n_merges > 0);
    size_t m = (size_t)a->n_merges;
    CHECK(memcmp(a->a, b->a, m * sizeof *a->a) == 0);
    CHECK(memcmp(a->b, b->b, m * sizeof *a->b) == 0);
    CHECK(memcmp(a->height, b->height, m * sizeof *a->height) == 0);
}

static void narrow_rows_give_the_merges_of_double_rows(void)
{
    fib_rows wide, narrow;
    fill_rows(&wide);
    fill_rows(&narrow);
    CHECK(fib_rows_narrow(&narrow));
    CHECK(narrow.value == NULL && narrow.narrow != NULL);
    double mass[N];
    for (int64_t i = 0; i < N; i++)
        mass[i] = 0.5 + (double)(i % 7);
    /* the cosine linkage on the rows as they are */
    fib_merges ca, cb;
    CHECK_OK(fib_linkage_run(&wide, FIB_TOL_COSINE, false, NULL, INFINITY, &ca));
    CHECK_OK(fib_linkage_run(&narrow, FIB_TOL_COSINE, false, NULL, INFINITY, &cb));
    check_same_merges(&ca, &cb);
    fib_merges_clear(&ca);
    fib_merges_clear(&cb);
    /* the rank-1 Ward linkage on the normalised rows, as budgets make it */
    double na[N], nb[N];
    fib_rows_normalize(&wide, na);
    fib_rows_normalize(&narrow, nb);
    CHECK(memcmp(na, nb, sizeof na) == 0);
    CHECK(na[7] == 0 && na[0] > 0);
    fib_merges a, b;
    CHECK_OK(fib_linkage_run(&wide, FIB_TOL_WARD, true, mass, INFINITY, &a));
    CHECK_OK(fib_linkage_run(&narrow, FIB_TOL_WARD, true, mass, INFINITY, &b));
    check_same_merges(&a, &b);
    fib_merges_clear(&a);
    fib_merges_clear(&b);
    /* the linkages reading rows directly take double rows only */
    expect(fib_linkage_run(&narrow, FIB_TOL_COMPLETE, false, NULL, INFINITY, &a),
           FIB_E_INVALID, "float32", "complete linkage of float32 rows");
    fib_rows_clear(&wide);
    fib_rows_clear(&narrow);
}

static void rows_float32_cannot_hold_stay_double(void)
{
    fib_rows r;
    fill_rows(&r);
    r.value[3 * D + 5] = 0.1; /* not a float32 */
    CHECK(!fib_rows_narrow(&r));
    CHECK(r.value != NULL && r.narrow == NULL && r.value[3 * D + 5] == 0.1);
    fib_rows_clear(&r);
    CHECK_OK(fib_rows_alloc(&r, N, D)); /* with allowances */
    CHECK(!fib_rows_narrow(&r));
    CHECK(r.value != NULL && r.narrow == NULL);
    fib_rows_clear(&r);
}

int main(void)
{
    RUN(narrow_rows_give_the_merges_of_double_rows);
    RUN(rows_float32_cannot_hold_stay_double);
    return test_failures ? 1 : 0;
}

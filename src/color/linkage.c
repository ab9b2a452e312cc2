/* Tolerance modes beyond EXACT and ABS: REL (ABS scaled by the group's
 * typical signature norm) and the agglomerative linkages COSINE (the seed
 * authors' average linkage on 1 - cosine), COMPLETE (L-infinity) and WARD
 * (classical Ward; rank-1 Ward for FIB_TOL_SCALED), plus the scale-aware
 * colouring of dense groups and its per-unit scales.
 *
 * The linkages keep an n x n / 2 matrix of doubles (the reason for
 * FIB_LINKAGE_MAX_UNITS), filled in O(n^2 d), and a nearest-neighbour
 * bound per row in a heap; a merge takes O(n) plus the rescans of the rows
 * it left stale that reach the top of the heap, so a run is O(n^2)
 * typically and O(n^3) at worst. Every choice is made by (cost, lowest
 * index): the result does not depend on threads or SIMD. Label
 * coordinates (FIB_TOL_LABEL) make two rows that differ there infinitely
 * far apart; they never merge. */
#include "color/linkage.h"
#include "kernels/kernels.h"
#include "kernels/parallel.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers ------------------------------------------------------------ */

static double sig_value(const fib_signature *sig, int64_t i, int64_t j)
{
    if (j < sig->n_direct)
        return fib_direct_value(sig, i, j);
    int64_t stride = sig->n_coords - sig->n_direct;
    return sig->value[i * stride + (j - sig->n_direct)];
}

static double sig_tol(const fib_signature *sig, int64_t i, int64_t j)
{
    if (j < sig->n_direct) {
        int64_t local = j;
        return fib_rounding_tol(fib_direct_find(sig, &local)->dtype, 1,
                                fabs(sig_value(sig, i, j)));
    }
    int64_t stride = sig->n_coords - sig->n_direct;
    return sig->tol[i * stride + (j - sig->n_direct)];
}

void fib_rows_clear(fib_rows *r)
{
    fib_free(r->value);
    fib_free(r->tol);
    fib_free(r->label);
    fib_free(r->owned);
    fib_free(r->divisor);
    memset(r, 0, sizeof *r);
}

int32_t fib_rows_alloc(fib_rows *r, int64_t n, int64_t d)
{
    memset(r, 0, sizeof *r);
    r->n = n;
    r->d = d;
    int64_t cells = n * (d > 0 ? d : 1);
    r->value = fib_calloc(cells, sizeof(double));
    r->tol = fib_calloc(cells, sizeof(double));
    r->label = fib_calloc(n > 0 ? n : 1, sizeof(int64_t));
    if (!r->value || !r->tol || !r->label) {
        fib_rows_clear(r);
        return fib_error(FIB_E_NOMEM, "out of memory for %lld rows of %lld values",
                         (long long)n, (long long)d);
    }
    return FIB_OK;
}

int64_t fib_rows_put_signature(const fib_signature *sig, fib_rows *out, int64_t at)
{
    int64_t n = sig->n_units, d = sig->n_coords, n_labels = 0;
    for (int64_t j = 0; j < d && n > 0; j++)
        if (sig_tol(sig, 0, j) < 0)
            n_labels++;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0, c = at; j < d; j++) {
            double t = sig_tol(sig, i, j);
            if (t < 0)
                continue;
            out->value[i * out->d + c] = sig_value(sig, i, j);
            if (out->tol)
                out->tol[i * out->d + c] = t;
            c++;
        }
    return d - n_labels;
}

int32_t fib_rows_from_signature(const fib_signature *sig, fib_rows *out)
{
    memset(out, 0, sizeof *out);
    int64_t n = sig->n_units, d = sig->n_coords, n_labels = 0;
    for (int64_t j = 0; j < d && n > 0; j++)
        if (sig_tol(sig, 0, j) < 0)
            n_labels++;
    int32_t status = fib_rows_alloc(out, n, d - n_labels);
    if (status)
        return status;
    fib_rows_put_signature(sig, out, 0);
    /* label classes: exact grouping of the label coordinates alone */
    if (n_labels == 0) {
        memset(out->label, 0, (size_t)n * sizeof *out->label);
        return FIB_OK;
    }
    fib_signature lab;
    status = fib_signature_alloc(&lab, n, n_labels);
    if (status) {
        fib_rows_clear(out);
        return status;
    }
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0, at = 0; j < d; j++)
            if (sig_tol(sig, 0, j) < 0) {
                lab.value[i * n_labels + at] = sig_value(sig, i, j);
                lab.tol[i * n_labels + at] = FIB_TOL_LABEL;
                at++;
            }
    lab.n_threads = 1;
    fib_partition p;
    status = fib_partition_init(&p, n);
    if (!status)
        status = fib_group_signatures(&lab, -1.0, &p);
    fib_signature_clear(&lab);
    if (!status)
        memcpy(out->label, p.color, (size_t)n * sizeof *out->label);
    fib_partition_clear(&p);
    if (status)
        fib_rows_clear(out);
    return status;
}

/* Value (i, j) of the rows, held in double or in float32 (the float
 * widened, divided by its row's divisor, gives the same bits). A weight
 * borrowed in place is added to 0, as fib_scaled_dense_values sums it: a
 * negative zero reads as the zero those rows hold. */
static inline double row_value(const fib_rows *r, int64_t i, int64_t j)
{
    if (r->value)
        return r->value[i * r->d + j];
    if (r->tail && j == r->d - 1)
        return (double)r->tail[i] / r->divisor[i];
    double x = (double)r->narrow[i * r->ld + j];
    return (r->pages ? 0.0 + x : x) / r->divisor[i];
}

/* The Euclidean length of row i, its squares summed in column order. */
static double row_norm(const fib_rows *r, int64_t i)
{
    double s = 0;
    for (int64_t j = 0; j < r->d; j++)
        s += row_value(r, i, j) * row_value(r, i, j);
    return sqrt(s);
}

bool fib_rows_narrow(fib_rows *r)
{
    int64_t cells = r->n * r->d;
    if (!r->value || r->tol || cells <= 0)
        return false;
    for (int64_t x = 0; x < cells; x++)
        if ((double)(float)r->value[x] != r->value[x])
            return false;
    double *divisor = fib_alloc(r->n, sizeof *divisor);
    if (!divisor)
        return false; /* the double rows serve */
    for (int64_t i = 0; i < r->n; i++)
        divisor[i] = 1.0; /* x / 1 is x */
    void *buffer = r->value;
    /* every value is finite and a float32: rounding cannot fail */
    fib_narrow_owned(&buffer, cells, -1, "row");
    r->owned = buffer;
    r->narrow = buffer;
    r->ld = r->d;
    r->value = NULL;
    r->divisor = divisor;
    return true;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double fib_median(double *v, int64_t n)
{
    if (n <= 0)
        return 0.0;
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double fib_rows_scale(const fib_rows *r, const double *weight)
{
    double *norms = fib_alloc(r->n > 0 ? r->n : 1, sizeof *norms);
    if (!norms)
        return 1.0;
    for (int64_t i = 0; i < r->n; i++)
        norms[i] = row_norm(r, i) * (weight ? weight[i] : 1.0);
    double m = fib_median(norms, r->n);
    fib_free(norms);
    return m > 0 ? m : 1.0;
}

double fib_signature_scale(const fib_signature *sig)
{
    fib_rows r;
    if (fib_rows_from_signature(sig, &r))
        return 1.0;
    double m = fib_rows_scale(&r, NULL);
    fib_rows_clear(&r);
    return m;
}

void fib_rows_normalize(fib_rows *r, double *norms)
{
    for (int64_t i = 0; i < r->n; i++) {
        double s = row_norm(r, i);
        if (r->narrow) { /* v / s read as such: the same division */
            if (norms)
                norms[i] = s;
            r->divisor[i] = s > 0 ? s : 1.0;
            continue;
        }
        double *v = r->value + i * r->d, *t = r->tol ? r->tol + i * r->d : NULL;
        if (norms)
            norms[i] = s;
        for (int64_t j = 0; s > 0 && j < r->d; j++)
            v[j] /= s;
        for (int64_t j = 0; s > 0 && t && j < r->d; j++)
            t[j] = t[j] / s + 0x1.0p-50 * fabs(v[j]);
    }
}

/* ---- linkage ------------------------------------------------------------ */

static inline int64_t tri(int64_t n, int64_t i, int64_t j)
{
    if (i > j) {
        int64_t t = i;
        i = j;
        j = t;
    }
    return i * (2 * n - i - 1) / 2 + (j - i - 1);
}

/* Rank-1 merge of pieces sigma_a u_a, sigma_b u_b with cos c = u_a . u_b:
 * the largest eigenvalue of their 2 x 2 Gram matrix and its vector. */
static double rank1_lambda(double sa2, double sb2, double c, double *y1,
                           double *y2)
{
    double h = 0.5 * (sa2 - sb2);
    double lam = 0.5 * (sa2 + sb2) + sqrt(h * h + sa2 * sb2 * c * c);
    double p = sqrt(sa2 * sb2) * c, q = lam - sa2;
    if (p == 0 && q == 0) { /* sa2 >= sb2 with c = 0: a alone */
        p = 1;
        q = 0;
    }
    *y1 = p;
    *y2 = q;
    return lam;
}


/* A binary min-heap of rows by (nnd[row], row), with each row's position,
 * so that a row's key can move either way. */
typedef struct nn_heap {
    int64_t *row, *where;
    int64_t size;
} nn_heap;

static inline bool nn_before(const double *key, int64_t x, int64_t y)
{
    return key[x] < key[y] || (key[x] == key[y] && x < y);
}

static void nn_heap_place(nn_heap *h, int64_t pos, int64_t row)
{
    h->row[pos] = row;
    h->where[row] = pos;
}

static void nn_heap_down(nn_heap *h, const double *key, int64_t pos)
{
    int64_t row = h->row[pos];
    for (;;) {
        int64_t c = 2 * pos + 1;
        if (c >= h->size)
            break;
        if (c + 1 < h->size && nn_before(key, h->row[c + 1], h->row[c]))
            c++;
        if (!nn_before(key, h->row[c], row))
            break;
        nn_heap_place(h, pos, h->row[c]);
        pos = c;
    }
    nn_heap_place(h, pos, row);
}

/* Restores the heap after the key at pos moved either way. */
static void nn_heap_sift(nn_heap *h, const double *key, int64_t pos)
{
    int64_t row = h->row[pos];
    while (pos > 0 && nn_before(key, row, h->row[(pos - 1) / 2])) {
        nn_heap_place(h, pos, h->row[(pos - 1) / 2]);
        pos = (pos - 1) / 2;
    }
    nn_heap_place(h, pos, row);
    nn_heap_down(h, key, pos);
}

static void nn_heap_build(nn_heap *h, const double *key, int64_t n)
{
    h->size = n;
    for (int64_t i = 0; i < n; i++)
        nn_heap_place(h, i, i);
    for (int64_t i = n / 2 - 1; i >= 0; i--)
        nn_heap_down(h, key, i);
}

static void nn_heap_update(nn_heap *h, const double *key, int64_t row)
{
    nn_heap_sift(h, key, h->where[row]);
}

static void nn_heap_remove(nn_heap *h, const double *key, int64_t row)
{
    int64_t pos = h->where[row], last = h->row[--h->size];
    h->where[row] = -1;
    if (pos == h->size)
        return;
    nn_heap_place(h, pos, last);
    nn_heap_sift(h, key, pos);
}

/* The Gram matrix of the unit rows is computed a panel of GRAM_WIDTH
 * rows at a time, over GRAM_DEPTH coordinates at a time: the panel
 * (128 KB) stays in cache while every row after it streams past. */
#define GRAM_WIDTH 64
#define GRAM_DEPTH 256

/* Rows ahead whose cells a merge asks the cache for. */
#define LINKAGE_PREFETCH 16

/* Threads of a Gram matrix or a Lloyd round at most (scratch per thread). */
#define LINKAGE_THREADS 64

/* With fib_rows.float_cosines, the Gram matrix of a rank-1 Ward linkage is
 * made in floats (dots_f32: twice the products per vector), each piece of
 * GRAM_DEPTH coordinates summed in float and the pieces in double: a cosine
 * off by about 1e-6. A cosine of at least FLOAT_COSINE_EXACT is made again
 * in double, with the bits of the double path: near-parallel rows, whose
 * rank-1 cost (about 1 - c) the float error would swamp, and exact
 * duplicates (cost 0) keep their exact costs; below it the error moves a
 * cost by at most about 1e-5 of itself. */
#define FLOAT_COSINE_EXACT 0.5

/* The unit rows a Gram matrix is made of: doubles, or floats with the
 * rows' norms for the exact cosines. */
typedef struct unit_rows {
    double *unit;  /* n x d, or NULL (unit_gram lets them go) */
    float *unitf;  /* n x d, or NULL */
    const double *norm;  /* |row| (with unitf) */
} unit_rows;

/* A read of a mapped file may map the whole page-cache folio it falls in,
 * which the kernel may make as large as a huge page (2 MiB with 4 KiB
 * pages on x86-64 and arm64). */
#define FOLIO_SPAN ((uintptr_t)2 << 20)

/* The pages of [at, at + bytes) and the rest of the folios they lie in
 * leave the process's memory where g maps them (the same values come back
 * on a read). */
static void drop_folios(const fib_graph *g, const void *at, size_t bytes)
{
    uintptr_t lo = (uintptr_t)at & ~(FOLIO_SPAN - 1), hi = (uintptr_t)at + bytes;
    hi = hi > UINTPTR_MAX - FOLIO_SPAN ? UINTPTR_MAX : (hi + FOLIO_SPAN - 1) & ~(FOLIO_SPAN - 1);
    fib_graph_drop_range(g, (const void *)lo, hi - lo);
}

/* Rows [begin, end) of rows borrowed from a graph's tensors leave the
 * process's memory if they are mapped, with the rest of their folios: the
 * next rows a reader takes map theirs again, and no folio stays mapped
 * for a few rows read from it long before. */
static void drop_rows(const fib_rows *r, int64_t begin, int64_t end)
{
    if (end > begin)
        drop_folios(r->pages, r->narrow + begin * r->ld,
                    (size_t)((end - begin) * r->ld) * sizeof *r->narrow);
}

/* The cosine of rows i and k in double, as the double path makes it. */
static double exact_cosine(const fib_rows *r, const double *norm, int64_t i, int64_t k)
{
    double si = norm[i], sk = norm[k], s = 0;
    for (int64_t j = 0; j < r->d; j++)
        s += (si > 0 ? row_value(r, i, j) / si : 0.0) * (sk > 0 ? row_value(r, k, j) / sk : 0.0);
    return s;
}

/* Values [j0, j1) of unit row i in float: each value divided by the row's
 * norm (0 for a zero row), then rounded; the float path's rows, whether
 * held or made as the panels need them. */
static void unit_values_f32(const fib_rows *r, const double *norm, int64_t i, int64_t j0,
                            int64_t j1, float *out)
{
    double s = norm[i];
    int64_t j = j0;
    if (r->narrow && s > 0) { /* row_value's division, without its tests */
        const float *x = r->narrow + i * r->ld;
        double divisor = r->divisor[i];
        int64_t stored = r->d - (r->tail ? 1 : 0), end = j1 < stored ? j1 : stored;
        if (r->pages)
            for (; j < end; j++)
                out[j] = (float)((0.0 + (double)x[j]) / divisor / s);
        else
            for (; j < end; j++)
                out[j] = (float)((double)x[j] / divisor / s);
    }
    for (; j < j1; j++)
        out[j] = (float)(s > 0 ? row_value(r, i, j) / s : 0.0);
}

static void unit_row_f32(const fib_rows *r, const double *norm, int64_t i, float *out)
{
    unit_values_f32(r, norm, i, 0, r->d, out);
}

/* unit_row_f32 of rows borrowed in place: a row that runs into the next
 * folio lets the folio it leaves go before it maps the next, so that a
 * reader of consecutive rows holds one folio of them at a time. */
static void unit_row_streamed(const fib_rows *r, const double *norm, int64_t i, float *out)
{
    uintptr_t at = (uintptr_t)(r->narrow + i * r->ld), folio = at & ~(FOLIO_SPAN - 1);
    int64_t split = (int64_t)((folio + FOLIO_SPAN - at) / sizeof *r->narrow);
    if (split >= r->d - (r->tail ? 1 : 0)) {
        unit_row_f32(r, norm, i, out);
        return;
    }
    unit_values_f32(r, norm, i, 0, split, out);
    fib_graph_drop_range(r->pages, (const void *)folio, FOLIO_SPAN);
    unit_values_f32(r, norm, i, split, r->d, out);
}

/* Cell (i, k), i < k, of the condensed matrix from the dot of unit rows i
 * and k: INFINITY between labels; a float dot of at least
 * FLOAT_COSINE_EXACT made again in double; 1 - dot for COSINE. */
static double gram_cell(const fib_rows *r, const double *norm, bool floats, bool cosine,
                        int64_t i, int64_t k, double dot)
{
    if (r->label[i] != r->label[k])
        return INFINITY;
    if (floats && dot >= FLOAT_COSINE_EXACT)
        dot = exact_cosine(r, norm, i, k);
    return cosine ? 1.0 - dot : dot; /* rank-1 keeps cosines */
}

/* The cosines between the GRAM_WIDTH (or fewer) unit rows from i0 on and
 * every row after them, into D (rows i0 .. of the condensed matrix, in
 * order); panel and acc: this thread's scratch. A cosine is the same
 * whichever of its rows is in the panel: its products commute, and they
 * are summed in the same order. */
static void gram_panel(const fib_rows *r, const unit_rows *u, bool cosine, int64_t i0,
                       double *panel, double *acc, double *D)
{
    int64_t n = r->n, d = r->d;
    const fib_kernels *kernels = fib_kernels_active();
    int64_t w = n - i0 < GRAM_WIDTH ? n - i0 : GRAM_WIDTH;
    int64_t k0 = i0 + 1, rows = n - k0; /* the rows after the panel's first */
    float *panelf = (float *)panel;
    if (rows <= 0)
        return;
    memset(acc, 0, (size_t)(rows * w) * sizeof *acc);
    for (int64_t j0 = 0; j0 < d; j0 += GRAM_DEPTH) {
        int64_t len = d - j0 < GRAM_DEPTH ? d - j0 : GRAM_DEPTH;
        if (u->unitf) {
            for (int64_t c = 0; c < w; c++)
                for (int64_t j = 0; j < len; j++)
                    panelf[j * w + c] = u->unitf[(i0 + c) * d + j0 + j];
            for (int64_t x = 0; x < rows; x += 4) {
                int64_t m = rows - x < 4 ? rows - x : 4;
                kernels->dots_f32(u->unitf + (k0 + x) * d + j0, d, m, panelf, w, len,
                                  acc + x * w, w);
            }
            continue;
        }
        for (int64_t c = 0; c < w; c++)
            for (int64_t j = 0; j < len; j++)
                panel[j * w + c] = u->unit[(i0 + c) * d + j0 + j];
        for (int64_t x = 0; x < rows; x += 4) {
            int64_t m = rows - x < 4 ? rows - x : 4;
            kernels->dots_f64(u->unit + (k0 + x) * d + j0, d, m, panel, w, len, acc + x * w, w);
        }
    }
    for (int64_t c = 0; c < w; c++) {
        int64_t i = i0 + c;
        double *row = D + tri(n, i, i + 1);
        for (int64_t k = i + 1; k < n; k++)
            row[k - i - 1] = gram_cell(r, u->norm, u->unitf != NULL, cosine, i, k,
                                       acc[(k - k0) * w + c]);
    }
}

/* D[tri(i, k)] for all i < k: the cosine of unit rows i and k (COSINE:
 * 1 - cosine), INFINITY between different labels. Each cosine of the
 * double path is the sum of its products in ascending coordinate order
 * (fib_dots_f64): the bits of the plain loop at any SIMD level; the float
 * path's are the same at any SIMD level too (fib_dots_f32). Panels are
 * shared out among r->n_threads threads (each cosine made by one); the
 * calling thread asks check before each round of panels. D fills from its
 * front and the unit rows are done with from theirs: after each round the
 * pages of the unit rows before it go (and those of rows borrowed in
 * place): the matrix grows as the unit rows shrink, so that the two are
 * never held whole together. */
static int32_t unit_gram(const fib_rows *r, const unit_rows *u, bool cosine,
                         const fib_progress_check *check, double *D)
{
    int64_t n = r->n, d = r->d, n_panels = (n + GRAM_WIDTH - 1) / GRAM_WIDTH;
    int threads = fib_thread_count(r->n_threads, n_panels);
    threads = threads < LINKAGE_THREADS ? threads : LINKAGE_THREADS;
    double *panel = fib_alloc((int64_t)threads * GRAM_WIDTH * GRAM_DEPTH, sizeof *panel);
    double *acc = fib_alloc((int64_t)threads * (n > 0 ? n : 1) * GRAM_WIDTH, sizeof *acc);
    int32_t status = FIB_OK;
    int cancelled = 0;
    if (!panel || !acc) {
        status = fib_error(FIB_E_NOMEM, "out of memory clustering %lld units", (long long)n);
        goto done;
    }
    /* the callback is asked once per round of `threads` panels, outside the
     * threads, so that it is called as often whatever the scheduling */
    for (int64_t p0 = 0; p0 < n_panels && !cancelled; p0 += threads) {
        if (fib_progress_cancelled(check)) {
            cancelled = 1;
            break;
        }
        int64_t p1 = p0 + threads < n_panels ? p0 + threads : n_panels;
        /* the first panels have the most rows after them: dealt first */
        FIB_PRAGMA(omp parallel for schedule(dynamic, 1) num_threads(threads))
        for (int64_t p = p0; p < p1; p++) {
            int t = fib_thread_num();
            gram_panel(r, u, cosine, p * GRAM_WIDTH,
                       panel + (int64_t)t * GRAM_WIDTH * GRAM_DEPTH,
                       acc + (int64_t)t * n * GRAM_WIDTH, D);
        }
        int64_t done_rows = p1 * GRAM_WIDTH < n ? p1 * GRAM_WIDTH : n;
        if (u->unitf)
            fib_release_pages(u->unitf, (size_t)(done_rows * d) * sizeof *u->unitf);
        else
            fib_release_pages(u->unit, (size_t)(done_rows * d) * sizeof *u->unit);
        if (r->pages)
            drop_rows(r, 0, done_rows);
    }
    if (cancelled)
        status = fib_error(FIB_E_CANCELLED, "clustering cancelled by the progress callback");
done:
    fib_free(panel);
    fib_free(acc);
    return status;
}

/* unit_gram_streamed makes the cosines in SWEEPS sweeps of whole panels:
 * each row's unit row is made again once per sweep before it (about
 * SWEEPS / 2 + 1 times), and a sweep's panels (n / SWEEPS rows of d
 * floats) are an eighth of the matrix's bytes for d = n. CHUNK_ROWS: the
 * rows read at a time, by one thread, against a sweep's panels. */
#define SWEEPS 8
#define CHUNK_ROWS 64

/* Cells (i, k) of D for every row i of the sweep [s0, s1) and row k of
 * the chunk [c0, c1) with k > i: rows holds the chunk's unit rows
 * (CHUNK_ROWS x d), sweep the sweep's panels, each transposed (d x its
 * width, as gram_panel lays a panel); acc: CHUNK_ROWS x GRAM_WIDTH sums.
 * Each cell's float pieces are those of gram_panel and added in the same
 * order: the same bits. */
static void gram_chunk(const fib_rows *r, const double *norm, const float *sweep, int64_t s0,
                       int64_t s1, int64_t c0, int64_t c1, const float *rows, double *acc,
                       double *D)
{
    int64_t n = r->n, d = r->d;
    const fib_kernels *kernels = fib_kernels_active();
    for (int64_t i0 = s0; i0 < s1; i0 += GRAM_WIDTH) {
        int64_t w = s1 - i0 < GRAM_WIDTH ? s1 - i0 : GRAM_WIDTH;
        int64_t k0 = c0 > i0 + 1 ? c0 : i0 + 1; /* the rows after the panel's first */
        if (k0 >= c1)
            break;
        const float *panel = sweep + (i0 - s0) * d;
        const float *first = rows + (k0 - c0) * d;
        int64_t m = c1 - k0;
        memset(acc, 0, (size_t)(m * w) * sizeof *acc);
        for (int64_t j0 = 0; j0 < d; j0 += GRAM_DEPTH) {
            int64_t len = d - j0 < GRAM_DEPTH ? d - j0 : GRAM_DEPTH;
            for (int64_t x = 0; x < m; x += 4)
                kernels->dots_f32(first + x * d + j0, d, m - x < 4 ? m - x : 4, panel + j0 * w,
                                  w, len, acc + x * w, w);
        }
        for (int64_t c = 0; c < w; c++)
            for (int64_t k = k0 > i0 + c + 1 ? k0 : i0 + c + 1; k < c1; k++)
                D[tri(n, i0 + c, k)] = gram_cell(r, norm, true, false, i0 + c, k,
                                                 acc[(k - k0) * w + c]);
    }
}

/* unit_gram's float path (rank-1: cosines kept) for rows borrowed in
 * place, without their n x d unit rows: a sweep makes the unit rows of
 * its panels, then those of every row after the sweep's first again,
 * CHUNK_ROWS at a time, and reads them against the sweep's panels.
 * D fills as in unit_gram, next to buffers of a few panels; each row is made
 * once per sweep before it. The chunks are shared out among r->n_threads
 * threads (each cell made by one); the calling thread asks check before
 * each sweep. */
static int32_t unit_gram_streamed(const fib_rows *r, const double *norm,
                                  const fib_progress_check *check, double *D)
{
    int64_t n = r->n, d = r->d > 0 ? r->d : 1;
    int64_t sweep_panels = (n + SWEEPS * GRAM_WIDTH - 1) / (SWEEPS * GRAM_WIDTH);
    int64_t sweep_rows = (sweep_panels > 0 ? sweep_panels : 1) * GRAM_WIDTH;
    int threads = fib_thread_count(r->n_threads, (n + CHUNK_ROWS - 1) / CHUNK_ROWS);
    threads = threads < LINKAGE_THREADS ? threads : LINKAGE_THREADS;
    float *sweep = fib_alloc(sweep_rows * d, sizeof *sweep);
    float *rows = fib_alloc((int64_t)threads * CHUNK_ROWS * d, sizeof *rows);
    double *acc = fib_alloc((int64_t)threads * CHUNK_ROWS * GRAM_WIDTH, sizeof *acc);
    /* the last column (a bias), read with every row: copied, so that its
     * folio need not stay mapped */
    float *tail = r->tail ? fib_alloc(n > 0 ? n : 1, sizeof *tail) : NULL;
    int32_t status = FIB_OK;
    if (!sweep || !rows || !acc || (r->tail && !tail)) {
        status = fib_error(FIB_E_NOMEM, "out of memory clustering %lld units", (long long)n);
        goto done;
    }
    fib_rows copied = *r;
    if (tail) {
        memcpy(tail, r->tail, (size_t)n * sizeof *tail);
        drop_folios(r->pages, r->tail, (size_t)n * sizeof *tail);
        copied.tail = tail;
        r = &copied;
    }
    for (int64_t s0 = 0; s0 < n; s0 += sweep_rows) {
        if (fib_progress_cancelled(check)) {
            status = fib_error(FIB_E_CANCELLED, "clustering cancelled by the progress callback");
            break;
        }
        int64_t s1 = n - s0 < sweep_rows ? n : s0 + sweep_rows;
        for (int64_t i0 = s0; i0 < s1; i0 += GRAM_WIDTH) {
            int64_t w = s1 - i0 < GRAM_WIDTH ? s1 - i0 : GRAM_WIDTH;
            float *panel = sweep + (i0 - s0) * d;
            for (int64_t c = 0; c < w; c++) {
                unit_row_streamed(r, norm, i0 + c, rows);
                for (int64_t j = 0; j < r->d; j++)
                    panel[j * w + c] = rows[j];
            }
        }
        drop_rows(r, s0, s1);
        /* the rows of a chunk are made (and their folios let go) by one
         * thread at a time: one folio of them mapped at a time */
        int64_t n_chunks = (n - s0 - 1 + CHUNK_ROWS - 1) / CHUNK_ROWS;
        FIB_PRAGMA(omp parallel for schedule(dynamic, 1) num_threads(threads))
        for (int64_t q = 0; q < n_chunks; q++) {
            int t = fib_thread_num();
            int64_t c0 = s0 + 1 + q * CHUNK_ROWS, c1 = n - c0 < CHUNK_ROWS ? n : c0 + CHUNK_ROWS;
            float *mine = rows + (int64_t)t * CHUNK_ROWS * d;
            FIB_PRAGMA(omp critical)
            {
                for (int64_t k = c0; k < c1; k++)
                    unit_row_streamed(r, norm, k, mine + (k - c0) * d);
                drop_rows(r, c0, c1);
            }
            gram_chunk(r, norm, sweep, s0, s1, c0, c1, mine,
                       acc + (int64_t)t * CHUNK_ROWS * GRAM_WIDTH, D);
            FIB_PRAGMA(omp critical)
            drop_rows(r, c0, c1); /* what exact cosines brought back */
        }
        drop_rows(r, s0, s1);
    }
done:
    fib_free(sweep);
    fib_free(rows);
    fib_free(acc);
    fib_free(tail);
    return status;
}

bool fib_progress_cancelled(const fib_progress_check *check)
{
    return check && check->fn && check->fn(check->user, check->done, check->total) != 0;
}

int32_t fib_linkage_run(const fib_rows *r, int32_t method, bool rank1,
                        const double *mass, double stop, fib_merges *out)
{
    return fib_linkage_run_checked(r, method, rank1, mass, stop, NULL, out);
}

int32_t fib_linkage_run_checked(const fib_rows *r, int32_t method, bool rank1,
                                const double *mass, double stop,
                                const fib_progress_check *check, fib_merges *out)
{
    return fib_linkage_run_limited(r, method, rank1, mass, stop, INT64_MAX, check, out);
}

int32_t fib_linkage_run_limited(const fib_rows *r, int32_t method, bool rank1,
                                const double *mass, double stop, int64_t max_merges,
                                const fib_progress_check *check, fib_merges *out)
{
    int64_t n = r->n, d = r->d;
    memset(out, 0, sizeof *out);
    if (n > FIB_LINKAGE_MAX_UNITS)
        return fib_error(FIB_E_UNSUPPORTED,
                         "linkage clustering of %lld units: above FIB_LINKAGE_MAX_UNITS (%d), its "
                         "O(n^2) matrix would not be bounded; use FIB_TOL_ABS or FIB_TOL_REL",
                         (long long)n, (int)FIB_LINKAGE_MAX_UNITS);
    if (r->narrow && method != FIB_TOL_COSINE && !rank1)
        return fib_error(FIB_E_INVALID, "linkage: rows held in float32 are read by the "
                         "cosine and rank-1 linkages only");
    /* the two largest buffers, in pages of their own: freed (with the
     * same counts), they leave the process before the next layer's are made */
    int64_t cells = n > 1 ? n * (n - 1) / 2 : 1, unit_cells = n * (d > 0 ? d : 1);
    double *D = fib_alloc_pages(cells, sizeof *D);
    /* each merge reads a cell of every row: on 4 KiB pages, a TLB miss each */
    if (D)
        fib_advise_huge_pages(D, (size_t)cells * sizeof *D);
    double *m = fib_alloc(n, sizeof *m);   /* cluster mass / sigma^2 */
    int64_t *size = fib_alloc(n, sizeof *size);
    int64_t *nn = fib_alloc(n, sizeof *nn);
    double *nnd = fib_alloc(n, sizeof *nnd);
    bool *active = fib_alloc(n, sizeof *active);
    bool *stale = fib_alloc(n, sizeof *stale);
    double *row_cost = fib_alloc(n, sizeof *row_cost); /* one row's rank-1 costs */
    const fib_kernels *kernels = fib_kernels_active();
    nn_heap heap = {fib_alloc(n, sizeof *heap.row), fib_alloc(n, sizeof *heap.where), 0};
    out->a = fib_alloc(n, sizeof *out->a);
    out->b = fib_alloc(n, sizeof *out->b);
    out->height = fib_alloc(n, sizeof *out->height);
    double *unit = NULL, *unit_norm = NULL;
    float *unitf = NULL;
    int32_t status = FIB_OK;
    if (!D || !m || !size || !nn || !nnd || !active || !stale || !row_cost || !heap.row ||
        !heap.where ||
        !out->a || !out->b || !out->height) {
        status = fib_error(FIB_E_NOMEM, "out of memory clustering %lld units", (long long)n);
        goto done;
    }
    /* unit rows for COSINE and rank-1; rows borrowed in place are read
     * again by the panels instead of held as unit rows (unit_gram_streamed) */
    bool single = rank1 && r->float_cosines, streamed = single && r->pages;
    if (method == FIB_TOL_COSINE || rank1) {
        if (single && !streamed)
            unitf = fib_alloc_pages(unit_cells, sizeof *unitf);
        else if (!single)
            unit = fib_alloc_pages(unit_cells, sizeof *unit);
        if (unitf || unit) /* fewer page faults */
            fib_advise_huge_pages(unitf ? (void *)unitf : (void *)unit,
                                  (size_t)unit_cells * (unitf ? sizeof *unitf : sizeof *unit));
        unit_norm = fib_alloc(n > 0 ? n : 1, sizeof *unit_norm);
        if ((!unit && !unitf && !streamed) || !unit_norm) {
            status = fib_error(FIB_E_NOMEM, "out of memory clustering %lld units", (long long)n);
            goto done;
        }
        for (int64_t i = 0; i < n; i++) {
            double s = row_norm(r, i);
            unit_norm[i] = s;
            if (unitf)
                unit_row_f32(r, unit_norm, i, unitf + i * d);
            for (int64_t j = 0; unit && j < d; j++)
                unit[i * d + j] = s > 0 ? row_value(r, i, j) / s : 0.0;
            if (rank1)
                m[i] = s * s * (mass ? mass[i] : 1.0);
            /* borrowed rows: their pages go once read (an exact cosine or
             * a streamed panel brings a row back) */
            if (r->pages && ((i + 1) % GRAM_WIDTH == 0 || i + 1 == n))
                drop_rows(r, i - i % GRAM_WIDTH, i + 1);
        }
    }
    for (int64_t i = 0; i < n; i++) {
        size[i] = 1;
        active[i] = true;
        if (!rank1)
            m[i] = mass ? mass[i] : 1.0;
    }
    if (streamed || unit || unitf) {
        unit_rows u = {unit, unitf, unit_norm};
        status = streamed ? unit_gram_streamed(r, unit_norm, check, D)
                          : unit_gram(r, &u, !rank1, check, D);
        fib_free_pages(unit, unit_cells, sizeof *unit);
        fib_free_pages(unitf, unit_cells, sizeof *unitf);
        unit = NULL;
        unitf = NULL;
        if (status)
            goto done;
    }
    for (int64_t i = 0; i < n && !unit_norm; i++) {
        if (fib_progress_cancelled(check)) {
            status = fib_error(FIB_E_CANCELLED, "clustering cancelled by the progress callback");
            goto done;
        }
        for (int64_t k = i + 1; k < n; k++) {
            double v;
            if (r->label[i] != r->label[k]) {
                v = INFINITY;
            } else if (method == FIB_TOL_COMPLETE) {
                v = 0;
                const double *a = r->value + i * d, *b = r->value + k * d;
                const double *ta = r->tol + i * d, *tb = r->tol + k * d;
                for (int64_t j = 0; j < d; j++) {
                    double gap = fabs(a[j] - b[j]) - ta[j] - tb[j];
                    if (gap > v)
                        v = gap;
                }
            } else { /* classical Ward: increase of the weighted sum of squares */
                double s = 0;
                const double *a = r->value + i * d, *b = r->value + k * d;
                for (int64_t j = 0; j < d; j++)
                    s += (a[j] - b[j]) * (a[j] - b[j]);
                v = m[i] * m[k] / (m[i] + m[k]) * s;
            }
            D[tri(n, i, k)] = v;
        }
    }
    /* In rank-1 mode D holds cosines (labels: -inf-like via INFINITY flag);
     * the cost is derived on the fly. */
#define COST(i, k) (rank1 ? (isinf(D[tri(n, i, k)]) ? INFINITY \
                     : fib_rank1_cost(m[i], m[k], D[tri(n, i, k)])) : D[tri(n, i, k)])
    /* Row i's neighbour is sought among the active rows above it only: the
     * pair a merge takes is the lowest (cost, lower row, upper row), and its
     * lower row holds it. nnd[i] is a lower bound of row i's costs; with
     * stale[i] false it is their minimum and nn[i] the lowest row reaching
     * it. A merge leaves the rows whose neighbour it changed stale instead
     * of scanning them again: a stale row is scanned only when it reaches
     * the top of the heap, so the merges are those of scanning every row
     * after every merge, without the O(n) rescans that made that O(n^3). */
#define RESCAN(i)                                                          \
    do {                                                                   \
        nn[i] = -1;                                                        \
        nnd[i] = INFINITY;                                                 \
        stale[i] = false;                                                  \
        int64_t len_ = n - (i) - 1;                                        \
        if (len_ <= 0)                                                     \
            break;                                                         \
        const double *cost_ = D + tri(n, i, (i) + 1);                      \
        if (rank1) {                                                       \
            kernels->rank1_costs(m[i], m + (i) + 1, cost_, len_, row_cost);\
            cost_ = row_cost;                                              \
        }                                                                  \
        for (int64_t x_ = 0; x_ < len_; x_++)                              \
            if (active[(i) + 1 + x_] && cost_[x_] < nnd[i]) {              \
                nnd[i] = cost_[x_];                                        \
                nn[i] = (i) + 1 + x_;                                      \
            }                                                              \
    } while (0)
    for (int64_t i = 0; i < n; i++)
        RESCAN(i);
    nn_heap_build(&heap, nnd, n);
    int64_t merges = 0;
    while (merges < n - 1 && merges < max_merges) {
        if (fib_progress_cancelled(check)) {
            status = fib_error(FIB_E_CANCELLED, "clustering cancelled by the progress callback");
            goto done;
        }
        int64_t best = heap.row[0];
        while (heap.size > 0 && (stale[best] || (nn[best] >= 0 && !active[nn[best]]))) {
            RESCAN(best);
            nn_heap_update(&heap, nnd, best);
            best = heap.row[0];
        }
        if (heap.size == 0 || nn[best] < 0 || !(nnd[best] <= stop) || isinf(nnd[best]))
            break;
        int64_t a = best, b = nn[best];
        double h = nnd[best];
        out->a[merges] = a;
        out->b[merges] = b;
        out->height[merges] = h;
        merges++;
        active[b] = false;
        nn_heap_remove(&heap, nnd, b);
        /* new row a */
        double y1 = 0, y2 = 0, lam = 0, norm = 1;
        if (rank1) {
            double c = D[tri(n, a, b)] > 0 ? D[tri(n, a, b)] : 0.0;
            lam = rank1_lambda(m[a], m[b], c, &y1, &y2);
            /* u_new = (y1 sigma_a u_a + y2 sigma_b u_b) / |...| */
            double sa = sqrt(m[a]), sb = sqrt(m[b]);
            norm = sqrt(y1 * y1 * m[a] + y2 * y2 * m[b] + 2 * y1 * y2 * sa * sb * c);
            y1 = norm > 0 ? y1 * sa / norm : 1.0;
            y2 = norm > 0 ? y2 * sb / norm : 0.0;
        }
        /* the cells of rows above a and b sit a row apart (one cache miss
         * each, at an irregular stride): asked for LINKAGE_PREFETCH rows
         * ahead */
        for (int64_t k = 0; k < n; k++) {
            int64_t ahead = k + LINKAGE_PREFETCH;
            if (ahead < a)
                fib_prefetch_range((const char *)(D + tri(n, a, ahead)), 1);
            if (ahead < b && ahead != a)
                fib_prefetch_range((const char *)(D + tri(n, b, ahead)), 1);
            if (!active[k] || k == a)
                continue;
            double da = D[tri(n, a, k)], db = D[tri(n, b, k)], v;
            if (isinf(da) || isinf(db))
                v = INFINITY;
            else if (rank1)
                v = y1 * da + y2 * db;
            else if (method == FIB_TOL_COSINE)
                v = ((double)size[a] * da + (double)size[b] * db) / (double)(size[a] + size[b]);
            else if (method == FIB_TOL_COMPLETE)
                v = da > db ? da : db;
            else
                v = ((m[a] + m[k]) * da + (m[b] + m[k]) * db - m[k] * h) /
                    (m[a] + m[b] + m[k]);
            D[tri(n, a, k)] = v;
        }
        size[a] += size[b];
        m[a] = rank1 ? lam : m[a] + m[b];
        /* neighbour caches: the rows below a see a's new costs; the rows
         * that pointed at a or b may have lost their minimum */
        for (int64_t k = 0; k < b; k++) {
            if (!active[k] || k == a)
                continue;
            if (k > a) {
                if (nn[k] == b)
                    stale[k] = true;
                continue;
            }
            double c = COST(k, a);
            if (c < nnd[k]) {
                nnd[k] = c;
                nn[k] = a;
                stale[k] = false;
                nn_heap_update(&heap, nnd, k);
            } else if (nn[k] == a || nn[k] == b) {
                stale[k] = true;
            } else if (c == nnd[k] && a < nn[k]) {
                nn[k] = a; /* exact minimum kept; stale rows stay stale */
            }
        }
        RESCAN(a);
        nn_heap_update(&heap, nnd, a);
    }
#undef RESCAN
#undef COST
    out->n = n;
    out->n_merges = merges;
done:
    fib_free_pages(D, cells, sizeof *D);
    fib_free(m);
    fib_free(size);
    fib_free(nn);
    fib_free(nnd);
    fib_free(active);
    fib_free(stale);
    fib_free(row_cost);
    fib_free(heap.row);
    fib_free(heap.where);
    fib_free_pages(unit, unit_cells, sizeof *unit);
    fib_free_pages(unitf, unit_cells, sizeof *unitf);
    fib_free(unit_norm);
    if (status)
        fib_merges_clear(out);
    return status;
}

void fib_merges_clear(fib_merges *mg)
{
    fib_free(mg->a);
    fib_free(mg->b);
    fib_free(mg->height);
    memset(mg, 0, sizeof *mg);
}

int32_t fib_merges_cut(const fib_merges *mg, int64_t n_merges, fib_partition *out)
{
    /* clusters are named by their lowest unit: a merge joins b into a < b */
    for (int64_t i = 0; i < mg->n; i++)
        out->color[i] = i;
    if (n_merges > mg->n_merges)
        n_merges = mg->n_merges;
    for (int64_t s = 0; s < n_merges; s++)
        out->color[mg->b[s]] = mg->a[s];
    /* follow chains: the parent of a unit always has a lower index */
    for (int64_t i = 0; i < mg->n; i++)
        out->color[i] = out->color[out->color[i]];
    return fib_partition_canonicalize(out);
}

/* ---- mode dispatch ------------------------------------------------------ */

int32_t fib_group_rows_mode(const fib_rows *r, int32_t mode, double eps,
                            const double *weight, fib_partition *out)
{
    int32_t method = mode & ~FIB_TOL_SCALED;
    bool scaled = (mode & FIB_TOL_SCALED) != 0;
    double stop = eps;
    double *mass = NULL;
    if (method == FIB_TOL_WARD) {
        double scale = fib_rows_scale(r, weight);
        stop = (eps * scale) * (eps * scale);
        if (weight) {
            mass = fib_alloc(r->n, sizeof *mass);
            if (!mass)
                return fib_error(FIB_E_NOMEM, "out of memory for row weights");
            for (int64_t i = 0; i < r->n; i++)
                mass[i] = weight[i] * weight[i];
        }
    }
    fib_merges mg;
    int32_t status = fib_linkage_run(r, method, method == FIB_TOL_WARD && scaled, mass,
                                     stop, &mg);
    fib_free(mass);
    if (status)
        return status;
    status = fib_merges_cut(&mg, mg.n_merges, out);
    fib_merges_clear(&mg);
    return status;
}

int32_t fib_group_signatures_mode(const fib_signature *sig, int32_t mode,
                                  double eps, const double *weight,
                                  fib_partition *out)
{
    int32_t method = mode & ~FIB_TOL_SCALED;
    if (eps < 0 || method == FIB_TOL_EXACT)
        return fib_group_signatures(sig, -1.0, out);
    if (method == FIB_TOL_ABS)
        return fib_group_signatures(sig, eps, out);
    if (method == FIB_TOL_REL)
        return fib_group_signatures(sig, eps * fib_signature_scale(sig), out);
    if (sig->n_units > FIB_LINKAGE_MAX_UNITS)
        return fib_error(FIB_E_UNSUPPORTED,
                         "linkage clustering of %lld units: above FIB_LINKAGE_MAX_UNITS (%d)",
                         (long long)sig->n_units, (int)FIB_LINKAGE_MAX_UNITS);
    fib_rows r;
    int32_t status = fib_rows_from_signature(sig, &r);
    if (status)
        return status;
    status = fib_group_rows_mode(&r, mode, eps, weight, out);
    fib_rows_clear(&r);
    return status;
}

/* ---- outgoing norms ----------------------------------------------------- */

int32_t fib_outgoing_norms(const fib_graph *g, int32_t group, double *w)
{
    int64_t n = g->groups[group].n_units;
    bool any = false;
    for (int64_t i = 0; i < n; i++)
        w[i] = 0;
    for (int32_t h = group + 1; h < g->n_groups; h++) {
        const fib_group *grp = &g->groups[h];
        for (int32_t s = 0; s < grp->n_sources; s++) {
            if (grp->sources[s] != group)
                continue;
            any = true;
            const fib_dense *d = fib_group_matrix(g, h);
            if (!d) {
                for (int64_t i = 0; i < n; i++)
                    w[i] += 1.0;
                continue;
            }
            for (int64_t j = 0; j < grp->n_units; j++)
                for (int64_t i = 0; i < n; i++) {
                    double x = fib_dense_weight(d, j, i);
                    w[i] += x * x;
                }
        }
    }
    for (int64_t i = 0; i < n; i++)
        w[i] = any ? sqrt(w[i]) : 1.0;
    return FIB_OK;
}

/* Power iteration for the top right singular direction of the weighted
 * rows of `members` (row x weighted by weight[x], or 1), from the start v
 * (normalised here), at most 100 rounds, until the direction moves by less
 * than tol (L1). v ends a unit vector, or unchanged past a zero step; w is
 * scratch of length d. */
static void power_iterate(const fib_rows *r, const int64_t *members, int64_t m,
                          const double *weight, double *v, double *w, double tol)
{
    int64_t d = r->d;
    const fib_kernels *kernels = fib_kernels_active();
    /* The passes over d below are fused where their sums are independent
     * chains (each still in ascending order): v's norm for the next round
     * with the update of v, and the first four members' dot products with
     * the normalisation of v. */
    double nv = 0;
    for (int64_t j = 0; j < d; j++)
        nv += v[j] * v[j];
    for (int it = 0; it < 100; it++) {
        nv = sqrt(nv);
        if (!(nv > 0))
            return;
        /* v /= nv, w = 0, and the dot products of members 0 .. first - 1
         * (unused chains read v: their sums are dropped) */
        int64_t first = m < 4 ? m : 4;
        const double *r0 = first > 0 ? r->value + members[0] * d : v;
        const double *r1 = first > 1 ? r->value + members[1] * d : v;
        const double *r2 = first > 2 ? r->value + members[2] * d : v;
        const double *r3 = first > 3 ? r->value + members[3] * d : v;
        double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        for (int64_t j = 0; j < d; j++) {
            double vj = v[j] / nv;
            s0 += r0[j] * vj;
            s1 += r1[j] * vj;
            s2 += r2[j] * vj;
            s3 += r3[j] * vj;
            v[j] = vj;
            w[j] = 0;
        }
        /* w = sum over members, in order, of om^2 (row . v) row: four
         * members' dot products side by side, then their terms added to w
         * one member after the other */
        for (int64_t x = 0; x < m; x += 4) {
            int64_t q_end = m - x < 4 ? m - x : 4;
            if (x > 0) {
                r0 = r->value + members[x] * d;
                r1 = q_end > 1 ? r->value + members[x + 1] * d : v;
                r2 = q_end > 2 ? r->value + members[x + 2] * d : v;
                r3 = q_end > 3 ? r->value + members[x + 3] * d : v;
                s0 = s1 = s2 = s3 = 0;
                for (int64_t j = 0; j < d; j++) {
                    s0 += r0[j] * v[j];
                    s1 += r1[j] * v[j];
                    s2 += r2[j] * v[j];
                    s3 += r3[j] * v[j];
                }
            }
            double s[4] = {s0, s1, s2, s3};
            const double *row[4] = {r0, r1, r2, r3};
            for (int64_t q = 0; q < q_end; q++) {
                double om = weight ? weight[members[x + q]] : 1.0;
                kernels->axpy_f64(w, s[q] * (om * om), row[q], d);
            }
        }
        double nw = 0, diff = 0;
        for (int64_t j = 0; j < d; j++)
            nw += w[j] * w[j];
        nw = sqrt(nw);
        if (!(nw > 0))
            return;
        nv = 0;
        for (int64_t j = 0; j < d; j++) {
            double vj = w[j] / nw;
            diff += fabs(vj - v[j]);
            v[j] = vj;
            nv += vj * vj;
        }
        if (diff < tol)
            break;
    }
}

/* Classes of at most SMALL_CLASS members get their top direction exactly,
 * from the eigenvectors of their m x m weighted Gram matrix: m (m + 1) / 2
 * dot products instead of two per member and power round, and exact where
 * the power iteration stalls (members nearly orthogonal and of similar
 * weight: its top two eigenvalues are nearly equal and 100 rounds do not
 * meet the tolerance). */
#define SMALL_CLASS 32

/* Eigenvalues (the diagonal of a on return) and eigenvectors (columns of
 * e) of the symmetric m x m matrix a, by cyclic Jacobi rotations in a fixed
 * order: the same bits for the same matrix. */
static void jacobi_eigen(double *a, double *e, int64_t m)
{
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < m; j++)
            e[i * m + j] = i == j ? 1.0 : 0.0;
    for (int sweep = 0; sweep < 64; sweep++) {
        double off = 0, diag = 0;
        for (int64_t p = 0; p < m; p++) {
            diag += a[p * m + p] * a[p * m + p];
            for (int64_t q = p + 1; q < m; q++)
                off += a[p * m + q] * a[p * m + q];
        }
        if (!(off > 0x1.0p-104 * diag))
            break;
        for (int64_t p = 0; p < m; p++)
            for (int64_t q = p + 1; q < m; q++) {
                double apq = a[p * m + q];
                if (apq == 0)
                    continue;
                double theta = (a[q * m + q] - a[p * m + p]) / (2 * apq);
                double t = fabs(theta) > 1e150 ? 0.5 / theta
                           : (theta >= 0 ? 1.0 : -1.0) / (fabs(theta) + sqrt(theta * theta + 1));
                double c = 1 / sqrt(t * t + 1), s = t * c;
                for (int64_t k = 0; k < m; k++) { /* columns p, q */
                    double x = a[k * m + p], y = a[k * m + q];
                    a[k * m + p] = c * x - s * y;
                    a[k * m + q] = s * x + c * y;
                }
                for (int64_t k = 0; k < m; k++) { /* rows p, q */
                    double x = a[p * m + k], y = a[q * m + k];
                    a[p * m + k] = c * x - s * y;
                    a[q * m + k] = s * x + c * y;
                }
                for (int64_t k = 0; k < m; k++) {
                    double x = e[k * m + p], y = e[k * m + q];
                    e[k * m + p] = c * x - s * y;
                    e[k * m + q] = s * x + c * y;
                }
            }
    }
}

/* The top right singular direction of the weighted rows of a class of m <=
 * SMALL_CLASS members into v (unit), on the side of v's start (as the power
 * iteration from it ends); v unchanged when the rows are all zero. */
static void small_top_direction(const fib_rows *r, const int64_t *members, int64_t m,
                                const double *weight, double *v)
{
    int64_t d = r->d;
    double a[SMALL_CLASS * SMALL_CLASS], e[SMALL_CLASS * SMALL_CLASS];
    for (int64_t x = 0; x < m; x++) {
        const double *rx = r->value + members[x] * d;
        double ox = weight ? weight[members[x]] : 1.0;
        for (int64_t y = 0; y <= x; y++) {
            const double *ry = r->value + members[y] * d;
            double oy = weight ? weight[members[y]] : 1.0, s = 0;
            for (int64_t j = 0; j < d; j++)
                s += rx[j] * ry[j];
            a[x * m + y] = a[y * m + x] = ox * oy * s;
        }
    }
    jacobi_eigen(a, e, m);
    int64_t top = 0;
    for (int64_t x = 1; x < m; x++)
        if (a[x * m + x] > a[top * m + top])
            top = x;
    if (!(a[top * m + top] > 0)) { /* all rows zero: v's start, as a unit */
        double nv = 0;
        for (int64_t j = 0; j < d; j++)
            nv += v[j] * v[j];
        nv = sqrt(nv);
        for (int64_t j = 0; j < d && nv > 0; j++)
            v[j] /= nv;
        return;
    }
    /* u = sum_x om_x y_x row_x, then its side of v and its length */
    double start = 0, norm = 0;
    for (int64_t j = 0; j < d; j++) {
        double s = 0;
        for (int64_t x = 0; x < m; x++) {
            double ox = weight ? weight[members[x]] : 1.0;
            s += ox * e[x * m + top] * r->value[members[x] * d + j];
        }
        start += s * v[j];
        norm += s * s;
        v[j] = s; /* v[j] is read above before it is replaced */
    }
    norm = sqrt(norm);
    if (!(norm > 0))
        return;
    double scale = (start < 0 ? -1.0 : 1.0) / norm;
    for (int64_t j = 0; j < d; j++)
        v[j] *= scale;
}

/* ---- scale-aware colouring of a dense group ---------------------------- */

bool fib_activation_homogeneous(int32_t activation)
{
    return activation == FIB_ACT_LINEAR || activation == FIB_ACT_RELU ||
           activation == FIB_ACT_LEAKY_RELU;
}

/* The rows of fib_scaled_dense_rows, with their rounding allowances when
 * with_tol (else r->tol is NULL). */
static int32_t scaled_dense_rows(const fib_graph *g, int32_t group, const fib_partition *src,
                                 const double *src_scale, bool with_tol, fib_rows *out)
{
    const fib_group *grp = &g->groups[group];
    const fib_dense *d = fib_group_matrix(g, group);
    if (!d)
        return fib_error(FIB_E_UNSUPPORTED, "group %d: a %s block is not one weight matrix; "
                         "the scale-aware grouping takes weight matrices", (int)group,
                         grp->ops ? grp->ops->name : "input");
    int64_t n = grp->n_units, k = src->n_classes, dd = k + (d->bias ? 1 : 0);
    int32_t status = fib_rows_alloc(out, n, dd);
    if (status)
        return status;
    if (!with_tol) {
        fib_free(out->tol);
        out->tol = NULL;
    }
    /* the rows are added into: each is cleared (written) before, so that
     * its fresh pages are allocated on that write, not mapped to the zero
     * page by the first read and copied on the first write */
    fib_advise_huge_pages(out->value, (size_t)(n * dd) * sizeof *out->value);
    int64_t *terms = fib_calloc(k, sizeof *terms);
    if (!terms) {
        fib_rows_clear(out);
        return fib_error(FIB_E_NOMEM, "group %d: out of memory for signatures", (int)group);
    }
    for (int64_t c = 0; c < d->n_in; c++)
        terms[src->color[c]]++;
    for (int64_t i = 0; i < n; i++) {
        double *v = out->value + i * dd;
        memset(v, 0, (size_t)dd * sizeof *v);
        if (!with_tol) { /* a budget's rows: the block is read once */
            for (int64_t c = 0; c < d->n_in; c++)
                v[src->color[c]] += fib_dense_weight(d, i, c) * (src_scale ? src_scale[c] : 1.0);
            if (d->bias)
                v[k] = fib_dense_bias(d, i);
            if ((i + 1) % FIB_DENSE_DROP_ROWS == 0 || i + 1 == n)
                fib_dense_drop_rows(g, d, i - i % FIB_DENSE_DROP_ROWS, i + 1);
            continue;
        }
        double *t = out->tol + i * dd;
        for (int64_t c = 0; c < d->n_in; c++) {
            double x = fib_dense_weight(d, i, c) * (src_scale ? src_scale[c] : 1.0);
            v[src->color[c]] += x;
            t[src->color[c]] += fabs(x);
        }
        for (int64_t c = 0; c < k; c++)
            t[c] = fib_rounding_tol(d->dtype, terms[c] + 1, t[c]);
        if (d->bias) {
            v[k] = fib_dense_bias(d, i);
            t[k] = fib_rounding_tol(d->dtype, 1, fabs(v[k]));
        }
    }
    fib_free(terms);
    return FIB_OK;
}

int32_t fib_scaled_dense_rows(const fib_graph *g, int32_t group,
                              const fib_partition *src, const double *src_scale,
                              fib_rows *out)
{
    return scaled_dense_rows(g, group, src, src_scale, true, out);
}

int32_t fib_scaled_dense_values(const fib_graph *g, int32_t group,
                                const fib_partition *src, const double *src_scale,
                                fib_rows *out)
{
    return scaled_dense_rows(g, group, src, src_scale, false, out);
}

bool fib_rows_borrow(const fib_graph *g, int32_t group, const fib_partition *src,
                     const double *src_scale, fib_rows *r)
{
    memset(r, 0, sizeof *r);
    const fib_dense *d = fib_group_matrix(g, group);
    if (!d || d->dtype != FIB_DTYPE_F32 || d->transposed || src->n_units != d->n_in ||
        !fib_partition_is_discrete(src))
        return false;
    for (int64_t c = 0; c < d->n_in && src_scale; c++)
        if (src_scale[c] != 1.0) /* x * 1 is x */
            return false;
    int64_t n = g->groups[group].n_units;
    r->label = fib_calloc(n > 0 ? n : 1, sizeof *r->label);
    r->divisor = fib_alloc(n > 0 ? n : 1, sizeof *r->divisor);
    if (!r->label || !r->divisor) {
        fib_rows_clear(r);
        return false;
    }
    for (int64_t i = 0; i < n; i++)
        r->divisor[i] = 1.0; /* x / 1 is x */
    r->n = n;
    r->d = d->n_in + (d->bias ? 1 : 0);
    r->narrow = d->weights;
    r->ld = d->ld;
    r->tail = d->bias;
    r->pages = g;
    return true;
}

int32_t fib_class_scales(const fib_rows *r, const fib_partition *p,
                         const double *weight, double *scale)
{
    int64_t n = r->n, d = r->d, k = p->n_classes;
    /* classes are shared out among threads, each class by one (v and w
     * per thread, t per class) */
    int threads = fib_thread_count(r->n_threads, k);
    threads = threads < LINKAGE_THREADS ? threads : LINKAGE_THREADS;
    int64_t *start = fib_calloc(k + 1, sizeof *start);
    int64_t *order = fib_alloc(n, sizeof *order);
    double *v = fib_alloc((int64_t)threads * (d > 0 ? d : 1), sizeof *v);
    double *w = fib_alloc((int64_t)threads * (d > 0 ? d : 1), sizeof *w);
    double *t = fib_alloc(n > 0 ? n : 1, sizeof *t);
    if (!start || !order || !v || !w || !t) {
        fib_free(start), fib_free(order), fib_free(v), fib_free(w), fib_free(t);
        return fib_error(FIB_E_NOMEM, "out of memory for scales");
    }
    for (int64_t i = 0; i < n; i++)
        start[p->color[i] + 1]++;
    for (int64_t c = 0; c < k; c++)
        start[c + 1] += start[c];
    int64_t *fill = fib_alloc(k, sizeof *fill);
    if (!fill) {
        fib_free(start), fib_free(order), fib_free(v), fib_free(w), fib_free(t);
        return fib_error(FIB_E_NOMEM, "out of memory for scales");
    }
    memcpy(fill, start, (size_t)k * sizeof *fill);
    for (int64_t i = 0; i < n; i++)
        order[fill[p->color[i]]++] = i;
    fib_free(fill);
    FIB_PRAGMA(omp parallel for schedule(dynamic, 1) num_threads(threads))
    for (int64_t c = 0; c < k; c++) {
        const int64_t *mem = order + start[c];
        int64_t m = start[c + 1] - start[c];
        if (m == 1) {
            scale[mem[0]] = 1.0;
            continue;
        }
        double *v_c = v + (int64_t)fib_thread_num() * (d > 0 ? d : 1);
        double *w_c = w + (int64_t)fib_thread_num() * (d > 0 ? d : 1);
        double *t_c = t + start[c];
        /* power iteration on the weighted rows, from their sum */
        for (int64_t j = 0; j < d; j++)
            v_c[j] = 0;
        for (int64_t x = 0; x < m; x++) {
            double om = weight ? weight[mem[x]] : 1.0;
            for (int64_t j = 0; j < d; j++)
                v_c[j] += om * r->value[mem[x] * d + j];
        }
        if (m <= SMALL_CLASS)
            small_top_direction(r, mem, m, weight, v_c);
        else
            power_iterate(r, mem, m, weight, v_c, w_c, 1e-14);
        double mean = 0;
        for (int64_t x = 0; x < m; x++) {
            double s = 0;
            const double *row = r->value + mem[x] * d;
            for (int64_t j = 0; j < d; j++)
                s += row[j] * v_c[j];
            t_c[x] = s;
            mean += s;
        }
        mean /= (double)m;
        for (int64_t x = 0; x < m; x++) {
            double s = mean != 0 ? t_c[x] / mean : 1.0;
            /* a member pointing away from its class (possible only with a
             * loose grouping) keeps a tiny positive scale */
            scale[mem[x]] = s > 1e-6 ? s : 1e-6;
        }
    }
    fib_free(start), fib_free(order), fib_free(v), fib_free(w), fib_free(t);
    return FIB_OK;
}

int32_t fib_color_scaled_dense(const fib_graph *g, int32_t group, int32_t mode,
                               double eps, fib_partition *parts,
                               double **scales)
{
    const fib_group *grp = &g->groups[group];
    int64_t n = grp->n_units;
    bool homog = fib_activation_homogeneous(grp->activation);
    fib_rows r;
    int32_t status = fib_scaled_dense_rows(g, group, &parts[grp->sources[0]],
                                           scales[grp->sources[0]], &r);
    if (status)
        return status;
    double *norms = fib_alloc(n, sizeof *norms);
    double *weight = fib_alloc(n, sizeof *weight);
    if (!norms || !weight) {
        status = fib_error(FIB_E_NOMEM, "group %d: out of memory", (int)group);
        goto done;
    }
    fib_outgoing_norms(g, group, weight);
    if (homog) {
        fib_rows_normalize(&r, norms);
        for (int64_t i = 0; i < n; i++)
            weight[i] *= norms[i];
    }
    int32_t method = mode & ~FIB_TOL_SCALED;
    fib_partition next;
    status = fib_partition_init(&next, n);
    if (status)
        goto done;
    if (method == FIB_TOL_EXACT || method == FIB_TOL_ABS || method == FIB_TOL_REL) {
        fib_signature sig;
        status = fib_signature_alloc(&sig, n, r.d);
        if (!status) {
            memcpy(sig.value, r.value, (size_t)(n * r.d) * sizeof(double));
            memcpy(sig.tol, r.tol, (size_t)(n * r.d) * sizeof(double));
            sig.n_threads = 1;
            double e = method == FIB_TOL_EXACT ? -1.0
                       : method == FIB_TOL_REL ? eps * fib_rows_scale(&r, NULL) : eps;
            status = fib_group_signatures(&sig, e, &next);
            fib_signature_clear(&sig);
        }
    } else {
        status = fib_group_rows_mode(&r, homog ? mode : method, eps, weight, &next);
    }
    if (!status) {
        fib_partition_clear(&parts[group]);
        parts[group] = next;
    } else {
        fib_partition_clear(&next);
        goto done;
    }
    if (homog) {
        /* scales from the rank-1 fit of the unnormalised rows */
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < r.d; j++)
                r.value[i * r.d + j] *= norms[i];
        double *s = fib_alloc(n, sizeof *s);
        if (!s) {
            status = fib_error(FIB_E_NOMEM, "group %d: out of memory", (int)group);
            goto done;
        }
        for (int64_t i = 0; i < n; i++)
            weight[i] = norms[i] > 0 ? weight[i] / norms[i] : weight[i];
        status = fib_class_scales(&r, &parts[group], weight, s);
        if (status) {
            fib_free(s);
            goto done;
        }
        fib_free(scales[group]);
        scales[group] = s;
    }
done:
    fib_free(norms);
    fib_free(weight);
    fib_rows_clear(&r);
    return status;
}

/* ---- rank-1 Lloyd refinement ------------------------------------------- */

void fib_top_direction(const fib_rows *r, const int64_t *members, int64_t m,
                       const double *weight, double *v, double *w)
{
    int64_t d = r->d;
    for (int64_t j = 0; j < d; j++)
        v[j] = 0;
    for (int64_t x = 0; x < m; x++) {
        double om = weight ? weight[members[x]] : 1.0;
        const double *row = r->value + members[x] * d;
        double n2 = 0;
        for (int64_t j = 0; j < d; j++)
            n2 += row[j] * row[j];
        n2 = n2 > 0 ? 1.0 / sqrt(n2) : 0.0;
        for (int64_t j = 0; j < d; j++)
            v[j] += om * row[j] * n2;
    }
    if (m <= SMALL_CLASS)
        small_top_direction(r, members, m, weight, v);
    else
        power_iterate(r, members, m, weight, v, w, 1e-13);
}

/* Units whose class is sought among all the directions are taken
 * LLOYD_CHUNK at a time: their dot products with every direction are one
 * pass of fib_dots_f64 over panels of the directions. */
#define LLOYD_CHUNK 128

/* out[u * k + c] = row units[u] . V[c] (u < m, c < k), each the sum of its
 * products in ascending coordinate order: the bits of the plain loop, at
 * any thread count (panels of directions shared out among r->n_threads
 * threads). With unitsf (the m rows in floats, one after the other), the
 * same in floats (fib_dots_f32, the pieces of
 * GRAM_DEPTH coordinates added in double): within LLOYD_FLOAT_ERROR times
 * |row| |V[c]| of the exact value, and the same bits at any thread count
 * and SIMD level. panel: GRAM_WIDTH * GRAM_DEPTH doubles per thread, rows:
 * 4 * GRAM_DEPTH per thread (LINKAGE_THREADS threads at most). */
static void rows_dot_directions(const fib_rows *r, const int64_t *units, int64_t m,
                                const double *V, int64_t k, const float *unitsf,
                                double *panel, double *rows, double *out)
{
    bool single = unitsf != NULL;
    int64_t d = r->d, n_panels = (k + GRAM_WIDTH - 1) / GRAM_WIDTH;
    const fib_kernels *kernels = fib_kernels_active();
    int threads = fib_thread_count(r->n_threads, n_panels);
    threads = threads < LINKAGE_THREADS ? threads : LINKAGE_THREADS;
    memset(out, 0, (size_t)(m * k) * sizeof *out);
    FIB_PRAGMA(omp parallel for schedule(dynamic, 1) num_threads(threads))
    for (int64_t p = 0; p < n_panels; p++) {
        int64_t c0 = p * GRAM_WIDTH, w = k - c0 < GRAM_WIDTH ? k - c0 : GRAM_WIDTH;
        double *my_panel = panel + (int64_t)fib_thread_num() * GRAM_WIDTH * GRAM_DEPTH;
        double *my_rows = rows + (int64_t)fib_thread_num() * 4 * GRAM_DEPTH;
        float *panelf = (float *)my_panel;
        for (int64_t j0 = 0; j0 < d; j0 += GRAM_DEPTH) {
            int64_t len = d - j0 < GRAM_DEPTH ? d - j0 : GRAM_DEPTH;
            for (int64_t c = 0; c < w; c++)
                for (int64_t j = 0; j < len; j++) {
                    if (single)
                        panelf[j * w + c] = (float)V[(c0 + c) * d + j0 + j];
                    else
                        my_panel[j * w + c] = V[(c0 + c) * d + j0 + j];
                }
            for (int64_t u0 = 0; u0 < m; u0 += 4) {
                int64_t q = m - u0 < 4 ? m - u0 : 4;
                if (single) {
                    kernels->dots_f32(unitsf + u0 * d + j0, d, q, panelf, w, len,
                                      out + u0 * k + c0, k);
                    continue;
                }
                for (int64_t t = 0; t < q; t++)
                    memcpy(my_rows + t * len, r->value + units[u0 + t] * d + j0,
                           (size_t)len * sizeof *my_rows);
                kernels->dots_f64(my_rows, len, q, my_panel, w, len, out + u0 * k + c0, k);
            }
        }
    }
}

/* A bound of |float dot product - exact| / (|row| |V[c]|) for
 * rows_dot_directions in floats: each product and sum of a piece of
 * GRAM_DEPTH coordinates rounded to float (256 * 2^-24 = 1.53e-5, plus the
 * rounding of both factors to float), with a margin. Rows and directions
 * of norms beyond FLOAT_ROW_LIMIT take the double path (floats would
 * overflow). */
#define LLOYD_FLOAT_ERROR 2e-5
#define FLOAT_ROW_LIMIT 1e30

/* The plain loop's bits of row i . V[c] (those of dots_f64). */
static double row_dot(const fib_rows *r, int64_t i, const double *v)
{
    const double *row = r->value + i * r->d;
    double s = 0;
    for (int64_t j = 0; j < r->d; j++)
        s += row[j] * v[j];
    return s;
}

/* Each round recomputes only the directions of the classes whose members
 * changed (the same members give the same bits), and seeks a unit's class
 * among all the directions only when it might move: hi[i] bounds its dot
 * product with every direction but its own class's (exact after a search,
 * then raised by |row| times the largest move of a direction), and a unit
 * stays when that bound is below what a move needs. The classes reached
 * are those of searching every unit in every round. */
int32_t fib_rank1_lloyd(const fib_rows *r, const double *weight, int32_t iterations,
                        const fib_progress_check *check, fib_partition *p)
{
    int64_t n = r->n, d = r->d, k = p->n_classes, kd = k * (d > 0 ? d : 1);
    double *V = fib_calloc(kd, sizeof *V);
    /* scratch for as many threads as the rounds may use */
    int64_t most = fib_thread_count(r->n_threads, LINKAGE_THREADS);
    double *w = fib_alloc(most * (d > 0 ? d : 1), sizeof *w);
    double *was = fib_alloc(most * (d > 0 ? d : 1), sizeof *was);
    int64_t *order = fib_alloc(n, sizeof *order), *start = fib_calloc(k + 1, sizeof *start);
    int64_t *fill = fib_alloc(k, sizeof *fill), *next = fib_alloc(n, sizeof *next);
    double *hi = fib_alloc(n, sizeof *hi), *norm = fib_alloc(n, sizeof *norm);
    bool *changed = fib_alloc(k, sizeof *changed), *placed = fib_alloc(k, sizeof *placed);
    int64_t *oldof = fib_alloc(k, sizeof *oldof), *scan = fib_alloc(LLOYD_CHUNK, sizeof *scan);
    double *dots = fib_alloc(LLOYD_CHUNK * k, sizeof *dots);
    double *panel = fib_alloc(most * GRAM_WIDTH * GRAM_DEPTH, sizeof *panel);
    double *rows = fib_alloc(most * 4 * GRAM_DEPTH, sizeof *rows);
    double *delta = fib_alloc(k, sizeof *delta);
    float *scanf32 = NULL; /* the scanned rows in floats */
    int32_t status = FIB_OK;
    if (!delta || !V || !was || !w || !order || !start || !fill || !next || !hi || !norm ||
        !changed || !placed || !oldof || !scan || !dots || !panel || !rows) {
        status = fib_error(FIB_E_NOMEM, "out of memory refining %lld units", (long long)n);
        goto done;
    }
    for (int64_t i = 0; i < n; i++) {
        norm[i] = row_norm(r, i);
        hi[i] = INFINITY;
    }
    /* the dot products with every direction in floats, each candidate for a
     * move checked in double (r->float_cosines: budgets) */
    bool single = r->float_cosines;
    for (int64_t i = 0; i < n; i++)
        single = single && norm[i] < FLOAT_ROW_LIMIT;
    scanf32 = single ? fib_alloc(LLOYD_CHUNK * (d > 0 ? d : 1), sizeof *scanf32) : NULL;
    if (single && !scanf32) {
        status = fib_error(FIB_E_NOMEM, "out of memory refining %lld units", (long long)n);
        goto done;
    }
    for (int64_t c = 0; c < k; c++)
        changed[c] = true;
    for (int32_t it = 0; it < iterations; it++) {
        /* directions of the classes that changed, and how far they moved */
        memset(start, 0, (size_t)(k + 1) * sizeof *start);
        for (int64_t i = 0; i < n; i++)
            start[p->color[i] + 1]++;
        for (int64_t c = 0; c < k; c++)
            start[c + 1] += start[c];
        memcpy(fill, start, (size_t)k * sizeof *fill);
        for (int64_t i = 0; i < n; i++)
            order[fill[p->color[i]]++] = i;
        int threads = fib_thread_count(r->n_threads, k);
        threads = threads < LINKAGE_THREADS ? threads : LINKAGE_THREADS;
        FIB_PRAGMA(omp parallel for schedule(dynamic, 1) num_threads(threads))
        for (int64_t c = 0; c < k; c++) {
            delta[c] = 0;
            if (!changed[c])
                continue;
            /* scratch of this thread: the old direction, then the power
             * iteration's */
            double *old = was + (int64_t)fib_thread_num() * (d > 0 ? d : 1);
            memcpy(old, V + c * d, (size_t)d * sizeof *old);
            fib_top_direction(r, order + start[c], start[c + 1] - start[c], weight, V + c * d,
                              w + (int64_t)fib_thread_num() * (d > 0 ? d : 1));
            double moved2 = 0;
            for (int64_t j = 0; j < d; j++)
                moved2 += (V[c * d + j] - old[j]) * (V[c * d + j] - old[j]);
            delta[c] = sqrt(moved2);
        }
        double drift = 0;
        for (int64_t c = 0; c < k; c++)
            drift = delta[c] > drift ? delta[c] : drift;
        for (int64_t i = 0; i < n; i++)
            hi[i] += norm[i] * drift;
        /* a unit alone in its class has its row's direction, and by
         * Cauchy-Schwarz no dot product made in double exceeds |row| times
         * the longest direction by more than its rounding: `slack` bounds
         * that (d products and sums, two norms, the bound's own three
         * roundings), so a unit whose own dot product clears the bound by
         * the move's margin stays without a search */
        double longest2 = 0;
        for (int64_t c = 0; c < k; c++) {
            double s = 0;
            for (int64_t j = 0; j < d; j++)
                s += V[c * d + j] * V[c * d + j];
            longest2 = s > longest2 ? s : longest2;
        }
        double longest = sqrt(longest2), slack = 1 + (2.01 * (double)d + 16) * 0x1.0p-53;
        /* reassign: the direction capturing the most of the row, positively
         * (ties: the lowest class); a unit stays when nothing is better */
        bool moved = false;
        int64_t n_scan = 0;
        for (int64_t i = 0; i <= n; i++) {
            if (i < n) {
                if (fib_progress_cancelled(check)) {
                    status = fib_error(FIB_E_CANCELLED, "refinement cancelled by the progress "
                                                        "callback");
                    goto done;
                }
                const double *row = r->value + i * d;
                double own = 0;
                for (int64_t j = 0; j < d; j++)
                    own += row[j] * V[p->color[i] * d + j];
                /* a move needs a dot product above own * (1 + 1e-12); the
                 * margin covers the rounding of the dot products */
                bool alone = start[p->color[i] + 1] - start[p->color[i]] == 1;
                if (!r->search_all && (hi[i] + 1e-9 * norm[i] < own - fabs(own) * 1e-12 ||
                                       (alone && norm[i] * longest * slack <=
                                                     own * (1 + 1e-12) + 1e-300))) {
                    next[i] = p->color[i];
                    continue;
                }
                scan[n_scan++] = i;
                if (n_scan < LLOYD_CHUNK)
                    continue;
            }
            for (int64_t u = 0; single && u < n_scan; u++)
                for (int64_t j = 0; j < d; j++)
                    scanf32[u * d + j] = (float)r->value[scan[u] * d + j];
            rows_dot_directions(r, scan, n_scan, V, k, single ? scanf32 : NULL, panel, rows,
                                dots);
            for (int64_t u = 0; u < n_scan; u++) {
                int64_t x = scan[u], own = p->color[x], best = own;
                double *dx = dots + u * k;
                /* in floats: the exact value of every direction that may be
                 * the largest (within twice the error of the largest float
                 * value) and of the own class; the others stay below it and
                 * bound hi by their float value plus the error */
                double err = LLOYD_FLOAT_ERROR * norm[x] + (double)d * 0x1.0p-126;
                double top = -INFINITY, loose = -INFINITY;
                for (int64_t c = 0; single && c < k; c++)
                    top = dx[c] > top ? dx[c] : top;
                for (int64_t c = 0; single && c < k; c++) {
                    if (c == own || dx[c] >= top - 2 * err) {
                        dx[c] = row_dot(r, x, V + c * d);
                    } else {
                        loose = dx[c] + err > loose ? dx[c] + err : loose;
                        dx[c] = -INFINITY;
                    }
                }
                /* the largest dot product (the lowest class among equals),
                 * taken when it beats the own class's beyond rounding */
                double best_dot = dx[own];
                int64_t argmax = own;
                for (int64_t c = 0; c < k; c++)
                    if (dx[c] > dx[argmax] || (dx[c] == dx[argmax] && c < argmax))
                        argmax = c;
                if (dx[argmax] > best_dot * (1 + 1e-12) + 1e-300)
                    best = argmax;
                double other = loose;
                for (int64_t c = 0; c < k; c++)
                    if (c != best && dx[c] > other)
                        other = dx[c];
                next[x] = best;
                hi[x] = other;
                moved = moved || best != own;
            }
            n_scan = 0;
        }
        /* never empty a class: a unit leaving a class of one stays */
        memset(fill, 0, (size_t)k * sizeof *fill);
        for (int64_t i = 0; i < n; i++)
            fill[next[i]]++;
        for (int64_t i = 0; i < n; i++)
            if (fill[p->color[i]] == 0) {
                fill[next[i]]--;
                next[i] = p->color[i];
                fill[next[i]]++;
                hi[i] = INFINITY; /* its bound was for the class it left */
            }
        for (int64_t c = 0; c < k; c++)
            changed[c] = false;
        for (int64_t i = 0; i < n; i++)
            if (next[i] != p->color[i])
                changed[next[i]] = changed[p->color[i]] = true;
        memcpy(p->color, next, (size_t)n * sizeof *next);
        status = fib_partition_canonicalize(p);
        if (status || !moved)
            break;
        /* directions and flags follow the classes to their new names */
        for (int64_t c = 0; c < k; c++)
            oldof[c] = -1;
        for (int64_t i = 0; i < n; i++)
            oldof[p->color[i]] = next[i];
        bool renamed = p->n_classes == k;
        for (int64_t c = 0; c < p->n_classes && renamed; c++)
            renamed = oldof[c] >= 0;
        k = p->n_classes;
        if (!renamed) { /* not expected: start the bounds again */
            for (int64_t c = 0; c < k; c++)
                changed[c] = true;
            for (int64_t i = 0; i < n; i++)
                hi[i] = INFINITY;
            continue;
        }
        /* in place, cycle by cycle (oldof is a permutation): direction c
         * becomes old direction oldof[c], and flag c old flag oldof[c] */
        memset(placed, 0, (size_t)k * sizeof *placed);
        for (int64_t c = 0; c < k; c++) {
            if (placed[c])
                continue;
            memcpy(was, V + c * d, (size_t)d * sizeof *was);
            bool first = changed[c];
            int64_t x = c;
            for (; oldof[x] != c; x = oldof[x]) {
                memcpy(V + x * d, V + oldof[x] * d, (size_t)d * sizeof *V);
                changed[x] = changed[oldof[x]];
                placed[x] = true;
            }
            memcpy(V + x * d, was, (size_t)d * sizeof *V);
            changed[x] = first;
            placed[x] = true;
        }
    }
done:
    fib_free(V), fib_free(was), fib_free(w), fib_free(order), fib_free(start), fib_free(fill);
    fib_free(next), fib_free(hi), fib_free(norm), fib_free(changed), fib_free(placed);
    fib_free(oldof), fib_free(scan), fib_free(dots), fib_free(panel), fib_free(rows);
    fib_free(delta);
    fib_free(scanf32);
    return status;
}

/* Minimal balanced colouring by Hopcroft-style partition refinement.
 *
 * Cells are contiguous ranges of `elem` (nauty's lab/ptn layout): splitting
 * a cell only permutes its own range, so a cell's set of nodes stays the same
 * range forever. A splitter S is processed by walking the out-arcs of its
 * nodes: every target receives its sum of arc weights (or arc count) from S,
 * and is moved to the front of its cell ("touched"). A node is touched iff
 * its position lies before start + touched of its cell, so no mark array and
 * no per-step clearing are needed. Each touched cell is then cut into runs
 * of equal sums; untouched nodes form the run of sum 0.
 *
 * "Process all but the largest piece": the largest piece of a split keeps
 * the cell's id and its queue status, every other piece becomes a new queued
 * cell. Each node is relabelled only when its piece is at most half of its
 * old cell, which gives O(m log n) for counts (counting sort of the touched
 * nodes costs O(touched + arcs)). The tolerant mode queues every piece (see
 * docs/graphs.md). */
#include "graphs/refine.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define DOUBLE_EPS_HALF 0x1p-53
#define INSERTION_MAX 16
#define PROGRESS_EVERY 4096

typedef struct node_state {
    double sum;     /* weight sum (or count) received from the splitter */
    double abs_sum; /* sum of |weights| (rounding allowance) */
    int64_t cell;   /* ~cell (negative) once the cell is a singleton, so
                       that touching it costs no look-up of the cell */
    int64_t pos;    /* index in elem */
} node_state;

typedef struct cell_state {
    int64_t start;
    int64_t size;
    int64_t touched; /* touched nodes, at [start, start + touched) */
    int64_t queued;
} cell_state;

typedef struct sort_item {
    double key;
    double tol;
    int64_t node; /* -1: the untouched nodes (sum 0) */
} sort_item;

typedef struct refiner {
    int64_t n;
    int64_t m;
    /* out-arcs in colouring orientation (arc u -> v: v receives from u) */
    int64_t *off;
    int64_t *head;
    double *w;            /* weights in CSR order, NULL: counts */
    int32_t *type;        /* dense types in CSR order, NULL: one type */
    int32_t n_types;
    int64_t *indeg;
    int64_t max_indeg;

    node_state *node;
    int64_t *elem;
    cell_state *cell;
    int64_t n_cells;
    int64_t *queue;
    int64_t q_head;
    int64_t q_len;
    int64_t *touched;
    int64_t n_touched;
    int64_t *splitter;
    int64_t *scratch;
    sort_item *items;
    int64_t *bounds;
    int64_t *buckets;     /* max_indeg + 2, kept zero between uses */
    int64_t *arcs;        /* typed graphs: a splitter's arcs grouped by type */
    int64_t *type_count;  /* n_types, kept zero between uses */
    int32_t *type_list;

    bool weighted;
    bool tolerant;
    double eps;
    double rel;           /* 4u: rounding of the weights themselves */
} refiner;

void fib_refine_input_init(fib_refine_input *in)
{
    memset(in, 0, sizeof *in);
    in->convention = FIB_REFINE_PURE;
    in->tolerance = FIB_TOL_EXACT;
}

int32_t fib_refine_check(const fib_refine_input *in)
{
    if (!in)
        return fib_error(FIB_E_NULL, "refine: input is NULL");
    if (in->n_nodes < 0 || in->n_nodes > FIB_MAX_UNITS)
        return fib_error(FIB_E_SHAPE, "graph: %lld nodes (must be 0 .. 2^40)",
                         (long long)in->n_nodes);
    if (in->n_arcs < 0 || in->n_arcs > (INT64_C(1) << 52))
        return fib_error(FIB_E_SHAPE, "graph: %lld arcs (must be 0 .. 2^52)",
                         (long long)in->n_arcs);
    if (in->n_arcs > 0 && (!in->src || !in->dst))
        return fib_error(FIB_E_NULL, "graph: arc arrays are NULL");
    if (in->tolerance != FIB_TOL_EXACT && in->tolerance != FIB_TOL_ABS)
        return fib_error(FIB_E_INVALID, "graph: tolerance %d: node groups are coloured "
                         "with FIB_TOL_EXACT or FIB_TOL_ABS only", (int)in->tolerance);
    if (in->tolerance == FIB_TOL_ABS && !(in->eps >= 0 && isfinite(in->eps)))
        return fib_error(FIB_E_INVALID, "graph: eps must be finite and >= 0");
    if (in->convention < FIB_REFINE_PURE ||
        in->convention > FIB_REFINE_NETWORKFIBERS)
        return fib_error(FIB_E_INVALID, "graph: unknown convention %d",
                         (int)in->convention);
    if (!(in->weight_unit >= 0 && in->weight_unit < 1))
        return fib_error(FIB_E_INVALID, "graph: weight unit must be in [0, 1)");
    for (int64_t i = 0; i < in->n_arcs; i++) {
        if (in->src[i] < 0 || in->src[i] >= in->n_nodes ||
            in->dst[i] < 0 || in->dst[i] >= in->n_nodes)
            return fib_error(FIB_E_RANGE,
                             "graph: arc %lld (%lld -> %lld) has a node "
                             "outside 0 .. %lld",
                             (long long)i, (long long)in->src[i],
                             (long long)in->dst[i],
                             (long long)in->n_nodes - 1);
        if (in->weight && !isfinite(in->weight[i]))
            return fib_error(FIB_E_NONFINITE, "graph: weight of arc %lld is "
                             "not finite", (long long)i);
    }
    return FIB_OK;
}

/* ------------------------------------------------------------------------ */
/* Building                                                                 */
/* ------------------------------------------------------------------------ */

static void refiner_free(refiner *r)
{
    fib_free(r->off);
    fib_free(r->head);
    fib_free(r->w);
    fib_free(r->type);
    fib_free(r->indeg);
    fib_free(r->node);
    fib_free(r->elem);
    fib_free(r->cell);
    fib_free(r->queue);
    fib_free(r->touched);
    fib_free(r->splitter);
    fib_free(r->scratch);
    fib_free(r->items);
    fib_free(r->bounds);
    fib_free(r->buckets);
    fib_free(r->arcs);
    fib_free(r->type_count);
    fib_free(r->type_list);
}

/* Dense type ids by first appearance (open addressing on int32 values). */
static int32_t dense_types(int64_t m, const int32_t *type, int32_t *dense,
                           int32_t *n_types)
{
    int64_t cap = 64;
    int32_t count = 0;
    int32_t *keys = fib_alloc(cap, sizeof *keys);
    int32_t *vals = fib_alloc(cap, sizeof *vals);
    if (!keys || !vals)
        goto nomem;
    for (int64_t i = 0; i < cap; i++)
        vals[i] = -1;
    for (int64_t i = 0; i < m; i++) {
        uint32_t h = (uint32_t)type[i] * 0x9E3779B1u;
        int64_t slot = (int64_t)(h & (uint32_t)(cap - 1));
        while (vals[slot] >= 0 && keys[slot] != type[i])
            slot = (slot + 1) & (cap - 1);
        if (vals[slot] < 0) {
            keys[slot] = type[i];
            vals[slot] = count++;
            if ((int64_t)count * 2 > cap) {
                /* grow and rehash */
                int64_t ncap = cap * 2;
                int32_t *nk = fib_alloc(ncap, sizeof *nk);
                int32_t *nv = fib_alloc(ncap, sizeof *nv);
                if (!nk || !nv) {
                    fib_free(nk);
                    fib_free(nv);
                    goto nomem;
                }
                for (int64_t j = 0; j < ncap; j++)
                    nv[j] = -1;
                for (int64_t j = 0; j < cap; j++) {
                    if (vals[j] < 0)
                        continue;
                    uint32_t hj = (uint32_t)keys[j] * 0x9E3779B1u;
                    int64_t s = (int64_t)(hj & (uint32_t)(ncap - 1));
                    while (nv[s] >= 0)
                        s = (s + 1) & (ncap - 1);
                    nk[s] = keys[j];
                    nv[s] = vals[j];
                }
                fib_free(keys);
                fib_free(vals);
                keys = nk;
                vals = nv;
                cap = ncap;
                /* find the slot again for dense[i] */
                h = (uint32_t)type[i] * 0x9E3779B1u;
                slot = (int64_t)(h & (uint32_t)(cap - 1));
                while (keys[slot] != type[i] || vals[slot] < 0)
                    slot = (slot + 1) & (cap - 1);
            }
        }
        dense[i] = vals[slot];
    }
    fib_free(keys);
    fib_free(vals);
    *n_types = count;
    return FIB_OK;
nomem:
    fib_free(keys);
    fib_free(vals);
    return fib_error(FIB_E_NOMEM, "graph: out of memory for edge types");
}

/* Out-arc CSR in colouring orientation, in-degrees, dense types. */
static int32_t build_csr(refiner *r, const fib_refine_input *in)
{
    int64_t n = r->n, m = r->m;
    r->off = fib_calloc(n + 1, sizeof *r->off);
    r->indeg = fib_calloc(n > 0 ? n : 1, sizeof *r->indeg);
    r->head = fib_alloc(m > 0 ? m : 1, sizeof *r->head);
    if (!r->off || !r->indeg || !r->head)
        return fib_error(FIB_E_NOMEM, "graph: out of memory for %lld arcs",
                         (long long)m);
    const int64_t *tail_of = in->reverse ? in->dst : in->src;
    const int64_t *head_of = in->reverse ? in->src : in->dst;
    for (int64_t i = 0; i < m; i++) {
        r->off[tail_of[i] + 1]++;
        r->indeg[head_of[i]]++;
    }
    for (int64_t v = 0; v < n; v++) {
        r->off[v + 1] += r->off[v];
        if (r->indeg[v] > r->max_indeg)
            r->max_indeg = r->indeg[v];
    }

    int32_t *dense = NULL;
    if (in->type && m > 0) {
        bool all_same = true;
        for (int64_t i = 1; i < m && all_same; i++)
            all_same = in->type[i] == in->type[0];
        if (!all_same) {
            dense = fib_alloc(m, sizeof *dense);
            if (!dense)
                return fib_error(FIB_E_NOMEM, "graph: out of memory");
            int32_t st = dense_types(m, in->type, dense, &r->n_types);
            if (st != FIB_OK) {
                fib_free(dense);
                return st;
            }
            r->type = fib_alloc(m, sizeof *r->type);
            if (!r->type) {
                fib_free(dense);
                return fib_error(FIB_E_NOMEM, "graph: out of memory");
            }
        }
    }
    if (in->weight && m > 0) {
        r->w = fib_alloc(m, sizeof *r->w);
        if (!r->w) {
            fib_free(dense);
            return fib_error(FIB_E_NOMEM, "graph: out of memory");
        }
    }
    /* fill: cursor in elem (not yet used) */
    int64_t *cursor = fib_alloc(n > 0 ? n : 1, sizeof *cursor);
    if (!cursor) {
        fib_free(dense);
        return fib_error(FIB_E_NOMEM, "graph: out of memory");
    }
    if (n > 0)
        memcpy(cursor, r->off, (size_t)n * sizeof *cursor);
    for (int64_t i = 0; i < m; i++) {
        int64_t p = cursor[tail_of[i]]++;
        r->head[p] = head_of[i];
        if (r->w)
            r->w[p] = in->weight[i];
        if (r->type)
            r->type[p] = dense[i];
    }
    fib_free(cursor);
    fib_free(dense);
    return FIB_OK;
}

static int32_t alloc_state(refiner *r)
{
    int64_t n = r->n > 0 ? r->n : 1;
    r->node = fib_alloc(n, sizeof *r->node);
    r->elem = fib_alloc(n, sizeof *r->elem);
    r->cell = fib_alloc(n, sizeof *r->cell);
    r->queue = fib_alloc(n, sizeof *r->queue);
    r->touched = fib_alloc(n, sizeof *r->touched);
    r->splitter = fib_alloc(n, sizeof *r->splitter);
    r->scratch = fib_alloc(n, sizeof *r->scratch);
    r->items = fib_alloc(n + 1, sizeof *r->items);
    r->bounds = fib_alloc(n + 2, sizeof *r->bounds);
    r->buckets = fib_calloc(r->max_indeg + 2, sizeof *r->buckets);
    if (!r->node || !r->elem || !r->cell || !r->queue || !r->touched ||
        !r->splitter || !r->scratch || !r->items || !r->bounds || !r->buckets)
        return fib_error(FIB_E_NOMEM, "graph: out of memory for %lld nodes",
                         (long long)r->n);
    if (r->type) {
        r->arcs = fib_alloc(r->m, sizeof *r->arcs);
        r->type_count = fib_calloc(r->n_types, sizeof *r->type_count);
        r->type_list = fib_alloc(r->n_types, sizeof *r->type_list);
        if (!r->arcs || !r->type_count || !r->type_list)
            return fib_error(FIB_E_NOMEM, "graph: out of memory");
    }
    return FIB_OK;
}

static void enqueue(refiner *r, int64_t c)
{
    int64_t slot = r->q_head + r->q_len;
    if (slot >= r->n)
        slot -= r->n;
    r->queue[slot] = c;
    r->q_len++;
    r->cell[c].queued = 1;
}

static int64_t dequeue(refiner *r)
{
    int64_t c = r->queue[r->q_head];
    r->q_head = r->q_head + 1 == r->n ? 0 : r->q_head + 1;
    r->q_len--;
    r->cell[c].queued = 0;
    return c;
}

/* ------------------------------------------------------------------------ */
/* Initial partition and conventions                                        */
/* ------------------------------------------------------------------------ */

/* Labels of the convention (NULL for pure) and its extra splitters. */
static int32_t convention_labels(refiner *r, int32_t convention,
                                 int64_t *label, int64_t *extras,
                                 int64_t *n_extras)
{
    int64_t n = r->n;
    *n_extras = 0;
    /* self-loop-only nodes: in-degree > 0, every in-arc a self-loop */
    int64_t *loops = fib_calloc(n, sizeof *loops);
    if (!loops)
        return fib_error(FIB_E_NOMEM, "graph: out of memory");
    for (int64_t u = 0; u < n; u++)
        for (int64_t a = r->off[u]; a < r->off[u + 1]; a++)
            if (r->head[a] == u)
                loops[u]++;

    int32_t status = FIB_OK;
    if (convention == FIB_REFINE_PUBLISHED) {
        int64_t n_scc = 0;
        int64_t *scc = fib_alloc(n, sizeof *scc);
        int64_t *scc_size = fib_calloc(n, sizeof *scc_size);
        uint8_t *has_input = fib_calloc(n, sizeof *has_input);
        if (!scc || !scc_size || !has_input) {
            status = fib_error(FIB_E_NOMEM, "graph: out of memory");
        } else {
            status = fib_scc_csr(n, r->off, r->head, scc, &n_scc, NULL);
        }
        if (status == FIB_OK) {
            for (int64_t v = 0; v < n; v++)
                scc_size[scc[v]]++;
            for (int64_t u = 0; u < n; u++)
                for (int64_t a = r->off[u]; a < r->off[u + 1]; a++)
                    if (scc[r->head[a]] != scc[u])
                        has_input[scc[r->head[a]]] = 1;
            for (int64_t v = 0; v < n; v++) {
                int64_t s = scc[v];
                if (has_input[s]) {
                    label[v] = 0;
                } else if (scc_size[s] == 1 && r->indeg[v] > 0) {
                    label[v] = 0; /* only self-loops: an extra splitter */
                    extras[(*n_extras)++] = v;
                } else {
                    label[v] = 1 + s; /* input-less SCC or in-degree 0 */
                }
            }
        }
        fib_free(scc);
        fib_free(scc_size);
        fib_free(has_input);
    } else { /* FIB_REFINE_NETWORKFIBERS: weakly connected components */
        int64_t *parent = fib_alloc(n, sizeof *parent);
        if (!parent) {
            status = fib_error(FIB_E_NOMEM, "graph: out of memory");
        } else {
            for (int64_t v = 0; v < n; v++)
                parent[v] = v;
            for (int64_t u = 0; u < n; u++) {
                for (int64_t a = r->off[u]; a < r->off[u + 1]; a++)
                    fib_uf_union(parent, u, r->head[a]);
            }
            for (int64_t v = 0; v < n; v++) {
                int64_t x = fib_uf_find(parent, v);
                if (r->indeg[v] == 0) {
                    label[v] = n + v; /* singleton */
                } else {
                    label[v] = x;
                    if (loops[v] == r->indeg[v])
                        extras[(*n_extras)++] = v;
                }
            }
        }
        fib_free(parent);
    }
    fib_free(loops);
    return status;
}

/* Lays out the initial cells (all queued) and returns the extra splitters. */
static int32_t initial_partition(refiner *r, const fib_refine_input *in,
                                 int64_t **extras_out, int64_t *n_extras)
{
    int64_t n = r->n;
    int64_t *user = NULL, *conv = NULL, *ids = NULL, *extras = NULL;
    int64_t n_ids = 1;
    int32_t status = FIB_OK;
    *extras_out = NULL;
    *n_extras = 0;

    if (in->initial) {
        user = fib_alloc(n, sizeof *user);
        if (!user)
            goto nomem;
        status = fib_relabel_pairs(n, in->initial, NULL, user, &n_ids);
        if (status != FIB_OK)
            goto done;
    }
    if (in->convention != FIB_REFINE_PURE) {
        conv = fib_alloc(n, sizeof *conv);
        extras = fib_alloc(n, sizeof *extras);
        if (!conv || !extras)
            goto nomem;
        status = convention_labels(r, in->convention, conv, extras, n_extras);
        if (status != FIB_OK)
            goto done;
    }
    ids = fib_alloc(n, sizeof *ids);
    if (!ids)
        goto nomem;
    if (user || conv) {
        if (!user) {
            user = fib_calloc(n, sizeof *user);
            if (!user)
                goto nomem;
        }
        status = fib_relabel_pairs(n, user, conv, ids, &n_ids);
        if (status != FIB_OK)
            goto done;
    } else {
        memset(ids, 0, (size_t)n * sizeof *ids);
        n_ids = 1;
    }
    /* counting sort of the nodes by initial class: cells in class order */
    for (int64_t c = 0; c < n_ids; c++) {
        r->cell[c].start = 0;
        r->cell[c].size = 0;
        r->cell[c].touched = 0;
        r->cell[c].queued = 0;
    }
    for (int64_t v = 0; v < n; v++)
        r->cell[ids[v]].size++;
    int64_t at = 0;
    for (int64_t c = 0; c < n_ids; c++) {
        r->cell[c].start = at;
        at += r->cell[c].size;
        r->cell[c].touched = 0; /* reused as a fill cursor below */
    }
    for (int64_t v = 0; v < n; v++) {
        cell_state *c = &r->cell[ids[v]];
        int64_t p = c->start + c->touched++;
        r->elem[p] = v;
        r->node[v].pos = p;
        r->node[v].cell = c->size == 1 ? ~ids[v] : ids[v];
        r->node[v].sum = 0;
        r->node[v].abs_sum = 0;
    }
    r->n_cells = n_ids;
    for (int64_t c = 0; c < n_ids; c++) {
        r->cell[c].touched = 0;
        enqueue(r, c);
    }
    *extras_out = extras;
    extras = NULL;
    goto done;
nomem:
    status = fib_error(FIB_E_NOMEM, "graph: out of memory");
done:
    fib_free(user);
    fib_free(conv);
    fib_free(ids);
    fib_free(extras);
    if (status != FIB_OK) {
        fib_free(*extras_out);
        *extras_out = NULL;
    }
    return status;
}

/* ------------------------------------------------------------------------ */
/* Splitting                                                                */
/* ------------------------------------------------------------------------ */

#if defined(__GNUC__)
#  define PREFETCH(p) __builtin_prefetch(p)
#else
#  define PREFETCH(p) ((void)0)
#endif
#define PREFETCH_AHEAD 12

static inline void touch(refiner *r, int64_t v, double w)
{
    node_state *nv = &r->node[v];
    if (nv->cell < 0)
        return; /* a singleton never splits */
    cell_state *c = &r->cell[nv->cell];
    int64_t front = c->start + c->touched;
    if (nv->pos >= front) {
        if (c->touched == 0)
            r->touched[r->n_touched++] = nv->cell;
        int64_t other = r->elem[front];
        r->elem[nv->pos] = other;
        r->node[other].pos = nv->pos;
        r->elem[front] = v;
        nv->pos = front;
        c->touched++;
        nv->sum = w;
        nv->abs_sum = fabs(w);
    } else {
        nv->sum += w;
        nv->abs_sum += fabs(w);
    }
}

/* Turns pieces [bounds[p], bounds[p+1]) of cell ci (offsets from its start)
 * into cells: the largest keeps ci, the others are new and queued. */
static void apply_pieces(refiner *r, int64_t ci, const int64_t *bounds,
                         int64_t n_pieces)
{
    if (n_pieces <= 1)
        return;
    int64_t start = r->cell[ci].start;
    int64_t largest = 0, largest_size = -1;
    for (int64_t p = 0; p < n_pieces; p++) {
        int64_t size = bounds[p + 1] - bounds[p];
        if (size > largest_size) {
            largest_size = size;
            largest = p;
        }
    }
    for (int64_t p = 0; p < n_pieces; p++) {
        if (p == largest)
            continue;
        int64_t nc = r->n_cells++;
        cell_state *c = &r->cell[nc];
        c->start = start + bounds[p];
        c->size = bounds[p + 1] - bounds[p];
        c->touched = 0;
        c->queued = 0;
        for (int64_t i = c->start; i < c->start + c->size; i++)
            r->node[r->elem[i]].cell = c->size == 1 ? ~nc : nc;
        enqueue(r, nc);
    }
    r->cell[ci].start = start + bounds[largest];
    r->cell[ci].size = largest_size;
    if (largest_size == 1)
        r->node[r->elem[start + bounds[largest]]].cell = ~ci;
    if (r->tolerant && !r->cell[ci].queued)
        enqueue(r, ci);
}

static int compare_items(const void *pa, const void *pb)
{
    const sort_item *a = pa, *b = pb;
    if (a->key < b->key)
        return -1;
    if (a->key > b->key)
        return 1;
    return (a->node > b->node) - (a->node < b->node);
}

static void sort_items(sort_item *items, int64_t k)
{
    if (k <= INSERTION_MAX) {
        for (int64_t i = 1; i < k; i++) {
            sort_item x = items[i];
            int64_t j = i;
            while (j > 0 && compare_items(&items[j - 1], &x) > 0) {
                items[j] = items[j - 1];
                j--;
            }
            items[j] = x;
        }
    } else {
        qsort(items, (size_t)k, sizeof *items, compare_items);
    }
}

/* Counts: sums are exact integers >= 1. */
static void split_counts(refiner *r, int64_t ci)
{
    cell_state *c = &r->cell[ci];
    int64_t k = c->touched, start = c->start, size = c->size;
    c->touched = 0;
    double first = r->node[r->elem[start]].sum;
    double lo = first, hi = first;
    for (int64_t i = 1; i < k; i++) {
        double s = r->node[r->elem[start + i]].sum;
        lo = s < lo ? s : lo;
        hi = s > hi ? s : hi;
    }
    int64_t *bounds = r->bounds;
    int64_t n_pieces = 0;
    if (lo == hi) {
        if (k == size)
            return;
        bounds[0] = 0;
        bounds[1] = k;
        bounds[2] = size;
        apply_pieces(r, ci, bounds, 2);
        return;
    }
    int64_t range = (int64_t)(hi - lo) + 1;
    if (k <= INSERTION_MAX || range > 4 * k + 64) {
        sort_item *items = r->items;
        for (int64_t i = 0; i < k; i++) {
            int64_t v = r->elem[start + i];
            items[i].key = r->node[v].sum;
            items[i].tol = 0;
            items[i].node = v;
        }
        sort_items(items, k);
        for (int64_t i = 0; i < k; i++) {
            int64_t v = items[i].node;
            r->elem[start + i] = v;
            r->node[v].pos = start + i;
            if (i == 0 || items[i].key != items[i - 1].key)
                bounds[n_pieces++] = i;
        }
    } else {
        /* counting sort, stable in touch order: O(k + range), and range is
         * at most the number of arcs that reached this cell */
        int64_t *count = r->buckets;
        int64_t *copy = r->scratch;
        for (int64_t i = 0; i < k; i++) {
            copy[i] = r->elem[start + i];
            count[(int64_t)(r->node[copy[i]].sum - lo)]++;
        }
        int64_t at = 0;
        for (int64_t b = 0; b < range; b++) {
            int64_t cnt = count[b];
            if (cnt > 0)
                bounds[n_pieces++] = at;
            count[b] = at;
            at += cnt;
        }
        for (int64_t i = 0; i < k; i++) {
            int64_t v = copy[i];
            int64_t p = start + count[(int64_t)(r->node[v].sum - lo)]++;
            r->elem[p] = v;
            r->node[v].pos = p;
        }
        memset(count, 0, (size_t)range * sizeof *count);
    }
    if (k < size)
        bounds[n_pieces++] = k;
    bounds[n_pieces] = size;
    apply_pieces(r, ci, bounds, n_pieces);
}

static inline bool same_group(const refiner *r, const sort_item *anchor,
                              const sort_item *x)
{
    double d = x->key - anchor->key; /* >= 0: sorted */
    if (r->tolerant)
        return d <= r->eps;
    return d <= anchor->tol + x->tol;
}

/* Real weights: sort-and-sweep, the untouched nodes are one item of sum 0. */
static void split_weights(refiner *r, int64_t ci)
{
    cell_state *c = &r->cell[ci];
    int64_t k = c->touched, start = c->start, size = c->size;
    int64_t rest = size - k;
    c->touched = 0;
    sort_item *items = r->items;
    for (int64_t i = 0; i < k; i++) {
        int64_t v = r->elem[start + i];
        items[i].key = r->node[v].sum;
        items[i].tol = r->tolerant ? 0 :
            (r->rel + (double)(r->indeg[v] + 1) * DOUBLE_EPS_HALF) *
            r->node[v].abs_sum;
        items[i].node = v;
    }
    sort_items(items, k);
    int64_t total = k;
    if (rest > 0) {
        int64_t at = 0;
        while (at < k && items[at].key < 0)
            at++;
        memmove(items + at + 1, items + at, (size_t)(k - at) * sizeof *items);
        items[at].key = 0;
        items[at].tol = 0;
        items[at].node = -1;
        total = k + 1;
    }
    /* runs, anchored at their first (smallest) item */
    int64_t *bounds = r->bounds;
    int64_t n_runs = 0, zero_run = -1;
    for (int64_t i = 0; i < total;) {
        int64_t j = i + 1;
        bool has_zero = items[i].node < 0;
        while (j < total && same_group(r, &items[i], &items[j])) {
            has_zero = has_zero || items[j].node < 0;
            j++;
        }
        if (has_zero)
            zero_run = n_runs;
        bounds[n_runs++] = i;
        i = j;
    }
    bounds[n_runs] = total;
    if (n_runs == 1)
        return; /* no split; positions unchanged */
    /* write back: runs without the zero item, then the zero run's touched
     * nodes next to the untouched tail. Piece boundaries are recomputed in
     * place over `bounds` (pieces never outnumber runs). */
    int64_t write = start, n_pieces = 0;
    int64_t zb = zero_run >= 0 ? bounds[zero_run] : 0;
    int64_t ze = zero_run >= 0 ? bounds[zero_run + 1] : 0;
    for (int64_t run = 0; run < n_runs; run++) {
        if (run == zero_run)
            continue;
        int64_t b = bounds[run], e = bounds[run + 1];
        /* n_pieces <= run: bounds[run + 1] is not overwritten yet */
        bounds[n_pieces++] = write - start;
        for (int64_t i = b; i < e; i++) {
            r->elem[write] = items[i].node;
            r->node[items[i].node].pos = write;
            write++;
        }
    }
    if (zero_run >= 0) {
        bounds[n_pieces++] = write - start;
        for (int64_t i = zb; i < ze; i++) {
            if (items[i].node < 0)
                continue;
            r->elem[write] = items[i].node;
            r->node[items[i].node].pos = write;
            write++;
        }
    }
    bounds[n_pieces] = size;
    apply_pieces(r, ci, bounds, n_pieces);
}

static void split_touched(refiner *r)
{
    for (int64_t t = 0; t < r->n_touched; t++) {
        if (r->weighted)
            split_weights(r, r->touched[t]);
        else
            split_counts(r, r->touched[t]);
    }
    r->n_touched = 0;
}

/* Splits every cell by the sums its nodes receive from the node set S. */
static void process_splitter(refiner *r, const int64_t *S, int64_t count)
{
    if (!r->type) {
        for (int64_t i = 0; i < count; i++) {
            int64_t u = S[i];
            int64_t end = r->off[u + 1];
            for (int64_t a = r->off[u]; a < end; a++) {
                if (a + PREFETCH_AHEAD < r->m)
                    PREFETCH(&r->node[r->head[a + PREFETCH_AHEAD]]);
                touch(r, r->head[a], r->w ? r->w[a] : 1.0);
            }
        }
        split_touched(r);
        return;
    }
    /* typed: group the splitter's arcs by type, then split type by type */
    int32_t n_list = 0;
    for (int64_t i = 0; i < count; i++) {
        int64_t u = S[i];
        for (int64_t a = r->off[u]; a < r->off[u + 1]; a++) {
            int32_t t = r->type[a];
            if (r->type_count[t]++ == 0)
                r->type_list[n_list++] = t;
        }
    }
    int64_t at = 0;
    for (int32_t j = 0; j < n_list; j++) {
        int32_t t = r->type_list[j];
        int64_t cnt = r->type_count[t];
        r->type_count[t] = at;
        at += cnt;
    }
    for (int64_t i = 0; i < count; i++) {
        int64_t u = S[i];
        for (int64_t a = r->off[u]; a < r->off[u + 1]; a++)
            r->arcs[r->type_count[r->type[a]]++] = a;
    }
    int64_t begin = 0;
    for (int32_t j = 0; j < n_list; j++) {
        int32_t t = r->type_list[j];
        int64_t end = r->type_count[t];
        r->type_count[t] = 0;
        for (int64_t i = begin; i < end; i++) {
            int64_t a = r->arcs[i];
            if (i + PREFETCH_AHEAD < end)
                PREFETCH(&r->node[r->head[r->arcs[i + PREFETCH_AHEAD]]]);
            touch(r, r->head[a], r->w ? r->w[a] : 1.0);
        }
        split_touched(r);
        begin = end;
    }
}

/* The whole node set as the first splitter of an untyped graph: the sums
 * are the in-degrees (weighted), streamed over the arcs without moving
 * nodes; then the nodes with inputs are laid out first as "touched". */
static void process_everything(refiner *r)
{
    for (int64_t v = 0; v < r->n; v++) {
        r->node[v].sum = 0;
        r->node[v].abs_sum = 0;
    }
    for (int64_t a = 0; a < r->m; a++) {
        double w = r->w ? r->w[a] : 1.0;
        node_state *nv = &r->node[r->head[a]];
        nv->sum += w;
        nv->abs_sum += fabs(w);
    }
    int64_t k = 0;
    for (int64_t v = 0; v < r->n; v++)
        if (r->indeg[v] > 0)
            r->elem[k++] = v;
    for (int64_t v = 0, j = k; v < r->n; v++)
        if (r->indeg[v] == 0)
            r->elem[j++] = v;
    for (int64_t i = 0; i < r->n; i++)
        r->node[r->elem[i]].pos = i;
    if (k == 0)
        return;
    r->cell[0].touched = k;
    r->touched[0] = 0;
    r->n_touched = 1;
    split_touched(r);
}

/* ------------------------------------------------------------------------ */
/* Entry point                                                              */
/* ------------------------------------------------------------------------ */

int32_t fib_refine(const fib_refine_input *in, int64_t *color,
                   int64_t *n_classes)
{
    int32_t status = fib_refine_check(in);
    if (status != FIB_OK)
        return status;
    if (!color || !n_classes)
        return fib_error(FIB_E_NULL, "refine: output is NULL");
    if (in->n_nodes == 0) {
        *n_classes = 0;
        return FIB_OK;
    }

    refiner r;
    memset(&r, 0, sizeof r);
    r.n = in->n_nodes;
    r.m = in->n_arcs;
    r.weighted = in->weight != NULL;
    r.tolerant = in->tolerance == FIB_TOL_ABS;
    r.eps = in->eps;
    r.rel = 4.0 * (in->weight_unit > 0 ? in->weight_unit : DOUBLE_EPS_HALF);
    if (r.tolerant)
        r.weighted = true; /* sweep with eps, counts included */

    int64_t *extras = NULL, n_extras = 0;
    status = build_csr(&r, in);
    if (status == FIB_OK)
        status = alloc_state(&r);
    if (status == FIB_OK)
        status = initial_partition(&r, in, &extras, &n_extras);
    if (status != FIB_OK)
        goto done;

    if (r.n_cells == 1 && !r.type && n_extras == 0 && r.n > 1) {
        dequeue(&r);
        process_everything(&r);
    }
    for (int64_t i = 0; i < n_extras; i++)
        process_splitter(&r, &extras[i], 1);

    int64_t steps = 0;
    while (r.q_len > 0) {
        int64_t c = dequeue(&r);
        int64_t size = r.cell[c].size;
        memcpy(r.splitter, r.elem + r.cell[c].start,
               (size_t)size * sizeof *r.splitter);
        process_splitter(&r, r.splitter, size);
        if (in->progress && ++steps % PROGRESS_EVERY == 0 &&
            in->progress(in->progress_user, r.n_cells, r.n) != 0) {
            status = fib_error(FIB_E_CANCELLED, "graph: colouring cancelled");
            goto done;
        }
        if (r.n_cells == r.n)
            break; /* discrete: nothing can split any more */
    }

    /* canonical numbering: classes in order of their lowest node */
    int64_t *map = r.queue;
    for (int64_t c = 0; c < r.n_cells; c++)
        map[c] = -1;
    int64_t next = 0;
    for (int64_t v = 0; v < r.n; v++) {
        int64_t c = r.node[v].cell < 0 ? ~r.node[v].cell : r.node[v].cell;
        if (map[c] < 0)
            map[c] = next++;
        color[v] = map[c];
    }
    *n_classes = next;
done:
    fib_free(extras);
    refiner_free(&r);
    return status;
}

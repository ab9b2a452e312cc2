/* Automorphisms of labelled directed graphs by individualisation and
 * refinement (the scheme of McKay's nauty, written from its description):
 *
 *  - an ordered partition (cells are position ranges of `lab`) is refined
 *    to an equitable one; a cell is split by the hash sums of the labelled
 *    arcs each member has from (then to) a splitter cell, pieces ordered by
 *    that value, so the result and its trace depend on the structure only;
 *  - the first path individualises the lowest node of the first non-single
 *    cell until the partition is discrete (its leaf);
 *  - from the deepest level up, every candidate v of that level's cell not
 *    yet in the orbit of the first path's node w is individualised in turn
 *    and its subtree searched for a leaf whose map from the first leaf is an
 *    automorphism (checked exactly); one found is a generator. Subtrees
 *    whose refinement trace differs from the first path's are cut.
 *
 * The generators found this way generate the whole group (each level finds
 * the orbit of w in the stabiliser of the nodes above it), so the union of
 * their cycles is the orbit partition. Boundaries between cells record the
 * level that made them (`ptn`), so going back to a level is one scan. */
#include "graphs/automorphism.h"

#include <stdlib.h>
#include <string.h>

#define NO_BOUNDARY INT32_MAX

static uint64_t weight_bits(double w)
{
    if (w == 0.0)
        return 0; /* -0 equals +0 */
    uint64_t bits;
    memcpy(&bits, &w, sizeof bits);
    return bits;
}

typedef struct arc_key {
    int64_t src, dst;
    uint64_t weight;
    int64_t mult;
    int32_t type;
} arc_key;

static int cmp_arc_key(const void *pa, const void *pb)
{
    const arc_key *a = pa, *b = pb;
    if (a->src != b->src)
        return a->src < b->src ? -1 : 1;
    if (a->dst != b->dst)
        return a->dst < b->dst ? -1 : 1;
    if (a->type != b->type)
        return a->type < b->type ? -1 : 1;
    if (a->weight != b->weight)
        return a->weight < b->weight ? -1 : 1;
    return (a->mult > b->mult) - (a->mult < b->mult);
}

static arc_key key_of(const fib_aut_input *in, int64_t a)
{
    arc_key k;
    memset(&k, 0, sizeof k); /* padding compared by memcmp-free code only */
    k.src = in->src[a];
    k.dst = in->dst[a];
    k.type = in->type ? in->type[a] : 0;
    k.weight = weight_bits(in->weight ? in->weight[a] : 1.0);
    k.mult = in->mult ? in->mult[a] : 1;
    return k;
}

static uint64_t arc_hash(const fib_aut_input *in, int64_t a)
{
    arc_key k = key_of(in, a);
    uint64_t h = fib_mix64((uint64_t)(uint32_t)k.type + UINT64_C(0x9e3779b97f4a7c15));
    h = fib_mix64(h ^ k.weight);
    return fib_mix64(h ^ (uint64_t)k.mult);
}

/* Sorted keys of the arcs, for exact checks. */
typedef struct arc_set {
    int64_t m;
    arc_key *sorted;
    arc_key *scratch;
} arc_set;

static void arc_set_clear(arc_set *s)
{
    fib_free(s->sorted);
    fib_free(s->scratch);
    memset(s, 0, sizeof *s);
}

static int32_t arc_set_init(arc_set *s, const fib_aut_input *in)
{
    memset(s, 0, sizeof *s);
    s->m = in->n_arcs;
    if (s->m == 0)
        return FIB_OK;
    s->sorted = fib_alloc(s->m, sizeof *s->sorted);
    s->scratch = fib_alloc(s->m, sizeof *s->scratch);
    if (!s->sorted || !s->scratch) {
        arc_set_clear(s);
        return fib_error(FIB_E_NOMEM, "automorphisms: out of memory for %lld arcs",
                         (long long)s->m);
    }
    for (int64_t a = 0; a < s->m; a++)
        s->sorted[a] = key_of(in, a);
    qsort(s->sorted, (size_t)s->m, sizeof *s->sorted, cmp_arc_key);
    return FIB_OK;
}

static bool same_key(const arc_key *a, const arc_key *b)
{
    return a->src == b->src && a->dst == b->dst && a->type == b->type &&
           a->weight == b->weight && a->mult == b->mult;
}

/* perm must already be known to be a colour-preserving bijection. */
static bool arcs_preserved(const fib_aut_input *in, arc_set *s,
                           const int64_t *perm)
{
    for (int64_t a = 0; a < s->m; a++) {
        arc_key k = key_of(in, a);
        k.src = perm[k.src];
        k.dst = perm[k.dst];
        s->scratch[a] = k;
    }
    if (s->m > 0)
        qsort(s->scratch, (size_t)s->m, sizeof *s->scratch, cmp_arc_key);
    for (int64_t a = 0; a < s->m; a++)
        if (!same_key(&s->scratch[a], &s->sorted[a]))
            return false;
    return true;
}

int32_t fib_aut_check(const fib_aut_input *in, const int64_t *perm,
                      bool *is_out)
{
    int64_t n = in->n_nodes;
    *is_out = false;
    if (n == 0) {
        *is_out = true;
        return FIB_OK;
    }
    uint8_t *seen = fib_calloc(n, 1);
    if (!seen)
        return fib_error(FIB_E_NOMEM, "automorphisms: out of memory");
    bool ok = true;
    for (int64_t v = 0; v < n && ok; v++) {
        int64_t p = perm[v];
        ok = p >= 0 && p < n && !seen[p] &&
             (!in->initial || in->initial[p] == in->initial[v]);
        if (ok)
            seen[p] = 1;
    }
    fib_free(seen);
    if (!ok)
        return FIB_OK;
    arc_set s;
    int32_t status = arc_set_init(&s, in);
    if (status)
        return status;
    *is_out = arcs_preserved(in, &s, perm);
    arc_set_clear(&s);
    return FIB_OK;
}

/* ------------------------------------------------------------------------ */
/* The search state                                                         */
/* ------------------------------------------------------------------------ */

typedef struct csr {
    int64_t *off;   /* n + 1 */
    int64_t *nbr;   /* m */
    uint64_t *hash; /* m */
} csr;

typedef struct fv_pair {
    uint64_t f;
    int64_t v;
} fv_pair;

typedef struct search {
    const fib_aut_input *in;
    int64_t n;
    csr out, into;
    arc_set arcs;
    /* ordered partition */
    int64_t *lab;     /* position -> node */
    int64_t *pos;     /* node -> position */
    int64_t *cell_of; /* node -> start position of its cell */
    int64_t *len;     /* start position -> cell length */
    int32_t *ptn;     /* position -> level of the boundary after it */
    int64_t n_cells;
    /* refinement scratch */
    uint64_t *f;
    int64_t *touched;
    uint8_t *is_touched;
    int64_t *tcells;
    uint8_t *tcell_mark;
    int64_t *queue; /* ring of cell starts */
    uint8_t *queued;
    int64_t *members;
    fv_pair *pairs;
    /* first path, per level 0 .. depth */
    int64_t depth;
    int64_t *first_cell, *first_node, *first_cells;
    uint64_t *first_trace;
    int64_t *leaf;
    /* the group found so far */
    int64_t *uf;
    int64_t *gamma;
    int64_t n_generators;
    int64_t nodes, budget;
} search;

static void search_clear(search *s)
{
    void *arrays[] = {s->out.off, s->out.nbr, s->out.hash, s->into.off,
                      s->into.nbr, s->into.hash, s->lab, s->pos, s->cell_of,
                      s->len, s->ptn, s->f, s->touched, s->is_touched,
                      s->tcells, s->tcell_mark, s->queue, s->queued,
                      s->members, s->pairs, s->first_cell, s->first_node,
                      s->first_cells, s->first_trace, s->leaf, s->uf,
                      s->gamma};
    for (size_t i = 0; i < sizeof arrays / sizeof arrays[0]; i++)
        fib_free(arrays[i]);
    arc_set_clear(&s->arcs);
}

static int32_t build_csr(const fib_aut_input *in, bool reverse, csr *c)
{
    int64_t n = in->n_nodes, m = in->n_arcs;
    c->off = fib_calloc(n + 1, sizeof *c->off);
    c->nbr = fib_alloc(m > 0 ? m : 1, sizeof *c->nbr);
    c->hash = fib_alloc(m > 0 ? m : 1, sizeof *c->hash);
    if (!c->off || !c->nbr || !c->hash)
        return fib_error(FIB_E_NOMEM, "automorphisms: out of memory for %lld arcs",
                         (long long)m);
    const int64_t *from = reverse ? in->dst : in->src;
    const int64_t *to = reverse ? in->src : in->dst;
    for (int64_t a = 0; a < m; a++)
        c->off[from[a] + 1]++;
    for (int64_t v = 0; v < n; v++)
        c->off[v + 1] += c->off[v];
    int64_t *fill = fib_alloc(n, sizeof *fill);
    if (!fill)
        return fib_error(FIB_E_NOMEM, "automorphisms: out of memory");
    memcpy(fill, c->off, (size_t)n * sizeof *fill);
    for (int64_t a = 0; a < m; a++) {
        int64_t k = fill[from[a]]++;
        c->nbr[k] = to[a];
        c->hash[k] = arc_hash(in, a) ^ (reverse ? UINT64_C(0x5bd1e9955bd1e995) : 0);
    }
    fib_free(fill);
    return FIB_OK;
}

static int32_t search_init(search *s, const fib_aut_input *in)
{
    memset(s, 0, sizeof *s);
    int64_t n = in->n_nodes;
    s->in = in;
    s->n = n;
    s->budget = in->budget > 0 ? in->budget : FIB_AUT_DEFAULT_BUDGET;
    int32_t status = build_csr(in, false, &s->out);
    if (!status)
        status = build_csr(in, true, &s->into);
    if (!status)
        status = arc_set_init(&s->arcs, in);
    if (status)
        return status;
    s->lab = fib_alloc(n, sizeof *s->lab);
    s->pos = fib_alloc(n, sizeof *s->pos);
    s->cell_of = fib_alloc(n, sizeof *s->cell_of);
    s->len = fib_alloc(n, sizeof *s->len);
    s->ptn = fib_alloc(n, sizeof *s->ptn);
    s->f = fib_calloc(n, sizeof *s->f);
    s->touched = fib_alloc(n, sizeof *s->touched);
    s->is_touched = fib_calloc(n, 1);
    s->tcells = fib_alloc(n, sizeof *s->tcells);
    s->tcell_mark = fib_calloc(n, 1);
    s->queue = fib_alloc(n, sizeof *s->queue);
    s->queued = fib_calloc(n, 1);
    s->members = fib_alloc(n, sizeof *s->members);
    s->pairs = fib_alloc(n, sizeof *s->pairs);
    s->first_cell = fib_alloc(n + 1, sizeof *s->first_cell);
    s->first_node = fib_alloc(n + 1, sizeof *s->first_node);
    s->first_cells = fib_alloc(n + 1, sizeof *s->first_cells);
    s->first_trace = fib_alloc(n + 1, sizeof *s->first_trace);
    s->leaf = fib_alloc(n, sizeof *s->leaf);
    s->uf = fib_alloc(n, sizeof *s->uf);
    s->gamma = fib_alloc(n, sizeof *s->gamma);
    if (!s->lab || !s->pos || !s->cell_of || !s->len || !s->ptn || !s->f ||
        !s->touched || !s->is_touched || !s->tcells || !s->tcell_mark ||
        !s->queue || !s->queued || !s->members || !s->pairs ||
        !s->first_cell || !s->first_node || !s->first_cells ||
        !s->first_trace || !s->leaf || !s->uf || !s->gamma)
        return fib_error(FIB_E_NOMEM, "automorphisms: out of memory for %lld nodes",
                         (long long)n);
    for (int64_t v = 0; v < n; v++)
        s->uf[v] = v;
    return FIB_OK;
}

/* ------------------------------------------------------------------------ */
/* Equitable refinement of the ordered partition                            */
/* ------------------------------------------------------------------------ */

static int cmp_fv(const void *pa, const void *pb)
{
    const fv_pair *a = pa, *b = pb;
    if (a->f != b->f)
        return a->f < b->f ? -1 : 1;
    return (a->v > b->v) - (a->v < b->v);
}

static int cmp_i64(const void *pa, const void *pb)
{
    int64_t a = *(const int64_t *)pa, b = *(const int64_t *)pb;
    return (a > b) - (a < b);
}

typedef struct ring {
    int64_t head, count;
} ring;

static void push(search *s, ring *q, int64_t start)
{
    if (s->queued[start])
        return;
    s->queued[start] = 1;
    s->queue[(q->head + q->count) % s->n] = start;
    q->count++;
}

/* Splits the cell at `start` by s->f; returns its new pieces' trace. */
static uint64_t split_cell(search *s, ring *q, int64_t start, int32_t level)
{
    int64_t length = s->len[start];
    for (int64_t i = 0; i < length; i++) {
        int64_t v = s->lab[start + i];
        s->pairs[i] = (fv_pair){s->f[v], v};
    }
    qsort(s->pairs, (size_t)length, sizeof *s->pairs, cmp_fv);
    if (s->pairs[0].f == s->pairs[length - 1].f)
        return 0;
    bool was_queued = s->queued[start];
    int64_t largest = start, largest_len = 0, piece = start;
    uint64_t trace = fib_mix64((uint64_t)start ^ ((uint64_t)length << 32));
    for (int64_t i = 0; i < length; i++) {
        int64_t v = s->pairs[i].v;
        s->lab[start + i] = v;
        s->pos[v] = start + i;
        s->cell_of[v] = piece;
        bool last = i + 1 == length || s->pairs[i + 1].f != s->pairs[i].f;
        if (last) {
            int64_t piece_len = start + i + 1 - piece;
            s->len[piece] = piece_len;
            trace = fib_mix64(trace ^ s->pairs[i].f) + (uint64_t)piece_len;
            if (piece_len > largest_len) {
                largest_len = piece_len;
                largest = piece;
            }
            if (i + 1 < length) {
                s->ptn[start + i] = level;
                s->n_cells++;
            }
            piece = start + i + 1;
        }
    }
    for (int64_t p = start; p < start + length; p += s->len[p])
        if (was_queued || p != largest)
            push(s, q, p);
    return trace;
}

/* Splits every cell by the arcs between it and the splitter's members
 * (out-arcs of the members when `forward`). */
static uint64_t split_by(search *s, ring *q, int64_t n_members, bool forward,
                         int32_t level)
{
    const csr *c = forward ? &s->out : &s->into;
    int64_t n_touched = 0, n_tcells = 0;
    for (int64_t i = 0; i < n_members; i++) {
        int64_t u = s->members[i];
        for (int64_t k = c->off[u]; k < c->off[u + 1]; k++) {
            int64_t v = c->nbr[k];
            s->f[v] += c->hash[k];
            if (!s->is_touched[v]) {
                s->is_touched[v] = 1;
                s->touched[n_touched++] = v;
                int64_t cell = s->cell_of[v];
                if (!s->tcell_mark[cell] && s->len[cell] > 1) {
                    s->tcell_mark[cell] = 1;
                    s->tcells[n_tcells++] = cell;
                }
            }
        }
    }
    qsort(s->tcells, (size_t)n_tcells, sizeof *s->tcells, cmp_i64);
    uint64_t trace = 0;
    for (int64_t i = 0; i < n_tcells; i++) {
        s->tcell_mark[s->tcells[i]] = 0;
        trace = fib_mix64(trace + split_cell(s, q, s->tcells[i], level));
    }
    for (int64_t i = 0; i < n_touched; i++) {
        s->f[s->touched[i]] = 0;
        s->is_touched[s->touched[i]] = 0;
    }
    return trace;
}

/* Refines to an equitable partition from the cells in the queue; returns
 * the trace (a hash of every split, in order). */
static uint64_t refine(search *s, ring *q, int32_t level)
{
    uint64_t trace = UINT64_C(0x243f6a8885a308d3);
    while (q->count > 0) {
        int64_t start = s->queue[q->head];
        q->head = (q->head + 1) % s->n;
        q->count--;
        s->queued[start] = 0;
        int64_t n_members = s->len[start];
        memcpy(s->members, s->lab + start, (size_t)n_members * sizeof *s->members);
        trace = fib_mix64(trace ^ (uint64_t)start) + split_by(s, q, n_members, true, level);
        trace = fib_mix64(trace) + split_by(s, q, n_members, false, level);
        if (s->n_cells == s->n) {
            /* discrete: nothing left to split; empty the queue */
            while (q->count > 0) {
                s->queued[s->queue[q->head]] = 0;
                q->head = (q->head + 1) % s->n;
                q->count--;
            }
        }
    }
    return fib_mix64(trace ^ (uint64_t)s->n_cells);
}

/* Recomputes cell_of / len / n_cells from lab and ptn. */
static void rebuild_cells(search *s)
{
    int64_t start = 0;
    s->n_cells = 0;
    for (int64_t i = 0; i < s->n; i++) {
        s->cell_of[s->lab[i]] = start;
        if (s->ptn[i] != NO_BOUNDARY) {
            s->len[start] = i + 1 - start;
            s->n_cells++;
            start = i + 1;
        }
    }
}

/* Back to the partition of `level`: boundaries made deeper disappear. */
static void restore(search *s, int32_t level)
{
    for (int64_t i = 0; i < s->n; i++)
        if (s->ptn[i] != NO_BOUNDARY && s->ptn[i] > level)
            s->ptn[i] = NO_BOUNDARY;
    rebuild_cells(s);
}

typedef struct pair_label {
    int64_t label, node;
} pair_label;

static int cmp_pair_label(const void *pa, const void *pb)
{
    const pair_label *a = pa, *b = pb;
    if (a->label != b->label)
        return a->label < b->label ? -1 : 1;
    return (a->node > b->node) - (a->node < b->node);
}

/* Level 0: cells of equal initial colour in colour order, refined. */
static int32_t initial_partition(search *s, uint64_t *trace)
{
    int64_t n = s->n;
    pair_label *pl = fib_alloc(n, sizeof *pl);
    if (!pl)
        return fib_error(FIB_E_NOMEM, "automorphisms: out of memory");
    for (int64_t v = 0; v < n; v++)
        pl[v] = (pair_label){s->in->initial ? s->in->initial[v] : 0, v};
    qsort(pl, (size_t)n, sizeof *pl, cmp_pair_label);
    for (int64_t i = 0; i < n; i++) {
        s->lab[i] = pl[i].node;
        s->pos[pl[i].node] = i;
        s->ptn[i] = (i + 1 == n || pl[i + 1].label != pl[i].label) ? 0 : NO_BOUNDARY;
    }
    fib_free(pl);
    rebuild_cells(s);
    ring q = {0, 0};
    for (int64_t p = 0; p < n; p += s->len[p])
        push(s, &q, p);
    *trace = refine(s, &q, 0);
    return FIB_OK;
}

/* Makes v a cell of its own at `level` (its cell has > 1 node), refines. */
static uint64_t individualise(search *s, int64_t v, int32_t level)
{
    int64_t start = s->cell_of[v], length = s->len[start];
    int64_t p = s->pos[v], other = s->lab[start];
    s->lab[p] = other;
    s->pos[other] = p;
    s->lab[start] = v;
    s->pos[v] = start;
    s->ptn[start] = level;
    s->len[start] = 1;
    s->len[start + 1] = length - 1;
    for (int64_t i = start + 1; i < start + length; i++)
        s->cell_of[s->lab[i]] = start + 1;
    s->n_cells++;
    ring q = {0, 0};
    push(s, &q, start);
    return refine(s, &q, level);
}

static int64_t first_open_cell(const search *s)
{
    for (int64_t p = 0; p < s->n; p += s->len[p])
        if (s->len[p] > 1)
            return p;
    return -1;
}

/* The lowest node of the cell at `start` above `after` (-1: the lowest). */
static int64_t next_in_cell(const search *s, int64_t start, int64_t after)
{
    int64_t best = -1;
    for (int64_t i = start; i < start + s->len[start]; i++) {
        int64_t v = s->lab[i];
        if (v > after && (best < 0 || v < best))
            best = v;
    }
    return best;
}


/* ------------------------------------------------------------------------ */
/* Structural twins                                                         */
/* ------------------------------------------------------------------------ */

/* The arcs of u (out-arcs, or in-arcs when `into`) as (other end, label)
 * pairs with u and its partner v exchanged, sorted. */
static int64_t twin_list(const csr *c, int64_t u, int64_t v,
                         fv_pair *out)
{
    int64_t k = 0;
    for (int64_t a = c->off[u]; a < c->off[u + 1]; a++) {
        int64_t w = c->nbr[a];
        w = w == u ? v : w == v ? u : w;
        out[k++] = (fv_pair){c->hash[a], w};
    }
    qsort(out, (size_t)k, sizeof *out, cmp_fv);
    return k;
}

/* Whether exchanging u and v (same colour) is an automorphism: u's arcs,
 * with u and v exchanged, are v's arcs (both directions). */
static bool is_twin(search *s, int64_t u, int64_t v)
{
    const csr *dirs[2] = {&s->out, &s->into};
    for (int d = 0; d < 2; d++) {
        const csr *c = dirs[d];
        int64_t du = c->off[u + 1] - c->off[u], dv = c->off[v + 1] - c->off[v];
        if (du != dv)
            return false;
        if (du == 0)
            continue;
        fv_pair *a = fib_alloc(du, sizeof *a), *b = fib_alloc(du, sizeof *b);
        bool same = a && b;
        if (same) {
            twin_list(c, u, v, a);
            /* v's own list, unchanged: v's arcs to u/v appear as-is */
            int64_t k = 0;
            for (int64_t x = c->off[v]; x < c->off[v + 1]; x++)
                b[k++] = (fv_pair){c->hash[x], c->nbr[x]};
            qsort(b, (size_t)k, sizeof *b, cmp_fv);
            for (int64_t i = 0; i < du && same; i++)
                same = a[i].f == b[i].f && a[i].v == b[i].v;
        }
        fib_free(a);
        fib_free(b);
        if (!same)
            return false;
    }
    return true;
}

/* Nodes with the same colour and the same labelled neighbours (up to each
 * other) are exchanged by a transposition: join them before the search, so
 * that stars, complete bipartite and empty graphs cost no search. Candidates
 * share a hash of (colour, neighbours other than themselves); each is
 * checked exactly against the first of its run. Returns the generators. */
static int64_t join_twins(search *s)
{
    int64_t n = s->n, joined = 0;
    const csr *dirs[2] = {&s->out, &s->into};
    for (int64_t u = 0; u < n; u++) {
        uint64_t h = fib_mix64((uint64_t)(s->in->initial ? s->in->initial[u] : 0));
        for (int d = 0; d < 2; d++)
            for (int64_t a = dirs[d]->off[u]; a < dirs[d]->off[u + 1]; a++) {
                int64_t w = dirs[d]->nbr[a];
                /* arcs between twins or loops are left out of the key */
                uint64_t end = w == u ? UINT64_C(0x51) : (uint64_t)w;
                h += fib_mix64(dirs[d]->hash[a] ^ fib_mix64(end + (uint64_t)d));
            }
        s->pairs[u] = (fv_pair){h, u};
    }
    fv_pair *order = s->pairs;
    qsort(order, (size_t)n, sizeof *order, cmp_fv);
    for (int64_t i = 0; i < n;) {
        int64_t j = i + 1;
        while (j < n && order[j].f == order[i].f)
            j++;
        for (int64_t k = i + 1; k < j; k++) {
            int64_t u = order[i].v, v = order[k].v;
            bool same_color = !s->in->initial || s->in->initial[u] == s->in->initial[v];
            if (same_color && fib_uf_find(s->uf, u) != fib_uf_find(s->uf, v) && is_twin(s, u, v)) {
                fib_uf_union(s->uf, u, v);
                joined++;
            }
        }
        i = j;
    }
    return joined;
}

/* ------------------------------------------------------------------------ */
/* The search                                                               */
/* ------------------------------------------------------------------------ */

/* The partition is the one of `level`; individualises x at level + 1 and
 * looks in that subtree for a leaf that the first leaf maps onto by an
 * automorphism. Returns 1 (found, recorded), 0 (none) or a status < 0. */
static int32_t explore(search *s, int32_t level, int64_t x)
{
    if (++s->nodes > s->budget)
        return fib_error(FIB_E_UNSUPPORTED,
                         "automorphisms: the search needs more than %lld tree "
                         "nodes (graph of %lld nodes); see docs/hierarchy.md",
                         (long long)s->budget, (long long)s->n);
    int32_t next = level + 1;
    uint64_t trace = individualise(s, x, next);
    if (trace != s->first_trace[next] || s->n_cells != s->first_cells[next])
        return 0;
    if (s->n_cells == s->n) {
        for (int64_t i = 0; i < s->n; i++)
            s->gamma[s->leaf[i]] = s->lab[i];
        if (!arcs_preserved(s->in, &s->arcs, s->gamma))
            return 0;
        for (int64_t v = 0; v < s->n; v++)
            fib_uf_union(s->uf, v, s->gamma[v]);
        s->n_generators++;
        return 1;
    }
    int64_t cell = s->first_cell[next];
    if (s->cell_of[s->lab[cell]] != cell || s->len[cell] < 2)
        return 0;
    for (int64_t u = next_in_cell(s, cell, -1); u >= 0;) {
        int32_t found = explore(s, next, u);
        if (found)
            return found;
        restore(s, next);
        u = next_in_cell(s, cell, u);
    }
    return 0;
}

static int32_t run(search *s)
{
    uint64_t trace = 0;
    int32_t status = initial_partition(s, &trace);
    if (status)
        return status;
    int32_t level = 0;
    s->first_trace[0] = trace;
    s->first_cells[0] = s->n_cells;
    for (int64_t cell = first_open_cell(s); cell >= 0; cell = first_open_cell(s)) {
        int64_t w = next_in_cell(s, cell, -1);
        s->first_cell[level] = cell;
        s->first_node[level] = w;
        level++;
        s->first_trace[level] = individualise(s, w, level);
        s->first_cells[level] = s->n_cells;
    }
    s->depth = level;
    s->n_generators += join_twins(s);
    memcpy(s->leaf, s->lab, (size_t)s->n * sizeof *s->leaf);
    for (level = (int32_t)s->depth - 1; level >= 0; level--) {
        restore(s, level);
        int64_t cell = s->first_cell[level], w = s->first_node[level];
        int64_t n_cand = s->len[cell], n_failed = 0;
        int64_t *cand = fib_alloc(n_cand, sizeof *cand);
        int64_t *failed = fib_alloc(n_cand, sizeof *failed);
        if (!cand || !failed) {
            fib_free(cand);
            fib_free(failed);
            return fib_error(FIB_E_NOMEM, "automorphisms: out of memory");
        }
        memcpy(cand, s->lab + cell, (size_t)n_cand * sizeof *cand);
        qsort(cand, (size_t)n_cand, sizeof *cand, cmp_i64);
        for (int64_t i = 0; i < n_cand && !status; i++) {
            int64_t v = cand[i];
            if (fib_uf_find(s->uf, v) == fib_uf_find(s->uf, w))
                continue;
            bool known = false;
            for (int64_t k = 0; k < n_failed && !known; k++)
                known = fib_uf_find(s->uf, failed[k]) == fib_uf_find(s->uf, v);
            if (known)
                continue;
            restore(s, level);
            int32_t found = explore(s, level, v);
            if (found < 0)
                status = found;
            else if (!found)
                failed[n_failed++] = v;
        }
        fib_free(cand);
        fib_free(failed);
        if (status)
            return status;
    }
    return FIB_OK;
}

int32_t fib_aut_orbits(const fib_aut_input *in, int64_t *orbit,
                       int64_t *n_orbits, int64_t *n_generators)
{
    int64_t n = in->n_nodes;
    if (n > FIB_AUT_MAX_NODES)
        return fib_error(FIB_E_OVERFLOW,
                         "automorphisms: %lld nodes is more than the orbit "
                         "search's limit of %lld (docs/hierarchy.md)",
                         (long long)n, (long long)FIB_AUT_MAX_NODES);
    if (n == 0) {
        *n_orbits = 0;
        if (n_generators)
            *n_generators = 0;
        return FIB_OK;
    }
    search s;
    int32_t status = search_init(&s, in);
    if (!status)
        status = run(&s);
    if (!status) {
        fib_partition p = {.n_units = n, .n_classes = 0, .color = orbit};
        for (int64_t v = 0; v < n; v++)
            orbit[v] = fib_uf_find(s.uf, v);
        status = fib_partition_canonicalize(&p);
        if (!status) {
            *n_orbits = p.n_classes;
            if (n_generators)
                *n_generators = s.n_generators;
        }
    }
    search_clear(&s);
    return status;
}

/* Graph structure around the refinement: strongly connected components,
 * dense relabelling, the quotient (base) graph and fiber building blocks. */
#include "graphs/refine.h"

#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Strongly connected components (iterative Tarjan)                         */
/* ------------------------------------------------------------------------ */

int32_t fib_scc_csr(int64_t n, const int64_t *off, const int64_t *head,
                    int64_t *scc, int64_t *n_scc, uint8_t *on_cycle)
{
    if (n <= 0) {
        if (n_scc)
            *n_scc = 0;
        return FIB_OK;
    }
    int64_t *index = fib_alloc(n, sizeof *index);
    int64_t *low = fib_alloc(n, sizeof *low);
    int64_t *comp = fib_alloc(n, sizeof *comp);
    int64_t *stack = fib_alloc(n, sizeof *stack);
    int64_t *frame_node = fib_alloc(n, sizeof *frame_node);
    int64_t *frame_arc = fib_alloc(n, sizeof *frame_arc);
    int64_t *size = NULL;
    int32_t status = FIB_OK;
    if (!index || !low || !comp || !stack || !frame_node || !frame_arc) {
        status = fib_error(FIB_E_NOMEM, "graph: out of memory for SCCs");
        goto done;
    }
    for (int64_t v = 0; v < n; v++) {
        index[v] = -1;
        comp[v] = -1;
    }
    int64_t counter = 0, count = 0, sp = 0;
    for (int64_t root = 0; root < n; root++) {
        if (index[root] >= 0)
            continue;
        int64_t depth = 0;
        frame_node[0] = root;
        frame_arc[0] = off[root];
        index[root] = low[root] = counter++;
        stack[sp++] = root;
        depth = 1;
        while (depth > 0) {
            int64_t v = frame_node[depth - 1];
            int64_t a = frame_arc[depth - 1];
            if (a < off[v + 1]) {
                frame_arc[depth - 1] = a + 1;
                int64_t w = head[a];
                if (index[w] < 0) {
                    index[w] = low[w] = counter++;
                    stack[sp++] = w;
                    frame_node[depth] = w;
                    frame_arc[depth] = off[w];
                    depth++;
                } else if (comp[w] < 0 && index[w] < low[v]) {
                    low[v] = index[w]; /* w is still on the stack */
                }
                continue;
            }
            depth--;
            if (low[v] == index[v]) {
                int64_t w;
                do {
                    w = stack[--sp];
                    comp[w] = count;
                } while (w != v);
                count++;
            }
            if (depth > 0) {
                int64_t p = frame_node[depth - 1];
                if (low[v] < low[p])
                    low[p] = low[v];
            }
        }
    }
    if (on_cycle) {
        size = fib_calloc(count, sizeof *size);
        if (!size) {
            status = fib_error(FIB_E_NOMEM, "graph: out of memory for SCCs");
            goto done;
        }
        for (int64_t v = 0; v < n; v++)
            size[comp[v]]++;
        for (int64_t v = 0; v < n; v++)
            on_cycle[v] = size[comp[v]] > 1;
        for (int64_t v = 0; v < n; v++)
            for (int64_t a = off[v]; a < off[v + 1]; a++)
                if (head[a] == v)
                    on_cycle[v] = 1;
    }
    if (scc)
        memcpy(scc, comp, (size_t)n * sizeof *scc);
    if (n_scc)
        *n_scc = count;
done:
    fib_free(index);
    fib_free(low);
    fib_free(comp);
    fib_free(stack);
    fib_free(frame_node);
    fib_free(frame_arc);
    fib_free(size);
    return status;
}

int32_t fib_graph_scc(int64_t n, int64_t m, const int64_t *src,
                      const int64_t *dst, int64_t *scc, int64_t *n_scc,
                      uint8_t *on_cycle)
{
    if (n <= 0) {
        if (n_scc)
            *n_scc = 0;
        return FIB_OK;
    }
    int64_t *off = fib_calloc(n + 1, sizeof *off);
    int64_t *head = fib_alloc(m > 0 ? m : 1, sizeof *head);
    int64_t *cursor = fib_alloc(n, sizeof *cursor);
    int32_t status;
    if (!off || !head || !cursor) {
        status = fib_error(FIB_E_NOMEM, "graph: out of memory for SCCs");
    } else {
        for (int64_t i = 0; i < m; i++)
            off[src[i] + 1]++;
        for (int64_t v = 0; v < n; v++)
            off[v + 1] += off[v];
        memcpy(cursor, off, (size_t)n * sizeof *cursor);
        for (int64_t i = 0; i < m; i++)
            head[cursor[src[i]]++] = dst[i];
        status = fib_scc_csr(n, off, head, scc, n_scc, on_cycle);
    }
    fib_free(off);
    fib_free(head);
    fib_free(cursor);
    return status;
}

/* ------------------------------------------------------------------------ */
/* Dense relabelling                                                        */
/* ------------------------------------------------------------------------ */

int32_t fib_relabel_pairs(int64_t n, const int64_t *a, const int64_t *b,
                          int64_t *ids, int64_t *n_ids)
{
    int64_t cap = 16;
    while (cap < 2 * n)
        cap *= 2;
    int64_t *slot_first = fib_alloc(cap, sizeof *slot_first);
    if (!slot_first)
        return fib_error(FIB_E_NOMEM, "graph: out of memory for labels");
    for (int64_t s = 0; s < cap; s++)
        slot_first[s] = -1;
    int64_t count = 0;
    for (int64_t i = 0; i < n; i++) {
        uint64_t bv = b ? (uint64_t)b[i] : 0;
        uint64_t h = fib_mix64((uint64_t)a[i] ^ fib_mix64(bv + UINT64_C(0x9e3779b97f4a7c15)));
        int64_t s = (int64_t)(h & (uint64_t)(cap - 1));
        for (;;) {
            int64_t f = slot_first[s];
            if (f < 0) {
                slot_first[s] = i;
                ids[i] = count++;
                break;
            }
            if (a[f] == a[i] && (!b || b[f] == b[i])) {
                ids[i] = ids[f];
                break;
            }
            s = (s + 1) & (cap - 1);
        }
    }
    fib_free(slot_first);
    *n_ids = count;
    return FIB_OK;
}

/* ------------------------------------------------------------------------ */
/* Quotient graph                                                           */
/* ------------------------------------------------------------------------ */

typedef struct base_arc {
    int64_t src;
    int64_t dst;
    int32_t type;
    int64_t arc; /* original index: a total order for determinism */
} base_arc;

static int compare_base_arcs(const void *pa, const void *pb)
{
    const base_arc *x = pa, *y = pb;
    if (x->src != y->src)
        return x->src < y->src ? -1 : 1;
    if (x->dst != y->dst)
        return x->dst < y->dst ? -1 : 1;
    if (x->type != y->type)
        return x->type < y->type ? -1 : 1;
    return (x->arc > y->arc) - (x->arc < y->arc);
}

/* Sorts base arcs, listed in arc order, by (src, dst, type, arc) as
 * compare_base_arcs does: a stable counting sort by source class (classes
 * lie in [0, n_classes)) into `spare`, then each source's arcs, contiguous
 * and few on average, by the rest (insertion sort, qsort for a large
 * group). One scattering pass where a comparison sort of the whole costs
 * log2(count) passes of cache misses. Returns the sorted array (spare);
 * NULL when out of memory. */
static base_arc *sort_base_arcs(const base_arc *arcs, base_arc *spare, int64_t count,
                                int64_t n_classes)
{
    int64_t *end = fib_calloc(n_classes + 1, sizeof *end);
    if (!end)
        return NULL;
    for (int64_t i = 0; i < count; i++)
        end[arcs[i].src + 1]++;
    for (int64_t c = 0; c < n_classes; c++)
        end[c + 1] += end[c];
    /* end[c] is the start of class c's arcs until they are placed */
    for (int64_t i = 0; i < count; i++)
        spare[end[arcs[i].src]++] = arcs[i];
    for (int64_t c = 0, lo = 0; c < n_classes; lo = end[c++]) {
        base_arc *group = spare + lo;
        int64_t k = end[c] - lo;
        if (k > 32) {
            qsort(group, (size_t)k, sizeof *group, compare_base_arcs);
            continue;
        }
        for (int64_t i = 1; i < k; i++) {
            base_arc x = group[i];
            int64_t j = i;
            for (; j > 0 && compare_base_arcs(&group[j - 1], &x) > 0; j--)
                group[j] = group[j - 1];
            group[j] = x;
        }
    }
    fib_free(end);
    return spare;
}

void fib_qgraph_clear(fib_qgraph *q)
{
    if (!q)
        return;
    fib_free(q->src);
    fib_free(q->dst);
    fib_free(q->type);
    fib_free(q->weight);
    fib_free(q->multiplicity);
    memset(q, 0, sizeof *q);
}

/* rep[c]: the lowest node of class c (a fib_alloc'd array of n_classes),
 * whose arcs make the base's; FIB_E_RANGE names a node outside the classes. */
static int32_t lowest_nodes(int64_t n, const int64_t *color, int64_t n_classes,
                            int64_t **rep_out)
{
    int64_t *rep = fib_alloc(n_classes > 0 ? n_classes : 1, sizeof *rep);
    if (!rep)
        return fib_error(FIB_E_NOMEM, "quotient: out of memory");
    for (int64_t c = 0; c < n_classes; c++)
        rep[c] = -1;
    for (int64_t v = 0; v < n; v++) {
        if (color[v] < 0 || color[v] >= n_classes) {
            fib_free(rep);
            return fib_error(FIB_E_RANGE, "quotient: node %lld has class "
                             "%lld outside 0 .. %lld", (long long)v,
                             (long long)color[v], (long long)n_classes - 1);
        }
        if (rep[color[v]] < 0)
            rep[color[v]] = v;
    }
    *rep_out = rep;
    return FIB_OK;
}

int32_t fib_qgraph_build(const fib_refine_input *in, const int64_t *color,
                           int64_t n_classes, fib_qgraph *out)
{
    if (!in || !color || !out)
        return fib_error(FIB_E_NULL, "quotient: NULL argument");
    memset(out, 0, sizeof *out);
    out->n_classes = n_classes;
    int64_t m = in->n_arcs;
    int64_t *rep = NULL;
    int32_t status = lowest_nodes(in->n_nodes, color, n_classes, &rep);
    if (status)
        return status;
    /* the receiving end of each arc: its head, or its tail when reversed */
    const int64_t *receiver = in->reverse ? in->src : in->dst;
    int64_t count = 0;
    for (int64_t i = 0; i < m; i++)
        if (rep[color[receiver[i]]] == receiver[i])
            count++;
    base_arc *arcs = fib_alloc(count > 0 ? count : 1, sizeof *arcs);
    base_arc *spare = fib_alloc(count > 0 ? count : 1, sizeof *spare);
    if (!arcs || !spare) {
        fib_free(arcs);
        fib_free(spare);
        fib_free(rep);
        return fib_error(FIB_E_NOMEM, "quotient: out of memory");
    }
    int64_t k = 0;
    for (int64_t i = 0; i < m; i++) {
        if (rep[color[receiver[i]]] != receiver[i])
            continue;
        arcs[k].src = color[in->src[i]];
        arcs[k].dst = color[in->dst[i]];
        arcs[k].type = in->type ? in->type[i] : 0;
        arcs[k].arc = i;
        k++;
    }
    fib_free(rep);
    base_arc *sorted = sort_base_arcs(arcs, spare, count, n_classes);
    if (!sorted) {
        fib_free(arcs);
        fib_free(spare);
        return fib_error(FIB_E_NOMEM, "quotient: out of memory");
    }
    /* the other buffer is no longer needed */
    fib_free(sorted == arcs ? spare : arcs);
    arcs = sorted;
    int64_t distinct = 0;
    for (int64_t i = 0; i < count; i++)
        if (i == 0 || arcs[i].src != arcs[i - 1].src ||
            arcs[i].dst != arcs[i - 1].dst || arcs[i].type != arcs[i - 1].type)
            distinct++;
    int64_t cap = distinct > 0 ? distinct : 1;
    out->src = fib_alloc(cap, sizeof *out->src);
    out->dst = fib_alloc(cap, sizeof *out->dst);
    out->type = fib_alloc(cap, sizeof *out->type);
    out->weight = fib_alloc(cap, sizeof *out->weight);
    out->multiplicity = fib_alloc(cap, sizeof *out->multiplicity);
    if (!out->src || !out->dst || !out->type || !out->weight ||
        !out->multiplicity) {
        fib_free(arcs);
        fib_qgraph_clear(out);
        return fib_error(FIB_E_NOMEM, "quotient: out of memory");
    }
    int64_t q = -1;
    for (int64_t i = 0; i < count; i++) {
        double w = in->weight ? in->weight[arcs[i].arc] : 1.0;
        if (q < 0 || arcs[i].src != out->src[q] || arcs[i].dst != out->dst[q] ||
            arcs[i].type != out->type[q]) {
            q++;
            out->src[q] = arcs[i].src;
            out->dst[q] = arcs[i].dst;
            out->type[q] = arcs[i].type;
            out->weight[q] = 0;
            out->multiplicity[q] = 0;
        }
        out->weight[q] += w;
        out->multiplicity[q]++;
    }
    out->n_classes = n_classes;
    out->n_arcs = distinct;
    fib_free(arcs);
    return FIB_OK;
}

/* A base arc as its receiving class sees it: the class at the other end
 * (high 32 bits) and the edge type (low 32 bits), one word, so that the
 * grouping scatters 8 bytes an arc. */
typedef uint64_t base_end;

static base_end make_base_end(int64_t other, int32_t type)
{
    return (uint64_t)other << 32 | (uint32_t)type;
}

static int compare_base_ends(const void *pa, const void *pb)
{
    base_end x = *(const base_end *)pa, y = *(const base_end *)pb;
    return (x > y) - (x < y);
}

/* The base-arc count groups the merged arcs by receiving class in two
 * steps, each cache-friendly: first by partitions of COUNT_PARTITION_CLASSES
 * consecutive classes (a few hundred write streams), then within each
 * partition by class, where the partition's counters and arcs stay in the
 * nearest caches. One scatter straight to 10^6 classes' groups misses the
 * cache at every arc end. */
#define COUNT_PARTITION_BITS 12
#define COUNT_PARTITION_CLASSES (1 << COUNT_PARTITION_BITS)
#define NOT_LOWEST UINT32_MAX
/* how many arcs ahead the nodes' entries are prefetched */
#define COUNT_AHEAD 16

/* The distinct ends of one class's arcs (sorted in place: few on average). */
static int64_t distinct_ends(base_end *group, int64_t k)
{
    if (k > 32) {
        qsort(group, (size_t)k, sizeof *group, compare_base_ends);
    } else {
        for (int64_t i = 1; i < k; i++) {
            base_end x = group[i];
            int64_t j = i;
            for (; j > 0 && group[j - 1] > x; j--)
                group[j] = group[j - 1];
            group[j] = x;
        }
    }
    int64_t distinct = 0;
    for (int64_t i = 0; i < k; i++)
        distinct += i == 0 || group[i - 1] != group[i];
    return distinct;
}

int32_t fib_qgraph_count_arcs(const fib_refine_input *in, const int64_t *color,
                              int64_t n_classes, int64_t *n_arcs)
{
    if (!in || !color || !n_arcs)
        return fib_error(FIB_E_NULL, "quotient: NULL argument");
    *n_arcs = 0;
    if (n_classes >= (int64_t)NOT_LOWEST) {
        /* a class id does not fit a base end's 32 bits: counted by
         * building the base */
        fib_qgraph q;
        int32_t st = fib_qgraph_build(in, color, n_classes, &q);
        if (st == FIB_OK)
            *n_arcs = q.n_arcs;
        fib_qgraph_clear(&q);
        return st;
    }
    int64_t m = in->n_arcs, n = in->n_nodes > 0 ? in->n_nodes : 1;
    int64_t *rep = NULL;
    int32_t status = lowest_nodes(in->n_nodes, color, n_classes, &rep);
    if (status)
        return status;
    const int64_t n_parts = (n_classes >> COUNT_PARTITION_BITS) + 1;
    /* rep_class[v]: v's class when v is its lowest node, else NOT_LOWEST
     * (one lookup an arc where color then rep would be two dependent
     * misses); class_of: color in 32 bits. Half-size copies keep more of
     * the nodes in the cache during the passes over the arcs. */
    uint32_t *rep_class = fib_alloc(n, sizeof *rep_class);
    uint32_t *class_of = fib_alloc(n, sizeof *class_of);
    int64_t *part_start = fib_calloc(n_parts + 1, sizeof *part_start);
    int64_t *part_fill = fib_alloc(n_parts, sizeof *part_fill);
    int64_t *group_end = fib_alloc(COUNT_PARTITION_CLASSES + 1, sizeof *group_end);
    base_end *ends = NULL, *sorted = NULL;
    uint16_t *slot = NULL;
    if (!rep_class || !class_of || !part_start || !part_fill || !group_end) {
        status = fib_error(FIB_E_NOMEM, "quotient: out of memory");
        goto done;
    }
    for (int64_t v = 0; v < in->n_nodes; v++) {
        class_of[v] = (uint32_t)color[v];
        rep_class[v] = rep[color[v]] == v ? class_of[v] : NOT_LOWEST;
    }
    fib_free(rep);
    rep = NULL;
    /* the arcs fib_qgraph_build merges: those received by their class's
     * lowest node, counted by partition of that class */
    const int64_t *receiver = in->reverse ? in->src : in->dst;
    const int64_t *other = in->reverse ? in->dst : in->src;
    for (int64_t i = 0; i < m; i++) {
        if (i + COUNT_AHEAD < m)
            fib_prefetch_range((const char *)&rep_class[receiver[i + COUNT_AHEAD]], 1);
        uint32_t c = rep_class[receiver[i]];
        if (c != NOT_LOWEST)
            part_start[(c >> COUNT_PARTITION_BITS) + 1]++;
    }
    int64_t largest = 0;
    for (int64_t p = 0; p < n_parts; p++) {
        largest = part_start[p + 1] > largest ? part_start[p + 1] : largest;
        part_start[p + 1] += part_start[p];
        part_fill[p] = part_start[p];
    }
    int64_t count = part_start[n_parts];
    /* each arc's other end, and its class's place in the partition */
    ends = fib_alloc(count > 0 ? count : 1, sizeof *ends);
    slot = fib_alloc(count > 0 ? count : 1, sizeof *slot);
    sorted = fib_alloc(largest > 0 ? largest : 1, sizeof *sorted);
    if (!ends || !slot || !sorted) {
        status = fib_error(FIB_E_NOMEM, "quotient: out of memory");
        goto done;
    }
    for (int64_t i = 0; i < m; i++) {
        if (i + COUNT_AHEAD < m) {
            fib_prefetch_range((const char *)&rep_class[receiver[i + COUNT_AHEAD]], 1);
            fib_prefetch_range((const char *)&class_of[other[i + COUNT_AHEAD]], 1);
        }
        uint32_t c = rep_class[receiver[i]];
        if (c == NOT_LOWEST)
            continue;
        int64_t k = part_fill[c >> COUNT_PARTITION_BITS]++;
        ends[k] = make_base_end(class_of[other[i]], in->type ? in->type[i] : 0);
        slot[k] = (uint16_t)(c & (COUNT_PARTITION_CLASSES - 1));
    }
    /* within each partition, the arcs grouped by class (a counting sort);
     * distinct (other class, type) per receiving class, as the build
     * merges them */
    int64_t distinct = 0;
    for (int64_t p = 0; p < n_parts; p++) {
        int64_t lo = part_start[p], hi = part_start[p + 1];
        memset(group_end, 0, (COUNT_PARTITION_CLASSES + 1) * sizeof *group_end);
        for (int64_t k = lo; k < hi; k++)
            group_end[slot[k] + 1]++;
        for (int64_t j = 0; j < COUNT_PARTITION_CLASSES; j++)
            group_end[j + 1] += group_end[j];
        /* group_end[j] is the start of class j's arcs until they are placed */
        for (int64_t k = lo; k < hi; k++)
            sorted[group_end[slot[k]]++] = ends[k];
        for (int64_t j = 0, start = 0; j < COUNT_PARTITION_CLASSES; start = group_end[j++])
            distinct += distinct_ends(sorted + start, group_end[j] - start);
    }
    *n_arcs = distinct;
done:
    fib_free(rep);
    fib_free(rep_class);
    fib_free(class_of);
    fib_free(part_start);
    fib_free(part_fill);
    fib_free(group_end);
    fib_free(ends);
    fib_free(slot);
    fib_free(sorted);
    return status;
}

/* ------------------------------------------------------------------------ */
/* Fiber building blocks                                                    */
/* ------------------------------------------------------------------------ */

/* Passes over the arc list that look for a closed set of nodes around the
 * members of the blocks before the whole graph's SCCs are searched. */
#define CLOSURE_PASSES 6

enum { REACHES_MEMBER = 1, REACHED_FROM_MEMBER = 2 };

/* on_cycle[v]: 1 for the members of the blocks on entry; on return 1 iff
 * that member lies on a directed cycle (0 for every other node).
 *
 * A member's SCC lies within the nodes that reach some member (B) and
 * within the nodes some member reaches (F), and the paths inside an SCC
 * stay inside it; so the SCCs of the subgraph induced on B (or on F) are
 * the graph's own for every member, self-loops included. B and F grow
 * together by passes over the arc list (sequential reads; one byte a node
 * of random access); the first to stop growing is searched alone. When
 * neither closes within CLOSURE_PASSES passes, or both already cover most
 * of the graph, the whole graph is searched. On a graph whose non-trivial
 * classes are its sources (or sinks), as on random graphs, B (or F) is
 * those members alone: one pass finds it closed and two more collect its
 * arcs, instead of Tarjan over every arc. */
static int32_t members_on_cycles(const fib_refine_input *in, uint8_t *on_cycle)
{
    int64_t n = in->n_nodes, m = in->n_arcs;
    const int64_t *src = in->src, *dst = in->dst;
    uint8_t *mark = fib_alloc(n, sizeof *mark);
    if (!mark)
        return fib_error(FIB_E_NOMEM, "blocks: out of memory");
    int64_t n_back = 0, n_fwd = 0;
    for (int64_t v = 0; v < n; v++) {
        mark[v] = on_cycle[v] ? REACHES_MEMBER | REACHED_FROM_MEMBER : 0;
        n_back += on_cycle[v];
    }
    n_fwd = n_back;
    uint8_t closed = 0;
    for (int pass = 0; pass < CLOSURE_PASSES && !closed; pass++) {
        int64_t grown_back = 0, grown_fwd = 0;
        for (int64_t a = 0; a < m; a++) {
            int64_t u = src[a], v = dst[a];
            if ((mark[v] & REACHES_MEMBER) && !(mark[u] & REACHES_MEMBER)) {
                mark[u] |= REACHES_MEMBER;
                grown_back++;
            }
            if ((mark[u] & REACHED_FROM_MEMBER) && !(mark[v] & REACHED_FROM_MEMBER)) {
                mark[v] |= REACHED_FROM_MEMBER;
                grown_fwd++;
            }
        }
        n_back += grown_back;
        n_fwd += grown_fwd;
        closed = grown_back == 0 ? REACHES_MEMBER : grown_fwd == 0 ? REACHED_FROM_MEMBER : 0;
        if (n_back > n / 2 && n_fwd > n / 2)
            break;
    }
    int32_t status = FIB_OK;
    if (!closed) {
        /* the whole graph; only the members' answers are kept */
        uint8_t *all = fib_alloc(n, sizeof *all);
        status = all ? fib_graph_scc(n, m, src, dst, NULL, NULL, all)
                     : fib_error(FIB_E_NOMEM, "blocks: out of memory");
        if (status == FIB_OK)
            for (int64_t v = 0; v < n; v++)
                on_cycle[v] = on_cycle[v] && all[v];
        fib_free(all);
        fib_free(mark);
        return status;
    }
    /* the subgraph induced on the closed set, its nodes renumbered */
    int64_t k = 0, sub_m = 0;
    int64_t *local = fib_alloc(n, sizeof *local);
    if (!local) {
        fib_free(mark);
        return fib_error(FIB_E_NOMEM, "blocks: out of memory");
    }
    for (int64_t v = 0; v < n; v++)
        local[v] = mark[v] & closed ? k++ : -1;
    for (int64_t a = 0; a < m; a++)
        sub_m += local[src[a]] >= 0 && local[dst[a]] >= 0;
    int64_t *sub_src = fib_alloc(sub_m > 0 ? sub_m : 1, sizeof *sub_src);
    int64_t *sub_dst = fib_alloc(sub_m > 0 ? sub_m : 1, sizeof *sub_dst);
    uint8_t *sub_on_cycle = fib_alloc(k, sizeof *sub_on_cycle);
    if (!sub_src || !sub_dst || !sub_on_cycle) {
        status = fib_error(FIB_E_NOMEM, "blocks: out of memory");
    } else {
        for (int64_t a = 0, i = 0; a < m; a++) {
            if (local[src[a]] >= 0 && local[dst[a]] >= 0) {
                sub_src[i] = local[src[a]];
                sub_dst[i] = local[dst[a]];
                i++;
            }
        }
        status = fib_graph_scc(k, sub_m, sub_src, sub_dst, NULL, NULL, sub_on_cycle);
    }
    if (status == FIB_OK)
        for (int64_t v = 0; v < n; v++)
            on_cycle[v] = on_cycle[v] && sub_on_cycle[local[v]];
    fib_free(sub_src);
    fib_free(sub_dst);
    fib_free(sub_on_cycle);
    fib_free(local);
    fib_free(mark);
    return status;
}

int32_t fib_fiber_blocks(const fib_refine_input *in, const int64_t *color,
                         int64_t n_classes, fib_fiber_block **blocks,
                         int64_t *n_blocks)
{
    if (!in || !color || !blocks || !n_blocks)
        return fib_error(FIB_E_NULL, "blocks: NULL argument");
    *blocks = NULL;
    *n_blocks = 0;
    int64_t n = in->n_nodes;
    if (n == 0 || n_classes == 0)
        return FIB_OK;
    int64_t *size = fib_calloc(n_classes, sizeof *size);
    int64_t *cyc = fib_calloc(n_classes, sizeof *cyc);
    uint8_t *on_cycle = fib_alloc(n, sizeof *on_cycle);
    int32_t status = FIB_OK;
    if (!size || !cyc || !on_cycle) {
        status = fib_error(FIB_E_NOMEM, "blocks: out of memory");
        goto done;
    }
    for (int64_t v = 0; v < n; v++) {
        if (color[v] < 0 || color[v] >= n_classes) {
            status = fib_error(FIB_E_RANGE, "blocks: node %lld has class "
                               "%lld outside 0 .. %lld", (long long)v,
                               (long long)color[v], (long long)n_classes - 1);
            goto done;
        }
        size[color[v]]++;
    }
    int64_t count = 0;
    for (int64_t c = 0; c < n_classes; c++)
        count += size[c] > 1;
    /* cycles matter only inside blocks: a discrete colouring needs no SCCs */
    if (count > 0) {
        for (int64_t v = 0; v < n; v++)
            on_cycle[v] = size[color[v]] > 1;
        status = members_on_cycles(in, on_cycle);
        if (status != FIB_OK)
            goto done;
        for (int64_t v = 0; v < n; v++)
            cyc[color[v]] += on_cycle[v];
    }
    if (count > 0) {
        fib_fiber_block *b = fib_alloc(count, sizeof *b);
        if (!b) {
            status = fib_error(FIB_E_NOMEM, "blocks: out of memory");
            goto done;
        }
        int64_t k = 0;
        for (int64_t c = 0; c < n_classes; c++) {
            if (size[c] <= 1)
                continue;
            b[k].class_id = c;
            b[k].size = size[c];
            b[k].n_on_cycle = cyc[c];
            k++;
        }
        *blocks = b;
        *n_blocks = count;
    }
done:
    fib_free(size);
    fib_free(cyc);
    fib_free(on_cycle);
    return status;
}

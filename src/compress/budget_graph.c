/* fib_compress_to_budget on graphs that are not chains of dense blocks:
 * convolutions with batch norm, pooling, flatten, residual sums, gates,
 * norms. Every block kind says through its fib_block_ops how a budget
 * treats its units (budget_role), what it costs at given widths
 * (budget_parameters) and how errors of its units reach the outputs
 * (budget_backward); nothing here depends on a kind.
 *
 * Groups whose classes must be one partition form a set: a group that
 * follows its source unit by unit (batch norm, pooling, a depthwise
 * convolution) joins its source's set; a sum or a product joins both its
 * sources' (the channels a residual sum adds are merged together). A set
 * holding an input, an output or a grouped convolution's channels keeps
 * its units. A selection (a concatenation's or a split's copy of its
 * source's units) joins nothing: the classes of a set of selections and the
 * sums that put them together are those of the units they copy (the union
 * of its sources' classes), so its merges come from the producing layers;
 * it is never clustered itself, and counts no parameters. A set of
 * selections that must keep its units, or that also clusters, makes its
 * sources keep theirs. Every other set with clustered members (dense,
 * convolution) is a candidate:
 *
 * 1. the energy of every unit, data-free: how strongly an error in its
 *    pre-activation at one position reaches the outputs, errors taken
 *    independent across positions (1 per output unit, carried back by
 *    squared weights, halved in energy by a ReLU);
 * 2. each candidate set is agglomerated once (Ward) on its clustered
 *    members' incoming weights over their sources' units, each member's row
 *    of a unit scaled by (its energy times its positions)^(ENERGY_POWER / 2)
 *    and the rows of the members side by side: e(k), the error at k
 *    classes; units whose rows are equal before scaling (exact copies,
 *    which fib_compress merges exactly) merge first, at no cost;
 * 3. the greedy exchange of dense chains on B^2 = sum e(k)^2 under the
 *    budget, with the parameters at given widths counted by the kinds;
 * 4. the sets are cut at their counts and compressed (fib_compress); if
 *    the base has more parameters than counted, the exchange goes on. */
#include "compress/compress.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct budget_set {
    int64_t n;      /* units of every member */
    int64_t k;      /* classes chosen */
    double *err;    /* err[k], k = 1 .. n */
    fib_merges mg;  /* the agglomeration, cut at n - k */
    /* removals of units that output a constant: NULL when no unit of the
     * set can be removed (mg's merges are then the events) */
    double *remove_cost; /* per unit: the error of its removal, INFINITY: kept */
    double *remove_share; /* per unit: the share of its row's error that a
                             removal makes, from stored statistics (NULL: 1) */
    int64_t *ev_a, *ev_b; /* events in order: merge b into a, or (b = -1)
                             remove a */
    int64_t *ev_end;      /* per k: the events that reach k classes */
    bool *removed;        /* per unit, at the cut */
} budget_set;

typedef struct graph_budget {
    const fib_graph *g;
    int32_t *role;     /* per group: FIB_BUDGET_*, 0 for inputs */
    int64_t *set;      /* per group: its set's root group (fib_uf_*; -1: derived) */
    bool *pinned;      /* per root group: the set keeps its units */
    double **energy;   /* per group: pre-activation energy of each unit */
    int32_t n_cand;
    int32_t *cand;     /* candidate roots */
    budget_set *sets;  /* per candidate */
    int64_t *width;    /* per group, for counting */
    int32_t *cand_of;  /* per root group: its candidate index, -1 if none */
    bool *selected;    /* per root group: the set has selections */
    int64_t *copies;   /* per selection group: its rows that copy a unit */
    /* the exchange's view of one candidate's step (reach): */
    int64_t *params;   /* per group: its parameters at the widths */
    int32_t *wide_at, *wide;   /* per candidate: the groups whose width its
                                  count moves, in order (CSR) */
    int32_t *touch_at, *touch; /* per candidate: the groups whose parameters
                                  those widths move (CSR) */
    int32_t *sel_at, *sel;     /* per root group: its selections (CSR) */
    int64_t *saved;    /* scratch: widths to restore */
    int64_t *root_width, *root_pass; /* per root group: a selected set's width,
                                        as of pass number root_pass */
    int64_t pass;      /* the current pass of width_rule's callers */
    int64_t **bin;     /* per root group: the bins its classes stay in (NULL:
                          none; FIB_BUDGET_ATTENDS) */
    int32_t *tie;      /* per group: the earlier group whose weights it shares
                          (tied_weights), -1 for none */
    bool has_tie;      /* some group has one */
    /* removals: per group of a candidate's chain (its members and the
     * groups derived from them), each unit's output once its unit of the
     * set is removed (NULL: not in a chain), and for a derived group the
     * unit of the set it stems from (NULL: the unit itself) */
    double **constant;
    int64_t **origin;
    int32_t *chain_of; /* per group: the candidate whose chain holds it, -1 */
    fib_unit_moments moments; /* the stored statistics carried forward */
} graph_budget;

static const char fn[] = "fib_compress_to_budget";

/* Errors are weighted by energy^ENERGY_POWER: the energies multiply the
 * squared gains of every block downstream, which overstates how far apart
 * layers are (with the full energies a budget emptied a VGG's second
 * convolution); 0.5 was the best of 0, 0.5 and 1 on held-out training
 * images (docs/compression.md). */
#define ENERGY_POWER 0.5

/* The group's name for a message; a group without one (a block's inner
 * group: an attention's projections and core, an LSTM's gates) is named
 * by the first named group it feeds, the block it belongs to. One message
 * holds one such name: the text lives until the next call in the thread. */
static const char *group_name(const fib_graph *g, int32_t i)
{
    static _Thread_local char text[160];
    if (g->groups[i].name)
        return g->groups[i].name;
    for (int32_t at = i, j = i + 1; j < g->n_groups; j++) {
        const fib_group *grp = &g->groups[j];
        bool reads = false;
        for (int32_t s = 0; s < grp->n_sources; s++)
            reads |= grp->sources[s] == at;
        if (!reads)
            continue;
        if (grp->name) {
            snprintf(text, sizeof text, "unnamed, in %s", grp->name);
            return text;
        }
        at = j;
    }
    return "unnamed";
}

/* Sets of selections: which they are, how many rows each selection copies,
 * and which must keep their units: one that also clusters (its classes
 * cannot be both copied and clustered), one whose units two selections
 * give, one that copies a derived group's units. A set that keeps its
 * units makes the sets whose units it copies keep theirs (and a kept
 * derived group its source), to the fixed point. */
static int32_t pin_selections(graph_budget *B, const bool *clustered)
{
    const fib_graph *g = B->g;
    int32_t n = g->n_groups;
    int64_t widest = 1;
    for (int32_t i = 0; i < n; i++)
        if (g->groups[i].n_units > widest)
            widest = g->groups[i].n_units;
    int32_t *giver = fib_alloc(widest, sizeof *giver);
    if (!giver)
        return fib_error(FIB_E_NOMEM, "%s: out of memory", fn);
    for (int32_t i = 0; i < n; i++) {
        if (B->role[i] != FIB_BUDGET_SELECTS)
            continue;
        int32_t r = B->set[i];
        B->selected[r] = true;
        if (clustered[r] || B->role[g->groups[i].sources[0]] == FIB_BUDGET_DERIVED)
            B->pinned[r] = true;
        B->copies[i] = 0;
        for (int64_t u = 0; u < g->groups[i].n_units; u++)
            B->copies[i] += g->groups[i].ops->budget_selected(g, i, u) >= 0;
    }
    /* a unit given by two selections of one set */
    for (int32_t r = 0; r < n; r++) {
        if (!B->selected[r] || B->pinned[r])
            continue;
        for (int64_t u = 0; u < g->groups[r].n_units; u++)
            giver[u] = -1;
        for (int32_t i = r; i < n && !B->pinned[r]; i++) {
            if (B->set[i] != r || B->role[i] != FIB_BUDGET_SELECTS)
                continue;
            for (int64_t u = 0; u < g->groups[i].n_units; u++) {
                if (g->groups[i].ops->budget_selected(g, i, u) < 0)
                    continue;
                if (giver[u] >= 0) {
                    B->pinned[r] = true;
                    break;
                }
                giver[u] = i;
            }
        }
    }
    fib_free(giver);
    for (bool changed = true; changed;) {
        changed = false;
        for (int32_t i = 0; i < n; i++) {
            int32_t role = B->role[i];
            if ((role != FIB_BUDGET_SELECTS && role != FIB_BUDGET_DERIVED) ||
                !B->pinned[B->set[i]])
                continue;
            int32_t src = g->groups[i].sources[0];
            if (!B->pinned[B->set[src]] || !B->pinned[src]) {
                B->pinned[B->set[src]] = B->pinned[src] = true;
                changed = true;
            }
        }
    }
    return FIB_OK;
}

/* Roles and sets; refuses a kind that cannot take part by its group. */
static int32_t build_sets(graph_budget *B)
{
    const fib_graph *g = B->g;
    int32_t n = g->n_groups;
    for (int32_t i = 0; i < n; i++)
        B->set[i] = i;
    for (int32_t i = 0; i < n; i++) {
        const fib_group *grp = &g->groups[i];
        if (fib_group_is_input(g, i))
            continue;
        if (!grp->ops->budget_role)
            return fib_error(FIB_E_UNSUPPORTED, "%s: group %d (%s): budgets do not handle %s "
                             "blocks in this version", fn, (int)i, group_name(g, i),
                             grp->ops->name);
        int32_t role = grp->ops->budget_role(g, i);
        if (role == 0)
            return fib_error(FIB_E_UNSUPPORTED, "%s: group %d (%s): a %s block that gathers "
                             "its sources' units in another order or repeats them; budgets "
                             "do not handle it in this version", fn, (int)i,
                             group_name(g, i), grp->ops->name);
        B->role[i] = role;
        if (role == FIB_BUDGET_SELECTS && !grp->ops->budget_selected)
            return fib_error(FIB_E_UNSUPPORTED, "%s: group %d (%s): a %s selection that "
                             "does not say which units it copies", fn, (int)i,
                             group_name(g, i), grp->ops->name);
        if (role == FIB_BUDGET_FOLLOWS || role == FIB_BUDGET_COUPLES)
            for (int32_t s = 0; s < grp->n_sources; s++) {
                if (g->groups[grp->sources[s]].n_units != grp->n_units)
                    return fib_error(FIB_E_UNSUPPORTED, "%s: group %d (%s): its %s block has "
                                     "%lld units but source %d has %lld", fn, (int)i,
                                     group_name(g, i), grp->ops->name,
                                     (long long)grp->n_units, (int)grp->sources[s],
                                     (long long)g->groups[grp->sources[s]].n_units);
                fib_uf_union(B->set, i, grp->sources[s]);
            }
        if (role == FIB_BUDGET_ATTENDS) {
            int32_t q = grp->sources[0], k = grp->sources[1], v = grp->sources[2];
            if (g->groups[q].n_units != g->groups[k].n_units ||
                g->groups[v].n_units != grp->n_units || !grp->ops->budget_bins)
                return fib_error(FIB_E_UNSUPPORTED, "%s: group %d (%s): its %s block pairs "
                                 "sources of %lld and %lld units and follows one of %lld",
                                 fn, (int)i, group_name(g, i), grp->ops->name,
                                 (long long)g->groups[q].n_units,
                                 (long long)g->groups[k].n_units,
                                 (long long)g->groups[v].n_units);
            fib_uf_union(B->set, q, k);
            fib_uf_union(B->set, i, v);
        }
    }
    for (int32_t i = 0; i < n; i++)
        B->set[i] = fib_uf_find(B->set, i);
    /* pinned: inputs, outputs, grouped convolutions and their sources, the
     * source of an output derived from it, sets with nothing to cluster */
    bool *clustered = fib_calloc(n, sizeof *clustered);
    if (!clustered)
        return fib_error(FIB_E_NOMEM, "%s: out of memory", fn);
    /* a derived group that others follow or add to has its source's
     * classes in a colouring's set of its own: its source keeps its units */
    int32_t *members = fib_calloc(n, sizeof *members);
    if (!members) {
        fib_free(clustered);
        return fib_error(FIB_E_NOMEM, "%s: out of memory", fn);
    }
    for (int32_t i = 0; i < n; i++)
        members[B->set[i]]++;
    for (int32_t i = n - 1; i >= 0; i--) {
        const fib_group *grp = &g->groups[i];
        bool pin = fib_group_is_input(g, i) || fib_group_is_output(g, i) ||
                   B->pinned[i] || B->role[i] == FIB_BUDGET_PINS;
        if (pin)
            B->pinned[B->set[i]] = true;
        bool derived = B->role[i] == FIB_BUDGET_DERIVED;
        if (derived && (pin || members[B->set[i]] > 1))
            B->pinned[grp->sources[0]] = B->pinned[B->set[grp->sources[0]]] = true;
        for (int32_t s = 0; B->role[i] == FIB_BUDGET_PINS && s < grp->n_sources; s++)
            B->pinned[grp->sources[s]] = B->pinned[B->set[grp->sources[s]]] = true;
        if (B->role[i] == FIB_BUDGET_CLUSTERED)
            clustered[B->set[i]] = true;
    }
    fib_free(members);
    int32_t status = pin_selections(B, clustered);
    if (status) {
        fib_free(clustered);
        return status;
    }
    for (int32_t i = 0; i < n; i++) {
        if (B->role[i] == FIB_BUDGET_DERIVED)
            continue;
        int32_t r = B->set[i];
        if (r == i && !B->pinned[i] && clustered[i]) {
            if (g->groups[i].n_units > FIB_LINKAGE_MAX_UNITS) {
                fib_free(clustered);
                return fib_error(FIB_E_UNSUPPORTED, "%s: group %d (%s): %lld units, above "
                                 "FIB_LINKAGE_MAX_UNITS", fn, (int)i, group_name(g, i),
                                 (long long)g->groups[i].n_units);
            }
            B->cand_of[i] = B->n_cand;
            B->cand[B->n_cand++] = i;
        }
    }
    fib_free(clustered);
    return FIB_OK;
}

/* The bins of every set an attention core's groups are in (its q and k
 * set, its own and v's): the units of a bin alone may share a class. Two
 * cores in one set: bins of both (pairs of bins, numbered). */
static int32_t build_bins(graph_budget *B)
{
    const fib_graph *g = B->g;
    int64_t *got = NULL;
    int32_t status = FIB_OK;
    for (int32_t i = 0; i < g->n_groups && !status; i++) {
        if (B->role[i] != FIB_BUDGET_ATTENDS)
            continue;
        int64_t n = g->groups[i].n_units;
        fib_free(got);
        got = fib_alloc(n > 0 ? n : 1, sizeof *got);
        status = got ? g->groups[i].ops->budget_bins(g, i, got)
                     : fib_error(FIB_E_NOMEM, "%s: out of memory", fn);
        int32_t roots[2] = {B->set[g->groups[i].sources[0]], B->set[i]};
        for (int32_t x = 0; x < 2 && !status; x++) {
            int64_t **bin = &B->bin[roots[x]];
            if (!*bin) {
                *bin = fib_alloc(n > 0 ? n : 1, sizeof **bin);
                if (!*bin) {
                    status = fib_error(FIB_E_NOMEM, "%s: out of memory", fn);
                    break;
                }
                memcpy(*bin, got, (size_t)n * sizeof **bin);
                continue;
            }
            fib_partition p;
            status = fib_partition_init(&p, n);
            for (int64_t u = 0; !status && u < n; u++)
                p.color[u] = (*bin)[u] * n + got[u];
            if (!status)
                status = fib_partition_canonicalize(&p);
            if (!status)
                memcpy(*bin, p.color, (size_t)n * sizeof **bin);
            fib_partition_clear(&p);
        }
    }
    fib_free(got);
    return status;
}

/* Step 1: energies, from the outputs back. */
static int32_t build_energies(graph_budget *B)
{
    const fib_graph *g = B->g;
    for (int32_t i = 0; i < g->n_groups; i++) {
        B->energy[i] = fib_calloc(g->groups[i].n_units, sizeof(double));
        if (!B->energy[i])
            return fib_error(FIB_E_NOMEM, "%s: out of memory", fn);
    }
    for (int32_t i = g->n_groups - 1; i >= 0; i--) {
        const fib_group *grp = &g->groups[i];
        double *e = B->energy[i];
        if (fib_group_is_output(g, i))
            for (int64_t u = 0; u < grp->n_units; u++)
                e[u] += 1.0;
        if (fib_group_is_input(g, i))
            continue;
        /* through the activation: a ReLU passes half the energy */
        if (grp->activation == FIB_ACT_RELU || grp->activation == FIB_ACT_LEAKY_RELU)
            for (int64_t u = 0; u < grp->n_units; u++)
                e[u] *= 0.5;
        for (int32_t s = 0; grp->ops->budget_backward && s < grp->n_sources; s++)
            grp->ops->budget_backward(g, i, s, e, B->energy[grp->sources[s]]);
        /* the weights read, a mapped model file's pages of them leave the
         * process until a set's rows read them again (one group's at a
         * time), so that the file is not resident next to those rows */
        fib_group_drop_pages(g, i);
    }
    return FIB_OK;
}

/* Removals. A unit whose incoming weights are (nearly) zero once its batch
 * norm is folded in (a channel of scale 0) outputs a constant: its bias
 * through the groups that follow it. Its consumers can take that constant
 * times its weights into their biases, after which the unit reaches
 * nothing and is removed: exact when the weights are exactly zero. Its
 * cost is the error of setting its row's weights to zero, the bias kept:
 * the squared norm of its scaled row without the bias, in the units of
 * Ward's merge costs, so that the exchange removes a unit where that is
 * cheaper than any merge. A candidate's chain (its members, the groups
 * derived from them) must be one clustered member and groups that follow
 * it unit by unit, each kind saying what a constant becomes
 * (budget_constant); every block reading the chain must take the constant
 * exactly (budget_absorbs). Otherwise no unit of the set is removed.
 *
 * With stored statistics (fib_graph_set_unit_statistics, carried forward
 * by unit_moments.c), a removed unit's pre-activation is its predicted
 * mean instead of its bias (its output then what the chain makes of that,
 * 0 for a unit predicted not to fire, not the rectified Gaussian's mean,
 * which the spread's bound would overstate), and its cost is its row's
 * times the share of a centred unit's variance that its output keeps
 * (removal_shares): about 0 for a unit that hardly ever fires. A unit
 * whose incoming weights are zero has the same constant as without
 * statistics (its mean is its bias): those removals stay exact. */

/* Whether group i is in candidate x's chain: a non-derived member of its
 * set, or derived from a group of the chain. */
static bool in_chain(const graph_budget *B, int32_t x, int32_t i)
{
    const fib_graph *g = B->g;
    if (B->role[i] != FIB_BUDGET_DERIVED)
        return B->set[i] == B->cand[x];
    return B->chain_of[g->groups[i].sources[0]] == x;
}

/* The share of a unit's row error that its removal makes, from the
 * statistics of the first group of candidate x's chain with an activation
 * (else its clustered member): the variance of the unit's output over its
 * pre-activation's, relative to that of a unit centred on 0 (a ReLU keeps
 * 1/2 - 1/(2 pi) of a centred Gaussian's), at most 1: a unit that fires at
 * least half of the time costs what it costs without statistics, one that
 * hardly ever fires about 0, and one whose pre-activation does not vary 0.
 * Left NULL (1) without the statistics. */
static int32_t removal_shares(graph_budget *B, int32_t x)
{
    const fib_graph *g = B->g;
    int32_t at = -1;
    for (int32_t i = 0; i < g->n_groups; i++) {
        if (B->chain_of[i] != x || B->role[i] == FIB_BUDGET_DERIVED)
            continue;
        if (g->groups[i].activation != FIB_ACT_LINEAR) {
            at = i;
            break;
        }
        if (B->role[i] == FIB_BUDGET_CLUSTERED && at < 0)
            at = i;
    }
    budget_set *s = &B->sets[x];
    if (at < 0 || !B->moments.pre_var[at] || g->groups[at].n_units != s->n)
        return FIB_OK;
    s->remove_share = fib_alloc(s->n, sizeof *s->remove_share);
    if (!s->remove_share)
        return fib_error(FIB_E_NOMEM, "%s: out of memory", fn);
    double centred = 0, spread = 1; /* what the activation keeps of N(0, 1) */
    fib_activation_moments(g->groups[at].activation, &centred, &spread);
    for (int64_t u = 0; u < s->n; u++) {
        double pre = B->moments.pre_var[at][u], out = B->moments.var[at][u];
        s->remove_share[u] = pre > 0 ? fmin(1.0, out / (spread * pre)) : 0.0;
    }
    return FIB_OK;
}

/* The chain of candidate x, its constants and which units it can remove
 * (s->remove_cost left NULL when none). */
static int32_t chain_constants(graph_budget *B, int32_t x)
{
    const fib_graph *g = B->g;
    budget_set *s = &B->sets[x];
    int32_t root = B->cand[x], clustered = 0;
    if (B->bin[root] || B->selected[root])
        return FIB_OK;
    for (int32_t i = 0; i < g->n_groups; i++) {
        if (!in_chain(B, x, i))
            continue;
        B->chain_of[i] = x;
        int32_t role = B->role[i];
        clustered += role == FIB_BUDGET_CLUSTERED;
        if ((role != FIB_BUDGET_CLUSTERED && role != FIB_BUDGET_FOLLOWS &&
             role != FIB_BUDGET_DERIVED) || !g->groups[i].ops->budget_constant ||
            fib_group_is_output(g, i))
            clustered = 2; /* not a chain removals handle */
    }
    if (clustered != 1)
        return FIB_OK;
    /* with stored statistics, the clustered member's units sit at their
     * predicted pre-activation mean instead of their bias */
    const double *centre = NULL;
    for (int32_t i = 0; B->moments.pre_mean && i < g->n_groups; i++)
        if (B->chain_of[i] == x && B->role[i] == FIB_BUDGET_CLUSTERED)
            centre = B->moments.pre_mean[i];
    for (int32_t i = 0; i < g->n_groups; i++) {
        if (B->chain_of[i] != x)
            continue;
        const fib_group *grp = &g->groups[i];
        int64_t n = grp->n_units;
        B->constant[i] = fib_alloc(n > 0 ? n : 1, sizeof **B->constant);
        if (!B->constant[i])
            return fib_error(FIB_E_NOMEM, "%s: out of memory", fn);
        int32_t src = B->role[i] == FIB_BUDGET_CLUSTERED ? -1 : grp->sources[0];
        for (int64_t u = 0; u < n; u++) {
            double v = src < 0 && centre
                           ? centre[u]
                           : grp->ops->budget_constant(g, i, u, src < 0 ? NULL : B->constant[src]);
            if (!isnan(v))
                fib_activation_apply(grp->activation, grp->act_param, &v, 1);
            B->constant[i][u] = v;
        }
        if (B->role[i] != FIB_BUDGET_DERIVED)
            continue;
        /* a derived unit is its source unit's value: numbered units tell
         * which unit of the set each stems from */
        double *number = fib_alloc(g->groups[src].n_units, sizeof *number);
        B->origin[i] = fib_alloc(n > 0 ? n : 1, sizeof **B->origin);
        if (!number || !B->origin[i]) {
            fib_free(number);
            return fib_error(FIB_E_NOMEM, "%s: out of memory", fn);
        }
        for (int64_t u = 0; u < g->groups[src].n_units; u++)
            number[u] = (double)(B->origin[src] ? B->origin[src][u] : u);
        for (int64_t u = 0; u < n; u++)
            B->origin[i][u] = (int64_t)grp->ops->budget_constant(g, i, u, number);
        fib_free(number);
    }
    bool *ok = fib_alloc(s->n > 0 ? s->n : 1, sizeof *ok);
    if (!ok)
        return fib_error(FIB_E_NOMEM, "%s: out of memory", fn);
    for (int64_t u = 0; u < s->n; u++)
        ok[u] = true;
    for (int32_t i = 0; i < g->n_groups; i++) {
        if (B->chain_of[i] != x)
            continue;
        for (int64_t w = 0; w < g->groups[i].n_units; w++)
            if (isnan(B->constant[i][w]))
                ok[B->origin[i] ? B->origin[i][w] : w] = false;
    }
    /* every block reading the chain from outside takes the constants */
    bool any = false;
    for (int32_t h = 0; h < g->n_groups; h++) {
        const fib_group *grp = &g->groups[h];
        if (B->chain_of[h] == x || fib_group_is_input(g, h))
            continue;
        for (int32_t q = 0; q < grp->n_sources; q++) {
            int32_t src = grp->sources[q];
            if (B->chain_of[src] != x)
                continue;
            /* a selection stays one (0/1 weights without bias) */
            bool takes = grp->ops->budget_absorbs && grp->ops->budget_absorb &&
                         B->role[h] != FIB_BUDGET_SELECTS;
            for (int64_t w = 0; w < g->groups[src].n_units; w++)
                if (!takes || !grp->ops->budget_absorbs(g, h, q, B->constant[src][w]))
                    ok[B->origin[src] ? B->origin[src][w] : w] = false;
        }
    }
    for (int64_t u = 0; u < s->n; u++)
        any |= ok[u];
    if (any) {
        s->remove_cost = fib_alloc(s->n, sizeof *s->remove_cost);
        if (!s->remove_cost) {
            fib_free(ok);
            return fib_error(FIB_E_NOMEM, "%s: out of memory", fn);
        }
        /* set_rows writes the costs of the units marked 0 */
        for (int64_t u = 0; u < s->n; u++)
            s->remove_cost[u] = ok[u] ? 0 : INFINITY;
    }
    fib_free(ok);
    return any && centre ? removal_shares(B, x) : FIB_OK;
}

static int32_t build_removals(graph_budget *B)
{
    int32_t n = B->g->n_groups > 0 ? B->g->n_groups : 1;
    B->constant = fib_calloc(n, sizeof *B->constant);
    B->origin = fib_calloc(n, sizeof *B->origin);
    B->chain_of = fib_alloc(n, sizeof *B->chain_of);
    if (!B->constant || !B->origin || !B->chain_of)
        return fib_error(FIB_E_NOMEM, "%s: out of memory", fn);
    for (int32_t i = 0; i < n; i++)
        B->chain_of[i] = -1;
    int32_t status = fib_unit_moments_build(B->g, &B->moments);
    for (int32_t x = 0; x < B->n_cand && !status; x++)
        status = chain_constants(B, x);
    return status;
}

typedef struct removal {
    double cost;
    int64_t unit;
} removal;

static int cmp_removal(const void *x, const void *y)
{
    const removal *p = x, *q = y;
    if (p->cost != q->cost)
        return p->cost < q->cost ? -1 : 1;
    return (p->unit > q->unit) - (p->unit < q->unit);
}

/* Joins the clusters of roots a and b, live[] counting their units kept. */
static void join(int64_t *parent, int64_t *live, int64_t a, int64_t b)
{
    int64_t both = live[a] + live[b];
    fib_uf_union(parent, a, b);
    live[fib_uf_find(parent, a)] = both;
}

/* The events of a set that can remove units: Ward's merges and the
 * removals, cheapest first, a removal preferred at equal cost (two
 * constant units merge at no cost in the rows but not in their outputs);
 * a unit is removed only while it is alone among its cluster's units that
 * remain, and a merge with a cluster whose units are all removed changes
 * no count. err[k] and ev_end[k] for each count k reached. */
static int32_t interleave_removals(budget_set *s)
{
    int64_t n = s->n, total = s->mg.n_merges + n;
    int64_t *parent = fib_alloc(n, sizeof *parent), *live = fib_alloc(n, sizeof *live);
    removal *order = fib_alloc(n, sizeof *order);
    s->ev_a = fib_alloc(total, sizeof *s->ev_a);
    s->ev_b = fib_alloc(total, sizeof *s->ev_b);
    s->ev_end = fib_alloc(n + 1, sizeof *s->ev_end);
    s->removed = fib_calloc(n, sizeof *s->removed);
    if (!parent || !live || !order || !s->ev_a || !s->ev_b || !s->ev_end || !s->removed) {
        fib_free(parent);
        fib_free(live);
        fib_free(order);
        return fib_error(FIB_E_NOMEM, "%s: out of memory", fn);
    }
    int64_t n_order = 0;
    for (int64_t u = 0; u < n; u++) {
        parent[u] = u;
        live[u] = 1;
        if (isfinite(s->remove_cost[u]))
            order[n_order++] = (removal){s->remove_cost[u], u};
    }
    qsort(order, (size_t)n_order, sizeof *order, cmp_removal);
    int64_t classes = n, events = 0, mi = 0, ri = 0;
    double acc = 0;
    for (int64_t k = 0; k <= n; k++) {
        s->err[k] = INFINITY;
        s->ev_end[k] = 0;
    }
    s->err[n] = 0;
    while (classes > 1) {
        while (ri < n_order && live[fib_uf_find(parent, order[ri].unit)] != 1)
            ri++;
        if (mi < s->mg.n_merges) {
            int64_t ra = fib_uf_find(parent, s->mg.a[mi]), rb = fib_uf_find(parent, s->mg.b[mi]);
            if (live[ra] == 0 || live[rb] == 0) { /* changes no count */
                join(parent, live, ra, rb);
                s->ev_a[events] = s->mg.a[mi++];
                s->ev_b[events++] = s->mg.b[mi - 1];
                continue;
            }
        }
        double hm = mi < s->mg.n_merges ? (s->mg.height[mi] > 0 ? s->mg.height[mi] : 0)
                                        : INFINITY;
        double hr = ri < n_order ? order[ri].cost : INFINITY;
        if (isinf(hm) && isinf(hr))
            break;
        if (hr <= hm) {
            int64_t u = order[ri++].unit;
            live[fib_uf_find(parent, u)] = 0;
            s->ev_a[events] = u;
            s->ev_b[events++] = -1;
            acc += hr;
        } else {
            join(parent, live, fib_uf_find(parent, s->mg.a[mi]), fib_uf_find(parent, s->mg.b[mi]));
            s->ev_a[events] = s->mg.a[mi];
            s->ev_b[events++] = s->mg.b[mi++];
            acc += hm;
        }
        classes--;
        s->err[classes] = sqrt(acc);
        s->ev_end[classes] = events;
    }
    fib_free(parent);
    fib_free(live);
    fib_free(order);
    return FIB_OK;
}

/* The classes of a set that removes units, at its count: the events up to
 * it replayed; s->removed marks the removed units, which join the class of
 * the lowest unit kept (they reach nothing once their consumers took their
 * constants, and take that class's rows: remove_units). */
static int32_t cut_removals(budget_set *s, fib_partition *p)
{
    int64_t n = s->n, *parent = fib_alloc(n, sizeof *parent);
    if (!parent)
        return fib_error(FIB_E_NOMEM, "%s: out of memory", fn);
    for (int64_t u = 0; u < n; u++) {
        parent[u] = u;
        s->removed[u] = false;
    }
    for (int64_t e = 0; e < s->ev_end[s->k]; e++) {
        if (s->ev_b[e] < 0) {
            s->removed[s->ev_a[e]] = true;
            continue;
        }
        fib_uf_union(parent, s->ev_a[e], s->ev_b[e]);
    }
    /* a cluster is named by a unit it keeps; the removed by the first kept */
    int64_t *name = fib_alloc(n, sizeof *name), first = -1;
    if (!name) {
        fib_free(parent);
        return fib_error(FIB_E_NOMEM, "%s: out of memory", fn);
    }
    for (int64_t u = 0; u < n; u++)
        name[u] = -1;
    for (int64_t u = 0; u < n; u++)
        if (!s->removed[u]) {
            int64_t r = fib_uf_find(parent, u);
            if (name[r] < 0)
                name[r] = u;
            first = first < 0 ? u : first;
        }
    for (int64_t u = 0; u < n; u++)
        p->color[u] = s->removed[u] ? name[fib_uf_find(parent, first)]
                                    : name[fib_uf_find(parent, u)];
    fib_free(name);
    fib_free(parent);
    return fib_partition_canonicalize(p);
}

typedef struct hashed_unit {
    uint64_t hash;
    int64_t unit;
} hashed_unit;

static int cmp_hashed_unit(const void *x, const void *y)
{
    const hashed_unit *p = x, *q = y;
    if (p->hash != q->hash)
        return p->hash < q->hash ? -1 : 1;
    return (p->unit > q->unit) - (p->unit < q->unit);
}

/* copy_of[u] = the lowest unit whose row, over the `width` coordinates
 * from `at`, and label equal u's bit for bit (u itself for none): rows
 * hashed, sorted, and compared within equal hashes. */
static int32_t find_copies(const fib_rows *r, int64_t at, int64_t width, int64_t *copy_of)
{
    hashed_unit *h = fib_alloc(r->n > 0 ? r->n : 1, sizeof *h);
    if (!h)
        return fib_error(FIB_E_NOMEM, "%s: out of memory", fn);
    size_t bytes = (size_t)width * sizeof(double);
    for (int64_t u = 0; u < r->n; u++) {
        const unsigned char *p = (const unsigned char *)(r->value + u * r->d + at);
        uint64_t x = UINT64_C(1469598103934665603) ^ (uint64_t)r->label[u]; /* FNV-1a */
        for (size_t b = 0; b < bytes; b++)
            x = (x ^ p[b]) * UINT64_C(1099511628211);
        h[u] = (hashed_unit){x, u};
        copy_of[u] = u;
    }
    qsort(h, (size_t)r->n, sizeof *h, cmp_hashed_unit);
    for (int64_t s = 0; s < r->n; s++)
        for (int64_t t = s - 1; t >= 0 && h[t].hash == h[s].hash; t--)
            if (copy_of[h[t].unit] == h[t].unit && r->label[h[s].unit] == r->label[h[t].unit] &&
                !memcmp(r->value + h[s].unit * r->d + at, r->value + h[t].unit * r->d + at,
                        bytes)) {
                copy_of[h[s].unit] = h[t].unit; /* lower: sorted by unit within a hash */
                break;
            }
    fib_free(h);
    return FIB_OK;
}

/* Copies in a set whose first two clustered members pair their units (an
 * attention's q and k: unit i's score term is q_i k_i): the term of a class
 * merged with the mean of each side and its size as multiplicity changes by
 * sum_i (q_i - mean q)(k_i - mean k), zero when the rows are equal on
 * EITHER side. copy_of: units equal on the first member's rows, then, among
 * the units that have no such copy, units equal on the second's (a chain
 * through both sides would not be exact). Labels (the set's rows' bins)
 * keep bins apart. at[i], width[i]: member i's coordinates in the set's
 * rows r (width -1 for a group that is no member). *paired: false when the
 * set has one clustered member (copy_of unset). */
static int32_t paired_copies(const graph_budget *B, int32_t root, const fib_rows *r,
                             const int64_t *at, const int64_t *width, int64_t *copy_of,
                             bool *paired)
{
    const fib_graph *g = B->g;
    int32_t side[2], found = 0;
    for (int32_t i = 0; i < g->n_groups && found < 2; i++)
        if (width[i] >= 0)
            side[found++] = i;
    if (found < 2)
        return FIB_OK;
    *paired = true;
    int64_t n = g->groups[root].n_units;
    int64_t *first = fib_alloc(n, sizeof *first), *second = fib_alloc(n, sizeof *second);
    int64_t *size = fib_calloc(n, sizeof *size), *rep = fib_alloc(n, sizeof *rep);
    int32_t status = first && second && size && rep
                         ? FIB_OK : fib_error(FIB_E_NOMEM, "%s: out of memory", fn);
    if (!status)
        status = find_copies(r, at[side[0]], width[side[0]], first);
    if (!status)
        status = find_copies(r, at[side[1]], width[side[1]], second);
    for (int64_t u = 0; !status && u < n; u++) {
        size[first[u]]++;
        rep[u] = -1;
    }
    for (int64_t u = 0; !status && u < n; u++) {
        if (size[first[u]] > 1) {
            copy_of[u] = first[u];
            continue;
        }
        if (rep[second[u]] < 0)
            rep[second[u]] = u; /* the lowest unit of its kind: u ascending */
        copy_of[u] = rep[second[u]];
    }
    fib_free(first);
    fib_free(second);
    fib_free(size);
    fib_free(rep);
    return status;
}

/* The rows set `root` clusters: its clustered members' incoming weights
 * over their sources' units, side by side, scaled by the square root of
 * the energy; copy_of: find_copies on the rows before scaling. Each
 * member's rows go into the set's rows as soon as they are filled, so that
 * one member's signature is held next to them, not every member's. */
static int32_t set_rows(const graph_budget *B, int32_t root, fib_rows *out, int64_t *copy_of)
{
    const fib_graph *g = B->g;
    int64_t n = g->groups[root].n_units, d = 0, widest = 0;
    fib_partition *discrete = fib_calloc(g->n_groups, sizeof *discrete);
    int64_t *at = fib_alloc(g->n_groups, sizeof *at), *width = fib_alloc(g->n_groups, sizeof *width);
    if (!discrete || !at || !width) {
        fib_free(discrete);
        fib_free(at);
        fib_free(width);
        return fib_error(FIB_E_NOMEM, "%s: out of memory", fn);
    }
    int32_t status = FIB_OK;
    for (int32_t i = 0; i < g->n_groups && !status; i++)
        status = fib_partition_init(&discrete[i], g->groups[i].n_units);
    /* the signatures' widths: the rows have as many coordinates but the
     * labels (rows that are then narrowed in place) */
    for (int32_t i = 0; i < g->n_groups && !status; i++) {
        width[i] = -1;
        if (B->set[i] != root || B->role[i] != FIB_BUDGET_CLUSTERED)
            continue;
        width[i] = g->groups[i].ops->fiber_width(g, i, discrete);
        status = width[i] < 0 ? (int32_t)width[i] : FIB_OK;
        widest += status ? 0 : width[i];
    }
    if (!status)
        status = fib_rows_alloc(out, n, widest);
    if (!status) { /* the set's agglomeration (Ward) reads no allowances */
        fib_free(out->tol);
        out->tol = NULL;
    }
    /* units of different bins never share a class: labels the linkage and
     * find_copies keep apart */
    for (int64_t u = 0; !status && B->bin[root] && u < n; u++)
        out->label[u] = B->bin[root][u];
    for (int32_t i = 0; i < g->n_groups && !status; i++) {
        if (B->set[i] != root || B->role[i] != FIB_BUDGET_CLUSTERED)
            continue;
        const fib_block_ops *ops = g->groups[i].ops;
        fib_signature sig;
        status = fib_signature_alloc(&sig, n, width[i]);
        if (status)
            break;
        sig.n_threads = 1;
        status = ops->fiber_fill(g, i, discrete, &sig, 0);
        fib_group_drop_pages(g, i); /* the rows are copies */
        at[i] = d;
        width[i] = status ? -1 : fib_rows_put_signature(&sig, out, d);
        d += status ? 0 : width[i];
        fib_signature_clear(&sig);
    }
    /* without the label coordinates: rows of d, in place (row u moves down) */
    for (int64_t u = 1; !status && d < widest && u < n; u++)
        memmove(out->value + u * d, out->value + u * widest, (size_t)d * sizeof(double));
    if (!status)
        out->d = d;
    bool paired = false;
    if (!status && B->bin[root])
        status = paired_copies(B, root, out, at, width, copy_of, &paired);
    if (!status && !paired)
        status = find_copies(out, 0, d, copy_of);
    for (int32_t i = 0; i < g->n_groups && !status; i++) {
        if (width[i] < 0)
            continue;
        /* a row's error reaches the outputs at every position of its unit */
        double positions = (double)fib_group_positions(&g->groups[i]);
        for (int64_t u = 0; u < n; u++) {
            double s = pow(B->energy[i][u] * positions, ENERGY_POWER / 2);
            for (int64_t j = 0; j < width[i]; j++)
                out->value[u * d + at[i] + j] *= s;
        }
    }
    /* a removal sets the weights of its row to zero and keeps the bias */
    double *cost = B->sets[B->cand_of[root]].remove_cost;
    for (int32_t i = 0; cost && i < g->n_groups && !status; i++) {
        if (width[i] < 0)
            continue;
        fib_tensor_view bv;
        const fib_block_ops *ops = g->groups[i].ops;
        bool bias = ops->tensor && ops->tensor(g, i, 1, &bv) && bv.name &&
                    !strcmp(bv.name, "bias");
        for (int64_t u = 0; u < n; u++)
            for (int64_t j = 0; isfinite(cost[u]) && j < width[i] - (bias ? 1 : 0); j++)
                cost[u] += out->value[u * d + at[i] + j] * out->value[u * d + at[i] + j];
    }
    const double *share = B->sets[B->cand_of[root]].remove_share;
    for (int64_t u = 0; cost && share && !status && u < n; u++)
        cost[u] = isfinite(cost[u]) ? cost[u] * share[u] : cost[u];
    for (int32_t i = 0; i < g->n_groups; i++)
        fib_partition_clear(&discrete[i]);
    fib_free(discrete);
    fib_free(at);
    fib_free(width);
    return status;
}

/* The agglomeration of rows r whose units copy_of[u] are exact copies:
 * the copies merge first at cost 0, then the classes of copies (each the
 * mean of its rows, of mass its size) are agglomerated, within their
 * labels; merges name units, as fib_linkage_run's do. The classes' rows
 * are made in r's place (class c's row over row c: c <= u for every unit
 * u of it, and rows are read in ascending order), so r is consumed. */
static int32_t merges_after_copies(fib_rows *r, const int64_t *copy_of,
                                   const fib_progress_check *check, fib_merges *mg)
{
    int64_t n = r->n, items = 0;
    for (int64_t u = 0; u < n; u++)
        items += copy_of[u] == u;
    int64_t *unit = fib_alloc(items > 0 ? items : 1, sizeof *unit);
    int64_t *item = fib_alloc(n > 0 ? n : 1, sizeof *item);
    double *mass = fib_calloc(items > 0 ? items : 1, sizeof *mass);
    fib_rows classes = *r;
    classes.n = items;
    fib_merges inner = {0};
    int32_t status = unit && item && mass ? FIB_OK
                                          : fib_error(FIB_E_NOMEM, "%s: out of memory", fn);
    for (int64_t u = 0, x = 0; !status && u < n; u++) {
        bool first = copy_of[u] == u;
        if (first)
            unit[x++] = u;
        int64_t c = item[u] = first ? x - 1 : item[copy_of[u]];
        classes.label[c] = r->label[u];
        mass[c] += 1;
        /* a sum from 0.0, as an accumulator's (-0.0 becomes +0.0) */
        for (int64_t j = 0; j < r->d; j++)
            classes.value[c * r->d + j] = (first ? 0.0 : classes.value[c * r->d + j]) +
                                          r->value[u * r->d + j];
    }
    for (int64_t c = 0; !status && c < items; c++)
        for (int64_t j = 0; j < r->d; j++)
            classes.value[c * r->d + j] /= mass[c];
    if (!status)
        status = fib_linkage_run_checked(&classes, FIB_TOL_WARD, false, mass, INFINITY, check,
                                         &inner);
    int64_t total = n - items + inner.n_merges;
    if (!status) {
        mg->a = fib_alloc(total > 0 ? total : 1, sizeof *mg->a);
        mg->b = fib_alloc(total > 0 ? total : 1, sizeof *mg->b);
        mg->height = fib_alloc(total > 0 ? total : 1, sizeof *mg->height);
        mg->n = n;
        mg->n_merges = total;
        if (!mg->a || !mg->b || !mg->height)
            status = fib_error(FIB_E_NOMEM, "%s: out of memory", fn);
    }
    for (int64_t u = 0, s = 0; !status && u < n; u++)
        if (copy_of[u] != u) {
            mg->a[s] = copy_of[u];
            mg->b[s] = u;
            mg->height[s++] = 0;
        }
    for (int64_t s = 0; !status && s < inner.n_merges; s++) {
        mg->a[n - items + s] = unit[inner.a[s]];
        mg->b[n - items + s] = unit[inner.b[s]];
        mg->height[n - items + s] = inner.height[s];
    }
    if (status)
        fib_merges_clear(mg);
    fib_merges_clear(&inner);
    fib_free(unit);
    fib_free(item);
    fib_free(mass);
    return status;
}

/* Step 2: one agglomeration per candidate; err[k] = sqrt of the cost of
 * the first n - k merges. */
static int32_t set_merges(graph_budget *B, budget_set *s, int32_t root,
                          const fib_progress_check *check)
{
    fib_rows r = {0};
    s->n = s->k = B->g->groups[root].n_units;
    s->err = fib_alloc(s->n + 1, sizeof *s->err);
    int64_t *copy_of = fib_alloc(s->n, sizeof *copy_of);
    int32_t status = s->err && copy_of ? set_rows(B, root, &r, copy_of)
                                       : fib_error(FIB_E_NOMEM, "%s: out of memory", fn);
    if (!status)
        status = merges_after_copies(&r, copy_of, check, &s->mg);
    /* a binned set (attention) always merges its copies: a copied head's
     * dimensions merge with the original's together, or the core's classes
     * would mix heads that attend differently */
    for (int64_t u = 0; !status && B->bin[root] && u < s->n; u++)
        s->k -= copy_of[u] != u;
    fib_rows_clear(&r);
    fib_free(copy_of);
    if (status)
        return status;
    double acc = 0;
    s->err[s->n] = 0;
    for (int64_t m = 0; m < s->n - 1; m++) {
        int64_t k = s->n - 1 - m;
        if (m < s->mg.n_merges) {
            acc += s->mg.height[m] > 0 ? s->mg.height[m] : 0;
            s->err[k] = sqrt(acc);
        } else {
            s->err[k] = INFINITY;
        }
    }
    return s->remove_cost ? interleave_removals(s) : FIB_OK;
}

/* Widths of the base with the sets' counts: derived groups scale with
 * their source; the members of a set of selections have as many units as
 * its selections copy classes, at most (a split copying part of its
 * source may copy fewer), so that the count is never under the base's. */
static int64_t width_rule(const graph_budget *B, int32_t i);

static void set_widths(graph_budget *B)
{
    const fib_graph *g = B->g;
    for (int32_t i = 0; i < g->n_groups; i++)
        B->width[i] = g->groups[i].n_units;
    /* a width reads those of the groups it follows, which may come later
     * (a selection's source): to the fixed point */
    for (bool changed = true; changed;) {
        changed = false;
        B->pass++;
        for (int32_t i = 0; i < g->n_groups; i++) {
            int64_t w = width_rule(B, i);
            changed |= w != B->width[i];
            B->width[i] = w;
        }
    }
}

/* The elements of group i's first tensor (its weights) when an earlier
 * group's first tensor is the same memory (a tied LM head borrows the
 * token embedding's matrix), with *with that group; else 0. Torch counts a
 * shared parameter once. */
static int64_t tied_weights(const fib_graph *g, int32_t i, int32_t *with)
{
    fib_tensor_view a, b;
    const fib_block_ops *ops = g->groups[i].ops;
    *with = -1;
    if (fib_group_is_input(g, i) || !ops || !ops->tensor || !ops->tensor(g, i, 0, &a) || !a.data)
        return 0;
    int64_t n = 1;
    for (int32_t d = 0; d < a.ndim; d++)
        n *= a.shape[d];
    for (int32_t j = 0; j < i; j++) {
        const fib_block_ops *o = g->groups[j].ops;
        if (fib_group_is_input(g, j) || !o || !o->tensor || !o->tensor(g, j, 0, &b) ||
            b.data != a.data || b.dtype != a.dtype)
            continue;
        int64_t m = 1;
        for (int32_t d = 0; d < b.ndim; d++)
            m *= b.shape[d];
        if (m == n) {
            *with = j;
            return n;
        }
    }
    return 0;
}

/* Whether group i and its sources keep their units at widths `width`. */
static bool whole(const fib_graph *g, int32_t i, const int64_t *width)
{
    if (width[i] != g->groups[i].n_units)
        return false;
    for (int32_t s = 0; s < g->groups[i].n_sources; s++)
        if (width[g->groups[i].sources[s]] != g->groups[g->groups[i].sources[s]].n_units)
            return false;
    return true;
}

/* Parameters of a group at the widths B->width: selections hold none; a
 * tied group's weights count once while the tie stays (both whole: the
 * base's two matrices are then equal, and torch and the checkpoint writer
 * keep them tied). */
static int64_t group_params(const graph_budget *B, const fib_graph *g, int32_t i)
{
    const fib_block_ops *ops = g->groups[i].ops;
    if (B->role[i] == FIB_BUDGET_SELECTS)
        return 0;
    int64_t out = 0;
    if (ops && ops->budget_parameters)
        out = ops->budget_parameters(g, i, B->width);
    else if (ops && ops->num_parameters)
        out = ops->num_parameters(g, i);
    /* a tie stays while both groups keep their units and their sources' */
    int32_t with = B->tie[i];
    if (with >= 0 && whole(g, i, B->width) && whole(g, with, B->width)) {
        int32_t same;
        out -= tied_weights(g, i, &same);
    }
    return out;
}

/* Parameters of the base with the sets' widths (kept per group in
 * B->params for step_params). */
static int64_t graph_params(graph_budget *B)
{
    set_widths(B);
    int64_t total = 0;
    for (int32_t i = 0; i < B->g->n_groups; i++) {
        int64_t p = group_params(B, B->g, i);
        if (B->params)
            B->params[i] = p;
        total += p;
    }
    return total;
}

/* The width of group i by the rules of set_widths, from the widths of
 * the groups it follows. */
static int64_t width_rule(const graph_budget *B, int32_t i)
{
    const fib_graph *g = B->g;
    int32_t r = B->set[i];
    if (B->role[i] == FIB_BUDGET_DERIVED) {
        int32_t src = g->groups[i].sources[0];
        return B->width[src] * (g->groups[i].n_units / g->groups[src].n_units);
    }
    if (B->cand_of[r] >= 0)
        return B->sets[B->cand_of[r]].k;
    if (!B->selected[r] || B->pinned[r])
        return g->groups[i].n_units;
    /* once per set and pass: every member of a set has the set's width */
    if (B->root_pass[r] != B->pass) {
        int64_t acc = 0;
        for (int32_t x = B->sel_at[r]; x < B->sel_at[r + 1]; x++) {
            int32_t m = B->sel[x];
            int64_t from = B->width[g->groups[m].sources[0]];
            acc += from < B->copies[m] ? from : B->copies[m];
        }
        acc = acc < g->groups[r].n_units ? acc : g->groups[r].n_units;
        B->root_width[r] = acc > 1 ? acc : 1;
        B->root_pass[r] = B->pass;
    }
    return B->root_width[r];
}

/* The groups whose widths candidate x's count moves (its members, what
 * derives from them or selects them, to the closure): in[i]. */
static void reach_of(const graph_budget *B, int32_t x, bool *in)
{
    const fib_graph *g = B->g;
    int32_t n = g->n_groups;
    for (int32_t i = 0; i < n; i++)
        in[i] = B->set[i] == B->cand[x] && B->role[i] != FIB_BUDGET_DERIVED;
    for (bool changed = true; changed;) {
        changed = false;
        for (int32_t i = 0; i < n; i++) {
            int32_t role = B->role[i], r = B->set[i];
            if (in[i] || (role != FIB_BUDGET_DERIVED && role != FIB_BUDGET_SELECTS) ||
                !in[g->groups[i].sources[0]])
                continue;
            if (role == FIB_BUDGET_DERIVED) {
                in[i] = changed = true;
                continue;
            }
            if (!B->selected[r] || B->pinned[r])
                continue;
            for (int32_t j = r; j < n; j++)
                if (B->set[j] == r && B->role[j] != FIB_BUDGET_DERIVED && !in[j])
                    in[j] = changed = true;
        }
    }
}

/* Whether group i reads a group marked in `in`. */
static bool reads_marked(const fib_graph *g, int32_t i, const bool *in)
{
    for (int32_t q = 0; q < g->groups[i].n_sources; q++)
        if (in[g->groups[i].sources[q]])
            return true;
    return false;
}

/* Whether group i's parameters move with the widths marked in `in`: its
 * own, its sources', and those of the group whose weights it shares. */
static bool touched(const graph_budget *B, int32_t i, const bool *in)
{
    int32_t with = B->tie[i];
    return in[i] || reads_marked(B->g, i, in) ||
           (with >= 0 && (in[with] || reads_marked(B->g, with, in)));
}

/* What each candidate's count reaches (reach_of) and the groups whose
 * parameters those widths move (they and their consumers), so that the
 * exchange counts a step without recounting the graph; each root's
 * selections. Two passes: sizes, then the lists. */
static int32_t build_reach(graph_budget *B)
{
    const fib_graph *g = B->g;
    int32_t n = g->n_groups, c = B->n_cand;
    bool *in = fib_calloc(n > 0 ? n : 1, sizeof *in);
    int32_t *cursor = fib_calloc(n + 1, sizeof *cursor);
    B->params = fib_calloc(n > 0 ? n : 1, sizeof *B->params);
    B->saved = fib_calloc(n > 0 ? n : 1, sizeof *B->saved);
    B->root_width = fib_calloc(n > 0 ? n : 1, sizeof *B->root_width);
    B->root_pass = fib_calloc(n > 0 ? n : 1, sizeof *B->root_pass);
    B->sel_at = fib_calloc(n + 1, sizeof *B->sel_at);
    B->sel = fib_calloc(n > 0 ? n : 1, sizeof *B->sel);
    B->wide_at = fib_calloc(c + 1, sizeof *B->wide_at);
    B->touch_at = fib_calloc(c + 1, sizeof *B->touch_at);
    int32_t status = FIB_OK;
    if (!in || !cursor || !B->params || !B->saved || !B->root_width || !B->root_pass ||
        !B->sel_at || !B->sel || !B->wide_at || !B->touch_at)
        status = fib_error(FIB_E_NOMEM, "%s: out of memory", fn);
    for (int32_t i = 0; !status && i < n; i++)
        B->sel_at[B->set[i] + 1] += B->role[i] == FIB_BUDGET_SELECTS;
    for (int32_t r = 0; !status && r < n; r++)
        B->sel_at[r + 1] += B->sel_at[r];
    for (int32_t i = 0; !status && i < n; i++)
        if (B->role[i] == FIB_BUDGET_SELECTS)
            B->sel[B->sel_at[B->set[i]] + cursor[B->set[i]]++] = i;
    for (int32_t x = 0; !status && x < c; x++) {
        reach_of(B, x, in);
        int32_t w = 0, t = 0;
        for (int32_t i = 0; i < n; i++) {
            w += in[i];
            t += touched(B, i, in);
        }
        B->wide_at[x + 1] = B->wide_at[x] + w;
        B->touch_at[x + 1] = B->touch_at[x] + t;
    }
    if (!status) {
        B->wide = fib_alloc(B->wide_at[c] > 0 ? B->wide_at[c] : 1, sizeof *B->wide);
        B->touch = fib_alloc(B->touch_at[c] > 0 ? B->touch_at[c] : 1, sizeof *B->touch);
        if (!B->wide || !B->touch)
            status = fib_error(FIB_E_NOMEM, "%s: out of memory", fn);
    }
    for (int32_t x = 0; !status && x < c; x++) {
        reach_of(B, x, in);
        for (int32_t i = 0, w = B->wide_at[x], t = B->touch_at[x]; i < n; i++) {
            if (in[i])
                B->wide[w++] = i;
            if (touched(B, i, in))
                B->touch[t++] = i;
        }
    }
    fib_free(in);
    fib_free(cursor);
    return status;
}

/* The parameters with candidate x at k2 classes, from `now` (the count at
 * the current widths, B->params per group): only what x reaches is
 * recounted; the widths are restored, or with `keep` kept (and B->params
 * with them). */
static int64_t step_params(graph_budget *B, int32_t x, int64_t k2, int64_t now, bool keep)
{
    int64_t k0 = B->sets[x].k;
    B->sets[x].k = k2;
    int32_t a = B->wide_at[x], b = B->wide_at[x + 1];
    for (int32_t j = a; j < b; j++)
        B->saved[j - a] = B->width[B->wide[j]];
    for (int32_t pass = 0, changed = 1; changed && pass <= b - a; pass++) {
        changed = 0;
        B->pass++;
        for (int32_t j = a; j < b; j++) {
            int64_t w = width_rule(B, B->wide[j]);
            changed |= w != B->width[B->wide[j]];
            B->width[B->wide[j]] = w;
        }
    }
    int64_t after = now;
    for (int32_t j = B->touch_at[x]; j < B->touch_at[x + 1]; j++) {
        int64_t p = group_params(B, B->g, B->touch[j]);
        after += p - B->params[B->touch[j]];
        if (keep)
            B->params[B->touch[j]] = p;
    }
    if (keep)
        return after;
    for (int32_t j = a; j < b; j++)
        B->width[B->wide[j]] = B->saved[j - a];
    B->sets[x].k = k0;
    /* the sets' widths memoised in this pass were those of k2 */
    B->pass++;
    return after;
}

bool fib_budget_has_tied_weights(const fib_graph *g)
{
    for (int32_t i = 0; i < g->n_groups; i++) {
        int32_t with;
        if (tied_weights(g, i, &with) > 0)
            return true;
    }
    return false;
}

/* Parameters of a graph (the original or a base) as a budget counts them:
 * a selection holds none, weights shared with an earlier group count once. */
int64_t fib_budget_counted_parameters(const fib_graph *base)
{
    int64_t out = 0;
    for (int32_t i = 0; i < base->n_groups; i++) {
        const fib_block_ops *ops = base->groups[i].ops;
        if (fib_group_is_input(base, i) || !ops || !ops->num_parameters)
            continue;
        if (ops->budget_role && ops->budget_role(base, i) == FIB_BUDGET_SELECTS)
            continue;
        int32_t with;
        out += ops->num_parameters(base, i) - tied_weights(base, i, &with);
    }
    return out;
}

/* Step 3: removes classes where B^2 grows least per parameter saved until
 * the count is at most target; false when nothing more can go. */
static bool exchange(graph_budget *B, double target)
{
    int64_t now = graph_params(B);
    while ((double)now > target) {
        int32_t best = -1;
        double best_ratio = INFINITY;
        int64_t best_k = 0;
        for (int32_t x = 0; x < B->n_cand; x++) {
            budget_set *s = &B->sets[x];
            if (s->k <= 1)
                continue;
            int64_t step = s->k / 64 > 1 ? s->k / 64 : 1, k0 = s->k, k2 = k0 - step;
            int64_t after = step_params(B, x, k2, now, false);
            /* a step that unties shared weights may count more: a longer
             * one (doubled until it saves) may still save */
            while (after >= now && !isinf(s->err[k2]) && k2 > 1 && B->has_tie) {
                step *= 2;
                k2 = k0 - step > 1 ? k0 - step : 1;
                after = step_params(B, x, k2, now, false);
            }
            if (isinf(s->err[k2]) || after >= now)
                continue;
            double cost = s->err[k2] * s->err[k2] - s->err[k0] * s->err[k0];
            double ratio = cost / (double)(now - after);
            if (ratio < best_ratio) {
                best_ratio = ratio;
                best = x;
                best_k = k2;
            }
        }
        if (best < 0)
            return false;
        now = step_params(B, best, best_k, now, true);
    }
    return true;
}

/* The classes of set `r` of selections from the classes of the units they
 * copy: a unit is the class of its copied unit, told apart by selection
 * (a concatenation's classes are the union of its sources'); a unit no
 * selection gives (a zero) keeps a class of its own. *changed: whether
 * they differ from the members' classes so far. */
static int32_t copy_classes(const graph_budget *B, int32_t r, fib_coloring *col, bool *changed)
{
    const fib_graph *g = B->g;
    int64_t n = g->groups[r].n_units, offset = n;
    fib_partition p;
    int32_t status = fib_partition_init(&p, n);
    for (int64_t u = 0; !status && u < n; u++)
        p.color[u] = u; /* the zeros' labels, below every selection's */
    for (int32_t i = r; i < g->n_groups && !status; i++) {
        if (B->set[i] != r || B->role[i] != FIB_BUDGET_SELECTS)
            continue;
        const fib_partition *from = &col->parts[g->groups[i].sources[0]];
        for (int64_t u = 0; u < n; u++) {
            int64_t k = g->groups[i].ops->budget_selected(g, i, u);
            if (k >= 0)
                p.color[u] = offset + from->color[k];
        }
        offset += from->n_classes;
    }
    if (!status)
        status = fib_partition_canonicalize(&p);
    for (int32_t i = r; i < g->n_groups && !status; i++) {
        if (B->set[i] != r || B->role[i] == FIB_BUDGET_DERIVED)
            continue;
        fib_partition *own = &col->parts[i];
        if (own->n_classes == p.n_classes &&
            !memcmp(own->color, p.color, (size_t)n * sizeof *p.color))
            continue;
        *changed = true;
        fib_partition_clear(own);
        status = fib_partition_copy(own, &p);
    }
    fib_partition_clear(&p);
    return status;
}

/* The classes of every set of selections that does not keep its units, to
 * the fixed point (a set may copy units of another): partitions only
 * coarsen from the discrete ones, so it is reached. */
static int32_t cut_selections(const graph_budget *B, fib_coloring *col)
{
    int32_t status = FIB_OK;
    for (bool changed = true; changed && !status;) {
        changed = false;
        for (int32_t r = 0; r < B->g->n_groups && !status; r++)
            if (B->selected[r] && !B->pinned[r] && B->set[r] == r)
                status = copy_classes(B, r, col, &changed);
    }
    return status;
}

/* Step 4: the colouring of the chosen counts. */
static int32_t cut_sets(graph_budget *B, fib_coloring *col)
{
    const fib_graph *g = B->g;
    int32_t status = FIB_OK;
    for (int32_t x = 0; x < B->n_cand && !status; x++) {
        const budget_set *s = &B->sets[x];
        fib_partition p;
        status = fib_partition_init(&p, s->n);
        if (!status)
            status = s->remove_cost ? cut_removals(&B->sets[x], &p)
                                    : fib_merges_cut(&s->mg, s->n - s->k, &p);
        for (int32_t i = 0; i < g->n_groups && !status; i++)
            if (B->set[i] == B->cand[x] && B->role[i] != FIB_BUDGET_DERIVED) {
                fib_partition_clear(&col->parts[i]);
                status = fib_partition_copy(&col->parts[i], &p);
            }
        fib_partition_clear(&p);
    }
    if (!status)
        status = cut_selections(B, col);
    return status;
}

/* Row x of every row of tensor view v: the offset of element x of row r. */
static int64_t view_row_size(const fib_tensor_view *v)
{
    int64_t size = 1;
    for (int32_t d = 1; d < v->ndim; d++)
        size *= v->shape[d];
    return size;
}

/* The rows of the removed units of candidate x's non-derived chain groups
 * in gx: each the mean of its class's kept units' rows (every tensor of a
 * row per unit), so that the class's base is its kept units'. */
static int32_t copy_kept_rows(const graph_budget *B, int32_t x, const fib_partition *p,
                              fib_graph *gx)
{
    const budget_set *s = &B->sets[x];
    int64_t n = s->n, k = p->n_classes;
    int64_t *count = fib_calloc(k, sizeof *count);
    if (!count)
        return fib_error(FIB_E_NOMEM, "%s: out of memory", fn);
    for (int64_t u = 0; u < n; u++)
        count[p->color[u]] += !s->removed[u];
    int32_t status = FIB_OK;
    for (int32_t i = 0; i < gx->n_groups && !status; i++) {
        if (B->chain_of[i] != x || B->role[i] == FIB_BUDGET_DERIVED)
            continue;
        const fib_block_ops *ops = gx->groups[i].ops;
        fib_tensor_view v;
        for (int32_t t = 0; !status && ops->tensor && ops->tensor(gx, i, t, &v); t++) {
            if (v.shape[0] != n)
                continue;
            if (v.dtype != FIB_DTYPE_F64 && v.dtype != FIB_DTYPE_F32) {
                status = fib_error(FIB_E_UNSUPPORTED, "%s: group %d (%s): its %s is not "
                                   "float32 or float64; a removed unit's row cannot be "
                                   "replaced", fn, (int)i, group_name(B->g, i), v.name);
                break;
            }
            int64_t size = view_row_size(&v);
            double *mean = fib_calloc(k * size > 0 ? k * size : 1, sizeof *mean);
            if (!mean) {
                status = fib_error(FIB_E_NOMEM, "%s: out of memory", fn);
                break;
            }
            void *data = (void *)v.data; /* gx is the budget's own copy */
            for (int64_t u = 0; u < n; u++)
                for (int64_t e = 0; !s->removed[u] && e < size; e++)
                    mean[p->color[u] * size + e] += fib_load(v.dtype, data, fib_view_at(&v, u, e)) /
                                                    (double)count[p->color[u]];
            for (int64_t u = 0; u < n; u++)
                for (int64_t e = 0; s->removed[u] && e < size; e++)
                    fib_store(v.dtype, data, fib_view_at(&v, u, e), mean[p->color[u] * size + e]);
            fib_free(mean);
        }
    }
    fib_free(count);
    return status;
}

/* The graph a base with removed units is made from (*gx, with its colouring
 * *colx, the classes of col): a copy of g in which the blocks reading each
 * removed unit took its constant (budget_absorb) and its rows are its
 * class's (copy_kept_rows). Both NULL when no unit is removed. */
static int32_t remove_units(const graph_budget *B, const fib_coloring *col, fib_graph **gx,
                            fib_coloring **colx)
{
    const fib_graph *g = B->g;
    *gx = NULL;
    *colx = NULL;
    bool any = false;
    for (int32_t x = 0; x < B->n_cand; x++)
        for (int64_t u = 0; B->sets[x].remove_cost && u < B->sets[x].n; u++)
            any |= B->sets[x].removed[u];
    if (!any)
        return FIB_OK;
    /* the copy borrows every block but those it changes: the chains that
     * remove units and the blocks reading them */
    fib_coloring *discrete = NULL;
    fib_base *copy = NULL;
    bool *owned = fib_calloc(g->n_groups > 0 ? g->n_groups : 1, sizeof *owned);
    int32_t status = owned ? fib_coloring_alloc(g, FIB_SYM_FIBERS, &discrete)
                           : fib_error(FIB_E_NOMEM, "%s: out of memory", fn);
    for (int32_t h = 0; !status && h < g->n_groups; h++) {
        int32_t x = B->chain_of[h];
        owned[h] = x >= 0 && B->sets[x].remove_cost && B->role[h] != FIB_BUDGET_DERIVED;
        for (int32_t q = 0; !fib_group_is_input(g, h) && q < g->groups[h].n_sources; q++) {
            int32_t y = B->chain_of[g->groups[h].sources[q]];
            owned[h] |= y >= 0 && B->sets[y].remove_cost;
        }
    }
    if (!status)
        status = fib_compress_owning(g, discrete, owned, &copy);
    fib_coloring_free(discrete);
    fib_free(owned);
    if (status)
        return status;
    *gx = copy->graph;
    copy->graph = NULL;
    fib_base_free(copy);
    if ((*gx)->n_groups != g->n_groups) {
        fib_graph_free(*gx);
        *gx = NULL;
        return fib_error(FIB_E_UNSUPPORTED, "%s: the copy of the graph that takes removed "
                         "units' constants has other groups", fn);
    }
    int64_t widest = 1;
    for (int32_t i = 0; i < g->n_groups; i++)
        widest = g->groups[i].n_units > widest ? g->groups[i].n_units : widest;
    double *values = fib_alloc(widest, sizeof *values);
    status = values ? FIB_OK : fib_error(FIB_E_NOMEM, "%s: out of memory", fn);
    for (int32_t h = 0; h < g->n_groups && !status; h++) {
        const fib_group *grp = &g->groups[h];
        for (int32_t q = 0; !status && !fib_group_is_input(g, h) && q < grp->n_sources; q++) {
            int32_t src = grp->sources[q], x = B->chain_of[src];
            if (x < 0 || B->chain_of[h] == x || !B->sets[x].remove_cost)
                continue;
            bool some = false;
            for (int64_t w = 0; w < g->groups[src].n_units; w++) {
                int64_t u = B->origin[src] ? B->origin[src][w] : w;
                values[w] = B->sets[x].removed[u] ? B->constant[src][w] : NAN;
                some |= B->sets[x].removed[u];
            }
            if (some)
                status = (*gx)->groups[h].ops->budget_absorb(*gx, h, q, values);
        }
    }
    fib_free(values);
    for (int32_t x = 0; x < B->n_cand && !status; x++)
        if (B->sets[x].remove_cost)
            status = copy_kept_rows(B, x, &col->parts[B->cand[x]], *gx);
    if (!status)
        status = fib_coloring_alloc(*gx, FIB_SYM_FIBERS, colx);
    for (int32_t i = 0; i < g->n_groups && !status; i++) {
        fib_partition_clear(&(*colx)->parts[i]);
        status = fib_partition_copy(&(*colx)->parts[i], &col->parts[i]);
    }
    if (status) {
        fib_coloring_free(*colx);
        fib_graph_free(*gx);
        *colx = NULL;
        *gx = NULL;
    }
    return status;
}

/* The only consumer of group m, or -1. */
static int32_t only_consumer(const fib_graph *g, int32_t m)
{
    int32_t found = -1;
    for (int32_t h = m + 1; h < g->n_groups; h++)
        for (int32_t s = 0; s < g->groups[h].n_sources; s++)
            if (g->groups[h].sources[s] == m) {
                if (found >= 0)
                    return -1;
                found = h;
            }
    return found;
}

/* Element `at` of a base tensor set to x, rounded once in a float32 base
 * (the value a float32 file of the float64 base would hold). */
static int32_t store_row_value(const fib_tensor_view *v, int64_t at, double x, int32_t group)
{
    if (v->dtype == FIB_DTYPE_F64) {
        ((double *)v->data)[at] = x;
        return FIB_OK;
    }
    float narrow = (float)x;
    if (!isfinite(narrow))
        return fib_error(FIB_E_NONFINITE, "%s: group %d: merged %s %lld = %g does not fit in "
                         "float32 (budget to float64)", fn, (int)group, v->name, (long long)at,
                         x);
    ((float *)v->data)[at] = narrow;
    return FIB_OK;
}

/* The base rows of clustered member m as the fit of least weighted squares
 * of what its members compute after the follower that scales them (batch
 * norm): class c gets sum_i E_i s_i row_i / (mean_c(s) sum_i E_i), with s_i
 * the follower's scale of unit i (1 without one) and E_i the energy of the
 * unit after it, so that the follower's base scale, the class mean of s,
 * times the row is the E-weighted mean of the members' s_i row_i. A class
 * whose scales change sign keeps the plain mean fib_compress made. Rows are
 * the colour sums over the base's source classes, the layout of the base's
 * weight tensor (and bias). */
static int32_t weighted_rows(const graph_budget *B, const fib_graph *from, int32_t m,
                             fib_base *base)
{
    const fib_graph *g = B->g;
    const budget_set *bs = &B->sets[B->cand_of[B->set[m]]];
    const bool *removed = bs->remove_cost ? bs->removed : NULL;
    const fib_block_ops *ops = g->groups[m].ops;
    int32_t f = only_consumer(g, m);
    bool scaled = f >= 0 && B->role[f] == FIB_BUDGET_FOLLOWS && g->groups[f].ops->budget_scale &&
                  g->groups[m].activation == FIB_ACT_LINEAR;
    const double *energy = scaled ? B->energy[f] : B->energy[m];
    const fib_partition *own = &base->projection[m];
    int64_t n = own->n_units, k = own->n_classes;
    fib_tensor_view wv = {0}, bv = {0};
    const fib_block_ops *bops = base->graph->groups[m].ops;
    /* float64, or float32 as fib_compress_options.dtype rounded it (a
     * packed float32 copy of a block that merges nothing is rewritten with
     * its own values: each class one unit) */
    if (!bops->tensor || !bops->tensor(base->graph, m, 0, &wv) ||
        (wv.dtype != FIB_DTYPE_F64 && wv.dtype != FIB_DTYPE_F32) || wv.shape[0] != k)
        return FIB_OK;
    bool bias = bops->tensor(base->graph, m, 1, &bv);
    if (bias && (bv.dtype != wv.dtype || bv.shape[0] != k))
        return FIB_OK;
    int64_t w = ops->fiber_width(g, m, base->projection);
    if (w != wv.row_stride + (bias ? 1 : 0))
        return FIB_OK; /* not the layout of an ungrouped base */
    fib_signature sig;
    int32_t status = fib_signature_alloc(&sig, n, w);
    if (status)
        return status;
    sig.n_threads = 1;
    double *num = fib_calloc(k * w, sizeof *num), *den = fib_calloc(k, sizeof *den);
    double *ssum = fib_calloc(k, sizeof *ssum);
    int64_t *count = fib_calloc(k, sizeof *count);
    bool *mixed = fib_calloc(k, sizeof *mixed);
    status = num && den && ssum && count && mixed
                 ? ops->fiber_fill(from, m, base->projection, &sig, 0)
                 : fib_error(FIB_E_NOMEM, "%s: out of memory", fn);
    fib_group_drop_pages(from, m); /* the signature is a copy */
    for (int64_t i = 0; !status && i < n; i++) {
        int64_t c = own->color[i];
        if (removed && removed[i])
            continue; /* its rows are its class's kept units' */
        double si = scaled ? g->groups[f].ops->budget_scale(g, f, i) : 1.0;
        if (count[c] > 0 && (si > 0) != (ssum[c] > 0))
            mixed[c] = true;
        if (si == 0)
            mixed[c] = true;
        for (int64_t j = 0; j < w; j++)
            num[c * w + j] += energy[i] * si * sig.value[i * w + j];
        den[c] += energy[i];
        ssum[c] += si;
        count[c]++;
    }
    for (int64_t c = 0; !status && c < k; c++) {
        if (mixed[c] || !(den[c] > 0))
            continue;
        double scale = den[c] * ssum[c] / (double)count[c];
        for (int64_t j = 0; j < wv.row_stride && !status; j++)
            status = store_row_value(&wv, c * wv.row_stride + j, num[c * w + j] / scale, m);
        if (bias && !status)
            status = store_row_value(&bv, c, num[c * w + wv.row_stride] / scale, m);
    }
    fib_signature_clear(&sig);
    fib_free(num);
    fib_free(den);
    fib_free(ssum);
    fib_free(count);
    fib_free(mixed);
    return status;
}

/* The base's parameters as the budget counts them: a tie of the original
 * whose two groups the base keeps whole counts once (the base holds two
 * equal matrices, which a model or checkpoint keeps tied). */
static int64_t base_parameters(const graph_budget *B, const fib_base *base)
{
    const fib_graph *g = B->g, *bg = base->graph;
    int64_t out = fib_budget_counted_parameters(bg);
    int64_t *width = fib_alloc(g->n_groups > 0 ? g->n_groups : 1, sizeof *width);
    if (!width)
        return out; /* counted twice: never below the truth */
    for (int32_t i = 0; i < g->n_groups; i++)
        width[i] = bg->groups[i].n_units;
    for (int32_t i = 0; i < g->n_groups; i++) {
        int32_t with = B->tie[i], same;
        if (with >= 0 && whole(g, i, width) && whole(g, with, width))
            out -= tied_weights(g, i, &same);
    }
    fib_free(width);
    return out;
}

static void free_budget(graph_budget *B)
{
    for (int32_t i = 0; B->energy && i < B->g->n_groups; i++)
        fib_free(B->energy[i]);
    for (int32_t x = 0; B->sets && x < B->n_cand; x++) {
        fib_free(B->sets[x].err);
        fib_merges_clear(&B->sets[x].mg);
        fib_free(B->sets[x].remove_cost);
        fib_free(B->sets[x].remove_share);
        fib_free(B->sets[x].ev_a);
        fib_free(B->sets[x].ev_b);
        fib_free(B->sets[x].ev_end);
        fib_free(B->sets[x].removed);
    }
    for (int32_t i = 0; B->constant && B->origin && i < B->g->n_groups; i++) {
        fib_free(B->constant[i]);
        fib_free(B->origin[i]);
    }
    fib_free(B->constant);
    fib_free(B->origin);
    fib_free(B->chain_of);
    fib_unit_moments_clear(B->g, &B->moments);
    fib_free(B->role);
    fib_free(B->set);
    fib_free(B->pinned);
    fib_free(B->energy);
    fib_free(B->cand);
    fib_free(B->sets);
    fib_free(B->width);
    fib_free(B->cand_of);
    fib_free(B->selected);
    fib_free(B->copies);
    fib_free(B->params);
    fib_free(B->wide_at);
    fib_free(B->wide);
    fib_free(B->touch_at);
    fib_free(B->touch);
    fib_free(B->sel_at);
    fib_free(B->sel);
    fib_free(B->saved);
    fib_free(B->root_width);
    fib_free(B->root_pass);
    for (int32_t i = 0; B->bin && i < B->g->n_groups; i++)
        fib_free(B->bin[i]);
    fib_free(B->bin);
    fib_free(B->tie);
}

int32_t fib_graph_budget_parameters(const fib_graph *g, int64_t *n_out)
{
    if (!g || !n_out)
        return fib_error(FIB_E_NULL, "fib_graph_budget_parameters: NULL argument");
    *n_out = fib_budget_counted_parameters(g);
    return FIB_OK;
}

int32_t fib_budget_graph(const fib_graph *g, double budget, const fib_budget_options *o,
                         double *bound_out, int64_t *params_out, int64_t *smallest_out,
                         fib_base **base_out)
{
    int32_t n = g->n_groups > 0 ? g->n_groups : 1;
    graph_budget B = {.g = g};
    B.role = fib_calloc(n, sizeof *B.role);
    B.set = fib_calloc(n, sizeof *B.set);
    B.pinned = fib_calloc(n, sizeof *B.pinned);
    B.energy = fib_calloc(n, sizeof *B.energy);
    B.cand = fib_calloc(n, sizeof *B.cand);
    B.width = fib_calloc(n, sizeof *B.width);
    B.cand_of = fib_alloc(n, sizeof *B.cand_of);
    B.selected = fib_calloc(n, sizeof *B.selected);
    B.copies = fib_calloc(n, sizeof *B.copies);
    B.bin = fib_calloc(n, sizeof *B.bin);
    B.tie = fib_alloc(n, sizeof *B.tie);
    for (int32_t i = 0; B.tie && i < g->n_groups; i++) {
        tied_weights(g, i, &B.tie[i]);
        B.has_tie |= B.tie[i] >= 0;
    }
    for (int32_t i = 0; B.cand_of && i < n; i++)
        B.cand_of[i] = -1;
    fib_coloring *col = NULL;
    fib_base *base = NULL;
    int32_t status = B.role && B.set && B.pinned && B.energy && B.cand && B.width &&
                             B.cand_of && B.selected && B.copies && B.bin && B.tie
                         ? build_sets(&B)
                         : fib_error(FIB_E_NOMEM, "%s: out of memory", fn);
    if (!status)
        status = build_bins(&B);
    if (!status)
        status = build_energies(&B);
    B.sets = status ? NULL : fib_calloc(B.n_cand > 0 ? B.n_cand : 1, sizeof *B.sets);
    if (!status && !B.sets)
        status = fib_error(FIB_E_NOMEM, "%s: out of memory", fn);
    for (int32_t x = 0; !status && x < B.n_cand; x++)
        B.sets[x].n = g->groups[B.cand[x]].n_units;
    if (!status)
        status = build_removals(&B);
    if (!status)
        status = build_reach(&B);
    /* steps: each candidate's clustering, the exchange, the base */
    fib_progress_check check = {o->progress, o->progress_user, 0, (int64_t)B.n_cand + 2};
    for (int32_t x = 0; x < B.n_cand && !status; x++) {
        status = set_merges(&B, &B.sets[x], B.cand[x], &check);
        if (!status)
            status = fib_budget_step(&check);
    }
    int64_t total = status ? 0 : fib_budget_counted_parameters(g);
    /* counts are integers: the slack only keeps a budget of exactly a/total
     * (rounded down in budget * total) from removing one more class */
    double target = budget * (double)total + 1e-6;
    bool reached = !status && exchange(&B, target);
    if (!status)
        status = fib_budget_step(&check);
    if (!status && !reached) {
        *smallest_out = graph_params(&B);
        status = fib_error(FIB_E_UNSUPPORTED, "%s: a budget of %g of %lld parameters is below "
                           "the smallest base this graph reaches (%lld)", fn, budget,
                           (long long)total, (long long)*smallest_out);
    }
    /* a base may count more than its widths say (a grouped convolution
     * whose merged kernel is no longer block-diagonal): go on removing */
    int64_t params = 0;
    for (int attempt = 0; !status; attempt++) {
        if (!status)
            status = fib_coloring_alloc(g, FIB_SYM_FIBERS, &col);
        if (!status)
            status = cut_sets(&B, col);
        fib_graph *gx = NULL;
        fib_coloring *colx = NULL;
        if (!status)
            status = remove_units(&B, col, &gx, &colx);
        /* a float32 base is rounded block by block as it is made, and its
         * weighted rows as they are written: never a float64 copy of it */
        fib_compress_options copts;
        fib_compress_options_init(&copts, sizeof copts);
        copts.dtype = o->dtype;
        if (!status)
            status = fib_compress_ex(gx ? gx : g, colx ? colx : col, &copts, &base);
        fib_coloring_free(col);
        fib_coloring_free(colx);
        col = NULL;
        for (int32_t i = 0; i < g->n_groups && !status; i++)
            if (B.role[i] == FIB_BUDGET_CLUSTERED && !B.pinned[B.set[i]])
                status = weighted_rows(&B, gx ? gx : g, i, base);
        fib_graph_free(gx);
        if (!status)
            params = base_parameters(&B, base);
        if (status || (double)params <= target)
            break;
        fib_base_free(base);
        base = NULL;
        double over = (double)(params - graph_params(&B));
        if (attempt >= 8 || !exchange(&B, target - over)) {
            *smallest_out = params;
            status = fib_error(FIB_E_UNSUPPORTED, "%s: a budget of %g of %lld parameters is "
                               "below the smallest base this graph reaches (%lld)", fn,
                               budget, (long long)total, (long long)params);
        }
    }
    if (!status)
        status = fib_budget_step(&check);
    if (!status) {
        double bound = 0;
        for (int32_t x = 0; x < B.n_cand; x++)
            bound += B.sets[x].err[B.sets[x].k] * B.sets[x].err[B.sets[x].k];
        *bound_out = sqrt(bound);
        *params_out = params;
        *base_out = base;
    } else {
        fib_base_free(base);
    }
    free_budget(&B);
    return status;
}

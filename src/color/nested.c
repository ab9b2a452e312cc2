/* fib_color_nested: the hierarchy of colourings as the tolerance grows,
 * made to nest by joining every level with the one before it. */
#include "color/color.h"

#include <math.h>

/* Progress of one level, reported as steps of the whole run. */
typedef struct nested_progress {
    fib_progress_fn fn;
    void *user;
    int32_t level, n_levels;
} nested_progress;

static int32_t level_progress(void *user, int64_t done, int64_t total)
{
    const nested_progress *p = user;
    return p->fn(p->user, p->level * total + done, p->n_levels * total);
}

static int32_t check_arguments(const fib_graph *g, const fib_color_options *o,
                               const double *eps, int32_t n_levels,
                               fib_coloring **levels)
{
    static const char fn[] = "fib_color_nested";
    if (!g || !o || !eps || !levels)
        return fib_error(FIB_E_NULL, "%s: %s is NULL", fn,
                         !g ? "graph" : !o ? "options" : !eps ? "eps" : "levels");
    if (n_levels < 1)
        return fib_error(FIB_E_SHAPE, "%s: n_levels %d must be at least 1", fn,
                         (int)n_levels);
    if (o->struct_size < sizeof *o)
        return fib_error(FIB_E_INVALID, "%s: options.struct_size %zu is smaller than %zu "
                         "(call fib_color_options_init)", fn, o->struct_size, sizeof *o);
    if ((o->tolerance & ~FIB_TOL_SCALED) == FIB_TOL_EXACT)
        return fib_error(FIB_E_INVALID, "%s: FIB_TOL_EXACT has no tolerance to grow; "
                         "choose a tolerant mode (FIB_TOL_ABS, _REL, _COSINE, _COMPLETE "
                         "or _WARD)", fn);
    if (o->eps != 0)
        return fib_error(FIB_E_INVALID, "%s: options.eps must be 0 (the tolerances "
                         "are eps[0 .. n_levels))", fn);
    for (int32_t t = 0; t < n_levels; t++) {
        if (!(eps[t] >= 0) || !isfinite(eps[t]))
            return fib_error(FIB_E_INVALID, "%s: eps[%d] = %g must be finite and >= 0",
                             fn, (int)t, eps[t]);
        if (t > 0 && eps[t] < eps[t - 1])
            return fib_error(FIB_E_INVALID, "%s: eps[%d] = %g is smaller than eps[%d] "
                             "= %g; the tolerances must be sorted, smallest first", fn,
                             (int)t, eps[t], (int)(t - 1), eps[t - 1]);
    }
    return FIB_OK;
}

/* Replaces every group of `c` by its join with the same group of `prev`. */
static int32_t join_with(fib_coloring *c, const fib_coloring *prev)
{
    for (int32_t i = 0; i < c->n_groups; i++) {
        fib_partition joined;
        int32_t status = fib_partition_join(&joined, &c->parts[i], &prev->parts[i]);
        if (status)
            return status;
        fib_partition_clear(&c->parts[i]);
        c->parts[i] = joined;
    }
    return FIB_OK;
}

int32_t fib_color_nested(const fib_graph *g, const fib_color_options *options,
                         const double *eps, int32_t n_levels, fib_coloring **levels)
{
    int32_t status = check_arguments(g, options, eps, n_levels, levels);
    if (status)
        return status;
    fib_coloring **made = fib_calloc(n_levels, sizeof *made);
    if (!made)
        return fib_error(FIB_E_NOMEM, "fib_color_nested: out of memory for %d levels",
                         (int)n_levels);
    fib_color_options o = *options;
    nested_progress progress = {options->progress, options->progress_user, 0, n_levels};
    if (options->progress) {
        o.progress = level_progress;
        o.progress_user = &progress;
    }
    for (int32_t t = 0; t < n_levels && !status; t++) {
        o.eps = eps[t];
        progress.level = t;
        status = fib_color(g, &o, &made[t]);
        if (!status && t > 0)
            status = join_with(made[t], made[t - 1]);
    }
    if (status) {
        for (int32_t t = 0; t < n_levels; t++)
            fib_coloring_free(made[t]);
    } else {
        for (int32_t t = 0; t < n_levels; t++)
            levels[t] = made[t];
    }
    fib_free(made);
    return status;
}

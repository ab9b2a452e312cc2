/* Small helpers shared by the graph tests. */
#ifndef FIB_TEST_GRAPH_CHECK_H
#define FIB_TEST_GRAPH_CHECK_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static int check_failures;

#define CHECK(cond, ...)                                                     \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, \
                    #cond);                                                  \
            fprintf(stderr, __VA_ARGS__);                                    \
            fprintf(stderr, "\n");                                           \
            check_failures++;                                                \
        }                                                                    \
    } while (0)

#define CHECK_OK(call)                                                       \
    do {                                                                     \
        int32_t st_ = (call);                                                \
        if (st_ != FIB_OK) {                                                 \
            fprintf(stderr, "%s:%d: %s failed: %s (%s)\n", __FILE__,         \
                    __LINE__, #call, fib_status_name(st_),                   \
                    fib_last_error());                                       \
            check_failures++;                                                \
        }                                                                    \
    } while (0)

/* colours / non-trivial classes / largest class / nodes in non-trivial */
typedef struct class_stats {
    int64_t colours;
    int64_t nontrivial;
    int64_t largest;
    int64_t in_nontrivial;
} class_stats;

static inline class_stats stats_of(const int64_t *color, int64_t n,
                                   int64_t n_classes)
{
    class_stats s = {n_classes, 0, 0, 0};
    int64_t *size = calloc((size_t)(n_classes > 0 ? n_classes : 1),
                           sizeof *size);
    if (!size)
        abort();
    for (int64_t v = 0; v < n; v++)
        size[color[v]]++;
    for (int64_t c = 0; c < n_classes; c++) {
        if (size[c] > 1) {
            s.nontrivial++;
            s.in_nontrivial += size[c];
        }
        if (size[c] > s.largest)
            s.largest = size[c];
    }
    free(size);
    return s;
}

#endif

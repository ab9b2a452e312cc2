/* OpenMP, when the build has it (meson -Dopenmp=enabled). Thread counts are
 * per call (num_threads clauses), never global state; without OpenMP every
 * loop runs on the calling thread. Work is split so that each output is
 * computed by one thread in the same order, whatever the thread count. */
#ifndef FIB_PARALLEL_H
#define FIB_PARALLEL_H

#include <stdint.h>

#ifdef _OPENMP
#  include <omp.h>
#  define FIB_PRAGMA(x) _Pragma(#x)
#else
#  define FIB_PRAGMA(x)
#endif

/* Threads for `items` independent pieces of work: `requested` (0: the
 * OpenMP default), at most one per item, at least 1. */
static inline int fib_thread_count(int32_t requested, int64_t items)
{
#ifdef _OPENMP
    int64_t n = requested > 0 ? requested : omp_get_max_threads();
    if (n > items)
        n = items;
    return n < 1 ? 1 : (int)n;
#else
    (void)requested, (void)items;
    return 1;
#endif
}

/* The calling thread's number inside a parallel region (0 outside). */
static inline int fib_thread_num(void)
{
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

#endif

/* A minimal test harness: CHECK records a failure and goes on; the main
 * function of each test program returns the failure count. */
#ifndef FIB_TESTING_H
#define FIB_TESTING_H

#include <stdio.h>

extern int test_failures;

#define CHECK(cond)                                                           \
    do {                                                                      \
        if (!(cond)) {                                                        \
            test_failures++;                                                  \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, \
                    #cond);                                                   \
        }                                                                     \
    } while (0)

/* Checks that a call returns FIB_OK, printing the library's message if not. */
#define CHECK_OK(call)                                                        \
    do {                                                                      \
        int32_t check_ok_status_ = (call);                                    \
        if (check_ok_status_ != FIB_OK) {                                     \
            test_failures++;                                                  \
            fprintf(stderr, "%s:%d: %s returned %s: %s\n", __FILE__,          \
                    __LINE__, #call, fib_status_name(check_ok_status_),       \
                    fib_last_error());                                        \
        }                                                                     \
    } while (0)

#define RUN(test)                                                             \
    do {                                                                      \
        int before_ = test_failures;                                          \
        test();                                                               \
        printf("%s %s\n", test_failures == before_ ? "ok  " : "FAIL", #test); \
    } while (0)

#endif

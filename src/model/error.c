/* Status names and the thread-local message of the last failing call. */
#include "model/model.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A message longer than FIB_MESSAGE_SIZE keeps this much of its head (what
 * failed) and as much of its tail (why) as fits. */
#define MESSAGE_HEAD 1024
static const char elision[] = " ... ";

static _Thread_local char last_error[FIB_MESSAGE_SIZE];

static bool utf8_continuation(char c)
{
    return ((unsigned char)c & 0xC0) == 0x80;
}

/* The length <= n of s that ends between two UTF-8 characters (drops an
 * incomplete last character). */
static size_t utf8_prefix(const char *s, size_t n)
{
    if (n == 0)
        return 0;
    size_t lead = n - 1;
    while (lead > 0 && n - lead < 4 && utf8_continuation(s[lead]))
        lead--;
    unsigned char c = (unsigned char)s[lead];
    size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
    return n - lead >= need ? n : lead;
}

/* Writes the n-byte message `full` into last_error: whole if it fits,
 * else its head and tail around an elision, cut between characters. */
static void keep_head_and_tail(const char *full, size_t n)
{
    size_t head = utf8_prefix(full, MESSAGE_HEAD);
    size_t tail_room = FIB_MESSAGE_SIZE - 1 - head - (sizeof elision - 1);
    size_t tail = n - tail_room;
    while (tail < n && utf8_continuation(full[tail]))
        tail++;
    memcpy(last_error, full, head);
    memcpy(last_error + head, elision, sizeof elision - 1);
    memcpy(last_error + head + sizeof elision - 1, full + tail, n - tail);
    last_error[head + sizeof elision - 1 + n - tail] = '\0';
}

static void record(const char *fmt, va_list ap)
{
    va_list again;
    va_copy(again, ap);
    int n = vsnprintf(last_error, sizeof last_error, fmt, ap);
    if (n >= (int)sizeof last_error) {
        /* plain malloc: reporting an error must not count as (or fail as)
         * one of the library's own allocations (fib_alloc) */
        char *full = malloc((size_t)n + 1);
        if (full) {
            vsnprintf(full, (size_t)n + 1, fmt, again);
            keep_head_and_tail(full, (size_t)n);
            free(full);
        } else {
            last_error[utf8_prefix(last_error, sizeof last_error - 1)] = '\0';
        }
    }
    va_end(again);
}

int32_t fib_error(int32_t status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    record(fmt, ap);
    va_end(ap);
    return status;
}

void fib_error_note(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    record(fmt, ap);
    va_end(ap);
}

const char *fib_last_error(void)
{
    return last_error;
}

const char *fib_status_name(int32_t status)
{
    switch (status) {
    case FIB_OK: return "FIB_OK";
    case FIB_E_NULL: return "FIB_E_NULL";
    case FIB_E_INVALID: return "FIB_E_INVALID";
    case FIB_E_SHAPE: return "FIB_E_SHAPE";
    case FIB_E_NONFINITE: return "FIB_E_NONFINITE";
    case FIB_E_OVERFLOW: return "FIB_E_OVERFLOW";
    case FIB_E_NOMEM: return "FIB_E_NOMEM";
    case FIB_E_RANGE: return "FIB_E_RANGE";
    case FIB_E_MISMATCH: return "FIB_E_MISMATCH";
    case FIB_E_UNSUPPORTED: return "FIB_E_UNSUPPORTED";
    case FIB_E_IO: return "FIB_E_IO";
    case FIB_E_FORMAT: return "FIB_E_FORMAT";
    case FIB_E_CANCELLED: return "FIB_E_CANCELLED";
    case FIB_E_BUFFER: return "FIB_E_BUFFER";
    default: return "FIB_E_UNKNOWN";
    }
}

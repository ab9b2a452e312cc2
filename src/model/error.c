/* Status names and the thread-local message of the last failing call. */
#include "model/model.h"

#include <stdarg.h>
#include <stdio.h>

static _Thread_local char last_error[512];

static void record(const char *fmt, va_list ap)
{
    vsnprintf(last_error, sizeof last_error, fmt, ap);
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

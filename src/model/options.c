/* The part every fib_*_options_init shares: the caller's struct_size is
 * checked before a byte is written, since a caller built against an older
 * header owns fewer bytes than this library's struct. */
#include "model/model.h"

#include <string.h>

int32_t fib_options_clear(void *o, size_t struct_size, size_t smallest, size_t cleared,
                          const char *fn)
{
    if (!o)
        return fib_error(FIB_E_NULL, "%s: options is NULL", fn);
    if (struct_size < smallest)
        return fib_error(FIB_E_INVALID, "%s: struct_size %zu is smaller than %zu", fn,
                         struct_size, smallest);
    memset(o, 0, cleared);
    return FIB_OK;
}

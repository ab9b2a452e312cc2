/* Fuzz target: the safetensors reader on an arbitrary file image. Whatever
 * the bytes, fib_st_parse either validates them, and then every tensor lies
 * inside the image with the size its shape and dtype say, or refuses them
 * with FIB_E_FORMAT (or FIB_E_NOMEM) and a message naming the file. */
#include "fuzz.h"
#include "compress/compress.h"
#include "io/safetensors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fib_st_file *file = NULL;
    int32_t st = fib_st_parse("fuzz.safetensors", data, size, &file);
    if (st != FIB_OK) {
        FUZZ_ASSERT(file == NULL);
        FUZZ_ASSERT(st == FIB_E_FORMAT || st == FIB_E_NOMEM);
        FUZZ_ASSERT(strncmp(fib_last_error(), "fuzz.safetensors", 16) == 0);
        return 0;
    }
    /* Touch every element of every tensor: ASan catches any that lies
     * outside the image or an owned copy. */
    double total = 0;
    for (int64_t t = 0; t < file->n_tensors; t++) {
        const fib_st_tensor *tensor = &file->tensors[t];
        FUZZ_ASSERT(tensor->end >= tensor->begin && tensor->end <= size);
        for (int64_t i = 0; i < tensor->n_elements; i++)
            total += fib_load(tensor->dtype, tensor->data, i);
        FUZZ_ASSERT(fib_st_find(file, tensor->name) != NULL);
    }
    for (int64_t m = 0; m < file->n_meta; m++)
        FUZZ_ASSERT(fib_st_meta(file, file->meta_keys[m]) != NULL);
    (void)total;
    fib_st_close(file);
    return 0;
}

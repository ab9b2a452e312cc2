/* safetensors files: a strict, memory-mapped reader and a writer.
 *
 * Layout: 8 bytes little-endian header length N, N bytes of UTF-8 JSON (an
 * object: tensor name -> {"dtype", "shape", "data_offsets"}, and optionally
 * "__metadata__": string -> string), then the data region. Offsets are
 * relative to the data region, which the tensors must cover exactly.
 *
 * Tensors are used in place from the mapping when they are aligned and the
 * host is little-endian, F16 and BF16 ones included (FIB_DTYPE_F16 /
 * FIB_DTYPE_BF16); others are converted into owned float32 (float64 for
 * F64) buffers. */
#ifndef FIB_IO_SAFETENSORS_H
#define FIB_IO_SAFETENSORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Largest header accepted by the reader (bytes). */
#define FIB_ST_MAX_HEADER (100u * 1024u * 1024u)
#define FIB_ST_MAX_DIMS 8

/* dtypes as stored in the file */
#define FIB_ST_F32 1
#define FIB_ST_F64 2
#define FIB_ST_F16 3
#define FIB_ST_BF16 4

typedef struct fib_st_tensor {
    char *name;
    int32_t file_dtype;     /* FIB_ST_* */
    int32_t n_dims;
    int64_t shape[FIB_ST_MAX_DIMS];
    int64_t n_elements;
    uint64_t begin, end;    /* byte offsets in the data region */
    int32_t dtype;          /* FIB_DTYPE_* of `data` */
    const void *data;       /* native-endian values, aligned */
    void *owned;            /* a converted copy, or NULL when mapped */
} fib_st_tensor;

typedef struct fib_st_file {
    char *path;
    const unsigned char *bytes; /* the whole file */
    size_t size;
    bool mapped;                /* bytes is an mmap (else fib_alloc'd or borrowed) */
    bool owns_bytes;
    int64_t n_tensors;          /* in header order */
    fib_st_tensor *tensors;
    fib_st_tensor **by_name;    /* the tensors sorted by name, for fib_st_find */
    int64_t n_meta;
    char **meta_keys;
    char **meta_values;
} fib_st_file;

/* Maps and validates a file. Errors: FIB_E_IO (open, stat, map),
 * FIB_E_FORMAT (the message names file, tensor and field), FIB_E_NOMEM. */
int32_t fib_st_open(const char *path, fib_st_file **out);
/* Validates a file image in memory (borrowed; must outlive the result).
 * `path` is only used in messages. */
int32_t fib_st_parse(const char *path, const unsigned char *bytes, size_t size,
                     fib_st_file **out);
void fib_st_close(fib_st_file *file);
/* The whole pages of [at, at + bytes) leave the process's memory when they
 * lie in the file's read-only mapping (they come back from the page cache
 * when read again; nothing changes); a file not mapped, or a range outside
 * it, is left alone. `file` is a fib_st_file: the signature of
 * fib_resource.drop_pages. */
void fib_st_drop_pages(void *file, const void *at, size_t bytes);

/* The tensor called `name`, NULL if none: O(log n_tensors). */
const fib_st_tensor *fib_st_find(const fib_st_file *file, const char *name);
/* The __metadata__ value of key, NULL if absent. */
const char *fib_st_meta(const fib_st_file *file, const char *key);
const char *fib_st_dtype_name(int32_t file_dtype);

/* float16 / bfloat16 bit patterns to float (exact). */
float fib_half_to_float(uint16_t h);
float fib_bf16_to_float(uint16_t h);

/* One tensor to write: data holds n_elements values of dtype
 * (any FIB_DTYPE_*; F16 and BF16 as their bit patterns), native endian.
 * n_dims may be 0 (a scalar). */
typedef struct fib_st_out {
    const char *name;
    int32_t dtype;
    int32_t n_dims;
    int64_t shape[FIB_ST_MAX_DIMS];
    const void *data;
} fib_st_out;

/* Writes a safetensors file through io/file_output.h (atomically for a
 * regular file, in place for a device or FIFO). Tensors are placed widest
 * elements first so that every tensor is aligned to its element size; the header is
 * padded with spaces to a multiple of 8. Errors: FIB_E_IO, FIB_E_INVALID
 * (dtype, names), FIB_E_OVERFLOW, FIB_E_NOMEM. */
int32_t fib_st_write(const char *path, const fib_st_out *tensors,
                     int64_t n_tensors, const char *const *meta_keys,
                     const char *const *meta_values, int64_t n_meta);
/* Like fib_st_write, where tensor i's data holds values of data_dtypes[i]
 * (any FIB_DTYPE_*; 0: its dtype), converted to its dtype while they are
 * written, a chunk at a time, so that no converted copy of a large tensor
 * is held (half precision is never a conversion target: FIB_E_INVALID).
 * data_dtypes may be NULL (all 0). */
int32_t fib_st_write_converting(const char *path, const fib_st_out *tensors,
                                const int32_t *data_dtypes, int64_t n_tensors,
                                const char *const *meta_keys,
                                const char *const *meta_values, int64_t n_meta);

/* Makes the values of tensor i (as the i-th fib_st_out describes them) just
 * before they are written: *data points to them; *owned, if set, is freed
 * with fib_free once they are written. */
typedef int32_t (*fib_st_produce)(void *ctx, int64_t i, const void **data, void **owned);

/* Like fib_st_write, where the tensors' data pointers are not read: the
 * header (with every offset) is written first, then each tensor as
 * produce(ctx, i, ...) makes it, and freed, so that one tensor's values are
 * held at a time. An error of produce aborts the write (the target is left
 * untouched) and is returned. */
int32_t fib_st_write_produced(const char *path, const fib_st_out *tensors,
                              int64_t n_tensors, const char *const *meta_keys,
                              const char *const *meta_values, int64_t n_meta,
                              fib_st_produce produce, void *ctx);

#endif

/* safetensors reader (mmap, strict validation) and writer. See safetensors.h. */
#include "io/safetensors.h"

#include "io/file_output.h"
#include "model/model.h"
#include "io/json.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static bool host_little_endian(void)
{
    const uint16_t probe = 1;
    unsigned char first;
    memcpy(&first, &probe, 1);
    return first == 1;
}

static uint64_t read_le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

float fib_half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31;
    uint32_t exponent = (h >> 10) & 0x1Fu;
    uint32_t mantissa = h & 0x3FFu;
    uint32_t bits;
    if (exponent == 0x1F) {
        bits = sign | 0x7F800000u | (mantissa << 13); /* inf / nan */
    } else if (exponent != 0) {
        bits = sign | ((exponent + 112u) << 23) | (mantissa << 13);
    } else if (mantissa == 0) {
        bits = sign; /* signed zero */
    } else {
        /* subnormal: normalise the mantissa */
        uint32_t e = 113;
        while (!(mantissa & 0x400u)) {
            mantissa <<= 1;
            e--;
        }
        bits = sign | (e << 23) | ((mantissa & 0x3FFu) << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

float fib_bf16_to_float(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

const char *fib_st_dtype_name(int32_t file_dtype)
{
    switch (file_dtype) {
    case FIB_ST_F32: return "F32";
    case FIB_ST_F64: return "F64";
    case FIB_ST_F16: return "F16";
    case FIB_ST_BF16: return "BF16";
    default: return "?";
    }
}

static int32_t dtype_from_name(const char *s)
{
    static const char *const names[] = {"F32", "F64", "F16", "BF16"};
    for (int32_t i = 0; i < 4; i++)
        if (strcmp(s, names[i]) == 0)
            return i + 1;
    return 0;
}

static size_t file_dtype_size(int32_t d)
{
    return d == FIB_ST_F64 ? 8 : d == FIB_ST_F32 ? 4 : 2;
}

void fib_st_close(fib_st_file *file)
{
    if (!file)
        return;
    for (int64_t i = 0; i < file->n_tensors; i++) {
        fib_free(file->tensors[i].name);
        fib_free(file->tensors[i].owned);
    }
    fib_free(file->tensors);
    fib_free(file->by_name);
    for (int64_t i = 0; i < file->n_meta; i++) {
        fib_free(file->meta_keys[i]);
        fib_free(file->meta_values[i]);
    }
    fib_free(file->meta_keys);
    fib_free(file->meta_values);
    if (file->owns_bytes) {
        if (file->mapped)
            munmap((void *)file->bytes, file->size);
        else
            fib_free((void *)file->bytes);
    }
    fib_free(file->path);
    fib_free(file);
}

const fib_st_tensor *fib_st_find(const fib_st_file *file, const char *name)
{
    int64_t lo = 0, hi = file->by_name ? file->n_tensors : 0;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        int c = strcmp(file->by_name[mid]->name, name);
        if (c == 0)
            return file->by_name[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static int compare_tensor_names(const void *a, const void *b)
{
    const fib_st_tensor *const *x = a;
    const fib_st_tensor *const *y = b;
    return strcmp((*x)->name, (*y)->name);
}

/* The name index of fib_st_find (names are unique: parse_header refused
 * duplicates), so that a reader looking up every tensor stays
 * O(n log n). */
static int32_t index_names(fib_st_file *f)
{
    if (f->n_tensors == 0)
        return FIB_OK;
    f->by_name = fib_alloc(f->n_tensors, sizeof *f->by_name);
    if (!f->by_name)
        return fib_error(FIB_E_NOMEM, "%s: out of memory", f->path);
    for (int64_t i = 0; i < f->n_tensors; i++)
        f->by_name[i] = &f->tensors[i];
    qsort(f->by_name, (size_t)f->n_tensors, sizeof *f->by_name, compare_tensor_names);
    return FIB_OK;
}

const char *fib_st_meta(const fib_st_file *file, const char *key)
{
    for (int64_t i = 0; i < file->n_meta; i++)
        if (strcmp(file->meta_keys[i], key) == 0)
            return file->meta_values[i];
    return NULL;
}

/* ---- header validation ---- */

static int32_t read_metadata(fib_st_file *f, const fib_json *meta)
{
    if (meta->kind != FIB_JSON_OBJECT)
        return fib_error(FIB_E_FORMAT,
                         "%s: header: __metadata__ is %s %s, not an object",
                         f->path, meta->kind == FIB_JSON_ARRAY ? "an" : "a",
                         fib_json_kind_name(meta->kind));
    const fib_json *dup = fib_json_find_duplicate(meta);
    if (dup)
        return fib_error(FIB_E_FORMAT,
                         "%s: header: __metadata__ has the key '%s' twice",
                         f->path, dup->key);
    if (meta->n_items == 0)
        return FIB_OK;
    f->meta_keys = fib_calloc(meta->n_items, sizeof *f->meta_keys);
    f->meta_values = fib_calloc(meta->n_items, sizeof *f->meta_values);
    if (!f->meta_keys || !f->meta_values)
        return fib_error(FIB_E_NOMEM, "%s: out of memory", f->path);
    for (int64_t i = 0; i < meta->n_items; i++) {
        const fib_json *v = &meta->items[i];
        if (v->kind != FIB_JSON_STRING)
            return fib_error(FIB_E_FORMAT,
                             "%s: header: __metadata__ value of '%s' is %s %s, "
                             "not a string",
                             f->path, v->key,
                             v->kind == FIB_JSON_ARRAY || v->kind == FIB_JSON_OBJECT
                                 ? "an" : "a",
                             fib_json_kind_name(v->kind));
        f->meta_keys[i] = fib_strdup(v->key);
        f->meta_values[i] = fib_strdup(v->string);
        f->n_meta = i + 1;
        if (!f->meta_keys[i] || !f->meta_values[i])
            return fib_error(FIB_E_NOMEM, "%s: out of memory", f->path);
    }
    return FIB_OK;
}

static int32_t tensor_error(const fib_st_file *f, const char *name,
                            const char *field, const char *problem)
{
    return fib_error(FIB_E_FORMAT, "%s: tensor '%s': field '%s': %s", f->path,
                     name, field, problem);
}

static int32_t read_tensor(fib_st_file *f, const fib_json *entry,
                           uint64_t data_size, fib_st_tensor *t)
{
    const char *name = entry->key;
    t->name = fib_strdup(name);
    if (!t->name)
        return fib_error(FIB_E_NOMEM, "%s: out of memory", f->path);
    if (entry->kind != FIB_JSON_OBJECT)
        return fib_error(FIB_E_FORMAT, "%s: tensor '%s': entry must be an "
                         "object, not %s", f->path, name,
                         fib_json_kind_name(entry->kind));
    const fib_json *dup = fib_json_find_duplicate(entry);
    if (dup)
        return tensor_error(f, name, dup->key, "given twice");
    for (int64_t i = 0; i < entry->n_items; i++) {
        const char *k = entry->items[i].key;
        if (strcmp(k, "dtype") && strcmp(k, "shape") && strcmp(k, "data_offsets"))
            return tensor_error(f, name, k, "unknown field");
    }
    const fib_json *dtype = fib_json_get(entry, "dtype");
    const fib_json *shape = fib_json_get(entry, "shape");
    const fib_json *offsets = fib_json_get(entry, "data_offsets");
    if (!dtype)
        return tensor_error(f, name, "dtype", "missing");
    if (!shape)
        return tensor_error(f, name, "shape", "missing");
    if (!offsets)
        return tensor_error(f, name, "data_offsets", "missing");
    if (dtype->kind != FIB_JSON_STRING)
        return tensor_error(f, name, "dtype", "not a string");
    t->file_dtype = dtype_from_name(dtype->string);
    if (t->file_dtype == 0)
        return fib_error(FIB_E_FORMAT,
                         "%s: tensor '%s': field 'dtype': unsupported dtype '%s' "
                         "(F32, F64, F16 or BF16 expected)",
                         f->path, name, dtype->string);
    if (shape->kind != FIB_JSON_ARRAY)
        return tensor_error(f, name, "shape", "not an array");
    if (shape->n_items > FIB_ST_MAX_DIMS)
        return tensor_error(f, name, "shape", "more than 8 dimensions");
    t->n_dims = (int32_t)shape->n_items;
    int64_t count = 1;
    for (int64_t i = 0; i < shape->n_items; i++) {
        const fib_json *d = &shape->items[i];
        if (d->kind != FIB_JSON_NUMBER || !d->is_integer || d->integer < 0)
            return tensor_error(f, name, "shape",
                                "dimensions must be non-negative integers");
        t->shape[i] = d->integer;
        if (!fib_mul_i64(count, d->integer, &count))
            return tensor_error(f, name, "shape", "element count overflows");
    }
    t->n_elements = count;
    if (offsets->kind != FIB_JSON_ARRAY || offsets->n_items != 2)
        return tensor_error(f, name, "data_offsets",
                            "must be an array [begin, end]");
    for (int i = 0; i < 2; i++) {
        const fib_json *o = &offsets->items[i];
        if (o->kind != FIB_JSON_NUMBER || !o->is_integer || o->integer < 0)
            return tensor_error(f, name, "data_offsets",
                                "offsets must be non-negative integers");
    }
    t->begin = (uint64_t)offsets->items[0].integer;
    t->end = (uint64_t)offsets->items[1].integer;
    if (t->end < t->begin)
        return fib_error(FIB_E_FORMAT,
                         "%s: tensor '%s': field 'data_offsets': end %llu is "
                         "before begin %llu", f->path, name,
                         (unsigned long long)t->end, (unsigned long long)t->begin);
    if (t->end > data_size)
        return fib_error(FIB_E_FORMAT,
                         "%s: tensor '%s': field 'data_offsets': end %llu is past "
                         "the end of the data region (%llu bytes)", f->path, name,
                         (unsigned long long)t->end,
                         (unsigned long long)data_size);
    int64_t bytes;
    if (!fib_mul_i64(count, (int64_t)file_dtype_size(t->file_dtype), &bytes) ||
        (uint64_t)bytes != t->end - t->begin)
        return fib_error(FIB_E_FORMAT,
                         "%s: tensor '%s': field 'data_offsets': span of %llu "
                         "bytes does not match shape x dtype (%lld elements of "
                         "%s)", f->path, name,
                         (unsigned long long)(t->end - t->begin),
                         (long long)count, fib_st_dtype_name(t->file_dtype));
    return FIB_OK;
}

static int compare_spans(const void *a, const void *b)
{
    const fib_st_tensor *const *x = a;
    const fib_st_tensor *const *y = b;
    if ((*x)->begin != (*y)->begin)
        return (*x)->begin < (*y)->begin ? -1 : 1;
    if ((*x)->end != (*y)->end)
        return (*x)->end < (*y)->end ? -1 : 1;
    return strcmp((*x)->name, (*y)->name);
}

static int32_t check_coverage(const fib_st_file *f, uint64_t data_size)
{
    if (f->n_tensors == 0) {
        if (data_size != 0)
            return fib_error(FIB_E_FORMAT, "%s: data region has %llu bytes but "
                             "the header lists no tensors", f->path,
                             (unsigned long long)data_size);
        return FIB_OK;
    }
    const fib_st_tensor **order = fib_alloc(f->n_tensors, sizeof *order);
    if (!order)
        return fib_error(FIB_E_NOMEM, "%s: out of memory", f->path);
    for (int64_t i = 0; i < f->n_tensors; i++)
        order[i] = &f->tensors[i];
    qsort(order, (size_t)f->n_tensors, sizeof *order, compare_spans);
    int32_t st = FIB_OK;
    uint64_t covered = 0;
    const fib_st_tensor *prev = NULL;
    for (int64_t i = 0; i < f->n_tensors && st == FIB_OK; i++) {
        const fib_st_tensor *t = order[i];
        if (t->begin < covered) {
            st = fib_error(FIB_E_FORMAT,
                           "%s: tensors '%s' and '%s' overlap (data_offsets "
                           "[%llu, %llu] and [%llu, %llu])", f->path, prev->name,
                           t->name, (unsigned long long)prev->begin,
                           (unsigned long long)prev->end,
                           (unsigned long long)t->begin,
                           (unsigned long long)t->end);
        } else if (t->begin > covered) {
            st = fib_error(FIB_E_FORMAT,
                           "%s: bytes [%llu, %llu) of the data region belong to "
                           "no tensor (gap before tensor '%s')", f->path,
                           (unsigned long long)covered,
                           (unsigned long long)t->begin, t->name);
        }
        covered = t->end;
        prev = t;
    }
    if (st == FIB_OK && covered != data_size)
        st = fib_error(FIB_E_FORMAT,
                       "%s: data region has %llu bytes after the last tensor "
                       "('%s' ends at %llu of %llu)", f->path,
                       (unsigned long long)(data_size - covered), prev->name,
                       (unsigned long long)covered,
                       (unsigned long long)data_size);
    fib_free(order);
    return st;
}

/* The whole pages of [at, at + len) of a mapped file leave the process's
 * memory: a tensor just converted to an owned copy (a misaligned or
 * big-endian one: such a model then peaks at its copies, not copies plus
 * file), or one a reader is done with for now (fib_st_drop_pages).
 * Only pages wholly inside the range go; the mapping is private and
 * read-only, so dropping them loses nothing: a later read brings them back
 * from the file. */
static void release_pages(const fib_st_file *f, const unsigned char *at, size_t len)
{
    if (f->mapped)
        fib_release_pages((void *)at, len);
}

void fib_st_drop_pages(void *file, const void *at, size_t bytes)
{
    const fib_st_file *f = file;
    uintptr_t begin = (uintptr_t)f->bytes, end = begin + f->size, p = (uintptr_t)at;
    uintptr_t q = bytes > UINTPTR_MAX - p ? UINTPTR_MAX : p + bytes;
    /* only the part in f's own mapping: bytes read into memory (no map)
     * are the process's only copy, which MADV_DONTNEED would zero */
    p = p > begin ? p : begin;
    q = q < end ? q : end;
    if (!f->mapped || p >= q)
        return;
    release_pages(f, (const unsigned char *)p, q - p);
}

/* Points tensor data into the file, or converts it to an owned buffer. */
static int32_t attach_data(fib_st_file *f, const unsigned char *data_region,
                           fib_st_tensor *t)
{
    const unsigned char *src = data_region + t->begin;
    size_t esize = file_dtype_size(t->file_dtype);
    static const int32_t held_as[] = {[FIB_ST_F32] = FIB_DTYPE_F32, [FIB_ST_F64] = FIB_DTYPE_F64,
                                      [FIB_ST_F16] = FIB_DTYPE_F16,
                                      [FIB_ST_BF16] = FIB_DTYPE_BF16};
    /* every dtype is read in place when the file allows: the kernels read
     * float16 and bfloat16 directly (kernels/stored.h) */
    if (host_little_endian() && ((uintptr_t)src % esize) == 0) {
        t->dtype = held_as[t->file_dtype];
        t->data = src;
        return FIB_OK;
    }
    t->dtype = t->file_dtype == FIB_ST_F64 ? FIB_DTYPE_F64 : FIB_DTYPE_F32;
    if (t->n_elements == 0) {
        t->data = src; /* never read */
        return FIB_OK;
    }
    size_t out_size = t->dtype == FIB_DTYPE_F64 ? 8 : 4;
    unsigned char *dst = fib_alloc(t->n_elements, out_size);
    if (!dst)
        return fib_error(FIB_E_NOMEM, "%s: tensor '%s': out of memory converting "
                         "%lld elements", f->path, t->name,
                         (long long)t->n_elements);
    if (t->file_dtype == FIB_ST_BF16) {
        /* widening is a shift: one vectorisable pass, any host order */
        for (int64_t i = 0; i < t->n_elements; i++) {
            uint32_t bits = ((uint32_t)src[2 * i] | (uint32_t)src[2 * i + 1] << 8) << 16;
            memcpy(dst + (size_t)i * 4, &bits, 4); /* stored as the float it is */
        }
    }
    for (int64_t i = 0; t->file_dtype != FIB_ST_BF16 && i < t->n_elements; i++) {
        const unsigned char *e = src + (size_t)i * esize;
        uint64_t bits = 0;
        for (size_t b = esize; b-- > 0;)
            bits = (bits << 8) | e[b]; /* little-endian */
        if (t->file_dtype == FIB_ST_F64) {
            double v;
            memcpy(&v, &bits, 8);
            memcpy(dst + (size_t)i * 8, &v, 8);
        } else {
            float v;
            if (t->file_dtype == FIB_ST_F32) {
                uint32_t b32 = (uint32_t)bits;
                memcpy(&v, &b32, 4);
            } else if (t->file_dtype == FIB_ST_F16) {
                v = fib_half_to_float((uint16_t)bits);
            } else {
                v = fib_bf16_to_float((uint16_t)bits);
            }
            memcpy(dst + (size_t)i * 4, &v, 4);
        }
    }
    t->owned = dst;
    t->data = dst;
    release_pages(f, src, (size_t)t->n_elements * esize);
    return FIB_OK;
}

static int32_t parse_header(fib_st_file *f)
{
    const unsigned char *b = f->bytes;
    if (f->size < 8)
        return fib_error(FIB_E_FORMAT, "%s: truncated: %zu bytes, shorter than "
                         "the 8-byte header length", f->path, f->size);
    uint64_t n = read_le64(b);
    if (n > FIB_ST_MAX_HEADER)
        return fib_error(FIB_E_FORMAT, "%s: header length %llu exceeds the limit "
                         "of %u bytes", f->path, (unsigned long long)n,
                         FIB_ST_MAX_HEADER);
    if (n > f->size - 8)
        return fib_error(FIB_E_FORMAT, "%s: header length %llu runs past the end "
                         "of the file (%zu bytes)", f->path,
                         (unsigned long long)n, f->size);
    if (n < 2)
        return fib_error(FIB_E_FORMAT, "%s: header length %llu is too short for "
                         "a JSON object", f->path, (unsigned long long)n);
    const char *text = (const char *)b + 8;
    size_t bad;
    if (!fib_utf8_valid((const unsigned char *)text, (size_t)n, &bad))
        return fib_error(FIB_E_FORMAT, "%s: header is not valid UTF-8 (byte %zu "
                         "of the header)", f->path, bad);
    if (text[0] != '{')
        return fib_error(FIB_E_FORMAT, "%s: header does not start with '{'",
                         f->path);
    char context[300];
    snprintf(context, sizeof context, "%s: header", f->path);
    fib_json *root = NULL;
    int32_t st = fib_json_parse(text, (size_t)n, context, &root);
    if (st != FIB_OK)
        return st;
    uint64_t data_size = f->size - 8 - n;
    const fib_json *dup = fib_json_find_duplicate(root);
    if (dup) {
        st = fib_error(FIB_E_FORMAT, "%s: header: duplicate tensor name '%s'",
                       f->path, dup->key);
        goto done;
    }
    int64_t n_tensors = root->n_items;
    if (fib_json_get(root, "__metadata__"))
        n_tensors--;
    if (n_tensors > 0) {
        f->tensors = fib_calloc(n_tensors, sizeof *f->tensors);
        if (!f->tensors) {
            st = fib_error(FIB_E_NOMEM, "%s: out of memory", f->path);
            goto done;
        }
    }
    for (int64_t i = 0; i < root->n_items && st == FIB_OK; i++) {
        const fib_json *entry = &root->items[i];
        if (strcmp(entry->key, "__metadata__") == 0) {
            st = read_metadata(f, entry);
        } else {
            st = read_tensor(f, entry, data_size, &f->tensors[f->n_tensors]);
            f->n_tensors++;
        }
    }
    if (st == FIB_OK)
        st = check_coverage(f, data_size);
    if (st == FIB_OK)
        st = index_names(f);
    for (int64_t i = 0; i < f->n_tensors && st == FIB_OK; i++)
        st = attach_data(f, b + 8 + n, &f->tensors[i]);
done:
    fib_json_free(root);
    return st;
}

static int32_t new_file(const char *path, fib_st_file **out)
{
    fib_st_file *f = fib_calloc(1, sizeof *f);
    if (!f)
        return fib_error(FIB_E_NOMEM, "%s: out of memory", path);
    f->path = fib_strdup(path);
    if (!f->path) {
        fib_free(f);
        return fib_error(FIB_E_NOMEM, "%s: out of memory", path);
    }
    *out = f;
    return FIB_OK;
}

int32_t fib_st_parse(const char *path, const unsigned char *bytes, size_t size,
                     fib_st_file **out)
{
    if (!path || !out || (!bytes && size))
        return fib_error(FIB_E_NULL, "fib_st_parse: NULL argument");
    fib_st_file *f;
    int32_t st = new_file(path, &f);
    if (st != FIB_OK)
        return st;
    f->bytes = bytes;
    f->size = size;
    st = parse_header(f);
    if (st != FIB_OK) {
        fib_st_close(f);
        return st;
    }
    *out = f;
    return FIB_OK;
}

/* Reads the whole file when it cannot be mapped. */
static int32_t read_whole(int fd, const char *path, size_t size,
                          unsigned char **out)
{
    unsigned char *buf = fib_alloc((int64_t)size, 1);
    if (!buf)
        return fib_error(FIB_E_NOMEM, "%s: out of memory reading %zu bytes", path,
                         size);
    size_t done = 0;
    while (done < size) {
        ssize_t r = read(fd, buf + done, size - done);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            fib_free(buf);
            return fib_error(FIB_E_IO, "%s: read failed: %s", path,
                             r < 0 ? strerror(errno) : "file shrank");
        }
        done += (size_t)r;
    }
    *out = buf;
    return FIB_OK;
}

int32_t fib_st_open(const char *path, fib_st_file **out)
{
    if (!path || !out)
        return fib_error(FIB_E_NULL, "fib_st_open: NULL argument");
    /* non-blocking: a FIFO without a writer must not hang the open; only a
     * regular file (which ignores the flag) is read below */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return fib_error(FIB_E_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return fib_error(FIB_E_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    /* a model given as a folder is read as a checkpoint before this open, so
     * a folder here is one where a checkpoint names a safetensors file */
    if (S_ISDIR(sb.st_mode)) {
        close(fd);
        return fib_error(FIB_E_IO, "%s: not a regular file (a folder) where a "
                         "safetensors file is read", path);
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return fib_error(FIB_E_IO, "%s: not a regular file (a %s); model files "
                         "are mapped, so pipes and devices are refused",
                         path, S_ISFIFO(sb.st_mode) ? "FIFO or pipe"
                         : S_ISCHR(sb.st_mode) ? "character device" : "special file");
    }
    if (sb.st_size < 8) {
        close(fd);
        return fib_error(FIB_E_FORMAT, "%s: truncated: %lld bytes, shorter than "
                         "the 8-byte header length", path, (long long)sb.st_size);
    }
    if ((uint64_t)sb.st_size > (uint64_t)SIZE_MAX) {
        close(fd);
        return fib_error(FIB_E_OVERFLOW, "%s: too large to map", path);
    }
    size_t size = (size_t)sb.st_size;
    fib_st_file *f;
    int32_t st = new_file(path, &f);
    if (st != FIB_OK) {
        close(fd);
        return st;
    }
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map != MAP_FAILED) {
        f->bytes = map;
        f->mapped = true;
    } else {
        unsigned char *buf = NULL;
        st = read_whole(fd, path, size, &buf);
        f->bytes = buf;
    }
    close(fd);
    if (st == FIB_OK) {
        f->size = size;
        f->owns_bytes = true;
        st = parse_header(f);
    }
    if (st != FIB_OK) {
        fib_st_close(f);
        return st;
    }
    *out = f;
    return FIB_OK;
}

/* ---- writer ---- */

static int compare_names(const void *a, const void *b)
{
    const char *const *x = a;
    const char *const *y = b;
    return strcmp(*x, *y);
}

/* produced: the data is made while writing (fib_st_write_produced), so
 * tensors' data pointers are not looked at. */
static int32_t check_out_tensors(const char *path, const fib_st_out *t,
                                 int64_t n, int64_t *bytes, bool produced)
{
    for (int64_t i = 0; i < n; i++) {
        if (!t[i].name || t[i].name[0] == '\0' ||
            strcmp(t[i].name, "__metadata__") == 0)
            return fib_error(FIB_E_INVALID, "%s: tensor %lld has no valid name",
                             path, (long long)i);
        if (!fib_dtype_size(t[i].dtype))
            return fib_error(FIB_E_INVALID, "%s: tensor '%s': dtype %d is not "
                             "a FIB_DTYPE_*", path, t[i].name, (int)t[i].dtype);
        if (t[i].n_dims < 0 || t[i].n_dims > FIB_ST_MAX_DIMS)
            return fib_error(FIB_E_INVALID, "%s: tensor '%s': %d dimensions",
                             path, t[i].name, (int)t[i].n_dims);
        int64_t count = 1;
        for (int32_t d = 0; d < t[i].n_dims; d++)
            if (!fib_mul_i64(count, t[i].shape[d], &count))
                return fib_error(FIB_E_OVERFLOW, "%s: tensor '%s': bad shape",
                                 path, t[i].name);
        if (!fib_mul_i64(count, (int64_t)fib_dtype_size(t[i].dtype), &bytes[i]))
            return fib_error(FIB_E_OVERFLOW, "%s: tensor '%s': too large", path,
                             t[i].name);
        if (bytes[i] > 0 && !t[i].data && !produced)
            return fib_error(FIB_E_NULL, "%s: tensor '%s': no data", path,
                             t[i].name);
    }
    if (n < 2)
        return FIB_OK;
    const char **names = fib_alloc(n, sizeof *names);
    if (!names)
        return fib_error(FIB_E_NOMEM, "%s: out of memory", path);
    for (int64_t i = 0; i < n; i++)
        names[i] = t[i].name;
    qsort(names, (size_t)n, sizeof *names, compare_names);
    int32_t st = FIB_OK;
    for (int64_t i = 1; i < n && st == FIB_OK; i++)
        if (strcmp(names[i - 1], names[i]) == 0)
            st = fib_error(FIB_E_INVALID, "%s: tensor name '%s' given twice",
                           path, names[i]);
    fib_free(names);
    return st;
}

static int32_t build_header(const fib_st_out *t, int64_t n, const int64_t *order,
                            const int64_t *bytes, const char *const *meta_keys,
                            const char *const *meta_values, int64_t n_meta,
                            fib_jbuf *h)
{
    static const char *const names[] = {"", "F32", "F64", "F16", "BF16"};
    fib_jbuf_raw(h, "{");
    bool first = true;
    if (n_meta > 0) {
        fib_jbuf_raw(h, "\"__metadata__\":{");
        for (int64_t i = 0; i < n_meta; i++) {
            if (i)
                fib_jbuf_raw(h, ",");
            fib_jbuf_string(h, meta_keys[i]);
            fib_jbuf_raw(h, ":");
            fib_jbuf_string(h, meta_values[i]);
        }
        fib_jbuf_raw(h, "}");
        first = false;
    }
    int64_t offset = 0;
    for (int64_t k = 0; k < n; k++) {
        const fib_st_out *o = &t[order[k]];
        if (!first)
            fib_jbuf_raw(h, ",");
        first = false;
        fib_jbuf_string(h, o->name);
        fib_jbuf_raw(h, ":{\"dtype\":\"");
        fib_jbuf_raw(h, names[o->dtype]);
        fib_jbuf_raw(h, "\",\"shape\":[");
        for (int32_t d = 0; d < o->n_dims; d++) {
            if (d)
                fib_jbuf_raw(h, ",");
            fib_jbuf_int(h, o->shape[d]);
        }
        fib_jbuf_raw(h, "],\"data_offsets\":[");
        fib_jbuf_int(h, offset);
        fib_jbuf_raw(h, ",");
        offset += bytes[order[k]];
        fib_jbuf_int(h, offset);
        fib_jbuf_raw(h, "]}");
    }
    fib_jbuf_raw(h, "}");
    while (!h->failed && h->length % 8 != 0)
        fib_jbuf_raw(h, " ");
    return fib_jbuf_status(h);
}

static bool write_all(FILE *fp, const void *p, size_t n)
{
    return n == 0 || fwrite(p, 1, n, fp) == n;
}

/* Bytes of native-endian values in the file's order (little-endian). */
static bool write_values(FILE *fp, const void *values, size_t esize, int64_t bytes)
{
    if (host_little_endian())
        return write_all(fp, values, (size_t)bytes);
    const unsigned char *src = values;
    unsigned char swapped[8];
    for (int64_t off = 0; off < bytes; off += (int64_t)esize) {
        for (size_t b = 0; b < esize; b++)
            swapped[b] = src[off + (int64_t)(esize - 1 - b)];
        if (!write_all(fp, swapped, esize))
            return false;
    }
    return true;
}

static bool write_tensor(FILE *fp, const fib_st_out *o, int32_t data_dtype, int64_t bytes)
{
    size_t esize = fib_dtype_size(o->dtype);
    if (!data_dtype || data_dtype == o->dtype)
        return write_values(fp, o->data, esize, bytes);
    /* converted a chunk at a time: 64 KiB of float64 at most */
    enum { CHUNK = 8192 };
    double chunk[CHUNK];
    int64_t n = bytes / (int64_t)esize;
    bool ok = true;
    for (int64_t i0 = 0; i0 < n && ok; i0 += CHUNK) {
        int64_t m = n - i0 < CHUNK ? n - i0 : CHUNK;
        for (int64_t x = 0; x < m; x++)
            fib_store(o->dtype, chunk, x, fib_load(data_dtype, o->data, i0 + x));
        ok = write_values(fp, chunk, esize, m * (int64_t)esize);
    }
    return ok;
}

/* The values of tensor i, made just before they are written (NULL: the
 * tensors' own data). */
typedef struct st_producer {
    fib_st_produce produce;
    void *ctx;
} st_producer;

/* Writes tensor i, its data made by the producer when there is one (and
 * freed once written, so that one tensor's values are held at a time). */
static int32_t write_one(const char *path, FILE *fp, const fib_st_out *t, int64_t i,
                         int32_t data_dtype, int64_t bytes, const st_producer *p)
{
    if (!p || !p->produce)
        return write_tensor(fp, &t[i], data_dtype, bytes)
                   ? FIB_OK : fib_error(FIB_E_IO, "%s: write failed: %s", path,
                                        strerror(errno));
    const void *data = NULL;
    void *owned = NULL;
    int32_t st = p->produce(p->ctx, i, &data, &owned);
    if (st == FIB_OK && bytes > 0 && !data)
        st = fib_error(FIB_E_NULL, "%s: tensor '%s': no data", path, t[i].name);
    if (st == FIB_OK) {
        fib_st_out o = t[i];
        o.data = data;
        if (!write_tensor(fp, &o, 0, bytes))
            st = fib_error(FIB_E_IO, "%s: write failed: %s", path, strerror(errno));
    }
    fib_free(owned);
    return st;
}

static int32_t write_file(const char *path, const fib_st_out *t, const int32_t *data_dtypes,
                          int64_t n, const int64_t *order, const int64_t *bytes,
                          const fib_jbuf *h, const st_producer *producer)
{
    fib_output out;
    int32_t st = fib_output_open(&out, path);
    if (st != FIB_OK)
        return st;
    unsigned char len[8];
    uint64_t hl = h->length;
    for (int i = 0; i < 8; i++)
        len[i] = (unsigned char)(hl >> (8 * i));
    bool ok = write_all(out.fp, len, 8) && write_all(out.fp, h->data, h->length);
    if (!ok) {
        int e = errno;
        fib_output_abort(&out);
        return fib_error(FIB_E_IO, "%s: write failed: %s", path, strerror(e));
    }
    for (int64_t k = 0; k < n && st == FIB_OK; k++)
        st = write_one(path, out.fp, t, order[k], data_dtypes ? data_dtypes[order[k]] : 0,
                       bytes[order[k]], producer);
    if (st != FIB_OK) {
        fib_output_abort(&out);
        return st;
    }
    return fib_output_commit(&out);
}

int32_t fib_st_write(const char *path, const fib_st_out *tensors,
                     int64_t n_tensors, const char *const *meta_keys,
                     const char *const *meta_values, int64_t n_meta)
{
    return fib_st_write_converting(path, tensors, NULL, n_tensors, meta_keys, meta_values,
                                   n_meta);
}

static int32_t write_tensors(const char *path, const fib_st_out *tensors,
                             const int32_t *data_dtypes, int64_t n_tensors,
                             const char *const *meta_keys,
                             const char *const *meta_values, int64_t n_meta,
                             const st_producer *producer)
{
    if (!path || (n_tensors > 0 && !tensors) ||
        (n_meta > 0 && (!meta_keys || !meta_values)))
        return fib_error(FIB_E_NULL, "fib_st_write: NULL argument");
    if (n_tensors < 0 || n_meta < 0)
        return fib_error(FIB_E_INVALID, "fib_st_write: negative count");
    for (int64_t i = 0; i < n_meta; i++)
        if (!meta_keys[i] || !meta_values[i])
            return fib_error(FIB_E_NULL, "%s: metadata entry %lld is NULL", path,
                             (long long)i);
    int64_t slots = n_tensors > 0 ? n_tensors : 1;
    int64_t *bytes = fib_calloc(slots, sizeof *bytes);
    int64_t *order = fib_calloc(slots, sizeof *order);
    fib_jbuf h;
    fib_jbuf_init(&h);
    int32_t st = FIB_OK;
    if (!bytes || !order)
        st = fib_error(FIB_E_NOMEM, "%s: out of memory", path);
    if (st == FIB_OK)
        st = check_out_tensors(path, tensors, n_tensors, bytes, producer != NULL);
    for (int64_t i = 0; st == FIB_OK && data_dtypes && i < n_tensors; i++)
        if (data_dtypes[i] && !fib_dtype_size(data_dtypes[i]))
            st = fib_error(FIB_E_INVALID, "%s: tensor '%s': data dtype %d is unknown", path,
                           tensors[i].name, (int)data_dtypes[i]);
    /* half precision is written as given, never rounded to */
    for (int64_t i = 0; st == FIB_OK && i < n_tensors; i++)
        if (fib_dtype_size(tensors[i].dtype) == 2 && data_dtypes && data_dtypes[i] &&
            data_dtypes[i] != tensors[i].dtype)
            st = fib_error(FIB_E_INVALID, "%s: tensor '%s': no conversion to half precision",
                           path, tensors[i].name);
    if (st == FIB_OK) {
        /* widest elements first: every tensor then starts at a multiple of
         * its element size, so it stays aligned in a mapping */
        int64_t k = 0;
        for (size_t esize = 8; esize >= 2; esize /= 2)
            for (int64_t i = 0; i < n_tensors; i++)
                if (fib_dtype_size(tensors[i].dtype) == esize)
                    order[k++] = i;
        st = build_header(tensors, n_tensors, order, bytes, meta_keys,
                          meta_values, n_meta, &h);
    }
    if (st == FIB_OK)
        st = write_file(path, tensors, data_dtypes, n_tensors, order, bytes, &h, producer);
    fib_jbuf_free(&h);
    fib_free(order);
    fib_free(bytes);
    return st;
}

int32_t fib_st_write_converting(const char *path, const fib_st_out *tensors,
                                const int32_t *data_dtypes, int64_t n_tensors,
                                const char *const *meta_keys,
                                const char *const *meta_values, int64_t n_meta)
{
    return write_tensors(path, tensors, data_dtypes, n_tensors, meta_keys, meta_values,
                         n_meta, NULL);
}

int32_t fib_st_write_produced(const char *path, const fib_st_out *tensors,
                              int64_t n_tensors, const char *const *meta_keys,
                              const char *const *meta_values, int64_t n_meta,
                              fib_st_produce produce, void *ctx)
{
    if (!produce)
        return fib_error(FIB_E_NULL, "fib_st_write_produced: NULL producer");
    st_producer p = {produce, ctx};
    return write_tensors(path, tensors, NULL, n_tensors, meta_keys, meta_values, n_meta, &p);
}

/* The base of a Hugging Face checkpoint directory written back in the
 * checkpoint's own layout (config.json and model.safetensors), where that
 * layout can hold it; else the library's own model file. What each layout
 * holds is docs/model-files.md, "Bases of checkpoint directories": keep
 * them in step.
 *
 * A llama-family or GPT-2 checkpoint describes every layer with the same
 * config.json numbers: one intermediate size, one hidden size, one number
 * of heads. A base fits when only the MLP's intermediate units were merged,
 * into the same number of classes in every layer. Merged residual
 * dimensions need norms that weight each base dimension by its class size,
 * merged head dimensions need pair multiplicities: neither has a place in
 * the checkpoint format, and a base must never be made larger to fit it
 * (padding back to a common width would undo the compression), so those
 * bases are written in the library's format, with the reason. */
#include "io/file_output.h"
#include "io/model_io.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#define MAX_NAME 512

typedef struct hf_writer {
    const fib_graph *model, *base;
    const char *model_dir;
    int32_t n_groups;
    bool gpt2;
    bool tied;
    const char *inner_key;  /* config key of the MLP width */
    int64_t inner;          /* the base's MLP width, -1 before the first layer */
    int64_t model_inner;
    char *reason;
    size_t reason_size;
    /* the tensors to write, each owning its bytes */
    int64_t n_out, cap_out;
    fib_st_out *out;
    void **owned;
} hf_writer;

static void say(hf_writer *W, const char *format, ...)
{
    if (!W->reason || W->reason_size == 0)
        return;
    va_list ap;
    va_start(ap, format);
    vsnprintf(W->reason, W->reason_size, format, ap);
    va_end(ap);
}

static bool ends_with(const char *s, const char *tail)
{
    size_t n = strlen(s), m = strlen(tail);
    return n >= m && strcmp(s + n - m, tail) == 0;
}

static int64_t units_of(const fib_graph *g, int32_t group)
{
    int64_t n = 0;
    fib_graph_group_info(g, group, NULL, &n, NULL, NULL, NULL, NULL, NULL);
    return n;
}

/* ---- can the layout hold the base? --------------------------------------- */

/* Groups whose units the checkpoint layout lets merge: the MLP's
 * intermediate units (llama: gate, up and their product; gpt2: c_fc). */
static bool mergeable(const hf_writer *W, const char *name)
{
    if (W->gpt2)
        return ends_with(name, ".mlp.c_fc");
    return ends_with(name, ".mlp.gate_proj") || ends_with(name, ".mlp.up_proj") ||
           ends_with(name, ".mlp.product");
}

static int32_t same_projection(const fib_base *base, int32_t a, int32_t b, int64_t n,
                               bool *same)
{
    int64_t *pa = fib_alloc(n, sizeof *pa), *pb = fib_alloc(n, sizeof *pb);
    int32_t st = pa && pb ? FIB_OK : fib_error(FIB_E_NOMEM, "fib_base_save_checkpoint: out of memory");
    if (st == FIB_OK)
        st = fib_base_projection(base, a, pa, n);
    if (st == FIB_OK)
        st = fib_base_projection(base, b, pb, n);
    *same = st == FIB_OK && memcmp(pa, pb, (size_t)n * sizeof *pa) == 0;
    fib_free(pa);
    fib_free(pb);
    return st;
}

/* Whether the checkpoint layout holds the base; if not, W->reason says why. */
static int32_t layout_holds(hf_writer *W, const fib_base *base, bool *holds)
{
    *holds = false;
    W->inner = -1;
    for (int32_t i = 0; i < W->n_groups; i++) {
        const char *name = fib_graph_group_name(W->model, i);
        int64_t n = units_of(W->model, i), k = units_of(W->base, i);
        if (!mergeable(W, name)) {
            if (n != k) {
                say(W, "group '%s' was merged (%lld -> %lld units); the checkpoint layout "
                    "holds only merged MLP units", name, (long long)n, (long long)k);
                return FIB_OK;
            }
            continue;
        }
        if (W->inner >= 0 && k != W->inner) {
            say(W, "the MLP widths of the layers differ (%lld, then %lld in '%s'); "
                "config.json holds one '%s'", (long long)W->inner, (long long)k, name,
                W->inner_key);
            return FIB_OK;
        }
        W->inner = k;
        W->model_inner = n;
        if (!W->gpt2 && ends_with(name, ".mlp.product")) {
            /* gate, up and product alike: the product reads unit c of both */
            for (int32_t s = 0; s < 2; s++) {
                int32_t source = -1;
                bool same = false;
                int32_t st = fib_graph_group_source(W->model, i, s, &source);
                if (st == FIB_OK)
                    st = same_projection(base, i, source, n, &same);
                if (st != FIB_OK)
                    return st;
                if (!same) {
                    say(W, "the gate and up units of '%s' were merged differently; the "
                        "checkpoint layout multiplies gate unit c by up unit c", name);
                    return FIB_OK;
                }
            }
        }
    }
    *holds = true;
    return FIB_OK;
}

/* ---- tensors ------------------------------------------------------------- */

/* The index of a group's tensor called `tensor`, -1 if none; its
 * dimensions in *ndim and shape (unused ones 1). */
static int32_t tensor_index(const fib_graph *g, int32_t group, const char *tensor,
                            int32_t *ndim, int64_t shape[4])
{
    for (int32_t t = 0;; t++) {
        const char *name = NULL;
        if (fib_graph_tensor_info(g, group, t, ndim, shape, &name) != FIB_OK)
            return -1;
        if (strcmp(name, tensor) == 0)
            return t;
    }
}

/* float -> float16 bits when the value is exactly a float16. */
static bool half_exact(float f, uint16_t *out)
{
    uint32_t bits;
    memcpy(&bits, &f, 4);
    uint32_t sign = (bits >> 16) & 0x8000u, mag = bits & 0x7fffffffu;
    uint16_t h;
    if (mag == 0) {
        h = 0;
    } else {
        int exponent = (int)(mag >> 23) - 127;
        if (exponent > 15 || exponent < -24)
            return false;
        if (exponent >= -14) {
            h = (uint16_t)(((uint32_t)(exponent + 15) << 10) | ((mag >> 13) & 0x3ffu));
        } else { /* subnormal half: the value is m * 2^-24 */
            uint32_t m = (mag & 0x7fffffu) | 0x800000u;
            int shift = -exponent - 14 + 13;
            h = (uint16_t)(m >> shift);
        }
    }
    h = (uint16_t)(h | sign);
    *out = h;
    return fib_half_to_float(h) == f;
}

/* The values (float64) packed in `dtype` if every one is exact in it;
 * NULL when one is not (or out of memory: *nomem). */
static void *packed(const double *v, int64_t n, int32_t dtype, bool *nomem)
{
    void *buf = fib_alloc(n > 0 ? n : 1, fib_dtype_size(dtype));
    *nomem = !buf;
    if (!buf)
        return NULL;
    for (int64_t i = 0; i < n; i++) {
        float f = (float)v[i];
        if (dtype == FIB_DTYPE_F64) {
            ((double *)buf)[i] = v[i];
            continue;
        }
        bool ok = (double)f == v[i];
        if (ok && dtype == FIB_DTYPE_F32) {
            ((float *)buf)[i] = f;
        } else if (ok && dtype == FIB_DTYPE_BF16) {
            uint32_t bits;
            memcpy(&bits, &f, 4);
            ok = (bits & 0xffffu) == 0;
            ((uint16_t *)buf)[i] = (uint16_t)(bits >> 16);
        } else if (ok) {
            ok = half_exact(f, (uint16_t *)buf + i);
        }
        if (!ok) {
            fib_free(buf);
            return NULL;
        }
    }
    return buf;
}

static int32_t push(hf_writer *W, const char *name, int32_t n_dims, int64_t d0, int64_t d1,
                    int32_t dtype, void *data)
{
    if (W->n_out == W->cap_out) {
        int64_t cap = W->cap_out ? 2 * W->cap_out : 64;
        fib_st_out *out = fib_alloc(cap, sizeof *out);
        void **owned = fib_alloc(cap, sizeof *owned);
        if (!out || !owned) {
            fib_free(out);
            fib_free(owned);
            fib_free(data);
            return fib_error(FIB_E_NOMEM, "fib_base_save_checkpoint: out of memory");
        }
        if (W->n_out) {
            memcpy(out, W->out, (size_t)W->n_out * sizeof *out);
            memcpy(owned, W->owned, (size_t)W->n_out * sizeof *owned);
        }
        fib_free(W->out);
        fib_free(W->owned);
        W->out = out;
        W->owned = owned;
        W->cap_out = cap;
    }
    char *copy = fib_alloc(strlen(name) + 1, 1);
    if (!copy) {
        fib_free(data);
        return fib_error(FIB_E_NOMEM, "fib_base_save_checkpoint: out of memory");
    }
    strcpy(copy, name);
    fib_st_out *o = &W->out[W->n_out];
    memset(o, 0, sizeof *o);
    o->name = copy;
    o->dtype = dtype;
    o->n_dims = n_dims;
    o->shape[0] = d0;
    o->shape[1] = d1;
    o->data = data;
    W->owned[W->n_out++] = data;
    return FIB_OK;
}

/* One tensor of a base group, transposed (a [rows, cols] block written
 * [cols, rows]) when asked. */
typedef struct hf_piece {
    int32_t group;
    const char *tensor;
    bool transpose;
} hf_piece;

/* Appends the pieces side by side (GPT-2's fused c_attn is three groups'
 * weights) as the tensor `name`, in the model's dtype of those tensors where
 * it holds every value exactly, else float32 (float64 when float32 does
 * not). */
static int32_t emit(hf_writer *W, const char *name, const hf_piece *pieces, int32_t n_pieces)
{
    /* every piece has the same rows in the written layout; columns add up */
    int64_t rows = -1, cols = 0, shape[4];
    int32_t n_dims = 1, dtype = FIB_DTYPE_F32, ndim = 0;
    for (int32_t p = 0; p < n_pieces; p++) {
        int32_t t = tensor_index(W->base, pieces[p].group, pieces[p].tensor, &n_dims, shape);
        if (t < 0)
            return fib_error(FIB_E_MISMATCH, "fib_base_save_checkpoint: group '%s' has no "
                             "tensor '%s'", fib_graph_group_name(W->base, pieces[p].group),
                             pieces[p].tensor);
        int64_t r = shape[0], c = shape[1];
        if (n_dims == 1) { /* a vector: one row in the written layout */
            c = r;
            r = 1;
        } else if (pieces[p].transpose) {
            int64_t x = r;
            r = c;
            c = x;
        }
        if (rows >= 0 && rows != r)
            return fib_error(FIB_E_MISMATCH, "fib_base_save_checkpoint: '%s': pieces of "
                             "different heights", name);
        rows = r;
        cols += c;
        int32_t mt = tensor_index(W->model, pieces[p].group, pieces[p].tensor, &ndim, shape);
        if (mt < 0 || fib_graph_tensor_dtype(W->model, pieces[p].group, mt, &dtype) != FIB_OK)
            dtype = FIB_DTYPE_F32;
    }
    double *all = fib_alloc(rows * cols > 0 ? rows * cols : 1, sizeof *all);
    if (!all)
        return fib_error(FIB_E_NOMEM, "fib_base_save_checkpoint: out of memory for '%s'", name);
    int64_t at = 0;
    for (int32_t p = 0; p < n_pieces; p++) {
        int32_t t = tensor_index(W->base, pieces[p].group, pieces[p].tensor, &ndim, shape);
        int64_t r = shape[0], c = ndim == 1 ? 1 : shape[1], n = r * c;
        double *v = fib_alloc(n > 0 ? n : 1, sizeof *v);
        int32_t st = v ? fib_graph_read_tensor(W->base, pieces[p].group, t, FIB_DTYPE_F64, v, n)
                       : fib_error(FIB_E_NOMEM, "fib_base_save_checkpoint: out of memory");
        if (st != FIB_OK) {
            fib_free(v);
            fib_free(all);
            return st;
        }
        int64_t width = 0;
        if (n_dims == 1 || !pieces[p].transpose) {
            width = n_dims == 1 ? n : c;
            for (int64_t i = 0; i < rows; i++)
                memcpy(all + i * cols + at, v + i * width, (size_t)width * sizeof *v);
        } else { /* stored [r, c], written [c, r] */
            width = r;
            for (int64_t i = 0; i < r; i++)
                for (int64_t j = 0; j < c; j++)
                    all[j * cols + at + i] = v[i * c + j];
        }
        at += width;
        fib_free(v);
    }
    bool nomem = false;
    void *data = packed(all, rows * cols, dtype, &nomem);
    for (int32_t wider = FIB_DTYPE_F32; !data && !nomem; wider = FIB_DTYPE_F64)
        data = packed(all, rows * cols, dtype = wider, &nomem);
    fib_free(all);
    if (!data)
        return fib_error(FIB_E_NOMEM, "fib_base_save_checkpoint: out of memory for '%s'", name);
    return n_dims == 1 ? push(W, name, 1, cols, 0, dtype, data)
                       : push(W, name, 2, rows, cols, dtype, data);
}

static int32_t emit_one(hf_writer *W, const char *name, int32_t group, const char *tensor,
                        bool transpose)
{
    hf_piece p = {group, tensor, transpose};
    return emit(W, name, &p, 1);
}

/* A dense group as `<name>.weight` (and `.bias`), optionally transposed. */
static int32_t emit_dense(hf_writer *W, int32_t group, const char *name, bool transpose)
{
    char t[MAX_NAME];
    snprintf(t, sizeof t, "%s.weight", name);
    int32_t st = emit_one(W, t, group, "weight", transpose);
    int32_t has_bias = 0;
    fib_graph_group_info(W->base, group, NULL, NULL, NULL, NULL, &has_bias, NULL, NULL);
    if (st == FIB_OK && has_bias) {
        snprintf(t, sizeof t, "%s.bias", name);
        st = emit_one(W, t, group, "bias", false);
    }
    return st;
}

/* The group names are the checkpoint's (model_hf.c): each group's tensors
 * go back under the names they were read from. */
static int32_t emit_llama(hf_writer *W)
{
    for (int32_t i = 0; i < W->n_groups; i++) {
        const char *name = fib_graph_group_name(W->base, i);
        int32_t op = 0, st = FIB_OK;
        fib_graph_group_info(W->base, i, &op, NULL, NULL, NULL, NULL, NULL, NULL);
        if (strcmp(name, "model.embed_tokens") == 0)
            st = emit_dense(W, i, name, true);
        else if (strcmp(name, "lm_head") == 0)
            st = W->tied ? FIB_OK : emit_dense(W, i, name, false);
        else if (ends_with(name, "layernorm.weight") || strcmp(name, "model.norm.weight") == 0)
            st = emit_one(W, name, i, "weight", false);
        else if (ends_with(name, "_proj"))
            st = emit_dense(W, i, name, false);
        if (st != FIB_OK)
            return st;
    }
    return FIB_OK;
}

static int32_t emit_gpt2(hf_writer *W)
{
    char t[MAX_NAME];
    for (int32_t i = 0; i < W->n_groups; i++) {
        const char *name = fib_graph_group_name(W->base, i);
        int32_t st = FIB_OK;
        if (ends_with(name, "wte")) {
            st = emit_dense(W, i, name, true);
        } else if (ends_with(name, "wpe")) {
            snprintf(t, sizeof t, "%s.weight", name);
            st = emit_one(W, t, i, "shift", false);
        } else if (strcmp(name, "lm_head") == 0) {
            st = W->tied ? FIB_OK : emit_dense(W, i, name, false);
        } else if (ends_with(name, "ln_1") || ends_with(name, "ln_2") || ends_with(name, "ln_f")) {
            snprintf(t, sizeof t, "%s.weight", name);
            st = emit_one(W, t, i, "weight", false);
            snprintf(t, sizeof t, "%s.bias", name);
            if (st == FIB_OK)
                st = emit_one(W, t, i, "bias", false);
        } else if (ends_with(name, ".attn.q")) {
            /* c_attn: q, k and v side by side in Conv1D layout [in, out] */
            size_t stem = strlen(name) - 2;
            hf_piece w[3], b[3];
            for (int32_t p = 0; p < 3; p++) {
                w[p] = (hf_piece){i + p, "weight", true};
                b[p] = (hf_piece){i + p, "bias", false};
            }
            snprintf(t, sizeof t, "%.*s.c_attn.weight", (int)stem, name);
            st = emit(W, t, w, 3);
            snprintf(t, sizeof t, "%.*s.c_attn.bias", (int)stem, name);
            if (st == FIB_OK)
                st = emit(W, t, b, 3);
        } else if (ends_with(name, ".c_proj") || ends_with(name, ".c_fc")) {
            st = emit_dense(W, i, name, true);
        }
        if (st != FIB_OK)
            return st;
    }
    return FIB_OK;
}

/* ---- the directory -------------------------------------------------------- */

/* config.json's text with `key` set to `value`: the original bytes
 * elsewhere, so that every other setting stays as it was written. */
static int32_t config_text(const char *text, size_t size, const fib_json *config,
                           const char *key, int64_t value, fib_jbuf *out)
{
    char number[32];
    snprintf(number, sizeof number, "%lld", (long long)value);
    const fib_json *v = fib_json_get(config, key);
    if (!v) { /* inserted as the first member */
        size_t open = config->offset + 1;
        fib_jbuf_bytes(out, text, open);
        fib_jbuf_raw(out, "\n  ");
        fib_jbuf_string(out, key);
        fib_jbuf_raw(out, ": ");
        fib_jbuf_raw(out, number);
        fib_jbuf_raw(out, config->n_items ? "," : "\n");
        fib_jbuf_bytes(out, text + open, size - open);
        return fib_jbuf_status(out);
    }
    if (v->kind != FIB_JSON_NUMBER && v->kind != FIB_JSON_NULL)
        return fib_error(FIB_E_FORMAT, "config.json: '%s' is not a number", key);
    size_t end = v->offset;
    while (end < size && strchr("0123456789+-.eEnul", text[end]))
        end++;
    fib_jbuf_bytes(out, text, v->offset);
    fib_jbuf_raw(out, number);
    fib_jbuf_bytes(out, text + end, size - end);
    return fib_jbuf_status(out);
}

static int32_t write_config(const char *path, const fib_jbuf *text)
{
    fib_output o;
    int32_t st = fib_output_open(&o, path);
    if (st != FIB_OK)
        return st;
    if (fwrite(text->data, 1, text->length, o.fp) != text->length) {
        int e = errno;
        fib_output_abort(&o);
        return fib_error(FIB_E_IO, "%s: write failed: %s", path, strerror(e));
    }
    return fib_output_commit(&o);
}

static void sync_folder_of(const char *path)
{
    char folder[4096];
    snprintf(folder, sizeof folder, "%s", path);
    char *slash = strrchr(folder, '/');
    if (slash == folder)
        slash[1] = '\0';
    else if (slash)
        *slash = '\0';
    else
        strcpy(folder, ".");
    int fd = open(folder, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
}

/* A new empty folder beside `path` (same file system, so the rename is
 * atomic), named after it. */
static int32_t make_temp_folder(const char *path, char *temp, size_t size)
{
    char parent[4096];
    snprintf(parent, sizeof parent, "%s", path);
    char *slash = strrchr(parent, '/');
    const char *leaf = slash ? slash + 1 : path;
    if (slash)
        slash[1] = '\0';
    else
        parent[0] = '\0';
    for (int attempt = 0; attempt < 100; attempt++) {
        unsigned long tag = (unsigned long)getpid() * 7919u + (unsigned long)time(NULL) +
                            (unsigned long)attempt * 104729u + (unsigned long)rand();
        if (snprintf(temp, size, "%s.%s.fibration-%lx", parent, leaf, tag) >= (int)size)
            return fib_error(FIB_E_INVALID, "%s: path too long", path);
        if (mkdir(temp, 0777) == 0)
            return FIB_OK;
        if (errno != EEXIST)
            return fib_error(FIB_E_IO, "%s: cannot create a folder beside it: %s", path,
                             strerror(errno));
    }
    return fib_error(FIB_E_IO, "%s: cannot create a temporary folder beside it", path);
}

static int32_t write_directory(hf_writer *W, const char *path, const fib_jbuf *config)
{
    struct stat sb;
    if (stat(path, &sb) == 0 && !S_ISDIR(sb.st_mode))
        return fib_error(FIB_E_IO, "%s: exists and is not a folder; not replaced", path);
    char temp[4200], file[4300];
    int32_t st = make_temp_folder(path, temp, sizeof temp);
    if (st != FIB_OK)
        return st;
    snprintf(file, sizeof file, "%s/config.json", temp);
    st = write_config(file, config);
    if (st == FIB_OK) {
        static const char *const keys[] = {"format"}, *const values[] = {"pt"};
        snprintf(file, sizeof file, "%s/model.safetensors", temp);
        st = fib_st_write(file, W->out, W->n_out, keys, values, 1);
    }
    if (st == FIB_OK && rename(temp, path) != 0) {
        int e = errno;
        st = e == ENOTEMPTY || e == EEXIST
                 ? fib_error(FIB_E_IO, "%s: exists and is not empty; not replaced", path)
                 : fib_error(FIB_E_IO, "%s: cannot rename the written folder to it: %s", path,
                             strerror(e));
    }
    if (st != FIB_OK) {
        snprintf(file, sizeof file, "%s/config.json", temp);
        remove(file);
        snprintf(file, sizeof file, "%s/model.safetensors", temp);
        remove(file);
        rmdir(temp);
        return st;
    }
    sync_folder_of(path);
    return FIB_OK;
}

static int32_t read_config(const char *dir, char **text, size_t *size, fib_json **config)
{
    char path[4200];
    if (snprintf(path, sizeof path, "%s/config.json", dir) >= (int)sizeof path)
        return fib_error(FIB_E_INVALID, "%s: path too long", dir);
    int32_t st = fib_model_read_text(path, text, size);
    if (st == FIB_OK)
        st = fib_json_parse(*text, *size, path, config);
    if (st == FIB_OK && (*config)->kind != FIB_JSON_OBJECT)
        st = fib_error(FIB_E_FORMAT, "%s: not a JSON object", path);
    return st;
}

static bool flag(const fib_json *config, const char *key, bool fallback)
{
    const fib_json *v = fib_json_get(config, key);
    return v && v->kind == FIB_JSON_BOOL ? v->boolean : fallback;
}

static void release(hf_writer *W)
{
    for (int64_t i = 0; i < W->n_out; i++) {
        fib_free((void *)W->out[i].name);
        fib_free(W->owned[i]);
    }
    fib_free(W->out);
    fib_free(W->owned);
}

int32_t fib_base_save_checkpoint(const fib_base *base, const fib_graph *model,
                                 const char *model_dir, const char *path, int32_t dtype,
                                 int32_t *saved_as, char *reason, size_t reason_size)
{
    static const char fn[] = "fib_base_save_checkpoint";
    if (!base || !model || !model_dir || !path || !saved_as)
        return fib_error(FIB_E_NULL, "%s: NULL argument", fn);
    hf_writer W = {0};
    W.model = model;
    W.base = fib_base_graph(base);
    W.model_dir = model_dir;
    W.reason = reason;
    W.reason_size = reason_size;
    if (reason && reason_size)
        reason[0] = '\0';
    int32_t n_base = 0;
    fib_graph_num_groups(model, &W.n_groups);
    fib_graph_num_groups(W.base, &n_base);
    bool matches = n_base == W.n_groups;
    for (int32_t i = 0; matches && i < W.n_groups; i++)
        matches = strcmp(fib_graph_group_name(model, i), fib_graph_group_name(W.base, i)) == 0;
    if (!matches)
        return fib_error(FIB_E_MISMATCH, "%s: the base is not one of this model (groups "
                         "differ)", fn);
    char *text = NULL;
    size_t size = 0;
    fib_json *config = NULL;
    int32_t st = read_config(model_dir, &text, &size, &config);
    bool holds = false;
    if (st == FIB_OK) {
        const fib_json *type = fib_json_get(config, "model_type");
        const char *t = type && type->kind == FIB_JSON_STRING ? type->string : "";
        W.gpt2 = strcmp(t, "gpt2") == 0;
        bool llama = strcmp(t, "llama") == 0 || strcmp(t, "mistral") == 0 ||
                     strcmp(t, "qwen2") == 0;
        W.inner_key = W.gpt2 ? "n_inner" : "intermediate_size";
        W.tied = flag(config, "tie_word_embeddings", W.gpt2);
        if (ends_with(path, ".safetensors"))
            say(&W, "the output name ends in .safetensors");
        else if (!W.gpt2 && !llama)
            say(&W, "no checkpoint layout is written for model_type '%s'", t);
        else
            st = layout_holds(&W, base, &holds);
    }
    fib_jbuf json;
    fib_jbuf_init(&json);
    if (st == FIB_OK && holds)
        st = W.gpt2 ? emit_gpt2(&W) : emit_llama(&W);
    if (st == FIB_OK && holds) {
        if (W.inner != W.model_inner || W.inner < 0)
            st = config_text(text, size, config, W.inner_key, W.inner < 0 ? 0 : W.inner, &json);
        else
            fib_jbuf_bytes(&json, text, size), st = fib_jbuf_status(&json);
    }
    if (st == FIB_OK && holds)
        st = write_directory(&W, path, &json);
    if (st == FIB_OK && !holds)
        st = fib_base_save(base, path, dtype);
    if (st == FIB_OK)
        *saved_as = holds ? FIB_SAVED_CHECKPOINT : FIB_SAVED_MODEL_FILE;
    fib_jbuf_free(&json);
    release(&W);
    fib_json_free(config);
    fib_free(text);
    return st;
}

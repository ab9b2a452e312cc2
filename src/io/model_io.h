/* Shared by the model-file sources: model.c (entry points, options, the
 * state-dict fallback), model_load.c (the structure metadata and the
 * projection), model_blocks.c (a group's description for its kind's
 * build) and model_save.c (the writer). The format is docs/model-files.md. */
#ifndef FIB_IO_MODEL_IO_H
#define FIB_IO_MODEL_IO_H

#include "blocks/blocks.h"
#include "compress/compress.h"
#include "io/json.h"
#include "io/safetensors.h"

#define FIB_MODEL_META_KEY "fibration"
/* The metadata key of a base checkpoint directory's model.safetensors that
 * holds the base's projection (as the library's format stores it). */
#define FIB_HF_PROJECTION_KEY "fibration_projection"
#define FIB_MODEL_FORMAT "fibration-model"
/* Version written; every version up to it is read. */
#define FIB_MODEL_VERSION 2

typedef struct fib_model_loader {
    const char *path;
    fib_st_file *file;
    fib_graph *graph;
    bool copy;
    int64_t version;            /* of the structure metadata */
    const fib_json *projection; /* "projection" of the metadata, if any */
} fib_model_loader;

/* One group of the metadata, its common fields read and checked. */
typedef struct fib_model_group {
    int64_t index;           /* its position in "groups", and its id */
    const fib_json *json;    /* the group's object */
    int32_t op;              /* FIB_OP_* */
    int64_t units;
    int32_t n_sources;
    int32_t sources[3];
    const fib_json *tensors; /* object: tensor -> file tensor name (v1: the group) */
    int64_t n_params;
    const int64_t *params;   /* "params", NULL when absent */
    bool has_scalar;
    double scalar;
    char label[300];         /* "group 3 ('conv1')" for messages */
} fib_model_group;

/* model.c */
bool fib_model_activation_from_name(const char *name, int32_t *activation);
/* Every activation name, comma-separated, for messages (at most `size` bytes). */
void fib_model_activation_names(char *out, size_t size);
/* Re-raises the last error with the file and `what` in front; shape, range,
 * invalid and overflow problems of a file become FIB_E_FORMAT. */
int32_t fib_model_rewrap(int32_t status, const char *path, const char *what);
/* FIB_E_FORMAT "<path>: structure metadata: <label>: <problem>" (label NULL:
 * the document as a whole). */
int32_t fib_model_error(const fib_model_loader *L, const char *label,
                        const char *format, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* "[2, 3]" */
void fib_model_shape_text(int32_t n_dims, const int64_t *shape, char *buf,
                          size_t size);
/* A dense group from file tensors (also the state-dict fallback). */
int32_t fib_model_add_dense(fib_model_loader *L, const char *label,
                            int32_t source, int64_t units,
                            const fib_st_tensor *w, const fib_st_tensor *b,
                            int32_t *id);
/* Group `group` was just added: adding it checked its tensors finite, one
 * read of them; a mapped file's pages of them go again (a later read
 * brings them back from the page cache with the same bytes), so that a
 * load holds one block of the file at a time, not the whole file. */
void fib_model_block_added(const fib_graph *g, int32_t group);

/* Op names in files: "input", "dense", ..., "attend", "norm"; NULL for kinds
 * files do not hold (node groups). */
const char *fib_model_op_name(int32_t op);
/* FIB_OP_* of a name, -1 if unknown. */
int32_t fib_model_op_from_name(const char *name);

/* model_load.c: builds L->graph from the metadata text; *root_out (to free
 * by the caller, also on failure) keeps L->projection alive. */
int32_t fib_model_load_structure(fib_model_loader *L, const char *meta,
                                 fib_json **root_out);
/* The projection of a base file, checked against L->graph. */
int32_t fib_model_read_projection(fib_model_loader *L, fib_partition **out);

/* model_blocks.c: adds the block of a non-input group, built by its kind
 * from the group's description (everything checked against the file and
 * the graph so far). */
int32_t fib_model_add_block(fib_model_loader *L, const fib_model_group *G,
                            int32_t *id);

/* model_hf.c: Hugging Face checkpoint directories (config.json and
 * safetensors files; docs/model-files.md). */
bool fib_model_is_directory(const char *path);
int32_t fib_model_load_hf(const char *dir, bool copy, fib_graph **out);
/* A whole small file (config.json, an index) as text; *out to fib_free. */
int32_t fib_model_read_text(const char *path, char **out, size_t *size);

#endif

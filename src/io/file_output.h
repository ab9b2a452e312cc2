/* Writing an output file without destroying what is not ours (every writer
 * of the library goes through it; docs/ERRORS.md "Output files").
 *
 * - A regular file (or a name that does not exist yet) is written
 *   atomically: a temporary file in the folder of the real target (symlinks
 *   followed, so a symlink stays a symlink and its target gets the
 *   content), fsync, rename over the target, fsync of the folder. The
 *   target's mode (and, when permitted, owner) is kept; a new file gets
 *   0666 less the umask, as open(O_CREAT) gives.
 * - A special file (character device, FIFO, socket) and a name of an open
 *   descriptor (/dev/stdout, /dev/stderr, /dev/fd/N, /proc/self/fd/N) are
 *   written in place, appending; their write errors are reported.
 * - A folder is refused.
 * The temporary file is removed on every error path, and by
 * fib_remove_partial_outputs (async-signal-safe) from a program's signal
 * handler. */
#ifndef FIB_IO_FILE_OUTPUT_H
#define FIB_IO_FILE_OUTPUT_H

#include <stdint.h>
#include <stdio.h>

typedef struct fib_output {
    const char *path; /* as given, for messages */
    char *target;     /* the file replaced (symlinks followed); NULL in place */
    char *temp;       /* the temporary file renamed over target; NULL in place */
    int slot;         /* index in the table of partial outputs, -1 if none */
    FILE *fp;         /* where to write */
} fib_output;

/* Opens `path` for writing as above. Errors: FIB_E_IO (the message names
 * the path and the reason), FIB_E_NOMEM. On failure nothing is left. */
int32_t fib_output_open(fib_output *out, const char *path);
/* Finishes: flushes, fsyncs and (atomic case) renames over the target.
 * Errors: FIB_E_IO; the temporary file is then removed and the target is
 * untouched. Always releases `out`. */
int32_t fib_output_commit(fib_output *out);
/* Abandons the output: the temporary file is removed, the target untouched
 * (a special file keeps what was written). Releases `out`. */
void fib_output_abort(fib_output *out);

#endif

/* Output files written atomically or in place; see file_output.h. */
#include "io/file_output.h"

#include "model/model.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Temporary files being written, for fib_remove_partial_outputs: a signal
 * handler may read this table at any moment, so entries are atomic pointers
 * set just before the file is created and cleared after it is renamed or
 * removed, before the name is freed.
 * Saves beyond the table's size still work; only their cleanup by a signal
 * handler is lost. */
#define MAX_PARTIAL 32
static char *_Atomic partial[MAX_PARTIAL];

void fib_remove_partial_outputs(void)
{
    for (int i = 0; i < MAX_PARTIAL; i++) {
        char *p = atomic_load(&partial[i]);
        if (p)
            unlink(p); /* async-signal-safe */
    }
}

static int claim_slot(char *temp)
{
    for (int i = 0; i < MAX_PARTIAL; i++) {
        char *expected = NULL;
        if (atomic_compare_exchange_strong(&partial[i], &expected, temp))
            return i;
    }
    return -1;
}

static void release_slot(fib_output *o)
{
    if (o->slot >= 0)
        atomic_store(&partial[o->slot], NULL);
    o->slot = -1;
}

/* Names of an already open descriptor: written in place (appending), never
 * replaced, whatever they point to. */
static bool names_a_descriptor(const char *path)
{
    return strcmp(path, "/dev/stdout") == 0 || strcmp(path, "/dev/stderr") == 0 ||
           strncmp(path, "/dev/fd/", 8) == 0 || strncmp(path, "/proc/self/fd/", 14) == 0;
}

static char *copy_string(const char *s, size_t n)
{
    char *c = fib_alloc((int64_t)n + 1, 1);
    if (c) {
        memcpy(c, s, n);
        c[n] = '\0';
    }
    return c;
}

/* The file a write to `path` means: the end of its chain of symlinks (a
 * dangling symlink gets its target created), so that the temporary file
 * shares the real target's folder and file system. Returns NULL with errno
 * set on failure. */
static char *final_name(const char *path)
{
    char *name = copy_string(path, strlen(path));
    for (int hops = 0; name && hops < 40; hops++) {
        struct stat sb;
        if (lstat(name, &sb) != 0 || !S_ISLNK(sb.st_mode))
            return name;
        char link[PATH_MAX];
        ssize_t n = readlink(name, link, sizeof link - 1);
        if (n < 0) {
            fib_free(name);
            return NULL;
        }
        link[n] = '\0';
        const char *slash = strrchr(name, '/');
        size_t dir = link[0] == '/' || !slash ? 0 : (size_t)(slash - name) + 1;
        char *next = fib_alloc((int64_t)(dir + (size_t)n + 1), 1);
        if (next) {
            memcpy(next, name, dir);
            memcpy(next + dir, link, (size_t)n + 1);
        }
        fib_free(name);
        name = next;
    }
    fib_free(name);
    errno = name ? ELOOP : ENOMEM;
    return NULL;
}

static int32_t open_in_place(fib_output *o, const char *path)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_NOCTTY | O_CLOEXEC);
    if (fd < 0)
        return fib_error(FIB_E_IO, "%s: cannot open for writing: %s", path,
                         strerror(errno));
    o->fp = fdopen(fd, "ab");
    if (!o->fp) {
        close(fd);
        return fib_error(FIB_E_NOMEM, "%s: out of memory", path);
    }
    return FIB_OK;
}

/* Creates the temporary file next to o->target; `existing` is the target's
 * stat when it exists (its mode and owner are copied), else NULL. */
static int32_t open_temp(fib_output *o, const struct stat *existing)
{
    const char *path = o->path;
    size_t len = strlen(o->target) + 64;
    o->temp = fib_alloc((int64_t)len, 1);
    if (!o->temp) {
        fib_output_abort(o); /* frees the resolved target */
        return fib_error(FIB_E_NOMEM, "%s: out of memory", path);
    }
    /* unique among concurrent writers: the pid and this output's address */
    snprintf(o->temp, len, "%s.tmp-%ld-%lx", o->target, (long)getpid(),
             (unsigned long)(uintptr_t)o);
    /* an existing target's content is not exposed beyond its mode while
     * written; a new file gets 0666 less the umask */
    /* registered before it exists, so that no signal can land between its
     * creation and its registration; a handler running before the open
     * unlinks a name that is not there yet, harmlessly */
    o->slot = claim_slot(o->temp);
    int fd = open(o->temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
                  existing ? 0600 : 0666);
    if (fd < 0) {
        int e = errno;
        release_slot(o); /* a file of that name is not ours: never unlinked */
        int32_t st = fib_error(FIB_E_IO, "%s: cannot create %s: %s", path, o->temp,
                               strerror(e));
        fib_free(o->temp);
        o->temp = NULL;
        fib_output_abort(o);
        return st;
    }
    int32_t st = FIB_OK;
    if (existing) {
        /* the owner only when permitted (root); the mode always */
        if (existing->st_uid != geteuid() || existing->st_gid != getegid())
            (void)!fchown(fd, existing->st_uid, existing->st_gid);
        if (fchmod(fd, existing->st_mode & 07777) != 0)
            st = fib_error(FIB_E_IO, "%s: cannot give %s the mode %o: %s", path,
                           o->temp, (unsigned)(existing->st_mode & 07777),
                           strerror(errno));
    }
    if (st == FIB_OK && !(o->fp = fdopen(fd, "wb")))
        st = fib_error(FIB_E_NOMEM, "%s: out of memory", path);
    if (st != FIB_OK) {
        close(fd);
        fib_output_abort(o);
    }
    return st;
}

int32_t fib_output_open(fib_output *o, const char *path)
{
    *o = (fib_output){path, NULL, NULL, -1, NULL};
    if (names_a_descriptor(path))
        return open_in_place(o, path);
    struct stat sb;
    bool exists = stat(path, &sb) == 0;
    if (exists) {
        if (S_ISDIR(sb.st_mode))
            return fib_error(FIB_E_IO, "%s: is a folder, not a file", path);
        if (S_ISBLK(sb.st_mode))
            return fib_error(FIB_E_IO, "%s: is a block device; refusing to write "
                             "a file onto a disk", path);
        if (!S_ISREG(sb.st_mode))
            return open_in_place(o, path);
    } else if (errno != ENOENT) {
        return fib_error(FIB_E_IO, "%s: cannot write: %s", path, strerror(errno));
    }
    o->target = final_name(path);
    if (!o->target)
        return errno == ENOMEM
                   ? fib_error(FIB_E_NOMEM, "%s: out of memory", path)
                   : fib_error(FIB_E_IO, "%s: cannot resolve: %s", path, strerror(errno));
    /* a file we may not write is not replaced either, as with `>` */
    if (exists && faccessat(AT_FDCWD, o->target, W_OK, AT_EACCESS) != 0) {
        int e = errno;
        fib_output_abort(o);
        return fib_error(FIB_E_IO, "%s: cannot write: %s", path, strerror(e));
    }
    return open_temp(o, exists ? &sb : NULL);
}

static void release(fib_output *o)
{
    release_slot(o);
    fib_free(o->target);
    fib_free(o->temp);
    o->target = NULL;
    o->temp = NULL;
    o->fp = NULL;
}

void fib_output_abort(fib_output *o)
{
    if (o->fp)
        fclose(o->fp);
    if (o->temp)
        unlink(o->temp);
    release(o);
}

/* fsync of the folder holding `file`, so that the rename survives a crash.
 * Best effort: the file is in place already, and some file systems cannot
 * sync a folder. */
static void sync_folder(const char *file)
{
    const char *slash = strrchr(file, '/');
    char *dir = slash ? copy_string(file, slash == file ? 1 : (size_t)(slash - file))
                      : copy_string(".", 1);
    if (!dir)
        return;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
    fib_free(dir);
}

int32_t fib_output_commit(fib_output *o)
{
    const char *path = o->path;
    int e = 0;
    errno = 0;
    if (fflush(o->fp) != 0 || ferror(o->fp))
        e = errno ? errno : EIO;
    /* a pipe or terminal cannot be synced (EINVAL): nothing to wait for */
    if (!e && fsync(fileno(o->fp)) != 0 && errno != EINVAL && errno != EROFS)
        e = errno;
    FILE *fp = o->fp;
    o->fp = NULL;
    if (fclose(fp) != 0 && !e)
        e = errno;
    if (e) {
        fib_output_abort(o);
        return fib_error(FIB_E_IO, "%s: write failed: %s", path, strerror(e));
    }
    if (o->temp) {
        /* the slot stays set through the rename: a handler running just
         * after it unlinks a name that no longer exists, harmlessly */
        if (rename(o->temp, o->target) != 0) {
            e = errno;
            fib_output_abort(o);
            return fib_error(FIB_E_IO, "%s: cannot replace the file: %s", path,
                             strerror(e));
        }
        sync_folder(o->target);
    }
    release(o);
    return FIB_OK;
}

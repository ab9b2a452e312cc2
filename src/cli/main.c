/* `fibration VERB ...`: dispatch to the verbs listed in commands.h. */
#include "cli.h"
#include "commands.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

typedef struct command {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv);
} command;

#define FIB_CLI_ENTRY(name, summary) {#name, summary, cmd_##name},
static const command commands[] = {FIB_CLI_COMMANDS(FIB_CLI_ENTRY)};
#undef FIB_CLI_ENTRY

static void usage(FILE *f)
{
    fprintf(f,
            "usage: fibration analyze|compress|lift|break [OPTIONS] MODEL\n"
            "       fibration graph [OPTIONS] EDGES\n"
            "\n"
            "Finds the fibration symmetries (fibers, opfibers, covers) of a neural\n"
            "network stored as safetensors, and compresses it by them; colours a\n"
            "directed graph read from an edge list.\n"
            "\n"
            "verbs:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f,
            "\n"
            "'fibration VERB --help' describes a verb. 'fibration --version'\n"
            "prints the library version. Exit codes: 0 success, 1 failure,\n"
            "2 bad command line, 3 file not readable/writable, 4 malformed or\n"
            "unsupported model file, 5 compress had nothing to merge (nothing\n"
            "written). See docs/cli.md.\n");
}

/* Every verb's report goes to stdout: a write error there (a full disk,
 * >/dev/full, a closed pipe) fails the run, never a truncated report with
 * exit 0. */
static int finish_stdout(int rc)
{
    errno = 0;
    bool failed = fflush(stdout) != 0 || ferror(stdout);
    int e = errno;
    if (fclose(stdout) != 0 && !failed) {
        failed = true;
        e = errno;
    }
    if (failed && rc == CLI_EXIT_OK) {
        fprintf(stderr, "fibration: cannot write to stdout: %s\n",
                e ? strerror(e) : "write error");
        rc = CLI_EXIT_IO;
    }
    return rc;
}

static int run(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return CLI_EXIT_USAGE;
    }
    const char *verb = argv[1];
    if (strcmp(verb, "--help") == 0 || strcmp(verb, "-h") == 0 ||
        strcmp(verb, "help") == 0) {
        if (argc > 2 && strcmp(verb, "help") == 0) {
            for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
                if (strcmp(argv[2], commands[i].name) == 0) {
                    char *args[] = {argv[2], (char *)"--help", NULL};
                    return commands[i].run(2, args);
                }
            fprintf(stderr, "fibration help: unknown verb '");
            cli_put_clean(stderr, argv[2]);
            fprintf(stderr, "' (see 'fibration --help')\n");
            return CLI_EXIT_USAGE;
        }
        usage(stdout);
        return CLI_EXIT_OK;
    }
    if (strcmp(verb, "--version") == 0) {
        printf("fibration %s\n", fib_version_string());
        return CLI_EXIT_OK;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(verb, commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "fibration: unknown verb '");
    cli_put_clean(stderr, verb);
    fprintf(stderr, "' (see 'fibration --help')\n");
    return CLI_EXIT_USAGE;
}

/* A command's large buffers (a layer's rows and what is made from them;
 * a linkage's matrix has pages of its own) come and go layer by layer:
 * each goes back to the system when freed. glibc would otherwise raise its
 * mmap threshold to the size of the first one freed and keep the later
 * ones in its heap, which then stays resident next to the next layer's
 * working set. */
static void return_large_buffers(void)
{
#if defined(__GLIBC__) && defined(M_MMAP_THRESHOLD)
    (void)mallopt(M_MMAP_THRESHOLD, 1 << 20);
#endif
}

int main(int argc, char **argv)
{
    return_large_buffers();
    cli_install_signal_handlers();
    return finish_stdout(run(argc, argv));
}

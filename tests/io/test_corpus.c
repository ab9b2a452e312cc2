/* Replays the corpus of malformed model files (tests/io/corpus, made by
 * make_corpus.py): every file must be refused with the status its name
 * starts with (format-, unsupported-, nonfinite-) and a message naming it.
 * Run it under valgrind or the sanitizers to check nothing leaks or crashes.
 * With file arguments instead of a directory, it replays those files. */
#include "compress/compress.h"
#include "testing.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int test_failures;

static int32_t expected_status(const char *name)
{
    if (strncmp(name, "format-", 7) == 0)
        return FIB_E_FORMAT;
    if (strncmp(name, "unsupported-", 12) == 0)
        return FIB_E_UNSUPPORTED;
    if (strncmp(name, "nonfinite-", 10) == 0)
        return FIB_E_NONFINITE;
    return 1; /* unknown prefix: any error */
}

static void replay(const char *path, const char *name)
{
    int32_t want = expected_status(name);
    for (int32_t copy = 0; copy <= 1; copy++) {
        fib_load_options lo;
        fib_load_options_init(&lo, sizeof lo);
        lo.copy = copy;
        fib_graph *g = NULL;
        int32_t st = fib_model_load(path, &lo, &g);
        bool ok = st < 0 && g == NULL && (want == 1 || st == want) &&
                  strncmp(fib_last_error(), path, strlen(path)) == 0;
        if (!ok) {
            test_failures++;
            fprintf(stderr, "%s: got %s '%s'\n", name, fib_status_name(st),
                    fib_last_error());
        }
        fib_graph_free(g);
        fib_base *b = NULL;
        st = fib_base_load(path, &lo, &b);
        CHECK(st < 0 && b == NULL);
        fib_base_free(b);
    }
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR | FILE...\n", argv[0]);
        return 2;
    }
    struct stat sb;
    if (argc > 2 || (stat(argv[1], &sb) == 0 && S_ISREG(sb.st_mode))) {
        for (int i = 1; i < argc; i++) {
            const char *slash = strrchr(argv[i], '/');
            replay(argv[i], slash ? slash + 1 : argv[i]);
        }
        return test_failures ? 1 : 0;
    }
    DIR *d = opendir(argv[1]);
    if (!d) {
        perror(argv[1]);
        return 1;
    }
    char *names[512];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < 512)
        if (strstr(e->d_name, ".safetensors"))
            names[n++] = strdup(e->d_name);
    closedir(d);
    qsort(names, (size_t)n, sizeof names[0], by_name);
    for (int i = 0; i < n; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", argv[1], names[i]);
        int before = test_failures;
        replay(path, names[i]);
        printf("%s %s\n", test_failures == before ? "ok  " : "FAIL", names[i]);
        free(names[i]);
    }
    CHECK(n >= 20);
    return test_failures ? 1 : 0;
}

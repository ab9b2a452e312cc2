/* Output files (io/file_output.h): an abandoned or failed write leaves the
 * target and its folder as they were, a commit keeps the target's mode,
 * special files are written in place with their errors reported, and
 * fib_remove_partial_outputs, called from a signal handler, removes the
 * temporary file of a save in progress. */
#include "compress/compress.h"
#include "io/file_output.h"
#include "testing.h"

#include <dirent.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

int test_failures;

static char tmpdir[256];
static char target[512];

static int count_temporaries(void)
{
    DIR *d = opendir(tmpdir);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));)
        n += strstr(e->d_name, ".tmp-") != NULL;
    if (d)
        closedir(d);
    return n;
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static bool has_text(const char *path, const char *text)
{
    char buf[256] = {0};
    FILE *f = fopen(path, "rb");
    if (!f)
        return false;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    return n == strlen(text) && memcmp(buf, text, n) == 0;
}

static void test_abort_leaves_the_target(void)
{
    write_text(target, "old");
    fib_output out;
    CHECK_OK(fib_output_open(&out, target));
    fputs("half of the new", out.fp);
    CHECK(count_temporaries() == 1);
    fib_output_abort(&out);
    CHECK(count_temporaries() == 0);
    CHECK(has_text(target, "old"));
}

static void test_commit_keeps_the_mode(void)
{
    write_text(target, "old");
    chmod(target, 0640);
    fib_output out;
    CHECK_OK(fib_output_open(&out, target));
    fputs("new", out.fp);
    CHECK_OK(fib_output_commit(&out));
    struct stat sb;
    CHECK(stat(target, &sb) == 0 && (sb.st_mode & 07777) == 0640);
    CHECK(has_text(target, "new"));
    CHECK(count_temporaries() == 0);
}

static void test_special_files_in_place(void)
{
    fib_output out;
    CHECK_OK(fib_output_open(&out, "/dev/null"));
    CHECK(out.temp == NULL);
    fputs("discarded", out.fp);
    CHECK_OK(fib_output_commit(&out));
    CHECK(fib_output_open(&out, "/dev/full") == FIB_OK && out.temp == NULL);
    for (int i = 0; i < 10000; i++) /* beyond any stdio buffer */
        fputs("0123456789", out.fp);
    CHECK(fib_output_commit(&out) == FIB_E_IO);
    CHECK(strstr(fib_last_error(), "No space left") != NULL);
    struct stat sb;
    CHECK(stat("/dev/full", &sb) == 0 && S_ISCHR(sb.st_mode));
    CHECK(fib_output_open(&out, tmpdir) == FIB_E_IO);
}

static void on_term(int sig)
{
    fib_remove_partial_outputs();
    signal(sig, SIG_DFL);
    raise(sig);
}

/* A child stops itself half way through a write; the parent terminates it:
 * the handler removes the temporary file and the target keeps its bytes. */
static void test_signal_handler_removes_the_partial_output(void)
{
    write_text(target, "old");
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        signal(SIGTERM, on_term);
        fib_output out;
        if (fib_output_open(&out, target) != FIB_OK)
            _exit(10);
        fputs("half of the new", out.fp);
        fflush(out.fp);
        raise(SIGSTOP);
        _exit(11); /* not reached: SIGTERM is pending at SIGCONT */
    }
    CHECK(pid > 0);
    int status = 0;
    CHECK(waitpid(pid, &status, WUNTRACED) == pid && WIFSTOPPED(status));
    CHECK(count_temporaries() == 1);
    kill(pid, SIGTERM);
    kill(pid, SIGCONT);
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM);
    CHECK(count_temporaries() == 0);
    CHECK(has_text(target, "old"));
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/fib-output-test-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(target, sizeof target, "%s/target.bin", tmpdir);
    RUN(test_abort_leaves_the_target);
    RUN(test_commit_keeps_the_mode);
    RUN(test_special_files_in_place);
    RUN(test_signal_handler_removes_the_partial_output);
    unlink(target);
    rmdir(tmpdir);
    return test_failures ? 1 : 0;
}

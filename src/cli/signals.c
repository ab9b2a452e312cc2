/* Signals of the command: a killed run leaves no temporary file behind, and
 * a model file truncated while mapped is an I/O error, not a crash. The
 * library installs no handlers (fibration.h); the command does, here. */
#include "cli.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* "fibration: MODEL: the file changed while it was read ...\n", built before
 * the file is mapped, so that the handler only calls write(). */
static char bus_message[1024];
static volatile sig_atomic_t bus_message_length;

/* SIGINT, SIGTERM, SIGHUP: remove the partial output, then die of the
 * signal as if unhandled (the parent sees the real cause). */
static void on_stop(int sig)
{
    fib_remove_partial_outputs();
    signal(sig, SIG_DFL);
    raise(sig);
}

/* SIGBUS with BUS_ADRERR: a page of a mapping beyond the end of its file,
 * i.e. the model file was truncated after it was mapped. Anything else is a
 * real fault: default action. */
static void on_bus(int sig, siginfo_t *info, void *context)
{
    (void)context;
    if (info->si_code == BUS_ADRERR && bus_message_length > 0) {
        fib_remove_partial_outputs();
        ssize_t ignored = write(STDERR_FILENO, bus_message, (size_t)bus_message_length);
        (void)ignored;
        _exit(CLI_EXIT_IO);
    }
    signal(sig, SIG_DFL); /* the faulting access repeats and kills */
}

void cli_install_signal_handlers(void)
{
    static const int stops[] = {SIGINT, SIGTERM, SIGHUP};
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = on_stop;
    for (size_t i = 0; i < sizeof stops / sizeof stops[0]; i++) {
        struct sigaction old;
        /* a signal ignored by the caller (nohup) stays ignored */
        if (sigaction(stops[i], NULL, &old) == 0 && old.sa_handler != SIG_IGN)
            sigaction(stops[i], &sa, NULL);
    }
    sa.sa_handler = NULL;
    sa.sa_sigaction = on_bus;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGBUS, &sa, NULL);
}

void cli_watch_mapped_file(const char *path)
{
    size_t n = 0;
    const char *parts[] = {"fibration: ", path,
                           ": the file changed while it was read (truncated or "
                           "rewritten by another program); nothing was written\n"};
    for (size_t p = 0; p < 3; p++)
        for (const char *s = parts[p]; *s && n + 1 < sizeof bus_message; s++)
            /* the path one line long, as cli_put_clean prints it */
            bus_message[n++] = p == 1 && (unsigned char)*s < 0x20 ? '?' : *s;
    bus_message_length = (sig_atomic_t)n;
}

void cli_test_hook_after_load(void)
{
    /* Test-only (docs/cli.md): stop after loading, so that a test can
     * truncate the mapped file before the command reads its weights. */
    if (getenv("FIBRATION_TEST_STOP_AFTER_LOAD"))
        raise(SIGSTOP);
}

/* What dropping a mapped model's pages costs (docs/performance.md, "A mapped
 * model's pages leave the process"): a file is mapped private and read-only,
 * as the loader maps a model, read whole, its pages dropped with
 * MADV_DONTNEED (what fib_group_drop_pages asks of the file's mapping), and
 * read again from the page cache. Printed next to a scan of the same pages
 * while they are resident, measured in the same run: the price of a drop is
 * the drop itself plus the second scan's excess over the resident one.
 *
 * Usage: bench_page_drop [FILE]   (default: a file of FIB_BENCH_MODEL_MIB
 * MiB, default 512, written in the current directory and deleted after) */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define ROUNDS 5

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Every 8-byte word summed: a read of the whole mapping, as a kernel's
 * pass over a layer is. */
static uint64_t scan(const uint64_t *p, size_t words)
{
    uint64_t s = 0;
    for (size_t i = 0; i < words; i++)
        s += p[i];
    return s;
}

static int write_file(const char *path, size_t bytes)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    enum { CHUNK = 1 << 20 };
    uint64_t *buf = malloc(CHUNK);
    uint64_t x = 88172645463325252u;
    for (size_t done = 0; buf && done < bytes; done += CHUNK) {
        for (size_t i = 0; i < CHUNK / 8; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            buf[i] = x;
        }
        size_t n = bytes - done < CHUNK ? bytes - done : CHUNK;
        if (fwrite(buf, 1, n, f) != n) {
            free(buf);
            fclose(f);
            return -1;
        }
    }
    free(buf);
    return fclose(f) == 0 && buf ? 0 : -1;
}

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : "bench_page_drop.bin";
    if (argc < 2) {
        const char *mib = getenv("FIB_BENCH_MODEL_MIB");
        size_t bytes = (size_t)(mib ? atof(mib) : 512) * 1048576;
        if (write_file(path, bytes)) {
            perror(path);
            return 1;
        }
    }
    int fd = open(path, O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) || st.st_size < 8) {
        perror(path);
        return 1;
    }
    size_t bytes = (size_t)st.st_size, words = bytes / 8;
    const uint64_t *p = mmap(NULL, bytes, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    uint64_t sink = scan(p, words); /* the page cache warm, the pages mapped */
    double drop = 1e9, again = 1e9, resident = 1e9;
    for (int r = 0; r < ROUNDS; r++) {
        double t0 = now();
        madvise((void *)p, bytes, MADV_DONTNEED);
        double t1 = now();
        sink += scan(p, words);
        double t2 = now();
        sink += scan(p, words);
        double t3 = now();
        drop = t1 - t0 < drop ? t1 - t0 : drop;
        again = t2 - t1 < again ? t2 - t1 : again;
        resident = t3 - t2 < resident ? t3 - t2 : resident;
    }
    double mib = (double)bytes / 1048576.0;
    printf("page drop of a mapped %.0f MiB file, best of %d rounds (checksum %llu)\n", mib,
           ROUNDS, (unsigned long long)(sink & 0xff));
    printf("  drop (MADV_DONTNEED)        %8.2f ms  %6.2f ms per 512 MiB\n", drop * 1e3,
           drop * 1e3 * 512 / mib);
    printf("  scan, pages resident        %8.2f ms  %6.2f GB/s\n", resident * 1e3,
           (double)bytes / resident / 1e9);
    printf("  scan, pages dropped before  %8.2f ms  %6.2f GB/s\n", again * 1e3,
           (double)bytes / again / 1e9);
    printf("  read again, the excess      %8.2f ms  %6.2f ms per 512 MiB  %.2fx the scan\n",
           (again - resident) * 1e3, (again - resident) * 1e3 * 512 / mib, again / resident);
    munmap((void *)p, bytes);
    close(fd);
    if (argc < 2)
        unlink(path);
    return 0;
}

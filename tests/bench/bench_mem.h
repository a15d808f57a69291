/* bench_mem.h - the process's memory as the benchmarks report it
   (header-only, shared by mab-bench-scale and mab-bench-slotmem). */
#ifndef MAB_BENCH_MEM_H
#define MAB_BENCH_MEM_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The resident set (VmRSS of /proc/self/status) in KiB, or -1. */
static inline long rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0)
            kib = strtol(line + 6, NULL, 10);
    if (f)
        fclose(f);
    return kib;
}

#endif

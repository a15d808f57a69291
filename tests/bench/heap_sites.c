/*
 * heap_sites.c - an LD_PRELOAD that says which allocation sites hold the
 * heap at one moment: the second call of mallinfo2() by the program, which
 * in mab-bench-scale is its "heap after mab_open" reading. At that call it
 * writes, to the file named by HEAP_SITES_OUT (default stderr), one line per
 * call site with live chunks, their requested bytes and their chunk bytes
 * (malloc_usable_size + 8, what mallinfo2's uordblks counts), then the
 * frames of the site as "object+offset" (addr2line -f -e object offset).
 *
 * Not built by CMake (a measuring tool, docs/benchmarks.md "Open and memory"):
 *   cc -O2 -shared -fPIC -o build/heap_sites.so tests/bench/heap_sites.c -ldl
 *   HEAP_SITES_OUT=/tmp/sites LD_PRELOAD=build/heap_sites.so \
 *       build/bin/mab-bench-scale --calls 10 10000
 *   python3 tests/bench/heap_sites.py /tmp/sites 100000   (arms of the run)
 *
 * A site is the first two frames outside the C library and this file (so
 * strdup's and calloc's callers are named, not glibc). Single-threaded use
 * only where it counts: the table is not locked (the bench opens the engine
 * on one thread; the writer thread allocates nothing while it opens).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <execinfo.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);
extern void *__libc_memalign(size_t, size_t);

#define PTR_BITS 23
#define SITE_BITS 14
#define FRAMES 2

typedef struct { uintptr_t p; uint32_t site; uint32_t used; size_t size; } live;
typedef struct { uintptr_t f[FRAMES]; size_t count, bytes, chunk; } site;

static live *ptrs;
static site *sites;
static __thread int busy;
static int dumped;
static int mallinfo_calls;

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return x;
}

static const void *libc_base, *self_base;

static int outside(uintptr_t a)
{
    Dl_info i;
    if (!dladdr((void *)a, &i))
        return 1;
    return i.dli_fbase != libc_base && i.dli_fbase != self_base;
}

static void ranges(void)
{
    Dl_info i;
    if (dladdr((void *)&__libc_malloc, &i))
        libc_base = i.dli_fbase;
    if (dladdr((void *)&ranges, &i))
        self_base = i.dli_fbase;
}

static void record(void *p, size_t size)
{
    if (!p || busy || dumped)
        return;
    busy = 1;
    if (!ptrs) {
        ptrs = mmap(NULL, sizeof(live) << PTR_BITS, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        sites = mmap(NULL, sizeof(site) << SITE_BITS, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        ranges();
    }
    void *bt[16];
    int n = backtrace(bt, 16);
    uintptr_t f[FRAMES] = {0};
    int k = 0;
    for (int i = 1; i < n && k < FRAMES; i++)
        if (outside((uintptr_t)bt[i]))
            f[k++] = (uintptr_t)bt[i];
    uint64_t h = mix(f[0] * 31 + f[1]);
    uint32_t s = (uint32_t)(h & ((1u << SITE_BITS) - 1));
    while (sites[s].count + sites[s].f[0] && memcmp(sites[s].f, f, sizeof f))
        s = (s + 1) & ((1u << SITE_BITS) - 1);
    memcpy(sites[s].f, f, sizeof f);
    sites[s].count++;
    sites[s].bytes += size;
    size_t chunk = malloc_usable_size(p) + 8;
    sites[s].chunk += chunk;
    uint32_t at = (uint32_t)(mix((uintptr_t)p) & ((1u << PTR_BITS) - 1));
    while (ptrs[at].used)
        at = (at + 1) & ((1u << PTR_BITS) - 1);
    ptrs[at] = (live){(uintptr_t)p, s, 1, size};
    busy = 0;
}

static void forget(void *p)
{
    if (!p || !ptrs || dumped)
        return;
    uint32_t at = (uint32_t)(mix((uintptr_t)p) & ((1u << PTR_BITS) - 1));
    while (ptrs[at].used && ptrs[at].p != (uintptr_t)p)
        at = (at + 1) & ((1u << PTR_BITS) - 1);
    if (!ptrs[at].used)
        return;
    site *s = &sites[ptrs[at].site];
    s->count--;
    s->bytes -= ptrs[at].size;
    s->chunk -= malloc_usable_size(p) + 8;
    /* Backward-shift deletion keeps every probe sequence intact. */
    uint32_t hole = at;
    for (uint32_t j = (hole + 1) & ((1u << PTR_BITS) - 1); ptrs[j].used;
         j = (j + 1) & ((1u << PTR_BITS) - 1)) {
        uint32_t home = (uint32_t)(mix(ptrs[j].p) & ((1u << PTR_BITS) - 1));
        if (((j - home) & ((1u << PTR_BITS) - 1)) >= ((j - hole) & ((1u << PTR_BITS) - 1))) {
            ptrs[hole] = ptrs[j];
            hole = j;
        }
    }
    ptrs[hole].used = 0;
}

void *malloc(size_t n)
{
    void *p = __libc_malloc(n);
    record(p, n);
    return p;
}

void *calloc(size_t a, size_t b)
{
    void *p = __libc_calloc(a, b);
    record(p, a * b);
    return p;
}

void *realloc(void *old, size_t n)
{
    if (old && !busy)
        forget(old);
    void *p = __libc_realloc(old, n);
    record(p, n);
    return p;
}

void free(void *p)
{
    if (!busy)
        forget(p);
    __libc_free(p);
}

void *aligned_alloc(size_t al, size_t n)
{
    void *p = __libc_memalign(al, n);
    record(p, n);
    return p;
}

int posix_memalign(void **out, size_t al, size_t n)
{
    void *p = __libc_memalign(al, n);
    if (!p)
        return 12;
    record(p, n);
    *out = p;
    return 0;
}

static void dump(void)
{
    const char *path = getenv("HEAP_SITES_OUT");
    FILE *f = path ? fopen(path, "w") : stderr;
    if (!f)
        return;
    for (uint32_t s = 0; s < (1u << SITE_BITS); s++) {
        if (!sites[s].count)
            continue;
        fprintf(f, "%zu\t%zu\t%zu", sites[s].count, sites[s].bytes, sites[s].chunk);
        for (int k = 0; k < FRAMES; k++) {
            Dl_info i;
            if (sites[s].f[k] && dladdr((void *)sites[s].f[k], &i) && i.dli_fname)
                fprintf(f, "\t%s+0x%lx", i.dli_fname,
                        (unsigned long)(sites[s].f[k] - (uintptr_t)i.dli_fbase - 1));
            else
                fprintf(f, "\t?");
        }
        fputc('\n', f);
    }
    if (f != stderr)
        fclose(f);
}

struct mallinfo2 mallinfo2(void)
{
    static struct mallinfo2 (*real)(void);
    busy = 1;
    if (!real)
        real = (struct mallinfo2 (*)(void))dlsym(RTLD_NEXT, "mallinfo2");
    if (++mallinfo_calls == 2 && sites) {
        dump();
        dumped = 1;
    }
    busy = 0;
    return real();
}

/*
 * fuzz_common.c - scratch directory, files and plugin pinning for the fuzz
 * targets (fuzz_common.h).
 */
#include <dirent.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz_common.h"

static char scratch[PATH_MAX];

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st, (void)type, (void)ftw;
    remove(path);
    return 0;
}

void fuzz_remove_tree(const char *path)
{
    nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void remove_scratch(void)
{
    if (scratch[0])
        fuzz_remove_tree(scratch);
}

const char *fuzz_dir(void)
{
    if (scratch[0])
        return scratch;
    struct stat st;
    const char *base = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) ? "/dev/shm" : NULL;
    if (!base)
        base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(scratch, sizeof scratch, "%s/mab-fuzz-XXXXXX", base);
    if (!mkdtemp(scratch)) {
        perror("fuzz: mkdtemp");
        abort();
    }
    atexit(remove_scratch);
    return scratch;
}

const char *fuzz_path(const char *name)
{
    static char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", fuzz_dir(), name);
    return path;
}

void fuzz_write_file(const char *path, const void *data, size_t size, unsigned mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, (mode_t)mode);
    if (fd < 0) {
        perror(path);
        abort();
    }
    const char *p = data;
    while (size) {
        ssize_t n = write(fd, p, size);
        if (n <= 0) {
            perror(path);
            abort();
        }
        p += n;
        size -= (size_t)n;
    }
    if (fchmod(fd, (mode_t)mode) != 0 || close(fd) != 0) {
        perror(path);
        abort();
    }
}

void fuzz_pin_plugins(void)
{
    DIR *dir = opendir(MAB_FUZZ_PLUGIN_DIR);
    if (!dir) {
        perror(MAB_FUZZ_PLUGIN_DIR);
        abort();
    }
    size_t pinned = 0;
    for (struct dirent *de; (de = readdir(dir));) {
        size_t n = strlen(de->d_name);
        if (n < 4 || strcmp(de->d_name + n - 3, ".so") != 0)
            continue;
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", MAB_FUZZ_PLUGIN_DIR, de->d_name);
        if (!dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE)) {
            fprintf(stderr, "fuzz: cannot pin %s: %s\n", path, dlerror());
            abort();
        }
        pinned++;
    }
    closedir(dir);
    if (pinned == 0) {
        fprintf(stderr, "fuzz: no plugin in %s\n", MAB_FUZZ_PLUGIN_DIR);
        abort();
    }
}

void fuzz_write_config(const char *name, const char *body)
{
    char text[8192];
    int n = snprintf(text, sizeof text, "{\"plugin_path\": [\"%s\"], %s}\n",
                     MAB_FUZZ_PLUGIN_DIR, body);
    if (n < 0 || (size_t)n >= sizeof text)
        abort();
    fuzz_write_file(fuzz_path(name), text, (size_t)n, 0600);
}

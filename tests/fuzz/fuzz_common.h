/*
 * fuzz_common.h - what every libFuzzer target of tests/fuzz shares: a
 * private scratch directory, files written into it, and the plugins pinned
 * in memory.
 *
 * Pinning: the engine dlopens plugins at mab_open and dlcloses them at
 * mab_close. libFuzzer registers each instrumented module's coverage
 * counters once, when it is first mapped; a plugin unloaded and mapped again
 * leaves libFuzzer counting through stale pointers. So every plugin .so is
 * opened once here with RTLD_NODELETE: later dlopen calls of the engine
 * return the same mapping and its dlclose never unmaps it.
 */
#ifndef MAB_FUZZ_COMMON_H
#define MAB_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>

/* The target's scratch directory (on /dev/shm when it exists, so that the
   storage plugins' fsync costs nothing), created at the first call and
   removed at exit. Never NULL: aborts when it cannot be made. */
const char *fuzz_dir(void);

/* fuzz_dir()/name, in a static buffer per call site's own copy: the caller
   copies it if it needs two at once. */
const char *fuzz_path(const char *name);

/* Write `size` bytes to `path` (replacing it) with `mode`; aborts on failure. */
void fuzz_write_file(const char *path, const void *data, size_t size, unsigned mode);

/* Remove `path` and everything below it (no error when missing). */
void fuzz_remove_tree(const char *path);

/* dlopen every *.so of MAB_FUZZ_PLUGIN_DIR with RTLD_NODELETE (see above). */
void fuzz_pin_plugins(void);

/* A config file text with `body` (JSON members, no braces) after
   "plugin_path": [MAB_FUZZ_PLUGIN_DIR], written to fuzz_path(name). */
void fuzz_write_config(const char *name, const char *body);

#endif

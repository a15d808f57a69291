/*
 * loader.c - find plugin files and load them, refusing what does not fit.
 *
 * Like SQLite's extension loader: on any failure the handle is closed and the
 * error names the file and the reason (dlerror(), the missing symbol, the ABI
 * versions or sizes that differ, the missing callback).
 */
#include <dlfcn.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine.h"

/*
 * Where plugin names are looked up, in this order (docs/config.md, "Where
 * plugins are found"); the first directory holding NAME.so wins:
 *   1. the plugins that go with this libmab, found from the library's own
 *      file (dladdr): <libdir>/mab/plugins next to <libdir>/libmab.so, or the
 *      build's plugins directory when this libmab is the one in the build tree;
 *   2. the directories of MAB_PLUGIN_PATH (colon-separated, empty entries
 *      ignored, relative ones relative to the working directory);
 *   3. the config's plugin_path (relative to the config file's directory).
 * Nothing here depends on the prefix chosen at configure time, so an install
 * moved anywhere (cmake --install --prefix, DESTDIR, a copied tree) finds its
 * own plugins.
 */

/* Any address inside libmab will do for dladdr. */
static const char self_anchor;

/* The directory of the plugins that go with this libmab, or NULL when the
   library's own file cannot be told (the caller then skips it). */
static char *self_plugin_dir(void)
{
    Dl_info info;
    if (!dladdr(&self_anchor, &info) || !info.dli_fname || !info.dli_fname[0])
        return NULL;
    char *libdir = realpath(info.dli_fname, NULL);
    if (!libdir)
        return NULL;
    char *slash = strrchr(libdir, '/');
    if (slash)
        *(slash == libdir ? slash + 1 : slash) = '\0';
    char *dir = NULL;
#if defined(MAB_BUILD_LIBDIR) && defined(MAB_BUILD_PLUGIN_DIR)
    /* In the build tree the plugins are built into build/plugins, beside
       build/lib; an installed copy of this same binary has another libdir. */
    char *build_libdir = realpath(MAB_BUILD_LIBDIR, NULL);
    if (build_libdir && strcmp(build_libdir, libdir) == 0)
        dir = mab__strdup(MAB_BUILD_PLUGIN_DIR);
    free(build_libdir);
    if (dir) {
        free(libdir);
        return dir;
    }
#endif
    dir = mab__asprintf("%s%smab/plugins", libdir, strcmp(libdir, "/") == 0 ? "" : "/");
    free(libdir);
    return dir;
}

typedef struct search_path {
    char **dirs;
    size_t n, cap;
} search_path;

static void search_path_free(search_path *sp)
{
    for (size_t i = 0; i < sp->n; i++)
        free(sp->dirs[i]);
    free(sp->dirs);
}

/* Append dir (taking ownership) unless the same directory is already on the
   path: a directory named twice (the build tree's plugins in plugin_path,
   say) is tried once and listed once in errors. */
static int search_path_add(search_path *sp, char *dir)
{
    if (!dir)
        return MAB_ENOMEM;
    char *canon = realpath(dir, NULL);
    for (size_t i = 0; i < sp->n; i++) {
        char *other = canon ? realpath(sp->dirs[i], NULL) : NULL;
        int same = strcmp(sp->dirs[i], dir) == 0 || (other && strcmp(other, canon) == 0);
        free(other);
        if (same) {
            free(canon);
            free(dir);
            return MAB_OK;
        }
    }
    free(canon);
    if (sp->n == sp->cap) {
        size_t cap = sp->cap ? 2 * sp->cap : 8;
        char **dirs = realloc(sp->dirs, cap * sizeof *dirs);
        if (!dirs) {
            free(dir);
            return MAB_ENOMEM;
        }
        sp->dirs = dirs;
        sp->cap = cap;
    }
    sp->dirs[sp->n++] = dir;
    return MAB_OK;
}

static int search_path_build(const mab_engine *e, search_path *sp)
{
    char *self = self_plugin_dir();
    if (self && search_path_add(sp, self) != MAB_OK)
        return MAB_ENOMEM;
    /* secure_getenv: a set-user-ID program must not load code named by its caller. */
    const char *env = secure_getenv("MAB_PLUGIN_PATH");
    for (const char *p = env; p && *p;) {
        size_t len = strcspn(p, ":");
        if (len > 0 && search_path_add(sp, strndup(p, len)) != MAB_OK)
            return MAB_ENOMEM;
        p += len;
        if (*p == ':')
            p++;
    }
    for (size_t i = 0; i < e->n_plugin_dirs; i++)
        if (search_path_add(sp, mab__strdup(e->plugin_dirs[i])) != MAB_OK)
            return MAB_ENOMEM;
    return MAB_OK;
}

int mab__plugin_resolve(const mab_engine *e, const char *name, const char *json_path,
                        char **path_out, mab_error *err)
{
    if (strchr(name, '/')) {
        *path_out = name[0] == '/' ? mab__strdup(name)
                                   : mab__asprintf("%s/%s", e->config_dir, name);
        return *path_out ? MAB_OK : mab_error_set(err, MAB_ENOMEM, "out of memory");
    }
    search_path sp = {0};
    if (search_path_build(e, &sp) != MAB_OK) {
        search_path_free(&sp);
        return mab_error_set(err, MAB_ENOMEM, "out of memory");
    }
    char looked[MAB_ERROR_MAX] = "";
    size_t used = 0;
    for (size_t i = 0; i < sp.n; i++) {
        char *candidate = mab__asprintf("%s/%s.so", sp.dirs[i], name);
        if (!candidate) {
            search_path_free(&sp);
            return mab_error_set(err, MAB_ENOMEM, "out of memory");
        }
        if (access(candidate, F_OK) == 0) {
            search_path_free(&sp);
            *path_out = candidate;
            return MAB_OK;
        }
        if (used < sizeof looked) {
            int n = snprintf(looked + used, sizeof looked - used, "%s%s", i ? ", " : "",
                             candidate);
            used += n > 0 ? (size_t)n : 0;
        }
        free(candidate);
    }
    search_path_free(&sp);
    if (!used)
        return mab_error_set(err, MAB_EPLUGIN,
                             "%s: %s: no plugin \"%s\" (no directory to look in: libmab's own "
                             "location is unknown, MAB_PLUGIN_PATH and plugin_path are empty)",
                             e->config_path, json_path, name);
    return mab_error_set(err, MAB_EPLUGIN, "%s: %s: no plugin \"%s\" (looked for %s)",
                         e->config_path, json_path, name, looked);
}

int mab_storage_checked(const mab_engine *e)
{
    return e && e->storage_checked;
}

const char *mab_storage_path(const mab_engine *e)
{
    return e && e->storage ? e->storage_path : NULL;
}

/* dlopen + dlsym + the checks common to both kinds. The first three fields of
   both descriptors are abi_major, abi_minor, struct_size. */
static int load_descriptor(const char *path, const char *kind, const char *symbol,
                           uint32_t abi_major, uint32_t abi_minor, size_t v1_size,
                           void **handle_out, const void **desc_out, mab_error *err)
{
    void *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!handle)
        return mab_error_set(err, MAB_EPLUGIN, "%s: cannot load %s plugin: %s", path, kind,
                             dlerror());
    typedef const void *(*entry_fn)(void);
    entry_fn entry;
    void *sym = dlsym(handle, symbol);
    memcpy(&entry, &sym, sizeof entry); /* object pointer to function pointer */
    if (!entry) {
        dlclose(handle);
        return mab_error_set(err, MAB_EPLUGIN,
                             "%s: missing symbol %s: not a mab %s plugin (or not exported)",
                             path, symbol, kind);
    }
    const uint32_t *header = entry();
    if (!header) {
        dlclose(handle);
        return mab_error_set(err, MAB_EPLUGIN, "%s: %s() returned no descriptor", path, symbol);
    }
    /* Copied: the descriptor lives in the plugin, gone after dlclose. */
    uint32_t major = header[0], minor = header[1], size = header[2];
    if (major != abi_major) {
        dlclose(handle);
        return mab_error_set(err, MAB_EPLUGIN,
                             "%s: built for %s ABI %u.%u, but this libmab supports %u.x (up to "
                             "%u.%u); rebuild the plugin against these headers",
                             path, kind, major, minor, abi_major, abi_major, abi_minor);
    }
    if (size < v1_size) {
        dlclose(handle);
        return mab_error_set(err, MAB_EPLUGIN,
                             "%s: %s descriptor is %u bytes, smaller than the %zu bytes of %s "
                             "ABI %u.0",
                             path, kind, size, v1_size, kind, abi_major);
    }
    *handle_out = handle;
    *desc_out = header;
    return MAB_OK;
}

static int missing_callback(void **handle, const char *path, const char *kind, const char *name,
                            mab_error *err)
{
    dlclose(*handle);
    *handle = NULL;
    return mab_error_set(err, MAB_EPLUGIN, "%s: %s descriptor leaves %s NULL", path, kind, name);
}

const mab_core_api mab__core_api = {
    MAB_CORE_API_VERSION, (uint32_t)sizeof(mab_core_api),
    mab_argmax, mab_rng_u64, mab_rng_uniform, mab_rng_below, mab_rng_normal, mab_rng_gamma,
    mab_rng_beta, mab_params_double, mab_params_int, mab_params_bool, mab_params_string,
    mab_params_fail, mab_error_set,
};

/* ABI 2: the entry takes the core's table; the descriptor says which table
   version and which ABI minor it needs, and a core older than either is
   refused by name (never half-bound). */
static int load_policy2(const char *path, void *handle, void *sym, const mab_policy2 **out,
                        mab_error *err)
{
    typedef const mab_policy2 *(*entry2_fn)(const mab_core_api *);
    entry2_fn entry;
    memcpy(&entry, &sym, sizeof entry);
    const mab_policy2 *p = entry(&mab__core_api);
    const char *missing = NULL;
    int rc = MAB_OK;
    if (!p)
        rc = mab_error_set(err, MAB_EPLUGIN, "%s: %s() returned no descriptor", path,
                           MAB_POLICY2_ENTRY_SYMBOL);
    else if (p->abi_major != MAB_POLICY2_ABI_MAJOR)
        rc = mab_error_set(err, MAB_EPLUGIN,
                           "%s: %s returns a descriptor of policy ABI %u.%u, but that symbol "
                           "is for ABI %u.x (this libmab supports up to %u.%u)",
                           path, MAB_POLICY2_ENTRY_SYMBOL, p->abi_major, p->abi_minor,
                           MAB_POLICY2_ABI_MAJOR, MAB_POLICY2_ABI_MAJOR, MAB_POLICY2_ABI_MINOR);
    else if (p->abi_minor > MAB_POLICY2_ABI_MINOR)
        rc = mab_error_set(err, MAB_EPLUGIN,
                           "%s: built for policy ABI %u.%u, newer than this libmab's %u.%u; "
                           "use a newer libmab",
                           path, p->abi_major, p->abi_minor, MAB_POLICY2_ABI_MAJOR,
                           MAB_POLICY2_ABI_MINOR);
    else if (p->struct_size < offsetof(mab_policy2, explain) + sizeof(void *))
        rc = mab_error_set(err, MAB_EPLUGIN,
                           "%s: policy descriptor is %u bytes, smaller than the %zu bytes of "
                           "policy ABI 2.0",
                           path, p->struct_size, offsetof(mab_policy2, explain) + sizeof(void *));
    else if (p->core_api_version > MAB_CORE_API_VERSION || p->core_api_version == 0)
        rc = mab_error_set(err, MAB_EPLUGIN,
                           "%s: needs core API table version %u, but this libmab provides "
                           "version %u; use a newer libmab",
                           path, p->core_api_version, MAB_CORE_API_VERSION);
    else
        missing = !p->create ? "create" : !p->destroy ? "destroy" : !p->choose ? "choose"
                : !p->name ? "name" : NULL;
    if (rc == MAB_OK && missing)
        rc = mab_error_set(err, MAB_EPLUGIN, "%s: policy descriptor leaves %s NULL", path,
                           missing);
    if (rc != MAB_OK) {
        dlclose(handle);
        return rc;
    }
    *out = p;
    return MAB_OK;
}

int mab__load_policy(const char *path, void **handle, const mab_policy **out,
                     const mab_policy2 **out2, mab_error *err)
{
    *out = NULL;
    *out2 = NULL;
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (h) {
        void *sym2 = dlsym(h, MAB_POLICY2_ENTRY_SYMBOL);
        if (sym2) {
            int rc2 = load_policy2(path, h, sym2, out2, err);
            if (rc2 == MAB_OK)
                *handle = h;
            return rc2;
        }
        dlclose(h); /* ABI 1: loaded again below, along the unchanged path */
    }
    const void *desc = NULL;
    int rc = load_descriptor(path, "policy", MAB_POLICY_ENTRY_SYMBOL, MAB_POLICY_ABI_MAJOR,
                             MAB_POLICY_ABI_MINOR, offsetof(mab_policy, choose) + sizeof(void *),
                             handle, &desc, err);
    if (rc)
        return rc;
    const mab_policy *p = desc;
    if (!p->create)
        return missing_callback(handle, path, "policy", "create", err);
    if (!p->destroy)
        return missing_callback(handle, path, "policy", "destroy", err);
    if (!p->choose)
        return missing_callback(handle, path, "policy", "choose", err);
    if (!p->name)
        return missing_callback(handle, path, "policy", "name", err);
    *out = p;
    return MAB_OK;
}

int mab__load_storage(const char *path, void **handle, const mab_storage **out, mab_error *err)
{
    const void *desc = NULL;
    int rc = load_descriptor(path, "storage", MAB_STORAGE_ENTRY_SYMBOL, MAB_STORAGE_ABI_MAJOR,
                             MAB_STORAGE_ABI_MINOR, offsetof(mab_storage, close) + sizeof(void *),
                             handle, &desc, err);
    if (rc)
        return rc;
    const mab_storage *s = desc;
    const char *missing = !s->open ? "open" : !s->load ? "load" : !s->apply ? "apply"
                        : !s->reset ? "reset" : !s->close ? "close" : !s->name ? "name" : NULL;
    if (!missing && mab__storage_has(s, replace))
        missing = !s->scan ? "scan" : !s->replace ? "replace" : NULL;
    /* claim is ABI 1.3: a 1.3 plugin must set it (a 1.2 one ends before it). */
    if (!missing && (s->abi_minor >= 3 || mab__storage_has(s, claim)) &&
        (!mab__storage_has(s, claim) || !s->claim))
        missing = "claim";
    /* 1.4's three callbacks go together: all NULL is a plugin that stores
       no policy statistics (a 1.1 source rebuilt against these headers). */
    if (!missing && mab__storage_has(s, scan_stats) &&
        (s->apply_stats || s->load_stats || s->scan_stats))
        missing = !s->apply_stats ? "apply_stats" : !s->load_stats ? "load_stats"
                : !s->scan_stats ? "scan_stats" : NULL;
    if (missing)
        return missing_callback(handle, path, "storage", missing, err);
    *out = s;
    return MAB_OK;
}

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

#ifndef MAB_DEFAULT_PLUGIN_DIR
#define MAB_DEFAULT_PLUGIN_DIR "/usr/local/lib/mab/plugins"
#endif

int mab__plugin_resolve(const mab_engine *e, const char *name, const char *json_path,
                        char **path_out, mab_error *err)
{
    if (strchr(name, '/')) {
        *path_out = name[0] == '/' ? mab__strdup(name)
                                   : mab__asprintf("%s/%s", e->config_dir, name);
        return *path_out ? MAB_OK : mab_error_set(err, MAB_ENOMEM, "out of memory");
    }
    char looked[MAB_ERROR_MAX] = "";
    size_t used = 0;
    for (size_t i = 0; i <= e->n_plugin_dirs; i++) {
        const char *dir = i < e->n_plugin_dirs ? e->plugin_dirs[i] : MAB_DEFAULT_PLUGIN_DIR;
        char *candidate = mab__asprintf("%s/%s.so", dir, name);
        if (!candidate)
            return mab_error_set(err, MAB_ENOMEM, "out of memory");
        if (access(candidate, F_OK) == 0) {
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
    return mab_error_set(err, MAB_EPLUGIN, "%s: %s: no plugin \"%s\" (looked for %s)",
                         e->config_path, json_path, name, looked);
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

int mab__load_policy(const char *path, void **handle, const mab_policy **out, mab_error *err)
{
    const void *desc;
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
    const void *desc;
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
    if (!missing && mab__storage_has(s, claim) && !s->claim)
        missing = "claim";
    if (missing)
        return missing_callback(handle, path, "storage", missing, err);
    *out = s;
    return MAB_OK;
}

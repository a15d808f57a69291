/*
 * check.c - mab_check(): the config test of `mab check` and of every host's
 * own config test. It lives beside the adapter because the adapter's key
 * checks are half of it: the engine is opened with MAB_OPEN_CHECK (no
 * store is opened, the storage plugin only validates), then an adapter is
 * opened over it and closed again, which reads and checks the key file
 * exactly as a serving host would. Nothing is created, locked or written.
 */
#include "engine_access.h"
#include "mab/adapter.h"

int mab_check(const char *config_path, const char *const *sections, mab_error *err)
{
    mab_options opts = {.struct_size = sizeof opts, .flags = MAB_OPEN_CHECK};
    mab_engine *engine = NULL;
    int rc = mab_open_sections(config_path, &opts, sections, &engine, err);
    if (rc != MAB_OK)
        return rc;
    mab_adapter *adapter = NULL;
    rc = mab_adapter_open(engine, &adapter, err);
    mab_adapter_close(adapter);
    mab_close(engine, NULL);
    return rc;
}

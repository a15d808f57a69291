/*
 * engine_access.h - the only engine internals the adapter (core/adapter/)
 * uses; for everything else it calls the public API (include/mab/) like any
 * host. Implemented by the engine (config.c); internal.h brings the shared
 * helpers (mab__strdup, mab__asprintf, mab__fork_generation, MAB__ID_MAX).
 */
#ifndef MAB_ENGINE_ACCESS_H
#define MAB_ENGINE_ACCESS_H

#include "internal.h"
#include "web_config.h"

/* The config file the engine was opened from, for error messages. */
const char *mab__engine_config_path(const mab_engine *engine);

/* The adapter's settings, parsed by web_config.c while the engine opened
   (never NULL for an open engine). Owned by the engine. */
const mab__web_config *mab__engine_web_config(const mab_engine *engine);

/* The reward range of an experiment, found by id without a public lookup
   (the adapter checks a reward before it spends the visitor's claim).
   MAB_OK, or MAB_ENOTFOUND for an unknown experiment. */
int mab__engine_reward_range(const mab_engine *engine, const char *experiment, double *min,
                             double *max);

#endif

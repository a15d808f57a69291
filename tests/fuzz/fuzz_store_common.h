/*
 * fuzz_store_common.h - what the two storage targets (fuzz_json_state,
 * fuzz_lmdb) do once the fuzzed store is planted: open an engine over it,
 * use it, close it, and check that it opens again.
 */
#ifndef MAB_FUZZ_STORE_COMMON_H
#define MAB_FUZZ_STORE_COMMON_H

/* The experiments of both storage configs (JSON members, no braces). */
#define FUZZ_STORE_EXPERIMENTS                                                                  \
    "\"experiments\": {"                                                                        \
    " \"color_btn\": {\"policy\": {\"plugin\": \"thompson\"},"                                  \
    "  \"arms\": {\"green\": 1, \"red\": 2, \"blue\": 3}},"                                     \
    " \"txt_btn\": {\"policy\": {\"plugin\": \"ucb1\"}, \"reward\": {\"min\": 0, \"max\": 10}," \
    "  \"arms\": {\"casual\": \"a\", \"neutral\": \"b\"}},"                                     \
    " \"price\": {\"policy\": {\"plugin\": \"softmax\"}, \"arms\": {\"m\": 9, \"y\": 90}}}"

/*
 * Open the engine of `config_path`. When the store is refused, check that
 * the refusal says why and return. When it opens: read the stats of every
 * experiment, choose and reward each, export every record, close. Oracles:
 * what the plugin accepted and then wrote must open again (a store a
 * plugin wrote itself is never refused as corrupt); and after a clean close
 * it holds exactly the pulls and rewards it held plus those acknowledged.
 */
void fuzz_store_exercise(const char *config_path);

/*
 * The time buckets (storage ABI 1.5) through the plugin itself: open the
 * store `plugin_so` with the storage object `params_json`; when it opens and
 * the plugin keeps buckets, scan them and load color_btn's, then add one
 * bucket with a retention limit and read it back. Oracles: every bucket a
 * plugin hands out is finite and no load visits a bucket before its `since`
 * or out of order (a damaged record is refused as MAB_ECORRUPT instead); a
 * refusal says why; what apply_buckets accepted is there, once.
 */
void fuzz_store_buckets(const char *plugin_so, const char *params_json);

#endif

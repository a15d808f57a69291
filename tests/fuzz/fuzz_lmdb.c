/*
 * fuzz_lmdb.c - LMDB records as the lmdb storage plugin reads them. The
 * input is a list of puts planted with liblmdb in a fresh environment; the
 * engine then opens it through the plugin (config: fuzz_store_common.h),
 * uses it, closes it and checks that it opens again.
 *
 * Input: u8 flags (bit 0: do not write the store's own meta records first),
 * then puts, each: u8 database (0 "records", 1 "meta", 2 the unnamed one),
 * u8 key length, key, u8 value length, value. A record's key is
 * "EXP\0ARM"; its value is 40 bytes (plugins/storage/lmdb.c: version,
 * reserved, pulls, rewards, reward_sum, reward_sum_sq, native order).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <lmdb.h>

#include "fuzz_common.h"
#include "fuzz_store_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char config_path[4096], env_path[4096], bucket_params[4200];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    fuzz_pin_plugins();
    fuzz_write_config("config.json",
                      "\"storage\": {\"plugin\": \"lmdb\", \"path\": \"store\","
                      " \"map_size\": 1048576, \"sync\": {\"interval_ms\": 60000}}, "
                      FUZZ_STORE_EXPERIMENTS);
    snprintf(config_path, sizeof config_path, "%s", fuzz_path("config.json"));
    snprintf(env_path, sizeof env_path, "%s", fuzz_path("store"));
    snprintf(bucket_params, sizeof bucket_params, "{\"path\": \"%s\", \"map_size\": 1048576}",
             env_path);
    return 0;
}

static void check(int rc, const char *what)
{
    if (rc != MDB_SUCCESS) {
        fprintf(stderr, "fuzz_lmdb: %s: %s\n", what, mdb_strerror(rc));
        abort();
    }
}

/* Plant the input's puts; a put LMDB itself refuses is skipped. */
static void plant(const uint8_t *data, size_t size)
{
    fuzz_remove_tree(env_path);
    if (mkdir(env_path, 0700) != 0)
        abort();
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi[5];
    check(mdb_env_create(&env), "env_create");
    check(mdb_env_set_maxdbs(env, 8), "set_maxdbs");
    check(mdb_env_set_mapsize(env, 1 << 20), "set_mapsize");
    check(mdb_env_open(env, env_path, MDB_NOSYNC, 0600), "env_open");
    check(mdb_txn_begin(env, NULL, 0, &txn), "txn_begin");
    check(mdb_dbi_open(txn, "records", MDB_CREATE, &dbi[0]), "dbi records");
    check(mdb_dbi_open(txn, "meta", MDB_CREATE, &dbi[1]), "dbi meta");
    check(mdb_dbi_open(txn, NULL, 0, &dbi[2]), "dbi main");
    check(mdb_dbi_open(txn, "buckets", MDB_CREATE, &dbi[3]), "dbi buckets");
    check(mdb_dbi_open(txn, "bucket_starts", MDB_CREATE, &dbi[4]), "dbi bucket_starts");
    size_t p = 1;
    if (size == 0 || !(data[0] & 1)) {
        uint32_t version = 1;
        MDB_val k = {6, "format"}, v = {16, "mab-lmdb-storage"};
        MDB_val vk = {7, "version"}, vv = {sizeof version, &version};
        check(mdb_put(txn, dbi[1], &k, &v, 0), "put format");
        check(mdb_put(txn, dbi[1], &vk, &vv, 0), "put version");
    }
    while (p + 2 <= size) {
        unsigned which = data[p++] % 5;
        size_t klen = data[p++];
        if (p + klen + 1 > size)
            break;
        MDB_val k = {klen, (void *)(data + p)};
        p += klen;
        size_t vlen = data[p++];
        if (p + vlen > size)
            break;
        MDB_val v = {vlen, (void *)(data + p)};
        p += vlen;
        if (klen > 0)
            mdb_put(txn, dbi[which], &k, &v, 0);
    }
    check(mdb_txn_commit(txn), "commit");
    mdb_env_close(env);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 1 << 14)
        return -1;
    plant(data, size);
    fuzz_store_exercise(config_path);
    plant(data, size);
    fuzz_store_buckets(MAB_FUZZ_PLUGIN_DIR "/lmdb.so", bucket_params);
    return 0;
}

/*
 * redis.c - storage shared by many machines through one Redis server.
 *
 * Keys, for prefix P (default "mab:") and experiment E:
 *
 *   P{E}:totals   hash: "v" -> "1" (schema), and per arm A the fields
 *                 "A:pulls", "A:rewards" (integers), "A:reward_sum",
 *                 "A:reward_sum_sq" (doubles written with 17 digits)
 *   P{E}:writers  hash: writer id -> number of its last batch counted here
 *
 * The braces are a Redis Cluster hash tag: both keys of an experiment live
 * in one slot, and every command or script of this plugin touches the keys
 * of one experiment only (except replace, which is one MULTI over the
 * imported experiments). Ids are letters, digits, '_' and '-' (the core
 * checks), so ':' cannot make two fields or keys collide.
 *
 * A batch is one Lua script call per experiment (APPLY_SCRIPT), all sent in
 * one pipeline: the script reads every field it will touch (HMGET) and
 * checks it before writing anything, so a refused call changes nothing,
 * and a script runs atomically. The new values are added in the script's
 * doubles and written back with HSET: counts exactly (below 2^53), sums with
 * 17 significant digits. Not HINCRBYFLOAT, which rounds to 17 decimal
 * places (a sum of 1e-18 reads back as 0) and adds in long double; and not
 * one HINCRBY per field, which costs a call per arm and field.
 *
 * Exactly once across lost replies. When the connection breaks after a
 * script was sent, it may or may not have run, and the plugin cannot tell.
 * So every open picks a random writer id and numbers its batches; the
 * script counts a batch for an experiment only when the writer's number
 * there is below the batch's, and records the number in the same call.
 * A failed apply keeps the calls whose reply was lost as "in doubt", with
 * their number; the next apply first sends them again with the same number:
 * the server counts each at most once, and any reply settles it. What is
 * known to be counted while the core still holds it (the core offers a
 * failed batch again, merged with newer increments) is "credit", subtracted
 * from what the core offers next. load() subtracts the credit, and the
 * in-doubt increments when the experiment's writer number shows they were
 * counted, so the core's "stored + not yet applied" stays exact during an
 * outage too. (plugins/storage/mongodb.c does the same over MongoDB.)
 *
 * Cost: one field per process in each experiment's writers hash (about 40
 * bytes), removed at a clean close; a crashed process leaves its field.
 *
 * What changed (storage ABI 1.6, changed()). Two keys beside the
 * experiments' (no braces: they cannot be mistaken for an experiment's):
 *
 *   Pchanges      sorted set: experiment id -> the sequence number of the
 *                 last call that changed its records (one member per
 *                 experiment, however often it changes)
 *   Pchanges:log  hash: "epoch" (drawn by the writer that started the
 *                 log), "seq" (the last sequence number), "floor" (the
 *                 highest sequence number trimmed out of Pchanges)
 *
 * Every script that changes an experiment's records (update, claim,
 * reset and replace) takes the next sequence number (HINCRBY seq) and
 * ZADDs the experiment at it, in the same atomic call, after its checks:
 * a refused call (or one that never ran) leaves the log as it was. A
 * log key that is missing, of another type or damaged makes the script
 * start the log again under a new epoch. changed() is one round trip:
 * INFO server (the run_id), then MULTI, HMGET of the log hash,
 * ZRANGEBYSCORE Pchanges (SEEN +inf, EXEC. It asks for everything on its
 * first call, when the epoch differs from the one it saw (FLUSHALL, a
 * restart without persistence, a deleted or damaged log), when the
 * server's run_id differs (a restart, which may have lost the tail of
 * the log with the writes it named), when seq went back, and when its
 * position is below the floor (trimmed: change_log_max).
 *
 * hiredis writes with write(2), so a write to a closed connection raises
 * SIGPIPE: every exchange blocks SIGPIPE in the calling thread and takes a
 * SIGPIPE it caused back, so that a host never dies of a Redis outage.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdatomic.h>
#include <sys/random.h>
#include <sys/time.h>
#include <time.h>

#include <hiredis/hiredis.h>

#include "mab/storage.h"

#define WHERE_MAX 300
#define PREFIX_MAX 64
#define ID_MAX 128
#define KEY_MAX (PREFIX_MAX + ID_MAX + 16)
#define FIELD_MAX (ID_MAX + 20)
#define DEFAULT_PORT 6379
#define DEFAULT_TIMEOUT_MS 2000

/*
 * The change log's Lua (header comment): log_change(log, changes, epoch,
 * max, ids) names the experiments ids[] as changed under the next sequence
 * number. A log hash that is missing, of another type, without an epoch,
 * or with a seq or floor that is not a whole number (or a seq near 2^53,
 * where the scores, doubles, stop being exact), or a Pchanges that is not
 * a sorted set (a log that exists always has a member), is started again:
 * both keys deleted, the epoch `epoch` (unique per call), seq and floor 0.
 * With max > 0, Pchanges is trimmed to its max newest members and floor
 * raised to the highest sequence removed. Nothing in it can fail.
 */
#define CHANGE_LOG_LUA                                                                       \
    "local function log_change(log, changes, epoch, max, ids)\n"                              \
    "  local seq, floor\n"                                                                     \
    "  local ok = redis.call('TYPE', log).ok == 'hash' and\n"                                  \
    "             redis.call('TYPE', changes).ok == 'zset'\n"                                  \
    "  if ok then\n"                                                                           \
    "    local v = redis.call('HMGET', log, 'epoch', 'seq', 'floor')\n"                        \
    "    seq, floor = v[2], v[3]\n"                                                            \
    "    ok = v[1] and seq and floor and string.match(seq, '^%d+$') and\n"                     \
    "         string.match(floor, '^%d+$') and tonumber(seq) < 9007199254740000\n"             \
    "  end\n"                                                                                  \
    "  if not ok then\n"                                                                       \
    "    redis.call('DEL', log, changes)\n"                                                    \
    "    redis.call('HSET', log, 'epoch', epoch, 'seq', '0', 'floor', '0')\n"                  \
    "  end\n"                                                                                  \
    "  seq = redis.call('HINCRBY', log, 'seq', 1)\n"                                           \
    "  for _, id in ipairs(ids) do redis.call('ZADD', changes, seq, id) end\n"                 \
    "  if max > 0 then\n"                                                                      \
    "    local over = redis.call('ZCARD', changes) - max\n"                                    \
    "    if over > 0 then\n"                                                                   \
    "      local gone = redis.call('ZRANGE', changes, 0, over - 1, 'WITHSCORES')\n"            \
    "      redis.call('HSET', log, 'floor', gone[#gone])\n"                                    \
    "      redis.call('ZREMRANGEBYRANK', changes, 0, over - 1)\n"                              \
    "    end\n"                                                                                \
    "  end\n"                                                                                  \
    "end\n"

/*
 * KEYS[1] totals, KEYS[2] writers, KEYS[3] stats, KEYS[4] the bucket
 * index, KEYS[5] and KEYS[6] the change log's hash and sorted set,
 * KEYS[7..] the hashes of the buckets this call adds to. ARGV[1]
 * writer id, ARGV[2] batch number (0: count unconditionally), ARGV[3..5]
 * how many arms, statistics fields and bucket increments follow, ARGV[6]
 * keep_from ("" for no bucket maintenance), ARGV[7] the bucket hashes'
 * key prefix, ARGV[8] the expiry offset (a bucket's hash expires at its
 * start + offset; 0: no expiry), ARGV[9] the epoch of a log this call
 * would start, ARGV[10] the experiment id, ARGV[11] change_log_max; then
 * per arm five values: arm id, pulls,
 * rewards, reward_sum, reward_sum_sq; per statistics field two: field
 * ("LAYOUT|ARM|INDEX"), increment; per bucket increment seven: position of
 * its key in KEYS after the first four, bucket start, arm id and the four
 * increments. Increments may be negative.
 * Returns 1 when counted, 0 when this writer's batch was already counted.
 * Refuses (an error reply, nothing written) a key of another type, another
 * schema version, a field that is not a number, or a result that would not
 * be finite or would leave [0, 2^53) for a count (where a double holds every
 * integer exactly). Fields are read and written in chunks of CHUNK values
 * (Lua's unpack has a small stack), so a batch costs a few calls, not a few
 * per arm. With a keep_from, at most 64 buckets that start before it are
 * removed per call (their hash and index entry). A counted call names the
 * experiment in the change log (log_change), last. Nothing after the checks
 * can fail (a script is not rolled back): the expiry is clamped to what
 * EXPIREAT takes.
 */
static const char APPLY_SCRIPT[] =
    CHANGE_LOG_LUA
    "local totals, writers, stats, index = KEYS[1], KEYS[2], KEYS[3], KEYS[4]\n"
    "for i, k in ipairs(KEYS) do\n"
    "  local t = redis.call('TYPE', k).ok\n"
    "  local want = i == 4 and 'zset' or 'hash'\n"
    "  if i ~= 5 and i ~= 6 and t ~= want and t ~= 'none' then\n"
    "    return redis.error_reply('MABTYPE key ' .. k .. ' holds a ' .. t .. ', not a ' .. want)\n"
    "  end\n"
    "end\n"
    "local seq = tonumber(ARGV[2])\n"
    "if seq > 0 then\n"
    "  local done = tonumber(redis.call('HGET', writers, ARGV[1]) or '0')\n"
    "  if done and done >= seq then return 0 end\n"
    "end\n"
    "local v = redis.call('HGET', totals, 'v')\n"
    "if v and v ~= '1' then\n"
    "  return redis.error_reply('MABSCHEMA key ' .. totals .. ' has schema version ' .. v ..\n"
    "                           '; this plugin reads version 1')\n"
    "end\n"
    "local n_arms, n_fields, n_buckets = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])\n"
    "local keep_from, bprefix, offset = ARGV[6], ARGV[7], tonumber(ARGV[8])\n"
    "local CHUNK = 4000\n"
    "local plan = {}\n"
    "local function job(key)\n"
    "  if not plan[key] then plan[key] = {names = {}, incs = {}, count = {}} end\n"
    "  return plan[key]\n"
    "end\n"
    "local suffix = {':pulls', ':rewards', ':reward_sum', ':reward_sum_sq'}\n"
    "local order = {totals}\n"
    "local at = 12\n"
    "local j = job(totals)\n"
    "for i = 1, n_arms do\n"
    "  for s = 1, 4 do\n"
    "    j.names[#j.names + 1] = ARGV[at] .. suffix[s]\n"
    "    j.incs[#j.incs + 1] = tonumber(ARGV[at + s])\n"
    "    j.count[#j.count + 1] = s <= 2\n"
    "  end\n"
    "  at = at + 5\n"
    "end\n"
    "if n_fields > 0 then order[#order + 1] = stats end\n"
    "j = job(stats)\n"
    "for i = 1, n_fields do\n"
    "  j.names[#j.names + 1] = ARGV[at]\n"
    "  j.incs[#j.incs + 1] = tonumber(ARGV[at + 1])\n"
    "  j.count[#j.count + 1] = false\n"
    "  at = at + 2\n"
    "end\n"
    "local touched = {}\n"
    "for i = 1, n_buckets do\n"
    "  local key = KEYS[6 + tonumber(ARGV[at])]\n"
    "  if not plan[key] then order[#order + 1] = key; touched[#touched + 1] = {key, ARGV[at + 1]} end\n"
    "  j = job(key)\n"
    "  for s = 1, 4 do\n"
    "    j.names[#j.names + 1] = ARGV[at + 2] .. suffix[s]\n"
    "    j.incs[#j.incs + 1] = tonumber(ARGV[at + 2 + s])\n"
    "    j.count[#j.count + 1] = s <= 2\n"
    "  end\n"
    "  at = at + 7\n"
    "end\n"
    "local writes = {}\n"
    "for _, key in ipairs(order) do\n"
    "  local jb = plan[key]\n"
    "  local out = {}\n"
    "  for from = 1, #jb.names, CHUNK do\n"
    "    local to = math.min(from + CHUNK - 1, #jb.names)\n"
    "    local cur = redis.call('HMGET', key, unpack(jb.names, from, to))\n"
    "    for k = from, to do\n"
    "      local text = cur[k - from + 1]\n"
    "      local count = jb.count[k]\n"
    "      local x = 0\n"
    "      if text then\n"
    "        if count and not string.match(text, '^%d+$') then\n"
    "          return redis.error_reply('MABFIELD key ' .. key .. ' field ' .. jb.names[k] ..\n"
    "                                   ' is not a whole count')\n"
    "        end\n"
    "        x = tonumber(text)\n"
    "        if x == nil or x ~= x or x == math.huge or x == -math.huge then\n"
    "          return redis.error_reply('MABFIELD key ' .. key .. ' field ' .. jb.names[k] ..\n"
    "                                   ' is not a finite number')\n"
    "        end\n"
    "      end\n"
    "      x = x + jb.incs[k]\n"
    "      if count and (x < 0 or x >= 9007199254740992) then\n"
    "        return redis.error_reply('MABRANGE key ' .. key .. ' field ' .. jb.names[k] ..\n"
    "                                 ' would be out of range')\n"
    "      end\n"
    "      if x ~= x or x == math.huge or x == -math.huge then\n"
    "        return redis.error_reply('MABRANGE key ' .. key .. ' field ' .. jb.names[k] ..\n"
    "                                 ' would not be finite')\n"
    "      end\n"
    "      out[#out + 1] = jb.names[k]\n"
    "      out[#out + 1] = count and string.format('%.0f', x) or string.format('%.17g', x)\n"
    "    end\n"
    "  end\n"
    "  writes[#writes + 1] = {key, out}\n"
    "end\n"
    "for _, w in ipairs(writes) do\n"
    "  for from = 1, #w[2], CHUNK do\n"
    "    redis.call('HSET', w[1], unpack(w[2], from, math.min(from + CHUNK - 1, #w[2])))\n"
    "  end\n"
    "end\n"
    "redis.call('HSET', totals, 'v', '1')\n"
    "for _, t in ipairs(touched) do\n"
    "  redis.call('ZADD', index, t[2], t[2])\n"
    "  if offset ~= 0 then\n"
    "    local at = math.max(math.min(tonumber(t[2]) + offset, 9e15), 1)\n"
    "    redis.call('EXPIREAT', t[1], string.format('%.0f', at))\n"
    "  end\n"
    "end\n"
    "if keep_from ~= '' then\n"
    "  local old = redis.call('ZRANGEBYSCORE', index, '-inf', '(' .. keep_from, 'LIMIT', 0, 64)\n"
    "  for _, b in ipairs(old) do\n"
    "    redis.call('DEL', bprefix .. b)\n"
    "    redis.call('ZREM', index, b)\n"
    "  end\n"
    "end\n"
    "if seq > 0 then redis.call('HSET', writers, ARGV[1], ARGV[2]) end\n"
    "log_change(KEYS[5], KEYS[6], ARGV[9], tonumber(ARGV[11]), {ARGV[10]})\n"
    "return 1\n";

/*
 * Reading one experiment's buckets, one consistent snapshot. KEYS[1] the
 * bucket index, KEYS[2] writers; ARGV[1] the first bucket start wanted
 * ("-inf" for all), ARGV[2] the bucket hashes' key prefix, ARGV[3] the writer
 * id. Returns {this writer's batch number or "", start, HGETALL of its hash,
 * start, ...} in ascending order of start; buckets whose hash has expired
 * are left out.
 */
static const char READ_BUCKETS_SCRIPT[] =
    "local want = {'zset', 'hash'}\n"
    "for i, k in ipairs(KEYS) do\n"
    "  local t = redis.call('TYPE', k).ok\n"
    "  if t ~= want[i] and t ~= 'none' then\n"
    "    return redis.error_reply('MABTYPE key ' .. k .. ' holds a ' .. t .. ', not a ' .. want[i])\n"
    "  end\n"
    "end\n"
    "local out = {redis.call('HGET', KEYS[2], ARGV[3]) or ''}\n"
    "for _, b in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], '+inf')) do\n"
    "  if not string.match(b, '^-?%d+$') then\n"
    "    return redis.error_reply('MABFIELD key ' .. KEYS[1] .. ' member ' .. b ..\n"
    "                             ' is not a bucket start')\n"
    "  end\n"
    "  local key = ARGV[2] .. b\n"
    "  local t = redis.call('TYPE', key).ok\n"
    "  if t ~= 'hash' and t ~= 'none' then\n"
    "    return redis.error_reply('MABTYPE key ' .. key .. ' holds a ' .. t .. ', not a hash')\n"
    "  end\n"
    "  local h = redis.call('HGETALL', key)\n"
    "  if #h > 0 then out[#out + 1] = b; out[#out + 1] = h end\n"
    "end\n"
    "return out\n";

/*
 * Removing every key of one experiment: KEYS[1] its bucket index, KEYS[2..4]
 * its totals, writers and stats keys, KEYS[5] and KEYS[6] the change log's
 * hash and sorted set; ARGV[1] the bucket key prefix, ARGV[2] the experiment
 * id, ARGV[3] the epoch of a log this call would start, ARGV[4]
 * change_log_max. Names the experiment in the change log. Run inside
 * reset's and replace's MULTI.
 */
static const char CLEAR_SCRIPT[] =
    CHANGE_LOG_LUA
    "local index = KEYS[1]\n"
    "if redis.call('TYPE', index).ok == 'zset' then\n"
    "  for _, b in ipairs(redis.call('ZRANGE', index, 0, -1)) do\n"
    "    redis.call('DEL', ARGV[1] .. b)\n"
    "  end\n"
    "end\n"
    "redis.call('DEL', index, KEYS[2], KEYS[3], KEYS[4])\n"
    "log_change(KEYS[5], KEYS[6], ARGV[3], tonumber(ARGV[4]), {ARGV[2]})\n"
    "return 1\n";

/*
 * Claims (ABI 1.3). KEYS[1..n] the claim keys P"claim:"HEX, then the totals
 * keys of the m experiments the granted rewards add to, then the change
 * log's hash and sorted set. ARGV[1] n, ARGV[2] m, then per claim: token,
 * ttl in ms, number of deltas, then per delta: experiment position (1..m),
 * arm, pulls, rewards, reward_sum, reward_sum_sq; then the epoch of a log
 * this call would start, change_log_max and the m experiment ids. The
 * experiments whose totals a granted claim added to are named in the
 * change log. A claim key holds the token of the call that won it.
 * Returns per claim 1 (granted now, its deltas added), 2 (granted before
 * with this very token: the reply to that call was lost; nothing added
 * again) or 0 (claimed by someone else). Refuses, writing nothing, a key of
 * another type or a field it cannot add to (as APPLY_SCRIPT).
 */
static const char CLAIM_SCRIPT[] =
    CHANGE_LOG_LUA
    "local n, m = tonumber(ARGV[1]), tonumber(ARGV[2])\n"
    "for i = 1, n + m do\n"
    "  local t = redis.call('TYPE', KEYS[i]).ok\n"
    "  local want = i <= n and 'string' or 'hash'\n"
    "  if t ~= want and t ~= 'none' then\n"
    "    return redis.error_reply('MABTYPE key ' .. KEYS[i] .. ' holds a ' .. t .. ', not a ' .. want)\n"
    "  end\n"
    "end\n"
    "for i = n + 1, n + m do\n"
    "  local v = redis.call('HGET', KEYS[i], 'v')\n"
    "  if v and v ~= '1' then\n"
    "    return redis.error_reply('MABSCHEMA key ' .. KEYS[i] .. ' has schema version ' .. v ..\n"
    "                             '; this plugin reads version 1')\n"
    "  end\n"
    "end\n"
    "local result, seen, sets = {}, {}, {}\n"
    "local incs = {}\n"
    "local at = 3\n"
    "for i = 1, n do\n"
    "  local token, ttl, nd = ARGV[at], ARGV[at + 1], tonumber(ARGV[at + 2])\n"
    "  at = at + 3\n"
    "  local cur = redis.call('GET', KEYS[i])\n"
    "  local r = 0\n"
    "  if seen[KEYS[i]] then r = 0\n"
    "  elseif not cur then r = 1\n"
    "  elseif cur == token then r = 2 end\n"
    "  seen[KEYS[i]] = true\n"
    "  result[i] = r\n"
    "  if r == 1 then sets[#sets + 1] = {KEYS[i], token, ttl} end\n"
    "  for d = 1, nd do\n"
    "    if r == 1 then\n"
    "      local key = KEYS[n + tonumber(ARGV[at])]\n"
    "      local suffix = {':pulls', ':rewards', ':reward_sum', ':reward_sum_sq'}\n"
    "      incs[key] = incs[key] or {}\n"
    "      for j = 1, 4 do\n"
    "        local f = ARGV[at + 1] .. suffix[j]\n"
    "        incs[key][f] = (incs[key][f] or 0) + tonumber(ARGV[at + 1 + j])\n"
    "      end\n"
    "    end\n"
    "    at = at + 6\n"
    "  end\n"
    "end\n"
    "local writes = {}\n"
    "for key, fields in pairs(incs) do\n"
    "  local out = {}\n"
    "  for f, inc in pairs(fields) do\n"
    "    local count = string.sub(f, -6) == ':pulls' or string.sub(f, -8) == ':rewards'\n"
    "    local text = redis.call('HGET', key, f)\n"
    "    local x = 0\n"
    "    if text then\n"
    "      if count and not string.match(text, '^%d+$') then\n"
    "        return redis.error_reply('MABFIELD key ' .. key .. ' field ' .. f .. ' is not a whole count')\n"
    "      end\n"
    "      x = tonumber(text)\n"
    "      if x == nil or x ~= x or x == math.huge or x == -math.huge then\n"
    "        return redis.error_reply('MABFIELD key ' .. key .. ' field ' .. f .. ' is not a finite number')\n"
    "      end\n"
    "    end\n"
    "    x = x + inc\n"
    "    if (count and (x < 0 or x >= 9007199254740992)) or x ~= x or x == math.huge or x == -math.huge then\n"
    "      return redis.error_reply('MABRANGE key ' .. key .. ' field ' .. f .. ' would be out of range')\n"
    "    end\n"
    "    out[#out + 1] = f\n"
    "    out[#out + 1] = count and string.format('%.0f', x) or string.format('%.17g', x)\n"
    "  end\n"
    "  writes[#writes + 1] = {key, out}\n"
    "end\n"
    "for _, w in ipairs(writes) do\n"
    "  redis.call('HSET', w[1], 'v', '1', unpack(w[2]))\n"
    "end\n"
    "if #writes > 0 then\n"
    "  local id_of, ids = {}, {}\n"
    "  for e = 1, m do id_of[KEYS[n + e]] = ARGV[at + 1 + e] end\n"
    "  for _, w in ipairs(writes) do ids[#ids + 1] = id_of[w[1]] end\n"
    "  log_change(KEYS[n + m + 1], KEYS[n + m + 2], ARGV[at], tonumber(ARGV[at + 1]), ids)\n"
    "end\n"
    "for _, c in ipairs(sets) do\n"
    "  redis.call('SET', c[1], c[2], 'PX', c[3])\n"
    "end\n"
    "return result\n";

/* Totals that may be negative: differences between offered and credited. */
typedef struct signed_totals {
    int64_t pulls;
    int64_t rewards;
    double reward_sum;
    double reward_sum_sq;
} signed_totals;

/* What a ledger entry stands for, and where it is stored. */
enum entry_kind {
    KIND_ARM,    /* an arm's four counters in P{E}:totals; key: the arm id */
    KIND_STATS,  /* a statistics record in P{E}:stats; key: "s|LAYOUT|ARM" */
    KIND_BUCKET, /* an arm's counters in the bucket P{E}:b:START; key: "b|START|ARM" */
};

/* Where an entry's increments are: what this process knows beyond the store. */
enum slot { CREDIT, DOUBT, OP };

/* What this process knows about one record (an arm's counters, a
   statistics record or an arm's bucket) beyond the store. */
typedef struct arm_ledger {
    char *arm;            /* the ledger key (above); for KIND_ARM the arm id */
    int kind;             /* enum entry_kind */
    char *id;             /* KIND_STATS, KIND_BUCKET: the arm id ("" for the experiment's own) */
    char *layout;         /* KIND_STATS: the layout tag */
    int64_t bucket;       /* KIND_BUCKET: the bucket start */
    signed_totals credit; /* counted in the store, yet still held by the core */
    signed_totals doubt;  /* sent in the in-doubt call; maybe counted */
    signed_totals op;     /* scratch for apply: what this batch sends */
    size_t n_values;      /* KIND_STATS: values per slot */
    double *v;            /* KIND_STATS: credit, doubt and op, n_values each */
    int offered;          /* scratch for apply */
} arm_ledger;

/* One experiment this process wrote to. */
typedef struct exp_ledger {
    char *experiment;
    arm_ledger *arms;
    size_t n_arms, cap_arms;
    uint32_t *index;   /* open addressing over arms: position + 1, 0 when empty */
    size_t index_cap;  /* a power of two, at least twice n_arms */
    int64_t doubt_seq; /* number of the in-doubt call, 0 when none */
    int in_batch;      /* scratch for apply */
} exp_ledger;

typedef struct redis_store {
    redisContext *ctx; /* NULL while disconnected */
    /* where to connect */
    char host[256];
    int port;
    char unix_path[200];
    int db;
    char username[128];
    char *password; /* from password_file; never shown */
    struct timeval timeout;
    char prefix[PREFIX_MAX + 1];
    char where[WHERE_MAX]; /* "Redis at HOST:PORT (db N)" */
    char script_sha[41];
    char claim_sha[41];
    uint64_t claim_seq; /* numbers this process's claim calls (tokens) */
    /* Claims whose call lost its reply: id -> the token it was sent with, so
       that a retry recognises its own win (bounded: the oldest are
       forgotten, and a forgotten one is refused on retry, never counted
       twice). */
    struct doubt_claim {
        uint8_t id[MAB_ASSIGNMENT_ID_BYTES];
        char token[40];
    } doubt_claims[256];
    size_t n_doubt_claims, next_doubt_claim;
    char writer[17];
    int64_t batch_seq;
    exp_ledger *exps;
    size_t n_exps, cap_exps;
    uint32_t *exp_index;  /* open addressing over exps: position + 1, 0 when empty */
    size_t exp_index_cap; /* 0, or a power of two at least twice n_exps */
    size_t last_exp; /* where the last lookup found its experiment: batches come grouped */
    /* Bucket maintenance of the apply in progress (APPLY_SCRIPT): buckets
       before keep_from are removed (INT64_MIN: none), a bucket's hash
       expires at its start + expire_offset. */
    int64_t keep_from;
    int64_t expire_offset;
    /* The latest keep_from of any apply_buckets: reads never return an
       older bucket. */
    int64_t kept_from;
    char read_sha[41];
    /* The change log (storage ABI 1.6): its keys, change_log_max, and what
       changed() saw last (valid when have_position). */
    char log_key[KEY_MAX], changes_key[KEY_MAX];
    int64_t change_log_max;
    int have_position;
    char seen_run_id[48];
    char seen_epoch[64];
    uint64_t seen_seq;
} redis_store;

/* Numbers the epochs this process offers a change log (with the writer id:
   unique across processes, calls and engines). */
static atomic_uint_fast64_t epoch_counter;

/* The epoch a call would give a change log it starts. */
static void next_epoch(const redis_store *st, char *out, size_t cap)
{
    snprintf(out, cap, "%s.%" PRIu64, st->writer, (uint64_t)atomic_fetch_add(&epoch_counter, 1));
}

/* ---- messages ------------------------------------------------------------ */

static int store_fail(const redis_store *st, mab_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int store_fail(const redis_store *st, mab_error *err, int code, const char *fmt, ...)
{
    char what[MAB_ERROR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    /* The password never reaches a message, even if a server echoed it. */
    if (st->password && st->password[0]) {
        char *at;
        while ((at = strstr(what, st->password)) != NULL)
            memset(at, '*', strlen(st->password));
    }
    return mab_error_set(err, code, "%s: %s", st->where, what);
}

/* ---- the connection ------------------------------------------------------ */

/* SIGPIPE blocked for the calling thread during one exchange; a SIGPIPE that
   the exchange raised is taken back before the mask is restored. */
typedef struct pipe_guard {
    sigset_t old;
    int was_pending;
} pipe_guard;

static void guard_begin(pipe_guard *g)
{
    sigset_t block, pending;
    sigemptyset(&block);
    sigaddset(&block, SIGPIPE);
    sigpending(&pending);
    g->was_pending = sigismember(&pending, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &block, &g->old);
}

static void guard_end(pipe_guard *g)
{
    sigset_t pending;
    sigpending(&pending);
    if (!g->was_pending && sigismember(&pending, SIGPIPE)) {
        sigset_t pipe_only;
        sigemptyset(&pipe_only);
        sigaddset(&pipe_only, SIGPIPE);
        struct timespec zero = {0, 0};
        while (sigtimedwait(&pipe_only, NULL, &zero) < 0 && errno == EINTR)
            ;
    }
    pthread_sigmask(SIG_SETMASK, &g->old, NULL);
}

static void disconnect(redis_store *st)
{
    if (st->ctx)
        redisFree(st->ctx);
    st->ctx = NULL;
}

/* Why the connection failed, in words ("timed out" rather than EAGAIN). */
static const char *io_reason(const redis_store *st, char *buf, size_t cap)
{
    if (!st->ctx || !st->ctx->errstr[0])
        return "connection lost";
    if (strstr(st->ctx->errstr, "temporarily unavailable")) {
        snprintf(buf, cap, "no answer within timeout_ms (%ld ms)",
                 (long)st->timeout.tv_sec * 1000 + (long)st->timeout.tv_usec / 1000);
        return buf;
    }
    return st->ctx->errstr;
}

/* A command of its own; the reply or NULL (then the connection is gone and
   err says why). */
static redisReply *command(redis_store *st, int argc, const char **argv, const size_t *lens,
                           const char *what, mab_error *err)
{
    redisReply *r = redisCommandArgv(st->ctx, argc, argv, lens);
    if (!r) {
        char why[64];
        store_fail(st, err, MAB_ESTORAGE, "%s: %s", what,
                   io_reason(st, why, sizeof why));
        disconnect(st);
    }
    return r;
}

/* hiredis could not buffer a command (out of memory): what was buffered
   before it is dropped with the connection. */
static int append_failed(redis_store *st, const char *key, mab_error *err)
{
    disconnect(st);
    return store_fail(st, err, MAB_ENOMEM, "cannot read key %s: out of memory", key);
}

/*
 * A scan reads every experiment of a list, each in one round trip. One after
 * another, a full read of 10^5 experiments and their ledgers is several
 * 10^5 round trips (about 9 s over loopback, most of it waiting): instead
 * the requests of the next SCAN_AHEAD experiments are sent before the reply
 * of the first is read, so that the server works through them while the
 * replies come back. The replies arrive in the order sent and each is read
 * as a single read would read it, so what a scan visits and every error it
 * reports are those of the reads one by one. When the scan stops early (an
 * error, or a visitor asking to stop) the replies still in flight are
 * dropped with the connection, which the next call opens again.
 */
#define SCAN_AHEAD 256

typedef struct pipelined_read {
    int (*send)(redis_store *st, const char *name, void *arg, mab_error *err);
    int (*reply)(redis_store *st, const char *name, void *arg, mab_error *err);
    void *arg;
} pipelined_read;

static int read_pipelined(redis_store *st, char *const *names, size_t n,
                          const pipelined_read *r, mab_error *err)
{
    int rc = MAB_OK;
    size_t sent = 0, read = 0;
    while (read < n && rc == MAB_OK) {
        if (sent - read <= SCAN_AHEAD / 2)
            while (rc == MAB_OK && sent < n && sent < read + SCAN_AHEAD)
                rc = r->send(st, names[sent++], r->arg, err);
        if (rc == MAB_OK)
            rc = r->reply(st, names[read++], r->arg, err);
    }
    if (rc != MAB_OK && sent > read)
        disconnect(st);
    return rc;
}

static int connect_store(redis_store *st, mab_error *err)
{
    if (st->ctx)
        return MAB_OK;
    redisContext *c = st->unix_path[0]
                          ? redisConnectUnixWithTimeout(st->unix_path, st->timeout)
                          : redisConnectWithTimeout(st->host, st->port, st->timeout);
    if (!c)
        return store_fail(st, err, MAB_ENOMEM, "cannot connect: out of memory");
    if (c->err) {
        int rc = store_fail(st, err, MAB_ESTORAGE, "cannot connect: %s", c->errstr);
        redisFree(c);
        return rc;
    }
    if (redisSetTimeout(c, st->timeout) != REDIS_OK) {
        int rc = store_fail(st, err, MAB_ESTORAGE, "cannot set the timeout: %s", c->errstr);
        redisFree(c);
        return rc;
    }
    st->ctx = c;
    int rc = MAB_OK;
    redisReply *r;
    if (st->password) {
        /* AUTH [USER] PASSWORD */
        const char *argv[3] = {"AUTH", st->username, st->password};
        size_t lens[3] = {4, strlen(st->username), strlen(st->password)};
        int argc = 3;
        if (!st->username[0]) {
            argv[1] = st->password;
            lens[1] = lens[2];
            argc = 2;
        }
        r = command(st, argc, argv, lens, "cannot authenticate", err);
        if (!r)
            return MAB_ESTORAGE;
        if (r->type == REDIS_REPLY_ERROR)
            rc = store_fail(st, err, MAB_ESTORAGE, "authentication failed%s%s: %s",
                            st->username[0] ? " for user " : "", st->username, r->str);
        freeReplyObject(r);
    }
    if (rc == MAB_OK && st->db) {
        char db[16];
        snprintf(db, sizeof db, "%d", st->db);
        const char *argv[2] = {"SELECT", db};
        size_t lens[2] = {6, strlen(db)};
        r = command(st, 2, argv, lens, "cannot select the database", err);
        if (!r)
            return MAB_ESTORAGE;
        if (r->type == REDIS_REPLY_ERROR)
            rc = store_fail(st, err, MAB_ESTORAGE, "cannot select database %d: %s", st->db,
                            r->str);
        freeReplyObject(r);
    }
    if (rc == MAB_OK) {
        /* Load the script, also after a server restart (which forgets it). */
        const char *argv[3] = {"SCRIPT", "LOAD", APPLY_SCRIPT};
        size_t lens[3] = {6, 4, sizeof APPLY_SCRIPT - 1};
        r = command(st, 3, argv, lens, "cannot load the update script", err);
        if (!r)
            return MAB_ESTORAGE;
        if (r->type == REDIS_REPLY_STRING && r->len == 40) {
            memcpy(st->script_sha, r->str, 41);
            freeReplyObject(r);
            const char *cargv[3] = {"SCRIPT", "LOAD", CLAIM_SCRIPT};
            size_t clens[3] = {6, 4, sizeof CLAIM_SCRIPT - 1};
            r = command(st, 3, cargv, clens, "cannot load the claim script", err);
            if (!r)
                return MAB_ESTORAGE;
            if (r->type == REDIS_REPLY_STRING && r->len == 40)
                memcpy(st->claim_sha, r->str, 41);
            else
                rc = store_fail(st, err, MAB_ESTORAGE, "cannot load the claim script: %s",
                                r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
            if (rc == MAB_OK) {
                freeReplyObject(r);
                const char *bargv[3] = {"SCRIPT", "LOAD", READ_BUCKETS_SCRIPT};
                size_t blens[3] = {6, 4, sizeof READ_BUCKETS_SCRIPT - 1};
                r = command(st, 3, bargv, blens, "cannot load the bucket script", err);
                if (!r)
                    return MAB_ESTORAGE;
                if (r->type == REDIS_REPLY_STRING && r->len == 40)
                    memcpy(st->read_sha, r->str, 41);
                else
                    rc = store_fail(st, err, MAB_ESTORAGE, "cannot load the bucket script: %s",
                                    r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
            }
        }
        else if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOAUTH", 6) == 0)
            rc = store_fail(st, err, MAB_ESTORAGE,
                            "the server needs a password (set password_file): %s", r->str);
        else
            rc = store_fail(st, err, MAB_ESTORAGE, "cannot load the update script: %s",
                            r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        freeReplyObject(r);
    }
    if (rc != MAB_OK)
        disconnect(st);
    return rc;
}

/* ---- keys ------------------------------------------------------------------ */

/* PREFIX{E}SUFFIX into out (cap at least KEY_MAX; ids and the prefix are
   checked to fit), its length returned: by copies, not snprintf, as a full
   read builds a key per experiment. */
static size_t key_of(const redis_store *st, const char *experiment, const char *suffix,
                     char *out, size_t cap)
{
    size_t p = strlen(st->prefix), e = strlen(experiment), s = strlen(suffix);
    if (p + e + s + 3 > cap) { /* not reached for checked ids; cut, never overrun */
        snprintf(out, cap, "%s{%s}%s", st->prefix, experiment, suffix);
        return strlen(out);
    }
    memcpy(out, st->prefix, p);
    out[p] = '{';
    memcpy(out + p + 1, experiment, e);
    out[p + 1 + e] = '}';
    memcpy(out + p + 2 + e, suffix, s + 1);
    return p + e + s + 2;
}

static void totals_key(const redis_store *st, const char *experiment, char *out, size_t cap)
{
    key_of(st, experiment, ":totals", out, cap);
}

static void writers_key(const redis_store *st, const char *experiment, char *out, size_t cap)
{
    key_of(st, experiment, ":writers", out, cap);
}

static void stats_key(const redis_store *st, const char *experiment, char *out, size_t cap)
{
    snprintf(out, cap, "%s{%s}:stats", st->prefix, experiment);
}

static void buckets_key(const redis_store *st, const char *experiment, char *out, size_t cap)
{
    snprintf(out, cap, "%s{%s}:buckets", st->prefix, experiment);
}

/* A bucket's hash is this prefix followed by the bucket start. */
static void bucket_key_prefix(const redis_store *st, const char *experiment, char *out,
                              size_t cap)
{
    snprintf(out, cap, "%s{%s}:b:", st->prefix, experiment);
}

/* ---- the ledger ------------------------------------------------------------ */

static int signed_totals_zero(const signed_totals *t)
{
    return t->pulls == 0 && t->rewards == 0 && t->reward_sum == 0 && t->reward_sum_sq == 0;
}

static void signed_totals_add(signed_totals *t, const signed_totals *plus)
{
    t->pulls += plus->pulls;
    t->rewards += plus->rewards;
    t->reward_sum += plus->reward_sum;
    t->reward_sum_sq += plus->reward_sum_sq;
}

static void signed_totals_sub(signed_totals *t, const signed_totals *minus)
{
    t->pulls -= minus->pulls;
    t->rewards -= minus->rewards;
    t->reward_sum -= minus->reward_sum;
    t->reward_sum_sq -= minus->reward_sum_sq;
}

/* An entry's slot: the counters, or for KIND_STATS the values. */
static signed_totals *slot_totals(arm_ledger *a, enum slot s)
{
    return s == CREDIT ? &a->credit : s == DOUBT ? &a->doubt : &a->op;
}

static double *slot_values(arm_ledger *a, enum slot s)
{
    return a->v + (size_t)s * a->n_values;
}

static int entry_zero(arm_ledger *a, enum slot s)
{
    if (a->kind != KIND_STATS)
        return signed_totals_zero(slot_totals(a, s));
    const double *v = slot_values(a, s);
    for (size_t j = 0; j < a->n_values; j++)
        if (v[j] != 0)
            return 0;
    return 1;
}

static void entry_clear(arm_ledger *a, enum slot s)
{
    memset(slot_totals(a, s), 0, sizeof(signed_totals));
    if (a->kind == KIND_STATS)
        memset(slot_values(a, s), 0, a->n_values * sizeof(double));
}

/* dst += src (sign 1) or dst -= src (sign -1); src unchanged. */
static void entry_add(arm_ledger *a, enum slot dst, enum slot src, int sign)
{
    if (sign > 0)
        signed_totals_add(slot_totals(a, dst), slot_totals(a, src));
    else
        signed_totals_sub(slot_totals(a, dst), slot_totals(a, src));
    if (a->kind == KIND_STATS) {
        double *d = slot_values(a, dst);
        const double *v = slot_values(a, src);
        for (size_t j = 0; j < a->n_values; j++)
            d[j] += sign > 0 ? v[j] : -v[j];
    }
}

static uint32_t hash_text(const char *s);

/* By hash (exp_index): a batch of 10^5 experiments looked each up in a list
   was 5 * 10^9 string compares. */
static exp_ledger *exp_find(redis_store *st, const char *experiment)
{
    if (st->last_exp < st->n_exps && strcmp(st->exps[st->last_exp].experiment, experiment) == 0)
        return &st->exps[st->last_exp];
    if (!st->exp_index_cap)
        return NULL;
    size_t mask = st->exp_index_cap - 1;
    for (size_t h = hash_text(experiment) & mask; st->exp_index[h]; h = (h + 1) & mask) {
        size_t i = st->exp_index[h] - 1;
        if (strcmp(st->exps[i].experiment, experiment) == 0) {
            st->last_exp = i;
            return &st->exps[i];
        }
    }
    return NULL;
}

/* Room in exp_index for one more experiment (rebuilt at twice the size). */
static int exp_index_reserve(redis_store *st)
{
    if (2 * (st->n_exps + 1) <= st->exp_index_cap)
        return 0;
    size_t cap = st->exp_index_cap ? 2 * st->exp_index_cap : 16;
    uint32_t *index = calloc(cap, sizeof *index);
    if (!index)
        return -1;
    for (size_t i = 0; i < st->n_exps; i++) {
        size_t h = hash_text(st->exps[i].experiment) & (cap - 1);
        while (index[h])
            h = (h + 1) & (cap - 1);
        index[h] = (uint32_t)(i + 1);
    }
    free(st->exp_index);
    st->exp_index = index;
    st->exp_index_cap = cap;
    return 0;
}

static uint32_t hash_text(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

static exp_ledger *exp_get(redis_store *st, const char *experiment)
{
    exp_ledger *x = exp_find(st, experiment);
    if (x)
        return x;
    if (st->n_exps == st->cap_exps) {
        size_t cap = st->cap_exps ? 2 * st->cap_exps : 8;
        exp_ledger *grown = realloc(st->exps, cap * sizeof *grown);
        if (!grown)
            return NULL;
        st->exps = grown;
        st->cap_exps = cap;
    }
    if (st->n_exps >= UINT32_MAX - 1 || exp_index_reserve(st) != 0)
        return NULL;
    char *name = strdup(experiment);
    if (!name)
        return NULL;
    size_t mask = st->exp_index_cap - 1, h = hash_text(name) & mask;
    while (st->exp_index[h])
        h = (h + 1) & mask;
    st->exp_index[h] = (uint32_t)(st->n_exps + 1);
    x = &st->exps[st->n_exps++];
    memset(x, 0, sizeof *x);
    x->experiment = name;
    return x;
}

static arm_ledger *arm_find(exp_ledger *x, const char *arm)
{
    if (!x->index_cap)
        return NULL;
    for (size_t b = hash_text(arm) & (x->index_cap - 1);; b = (b + 1) & (x->index_cap - 1)) {
        uint32_t at = x->index[b];
        if (!at)
            return NULL;
        if (strcmp(x->arms[at - 1].arm, arm) == 0)
            return &x->arms[at - 1];
    }
}

/* Make room in the index for one more arm. */
static int index_grow(exp_ledger *x)
{
    if (2 * (x->n_arms + 1) <= x->index_cap)
        return 1;
    size_t cap = x->index_cap ? 2 * x->index_cap : 16;
    uint32_t *index = calloc(cap, sizeof *index);
    if (!index)
        return 0;
    for (size_t i = 0; i < x->n_arms; i++) {
        size_t b = hash_text(x->arms[i].arm) & (cap - 1);
        while (index[b])
            b = (b + 1) & (cap - 1);
        index[b] = (uint32_t)i + 1;
    }
    free(x->index);
    x->index = index;
    x->index_cap = cap;
    return 1;
}

static arm_ledger *arm_get(exp_ledger *x, const char *arm)
{
    arm_ledger *a = arm_find(x, arm);
    if (a)
        return a;
    if (x->n_arms == x->cap_arms) {
        size_t cap = x->cap_arms ? 2 * x->cap_arms : 8;
        arm_ledger *grown = realloc(x->arms, cap * sizeof *grown);
        if (!grown)
            return NULL;
        x->arms = grown;
        x->cap_arms = cap;
    }
    char *name = strdup(arm);
    if (!name || !index_grow(x)) {
        free(name);
        return NULL;
    }
    size_t b = hash_text(arm) & (x->index_cap - 1);
    while (x->index[b])
        b = (b + 1) & (x->index_cap - 1);
    x->index[b] = (uint32_t)x->n_arms + 1;
    a = &x->arms[x->n_arms++];
    memset(a, 0, sizeof *a);
    a->arm = name;
    return a;
}

/* Forget the credit and doubt of one experiment (its keys were deleted);
   the experiment stays listed, for the courtesy at close. */
static void exp_forget(exp_ledger *x)
{
    for (size_t i = 0; i < x->n_arms; i++) {
        free(x->arms[i].arm);
        free(x->arms[i].id);
        free(x->arms[i].layout);
        free(x->arms[i].v);
    }
    free(x->arms);
    free(x->index);
    x->arms = NULL;
    x->index = NULL;
    x->n_arms = x->cap_arms = x->index_cap = 0;
    x->doubt_seq = 0;
}

/* Drop the entries of buckets and statistics that hold nothing any more
   (no call of the experiment is in doubt, no credit): one is made per
   record a batch touches, so that a long run does not keep one per arm and
   hour. Only once they outnumber 256, so that most batches skip it. */
static void compact(exp_ledger *x)
{
    size_t records = 0;
    for (size_t i = 0; i < x->n_arms; i++)
        records += x->arms[i].kind != KIND_ARM;
    if (records <= 256 || x->doubt_seq)
        return;
    size_t kept = 0;
    for (size_t i = 0; i < x->n_arms; i++) {
        arm_ledger *a = &x->arms[i];
        if (a->kind != KIND_ARM && entry_zero(a, CREDIT)) {
            free(a->arm);
            free(a->id);
            free(a->layout);
            free(a->v);
            continue;
        }
        x->arms[kept++] = *a;
    }
    x->n_arms = kept;
    memset(x->index, 0, x->index_cap * sizeof *x->index);
    for (size_t i = 0; i < x->n_arms; i++) {
        size_t b = hash_text(x->arms[i].arm) & (x->index_cap - 1);
        while (x->index[b])
            b = (b + 1) & (x->index_cap - 1);
        x->index[b] = (uint32_t)i + 1;
    }
}

/* The entry of a statistics record (arm "" for the experiment's own); NULL
   when out of memory. *clash is set when the entry exists with another
   number of values (a caller's error: the layout tag fixes the count). */
static arm_ledger *stats_get(exp_ledger *x, const char *layout, const char *arm,
                             size_t n_values, int *clash)
{
    char key[2 * ID_MAX + 8];
    snprintf(key, sizeof key, "s|%s|%s", layout, arm);
    *clash = 0;
    arm_ledger *a = arm_find(x, key);
    if (a) {
        *clash = a->n_values != n_values;
        return a;
    }
    double *v = calloc(3 * (n_values ? n_values : 1), sizeof *v);
    char *id = strdup(arm), *tag = strdup(layout);
    if (!v || !id || !tag || !(a = arm_get(x, key))) {
        free(v);
        free(id);
        free(tag);
        return NULL;
    }
    a->kind = KIND_STATS;
    a->id = id;
    a->layout = tag;
    a->n_values = n_values;
    a->v = v;
    return a;
}

/* The entry of an arm's bucket; NULL when out of memory. */
static arm_ledger *bucket_get(exp_ledger *x, int64_t bucket, const char *arm)
{
    char key[ID_MAX + 32];
    snprintf(key, sizeof key, "b|%" PRId64 "|%s", bucket, arm);
    arm_ledger *a = arm_find(x, key);
    if (a)
        return a;
    char *id = strdup(arm);
    if (!id || !(a = arm_get(x, key))) {
        free(id);
        return NULL;
    }
    a->kind = KIND_BUCKET;
    a->id = id;
    a->bucket = bucket;
    return a;
}

/* ---- one script call per experiment ------------------------------------------ */

/* Increments are the script's arguments: "%.17g" gives back the same double. */
enum which { SEND_OP, SEND_DOUBT };

static int compare_int64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/*
 * Append one EVALSHA for experiment x with the op (or doubt) increments of
 * its entries: counters, statistics and buckets (APPLY_SCRIPT's arguments).
 * Bucket maintenance follows st->keep_from and st->expire_offset.
 */
static int append_call(redis_store *st, exp_ledger *x, enum which which, int64_t seq,
                       mab_error *err)
{
    enum slot s = which == SEND_OP ? OP : DOUBT;
    size_t n_arms = 0, n_fields = 0, n_bucket = 0;
    for (size_t i = 0; i < x->n_arms; i++) {
        arm_ledger *a = &x->arms[i];
        if (entry_zero(a, s))
            continue;
        if (a->kind == KIND_ARM)
            n_arms++;
        else if (a->kind == KIND_BUCKET)
            n_bucket++;
        else
            for (size_t j = 0; j < a->n_values; j++)
                n_fields += slot_values(a, s)[j] != 0;
    }
    /* The distinct buckets, sorted: their keys are KEYS[5..]. */
    int64_t *starts = malloc((n_bucket ? n_bucket : 1) * sizeof *starts);
    size_t n_starts = 0;
    for (size_t i = 0; starts && i < x->n_arms; i++)
        if (x->arms[i].kind == KIND_BUCKET && !entry_zero(&x->arms[i], s))
            starts[n_starts++] = x->arms[i].bucket;
    if (starts && n_starts) {
        qsort(starts, n_starts, sizeof *starts, compare_int64);
        size_t u = 1;
        for (size_t i = 1; i < n_starts; i++)
            if (starts[i] != starts[u - 1])
                starts[u++] = starts[i];
        n_starts = u;
    }
    size_t argc = 3 + 6 + n_starts + 11 + 5 * n_arms + 2 * n_fields + 7 * n_bucket;
    const char **argv = malloc(argc * sizeof *argv);
    size_t *lens = malloc(argc * sizeof *lens);
    char *text = malloc((6 + n_starts) * KEY_MAX + 8 * 32 + 64 + n_arms * 4 * 32 +
                        n_fields * (2 * ID_MAX + 64) + n_bucket * 7 * 32);
    if (!starts || !argv || !lens || !text) {
        free(starts);
        free(argv);
        free(lens);
        free(text);
        return store_fail(st, err, MAB_ENOMEM, "out of memory");
    }
    char *p = text;
    size_t k = 0;
#define ARG(s)                                                                       \
    do {                                                                             \
        argv[k] = (s);                                                               \
        lens[k] = strlen(argv[k]);                                                   \
        k++;                                                                         \
    } while (0)
#define ARGF(...)                                                                    \
    do {                                                                             \
        snprintf(p, 2 * ID_MAX + 64, __VA_ARGS__);                                   \
        ARG(p);                                                                      \
        p += strlen(p) + 1;                                                          \
    } while (0)
    ARG("EVALSHA");
    ARG(st->script_sha);
    ARGF("%zu", 6 + n_starts);
    totals_key(st, x->experiment, p, KEY_MAX);
    ARG(p);
    p += strlen(p) + 1;
    writers_key(st, x->experiment, p, KEY_MAX);
    ARG(p);
    p += strlen(p) + 1;
    stats_key(st, x->experiment, p, KEY_MAX);
    ARG(p);
    p += strlen(p) + 1;
    buckets_key(st, x->experiment, p, KEY_MAX);
    ARG(p);
    p += strlen(p) + 1;
    ARG(st->log_key);
    ARG(st->changes_key);
    char bprefix[KEY_MAX];
    bucket_key_prefix(st, x->experiment, bprefix, sizeof bprefix);
    for (size_t b = 0; b < n_starts; b++)
        ARGF("%s%" PRId64, bprefix, starts[b]);
    ARG(st->writer);
    ARGF("%" PRId64, seq);
    ARGF("%zu", n_arms);
    ARGF("%zu", n_fields);
    ARGF("%zu", n_bucket);
    if (st->keep_from == INT64_MIN)
        ARG("");
    else
        ARGF("%" PRId64, st->keep_from);
    ARG(bprefix);
    ARGF("%" PRId64, st->keep_from == INT64_MIN ? (int64_t)0 : st->expire_offset);
    next_epoch(st, p, 64);
    ARG(p);
    p += strlen(p) + 1;
    ARG(x->experiment);
    ARGF("%" PRId64, st->change_log_max);
    for (size_t i = 0; i < x->n_arms; i++) {
        arm_ledger *a = &x->arms[i];
        if (a->kind != KIND_ARM || entry_zero(a, s))
            continue;
        const signed_totals *t = slot_totals(a, s);
        ARG(a->arm);
        ARGF("%" PRId64, t->pulls);
        ARGF("%" PRId64, t->rewards);
        ARGF("%.17g", t->reward_sum);
        ARGF("%.17g", t->reward_sum_sq);
    }
    for (size_t i = 0; i < x->n_arms; i++) {
        arm_ledger *a = &x->arms[i];
        if (a->kind != KIND_STATS || entry_zero(a, s))
            continue;
        const double *v = slot_values(a, s);
        for (size_t j = 0; j < a->n_values; j++)
            if (v[j] != 0) {
                ARGF("%s|%s|%zu", a->layout, a->id, j);
                ARGF("%.17g", v[j]);
            }
    }
    for (size_t i = 0; i < x->n_arms; i++) {
        arm_ledger *a = &x->arms[i];
        if (a->kind != KIND_BUCKET || entry_zero(a, s))
            continue;
        const int64_t *at = bsearch(&a->bucket, starts, n_starts, sizeof *starts, compare_int64);
        const signed_totals *t = slot_totals(a, s);
        ARGF("%zu", (size_t)(at - starts) + 1);
        ARGF("%" PRId64, a->bucket);
        ARG(a->id);
        ARGF("%" PRId64, t->pulls);
        ARGF("%" PRId64, t->rewards);
        ARGF("%.17g", t->reward_sum);
        ARGF("%.17g", t->reward_sum_sq);
    }
#undef ARG
#undef ARGF
    int ok = redisAppendCommandArgv(st->ctx, (int)k, argv, lens) == REDIS_OK;
    free(starts);
    free(argv);
    free(lens);
    free(text);
    if (!ok)
        return store_fail(st, err, MAB_ENOMEM, "out of memory");
    return MAB_OK;
}

/* What one reply says about its call. */
enum outcome { COUNTED, REFUSED, LOST };

/* Read the reply of one call. A REFUSED call changed nothing; err says why. */
static enum outcome read_outcome(redis_store *st, const exp_ledger *x, mab_error *err,
                                 int *noscript)
{
    redisReply *r = NULL;
    if (!st->ctx || redisGetReply(st->ctx, (void **)&r) != REDIS_OK || !r) {
        char why[64];
        store_fail(st, err, MAB_ESTORAGE,
                   "experiment %s: no reply to the update (%s); kept in memory and sent "
                   "again later, counted once",
                   x->experiment,
                   io_reason(st, why, sizeof why));
        disconnect(st);
        return LOST;
    }
    enum outcome out = COUNTED;
    if (r->type == REDIS_REPLY_ERROR) {
        out = REFUSED;
        if (strncmp(r->str, "NOSCRIPT", 8) == 0)
            *noscript = 1;
        int code = strncmp(r->str, "MABTYPE", 7) == 0 || strncmp(r->str, "MABSCHEMA", 9) == 0 ||
                           strncmp(r->str, "MABFIELD", 8) == 0
                       ? MAB_ECORRUPT
                   : strncmp(r->str, "MABRANGE", 8) == 0 ? MAB_ERANGE
                                                         : MAB_ESTORAGE;
        const char *text = r->str;
        if (code != MAB_ESTORAGE && strchr(text, ' '))
            text = strchr(text, ' ') + 1;
        /* Lua error replies carry a "script: ..." suffix: keep them short. */
        store_fail(st, err, code, "experiment %s: update refused, nothing written: %s",
                   x->experiment, text);
    } else if (r->type != REDIS_REPLY_INTEGER) {
        out = REFUSED;
        store_fail(st, err, MAB_ESTORAGE, "experiment %s: unexpected reply to the update",
                   x->experiment);
    }
    freeReplyObject(r);
    return out;
}

/* ---- apply ------------------------------------------------------------------- */

static int check_deltas(const redis_store *st, const mab_delta *deltas, size_t n,
                        mab_error *err)
{
    if (n && !deltas)
        return store_fail(st, err, MAB_EINVAL, "apply: NULL batch");
    for (size_t i = 0; i < n; i++) {
        const mab_delta *d = &deltas[i];
        if (!d->experiment || !d->arm || !d->experiment[0] || !d->arm[0])
            return store_fail(st, err, MAB_EINVAL, "apply: delta %zu has no experiment or arm",
                              i);
        if (strlen(d->experiment) > ID_MAX || strlen(d->arm) > ID_MAX ||
            strpbrk(d->experiment, "{}:") || strchr(d->arm, ':'))
            return store_fail(st, err, MAB_EINVAL, "apply: \"%s\"/\"%s\" is not a valid id",
                              d->experiment, d->arm);
        if (!isfinite(d->add.reward_sum) || !isfinite(d->add.reward_sum_sq))
            return store_fail(st, err, MAB_EINVAL, "apply: %s/%s: reward is not finite",
                              d->experiment, d->arm);
        if (d->add.pulls > INT64_MAX || d->add.rewards > INT64_MAX)
            return store_fail(st, err, MAB_ERANGE, "apply: %s/%s: count out of range",
                              d->experiment, d->arm);
    }
    return MAB_OK;
}

/* A layout tag or id this plugin can key: no separator of its fields. */
static int keyable(const char *s, const char *forbidden)
{
    return s && strlen(s) <= ID_MAX && !strpbrk(s, forbidden);
}

static int check_stats(const redis_store *st, const mab_stats_delta *stats, size_t n,
                       mab_error *err)
{
    if (n && !stats)
        return store_fail(st, err, MAB_EINVAL, "apply_stats: NULL batch");
    for (size_t i = 0; i < n; i++) {
        const mab_stats_delta *d = &stats[i];
        if (!d->experiment || !d->experiment[0] || !d->layout || !d->layout[0] ||
            (d->n_values && !d->values))
            return store_fail(st, err, MAB_EINVAL,
                              "apply_stats: statistics %zu lack an experiment, a layout or "
                              "values", i);
        if (!keyable(d->experiment, "{}:|") || (d->arm && (!d->arm[0] || !keyable(d->arm, ":|"))) ||
            !keyable(d->layout, ""))
            return store_fail(st, err, MAB_EINVAL,
                              "apply_stats: %s.%s (layout %s): not a valid id or layout tag "
                              "(at most %d characters)",
                              d->experiment, d->arm ? d->arm : "(experiment)", d->layout,
                              ID_MAX);
        for (size_t j = 0; j < d->n_values; j++)
            if (!isfinite(d->values[j]))
                return store_fail(st, err, MAB_EINVAL,
                                  "apply_stats: %s.%s (layout %s): value %zu is not finite",
                                  d->experiment, d->arm ? d->arm : "(experiment)", d->layout, j);
    }
    return MAB_OK;
}

static int check_buckets(const redis_store *st, const mab_bucket_delta *buckets, size_t n,
                         mab_error *err)
{
    if (n && !buckets)
        return store_fail(st, err, MAB_EINVAL, "apply_buckets: NULL batch");
    for (size_t i = 0; i < n; i++) {
        const mab_bucket_delta *d = &buckets[i];
        mab_delta as = {d->experiment, d->arm, d->add};
        int rc = check_deltas(st, &as, 1, err);
        if (rc != MAB_OK)
            return rc;
        if (strchr(d->arm, '|'))
            return store_fail(st, err, MAB_EINVAL, "apply_buckets: \"%s\" is not a valid arm id",
                              d->arm);
    }
    return MAB_OK;
}

/* Send every in-doubt call again with its own number. Any reply settles
   one: counted (now or before) becomes credit; refused means neither this
   nor the lost call counted (the number was not there). NOSCRIPT (the
   server forgot the script) settles nothing: the reconnect loads it again. */
static int settle_doubt(redis_store *st, mab_error *err)
{
    size_t sent = 0;
    int rc = MAB_OK;
    for (size_t i = 0; i < st->n_exps && rc == MAB_OK; i++)
        if (st->exps[i].doubt_seq) {
            rc = append_call(st, &st->exps[i], SEND_DOUBT, st->exps[i].doubt_seq, err);
            sent++;
        }
    if (rc != MAB_OK)
        disconnect(st); /* drop what was appended */
    if (rc != MAB_OK || sent == 0)
        return rc;
    int first_rc = MAB_OK, noscript = 0;
    for (size_t i = 0; i < st->n_exps; i++) {
        exp_ledger *x = &st->exps[i];
        if (!x->doubt_seq)
            continue;
        int forgot = 0;
        mab_error one;
        enum outcome out = read_outcome(st, x, &one, &forgot);
        noscript |= forgot;
        if (out != COUNTED && first_rc == MAB_OK) {
            if (err)
                *err = one;
            first_rc = one.code;
        }
        if (out == LOST || forgot)
            continue; /* stays in doubt */
        for (size_t a = 0; a < x->n_arms; a++) {
            if (out == COUNTED)
                entry_add(&x->arms[a], CREDIT, DOUBT, 1);
            entry_clear(&x->arms[a], DOUBT);
        }
        x->doubt_seq = 0;
    }
    if (noscript)
        disconnect(st);
    return first_rc;
}

static signed_totals to_signed(const mab_totals *t)
{
    return (signed_totals){(int64_t)t->pulls, (int64_t)t->rewards, t->reward_sum,
                           t->reward_sum_sq};
}

/* One batch of the core: counters, statistics and buckets. */
typedef struct batch {
    const mab_delta *deltas;
    size_t n_deltas;
    const mab_stats_delta *stats;
    size_t n_stats;
    const mab_bucket_delta *buckets;
    size_t n_buckets;
    int64_t keep_from; /* INT64_MIN: no bucket maintenance */
} batch;

/* Note every record of the batch in the ledger (op). Out of memory here
   leaves nothing sent. */
static int note_batch(redis_store *st, const batch *b, mab_error *err)
{
    for (size_t i = 0; i < st->n_exps; i++) {
        st->exps[i].in_batch = 0;
        for (size_t a = 0; a < st->exps[i].n_arms; a++) {
            entry_clear(&st->exps[i].arms[a], OP);
            st->exps[i].arms[a].offered = 0;
        }
    }
    for (size_t i = 0; i < b->n_deltas; i++) {
        exp_ledger *x = exp_get(st, b->deltas[i].experiment);
        arm_ledger *a = x ? arm_get(x, b->deltas[i].arm) : NULL;
        if (!a)
            return store_fail(st, err, MAB_ENOMEM, "out of memory");
        signed_totals add = to_signed(&b->deltas[i].add);
        signed_totals_add(&a->op, &add);
        a->offered = 1;
    }
    for (size_t i = 0; i < b->n_stats; i++) {
        const mab_stats_delta *d = &b->stats[i];
        int clash = 0;
        exp_ledger *x = exp_get(st, d->experiment);
        arm_ledger *a = x ? stats_get(x, d->layout, d->arm ? d->arm : "", d->n_values, &clash)
                          : NULL;
        if (!a)
            return store_fail(st, err, MAB_ENOMEM, "out of memory");
        if (clash)
            return store_fail(st, err, MAB_EINVAL,
                              "apply_stats: %s.%s (layout %s): %zu values, earlier %zu",
                              d->experiment, d->arm ? d->arm : "(experiment)", d->layout,
                              d->n_values, a->n_values);
        double *op = slot_values(a, OP);
        for (size_t j = 0; j < d->n_values; j++)
            op[j] += d->values[j];
        a->offered = 1;
    }
    for (size_t i = 0; i < b->n_buckets; i++) {
        const mab_bucket_delta *d = &b->buckets[i];
        if (b->keep_from != INT64_MIN && d->bucket < b->keep_from)
            continue; /* removed by this very call: nothing to add to */
        exp_ledger *x = exp_get(st, d->experiment);
        arm_ledger *a = x ? bucket_get(x, d->bucket, d->arm) : NULL;
        if (!a)
            return store_fail(st, err, MAB_ENOMEM, "out of memory");
        signed_totals add = to_signed(&d->add);
        signed_totals_add(&a->op, &add);
        a->offered = 1;
    }
    /* Buckets before keep_from are gone (or going): what was credited to
       them no longer means anything. */
    for (size_t i = 0; b->keep_from != INT64_MIN && i < st->n_exps; i++)
        for (size_t a = 0; a < st->exps[i].n_arms; a++) {
            arm_ledger *e = &st->exps[i].arms[a];
            if (e->kind == KIND_BUCKET && e->bucket < b->keep_from) {
                entry_clear(e, OP);
                entry_clear(e, CREDIT);
            }
        }
    return MAB_OK;
}

static int apply_once(redis_store *st, const batch *b, mab_error *err)
{
    int rc = note_batch(st, b, err);
    if (rc != MAB_OK)
        return rc;
    st->keep_from = b->keep_from;
    st->expire_offset = 0;
    if (b->keep_from != INT64_MIN) {
        /* retention = now - keep_from: a bucket's hash expires when the
           retention has passed since its start. */
        int64_t now = (int64_t)time(NULL);
        st->expire_offset = b->keep_from < now - INT64_MAX / 4 ? INT64_MAX / 4
                                                                : now - b->keep_from;
        if (st->expire_offset < 1)
            st->expire_offset = 1;
    }
    pipe_guard guard;
    guard_begin(&guard);
    rc = connect_store(st, err);
    if (rc == MAB_OK)
        rc = settle_doubt(st, err);
    if (rc != MAB_OK) {
        guard_end(&guard);
        return rc;
    }
    /* What to send: the offered increments minus the credit; the credit of
       records not offered again (a failed import) is taken back out. */
    for (size_t i = 0; i < st->n_exps; i++) {
        exp_ledger *x = &st->exps[i];
        for (size_t a = 0; a < x->n_arms; a++) {
            entry_add(&x->arms[a], OP, CREDIT, -1);
            if (!entry_zero(&x->arms[a], OP))
                x->in_batch = 1;
        }
    }
    /* Bucket maintenance reaches the experiments of the batch. */
    for (size_t i = 0; b->keep_from != INT64_MIN && i < b->n_buckets; i++) {
        exp_ledger *x = exp_find(st, b->buckets[i].experiment);
        if (x)
            x->in_batch = 1;
    }
    int64_t seq = ++st->batch_seq;
    size_t sent = 0;
    for (size_t i = 0; i < st->n_exps && rc == MAB_OK; i++)
        if (st->exps[i].in_batch) {
            rc = append_call(st, &st->exps[i], SEND_OP, seq, err);
            sent++;
        }
    if (rc != MAB_OK) {
        disconnect(st);
        guard_end(&guard);
        return rc;
    }
    int first_rc = MAB_OK, noscript = 0;
    for (size_t i = 0; i < st->n_exps && sent; i++) {
        exp_ledger *x = &st->exps[i];
        if (!x->in_batch)
            continue;
        mab_error one;
        enum outcome out = read_outcome(st, x, &one, &noscript);
        if (out != COUNTED && first_rc == MAB_OK) {
            if (err)
                *err = one;
            first_rc = one.code;
        }
        for (size_t a = 0; a < x->n_arms; a++) {
            if (out == COUNTED) {
                entry_add(&x->arms[a], CREDIT, OP, 1);
            } else if (out == LOST) {
                entry_clear(&x->arms[a], DOUBT);
                entry_add(&x->arms[a], DOUBT, OP, 1);
            }
        }
        if (out == LOST)
            x->doubt_seq = seq;
    }
    if (noscript)
        disconnect(st); /* the reconnect loads the script again */
    guard_end(&guard);
    if (first_rc != MAB_OK)
        return first_rc;
    /* Everything the core offered is counted: it drops the batch. */
    for (size_t i = 0; i < st->n_exps; i++) {
        for (size_t a = 0; a < st->exps[i].n_arms; a++)
            entry_clear(&st->exps[i].arms[a], CREDIT);
        compact(&st->exps[i]);
    }
    if (b->keep_from != INT64_MIN && b->keep_from > st->kept_from)
        st->kept_from = b->keep_from;
    return MAB_OK;
}

/* A connection that was open before this call may have died unnoticed (the
   server restarted since): when it breaks, try once more on a new one, so
   that the first reward after a restart is not refused. Sending again is
   what the exactly-once scheme is for. */
static int apply_batch(redis_store *st, const batch *b, mab_error *err)
{
    int rc = check_deltas(st, b->deltas, b->n_deltas, err);
    if (rc == MAB_OK)
        rc = check_stats(st, b->stats, b->n_stats, err);
    if (rc == MAB_OK)
        rc = check_buckets(st, b->buckets, b->n_buckets, err);
    if (rc != MAB_OK)
        return rc;
    int was_connected = st->ctx != NULL;
    rc = apply_once(st, b, err);
    if (rc == MAB_ESTORAGE && was_connected && !st->ctx)
        rc = apply_once(st, b, err);
    return rc;
}

static int redis_apply(void *state, const mab_delta *deltas, size_t n_deltas, mab_error *err)
{
    batch b = {deltas, n_deltas, NULL, 0, NULL, 0, INT64_MIN};
    return apply_batch(state, &b, err);
}

static int redis_apply_stats(void *state, const mab_delta *deltas, size_t n_deltas,
                             const mab_stats_delta *stats, size_t n_stats, mab_error *err)
{
    batch b = {deltas, n_deltas, stats, n_stats, NULL, 0, INT64_MIN};
    return apply_batch(state, &b, err);
}

static int redis_apply_buckets(void *state, const mab_delta *deltas, size_t n_deltas,
                               const mab_stats_delta *stats, size_t n_stats,
                               const mab_bucket_delta *buckets, size_t n_buckets,
                               int64_t keep_from, mab_error *err)
{
    batch b = {deltas, n_deltas, stats, n_stats, buckets, n_buckets, keep_from};
    return apply_batch(state, &b, err);
}

/* ---- reading ------------------------------------------------------------------ */

static int parse_count(const char *s, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end)
        return 0;
    *out = v;
    return 1;
}

static int parse_sum(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || !isfinite(v))
        return 0;
    *out = v;
    return 1;
}

/* One arm's totals as read from the hash. */
typedef struct read_arm {
    const char *arm; /* points into a reply */
    size_t arm_len;
    signed_totals t;
} read_arm;

/* Parse an HGETALL reply of P{E}:totals into arms[]; *n_out arms.
   *arms_out is `small` (the caller's READ_ARMS_SMALL entries) when the
   reply has fewer field-value pairs than that (a record of up to 16 arms:
   four fields each, and "v"), else allocated, and the caller frees it when
   it is not small: a full read parses a reply per experiment. */
#define READ_ARMS_SMALL 66
static int parse_totals(const redis_store *st, const char *key, const redisReply *r,
                        read_arm *small, read_arm **arms_out, size_t *n_out, mab_error *err)
{
    *arms_out = NULL;
    *n_out = 0;
    if (r->type == REDIS_REPLY_ERROR)
        return store_fail(st, err, strncmp(r->str, "WRONGTYPE", 9) == 0 ? MAB_ECORRUPT
                                                                          : MAB_ESTORAGE,
                          "key %s: cannot read: %s", key, r->str);
    if (r->type != REDIS_REPLY_ARRAY || r->elements % 2)
        return store_fail(st, err, MAB_ESTORAGE, "key %s: unexpected reply", key);
    /* Arms by name: open addressing, position + 1 (0: empty). */
    size_t cap = 16;
    while (cap < r->elements + 2)
        cap *= 2;
    uint32_t small_index[4 * READ_ARMS_SMALL];
    int fits = r->elements / 2 + 1 <= READ_ARMS_SMALL &&
               cap <= sizeof small_index / sizeof *small_index;
    read_arm *arms = small;
    uint32_t *index = small_index;
    if (fits) {
        memset(small, 0, (r->elements / 2 + 1) * sizeof *small);
        memset(small_index, 0, cap * sizeof *small_index);
    } else {
        arms = calloc(r->elements / 2 + 1, sizeof *arms);
        index = calloc(cap, sizeof *index);
        if (!arms || !index) {
            free(arms);
            free(index);
            return store_fail(st, err, MAB_ENOMEM, "out of memory");
        }
    }
    size_t n = 0;
    int rc = MAB_OK;
    for (size_t i = 0; rc == MAB_OK && i + 1 < r->elements; i += 2) {
        const redisReply *f = r->element[i], *v = r->element[i + 1];
        if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
            continue;
        if (strcmp(f->str, "v") == 0) {
            if (strcmp(v->str, "1") != 0)
                rc = store_fail(st, err, MAB_ECORRUPT,
                                "key %s has schema version %s; this plugin reads version 1",
                                key, v->str);
            continue;
        }
        const char *colon = strrchr(f->str, ':');
        if (!colon || colon == f->str) {
            rc = store_fail(st, err, MAB_ECORRUPT,
                            "key %s: field \"%s\" was not written by mab", key, f->str);
            break;
        }
        size_t arm_len = (size_t)(colon - f->str);
        uint32_t h = 2166136261u;
        for (size_t k = 0; k < arm_len; k++)
            h = (h ^ (uint8_t)f->str[k]) * 16777619u;
        read_arm *a = NULL;
        size_t b = h & (cap - 1);
        for (; index[b] && !a; b = (b + 1) & (cap - 1)) {
            read_arm *c = &arms[index[b] - 1];
            if (c->arm_len == arm_len && memcmp(c->arm, f->str, arm_len) == 0)
                a = c;
        }
        if (!a) {
            index[b] = (uint32_t)n + 1;
            a = &arms[n++];
            a->arm = f->str;
            a->arm_len = arm_len;
        }
        const char *name = colon + 1;
        int ok;
        if (strcmp(name, "pulls") == 0)
            ok = parse_count(v->str, &a->t.pulls) && a->t.pulls >= 0;
        else if (strcmp(name, "rewards") == 0)
            ok = parse_count(v->str, &a->t.rewards) && a->t.rewards >= 0;
        else if (strcmp(name, "reward_sum") == 0)
            ok = parse_sum(v->str, &a->t.reward_sum);
        else if (strcmp(name, "reward_sum_sq") == 0)
            ok = parse_sum(v->str, &a->t.reward_sum_sq);
        else
            ok = 0;
        if (!ok)
            rc = store_fail(st, err, MAB_ECORRUPT,
                            "key %s: field \"%s\" holds \"%.40s\", not a %s", key, f->str,
                            v->str,
                            strcmp(name, "pulls") == 0 || strcmp(name, "rewards") == 0
                                ? "whole count"
                                : "finite number (or is not a mab field)");
    }
    if (!fits)
        free(index);
    if (rc != MAB_OK) {
        if (!fits)
            free(arms);
        return rc;
    }
    *arms_out = arms;
    *n_out = n;
    return MAB_OK;
}

/* The stored totals of an arm as the core must see them: minus the credit,
   minus the in-doubt increments when the in-doubt call was counted. */
static mab_totals as_seen(const exp_ledger *x, const char *arm, signed_totals t,
                          int64_t writer_seq)
{
    const arm_ledger *a = x ? arm_find((exp_ledger *)x, arm) : NULL;
    if (a) {
        signed_totals_sub(&t, &a->credit);
        if (x->doubt_seq && writer_seq >= x->doubt_seq)
            signed_totals_sub(&t, &a->doubt);
    }
    return (mab_totals){t.pulls > 0 ? (uint64_t)t.pulls : 0, t.rewards > 0 ? (uint64_t)t.rewards : 0,
                        t.reward_sum, t.reward_sum_sq > 0 ? t.reward_sum_sq : 0};
}

/* Whether reading experiment's totals needs a consistent snapshot with this
   writer's batch number there: only for an experiment with increments in
   doubt (as_seen). Both halves of a read ask, and nothing between them
   changes the ledger (they run inside one call of the plugin). */
static int read_needs_snapshot(redis_store *st, const char *experiment)
{
    const exp_ledger *x = exp_find(st, experiment);
    return x && x->doubt_seq;
}

/*
 * Read one experiment: HGETALL totals and HGET writers WRITER, pipelined
 * (one round trip). The batch number is what says whether increments in
 * doubt were counted, and only then must it be read with the totals in one
 * snapshot: for an experiment with increments in doubt the two are sent in
 * a MULTI ... EXEC. For the others (every experiment of the full read at
 * open: a new writer has nothing in doubt) the HGET only checks the
 * writers key, which this writer's batches will write: a key of another
 * type is refused at the read rather than at the first write. A MULTI of
 * four cost the server 6 us a read, against 4 us for the two commands.
 * Calls visit(ctx, arm, totals) for each arm found. In two halves, the
 * commands sent (buffered, not yet written) and their replies read, so
 * that a scan can keep many experiments' reads in flight (read_pipelined).
 */
static int read_experiment_send(redis_store *st, const char *experiment, mab_error *err)
{
    char tkey[KEY_MAX], wkey[KEY_MAX];
    size_t tlen = key_of(st, experiment, ":totals", tkey, sizeof tkey);
    size_t wlen = key_of(st, experiment, ":writers", wkey, sizeof wkey);
    int rc = connect_store(st, err);
    if (rc != MAB_OK)
        return rc;
    const char *get[2] = {"HGETALL", tkey}, *hget[3] = {"HGET", wkey, st->writer};
    size_t get_lens[2] = {7, tlen}, hget_lens[3] = {4, wlen, strlen(st->writer)};
    const char *multi[1] = {"MULTI"}, *exec[1] = {"EXEC"};
    size_t multi_len[1] = {5}, exec_len[1] = {4};
    int snapshot = read_needs_snapshot(st, experiment);
    if ((snapshot && redisAppendCommandArgv(st->ctx, 1, multi, multi_len) != REDIS_OK) ||
        redisAppendCommandArgv(st->ctx, 2, get, get_lens) != REDIS_OK ||
        redisAppendCommandArgv(st->ctx, 3, hget, hget_lens) != REDIS_OK ||
        (snapshot && redisAppendCommandArgv(st->ctx, 1, exec, exec_len) != REDIS_OK))
        return append_failed(st, tkey, err);
    return MAB_OK;
}

/* The replies to read_experiment_send's commands, visited. */
static int read_experiment_reply(redis_store *st, const char *experiment,
                                 int (*visit)(void *ctx, const char *experiment,
                                              const char *arm, const mab_totals *t),
                                 void *ctx, mab_error *err)
{
    char tkey[KEY_MAX], wkey[KEY_MAX];
    totals_key(st, experiment, tkey, sizeof tkey);
    int snapshot = read_needs_snapshot(st, experiment);
    int n_replies = snapshot ? 4 : 2;
    int rc = MAB_OK;
    redisReply *replies[4] = {NULL, NULL, NULL, NULL};
    for (int i = 0; i < n_replies; i++) {
        if (redisGetReply(st->ctx, (void **)&replies[i]) != REDIS_OK || !replies[i]) {
            char why[64];
            rc = store_fail(st, err, MAB_ESTORAGE, "cannot read key %s: %s", tkey,
                            io_reason(st, why, sizeof why));
            for (int k = 0; k < i; k++)
                freeReplyObject(replies[k]);
            disconnect(st);
            return rc;
        }
    }
    const redisReply *totals = replies[0], *w = replies[1];
    if (snapshot) {
        const redisReply *exec = replies[3];
        if (replies[0]->type == REDIS_REPLY_ERROR)
            rc = store_fail(st, err, MAB_ESTORAGE, "cannot read key %s: %s", tkey,
                            replies[0]->str);
        else if (exec->type == REDIS_REPLY_ERROR)
            rc = store_fail(st, err, MAB_ESTORAGE, "cannot read key %s: %s", tkey, exec->str);
        else if (exec->type != REDIS_REPLY_ARRAY || exec->elements != 2)
            rc = store_fail(st, err, MAB_ESTORAGE, "cannot read key %s: unexpected reply",
                            tkey);
        else {
            totals = exec->element[0];
            w = exec->element[1];
        }
    }
    int64_t writer_seq = 0;
    if (rc == MAB_OK) {
        writers_key(st, experiment, wkey, sizeof wkey);
        if (w->type == REDIS_REPLY_ERROR)
            rc = store_fail(st, err,
                            strncmp(w->str, "WRONGTYPE", 9) == 0 ? MAB_ECORRUPT : MAB_ESTORAGE,
                            "key %s: cannot read: %s", wkey, w->str);
        else if (w->type == REDIS_REPLY_STRING && !parse_count(w->str, &writer_seq))
            rc = store_fail(st, err, MAB_ECORRUPT, "key %s: field %s is not a batch number",
                            wkey, st->writer);
    }
    read_arm small[READ_ARMS_SMALL];
    read_arm *arms = NULL;
    size_t n = 0;
    if (rc == MAB_OK)
        rc = parse_totals(st, tkey, totals, small, &arms, &n, err);
    const exp_ledger *x = rc == MAB_OK ? exp_find(st, experiment) : NULL;
    char arm[ID_MAX + 1];
    for (size_t i = 0; rc == MAB_OK && i < n; i++) {
        if (arms[i].arm_len > ID_MAX) {
            rc = store_fail(st, err, MAB_ECORRUPT, "key %s: an arm id is too long", tkey);
            break;
        }
        memcpy(arm, arms[i].arm, arms[i].arm_len);
        arm[arms[i].arm_len] = '\0';
        mab_totals t = as_seen(x, arm, arms[i].t, writer_seq);
        rc = visit(ctx, experiment, arm, &t);
    }
    if (arms != small)
        free(arms);
    for (int i = 0; i < n_replies; i++)
        freeReplyObject(replies[i]);
    return rc;
}

static int read_experiment(redis_store *st, const char *experiment,
                           int (*visit)(void *ctx, const char *experiment, const char *arm,
                                        const mab_totals *t),
                           void *ctx, mab_error *err)
{
    int rc = read_experiment_send(st, experiment, err);
    return rc == MAB_OK ? read_experiment_reply(st, experiment, visit, ctx, err) : rc;
}

struct load_ctx {
    const char *const *arm_ids;
    size_t n_arms;
    mab_totals *out;
};

static int load_one(void *ctx, const char *experiment, const char *arm, const mab_totals *t)
{
    (void)experiment;
    struct load_ctx *x = ctx;
    for (size_t i = 0; i < x->n_arms; i++)
        if (x->arm_ids[i] && strcmp(x->arm_ids[i], arm) == 0)
            x->out[i] = *t;
    return 0;
}

static int redis_load(void *state, const char *experiment, const char *const *arm_ids,
                      size_t n_arms, mab_totals *out, mab_error *err)
{
    redis_store *st = state;
    if (!experiment || (n_arms && (!arm_ids || !out)))
        return store_fail(st, err, MAB_EINVAL, "load: NULL argument");
    mab_totals *totals = calloc(n_arms ? n_arms : 1, sizeof *totals);
    if (!totals)
        return store_fail(st, err, MAB_ENOMEM, "out of memory");
    struct load_ctx x = {arm_ids, n_arms, totals};
    pipe_guard guard;
    guard_begin(&guard);
    int was_connected = st->ctx != NULL;
    int rc = read_experiment(st, experiment, load_one, &x, err);
    if (rc == MAB_ESTORAGE && was_connected && !st->ctx) /* see redis_apply */
        rc = read_experiment(st, experiment, load_one, &x, err);
    guard_end(&guard);
    /* All or nothing: out keeps its contents when the read fails. */
    if (rc == MAB_OK)
        memcpy(out, totals, n_arms * sizeof *out);
    free(totals);
    return rc;
}

/* ---- scan ---------------------------------------------------------------------- */

/* The prefix with glob characters escaped, for SCAN MATCH. */
static void glob_escape(const char *in, char *out, size_t cap)
{
    size_t n = 0;
    for (; *in && n + 3 < cap; in++) {
        if (strchr("*?[]\\", *in))
            out[n++] = '\\';
        out[n++] = *in;
    }
    out[n] = '\0';
}

struct scan_visit {
    int (*visit)(void *ctx, const char *experiment, const char *arm, const mab_totals *t);
    void *ctx;
};

static int scan_one(void *ctx, const char *experiment, const char *arm, const mab_totals *t)
{
    struct scan_visit *v = ctx;
    return v->visit(v->ctx, experiment, arm, t);
}

/* Experiment names found by SCAN, sorted for a stable order. */
static int compare_names(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The experiments that have a key PREFIX{E}SUFFIX (SCAN), sorted, without
   repeats. Called with SIGPIPE guarded. */
static int list_experiments(redis_store *st, const char *suffix, char ***names_out,
                            size_t *n_out, mab_error *err)
{
    char pattern[2 * PREFIX_MAX + 32];
    glob_escape(st->prefix, pattern, sizeof pattern - 24);
    strcat(pattern, "{*}");
    strcat(pattern, suffix);
    int rc = connect_store(st, err);
    char **names = NULL;
    size_t n = 0, cap = 0;
    char cursor[32] = "0";
    size_t plen = strlen(st->prefix), slen = strlen(suffix);
    do {
        if (rc != MAB_OK)
            break;
        const char *argv[6] = {"SCAN", cursor, "MATCH", pattern, "COUNT", "1000"};
        size_t lens[6] = {4, strlen(cursor), 5, strlen(pattern), 5, 4};
        redisReply *r = command(st, 6, argv, lens, "cannot list the experiments", err);
        if (!r) {
            rc = MAB_ESTORAGE;
            break;
        }
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
            r->element[0]->type != REDIS_REPLY_STRING ||
            r->element[1]->type != REDIS_REPLY_ARRAY) {
            rc = store_fail(st, err, MAB_ESTORAGE, "cannot list the experiments: %s",
                            r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
            freeReplyObject(r);
            break;
        }
        snprintf(cursor, sizeof cursor, "%s", r->element[0]->str);
        const redisReply *keys = r->element[1];
        for (size_t i = 0; i < keys->elements && rc == MAB_OK; i++) {
            const char *key = keys->element[i]->str;
            size_t len = keys->element[i]->len;
            /* PREFIX{E}SUFFIX, E without braces */
            if (len < plen + 3 + slen || key[plen] != '{')
                continue;
            size_t elen = len - plen - 2 - slen;
            char *name = strndup(key + plen + 1, elen);
            if (!name || (n == cap && !(names = realloc(names, (cap = cap ? 2 * cap : 16) *
                                                                   sizeof *names)))) {
                free(name);
                rc = store_fail(st, err, MAB_ENOMEM, "out of memory");
                break;
            }
            if (strpbrk(name, "{}")) {
                free(name);
                continue;
            }
            names[n++] = name;
        }
        freeReplyObject(r);
    } while (rc == MAB_OK && strcmp(cursor, "0") != 0);
    size_t u = 0;
    if (n) {
        qsort(names, n, sizeof *names, compare_names);
        for (size_t i = 0; i < n; i++) {
            if (u && strcmp(names[i], names[u - 1]) == 0) /* SCAN may repeat a key */
                free(names[i]);
            else
                names[u++] = names[i];
        }
    }
    *names_out = names;
    *n_out = u;
    return rc;
}

static void free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

static int scan_send(redis_store *st, const char *name, void *arg, mab_error *err)
{
    (void)arg;
    return read_experiment_send(st, name, err);
}

static int scan_reply(redis_store *st, const char *name, void *arg, mab_error *err)
{
    return read_experiment_reply(st, name, scan_one, arg, err);
}

static int redis_scan(void *state,
                      int (*visit)(void *ctx, const char *experiment, const char *arm,
                                   const mab_totals *totals),
                      void *ctx, mab_error *err)
{
    redis_store *st = state;
    pipe_guard guard;
    guard_begin(&guard);
    char **names = NULL;
    size_t n = 0;
    int rc = list_experiments(st, ":totals", &names, &n, err);
    struct scan_visit v = {visit, ctx};
    pipelined_read r = {scan_send, scan_reply, &v};
    if (rc == MAB_OK)
        rc = read_pipelined(st, names, n, &r, err);
    guard_end(&guard);
    free_names(names, n);
    return rc;
}

/* ---- policy statistics (ABI 1.4) ---------------------------------------------- */

/* Send MULTI, the command, HGET writers WRITER, EXEC and read the replies:
   *exec is the EXEC reply (2 elements), *writer_seq this writer's number
   there. On error nothing is left to free. In two halves, as
   read_experiment (read_pipelined). */
static int read_with_writer_send(redis_store *st, const char *experiment, int argc,
                                 const char **argv, const size_t *lens, const char *key,
                                 mab_error *err)
{
    char wkey[KEY_MAX];
    writers_key(st, experiment, wkey, sizeof wkey);
    int rc = connect_store(st, err);
    if (rc != MAB_OK)
        return rc;
    if (redisAppendCommand(st->ctx, "MULTI") != REDIS_OK ||
        redisAppendCommandArgv(st->ctx, argc, argv, lens) != REDIS_OK ||
        redisAppendCommand(st->ctx, "HGET %s %s", wkey, st->writer) != REDIS_OK ||
        redisAppendCommand(st->ctx, "EXEC") != REDIS_OK)
        return append_failed(st, key, err);
    return MAB_OK;
}

/* The replies to read_with_writer_send's commands. */
static int read_with_writer_reply(redis_store *st, const char *experiment, const char *key,
                                  redisReply **exec_out, int64_t *writer_seq, mab_error *err)
{
    char wkey[KEY_MAX];
    writers_key(st, experiment, wkey, sizeof wkey);
    *exec_out = NULL;
    *writer_seq = 0;
    int rc = MAB_OK;
    redisReply *replies[4] = {NULL, NULL, NULL, NULL};
    for (int i = 0; i < 4; i++) {
        if (redisGetReply(st->ctx, (void **)&replies[i]) != REDIS_OK || !replies[i]) {
            char why[64];
            rc = store_fail(st, err, MAB_ESTORAGE, "cannot read key %s: %s", key,
                            io_reason(st, why, sizeof why));
            for (int k = 0; k < i; k++)
                freeReplyObject(replies[k]);
            disconnect(st);
            return rc;
        }
    }
    redisReply *exec = replies[3];
    if (replies[0]->type == REDIS_REPLY_ERROR)
        rc = store_fail(st, err, MAB_ESTORAGE, "cannot read key %s: %s", key, replies[0]->str);
    else if (exec->type == REDIS_REPLY_ERROR)
        rc = store_fail(st, err, MAB_ESTORAGE, "cannot read key %s: %s", key, exec->str);
    else if (exec->type != REDIS_REPLY_ARRAY || exec->elements != 2)
        rc = store_fail(st, err, MAB_ESTORAGE, "cannot read key %s: unexpected reply", key);
    if (rc == MAB_OK) {
        const redisReply *w = exec->element[1], *first = exec->element[0];
        if (w->type == REDIS_REPLY_ERROR)
            rc = store_fail(st, err,
                            strncmp(w->str, "WRONGTYPE", 9) == 0 ? MAB_ECORRUPT : MAB_ESTORAGE,
                            "key %s: cannot read: %s", wkey, w->str);
        else if (w->type == REDIS_REPLY_STRING && !parse_count(w->str, writer_seq))
            rc = store_fail(st, err, MAB_ECORRUPT, "key %s: field %s is not a batch number",
                            wkey, st->writer);
        else if (first->type == REDIS_REPLY_ERROR)
            rc = store_fail(st, err,
                            strncmp(first->str, "WRONGTYPE", 9) == 0 ? MAB_ECORRUPT
                                                                     : MAB_ESTORAGE,
                            "key %s: cannot read: %s", key, first->str);
    }
    for (int i = 0; i < 3; i++)
        freeReplyObject(replies[i]);
    if (rc != MAB_OK)
        freeReplyObject(exec);
    else
        *exec_out = exec;
    return rc;
}

static int read_with_writer(redis_store *st, const char *experiment, int argc,
                            const char **argv, const size_t *lens, const char *key,
                            redisReply **exec_out, int64_t *writer_seq, mab_error *err)
{
    *exec_out = NULL;
    *writer_seq = 0;
    int rc = read_with_writer_send(st, experiment, argc, argv, lens, key, err);
    return rc == MAB_OK ? read_with_writer_reply(st, experiment, key, exec_out, writer_seq, err)
                        : rc;
}

/* values[0..n) of a statistics record as the core must see them: minus the
   credit, minus the in-doubt part when the in-doubt call was counted. */
static void stats_as_seen(const exp_ledger *x, const char *layout, const char *arm,
                          double *values, size_t n, int64_t writer_seq)
{
    if (!x)
        return;
    char key[2 * ID_MAX + 8];
    snprintf(key, sizeof key, "s|%s|%s", layout, arm);
    arm_ledger *a = arm_find((exp_ledger *)x, key);
    if (!a || a->n_values != n)
        return;
    const double *credit = slot_values(a, CREDIT), *doubt = slot_values(a, DOUBT);
    for (size_t j = 0; j < n; j++) {
        values[j] -= credit[j];
        if (x->doubt_seq && writer_seq >= x->doubt_seq)
            values[j] -= doubt[j];
    }
}

static int parse_stat(const redis_store *st, const char *key, const char *field,
                      const redisReply *v, double *out, mab_error *err)
{
    if (v->type == REDIS_REPLY_NIL) {
        *out = 0;
        return MAB_OK;
    }
    if (v->type != REDIS_REPLY_STRING || !parse_sum(v->str, out))
        return store_fail(st, err, MAB_ECORRUPT,
                          "key %s: field \"%s\" holds \"%.40s\", not a finite number", key,
                          field, v->type == REDIS_REPLY_STRING ? v->str : "?");
    return MAB_OK;
}

static int read_stats(redis_store *st, const char *experiment, const char *layout,
                      const char *const *arm_ids, size_t n_arms, size_t n_arm_stats,
                      double *arm_out, size_t n_exp_stats, double *exp_out, mab_error *err)
{
    char skey[KEY_MAX];
    stats_key(st, experiment, skey, sizeof skey);
    size_t n_fields = n_arms * n_arm_stats + n_exp_stats;
    if (n_fields == 0)
        return MAB_OK;
    const char **argv = malloc((n_fields + 2) * sizeof *argv);
    size_t *lens = malloc((n_fields + 2) * sizeof *lens);
    char *text = malloc(n_fields * (2 * ID_MAX + 32));
    if (!argv || !lens || !text) {
        free(argv);
        free(lens);
        free(text);
        return store_fail(st, err, MAB_ENOMEM, "out of memory");
    }
    argv[0] = "HMGET";
    argv[1] = skey;
    char *p = text;
    size_t k = 2;
    for (size_t i = 0; i <= n_arms; i++) {
        size_t n = i < n_arms ? n_arm_stats : n_exp_stats;
        for (size_t j = 0; j < n; j++) {
            snprintf(p, 2 * ID_MAX + 32, "%s|%s|%zu", layout, i < n_arms ? arm_ids[i] : "", j);
            argv[k++] = p;
            p += strlen(p) + 1;
        }
    }
    for (size_t i = 0; i < k; i++)
        lens[i] = strlen(argv[i]);
    redisReply *exec = NULL;
    int64_t writer_seq = 0;
    int rc = read_with_writer(st, experiment, (int)k, argv, lens, skey, &exec, &writer_seq, err);
    const redisReply *got = rc == MAB_OK ? exec->element[0] : NULL;
    if (rc == MAB_OK && (got->type != REDIS_REPLY_ARRAY || got->elements != n_fields))
        rc = store_fail(st, err, MAB_ESTORAGE, "key %s: unexpected reply", skey);
    const exp_ledger *x = exp_find(st, experiment);
    size_t f = 0;
    for (size_t i = 0; rc == MAB_OK && i <= n_arms; i++) {
        size_t n = i < n_arms ? n_arm_stats : n_exp_stats;
        double *out = i < n_arms ? arm_out + i * n_arm_stats : exp_out;
        for (size_t j = 0; rc == MAB_OK && j < n; j++, f++)
            rc = parse_stat(st, skey, argv[2 + f], got->element[f], &out[j], err);
        if (rc == MAB_OK)
            stats_as_seen(x, layout, i < n_arms ? arm_ids[i] : "", out, n, writer_seq);
    }
    if (exec)
        freeReplyObject(exec);
    free(argv);
    free(lens);
    free(text);
    return rc;
}

static int redis_load_stats(void *state, const char *experiment, const char *layout,
                            const char *const *arm_ids, size_t n_arms, size_t n_arm_stats,
                            double *arm_out, size_t n_experiment_stats, double *experiment_out,
                            mab_error *err)
{
    redis_store *st = state;
    if (!experiment || !layout || (n_arms && n_arm_stats && (!arm_ids || !arm_out)) ||
        (n_experiment_stats && !experiment_out))
        return store_fail(st, err, MAB_EINVAL, "load_stats: NULL argument");
    for (size_t i = 0; i < n_arms && n_arm_stats; i++)
        if (!arm_ids[i] || !keyable(arm_ids[i], ":|"))
            return store_fail(st, err, MAB_EINVAL, "load_stats: arm %zu is not a valid id", i);
    if (!keyable(experiment, "{}:|") || !keyable(layout, ""))
        return store_fail(st, err, MAB_EINVAL, "load_stats: %s (layout %s): not a valid id or "
                          "layout tag", experiment, layout);
    size_t n_arm_values = n_arms * n_arm_stats;
    double *buf = calloc(n_arm_values + n_experiment_stats + 1, sizeof *buf);
    if (!buf)
        return store_fail(st, err, MAB_ENOMEM, "out of memory");
    pipe_guard guard;
    guard_begin(&guard);
    int was_connected = st->ctx != NULL;
    int rc = read_stats(st, experiment, layout, arm_ids, n_arms, n_arm_stats, buf,
                        n_experiment_stats, buf + n_arm_values, err);
    if (rc == MAB_ESTORAGE && was_connected && !st->ctx) /* see apply_batch */
        rc = read_stats(st, experiment, layout, arm_ids, n_arms, n_arm_stats, buf,
                        n_experiment_stats, buf + n_arm_values, err);
    guard_end(&guard);
    /* All or nothing: the outputs keep their contents when the read fails. */
    if (rc == MAB_OK) {
        if (n_arm_values)
            memcpy(arm_out, buf, n_arm_values * sizeof *buf);
        if (n_experiment_stats)
            memcpy(experiment_out, buf + n_arm_values, n_experiment_stats * sizeof *buf);
    }
    free(buf);
    return rc;
}

/* One record of a scanned stats hash. */
typedef struct scanned_stats {
    const char *field; /* "LAYOUT|ARM|..." in the reply: layout and arm end at '|' */
    size_t layout_len, arm_len;
    size_t at;    /* the value's index in the record */
    double value;
} scanned_stats;

static int compare_scanned(const void *a, const void *b)
{
    const scanned_stats *x = a, *y = b;
    size_t lx = x->layout_len + 1 + x->arm_len, ly = y->layout_len + 1 + y->arm_len;
    int c = memcmp(x->field, y->field, lx < ly ? lx : ly);
    return c ? c : (lx > ly) - (lx < ly);
}

static int scan_stats_send(redis_store *st, const char *experiment, void *arg,
                           mab_error *err)
{
    (void)arg;
    char skey[KEY_MAX];
    stats_key(st, experiment, skey, sizeof skey);
    const char *argv[2] = {"HGETALL", skey};
    size_t lens[2] = {7, strlen(skey)};
    return read_with_writer_send(st, experiment, 2, argv, lens, skey, err);
}

struct scan_stats_visit {
    int (*visit)(void *ctx, const char *experiment, const char *arm, const char *layout,
                 const double *values, size_t n_values);
    void *ctx;
};

/* The reply to scan_stats_send: one experiment's statistics, visited. */
static int scan_stats_reply(redis_store *st, const char *experiment, void *arg,
                            mab_error *err)
{
    const struct scan_stats_visit *sv = arg;
    int (*visit)(void *, const char *, const char *, const char *, const double *, size_t) =
        sv->visit;
    void *ctx = sv->ctx;
    char skey[KEY_MAX];
    stats_key(st, experiment, skey, sizeof skey);
    redisReply *exec = NULL;
    int64_t writer_seq = 0;
    int rc = read_with_writer_reply(st, experiment, skey, &exec, &writer_seq, err);
    if (rc != MAB_OK)
        return rc;
    const redisReply *h = exec->element[0];
    if (h->type != REDIS_REPLY_ARRAY || h->elements % 2) {
        freeReplyObject(exec);
        return store_fail(st, err, MAB_ESTORAGE, "key %s: unexpected reply", skey);
    }
    /* Group the fields by (layout, arm): sort them, then runs. */
    size_t n = h->elements / 2;
    scanned_stats *recs = calloc(n + 1, sizeof *recs);
    if (!recs)
        rc = store_fail(st, err, MAB_ENOMEM, "out of memory");
    for (size_t i = 0; rc == MAB_OK && i < n; i++) {
        const redisReply *f = h->element[2 * i], *v = h->element[2 * i + 1];
        /* LAYOUT|ARM|I: the arm and the index hold no '|', the layout may */
        const char *bar2 = f->type == REDIS_REPLY_STRING ? strrchr(f->str, '|') : NULL;
        const char *bar1 = bar2;
        while (bar1 && bar1 > f->str && bar1[-1] != '|')
            bar1--;
        bar1 = bar1 && bar1 > f->str ? bar1 - 1 : NULL;
        char *end = NULL;
        unsigned long j = bar2 ? strtoul(bar2 + 1, &end, 10) : 0;
        double x = 0;
        if (!bar2 || bar1 == f->str || !bar2[1] || *end || j > 1000000 ||
            bar1 - f->str > ID_MAX || bar2 - bar1 - 1 > ID_MAX) {
            rc = store_fail(st, err, MAB_ECORRUPT, "key %s: field \"%.60s\" was not written by mab",
                            skey, f->type == REDIS_REPLY_STRING ? f->str : "?");
            break;
        }
        if ((rc = parse_stat(st, skey, f->str, v, &x, err)) != MAB_OK)
            break;
        recs[i].field = f->str;
        recs[i].layout_len = (size_t)(bar1 - f->str);
        recs[i].arm_len = (size_t)(bar2 - bar1 - 1);
        recs[i].at = j;
        recs[i].value = x;
    }
    if (rc == MAB_OK)
        qsort(recs, n, sizeof *recs, compare_scanned);
    const exp_ledger *x = exp_find(st, experiment);
    for (size_t from = 0; rc == MAB_OK && from < n;) {
        size_t to = from + 1, width = recs[from].at + 1;
        while (to < n && compare_scanned(&recs[from], &recs[to]) == 0) {
            if (recs[to].at + 1 > width)
                width = recs[to].at + 1;
            to++;
        }
        double *values = calloc(width, sizeof *values);
        if (!values) {
            rc = store_fail(st, err, MAB_ENOMEM, "out of memory");
            break;
        }
        for (size_t i = from; i < to; i++)
            values[recs[i].at] = recs[i].value;
        char layout[ID_MAX + 1], arm[ID_MAX + 1];
        memcpy(layout, recs[from].field, recs[from].layout_len);
        layout[recs[from].layout_len] = '\0';
        memcpy(arm, recs[from].field + recs[from].layout_len + 1, recs[from].arm_len);
        arm[recs[from].arm_len] = '\0';
        stats_as_seen(x, layout, arm, values, width, writer_seq);
        rc = visit(ctx, experiment, arm[0] ? arm : NULL, layout, values, width);
        free(values);
        from = to;
    }
    free(recs);
    freeReplyObject(exec);
    return rc;
}

static int redis_scan_stats(void *state,
                            int (*visit)(void *ctx, const char *experiment, const char *arm,
                                         const char *layout, const double *values,
                                         size_t n_values),
                            void *ctx, mab_error *err)
{
    redis_store *st = state;
    if (!visit)
        return store_fail(st, err, MAB_EINVAL, "scan_stats: NULL visitor");
    pipe_guard guard;
    guard_begin(&guard);
    char **names = NULL;
    size_t n = 0;
    int rc = list_experiments(st, ":stats", &names, &n, err);
    struct scan_stats_visit sv = {visit, ctx};
    pipelined_read r = {scan_stats_send, scan_stats_reply, &sv};
    if (rc == MAB_OK)
        rc = read_pipelined(st, names, n, &r, err);
    guard_end(&guard);
    free_names(names, n);
    return rc;
}

/* ---- time buckets (ABI 1.5) ------------------------------------------------------ */

/* Visit the buckets of one experiment from `since` on, in ascending order:
   visit(ctx, arm, bucket, totals) for every arm of each bucket. */
static int read_buckets_send(redis_store *st, const char *experiment, int64_t since,
                             mab_error *err)
{
    int rc = connect_store(st, err);
    if (rc != MAB_OK)
        return rc;
    char ikey[KEY_MAX], wkey[KEY_MAX], bprefix[KEY_MAX], from[32];
    buckets_key(st, experiment, ikey, sizeof ikey);
    writers_key(st, experiment, wkey, sizeof wkey);
    bucket_key_prefix(st, experiment, bprefix, sizeof bprefix);
    if (since == INT64_MIN)
        snprintf(from, sizeof from, "-inf");
    else
        snprintf(from, sizeof from, "%" PRId64, since);
    const char *argv[8] = {"EVALSHA", st->read_sha, "2", ikey, wkey, from, bprefix, st->writer};
    size_t lens[8];
    for (int i = 0; i < 8; i++)
        lens[i] = strlen(argv[i]);
    if (redisAppendCommandArgv(st->ctx, 8, argv, lens) != REDIS_OK)
        return append_failed(st, ikey, err);
    return MAB_OK;
}

/* The reply to read_buckets_send, visited. */
static int read_buckets_reply(redis_store *st, const char *experiment,
                              int (*visit)(void *ctx, const char *arm, int64_t bucket,
                                           const mab_totals *t),
                              void *ctx, mab_error *err)
{
    int rc = MAB_OK;
    char ikey[KEY_MAX], wkey[KEY_MAX], bprefix[KEY_MAX];
    buckets_key(st, experiment, ikey, sizeof ikey);
    writers_key(st, experiment, wkey, sizeof wkey);
    bucket_key_prefix(st, experiment, bprefix, sizeof bprefix);
    redisReply *r = NULL;
    if (redisGetReply(st->ctx, (void **)&r) != REDIS_OK || !r) {
        char why[64];
        store_fail(st, err, MAB_ESTORAGE, "cannot read the buckets: %s",
                   io_reason(st, why, sizeof why));
        disconnect(st);
        return MAB_ESTORAGE;
    }
    int64_t writer_seq = 0;
    if (r->type == REDIS_REPLY_ERROR) {
        const char *msg = r->str;
        int code = strncmp(msg, "MAB", 3) == 0 ? MAB_ECORRUPT : MAB_ESTORAGE;
        if (code != MAB_ESTORAGE && strchr(msg, ' '))
            msg = strchr(msg, ' ') + 1;
        rc = store_fail(st, err, code, "experiment %s: cannot read the buckets: %s", experiment,
                        msg);
        if (strncmp(r->str, "NOSCRIPT", 8) == 0)
            disconnect(st); /* the reconnect loads it again; the caller retries */
    } else if (r->type != REDIS_REPLY_ARRAY || r->elements % 2 != 1 ||
               r->element[0]->type != REDIS_REPLY_STRING) {
        rc = store_fail(st, err, MAB_ESTORAGE, "experiment %s: unexpected reply reading the "
                        "buckets", experiment);
    } else if (r->element[0]->len && !parse_count(r->element[0]->str, &writer_seq)) {
        rc = store_fail(st, err, MAB_ECORRUPT, "key %s: field %s is not a batch number", wkey,
                        st->writer);
    }
    const exp_ledger *x = exp_find(st, experiment);
    for (size_t i = 1; rc == MAB_OK && i + 1 < r->elements; i += 2) {
        const redisReply *b = r->element[i], *h = r->element[i + 1];
        int64_t start;
        char key[KEY_MAX + 32];
        snprintf(key, sizeof key, "%s%s", bprefix, b->type == REDIS_REPLY_STRING ? b->str : "?");
        if (b->type != REDIS_REPLY_STRING || !parse_count(b->str, &start)) {
            rc = store_fail(st, err, MAB_ECORRUPT, "key %s: a member is not a bucket start",
                            ikey);
            break;
        }
        read_arm small[READ_ARMS_SMALL];
        read_arm *arms = NULL;
        size_t n = 0;
        rc = parse_totals(st, key, h, small, &arms, &n, err);
        char arm[ID_MAX + 1];
        for (size_t a = 0; rc == MAB_OK && a < n; a++) {
            if (arms[a].arm_len > ID_MAX) {
                rc = store_fail(st, err, MAB_ECORRUPT, "key %s: an arm id is too long", key);
                break;
            }
            memcpy(arm, arms[a].arm, arms[a].arm_len);
            arm[arms[a].arm_len] = '\0';
            char lkey[ID_MAX + 32];
            snprintf(lkey, sizeof lkey, "b|%" PRId64 "|%s", start, arm);
            /* as_seen with the bucket's ledger entry */
            signed_totals t = arms[a].t;
            const arm_ledger *e = x ? arm_find((exp_ledger *)x, lkey) : NULL;
            if (e) {
                signed_totals_sub(&t, &e->credit);
                if (x->doubt_seq && writer_seq >= x->doubt_seq)
                    signed_totals_sub(&t, &e->doubt);
            }
            mab_totals seen = {t.pulls > 0 ? (uint64_t)t.pulls : 0,
                               t.rewards > 0 ? (uint64_t)t.rewards : 0, t.reward_sum,
                               t.reward_sum_sq > 0 ? t.reward_sum_sq : 0};
            /* A bucket there only through what the core still holds (it
               reads as zeros) is not there for the core: not visited. */
            if (e && !seen.pulls && !seen.rewards && seen.reward_sum == 0 &&
                seen.reward_sum_sq == 0 &&
                (!signed_totals_zero(&e->credit) || !signed_totals_zero(&e->doubt)))
                continue;
            rc = visit(ctx, arm, start, &seen);
        }
        if (arms != small)
            free(arms);
    }
    freeReplyObject(r);
    return rc;
}

static int read_buckets(redis_store *st, const char *experiment, int64_t since,
                        int (*visit)(void *ctx, const char *arm, int64_t bucket,
                                     const mab_totals *t),
                        void *ctx, mab_error *err)
{
    int rc = read_buckets_send(st, experiment, since, err);
    return rc == MAB_OK ? read_buckets_reply(st, experiment, visit, ctx, err) : rc;
}

struct load_buckets_ctx {
    const char *const *arm_ids;
    size_t n_arms;
    int (*visit)(void *ctx, size_t arm_index, int64_t bucket, const mab_totals *add);
    void *ctx;
    int visited; /* a visit happened: the read is not repeated */
};

static int load_bucket_one(void *ctx, const char *arm, int64_t bucket, const mab_totals *t)
{
    struct load_buckets_ctx *x = ctx;
    for (size_t i = 0; i < x->n_arms; i++)
        if (x->arm_ids[i] && strcmp(x->arm_ids[i], arm) == 0) {
            x->visited = 1;
            return x->visit(x->ctx, i, bucket, t);
        }
    return 0;
}

static int redis_load_buckets(void *state, const char *experiment, const char *const *arm_ids,
                              size_t n_arms, int64_t since,
                              int (*visit)(void *ctx, size_t arm_index, int64_t bucket,
                                           const mab_totals *add),
                              void *ctx, mab_error *err)
{
    redis_store *st = state;
    if (!experiment || !visit || (n_arms && !arm_ids))
        return store_fail(st, err, MAB_EINVAL, "load_buckets: NULL argument");
    if (!keyable(experiment, "{}:|"))
        return store_fail(st, err, MAB_EINVAL, "load_buckets: \"%s\" is not a valid experiment id",
                          experiment);
    /* Never a bucket the retention has removed, even while removal lags. */
    if (st->kept_from > since)
        since = st->kept_from;
    struct load_buckets_ctx x = {arm_ids, n_arms, visit, ctx, 0};
    pipe_guard guard;
    guard_begin(&guard);
    int was_connected = st->ctx != NULL;
    int rc = read_buckets(st, experiment, since, load_bucket_one, &x, err);
    if (rc == MAB_ESTORAGE && was_connected && !st->ctx && !x.visited) /* see apply_batch */
        rc = read_buckets(st, experiment, since, load_bucket_one, &x, err);
    guard_end(&guard);
    return rc;
}

struct scan_buckets_ctx {
    const char *experiment;
    int (*visit)(void *ctx, const char *experiment, const char *arm, int64_t bucket,
                 const mab_totals *add);
    void *ctx;
};

static int scan_bucket_one(void *ctx, const char *arm, int64_t bucket, const mab_totals *t)
{
    struct scan_buckets_ctx *x = ctx;
    return x->visit(x->ctx, x->experiment, arm, bucket, t);
}

static int scan_buckets_send(redis_store *st, const char *name, void *arg, mab_error *err)
{
    (void)arg;
    return read_buckets_send(st, name, st->kept_from, err);
}

static int scan_buckets_reply(redis_store *st, const char *name, void *arg, mab_error *err)
{
    struct scan_buckets_ctx *x = arg;
    x->experiment = name;
    return read_buckets_reply(st, name, scan_bucket_one, x, err);
}

static int redis_scan_buckets(void *state,
                              int (*visit)(void *ctx, const char *experiment, const char *arm,
                                           int64_t bucket, const mab_totals *add),
                              void *ctx, mab_error *err)
{
    redis_store *st = state;
    if (!visit)
        return store_fail(st, err, MAB_EINVAL, "scan_buckets: NULL visitor");
    pipe_guard guard;
    guard_begin(&guard);
    char **names = NULL;
    size_t n = 0;
    int rc = list_experiments(st, ":buckets", &names, &n, err);
    struct scan_buckets_ctx x = {NULL, visit, ctx};
    pipelined_read r = {scan_buckets_send, scan_buckets_reply, &x};
    if (rc == MAB_OK)
        rc = read_pipelined(st, names, n, &r, err);
    guard_end(&guard);
    free_names(names, n);
    return rc;
}

/* ---- reset and replace ---------------------------------------------------------- */

/*
 * One MULTI: DEL the keys of every listed experiment, then one EVAL per
 * experiment adding its deltas (unguarded). On one server this is atomic.
 * When the reply to EXEC is lost it may have run; running it again gives
 * the same result, so an import can simply be repeated.
 */
static int clear_and_add(redis_store *st, const char *const *experiments, size_t n_experiments,
                         const mab_delta *deltas, size_t n_deltas, const char *what,
                         mab_error *err)
{
    int rc = check_deltas(st, deltas, n_deltas, err);
    for (size_t i = 0; rc == MAB_OK && i < n_experiments; i++)
        if (!experiments[i] || !experiments[i][0] || strlen(experiments[i]) > ID_MAX ||
            strpbrk(experiments[i], "{}:"))
            rc = store_fail(st, err, MAB_EINVAL, "%s: not a valid experiment id", what);
    if (rc != MAB_OK)
        return rc;
    /* The deltas, grouped per experiment in a scratch ledger. */
    redis_store scratch = *st;
    scratch.keep_from = INT64_MIN;
    scratch.exps = NULL;
    scratch.n_exps = scratch.cap_exps = 0;
    scratch.exp_index = NULL;
    scratch.exp_index_cap = 0;
    for (size_t i = 0; i < n_deltas && rc == MAB_OK; i++) {
        exp_ledger *x = exp_get(&scratch, deltas[i].experiment);
        arm_ledger *a = x ? arm_get(x, deltas[i].arm) : NULL;
        if (!a) {
            rc = store_fail(st, err, MAB_ENOMEM, "out of memory");
            break;
        }
        signed_totals add = to_signed(&deltas[i].add);
        signed_totals_add(&a->op, &add);
    }
    pipe_guard guard;
    guard_begin(&guard);
    if (rc == MAB_OK)
        rc = connect_store(st, err);
    if (rc == MAB_OK) {
        scratch.ctx = st->ctx;
        memcpy(scratch.script_sha, st->script_sha, sizeof scratch.script_sha);
        redisAppendCommand(st->ctx, "MULTI");
        size_t queued = 1;
        for (size_t i = 0; i < n_experiments; i++) {
            /* the counters, statistics and buckets (CLEAR_SCRIPT) */
            char ikey[KEY_MAX], tkey[KEY_MAX], wkey[KEY_MAX], skey[KEY_MAX], bprefix[KEY_MAX];
            buckets_key(st, experiments[i], ikey, sizeof ikey);
            totals_key(st, experiments[i], tkey, sizeof tkey);
            writers_key(st, experiments[i], wkey, sizeof wkey);
            stats_key(st, experiments[i], skey, sizeof skey);
            bucket_key_prefix(st, experiments[i], bprefix, sizeof bprefix);
            char epoch[64], max[32];
            next_epoch(st, epoch, sizeof epoch);
            snprintf(max, sizeof max, "%" PRId64, st->change_log_max);
            const char *argv[13] = {"EVAL", CLEAR_SCRIPT, "6", ikey, tkey, wkey, skey,
                                    st->log_key, st->changes_key, bprefix, experiments[i],
                                    epoch, max};
            size_t lens[13];
            for (int k = 0; k < 13; k++)
                lens[k] = strlen(argv[k]);
            redisAppendCommandArgv(st->ctx, 13, argv, lens);
            queued++;
        }
        for (size_t i = 0; i < scratch.n_exps && rc == MAB_OK; i++) {
            rc = append_call(&scratch, &scratch.exps[i], SEND_OP, 0, err);
            queued++;
        }
        redisAppendCommand(st->ctx, "EXEC");
        queued++;
        if (rc != MAB_OK)
            disconnect(st); /* out of memory: nothing was sent */
        /* Read every reply (an error at queueing aborts the EXEC, and the
           connection must stay in step). */
        redisReply *last = NULL;
        for (size_t i = 0; i < queued && st->ctx; i++) {
            redisReply *r = NULL;
            if (redisGetReply(st->ctx, (void **)&r) != REDIS_OK || !r) {
                rc = store_fail(st, err, MAB_ESTORAGE,
                                "cannot %s (no reply; it may have been done: run it again)",
                                what);
                disconnect(st);
                break;
            }
            if (r->type == REDIS_REPLY_ERROR && rc == MAB_OK)
                rc = store_fail(st, err, MAB_ESTORAGE, "cannot %s: %s", what, r->str);
            if (i + 1 == queued)
                last = r;
            else
                freeReplyObject(r);
        }
        if (rc == MAB_OK && last) {
            for (size_t i = 0; last->type == REDIS_REPLY_ARRAY && i < last->elements; i++) {
                const redisReply *one = last->element[i];
                if (one->type == REDIS_REPLY_ERROR && rc == MAB_OK)
                    rc = store_fail(st, err,
                                    strncmp(one->str, "MAB", 3) == 0 ||
                                            strncmp(one->str, "WRONGTYPE", 9) == 0
                                        ? MAB_ECORRUPT
                                        : MAB_ESTORAGE,
                                    "cannot %s: %s", what, one->str);
            }
            if (rc == MAB_OK && last->type != REDIS_REPLY_ARRAY)
                rc = store_fail(st, err, MAB_ESTORAGE, "cannot %s: the transaction was aborted",
                                what);
        }
        if (last)
            freeReplyObject(last);
    }
    guard_end(&guard);
    for (size_t i = 0; i < scratch.n_exps; i++) {
        exp_forget(&scratch.exps[i]);
        free(scratch.exps[i].experiment);
    }
    free(scratch.exps);
    free(scratch.exp_index);
    /* Whatever happened, the experiments' keys were (maybe) deleted: what
       was credited or in doubt for them no longer means anything. */
    for (size_t i = 0; i < n_experiments; i++) {
        exp_ledger *x = exp_find(st, experiments[i]);
        if (x)
            exp_forget(x);
    }
    return rc;
}

static int redis_reset(void *state, const char *experiment, mab_error *err)
{
    redis_store *st = state;
    if (!experiment)
        return store_fail(st, err, MAB_EINVAL, "reset: NULL experiment");
    char what[ID_MAX + 40];
    snprintf(what, sizeof what, "reset experiment %s", experiment);
    return clear_and_add(st, &experiment, 1, NULL, 0, what, err);
}

static int redis_replace(void *state, const char *const *experiments, size_t n_experiments,
                         const mab_delta *deltas, size_t n_deltas, mab_error *err)
{
    return clear_and_add(state, experiments, n_experiments, deltas, n_deltas,
                         "replace the records of the imported experiments", err);
}

/* ---- what changed (ABI 1.6) -------------------------------------------------------- */

/* The server's run_id from an INFO reply into out ("" when not there). */
static void parse_run_id(const redisReply *r, char *out, size_t cap)
{
    out[0] = '\0';
    const char *at = r && r->type == REDIS_REPLY_STRING ? strstr(r->str, "run_id:") : NULL;
    if (at) {
        at += 7;
        size_t len = strcspn(at, "\r\n");
        if (len < cap) {
            memcpy(out, at, len);
            out[len] = '\0';
        }
    }
}

/* A whole number of at most 19 digits, or -1. */
static int64_t parse_seq(const redisReply *r)
{
    if (!r || r->type != REDIS_REPLY_STRING || r->len == 0 || r->len > 18)
        return -1;
    int64_t v = 0;
    for (size_t i = 0; i < r->len; i++) {
        if (r->str[i] < '0' || r->str[i] > '9')
            return -1;
        v = v * 10 + (r->str[i] - '0');
    }
    return v;
}

/*
 * One round trip: INFO server, then MULTI, HMGET Pchanges:log epoch seq
 * floor, ZRANGEBYSCORE Pchanges (SEEN +inf (only once a position is
 * known), EXEC. Everything, rather than the members, when the position
 * cannot vouch for the range (see the header comment).
 */
static int changed_once(redis_store *st, int *everything,
                        int (*visit)(void *ctx, const char *experiment), void *ctx,
                        mab_error *err)
{
    char from[32];
    snprintf(from, sizeof from, "(%" PRIu64, st->seen_seq);
    int ranged = st->have_position;
    redisAppendCommand(st->ctx, "INFO server");
    redisAppendCommand(st->ctx, "MULTI");
    const char *hargv[5] = {"HMGET", st->log_key, "epoch", "seq", "floor"};
    size_t hlens[5] = {5, strlen(st->log_key), 5, 3, 5};
    redisAppendCommandArgv(st->ctx, 5, hargv, hlens);
    if (ranged) {
        const char *zargv[4] = {"ZRANGEBYSCORE", st->changes_key, from, "+inf"};
        size_t zlens[4] = {13, strlen(st->changes_key), strlen(from), 4};
        redisAppendCommandArgv(st->ctx, 4, zargv, zlens);
    }
    redisAppendCommand(st->ctx, "EXEC");
    size_t queued = ranged ? 5 : 4; /* INFO, MULTI, HMGET, [ZRANGEBYSCORE,] EXEC */
    redisReply *replies[5] = {NULL};
    int rc = MAB_OK;
    for (size_t i = 0; i < queued; i++)
        if (redisGetReply(st->ctx, (void **)&replies[i]) != REDIS_OK || !replies[i]) {
            char why[64];
            rc = store_fail(st, err, MAB_ESTORAGE, "cannot read the change log: %s",
                            io_reason(st, why, sizeof why));
            disconnect(st);
            break;
        }
    const redisReply *exec = rc == MAB_OK ? replies[queued - 1] : NULL;
    if (rc == MAB_OK && (exec->type != REDIS_REPLY_ARRAY || exec->elements != queued - 3))
        rc = store_fail(st, err, MAB_ESTORAGE, "cannot read the change log: %s",
                        exec->type == REDIS_REPLY_ERROR ? exec->str : "unexpected reply");
    int status = MAB_OK;
    char run_id[sizeof st->seen_run_id], epoch[sizeof st->seen_epoch] = "";
    uint64_t seq = 0;
    int damaged = 0;
    if (rc == MAB_OK) {
        /* A server that refuses INFO (an ACL) gives no run_id: restarts are
           then told by the epoch and seq alone. */
        parse_run_id(replies[0], run_id, sizeof run_id);
        const redisReply *log = exec->element[0];
        if (log->type != REDIS_REPLY_ARRAY || log->elements != 3) {
            damaged = 1; /* not a hash: the next write starts it again */
        } else if (log->element[0]->type == REDIS_REPLY_NIL) {
            epoch[0] = '\0'; /* no log (yet, or any more) */
        } else {
            int64_t s = parse_seq(log->element[1]), floor = parse_seq(log->element[2]);
            damaged = log->element[0]->type != REDIS_REPLY_STRING ||
                      log->element[0]->len >= sizeof epoch || s < 0 || floor < 0;
            if (!damaged) {
                memcpy(epoch, log->element[0]->str, log->element[0]->len);
                epoch[log->element[0]->len] = '\0';
                seq = (uint64_t)s;
                if (st->have_position && st->seen_seq < (uint64_t)floor)
                    *everything = 1; /* trimmed past this position */
            }
        }
        const redisReply *range = ranged ? exec->element[1] : NULL;
        if (damaged || !st->have_position || strcmp(run_id, st->seen_run_id) != 0 ||
            strcmp(epoch, st->seen_epoch) != 0 || seq < st->seen_seq ||
            (range && range->type != REDIS_REPLY_ARRAY))
            *everything = 1;
        for (size_t i = 0; !*everything && range && i < range->elements && !status; i++) {
            const redisReply *m = range->element[i];
            char id[ID_MAX + 1];
            if (m->type != REDIS_REPLY_STRING || m->len == 0 || m->len > ID_MAX ||
                memchr(m->str, '\0', m->len)) {
                *everything = 1; /* not a member this plugin writes: trust nothing */
                break;
            }
            memcpy(id, m->str, m->len);
            id[m->len] = '\0';
            status = visit(ctx, id);
        }
    }
    for (size_t i = 0; i < queued; i++)
        if (replies[i])
            freeReplyObject(replies[i]);
    if (rc != MAB_OK)
        return rc;
    if (status == MAB_OK) {
        /* A damaged log is no position: everything again until a write
           starts it afresh. */
        st->have_position = !damaged;
        snprintf(st->seen_run_id, sizeof st->seen_run_id, "%s", run_id);
        snprintf(st->seen_epoch, sizeof st->seen_epoch, "%s", epoch);
        st->seen_seq = seq;
    }
    return status;
}

static int redis_changed(void *state, int *everything,
                         int (*visit)(void *ctx, const char *experiment), void *ctx,
                         mab_error *err)
{
    redis_store *st = state;
    if (!everything || !visit)
        return store_fail(st, err, MAB_EINVAL, "changed: NULL argument");
    *everything = 0;
    pipe_guard guard;
    guard_begin(&guard);
    int was_connected = st->ctx != NULL;
    int rc = connect_store(st, err);
    if (rc == MAB_OK)
        rc = changed_once(st, everything, visit, ctx, err);
    if (rc == MAB_ESTORAGE && was_connected && !st->ctx) { /* a connection gone idle */
        *everything = 0;
        rc = connect_store(st, err);
        if (rc == MAB_OK)
            rc = changed_once(st, everything, visit, ctx, err);
    }
    guard_end(&guard);
    return rc;
}

/* ---- claims (ABI 1.3) -------------------------------------------------------------- */

static void claim_key(const redis_store *st, const uint8_t *id, char *out, size_t cap)
{
    char hex[2 * MAB_ASSIGNMENT_ID_BYTES + 1];
    for (size_t i = 0; i < MAB_ASSIGNMENT_ID_BYTES; i++)
        snprintf(hex + 2 * i, 3, "%02x", id[i]);
    snprintf(out, cap, "%sclaim:%s", st->prefix, hex);
}

static struct doubt_claim *doubt_claim_find(redis_store *st, const uint8_t *id)
{
    for (size_t i = 0; i < st->n_doubt_claims; i++)
        if (memcmp(st->doubt_claims[i].id, id, MAB_ASSIGNMENT_ID_BYTES) == 0)
            return &st->doubt_claims[i];
    return NULL;
}

static void doubt_claim_forget(redis_store *st, const uint8_t *id)
{
    struct doubt_claim *d = doubt_claim_find(st, id);
    if (d)
        memset(d->id, 0, sizeof d->id), d->token[0] = '\0';
}

static void doubt_claim_keep(redis_store *st, const uint8_t *id, const char *token)
{
    struct doubt_claim *d = doubt_claim_find(st, id);
    if (!d) {
        size_t cap = sizeof st->doubt_claims / sizeof st->doubt_claims[0];
        d = &st->doubt_claims[st->next_doubt_claim];
        st->next_doubt_claim = (st->next_doubt_claim + 1) % cap;
        if (st->n_doubt_claims < cap)
            st->n_doubt_claims++;
    }
    memcpy(d->id, id, sizeof d->id);
    snprintf(d->token, sizeof d->token, "%s", token);
}

/* One CLAIM_SCRIPT call over every claim: one atomic step, one round trip. */
static int claim_once(redis_store *st, mab_claim *claims, size_t n, mab_error *err)
{
    /* The experiments the deltas add to, in order of appearance. */
    size_t n_deltas = 0;
    for (size_t i = 0; i < n; i++)
        n_deltas += claims[i].n_deltas;
    const char **exps = calloc(n_deltas + 1, sizeof *exps);
    size_t argc = 2 + 2 * n + n_deltas + 2 + 3 * n + 6 * n_deltas + 4 + 4 + n_deltas;
    const char **argv = calloc(argc, sizeof *argv);
    size_t *lens = calloc(argc, sizeof *lens);
    char *text = malloc((n + n_deltas + 1) * (KEY_MAX + 8) + (n + 1) * 120 +
                        n_deltas * 4 * 32 + 2 * 64);
    int rc = MAB_OK;
    if (!exps || !argv || !lens || !text)
        rc = store_fail(st, err, MAB_ENOMEM, "out of memory");
    size_t m = 0;
    for (size_t i = 0; rc == MAB_OK && i < n; i++)
        for (size_t d = 0; d < claims[i].n_deltas; d++) {
            size_t k = 0;
            while (k < m && strcmp(exps[k], claims[i].deltas[d].experiment) != 0)
                k++;
            if (k == m)
                exps[m++] = claims[i].deltas[d].experiment;
        }
    char *p = text;
    size_t k = 0;
#define ARGS(s)                                                                      \
    do {                                                                             \
        argv[k] = (s);                                                               \
        lens[k] = strlen(argv[k]);                                                   \
        k++;                                                                         \
    } while (0)
#define ARGP(...)                                                                    \
    do {                                                                             \
        snprintf(p, 64, __VA_ARGS__);                                                \
        ARGS(p);                                                                     \
        p += strlen(p) + 1;                                                          \
    } while (0)
    char tokens_base[40];
    snprintf(tokens_base, sizeof tokens_base, "%s:%" PRIu64, st->writer, ++st->claim_seq);
    int64_t now = (int64_t)time(NULL);
    if (rc == MAB_OK) {
        ARGS("EVALSHA");
        ARGS(st->claim_sha);
        ARGP("%zu", n + m + 2);
        for (size_t i = 0; i < n; i++) {
            claim_key(st, claims[i].assignment_id, p, KEY_MAX);
            ARGS(p);
            p += strlen(p) + 1;
        }
        for (size_t e = 0; e < m; e++) {
            totals_key(st, exps[e], p, KEY_MAX);
            ARGS(p);
            p += strlen(p) + 1;
        }
        ARGS(st->log_key);
        ARGS(st->changes_key);
        ARGP("%zu", n);
        ARGP("%zu", m);
        for (size_t i = 0; i < n; i++) {
            const struct doubt_claim *dc = doubt_claim_find(st, claims[i].assignment_id);
            ARGS(dc ? dc->token : tokens_base);
            int64_t left = claims[i].expires_at - now;
            ARGP("%" PRId64, left > 0 ? (left > INT64_MAX / 1000 ? INT64_MAX / 1000 : left) * 1000
                                      : 1);
            ARGP("%zu", claims[i].n_deltas);
            for (size_t d = 0; d < claims[i].n_deltas; d++) {
                const mab_delta *x = &claims[i].deltas[d];
                size_t e = 0;
                while (strcmp(exps[e], x->experiment) != 0)
                    e++;
                ARGP("%zu", e + 1);
                ARGS(x->arm);
                ARGP("%" PRIu64, x->add.pulls);
                ARGP("%" PRIu64, x->add.rewards);
                ARGP("%.17g", x->add.reward_sum);
                ARGP("%.17g", x->add.reward_sum_sq);
            }
        }
        next_epoch(st, p, 64);
        ARGS(p);
        p += strlen(p) + 1;
        ARGP("%" PRId64, st->change_log_max);
        for (size_t e = 0; e < m; e++)
            ARGS(exps[e]);
    }
#undef ARGS
#undef ARGP
    redisReply *r = NULL;
    if (rc == MAB_OK) {
        r = redisCommandArgv(st->ctx, (int)k, argv, lens);
        if (!r) {
            char why[64];
            rc = store_fail(st, err, MAB_ESTORAGE,
                            "no reply to a claim of %zu assignment%s (%s); a retry recognises "
                            "its own claims",
                            n, n == 1 ? "" : "s", io_reason(st, why, sizeof why));
            disconnect(st);
            for (size_t i = 0; i < n; i++)
                if (!doubt_claim_find(st, claims[i].assignment_id))
                    doubt_claim_keep(st, claims[i].assignment_id, tokens_base);
        } else if (r->type == REDIS_REPLY_ERROR) {
            const char *msg = r->str;
            int code = strncmp(msg, "MABRANGE", 8) == 0 ? MAB_ERANGE
                       : strncmp(msg, "MAB", 3) == 0    ? MAB_ECORRUPT
                                                        : MAB_ESTORAGE;
            if (code != MAB_ESTORAGE && strchr(msg, ' '))
                msg = strchr(msg, ' ') + 1;
            rc = store_fail(st, err, code, "claim refused, nothing claimed or written: %s", msg);
            if (strncmp(r->str, "NOSCRIPT", 8) == 0)
                disconnect(st); /* the reconnect loads it again */
        } else if (r->type != REDIS_REPLY_ARRAY || r->elements != n) {
            rc = store_fail(st, err, MAB_ESTORAGE, "unexpected reply to a claim");
        } else {
            for (size_t i = 0; i < n; i++) {
                long long v = r->element[i]->type == REDIS_REPLY_INTEGER ? r->element[i]->integer
                                                                          : 0;
                claims[i].result = v == 1 || v == 2 ? MAB_OK : MAB_ECLAIMED;
            }
            for (size_t i = 0; i < n; i++)
                doubt_claim_forget(st, claims[i].assignment_id);
        }
    }
    if (r)
        freeReplyObject(r);
    free(exps);
    free(argv);
    free(lens);
    free(text);
    return rc;
}

static int redis_claim(void *state, mab_claim *claims, size_t n_claims, unsigned flags,
                       mab_error *err)
{
    (void)flags; /* every write waits for the server's reply: nothing to defer */
    redis_store *st = state;
    if (n_claims && !claims)
        return store_fail(st, err, MAB_EINVAL, "claim: NULL claims");
    for (size_t i = 0; i < n_claims; i++) {
        if (!claims[i].assignment_id || (claims[i].n_deltas && !claims[i].deltas))
            return store_fail(st, err, MAB_EINVAL, "claim %zu: NULL id or deltas", i);
        int rc = check_deltas(st, claims[i].deltas, claims[i].n_deltas, err);
        if (rc != MAB_OK)
            return rc;
    }
    if (n_claims == 0)
        return MAB_OK;
    pipe_guard guard;
    guard_begin(&guard);
    int was_connected = st->ctx != NULL;
    int rc = connect_store(st, err);
    if (rc == MAB_OK)
        rc = claim_once(st, claims, n_claims, err);
    if (rc == MAB_ESTORAGE && was_connected && !st->ctx) { /* see redis_apply */
        rc = connect_store(st, err);
        if (rc == MAB_OK)
            rc = claim_once(st, claims, n_claims, err);
    }
    guard_end(&guard);
    return rc;
}

/* ---- open and close --------------------------------------------------------------- */

static void store_free(redis_store *st)
{
    disconnect(st);
    for (size_t i = 0; i < st->n_exps; i++) {
        exp_forget(&st->exps[i]);
        free(st->exps[i].experiment);
    }
    free(st->exps);
    free(st->exp_index);
    if (st->password) {
        explicit_bzero(st->password, strlen(st->password));
        free(st->password);
    }
    free(st);
}

/* Remove this process's batch numbers (a courtesy to the store's size:
   failures are ignored). Not where a call is in doubt: a lost call may
   still run late on the server, and its number is what stops it. */
static void forget_writer(redis_store *st)
{
    if (!st->ctx || st->batch_seq == 0)
        return;
    size_t sent = 0;
    for (size_t i = 0; i < st->n_exps; i++) {
        if (st->exps[i].doubt_seq)
            continue;
        char wkey[KEY_MAX];
        writers_key(st, st->exps[i].experiment, wkey, sizeof wkey);
        redisAppendCommand(st->ctx, "HDEL %s %s", wkey, st->writer);
        sent++;
    }
    for (size_t i = 0; i < sent; i++) {
        redisReply *r = NULL;
        if (redisGetReply(st->ctx, (void **)&r) != REDIS_OK || !r)
            break;
        freeReplyObject(r);
    }
}

static void redis_close(void *state)
{
    redis_store *st = state;
    if (!st)
        return;
    pipe_guard guard;
    guard_begin(&guard);
    forget_writer(st);
    disconnect(st);
    guard_end(&guard);
    store_free(st);
}

/* The password: the file's first line, without its line ending. */
static int read_password(redis_store *st, mab_params *params, mab_error *err)
{
    if (!mab_params_has(params, "password_file"))
        return MAB_OK;
    char path[4096];
    int rc = mab_params_path(params, "password_file", NULL, path, sizeof path);
    if (rc != MAB_OK)
        return rc;
    FILE *f = fopen(path, "r");
    if (!f)
        return mab_params_fail(params, "password_file", "cannot read %s: %s", path,
                               strerror(errno));
    char line[1024];
    size_t n = fread(line, 1, sizeof line - 1, f);
    int bad = ferror(f);
    fclose(f);
    line[n] = '\0';
    line[strcspn(line, "\r\n")] = '\0';
    if (bad || !line[0]) {
        explicit_bzero(line, sizeof line);
        return mab_params_fail(params, "password_file", "%s %s", path,
                               bad ? "cannot be read" : "is empty");
    }
    st->password = strdup(line);
    explicit_bzero(line, sizeof line);
    (void)err;
    return st->password ? MAB_OK : MAB_ENOMEM;
}

/*
 * url: "redis://[USER@]HOST[:PORT][/DB]" (HOST may be [IPv6]) or
 * "unix:/PATH[?db=DB]". A password in the url is refused: it belongs in
 * password_file, so that it is in no config file and in no message.
 */
static int parse_url(redis_store *st, mab_params *params, const char *url)
{
    if (strncmp(url, "unix:", 5) == 0) {
        const char *path = url + 5;
        if (strncmp(path, "//", 2) == 0)
            path += 2;
        const char *query = strchr(path, '?');
        size_t len = query ? (size_t)(query - path) : strlen(path);
        if (path[0] != '/' || len >= sizeof st->unix_path)
            return mab_params_fail(params, "url",
                                   "\"unix:PATH\" needs an absolute socket path "
                                   "(e.g. \"unix:/run/redis/redis.sock\")");
        memcpy(st->unix_path, path, len);
        st->unix_path[len] = '\0';
        if (query) {
            char *end;
            if (strncmp(query, "?db=", 4) != 0 ||
                (st->db = (int)strtol(query + 4, &end, 10), *end) || st->db < 0)
                return mab_params_fail(params, "url", "after the socket path only \"?db=N\" "
                                                      "is understood");
        }
        snprintf(st->where, sizeof st->where, "Redis at unix:%s (db %d)", st->unix_path, st->db);
        return MAB_OK;
    }
    if (strncmp(url, "rediss://", 9) == 0)
        return mab_params_fail(params, "url",
                               "TLS (rediss://) is not supported: Debian's hiredis 0.14 has no "
                               "TLS; reach the server through a local TLS tunnel (e.g. stunnel) "
                               "and use redis:// to it");
    if (strncmp(url, "redis://", 8) != 0)
        return mab_params_fail(params, "url",
                               "expected \"redis://HOST[:PORT][/DB]\" or \"unix:/PATH\"");
    const char *rest = url + 8;
    const char *at = strchr(rest, '@');
    const char *slash = strchr(rest, '/');
    if (at && (!slash || at < slash)) {
        const char *colon = memchr(rest, ':', (size_t)(at - rest));
        if (colon)
            return mab_params_fail(params, "url",
                                   "must not hold a password (it would be in the config and "
                                   "in messages): put it in a file named by password_file");
        if ((size_t)(at - rest) >= sizeof st->username)
            return mab_params_fail(params, "url", "the user name is too long");
        memcpy(st->username, rest, (size_t)(at - rest));
        st->username[at - rest] = '\0';
        rest = at + 1;
    }
    const char *host = rest, *host_end;
    if (*host == '[') {
        host_end = strchr(host, ']');
        if (!host_end)
            return mab_params_fail(params, "url", "an IPv6 address needs its closing ']'");
        host++;
        rest = host_end + 1;
    } else {
        host_end = host + strcspn(host, ":/");
        rest = host_end;
    }
    size_t hlen = (size_t)(host_end - host);
    if (hlen == 0 || hlen >= sizeof st->host)
        return mab_params_fail(params, "url", "names no host (e.g. \"redis://127.0.0.1:6379\")");
    memcpy(st->host, host, hlen);
    st->host[hlen] = '\0';
    st->port = DEFAULT_PORT;
    if (*rest == ':') {
        char *end;
        long port = strtol(rest + 1, &end, 10);
        if (end == rest + 1 || port < 1 || port > 65535 || (*end && *end != '/'))
            return mab_params_fail(params, "url", "the port must be a number from 1 to 65535");
        st->port = (int)port;
        rest = end;
    }
    if (*rest == '/' && rest[1]) {
        char *end;
        long db = strtol(rest + 1, &end, 10);
        if (end == rest + 1 || *end || db < 0 || db > INT_MAX)
            return mab_params_fail(params, "url", "the database must be a number (\"/0\")");
        st->db = (int)db;
    } else if (*rest && strcmp(rest, "/") != 0) {
        return mab_params_fail(params, "url", "unexpected \"%s\" after the host", rest);
    }
    int v6 = strchr(st->host, ':') != NULL;
    snprintf(st->where, sizeof st->where, "Redis at %s%s%s:%d (db %d)", v6 ? "[" : "", st->host,
             v6 ? "]" : "", st->port, st->db);
    return MAB_OK;
}

static int read_params(redis_store *st, mab_params *params, mab_error *err)
{
    const char *url, *prefix;
    int64_t timeout_ms;
    int rc;
    if ((rc = mab_params_string(params, "url", "redis://127.0.0.1:6379/0", &url)) != MAB_OK ||
        (rc = parse_url(st, params, url)) != MAB_OK ||
        (rc = mab_params_string(params, "prefix", "mab:", &prefix)) != MAB_OK ||
        (rc = mab_params_int(params, "timeout_ms", DEFAULT_TIMEOUT_MS, 1, 600000,
                             &timeout_ms)) != MAB_OK ||
        (rc = mab_params_int(params, "change_log_max", 0, 0, INT32_MAX,
                             &st->change_log_max)) != MAB_OK ||
        (rc = read_password(st, params, err)) != MAB_OK)
        return rc;
    if (strlen(prefix) > PREFIX_MAX || strpbrk(prefix, "{}"))
        return mab_params_fail(params, "prefix",
                               "\"%s\": at most %d characters, without '{' or '}' (the braces "
                               "mark the experiment)",
                               prefix, PREFIX_MAX);
    snprintf(st->prefix, sizeof st->prefix, "%s", prefix);
    snprintf(st->log_key, sizeof st->log_key, "%schanges:log", prefix);
    snprintf(st->changes_key, sizeof st->changes_key, "%schanges", prefix);
    st->timeout.tv_sec = (time_t)(timeout_ms / 1000);
    st->timeout.tv_usec = (suseconds_t)(timeout_ms % 1000) * 1000;
    return MAB_OK;
}

static int redis_open(mab_params *params, void **state, mab_error *err)
{
    redis_store *st = calloc(1, sizeof *st);
    if (!st)
        return mab_error_set(err, MAB_ENOMEM, "redis: out of memory");
    snprintf(st->where, sizeof st->where, "Redis");
    st->keep_from = st->kept_from = INT64_MIN;
    int rc = read_params(st, params, err);
    if (rc == MAB_ENOMEM)
        mab_error_set(err, rc, "redis: out of memory");
    else if (rc != MAB_OK)
        mab_error_set(err, rc, "%s", mab_params_last_error(params));
    uint64_t id;
    if (rc == MAB_OK && getrandom(&id, sizeof id, 0) != (ssize_t)sizeof id)
        rc = store_fail(st, err, MAB_ESTORAGE, "cannot draw a writer id: %s", strerror(errno));
    if (rc == MAB_OK) {
        snprintf(st->writer, sizeof st->writer, "%016" PRIx64, id);
        pipe_guard guard;
        guard_begin(&guard);
        rc = connect_store(st, err);
        guard_end(&guard);
    }
    if (rc != MAB_OK) {
        store_free(st);
        return rc;
    }
    *state = st;
    return MAB_OK;
}

static const mab_storage redis_storage = {
    MAB_STORAGE_HEADER,
    "redis",
    "one Redis server shared by many machines (a Lua script per experiment and batch, "
    "exactly once across lost replies)",
    redis_open,
    redis_load,
    redis_apply,
    redis_reset,
    redis_close,
    1000, /* refresh_ms: other machines add to the same hashes */
    redis_scan,
    redis_replace,
    NULL, /* check: open() already connects, authenticates and loads the scripts */
    NULL, /* open_read_only: a Redis server has no lock to avoid */
    redis_claim,
    redis_apply_stats,
    redis_load_stats,
    redis_scan_stats,
    redis_apply_buckets,
    redis_load_buckets,
    redis_scan_buckets,
    redis_changed,
};

MAB_STORAGE_DEFINE(redis_storage)

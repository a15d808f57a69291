"""A MongoDB stand-in for the mongodb storage plugin's tests.

No MongoDB server can be installed on the development and CI machines, so
the tests talk to this: mockupdb speaks the wire protocol (the handshake,
OP_MSG and the legacy OP_QUERY the handshake may use) and mongomock executes
the commands on in-memory collections. It serves what libmongoc sends for
the plugin: hello/isMaster, ping, buildInfo, createIndexes, listIndexes,
insert (a duplicate _id is write error 11000, as the server answers),
update (upserts with $inc/$set/$setOnInsert/$unset; $inc of a field that is
not a number is write error 14, TypeMismatch, as the server answers), delete,
find/getMore/killCursors, drop, endSessions, and saslStart (refused, for
the authentication test).

TTL indexes (expireAfterSeconds on one date field) are honoured like the
server's TTL monitor: documents whose date plus expireAfterSeconds has
passed are deleted, at most once a second, before a command runs (mongomock
itself ignores TTL).

Run it with Debian's interpreter (/usr/bin/python3), which has
python3-mockupdb and python3-mongomock:

  /usr/bin/python3 tests/storage/mongo/standin.py --port 0 --port-file P --state S

  --port N          listen on 127.0.0.1:N (0: a free port)
  --port-file F     write the port there once serving (written atomically)
  --state F         load the data from F at start, save it there at SIGTERM
                    or SIGINT: a restart on the same port keeps the data
  --journal         save the data to --state after every write command,
                    before replying: what the stand-in acknowledged survives
                    a SIGKILL (as a journaled server's writes do)
  --hangup-every N  fault: every Nth update command applies only the first
                    half of its updates, then closes the connection without
                    replying (what a network failure mid-bulk looks like)
  --auth-fail       refuse every authentication

Tests inject faults at run time with a command of their own:
  {mabStandinFault: 1, hangupUpdates: K}  the next K update commands apply
      the first half of their updates, then hang up without replying
  {mabStandinFault: 1, hangupUpdates: K, passUpdates: M}  the same, after M
      update commands served normally
  {mabStandinFault: 1, authFail: true|false}
  {mabStandinFault: 1, ttlSweep: true}  run the TTL deletion now; the reply
      says how many documents it deleted ({deleted: N})

Requests are handled one at a time (mockupdb holds one lock while a request
runs), so stopping waits for the request in progress: a stop never tears a
command, only --hangup-every does.
"""

import argparse
import datetime
import itertools
import os
import signal
import sys
import threading
import time

import bson
import mockupdb
import mongomock
import mongomock.collection
from bson.son import SON
from mongomock.filtering import filter_applies

MAX_WIRE_VERSION = 13  # MongoDB 5.0: OP_MSG, sessions


# mongomock finds documents by scanning the whole collection, so a bulk of N
# updates by _id over M documents costs N x M filter evaluations (a batch of
# 800 bucket upserts over a few thousand documents took longer than the
# client's socket timeout). The server finds them through the _id index:
# do the same when a filter names one _id string. The documents found, and
# so every result, are the same as the scan's.
_scan_documents = mongomock.collection.Collection._iter_documents


def _find_by_id(self, filter):
    if isinstance(filter, dict) and isinstance(filter.get('_id'), str):
        doc = self._store.documents and self._store._documents.get(filter['_id'])
        if doc is None or not doc:
            filter_applies(filter, {})  # validates the filter, as the scan does
            return iter(())
        return iter([doc] if filter_applies(filter, doc) else ())
    return _scan_documents(self, filter)


mongomock.collection.Collection._iter_documents = _find_by_id
FIRST_BATCH = 101      # the server's default first batch size


class Standin:
    def __init__(self, args):
        self.args = args
        self.client = mongomock.MongoClient()
        self.indexes = {}  # (db, coll) -> list of index specs, for persistence
        self.cursors = {}
        self.cursor_ids = itertools.count(1000)
        self.updates_seen = 0
        self.connections = itertools.count(1)
        self.hangup_updates = 0
        self.pass_updates = 0
        self.auth_fail = args.auth_fail
        self.ttl = {}  # (db, coll) -> {index name: (field, expireAfterSeconds)}
        self.last_ttl_sweep = 0.0
        if args.state and os.path.exists(args.state):
            self.load(args.state)

    # ---- persistence -----------------------------------------------------

    def load(self, path):
        with open(path, 'rb') as f:
            state = bson.decode(f.read())
        for c in state['collections']:
            coll = self.client[c['db']][c['coll']]
            for spec in c['indexes']:
                self.create_index(c['db'], c['coll'], spec)
            if c['docs']:
                coll.insert_many(c['docs'])

    def save(self, path):
        collections = []
        for db_name in self.client.list_database_names():
            db = self.client[db_name]
            for coll_name in db.list_collection_names():
                collections.append({
                    'db': db_name, 'coll': coll_name,
                    'docs': list(db[coll_name].find()),
                    'indexes': self.indexes.get((db_name, coll_name), []),
                })
        tmp = path + '.tmp'
        with open(tmp, 'wb') as f:
            f.write(bson.encode({'collections': collections}))
        os.replace(tmp, path)

    def journal(self):
        if self.args.journal and self.args.state:
            self.save(self.args.state)

    # ---- commands ----------------------------------------------------------

    def create_index(self, db, coll, spec):
        keys = list(spec['key'].items())
        self.client[db][coll].create_index(keys, name=spec.get('name'),
                                           unique=bool(spec.get('unique')))
        known = self.indexes.setdefault((db, coll), [])
        if all(s.get('name') != spec.get('name') for s in known):
            known.append(dict(spec))
        if 'expireAfterSeconds' in spec and len(keys) == 1:
            self.ttl.setdefault((db, coll), {})[spec.get('name')] = (
                keys[0][0], float(spec['expireAfterSeconds']))

    def ttl_sweep(self):
        """Delete what TTL indexes say has expired; returns how many."""
        now = datetime.datetime.utcnow()
        deleted = 0
        for (db, coll), indexes in self.ttl.items():
            for field, seconds in indexes.values():
                limit = now - datetime.timedelta(seconds=seconds)
                deleted += self.client[db][coll].delete_many(
                    {field: {'$lte': limit}}).deleted_count
        self.last_ttl_sweep = time.monotonic()
        return deleted

    def hello(self, cmd):
        reply = {
            'ismaster': True, 'isWritablePrimary': True, 'helloOk': True,
            'maxBsonObjectSize': 16 * 1024 * 1024, 'maxMessageSizeBytes': 48000000,
            'maxWriteBatchSize': 100000, 'localTime': datetime.datetime.utcnow(),
            'logicalSessionTimeoutMinutes': 30, 'connectionId': next(self.connections),
            'minWireVersion': 0, 'maxWireVersion': MAX_WIRE_VERSION, 'readOnly': False,
        }
        if 'saslSupportedMechs' in cmd:
            reply['saslSupportedMechs'] = ['SCRAM-SHA-256', 'SCRAM-SHA-1']
        return reply

    def write_error(self, index, exc):
        code = getattr(exc, 'code', None) or 2
        return {'index': index, 'code': code, 'errmsg': str(exc)}

    def update(self, request, coll, cmd):
        updates = cmd.get('updates', [])
        self.updates_seen += 1
        every = self.args.hangup_every
        hang_up = every and self.updates_seen % every == 0
        if self.pass_updates > 0:
            self.pass_updates -= 1
        elif self.hangup_updates > 0:
            self.hangup_updates -= 1
            hang_up = True
        if hang_up:
            updates = updates[:len(updates) // 2]
        n = modified = 0
        upserted, errors = [], []
        for i, u in enumerate(updates):
            try:
                q, doc = u['q'], u['u']
                if isinstance(doc, list):
                    raise mongomock.OperationFailure('pipeline updates are not supported')
                if doc and all(not k.startswith('$') for k in doc):
                    r = coll.replace_one(q, doc, upsert=bool(u.get('upsert')))
                elif u.get('multi'):
                    r = coll.update_many(q, doc, upsert=bool(u.get('upsert')))
                else:
                    r = coll.update_one(q, doc, upsert=bool(u.get('upsert')))
                n += r.matched_count
                modified += r.modified_count
                if r.upserted_id is not None:
                    n += 1
                    upserted.append({'index': i, '_id': r.upserted_id})
            except TypeError as exc:
                # mongomock fails in Python on $inc of a non-number; the
                # server answers TypeMismatch (14) for that update, and
                # changes nothing of it.
                errors.append({'index': i, 'code': 14, 'codeName': 'TypeMismatch',
                               'errmsg': 'Cannot apply $inc to a value of non-numeric type (%s)'
                                         % exc})
                if cmd.get('ordered', True):
                    break
            except Exception as exc:  # mongomock raises per-op errors
                errors.append(self.write_error(i, exc))
                if cmd.get('ordered', True):
                    break
        if hang_up:
            self.journal()
            request.hangup()
            return None
        reply = {'n': n, 'nModified': modified}
        if upserted:
            reply['upserted'] = upserted
        if errors:
            reply['writeErrors'] = errors
        return reply

    def insert(self, coll, cmd):
        n, errors = 0, []
        for i, doc in enumerate(cmd.get('documents', [])):
            try:
                coll.insert_one(doc)
                n += 1
            except Exception as exc:
                errors.append(self.write_error(i, exc))
                if cmd.get('ordered', True):
                    break
        reply = {'n': n}
        if errors:
            reply['writeErrors'] = errors
        return reply

    def delete(self, coll, cmd):
        n, errors = 0, []
        for i, d in enumerate(cmd.get('deletes', [])):
            try:
                if d.get('limit', 0) == 1:
                    n += coll.delete_one(d['q']).deleted_count
                else:
                    n += coll.delete_many(d['q']).deleted_count
            except Exception as exc:
                errors.append(self.write_error(i, exc))
                if cmd.get('ordered', True):
                    break
        reply = {'n': n}
        if errors:
            reply['writeErrors'] = errors
        return reply

    def cursor_reply(self, ns, docs, batch_size, first):
        size = batch_size or (FIRST_BATCH if first else len(docs))
        batch, rest = docs[:size], docs[size:]
        cursor_id = 0
        if rest:
            cursor_id = next(self.cursor_ids)
            self.cursors[cursor_id] = (ns, rest)
        key = 'firstBatch' if first else 'nextBatch'
        return {'cursor': {'id': bson.int64.Int64(cursor_id), 'ns': ns, key: batch}}

    def find(self, db, coll, cmd):
        cursor = coll.find(cmd.get('filter') or {}, cmd.get('projection') or None)
        if cmd.get('sort'):
            cursor = cursor.sort(list(cmd['sort'].items()))
        if cmd.get('skip'):
            cursor = cursor.skip(cmd['skip'])
        if cmd.get('limit'):
            cursor = cursor.limit(abs(cmd['limit']))
        docs = [SON(d) for d in cursor]
        return self.cursor_reply('%s.%s' % (db, coll.name), docs, cmd.get('batchSize'), True)

    def get_more(self, cmd):
        cursor_id = int(cmd['getMore'])
        if cursor_id not in self.cursors:
            return {'ok': 0, 'code': 43, 'codeName': 'CursorNotFound',
                    'errmsg': 'cursor id %d not found' % cursor_id}
        ns, docs = self.cursors.pop(cursor_id)
        reply = self.cursor_reply(ns, docs, cmd.get('batchSize'), False)
        if reply['cursor']['id']:  # keep the same id for the rest
            new_id = int(reply['cursor']['id'])
            self.cursors[cursor_id] = self.cursors.pop(new_id)
            reply['cursor']['id'] = bson.int64.Int64(cursor_id)
        return reply

    def handle(self, request):
        cmd = request.doc
        name = next(iter(cmd), '')
        lower = name.lower()
        db_name = request.namespace.split('.')[0] if request.namespace else 'admin'
        if self.ttl and time.monotonic() - self.last_ttl_sweep >= 1.0:
            self.ttl_sweep()
        if lower in ('hello', 'ismaster'):
            reply = self.hello(cmd)
        elif lower in ('ping', 'endsessions', 'killcursors'):
            for cursor_id in cmd.get('cursors', []) if lower == 'killcursors' else []:
                self.cursors.pop(int(cursor_id), None)
            reply = {}
        elif lower == 'buildinfo':
            reply = {'version': '5.0.0', 'versionArray': [5, 0, 0, 0], 'maxBsonObjectSize':
                     16 * 1024 * 1024}
        elif lower in ('saslstart', 'authenticate') and self.auth_fail:
            reply = {'ok': 0, 'code': 18, 'codeName': 'AuthenticationFailed',
                     'errmsg': 'Authentication failed.'}
        elif lower in ('saslstart', 'authenticate'):
            reply = {'ok': 0, 'code': 334, 'codeName': 'MechanismUnavailable',
                     'errmsg': 'the stand-in does not implement SCRAM'}
        elif lower == 'mabstandinfault':
            self.hangup_updates = int(cmd.get('hangupUpdates', self.hangup_updates))
            self.pass_updates = int(cmd.get('passUpdates', 0))
            self.auth_fail = bool(cmd.get('authFail', self.auth_fail))
            reply = {'updatesSeen': self.updates_seen}
            if cmd.get('ttlSweep'):
                reply['deleted'] = self.ttl_sweep()
        elif lower == 'getmore':
            reply = self.get_more(cmd)
        else:
            coll = self.client[db_name][str(cmd[name])] if name else None
            if lower == 'update':
                reply = self.update(request, coll, cmd)
                if reply is None:
                    return True  # hung up on purpose
            elif lower == 'insert':
                reply = self.insert(coll, cmd)
            elif lower == 'delete':
                reply = self.delete(coll, cmd)
            elif lower == 'find':
                reply = self.find(db_name, coll, cmd)
            elif lower == 'createindexes':
                for spec in cmd.get('indexes', []):
                    self.create_index(db_name, coll.name, spec)
                reply = {'createdCollectionAutomatically': False}
            elif lower == 'listindexes':
                specs = [{'v': 2, 'key': {'_id': 1}, 'name': '_id_'}]
                specs += self.indexes.get((db_name, coll.name), [])
                reply = self.cursor_reply('%s.%s' % (db_name, coll.name), specs, None, True)
            elif lower == 'drop':
                coll.drop()
                self.indexes.pop((db_name, coll.name), None)
                reply = {}
            else:
                reply = {'ok': 0, 'code': 59, 'codeName': 'CommandNotFound',
                         'errmsg': "no such command: '%s'" % name}
        if lower in ('update', 'insert', 'delete', 'drop', 'createindexes'):
            self.journal()
        reply.setdefault('ok', 1)
        request.replies(reply)
        return True


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--port', type=int, default=0)
    parser.add_argument('--port-file')
    parser.add_argument('--state')
    parser.add_argument('--hangup-every', type=int, default=0)
    parser.add_argument('--auth-fail', action='store_true')
    parser.add_argument('--journal', action='store_true')
    args = parser.parse_args()

    standin = Standin(args)
    server = mockupdb.MockupDB(port=args.port or None, request_timeout=int(1e6))
    server.autoresponds(standin.handle)
    port = server.run()
    if args.port_file:
        tmp = args.port_file + '.tmp'
        with open(tmp, 'w') as f:
            f.write('%d\n' % port)
        os.replace(tmp, args.port_file)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    parent = os.getppid()
    # A test that crashes cannot stop us: leave with it, not as an orphan.
    while not stop.wait(0.2) and os.getppid() == parent:
        pass
    server.stop()
    if args.state:
        standin.save(args.state)
    return 0


if __name__ == '__main__':
    sys.exit(main())

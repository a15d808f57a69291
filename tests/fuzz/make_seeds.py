#!/usr/bin/env python3
"""Write the seed corpora of tests/fuzz/corpus/<target>/ (docs/fuzzing.md).

Seeds are small, meaningful inputs: valid configs, signed cookies, tricky
redirect targets, valid state files and LMDB records, request parameters.
Run it again after changing a format; regression inputs of bugs found by
the fuzzers are committed next to them by hand (named regress-*) and are
not touched here.
"""
import base64
import hashlib
import hmac
import json
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
# The harnesses' fixed test key (fuzz_cookie.c), never a real secret.
TEST_KEY = b"mab-fuzz-test-key-not-a-secret!\x00"


def write(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- fuzz_config -------------------------------------------------------------
shop = json.load(open(os.path.join(os.path.dirname(__file__), "../../examples/shop.json")))
shop["plugin_path"] = ["plugins"]
write("fuzz_config", "shop", json.dumps(shop, indent=1))
policies = {
    "epsilon": {"plugin": "epsilon_greedy", "epsilon": 0.2},
    "softmax": {"plugin": "softmax", "tau": 0.05, "annealing": True},
    "ucb1": {"plugin": "ucb1"},
    "thompson": {"plugin": "thompson", "alpha0": 2, "beta0": 0.5},
}
for name, policy in policies.items():
    write("fuzz_config", "policy-" + name, json.dumps({
        "plugin_path": ["plugins"], "seed": 1,
        "storage": {"plugin": "json_file", "path": "s.json", "sync": "always"},
        "experiments": {"e": {"policy": policy, "reward": {"min": -1, "max": 5},
                              "arms": {"a": None, "b": [1, 2], "c": {"x": "y"}}}}}))
write("fuzz_config", "web-keys", json.dumps({
    "plugin_path": ["plugins"],
    "storage": {"plugin": "lmdb", "path": "db", "map_size": 65536, "max_readers": 8,
                "sync": {"interval_ms": 10}},
    "secret_file": "key", "debug_header": True,
    "cookie": {"name": "v", "path": "/app", "domain": "example.com", "max_age": 60,
               "secure": True, "http_only": False, "same_site": "Strict"},
    "redirect_allow": ["/", "https://shop.example.com:8443/app"],
    "mabd": {"listen": "127.0.0.1:0"},
    "experiments": {"x": {"policy": {"plugin": "ucb1"}, "arms": {"l": 1, "r": 2}}}}))
write("fuzz_config", "bad-unknown-key", '{"plugin_path": ["plugins"], "experimnts": {}}')
write("fuzz_config", "bad-duplicate-arm",
      '{"plugin_path": ["plugins"], "experiments": {"e": {"policy": {"plugin": "ucb1"},'
      ' "arms": {"a": 1, "a": 2}}}}')
write("fuzz_config", "bad-reward-range",
      '{"plugin_path": ["plugins"], "experiments": {"e": {"policy": {"plugin": "ucb1"},'
      ' "reward": {"min": 1, "max": 1e300}, "arms": {"a": 1, "b": 2}}}}')
write("fuzz_config", "bad-json", '{"plugin_path": ["plugins"], "experiments": {"e": ')

# ---- fuzz_cookie ---------------------------------------------------------------
def entry(exp, arm, aid=b"\x01" * 16, rewarded=0, issued=None, prob=0.5):
    issued = 2000000000 if issued is None else issued  # in the future: never expired
    return (bytes([len(exp)]) + exp.encode() + bytes([len(arm)]) + arm.encode() + aid +
            bytes([rewarded]) + struct.pack(">I", issued) + struct.pack(">f", prob))


def body(*entries):
    return bytes([1, len(entries)]) + b"".join(entries)


def entry2(exp, arm, features=(), names_hash=0, **kw):
    """A format-2 entry: format 1's, then the features (cookie.h)."""
    e = entry(exp, arm, **kw) + bytes([len(features)])
    if features:
        e += struct.pack(">I", names_hash) + b"".join(struct.pack(">d", f) for f in features)
    return e


def fnv1a(names):
    h = 2166136261
    for name in names:
        for c in name.encode() + b"\0":
            h = ((h ^ c) * 16777619) & 0xFFFFFFFF
    return h


def body2(*entries):
    return bytes([2, len(entries)]) + b"".join(entries)


def signed_text(b):
    mac = hmac.new(TEST_KEY, b, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(b + mac).rstrip(b"=")


bodies = {
    "one": body(entry("color_btn", "red")),
    "two": body(entry("color_btn", "blue", b"\x02" * 16), entry("txt_btn", "casual", b"\x03" * 16)),
    "rewarded": body(entry("txt_btn", "neutral", b"\x04" * 16, rewarded=1)),
    "expired": body(entry("color_btn", "green", issued=1000)),
    "arm-removed": body(entry("color_btn", "purple")),
    "other-experiment": body(entry("old_exp", "x"), entry("color_btn", "red", b"\x05" * 16)),
    "nan-probability": body(entry("color_btn", "red", prob=float("nan"))),
    # flags bit 1: a holdout visitor; bit 2: chosen while paused (cookie.h)
    "holdout-flags": body(entry("color_btn", "red", b"\x0c" * 16, rewarded=2)),
    "paused-flags": body(entry("color_btn", "blue", b"\x0d" * 16, rewarded=4)),
    "empty": body(),
    "v2-no-features": body2(entry2("color_btn", "red", aid=b"\x06" * 16)),
    "v2-features": body2(entry2("txt_btn", "casual", (1.5, 13.0), fnv1a(["slot", "hour"]),
                                aid=b"\x07" * 16),
                         entry2("color_btn", "green", aid=b"\x08" * 16)),
    "v2-other-names": body2(entry2("txt_btn", "neutral", (2.0,), fnv1a(["slot"]),
                                   aid=b"\x09" * 16)),
    "v2-nan-feature": body2(entry2("txt_btn", "casual", (float("nan"), float("inf")),
                                   fnv1a(["slot", "hour"]), aid=b"\x0a" * 16)),
    "v2-short-features": body2(entry2("txt_btn", "casual", (1.0, 2.0), fnv1a(["slot", "hour"]),
                                      aid=b"\x0b" * 16)[:-4]),
}
for name, b in bodies.items():
    write("fuzz_cookie", "signed-token-" + name, b"\x00" + b)
    write("fuzz_cookie", "signed-cookie-" + name, b"\x01" + b)
write("fuzz_cookie", "raw-header", b"\x02theme=dark; mab=" + signed_text(bodies["two"]) + b"; x=1")
write("fuzz_cookie", "raw-header-quoted", b'\x02mab="' + signed_text(bodies["one"]) + b'"')
write("fuzz_cookie", "raw-header-two", b"\x02mab=AAAA; mab=" + signed_text(bodies["one"]))
write("fuzz_cookie", "raw-token", b"\x03" + signed_text(bodies["rewarded"]))
write("fuzz_cookie", "raw-token-forged", b"\x03" + signed_text(bodies["one"])[:-2] + b"AA")

# ---- fuzz_redirect ---------------------------------------------------------------
targets = [
    "/", "/shop/thanks?x=1#top", "/a/../b", "/%41b", "https://shop.example.com/",
    "https://shop.example.com/cart?id=1", "HTTPS://SHOP.EXAMPLE.COM/x",
    "https://shop.example.com:8443/app", "https://shop.example.com:8443/app/x",
    "https://shop.example.com:8443/app?q", "https://shop.example.com:8443/apple",
    "http://localhost/", "https://pay.example.org/checkout/done",
    "https://pay.example.org/checkout/../admin", "https://pay.example.org/checkout/%2e%2e/x",
    "//evil.example", "/\\evil.example", "\\\\evil.example", "/%2F/evil.example",
    "/\t/evil.example", " //evil.example", "https:evil.example", "https:/evil.example",
    "http:evil.example", "https://shop.example.com@evil.example/",
    "https://shop.example.com.evil.example/", "https://evil.example#https://shop.example.com/",
    "javascript:alert(1)", "data:text/html,x", "/%0d%0aSet-Cookie:x", "https://shop.example.com:443/",
]
for i, t in enumerate(targets):
    write("fuzz_redirect", "target-%02d" % i, t)

# ---- fuzz_json_state ---------------------------------------------------------------
def state(experiments):
    return json.dumps({"format": "mab-json-storage", "version": 1, "experiments": experiments})


arm = lambda p, r, s, q: {"pulls": p, "rewards": r, "reward_sum": s, "reward_sum_sq": q}
write("fuzz_json_state", "empty", state({}))
write("fuzz_json_state", "shop", state({
    "color_btn": {"green": arm(10, 2, 2, 2), "red": arm(5, 1, 1, 1), "blue": arm(0, 0, 0, 0)},
    "txt_btn": {"casual": arm(7, 3, 12.5, 60.25)},
    "price": {"m": arm(3, 1, 1, 1), "y": arm(4, 0, 0, 0)}}))
write("fuzz_json_state", "removed-arm-and-experiment", state({
    "color_btn": {"purple": arm(1, 1, 1, 1)}, "gone": {"a": arm(2, 0, 0, 0)}}))
write("fuzz_json_state", "large-counters", state({
    "color_btn": {"green": arm(2 ** 53, 2 ** 53, 1e300, 1.7e308)}}))
write("fuzz_json_state", "rewards-above-pulls", state({
    "color_btn": {"red": arm(1, 5, 5, 5)}}))
write("fuzz_json_state", "bad-version", '{"format": "mab-json-storage", "version": 2, "experiments": {}}')
write("fuzz_json_state", "bad-truncated", state({"color_btn": {"green": arm(1, 1, 1, 1)}})[:-7])

# Time buckets (storage ABI 1.5): [start, pulls, rewards, reward_sum, reward_sum_sq] per arm.
H = 3600
T0 = 1700000000 // H * H


def state_buckets(experiments, buckets):
    return json.dumps({"format": "mab-json-storage", "version": 1, "experiments": experiments,
                       "buckets": buckets}, indent=1)


shop_buckets = {"color_btn": {"green": [[T0 - 2 * H, 6, 1, 1, 1], [T0, 4, 1, 1, 1]],
                              "red": [[T0 - 30 * H, 5, 1, 1, 1]]},
                "txt_btn": {"casual": [[T0, 7, 3, 12.5, 60.25]]}}
write("fuzz_json_state", "buckets-shop", state_buckets({
    "color_btn": {"green": arm(10, 2, 2, 2), "red": arm(5, 1, 1, 1)},
    "txt_btn": {"casual": arm(7, 3, 12.5, 60.25)}}, shop_buckets))
write("fuzz_json_state", "buckets-removed-arm", state_buckets({}, {
    "color_btn": {"purple": [[-H, 1, 1, 1, 1], [0, 1, 0, 0, 0]]}, "gone": {"a": [[T0, 2, 0, 0, 0]]}}))
write("fuzz_json_state", "buckets-large", state_buckets({}, {
    "color_btn": {"green": [[2 ** 53, 2 ** 53, 2 ** 53, 1e300, 1.7e308]]}}))
write("fuzz_json_state", "bad-buckets-infinite",
      state_buckets({}, {"color_btn": {"green": [[T0, 1, 1, 1, 1]]}}).replace("1,\n     1\n", "1e999,\n     1\n"))
write("fuzz_json_state", "bad-buckets-duplicate", state_buckets({}, {
    "color_btn": {"green": [[T0, 1, 1, 1, 1], [T0, 1, 1, 1, 1]]}}))
write("fuzz_json_state", "bad-buckets-short", state_buckets({}, {
    "color_btn": {"green": [[T0, 1, 1, 1]]}}))

# ---- fuzz_lmdb ----------------------------------------------------------------------
def record(exp, arm_id, pulls, rewards, s, q, version=1):
    key = exp.encode() + b"\0" + arm_id.encode()
    value = struct.pack("=IIQQdd", version, 0, pulls, rewards, s, q)
    return bytes([0, len(key)]) + key + bytes([len(value)]) + value


write("fuzz_lmdb", "empty", b"\x00")
write("fuzz_lmdb", "shop", b"\x00" + record("color_btn", "green", 10, 2, 2, 2) +
      record("color_btn", "red", 5, 1, 1, 1) + record("txt_btn", "casual", 7, 3, 12.5, 60.25) +
      record("price", "y", 4, 0, 0, 0))
write("fuzz_lmdb", "removed-arm", b"\x00" + record("color_btn", "purple", 1, 1, 1, 1) +
      record("gone", "a", 2, 0, 0, 0))
write("fuzz_lmdb", "bad-record-version", b"\x00" + record("color_btn", "green", 1, 1, 1, 1, version=9))
write("fuzz_lmdb", "bad-record-size", b"\x00\x00\x0fcolor_btn\x00green\x04abcd")
write("fuzz_lmdb", "no-meta", b"\x01" + record("color_btn", "green", 1, 1, 1, 1))
write("fuzz_lmdb", "bad-meta-version", b"\x00\x01\x07version\x04\x02\x00\x00\x00")
write("fuzz_lmdb", "large-sums", b"\x00" + record("color_btn", "green", 2 ** 64 - 1, 2 ** 63, 1e308, 1.7e308))


def start_bytes(start):
    return struct.pack(">Q", (start + 2 ** 64) % 2 ** 64 ^ 2 ** 63)


def bucket(exp, arm_id, start, pulls, rewards, s, q, version=1, index=True):
    key = exp.encode() + b"\0" + start_bytes(start) + arm_id.encode()
    value = struct.pack("=IIQQdd", version, 0, pulls, rewards, s, q)
    out = bytes([3, len(key)]) + key + bytes([len(value)]) + value
    if index:
        skey = start_bytes(start) + exp.encode() + b"\0" + arm_id.encode()
        out += bytes([4, len(skey)]) + skey + b"\x00"
    return out


write("fuzz_lmdb", "buckets-shop", b"\x00" + record("color_btn", "green", 10, 2, 2, 2) +
      bucket("color_btn", "green", T0 - 2 * H, 6, 1, 1, 1) + bucket("color_btn", "green", T0, 4, 1, 1, 1) +
      bucket("color_btn", "red", T0 - 30 * H, 5, 1, 1, 1) + bucket("txt_btn", "casual", T0, 7, 3, 12.5, 60.25))
write("fuzz_lmdb", "buckets-negative-start", b"\x00" + bucket("color_btn", "blue", -H, 1, 1, 1, 1) +
      bucket("color_btn", "blue", 0, 1, 0, 0, 0))
write("fuzz_lmdb", "buckets-no-index", b"\x00" + bucket("color_btn", "green", T0 - 100 * H, 1, 1, 1, 1, index=False))
write("fuzz_lmdb", "bad-bucket-nan", b"\x00" + bucket("color_btn", "green", T0, 1, 1, float("nan"), 1))
write("fuzz_lmdb", "bad-bucket-version", b"\x00" + bucket("color_btn", "red", T0, 1, 1, 1, 1, version=9))
write("fuzz_lmdb", "bad-bucket-short-key", b"\x00\x03\x0dcolor_btn\x00abc\x28" + b"\x01" + b"\x00" * 39)
write("fuzz_lmdb", "bad-bucket-start-key", b"\x00\x04\x05abcde\x00")

# ---- fuzz_mabd_params -------------------------------------------------------------------
for i, p in enumerate(["color_btn", "color_btn,txt_btn", "a-b_C9", ",", "a,,b", "a,", "x" * 128,
                       "x" * 129, ",".join("e%d" % i for i in range(32)),
                       ",".join("e%d" % i for i in range(33)), "1", "0.5", "-1e3", "1e309",
                       "nan", "inf", "0x1p-3", " 1", "1 ", "", "1e-400"]):
    write("fuzz_mabd_params", "param-%02d" % i, p)

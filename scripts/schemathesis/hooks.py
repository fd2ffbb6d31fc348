"""Schemathesis hooks for rushhour's contract run (scripts/schemathesis.sh).

Why a hook: the document states the shape of an order exactly, but which
skus, sizes and modifiers a store sells is data (its menu, synced from
upstream), not schema. Generated order lines would almost never name a real
item, so the contract run would never reach a 202 and never place the
orders its stateful links then read and cancel. This hook rewrites the
lines of *positive* order bodies (the ones the document says are valid)
into items of the store's live menu, keeping the generated shape (number of
lines, quantities, how many modifiers, names, customers); negative bodies
are sent as generated, so every refusal is still fuzzed.

An `Idempotency-Key` generated for one order body may be generated again
for another; the server rightly refuses that reuse (422), which says
nothing about the document. Positive order keys are therefore made unique
per body (the same key and body still map to the same key, so replays are
still fuzzed).

Generated session cookies are dropped: the run authenticates with the
`bearer` scheme only, and a junk cookie beside a valid bearer makes
schemathesis read the (rightly accepted) request as one with invented
credentials. Sessions are covered by the API and browser tests.

Payment callbacks are signed (and their event ids, like order keys, made
unique per body in positive cases): the run gives the `webhook_signature`
scheme a placeholder value, and the hook replaces exactly that value with
a real `Rushhour-Signature` over the body as it will be sent (schemathesis
sends JSON as `json.dumps` writes it). Anything else in the header (a
mutated or invalid one, or schemathesis' own probes without it) is sent as
generated, so refusals stay fuzzed and `ignored_auth` still holds.

Likewise the availability switch is pointed at one item kept out of the
orders, so fuzzing can 86 it for real without turning a valid order into a
refused one.
"""

import hashlib
import hmac
import json
import os
import time
import urllib.request

import hypothesis.internal.lambda_sources as _lambda_sources
import schemathesis

# CPython 3.11 before 3.11.8 can raise `SystemError: AST constructor
# recursion depth mismatch` from `ast.parse` deep in a call stack
# (python/cpython#106905); Hypothesis parses a lambda's source only to name
# it in messages, and the error aborts the operation being tested. Name it
# "<unknown>" instead, as Hypothesis does when it cannot find the source.
_describe = _lambda_sources._lambda_description


def _lambda_description(f, *args, **kwargs):
    try:
        return _describe(f, *args, **kwargs)
    except SystemError:
        return "lambda: <unknown>"


_lambda_sources._lambda_description = _lambda_description

BASE = os.environ["RUSHHOUR_ST_BASE"]
STORE = os.environ.get("RUSHHOUR_ST_STORE", "demo-downtown")
KEY = os.environ.get("RUSHHOUR_ST_KEY", "")
WEBHOOK_SECRET = os.environ.get("RUSHHOUR_ST_WEBHOOK_SECRET", "")
SIGN_ME = "sign-me"


def _menu():
    req = urllib.request.Request(f"{BASE}/v1/stores/{STORE}/menu", headers={"Accept-Encoding": "identity"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)


_ITEMS = sorted((i for c in _menu()["categories"] for i in c["items"]), key=lambda i: i["sku"])
# The one item the availability switch may turn off; orders never use it.
SPARE = _ITEMS[-1]["sku"]
ORDERABLE = [i for i in _ITEMS[:-1] if i.get("available", True)]


def _pick(seq, seed):
    h = int.from_bytes(hashlib.sha256(repr(seed).encode()).digest()[:8], "big")
    return seq[h % len(seq)]


def _line(line):
    item = _pick(ORDERABLE, line.get("sku"))
    sizes = [s["code"] for s in item.get("sizes", [])]
    mods = [m["code"] for m in item.get("modifiers", [])]
    out = {"sku": item["sku"], "qty": line["qty"]}
    if sizes:
        out["size"] = _pick(sizes, line.get("size"))
    wanted = len(line.get("modifiers") or [])
    if mods and wanted:
        out["modifiers"] = [_pick(mods, (i, m)) for i, m in enumerate(line["modifiers"])][: min(wanted, 10)]
    return out


def _positive(case):
    meta = getattr(case, "meta", None)
    return meta is not None and meta.generation.mode.is_positive


def _sign(case):
    body = json.dumps(case.body, allow_nan=False).encode()
    t = str(int(time.time()))
    mac = hmac.new(WEBHOOK_SECRET.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    case.headers = {**case.headers, "Rushhour-Signature": f"t={t},v1={mac}"}


@schemathesis.hook
def before_call(ctx, case, kwargs):
    if case.cookies and "rh_session" in case.cookies:
        case.cookies = {k: v for k, v in case.cookies.items() if k != "rh_session"}
    if (
        case.operation.path == "/v1/webhooks/payments"
        and _positive(case)
        and isinstance(case.body, dict)
        and isinstance(case.body.get("id"), str)
    ):
        # An event id generated again for another body is a reuse the
        # server rightly refuses (422); unique per body, as with orders.
        rest = {k: v for k, v in case.body.items() if k != "id"}
        digest = hashlib.sha256((case.body["id"] + json.dumps(rest, sort_keys=True)).encode()).hexdigest()
        # Keys in one order: the claim fingerprints the raw bytes, so the
        # same event must be sent as the same bytes.
        case.body = dict(sorted({**case.body, "id": f"evt_{digest[:32]}"}.items()))
    if (
        case.operation.path == "/v1/webhooks/payments"
        and WEBHOOK_SECRET
        and (case.headers or {}).get("Rushhour-Signature") == SIGN_ME
        and isinstance(case.body, (dict, list, str, int, float, bool))
    ):
        _sign(case)
    if not _positive(case):
        return
    path, method = case.operation.path, case.method.upper()
    if path == "/v1/orders" and method == "POST" and isinstance(case.body, dict):
        body = dict(case.body)
        body["store"] = STORE
        body["lines"] = [_line(l) for l in body.get("lines", []) if isinstance(l, dict)]
        case.body = body
        key = (case.headers or {}).get("Idempotency-Key")
        if isinstance(key, str) and key:
            digest = hashlib.sha256((key + json.dumps(body, sort_keys=True)).encode()).hexdigest()
            case.headers = {**case.headers, "Idempotency-Key": digest}
    elif path == "/v1/admin/webhooks" and method == "POST" and isinstance(case.body, dict):
        # A subscriber's store must exist (422 `unknown_store`): data again.
        if case.body.get("store"):
            case.body = {**case.body, "store": STORE}
    elif path == "/v1/stores/{id}/items/{sku}/availability":
        case.path_parameters = {**case.path_parameters, "id": STORE, "sku": SPARE}

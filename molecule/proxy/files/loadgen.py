"""Bounded load through the proxy while a slot switch happens (test scaffolding).

Usage: loadgen.py URL HOSTHEADER RESULT_JSON WARM_FILE STOP_FILE
Four workers: two reuse keep-alive connections, two open a new connection per request.
Writes WARM_FILE after WARM requests; once STOP_FILE exists it makes AFTER more requests
and stops (during_switch: the requests between the two, while the switch ran).
Hard bounds: MAX_REQUESTS in all, MAX_SECONDS, and a paced rate. Only loopback is targeted.

A failed request is any exception or any answer other than 200 with a slot in the body.
Like every HTTP client (browsers, urllib3), a request whose *reused* idle keep-alive
connection was closed by the server before anything was sent back is resent once on a
new connection; those are counted apart (retried_idle_close), never hidden.
"""
import http.client
import json
import os
import ssl
import sys
import threading
import time
from urllib.parse import urlsplit

URL, HOST, RESULT, WARM_FILE, STOP_FILE = sys.argv[1:6]
WARM, AFTER, MAX_REQUESTS, MAX_SECONDS = 500, 1500, 100000, 300
PER_WORKER_RATE = 100.0  # requests per second and worker, at most (400/s in all)
parts = urlsplit(URL)
assert parts.hostname in ('127.0.0.1', '::1', 'localhost'), 'loopback only'
CTX = ssl._create_unverified_context()  # pylint: disable=protected-access

lock = threading.Lock()
state = {'total': 0, 'ok': 0, 'failed': 0, 'retried_idle_close': 0, 'slots': {},
         'failures': [], 'sequence': [], 'stop_at': None}
start = time.monotonic()


def connect():
    if parts.scheme == 'https':
        return http.client.HTTPSConnection(parts.hostname, parts.port or 443, timeout=10, context=CTX)
    return http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=10)


def once(conn, path):
    conn.request('GET', path, headers={'Host': HOST})
    resp = conn.getresponse()
    body = resp.read()
    return resp.status, body, resp.getheader('Connection', '')


def more():
    with lock:
        if state['total'] >= MAX_REQUESTS or time.monotonic() - start > MAX_SECONDS:
            return False
        if state['stop_at'] is None and os.path.exists(STOP_FILE):
            state['stop_at'] = state['total'] + AFTER
            state['during_switch'] = state['total'] - WARM
        if state['stop_at'] is not None and state['total'] >= state['stop_at']:
            return False
        state['total'] += 1
        if state['total'] == WARM:
            open(WARM_FILE, 'w').close()
        return True


def record(status, body, error):
    slot = None
    if status == 200:
        try:
            slot = json.loads(body).get('slot')
        except ValueError:
            slot = None
    with lock:
        if slot in ('blue', 'green'):
            state['ok'] += 1
            state['slots'][slot] = state['slots'].get(slot, 0) + 1
            state['sequence'].append(slot)
        else:
            state['failed'] += 1
            state['sequence'].append('FAIL')
            if len(state['failures']) < 20:
                state['failures'].append(error or 'HTTP %s %r' % (status, body[:200]))


def worker(keepalive, n):
    conn = connect() if keepalive else None
    i = 0
    t0 = time.monotonic()
    while more():
        i += 1
        delay = t0 + i / PER_WORKER_RATE - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        path = '/api/load/%d/%d' % (n, i)
        status, body, error = None, b'', None
        try:
            if keepalive:
                reused = conn.sock is not None
                try:
                    status, body, hdr = once(conn, path)
                except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                    conn.close()
                    if not reused:
                        raise
                    with lock:
                        state['retried_idle_close'] += 1
                    conn = connect()
                    status, body, hdr = once(conn, path)
                if hdr.lower() == 'close':
                    conn.close()
            else:
                c = connect()
                try:
                    status, body, _hdr = once(c, path)
                finally:
                    c.close()
        except Exception as exc:  # pylint: disable=broad-except
            error = '%s: %s' % (type(exc).__name__, exc)
            if keepalive:
                conn.close()
                conn = connect()
        record(status, body, error)


threads = [threading.Thread(target=worker, args=(k, n)) for n, k in enumerate([True, True, False, False])]
for t in threads:
    t.start()
for t in threads:
    t.join()
state['seconds'] = round(time.monotonic() - start, 2)
seq = state.pop('sequence')
state['last_200'] = seq[-200:]
state['first_green_index'] = seq.index('green') if 'green' in seq else None
state['blue_after_first_green'] = seq[state['first_green_index']:].count('blue') if 'green' in seq else None
with open(RESULT + '.tmp', 'w') as fh:
    json.dump(state, fh, indent=1)
os.rename(RESULT + '.tmp', RESULT)

"""Bounded load on the scenario's proxies while a release rolls out (test scaffolding).

Usage: loadgen.py RESULT_JSON STOP_FILE URL [URL...]
Per URL two workers, one reusing a keep-alive connection, one opening a connection per
request, each paced to RATE requests per second (SHIPYARD_LOADGEN_RATE overrides it). Stops
STOP_GRACE seconds after STOP_FILE appears; hard bounds MAX_REQUESTS and MAX_SECONDS. Only the
scenario's own hosts are targeted. Every request's latency is kept (latencies_ms per URL, in
the order sent) for the percentiles benchmarks/rollout.py reports.

A failed request is any exception or any status other than 200. Versions come from the
app's X-App-Version header. A request whose reused idle keep-alive connection was closed by
the server before it answered is resent once on a new connection, as every HTTP client does;
those are counted apart (retried_idle_close), never hidden.
"""
import http.client
import json
import os
import sys
import threading
import time
from urllib.parse import urlsplit

RESULT, STOP_FILE = sys.argv[1:3]
URLS = sys.argv[3:]
RATE = float(os.environ.get('SHIPYARD_LOADGEN_RATE') or 10.0)
STOP_GRACE, MAX_REQUESTS, MAX_SECONDS = 1.0, 60000, 900
ALLOWED = ('app1', 'app2', '127.0.0.1', 'localhost')
start = time.monotonic()
lock = threading.Lock()
state = {url: {'total': 0, 'ok': 0, 'failed': 0, 'retried_idle_close': 0, 'versions': {}, 'sequence': [],
               'failures': [], 'latencies_ms': []} for url in URLS}
stop = {'at': None}


def more():
    now = time.monotonic()
    if now - start > MAX_SECONDS or sum(s['total'] for s in state.values()) >= MAX_REQUESTS:
        return False
    if stop['at'] is None and os.path.exists(STOP_FILE):
        stop['at'] = now + STOP_GRACE
    return stop['at'] is None or now < stop['at']


def once(conn, host, path):
    conn.request('GET', path, headers={'Host': 'localhost'})
    resp = conn.getresponse()
    resp.read()
    return resp.status, resp.getheader('X-App-Version', ''), resp.getheader('Connection', '')


def worker(url, keepalive):
    parts = urlsplit(url)
    assert parts.hostname in ALLOWED, 'only the scenario hosts'
    path = parts.path or '/'
    conn = None
    n = 0
    t0 = time.monotonic()
    while more():
        n += 1
        delay = t0 + n / RATE - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        status, version, error = None, '', None
        sent = time.monotonic()
        try:
            if keepalive:
                reused = conn is not None
                if conn is None:
                    conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=10)
                try:
                    status, version, hdr = once(conn, parts.hostname, path)
                except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                    conn.close()
                    if not reused:
                        raise
                    with lock:
                        state[url]['retried_idle_close'] += 1
                    conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=10)
                    status, version, hdr = once(conn, parts.hostname, path)
                if hdr.lower() == 'close':
                    conn.close()
                    conn = None
            else:
                c = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=10)
                try:
                    status, version, _body = once(c, parts.hostname, path)
                finally:
                    c.close()
        except Exception as exc:  # pylint: disable=broad-except
            error = '%s: %s' % (type(exc).__name__, exc)
            if conn is not None:
                conn.close()
                conn = None
        took_ms = round((time.monotonic() - sent) * 1000.0, 2)
        with lock:
            s = state[url]
            s['total'] += 1
            s['latencies_ms'].append(took_ms)
            if status == 200:
                s['ok'] += 1
                s['versions'][version] = s['versions'].get(version, 0) + 1
                if not s['sequence'] or s['sequence'][-1] != version:
                    s['sequence'].append(version)
            else:
                s['failed'] += 1
                if len(s['failures']) < 20:
                    s['failures'].append(error or 'HTTP %s' % status)


threads = [threading.Thread(target=worker, args=(url, keep)) for url in URLS for keep in (True, False)]
for t in threads:
    t.start()
for t in threads:
    t.join()
result = {'seconds': round(time.monotonic() - start, 1), 'urls': state,
          'total': sum(s['total'] for s in state.values()), 'failed': sum(s['failed'] for s in state.values())}
with open(RESULT + '.tmp', 'w') as fh:
    json.dump(result, fh, indent=1)
os.rename(RESULT + '.tmp', RESULT)

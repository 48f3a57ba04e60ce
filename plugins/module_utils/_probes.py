# -*- coding: utf-8 -*-
# Copyright (c) 2026, shipyard.webstack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Readiness probes and the polling loop behind health_poll. Private to the collection.

Every probe is a plain function ``probe_<type>(options, timeout)`` that never
raises: it returns a dict ``{'ok', 'state', 'error', 'details'}`` where
``state`` names what the service is doing (``accepting``, ``LOADING``,
``unhealthy``...). The classifiers that turn raw answers into states are pure
functions so they can be unit tested without a server.

Only the standard library is used, except for postgres/pgbouncer, which use
the driver found by _pg (or the pg_isready/psql client programs).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import errno
import json
import os
import re
import socket
import ssl
import subprocess
import threading
import time

try:
    import http.client as http_client
    from urllib.parse import quote, urlsplit, unquote
except ImportError:  # pragma: no cover - Python 2 is not supported
    http_client = None  # type: ignore
    quote = urlsplit = unquote = None  # type: ignore

from ansible_collections.shipyard.webstack.plugins.module_utils._pg import (
    PG_DRIVER,
    classify_pg_error,
    connection_params,
    pg_connect,
    pg_query,
    pg_simple_query,
    sqlstate_of,
)
from ansible_collections.shipyard.webstack.plugins.module_utils._engine import docker_get, docker_socket_path
from ansible_collections.shipyard.webstack.plugins.module_utils._redact import redact, redact_url

# How much of a body or an output is kept in details and messages.
EXCERPT_LEN = 300

# A login the service refused: wrong or not yet set credentials, a user or database not created yet.
# In check mode a deploy only previews such changes, so these states say nothing about the stack then
# (health_poll's login_refused=report, migration_gate's preview).
LOGIN_REFUSED_STATES = frozenset([
    'auth_failed', 'not_allowed', 'database_missing',   # postgres / pgbouncer
    'WRONGPASS', 'NOAUTH', 'NOPERM',                    # redis
])

# States that will not fix themselves while we wait (a wrong password does
# not become right): with fail_fast the poll stops at once on them.
PERMANENT_STATES = LOGIN_REFUSED_STATES | frozenset([
    'DENIED',                                            # redis protected mode
    'tls_error',                                         # certificate verification
    'no_executable',                                     # command
])

HTTP_OK_DEFAULT = tuple(range(200, 300))


def probe_result(ok, state, error=None, **details):
    """The one shape every probe returns."""
    return {'ok': bool(ok), 'state': state, 'error': error, 'details': details}


def excerpt(text, limit=EXCERPT_LEN):
    """A short, single-paragraph excerpt of text for messages."""
    if text is None:
        return ''
    if isinstance(text, bytes):
        text = text.decode('utf-8', 'replace')
    text = text.strip()
    return text if len(text) <= limit else text[:limit] + '...'


# --------------------------------------------------------------------------
# Backoff
# --------------------------------------------------------------------------

def backoff_delay(interval, factor=1.0, max_interval=None, failures=0):
    """Seconds to wait before the next round after ``failures`` failing rounds in a row.

    The first retry waits ``interval``; each further failing round multiplies
    the wait by ``factor``, never beyond ``max_interval``.
    """
    if max_interval is None:
        max_interval = interval
    max_interval = max(max_interval, interval)
    if failures <= 1 or factor <= 1.0:
        return float(interval)
    # Cap the exponent: past ~60 doublings the product only overflows.
    delay = interval * factor ** min(failures - 1, 64)
    return float(min(delay, max_interval))


def backoff_schedule(interval, factor=1.0, max_interval=None, rounds=5):
    """The waits after each of ``rounds`` consecutive failing rounds (for docs and tests)."""
    return [backoff_delay(interval, factor, max_interval, n) for n in range(1, rounds + 1)]


# --------------------------------------------------------------------------
# Sockets and TLS
# --------------------------------------------------------------------------

def classify_socket_error(exc):
    """State name for a socket-level failure."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return 'tls_error'
    if isinstance(exc, ssl.SSLError):
        return 'tls_handshake_failed'
    if isinstance(exc, socket.gaierror):
        return 'unresolved'
    if isinstance(exc, socket.timeout):
        return 'timeout'
    if isinstance(exc, ConnectionRefusedError):
        return 'refused'
    if isinstance(exc, (ConnectionResetError, ConnectionAbortedError, BrokenPipeError)):
        return 'reset'
    if isinstance(exc, FileNotFoundError):
        return 'refused'  # a unix socket that is not there: nobody listens
    number = getattr(exc, 'errno', None)
    if number in (errno.ENETUNREACH, errno.EHOSTUNREACH):
        return 'unreachable'
    if number == errno.ECONNREFUSED:
        return 'refused'
    if number == errno.EACCES:
        return 'permission_denied'
    return 'error'


def tls_context(validate_certs=True, ca_path=None, client_cert=None, client_key=None):
    """A client SSLContext. ``ca_path`` replaces the system CAs when given."""
    if validate_certs:
        ctx = ssl.create_default_context(cafile=ca_path) if ca_path else ssl.create_default_context()
    else:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if client_cert:
        ctx.load_cert_chain(client_cert, client_key)
    return ctx


def open_stream(host=None, port=None, unix_socket=None, timeout=5.0, tls=None, server_name=None):
    """Connected socket to host:port or a unix socket, wrapped in TLS when ``tls`` (an SSLContext)."""
    if unix_socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(unix_socket)
        except Exception:
            sock.close()
            raise
    else:
        sock = socket.create_connection((host, port), timeout=timeout)
    if tls is not None:
        try:
            sock = tls.wrap_socket(sock, server_hostname=server_name or host)
        except Exception:
            sock.close()
            raise
    return sock


# --------------------------------------------------------------------------
# TCP
# --------------------------------------------------------------------------

def probe_tcp(options, timeout):
    """Something accepts TCP connections at host:port."""
    try:
        sock = open_stream(options['host'], options['port'], timeout=timeout)
    except (OSError, ValueError) as exc:
        return probe_result(False, classify_socket_error(exc), '%s:%s: %s' % (options['host'], options['port'], exc))
    sock.close()
    return probe_result(True, 'open')


# --------------------------------------------------------------------------
# HTTP(S)
# --------------------------------------------------------------------------

def json_field_value(document, path):
    """Value at a dotted path (``checks.db.status``; list indexes are numbers). Raises KeyError."""
    value = document
    for part in path.split('.'):
        if isinstance(value, list):
            try:
                value = value[int(part)]
            except (ValueError, IndexError):
                raise KeyError(path)
        elif isinstance(value, dict) and part in value:
            value = value[part]
        else:
            raise KeyError(path)
    return value


def _same_value(actual, expected):
    if actual == expected:
        return True
    # YAML gives "true"/"1" where JSON has true/1: compare the JSON spelling too.
    return json.dumps(actual) == (expected if isinstance(expected, str) else json.dumps(expected)) or \
        (isinstance(actual, str) and actual == str(expected))


def classify_http(status, body, status_codes=None, body_regex=None, json_field=None, json_value=None):
    """(ok, state, error) for an HTTP answer. ``body`` is text."""
    expected = list(status_codes) if status_codes else list(HTTP_OK_DEFAULT)
    if status not in expected:
        wanted = 'any 2xx' if not status_codes else ', '.join(str(s) for s in expected)
        return False, 'bad_status', 'HTTP %s (expected %s)' % (status, wanted)
    if body_regex and not re.search(body_regex, body or ''):
        return False, 'body_mismatch', 'body does not match %r' % body_regex
    if json_field:
        try:
            document = json.loads(body or '')
        except ValueError:
            return False, 'body_mismatch', 'body is not JSON (needed field %r)' % json_field
        try:
            actual = json_field_value(document, json_field)
        except KeyError:
            return False, 'body_mismatch', 'JSON field %r is missing' % json_field
        if json_value is not None and not _same_value(actual, json_value):
            return False, 'body_mismatch', 'JSON field %r is %s (expected %s)' % (
                json_field, json.dumps(actual), json.dumps(json_value))
    return True, 'ok', None


def http_target(options):
    """(scheme, host, port, path_with_query, userinfo) from url or host/port/path options."""
    if options.get('url'):
        parts = urlsplit(options['url'])
        scheme = parts.scheme.lower()
        if scheme not in ('http', 'https'):
            raise ValueError('the URL scheme must be http:// or https://')
        host = parts.hostname
        port = parts.port or (443 if scheme == 'https' else 80)
        path = parts.path or '/'
        if parts.query:
            path += '?' + parts.query
        userinfo = None
        if parts.username is not None:
            userinfo = (unquote(parts.username), unquote(parts.password or ''))
        return scheme, host, port, path, userinfo
    scheme = options.get('scheme') or 'http'
    port = options.get('port') or (443 if scheme == 'https' else 80)
    return scheme, options.get('host') or '127.0.0.1', port, options.get('path') or '/', None


def _header(headers, name):
    for key, value in (headers or {}).items():
        if key.lower() == name.lower():
            return value
    return None


def probe_http(options, timeout):
    """An HTTP(S) endpoint answers with an expected status (and body)."""
    try:
        scheme, host, port, path, userinfo = http_target(options)
    except ValueError as exc:
        return probe_result(False, 'invalid', str(exc))
    headers = dict((str(k), str(v)) for k, v in (options.get('headers') or {}).items())
    if userinfo and not _header(headers, 'Authorization'):
        token = base64.b64encode(('%s:%s' % userinfo).encode('utf-8')).decode('ascii')
        headers['Authorization'] = 'Basic ' + token
    headers.setdefault('User-Agent', 'shipyard.webstack.health_poll')
    if scheme == 'https':
        # A Host header names the virtual host: verify and send SNI for it.
        host_header = _header(headers, 'Host')
        server_name = host_header.rsplit(':', 1)[0] if host_header and not host_header.startswith('[') else None
        try:
            ctx = tls_context(options.get('validate_certs', True), options.get('ca_path'),
                              options.get('client_cert'), options.get('client_key'))
        except (OSError, ssl.SSLError) as exc:
            return probe_result(False, 'invalid', 'cannot load TLS files: %s' % exc)
        conn = _HTTPSConnection(host, port, timeout=timeout, context=ctx, server_name=server_name)
    else:
        conn = http_client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(options.get('method') or 'GET', path, headers=headers)
        response = conn.getresponse()
        raw = response.read(64 * 1024)
    except (OSError, http_client.HTTPException, ValueError) as exc:
        state = classify_socket_error(exc)
        if state == 'error' and isinstance(exc, http_client.HTTPException):
            state = 'bad_response'
        return probe_result(False, state, '%s %s:%s%s: %s' % (options.get('method') or 'GET', host, port, path, exc))
    finally:
        conn.close()
    charset = response.headers.get_content_charset() or 'utf-8'
    body = raw.decode(charset, 'replace')
    ok, state, error = classify_http(response.status, body, options.get('status_codes'),
                                     options.get('body_regex'), options.get('json_field'), options.get('json_value'))
    return probe_result(ok, state, error, status=response.status, reason=response.reason, body_excerpt=excerpt(body))


class _HTTPSConnection(http_client.HTTPSConnection if http_client else object):
    """HTTPSConnection that can verify a name other than the address it connects to."""

    def __init__(self, host, port, timeout, context, server_name=None):
        super(_HTTPSConnection, self).__init__(host, port, timeout=timeout, context=context)
        self._tls = context
        self._server_name = server_name

    def connect(self):
        sock = socket.create_connection((self.host, self.port), self.timeout)
        self.sock = self._tls.wrap_socket(sock, server_hostname=self._server_name or self.host)


# --------------------------------------------------------------------------
# Redis (RESP2 over a plain or TLS socket)
# --------------------------------------------------------------------------

class RedisError(Exception):
    """An error reply (``-ERR ...``) from the server."""


class RedisProtocolError(Exception):
    """Something that is not RESP came back."""


REDIS_ERROR_STATES = ('LOADING', 'BUSY', 'MISCONF', 'NOAUTH', 'WRONGPASS', 'NOPERM', 'DENIED', 'MASTERDOWN',
                      'READONLY', 'NOREPLICAS')

REDIS_HINTS = {
    'LOADING': 'redis is loading its dataset into memory',
    'BUSY': 'redis is busy running a script or function',
    'MISCONF': 'redis cannot persist to disk (stop-writes-on-bgsave-error): writes are refused',
    'NOAUTH': 'redis requires a password and none was given',
    'WRONGPASS': 'wrong password or ACL user (or the user is disabled)',
    'NOPERM': 'the ACL user may not run this command',
    'DENIED': 'redis is in protected mode and refuses non-loopback clients without a password',
    'MASTERDOWN': 'this replica lost its master and replica-serve-stale-data is no',
}


def encode_command(*args):
    """A RESP array of bulk strings."""
    out = [b'*%d\r\n' % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode('utf-8')
        out.append(b'$%d\r\n%s\r\n' % (len(data), data))
    return b''.join(out)


def read_reply(stream, depth=0):
    """Read one RESP2 reply from a binary file object. Error replies are returned as RedisError."""
    line = stream.readline(1024 * 1024)
    if not line:
        raise RedisProtocolError('connection closed by the server')
    if not line.endswith(b'\r\n'):
        raise RedisProtocolError('truncated reply')
    kind, payload = line[:1], line[1:-2]
    if kind == b'+':
        return payload.decode('utf-8', 'replace')
    if kind == b'-':
        return RedisError(payload.decode('utf-8', 'replace'))
    if kind == b':':
        return int(payload)
    if kind == b'$':
        size = int(payload)
        if size < 0:
            return None
        data = stream.read(size + 2)
        if len(data) != size + 2:
            raise RedisProtocolError('truncated bulk reply')
        return data[:-2].decode('utf-8', 'replace')
    if kind == b'*':
        count = int(payload)
        if count < 0:
            return None
        if depth > 8:
            raise RedisProtocolError('reply nested too deep')
        return [read_reply(stream, depth + 1) for dummy in range(count)]
    raise RedisProtocolError('not a RESP reply: %r' % excerpt(line, 40))


def classify_redis_reply(reply):
    """(ok, state, error) for the reply to PING."""
    if isinstance(reply, RedisError):
        return False, classify_redis_error(str(reply)), str(reply)
    if reply == 'PONG':
        return True, 'ok', None
    return False, 'unexpected_reply', 'PING answered %r' % excerpt(str(reply), 80)


def classify_redis_error(message):
    """State for an error reply: its leading code word when it is one we know, else ``error``."""
    code = (message or '').split(' ', 1)[0].upper()
    if code in REDIS_ERROR_STATES:
        return code
    # Redis < 6 answered a wrong AUTH with "-ERR invalid password".
    if re.search(r'invalid password|invalid username-password', message or '', re.I):
        return 'WRONGPASS'
    return 'error'


def parse_redis_info(text):
    """INFO output as a flat dict of strings."""
    info = {}
    for line in (text or '').splitlines():
        if not line or line.startswith('#') or ':' not in line:
            continue
        key, value = line.split(':', 1)
        info[key.strip()] = value.strip()
    return info


def redis_info_problems(info, persistence=False, role=None):
    """(state, error) for the first problem INFO shows, or (None, None)."""
    if persistence:
        if info.get('loading') == '1':
            return 'LOADING', 'INFO says loading:1'
        if info.get('aof_enabled') == '1' and info.get('aof_last_write_status', 'ok') != 'ok':
            return 'aof_write_error', 'aof_last_write_status:%s' % info.get('aof_last_write_status')
        if info.get('aof_last_bgrewrite_status', 'ok') != 'ok':
            return 'aof_write_error', 'aof_last_bgrewrite_status:%s' % info.get('aof_last_bgrewrite_status')
        if info.get('rdb_last_bgsave_status', 'ok') != 'ok':
            return 'rdb_bgsave_error', 'rdb_last_bgsave_status:%s' % info.get('rdb_last_bgsave_status')
    if role:
        actual = info.get('role')
        wanted = 'slave' if role == 'replica' else role
        if actual != wanted:
            return 'wrong_role', 'role is %s (expected %s)' % (actual, role)
        if role == 'replica' and info.get('master_link_status') != 'up':
            return 'replica_link_down', 'master_link_status:%s' % info.get('master_link_status')
    return None, None


def _redis_call(sock, stream, *args):
    sock.sendall(encode_command(*args))
    return read_reply(stream)


def probe_redis(options, timeout):
    """PING answers PONG (after AUTH); optionally INFO shows healthy persistence / the right role."""
    target = options.get('unix_socket') or '%s:%s' % (options.get('host'), options.get('port'))
    tls = None
    if options.get('tls'):
        try:
            tls = tls_context(options.get('validate_certs', True), options.get('ca_path'),
                              options.get('client_cert'), options.get('client_key'))
        except (OSError, ssl.SSLError) as exc:
            return probe_result(False, 'invalid', 'cannot load TLS files: %s' % exc)
    try:
        sock = open_stream(options.get('host'), options.get('port'), options.get('unix_socket'), timeout, tls)
    except (OSError, ValueError) as exc:
        return probe_result(False, classify_socket_error(exc), '%s: %s' % (target, exc))
    stream = sock.makefile('rb')
    try:
        return _redis_conversation(sock, stream, options)
    except RedisProtocolError as exc:
        return probe_result(False, 'bad_response', '%s: %s' % (target, exc))
    except (OSError, ValueError) as exc:
        return probe_result(False, classify_socket_error(exc), '%s: %s' % (target, exc))
    finally:
        stream.close()
        sock.close()


def _redis_conversation(sock, stream, options):
    if options.get('password') is not None:
        auth = ['AUTH'] + ([options['username']] if options.get('username') else []) + [options['password']]
        reply = _redis_call(sock, stream, *auth)
        if isinstance(reply, RedisError):
            return probe_result(False, classify_redis_error(str(reply)), 'AUTH: %s' % reply)
    reply = _redis_call(sock, stream, 'PING')
    ok, state, error = classify_redis_reply(reply)
    if not ok:
        return probe_result(False, state, 'PING: %s' % error)
    persistence, role = options.get('persistence'), options.get('role')
    if not (persistence or role):
        return probe_result(True, 'ok')
    reply = _redis_call(sock, stream, 'INFO')
    if isinstance(reply, RedisError):
        return probe_result(False, classify_redis_error(str(reply)), 'INFO: %s' % reply)
    info = parse_redis_info(reply)
    details = dict((key, info.get(key)) for key in (
        'role', 'loading', 'rdb_last_bgsave_status', 'aof_enabled', 'aof_last_write_status', 'master_link_status')
        if key in info)
    state, error = redis_info_problems(info, persistence, role)
    if state:
        return probe_result(False, state, error, **details)
    return probe_result(True, 'ok', **details)


# --------------------------------------------------------------------------
# Docker (Engine API over its unix socket)
# --------------------------------------------------------------------------

def _health_log(health, count=3):
    entries = []
    for entry in (health.get('Log') or [])[-count:]:
        entries.append({'exit_code': entry.get('ExitCode'), 'end': entry.get('End'),
                        'output': excerpt(entry.get('Output'), 200)})
    return entries


def exit_reason(code, oom_killed):
    """A few words on why a container's main process ended, from its exit code."""
    if oom_killed:
        return ', OOM-killed: the memory limit was reached'
    if code == 137:
        # Docker does not always see the OOM event (e.g. nested cgroups); SIGKILL is the fact.
        return ', killed by SIGKILL: the memory limit or a docker kill'
    if code == 143:
        return ', stopped by SIGTERM'
    return ''


def classify_docker_inspect(data, require_healthcheck=False):
    """(ok, state, error, details) from ``GET /containers/{id}/json``."""
    state = data.get('State') or {}
    health = state.get('Health') or None
    status = state.get('Status') or ('running' if state.get('Running') else 'unknown')
    details = {
        'status': status,
        'health': health.get('Status') if health else None,
        'exit_code': state.get('ExitCode'),
        'oom_killed': bool(state.get('OOMKilled')),
        'restart_count': data.get('RestartCount'),
        'started_at': state.get('StartedAt'),
        'image': (data.get('Config') or {}).get('Image'),
    }
    if state.get('Error'):
        details['error'] = state.get('Error')
    if health:
        details['health_log'] = _health_log(health)
    if status != 'running' or state.get('Paused') or state.get('Restarting'):
        if state.get('Restarting'):
            status = 'restarting'
        elif state.get('Paused'):
            status = 'paused'
        error = 'container is %s' % status
        if status in ('exited', 'dead'):
            error += ' (exit code %s%s)' % (state.get('ExitCode'), exit_reason(state.get('ExitCode'), state.get('OOMKilled')))
        if state.get('Error'):
            error += ': %s' % state['Error']
        return False, status, error, details
    if health is None:
        if require_healthcheck:
            return False, 'no_healthcheck', 'container has no healthcheck', details
        return True, 'running', None, details
    health_status = health.get('Status')
    if health_status == 'healthy':
        return True, 'healthy', None, details
    last = details['health_log'][-1] if details.get('health_log') else None
    error = 'health is %s' % health_status
    if last:
        error += ' (last check exit %s: %s)' % (last['exit_code'], last['output'] or 'no output')
    return False, health_status or 'unknown', error, details


def probe_docker(options, timeout):
    """The container runs, and is healthy when it has a healthcheck."""
    name = options['container']
    try:
        socket_path = docker_socket_path(options.get('docker_host'))
    except ValueError as exc:
        return probe_result(False, 'invalid', str(exc))
    try:
        status, data = docker_get(socket_path, '/containers/%s/json' % quote(name, safe=''), timeout)
    except (OSError, http_client.HTTPException) as exc:
        return probe_result(False, 'no_response', 'Docker Engine at %s: %s' % (socket_path, exc))
    if status == 404:
        return probe_result(False, 'not_found', 'no container named %r' % name)
    if status != 200 or not isinstance(data, dict):
        message = data.get('message') if isinstance(data, dict) else excerpt(data)
        return probe_result(False, 'error', 'Docker Engine answered HTTP %s: %s' % (status, message))
    ok, state, error, details = classify_docker_inspect(data, options.get('require_healthcheck'))
    return probe_result(ok, state, error, **details)


# --------------------------------------------------------------------------
# Command
# --------------------------------------------------------------------------

def probe_command(options, timeout):
    """A command exits with the expected return code."""
    argv = [str(arg) for arg in options['argv']]
    try:
        # Not AnsibleModule.run_command: probes run in threads, each under its own timeout.
        proc = subprocess.Popen(  # pylint: disable=ansible-bad-function
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
            cwd=options.get('chdir') or None)
    except OSError as exc:
        state = 'no_executable' if isinstance(exc, FileNotFoundError) and not options.get('chdir') else 'error'
        return probe_result(False, state, '%s: %s' % (argv[0], exc))
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return probe_result(False, 'timeout', '%s did not finish within %.1fs' % (argv[0], timeout))
    stdout, stderr = excerpt(out), excerpt(err)
    expected = options.get('rc', 0)
    if proc.returncode != expected:
        return probe_result(False, 'wrong_rc', '%s exited %s (expected %s): %s' % (
            argv[0], proc.returncode, expected, stderr or stdout or 'no output'),
            rc=proc.returncode, stdout=stdout, stderr=stderr)
    return probe_result(True, 'ok', rc=proc.returncode, stdout=stdout, stderr=stderr)


# --------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------

# pg_isready's exit codes (see its man page).
ISREADY_STATES = {0: 'accepting', 1: 'rejecting', 2: 'no_response', 3: 'invalid'}


def classify_isready_rc(rc):
    """State for a pg_isready exit code."""
    return ISREADY_STATES.get(rc, 'error')


def _pg_params(options, timeout):
    params = connection_params(options)
    # libpq takes whole seconds and treats anything below 2 as 2.
    params['connect_timeout'] = max(2, int(min(params.get('connect_timeout') or timeout, timeout) + 0.999))
    return params


def pg_target(params):
    """host:port/database for messages (never the password)."""
    return '%s:%s/%s' % (params.get('host') or 'local socket', params.get('port'), params.get('database') or '')


def pg_role_problem(in_recovery, role):
    """(state, error) when the server's role is not the wanted one, else (None, None)."""
    if role in (None, 'any'):
        return None, None
    actual = 'replica' if in_recovery else 'primary'
    if actual != role:
        return 'wrong_role', 'server is a %s (expected %s)' % (actual, role)
    return None, None


def probe_postgres(options, timeout, clients=None):
    """The server accepts an authenticated connection and answers SELECT 1 (with the wanted role)."""
    params = _pg_params(options, timeout)
    if PG_DRIVER is None:
        return probe_postgres_cli(options, params, timeout, clients or {})
    try:
        conn = pg_connect(params, application_name='shipyard.webstack.health_poll')
    except Exception as exc:  # the driver's own exception classes vary between psycopg 2 and 3
        return _pg_failure(exc, params)
    try:
        dummy, rows = query_with_deadline(conn, "SELECT 1, pg_is_in_recovery(), current_setting('server_version')", timeout)
    except Exception as exc:
        return _pg_failure(exc, params)
    finally:
        _close(conn)
    in_recovery, version = bool(rows[0][1]), rows[0][2]
    details = {'role': 'replica' if in_recovery else 'primary', 'server_version': version}
    state, error = pg_role_problem(in_recovery, options.get('role'))
    if state:
        return probe_result(False, state, error, **details)
    return probe_result(True, 'accepting', **details)


class QueryTimeout(Exception):
    """A query got no answer in time (the connection was cut to unblock the driver)."""


def _socket_fd(conn):
    pgconn = getattr(conn, 'pgconn', None)  # psycopg 3
    return pgconn.socket if pgconn is not None else conn.fileno()


def query_with_deadline(conn, sql, timeout, simple=False):
    """Run one statement, cutting the connection if it has no answer after ``timeout`` seconds.

    The drivers have no client-side query timeout, and a server-side one does
    not help when the query never reaches a server (a paused PgBouncer holds it):
    shutting the socket down makes the blocked driver call fail at once.
    """
    fired = []

    def expire():
        fired.append(True)
        try:
            sock = socket.socket(fileno=os.dup(_socket_fd(conn)))
            try:
                sock.shutdown(socket.SHUT_RDWR)
            finally:
                sock.close()
        except (OSError, ValueError):
            pass

    timer = threading.Timer(timeout, expire)
    timer.daemon = True
    timer.start()
    try:
        return pg_simple_query(conn, sql) if simple else pg_query(conn, sql)
    except Exception:
        if fired:
            raise QueryTimeout('no answer to %s within %.1fs' % (sql.split()[0], timeout))
        raise
    finally:
        timer.cancel()


def _close(conn):
    try:
        conn.close()
    except Exception:
        pass


def _pg_failure(exc, params, secrets=()):
    message = str(exc).strip()
    sqlstate = sqlstate_of(exc)
    state = classify_pg_error(message, sqlstate)
    secrets = tuple(secrets) + ((params.get('password'),) if params.get('password') else ())
    text = redact(' '.join(message.split()), secrets)
    details = {'sqlstate': sqlstate} if sqlstate else {}
    return probe_result(False, state, '%s: %s' % (pg_target(params), text), **details)


def _cli_env(params):
    env = dict(os.environ)
    mapping = {'host': 'PGHOST', 'port': 'PGPORT', 'database': 'PGDATABASE', 'user': 'PGUSER',
               'password': 'PGPASSWORD', 'sslmode': 'PGSSLMODE', 'ssl_rootcert': 'PGSSLROOTCERT',
               'connect_timeout': 'PGCONNECT_TIMEOUT'}
    for key, var in mapping.items():
        env.pop(var, None)
        if params.get(key) not in (None, ''):
            env[var] = str(params[key])
    env['PGAPPNAME'] = 'shipyard.webstack.health_poll'
    return env


def _run_cli(argv, env, timeout):
    # Not AnsibleModule.run_command: probes run in threads, each under its own timeout.
    proc = subprocess.Popen(  # pylint: disable=ansible-bad-function
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env)
    try:
        out, err = proc.communicate(timeout=timeout + 2)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return None, '', 'timed out'
    return proc.returncode, out.decode('utf-8', 'replace'), err.decode('utf-8', 'replace')


def probe_postgres_cli(options, params, timeout, clients):
    """The same checks with pg_isready and psql, for targets without a Python driver."""
    env = _cli_env(params)
    secrets = (params.get('password'),) if params.get('password') else ()
    if clients.get('pg_isready'):
        # Connection details go through the environment: nothing secret on a command line.
        rc, out, err = _run_cli([clients['pg_isready'], '-t', str(params['connect_timeout'])], env, timeout)
        state = classify_isready_rc(rc)
        if state != 'accepting':
            return probe_result(False, state, '%s: pg_isready: %s' % (
                pg_target(params), redact(excerpt(out + err) or 'exit %s' % rc, secrets)), client='pg_isready')
    if not clients.get('psql'):
        return probe_result(True, 'accepting', client='pg_isready')
    sql = "SELECT 1, pg_is_in_recovery(), current_setting('server_version')"
    rc, out, err = _run_cli([clients['psql'], '-X', '-w', '-A', '-t', '-F', '|', '-v', 'ON_ERROR_STOP=1', '-c', sql],
                            env, timeout)
    if rc != 0:
        message = ' '.join((err or out or 'psql exit %s' % rc).split())
        state = classify_pg_error(message)
        return probe_result(False, state, '%s: %s' % (pg_target(params), redact(message, secrets)), client='psql')
    fields = out.strip().split('|')
    in_recovery = len(fields) > 1 and fields[1] == 't'
    details = {'role': 'replica' if in_recovery else 'primary', 'client': 'psql',
               'server_version': fields[2] if len(fields) > 2 else None}
    state, error = pg_role_problem(in_recovery, options.get('role'))
    if state:
        return probe_result(False, state, error, **details)
    return probe_result(True, 'accepting', **details)


# --------------------------------------------------------------------------
# PgBouncer
# --------------------------------------------------------------------------

def _rows_as_dicts(columns, rows):
    return [dict(zip(columns, row)) for row in rows]


def _truthy(value):
    return str(value).strip().lower() in ('1', 't', 'true', 'yes', 'on')


def parse_pgbouncer_state(columns, rows):
    """SHOW STATE (PgBouncer >= 1.21) as {'active': bool, 'paused': bool, 'suspended': bool}."""
    state = {}
    if len(columns) == 2 and rows and not set(columns) & {'paused', 'suspended'}:
        # key/value rows
        for key, value in rows:
            state[str(key).strip().lower()] = _truthy(value)
    else:
        for row in _rows_as_dicts(columns, rows):
            for key, value in row.items():
                state[str(key).lower()] = _truthy(value)
    return state


def classify_pgbouncer_state(state):
    """(ok, state, error) from parse_pgbouncer_state()."""
    if state.get('suspended'):
        return False, 'suspended', 'PgBouncer is suspended (SUSPEND): it does not serve clients'
    if state.get('paused'):
        return False, 'paused', 'PgBouncer is paused (PAUSE): queries wait until RESUME'
    return True, 'active', None


def classify_pgbouncer_databases(columns, rows, pool=None):
    """(ok, state, error) from SHOW DATABASES: any (or the named) pool paused or disabled."""
    entries = [row for row in _rows_as_dicts(columns, rows) if row.get('name') != 'pgbouncer']
    if pool:
        entries = [row for row in entries if row.get('name') == pool]
        if not entries:
            return False, 'pool_missing', 'PgBouncer has no database %r' % pool
    paused = sorted(row['name'] for row in entries if _truthy(row.get('paused', 0)))
    disabled = sorted(row['name'] for row in entries if _truthy(row.get('disabled', 0)))
    if paused:
        return False, 'paused', 'PgBouncer database(s) paused (PAUSE): %s' % ', '.join(paused)
    if disabled:
        return False, 'disabled', 'PgBouncer database(s) disabled (DISABLE): %s' % ', '.join(disabled)
    return True, 'active', None


def _pgbouncer_admin_state(conn, pool):
    """(ok, state, error, details) from the admin console: SHOW STATE where it exists, then SHOW DATABASES."""
    details = {}
    try:
        dummy, rows = pg_simple_query(conn, 'SHOW VERSION')
        details['version'] = str(rows[0][0]) if rows else None
    except Exception:  # the version is informative only
        pass
    sources = []
    try:
        columns, rows = pg_simple_query(conn, 'SHOW STATE')
    except Exception:  # PgBouncer < 1.21 answers "invalid command"; SHOW DATABASES still tells PAUSE
        pass
    else:
        sources.append('SHOW STATE')
        ok, state, error = classify_pgbouncer_state(parse_pgbouncer_state(columns, rows))
        if not ok:
            details['source'] = 'SHOW STATE'
            return ok, state, error, details
    # Also after SHOW STATE: a PAUSE or DISABLE of one database only shows here.
    columns, rows = pg_simple_query(conn, 'SHOW DATABASES')
    sources.append('SHOW DATABASES')
    details['source'] = ' + '.join(sources)
    ok, state, error = classify_pgbouncer_databases(columns, rows, pool)
    return ok, state, error, details


def probe_pgbouncer(options, timeout):
    """The admin console answers, PgBouncer is not paused or suspended, and (optionally) a pool serves a query."""
    if PG_DRIVER is None:
        return probe_result(False, 'no_driver', 'the pgbouncer check needs psycopg (3) or psycopg2 on the target')
    params = _pg_params(options, timeout)
    secrets = [options.get('password'), options.get('pool_password')]
    try:
        conn = pg_connect(params, application_name=None)
    except Exception as exc:
        return _pg_failure(exc, params, [s for s in secrets if s])
    try:
        ok, state, error, details = _pgbouncer_admin_state(conn, options.get('pool'))
    except Exception as exc:
        return _pg_failure(exc, params, [s for s in secrets if s])
    finally:
        _close(conn)
    if not ok or not options.get('pool'):
        return probe_result(ok, state, error, **details)
    return _pgbouncer_pool_query(options, params, timeout, details, [s for s in secrets if s])


def _pgbouncer_pool_query(options, admin_params, timeout, details, secrets):
    """SELECT 1 through the named pool: the whole path client → PgBouncer → server works."""
    params = dict(admin_params)
    params['database'] = options['pool']
    params['user'] = options.get('pool_user') or admin_params.get('user')
    params['password'] = options.get('pool_password') if options.get('pool_password') is not None \
        else admin_params.get('password')
    try:
        conn = pg_connect(params, application_name='shipyard.webstack.health_poll')
    except Exception as exc:
        return _with_details(_pool_failure(exc, params, secrets), details)
    try:
        # Simple protocol: works whatever the pool mode and prepared-statement support.
        query_with_deadline(conn, 'SELECT 1', timeout, simple=True)
    except Exception as exc:
        return _with_details(_pool_failure(exc, params, secrets), details)
    finally:
        _close(conn)
    details['pool'] = options['pool']
    return probe_result(True, 'active', **details)


def _pool_failure(exc, params, secrets):
    """Like _pg_failure(), but a timeout here means PgBouncer answered its console and left this client waiting."""
    result = _pg_failure(exc, params, secrets)
    if isinstance(exc, QueryTimeout) or (result['state'] == 'no_response' and re.search(r'time(out|d out)', str(exc), re.I)):
        result['state'] = 'pool_waiting'
        result['error'] = ('no answer through pool %r: PgBouncer is paused or suspended (before 1.21 only this '
                           'shows a global PAUSE), or the pool gets no server connection; %s') % (
            params.get('database'), result['error'])
    return result


def _with_details(result, details):
    merged = dict(details)
    merged.update(result['details'])
    result['details'] = merged
    return result


# --------------------------------------------------------------------------
# Describing checks
# --------------------------------------------------------------------------

PROBES = {
    'tcp': probe_tcp,
    'http': probe_http,
    'postgres': probe_postgres,
    'pgbouncer': probe_pgbouncer,
    'redis': probe_redis,
    'docker': probe_docker,
    'command': probe_command,
}

CHECK_TYPES = tuple(sorted(PROBES))


def describe_target(kind, options):
    """What a check looks at, for names and messages; never a credential."""
    if kind == 'tcp':
        return '%s:%s' % (options.get('host'), options.get('port'))
    if kind == 'http':
        if options.get('url'):
            return redact_url(options['url'])
        scheme, host, port, path, dummy = http_target(options)
        return '%s://%s:%s%s' % (scheme, host, port, path)
    if kind in ('postgres', 'pgbouncer'):
        try:
            params = connection_params(options)
        except ValueError:
            return 'postgres (invalid url)'
        target = '%s@%s' % (params.get('user') or '', pg_target(params))
        return target + (' pool %s' % options['pool'] if options.get('pool') else '')
    if kind == 'redis':
        return options.get('unix_socket') or '%s:%s' % (options.get('host'), options.get('port'))
    if kind == 'docker':
        return 'container %s' % options.get('container')
    if kind == 'command':
        return ' '.join(str(arg) for arg in options.get('argv') or [])
    return kind


# --------------------------------------------------------------------------
# The polling loop
# --------------------------------------------------------------------------

# Checks that read a state someone else keeps up to date at their own pace (Docker's health state
# changes only when the image's HEALTHCHECK runs again): one passing reading counts, reading it again
# within that interval proves nothing more.
READ_ONCE_KINDS = frozenset(['docker'])
# When read-once checks are all a poll still waits for, they are read again this often between rounds (a read
# of Docker's state is one local API call): the poll then ends within this of Docker's change, not up to a
# whole interval after it.
READ_ONCE_STEP = 0.1


class Check(object):
    """One check and what happened to it so far."""

    def __init__(self, name, kind, options, timeout, secrets=(), successes=None):
        self.name = name
        # Passing attempts in a row this check needs; None: the poll's consecutive_successes.
        self.successes = 1 if successes is None and kind in READ_ONCE_KINDS else successes
        self.streak = 0
        self.named = False  # True when the user gave the name (messages then also show type and target)
        self.kind = kind
        self.options = options
        self.timeout = timeout
        self.secrets = tuple(s for s in secrets if s)
        self.attempts = 0
        self.last = None
        self.last_failure = None
        self.history = []
        self.ready_at = None
        self.finished_at = None

    def record(self, result, started, ended, cut=False):
        """Keep the result of one attempt (times relative to the start of the poll).

        ``cut``: the poll's deadline gave this attempt less than the check's own timeout. Such an
        attempt that timed out after a failure says nothing new about the check, so the failure seen
        before it stays the check's state (the attempt still counts). After a success it is recorded:
        a timeout never leaves a check looking ready.
        """
        self.attempts += 1
        self.finished_at = ended
        if cut and self.last is not None and not self.last['ok'] and not result['ok'] and result['state'] == 'timeout':
            return
        self.last = result
        self.streak = self.streak + 1 if result['ok'] else 0
        if not result['ok']:
            self.last_failure = result
            self.ready_at = None
        elif self.ready_at is None:
            self.ready_at = ended
        if not self.history or self.history[-1]['state'] != result['state']:
            if len(self.history) >= 20:
                del self.history[1]  # keep the first and the latest states
            self.history.append({'state': result['state'], 'at': round(started, 3)})

    def report(self):
        """The per-check result returned by the module (secrets redacted)."""
        last = self.last or probe_result(False, 'not_run')
        failure = self.last_failure
        return {
            'name': self.name,
            'type': self.kind,
            'target': describe_target(self.kind, self.options),
            'ok': bool(last['ok']),
            'state': last['state'],
            'attempts': self.attempts,
            'elapsed': round(self.ready_at if last['ok'] and self.ready_at is not None else (self.finished_at or 0), 3),
            'last_error': redact(failure['error'], self.secrets) if failure and failure['error'] else None,
            'details': _redact_tree(last['details'], self.secrets),
            'history': self.history,
        }


def _redact_tree(value, secrets):
    if isinstance(value, dict):
        return dict((k, _redact_tree(v, secrets)) for k, v in value.items())
    if isinstance(value, list):
        return [_redact_tree(v, secrets) for v in value]
    if isinstance(value, str):
        return redact(value, secrets)
    return value


def run_probe(check, timeout, probes=None):
    """One attempt of one check; never raises."""
    probe = (probes or PROBES)[check.kind]
    try:
        return probe(check.options, timeout)
    except Exception as exc:  # a probe bug must not hide the state of the other checks
        return probe_result(False, 'error', '%s: %s' % (type(exc).__name__, exc))


def run_round(checks, timeout_for, clock, probes=None, grace=2.0):
    """Run every check once, concurrently; returns [(result, started, ended)] in check order.

    Each attempt runs in its own thread so that an attempt stuck past its
    timeout (a driver call with no timeout of its own) is reported as
    ``timeout`` instead of stalling the poll; the stuck thread is abandoned.
    """
    outcomes = [None] * len(checks)
    timeouts = [timeout_for(check) for check in checks]

    def attempt(index):
        check = checks[index]
        started = clock()
        result = run_probe(check, timeouts[index], probes)
        outcomes[index] = (result, started, clock())

    threads = []
    begin = clock()
    for index in range(len(checks)):
        thread = threading.Thread(target=attempt, args=(index,))
        thread.daemon = True
        thread.start()
        threads.append(thread)
    # libpq waits at least 2 s per connection and a probe may connect twice (pgbouncer): leave room for that.
    limits = [max(timeout, 2.0) + timeout + grace for timeout in timeouts]
    for index, thread in enumerate(threads):
        thread.join(max(0.0, begin + limits[index] - clock()))
    final = []
    for index, outcome in enumerate(outcomes):
        if outcome is None:
            outcome = (probe_result(False, 'timeout', 'no answer within %.1fs' % limits[index]), begin, clock())
        final.append(outcome)
    return final


def settled(check, consecutive_successes):
    """The check passed its last attempt and as many in a row as it needs."""
    return bool(check.last and check.last['ok']) and check.streak >= (check.successes or consecutive_successes)


def rereadable(checks, consecutive_successes):
    """The checks to read again before the next round: every unsettled one, when each of them is a read-once
    check that one passing reading settles; else none (reading the others sooner would shorten their streaks)."""
    pending = [check for check in checks if not settled(check, consecutive_successes)]
    if pending and all(check.kind in READ_ONCE_KINDS and check.successes == 1 for check in pending):
        return pending
    return []


class PollResult(object):
    """Outcome of poll(): ok, why it stopped, rounds, elapsed and the checks."""

    def __init__(self, ok, reason, rounds, elapsed, checks, streak):
        self.ok = ok
        self.reason = reason
        self.rounds = rounds
        self.elapsed = elapsed
        self.checks = checks
        self.streak = streak


def poll(checks, timeout, interval=1.0, backoff=1.0, max_interval=None, start_period=0.0,
         consecutive_successes=1, fail_fast=True, clock=time.monotonic, sleep=time.sleep, probes=None):
    """Run rounds of all checks until every check passed its last ``consecutive_successes`` attempts (or its
    own ``successes``), a permanent failure or the deadline.

    Every check runs in every round, so with no check of its own count this is a streak of that many
    passing rounds.

    Rounds start ``interval`` apart (measured start to start, so a slow check
    does not add to the wait), growing by ``backoff`` up to ``max_interval``
    while rounds fail. Failing rounds inside ``start_period`` neither grow the
    backoff nor stop the poll, and the ``timeout`` starts after it. Between rounds,
    read-once checks are read every READ_ONCE_STEP when they are all that is left.
    """
    origin = clock()
    deadline = origin + start_period + timeout
    streak = failing = rounds = 0

    given = {}

    def timeout_for(check):
        # Never let one attempt run far past the deadline.
        given[id(check)] = max(0.5, min(check.timeout, deadline - clock()))
        return given[id(check)]

    def attempt(some):
        for check, (result, started, ended) in zip(some, run_round(some, timeout_for, clock, probes)):
            check.record(result, started - origin, ended - origin, cut=given[id(check)] < check.timeout)
        return clock()

    def permanent_failure(some, now):
        return (fail_fast and now - origin >= start_period
                and any(not c.last['ok'] and c.last['state'] in PERMANENT_STATES for c in some))

    while True:
        round_start = clock()
        now = attempt(checks)
        rounds += 1
        if all(check.last['ok'] for check in checks):
            streak += 1
            failing = 0
            if all(settled(check, consecutive_successes) for check in checks):
                return PollResult(True, 'ready', rounds, now - origin, checks, streak)
            delay = interval
        else:
            streak = 0
            if now - origin >= start_period:
                failing += 1
            if permanent_failure(checks, now):
                return PollResult(False, 'permanent', rounds, now - origin, checks, streak)
            delay = backoff_delay(interval, backoff, max_interval, failing)
        if now >= deadline:
            return PollResult(False, 'timeout', rounds, now - origin, checks, streak)
        next_round = min(round_start + delay, deadline)
        pending = rereadable(checks, consecutive_successes)
        while pending and next_round - now > READ_ONCE_STEP:
            sleep(READ_ONCE_STEP)
            now = attempt(pending)
            if all(settled(check, consecutive_successes) for check in checks):
                return PollResult(True, 'ready', rounds, now - origin, checks, streak)
            if permanent_failure(pending, now):
                return PollResult(False, 'permanent', rounds, now - origin, checks, streak)
        sleep(max(0.0, next_round - now))

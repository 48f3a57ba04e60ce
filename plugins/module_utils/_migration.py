# -*- coding: utf-8 -*-
# Copyright (c) 2026, shipyard.webstack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The parts of migration_gate that need no database: lock keys, ledger SQL,
fingerprints, running a command under a timeout, redacted output tails and
the skip/run decision. Private to the collection (no stability promise).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import functools
import hashlib
import os
import re
import signal
import subprocess
import threading
import time

try:
    from urllib.parse import urlsplit, unquote
except ImportError:  # pragma: no cover - Python 2 is not supported
    from urlparse import urlsplit  # type: ignore
    from urllib import unquote  # type: ignore

from ansible_collections.shipyard.webstack.plugins.module_utils._redact import redact

# ------------------------------------------------------------------ lock keys

INT64_MIN = -(2 ** 63)
INT64_MAX = 2 ** 63 - 1
# Namespaces the hash so our keys do not collide with an app hashing the same name its own way.
LOCK_KEY_NAMESPACE = 'shipyard.webstack.migration_gate:'
_INT_RE = re.compile(r'^\s*-?\d+\s*$')


def lock_key_from_name(name):
    """A signed 64-bit advisory lock key derived from a name.

    SHA-256 rather than Python's hash(): the same name must give the same key
    on every host, Python version and run (hash() is salted per process).
    """
    digest = hashlib.sha256((LOCK_KEY_NAMESPACE + name).encode('utf-8')).digest()
    return int.from_bytes(digest[:8], 'big', signed=True)


def resolve_lock_key(value):
    """An integer lock key from an integer (or its string) or a name to hash.

    Raises ValueError for an integer outside PostgreSQL's bigint or an empty name.
    """
    if isinstance(value, bool):
        raise ValueError('lock_key must be an integer or a name, not a boolean')
    if isinstance(value, int) or (isinstance(value, str) and _INT_RE.match(value)):
        key = int(value)
        if not INT64_MIN <= key <= INT64_MAX:
            raise ValueError('lock_key %s is outside the bigint range of advisory locks' % key)
        return key
    name = str(value or '').strip()
    if not name:
        raise ValueError('lock_key must not be empty')
    return lock_key_from_name(name)


def lock_key_parts(key):
    """(classid, objid) under which pg_locks shows a bigint advisory lock (objsubid is 1)."""
    unsigned = key & 0xFFFFFFFFFFFFFFFF
    return unsigned >> 32, unsigned & 0xFFFFFFFF


# ------------------------------------------------------------------ ledger SQL

STATUS_RUNNING = 'running'
STATUS_OK = 'ok'
STATUS_FAILED = 'failed'
STATUS_TIMEOUT = 'timeout'
STATUS_INTERRUPTED = 'interrupted'
STATUS_UP_TO_DATE = 'up_to_date'
LEDGER_STATUSES = (STATUS_RUNNING, STATUS_OK, STATUS_FAILED, STATUS_TIMEOUT, STATUS_INTERRUPTED, STATUS_UP_TO_DATE)
# Rows that mean "this release + fingerprint is applied".
APPLIED_STATUSES = (STATUS_OK, STATUS_UP_TO_DATE)

LEDGER_COLUMNS = ('id', 'release', 'fingerprint', 'host', 'status', 'reason', 'started_at', 'finished_at',
                  'duration_seconds', 'return_code', 'output_tail', 'command', 'lock_key')

_IDENT_RE = re.compile(r'^[A-Za-z_][A-Za-z0-9_$]{0,62}$')


def parse_table_name(value):
    """(schema, table) from 'schema.table' or 'table' (schema public).

    Plain identifiers only: they end up in SQL text, so anything else is refused.
    """
    parts = (value or '').split('.')
    if len(parts) == 1:
        parts = ['public'] + parts
    if len(parts) != 2 or not all(_IDENT_RE.match(part) for part in parts):
        raise ValueError('ledger_table must be "schema.table" made of letters, digits and underscores '
                         '(at most 63 characters each), got %r' % value)
    return parts[0], parts[1]


def quote_ident(name):
    return '"%s"' % name.replace('"', '""')


def qualified(schema, table):
    return '%s.%s' % (quote_ident(schema), quote_ident(table))


def ledger_ddl(schema, table):
    """Statements creating the ledger (idempotent). The schema is created separately, only if missing."""
    name = qualified(schema, table)
    statuses = ', '.join("'%s'" % s for s in LEDGER_STATUSES)
    return [
        'CREATE TABLE IF NOT EXISTS %s (\n'
        '  id bigserial PRIMARY KEY,\n'
        '  release text NOT NULL,\n'
        '  fingerprint text NOT NULL,\n'
        '  host text NOT NULL,\n'
        '  status text NOT NULL CHECK (status IN (%s)),\n'
        '  reason text,\n'
        '  started_at timestamptz NOT NULL DEFAULT clock_timestamp(),\n'
        '  finished_at timestamptz,\n'
        '  duration_seconds double precision,\n'
        '  return_code integer,\n'
        '  output_tail text,\n'
        '  command text,\n'
        '  lock_key bigint\n'
        ')' % (name, statuses),
        'CREATE INDEX IF NOT EXISTS %s ON %s (release, fingerprint, status)'
        % (quote_ident((table + '_release_idx')[:63]), name),
    ]


def _columns():
    return ', '.join(LEDGER_COLUMNS)


def sql_schema_exists():
    return 'SELECT 1 FROM pg_namespace WHERE nspname = %s'


def sql_create_schema(schema):
    return 'CREATE SCHEMA IF NOT EXISTS %s' % quote_ident(schema)


def sql_table_exists():
    """Argument: 'schema.table' quoted; to_regclass gives NULL instead of an error when missing."""
    return 'SELECT to_regclass(%s) IS NOT NULL'


def sql_find_applied(schema, table):
    """Latest successful row for (release, fingerprint)."""
    return ('SELECT %s FROM %s WHERE release = %%s AND fingerprint = %%s AND status IN (%s) '
            'ORDER BY id DESC LIMIT 1' % (_columns(), qualified(schema, table),
                                          ', '.join("'%s'" % s for s in APPLIED_STATUSES)))


def sql_last_for_release(schema, table):
    return ('SELECT %s FROM %s WHERE release = %%s ORDER BY id DESC LIMIT 1'
            % (_columns(), qualified(schema, table)))


def sql_insert(schema, table):
    """Arguments: release, fingerprint, host, status, reason, command, lock_key."""
    return ('INSERT INTO %s (release, fingerprint, host, status, reason, command, lock_key) '
            'VALUES (%%s, %%s, %%s, %%s, %%s, %%s, %%s) RETURNING %s' % (qualified(schema, table), _columns()))


def sql_insert_finished(schema, table):
    """A row that is complete at once (status command said up to date).

    Arguments: release, fingerprint, host, status, reason, return_code, output_tail, command, lock_key.
    """
    return ('INSERT INTO %s (release, fingerprint, host, status, reason, finished_at, duration_seconds, '
            'return_code, output_tail, command, lock_key) '
            'VALUES (%%s, %%s, %%s, %%s, %%s, clock_timestamp(), 0, %%s, %%s, %%s, %%s) RETURNING %s'
            % (qualified(schema, table), _columns()))


def sql_finish(schema, table):
    """Arguments: status, reason, duration_seconds, return_code, output_tail, id."""
    return ('UPDATE %s SET status = %%s, reason = %%s, finished_at = clock_timestamp(), duration_seconds = %%s, '
            'return_code = %%s, output_tail = %%s WHERE id = %%s RETURNING %s' % (qualified(schema, table), _columns()))


def sql_mark_interrupted(schema, table):
    """Rows left 'running' by a run whose session died. Only call while holding the lock:
    then no other gate can be running, so every 'running' row is dead."""
    return ("UPDATE %s SET status = '%s', finished_at = clock_timestamp(), "
            "reason = coalesce(reason || '; ', '') || 'its session ended before it finished (process killed or "
            "connection lost)' WHERE status = '%s' RETURNING %s"
            % (qualified(schema, table), STATUS_INTERRUPTED, STATUS_RUNNING, _columns()))


def sql_lock_holder():
    """Arguments: classid, objid (lock_key_parts). Who holds the advisory lock in this database."""
    return ("SELECT a.pid, a.application_name, host(a.client_addr) AS client_addr, a.client_port, a.usename AS username, "
            "a.backend_start, a.state, a.state_change "
            "FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
            "AND l.classid::bigint = %s AND l.objid::bigint = %s "
            "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())")


def row_to_dict(columns, row):
    """A ledger/holder row as a JSON-friendly dict (timestamps as ISO 8601 strings)."""
    if row is None:
        return None
    result = {}
    for key, value in zip(columns, row):
        if hasattr(value, 'isoformat'):
            value = value.isoformat()
        result[key] = value
    return result


def describe_holder(holder):
    """One line naming the session holding the lock, for the failure message."""
    if not holder:
        return 'the holder could not be identified (it released the lock just now, or its session is not visible to this user)'
    client = holder.get('client_addr') or 'local socket'
    if holder.get('client_port') and holder.get('client_addr'):
        client = '%s:%s' % (client, holder['client_port'])
    return ('held by backend pid %s (application_name %r, user %s, client %s, connected since %s, %s since %s)'
            % (holder.get('pid'), holder.get('application_name') or '', holder.get('username') or '?', client,
               holder.get('backend_start') or '?', holder.get('state') or 'state unknown',
               holder.get('state_change') or '?'))


def application_name(release, host):
    """application_name for our session: names the gate in pg_stat_activity (max 63 bytes)."""
    name = 'shipyard migration_gate %s on %s' % (release[:24], host)
    return name.encode('utf-8')[:63].decode('utf-8', 'ignore')


# ------------------------------------------------------------------ fingerprint

def fingerprint_from_output(output):
    """A stable fingerprint of a fingerprint command's output (e.g. a list of migration files).

    Line endings, trailing spaces and blank lines are ignored so the same
    migrations give the same fingerprint on every platform.
    """
    lines = [line.rstrip() for line in (output or '').replace('\r\n', '\n').replace('\r', '\n').split('\n')]
    normalized = '\n'.join(line for line in lines if line)
    if not normalized:
        raise ValueError('the fingerprint command printed nothing')
    return 'sha256:' + hashlib.sha256(normalized.encode('utf-8')).hexdigest()


# ------------------------------------------------------------------ secrets

_SECRET_NAME = re.compile(r'pass|secret|token|key|credential|auth|private|cookie|session|signature|dsn|_url$|^url$|uri',
                          re.I)

# Values that cannot be secrets even under a secret-looking name (FEATURE_KEY_ENABLED=true):
# masking them would blank every "true" in the output.
_PLAIN_VALUE = re.compile(r'^(true|false|yes|no|on|off|none|null|\d{1,6})?$', re.I)


def _url_password(value):
    try:
        parts = urlsplit(value)
        return unquote(parts.password) if parts.password else None
    except ValueError:
        return None


def secrets_from_env(env):
    """Values of command environment variables that must never be shown.

    A URL contributes its password; any other value is secret when its name
    looks secret (PASSWORD, SECRET_KEY_BASE, API_TOKEN...).
    """
    found = []
    for name, value in (env or {}).items():
        if value is None:
            continue
        value = str(value)
        if '://' in value:
            # a URL: only its password is secret; host and database stay readable for operators
            password = _url_password(value)
            if password:
                found.append(password)
        elif _SECRET_NAME.search(str(name)) and not _PLAIN_VALUE.match(value):
            found.append(value)
    return found


def connection_secrets(params, url=None):
    """The connection's password (given alone or inside the URL)."""
    found = []
    if params.get('password'):
        found.append(str(params['password']))
    if url:
        password = _url_password(url)
        if password:
            found.append(password)
    return found


def output_tail(text, secrets=(), limit=4096):
    """The end of a command's output, secrets masked, at most ``limit`` bytes of UTF-8.

    Redaction happens before the cut so a secret straddling the cut cannot leave a readable half.
    """
    text = redact(text or '', secrets)
    data = text.encode('utf-8')
    if len(data) <= limit:
        return text
    cut = data[-limit:].decode('utf-8', 'ignore')
    newline = cut.find('\n')
    if 0 <= newline < min(200, len(cut) - 1):
        cut = cut[newline + 1:]
    return cut


def redact_argv(argv, secrets=()):
    """A command line fit for messages and the ledger."""
    return redact(' '.join(_shell_quote(arg) for arg in argv or []), secrets)


def _shell_quote(arg):
    arg = str(arg)
    if arg and re.match(r'^[\w@%+=:,./-]+$', arg):
        return arg
    return "'" + arg.replace("'", "'\"'\"'") + "'"


# ------------------------------------------------------------------ commands

# Raw output kept in memory per command; more is dropped from the front.
KEEP_BYTES = 64 * 1024


class CommandResult(object):
    """Outcome of run_command(): rc (None if it could not start), output, timed_out, duration, error."""

    def __init__(self, rc=None, output='', timed_out=False, duration=0.0, error=None):
        self.rc = rc
        self.output = output
        self.timed_out = timed_out
        self.duration = duration
        self.error = error

    @property
    def ok(self):
        return self.rc == 0 and not self.timed_out and self.error is None


class _TailReader(threading.Thread):
    """Drains a pipe (so the child never blocks on a full pipe), keeping the last KEEP_BYTES."""

    def __init__(self, stream):
        super(_TailReader, self).__init__()
        self.daemon = True
        self.stream = stream
        self.data = bytearray()

    def run(self):
        while True:
            chunk = self.stream.read1(65536) if hasattr(self.stream, 'read1') else self.stream.read(65536)
            if not chunk:
                break
            self.data.extend(chunk)
            if len(self.data) > KEEP_BYTES:
                del self.data[:len(self.data) - KEEP_BYTES]


def command_env(extra):
    """The environment of a command: ours plus the given variables (values as strings)."""
    env = dict(os.environ)
    for key, value in (extra or {}).items():
        env[str(key)] = '' if value is None else str(value)
    return env


def _kill_group(proc, grace):
    """SIGTERM the command's process group, then SIGKILL whatever is left after ``grace`` seconds.

    TERM first: `docker run` forwards it to the container; a KILLed docker
    client would leave the container running.
    """
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except OSError:
            return
        try:
            proc.wait(timeout=wait)
            # the leader is gone; make sure no member of its group lingers
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass
            return
        except subprocess.TimeoutExpired:
            continue


_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent_pid):
    """In the child, before exec: get SIGTERM if the module dies (Linux only, best effort).

    Without it a kill -9 of the module would free the lock while its migration
    command (a separate session, so timeouts can kill its whole group) keeps
    running unlocked, and the next gate could run alongside it.
    """
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except Exception:  # pylint: disable=broad-except  # not Linux / no libc: nothing to do
        return
    if os.getppid() != parent_pid:
        os._exit(1)  # the module died before prctl took effect


def run_command(argv, env=None, cwd=None, timeout=None, kill_grace=10.0):
    """Run argv (stdout and stderr merged) in its own process group, killed on timeout.

    Never raises for the command's own failures: a command that cannot start
    gives rc None and ``error`` set.
    """
    started = time.monotonic()
    try:
        # Not AnsibleModule.run_command: it can neither put the command in its own
        # process group (to kill the whole tree on timeout) nor tie its life to ours.
        proc = subprocess.Popen(  # pylint: disable=ansible-bad-function
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            env=command_env(env), cwd=cwd, start_new_session=True,
            preexec_fn=functools.partial(_die_with_parent, os.getpid()))
    except OSError as exc:
        return CommandResult(error='could not start %s: %s' % (argv[0] if argv else '(empty command)', exc),
                             duration=time.monotonic() - started)
    reader = _TailReader(proc.stdout)
    reader.start()
    timed_out = False
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill_group(proc, kill_grace)
    # A grandchild that left the group may hold the pipe open: do not wait for it forever.
    reader.join(5)
    if not reader.is_alive():
        proc.stdout.close()
    output = bytes(reader.data).decode('utf-8', 'replace')
    return CommandResult(rc=proc.returncode, output=output, timed_out=timed_out, duration=time.monotonic() - started)


def describe_result(what, result, timeout):
    """Short human description of a command outcome."""
    if result.error:
        return '%s: %s' % (what, result.error)
    if result.timed_out:
        return '%s did not finish within %ss and was killed' % (what, timeout)
    return '%s exited with %s' % (what, result.rc)


# ------------------------------------------------------------------ decision

class Decision(object):
    """What the gate does: action is 'skip', 'run' or 'error'; reason is for humans; record tells
    whether a skip writes a ledger row (status command said up to date)."""

    def __init__(self, action, reason, record=False):
        self.action = action
        self.reason = reason
        self.record = record

    def __repr__(self):
        return 'Decision(%r, %r, record=%r)' % (self.action, self.reason, self.record)


def ledger_decision(applied_row, force=False):
    """Decision from the ledger alone, or None when the status command (if any) must decide."""
    if force:
        return Decision('run', 'force is set')
    if applied_row:
        return Decision('skip', 'the ledger records release %s with fingerprint %s as %s (row %s, %s on %s)'
                        % (applied_row.get('release'), applied_row.get('fingerprint'), applied_row.get('status'),
                           applied_row.get('id'), applied_row.get('finished_at') or applied_row.get('started_at'),
                           applied_row.get('host')))
    return None


def status_decision(result, timeout=None):
    """Decision from the status command: exit 0 up to date, 1 pending, anything else an error."""
    if result is None:
        return Decision('run', 'the ledger has no successful run of this release and fingerprint')
    if result.ok:
        return Decision('skip', 'the status command reports the database up to date', record=True)
    if result.rc == 1 and not result.timed_out and result.error is None:
        return Decision('run', 'the status command reports pending migrations')
    return Decision('error', describe_result('the status command', result, timeout)
                    + ' (expected 0 = up to date or 1 = pending)')

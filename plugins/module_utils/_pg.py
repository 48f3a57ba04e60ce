# -*- coding: utf-8 -*-
# Copyright (c) 2026, shipyard.webstack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PostgreSQL connection code shared by health_poll and migration_gate.

Private to the collection (the leading underscore): no stability promise.
Works with psycopg 3 or psycopg2, whichever the target has.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import hashlib
import hmac
import re
import traceback

try:
    from urllib.parse import unquote, urlsplit, parse_qsl
except ImportError:  # pragma: no cover - Python 2 is not supported, keep sanity quiet
    from urllib import unquote  # type: ignore
    from urlparse import urlsplit, parse_qsl  # type: ignore

PG_DRIVER = None
PG_IMPORT_ERROR = None
try:
    import psycopg  # noqa: F401  pylint: disable=unused-import  # psycopg 3

    PG_DRIVER = 'psycopg'
except ImportError:
    try:
        import psycopg2  # noqa: F401  pylint: disable=unused-import

        PG_DRIVER = 'psycopg2'
    except ImportError:
        PG_IMPORT_ERROR = traceback.format_exc()

# Library name for missing_required_lib().
PG_LIB_NAME = 'psycopg (3) or psycopg2'

SSLMODES = ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full']


def pg_connection_spec(required_password=False):
    """Argument spec of a direct PostgreSQL connection (doc fragment shipyard.webstack.postgres_connection)."""
    return dict(
        url=dict(type='str', no_log=True),
        host=dict(type='str'),
        port=dict(type='int'),
        database=dict(type='str'),
        user=dict(type='str'),
        password=dict(type='str', no_log=True, required=required_password),
        sslmode=dict(type='str', choices=SSLMODES),
        ssl_rootcert=dict(type='path'),
        connect_timeout=dict(type='int', default=5),
    )


_STATE_PATTERNS = (
    # Order matters: the first match wins.
    ('auth_failed', re.compile(r'password authentication failed|authentication failed|'
                               r'no password supplied|fe_sendauth', re.I)),
    ('not_allowed', re.compile(r'no pg_hba\.conf entry|pg_hba\.conf rejects', re.I)),
    ('database_missing', re.compile(r'database "[^"]*" does not exist', re.I)),
    ('too_many_clients', re.compile(r'too many clients|remaining connection slots are reserved|'
                                    r'no more connections allowed', re.I)),
    ('rejecting', re.compile(r'the database system is (starting up|shutting down|in recovery|'
                             r'not yet accepting|not accepting)|cannot connect now', re.I)),
    ('no_response', re.compile(r'connection refused|could not connect|no such file or directory|'
                               r'timeout expired|timed out|could not translate host name|'
                               r'server closed the connection unexpectedly|connection reset|'
                               r'network is unreachable|no route to host|'
                               r'connection is bad|could not receive data', re.I)),
)

_SQLSTATE_STATES = {
    '57P03': 'rejecting',          # cannot_connect_now: starting up, shutting down, recovery
    '28P01': 'auth_failed',        # invalid_password
    '28000': 'not_allowed',        # invalid_authorization_specification (pg_hba)
    '3D000': 'database_missing',   # invalid_catalog_name
    '53300': 'too_many_clients',   # too_many_connections
}

# What each state means to an operator, for failure messages.
STATE_HINTS = {
    'no_response': 'nothing answers at that address (server down, wrong host/port, or firewall)',
    'rejecting': 'the server answers but rejects connections (starting up, shutting down or in recovery)',
    'auth_failed': 'the server rejected the password for this user',
    'not_allowed': 'pg_hba.conf has no entry allowing this user/database/address',
    'database_missing': 'the database does not exist',
    'too_many_clients': 'max_connections is exhausted',
    'accepting': 'the server accepts connections',
    'error': 'unexpected error',
}


def sqlstate_of(exc):
    """SQLSTATE of a driver exception, or None (connection errors often carry none)."""
    for attr in ('sqlstate', 'pgcode'):
        code = getattr(exc, attr, None)
        if code:
            return code
    diag = getattr(exc, 'diag', None)
    return getattr(diag, 'sqlstate', None) if diag is not None else None


def classify_pg_error(message, sqlstate=None):
    """Map a SQLSTATE and/or an error message to a connection state name.

    Returns one of: no_response, rejecting, auth_failed, not_allowed,
    database_missing, too_many_clients, error.
    """
    if sqlstate and sqlstate in _SQLSTATE_STATES:
        return _SQLSTATE_STATES[sqlstate]
    text = message or ''
    for state, pattern in _STATE_PATTERNS:
        if pattern.search(text):
            return state
    return 'error'


def parse_pg_url(url):
    """Split a postgres:// URL into connection keywords (percent-decoded).

    Raises ValueError with a message that never contains the password.
    """
    parts = urlsplit(url)
    if parts.scheme not in ('postgres', 'postgresql'):
        raise ValueError('the URL scheme must be postgres:// or postgresql://, got %r' % (parts.scheme + '://'))
    params = {}
    if parts.hostname:
        params['host'] = unquote(parts.hostname)
    try:
        port = parts.port
    except ValueError:
        raise ValueError('the URL has an invalid port')
    if port:
        params['port'] = port
    if parts.username:
        params['user'] = unquote(parts.username)
    if parts.password is not None:
        params['password'] = unquote(parts.password)
    path = parts.path.lstrip('/')
    if path:
        params['database'] = unquote(path)
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key == 'dbname':
            key = 'database'
        elif key == 'sslrootcert':
            key = 'ssl_rootcert'
        params[key] = value
    return params


def connection_params(options):
    """Merge a url with explicit host/port/... options; explicit options win.

    ``options`` is a dict shaped like pg_connection_spec(). Returns a dict with
    host, port, database, user, password, sslmode, ssl_rootcert, connect_timeout
    and any extra URL query keywords (e.g. application_name).
    """
    params = {}
    if options.get('url'):
        params.update(parse_pg_url(options['url']))
    for key in ('host', 'port', 'database', 'user', 'password', 'sslmode', 'ssl_rootcert', 'connect_timeout'):
        if options.get(key) not in (None, ''):
            params[key] = options[key]
    if 'port' in params:
        params['port'] = int(params['port'])
    params.setdefault('port', 5432)
    return params


def _driver_kwargs(params, application_name):
    kwargs = {}
    mapping = {'host': 'host', 'port': 'port', 'database': 'dbname', 'user': 'user',
               'password': 'password', 'sslmode': 'sslmode', 'ssl_rootcert': 'sslrootcert',
               'connect_timeout': 'connect_timeout'}
    for key, value in params.items():
        if value in (None, ''):
            continue
        kwargs[mapping.get(key, key)] = value
    if application_name and 'application_name' not in kwargs:
        kwargs['application_name'] = application_name
    return kwargs


def pg_connect(params, application_name='shipyard.webstack', autocommit=True):
    """Open a connection with whichever driver is installed.

    Raises the driver's exception on failure; callers classify it with
    sqlstate_of() / classify_pg_error().
    """
    if PG_DRIVER is None:
        raise RuntimeError('no PostgreSQL driver (psycopg or psycopg2) is installed')
    kwargs = _driver_kwargs(params, application_name)
    if PG_DRIVER == 'psycopg':
        import psycopg
        return psycopg.connect(autocommit=autocommit, **kwargs)
    import psycopg2
    conn = psycopg2.connect(**kwargs)
    conn.autocommit = autocommit
    return conn


def pg_query(conn, sql, args=None):
    """Run one statement; return (column names, rows). Rows are tuples."""
    cur = conn.cursor()
    try:
        cur.execute(sql, args)
        if cur.description is None:
            return [], []
        return [col[0] for col in cur.description], cur.fetchall()
    finally:
        cur.close()


def pg_simple_query(conn, sql):
    """Run a statement with the simple query protocol (PgBouncer's admin console needs it)."""
    if PG_DRIVER == 'psycopg':
        import psycopg
        cur = psycopg.ClientCursor(conn)
    else:
        cur = conn.cursor()
    try:
        cur.execute(sql)
        if cur.description is None:
            return [], []
        return [col[0] for col in cur.description], cur.fetchall()
    finally:
        cur.close()


# ---------------------------------------------------------------------------
# Direct-connection check (migration_gate). A transaction-pooling PgBouncer
# hands each transaction whichever server connection is free, so session
# state -- advisory locks above all -- does not stay with the client.

POOLER_MESSAGE = (
    'This connection does not reach PostgreSQL directly: it goes through a connection pooler '
    '(PgBouncer or similar) -- {evidence}. Session advisory locks do not hold through transaction '
    'pooling, so migrations must not run over it. Use the DIRECT_URL (straight to PostgreSQL, '
    'usually port 5432), not the pooled DATABASE_URL.'
)


def is_socket_host(host):
    """True when host names a unix socket directory rather than a TCP host."""
    return bool(host) and str(host).startswith('/')


def backend_identity(conn):
    """(backend pid, the server's own port or None on a unix socket) of this session."""
    _cols, rows = pg_query(conn, 'SELECT pg_backend_pid(), inet_server_port()')
    return rows[0][0], rows[0][1]


def port_mismatch_evidence(params, server_port):
    """Evidence string when the server's own port is not the TCP port we connected to, else None."""
    host = params.get('host')
    if is_socket_host(host) or not host:
        return None  # a unix socket has no port to compare; the pid checks still apply
    wanted = int(params.get('port') or 5432)
    if server_port is None:
        return 'we connected to TCP port %s but the server sees us on a unix socket' % wanted
    if int(server_port) != wanted:
        return 'we connected to port %s but the server itself listens on port %s' % (wanted, server_port)
    return None


def pooling_evidence(conn, params, application_name='shipyard.webstack', rounds=3):
    """Evidence string when the session is not pinned to one backend, else None.

    On a direct connection a session keeps one backend process, and two live
    connections never share one. A transaction pooler breaks both: an idle
    server connection goes to the next client that asks (PgBouncer reuses the
    most recent one first), and our next transaction may land elsewhere.
    """
    first_pid, _port = backend_identity(conn)
    for _round in range(rounds):
        try:
            other = pg_connect(params, application_name=application_name)
        except Exception:  # pylint: disable=broad-except  # e.g. too many clients: inconclusive, not a refusal
            other = None
        if other is not None:
            try:
                other_pid, _port = backend_identity(other)
            finally:
                other.close()
            if other_pid == first_pid:
                return 'a second connection was served by the same server backend (pid %s)' % first_pid
        pid, _port = backend_identity(conn)
        if pid != first_pid:
            return 'the server backend changed between two transactions (pid %s, then %s)' % (first_pid, pid)
    return None


def direct_connection_problem(conn, params, strict=True, application_name='shipyard.webstack'):
    """The refusal message when conn is not a direct session, else None.

    strict: also refuse when the server's port differs from the one connected
    to (any proxy in between), not only when pooling is proven.
    """
    _pid, server_port = backend_identity(conn)
    evidence = port_mismatch_evidence(params, server_port) if strict else None
    if evidence is None:
        evidence = pooling_evidence(conn, params, application_name=application_name)
    if evidence is None:
        return None
    return POOLER_MESSAGE.format(evidence=evidence)


_SCRAM_VERIFIER = re.compile(r'^SCRAM-SHA-256\$(\d+):([^$]+)\$([^:]+):(.+)$')
_MD5_VERIFIER = re.compile(r'^md5[0-9a-f]{32}$')
_PRINTABLE_ASCII = re.compile(r'^[\x20-\x7e]*$')


def is_password_verifier(password):
    """True when ``password`` is already a verifier (SCRAM-SHA-256$... or md5...), not a plain password."""
    return bool(_SCRAM_VERIFIER.match(password) or _MD5_VERIFIER.match(password))


def password_settled(stored, role, password, password_encryption):
    """Would setting ``password`` on ``role`` leave pg_authid.rolpassword (``stored``) as it is?

    Decided on the host, so no verifier or password travels anywhere. True only when certain:
    a verifier given as the password equals the stored one; a plain password verifies against a stored
    SCRAM verifier, or against a stored md5 one while the server still encrypts with md5 (a server on
    scram-sha-256 would re-encrypt it, which is a change). A password outside printable ASCII needs
    SASLprep, which is not done here, so it counts as not settled: the caller then sets it, which is
    always correct.
    """
    if password == '':
        return stored is None
    if stored is None:
        return False
    if is_password_verifier(password):
        return hmac.compare_digest(stored.encode('utf-8'), password.encode('utf-8'))
    if not _PRINTABLE_ASCII.match(password):
        return False
    if _MD5_VERIFIER.match(stored):
        if password_encryption != 'md5':
            return False
        expected = 'md5' + hashlib.md5((password + role).encode('utf-8')).hexdigest()
        return hmac.compare_digest(stored.encode('utf-8'), expected.encode('utf-8'))
    match = _SCRAM_VERIFIER.match(stored)
    if not match:
        return False
    iterations, salt, stored_key, server_key = match.groups()
    try:
        salt, stored_key, server_key = (base64.b64decode(v) for v in (salt, stored_key, server_key))
    except (TypeError, ValueError):
        return False
    # RFC 5802: SaltedPassword = Hi(password, salt, i); StoredKey = H(HMAC(SaltedPassword, "Client Key")).
    salted = hashlib.pbkdf2_hmac('sha256', password.encode('ascii'), salt, int(iterations))
    client_key = hmac.new(salted, b'Client Key', hashlib.sha256).digest()
    return (hmac.compare_digest(hashlib.sha256(client_key).digest(), stored_key)
            and hmac.compare_digest(hmac.new(salted, b'Server Key', hashlib.sha256).digest(), server_key))

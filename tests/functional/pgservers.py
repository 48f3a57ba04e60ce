"""Real PostgreSQL and PgBouncer servers on loopback, for functional tests.

Nothing here is mocked: initdb + pg_ctl start a throw-away cluster with
scram-sha-256 authentication in a temp dir, and a real pgbouncer process is
put in front of it. Every server gets a free port on 127.0.0.1 and its unix
sockets in its own temp dir, so several pytest sessions can run side by side.

Postgres and PgBouncer refuse to run as root: when the tests run as root the
servers run as the ``postgres`` user (override with SHIPYARD_TEST_PG_OSUSER).

Use the fixtures from a test module::

    from pgservers import pg_server, pgbouncer_server, pg_factory  # noqa: F401  (pytest fixtures)

    def test_x(pg_server):
        pg_server.sql('SELECT 1')
        url = pg_server.url()                # app user, direct
        ...

Binaries are looked up in SHIPYARD_TEST_PG_BINDIR (default: the newest
/usr/lib/postgresql/*/bin, else PATH) and SHIPYARD_TEST_PGBOUNCER (default:
pgbouncer on PATH or /usr/sbin/pgbouncer). Missing binaries make the fixtures
FAIL with a message naming the package to install, never skip.
"""

import glob
import os
import pwd
import random
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

try:
    import psycopg
except ImportError:  # pragma: no cover - the venv has it; fail clearly if not
    psycopg = None

START_TIMEOUT = 30


class ServerError(RuntimeError):
    """A test server could not be started or stopped (message carries its log tail)."""


# ---------------------------------------------------------------- helpers

def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def ephemeral_port_range():
    """(low, high) of the ports the kernel hands out to outgoing connections and to bind(0)."""
    try:
        with open('/proc/sys/net/ipv4/ip_local_port_range') as handle:
            low, high = handle.read().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def _bindable(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(('127.0.0.1', port))
        except OSError:
            return False
    return True


def free_fixed_ports(*offsets, low=20000):
    """A base port such that base + each offset is free now and below the ephemeral range.

    Ports chosen by the test (not by bind(0)) must stay out of the ephemeral range: any outgoing connection on the
    machine may be given that port as its local end in the meantime and the later bind fails."""
    ceiling = ephemeral_port_range()[0] - max(offsets or (0,)) - 1
    for _attempt in range(50):
        base = random.randrange(low, ceiling, 2)
        if all(_bindable(base + offset) for offset in offsets or (0,)):
            return base
    raise ServerError('no free ports at offsets %s between %d and %d' % (offsets, low, ceiling))


def make_password(prefix='pw'):
    """A distinctive random password (URL-safe, easy to grep for in outputs)."""
    return '%s-%s' % (prefix, secrets.token_hex(12))


def pg_bindir():
    """Directory holding initdb/pg_ctl/postgres/psql, or raise ServerError."""
    wanted = os.environ.get('SHIPYARD_TEST_PG_BINDIR')
    candidates = [wanted] if wanted else sorted(
        glob.glob('/usr/lib/postgresql/*/bin'), key=lambda p: int(p.split('/')[-2]) if p.split('/')[-2].isdigit() else 0,
        reverse=True)
    for cand in candidates:
        if cand and os.path.exists(os.path.join(cand, 'initdb')):
            return cand
    initdb = shutil.which('initdb')
    if initdb and not wanted:
        return os.path.dirname(initdb)
    raise ServerError('PostgreSQL server binaries (initdb, pg_ctl) not found%s. Install them, e.g. '
                      '`apt-get install postgresql` (Debian/Ubuntu), or set SHIPYARD_TEST_PG_BINDIR.'
                      % (' in %s' % wanted if wanted else ''))


def pgbouncer_binary():
    """Path of the pgbouncer executable, or raise ServerError."""
    wanted = os.environ.get('SHIPYARD_TEST_PGBOUNCER')
    for cand in (wanted, shutil.which('pgbouncer'), '/usr/sbin/pgbouncer'):
        if cand and os.access(cand, os.X_OK):
            return cand
    raise ServerError('pgbouncer not found. Install it, e.g. `apt-get install pgbouncer`, '
                      'or set SHIPYARD_TEST_PGBOUNCER.')


def _require_driver():
    if psycopg is None:
        raise ServerError('psycopg (3) is needed by the test harness: pip install "psycopg[binary]"')


def _server_osuser():
    """(uid, gid, name) to run servers as: postgres when we are root, else ourselves."""
    if os.geteuid() != 0:
        ent = pwd.getpwuid(os.geteuid())
        return ent.pw_uid, ent.pw_gid, ent.pw_name
    name = os.environ.get('SHIPYARD_TEST_PG_OSUSER', 'postgres')
    try:
        ent = pwd.getpwnam(name)
    except KeyError:
        raise ServerError('running as root, but there is no %r user to run the servers as '
                          '(postgres refuses root); create it or set SHIPYARD_TEST_PG_OSUSER' % name)
    return ent.pw_uid, ent.pw_gid, ent.pw_name


def _run_as_kwargs():
    uid, gid, _name = _server_osuser()
    if os.geteuid() != 0:
        return {}
    return dict(user=uid, group=gid, extra_groups=[])


def _chown_tree(path):
    uid, gid, _name = _server_osuser()
    if os.geteuid() != 0:
        return
    for root, dirs, files in os.walk(path):
        os.chown(root, uid, gid)
        for name in dirs + files:
            os.chown(os.path.join(root, name), uid, gid)


def _log_tail(path, limit=3000):
    try:
        with open(path, 'r', errors='replace') as handle:
            return handle.read()[-limit:]
    except OSError:
        return '(no log at %s)' % path


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _wait_pid_gone(pid, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            return True
        time.sleep(0.05)
    return not _pid_alive(pid)


def _conf_value(value):
    if isinstance(value, bool):
        return 'on' if value else 'off'
    if isinstance(value, int):
        return str(value)
    return "'%s'" % str(value).replace("'", "''")


# ---------------------------------------------------------------- PostgreSQL

class _TempServer:
    """Lifecycle shared by the servers here: start() / stop(), files under basedir.

    Used as a context manager, a server that fails to start is cleaned up too.
    """

    basedir = None

    def cleanup(self):
        try:
            self.stop()
        finally:
            if self.basedir:
                shutil.rmtree(self.basedir, ignore_errors=True)

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.cleanup()
            raise

    def __exit__(self, *exc):
        self.cleanup()


class PostgresServer(_TempServer):
    """A throw-away PostgreSQL cluster: scram-sha-256, loopback TCP + unix socket in its temp dir.

    Users: ``superuser`` (a superuser) and ``app_user`` owning ``database``;
    both have random passwords (attributes of the same names).
    """

    def __init__(self, max_connections=20, superuser='postgres', app_user='app', database='appdb',
                 settings=None, name='pg'):
        self.max_connections = max_connections
        self.superuser = superuser
        self.superuser_password = make_password('su')
        self.app_user = app_user
        self.app_password = make_password('app')
        self.database = database
        self.settings = dict(settings or {})
        self.name = name
        self.host = '127.0.0.1'
        self.port = None
        self.basedir = None
        self.datadir = None
        self.sockdir = None
        self.logfile = None
        self.bindir = None

    # -- lifecycle
    def start(self):
        _require_driver()
        self.bindir = pg_bindir()
        self.basedir = tempfile.mkdtemp(prefix='shipyard-%s-' % self.name)
        self.datadir = os.path.join(self.basedir, 'data')
        self.sockdir = os.path.join(self.basedir, 'sock')
        self.logfile = os.path.join(self.basedir, 'postgres.log')
        os.mkdir(self.sockdir)
        pwfile = os.path.join(self.basedir, 'pwfile')
        with open(pwfile, 'w') as handle:
            handle.write(self.superuser_password + '\n')
        _chown_tree(self.basedir)
        self._run([os.path.join(self.bindir, 'initdb'), '-D', self.datadir, '-U', self.superuser,
                   '--auth=scram-sha-256', '--pwfile=' + pwfile, '-E', 'UTF8', '--no-sync', '--no-instructions'],
                  'initdb')
        os.unlink(pwfile)
        # A port picked by free_port() can be taken by someone else before we bind: retry a few times.
        for attempt in range(3):
            self.port = free_port()
            self._write_conf()
            try:
                self.pg_ctl('start', '-w', '-t', str(START_TIMEOUT), '-l', self.logfile)
                break
            except ServerError:
                if attempt == 2 or 'Address already in use' not in _log_tail(self.logfile):
                    raise
        self._bootstrap_roles()
        return self

    def stop(self, mode='fast'):
        """Stop the cluster (pg_ctl stop; SIGKILL the postmaster by pid if that fails)."""
        pid = self.pid()
        if pid is None:
            return
        try:
            self.pg_ctl('stop', '-w', '-t', '20', '-m', mode)
        except ServerError:
            os.kill(pid, signal.SIGKILL)
            _wait_pid_gone(pid, 10)

    def restart(self):
        self.pg_ctl('restart', '-w', '-t', str(START_TIMEOUT), '-m', 'fast', '-l', self.logfile)

    def reload(self):
        self.pg_ctl('reload')

    def start_standby(self, hot_standby=False):
        """Restart the cluster as a standby with no primary, without waiting; it stays in recovery.

        With hot_standby off it answers every connection with SQLSTATE 57P03
        ("the database system is not accepting connections"), the state pg_isready
        calls "rejecting", until promote(). (A real start-up passes through 57P03
        too briefly to test against.) With hot_standby on it serves read-only
        connections: a replica, as far as pg_is_in_recovery() is concerned.
        """
        self.stop()
        self.settings['hot_standby'] = hot_standby
        self._write_conf()
        with open(os.path.join(self.datadir, 'standby.signal'), 'w'):
            pass
        _chown_tree(self.datadir)
        # pg_ctl -w would wait for "ready", which a standby without hot_standby never reports.
        self.pg_ctl('start', '-W', '-l', self.logfile)

    def promote(self):
        """End the recovery started by start_standby(): the server is a primary again."""
        self.pg_ctl('promote', '-w', '-t', str(START_TIMEOUT))
        self.settings.pop('hot_standby', None)
        self._write_conf()

    def pid(self):
        """The postmaster's pid (from postmaster.pid), or None when it is not running."""
        try:
            with open(os.path.join(self.datadir, 'postmaster.pid')) as handle:
                pid = int(handle.readline().strip())
        except (OSError, ValueError, TypeError):
            return None
        return pid if _pid_alive(pid) else None

    # -- configuration
    def configure(self, restart=True, **settings):
        """Change postgresql.conf settings (e.g. max_connections=5) and restart (or reload)."""
        self.settings.update(settings)
        if 'max_connections' in settings:
            self.max_connections = settings['max_connections']
        self._write_conf()
        if restart:
            self.restart()
        else:
            self.reload()

    def _write_conf(self):
        conf = {
            'listen_addresses': self.host,
            'port': self.port,
            'unix_socket_directories': self.sockdir,
            'max_connections': self.max_connections,
            # reserved slots must stay below max_connections for tiny test limits
            'superuser_reserved_connections': min(3, max(self.max_connections - 2, 0)),
            'password_encryption': 'scram-sha-256',
            # throw-away data: trade durability for speed
            'fsync': False,
            'synchronous_commit': False,
            'full_page_writes': False,
            'shared_buffers': '16MB',
            'log_line_prefix': '%m [%p] %a ',
        }
        conf.update(self.settings)
        path = os.path.join(self.datadir, 'postgresql.shipyard-test.conf')
        with open(path, 'w') as handle:
            for key, value in conf.items():
                handle.write('%s = %s\n' % (key, _conf_value(value)))
        main = os.path.join(self.datadir, 'postgresql.conf')
        with open(main, 'r') as handle:
            included = 'postgresql.shipyard-test.conf' in handle.read()
        if not included:
            with open(main, 'a') as handle:
                handle.write("\ninclude = 'postgresql.shipyard-test.conf'\n")
        _chown_tree(self.datadir)

    def _bootstrap_roles(self):
        self.sql("CREATE ROLE %s LOGIN PASSWORD '%s'" % (_ident(self.app_user), self.app_password), database='postgres')
        self.sql('CREATE DATABASE %s OWNER %s' % (_ident(self.database), _ident(self.app_user)), database='postgres')

    # -- commands
    def pg_ctl(self, *args):
        self._run([os.path.join(self.bindir, 'pg_ctl'), '-D', self.datadir] + list(args), 'pg_ctl ' + args[0])

    def _run(self, argv, what):
        proc = subprocess.run(argv, cwd=self.basedir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              timeout=START_TIMEOUT + 30, check=False, **_run_as_kwargs())
        if proc.returncode != 0:
            raise ServerError('%s failed (rc=%s): %s\n--- server log tail ---\n%s'
                              % (what, proc.returncode, proc.stdout.decode('utf-8', 'replace'),
                                 _log_tail(self.logfile or '')))
        return proc

    # -- connections
    def params(self, user=None, database=None):
        """Connection keywords (psycopg style) for the app user, or the superuser if user='super'."""
        if user in (None, 'app'):
            user, password = self.app_user, self.app_password
        elif user in ('super', self.superuser):
            user, password = self.superuser, self.superuser_password
        else:
            raise ValueError('unknown user %r' % user)
        return dict(host=self.host, port=self.port, user=user, password=password,
                    dbname=database or self.database)

    def url(self, user=None, database=None, port=None):
        """postgresql:// URL straight to this server (port overridable, e.g. to aim at a proxy)."""
        p = self.params(user, database)
        return 'postgresql://%s:%s@%s:%s/%s' % (p['user'], p['password'], p['host'], port or p['port'], p['dbname'])

    def connect(self, user='super', database=None, autocommit=True, **kwargs):
        _require_driver()
        params = self.params(user, database)
        params.update(kwargs)
        return psycopg.connect(autocommit=autocommit, connect_timeout=5, **params)

    def sql(self, query, args=None, user='super', database=None):
        """Run one statement as the superuser (default); return the rows (list of tuples) or []."""
        with self.connect(user=user, database=database) as conn:
            cur = conn.execute(query, args)
            return cur.fetchall() if cur.description is not None else []

    def scram_secret(self, role):
        """The role's SCRAM verifier from pg_authid (what PgBouncer's userlist needs)."""
        rows = self.sql('SELECT rolpassword FROM pg_authid WHERE rolname = %s', (role,))
        if not rows or not rows[0][0]:
            raise ServerError('role %r has no password' % role)
        return rows[0][0]

    def advisory_locks(self, database=None):
        """Advisory locks currently held or awaited in the database: list of dicts."""
        rows = self.sql(
            "SELECT l.pid, l.classid, l.objid, l.objsubid, l.granted, a.application_name "
            "FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.database = (SELECT oid FROM pg_database WHERE datname = %s)",
            (database or self.database,))
        keys = ('pid', 'classid', 'objid', 'objsubid', 'granted', 'application_name')
        return [dict(zip(keys, row)) for row in rows]


def _ident(name):
    return '"%s"' % name.replace('"', '""')


# ---------------------------------------------------------------- PgBouncer

class PgBouncerServer(_TempServer):
    """A real pgbouncer in front of a PostgresServer.

    pool_mode: 'transaction' (default), 'session' or 'statement'.
    auth: 'userlist' (SCRAM secrets copied from pg_authid into the userlist,
    so PgBouncer can also log in to the server with them) or 'auth_query'
    (the userlist holds only the superuser, used as auth_user).
    Admin console: database 'pgbouncer', user ``admin_user`` (in admin_users),
    so PAUSE/RESUME/SHOW work; see admin().
    """

    def __init__(self, pg, pool_mode='transaction', auth='userlist', default_pool_size=5,
                 max_client_conn=100, settings=None, name='pgbouncer'):
        if auth not in ('userlist', 'auth_query'):
            raise ValueError('auth must be userlist or auth_query')
        self.pg = pg
        self.pool_mode = pool_mode
        self.auth = auth
        self.default_pool_size = default_pool_size
        self.max_client_conn = max_client_conn
        self.settings = dict(settings or {})
        self.name = name
        self.admin_user = 'pgb_admin'
        self.admin_password = make_password('adm')
        self.host = '127.0.0.1'
        self.port = None
        self.basedir = None
        self.ini = None
        self.logfile = None
        self.proc = None
        self.binary = None

    def start(self):
        _require_driver()
        self.binary = pgbouncer_binary()
        self.basedir = tempfile.mkdtemp(prefix='shipyard-%s-' % self.name)
        self.ini = os.path.join(self.basedir, 'pgbouncer.ini')
        self.logfile = os.path.join(self.basedir, 'pgbouncer.log')
        for attempt in range(3):
            self.port = free_port()
            self._write_config()
            try:
                self._spawn()
                break
            except ServerError:
                self._kill()
                if attempt == 2 or 'in use' not in _log_tail(self.logfile):
                    raise
        return self

    def _spawn(self):
        self.proc = subprocess.Popen([self.binary, self.ini], cwd=self.basedir, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **_run_as_kwargs())
        deadline = time.monotonic() + START_TIMEOUT
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerError('pgbouncer exited with rc=%s\n--- log tail ---\n%s'
                                  % (self.proc.returncode, _log_tail(self.logfile)))
            try:
                self.admin('SHOW VERSION')
                return
            except Exception as exc:  # pylint: disable=broad-except  # not up yet; retry until deadline
                last = exc
                time.sleep(0.1)
        raise ServerError('pgbouncer did not answer within %ss: %s\n--- log tail ---\n%s'
                          % (START_TIMEOUT, last, _log_tail(self.logfile)))

    def _write_config(self):
        pg = self.pg
        lines = [
            '[databases]',
            '%s = host=%s port=%s dbname=%s' % (pg.database, pg.host, pg.port, pg.database),
            '* = host=%s port=%s' % (pg.host, pg.port),
            '',
            '[pgbouncer]',
            'listen_addr = %s' % self.host,
            'listen_port = %s' % self.port,
            'unix_socket_dir = %s' % self.basedir,
            'auth_type = scram-sha-256',
            'auth_file = %s' % os.path.join(self.basedir, 'userlist.txt'),
            'admin_users = %s' % self.admin_user,
            'stats_users = %s' % self.admin_user,
            'pool_mode = %s' % self.pool_mode,
            'default_pool_size = %s' % self.default_pool_size,
            'max_client_conn = %s' % self.max_client_conn,
            'logfile = %s' % self.logfile,
            'pidfile = %s' % os.path.join(self.basedir, 'pgbouncer.pid'),
            'ignore_startup_parameters = extra_float_digits',
            'server_login_retry = 1',
        ]
        if self.auth == 'auth_query':
            lines.append('auth_user = %s' % pg.superuser)
            lines.append('auth_query = SELECT usename, passwd FROM pg_shadow WHERE usename=$1')
        for key, value in self.settings.items():
            lines.append('%s = %s' % (key, value))
        with open(self.ini, 'w') as handle:
            handle.write('\n'.join(lines) + '\n')
        users = [(self.admin_user, self.admin_password)]
        if self.auth == 'userlist':
            users.append((pg.superuser, pg.scram_secret(pg.superuser)))
            users.append((pg.app_user, pg.scram_secret(pg.app_user)))
        else:
            # auth_user logs in to run auth_query with no client SCRAM keys to reuse: needs the plain password
            users.append((pg.superuser, pg.superuser_password))
        userlist = os.path.join(self.basedir, 'userlist.txt')
        with open(userlist, 'w') as handle:
            for user, secret in users:
                handle.write('"%s" "%s"\n' % (user, secret.replace('"', '""')))
        os.chmod(userlist, 0o600)
        _chown_tree(self.basedir)

    def reload(self):
        """Rewrite the config (e.g. after changing .settings) and RELOAD it."""
        self._write_config()
        self.admin('RELOAD')

    def stop(self):
        self._kill()

    def _kill(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    @property
    def pid(self):
        return self.proc.pid if self.proc is not None else None

    # -- connections
    def params(self, user=None, database=None):
        p = self.pg.params(user, database)
        p['port'] = self.port
        return p

    def url(self, user=None, database=None):
        """postgresql:// URL through this pgbouncer (app user by default)."""
        return self.pg.url(user, database, port=self.port)

    def connect(self, user=None, database=None, autocommit=True, **kwargs):
        params = self.params(user, database)
        params.update(kwargs)
        return psycopg.connect(autocommit=autocommit, connect_timeout=5, **params)

    def admin_params(self):
        return dict(host=self.host, port=self.port, user=self.admin_user, password=self.admin_password,
                    dbname='pgbouncer')

    def admin(self, command):
        """Run an admin console command (simple query protocol); return (columns, rows)."""
        _require_driver()
        with psycopg.connect(autocommit=True, connect_timeout=3, **self.admin_params()) as conn:
            cur = psycopg.ClientCursor(conn)
            cur.execute(command)
            if cur.description is None:
                return [], []
            return [col.name for col in cur.description], cur.fetchall()


# ---------------------------------------------------------------- pytest fixtures

def _start_or_fail(server):
    """Start a server or FAIL the test with the reason (missing prerequisites are failures, not skips)."""
    try:
        return server.__enter__()
    except ServerError as exc:
        pytest.fail(str(exc), pytrace=False)


class _Factory:
    """Creates servers on demand and stops them all at teardown."""

    def __init__(self):
        self.servers = []

    def postgres(self, **kwargs):
        server = _start_or_fail(PostgresServer(**kwargs))
        self.servers.append(server)
        return server

    def pgbouncer(self, pg, **kwargs):
        server = _start_or_fail(PgBouncerServer(pg, **kwargs))
        self.servers.append(server)
        return server

    def close(self):
        # pgbouncers first, then the postgres they point at
        for server in reversed(self.servers):
            server.cleanup()
        self.servers = []


@pytest.fixture(scope='session')
def pg_factory():
    """Session-scoped factory: pg_factory.postgres(max_connections=5), pg_factory.pgbouncer(pg, pool_mode=...)."""
    factory = _Factory()
    yield factory
    factory.close()


@pytest.fixture(scope='module')
def pg_module_factory():
    """Like pg_factory, but servers die at the end of the test module (for suites that restart/break them)."""
    factory = _Factory()
    yield factory
    factory.close()


@pytest.fixture(scope='session')
def pg_server(pg_factory):
    """A shared PostgreSQL server for the session. Don't restart or reconfigure it: use pg_module_factory."""
    return pg_factory.postgres(name='pg-shared')


@pytest.fixture(scope='session')
def pgbouncer_server(pg_factory, pg_server):
    """A shared transaction-pooling PgBouncer (userlist SCRAM auth) in front of pg_server."""
    return pg_factory.pgbouncer(pg_server, name='pgbouncer-shared')

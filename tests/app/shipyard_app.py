"""The reference app of shipyard.webstack's tests: a small web app with a database and Redis.

Standard library only, plus psycopg2 (Debian's python3-psycopg2) for PostgreSQL; Redis
is spoken with the tiny RESP client below. Commands (the image's ENTRYPOINT runs this
file, so ``docker run IMAGE migrate`` works):

  web             HTTP on PORT (default 8000); FRONTEND_PORT adds a second listener
  worker          loops: bumps a heartbeat row (DATABASE_URL) and key (REDIS_URL)
  scheduler       the same loop, under another name (a third process from one image)
  migrate         applies pending SQL migrations over DIRECT_URL, under an advisory lock
  migrate-status  exit 0 when the schema is up to date, 1 when migrations are pending
  healthcheck     Docker's HEALTHCHECK: HTTP for web, heartbeat freshness for worker/scheduler
  version         prints the build's version

Environment: PORT, FRONTEND_PORT, HOST (0.0.0.0), DATABASE_URL (through PgBouncer),
DIRECT_URL (straight to PostgreSQL, for migrations), REDIS_URL (redis:// or rediss://),
HEALTH_TIMEOUT (2 s), SHUTDOWN_TIMEOUT (25 s), STARTUP_DELAY (0 s), WORKER_INTERVAL (2 s),
WORKER_NAME (hostname), HEARTBEAT_MAX_AGE (max(3 x WORKER_INTERVAL, 10 s)), MIGRATE_LOCK_KEY, MIGRATE_LOCK_TIMEOUT (60 s), MIGRATIONS_DIR,
HEALTHCHECK_PATH (/api/health?quick=true).
"""

import hashlib
import html
import json
import os
import re
import signal
import socket
import ssl
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

APP_DIR = os.path.dirname(os.path.abspath(__file__))
BUILD_FILE = os.path.join(APP_DIR, 'build.json')
MIGRATION_RE = re.compile(r'^(\d+)_([A-Za-z0-9_]+)\.sql$')
DEFAULT_LOCK_NAME = 'shipyard-reference-app.migrate'
HEARTBEAT_FILE = '/tmp/shipyard-worker.heartbeat'
LOOP_COMMANDS = ('worker', 'scheduler')


class AppError(Exception):
    """A failure with a message meant for the operator (exit code in .code)."""

    def __init__(self, message, code=2):
        super().__init__(message)
        self.code = code


# ---------------------------------------------------------------- pure helpers

def build_info(path=BUILD_FILE):
    """The build's facts baked into the image: version and health mode ('ok' or 'broken')."""
    try:
        with open(path) as handle:
            info = json.load(handle)
    except (OSError, ValueError):
        info = {}
    return {'version': str(info.get('version', '0.0.0-dev')), 'health': str(info.get('health', 'ok'))}


def env_number(env, name, default, cast=float, minimum=0):
    raw = env.get(name, '')
    if raw == '':
        return default
    try:
        value = cast(raw)
    except ValueError:
        raise AppError('%s=%r is not a number' % (name, raw))
    if value < minimum:
        raise AppError('%s=%r must be at least %s' % (name, raw, minimum))
    return value


def redact_url(url):
    """The URL with its password replaced by ***, for logs and error messages."""
    if not url:
        return url
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit('@', 1)
    userinfo = netloc[0].split(':', 1)[0] + ':***'
    return urllib.parse.urlunsplit((parts.scheme, userinfo + '@' + netloc[1], parts.path, parts.query, parts.fragment))


def redact_text(text, urls):
    """Remove every password of the given URLs from a text (error messages may echo them)."""
    for url in urls:
        if not url:
            continue
        try:
            password = urllib.parse.urlsplit(url).password
        except ValueError:
            password = None
        if password:
            text = text.replace(password, '***')
            text = text.replace(urllib.parse.unquote(password), '***')
    return text


def parse_redis_url(url):
    """redis://[[user]:password@]host[:port][/db] or rediss://... -> dict of connection facts."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ('redis', 'rediss'):
        raise AppError('REDIS_URL must start with redis:// or rediss://, not %r' % redact_url(url))
    if not parts.hostname:
        raise AppError('REDIS_URL has no host: %r' % redact_url(url))
    path = parts.path.lstrip('/')
    query = urllib.parse.parse_qs(parts.query)
    db = path or query.get('db', ['0'])[0]
    if not db.isdigit():
        raise AppError('REDIS_URL database must be a number, not %r' % db)
    try:
        port = parts.port or 6379
    except ValueError:
        raise AppError('REDIS_URL has a bad port: %r' % redact_url(url))
    return {
        'host': parts.hostname,
        'port': port,
        'username': urllib.parse.unquote(parts.username) if parts.username else None,
        'password': urllib.parse.unquote(parts.password) if parts.password is not None else None,
        'db': int(db),
        'tls': parts.scheme == 'rediss',
        'verify': query.get('ssl_cert_reqs', ['required'])[0] != 'none',
    }


def resp_encode(*args):
    """A RESP array of bulk strings: how a client sends one command."""
    out = [b'*%d\r\n' % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b'$%d\r\n%s\r\n' % (len(data), data))
    return b''.join(out)


class RedisReplyError(Exception):
    """An error reply (-ERR ..., -NOAUTH ..., -WRONGPASS ...)."""


def resp_read(stream):
    """Read one reply from a binary file-like object. Errors come back as RedisReplyError instances."""
    line = stream.readline()
    if not line.endswith(b'\r\n'):
        raise ConnectionError('redis closed the connection')
    kind, rest = line[:1], line[1:-2]
    if kind == b'+':
        return rest.decode()
    if kind == b'-':
        return RedisReplyError(rest.decode())
    if kind == b':':
        return int(rest)
    if kind == b'$':
        size = int(rest)
        if size < 0:
            return None
        data = stream.read(size + 2)
        if len(data) != size + 2:
            raise ConnectionError('redis closed the connection')
        return data[:-2].decode(errors='replace')
    if kind == b'*':
        size = int(rest)
        return None if size < 0 else [resp_read(stream) for dummy in range(size)]
    raise ConnectionError('unexpected reply from redis: %r' % line[:40])


def load_migrations(directory):
    """Ordered migrations of a directory: NNNN_name.sql -> list of dicts (version, name, sql, checksum)."""
    try:
        names = os.listdir(directory)
    except OSError as exc:
        raise AppError('cannot read the migrations directory %s: %s' % (directory, exc.strerror))
    found = {}
    for name in names:
        match = MIGRATION_RE.match(name)
        if not match:
            if name.endswith('.sql'):
                raise AppError('migration file %s is not named NNNN_name.sql' % name)
            continue
        version = int(match.group(1))
        if version in found:
            raise AppError('two migrations have version %d: %s and %s' % (version, found[version]['file'], name))
        with open(os.path.join(directory, name), 'rb') as handle:
            data = handle.read()
        found[version] = {'version': version, 'name': match.group(2), 'file': name,
                          'sql': data.decode(), 'checksum': hashlib.sha256(data).hexdigest()}
    return [found[v] for v in sorted(found)]


def plan_migrations(migrations, applied):
    """Compare the image's migrations with the applied ones ({version: checksum}).

    Returns a dict: pending (migrations to run, in order), mismatched (versions whose
    checksum differs), unknown (applied versions this image does not know: the database
    is ahead, e.g. after a rollback), state ('current', 'pending', 'ahead' or 'mismatch').
    """
    known = {m['version']: m for m in migrations}
    pending = [m for m in migrations if m['version'] not in applied]
    mismatched = sorted(v for v, checksum in applied.items()
                        if v in known and checksum and checksum != known[v]['checksum'])
    unknown = sorted(v for v in applied if v not in known)
    if mismatched:
        state = 'mismatch'
    elif pending:
        state = 'pending'
    elif unknown:
        state = 'ahead'
    else:
        state = 'current'
    return {'pending': pending, 'mismatched': mismatched, 'unknown': unknown, 'state': state}


def lock_key(name):
    """A signed 64-bit advisory lock key from a name (stable across runs and hosts)."""
    value = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], 'big')
    return value - (1 << 64) if value >= (1 << 63) else value


def overall_health(checks, mode='ok'):
    """(HTTP status, body) from the checks' results."""
    if mode == 'broken':
        return 503, {'status': 'failing', 'error': 'this build is broken on purpose (variant "broken")', 'checks': checks}
    failed = sorted(name for name, check in checks.items() if check.get('status') == 'failing')
    if failed:
        return 503, {'status': 'failing', 'failed': failed, 'checks': checks}
    return 200, {'status': 'ok', 'checks': checks}


# ---------------------------------------------------------------- clients

class Redis:
    """A tiny Redis client: one connection, AUTH (password or ACL user), SELECT, TLS."""

    def __init__(self, url, timeout=2.0):
        self.conf = parse_redis_url(url)
        self.timeout = timeout
        self.sock = None
        self.stream = None

    def __enter__(self):
        conf = self.conf
        sock = socket.create_connection((conf['host'], conf['port']), timeout=self.timeout)
        try:
            if conf['tls']:
                ctx = ssl.create_default_context(cafile=os.environ.get('REDIS_CA_FILE') or None)
                if not conf['verify']:
                    ctx.check_hostname = False
                    ctx.verify_mode = ssl.CERT_NONE
                sock = ctx.wrap_socket(sock, server_hostname=conf['host'])
            self.sock = sock
            self.stream = sock.makefile('rb')
            if conf['password'] is not None:
                args = ['AUTH'] + ([conf['username']] if conf['username'] else []) + [conf['password']]
                self.command(*args)
            if conf['db']:
                self.command('SELECT', conf['db'])
        except BaseException:
            sock.close()
            raise
        return self

    def __exit__(self, *exc):
        try:
            self.stream.close()
        finally:
            self.sock.close()

    def command(self, *args):
        self.sock.sendall(resp_encode(*args))
        reply = resp_read(self.stream)
        if isinstance(reply, RedisReplyError):
            raise reply
        return reply


def pg_connect(url, timeout, application_name):
    try:
        import psycopg2  # pylint: disable=import-outside-toplevel
    except ImportError:
        raise AppError('psycopg2 is missing (apt-get install python3-psycopg2)')
    try:
        return psycopg2.connect(url, connect_timeout=max(1, int(round(timeout))), application_name=application_name)
    except psycopg2.Error as exc:
        raise AppError('cannot connect to %s: %s' % (redact_url(url), redact_text(str(exc).strip(), [url])))


def applied_migrations(conn):
    """{version: checksum} from schema_migrations, or {} when the table does not exist yet."""
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass('public.schema_migrations') IS NOT NULL")
        if not cur.fetchone()[0]:
            return {}
        cur.execute('SELECT version, checksum FROM public.schema_migrations')
        return {int(v): c for v, c in cur.fetchall()}


# ---------------------------------------------------------------- checks

def check_database(env, timeout):
    url = env.get('DATABASE_URL')
    if not url:
        return {'status': 'skipped', 'reason': 'DATABASE_URL is not set'}
    start = time.monotonic()
    try:
        conn = pg_connect(url, timeout, 'shipyard-app-health')
        try:
            with conn.cursor() as cur:
                cur.execute('SELECT 1')
                cur.fetchone()
        finally:
            conn.close()
    except Exception as exc:  # pylint: disable=broad-except  # any failure is the check's result
        return {'status': 'failing', 'error': redact_text(str(exc).strip(), [url]),
                'ms': round((time.monotonic() - start) * 1000)}
    return {'status': 'ok', 'ms': round((time.monotonic() - start) * 1000)}


def check_redis(env, timeout):
    url = env.get('REDIS_URL')
    if not url:
        return {'status': 'skipped', 'reason': 'REDIS_URL is not set'}
    start = time.monotonic()
    try:
        with Redis(url, timeout) as client:
            reply = client.command('PING')
        if reply != 'PONG':
            raise AppError('PING answered %r' % reply)
    except Exception as exc:  # pylint: disable=broad-except
        return {'status': 'failing', 'error': redact_text('%s: %s' % (type(exc).__name__, exc), [url]),
                'ms': round((time.monotonic() - start) * 1000)}
    return {'status': 'ok', 'ms': round((time.monotonic() - start) * 1000)}


def schema_report(env, timeout, migrations_dir):
    """What /api/version says about the schema."""
    report = {'schema_version': None, 'expected_schema_version': None}
    try:
        migrations = load_migrations(migrations_dir)
    except AppError as exc:
        report['schema_error'] = str(exc)
        migrations = []
    if migrations:
        report['expected_schema_version'] = migrations[-1]['version']
    url = env.get('DATABASE_URL')
    if not url:
        report['schema'] = 'unknown (DATABASE_URL is not set)'
        return report
    try:
        conn = pg_connect(url, timeout, 'shipyard-app-version')
        try:
            applied = applied_migrations(conn)
        finally:
            conn.close()
    except Exception as exc:  # pylint: disable=broad-except
        report['schema'] = 'unknown'
        report['schema_error'] = redact_text(str(exc).strip(), [url])
        return report
    report['schema_version'] = max(applied) if applied else None
    report['schema'] = plan_migrations(migrations, applied)['state']
    return report


# ---------------------------------------------------------------- web

class AppHTTPServer(ThreadingHTTPServer):
    """Counts requests in flight so a SIGTERM can wait for them."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address, handler, app):
        self.app = app
        self.inflight = 0
        self.cond = threading.Condition()
        super().__init__(address, handler)

    def process_request(self, request, client_address):
        with self.cond:
            self.inflight += 1
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._done()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._done()

    def _done(self):
        with self.cond:
            self.inflight -= 1
            self.cond.notify_all()

    def wait_idle(self, deadline):
        with self.cond:
            while self.inflight > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(min(left, 0.2))
        return True


class Handler(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.0'  # one request per connection: nothing idles between requests
    server_version = 'shipyard-app'
    timeout = 10  # a client that connects and says nothing

    def do_GET(self):  # noqa: N802  (http.server's naming)
        app = self.server.app
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        route = {'/api/health': self.health, '/api/version': self.version, '/': self.index,
                 '/api/slow': self.slow}.get(url.path.rstrip('/') or '/')
        if route is None:
            self.reply(404, {'error': 'not found', 'path': url.path})
            return
        try:
            route(app, query)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def do_HEAD(self):  # noqa: N802
        self.do_GET()

    def health(self, app, query):
        quick = query.get('quick', ['false'])[0].lower() in ('1', 'true', 'yes')
        checks = {}
        if not quick:
            checks['database'] = check_database(app.env, app.health_timeout)
            checks['redis'] = check_redis(app.env, app.health_timeout)
        status, body = overall_health(checks, app.build['health'])
        body.update(version=app.build['version'], quick=quick)
        self.reply(status, body, quiet=quick and status == 200)

    def version(self, app, _query):
        body = {'version': app.build['version'], 'hostname': socket.gethostname(), 'port': self.server.server_address[1]}
        body.update(schema_report(app.env, app.health_timeout, app.migrations_dir))
        self.reply(200, body)

    def slow(self, app, query):
        # A request that takes a while: lets tests prove SIGTERM finishes requests in flight.
        try:
            seconds = min(max(float(query.get('seconds', ['1'])[0]), 0.0), 30.0)
        except ValueError:
            seconds = 1.0
        time.sleep(seconds)
        self.reply(200, {'version': app.build['version'], 'slept': seconds})

    def index(self, app, _query):
        version = html.escape(app.build['version'])
        page = ('<!doctype html>\n<html><head><title>shipyard reference app</title></head>\n'
                '<body><h1>shipyard reference app</h1><p>version <b id="version">%s</b> on %s</p>\n'
                '<p><a href="/api/health">/api/health</a> &middot; <a href="/api/version">/api/version</a></p>'
                '</body></html>\n' % (version, html.escape(socket.gethostname())))
        self.reply(200, page.encode(), content_type='text/html; charset=utf-8')

    def reply(self, status, body, content_type='application/json', quiet=False):
        data = body if isinstance(body, bytes) else (json.dumps(body, sort_keys=True) + '\n').encode()
        self.quiet = quiet  # read by log_request(), which send_response() calls
        self.send_response(status)
        self.send_header('Content-Type', content_type)
        self.send_header('Content-Length', str(len(data)))
        self.send_header('X-App-Version', self.server.app.build['version'])
        self.send_header('Cache-Control', 'no-store')
        self.end_headers()
        if self.command != 'HEAD':
            self.wfile.write(data)

    def log_request(self, code='-', size='-'):
        if not getattr(self, 'quiet', False):
            log('web', '%s %s %s %s' % (self.client_address[0], self.command, self.path, code))

    def log_message(self, format, *args):  # pylint: disable=redefined-builtin
        log('web', format % args)


class App:
    def __init__(self, env):
        self.env = env
        self.build = build_info()
        self.health_timeout = env_number(env, 'HEALTH_TIMEOUT', 2.0)
        self.migrations_dir = env.get('MIGRATIONS_DIR') or os.path.join(APP_DIR, 'migrations')


def log(kind, message):
    sys.stdout.write('%s %s[%d] %s\n' % (time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()), kind, os.getpid(), message))
    sys.stdout.flush()


def stop_event():
    """An Event set by SIGTERM or SIGINT."""
    event = threading.Event()

    def handler(signum, _frame):
        log('main', 'received %s' % signal.Signals(signum).name)
        event.set()
    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return event


def cmd_web(env):
    app = App(env)
    stop = stop_event()
    delay = env_number(env, 'STARTUP_DELAY', 0.0)
    shutdown_timeout = env_number(env, 'SHUTDOWN_TIMEOUT', 25.0)
    host = env.get('HOST', '0.0.0.0')
    ports = [int(env_number(env, 'PORT', 8000, int, 1))]
    if env.get('FRONTEND_PORT'):
        ports.append(int(env_number(env, 'FRONTEND_PORT', 0, int, 1)))
    if delay and stop.wait(delay):
        return 0
    servers = []
    for port in ports:
        server = AppHTTPServer((host, port), Handler, app)
        threading.Thread(target=server.serve_forever, kwargs={'poll_interval': 0.2}, daemon=True).start()
        servers.append(server)
    log('web', 'version %s (health %s) listening on %s port %s'
        % (app.build['version'], app.build['health'], host, ', '.join(map(str, ports))))
    while not stop.wait(0.5):
        pass
    # Stop accepting, then let the requests in flight finish (bounded by SHUTDOWN_TIMEOUT).
    for server in servers:
        server.shutdown()
        server.socket.close()
    deadline = time.monotonic() + shutdown_timeout
    inflight = sum(s.inflight for s in servers)
    log('web', 'stopped accepting; %d request(s) in flight' % inflight)
    drained = all(server.wait_idle(deadline) for server in servers)
    if not drained:
        log('web', 'gave up waiting for %d request(s) after %ss' % (sum(s.inflight for s in servers), shutdown_timeout))
        return 1
    log('web', 'all requests finished; exiting')
    return 0


# ---------------------------------------------------------------- worker / scheduler

def beat_once(env, name, kind):
    """One heartbeat: a row in worker_heartbeat and a counter in Redis (whichever is configured)."""
    done = []
    db_url = env.get('DATABASE_URL')
    if db_url:
        conn = pg_connect(db_url, 5, 'shipyard-app-%s' % kind)
        try:
            with conn.cursor() as cur:
                cur.execute('INSERT INTO worker_heartbeat (worker, beats, last_beat) VALUES (%s, 1, now()) '
                            'ON CONFLICT (worker) DO UPDATE SET beats = worker_heartbeat.beats + 1, last_beat = now() '
                            'RETURNING beats', (name,))
                done.append('db beats=%d' % cur.fetchone()[0])
            conn.commit()
        finally:
            conn.close()
    redis_url = env.get('REDIS_URL')
    if redis_url:
        with Redis(redis_url, 5) as client:
            count = client.command('INCR', 'shipyard:%s:%s:beats' % (kind, name))
            client.command('SET', 'shipyard:%s:%s:last' % (kind, name), str(int(time.time())))
        done.append('redis beats=%d' % count)
    return done


def cmd_loop(env, kind):
    stop = stop_event()
    interval = env_number(env, 'WORKER_INTERVAL', 2.0, minimum=0.1)
    name = env.get('WORKER_NAME') or socket.gethostname()
    log(kind, 'version %s started as %r, every %ss' % (build_info()['version'], name, interval))
    while not stop.is_set():
        try:
            done = beat_once(env, name, kind)
            with open(HEARTBEAT_FILE, 'w') as handle:
                handle.write('%d\n' % time.time())
            log(kind, 'heartbeat: %s' % (', '.join(done) or 'nothing configured'))
        except Exception as exc:  # pylint: disable=broad-except  # keep looping; the healthcheck sees the stale beat
            log(kind, 'heartbeat failed: %s' % redact_text(str(exc).strip(), [env.get('DATABASE_URL'), env.get('REDIS_URL')]))
        stop.wait(interval)
    log(kind, 'stopping cleanly')
    return 0


# ---------------------------------------------------------------- migrations

def migration_context(env):
    url = env.get('DIRECT_URL')
    if not url:
        raise AppError('DIRECT_URL is not set: migrations need a direct connection to PostgreSQL (not PgBouncer)')
    migrations_dir = env.get('MIGRATIONS_DIR') or os.path.join(APP_DIR, 'migrations')
    return url, load_migrations(migrations_dir)


def cmd_migrate_status(env):
    url, migrations = migration_context(env)
    conn = pg_connect(url, 10, 'shipyard-app-migrate-status')
    try:
        plan = plan_migrations(migrations, applied_migrations(conn))
    finally:
        conn.close()
    for mig in plan['pending']:
        print('pending  %04d_%s' % (mig['version'], mig['name']))
    if plan['unknown']:
        print('the database has migrations this build does not know: %s (it is ahead of this build)'
              % ', '.join('%04d' % v for v in plan['unknown']))
    if plan['mismatched']:
        print('applied migrations differ from this build: %s' % ', '.join('%04d' % v for v in plan['mismatched']))
        return 2
    print('schema: %s (%d pending)' % (plan['state'], len(plan['pending'])))
    return 1 if plan['pending'] else 0


def take_lock(conn, key, timeout):
    """Session-level advisory lock on a direct connection; waits up to timeout seconds."""
    deadline = time.monotonic() + timeout
    said = False
    with conn.cursor() as cur:
        while True:
            cur.execute('SELECT pg_try_advisory_lock(%s)', (key,))
            if cur.fetchone()[0]:
                return
            if not said:
                unsigned = key & 0xFFFFFFFFFFFFFFFF
                cur.execute("SELECT string_agg(pid::text, ',') FROM pg_locks WHERE locktype = 'advisory' "
                            "AND granted AND objsubid = 1 AND classid = %s::oid AND objid = %s::oid",
                            (unsigned >> 32, unsigned & 0xFFFFFFFF))
                log('migrate', 'waiting for the migration lock (held by pid %s)' % (cur.fetchone()[0] or '?'))
                said = True
            if time.monotonic() >= deadline:
                raise AppError('could not take the migration lock within %ss' % timeout, code=3)
            time.sleep(0.5)


def cmd_migrate(env):
    import psycopg2  # pylint: disable=import-outside-toplevel
    url, migrations = migration_context(env)
    key = int(env['MIGRATE_LOCK_KEY']) if env.get('MIGRATE_LOCK_KEY') else lock_key(DEFAULT_LOCK_NAME)
    conn = pg_connect(url, 10, 'shipyard-app-migrate')
    try:
        conn.autocommit = True
        take_lock(conn, key, env_number(env, 'MIGRATE_LOCK_TIMEOUT', 60.0))
        with conn.cursor() as cur:
            cur.execute('CREATE TABLE IF NOT EXISTS public.schema_migrations ('
                        ' version bigint PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,'
                        ' applied_at timestamptz NOT NULL DEFAULT now(), app_version text,'
                        ' duration_ms integer)')
        plan = plan_migrations(migrations, applied_migrations(conn))
        if plan['mismatched']:
            raise AppError('applied migrations differ from this build: %s; refusing to migrate'
                           % ', '.join('%04d' % v for v in plan['mismatched']), code=2)
        if plan['unknown']:
            log('migrate', 'the database is ahead of this build (has %s): nothing of it is undone'
                % ', '.join('%04d' % v for v in plan['unknown']))
        if not plan['pending']:
            log('migrate', 'schema is up to date (%d migrations known)' % len(migrations))
            return 0
        conn.autocommit = False
        version = build_info()['version']
        for mig in plan['pending']:
            label = '%04d_%s' % (mig['version'], mig['name'])
            start = time.monotonic()
            log('migrate', 'applying %s' % label)
            try:
                with conn.cursor() as cur:
                    cur.execute(mig['sql'])
                    cur.execute('INSERT INTO public.schema_migrations (version, name, checksum, app_version, duration_ms)'
                                ' VALUES (%s, %s, %s, %s, %s)',
                                (mig['version'], mig['name'], mig['checksum'], version,
                                 round((time.monotonic() - start) * 1000)))
                conn.commit()
            except psycopg2.Error as exc:
                conn.rollback()
                raise AppError('migration %s failed and was rolled back: %s'
                               % (label, redact_text(str(exc).strip(), [url])), code=1)
            log('migrate', 'applied %s in %d ms' % (label, round((time.monotonic() - start) * 1000)))
        log('migrate', 'schema is now at %04d' % plan['pending'][-1]['version'])
        return 0
    finally:
        conn.close()  # also releases the session's advisory lock


# ---------------------------------------------------------------- healthcheck

def process_kind():
    """What PID 1 of this container runs: 'web', 'worker', 'scheduler' or other commands."""
    try:
        with open('/proc/1/cmdline', 'rb') as handle:
            argv = [a.decode(errors='replace') for a in handle.read().split(b'\0') if a]
    except OSError:
        return 'web'
    for arg in argv[1:]:
        if arg in LOOP_COMMANDS or arg == 'web':
            return arg
    return 'web'


def cmd_healthcheck(env):
    kind = process_kind()
    if kind in LOOP_COMMANDS:
        interval = env_number(env, 'WORKER_INTERVAL', 2.0, minimum=0.1)
        try:
            age = time.time() - os.stat(HEARTBEAT_FILE).st_mtime
        except OSError:
            print('no heartbeat yet')
            return 1
        limit = env_number(env, 'HEARTBEAT_MAX_AGE', max(3 * interval, 10.0), minimum=0.1)
        print('last heartbeat %.1fs ago (limit %ss)' % (age, limit))
        return 0 if age <= limit else 1
    port = env.get('PORT') or '8000'
    path = env.get('HEALTHCHECK_PATH') or '/api/health?quick=true'
    try:
        with urllib.request.urlopen('http://127.0.0.1:%s%s' % (port, path), timeout=3) as resp:
            print(resp.status, resp.read(300).decode(errors='replace').strip())
            return 0 if resp.status == 200 else 1
    except urllib.error.HTTPError as exc:
        print(exc.code, exc.read(300).decode(errors='replace').strip())
    except OSError as exc:
        print('no answer on port %s: %s' % (port, exc))
    return 1


COMMANDS = {
    'web': cmd_web,
    'worker': lambda env: cmd_loop(env, 'worker'),
    'scheduler': lambda env: cmd_loop(env, 'scheduler'),
    'migrate': cmd_migrate,
    'migrate-status': cmd_migrate_status,
    'healthcheck': cmd_healthcheck,
    'version': lambda env: print(build_info()['version']) or 0,
}


def main(argv=None, env=None):
    argv = sys.argv[1:] if argv is None else argv
    env = os.environ if env is None else env
    command = argv[0] if argv else 'web'
    if command not in COMMANDS:
        sys.stderr.write('usage: shipyard_app.py [%s]\n' % '|'.join(COMMANDS))
        return 2
    try:
        return COMMANDS[command](env)
    except AppError as exc:
        log(command, 'ERROR: %s' % exc)
        return exc.code


if __name__ == '__main__':
    sys.exit(main())

"""The reference app's images (shipyard-test/app:*) against real PostgreSQL, PgBouncer and Redis.

The servers run on loopback of this machine (pgservers.py, servers.py); the app
runs in containers of the local Docker engine with --network host, so its
127.0.0.1 is ours. Every container runs hardened the way the app role will run
it: read-only root, tmpfs /tmp, all capabilities dropped, no-new-privileges,
the image's non-root user. Each test gets its own database.

The images come from `scripts/testbed app-images` (or `images`); a missing one
fails the test with that command.
"""

import importlib.util
import json
import os
import subprocess
import time
import urllib.error
import urllib.request
import uuid

import pytest

from pgservers import free_port
from servers import docker

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IMAGES = {tag: 'shipyard-test/app:%s' % tag for tag in ('v1', 'v2', 'broken', 'bad-migration')}
HARDENED = ['--network', 'host', '--read-only', '--tmpfs', '/tmp', '--cap-drop', 'ALL',
            '--security-opt', 'no-new-privileges']

_spec = importlib.util.spec_from_file_location('shipyard_app', os.path.join(ROOT, 'tests', 'app', 'shipyard_app.py'))
shipyard_app = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(shipyard_app)


@pytest.fixture(scope='module', autouse=True)
def app_images():
    missing = [image for image in IMAGES.values() if not docker('images', '-q', image)]
    if missing:
        pytest.fail('missing images %s: run scripts/testbed app-images' % ', '.join(missing), pytrace=False)


@pytest.fixture(scope='module')
def stack(pg_module_factory, redis_with_password):
    pg = pg_module_factory.postgres(name='pg-app', max_connections=40)
    bouncer = pg_module_factory.pgbouncer(pg, name='pgb-app', pool_mode='transaction')
    return dict(pg=pg, bouncer=bouncer, redis=redis_with_password)


@pytest.fixture
def env(stack):
    """The app's environment for a fresh database of its own."""
    pg, bouncer, redis = stack['pg'], stack['bouncer'], stack['redis']
    database = 'app_%s' % uuid.uuid4().hex[:10]
    pg.sql('CREATE DATABASE %s OWNER %s' % (database, pg.app_user), database='postgres')
    return {
        'DATABASE_URL': pg.url(database=database, port=bouncer.port),
        'DIRECT_URL': pg.url(database=database),
        'REDIS_URL': 'redis://:%s@127.0.0.1:%d/0' % (redis.password, redis.port),
        '_database': database,
    }


class Apps:
    """Runs app containers; removes them at teardown."""

    def __init__(self):
        self.names = []

    @staticmethod
    def _env_args(env):
        args = []
        for key, value in env.items():
            if not key.startswith('_'):
                args += ['-e', '%s=%s' % (key, value)]
        return args

    def run(self, tag, *command, env=None, timeout=60):
        """A one-off container (docker run --rm): (exit code, output)."""
        argv = ['docker', 'run', '--rm', '--name', 'shipyard-app-%s' % uuid.uuid4().hex[:8]] + HARDENED \
            + self._env_args(env or {}) + [IMAGES[tag]] + list(command)
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout, check=False)
        return proc.returncode, proc.stdout.decode(errors='replace')

    def start(self, tag, *command, env=None, options=()):
        """A detached container; returns its name."""
        name = 'shipyard-app-%s' % uuid.uuid4().hex[:8]
        argv = HARDENED + list(options) + self._env_args(env or {}) + [IMAGES[tag]] + list(command)
        docker('run', '-d', '--name', name, *argv)
        self.names.append(name)
        return name

    def cleanup(self):
        for name in self.names:
            docker('rm', '-f', name, check=False)


@pytest.fixture
def apps():
    box = Apps()
    yield box
    box.cleanup()


def state(name):
    return json.loads(docker('inspect', name))[0]['State']


def wait_health(name, wanted, timeout=30):
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        current = state(name).get('Health', {}).get('Status')
        if not seen or seen[-1] != current:
            seen.append(current)
        if current == wanted:
            return seen
        time.sleep(0.25)
    raise AssertionError('%s never became %s (seen %s); logs:\n%s' % (name, wanted, seen, docker('logs', name)))


def get(port, path, timeout=10):
    """(status, decoded JSON or text) of GET http://127.0.0.1:port/path."""
    try:
        with urllib.request.urlopen('http://127.0.0.1:%d%s' % (port, path), timeout=timeout) as resp:
            status, data, ctype = resp.status, resp.read(), resp.headers.get('Content-Type', '')
    except urllib.error.HTTPError as exc:
        status, data, ctype = exc.code, exc.read(), exc.headers.get('Content-Type', '')
    return status, json.loads(data) if ctype.startswith('application/json') else data.decode()


def wait_listening(port, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return get(port, '/api/health?quick=true', timeout=2)
        except OSError:
            time.sleep(0.1)
    raise AssertionError('nothing answered on port %d' % port)


def web(apps, tag, env, **extra):
    port = free_port()
    name = apps.start(tag, 'web', env=dict(env, PORT=str(port), **extra),
                      options=['--health-interval', '1s', '--health-start-period', '1s'])
    wait_listening(port)
    return name, port


def applied(pg, database):
    return [row[0] for row in pg.sql('SELECT version FROM schema_migrations ORDER BY version', database=database)]


# ---------------------------------------------------------------- migrations

def test_migrate_status_then_migrate_then_up_to_date(stack, env, apps):
    rc, out = apps.run('v1', 'migrate-status', env=env)
    assert rc == 1, out
    assert 'pending  0001_create_items' in out and 'pending  0002_worker_heartbeat' in out
    rc, out = apps.run('v1', 'migrate', env=env)
    assert rc == 0, out
    assert 'applied 0001_create_items' in out and 'schema is now at 0002' in out
    assert applied(stack['pg'], env['_database']) == [1, 2]
    rc, out = apps.run('v1', 'migrate-status', env=env)
    assert rc == 0 and 'schema: current (0 pending)' in out, out
    rc, out = apps.run('v1', 'migrate', env=env)
    assert rc == 0 and 'schema is up to date' in out, out
    # The app's ledger records each migration with its checksum and the app version.
    rows = stack['pg'].sql('SELECT version, app_version, length(checksum) FROM schema_migrations ORDER BY 1',
                           database=env['_database'])
    assert rows == [(1, '1.0.0', 64), (2, '1.0.0', 64)]


def test_v2_migration_is_backward_compatible_with_v1(stack, env, apps):
    assert apps.run('v1', 'migrate', env=env)[0] == 0
    rc, out = apps.run('v2', 'migrate-status', env=env)
    assert rc == 1 and 'pending  0003_items_note' in out, out
    rc, out = apps.run('v2', 'migrate', env=env)
    assert rc == 0, out
    assert applied(stack['pg'], env['_database']) == [1, 2, 3]
    # v1 on v2's schema (a rollback): up to date as far as it knows, and says the database is ahead.
    rc, out = apps.run('v1', 'migrate-status', env=env)
    assert rc == 0 and 'ahead of this build' in out and 'schema: ahead' in out, out
    _name, port = web(apps, 'v1', env)
    status, body = get(port, '/api/version')
    assert status == 200 and body['version'] == '1.0.0'
    assert body['schema_version'] == 3 and body['expected_schema_version'] == 2 and body['schema'] == 'ahead'
    assert get(port, '/api/health')[0] == 200


def test_bad_migration_fails_non_zero_and_rolls_back(stack, env, apps):
    assert apps.run('v2', 'migrate', env=env)[0] == 0
    rc, out = apps.run('bad-migration', 'migrate', env=env)
    assert rc == 1, out
    assert 'migration 0004_bad_migration failed and was rolled back' in out and 'no_such_table' in out
    assert env['DIRECT_URL'].split(':')[2].split('@')[0] not in out  # the password never shows
    assert applied(stack['pg'], env['_database']) == [1, 2, 3]
    columns = stack['pg'].sql("SELECT column_name FROM information_schema.columns WHERE table_name = 'items'",
                              database=env['_database'])
    assert ('priority',) not in columns  # the first statement of 0004 was rolled back with the second
    rc, out = apps.run('bad-migration', 'migrate-status', env=env)
    assert rc == 1 and 'pending  0004_bad_migration' in out, out


def test_migrate_waits_for_the_lock_then_gives_up(stack, env, apps):
    key = shipyard_app.lock_key(shipyard_app.DEFAULT_LOCK_NAME)
    with stack['pg'].connect(user='app', database=env['_database']) as holder:
        holder.execute('SELECT pg_advisory_lock(%s)', (key,))
        rc, out = apps.run('v1', 'migrate', env=dict(env, MIGRATE_LOCK_TIMEOUT='2'))
        holder_pid = holder.info.backend_pid
    assert rc == 3, out
    assert 'waiting for the migration lock (held by pid %d)' % holder_pid in out
    assert 'could not take the migration lock within 2' in out
    assert apps.run('v1', 'migrate', env=env)[0] == 0  # released with the holder's session


def test_migrate_needs_a_direct_url_and_a_reachable_server(env, apps):
    rc, out = apps.run('v1', 'migrate', env={'DATABASE_URL': env['DATABASE_URL']})
    assert rc == 2 and 'DIRECT_URL is not set' in out, out
    bad = env['DIRECT_URL'].replace('@127.0.0.1:', '@127.0.0.1:1')  # a port nobody listens on (:1xxxx)
    rc, out = apps.run('v1', 'migrate', env=dict(env, DIRECT_URL=bad))
    assert rc == 2 and 'cannot connect to postgresql://app:***@' in out, out


# ---------------------------------------------------------------- web

def test_web_health_version_and_page(stack, env, apps):
    assert apps.run('v1', 'migrate', env=env)[0] == 0
    name, port = web(apps, 'v1', env)
    assert wait_health(name, 'healthy')[-1] == 'healthy'
    status, body = get(port, '/api/health')
    assert status == 200, body
    assert body['status'] == 'ok' and body['version'] == '1.0.0' and body['quick'] is False
    assert body['checks']['database']['status'] == 'ok' and body['checks']['redis']['status'] == 'ok'
    status, body = get(port, '/api/health?quick=true')
    assert status == 200 and body['checks'] == {} and body['quick'] is True
    status, body = get(port, '/api/version')
    assert status == 200
    assert body['version'] == '1.0.0' and body['schema_version'] == 2 and body['schema'] == 'current'
    status, page = get(port, '/')
    assert status == 200 and '<b id="version">1.0.0</b>' in page
    assert get(port, '/nope')[0] == 404
    # It runs as the image's non-root user.
    assert docker('exec', name, 'python3', '-c', 'import os; print(os.getuid())') == '10001'


def test_web_health_reports_each_failing_dependency_without_secrets(stack, env, apps):
    bad_redis = 'redis://:wrong-%s@127.0.0.1:%d/0' % (uuid.uuid4().hex[:6], stack['redis'].port)
    bad_db = env['DATABASE_URL'].replace(stack['pg'].app_password, 'not-the-password')
    _name, port = web(apps, 'v1', dict(env, REDIS_URL=bad_redis, DATABASE_URL=bad_db))
    status, body = get(port, '/api/health')
    assert status == 503 and body['status'] == 'failing' and body['failed'] == ['database', 'redis'], body
    assert 'WRONGPASS' in body['checks']['redis']['error'] or 'invalid' in body['checks']['redis']['error']
    assert 'authentication failed' in body['checks']['database']['error']  # PgBouncer: SASL ...
    text = json.dumps(body)
    assert 'not-the-password' not in text and 'wrong-' not in text
    # The quick check does not depend on them: the process itself is fine.
    assert get(port, '/api/health?quick=true')[0] == 200


def test_web_pending_migrations_show_in_version(env, apps):
    _name, port = web(apps, 'v2', env)
    status, body = get(port, '/api/version')
    assert status == 200 and body['schema_version'] is None and body['schema'] == 'pending'


def test_broken_never_becomes_healthy(env, apps):
    name, port = web(apps, 'broken', env)
    seen = wait_health(name, 'unhealthy', timeout=20)
    assert 'healthy' not in seen, seen
    status, body = get(port, '/api/health?quick=true')
    assert status == 503 and 'broken' in body['error'] and body['version'] == '2.1.0'
    assert get(port, '/api/health')[0] == 503
    log = state(name)['Health']['Log']
    assert log and all(entry['ExitCode'] == 1 for entry in log)
    assert '503' in log[-1]['Output']


def test_web_sigterm_finishes_requests_in_flight(env, apps):
    name, port = web(apps, 'v1', env)
    result = {}

    def slow():
        result['reply'] = get(port, '/api/slow?seconds=2')
    import threading  # pylint: disable=import-outside-toplevel
    client = threading.Thread(target=slow)
    client.start()
    time.sleep(0.5)
    start = time.monotonic()
    docker('stop', '-t', '20', name)
    took = time.monotonic() - start
    client.join(10)
    assert result['reply'][0] == 200 and result['reply'][1]['slept'] == 2.0
    assert state(name)['ExitCode'] == 0
    assert took < 10, 'docker stop took %.1fs: SIGTERM was not handled' % took
    logs = docker('logs', name)
    assert 'stopped accepting; 1 request(s) in flight' in logs and 'all requests finished' in logs


def test_two_ports_from_one_container(env, apps):
    port, front = free_port(), free_port()
    apps.start('v1', 'web', env=dict(env, PORT=str(port), FRONTEND_PORT=str(front)))
    wait_listening(port)
    assert get(front, '/')[0] == 200 and get(port, '/api/health?quick=true')[0] == 200


# ---------------------------------------------------------------- worker

def test_worker_beats_and_stops_cleanly_on_sigterm(stack, env, apps):
    assert apps.run('v1', 'migrate', env=env)[0] == 0
    name = apps.start('v1', 'worker', env=dict(env, WORKER_INTERVAL='0.5', WORKER_NAME='w1'),
                      options=['--health-interval', '1s', '--health-start-period', '1s'])
    wait_health(name, 'healthy', timeout=20)
    deadline = time.monotonic() + 15
    beats = 0
    while time.monotonic() < deadline and beats < 3:
        rows = stack['pg'].sql("SELECT beats FROM worker_heartbeat WHERE worker = 'w1'", database=env['_database'])
        beats = rows[0][0] if rows else 0
        time.sleep(0.2)
    assert beats >= 3
    assert int(stack['redis'].command('GET', 'shipyard:worker:w1:beats')) >= 3
    start = time.monotonic()
    docker('stop', '-t', '20', name)
    assert time.monotonic() - start < 5
    assert state(name)['ExitCode'] == 0
    assert 'stopping cleanly' in docker('logs', name)


def test_worker_without_its_database_turns_unhealthy(env, apps):
    bad = dict(env, DATABASE_URL=env['DATABASE_URL'].rsplit('/', 1)[0] + '/no_such_db', WORKER_INTERVAL='0.5',
               HEARTBEAT_MAX_AGE='2')
    # Heartbeats fail; the Docker health check sees no fresh heartbeat.
    name = apps.start('v1', 'worker', env=bad, options=['--health-interval', '1s', '--health-start-period', '1s',
                                                        '--health-retries', '2'])
    seen = wait_health(name, 'unhealthy', timeout=20)
    assert 'healthy' not in seen
    assert 'heartbeat failed' in docker('logs', name)

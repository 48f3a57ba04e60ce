"""health_poll against real PostgreSQL servers on loopback (see pgservers.py)."""

import os
import subprocess
import time

import pytest

from modrun import finish_module, run_module, run_module_without, start_module

FAST = dict(interval=0.1, check_timeout=3)
NO_DRIVER = ['psycopg', 'psycopg2']


def states(check):
    return [entry['state'] for entry in check['history']]


def pg_check(pg, **options):
    base = dict(host=pg.host, port=pg.port, database=pg.database, user=pg.app_user, password=pg.app_password)
    base.update(options)
    return dict(checks=[{'name': 'db', 'postgres': base}], **FAST)


def pg_isready(pg, database=None, user=None):
    binary = os.path.join(pg.bindir, 'pg_isready')
    return subprocess.run([binary, '-h', pg.host, '-p', str(pg.port), '-d', database or pg.database,
                           '-U', user or pg.app_user], stdout=subprocess.PIPE, check=False, timeout=30).returncode


def log_count(pg, text):
    """How many times the server log mentions text (rejected logins are logged as FATAL lines)."""
    with open(pg.logfile, errors='replace') as handle:
        return handle.read().count(text)


def wait_for(condition, timeout=30, what='condition'):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, 'timed out waiting for %s' % what
        time.sleep(0.05)


@pytest.fixture(scope='module')
def pg_restartable(pg_module_factory):
    """A server of our own: the tests below stop, restart and reconfigure it."""
    return pg_module_factory.postgres(name='pg-hp-own', max_connections=5)


def test_accepting_with_role_and_unix_socket(pg_server):
    result = run_module('health_poll', dict(pg_check(pg_server, role='primary'), timeout=5), check_mode=True)
    assert result.get('failed') is not True, result['msg']
    check = result['checks'][0]
    assert check['state'] == 'accepting' and check['details']['role'] == 'primary'
    assert result['changed'] is False
    assert pg_server.app_password not in result['_stdout']
    socket_dir = run_module('health_poll', dict(pg_check(pg_server, host=pg_server.sockdir), timeout=5))
    assert socket_dir.get('failed') is not True, socket_dir['msg']
    replica = run_module('health_poll', dict(pg_check(pg_server, role='replica'), timeout=0.3))
    assert replica['checks'][0]['state'] == 'wrong_role'
    assert 'server is a primary (expected replica)' in replica['msg']


def test_wrong_password_is_auth_failed_although_pg_isready_says_ok(pg_server):
    assert pg_isready(pg_server) == 0  # the very reason this module exists
    wrong = 'definitely-wrong-password'
    result = run_module('health_poll', dict(pg_check(pg_server, password=wrong), timeout=30))
    assert result['failed'] is True
    check = result['checks'][0]
    assert check['state'] == 'auth_failed'
    assert result['elapsed'] < 10  # fail_fast
    assert 'password authentication failed for user "app"' in check['last_error']
    assert 'the server rejected the password' in result['msg']
    assert wrong not in result['_stdout']
    # The password inside a URL is masked too, and explicit options override URL parts.
    url_result = run_module('health_poll', dict(checks=[{'postgres': {'url': pg_server.url().replace(
        pg_server.app_password, wrong)}}], timeout=0.3, fail_fast=False, **FAST))
    assert url_result['checks'][0]['state'] == 'auth_failed'
    assert url_result['checks'][0]['attempts'] >= 2  # fail_fast off: retried until the timeout
    assert wrong not in url_result['_stdout']
    assert ':********@' in url_result['checks'][0]['target'] or wrong not in url_result['checks'][0]['target']


def test_missing_database(pg_server):
    assert pg_isready(pg_server, database='nosuchdb') == 0
    result = run_module('health_poll', dict(pg_check(pg_server, database='nosuchdb'), timeout=30))
    check = result['checks'][0]
    assert result['failed'] is True and check['state'] == 'database_missing'
    assert 'database "nosuchdb" does not exist' in check['last_error']
    assert 'the database does not exist' in result['msg']


def test_max_connections_exhausted(pg_restartable):
    pg = pg_restartable
    # max_connections=5 with 3 reserved for superusers: 2 slots for the app user, both taken.
    held = [pg.connect(user='app') for dummy in range(2)]
    try:
        result = run_module('health_poll', dict(pg_check(pg), timeout=0.5))
        check = result['checks'][0]
        assert result['failed'] is True
        assert check['state'] == 'too_many_clients'
        assert 'max_connections is exhausted' in result['msg']
        before = log_count(pg, 'remaining connection slots are reserved')
        proc, path = start_module('health_poll', dict(pg_check(pg), timeout=30))
        wait_for(lambda: log_count(pg, 'remaining connection slots are reserved') > before, what='a refused login')
        held.pop().close()
        freed = finish_module(proc, path)
    finally:
        for conn in held:
            conn.close()
    assert freed.get('failed') is not True, freed['msg']
    assert states(freed['checks'][0]) == ['too_many_clients', 'accepting']


def test_starting_up_then_ready(pg_restartable):
    pg = pg_restartable
    pg.start_standby(hot_standby=False)
    try:
        deadline = time.monotonic() + 20
        while pg_isready(pg) != 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert pg_isready(pg) == 1, 'pg_isready should say "rejecting connections"'
        rejecting = run_module('health_poll', dict(pg_check(pg), timeout=0.3))
        check = rejecting['checks'][0]
        assert check['state'] == 'rejecting'
        assert 'not accepting connections' in check['last_error'] or 'starting up' in check['last_error']
        assert 'starting up, shutting down or in recovery' in rejecting['msg']
        before = log_count(pg, 'not accepting connections')
        proc, path = start_module('health_poll', dict(pg_check(pg, role='primary'), timeout=30))
        wait_for(lambda: log_count(pg, 'not accepting connections') > before, what='a rejected login')
    finally:
        pg.promote()
    ready = finish_module(proc, path)
    assert ready.get('failed') is not True, ready['msg']
    assert states(ready['checks'][0]) == ['rejecting', 'accepting']
    assert ready['checks'][0]['details']['role'] == 'primary'


def test_down_then_up_and_replica_role(pg_restartable):
    pg = pg_restartable
    pg.stop()
    down = run_module('health_poll', dict(pg_check(pg), timeout=0.3))
    assert down['checks'][0]['state'] == 'no_response'
    assert 'nothing answers at that address' in down['msg']
    pg.start_standby(hot_standby=True)
    try:
        replica = run_module('health_poll', dict(pg_check(pg, role='replica'), timeout=20))
        assert replica.get('failed') is not True, replica['msg']
        assert replica['checks'][0]['details']['role'] == 'replica'
        assert states(replica['checks'][0])[-1] == 'accepting'
    finally:
        pg.promote()


def test_without_driver_falls_back_to_psql(pg_server):
    ok = run_module_without('health_poll', dict(pg_check(pg_server, role='primary'), timeout=5), NO_DRIVER)
    assert ok.get('failed') is not True, ok['msg']
    assert ok['checks'][0]['details']['client'] == 'psql' and ok['checks'][0]['state'] == 'accepting'
    wrong = run_module_without('health_poll', dict(pg_check(pg_server, password='wrong-password-xyz'), timeout=5),
                               NO_DRIVER)
    assert wrong['checks'][0]['state'] == 'auth_failed'
    assert 'wrong-password-xyz' not in wrong['_stdout']
    missing = run_module_without('health_poll', dict(pg_check(pg_server, database='nosuchdb'), timeout=5), NO_DRIVER)
    assert missing['checks'][0]['state'] == 'database_missing'


def test_without_driver_or_psql_fails_with_missing_required_lib(pg_server, tmp_path):
    result = run_module_without('health_poll', dict(pg_check(pg_server), timeout=5), NO_DRIVER,
                                env={'PATH': str(tmp_path)})
    assert result['failed'] is True
    assert 'Failed to import the required Python library (psycopg (3) or psycopg2)' in result['msg']
    assert pg_server.app_password not in result['_stdout']


def test_psycopg2_driver(pg_server):
    result = run_module_without('health_poll', dict(pg_check(pg_server), timeout=5), ['psycopg'])
    assert result.get('failed') is not True, result['msg']
    wrong = run_module_without('health_poll', dict(pg_check(pg_server, password='nope-nope-nope'), timeout=5),
                               ['psycopg'])
    assert wrong['checks'][0]['state'] == 'auth_failed'

"""health_poll against a real PgBouncer (admin console) in front of a real PostgreSQL."""

import os
import sys
import tempfile
import time

import pytest

from modrun import finish_module, run_module, run_module_without, start_module

FAST = dict(interval=0.1, check_timeout=3)


def states(check):
    return [entry['state'] for entry in check['history']]


@pytest.fixture(scope='module')
def pgb(pg_module_factory, pg_server):
    """Our own PgBouncer (the tests PAUSE it) in front of the shared server."""
    return pg_module_factory.pgbouncer(pg_server, name='pgb-hp')


def global_pause_state(pgb):
    """What a global PAUSE looks like: SHOW STATE says it from 1.21; before, only a query through a pool shows it."""
    dummy, rows = pgb.admin('SHOW VERSION')
    version = tuple(int(x) for x in rows[0][0].split()[1].split('.')[:2])
    return 'paused' if version >= (1, 21) else 'pool_waiting'


def waiting_clients(pgb):
    """Client ports of the connections PgBouncer holds waiting for a server."""
    columns, rows = pgb.admin('SHOW CLIENTS')
    return [client['port'] for client in (dict(zip(columns, row)) for row in rows) if client['state'] == 'waiting']


def wait_for(condition, timeout=30, what='condition'):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, 'timed out waiting for %s' % what
        time.sleep(0.02)


def pgb_check(pgb, **options):
    base = dict(host=pgb.host, port=pgb.port, user=pgb.admin_user, password=pgb.admin_password)
    base.update(options)
    return dict(checks=[{'name': 'pooler', 'pgbouncer': base}], **FAST)


def pool_options(pgb, **extra):
    options = dict(pool=pgb.pg.database, pool_user=pgb.pg.app_user, pool_password=pgb.pg.app_password)
    options.update(extra)
    return options


def test_active_with_pool_query(pgb):
    result = run_module('health_poll', dict(pgb_check(pgb, **pool_options(pgb)), timeout=5), check_mode=True)
    assert result.get('failed') is not True, result['msg']
    check = result['checks'][0]
    assert check['state'] == 'active' and result['changed'] is False
    # PgBouncer 1.18 has no SHOW STATE: the SHOW DATABASES fallback is what ran.
    assert check['details']['source'] in ('SHOW DATABASES', 'SHOW STATE + SHOW DATABASES')
    assert check['details']['pool'] == pgb.pg.database
    for secret in (pgb.admin_password, pgb.pg.app_password):
        assert secret not in result['_stdout']


def test_paused_then_resumed(pgb):
    expected = global_pause_state(pgb)
    pgb.admin('PAUSE')
    try:
        paused = run_module('health_poll', dict(pgb_check(pgb, **pool_options(pgb)), timeout=0.3))
        check = paused['checks'][0]
        assert paused['failed'] is True and check['state'] == expected
        if expected == 'pool_waiting':
            assert 'PgBouncer is paused or suspended' in check['last_error']
        # PgBouncer may keep listing clients that gave up while it was paused: count only new ones.
        old_clients = set(waiting_clients(pgb))
        proc, path = start_module('health_poll', dict(pgb_check(pgb, **pool_options(pgb)), timeout=30,
                                                      interval=0.1, check_timeout=1))
        seen = set()

        def second_attempt_started():
            seen.update(set(waiting_clients(pgb)) - old_clients)
            return len(seen) >= 2  # so the first attempt has given up and reported pool_waiting
        wait_for(second_attempt_started, what='a second attempt')
    finally:
        pgb.admin('RESUME')
    resumed = finish_module(proc, path)
    assert resumed.get('failed') is not True, resumed['msg']
    assert states(resumed['checks'][0]) == [expected, 'active']


def test_one_paused_database_and_disabled(pgb):
    pgb.admin('PAUSE %s' % pgb.pg.database)
    try:
        result = run_module('health_poll', dict(pgb_check(pgb, pool=pgb.pg.database), timeout=0.3))
        assert result['checks'][0]['state'] == 'paused'
    finally:
        pgb.admin('RESUME %s' % pgb.pg.database)
    pgb.admin('DISABLE %s' % pgb.pg.database)
    try:
        result = run_module('health_poll', dict(pgb_check(pgb), timeout=0.3))
        assert result['checks'][0]['state'] == 'disabled'
    finally:
        pgb.admin('ENABLE %s' % pgb.pg.database)


def test_wrong_passwords_and_missing_pool(pgb):
    admin = run_module('health_poll', dict(pgb_check(pgb, password='bad-admin-password'), timeout=10))
    assert admin['checks'][0]['state'] == 'auth_failed' and admin['elapsed'] < 5
    assert 'bad-admin-password' not in admin['_stdout']
    pool = run_module('health_poll', dict(pgb_check(pgb, **pool_options(pgb, pool_password='bad-pool-password')),
                                          timeout=10))
    assert pool['checks'][0]['state'] == 'auth_failed'
    assert 'bad-pool-password' not in pool['_stdout'] and pgb.admin_password not in pool['_stdout']
    missing = run_module('health_poll', dict(pgb_check(pgb, pool='nosuchpool'), timeout=0.3))
    assert missing['checks'][0]['state'] == 'pool_missing'


def test_psycopg2_driver_and_no_driver(pgb):
    ok = run_module_without('health_poll', dict(pgb_check(pgb, **pool_options(pgb)), timeout=5), ['psycopg'])
    assert ok.get('failed') is not True, ok['msg']
    pgb.admin('PAUSE %s' % pgb.pg.database)
    try:
        paused = run_module_without('health_poll', dict(pgb_check(pgb), timeout=0.3), ['psycopg'])
    finally:
        pgb.admin('RESUME %s' % pgb.pg.database)
    assert paused['checks'][0]['state'] == 'paused'
    none = run_module_without('health_poll', dict(pgb_check(pgb), timeout=1), ['psycopg', 'psycopg2'])
    assert none['failed'] is True
    assert 'Failed to import the required Python library (psycopg (3) or psycopg2)' in none['msg']


def test_pg_simple_query_really_uses_the_simple_protocol(pgb):
    """_pg.pg_simple_query() must send 'Query' messages, never Parse/Bind (the admin console refuses those)."""
    import psycopg
    from modrun import COLLECTIONS
    if COLLECTIONS not in sys.path:
        sys.path.insert(0, COLLECTIONS)
    from ansible_collections.shipyard.webstack.plugins.module_utils import _pg
    conn = _pg.pg_connect(dict(host=pgb.host, port=pgb.port, user=pgb.admin_user, password=pgb.admin_password,
                               database='pgbouncer'), application_name=None)
    fd, path = tempfile.mkstemp(prefix='pgtrace-')
    try:
        conn.pgconn.trace(fd)
        columns, rows = _pg.pg_simple_query(conn, 'SHOW DATABASES')
        conn.pgconn.untrace()
        with open(path) as handle:
            trace = handle.read()
    finally:
        os.close(fd)
        os.unlink(path)
        conn.close()
    assert 'paused' in columns and rows
    assert '\tQuery\t' in trace and 'SHOW DATABASES' in trace, trace
    assert '\tParse\t' not in trace and '\tBind\t' not in trace, trace
    assert isinstance(conn, psycopg.Connection)

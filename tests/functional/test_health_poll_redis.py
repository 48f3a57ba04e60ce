"""health_poll against a real redis-server on loopback."""

import os
import time

from modrun import finish_module, run_module, start_module

FAST = dict(interval=0.1, check_timeout=2)


def states(check):
    return [entry['state'] for entry in check['history']]


def redis_check(server, **extra):
    options = dict(host=server.host, port=server.port)
    options.update(extra)
    return dict(checks=[{'name': 'cache', 'redis': options}], **FAST)


def test_requirepass_noauth_wrongpass_and_ok(redis_with_password):
    server = redis_with_password
    noauth = run_module('health_poll', dict(redis_check(server), timeout=30))
    assert noauth['failed'] is True
    assert noauth['checks'][0]['state'] == 'NOAUTH'
    assert noauth['elapsed'] < 5  # fail_fast: a missing password does not appear by waiting
    assert 'redis requires a password and none was given' in noauth['msg']

    wrong = run_module('health_poll', dict(redis_check(server, password='not-the-password'), timeout=30))
    assert wrong['checks'][0]['state'] == 'WRONGPASS'
    assert 'not-the-password' not in wrong['_stdout']

    good = run_module('health_poll', dict(redis_check(server, password=server.password), timeout=3))
    assert good.get('failed') is not True, good['msg']
    assert good['checks'][0]['state'] == 'ok'
    assert server.password not in good['_stdout']


def test_acl_user_without_ping_permission_is_noperm(redis_with_password):
    server = redis_with_password
    user_password = 'acl-user-password-123'
    assert server.command('ACL', 'SETUSER', 'prober', 'on', '>' + user_password, '-@all', '+auth') == '+OK'
    denied = run_module('health_poll', dict(redis_check(server, username='prober', password=user_password), timeout=3))
    assert denied['checks'][0]['state'] == 'NOPERM'
    assert user_password not in denied['_stdout']
    assert server.command('ACL', 'SETUSER', 'prober', '+ping', '+info') == '+OK'
    allowed = run_module('health_poll', dict(redis_check(server, username='prober', password=user_password,
                                                         persistence=True, role='master'), timeout=3))
    assert allowed.get('failed') is not True, allowed['msg']
    assert allowed['checks'][0]['details']['role'] == 'master'
    wrong_role = run_module('health_poll', dict(redis_check(server, username='prober', password=user_password,
                                                            role='replica'), timeout=0.3))
    assert wrong_role['checks'][0]['state'] == 'wrong_role'


def ping_attempts(server):
    """PINGs the server has seen, answered or refused (INFO commandstats): shows a module has probed."""
    line = server.info('commandstats').get('cmdstat_ping', '')
    fields = dict(part.split('=') for part in line.split(',') if '=' in part)
    return int(fields.get('calls', 0)) + int(fields.get('rejected_calls', 0))


def wait_for(condition, timeout=30, what='condition'):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, 'timed out waiting for %s' % what
        time.sleep(0.05)


def test_loading_a_large_dataset(redis_factory):
    # A real dataset (1 M keys, ~30 MB RDB) that the restarted server really loads. key-load-delay, a
    # redis test setting, stretches the load to a few seconds so the test does not race the machine's
    # load (Python start-up of the modules included).
    server = redis_factory(name='redis-loading')
    assert server.command('DEBUG', 'POPULATE', '1000000', 'key', '20') == '+OK'
    assert server.command('SAVE') == '+OK'
    server.stop()
    # Answer clients every 1 KiB loaded (default 2 MiB), or the slowed load would delay replies past timeouts.
    server.args += ['--key-load-delay', '-25', '--loading-process-events-interval-bytes', '1024']
    server.start(wait=False)
    first = server.wait_listening()
    assert first.startswith('-LOADING'), first
    short = start_module('health_poll', dict(redis_check(server, persistence=True), timeout=1))
    patient = start_module('health_poll', dict(redis_check(server, persistence=True), timeout=60))
    short, patient = finish_module(*short), finish_module(*patient)

    assert short['failed'] is True
    assert short['checks'][0]['state'] == 'LOADING'
    assert "check 'cache' (redis 127.0.0.1:%s) stuck in state 'LOADING'" % server.port in short['msg']
    assert 'loading its dataset' in short['msg']

    assert patient.get('failed') is not True, patient['msg']
    assert states(patient['checks'][0]) == ['LOADING', 'ok']
    assert patient['checks'][0]['details']['loading'] == '0'
    assert server.info('keyspace')['db0'].startswith('keys=1000000')


def test_misconf_when_bgsave_cannot_write(redis_factory):
    # MISCONF needs a save point configured (redis only refuses writes when it is meant to persist).
    server = redis_factory(name='redis-misconf', args=['--save', '3600 1', '--stop-writes-on-bgsave-error', 'yes'])
    assert server.command('SET', 'k', 'v') == '+OK'
    os.chmod(server.basedir, 0o555)  # the server (user redis) can no longer create its temp RDB file
    try:
        assert server.command('BGSAVE').startswith('+')
        server.wait_info('rdb_bgsave_in_progress', '0')
        assert server.info()['rdb_last_bgsave_status'] == 'err'
        broken = run_module('health_poll', dict(redis_check(server), timeout=0.3))
        assert broken['failed'] is True
        assert broken['checks'][0]['state'] == 'MISCONF'
        assert 'cannot persist to disk' in broken['msg']
        # A patient poll, seen probing (and refused) before the disk is fixed.
        before = ping_attempts(server)
        proc, path = start_module('health_poll', dict(redis_check(server, persistence=True), timeout=30))
        wait_for(lambda: ping_attempts(server) > before, what='the module to probe')
    finally:
        os.chmod(server.basedir, 0o755)
    # Disk writable again: the next BGSAVE succeeds and redis accepts writes (and PING) again.
    assert server.command('BGSAVE').startswith('+')
    healed = finish_module(proc, path)
    assert healed.get('failed') is not True, healed['msg']
    assert states(healed['checks'][0]) == ['MISCONF', 'ok']
    assert healed['checks'][0]['details']['rdb_last_bgsave_status'] == 'ok'


def test_persistence_check_sees_failed_bgsave_without_stop_writes(redis_factory):
    # With stop-writes-on-bgsave-error off, PING says PONG: only INFO shows the broken persistence.
    server = redis_factory(name='redis-persist', args=['--save', '3600 1', '--stop-writes-on-bgsave-error', 'no'])
    os.chmod(server.basedir, 0o555)
    try:
        server.command('BGSAVE')
        server.wait_info('rdb_bgsave_in_progress', '0')
        plain = run_module('health_poll', dict(redis_check(server), timeout=1))
        assert plain.get('failed') is not True
        strict = run_module('health_poll', dict(redis_check(server, persistence=True), timeout=0.3))
        assert strict['checks'][0]['state'] == 'rdb_bgsave_error'
        assert 'rdb_last_bgsave_status:err' in strict['msg']
    finally:
        os.chmod(server.basedir, 0o755)


def test_redis_over_tls(redis_factory, test_ca):
    server = redis_factory(name='redis-tls', tls=test_ca, password='tls-redis-password')
    ok = run_module('health_poll', dict(redis_check(server, tls=True, ca_path=test_ca['ca'], password=server.password),
                                        timeout=3))
    assert ok.get('failed') is not True, ok['msg']
    untrusted = run_module('health_poll', dict(redis_check(server, tls=True, password=server.password), timeout=10))
    assert untrusted['checks'][0]['state'] == 'tls_error'
    plain = run_module('health_poll', dict(redis_check(server, password=server.password), timeout=0.3))
    assert plain['failed'] is True and plain['checks'][0]['state'] in ('bad_response', 'reset')
    assert server.password not in plain['_stdout'] + ok['_stdout'] + untrusted['_stdout']


def test_login_refused_report_excuses_only_refused_logins(redis_with_password):
    server = redis_with_password
    wrong = dict(redis_check(server, password='a-rotated-password-not-set-yet'), timeout=30, login_refused='report')
    reported = run_module('health_poll', wrong)
    assert reported.get('failed') is not True and reported['ready'] is False
    assert reported['login_refused'] == ['cache'] and reported['checks'][0]['state'] == 'WRONGPASS'
    assert reported['msg'].startswith('login refused (reported, not failed)')
    assert 'a-rotated-password-not-set-yet' not in reported['_stdout']
    # A check failing for another reason (nothing listens there) still fails the module.
    closed = {'name': 'down', 'tcp': {'host': '127.0.0.1', 'port': 9}}
    mixed = run_module('health_poll', dict(wrong, checks=wrong['checks'] + [closed], timeout=1))
    assert mixed['failed'] is True and 'login_refused' not in mixed
    # The default still fails on a refused login.
    assert run_module('health_poll', dict(wrong, login_refused='fail'))['failed'] is True

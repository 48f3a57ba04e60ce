"""Unit tests of health_poll's pure parts: classifiers, RESP codec, backoff and the polling loop."""

import io
import os
import socket
import ssl
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS = os.path.join(ROOT, '.cache', 'collections')
if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)

from ansible_collections.shipyard.webstack.plugins.module_utils import _probes as P  # noqa: E402


# ------------------------------------------------------------------ backoff

def test_backoff_fixed_interval_without_factor():
    assert P.backoff_schedule(0.5, 1.0, 10, 4) == [0.5, 0.5, 0.5, 0.5]


def test_backoff_grows_then_caps():
    assert P.backoff_schedule(0.5, 2.0, 3.0, 6) == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]
    assert P.backoff_delay(1, 1.5, 100, 3) == pytest.approx(2.25)


def test_backoff_no_failures_and_huge_counts():
    assert P.backoff_delay(0.2, 3.0, 5.0, 0) == 0.2
    assert P.backoff_delay(0.2, 3.0, 5.0, 10 ** 6) == 5.0  # no overflow
    assert P.backoff_delay(2.0, 2.0, 1.0, 5) == 2.0  # a max below the interval never shortens it


# ------------------------------------------------------------------ HTTP

def test_classify_http_status():
    assert P.classify_http(200, 'x') == (True, 'ok', None)
    assert P.classify_http(204, '') == (True, 'ok', None)
    assert P.classify_http(503, 'x') == (False, 'bad_status', 'HTTP 503 (expected any 2xx)')
    assert P.classify_http(301, '', status_codes=[301, 302])[0] is True
    assert P.classify_http(200, '', status_codes=[204])[2] == 'HTTP 200 (expected 204)'


def test_classify_http_body_and_json():
    assert P.classify_http(200, 'status: ok', body_regex=r'ok$')[0] is True
    assert P.classify_http(200, 'status: down', body_regex=r'ok$')[1] == 'body_mismatch'
    body = '{"status": "ok", "checks": {"db": true, "list": [1, {"v": 2}]}, "n": 3}'
    assert P.classify_http(200, body, json_field='status', json_value='ok')[0] is True
    assert P.classify_http(200, body, json_field='checks.db', json_value=True)[0] is True
    assert P.classify_http(200, body, json_field='checks.db', json_value='true')[0] is True  # YAML string
    assert P.classify_http(200, body, json_field='n', json_value='3')[0] is True
    assert P.classify_http(200, body, json_field='checks.list.1.v', json_value=2)[0] is True
    assert P.classify_http(200, body, json_field='checks.db')[0] is True  # exists is enough
    assert P.classify_http(200, body, json_field='status', json_value='down')[2] == \
        'JSON field \'status\' is "ok" (expected "down")'
    assert P.classify_http(200, body, json_field='nope')[2] == "JSON field 'nope' is missing"
    assert P.classify_http(200, '<html>', json_field='status')[2] == "body is not JSON (needed field 'status')"


def test_http_target_from_url_and_parts():
    assert P.http_target({'url': 'https://u:p%40ss@example.com/h?x=1'}) == \
        ('https', 'example.com', 443, '/h?x=1', ('u', 'p@ss'))
    assert P.http_target({'url': 'http://127.0.0.1:8080'}) == ('http', '127.0.0.1', 8080, '/', None)
    assert P.http_target({'port': 9000, 'path': '/api/health', 'scheme': 'http'}) == \
        ('http', '127.0.0.1', 9000, '/api/health', None)
    with pytest.raises(ValueError):
        P.http_target({'url': 'ftp://x/'})


# ------------------------------------------------------------------ sockets

def test_classify_socket_error():
    assert P.classify_socket_error(ConnectionRefusedError(111, 'refused')) == 'refused'
    assert P.classify_socket_error(socket.timeout('timed out')) == 'timeout'
    assert P.classify_socket_error(socket.gaierror(-2, 'Name or service not known')) == 'unresolved'
    assert P.classify_socket_error(ConnectionResetError()) == 'reset'
    assert P.classify_socket_error(OSError(113, 'No route to host')) == 'unreachable'
    assert P.classify_socket_error(ssl.SSLCertVerificationError('bad cert')) == 'tls_error'
    assert P.classify_socket_error(ssl.SSLError('wrong version')) == 'tls_handshake_failed'
    assert P.classify_socket_error(FileNotFoundError()) == 'refused'
    assert P.classify_socket_error(OSError(13, 'Permission denied')) == 'permission_denied'
    assert P.classify_socket_error(ValueError('x')) == 'error'


# ------------------------------------------------------------------ Redis

def test_encode_command():
    assert P.encode_command('AUTH', 'user', 'pä') == b'*3\r\n$4\r\nAUTH\r\n$4\r\nuser\r\n$3\r\np\xc3\xa4\r\n'


@pytest.mark.parametrize('raw, expected', [
    (b'+PONG\r\n', 'PONG'),
    (b':42\r\n', 42),
    (b'$5\r\nhello\r\n', 'hello'),
    (b'$-1\r\n', None),
    (b'*2\r\n$1\r\na\r\n:1\r\n', ['a', 1]),
    (b'*-1\r\n', None),
])
def test_read_reply(raw, expected):
    assert P.read_reply(io.BytesIO(raw)) == expected


def test_read_reply_errors_and_garbage():
    reply = P.read_reply(io.BytesIO(b'-LOADING Redis is loading the dataset in memory\r\n'))
    assert isinstance(reply, P.RedisError) and str(reply).startswith('LOADING')
    for raw in (b'', b'+PONG', b'HTTP/1.1 400 Bad Request\r\n', b'$10\r\nshort\r\n'):
        with pytest.raises(P.RedisProtocolError):
            P.read_reply(io.BytesIO(raw))


@pytest.mark.parametrize('message, state', [
    ('LOADING Redis is loading the dataset in memory', 'LOADING'),
    ('BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.', 'BUSY'),
    ('MISCONF Redis is configured to save RDB snapshots, but it is currently not able to persist on disk.', 'MISCONF'),
    ('NOAUTH Authentication required.', 'NOAUTH'),
    ('WRONGPASS invalid username-password pair or user is disabled.', 'WRONGPASS'),
    ('NOPERM User prober has no permissions to run the \'ping\' command', 'NOPERM'),
    ('DENIED Redis is running in protected mode because protected mode is enabled', 'DENIED'),
    ('MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to \'no\'.', 'MASTERDOWN'),
    ('ERR invalid password', 'WRONGPASS'),
    ('ERR unknown command', 'error'),
    ('', 'error'),
])
def test_classify_redis_error(message, state):
    assert P.classify_redis_error(message) == state


def test_classify_redis_reply():
    assert P.classify_redis_reply('PONG') == (True, 'ok', None)
    assert P.classify_redis_reply(P.RedisError('NOAUTH Authentication required.'))[1] == 'NOAUTH'
    assert P.classify_redis_reply('hello')[1] == 'unexpected_reply'


def test_redis_info_problems():
    info = P.parse_redis_info('# Persistence\r\nloading:0\r\nrdb_last_bgsave_status:ok\r\naof_enabled:1\r\n'
                              'aof_last_write_status:ok\r\n# Replication\r\nrole:master\r\n')
    assert info['role'] == 'master' and info['loading'] == '0'
    assert P.redis_info_problems(info, persistence=True, role='master') == (None, None)
    assert P.redis_info_problems(dict(info, loading='1'), persistence=True)[0] == 'LOADING'
    assert P.redis_info_problems(dict(info, aof_last_write_status='err'), persistence=True) == \
        ('aof_write_error', 'aof_last_write_status:err')
    assert P.redis_info_problems(dict(info, rdb_last_bgsave_status='err'), persistence=True)[0] == 'rdb_bgsave_error'
    assert P.redis_info_problems(dict(info, rdb_last_bgsave_status='err')) == (None, None)  # not asked
    assert P.redis_info_problems(info, role='replica')[0] == 'wrong_role'
    replica = dict(info, role='slave', master_link_status='down')
    assert P.redis_info_problems(replica, role='replica') == ('replica_link_down', 'master_link_status:down')
    assert P.redis_info_problems(dict(replica, master_link_status='up'), role='replica') == (None, None)


# ------------------------------------------------------------------ Docker

def inspect(status='running', health=None, log=(), exit_code=0, oom=False, **state):
    data = {'State': dict(Status=status, Running=status == 'running', Paused=status == 'paused',
                          Restarting=status == 'restarting', ExitCode=exit_code, OOMKilled=oom, Error='', **state),
            'RestartCount': 0, 'Config': {'Image': 'app:1'}}
    if health:
        data['State']['Health'] = {'Status': health, 'Log': [
            {'ExitCode': code, 'Output': output, 'End': 't%d' % i} for i, (code, output) in enumerate(log)]}
    return data


def test_docker_running_without_and_with_healthcheck():
    assert P.classify_docker_inspect(inspect())[:2] == (True, 'running')
    assert P.classify_docker_inspect(inspect(), require_healthcheck=True)[:2] == (False, 'no_healthcheck')
    ok, state, error, details = P.classify_docker_inspect(inspect(health='healthy', log=[(0, 'fine')]))
    assert (ok, state, error) == (True, 'healthy', None)
    assert details['health_log'] == [{'exit_code': 0, 'end': 't0', 'output': 'fine'}]


def test_docker_starting_and_unhealthy_carry_the_health_log():
    ok, state, error, details = P.classify_docker_inspect(inspect(health='starting'))
    assert (ok, state, error) == (False, 'starting', 'health is starting')
    log = [(0, 'ok'), (1, 'db down\n'), (1, 'db down'), (1, 'connection refused')]
    ok, state, error, details = P.classify_docker_inspect(inspect(health='unhealthy', log=log))
    assert (ok, state) == (False, 'unhealthy')
    assert error == 'health is unhealthy (last check exit 1: connection refused)'
    assert [entry['output'] for entry in details['health_log']] == ['db down', 'db down', 'connection refused']


def test_docker_exited_oom_restarting_paused():
    ok, state, error, details = P.classify_docker_inspect(inspect('exited', exit_code=137, oom=True))
    assert (ok, state) == (False, 'exited') and details['oom_killed'] is True and details['exit_code'] == 137
    assert 'OOM-killed' in error
    assert 'killed by SIGKILL' in P.classify_docker_inspect(inspect('exited', exit_code=137))[2]
    assert P.classify_docker_inspect(inspect('exited', exit_code=3))[2] == 'container is exited (exit code 3)'
    assert P.classify_docker_inspect(inspect('restarting'))[1] == 'restarting'
    assert P.classify_docker_inspect(inspect('paused'))[1] == 'paused'
    assert P.classify_docker_inspect(inspect('created'))[1] == 'created'


def test_docker_socket_path():
    assert P.docker_socket_path(None) == '/var/run/docker.sock'
    assert P.docker_socket_path('unix:///run/user/1000/docker.sock') == '/run/user/1000/docker.sock'
    with pytest.raises(ValueError):
        P.docker_socket_path('tcp://user:secret@host:2376')


# ------------------------------------------------------------------ PostgreSQL / PgBouncer

def test_isready_exit_codes():
    assert [P.classify_isready_rc(rc) for rc in (0, 1, 2, 3, 9)] == \
        ['accepting', 'rejecting', 'no_response', 'invalid', 'error']


def test_pg_role_problem():
    assert P.pg_role_problem(False, 'primary') == (None, None)
    assert P.pg_role_problem(True, 'any') == (None, None)
    assert P.pg_role_problem(True, 'primary') == ('wrong_role', 'server is a replica (expected primary)')
    assert P.pg_role_problem(False, 'replica')[0] == 'wrong_role'


def test_pgbouncer_show_state_key_value_rows():
    state = P.parse_pgbouncer_state(['key', 'value'], [('active', 'no'), ('paused', 'yes'), ('suspended', 'no')])
    assert state == {'active': False, 'paused': True, 'suspended': False}
    assert P.classify_pgbouncer_state(state)[1] == 'paused'
    suspended = P.parse_pgbouncer_state(['key', 'value'], [('active', 'no'), ('paused', 'no'), ('suspended', 'yes')])
    assert P.classify_pgbouncer_state(suspended)[1] == 'suspended'
    active = P.parse_pgbouncer_state(['key', 'value'], [('active', 'yes'), ('paused', 'no'), ('suspended', 'no')])
    assert P.classify_pgbouncer_state(active) == (True, 'active', None)
    # a single-row layout is understood too
    assert P.parse_pgbouncer_state(['active', 'paused', 'suspended'], [(0, 1, 0)])['paused'] is True


def test_pgbouncer_show_databases():
    columns = ['name', 'host', 'port', 'database', 'paused', 'disabled']
    rows = [('app', 'h', 5432, 'app', 0, 0), ('other', 'h', 5432, 'other', 1, 0), ('pgbouncer', None, 6432, 'pgbouncer', 0, 0)]
    assert P.classify_pgbouncer_databases(columns, rows)[:2] == (False, 'paused')
    assert P.classify_pgbouncer_databases(columns, rows)[2] == 'PgBouncer database(s) paused (PAUSE): other'
    assert P.classify_pgbouncer_databases(columns, rows, pool='app') == (True, 'active', None)
    assert P.classify_pgbouncer_databases(columns, rows, pool='nope')[1] == 'pool_missing'
    disabled = [('app', 'h', 5432, 'app', 0, 1)]
    assert P.classify_pgbouncer_databases(columns, disabled)[1] == 'disabled'


def test_describe_target_never_shows_credentials():
    assert P.describe_target('postgres', {'url': 'postgresql://app:s3cr3t@db:5433/app'}) == 'app@db:5433/app'
    assert 's3cr3t' not in P.describe_target('http', {'url': 'https://u:s3cr3t@h/x'})
    assert P.describe_target('pgbouncer', {'host': 'h', 'port': 6432, 'user': 'adm', 'pool': 'app',
                                           'database': 'pgbouncer'}) == 'adm@h:6432/pgbouncer pool app'
    assert P.describe_target('docker', {'container': 'web'}) == 'container web'
    assert P.describe_target('command', {'argv': ['/bin/check', '--fast']}) == '/bin/check --fast'


# ------------------------------------------------------------------ the polling loop (fake clock, scripted probes)

class FakeClock:
    def __init__(self, step=0.01):
        self.now = 0.0
        self.step = step  # each probe takes this long
        self.sleeps = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(round(seconds, 6))
        self.now += seconds


def scripted(states):
    """A probe that answers the given states in order, then repeats the last one."""
    answers = list(states)

    def probe(options, timeout):
        state = answers.pop(0) if len(answers) > 1 else answers[0]
        return P.probe_result(state in ('ok', 'accepting'), state, None if state == 'ok' else 'error: ' + state)
    return probe


def run_poll(script, clock=None, **policy):
    clock = clock or FakeClock()
    probes = {}
    checks = []
    for index, states in enumerate(script):
        kind = 'k%d' % index
        probes[kind] = scripted(states)
        checks.append(P.Check('check%d' % index, kind, {}, 1.0))
    policy.setdefault('timeout', 10)
    policy.setdefault('interval', 1.0)
    outcome = P.poll(checks, clock=clock, sleep=clock.sleep, probes=probes, **policy)
    return outcome, clock


def test_poll_ready_at_first_round():
    outcome, clock = run_poll([['ok']])
    assert outcome.ok and outcome.reason == 'ready' and outcome.rounds == 1 and clock.sleeps == []


def test_poll_waits_interval_between_round_starts():
    outcome, clock = run_poll([['refused', 'refused', 'ok']], interval=0.5)
    assert outcome.ok and outcome.rounds == 3
    assert clock.sleeps == [0.5, 0.5]
    report = outcome.checks[0].report()
    assert report['attempts'] == 3 and report['last_error'] == 'error: refused'
    assert [h['state'] for h in report['history']] == ['refused', 'ok']


def test_poll_all_checks_in_the_same_round():
    outcome, dummy = run_poll([['ok', 'bad', 'ok'], ['bad', 'ok', 'ok']])
    assert outcome.ok and outcome.rounds == 3  # round 1: a fails b; round 2: b fails a


def test_poll_consecutive_successes_resets_on_failure():
    outcome, dummy = run_poll([['ok', 'bad', 'ok', 'ok', 'bad', 'ok', 'ok', 'ok']], consecutive_successes=3)
    assert outcome.ok and outcome.rounds == 8 and outcome.streak == 3


def test_poll_flapping_times_out_with_streak():
    outcome, dummy = run_poll([['ok', 'bad'] * 50], consecutive_successes=2, timeout=5)
    assert not outcome.ok and outcome.reason == 'timeout'


def test_poll_backoff_sleeps_grow_and_reset_after_success():
    outcome, clock = run_poll([['a', 'a', 'a', 'a', 'ok', 'b', 'ok', 'ok']], interval=1, backoff=2, max_interval=3,
                              consecutive_successes=2, timeout=30)
    assert outcome.ok
    assert clock.sleeps == [1, 2, 3, 3, 1, 1, 1]


def test_poll_timeout_runs_a_last_round_at_the_deadline():
    outcome, clock = run_poll([['down']], interval=2, timeout=5)
    assert not outcome.ok and outcome.reason == 'timeout'
    assert clock.sleeps == [2, 2, 1]  # the last sleep is cut at the deadline, then one more attempt
    assert outcome.rounds == 4


def slow_answer(seconds, state):
    """A probe whose answer takes ``seconds``: with less time than that it times out."""
    def probe(options, timeout):
        if timeout < seconds:
            return P.probe_result(False, 'timeout', 'timed out after %.1fs' % timeout)
        return P.probe_result(False, state, 'error: ' + state)
    return probe


def test_poll_an_attempt_cut_short_by_the_deadline_does_not_replace_the_checks_state():
    check = P.Check('web', 'slow', {}, 2.0)
    clock = FakeClock()
    outcome = P.poll([check], timeout=3, interval=1, clock=clock, sleep=clock.sleep,
                     probes={'slow': slow_answer(0.7, 'bad_status')})
    report = check.report()
    # rounds at 0, 1, 2 and 3 s: the one at 3 s had 0.5 s, less than the answer takes
    assert outcome.reason == 'timeout' and report['attempts'] == 4
    assert report['state'] == 'bad_status' and report['last_error'] == 'error: bad_status'
    assert [h['state'] for h in report['history']] == ['bad_status']


def test_poll_a_timeout_with_the_checks_whole_timeout_is_the_checks_state():
    check = P.Check('web', 'slow', {}, 0.5)
    clock = FakeClock()
    P.poll([check], timeout=2, interval=1, clock=clock, sleep=clock.sleep,
           probes={'slow': slow_answer(0.7, 'bad_status')})
    assert check.report()['state'] == 'timeout'


def test_poll_a_check_with_its_own_count_of_successes():
    # status is 'starting' for three rounds; http passes from the first
    for status_successes, rounds in ((None, 6), (1, 4)):
        checks = [P.Check('http', 'http', {}, 1.0), P.Check('status', 'status', {}, 1.0, successes=status_successes)]
        probes = {'http': scripted(['ok']), 'status': scripted(['starting'] * 3 + ['ok'])}
        clock = FakeClock()
        outcome = P.poll(checks, timeout=30, interval=1, consecutive_successes=3, clock=clock, sleep=clock.sleep,
                         probes=probes)
        assert outcome.ok and outcome.rounds == rounds, status_successes


def docker_and_http(docker_states, docker_successes=None):
    checks = [P.Check('http', 'http', {}, 1.0), P.Check('web', 'docker', {}, 1.0, successes=docker_successes)]
    probes = {'http': scripted(['ok']), 'docker': scripted(docker_states)}
    return checks, probes


def test_poll_reads_dockers_state_between_rounds_once_it_is_all_that_is_left():
    # http's streak of 3 is complete at the third round (t=2); Docker says healthy 0.4 s later
    checks, probes = docker_and_http(['starting'] * 7 + ['ok'])
    clock = FakeClock()
    outcome = P.poll(checks, timeout=30, interval=1, consecutive_successes=3, clock=clock, sleep=clock.sleep,
                     probes=probes)
    assert outcome.ok and outcome.reason == 'ready' and outcome.rounds == 3
    assert clock.sleeps == [1, 1] + [P.READ_ONCE_STEP] * 5
    assert round(outcome.elapsed, 6) == 2.5
    assert checks[0].attempts == 3 and checks[1].attempts == 8


def test_poll_does_not_read_docker_sooner_while_other_checks_build_their_streak():
    checks, probes = docker_and_http(['ok'])
    clock = FakeClock()
    outcome = P.poll(checks, timeout=30, interval=1, consecutive_successes=3, clock=clock, sleep=clock.sleep,
                     probes=probes)
    assert outcome.ok and outcome.rounds == 3 and clock.sleeps == [1, 1]


def test_poll_reads_a_docker_check_that_needs_a_streak_only_in_rounds():
    checks, probes = docker_and_http(['starting'] * 3 + ['ok'], docker_successes=2)
    clock = FakeClock()
    outcome = P.poll(checks, timeout=30, interval=1, consecutive_successes=3, clock=clock, sleep=clock.sleep,
                     probes=probes)
    assert outcome.ok and outcome.rounds == 5 and clock.sleeps == [1, 1, 1, 1]


def test_poll_stops_between_rounds_at_a_permanent_failure():
    checks = [P.Check('http', 'http', {}, 1.0), P.Check('web', 'docker', {}, 1.0)]
    probes = {'http': scripted(['ok']), 'docker': scripted(['starting'] * 4 + ['tls_error'])}
    clock = FakeClock()
    outcome = P.poll(checks, timeout=30, interval=1, consecutive_successes=3, clock=clock, sleep=clock.sleep,
                     probes=probes)
    assert not outcome.ok and outcome.reason == 'permanent' and round(clock.now, 6) == 2.2


def test_poll_reads_between_rounds_never_past_the_deadline():
    checks, probes = docker_and_http(['starting'])
    clock = FakeClock()
    outcome = P.poll(checks, timeout=3.05, interval=1, consecutive_successes=3, clock=clock, sleep=clock.sleep,
                     probes=probes)
    assert not outcome.ok and outcome.reason == 'timeout'
    assert round(clock.now, 6) == 3.05 and max(clock.sleeps[2:]) <= P.READ_ONCE_STEP + 1e-9


def test_dockers_health_state_counts_once_unless_the_check_says_otherwise():
    assert P.Check('web', 'docker', {}, 1.0).successes == 1
    assert P.Check('web', 'docker', {}, 1.0, successes=3).successes == 3
    assert P.Check('web', 'http', {}, 1.0).successes is None


def test_poll_a_timeout_cut_short_after_a_success_is_recorded():
    answers = iter([P.probe_result(True, 'ok')])

    def probe(options, timeout):
        return next(answers, P.probe_result(False, 'timeout', 'timed out'))
    check = P.Check('web', 'p', {}, 2.0)
    clock = FakeClock()
    outcome = P.poll([check], timeout=1, interval=1, consecutive_successes=3, clock=clock, sleep=clock.sleep,
                     probes={'p': probe})
    assert not outcome.ok and check.report()['state'] == 'timeout' and check.streak == 0


def test_poll_fail_fast_on_permanent_states_but_not_in_start_period():
    outcome, dummy = run_poll([['auth_failed']], timeout=100)
    assert not outcome.ok and outcome.reason == 'permanent' and outcome.rounds == 1
    outcome, dummy = run_poll([['auth_failed']], timeout=3, fail_fast=False)
    assert outcome.reason == 'timeout' and outcome.rounds == 4
    # during start_period even a permanent-looking state is retried; success within it counts
    outcome, dummy = run_poll([['auth_failed', 'auth_failed', 'ok']], start_period=5, timeout=0)
    assert outcome.ok and outcome.rounds == 3


def test_poll_start_period_extends_the_deadline_and_freezes_backoff():
    outcome, clock = run_poll([['down'] * 100], start_period=3, timeout=2, interval=1, backoff=2, max_interval=8)
    assert not outcome.ok
    # three rounds at the plain interval inside the start period, then backoff grows
    assert clock.sleeps[:3] == [1, 1, 1]
    assert clock.now == pytest.approx(5)


def test_poll_probe_exception_is_a_state_not_a_crash():
    def broken(options, timeout):
        raise KeyError('boom')
    check = P.Check('c', 'weird', {}, 1.0)
    clock = FakeClock()
    outcome = P.poll([check], timeout=0, clock=clock, sleep=clock.sleep, probes={'weird': broken})
    assert not outcome.ok and check.last['state'] == 'error' and 'KeyError' in check.last['error']


def test_run_round_abandons_a_stuck_attempt():
    import threading
    release = threading.Event()

    def stuck(options, timeout):
        release.wait(30)
        return P.probe_result(True, 'ok')
    check = P.Check('c', 'stuck', {}, 0.1)
    import time
    started = time.monotonic()
    (result, dummy, dummy2), = P.run_round([check], lambda c: 0.1, time.monotonic, {'stuck': stuck}, grace=0.1)
    release.set()
    assert result['state'] == 'timeout' and time.monotonic() - started < 5


def test_report_redacts_secrets_and_keeps_history_short():
    check = P.Check('db', 'postgres', {'host': 'h', 'port': 5432, 'user': 'app'}, 1.0, secrets=['s3cr3t-pw'])
    for i in range(50):
        check.record(P.probe_result(False, 'state%d' % i, 'failed with s3cr3t-pw', body_excerpt='x s3cr3t-pw'), i, i)
    report = check.report()
    assert 's3cr3t-pw' not in repr(report)
    assert len(report['history']) == 20 and report['history'][0]['state'] == 'state0'
    assert report['history'][-1]['state'] == 'state49'

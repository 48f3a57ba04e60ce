"""health_poll against real HTTP(S) servers, TCP ports and commands on loopback."""

import socket
import sys
import time

from modrun import finish_module, run_module, start_module
from servers import HttpServer, free_port

FAST = dict(interval=0.1, check_timeout=2)


def states(check):
    return [entry['state'] for entry in check['history']]


def test_http_503_turning_200_is_waited_for(http_server):
    http_server.set(lambda n, t: (503, 'warming up caches') if t < 1.0 else (200, 'ok'))
    result = run_module('health_poll', dict(checks=[{'name': 'api', 'http': {'url': http_server.url()}}],
                                            timeout=10, **FAST))
    check = result['checks'][0]
    assert result.get('failed') is not True, result['msg']
    assert result['ready'] is True and result['changed'] is False
    assert check['ok'] is True and check['state'] == 'ok'
    assert states(check) == ['bad_status', 'ok']
    assert check['attempts'] >= 5  # 1 s of 503s at a 0.1 s interval
    assert check['last_error'] == 'HTTP 503 (expected any 2xx)'
    assert check['details']['status'] == 200
    assert 0.9 <= check['elapsed'] < 3


def test_http_503_times_out_with_status_and_body_in_message(http_server):
    http_server.set(lambda n, t: (503, 'database migrations pending'))
    result = run_module('health_poll', dict(checks=[{'name': 'api', 'http': {'url': http_server.url()}}],
                                            timeout=0.5, **FAST))
    assert result['failed'] is True and result['ready'] is False
    check = result['checks'][0]
    assert check['state'] == 'bad_status' and check['details']['status'] == 503
    assert "check 'api' (http %s) stuck in state 'bad_status'" % http_server.url() in result['msg']
    assert 'HTTP 503 (expected any 2xx)' in result['msg']
    assert 'body: database migrations pending' in result['msg']


def test_http_wrong_body_is_not_ready(http_server):
    http_server.set(lambda n, t: (200, 'maintenance mode'))
    result = run_module('health_poll', dict(checks=[{'http': {'url': http_server.url(), 'body_regex': '^ok$'}}],
                                            timeout=0.4, **FAST))
    check = result['checks'][0]
    assert result['failed'] is True
    assert check['state'] == 'body_mismatch'
    assert check['last_error'] == "body does not match '^ok$'"
    assert 'maintenance mode' in result['msg']


def test_http_json_field_and_status_codes(http_server):
    http_server.set(lambda n, t: (200, {'status': 'degraded', 'checks': {'db': 'ok'}}) if n < 3
                    else (200, {'status': 'ok', 'checks': {'db': 'ok'}}))
    result = run_module('health_poll', dict(checks=[
        {'http': {'url': http_server.url(), 'json_field': 'status', 'json_value': 'ok'}},
        {'http': {'port': http_server.port, 'path': '/other', 'json_field': 'checks.db', 'status_codes': [200, 204]}},
    ], timeout=5, **FAST))
    assert result.get('failed') is not True, result['msg']
    first = result['checks'][0]
    assert states(first) == ['body_mismatch', 'ok']
    assert first['last_error'] == 'JSON field \'status\' is "degraded" (expected "ok")'
    assert result['checks'][1]['target'] == 'http://127.0.0.1:%s/other' % http_server.port


def test_http_host_header_and_url_credentials_never_printed(http_server):
    secret = 'hunter2-very-secret'
    http_server.set(lambda n, t: (401, 'who are you'))
    url = http_server.url().replace('://', '://deploy:%s@' % secret)
    result = run_module('health_poll', dict(checks=[{'http': {'url': url, 'headers': {'Host': 'app.example.com'}}}],
                                            timeout=0.3, **FAST))
    assert result['failed'] is True
    assert secret not in result['_stdout']
    assert 'deploy:********@' in result['checks'][0]['target']
    seen = http_server.seen_headers[0]
    assert seen['Host'] == 'app.example.com'
    assert seen['Authorization'].startswith('Basic ')


def test_https_with_test_ca(test_ca):
    server = HttpServer(lambda n, t: (200, 'ok'), tls=test_ca)
    try:
        trusted = run_module('health_poll', dict(checks=[{'http': {'url': server.url(), 'ca_path': test_ca['ca']}}],
                                                 timeout=3, **FAST))
        assert trusted.get('failed') is not True, trusted['msg']
        assert trusted['checks'][0]['state'] == 'ok'
        # The certificate names localhost and 127.0.0.1: a Host header for another name must not verify.
        vhost = run_module('health_poll', dict(checks=[{'http': {
            'url': server.url(), 'ca_path': test_ca['ca'], 'headers': {'Host': 'localhost'}}}], timeout=3, **FAST))
        assert vhost.get('failed') is not True, vhost['msg']
        started = time.monotonic()
        untrusted = run_module('health_poll', dict(checks=[{'http': {'url': server.url()}}], timeout=30, **FAST))
        # fail_fast: an untrusted certificate does not fix itself, no need to wait 30 s
        assert time.monotonic() - started < 10
        assert untrusted['failed'] is True
        assert untrusted['checks'][0]['state'] == 'tls_error'
        assert 'CERTIFICATE_VERIFY_FAILED' in untrusted['checks'][0]['last_error']
        wrong_name = run_module('health_poll', dict(checks=[{'http': {
            'url': server.url(), 'ca_path': test_ca['ca'], 'headers': {'Host': 'other.example.com'}}}],
            timeout=0.3, **FAST))
        assert wrong_name['checks'][0]['state'] == 'tls_error'
        insecure = run_module('health_poll', dict(checks=[{'http': {'url': server.url(), 'validate_certs': False}}],
                                                  timeout=3, **FAST))
        assert insecure.get('failed') is not True, insecure['msg']
    finally:
        server.close()


def test_consecutive_successes_against_a_flapping_server(http_server):
    # Flaps ok/fail for 12 requests, then stays up: one success must not be enough.
    http_server.set(lambda n, t: (200, 'ok') if n > 12 or n % 2 == 1 else (503, 'flap'))
    result = run_module('health_poll', dict(checks=[{'http': {'url': http_server.url()}}],
                                            consecutive_successes=3, timeout=10, **FAST))
    assert result.get('failed') is not True, result['msg']
    check = result['checks'][0]
    assert check['attempts'] >= 15  # 12 flapping answers + 3 good in a row
    assert states(check)[:4] == ['ok', 'bad_status', 'ok', 'bad_status']
    assert result['rounds'] == check['attempts']


def test_consecutive_successes_never_reached_reports_flapping(http_server):
    http_server.set(lambda n, t: (200, 'ok') if n % 2 == 1 else (503, 'flap'))
    result = run_module('health_poll', dict(checks=[{'name': 'web', 'http': {'url': http_server.url()}}],
                                            consecutive_successes=2, timeout=1, **FAST))
    assert result['failed'] is True
    assert result['checks'][0]['attempts'] >= 6
    # The same server with consecutive_successes=1 passes at once: the streak is what failed.
    assert "check 'web' (http" in result['msg'] and 'bad_status' in result['msg']
    single = run_module('health_poll', dict(checks=[{'http': {'url': http_server.url()}}], timeout=1, **FAST))
    assert single.get('failed') is not True


def test_start_period_and_backoff(http_server):
    http_server.set(lambda n, t: (503, 'starting') if t < 0.8 else (200, 'ok'))
    # timeout 0: only the start period gives it time; fail_fast is irrelevant to a 503.
    result = run_module('health_poll', dict(checks=[{'http': {'url': http_server.url()}}],
                                            start_period=3, timeout=0, **FAST))
    assert result.get('failed') is not True, result['msg']
    assert result['elapsed'] < 3
    http_server.set(lambda n, t: (503, 'down'))
    backed_off = run_module('health_poll', dict(checks=[{'http': {'url': http_server.url()}}],
                                                interval=0.1, backoff=2, max_interval=0.4, timeout=1.6))
    # waits 0.1, 0.2, 0.4, 0.4, 0.4 ... : about 6 rounds in 1.6 s instead of 17 without backoff
    assert 5 <= backed_off['rounds'] <= 8, backed_off['rounds']


def test_all_checks_must_pass_in_the_same_round(http_server):
    port = free_port()
    http_server.set(lambda n, t: (200, 'ok'))
    result = run_module('health_poll', dict(checks=[
        {'name': 'web', 'http': {'url': http_server.url()}},
        {'name': 'socket', 'tcp': {'host': '127.0.0.1', 'port': port}},
    ], timeout=0.5, **FAST))
    assert result['failed'] is True
    web, sock = result['checks']
    assert web['ok'] is True and sock['ok'] is False and sock['state'] == 'refused'
    assert "check 'socket' (tcp 127.0.0.1:%s) stuck in state 'refused'" % port in result['msg']
    assert "'web'" not in result['msg']


def wait_for(condition, timeout=30, what='condition'):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, 'timed out waiting for %s' % what
        time.sleep(0.05)


def test_tcp_port_opening_later(http_server):
    port = free_port()
    http_server.set(lambda n, t: (200, 'ok'))
    # The HTTP check runs in every round with the TCP one: its requests show the rounds have started.
    proc, path = start_module('health_poll', dict(checks=[{'tcp': {'host': '127.0.0.1', 'port': port}},
                                                          {'http': {'url': http_server.url()}}],
                                                  timeout=30, **FAST))
    wait_for(lambda: http_server.requests >= 2, what='two rounds')
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(('127.0.0.1', port))
    listener.listen(5)
    try:
        result = finish_module(proc, path, timeout=60)
    finally:
        listener.close()
    assert result.get('failed') is not True, result['msg']
    assert states(result['checks'][0]) == ['refused', 'open']


def test_command_check_and_check_mode(tmp_path):
    flag = tmp_path / 'ready'
    argv = [sys.executable, '-c', 'import os,sys; sys.exit(0 if os.path.exists(%r) else 3)' % str(flag)]
    failing = run_module('health_poll', dict(checks=[{'command': {'argv': argv}}], timeout=0.3, **FAST),
                         check_mode=True)
    assert failing['failed'] is True and failing['changed'] is False
    assert failing['checks'][0]['state'] == 'wrong_rc' and failing['checks'][0]['details']['rc'] == 3
    flag.write_text('')
    passing = run_module('health_poll', dict(checks=[{'command': {'argv': argv}}], timeout=2, **FAST),
                         check_mode=True)
    assert passing.get('failed') is not True and passing['changed'] is False
    missing = run_module('health_poll', dict(checks=[{'command': {'argv': ['/nonexistent/healthcheck']}}],
                                             timeout=30, **FAST))
    assert missing['checks'][0]['state'] == 'no_executable' and missing['elapsed'] < 5


def test_invalid_options_are_refused():
    result = run_module('health_poll', dict(checks=[{'tcp': {'host': 'x', 'port': 1}, 'command': {'argv': ['true']}}]))
    assert result['failed'] is True and 'mutually exclusive' in result['msg']
    result = run_module('health_poll', dict(checks=[{'tcp': {'host': 'x', 'port': 1}}], interval=0))
    assert result['failed'] is True and 'interval must be more than 0' in result['msg']

"""Unit tests of health_poll's module-level helpers: argument spec, secrets and failure messages."""

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS = os.path.join(ROOT, '.cache', 'collections')
if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator  # noqa: E402

from ansible_collections.shipyard.webstack.plugins.module_utils import _probes as P  # noqa: E402
from ansible_collections.shipyard.webstack.plugins.modules import health_poll as M  # noqa: E402


def validate(params):
    result = ArgumentSpecValidator(M.argument_spec()).validate(params)
    return result.validated_parameters, [str(e) for e in result.errors]


def test_spec_accepts_each_check_type_and_fills_defaults():
    params, errors = validate({'checks': [
        {'tcp': {'host': 'h', 'port': 1}},
        {'http': {'url': 'http://h/'}},
        {'postgres': {'url': 'postgresql://h/d'}},
        {'pgbouncer': {'host': 'h', 'port': 6432}},
        {'redis': {}},
        {'docker': {'container': 'web'}},
        {'command': {'argv': ['true']}},
    ]})
    assert errors == []
    assert params['timeout'] == 300 and params['interval'] == 1 and params['consecutive_successes'] == 1
    assert params['checks'][3]['pgbouncer']['database'] == 'pgbouncer'
    assert params['checks'][4]['redis']['port'] == 6379
    assert params['checks'][2]['postgres']['role'] == 'any'


@pytest.mark.parametrize('check, message', [
    ({'tcp': {'host': 'h', 'port': 1}, 'http': {'url': 'http://h/'}}, 'mutually exclusive'),
    ({'name': 'nothing'}, 'one of the following is required'),
    ({'http': {'url': 'http://h/', 'port': 80}}, 'mutually exclusive'),
    ({'http': {'json_value': 'ok', 'url': 'http://h/'}}, 'json_field'),
    ({'redis': {'username': 'u'}}, 'password'),
    ({'docker': {}}, 'container'),
])
def test_spec_refuses_ambiguous_or_incomplete_checks(check, message):
    dummy, errors = validate({'checks': [check]})
    assert any(message in error for error in errors), errors


def test_check_secrets_collects_every_password_form():
    assert set(M.check_secrets('postgres', {'url': 'postgresql://u:p%40ss@h/d', 'password': 'other'})) == \
        {'p@ss', 'other'}
    assert set(M.check_secrets('http', {'url': 'https://u:p%2Fw@h/', 'headers': {'Authorization': 'Bearer tok123'}})) \
        >= {'p%2Fw', 'p/w', 'Bearer tok123', 'tok123'}
    assert M.check_secrets('pgbouncer', {'password': 'a1234', 'pool_password': 'b1234'}) == ['a1234', 'b1234']
    assert M.check_secrets('tcp', {'host': 'h', 'port': 1}) == []


def make_check(name, kind, options, results, secrets=(), named=True):
    check = P.Check(name, kind, options, 1.0, secrets)
    check.named = named
    for index, result in enumerate(results):
        check.record(result, index, index + 0.5)
    return check


def test_failure_message_names_check_state_hint_error_and_body():
    check = make_check('api', 'http', {'url': 'http://u:pw-secret@h:8080/health'}, [
        P.probe_result(False, 'bad_status', 'HTTP 503 (expected any 2xx)', status=503,
                       body_excerpt='maintenance; token=pw-secret'),
    ], secrets=['pw-secret'])
    outcome = P.PollResult(False, 'timeout', 1, 10.0, [check], 0)
    message = M.failure_message(outcome, {'timeout': 10, 'start_period': 0, 'consecutive_successes': 1})
    assert message.startswith('health_poll timed out after 10.0s (timeout 10s).')
    assert "check 'api' (http http://u:********@h:8080/health) stuck in state 'bad_status' after 1 attempt(s)" in message
    assert 'HTTP 503 (expected any 2xx); body: maintenance' in message
    assert 'pw-secret' not in message


def test_failure_message_for_postgres_and_redis_carries_hints():
    db = make_check('postgres app@h:5432/app', 'postgres', {}, [P.probe_result(False, 'auth_failed', 'bad pw')],
                    named=False)
    cache = make_check('cache', 'redis', {'host': 'h', 'port': 6379}, [P.probe_result(False, 'LOADING', 'PING: LOADING')])
    outcome = P.PollResult(False, 'permanent', 1, 0.1, [db, cache], 0)
    message = M.failure_message(outcome, {'timeout': 10, 'start_period': 0, 'consecutive_successes': 1})
    assert 'a state waiting cannot fix (fail_fast)' in message
    assert "check 'postgres app@h:5432/app' stuck in state 'auth_failed' after 1 attempt(s) " \
           "(the server rejected the password for this user): bad pw" in message
    assert "(redis is loading its dataset into memory)" in message


def test_failure_message_for_a_flapping_service():
    check = make_check('web', 'http', {'url': 'http://h/'}, [
        P.probe_result(True, 'ok'), P.probe_result(False, 'bad_status', 'HTTP 502 (expected any 2xx)'),
        P.probe_result(True, 'ok')])
    outcome = P.PollResult(False, 'timeout', 3, 5.0, [check], 1)
    message = M.failure_message(outcome, {'timeout': 5, 'start_period': 2, 'consecutive_successes': 3})
    assert '(timeout 5s, start_period 2s)' in message
    assert 'all checks passed the last 1 round(s) in a row, 3 needed' in message
    assert "check 'web' (http http://h/) flapped in state 'bad_status'" in message

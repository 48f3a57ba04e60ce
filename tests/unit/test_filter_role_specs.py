"""deploy.yml's preflight of the role variables: the roles' own argument specs, every violation by name,
never a value (the validator's messages quote values; the filter must not)."""

import os
import sys

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS = os.path.join(ROOT, '.cache', 'collections')
if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)

from ansible.errors import AnsibleFilterError  # noqa: E402
from ansible_collections.shipyard.webstack.plugins.filter.role_specs import (  # noqa: E402
    role_spec_roles, role_spec_violations,
)

ROLES = ['postgres', 'pgbouncer', 'redis', 'db_backup', 'docker', 'proxy', 'app']
SPECS = {}
for _role in ROLES:
    with open(os.path.join(ROOT, 'roles', _role, 'meta', 'argument_specs.yml')) as _handle:
        SPECS[_role] = yaml.safe_load(_handle)['argument_specs']['main']['options']
PGB_SECRETS = {'pgbouncer_auth_password': 'a' * 24, 'pgbouncer_admin_password': 'b' * 24,
               'pgbouncer_stats_password': 'c' * 24}


def check(values, roles, host='h1'):
    return role_spec_violations(values, SPECS, roles, host)


def test_roles_by_group_in_deploy_order():
    assert role_spec_roles(['app', 'postgres']) == ['postgres', 'docker', 'proxy', 'app']
    assert role_spec_roles(['pgbouncer', 'redis', 'db_backup', 'other']) == ['redis', 'pgbouncer', 'db_backup']
    assert role_spec_roles([]) == []


def test_valid_values_pass_and_defaults_fill_the_rest():
    assert check(dict(PGB_SECRETS, pgbouncer_pool_mode='session', pgbouncer_listen_port='6433'), ['pgbouncer']) == []
    app = {'app_processes': {'web': {'command': ['web']}}, 'proxy_http_port': 8080}
    assert check(app, ['docker', 'proxy', 'app']) == []


@pytest.mark.parametrize('values, roles, expected, value', [
    ({'pgbouncer_pool_mode': 'sessionz'}, ['pgbouncer'],
     'pgbouncer_pool_mode on h1 (role pgbouncer): must be one of: session, transaction, statement', 'sessionz'),
    ({'postgres_port': '5432/tcp'}, ['postgres'], 'postgres_port on h1 (role postgres): must be an int (it is a str)',
     '5432/tcp'),
    ({'postgres_allow_restart': 'maybe'}, ['postgres'],
     'postgres_allow_restart on h1 (role postgres): must be a bool (it is a str)', 'maybe'),
    ({'postgres_users': ['app:Pw0rdValue']}, ['postgres'],
     'postgres_users on h1 (role postgres): every item must be a dict (one is a str)', 'Pw0rdValue'),
    ({'redis_maxmemory_policy': 'lru-ish'}, ['redis'],
     'redis_maxmemory_policy on h1 (role redis): must be one of: noeviction, allkeys-lru', 'lru-ish'),
    ({'proxy_routes': [{'path': '/', 'strip_prefix': 'nah-Secret'}]}, ['proxy'],
     'proxy_routes.upstream on h1 (role proxy): is required but not set', 'nah-Secret'),
    ({'proxy_routes': [{'path': '/', 'upstream': 'web', 'bogus': 1}]}, ['proxy'],
     'proxy_routes.bogus on h1 (role proxy): is not a known option here (known: client_max_body_size', None),
    ({'app_processes': ['web']}, ['app'], 'app_processes on h1 (role app): must be a dict (it is a list)', None),
    ({'app_health_timeout': 'soon'}, ['app'], 'app_health_timeout on h1 (role app): must be a float (it is a str)',
     'soon'),
])
def test_each_violation_names_the_variable_and_never_the_value(values, roles, expected, value):
    if roles == ['pgbouncer']:
        values = dict(PGB_SECRETS, **values)
    out = check(values, roles)
    assert any(message.startswith(expected) for message in out), out
    if value:
        assert not any(value in message for message in out), out


def test_missing_required_secrets_are_all_named():
    out = check({}, ['pgbouncer', 'redis'])
    assert sorted(out) == sorted([
        'pgbouncer_auth_password on h1 (role pgbouncer): is required but not set',
        'pgbouncer_admin_password on h1 (role pgbouncer): is required but not set',
        'pgbouncer_stats_password on h1 (role pgbouncer): is required but not set',
        'redis_password on h1 (role redis): is required but not set',
    ])


def test_unknown_message_shapes_keep_no_secret_value():
    """The safety net: a no_log option's value is masked even in a message the filter cannot rebuild."""
    spec = {'x': {'options': {'x_secret': {'type': 'str', 'no_log': True},
                              'x_mode': {'type': 'str', 'choices': ['a', 'b']}},
                  'mutually_exclusive': [['x_secret', 'x_mode']]}}
    spec = {'x_conf': {'type': 'dict', 'options': spec['x']['options'],
                       'mutually_exclusive': spec['x']['mutually_exclusive']}}
    out = role_spec_violations({'x_conf': {'x_secret': 'Hunter2Hunter2', 'x_mode': 'a'}}, {'x': spec}, ['x'])
    assert out and all('Hunter2Hunter2' not in message for message in out), out


def test_a_role_without_a_spec_is_an_error():
    with pytest.raises(AnsibleFilterError, match='no argument spec for the role nope'):
        role_spec_violations({}, SPECS, ['nope'])


class _TaggedStr(str):
    """Stands for ansible-core's tagged strings (a str subclass carrying the value's origin)."""


def _tagged(value):
    if isinstance(value, dict):
        return dict((_TaggedStr(key), _tagged(item)) for key, item in value.items())
    if isinstance(value, list):
        return [_tagged(item) for item in value]
    return _TaggedStr(value) if isinstance(value, str) else value


def _strs(value):
    if isinstance(value, dict):
        return [s for key, item in value.items() for s in _strs(key) + _strs(item)]
    if isinstance(value, list):
        return [s for item in value for s in _strs(item)]
    return [value] if isinstance(value, str) else []


def test_the_validator_gets_plain_data_and_the_same_verdicts(monkeypatch):
    """Deep-copying tagged strings made one host's check take seconds: only built-in types reach it."""
    from ansible_collections.shipyard.webstack.plugins.filter import role_specs
    given = []
    real = role_specs.ArgumentSpecValidator

    def recording(spec):
        given.append(spec)
        validator = real(spec)
        validate = validator.validate

        def validate_recorded(parameters, *args, **kwargs):
            given.append(parameters)
            return validate(parameters, *args, **kwargs)
        validator.validate = validate_recorded
        return validator
    monkeypatch.setattr(role_specs, 'ArgumentSpecValidator', recording)
    values = dict(PGB_SECRETS, pgbouncer_pool_mode='sessions', pgbouncer_listen_port='6433')
    tagged = role_spec_violations(_tagged(values), _tagged(SPECS), ['pgbouncer'], 'h1')
    assert tagged == check(values, ['pgbouncer']) != []
    assert given and all(s.__class__ is str for data in given for s in _strs(data))

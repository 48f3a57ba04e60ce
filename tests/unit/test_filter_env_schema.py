"""env_schema_violations: every violation reported, by name, never a value."""

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS = os.path.join(ROOT, '.cache', 'collections')
if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)

from ansible.errors import AnsibleFilterError  # noqa: E402

from ansible_collections.shipyard.webstack.plugins.filter.env_schema import (  # noqa: E402
    DEFAULT_PLACEHOLDERS, FilterModule, env_schema_violations, find_placeholder,
)

SCHEMA = {
    'NODE_ENV': {'required': True, 'allowed': ['production']},
    'DATABASE_URL': {'required': True, 'type': 'url', 'schemes': ['postgresql', 'postgres']},
    'DIRECT_URL': {'required': True, 'type': 'url', 'schemes': ['postgresql', 'postgres']},
    'REDIS_URL': {'required': True, 'type': 'url', 'schemes': ['redis', 'rediss']},
    'JWT_SECRET': {'required': True, 'min_length': 64, 'hint': 'openssl rand -hex 32'},
    'ENCRYPTION_KEY': {'required': True, 'length': 32},
    'STRIPE_KEY': {'required': True, 'regex': 'sk_live_[A-Za-z0-9]{24,}'},
    'PORT': {'type': 'int', 'min': 1, 'max': 65535},
    'SIGNUPS_OPEN': {'type': 'bool'},
    'APP_NAME': {'max_length': 20, 'placeholders': False},
    'SENTRY_DSN': {'type': 'url'},
    'ADMIN_EMAIL': {'required': True, 'forbidden': ['admin@*']},
}

JWT = 'Qm9vdHN0cmFwUmFuZG9tSnd0S2V5VGhhdElzTG9uZ0Vub3VnaDY0Q2hhcnNYWVo3'  # 64 chars
ENC = 'k3J9sLq2Vb7Nw4Rt8Yp1Zc6Hd0Fg5Mx2'  # 32 chars
STRIPE = 'sk_live_51HqLyjWDarjtT1zdp7dcXYZab'
DB_PASSWORD = 'Vq7#pL2@zR9'

VALID = {
    'NODE_ENV': 'production',
    'DATABASE_URL': 'postgresql://app:Vq7%23pL2%40zR9@db1:6432/app?sslmode=require',
    'DIRECT_URL': 'postgres://app:Vq7%23pL2%40zR9@db1:5432/app',
    'REDIS_URL': 'rediss://:r3d1sPw0rd4ll@cache1:6380/0',
    'JWT_SECRET': JWT,
    'ENCRYPTION_KEY': ENC,
    'STRIPE_KEY': STRIPE,
    'PORT': 3000,
    'SIGNUPS_OPEN': 'false',
    'APP_NAME': 'Todo tracker',  # would hit 'todo' but placeholders are off for it
    'SENTRY_DSN': '',  # optional, empty: not checked
    'ADMIN_EMAIL': 'ops@shipyard.invalid',
}


def env(**changes):
    result = dict(VALID)
    for key, value in changes.items():
        if value is DELETE:
            del result[key]
        else:
            result[key] = value
    return result


DELETE = object()

# (environment, exact violations)
INVALID = [
    pytest.param(env(JWT_SECRET='tooshort123'),
                 ['JWT_SECRET: must be at least 64 characters long (it has 11) (openssl rand -hex 32)'], id='short-jwt'),
    pytest.param(env(ENCRYPTION_KEY=ENC + 'X'),
                 ['ENCRYPTION_KEY: must be exactly 32 characters long (it has 33)'], id='encryption-key-33'),
    pytest.param(env(ENCRYPTION_KEY=DELETE, JWT_SECRET=DELETE),
                 ['JWT_SECRET: is required but not set (openssl rand -hex 32)', 'ENCRYPTION_KEY: is required but not set'], id='missing-two'),
    pytest.param(env(JWT_SECRET='', NODE_ENV=None),
                 ['NODE_ENV: is required but not set', 'JWT_SECRET: is required but empty (openssl rand -hex 32)'], id='empty-and-null'),
    pytest.param(env(STRIPE_KEY='your_stripe_key_here'),
                 ['STRIPE_KEY: does not match the pattern sk_live_[A-Za-z0-9]{24,}',
                  'STRIPE_KEY: looks like a placeholder value: set the real value'], id='your-placeholder'),
    pytest.param(env(JWT_SECRET='CHANGEME' * 8),
                 ['JWT_SECRET: looks like a placeholder value: set the real value (openssl rand -hex 32)'],
                 id='changeme-uppercase'),
    pytest.param(env(DATABASE_URL='postgresql://app:password@db1:6432/app'),
                 ['DATABASE_URL: looks like a placeholder value: set the real value'],
                 id='password-in-url'),
    pytest.param(env(REDIS_URL='redis://:xxx@example.com:6379/0'),
                 ['REDIS_URL: looks like a placeholder value: set the real value'], id='example-host'),
    pytest.param(env(NODE_ENV='development'), ['NODE_ENV: must be one of: production'], id='not-allowed'),
    pytest.param(env(DIRECT_URL='mysql://app:Vq7%23pL2%40zR9@db1/app'),
                 ['DIRECT_URL: must be a URL with scheme postgresql or postgres'], id='wrong-scheme'),
    pytest.param(env(DATABASE_URL='db1:6432/app'),
                 ['DATABASE_URL: must be a URL (scheme://host...) with scheme postgresql or postgres'], id='not-a-url'),
    pytest.param(env(PORT='80a'), ['PORT: must be an integer'], id='port-not-int'),
    pytest.param(env(PORT=70000), ['PORT: must be an integer <= 65535'], id='port-too-big'),
    pytest.param(env(PORT=True), ['PORT: must be an integer'], id='port-bool'),
    pytest.param(env(SIGNUPS_OPEN='maybe'),
                 ['SIGNUPS_OPEN: must be a boolean (true/false, yes/no, on/off, 1/0)'], id='bool-word'),
    pytest.param(env(NODE_ENV=True),
                 ['NODE_ENV: must be a string, not a YAML boolean (quote it)', 'NODE_ENV: must be one of: production'],
                 id='yaml-boolean'),
    pytest.param(env(APP_NAME='A much too long application name'),
                 ['APP_NAME: must be at most 20 characters long (it has 32)'], id='max-length'),
    pytest.param(env(ADMIN_EMAIL='admin@shipyard.invalid'),
                 ['ADMIN_EMAIL: looks like a placeholder value: set the real value'], id='forbidden-extra'),
    pytest.param(env(JWT_SECRET={'value': JWT}), ['JWT_SECRET: must be a single value, not a mapping (openssl rand -hex 32)'], id='mapping'),
    pytest.param(env(ENCRYPTION_KEY=[ENC]), ['ENCRYPTION_KEY: must be a single value, not a list'], id='list'),
    pytest.param(env(SENTRY_DSN='https://<key>@o0.ingest.sentry.io/1'),
                 ['SENTRY_DSN: looks like a placeholder value: set the real value'], id='angle-brackets'),
    pytest.param(env(ENCRYPTION_KEY='todo', STRIPE_KEY='sk_live_short', JWT_SECRET=DELETE, NODE_ENV='staging',
                     PORT=0, REDIS_URL='redis://cache1:notaport/0'),
                 ['NODE_ENV: must be one of: production',
                  'REDIS_URL: must be a URL (scheme://host...) with scheme redis or rediss',
                  'JWT_SECRET: is required but not set (openssl rand -hex 32)',
                  'ENCRYPTION_KEY: must be exactly 32 characters long (it has 4)',
                  'ENCRYPTION_KEY: looks like a placeholder value: set the real value',
                  'STRIPE_KEY: does not match the pattern sk_live_[A-Za-z0-9]{24,}',
                  'PORT: must be an integer >= 1'], id='everything-at-once'),
]


@pytest.mark.parametrize('environment, expected', INVALID)
def test_invalid_environments_report_every_violation_by_name_without_values(environment, expected):
    violations = env_schema_violations(environment, SCHEMA)
    assert violations == expected
    text = '\n'.join(violations)
    for name, value in environment.items():
        if isinstance(value, str) and len(value) >= 4 and value not in ('production', 'staging', 'development'):
            assert value not in text, name
    for secret in (JWT, ENC, STRIPE, DB_PASSWORD, 'your_stripe_key_here', 'tooshort123', 'A much too long'):
        assert secret not in text


def test_at_least_fifteen_invalid_environments():
    assert len(INVALID) >= 15


def test_valid_environment_passes():
    assert env_schema_violations(VALID, SCHEMA) == []


@pytest.mark.parametrize('changes', [
    {'SIGNUPS_OPEN': True}, {'SIGNUPS_OPEN': 'Yes'}, {'SIGNUPS_OPEN': '0'}, {'PORT': '8080'}, {'PORT': DELETE},
    {'SENTRY_DSN': 'https://abc123@o0.ingest.sentry.io/42'}, {'SENTRY_DSN': DELETE}, {'SENTRY_DSN': None},
    {'JWT_SECRET': JWT + JWT}, {'STRIPE_KEY': 'sk_live_' + 'a' * 40},
])
def test_other_valid_environments_pass(changes):
    assert env_schema_violations(env(**changes), SCHEMA) == []


def test_no_schema_or_empty_schema_means_no_violation():
    assert env_schema_violations(VALID, None) == []
    assert env_schema_violations(None, {}) == []


def test_unknown_variables_only_when_asked():
    assert env_schema_violations(env(EXTRA='x'), SCHEMA) == []
    assert env_schema_violations(env(EXTRA='x'), SCHEMA, allow_unknown=False) == ['EXTRA: is not in the schema']


def test_null_rules_still_check_placeholders():
    assert env_schema_violations({'A': 'fixme later', 'B': 'fine'}, {'A': None, 'B': None}) == [
        'A: looks like a placeholder value: set the real value']


def test_custom_placeholder_list_replaces_defaults():
    assert env_schema_violations({'A': 'changeme'}, {'A': {}}, placeholders=['acme*']) == []
    assert env_schema_violations({'A': 'ACME-token'}, {'A': {}}, placeholders=['acme*']) == [
        'A: looks like a placeholder value: set the real value']


@pytest.mark.parametrize('text, expected', [
    ('your_api_key_here', 'your_*'),
    ('YOUR-TOKEN', 'your-*'),
    ('changeme123', 'changeme'),
    ('please-change-me', 'change-me'),
    ('https://api.example.com', 'example'),
    ('postgres://u:password@h/db', 'password'),
    ('xxxxxxxx', 'xxx'),
    ('TODO', 'todo'),
    ('my-secret', 'secret'),
    ('<insert key>', '<*>'),
    ('aXxxB9kL', None),  # 'xxx' inside random text is not a placeholder
    ('supersecretvalue', None),
    ('k3J9sLq2Vb7Nw4Rt8Yp1Zc6Hd0Fg5Mx2', None),
])
def test_find_placeholder(text, expected):
    assert find_placeholder(text, DEFAULT_PLACEHOLDERS) == expected


@pytest.mark.parametrize('schema, message', [
    ({'A': {'min_lenght': 3}}, "unknown rule 'min_lenght'"),
    ({'A': {'min_length': '3'}}, 'min_length must be a int'),
    ({'A': {'required': 'yes'}}, 'required must be a bool'),
    ({'A': {'length': True}}, 'length must be a int'),
    ({'A': {'type': 'float'}}, 'type must be one of string, int, url, bool'),
    ({'A': {'regex': '('}}, 'regex is not a valid regular expression'),
    ({'A': 'required'}, 'the schema of A must be a dictionary of rules'),
    (['A'], 'the schema must be a dictionary'),
])
def test_schema_mistakes_are_errors(schema, message):
    with pytest.raises(AnsibleFilterError, match=message.replace('(', r'\(')):
        env_schema_violations({'A': 'value'}, schema)


def test_environment_must_be_a_dict():
    with pytest.raises(AnsibleFilterError, match='the environment must be a dictionary'):
        env_schema_violations('A=1', {})


def test_filter_is_registered():
    assert FilterModule().filters()['env_schema_violations'] is env_schema_violations

"""URL filters: credentials percent-encoded, URLs parse back to the same parts."""

from urllib.parse import unquote, urlsplit

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.shipyard.webstack.plugins.filter.urls import pgpass_line, postgres_url, redis_url
from ansible_collections.shipyard.webstack.plugins.module_utils._pg import parse_pg_url

NASTY = 'p@ss:w/rd?#%&= é'


def test_postgres_url_round_trips_a_nasty_password():
    url = postgres_url({'user': 'app user', 'password': NASTY, 'host': 'db1', 'port': 6432, 'database': 'app/db'})
    assert url.startswith('postgresql://app%20user:')
    assert NASTY not in url
    parsed = parse_pg_url(url)
    assert parsed == {'host': 'db1', 'port': 6432, 'user': 'app user', 'password': NASTY, 'database': 'app/db'}


def test_postgres_url_default_port_sslmode_and_params_sorted():
    url = postgres_url({'user': 'u', 'password': 'x', 'host': 'h', 'database': 'd', 'sslmode': 'require',
                        'params': {'connect_timeout': 5, 'application_name': 'web'}})
    assert url == 'postgresql://u:x@h:5432/d?application_name=web&connect_timeout=5&sslmode=require'


def test_postgres_url_ipv6_host_is_bracketed():
    assert postgres_url({'user': 'u', 'host': '::1', 'database': 'd'}) == 'postgresql://u@[::1]:5432/d'


@pytest.mark.parametrize('missing', ['user', 'host', 'database'])
def test_postgres_url_names_missing_part(missing):
    spec = {'user': 'u', 'host': 'h', 'database': 'd'}
    spec[missing] = ''
    with pytest.raises(AnsibleFilterError, match='postgres_url: missing %s' % missing):
        postgres_url(spec)


def test_postgres_url_rejects_non_dict():
    with pytest.raises(AnsibleFilterError, match='expects a dict'):
        postgres_url('postgresql://x')


def test_redis_url_plain_tls_and_acl_user():
    assert redis_url({'host': 'cache1'}) == 'redis://cache1:6379/0'
    url = redis_url({'host': 'cache1', 'port': 6380, 'password': NASTY, 'username': 'app', 'db': 2, 'tls': True})
    parts = urlsplit(url)
    assert parts.scheme == 'rediss' and parts.port == 6380 and parts.path == '/2'
    assert unquote(parts.username) == 'app' and unquote(parts.password) == NASTY
    # Password only (requirepass): empty user part, as redis clients expect.
    assert redis_url({'host': 'h', 'password': 'secret'}) == 'redis://:secret@h:6379/0'


def test_redis_url_username_without_password_is_an_error():
    with pytest.raises(AnsibleFilterError, match='needs a password'):
        redis_url({'host': 'h', 'username': 'app'})


def test_pgpass_line_escapes_every_field_and_leaves_wildcards():
    assert pgpass_line({'password': 's3cr:et\\x'}) == '*:*:*:*:s3cr\\:et\\\\x'
    assert pgpass_line({'host': '10.0.0.5', 'port': 5432, 'database': 'app', 'user': 'back:up',
                        'password': 'pw'}) == '10.0.0.5:5432:app:back\\:up:pw'
    assert pgpass_line({'port': '', 'user': None, 'password': '*'}) == '*:*:*:*:*'


def test_pgpass_line_refuses_a_line_break_without_quoting_it():
    with pytest.raises(AnsibleFilterError, match='password cannot hold a line break') as info:
        pgpass_line({'password': 'Hx7p\nWq2m'})
    assert 'Hx7p' not in str(info.value)
    with pytest.raises(AnsibleFilterError, match='password is required'):
        pgpass_line({'user': 'backup'})
    with pytest.raises(AnsibleFilterError, match='expects a dict'):
        pgpass_line('pw')

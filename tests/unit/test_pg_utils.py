"""Unit tests of module_utils/_pg.py's pure parts: error classification and URL/parameter handling."""

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS = os.path.join(ROOT, '.cache', 'collections')
if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)

from ansible_collections.shipyard.webstack.plugins.module_utils import _pg  # noqa: E402


@pytest.mark.parametrize('sqlstate, state', [
    ('57P03', 'rejecting'), ('28P01', 'auth_failed'), ('28000', 'not_allowed'),
    ('3D000', 'database_missing'), ('53300', 'too_many_clients'),
])
def test_sqlstate_wins(sqlstate, state):
    assert _pg.classify_pg_error('whatever the text says', sqlstate) == state


@pytest.mark.parametrize('message, state', [
    ('connection to server at "127.0.0.1", port 5432 failed: FATAL:  the database system is starting up', 'rejecting'),
    ('FATAL:  the database system is shutting down', 'rejecting'),
    ('FATAL:  the database system is not accepting connections\nDETAIL:  Hot standby mode is disabled.', 'rejecting'),
    ('FATAL:  the database system is not yet accepting connections', 'rejecting'),
    ('FATAL:  password authentication failed for user "app"', 'auth_failed'),
    ('fe_sendauth: no password supplied', 'auth_failed'),
    ('FATAL:  no pg_hba.conf entry for host "10.0.0.1", user "app", database "app", no encryption', 'not_allowed'),
    ('FATAL:  database "nosuchdb" does not exist', 'database_missing'),
    ('FATAL:  sorry, too many clients already', 'too_many_clients'),
    ('FATAL:  remaining connection slots are reserved for non-replication superuser connections', 'too_many_clients'),
    ('connection to server at "127.0.0.1", port 1 failed: Connection refused', 'no_response'),
    ('connection failed: connection to server on socket "/tmp/.s.PGSQL.5432" failed: No such file or directory',
     'no_response'),
    ('timeout expired', 'no_response'),
    ('could not translate host name "db.invalid" to address', 'no_response'),
    ('server closed the connection unexpectedly', 'no_response'),
    ('ERROR:  syntax error at or near "SELEC"', 'error'),
    ('', 'error'),
    (None, 'error'),
])
def test_messages(message, state):
    assert _pg.classify_pg_error(message) == state


def test_sqlstate_of_reads_both_drivers_shapes():
    class Psycopg3Error(Exception):
        sqlstate = '28P01'

    class Psycopg2Error(Exception):
        pgcode = '3D000'

    class Diag(object):
        sqlstate = '53300'

    class WithDiag(Exception):
        diag = Diag()

    assert _pg.sqlstate_of(Psycopg3Error()) == '28P01'
    assert _pg.sqlstate_of(Psycopg2Error()) == '3D000'
    assert _pg.sqlstate_of(WithDiag()) == '53300'
    assert _pg.sqlstate_of(ValueError()) is None


def test_parse_pg_url_decodes_and_maps_keywords():
    params = _pg.parse_pg_url('postgresql://app%40corp:p%2Fss%3Aw@db.example.com:6432/my%20db'
                              '?sslmode=verify-full&sslrootcert=/ca.pem&application_name=x')
    assert params == {'host': 'db.example.com', 'port': 6432, 'user': 'app@corp', 'password': 'p/ss:w',
                      'database': 'my db', 'sslmode': 'verify-full', 'ssl_rootcert': '/ca.pem', 'application_name': 'x'}
    assert _pg.parse_pg_url('postgres://h/d?dbname=other') == {'host': 'h', 'database': 'other'}


def test_parse_pg_url_errors_never_show_the_password():
    with pytest.raises(ValueError) as err:
        _pg.parse_pg_url('mysql://u:topsecret@h/d')
    assert 'topsecret' not in str(err.value)
    with pytest.raises(ValueError) as err:
        _pg.parse_pg_url('postgresql://u:topsecret@h:notaport/d')
    assert 'topsecret' not in str(err.value)


def test_connection_params_explicit_options_override_the_url():
    params = _pg.connection_params({'url': 'postgresql://u:pw@h:5433/d', 'host': 'other', 'password': None,
                                    'port': '6000', 'connect_timeout': 5})
    assert params == {'host': 'other', 'port': 6000, 'user': 'u', 'password': 'pw', 'database': 'd',
                      'connect_timeout': 5}
    assert _pg.connection_params({'host': 'h'})['port'] == 5432


def test_connection_spec_marks_secrets_no_log():
    spec = _pg.pg_connection_spec()
    assert spec['password']['no_log'] is True and spec['url']['no_log'] is True
    assert set(spec) == {'url', 'host', 'port', 'database', 'user', 'password', 'sslmode', 'ssl_rootcert',
                         'connect_timeout'}


def test_state_hints_cover_every_state():
    for state in ('no_response', 'rejecting', 'auth_failed', 'not_allowed', 'database_missing', 'too_many_clients',
                  'accepting', 'error'):
        assert _pg.STATE_HINTS[state]


# A verifier PostgreSQL 15 stored for the password 'app-rollout-pw-0001' (the rollout scenario's test credential).
SCRAM_STORED = ('SCRAM-SHA-256$4096:S0hGZDiBX8VGYA2A5jv4Hg==$9kzvjaf4+adnuEwgP8EQku38vrsFGqDRLkU+MzOAgww=:'
                'mfE479PNrUKP7WR2l0BFfewREoVSvGvGAEMtoMCwpJ0=')
SCRAM_PASSWORD = 'app-rollout-pw-0001'


@pytest.mark.parametrize('stored, password, encryption, settled', [
    (SCRAM_STORED, SCRAM_PASSWORD, 'scram-sha-256', True),
    (SCRAM_STORED, SCRAM_PASSWORD + 'x', 'scram-sha-256', False),
    (SCRAM_STORED, SCRAM_STORED, 'scram-sha-256', True),
    (SCRAM_STORED, SCRAM_STORED.replace('4096', '4097'), 'scram-sha-256', False),
    # md5 is md5(password || role name), here role 'app'.
    ('md5' + __import__('hashlib').md5(b'secretapp').hexdigest(), 'secret', 'md5', True),
    # ...but a server that encrypts with scram-sha-256 would store a new verifier: a change.
    ('md5' + __import__('hashlib').md5(b'secretapp').hexdigest(), 'secret', 'scram-sha-256', False),
    (None, SCRAM_PASSWORD, 'scram-sha-256', False),
    (None, '', 'scram-sha-256', True),
    (SCRAM_STORED, '', 'scram-sha-256', False),
    ('SCRAM-SHA-256$garbage', SCRAM_PASSWORD, 'scram-sha-256', False),
    # Outside printable ASCII SASLprep would apply: left to postgresql_user.
    (SCRAM_STORED, SCRAM_PASSWORD + '\u00e9', 'scram-sha-256', False),
])
def test_password_settled(stored, password, encryption, settled):
    assert _pg.password_settled(stored, 'app', password, encryption) is settled


def test_a_verifier_is_not_a_plain_password():
    assert _pg.is_password_verifier(SCRAM_STORED)
    assert _pg.is_password_verifier('md5' + '0' * 32)
    assert not _pg.is_password_verifier(SCRAM_PASSWORD)
    assert not _pg.is_password_verifier('md5-is-not-a-hash')

"""Unit tests of postgres_state's comparisons (the real server's side is in tests/functional/test_postgres_state.py)."""

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS = os.path.join(ROOT, '.cache', 'collections')
if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)

from ansible_collections.shipyard.webstack.plugins.modules import postgres_state  # noqa: E402


@pytest.mark.parametrize('text, flags', [
    ('LOGIN', {'rolcanlogin': True}),
    ('login, nosuperuser,NOCREATEDB', {'rolcanlogin': True, 'rolsuper': False, 'rolcreatedb': False}),
    ('NOINHERIT', {'rolinherit': False}),
    ('', {}),
    ('LOGIN,NOSUCHFLAG', None),
    ('SUPERDUPER', None),
])
def test_parse_role_flags(text, flags):
    assert postgres_state.parse_role_flags(text) == flags


ROW = {'rolname': 'app', 'rolcanlogin': True, 'rolsuper': False, 'rolcreatedb': False, 'rolcreaterole': False,
       'rolinherit': True, 'rolreplication': False, 'rolbypassrls': False, 'rolpassword': None}


@pytest.mark.parametrize('spec, row, settled', [
    (dict(name='app', password=None, role_attr_flags='LOGIN', state='present'), ROW, True),
    (dict(name='app', password=None, role_attr_flags='LOGIN,CREATEDB', state='present'), ROW, False),
    (dict(name='app', password=None, role_attr_flags='LOGIN,BOGUS', state='present'), ROW, False),
    (dict(name='app', password=None, role_attr_flags='LOGIN', state='present'), None, False),
    (dict(name='app', password=None, role_attr_flags='', state='absent'), None, True),
    (dict(name='app', password=None, role_attr_flags='', state='absent'), ROW, False),
    # pg_authid was not readable (no rolpassword column): a password cannot be known to match.
    (dict(name='app', password='pw', role_attr_flags='LOGIN', state='present'),
     dict((k, v) for k, v in ROW.items() if k != 'rolpassword'), False),
])
def test_role_settled(spec, row, settled):
    assert postgres_state.role_settled(spec, row, 'scram-sha-256') is settled


@pytest.mark.parametrize('spec, row, settled', [
    (dict(name='app', owner='app', encoding='UTF8', state='present'), {'owner': 'app', 'encoding_matches': True}, True),
    (dict(name='app', owner='app', encoding='UTF8', state='present'), {'owner': 'postgres', 'encoding_matches': True}, False),
    (dict(name='app', owner='app', encoding='LATIN1', state='present'), {'owner': 'app', 'encoding_matches': False}, False),
    (dict(name='app', owner=None, encoding=None, state='present'), {'owner': 'x', 'encoding_matches': False}, True),
    (dict(name='app', owner='app', encoding='UTF8', state='present'), None, False),
    (dict(name='app', owner=None, encoding=None, state='absent'), None, True),
])
def test_database_settled(spec, row, settled):
    assert postgres_state.database_settled(spec, row) is settled


FUNCTION = dict(body='SELECT 1', owner='postgres', security_definer=True, execute_roles=['auth'])
GOOD = dict(body='SELECT 1', owner='postgres', security_definer=True, public_denied=True, executors={'auth'})


@pytest.mark.parametrize('rows, existing, settled', [
    ([GOOD], {'auth'}, True),
    ([], {'auth'}, False),
    ([GOOD], set(), False),
    ([dict(GOOD, public_denied=False)], {'auth'}, False),
    ([dict(GOOD, executors=set())], {'auth'}, False),
    ([dict(GOOD, owner='app')], {'auth'}, False),
    ([dict(GOOD, security_definer=False)], {'auth'}, False),
    ([dict(GOOD, body='SELECT 2'), GOOD], {'auth'}, True),
])
def test_function_settled(rows, existing, settled):
    assert postgres_state.function_settled(FUNCTION, rows, existing) is settled

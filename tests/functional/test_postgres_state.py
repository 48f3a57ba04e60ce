"""postgres_state against a real PostgreSQL on loopback.

Its answer is what lets the postgres and pgbouncer roles skip community.postgresql's modules, so every
"settled" it gives is checked against what those modules do on the same server: settled exactly when a
check-mode run of postgresql_user / postgresql_db / postgresql_ext reports no change.
"""

import uuid

import pytest

from deploy_runs import closed_port
from modrun import run_module
from pgservers import pg_server  # noqa: F401  pylint: disable=unused-import  # pytest fixture

MODULE = 'postgres_state'
COMMUNITY = 'ansible_collections.community.postgresql.plugins.modules.'
AUTH_BODY = 'SELECT usename::text, passwd::text FROM pg_catalog.pg_shadow WHERE usename = p_usename'


def login(pg):
    return dict(host=pg.host, port=pg.port, user=pg.superuser, password=pg.superuser_password, database='postgres')


def community_login(pg, database=None):
    args = dict(login_host=pg.host, port=pg.port, login_user=pg.superuser, login_password=pg.superuser_password)
    if database:
        args['login_db'] = database
    return args


def state(pg, **args):
    result = run_module(MODULE, dict(login(pg), **args))
    assert result['rc_process'] == 0 and not result.get('failed'), result
    assert result['changed'] is False
    return result


def community_changes(pg, module, args, database=None):
    """Whether a check-mode run of community.postgresql's ``module`` would change something."""
    result = run_module(COMMUNITY + module, dict(community_login(pg, database), **args), check_mode=True)
    assert not result.get('failed'), result
    return result['changed']


def unique(prefix):
    return '%s_%s' % (prefix, uuid.uuid4().hex[:8])


def test_roles_settled_exactly_when_postgresql_user_would_change_nothing(pg_server):
    pg = pg_server
    name, other = unique('role'), unique('gone')
    password = 'pw-%s' % uuid.uuid4().hex
    pg.sql("CREATE ROLE %s LOGIN NOSUPERUSER PASSWORD '%s'" % (name, password))
    verifier = pg.scram_secret(name)
    specs = [
        dict(name=name, password=password, role_attr_flags='LOGIN'),
        dict(name=name, password=password, role_attr_flags='LOGIN,NOSUPERUSER,NOCREATEDB,NOCREATEROLE'),
        dict(name=name, password=verifier, role_attr_flags='LOGIN'),
        dict(name=name, role_attr_flags='LOGIN'),
        dict(name=name, password='not-' + password, role_attr_flags='LOGIN'),
        dict(name=name, password=password, role_attr_flags='LOGIN,CREATEDB'),
        dict(name=name, password=password, role_attr_flags='NOLOGIN'),
        dict(name=name, password=''),
        dict(name=other, password=password, role_attr_flags='LOGIN'),
        dict(name=other, state='absent'),
        dict(name=name, state='absent'),
    ]
    expected = []
    for spec in specs:
        expected.append(community_changes(pg, 'postgresql_user', database='postgres', args=dict(
            name=spec['name'], password=spec.get('password'), role_attr_flags=spec.get('role_attr_flags', ''),
            state=spec.get('state', 'present'))))
    # The comparison is only worth something when both answers occur.
    assert expected == [False, False, False, False, True, True, True, True, True, False, True]
    for spec, changes in zip(specs, expected):
        result = state(pg, roles=[spec])
        assert (spec['name'] in result['roles_to_change']) is changes, (spec, result)
        assert password not in result['_stdout'] and verifier not in result['_stdout']


def test_a_password_outside_ascii_is_left_to_postgresql_user(pg_server):
    pg = pg_server
    name = unique('role')
    password = 'pässwörd-%s' % uuid.uuid4().hex[:6]
    pg.sql("CREATE ROLE %s LOGIN PASSWORD '%s'" % (name, password))
    assert state(pg, roles=[dict(name=name, password=password)])['roles_to_change'] == [name]


def test_databases_settled_exactly_when_postgresql_db_would_change_nothing(pg_server):
    pg = pg_server
    name, missing = unique('db'), unique('nodb')
    pg.sql("CREATE DATABASE %s OWNER %s ENCODING 'UTF8' TEMPLATE template0" % (name, pg.app_user))
    specs = [
        dict(name=name, owner=pg.app_user, encoding='UTF8'),
        dict(name=name, owner=pg.app_user, encoding='utf-8'),
        dict(name=name),
        dict(name=name, owner=pg.superuser, encoding='UTF8'),
        dict(name=missing, owner=pg.app_user, encoding='UTF8'),
        dict(name=missing, state='absent'),
        dict(name=name, state='absent'),
    ]
    expected = [community_changes(pg, 'postgresql_db', dict(
        name=s['name'], owner=s.get('owner', ''), encoding=s.get('encoding', ''), template='template0',
        state=s.get('state', 'present'))) for s in specs]
    assert expected == [False, False, False, True, True, False, True]
    for spec, changes in zip(specs, expected):
        assert (spec['name'] in state(pg, databases=[spec])['databases_to_change']) is changes, spec


def test_extensions_missing_by_database(pg_server):
    pg = pg_server
    name = unique('db')
    pg.sql('CREATE DATABASE %s' % name)
    spec = dict(name=name, extensions=['plpgsql', 'pg_trgm'])
    result = state(pg, databases=[spec])
    assert result['extensions_missing'] == {name: ['pg_trgm']}
    assert community_changes(pg, 'postgresql_ext', dict(name='plpgsql'), database=name) is False
    assert community_changes(pg, 'postgresql_ext', dict(name='pg_trgm'), database=name) is True
    # A database that is not there yet: all of its extensions are missing, nothing fails.
    gone = unique('nodb')
    assert state(pg, databases=[dict(name=gone, extensions=['plpgsql'])])['extensions_missing'] == {gone: ['plpgsql']}


def test_functions_settled_only_with_body_owner_and_privileges_as_wanted(pg_server):
    pg = pg_server
    name, reader = unique('db'), unique('auth')
    pg.sql('CREATE DATABASE %s' % name)
    pg.sql('CREATE ROLE %s LOGIN' % reader)
    spec = dict(database=name, schema='pgbouncer', name='get_auth', body=AUTH_BODY, execute_roles=[reader])
    assert state(pg, functions=[spec])['functions_to_change'] == [dict(database=name, schema='pgbouncer', name='get_auth')]
    for statement in [
            'CREATE SCHEMA pgbouncer AUTHORIZATION postgres',
            'REVOKE ALL ON SCHEMA pgbouncer FROM PUBLIC',
            'CREATE FUNCTION pgbouncer.get_auth(p_usename text) RETURNS TABLE(usename text, passwd text)'
            ' LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog AS $f$%s$f$' % AUTH_BODY,
            'REVOKE ALL ON FUNCTION pgbouncer.get_auth(text) FROM PUBLIC']:
        pg.sql(statement, database=name)
    # Created, but the reader may not run it yet.
    assert len(state(pg, functions=[spec])['functions_to_change']) == 1
    pg.sql('GRANT USAGE ON SCHEMA pgbouncer TO %s' % reader, database=name)
    pg.sql('GRANT EXECUTE ON FUNCTION pgbouncer.get_auth(text) TO %s' % reader, database=name)
    assert state(pg, functions=[spec])['functions_to_change'] == []
    assert len(state(pg, functions=[dict(spec, body=AUTH_BODY + ' ')])['functions_to_change']) == 1
    assert len(state(pg, functions=[dict(spec, execute_roles=[unique('nobody')])])['functions_to_change']) == 1
    pg.sql('GRANT EXECUTE ON FUNCTION pgbouncer.get_auth(text) TO PUBLIC', database=name)
    assert len(state(pg, functions=[spec])['functions_to_change']) == 1


def test_settings_and_pending_restart(pg_server):
    pg = pg_server
    result = state(pg, settings=['max_connections', 'superuser_reserved_connections'])
    assert result['running'] is True and result['state'] == 'accepting'
    assert result['settings'] == {'max_connections': str(pg.max_connections),
                                  'superuser_reserved_connections': pg.sql('SHOW superuser_reserved_connections')[0][0]}
    assert result['pending_restart'] == []
    pg.sql('ALTER SYSTEM SET max_prepared_transactions = 7')
    try:
        pg.sql('SELECT pg_catalog.pg_reload_conf()')
        assert state(pg)['pending_restart'] == ['max_prepared_transactions']
    finally:
        pg.sql('ALTER SYSTEM RESET max_prepared_transactions')
        pg.sql('SELECT pg_catalog.pg_reload_conf()')


def test_a_server_that_does_not_answer_is_reported_with_everything_to_change():
    roles = [dict(name='app', password='secret-never-printed-1')]
    databases = [dict(name='app', owner='app', extensions=['pg_trgm'])]
    functions = [dict(database='app', schema='pgbouncer', name='get_auth', body=AUTH_BODY)]
    result = run_module(MODULE, dict(host='127.0.0.1', port=closed_port(), user='postgres', password='x',
                                     roles=roles, databases=databases, functions=functions, settings=['max_connections']))
    assert not result.get('failed'), result
    assert result['running'] is False and result['state'] == 'no_response'
    assert result['roles_to_change'] == ['app'] and result['databases_to_change'] == ['app']
    assert result['extensions_missing'] == {'app': ['pg_trgm']}
    assert result['functions_to_change'] == [dict(database='app', schema='pgbouncer', name='get_auth')]
    assert result['settings'] == {'max_connections': None}
    assert 'secret-never-printed-1' not in result['_stdout']


def test_a_refused_login_fails_naming_the_cause_without_the_password(pg_server):
    pg = pg_server
    wrong = 'wrong-%s' % uuid.uuid4().hex
    result = run_module(MODULE, dict(login(pg), password=wrong, roles=[dict(name='x', password=wrong + 'r')]))
    assert result.get('failed'), result
    assert 'rejected the password' in result['msg']
    assert wrong not in result['_stdout']


@pytest.mark.parametrize('check_mode', [True, False])
def test_reads_the_same_in_check_mode(pg_server, check_mode):
    pg = pg_server
    result = run_module(MODULE, dict(login(pg), roles=[dict(name=pg.app_user, password=pg.app_password)]),
                        check_mode=check_mode)
    assert result['roles_to_change'] == [] and result['changed'] is False

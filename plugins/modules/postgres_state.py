#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, shipyard.webstack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: postgres_state
short_description: Which roles, databases, extensions and functions of a PostgreSQL server already are as wanted
version_added: 0.4.0
description:
  - Reads, over one connection (and one more per database whose extensions or functions are asked about), whether
    each wanted login role, database, extension and function already is as wanted, the settings that wait for a
    restart (C(pg_settings.pending_restart)) and the current value of the named settings.
  - The roles of this collection then skip the M(community.postgresql.postgresql_user),
    M(community.postgresql.postgresql_db), M(community.postgresql.postgresql_ext) and function-creating runs that would
    change nothing - one module run each on a deploy where nothing changes.
  - Passwords are compared with the stored verifier on the server's host (C(pg_authid.rolpassword)); no verifier is
    returned and no password is printed. A role counts as settled only when it is certain that setting it again would
    change nothing; when in doubt (a password outside printable ASCII, an unreadable C(pg_authid), an unknown flag)
    it is reported as to be changed, and the real module decides.
  - Reads only; changes nothing.
author:
  - shipyard.webstack contributors (@shipyard-webstack)
extends_documentation_fragment:
  - shipyard.webstack.postgres_connection
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reads the same in check mode.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  roles:
    description: Login roles as M(community.postgresql.postgresql_user) would be asked to make them.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: The role's name.
        type: str
        required: true
      password:
        description:
          - The password (or a C(SCRAM-SHA-256$...) or C(md5...) verifier) it should have. Omitted, the password is
            not looked at. Empty, the role should have none.
        type: str
      role_attr_flags:
        description:
          - Comma-separated attributes it should have (V(LOGIN,NOSUPERUSER)); the ones not named are not looked at.
        type: str
        default: ''
      state:
        description: Whether the role should exist.
        type: str
        choices: [present, absent]
        default: present
  databases:
    description: Databases as M(community.postgresql.postgresql_db) would be asked to make them, with their extensions.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: The database's name.
        type: str
        required: true
      owner:
        description: The role that should own it. Omitted, the owner is not looked at.
        type: str
      encoding:
        description: Its encoding (V(UTF8)). Omitted, the encoding is not looked at.
        type: str
      state:
        description: Whether the database should exist.
        type: str
        choices: [present, absent]
        default: present
      extensions:
        description: Extensions that should be installed in it.
        type: list
        elements: str
        default: []
  functions:
    description: Functions whose definition and privileges should be as given.
    type: list
    elements: dict
    default: []
    suboptions:
      database:
        description: The database the function is in.
        type: str
        required: true
      schema:
        description: Its schema.
        type: str
        required: true
      name:
        description: Its name.
        type: str
        required: true
      body:
        description: Its source text (C(pg_proc.prosrc)), exactly.
        type: str
        required: true
      owner:
        description: The role that should own it.
        type: str
        default: postgres
      security_definer:
        description: Whether it should run with its owner's rights.
        type: bool
        default: true
      execute_roles:
        description:
          - Roles that should be able to run it (C(EXECUTE) on it and C(USAGE) on its schema). C(PUBLIC) must not
            have C(EXECUTE) on it.
        type: list
        elements: str
        default: []
  settings:
    description: Settings whose current value to return (V(max_connections)).
    type: list
    elements: str
    default: []
notes:
  - Connect as a superuser (the roles use V(postgres) over the local socket), because only one may read C(pg_authid).
  - When nothing answers (no socket, connection refused) or the server rejects connections while it starts or
    stops, the module does not fail. It returns RV(running=false), with every role, database, extension and
    function to be changed, so that the caller runs its real modules, which then fail or succeed as they would have.
requirements:
  - psycopg (3) or psycopg2 on the host that runs the module.
'''

EXAMPLES = r'''
- name: Read which roles and databases are already as wanted
  shipyard.webstack.postgres_state:
    host: /var/run/postgresql
    user: postgres
    database: postgres
    roles:
      - {name: app, password: "{{ app_db_password }}", role_attr_flags: LOGIN}
    databases:
      - {name: app, owner: app, encoding: UTF8, extensions: [pg_trgm]}
  register: db_state
  no_log: true  # the arguments carry the passwords

- name: Create the role only when it is not as wanted
  community.postgresql.postgresql_user:
    name: app
    password: "{{ app_db_password }}"
  when: "'app' in db_state.roles_to_change"
  no_log: true
'''

RETURN = r'''
running:
  description: Whether the server answered. When false, every role, database, extension and function is to be changed.
  returned: always
  type: bool
  sample: true
state:
  description: How the connection went (V(accepting), or why not, as M(shipyard.webstack.health_poll) names it).
  returned: always
  type: str
  sample: accepting
pending_restart:
  description: The settings that wait for a restart, sorted.
  returned: always
  type: list
  elements: str
  sample: [shared_buffers]
settings:
  description: The current value of each of O(settings), as text; null when the server did not answer.
  returned: always
  type: dict
  sample: {"max_connections": "100"}
roles_to_change:
  description: The names from O(roles) that are not as wanted (a run of the real module would change them).
  returned: always
  type: list
  elements: str
  sample: [app]
databases_to_change:
  description: The names from O(databases) that are not as wanted (missing, other owner or encoding, or not absent).
  returned: always
  type: list
  elements: str
  sample: []
extensions_missing:
  description: By database name, the extensions from O(databases) that are not installed.
  returned: always
  type: dict
  sample: {"app": ["pg_trgm"]}
functions_to_change:
  description: The O(functions) that are missing or differ (body, owner, security, privileges), each with its C(database), C(schema) and C(name).
  returned: always
  type: list
  elements: dict
  sample: [{"database": "app", "schema": "pgbouncer", "name": "get_auth"}]
'''

import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.shipyard.webstack.plugins.module_utils._pg import (
    PG_DRIVER, PG_IMPORT_ERROR, PG_LIB_NAME, STATE_HINTS, classify_pg_error, connection_params, pg_connect,
    pg_connection_spec, pg_query, password_settled, sqlstate_of,
)
from ansible_collections.shipyard.webstack.plugins.module_utils._redact import redact

APPLICATION_NAME = 'shipyard.webstack postgres_state'

# role_attr_flags names -> pg_authid columns (as CREATE ROLE spells them).
ROLE_FLAGS = {
    'SUPERUSER': 'rolsuper', 'CREATEROLE': 'rolcreaterole', 'CREATEDB': 'rolcreatedb', 'INHERIT': 'rolinherit',
    'LOGIN': 'rolcanlogin', 'REPLICATION': 'rolreplication', 'BYPASSRLS': 'rolbypassrls',
}
_ROLE_COLUMNS = ['rolname'] + sorted(ROLE_FLAGS.values())
# A server that is down, starting or stopping: report, do not fail (the caller's real modules decide).
_NOT_RUNNING = ('no_response', 'rejecting')


class NotAnswering(Exception):
    def __init__(self, state):
        super(NotAnswering, self).__init__(state)
        self.state = state


def parse_role_flags(text):
    """'LOGIN,NOSUPERUSER' -> {'rolcanlogin': True, 'rolsuper': False}; None when a flag is unknown."""
    wanted = {}
    for flag in (part.strip().upper() for part in (text or '').split(',')):
        if not flag:
            continue
        value = not flag.startswith('NO') or flag[2:] not in ROLE_FLAGS
        name = flag if value else flag[2:]
        if name not in ROLE_FLAGS:
            return None
        wanted[ROLE_FLAGS[name]] = value
    return wanted


def role_settled(spec, row, password_encryption):
    """Whether postgresql_user with ``spec`` would leave the role (``row``: its pg_authid columns, or None) as it is."""
    if spec['state'] == 'absent':
        return row is None
    if row is None:
        return False
    flags = parse_role_flags(spec['role_attr_flags'])
    if flags is None or any(row[column] != value for column, value in flags.items()):
        return False
    if spec['password'] is None:
        return True
    if 'rolpassword' not in row:  # pg_authid was not readable
        return False
    return password_settled(row['rolpassword'], spec['name'], spec['password'], password_encryption)


def database_settled(spec, row):
    """Whether postgresql_db with ``spec`` would leave the database (``row``, or None) as it is."""
    if spec['state'] == 'absent':
        return row is None
    if row is None:
        return False
    if spec['owner'] and spec['owner'] != row['owner']:
        return False
    return not spec['encoding'] or row['encoding_matches']


def function_settled(spec, rows, existing_roles):
    """Whether one of ``rows`` (the functions of that schema and name) is as ``spec`` wants."""
    for row in rows:
        if (row['body'] == spec['body'] and row['owner'] == spec['owner']
                and row['security_definer'] == spec['security_definer'] and row['public_denied']
                and all(role in existing_roles and role in row['executors'] for role in spec['execute_roles'])):
            return True
    return False


def _rows(conn, sql, args=None):
    columns, rows = pg_query(conn, sql, args)
    return [dict(zip(columns, row)) for row in rows]


class Reader(object):
    def __init__(self, module):
        self.module = module
        self.params = connection_params(module.params)
        self.secrets = [s for s in [self.params.get('password')] + [r['password'] for r in module.params['roles']] if s]

    def connect(self, database=None):
        params = dict(self.params)
        if database:
            params['database'] = database
        try:
            return pg_connect(params, application_name=APPLICATION_NAME)
        except Exception as exc:  # the driver's error classes differ; classify by SQLSTATE and text
            state = classify_pg_error(str(exc), sqlstate_of(exc))
            if state in _NOT_RUNNING or (database and state == 'database_missing'):
                raise NotAnswering(state)
            self.module.fail_json(
                msg=redact('postgres_state could not connect to %s%s: %s (%s)' % (
                    params.get('host') or 'the local socket', ' database %s' % database if database else '',
                    str(exc).strip(), STATE_HINTS.get(state, state)), self.secrets),
                running=True, state=state)

    def read_server(self, conn):
        module = self.module
        pending = [row['name'] for row in _rows(
            conn, 'SELECT name FROM pg_catalog.pg_settings WHERE pending_restart ORDER BY name')]
        settings = {}
        for name in module.params['settings']:
            settings[name] = _rows(conn, 'SELECT pg_catalog.current_setting(%s) AS value', (name,))[0]['value']
        encryption = _rows(conn, "SELECT pg_catalog.current_setting('password_encryption') AS value")[0]['value']
        names = [spec['name'] for spec in module.params['roles']]
        try:
            found = names and _rows(
                conn, 'SELECT %s, rolpassword FROM pg_catalog.pg_authid WHERE rolname = ANY(%%s)'
                % ', '.join(_ROLE_COLUMNS), (names,))
        except Exception:  # not a superuser: no passwords to compare, the flags still can be
            found = _rows(conn, 'SELECT %s FROM pg_catalog.pg_roles WHERE rolname = ANY(%%s)'
                          % ', '.join(_ROLE_COLUMNS), (names,))
        roles = dict((row['rolname'], row) for row in found or [])
        databases = dict((row['name'], row) for spec in module.params['databases'] for row in _rows(
            conn,
            'SELECT d.datname AS name, pg_catalog.pg_get_userbyid(d.datdba) AS owner,'
            ' d.encoding = pg_catalog.pg_char_to_encoding(%s) AS encoding_matches'
            ' FROM pg_catalog.pg_database d WHERE d.datname = %s', (spec['encoding'] or '', spec['name'])))
        return dict(
            pending_restart=pending, settings=settings,
            roles_to_change=[spec['name'] for spec in module.params['roles']
                             if not role_settled(spec, roles.get(spec['name']), encryption)],
            databases_to_change=[spec['name'] for spec in module.params['databases']
                                 if not database_settled(spec, databases.get(spec['name']))],
        )

    def read_database(self, database, extensions, functions):
        """(missing extensions, functions to change) of one database; everything when it does not exist."""
        try:
            conn = self.connect(database)
        except NotAnswering:
            return list(extensions), list(functions)
        try:
            installed = set(row['extname'] for row in _rows(conn, 'SELECT extname FROM pg_catalog.pg_extension'))
            to_change = []
            for spec in functions:
                rows = _rows(
                    conn,
                    'SELECT p.oid, p.prosrc AS body, pg_catalog.pg_get_userbyid(p.proowner) AS owner,'
                    ' p.prosecdef AS security_definer, n.oid AS nspoid,'
                    ' p.proacl IS NOT NULL AND NOT EXISTS (SELECT 1 FROM pg_catalog.aclexplode(p.proacl) a'
                    "  WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE') AS public_denied"
                    ' FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace'
                    ' WHERE n.nspname = %s AND p.proname = %s', (spec['schema'], spec['name']))
                existing_roles = set(row['rolname'] for row in spec['execute_roles'] and _rows(
                    conn, 'SELECT rolname FROM pg_catalog.pg_roles WHERE rolname = ANY(%s)', (spec['execute_roles'],)))
                for row in rows:
                    row['executors'] = set(role for role in existing_roles if _rows(
                        conn,
                        "SELECT pg_catalog.has_function_privilege(%s, %s, 'EXECUTE')"
                        " AND pg_catalog.has_schema_privilege(%s, %s, 'USAGE') AS ok",
                        (role, row['oid'], role, row['nspoid']))[0]['ok'])
                if not function_settled(spec, rows, existing_roles):
                    to_change.append(spec)
            return [name for name in extensions if name not in installed], to_change
        finally:
            conn.close()

    def read(self):
        module = self.module
        everything = dict(
            pending_restart=[], settings=dict((name, None) for name in module.params['settings']),
            roles_to_change=[spec['name'] for spec in module.params['roles']],
            databases_to_change=[spec['name'] for spec in module.params['databases']],
        )
        functions_by_db = {}
        for spec in module.params['functions']:
            functions_by_db.setdefault(spec['database'], []).append(spec)
        extensions_by_db = dict((spec['name'], spec['extensions']) for spec in module.params['databases']
                                if spec['state'] == 'present' and spec['extensions'])
        try:
            conn = self.connect()
        except NotAnswering as exc:
            return dict(everything, running=False, state=exc.state, extensions_missing=extensions_by_db,
                        functions_to_change=module.params['functions'])
        try:
            result = self.read_server(conn)
        finally:
            conn.close()
        result.update(running=True, state='accepting', extensions_missing={}, functions_to_change=[])
        for database in sorted(set(extensions_by_db) | set(functions_by_db)):
            missing, functions = self.read_database(
                database, extensions_by_db.get(database, []), functions_by_db.get(database, []))
            if missing:
                result['extensions_missing'][database] = missing
            result['functions_to_change'].extend(functions)
        return result


def argument_spec():
    spec = pg_connection_spec()
    spec.update(
        roles=dict(type='list', elements='dict', default=[], options=dict(
            name=dict(type='str', required=True),
            password=dict(type='str', no_log=True),
            role_attr_flags=dict(type='str', default=''),
            state=dict(type='str', choices=['present', 'absent'], default='present'),
        )),
        databases=dict(type='list', elements='dict', default=[], options=dict(
            name=dict(type='str', required=True),
            owner=dict(type='str'),
            encoding=dict(type='str'),
            state=dict(type='str', choices=['present', 'absent'], default='present'),
            extensions=dict(type='list', elements='str', default=[]),
        )),
        functions=dict(type='list', elements='dict', default=[], options=dict(
            database=dict(type='str', required=True),
            schema=dict(type='str', required=True),
            name=dict(type='str', required=True),
            body=dict(type='str', required=True),
            owner=dict(type='str', default='postgres'),
            security_definer=dict(type='bool', default=True),
            execute_roles=dict(type='list', elements='str', default=[]),
        )),
        settings=dict(type='list', elements='str', default=[]),
    )
    return spec


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    if PG_DRIVER is None:
        module.fail_json(msg=missing_required_lib(PG_LIB_NAME), exception=PG_IMPORT_ERROR)
    reader = Reader(module)
    try:
        result = reader.read()
    except Exception as exc:  # never leak a traceback with connection details in it
        module.fail_json(msg=redact('postgres_state failed: %s: %s' % (type(exc).__name__, exc), reader.secrets),
                         exception=redact(traceback.format_exc(), reader.secrets))
    result['functions_to_change'] = [dict(database=f['database'], schema=f['schema'], name=f['name'])
                                     for f in result['functions_to_change']]
    module.exit_json(changed=False, **result)


if __name__ == '__main__':
    main()

# -*- coding: utf-8 -*-
# Copyright (c) 2026, shipyard.webstack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The checks of the roles' variables that argument specs cannot express: formats, ranges, how two
variables go together, the shape of list items. One set of rules serves two callers:

- each role's preflight, through the action shipyard.webstack.role_checks (it reads the role's variables
  from the task's variables itself, so no value passes through a task's arguments or result);
- deploy.yml's preflight, through the filter shipyard.webstack.role_check_violations, for every role a
  host gets, before the lock and before any role ran (the roles' defaults come from their argument
  specs, which equal defaults/main.yml by convention).

A rule whose input is missing or of the wrong type is skipped: the argument spec check names that.
Messages name variables and say what is wrong, never a value (a secret may sit in the wrong variable).
Checks that need facts, other hosts or a running service stay in the roles' preflight tasks.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible.errors import AnsibleFilterError
from ansible.module_utils.parsing.convert_bool import boolean

from ansible_collections.shipyard.webstack.plugins.filter.app import app_process_plan

RULES = {}      # role -> [rule function]
_UNDEFINED_RE = re.compile(r"'([A-Za-z_][A-Za-z0-9_]*)' is undefined")
READS = {}      # role -> [variable names its rules read], in first-use order


def as_number(value, kind=int, default=None):
    """value as a number of that kind, or default when it is not one (a bool is not a number here; a wrong
    type is the argument spec check's to name)."""
    if isinstance(value, bool):
        return default
    try:
        return kind(str(value).strip())
    except (TypeError, ValueError):
        return default


class _Unknown(Exception):
    """A rule's input is missing or not of the type the spec declares: skip the rule."""


class _Values(object):
    def __init__(self, values):
        self._values = values

    def __contains__(self, name):
        return name in self._values

    def raw(self, name):
        if name not in self._values:
            raise _Unknown(name)
        return self._values[name]

    def text(self, name):
        value = self.raw(name)
        if value is None:
            return ''
        if isinstance(value, (dict, list, bool)):
            raise _Unknown(name)
        return str(value)

    def number(self, name, kind):
        value = as_number(self.raw(name), kind)
        if value is None:
            raise _Unknown(name)
        return value

    def int(self, name):
        return self.number(name, int)

    def float(self, name):
        return self.number(name, float)

    def bool(self, name):
        try:
            return boolean(self.raw(name), strict=True)
        except TypeError:
            raise _Unknown(name)

    def list(self, name):
        value = self.raw(name)
        if value is None:
            return []
        if not isinstance(value, (list, tuple)):
            raise _Unknown(name)
        return list(value)

    def dict(self, name):
        value = self.raw(name)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise _Unknown(name)
        return value


def _rule(role, *reads):
    """Register a rule of a role; reads are the variables it looks at."""
    def register(function):
        RULES.setdefault(role, []).append(function)
        known = READS.setdefault(role, [])
        known.extend(name for name in reads if name not in known)
        return function
    return register


def _is_text(value):
    return isinstance(value, str)


def _absolute(path):
    return path.startswith('/') and len(path) > 1


def _dict_items(v, name):
    """(name[index], item) for the dict items of a list variable; other items are the spec check's to name."""
    for index, item in enumerate(v.list(name)):
        if isinstance(item, dict):
            yield '%s[%d]' % (name, index), item


# ------------------------------------------------------------------------------------------ docker
@_rule('docker', 'docker_install_source', 'docker_distribution_packages', 'docker_upstream_packages')
def _docker_packages(v):
    name = 'docker_distribution_packages' if v.text('docker_install_source') == 'distribution' else 'docker_upstream_packages'
    if not v.list(name):
        yield name, 'is empty: name the Docker Engine packages to install'


@_rule('docker', 'docker_log_max_size', 'docker_log_max_file')
def _docker_logs(v):
    if not re.match(r'^[0-9]+[kmg]?$', v.text('docker_log_max_size')):
        yield 'docker_log_max_size', 'must be a size like 10m, 500k or 1g'
    if v.int('docker_log_max_file') < 1:
        yield 'docker_log_max_file', 'must be at least 1'


@_rule('docker', 'docker_data_root')
def _docker_data_root(v):
    path = v.text('docker_data_root')
    if path and not path.startswith('/'):
        yield 'docker_data_root', 'must be an absolute path or empty'


@_rule('docker', 'docker_registry_ca_certs')
def _docker_registry_ca_certs(v):
    for index, item in enumerate(v.list('docker_registry_ca_certs')):
        item = item if isinstance(item, dict) else {}
        if not re.match(r'^[A-Za-z0-9.-]+(:[0-9]+)?$', str(item.get('registry') or '')):
            yield ('docker_registry_ca_certs[%d].registry' % index,
                   'must be a registry host or host:port (no scheme, no path)')
        if 'BEGIN CERTIFICATE' not in str(item.get('ca_cert') or ''):
            yield 'docker_registry_ca_certs[%d].ca_cert' % index, 'must hold a PEM certificate (BEGIN CERTIFICATE)'


@_rule('docker', 'docker_registry_logins')
def _docker_registry_logins(v):
    for index, item in enumerate(v.list('docker_registry_logins')):
        item = item if isinstance(item, dict) else {}
        for key in ('registry', 'username', 'password'):
            if not str(item.get(key) or ''):
                yield 'docker_registry_logins[%d].%s' % (index, key), 'is required but not set'


# ------------------------------------------------------------------------------------------- redis
@_rule('redis', 'redis_password')
def _redis_password(v):
    if len(v.text('redis_password')) < 16:
        yield 'redis_password', 'must be at least 16 characters (from a vault)'


@_rule('redis', 'redis_app_user', 'redis_app_password', 'redis_monitor_user', 'redis_monitor_password',
       'redis_acl_users')
def _redis_acl_users(v):
    def bad_name(name):
        return not re.match(r'^[A-Za-z0-9_.-]+$', name) or name == 'default'

    for user, password in (('redis_app_user', 'redis_app_password'), ('redis_monitor_user', 'redis_monitor_password')):
        if v.text(password) and bad_name(v.text(user)):
            yield user, "must be an ACL user name other than 'default' (letters, digits, _ . -)"
    for index, item in enumerate(v.list('redis_acl_users')):
        item = item if isinstance(item, dict) else {}
        if bad_name(str(item.get('name') or '')):
            yield 'redis_acl_users[%d].name' % index, "must be an ACL user name other than 'default' (letters, digits, _ . -)"
        if not str(item.get('password') or ''):
            yield 'redis_acl_users[%d].password' % index, 'is required but not set'
        if 'acl' not in item:
            yield 'redis_acl_users[%d].acl' % index, 'is required but not set (the ACL rules)'


@_rule('redis', 'redis_maxmemory')
def _redis_maxmemory(v):
    if not re.match(r'^[0-9]+([kmg]b?)?$', v.text('redis_maxmemory'), re.I):
        yield 'redis_maxmemory', 'must be a size like 256mb, 1gb or a number of bytes'


@_rule('redis', 'redis_tls_cert', 'redis_tls_key')
def _redis_tls(v):
    if bool(v.text('redis_tls_cert')) != bool(v.text('redis_tls_key')):
        yield 'redis_tls_cert and redis_tls_key', 'must be given together'


# ------------------------------------------------------------------------------------------- proxy
_SERVER_RE = re.compile(r'^(unix:/)?[A-Za-z0-9_.:/\[\]-]+$')


@_rule('proxy', 'proxy_upstreams')
def _proxy_upstreams(v):
    for name, upstream in v.dict('proxy_upstreams').items():
        where = 'proxy_upstreams.%s' % name
        if not re.match(r'^[a-z][a-z0-9_]*$', str(name)):
            yield where, 'an upstream name is lower case letters, digits and underscores, starting with a letter'
        if not isinstance(upstream, dict):
            yield where, 'must be a dict with the servers of both slots (blue, green)'
            continue
        for slot in ('blue', 'green'):
            servers = upstream.get(slot)
            if not isinstance(servers, (list, tuple)) or not servers:
                yield '%s.%s' % (where, slot), "must be a non-empty list of servers ('127.0.0.1:18000')"
            elif not all(_is_text(server) and _SERVER_RE.match(server) for server in servers):
                yield '%s.%s' % (where, slot), "every server must be host:port or unix:/path"
        if 'keepalive' in upstream and not re.match(r'^[0-9]+$', str(upstream['keepalive'])):
            yield '%s.keepalive' % where, 'must be an integer'
        if 'check_path' in upstream and not str(upstream['check_path']).startswith('/'):
            yield '%s.check_path' % where, "must start with '/'"


@_rule('proxy', 'proxy_routes', 'proxy_upstreams')
def _proxy_routes(v):
    upstreams = v.dict('proxy_upstreams')
    paths = []
    for index, route in enumerate(v.list('proxy_routes')):
        route = route if isinstance(route, dict) else {}
        path = route.get('path')
        where = 'proxy_routes[%d]' % index
        if not _is_text(path) or not path.startswith('/') or (path != '/' and path.endswith('/')) \
                or re.search(r'[\s{};]', path):
            yield where + '.path', "must start with '/', without a trailing '/', spaces, braces or semicolons"
        else:
            paths.append(path)
        if route.get('upstream') not in upstreams:
            yield where + '.upstream', 'must name a key of proxy_upstreams'
    repeated = sorted(set(path for path in paths if paths.count(path) > 1))
    if repeated:
        yield 'proxy_routes', 'each path may appear once (repeated: %s)' % ', '.join(repeated)


@_rule('proxy', 'proxy_health_path', 'proxy_routes')
def _proxy_health_path(v):
    path = v.text('proxy_health_path')
    routes = [route.get('path') for route in v.list('proxy_routes') if isinstance(route, dict)]
    if not re.match(r'^/[^\s{};]*$', path):
        yield 'proxy_health_path', "must be a path starting with '/', without spaces, braces or semicolons"
    elif path in routes:
        yield 'proxy_health_path', 'must be a path of its own, not one of proxy_routes'


@_rule('proxy', 'proxy_tls_enabled', 'proxy_tls_certificate', 'proxy_tls_certificate_key')
def _proxy_tls(v):
    if not v.bool('proxy_tls_enabled'):
        return
    if '-----BEGIN CERTIFICATE-----' not in v.text('proxy_tls_certificate'):
        yield 'proxy_tls_certificate', 'must hold the PEM certificate (chain): proxy_tls_enabled is true'
    if not re.search(r'-----BEGIN [A-Z ]*PRIVATE KEY-----', v.text('proxy_tls_certificate_key')):
        yield 'proxy_tls_certificate_key', 'must hold the PEM private key (from a vault): proxy_tls_enabled is true'


# --------------------------------------------------------------------------------------- pgbouncer
@_rule('pgbouncer', 'pgbouncer_auth_user')
def _pgbouncer_auth_user(v):
    if not re.match(r'^[a-z_][a-z0-9_]*$', v.text('pgbouncer_auth_user')):
        yield 'pgbouncer_auth_user', 'must be a plain lower-case identifier (letters, digits, _)'


@_rule('pgbouncer', 'pgbouncer_max_client_conn', 'pgbouncer_default_pool_size', 'pgbouncer_min_pool_size',
       'pgbouncer_server_login_retry')
def _pgbouncer_sizes(v):
    for name in ('pgbouncer_max_client_conn', 'pgbouncer_default_pool_size'):
        if v.int(name) < 1:
            yield name, 'must be positive'
    if v.int('pgbouncer_min_pool_size') > v.int('pgbouncer_default_pool_size'):
        yield 'pgbouncer_min_pool_size', 'must not be above pgbouncer_default_pool_size'
    if v.int('pgbouncer_server_login_retry') < 1:
        yield 'pgbouncer_server_login_retry', 'must be at least 1 (seconds)'


@_rule('pgbouncer', 'pgbouncer_auth_password', 'pgbouncer_admin_password', 'pgbouncer_stats_password')
def _pgbouncer_passwords(v):
    for name in ('pgbouncer_auth_password', 'pgbouncer_admin_password', 'pgbouncer_stats_password'):
        if name in v and not v.text(name):
            yield name, 'must not be empty (from a vault)'


# ---------------------------------------------------------------------------------------- postgres
_HBA_TYPES = ('local', 'host', 'hostssl', 'hostnossl')
_HBA_METHODS = ('scram-sha-256', 'cert', 'reject', 'peer')
_ANY_ADDRESS = ('0.0.0.0/0', '::/0', 'all')


@_rule('postgres', 'postgres_max_connections', 'postgres_superuser_reserved_connections')
def _postgres_connections(v):
    total, reserved = v.int('postgres_max_connections'), v.int('postgres_superuser_reserved_connections')
    if total < 1:
        yield 'postgres_max_connections', 'must be positive'
    if reserved < 0:
        yield 'postgres_superuser_reserved_connections', 'must not be negative'
    elif total >= 1 and reserved >= total:
        yield 'postgres_superuser_reserved_connections', 'must be below postgres_max_connections'


@_rule('postgres', 'postgres_listen_addresses', 'postgres_hba_allow_any')
def _postgres_listen(v):
    if '*' in v.list('postgres_listen_addresses') and not v.bool('postgres_hba_allow_any'):
        yield 'postgres_listen_addresses', "contains '*': list the addresses, or set postgres_hba_allow_any=true"


@_rule('postgres', 'postgres_hba_entries', 'postgres_hba_allow_any')
def _postgres_hba(v):
    allow_any = v.bool('postgres_hba_allow_any')
    for where, entry in _dict_items(v, 'postgres_hba_entries'):
        kind, method = entry.get('type', 'host'), entry.get('method', 'scram-sha-256')
        if kind not in _HBA_TYPES:
            yield where + '.type', 'must be one of: %s' % ', '.join(_HBA_TYPES)
        if method not in _HBA_METHODS:
            yield where + '.method', 'must be one of: %s (never trust, md5 or password)' % ', '.join(_HBA_METHODS)
        elif method == 'peer' and kind != 'local':
            yield where + '.method', 'peer is for type local only'
        if kind != 'local' and not str(entry.get('address') or ''):
            yield where + '.address', 'is required for a host line'
        if entry.get('address') in _ANY_ADDRESS and not allow_any:
            yield where + '.address', 'accepts any address: set postgres_hba_allow_any=true to allow it'


@_rule('postgres', 'postgres_tls_cert', 'postgres_tls_key', 'postgres_hba_require_tls')
def _postgres_tls(v):
    cert, key = v.text('postgres_tls_cert'), v.text('postgres_tls_key')
    if bool(cert) != bool(key):
        yield 'postgres_tls_cert and postgres_tls_key', 'must be given together'
    elif v.bool('postgres_hba_require_tls') and not cert:
        yield 'postgres_hba_require_tls', 'needs postgres_tls_cert and postgres_tls_key'


def _unknown_keys(where, item, known):
    """A misspelt key (passwrd) would be ignored, and the step would silently do something else."""
    unknown = sorted(str(key) for key in item if key not in known)
    if unknown:
        yield where, 'has unknown key(s) %s; known: %s' % (', '.join(unknown), ', '.join(known))


_POSTGRES_USER_KEYS = ('name', 'password', 'role_attr_flags', 'state')
_POSTGRES_DATABASE_KEYS = ('name', 'owner', 'encoding', 'extensions', 'state')


@_rule('postgres', 'postgres_users')
def _postgres_users(v):
    for where, user in _dict_items(v, 'postgres_users'):
        yield from _unknown_keys(where, user, _POSTGRES_USER_KEYS)
        if not str(user.get('name') or ''):
            yield where + '.name', 'is required but not set'
        state = user.get('state', 'present')
        if state not in ('present', 'absent'):
            yield where + '.state', 'must be one of: present, absent'
        elif state == 'present' and not str(user.get('password') or ''):
            yield where + '.password', 'is required for a present user (from a vault)'


@_rule('postgres', 'postgres_databases', 'postgres_users')
def _postgres_databases(v):
    owners = [user.get('name') for user in v.list('postgres_users') if isinstance(user, dict)] + ['postgres']
    for where, database in _dict_items(v, 'postgres_databases'):
        yield from _unknown_keys(where, database, _POSTGRES_DATABASE_KEYS)
        if not str(database.get('name') or ''):
            yield where + '.name', 'is required but not set'
        if 'owner' in database and database['owner'] not in owners:
            yield where + '.owner', 'must be postgres or one of postgres_users'


# --------------------------------------------------------------------------------------- db_backup
@_rule('db_backup', 'db_backup_on_calendar', 'db_backup_randomized_delay_sec', 'db_backup_restore_test_enabled',
       'db_backup_restore_test_on_calendar')
def _db_backup_schedule(v):
    if not v.text('db_backup_on_calendar'):
        yield 'db_backup_on_calendar', 'must be a systemd OnCalendar expression'
    if v.int('db_backup_randomized_delay_sec') < 0:
        yield 'db_backup_randomized_delay_sec', 'must not be negative'
    if v.bool('db_backup_restore_test_enabled') and not v.text('db_backup_restore_test_on_calendar'):
        yield 'db_backup_restore_test_on_calendar', 'must be a systemd OnCalendar expression (restore tests are on)'


@_rule('db_backup', 'db_backup_retention_days', 'db_backup_retention_daily', 'db_backup_retention_weekly',
       'db_backup_retention_monthly', 'db_backup_labelled_keep', 'db_backup_restore_test_top_tables')
def _db_backup_counts(v):
    for name in ('db_backup_retention_days', 'db_backup_retention_daily', 'db_backup_retention_weekly',
                 'db_backup_retention_monthly'):
        if v.int(name) < 0:
            yield name, 'must not be negative'
    for name in ('db_backup_labelled_keep', 'db_backup_restore_test_top_tables'):
        if v.int(name) < 1:
            yield name, 'must be at least 1'


@_rule('db_backup', 'db_backup_dir', 'db_backup_state_dir', 'db_backup_metrics_dir')
def _db_backup_dirs(v):
    backups, state, metrics = v.text('db_backup_dir'), v.text('db_backup_state_dir'), v.text('db_backup_metrics_dir')
    for name, path in (('db_backup_dir', backups), ('db_backup_state_dir', state)):
        if not _absolute(path):
            yield name, 'must be an absolute path'
    if backups == state:
        # The status file must stay writable when the backup disk is full.
        yield 'db_backup_state_dir', 'must differ from db_backup_dir'
    if metrics and not _absolute(metrics):
        yield 'db_backup_metrics_dir', 'must be empty or an absolute path'


@_rule('db_backup', 'db_backup_offsite_enabled', 'db_backup_offsite_host', 'db_backup_offsite_path',
       'db_backup_offsite_user', 'db_backup_offsite_manage_remote', 'db_backup_offsite_known_hosts')
def _db_backup_offsite(v):
    if not v.bool('db_backup_offsite_enabled'):
        return
    for name in ('db_backup_offsite_host', 'db_backup_offsite_user'):
        if not v.text(name):
            yield name, 'is required when db_backup_offsite_enabled is true'
    if not _absolute(v.text('db_backup_offsite_path')):
        yield 'db_backup_offsite_path', 'must be an absolute path'
    if not v.bool('db_backup_offsite_manage_remote') and not v.text('db_backup_offsite_known_hosts'):
        yield ('db_backup_offsite_known_hosts',
               "must hold the far side's host key lines (or set db_backup_offsite_manage_remote: true)")


# --------------------------------------------------------------------------------------------- app
_ENV_NAME_RE = re.compile(r'^[A-Za-z_][A-Za-z0-9_]*$')


@_rule('app', 'app_name')
def _app_name(v):
    if not re.match(r'^[a-z][a-z0-9-]*$', v.text('app_name')):
        yield 'app_name', "must be lower case letters, digits and '-', starting with a letter"


@_rule('app', 'app_slot_port_offset', 'app_keep_releases', 'app_health_successes', 'app_health_timeout',
       'app_rollout_drain_seconds')
def _app_counts(v):
    for name in ('app_slot_port_offset', 'app_keep_releases', 'app_health_successes'):
        if v.int(name) < 1:
            yield name, 'must be at least 1'
    if v.float('app_health_timeout') <= 0:
        yield 'app_health_timeout', 'must be above 0 (seconds)'
    if v.float('app_rollout_drain_seconds') < 0:
        yield 'app_rollout_drain_seconds', 'must not be negative'


@_rule('app', 'app_env', 'app_secret_env')
def _app_env(v):
    for variable in ('app_env', 'app_secret_env'):
        env = v.dict(variable)
        names = sorted(str(name) for name in env if not _ENV_NAME_RE.match(str(name)))
        if names:
            yield variable, 'every name must be a shell-style variable name (not: %s)' % ', '.join(names)
        # Docker's env file holds one NAME=value per line. Only the names of the culprits are told.
        spanning = sorted(str(name) for name, value in env.items() if '\n' in str(value))
        if spanning:
            yield variable, 'no value may span lines (values with a line break: %s)' % ', '.join(spanning)


@_rule('app', 'app_processes', 'app_process_defaults', 'app_host_port_base', 'app_slot_port_offset')
def _app_health(v):
    try:
        plan = app_process_plan(v.dict('app_processes'), v.dict('app_process_defaults'), v.int('app_host_port_base'),
                                v.int('app_slot_port_offset'))
    except AnsibleFilterError:
        return   # the plan's own errors are reported by the plan (deploy.yml's preflight, the role's plan task)
    missing = [process['name'] for process in plan if process['slotted'] and process['health'].get('type') != 'http']
    if missing:
        # A new slot must be proven before it takes traffic.
        yield ('app_processes', 'every process with ports needs an HTTP health check (health: {path: /health}); '
               'missing for: %s' % ', '.join(missing))


def undefined_variables(message):
    """The names of the undefined variables a template error message reports, sorted, each once: the only
    part of such a message that may be repeated (the rest can quote a value)."""
    return sorted(set(_UNDEFINED_RE.findall(str(message or ''))))


def role_checked_variables(role):
    """The variables the rules of a role read (the action reads these from the task's variables)."""
    if role not in READS:
        raise AnsibleFilterError('role_checked_variables: no checks for the role %s' % role)
    return list(READS[role])


def role_check_violations(values, roles, host='', specs=None):
    """Every violation of the roles' checks by these variables.

    values: {variable: value}; roles: a role name or the list of the roles the host gets; specs: {role: argument
    spec options}, whose defaults fill the variables values lacks (deploy.yml's preflight passes the host's
    defined variables only). Returns ['<variable> on <host> (role <role>): <what is wrong>', ...].
    """
    if not isinstance(values, dict):
        raise AnsibleFilterError('role_check_violations: expects a dict of variable -> value')
    roles = [roles] if isinstance(roles, str) else list(roles or [])
    out = []
    for role in roles:
        if role not in RULES:
            raise AnsibleFilterError('role_check_violations: no checks for the role %s' % role)
        merged = {}
        for name, option in ((specs or {}).get(role) or {}).items():
            if isinstance(option, dict) and 'default' in option:
                merged[name] = option['default']
        merged.update(values)
        checked = _Values(merged)
        for rule in RULES[role]:
            try:
                found = list(rule(checked))
            except _Unknown:
                continue
            out.extend('%s on %s (role %s): %s' % (name, host, role, what) for name, what in found)
    return out

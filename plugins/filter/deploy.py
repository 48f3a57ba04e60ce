# -*- coding: utf-8 -*-
# Copyright (c) 2026, shipyard.webstack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Cross-role preflight of playbooks/deploy.yml: every violation at once, by
variable name, never a secret's value.

deploy_secret_summary   {name: secret} -> {name: {length, placeholder}} (no values)
deploy_preflight_violations  {host: facts}, groups, policy -> [message, ...]
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible.errors import AnsibleFilterError

from ansible_collections.shipyard.webstack.plugins.filter.env_schema import DEFAULT_PLACEHOLDERS, find_placeholder
from ansible_collections.shipyard.webstack.plugins.filter.app import app_process_plan
from ansible_collections.shipyard.webstack.plugins.plugin_utils.role_checks import as_number

# A Docker image reference: [registry[:port]/]path[:tag][@sha256:<64 hex>]
_NAME_COMPONENT = r'[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*'
_REGISTRY = r'(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?/)'
_REPOSITORY_RE = re.compile(r'^%s?%s(?:/%s)*$' % (_REGISTRY, _NAME_COMPONENT, _NAME_COMPONENT))
_TAG_RE = re.compile(r'^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$')
_DIGEST_RE = re.compile(r'^sha256:[a-f0-9]{64}$')
_TLS_SSLMODES = ('require', 'verify-ca', 'verify-full')
_GOT_RE = re.compile(r',? \(?got .*$', re.S)


def deploy_secret_summary(secrets):
    """{name: value} -> {name: {set, length, placeholder}}: what the preflight needs, no value."""
    if not isinstance(secrets, dict):
        raise AnsibleFilterError('deploy_secret_summary: expects a dict of name -> secret')
    summary = {}
    for name, value in secrets.items():
        text = '' if value is None else str(value)
        summary[str(name)] = {
            'set': bool(text),
            'length': len(text),
            'placeholder': bool(text) and find_placeholder(text, DEFAULT_PLACEHOLDERS) is not None,
        }
    return summary


def valid_image_reference(repository, tag='', digest=''):
    """True when repository (+ tag or digest) is a valid Docker image reference."""
    repository = str(repository or '')
    if not repository or len(repository) > 255 or not _REPOSITORY_RE.match(repository):
        return False
    if digest:
        return bool(_DIGEST_RE.match(str(digest)))
    return bool(_TAG_RE.match(str(tag or 'latest')))


def _ports_of(host, facts):
    """[(port, variable)] this host listens on, by the groups it is in."""
    ports = []
    groups = facts.get('groups') or []
    if 'postgres' in groups and facts.get('postgres'):
        ports.append((facts['postgres'].get('port'), 'postgres_port'))
    if 'pgbouncer' in groups and facts.get('pgbouncer'):
        ports.append((facts['pgbouncer'].get('port'), 'pgbouncer_listen_port'))
    if 'redis' in groups and facts.get('redis'):
        ports.append((facts['redis'].get('port'), 'redis_port'))
        if facts['redis'].get('tls_port'):
            ports.append((facts['redis']['tls_port'], 'redis_tls_port'))
    app = facts.get('app') if 'app' in groups else None
    if app:
        proxy = facts.get('proxy') or {}
        ports.append((proxy.get('http_port'), 'proxy_http_port'))
        if proxy.get('tls'):
            ports.append((proxy.get('https_port'), 'proxy_https_port'))
        try:
            plan = app_process_plan(app.get('processes') or {}, None, app.get('host_port_base', 18000),
                                    app.get('slot_port_offset', 100))
        except (AnsibleFilterError, TypeError, ValueError, AttributeError):
            plan = []   # reported by _app_violations
        for proc in plan:
            for port in proc['ports']:
                for slot in ('blue', 'green'):
                    ports.append((port['host_ports'][slot],
                                  'app_processes.%s.ports[%s] (%s slot)' % (proc['name'], port['name'], slot)))
    return [(as_number(p), v) for p, v in ports if as_number(p) is not None]


def _port_violations(stack):
    out = []
    for host in sorted(stack):
        seen = {}
        for port, variable in _ports_of(host, stack[host]):
            seen.setdefault(port, []).append(variable)
        for port in sorted(seen):
            if len(seen[port]) > 1:
                out.append('ports: %s all use port %d on host %s; give each its own port'
                           % (' and '.join(seen[port]), port, host))
    return out


def _group_violations(stack, groups):
    out = []
    members = {g: list(groups.get(g) or []) for g in ('postgres', 'pgbouncer', 'redis', 'app', 'db_backup')}
    app_hosts = members['app']
    if not app_hosts:
        out.append("groups: the inventory has no host in the group 'app' (the hosts that run the app)")
    any_app = stack.get(app_hosts[0], {}).get('app') or {} if app_hosts else {}
    if not members['postgres'] and app_hosts and not (any_app.get('postgres_host') or any_app.get('database_url')):
        out.append("groups: no host in 'postgres' and neither app_postgres_host nor app_database_url is set: "
                   "the app has no database")
    if members['pgbouncer'] and not members['postgres']:
        for host in members['pgbouncer']:
            if not (stack.get(host, {}).get('pgbouncer') or {}).get('postgres_host'):
                out.append("groups: %s is in 'pgbouncer' but there is no host in 'postgres' and "
                           "pgbouncer_postgres_host is not set" % host)
    if members['db_backup'] and not members['postgres']:
        for host in members['db_backup']:
            if not (stack.get(host, {}).get('db_backup') or {}).get('connection_host'):
                out.append("groups: %s is in 'db_backup' but there is no host in 'postgres' and "
                           "db_backup_connection_host is not set" % host)
    if app_hosts and not members['redis'] and not (any_app.get('redis_host') or any_app.get('redis_url')
                                                   or not any_app.get('redis_enabled', True)):
        out.append("groups: no host in 'redis' and neither app_redis_host nor app_redis_url is set "
                   "(set app_redis_url_enabled: false when the app uses no Redis)")
    return out


def _pool_violations(stack, groups):
    out = []
    pg_hosts = [h for h in groups.get('postgres') or [] if stack.get(h, {}).get('postgres')]
    if not pg_hosts:
        return out
    demand = 0
    parts = []
    for host in groups.get('pgbouncer') or []:
        pgb = stack.get(host, {}).get('pgbouncer')
        if not pgb:
            continue
        sizes = [as_number(pgb.get(key, default)) for key, default in
                 (('max_db_connections', 0), ('default_pool_size', 20), ('reserve_pool_size', 5))]
        if None in sizes:
            continue   # not numbers: the role spec check names them
        per_db = sizes[0] or (sizes[1] + sizes[2])
        databases = max(as_number(pgb.get('databases'), default=1) or 1, 1)
        demand += per_db * databases
        parts.append(host)
    if not parts:
        return out
    direct = as_number(stack[pg_hosts[0]].get('direct_connections', 5), default=5)
    for host in pg_hosts:
        pg = stack[host]['postgres']
        max_connections = as_number(pg.get('max_connections', 100))
        reserved = as_number(pg.get('superuser_reserved', 3))
        if max_connections is None or reserved is None:
            continue
        usable = max_connections - reserved
        if demand + direct > usable:
            out.append('pools: the PgBouncer pools of %s can open %d server connections (pgbouncer_default_pool_size '
                       '+ pgbouncer_reserve_pool_size, or pgbouncer_max_db_connections, per database) plus %d direct '
                       '(migrations, backups: deploy_direct_connections) but postgres_max_connections on %s leaves %d '
                       '(after postgres_superuser_reserved_connections); raise postgres_max_connections or shrink '
                       'the pools' % (', '.join(parts), demand, direct, host, usable))
    return out


def _app_violations(stack, groups):
    out = []
    for host in groups.get('app') or []:
        app = stack.get(host, {}).get('app')
        if not app:
            continue
        if not valid_image_reference(app.get('image_repository'), app.get('image_tag'), app.get('image_digest')):
            what = 'app_image_digest' if app.get('image_digest') else 'app_image_tag'
            out.append('image: app_image_repository and %s on %s do not form a valid image reference '
                       '([registry/]name[:tag] or name@sha256:<64 hex>)' % (what, host))
        if as_number(app.get('host_port_base', 18000)) is None or as_number(app.get('slot_port_offset', 100)) is None:
            continue   # not numbers: the role spec check names them
        processes = app.get('processes') or {}
        if isinstance(processes, dict):
            # The plan expects each process to be a dict; say so by name rather than let it fail on one.
            shapeless = sorted(str(name) for name, spec in processes.items() if not isinstance(spec, dict))
            if shapeless:
                out.append('app_processes on %s: %s must be a dict of settings (command, ports, health, ...)'
                           % (host, ', '.join(shapeless)))
                continue
        try:
            app_process_plan(processes, None, app.get('host_port_base', 18000), app.get('slot_port_offset', 100))
        except AnsibleFilterError as exc:
            # The plan's messages end with what they were given ('got ...'): a process's env can hold secrets.
            reason = _GOT_RE.sub('', str(exc).split(': ', 1)[-1])
            out.append('app_processes on %s: %s' % (host, reason))
    return out


def _policy_violations(stack, groups, policy):
    out = []
    policy = policy or {}
    if not policy:
        return out
    env = policy.get('name', 'this environment')
    app_hosts = groups.get('app') or []
    if policy.get('require_tls'):
        for host in app_hosts:
            facts = stack.get(host, {})
            if not (facts.get('proxy') or {}).get('tls'):
                out.append('policy (%s requires TLS): proxy_tls_enabled is false on %s' % (env, host))
            app = facts.get('app') or {}
            if not groups.get('postgres') and app.get('sslmode') not in _TLS_SSLMODES:
                out.append('policy (%s requires TLS): app_database_sslmode on %s must be one of %s for an '
                           'external database' % (env, host, ', '.join(_TLS_SSLMODES)))
    if policy.get('require_backup_before_migrations'):
        if not groups.get('db_backup'):
            out.append("policy (%s requires the pre-migration backup): no host in 'db_backup'" % env)
        for host in app_hosts:
            if not (stack.get(host, {}).get('app') or {}).get('backup_before_migrations', True):
                out.append('policy (%s requires the pre-migration backup): app_backup_before_migrations is '
                           'false on %s' % (env, host))
    canary = policy.get('canary')
    if canary and app_hosts:
        serial = (stack.get(app_hosts[0], {}).get('app') or {}).get('rollout_serial') or [1, '100%']
        first = serial[0] if isinstance(serial, (list, tuple)) else serial
        if str(first) != str(canary):
            out.append('policy (%s requires a canary batch of %s): app_rollout_serial starts with a batch of %s'
                       % (env, canary, first))
    min_length = int(policy.get('min_secret_length') or 0)
    reported = set()
    for host in sorted(stack):
        for name, info in sorted((stack[host].get('secrets') or {}).items()):
            if not info.get('set') or name in reported:
                continue
            if min_length and info.get('length', 0) < min_length:
                out.append('policy (%s requires strong secrets): %s is %d characters, at least %d are required'
                           % (env, name, info.get('length', 0), min_length))
                reported.add(name)
            elif policy.get('forbid_placeholders', True) and info.get('placeholder'):
                out.append('policy (%s requires strong secrets): %s looks like a placeholder' % (env, name))
                reported.add(name)
    return out


def deploy_preflight_violations(stack, groups, policy=None):
    """Every cross-role violation of the stack; empty when the deploy may go on.

    stack: {host: {groups, postgres, pgbouncer, redis, proxy, app, db_backup, secrets}}
    groups: the inventory's groups; policy: deploy_policy (require_tls, min_secret_length,
    forbid_placeholders, require_backup_before_migrations, canary, name).
    """
    if not isinstance(stack, dict):
        raise AnsibleFilterError('deploy_preflight_violations: expects {host: facts}')
    groups = dict(groups or {})
    return (_group_violations(stack, groups) + _pool_violations(stack, groups) + _port_violations(stack)
            + _app_violations(stack, groups) + _policy_violations(stack, groups, policy))


def deploy_batches(hosts, serial=None):
    """The batches a play with this serial makes of hosts (Ansible's rules: numbers, 'N%', the last repeats)."""
    hosts = list(hosts or [])
    if serial in (None, '', 0, '0'):
        return [hosts] if hosts else []
    steps = serial if isinstance(serial, (list, tuple)) else [serial]
    batches = []
    index = 0
    step = 0
    while index < len(hosts):
        value = str(steps[min(step, len(steps) - 1)]).strip()
        if value.endswith('%'):
            size = int(len(hosts) * float(value[:-1]) / 100.0)
        else:
            size = int(value)
        size = max(size, 1)
        batches.append(hosts[index:index + size])
        index += size
        step += 1
    return batches


def deploy_durations(marks, end=None):
    """{phase: start timestamp} (in order) and the end -> {phase: seconds}, plus total."""
    items = sorted(((str(k), float(v)) for k, v in (marks or {}).items()), key=lambda kv: kv[1])
    out = {}
    for position, (phase, start) in enumerate(items):
        stop = items[position + 1][1] if position + 1 < len(items) else (float(end) if end is not None else start)
        if phase != 'start':
            out[phase] = round(stop - start, 1)
    if items and end is not None:
        out['total'] = round(float(end) - items[0][1], 1)
    return out


def deploy_host_summary(hostvars):
    """One app host's line of the deploy summary from its variables."""
    def get(name, default=None):
        try:
            value = hostvars[name]
        except (KeyError, TypeError):
            return default
        return default if value is None else value
    release = get('app_release', {}) or {}
    rollout = get('app_rollout_result', {}) or {}
    migration = get('app_release_migration', {}) or {}
    failure = get('deploy_phase_failure', {}) or {}
    return {
        'before': get('deploy_release_before', 'none'),
        'after': release.get('image', 'not resolved') if rollout.get('status') in ('changed', 'unchanged')
        else get('deploy_release_before', 'none'),
        'target': release.get('image', 'not resolved'),
        'rollout': rollout.get('status', 'not run'),
        'seconds': rollout.get('seconds', 0),
        # slot_rollout's phases on this host (start, health, switch, drain, stop), where it ran.
        'phases': rollout.get('phases') or {},
        'migrations': ('%s (%s)' % (migration.get('outcome'), migration.get('reason')) if migration.get('reason')
                       else migration.get('outcome', 'not run')),
        'failed': ('%s: %s' % (failure.get('phase'), failure.get('msg', ''))[:300]) if failure else '',
    }


class FilterModule(object):
    def filters(self):
        return {
            'deploy_preflight_violations': deploy_preflight_violations,
            'deploy_secret_summary': deploy_secret_summary,
            'deploy_batches': deploy_batches,
            'deploy_durations': deploy_durations,
            'deploy_host_summary': deploy_host_summary,
        }

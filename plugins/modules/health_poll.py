#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, shipyard.webstack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: health_poll
short_description: Wait until services are really ready, and say why when they are not
version_added: 0.1.0
description:
  - Polls a list of checks until all of them pass in the same round, O(consecutive_successes) rounds in a row.
  - Each check looks at what a service really does, not only whether a port is open.
    A C(tcp) port accepts connections; an C(http) endpoint answers an expected status and body;
    C(postgres) accepts an authenticated C(SELECT 1) (a wrong password, a missing database or
    C(max_connections) exhausted are reported as such, never as ready); C(pgbouncer) is not paused
    or suspended; C(redis) answers C(PONG) and not C(LOADING), C(BUSY), C(MISCONF) and so on;
    a C(docker) container runs and is healthy; a C(command) exits as expected.
  - On failure the message names each failing check, the state it was stuck in, its last error
    and a short excerpt of what the service answered. Passwords and URL credentials are never printed.
  - The module only reads, so it runs its checks in check mode too, and always reports RV(ignore:changed=false).
author:
  - shipyard.webstack contributors (@shipyard-webstack)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: The checks only read, so they also run in check mode and report real states.
  diff_mode:
    support: none
  platform:
    platforms: posix
requirements:
  - Only the Python standard library on the target, except for C(postgres) and C(pgbouncer) checks.
  - C(postgres) checks use psycopg (3) or psycopg2 when one is installed, else the C(pg_isready) and C(psql)
    programs (C(psql) is required for the authenticated query).
  - C(pgbouncer) checks need psycopg (3) or psycopg2.
options:
  checks:
    description:
      - The checks. Each item sets exactly one of O(checks[].tcp), O(checks[].http), O(checks[].postgres),
        O(checks[].pgbouncer), O(checks[].redis), O(checks[].docker) or O(checks[].command).
      - All checks run in every round, concurrently; the poll succeeds when all pass in the same round.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description:
          - Label of the check in results and messages. Defaults to the type and target, for example C(http http://127.0.0.1:8080/health).
        type: str
      timeout:
        description:
          - Seconds one attempt of this check may take. Defaults to O(check_timeout).
        type: float
      tcp:
        description: Something accepts TCP connections.
        type: dict
        suboptions:
          host:
            description: Host name or address.
            type: str
            required: true
          port:
            description: TCP port.
            type: int
            required: true
      http:
        description:
          - An HTTP or HTTPS endpoint answers one of O(checks[].http.status_codes), and its body matches.
          - Redirects are not followed; list 3xx codes in O(checks[].http.status_codes) to accept them.
        type: dict
        suboptions:
          url:
            description:
              - Full URL, for example V(http://127.0.0.1:8080/api/health). Credentials in the URL are sent
                as basic authentication and never printed (results show the URL with the password masked).
              - Mutually exclusive with O(checks[].http.port).
            type: str
          scheme:
            description: Scheme when O(checks[].http.url) is not given.
            type: str
            choices: [http, https]
            default: http
          host:
            description: Host to connect to when O(checks[].http.url) is not given.
            type: str
            default: 127.0.0.1
          port:
            description: Port to connect to when O(checks[].http.url) is not given.
            type: int
          path:
            description: Path (and query) when O(checks[].http.url) is not given.
            type: str
            default: /
          method:
            description: HTTP method.
            type: str
            default: GET
          status_codes:
            description: Statuses that count as ready. Defaults to any 2xx.
            type: list
            elements: int
          body_regex:
            description: A regular expression the body (first 64 KiB) must match (Python C(re.search)).
            type: str
          json_field:
            description:
              - Dotted path of a field the JSON body must have, for example V(status) or V(checks.db.status).
            type: str
          json_value:
            description:
              - Value O(checks[].http.json_field) must have. Without it the field only has to exist.
            type: raw
          headers:
            description:
              - Request headers. A C(Host) header selects a virtual host; over HTTPS it is also the name
                sent with SNI and verified in the certificate.
            type: dict
          validate_certs:
            description: Verify the server certificate over HTTPS.
            type: bool
            default: true
          ca_path:
            description: CA bundle used instead of the system CAs to verify the server.
            type: path
          client_cert:
            description: Client certificate (PEM) for mutual TLS.
            type: path
          client_key:
            description: Private key of O(checks[].http.client_cert) when not in the same file.
            type: path
      postgres:
        description:
          - A PostgreSQL server in the pg_isready sense (states V(no_response), V(rejecting), V(accepting)),
            then an authenticated C(SELECT 1).
          - States reported instead of ready include V(rejecting) (SQLSTATE 57P03, starting up or shutting down),
            V(auth_failed) (28P01), V(database_missing) (3D000), V(too_many_clients) (53300), V(not_allowed)
            (pg_hba.conf) and V(wrong_role).
        type: dict
        suboptions:
          url:
            description:
              - A libpq URL, for example V(postgresql://app@db:5432/app?sslmode=require). Explicit options override its parts.
            type: str
          host:
            description: Host name, address or unix socket directory.
            type: str
          port:
            description: Port; V(5432) when neither this nor the URL sets it.
            type: int
          database:
            description: Database to connect to.
            type: str
          user:
            description: Role to connect as.
            type: str
          password:
            description: Password of the role. Never printed.
            type: str
          sslmode:
            description: libpq SSL mode.
            type: str
            choices: [disable, allow, prefer, require, verify-ca, verify-full]
          ssl_rootcert:
            description: CA certificate to verify the server with.
            type: path
          connect_timeout:
            description: Seconds to wait for the connection (at most the attempt timeout; libpq's minimum is 2).
            type: int
            default: 5
          role:
            description:
              - Also require the server to be a primary (not in recovery) or a replica (C(pg_is_in_recovery())).
            type: str
            choices: [any, primary, replica]
            default: any
      pgbouncer:
        description:
          - The PgBouncer admin console answers (simple query protocol), and PgBouncer is neither paused nor
            suspended (C(SHOW STATE) where the version has it, C(SHOW DATABASES) in any case).
          - With O(checks[].pgbouncer.pool), also C(SELECT 1) through that pool. Before PgBouncer 1.21 (no C(SHOW STATE))
            a global C(PAUSE) or C(SUSPEND) shows only there, as the query left waiting (state V(pool_waiting)),
            so set O(checks[].pgbouncer.pool) on those versions.
          - States reported instead of ready include V(paused), V(suspended), V(disabled), V(pool_missing),
            V(pool_waiting) and the connection states of the C(postgres) check.
        type: dict
        suboptions:
          url:
            description: A libpq URL of the admin console; explicit options override its parts.
            type: str
          host:
            description: Host name, address or unix socket directory of PgBouncer.
            type: str
          port:
            description: PgBouncer's port; V(5432) when neither this nor the URL sets it.
            type: int
          database:
            description: The admin console database.
            type: str
            default: pgbouncer
          user:
            description: A user in PgBouncer's C(admin_users) or C(stats_users).
            type: str
          password:
            description: Password of O(checks[].pgbouncer.user). Never printed.
            type: str
          sslmode:
            description: libpq SSL mode.
            type: str
            choices: [disable, allow, prefer, require, verify-ca, verify-full]
          ssl_rootcert:
            description: CA certificate to verify PgBouncer with.
            type: path
          connect_timeout:
            description: Seconds to wait for a connection (at most the attempt timeout).
            type: int
            default: 5
          pool:
            description: A database defined in PgBouncer to run C(SELECT 1) through; it must not be paused or disabled.
            type: str
          pool_user:
            description: User for the query through O(checks[].pgbouncer.pool). Defaults to O(checks[].pgbouncer.user).
            type: str
          pool_password:
            description: Password of O(checks[].pgbouncer.pool_user). Defaults to O(checks[].pgbouncer.password).
            type: str
      redis:
        description:
          - Redis answers C(PING) with C(PONG) after C(AUTH). Error replies are reported by their code,
            among them V(LOADING), V(BUSY), V(MISCONF), V(NOAUTH), V(WRONGPASS), V(NOPERM), V(DENIED) and V(MASTERDOWN).
          - Speaks RESP with the Python standard library; the target needs no Redis client.
        type: dict
        suboptions:
          host:
            description: Host name or address.
            type: str
            default: 127.0.0.1
          port:
            description: Port.
            type: int
            default: 6379
          unix_socket:
            description: Path of a unix socket, used instead of O(checks[].redis.host) and O(checks[].redis.port).
            type: path
          username:
            description: ACL user (Redis 6 or later). Needs O(checks[].redis.password).
            type: str
          password:
            description: Password (C(requirepass) or the ACL user's). Never printed.
            type: str
          tls:
            description: Connect with TLS.
            type: bool
            default: false
          validate_certs:
            description: Verify the server certificate with TLS.
            type: bool
            default: true
          ca_path:
            description: CA bundle used instead of the system CAs.
            type: path
          client_cert:
            description: Client certificate (Redis requires one unless C(tls-auth-clients no)).
            type: path
          client_key:
            description: Private key of O(checks[].redis.client_cert) when not in the same file.
            type: path
          persistence:
            description:
              - Also require, from C(INFO), C(loading:0), C(rdb_last_bgsave_status:ok) and, with AOF on,
                C(aof_last_write_status:ok).
            type: bool
            default: false
          role:
            description: Also require this replication role; a replica also needs C(master_link_status:up).
            type: str
            choices: [master, replica]
      docker:
        description:
          - A container is running and, when it has a healthcheck, healthy; read through the Docker Engine API.
          - On failure the details carry the last health-log entries, the exit code and whether it was OOM-killed.
        type: dict
        suboptions:
          container:
            description: Container name or ID.
            type: str
            required: true
          docker_host:
            description: Engine API socket, as V(unix:///path) or a path.
            type: str
            default: unix:///var/run/docker.sock
          require_healthcheck:
            description: Fail with V(no_healthcheck) when the container has no healthcheck, instead of accepting V(running).
            type: bool
            default: false
      command:
        description: A command (no shell) exits with O(checks[].command.rc).
        type: dict
        suboptions:
          argv:
            description: Program and arguments.
            type: list
            elements: str
            required: true
          rc:
            description: Expected return code.
            type: int
            default: 0
          chdir:
            description: Working directory.
            type: path
  timeout:
    description:
      - Seconds to wait for all checks to pass, counted after O(start_period).
    type: float
    default: 300
  interval:
    description:
      - Seconds between the starts of two rounds.
    type: float
    default: 1
  backoff:
    description:
      - Factor the interval grows by after each failing round (V(1) keeps it fixed). It returns to
        O(interval) after a passing round.
    type: float
    default: 1
  max_interval:
    description:
      - Upper bound of the interval with O(backoff). Defaults to O(interval) times 10.
    type: float
  start_period:
    description:
      - Seconds during which failures are expected; they neither grow the backoff nor stop the poll
        with O(fail_fast), and O(timeout) starts after this period. A success during it counts at once.
    type: float
    default: 0
  consecutive_successes:
    description:
      - Number of passing rounds in a row needed (guards against a service that flaps).
      - A C(docker) check counts once, since it reads the state Docker keeps, which changes only when the image's
        HEALTHCHECK runs again. When such checks are all the poll still waits for, they are read every 0.1 s
        between rounds, so the poll ends at most 0.1 s after Docker reports the container healthy.
    type: int
    default: 1
  check_timeout:
    description:
      - Seconds one attempt of a check may take, unless the check sets O(checks[].timeout).
    type: float
    default: 5
  fail_fast:
    description:
      - Stop at once, after O(start_period), when a check is in a state that waiting cannot fix, namely
        V(auth_failed), V(not_allowed), V(database_missing), V(WRONGPASS), V(NOAUTH), V(NOPERM), V(DENIED),
        V(tls_error) (certificate not trusted) or V(no_executable).
      - With V(false) those states are retried until O(timeout) like any other.
    type: bool
    default: true
  login_refused:
    description:
      - What a poll that ends with only refused logins failing means - states V(auth_failed), V(not_allowed),
        V(database_missing), V(WRONGPASS), V(NOAUTH) or V(NOPERM), every other check passing.
      - V(fail) fails the module, as any failing check does.
      - V(report) ends without failure, with RV(ready=false) and the checks' names in RV(login_refused). For a
        preview (check mode) of a run that would first set those credentials (a rotated password, a user or
        database not created yet), where the refusal says nothing about the stack.
    type: str
    choices: [fail, report]
    default: fail
notes:
  - Rounds start O(interval) apart measured from start to start, so the wait between a service becoming
    ready and the module returning is at most one interval plus one round.
  - Each check's RV(checks[].history) lists the states it went through, with the second each was first seen.
seealso:
  - module: ansible.builtin.wait_for
    description: Waits for a port or a file; it cannot tell a ready service from an open port.
'''

EXAMPLES = r'''
- name: Wait for the new release's container to be healthy and to serve its health endpoint
  shipyard.webstack.health_poll:
    checks:
      - name: api
        http:
          url: "http://127.0.0.1:{{ app_slot_port }}/api/health"
          json_field: status
          json_value: ok
      - name: container
        docker:
          container: "app-web-{{ app_slot }}"
    timeout: 120
    interval: 1
    consecutive_successes: 3

- name: Wait for the data tier after a restart
  shipyard.webstack.health_poll:
    checks:
      - name: postgres
        postgres:
          host: 127.0.0.1
          port: 5432
          database: app
          user: app
          password: "{{ postgres_app_password }}"
          role: primary
      - name: pgbouncer
        pgbouncer:
          host: 127.0.0.1
          port: 6432
          user: pgbouncer_admin
          password: "{{ pgbouncer_admin_password }}"
          pool: app
          pool_user: app
          pool_password: "{{ postgres_app_password }}"
      - name: redis
        redis:
          port: 6379
          password: "{{ redis_password }}"
          persistence: true
    start_period: 10
    timeout: 60
    backoff: 1.5
    max_interval: 5
  no_log: false  # the module never prints the passwords

- name: Wait for a vhost behind nginx over TLS with a private CA
  shipyard.webstack.health_poll:
    checks:
      - http:
          url: https://127.0.0.1/api/health
          headers:
            Host: app.example.com
          ca_path: /etc/ssl/private-ca.pem
          status_codes: [200, 204]
    timeout: 30

- name: Wait for a custom readiness command
  shipyard.webstack.health_poll:
    checks:
      - command:
          argv: [/usr/local/bin/app, healthcheck]
        timeout: 10
    timeout: 60
'''

RETURN = r'''
checks:
  description: One entry per check, in the order given.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The check's name.
      type: str
      sample: api
    type:
      description: The check type.
      type: str
      sample: http
    target:
      description: What the check looks at (credentials masked).
      type: str
      sample: http://127.0.0.1:8080/api/health
    ok:
      description: Whether the check passed in the last round.
      type: bool
      sample: true
    state:
      description:
        - State in the last round, for example V(accepting), V(rejecting), V(auth_failed), V(healthy),
          V(starting), V(unhealthy), V(LOADING), V(MISCONF), V(bad_status), V(body_mismatch), V(paused), V(refused).
      type: str
      sample: ok
    attempts:
      description: How many times the check ran.
      type: int
      sample: 4
    elapsed:
      description:
        - Seconds from the start until the check passed for good (the end of the first attempt of its
          final passing streak); when it did not pass, seconds until its last attempt ended.
      type: float
      sample: 2.513
    last_error:
      description: The last error this check reported, even if it passed later; null if it never failed.
      type: str
      sample: "HTTP 503 (expected any 2xx)"
    details:
      description:
        - What the last attempt saw, by type. C(http) - status, reason, body_excerpt. C(postgres) - role,
          server_version, sqlstate. C(pgbouncer) - version, source. C(redis) - role, loading and persistence
          fields with O(checks[].redis.persistence). C(docker) - status, health, exit_code, oom_killed,
          restart_count, health_log (last entries). C(command) - rc, stdout, stderr.
      type: dict
      sample: {"status": 200, "reason": "OK", "body_excerpt": "{\"status\": \"ok\"}"}
    history:
      description: The states the check went through, each with the second (from the start) it was first seen.
      type: list
      elements: dict
      sample: [{"state": "refused", "at": 0.0}, {"state": "ok", "at": 2.51}]
elapsed:
  description: Seconds the whole poll took.
  returned: always
  type: float
  sample: 2.6
rounds:
  description: How many rounds ran.
  returned: always
  type: int
  sample: 4
ready:
  description: Whether all checks passed the required number of rounds in a row.
  returned: always
  type: bool
  sample: true
login_refused:
  description: With O(login_refused=report), the checks whose login was refused (nothing else failed).
  returned: when O(login_refused=report) excused the failure
  type: list
  elements: str
  sample: [postgres, redis]
'''

import functools
import traceback

try:
    from urllib.parse import unquote
except ImportError:  # pragma: no cover - Python 2 is not supported
    from urllib import unquote  # type: ignore

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.shipyard.webstack.plugins.module_utils._pg import (
    PG_DRIVER,
    PG_IMPORT_ERROR,
    PG_LIB_NAME,
    STATE_HINTS,
    parse_pg_url,
    pg_connection_spec,
)
from ansible_collections.shipyard.webstack.plugins.module_utils._probes import (
    CHECK_TYPES,
    LOGIN_REFUSED_STATES,
    PROBES,
    REDIS_HINTS,
    Check,
    describe_target,
    excerpt,
    poll,
    probe_postgres,
)
from ansible_collections.shipyard.webstack.plugins.module_utils._redact import redact


def _postgres_spec():
    spec = pg_connection_spec()
    spec['role'] = dict(type='str', choices=['any', 'primary', 'replica'], default='any')
    return spec


def _pgbouncer_spec():
    spec = pg_connection_spec()
    spec['database'] = dict(type='str', default='pgbouncer')
    spec.update(
        pool=dict(type='str'),
        pool_user=dict(type='str'),
        pool_password=dict(type='str', no_log=True),
    )
    return spec


def check_spec():
    """Options of one item of ``checks``."""
    return dict(
        name=dict(type='str'),
        timeout=dict(type='float'),
        tcp=dict(type='dict', options=dict(
            host=dict(type='str', required=True),
            port=dict(type='int', required=True),
        )),
        http=dict(type='dict', options=dict(
            # Not no_log (the URL is useful in results): its password joins no_log_values in build_checks().
            url=dict(type='str'),
            scheme=dict(type='str', choices=['http', 'https'], default='http'),
            host=dict(type='str', default='127.0.0.1'),
            port=dict(type='int'),
            path=dict(type='str', default='/'),
            method=dict(type='str', default='GET'),
            status_codes=dict(type='list', elements='int'),
            body_regex=dict(type='str'),
            json_field=dict(type='str'),
            json_value=dict(type='raw'),
            headers=dict(type='dict'),
            validate_certs=dict(type='bool', default=True),
            ca_path=dict(type='path'),
            client_cert=dict(type='path'),
            client_key=dict(type='path', no_log=False),
        ), mutually_exclusive=[['url', 'port']], required_one_of=[['url', 'port']],
            required_by={'json_value': 'json_field'}),
        postgres=dict(type='dict', options=_postgres_spec()),
        pgbouncer=dict(type='dict', options=_pgbouncer_spec()),
        redis=dict(type='dict', options=dict(
            host=dict(type='str', default='127.0.0.1'),
            port=dict(type='int', default=6379),
            unix_socket=dict(type='path'),
            username=dict(type='str'),
            password=dict(type='str', no_log=True),
            tls=dict(type='bool', default=False),
            validate_certs=dict(type='bool', default=True),
            ca_path=dict(type='path'),
            client_cert=dict(type='path'),
            client_key=dict(type='path', no_log=False),
            persistence=dict(type='bool', default=False),
            role=dict(type='str', choices=['master', 'replica']),
        ), required_by={'username': 'password'}),
        docker=dict(type='dict', options=dict(
            container=dict(type='str', required=True),
            docker_host=dict(type='str', default='unix:///var/run/docker.sock'),
            require_healthcheck=dict(type='bool', default=False),
        )),
        command=dict(type='dict', options=dict(
            argv=dict(type='list', elements='str', required=True),
            rc=dict(type='int', default=0),
            chdir=dict(type='path'),
        )),
    )


def argument_spec():
    return dict(
        checks=dict(type='list', elements='dict', required=True, options=check_spec(),
                    mutually_exclusive=[list(CHECK_TYPES)], required_one_of=[list(CHECK_TYPES)]),
        timeout=dict(type='float', default=300),
        interval=dict(type='float', default=1),
        backoff=dict(type='float', default=1),
        max_interval=dict(type='float'),
        start_period=dict(type='float', default=0),
        consecutive_successes=dict(type='int', default=1),
        check_timeout=dict(type='float', default=5),
        fail_fast=dict(type='bool', default=True),
        login_refused=dict(type='str', choices=['fail', 'report'], default='fail'),
    )


SECRET_HEADERS = ('authorization', 'proxy-authorization', 'cookie', 'x-api-key', 'x-auth-token')


def check_secrets(kind, options):
    """Secret values of one check, to mask in anything it reports."""
    secrets = [options.get('password'), options.get('pool_password')]
    url = options.get('url')
    if url and kind in ('postgres', 'pgbouncer'):
        try:
            secrets.append(parse_pg_url(url).get('password'))
        except ValueError:
            pass
    elif url and '@' in url:
        password = url.split('://', 1)[-1].split('@', 1)[0].partition(':')[2]
        secrets.extend([password, unquote(password)])
    for key, value in (options.get('headers') or {}).items():
        if str(key).lower() in SECRET_HEADERS and value:
            secrets.append(str(value))
            secrets.extend(str(value).split())  # "Bearer <token>": the token alone too
    return [s for s in secrets if s]


def build_checks(module):
    checks = []
    for index, item in enumerate(module.params['checks']):
        kind = [k for k in CHECK_TYPES if item.get(k) is not None][0]
        options = item[kind]
        if kind == 'postgres' and options.get('url'):
            try:
                parse_pg_url(options['url'])
            except ValueError as exc:
                module.fail_json(msg='checks[%d].postgres.url: %s' % (index, exc))
        name = item.get('name') or '%s %s' % (kind, describe_target(kind, options))
        timeout = item.get('timeout') or module.params['check_timeout']
        secrets = check_secrets(kind, options)
        # Ansible then masks these values anywhere in the output, the echoed arguments included.
        module.no_log_values.update(secrets)
        check = Check(name, kind, options, timeout, secrets)
        check.named = bool(item.get('name'))
        checks.append(check)
    return checks


def postgres_clients(module):
    """pg_isready/psql for postgres checks when no driver is installed; fails like missing_required_lib otherwise."""
    clients = dict(pg_isready=module.get_bin_path('pg_isready'), psql=module.get_bin_path('psql'))
    if not clients['psql']:
        module.fail_json(msg=missing_required_lib(PG_LIB_NAME) + ' (or the psql client program, for postgres checks)',
                         exception=PG_IMPORT_ERROR)
    return clients


def select_probes(module, checks):
    probes = dict(PROBES)
    kinds = set(check.kind for check in checks)
    if PG_DRIVER is None and 'pgbouncer' in kinds:
        module.fail_json(msg=missing_required_lib(PG_LIB_NAME) + ' (pgbouncer checks need a driver)',
                         exception=PG_IMPORT_ERROR)
    if PG_DRIVER is None and 'postgres' in kinds:
        probes['postgres'] = functools.partial(probe_postgres, clients=postgres_clients(module))
    return probes


def validate_policy(module):
    p = module.params
    problems = []
    if p['timeout'] < 0:
        problems.append('timeout must be 0 or more')
    if p['interval'] <= 0:
        problems.append('interval must be more than 0')
    if p['backoff'] < 1:
        problems.append('backoff must be 1 or more')
    if p['max_interval'] is not None and p['max_interval'] < p['interval']:
        problems.append('max_interval must not be less than interval')
    if p['start_period'] < 0:
        problems.append('start_period must be 0 or more')
    if p['consecutive_successes'] < 1:
        problems.append('consecutive_successes must be 1 or more')
    if p['check_timeout'] <= 0:
        problems.append('check_timeout must be more than 0')
    for index, item in enumerate(p['checks']):
        if item.get('timeout') is not None and item['timeout'] <= 0:
            problems.append('checks[%d].timeout must be more than 0' % index)
    if problems:
        module.fail_json(msg='; '.join(problems))


def state_hint(kind, state):
    if kind in ('postgres', 'pgbouncer') and state in STATE_HINTS:
        return STATE_HINTS[state]
    if kind == 'redis':
        return REDIS_HINTS.get(state)
    return None


def describe_failure(check):
    """One sentence per failing check: name, target, stuck state, last error, body/log excerpt."""
    report = check.report()
    last = check.last or {}
    failure = check.last_failure or last
    state = last.get('state') if not last.get('ok') else failure.get('state')
    label = "'%s' (%s %s)" % (report['name'], check.kind, report['target']) if check.named \
        else "'%s'" % report['name']
    text = "check %s %s in state '%s' after %d attempt(s)" % (
        label, 'stuck' if not last.get('ok') else 'flapped', state, report['attempts'])
    hint = state_hint(check.kind, state)
    if hint:
        text += ' (%s)' % hint
    if report['last_error']:
        text += ': %s' % report['last_error']
    details = (failure.get('details') or {})
    if details.get('body_excerpt'):
        text += '; body: %s' % excerpt(details['body_excerpt'], 200)
    if details.get('health_log'):
        entry = details['health_log'][-1]
        text += '; last health check: exit %s, %s' % (entry.get('exit_code'), excerpt(entry.get('output'), 200))
    return redact(text, check.secrets)


def failure_message(outcome, params):
    if outcome.reason == 'permanent':
        head = 'health_poll stopped after %.1fs: a check is in a state waiting cannot fix (fail_fast)' % outcome.elapsed
    else:
        head = 'health_poll timed out after %.1fs (timeout %gs%s)' % (
            outcome.elapsed, params['timeout'],
            ', start_period %gs' % params['start_period'] if params['start_period'] else '')
    failing = [c for c in outcome.checks if not c.last['ok']]
    if not failing:
        # Everything passed in the last round, but not enough rounds in a row: a flapping service.
        head += '; all checks passed the last %d round(s) in a row, %d needed' % (
            outcome.streak, params['consecutive_successes'])
        failing = [c for c in outcome.checks if c.last_failure]
    return head + '. ' + '. '.join(describe_failure(c) for c in failing)


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    params = module.params
    validate_policy(module)
    checks = build_checks(module)
    probes = select_probes(module, checks)
    max_interval = params['max_interval'] if params['max_interval'] is not None else params['interval'] * 10
    try:
        outcome = poll(checks, params['timeout'], interval=params['interval'], backoff=params['backoff'],
                       max_interval=max_interval, start_period=params['start_period'],
                       consecutive_successes=params['consecutive_successes'], fail_fast=params['fail_fast'],
                       probes=probes)
    except Exception as exc:  # never leak a traceback with connection details in it
        secrets = [s for c in checks for s in c.secrets]
        module.fail_json(msg=redact('health_poll failed: %s: %s' % (type(exc).__name__, exc), secrets),
                         exception=redact(traceback.format_exc(), secrets))
    result = dict(changed=False, checks=[c.report() for c in checks], elapsed=round(outcome.elapsed, 3),
                  rounds=outcome.rounds, ready=outcome.ok)
    if outcome.ok:
        module.exit_json(msg='all %d check(s) passed after %.1fs (%d round(s))' % (
            len(checks), outcome.elapsed, outcome.rounds), **result)
    failing = [c for c in checks if not c.last['ok']]
    if params['login_refused'] == 'report' and failing and all(c.last['state'] in LOGIN_REFUSED_STATES for c in failing):
        result['login_refused'] = [c.name for c in failing]
        module.exit_json(msg='login refused (reported, not failed): ' + failure_message(outcome, params), **result)
    module.fail_json(msg=failure_message(outcome, params), **result)


if __name__ == '__main__':
    main()

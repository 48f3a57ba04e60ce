#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, shipyard.webstack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: migration_gate
short_description: Run database migrations once, under a PostgreSQL advisory lock, on a direct connection
version_added: 0.1.0
description:
  - Runs a migration command at most once per release and migrations fingerprint, and records the
    outcome in a ledger table in the database.
  - Connects B(directly) to PostgreSQL and refuses a connection through a connection pooler such as
    PgBouncer, because session advisory locks do not hold through transaction pooling. Give it the
    E(DIRECT_URL), not the pooled E(DATABASE_URL).
  - Holds a session advisory lock on its own connection for the whole run, so two gates started at once
    on the same O(lock_key) run the migrations once; the second waits, then finds the release in the ledger
    and skips. If the module's process dies, its session ends and PostgreSQL drops the lock with it.
  - Decision, in order. O(force) runs. The ledger has a successful row for O(release) and the fingerprint
    skips (V(changed=false)). The O(status_command) exiting 0 skips and records an V(up_to_date) row;
    exiting 1 runs; any other exit fails. Without a status command, the migrations run.
  - When they run, O(pre_command) runs first (for example a backup), then O(command) under O(timeout);
    a command over its timeout has its whole process group killed and is recorded as V(timeout).
  - The ledger keeps at most 4 KB of the end of the output, with the connection password, URL credentials
    and secret-looking values of O(env) masked.
  - The whole module runs on one host; use it with C(run_once) in a play over several hosts.
author:
  - shipyard.webstack contributors (@shipyard-webstack)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - shipyard.webstack.postgres_connection
attributes:
  check_mode:
    support: full
    details:
      - Connects and checks the connection is direct, reads the ledger if it exists, and runs
        O(fingerprint_command) and O(status_command), which must therefore not change anything.
      - When PostgreSQL refuses the login in a way the same run may be about to fix (password rejected,
        no pg_hba.conf entry, database missing; the data tier roles only preview those in check mode), it
        warns that it cannot tell and returns RV(pending=null) instead of failing.
      - Takes no lock, runs neither O(pre_command) nor O(command), and writes nothing (it does not even create
        the ledger table). Reports RV(pending) and RV(would_run).
  diff_mode:
    support: full
    details:
      - Shows whether the release and fingerprint are recorded as applied before and after.
  platform:
    platforms: posix
options:
  release:
    description:
      - Identifier of the release being deployed, for example the image digest. Recorded in the ledger.
    type: str
    required: true
  fingerprint:
    description:
      - Fingerprint of the release's migrations (for example a hash of the migrations directory).
      - A release is skipped only when the ledger has a successful row with this release B(and) this fingerprint.
      - Mutually exclusive with O(fingerprint_command). When neither is given, the fingerprint is O(release).
    type: str
  fingerprint_command:
    description:
      - Command (argv list) whose standard output identifies the migrations, for example a listing of
        migration files with their checksums. Its output is hashed (SHA-256, line endings and blank lines
        ignored) into the fingerprint.
      - Runs in check mode too, so it must not change anything. Limited by O(status_timeout).
    type: list
    elements: str
  lock_key:
    description:
      - The advisory lock key. An integer (a PostgreSQL bigint), or any other string, which is hashed
        with SHA-256 to a bigint, so the same name gives the same key on every host and run.
      - All gates migrating the same database must use the same key.
    type: str
    default: shipyard.webstack.migrations
  lock_timeout:
    description:
      - Seconds to wait for the lock. On expiry the module fails and names the session holding the lock
        (pid, application_name, client address, since when).
    type: float
    default: 600
  ledger_table:
    description:
      - The ledger table, as C(schema.table) (or C(table) for the C(public) schema). Created, with its schema,
        if missing; the connecting user needs the privileges for that on the first run.
    type: str
    default: public.shipyard_migrations
  command:
    description:
      - The migration command, as an argv list (no shell), for example
        C([docker, run, --rm, --env-file, /etc/app/env, IMAGE, npx, prisma, migrate, deploy]).
    type: list
    elements: str
    required: true
  env:
    description:
      - Environment variables added to the module's environment for O(command), O(status_command),
        O(pre_command) and O(fingerprint_command).
      - Values of variables whose names look secret (V(PASSWORD), V(SECRET_KEY_BASE), V(DATABASE_URL), ...)
        and URLs with a password are masked in outputs, results and the ledger.
    type: dict
    default: {}
  chdir:
    description:
      - Working directory of the commands.
    type: path
  timeout:
    description:
      - Seconds O(command) may run. Past it, its process group gets SIGTERM, then SIGKILL after O(kill_grace),
        and the run is recorded as V(timeout).
    type: float
    default: 3600
  kill_grace:
    description:
      - Seconds between SIGTERM and SIGKILL when a command is over its timeout. C(docker run) forwards SIGTERM
        to the container; a SIGKILLed docker client would leave the container running.
    type: float
    default: 10
  status_command:
    description:
      - Command (argv list) telling whether migrations are pending. Exit 0 means up to date, 1 means
        pending, anything else is an error.
      - Consulted only when the ledger has no successful row for this release and fingerprint.
        Runs in check mode too, so it must not change anything.
    type: list
    elements: str
  status_timeout:
    description:
      - Seconds O(status_command) and O(fingerprint_command) may run.
    type: float
    default: 300
  pre_command:
    description:
      - Command (argv list) run only when the migrations will run, just before O(command), while holding
        the lock; typically a backup labelled with the release. If it fails, the migrations do not run.
    type: list
    elements: str
  pre_command_timeout:
    description:
      - Seconds O(pre_command) may run.
    type: float
    default: 3600
  force:
    description:
      - Run the migrations even when the ledger or the status command says there is nothing to do.
    type: bool
    default: false
  direct_check:
    description:
      - How the module decides the connection is not direct.
      - V(strict) refuses when the server's own port differs from the port connected to (something sits in
        between), or when the session is seen moving between server backends (transaction pooling).
      - V(pooling) refuses only the latter; use it when a plain TCP forwarder (NAT, C(docker -p 5433:5432))
        sits in front of PostgreSQL and keeps sessions intact.
    type: str
    choices: [strict, pooling]
    default: strict
  run_host:
    description:
      - Name recorded in the ledger and in the session's C(application_name) as where the migrations ran.
      - Defaults to the name of the host the module runs on.
    type: str
notes:
  - Needs C(psycopg) (3) or C(psycopg2) on the host the module runs on.
  - The lock is a session lock of the module's own connection, so a killed run leaves no lock behind; its
    ledger row stays V(running) until the next gate marks it V(interrupted).
  - O(command) runs with the lock held and the connection open but idle; the module disables
    C(idle_session_timeout) for its session so the lock is not lost during long migrations.
seealso:
  - name: PostgreSQL advisory locks
    description: How session-level advisory locks behave.
    link: https://www.postgresql.org/docs/current/explicit-locking.html#ADVISORY-LOCKS
  - name: PgBouncer pool modes
    description: Why session features such as advisory locks break in transaction pooling.
    link: https://www.pgbouncer.org/features.html
'''

EXAMPLES = r'''
- name: Run the release's migrations once, from one host
  shipyard.webstack.migration_gate:
    url: "{{ app_direct_url }}"
    release: "{{ release_digest }}"
    fingerprint: "{{ migrations_checksum }}"
    lock_key: myapp-migrations
    lock_timeout: 300
    command:
      - docker
      - run
      - --rm
      - --env-file
      - /etc/myapp/migrate.env
      - "{{ app_image }}@{{ release_digest }}"
      - npx
      - prisma
      - migrate
      - deploy
    timeout: 900
  run_once: true
  register: migration

- name: Ask the image whether migrations are pending, back up first when they are
  shipyard.webstack.migration_gate:
    host: db1.internal
    port: 5432
    database: app
    user: app_migrator
    password: "{{ vault_app_migrator_password }}"
    sslmode: verify-full
    ssl_rootcert: /etc/ssl/certs/db-ca.pem
    release: "{{ release_digest }}"
    ledger_table: deploy.migrations
    status_command: [docker, run, --rm, --env-file, /etc/myapp/migrate.env, "{{ app_image }}", bin/rails, db:migrate:status:exit]
    pre_command: [/usr/local/bin/db-backup, --label, "pre-{{ release_digest[:19] }}"]
    command: [docker, run, --rm, --env-file, /etc/myapp/migrate.env, "{{ app_image }}", bin/rails, db:migrate]
    env:
      DOCKER_CONFIG: /etc/myapp/docker
  run_once: true

- name: Preview (in --check) whether this release has pending migrations
  shipyard.webstack.migration_gate:
    url: "{{ app_direct_url }}"
    release: "{{ release_digest }}"
    fingerprint_command: [sh, -c, "cd /srv/app/prisma/migrations && find . -name migration.sql | sort | xargs sha256sum"]
    command: [docker, run, --rm, "{{ app_image }}", npx, prisma, migrate, deploy]
  check_mode: true
  run_once: true
  register: preview

- name: Say what the preview found
  ansible.builtin.debug:
    msg: "{{ 'migrations pending: ' ~ preview.would_run | join(' && ') if preview.pending else preview.reason }}"
  run_once: true
'''

RETURN = r'''
decided_by:
  description:
    - What decided whether migrations run. V(ledger), a successful row of this release and fingerprint (no
      command ran); V(status_command); V(no_status_command) (then they run); V(force).
    - A check-mode V(ledger) skip stays true under the lock (the ledger keeps its successful rows), so a caller
      that previewed may leave the real run out.
    - V(null) when the gate could not connect in check mode.
  returned: always
  type: str
  sample: ledger
ran:
  description: Whether the migration command ran (in check mode, always false).
  returned: always
  type: bool
  sample: true
skipped:
  description: Whether the gate decided there was nothing to run.
  returned: always
  type: bool
  sample: false
pending:
  description:
    - Whether migrations were pending when the gate decided.
    - V(null) in check mode when the login was refused (see RV(connection_state)).
  returned: always
  type: bool
  sample: true
connection_state:
  description:
    - Why PostgreSQL refused the connection, when it did.
  returned: when the connection failed
  type: str
  choices: [no_response, rejecting, auth_failed, not_allowed, database_missing, too_many_clients, error]
  sample: auth_failed
reason:
  description: Why the gate ran or skipped, in words.
  returned: always
  type: str
  sample: the ledger records release sha256:9f2c with fingerprint sha256:41aa as ok (row 12, 2026-11-23T15:47:17+00:00 on web1)
would_run:
  description: The commands a real run would execute (secrets masked). Empty when nothing is pending.
  returned: check mode
  type: list
  elements: str
  sample: ["docker run --rm registry.example.com/app@sha256:9f2c npx prisma migrate deploy"]
release:
  description: The release identifier.
  returned: always
  type: str
  sample: sha256:9f2c0e1c
fingerprint:
  description: The migrations fingerprint used (given, computed, or the release).
  returned: always
  type: str
  sample: sha256:41aa0b7d
lock_key:
  description: The advisory lock key (bigint) the gate locked.
  returned: always
  type: int
  sample: -4473912365921203731
lock_wait:
  description: Seconds spent waiting for the lock (0 in check mode).
  returned: always
  type: float
  sample: 0.02
duration:
  description: Seconds the module took, from connecting to releasing the lock.
  returned: always
  type: float
  sample: 12.6
status_rc:
  description: Exit code of the status command, when it ran.
  returned: when the status command ran
  type: int
  sample: 1
output_tail:
  description: The end (at most 4 KB) of the migration command's output, or of the status or pre command
    that decided the outcome; secrets masked.
  returned: always
  type: str
  sample: "Applying migration `20261101_add_orders`\nAll migrations have been successfully applied."
ledger_row:
  description:
    - The ledger row this run wrote, or the row that made it skip. Timestamps in ISO 8601.
    - Keys are id, release, fingerprint, host, status (running, ok, failed, timeout, interrupted, up_to_date),
      reason, started_at, finished_at, duration_seconds, return_code, output_tail, command, lock_key.
  returned: when a ledger row was read or written
  type: dict
  sample:
    id: 12
    release: sha256:9f2c0e1c
    fingerprint: sha256:41aa0b7d
    host: web1
    status: ok
    return_code: 0
interrupted_runs:
  description: Ledger rows left V(running) by earlier gates whose session died, now marked V(interrupted).
  returned: always
  type: list
  elements: dict
  sample: []
holder:
  description: The session holding the lock when O(lock_timeout) expired.
  returned: on lock timeout
  type: dict
  sample:
    pid: 4242
    application_name: shipyard migration_gate sha256:9f2c on web2
    client_addr: 10.0.0.12
'''

import socket
import time
import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.shipyard.webstack.plugins.module_utils._pg import (
    PG_DRIVER, PG_IMPORT_ERROR, PG_LIB_NAME, STATE_HINTS, classify_pg_error, connection_params,
    direct_connection_problem, pg_connect, pg_connection_spec, pg_query, sqlstate_of,
)
# Login refusals a run may be about to fix itself (a rotated password, a user, database or pg_hba
# entry it creates): in check mode they are reported, not failed.
from ansible_collections.shipyard.webstack.plugins.module_utils._probes import LOGIN_REFUSED_STATES
from ansible_collections.shipyard.webstack.plugins.module_utils._redact import redact
from ansible_collections.shipyard.webstack.plugins.module_utils import _migration as mig


class GateError(Exception):
    """A failure to report with fail_json; extra keys go into the result."""

    def __init__(self, msg, **extra):
        super(GateError, self).__init__(msg)
        self.msg = msg
        self.extra = extra


class MigrationGate(object):

    def __init__(self, module):
        self.module = module
        p = module.params
        self.params = p
        try:
            self.conn_params = connection_params(p)
            self.lock_key = mig.resolve_lock_key(p['lock_key'])
            self.schema, self.table = mig.parse_table_name(p['ledger_table'])
        except ValueError as exc:
            module.fail_json(msg=str(exc))
        self.secrets = mig.connection_secrets(self.conn_params, p['url']) + mig.secrets_from_env(p['env'])
        self.host = p['run_host'] or socket.gethostname()
        self.app_name = mig.application_name(p['release'], self.host)
        self.conn = None
        self.started = time.monotonic()
        self.fingerprint = p['fingerprint']
        self.result = dict(changed=False, ran=False, skipped=False, pending=False, reason='', decided_by=None, release=p['release'],
                           fingerprint=None, lock_key=self.lock_key, lock_wait=0.0, duration=0.0, output_tail='',
                           interrupted_runs=[])

    # ---------------------------------------------------------------- helpers
    def clean(self, text):
        return redact(text, self.secrets)

    def sql(self, query, args=None):
        return pg_query(self.conn, query, args)

    def sql_row(self, query, args=None):
        columns, rows = self.sql(query, args)
        return mig.row_to_dict(columns, rows[0]) if rows else None

    def run(self, what, argv, timeout):
        p = self.params
        result = mig.run_command(argv, env=p['env'], cwd=p['chdir'], timeout=timeout, kill_grace=p['kill_grace'])
        result.tail = mig.output_tail(result.output, self.secrets)
        result.description = self.clean(mig.describe_result(what, result, timeout))
        return result

    def where(self):
        cp = self.conn_params
        return '%s:%s/%s as %s' % (cp.get('host', '(default socket)'), cp.get('port'), cp.get('database', '(default)'),
                                   cp.get('user', '(default user)'))

    # ---------------------------------------------------------------- steps
    def connect(self):
        try:
            self.conn = pg_connect(self.conn_params, application_name=self.app_name)
        except Exception as exc:  # pylint: disable=broad-except  # driver errors vary; classify them
            state = classify_pg_error(str(exc), sqlstate_of(exc))
            raise GateError(self.clean('cannot connect to PostgreSQL at %s: %s (%s)'
                                       % (self.where(), STATE_HINTS.get(state, state), str(exc).strip())),
                            connection_state=state)
        problem = direct_connection_problem(self.conn, self.conn_params, strict=self.params['direct_check'] == 'strict',
                                            application_name=self.app_name)
        if problem:
            raise GateError(problem, refused='pooler')
        try:
            # A long migration leaves our session idle: do not let the server end it (and drop the lock).
            self.sql('SET idle_session_timeout = 0')
        except Exception:  # pylint: disable=broad-except  # PostgreSQL < 14 has no such setting
            pass

    def compute_fingerprint(self):
        p = self.params
        if p['fingerprint_command']:
            result = self.run('the fingerprint command', p['fingerprint_command'], p['status_timeout'])
            if not result.ok:
                raise GateError(result.description, output_tail=result.tail)
            try:
                self.fingerprint = mig.fingerprint_from_output(result.output)
            except ValueError as exc:
                raise GateError(str(exc), output_tail=result.tail)
        elif not self.fingerprint:
            self.fingerprint = p['release']
        self.result['fingerprint'] = self.fingerprint

    def ledger_exists(self):
        _cols, rows = self.sql(mig.sql_table_exists(), (mig.qualified(self.schema, self.table),))
        return bool(rows[0][0])

    def ensure_ledger(self):
        _cols, rows = self.sql(mig.sql_schema_exists(), (self.schema,))
        if not rows:
            # Only when missing: CREATE SCHEMA IF NOT EXISTS still needs CREATE on the database.
            self.sql(mig.sql_create_schema(self.schema))
        for statement in mig.ledger_ddl(self.schema, self.table):
            self.sql(statement)

    def find_applied(self):
        return self.sql_row(mig.sql_find_applied(self.schema, self.table), (self.params['release'], self.fingerprint))

    def acquire_lock(self):
        """pg_try_advisory_lock in a loop (not a blocking lock) so a timeout can name the holder."""
        started = time.monotonic()
        deadline = started + self.params['lock_timeout']
        delay = 0.05
        while True:
            _cols, rows = self.sql('SELECT pg_try_advisory_lock(%s)', (self.lock_key,))
            if rows[0][0]:
                self.result['lock_wait'] = round(time.monotonic() - started, 3)
                return
            now = time.monotonic()
            if now >= deadline:
                holder = self.sql_row(mig.sql_lock_holder(), mig.lock_key_parts(self.lock_key))
                raise GateError(self.clean('could not take the migration lock (key %s) within %ss: it is %s'
                                           % (self.lock_key, self.params['lock_timeout'], mig.describe_holder(holder))),
                                holder=holder, lock_wait=round(now - started, 3))
            time.sleep(min(delay, deadline - now))
            delay = min(delay * 2, 1.0)

    def release_lock(self):
        if self.conn is None:
            return
        try:
            self.sql('SELECT pg_advisory_unlock(%s)', (self.lock_key,))
        except Exception:  # pylint: disable=broad-except  # closing the session below drops it anyway
            pass

    def decide(self, applied):
        decision = mig.ledger_decision(applied, self.params['force'])
        if decision is not None:
            self.result['decided_by'] = 'force' if self.params['force'] else 'ledger'
            return decision, None
        if not self.params['status_command']:
            self.result['decided_by'] = 'no_status_command'
            return mig.status_decision(None), None
        self.result['decided_by'] = 'status_command'
        status = self.run('the status command', self.params['status_command'], self.params['status_timeout'])
        self.result['status_rc'] = status.rc
        self.result['output_tail'] = status.tail
        return mig.status_decision(status, self.params['status_timeout']), status

    def would_run(self):
        p = self.params
        commands = [p['pre_command'], p['command']] if p['pre_command'] else [p['command']]
        return [mig.redact_argv(argv, self.secrets) for argv in commands]

    def set_diff(self, applied_before, applied_after):
        if self.module._diff:
            state = dict(release=self.params['release'], fingerprint=self.fingerprint, ledger_table='%s.%s' % (self.schema, self.table))
            self.result['diff'] = dict(before=dict(state, applied=applied_before), after=dict(state, applied=applied_after))

    # ---------------------------------------------------------------- flows
    def preview(self):
        """Check mode: decide, run nothing, write nothing, take no lock."""
        applied = self.find_applied() if self.ledger_exists() else None
        if applied:
            self.result['ledger_row'] = applied
        decision, _status = self.decide(applied)
        if decision.action == 'error':
            raise GateError(decision.reason)
        pending = decision.action == 'run'
        self.result.update(pending=pending, skipped=not pending, changed=pending, reason=decision.reason,
                           would_run=self.would_run() if pending else [])
        self.set_diff(not pending, True)

    def cannot_preview(self, error):
        """Check mode, and the login is refused in a way this very run may be about to fix (a password
        being rotated, a user, database or pg_hba entry not created yet: the roles only preview those):
        report that it cannot tell, with the reason, instead of failing the whole preview."""
        reason = ('check mode cannot tell whether migrations are pending: %s. The run itself applies the data '
                  'tier changes before the gate and fails there if the login is still refused.' % error.msg)
        self.result.update(pending=None, skipped=True, reason=reason, would_run=[],
                           connection_state=error.extra['connection_state'])
        self.module.warn(reason)

    def locked_run(self):
        self.ensure_ledger()
        self.result['interrupted_runs'] = [mig.row_to_dict(*pair) for pair in self._rows(mig.sql_mark_interrupted(self.schema, self.table))]
        applied = self.find_applied()
        decision, status = self.decide(applied)
        if decision.action == 'error':
            raise GateError(decision.reason, output_tail=self.result['output_tail'])
        if decision.action == 'skip':
            self.result.update(skipped=True, reason=decision.reason, ledger_row=applied)
            if decision.record:
                self.result['ledger_row'] = self.sql_row(
                    mig.sql_insert_finished(self.schema, self.table),
                    (self.params['release'], self.fingerprint, self.host, mig.STATUS_UP_TO_DATE, decision.reason,
                     status.rc, status.tail, mig.redact_argv(self.params['status_command'], self.secrets), self.lock_key))
            self.set_diff(True, True)
            return
        self.result.update(pending=True, reason=decision.reason)
        self.set_diff(False, True)
        self.migrate(decision)

    def _rows(self, query, args=None):
        columns, rows = self.sql(query, args)
        return [(columns, row) for row in rows]

    def migrate(self, decision):
        p = self.params
        row = self.sql_row(mig.sql_insert(self.schema, self.table),
                           (p['release'], self.fingerprint, self.host, mig.STATUS_RUNNING, decision.reason,
                            mig.redact_argv(p['command'], self.secrets), self.lock_key))
        self.result['ledger_row'] = row
        if p['pre_command']:
            pre = self.run('the pre_command', p['pre_command'], p['pre_command_timeout'])
            self.result['pre_command_rc'] = pre.rc
            if not pre.ok:
                self.finish(row, pre, 'migrations not run: ' + pre.description)
                raise GateError('%s; the migrations did not run' % pre.description, output_tail=pre.tail)
        result = self.run('the migration command', p['command'], p['timeout'])
        self.result.update(ran=True, changed=True)
        self.finish(row, result, decision.reason if result.ok else result.description)
        if not result.ok:
            raise GateError(result.description, output_tail=result.tail)

    def finish(self, row, result, reason):
        status = mig.STATUS_OK if result.ok else (mig.STATUS_TIMEOUT if result.timed_out else mig.STATUS_FAILED)
        self.result['output_tail'] = result.tail
        self.result['ledger_row'] = self.sql_row(mig.sql_finish(self.schema, self.table),
                                                 (status, reason, round(result.duration, 3), result.rc, result.tail, row['id']))

    def execute(self):
        try:
            try:
                self.connect()
            except GateError as exc:
                if self.module.check_mode and exc.extra.get('connection_state') in LOGIN_REFUSED_STATES:
                    self.cannot_preview(exc)
                    return None
                raise
            self.compute_fingerprint()
            if self.module.check_mode:
                self.preview()
                return None
            self.acquire_lock()
            try:
                self.locked_run()
            finally:
                self.release_lock()
            return None
        except GateError as exc:
            return exc
        except Exception as exc:  # pylint: disable=broad-except  # report database errors redacted, not as a traceback
            return GateError(self.clean('unexpected error: %s' % exc), exception=self.clean(traceback.format_exc()))
        finally:
            if self.conn is not None:
                self.conn.close()
            self.result['duration'] = round(time.monotonic() - self.started, 3)

    def main(self):
        error = self.execute()
        if error is not None:
            self.result.update(error.extra)
            self.module.fail_json(msg=self.clean(error.msg), **self.result)
        if self.result['skipped'] and not self.result['reason']:
            self.result['reason'] = 'nothing to do'
        self.module.exit_json(**self.result)


def argument_spec():
    spec = pg_connection_spec()
    spec.update(
        release=dict(type='str', required=True),
        fingerprint=dict(type='str'),
        fingerprint_command=dict(type='list', elements='str'),
        lock_key=dict(type='str', default='shipyard.webstack.migrations', no_log=False),
        lock_timeout=dict(type='float', default=600),
        ledger_table=dict(type='str', default='public.shipyard_migrations'),
        command=dict(type='list', elements='str', required=True),
        env=dict(type='dict', default={}, no_log=True),
        chdir=dict(type='path'),
        timeout=dict(type='float', default=3600),
        kill_grace=dict(type='float', default=10),
        status_command=dict(type='list', elements='str'),
        status_timeout=dict(type='float', default=300),
        pre_command=dict(type='list', elements='str'),
        pre_command_timeout=dict(type='float', default=3600),
        force=dict(type='bool', default=False),
        direct_check=dict(type='str', choices=['strict', 'pooling'], default='strict'),
        run_host=dict(type='str'),
    )
    return spec


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(),
        mutually_exclusive=[('fingerprint', 'fingerprint_command')],
        supports_check_mode=True,
    )
    if PG_DRIVER is None:
        module.fail_json(msg=missing_required_lib(PG_LIB_NAME), exception=PG_IMPORT_ERROR)
    MigrationGate(module).main()


if __name__ == '__main__':
    main()

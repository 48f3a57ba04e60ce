"""migration_gate against a real PostgreSQL and a real PgBouncer on loopback (issue 4, "Show")."""

import json
import os
import signal
import sys
import textwrap
import time
import uuid

import pytest

from deploy_runs import closed_port
from modrun import COLLECTIONS, finish_module, run_module, start_module
from pgservers import pg_factory, pg_server, pgbouncer_server  # noqa: F401  pylint: disable=unused-import  # pytest fixtures

if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)
from ansible_collections.shipyard.webstack.plugins.module_utils._migration import resolve_lock_key  # noqa: E402

MODULE = 'migration_gate'

# The "migration": bumps a counter row in the database (the side effect that must happen once),
# and, like real tools sometimes do, prints the URL and secrets it was given.
MIGRATE = textwrap.dedent('''
    import os, sys, time, psycopg
    counter, sleep, code = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    pidfile = os.environ.get('PIDFILE')
    if pidfile:
        with open(pidfile, 'w') as f:
            f.write(str(os.getpid()))
    url = os.environ['DATABASE_URL']
    print('migrating with', url)
    print('token is', os.environ['API_TOKEN'])
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute('INSERT INTO %s (ran_at) VALUES (clock_timestamp())' % counter)
    print('applied 20261123_add_orders', flush=True)
    time.sleep(sleep)
    if code:
        print('ERROR: relation "orders" already exists', file=sys.stderr)
    sys.exit(code)
''')


class Gate:
    """One test's gate settings: its own ledger table, lock key and counter table on the shared server."""

    def __init__(self, pg, tmp_path):
        self.pg = pg
        self.tmp = tmp_path
        suffix = uuid.uuid4().hex[:10]
        self.ledger = 'gate_%s.ledger' % suffix
        self.counter = 'counter_%s' % suffix
        self.lock_key = 'test-lock-%s' % suffix
        self.api_token = 'tok-%s' % uuid.uuid4().hex
        pg.sql('CREATE TABLE %s (ran_at timestamptz)' % self.counter)
        pg.sql('GRANT INSERT ON %s TO %s' % (self.counter, pg.app_user))

    def env(self, **extra):
        env = {'DATABASE_URL': self.pg.url(), 'API_TOKEN': self.api_token}
        env.update(extra)
        return env

    def command(self, sleep=0, code=0):
        return [sys.executable, '-c', MIGRATE, self.counter, str(sleep), str(code)]

    def args(self, **overrides):
        args = dict(url=self.pg.url(), release='sha256:rel1', fingerprint='fp-1', lock_key=self.lock_key,
                    lock_timeout=10, ledger_table=self.ledger, command=self.command(), env=self.env(),
                    timeout=30, kill_grace=1, run_host='test-host')
        args.update(overrides)
        return args

    def runs(self):
        return self.pg.sql('SELECT count(*) FROM %s' % self.counter)[0][0]

    def ledger_rows(self):
        cols = ('id', 'release', 'fingerprint', 'status', 'return_code', 'output_tail', 'reason', 'command')
        rows = self.pg.sql('SELECT %s FROM %s ORDER BY id' % (', '.join(cols), self.ledger))
        return [dict(zip(cols, row)) for row in rows]

    def ledger_text(self):
        return '\n'.join(row[0] for row in self.pg.sql('SELECT t::text FROM %s t' % self.ledger))

    def ledger_exists(self):
        return self.pg.sql('SELECT to_regclass(%s) IS NOT NULL', (self.ledger,))[0][0]

    def secrets(self):
        return [self.pg.app_password, self.api_token]

    def assert_no_secret(self, result):
        for secret in self.secrets():
            assert secret not in result['_stdout'], 'a secret leaked into the module output'
            if self.ledger_exists():
                assert secret not in self.ledger_text(), 'a secret leaked into the ledger'


@pytest.fixture
def gate(pg_server, tmp_path):  # noqa: F811
    return Gate(pg_server, tmp_path)


def wait_for(predicate, timeout=10, what='condition'):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError('timed out after %ss waiting for %s' % (timeout, what))


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by its parent) is dead for our purposes
    try:
        with open('/proc/%d/stat' % pid) as handle:
            return handle.read().split(')')[-1].split()[0] != 'Z'
    except OSError:
        return False


# ------------------------------------------------------------------ run / skip / new fingerprint

def test_first_run_applies_second_skips_new_fingerprint_applies(gate):
    first = run_module(MODULE, gate.args())
    assert first.get('failed') is not True, first.get('msg')
    assert first['changed'] is True and first['ran'] is True and first['skipped'] is False
    assert first['ledger_row']['status'] == 'ok'
    assert first['ledger_row']['return_code'] == 0
    assert first['ledger_row']['host'] == 'test-host'
    assert 'applied 20261123_add_orders' in first['output_tail']
    assert gate.runs() == 1

    second = run_module(MODULE, gate.args())
    assert second['changed'] is False and second['ran'] is False and second['skipped'] is True
    assert 'ledger records release sha256:rel1 with fingerprint fp-1' in second['reason']
    assert first['decided_by'] == 'no_status_command' and second['decided_by'] == 'ledger'
    assert second['ledger_row']['id'] == first['ledger_row']['id']
    assert gate.runs() == 1

    third = run_module(MODULE, gate.args(fingerprint='fp-2'))
    assert third['changed'] is True and third['ran'] is True
    assert gate.runs() == 2
    assert [(r['fingerprint'], r['status']) for r in gate.ledger_rows()] == [('fp-1', 'ok'), ('fp-2', 'ok')]
    for result in (first, second, third):
        gate.assert_no_secret(result)


def test_output_and_ledger_hold_no_secret(gate):
    result = run_module(MODULE, gate.args())
    assert result['ran'] is True
    # the command printed the URL and the token: both masked, the rest of the line kept
    assert 'migrating with postgresql://%s:********@' % gate.pg.app_user in result['output_tail']
    assert 'token is ********' in result['output_tail']
    stored = gate.ledger_rows()[0]['output_tail']
    assert 'token is ********' in stored
    gate.assert_no_secret(result)


# ------------------------------------------------------------------ concurrency and the lock

def test_two_gates_at_the_same_moment_migrate_once(gate):
    args = gate.args(command=gate.command(sleep=1.5))
    started = [start_module(MODULE, args), start_module(MODULE, args)]
    results = [finish_module(proc, path, timeout=60) for proc, path in started]
    for result in results:
        assert result.get('failed') is not True, result.get('msg')
    ran = [r for r in results if r['ran']]
    skipped = [r for r in results if r['skipped']]
    assert len(ran) == 1 and len(skipped) == 1, [(r['ran'], r['reason']) for r in results]
    assert skipped[0]['lock_wait'] >= 1.0, 'the second gate should have waited for the first'
    assert 'ledger records' in skipped[0]['reason']
    assert gate.runs() == 1
    assert gate.pg.advisory_locks() == []


def test_lock_timeout_names_the_holder(gate):
    holder_name = 'deploy-of-release-41 on web7'
    key = resolve_lock_key(gate.lock_key)
    with gate.pg.connect(user='app', application_name=holder_name) as holder:
        holder.execute('SELECT pg_advisory_lock(%s)', (key,))
        holder_pid = holder.execute('SELECT pg_backend_pid()').fetchone()[0]
        before = time.monotonic()
        result = run_module(MODULE, gate.args(release='sha256:rel2', lock_timeout=1))
        waited = time.monotonic() - before
    assert result['failed'] is True
    assert waited >= 1.0
    assert 'could not take the migration lock' in result['msg']
    assert 'pid %s' % holder_pid in result['msg']
    assert holder_name in result['msg']
    assert '127.0.0.1' in result['msg']
    assert result['holder']['pid'] == holder_pid
    assert result['holder']['application_name'] == holder_name
    assert result['holder']['backend_start']
    assert result['ran'] is False
    gate.assert_no_secret(result)


def test_pooled_connection_through_pgbouncer_is_refused(gate, pgbouncer_server):  # noqa: F811
    result = run_module(MODULE, gate.args(url=pgbouncer_server.url()))
    assert result['failed'] is True
    assert result['refused'] == 'pooler'
    assert 'connection pooler' in result['msg']
    assert 'Use the DIRECT_URL' in result['msg']
    assert 'port %s' % pgbouncer_server.port in result['msg']
    assert gate.runs() == 0
    assert not gate.ledger_exists()
    gate.assert_no_secret(result)


def test_pooling_is_detected_without_the_port_hint(gate, pgbouncer_server):  # noqa: F811
    # direct_check=pooling ignores the port difference: the backend-sharing proof alone must refuse
    result = run_module(MODULE, gate.args(url=pgbouncer_server.url(), direct_check='pooling'))
    assert result['failed'] is True
    assert result['refused'] == 'pooler'
    assert 'same server backend' in result['msg'] or 'backend changed' in result['msg']
    assert 'Use the DIRECT_URL' in result['msg']
    assert gate.runs() == 0


def test_session_pooling_pgbouncer_passes_the_pooling_check(gate, pg_factory, pg_server):  # noqa: F811
    # Session pooling keeps advisory locks working: only the port difference (strict) would refuse it.
    session_bouncer = pg_factory.pgbouncer(pg_server, pool_mode='session', name='pgbouncer-session')
    result = run_module(MODULE, gate.args(url=session_bouncer.url(), direct_check='pooling'))
    assert result.get('failed') is not True, result.get('msg')
    assert result['ran'] is True
    strict = run_module(MODULE, gate.args(url=session_bouncer.url(), release='sha256:rel2'))
    assert strict['failed'] is True and 'Use the DIRECT_URL' in strict['msg']


# ------------------------------------------------------------------ failures

def test_failing_migration_fails_records_and_leaves_no_lock(gate):
    result = run_module(MODULE, gate.args(command=gate.command(code=3)))
    assert result['failed'] is True
    assert 'the migration command exited with 3' in result['msg']
    assert 'relation "orders" already exists' in result['output_tail']
    assert result['ledger_row']['status'] == 'failed'
    assert result['ledger_row']['return_code'] == 3
    rows = gate.ledger_rows()
    assert len(rows) == 1
    assert rows[0]['status'] == 'failed' and rows[0]['return_code'] == 3
    assert 'relation "orders" already exists' in rows[0]['output_tail']
    assert gate.pg.advisory_locks() == []
    gate.assert_no_secret(result)
    # a failed run is not "applied": the next gate tries again
    again = run_module(MODULE, gate.args())
    assert again['ran'] is True and again['ledger_row']['status'] == 'ok'


def test_f6_kill_9_mid_command_leaves_no_lock_and_rerun_succeeds(gate, tmp_path):
    pidfile = str(tmp_path / 'migrate.pid')
    args = gate.args(command=gate.command(sleep=60), env=gate.env(PIDFILE=pidfile), timeout=120)
    proc, path = start_module(MODULE, args)
    try:
        wait_for(lambda: os.path.exists(pidfile) and os.path.getsize(pidfile) > 0, what='the migration command to start')
        command_pid = int(open(pidfile).read())
        assert any('migration_gate' in (lock['application_name'] or '') for lock in gate.pg.advisory_locks())
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.unlink(path)
    wait_for(lambda: gate.pg.advisory_locks() == [], what='the advisory lock to go with the session')
    # the orphaned migration command must not go on unlocked: it gets SIGTERM when the module dies
    wait_for(lambda: not pid_alive(command_pid), what='the orphaned migration command to die')
    assert [r['status'] for r in gate.ledger_rows()] == ['running']

    rerun = run_module(MODULE, gate.args())
    assert rerun.get('failed') is not True, rerun.get('msg')
    assert rerun['ran'] is True and rerun['ledger_row']['status'] == 'ok'
    assert [row['status'] for row in rerun['interrupted_runs']] == ['interrupted']
    assert [r['status'] for r in gate.ledger_rows()] == ['interrupted', 'ok']
    assert gate.pg.advisory_locks() == []


def test_command_over_its_timeout_is_killed_and_recorded_as_timeout(gate, tmp_path):
    grandchild = str(tmp_path / 'grandchild.pid')
    # the command leaves a background child: killing the process group must take it too
    script = 'sleep 60 & echo $! > %s; echo started; wait' % grandchild
    before = time.monotonic()
    result = run_module(MODULE, gate.args(command=['sh', '-c', script], timeout=1, kill_grace=1))
    elapsed = time.monotonic() - before
    assert result['failed'] is True
    assert 'did not finish within 1.0s and was killed' in result['msg']
    assert elapsed < 15
    assert result['ledger_row']['status'] == 'timeout'
    assert gate.ledger_rows()[0]['status'] == 'timeout'
    assert 'started' in gate.ledger_rows()[0]['output_tail']
    child_pid = int(open(grandchild).read())
    wait_for(lambda: not pid_alive(child_pid), timeout=5, what='the background child to be killed')
    assert gate.pg.advisory_locks() == []


# ------------------------------------------------------------------ status command, pre_command, check mode

def test_status_command_up_to_date_skips_and_records(gate):
    result = run_module(MODULE, gate.args(status_command=['sh', '-c', 'echo up to date; exit 0']))
    assert result.get('failed') is not True, result.get('msg')
    assert result['changed'] is False and result['skipped'] is True and result['ran'] is False
    assert result['status_rc'] == 0
    assert result['ledger_row']['status'] == 'up_to_date'
    assert result['decided_by'] == 'status_command'
    assert gate.runs() == 0
    # recorded, so the next run skips by the ledger without asking the status command
    again = run_module(MODULE, gate.args(status_command=['sh', '-c', 'exit 1']))
    assert again['skipped'] is True and 'ledger records' in again['reason'] and again['decided_by'] == 'ledger'


def test_status_command_pending_runs_and_error_fails(gate, tmp_path):
    marker = tmp_path / 'pre-ran'
    pending = run_module(MODULE, gate.args(status_command=['sh', '-c', 'echo 2 pending; exit 1'],
                                           pre_command=['touch', str(marker)]))
    assert pending['ran'] is True and pending['status_rc'] == 1
    assert marker.exists(), 'pre_command must run when migrating'
    assert gate.runs() == 1

    marker.unlink()
    broken = run_module(MODULE, gate.args(release='sha256:rel2', status_command=['sh', '-c', 'echo boom; exit 2'],
                                          pre_command=['touch', str(marker)]))
    assert broken['failed'] is True
    assert 'the status command exited with 2' in broken['msg']
    assert not marker.exists() and gate.runs() == 1


def test_pre_command_only_when_migrating_and_its_failure_stops(gate, tmp_path):
    marker = tmp_path / 'pre-ran'
    run_module(MODULE, gate.args())
    skipped = run_module(MODULE, gate.args(pre_command=['touch', str(marker)]))
    assert skipped['skipped'] is True and not marker.exists()

    failed = run_module(MODULE, gate.args(release='sha256:rel2', pre_command=['sh', '-c', 'echo backup broke; exit 4']))
    assert failed['failed'] is True
    assert 'pre_command exited with 4' in failed['msg'] and 'backup broke' in failed['output_tail']
    assert failed['ledger_row']['status'] == 'failed'
    assert gate.runs() == 1


def test_check_mode_reports_pending_and_writes_nothing(gate):
    preview = run_module(MODULE, gate.args(pre_command=['touch', '/nonexistent/should-not-run']), check_mode=True, diff=True)
    assert preview.get('failed') is not True, preview.get('msg')
    assert preview['pending'] is True and preview['changed'] is True and preview['ran'] is False
    assert preview['would_run'][0] == 'touch /nonexistent/should-not-run'
    assert preview['would_run'][1].startswith(sys.executable)
    assert preview['diff']['before']['applied'] is False and preview['diff']['after']['applied'] is True
    assert not gate.ledger_exists(), 'check mode must not even create the ledger table'
    assert gate.runs() == 0
    assert gate.pg.advisory_locks() == []

    run_module(MODULE, gate.args())
    # The preview the app role asks before its backup: the ledger answers, and the status command (which
    # would say pending here) is not run: a no-op deploy starts no container for it.
    again = run_module(MODULE, gate.args(status_command=['sh', '-c', 'exit 1']), check_mode=True)
    assert again['pending'] is False and again['changed'] is False and again['would_run'] == []
    assert again['decided_by'] == 'ledger' and 'status_rc' not in again
    assert gate.runs() == 1
    gate.assert_no_secret(preview)


def test_connection_failure_is_classified_without_the_password(gate):
    wrong = gate.pg.url().replace(gate.pg.app_password, 'not-the-password-%s' % uuid.uuid4().hex[:6])
    result = run_module(MODULE, gate.args(url=wrong))
    assert result['failed'] is True
    assert result['connection_state'] == 'auth_failed'
    assert 'not-the-password' not in result['_stdout']
    gate.assert_no_secret(result)


# ------------------------------------------------------------------ the psycopg2 driver path

@pytest.fixture
def psycopg2_only(tmp_path, monkeypatch):
    """Make `import psycopg` fail in the module's process so _pg falls back to psycopg2."""
    shim = tmp_path / 'no-psycopg3'
    shim.mkdir()
    (shim / 'psycopg.py').write_text('raise ImportError("psycopg 3 hidden by the test")\n')
    monkeypatch.setenv('PYTHONPATH', str(shim))


def test_gate_works_with_psycopg2(gate, psycopg2_only, pgbouncer_server):  # noqa: F811  pylint: disable=unused-argument
    probe = [sys.executable, '-c', 'import psycopg2; from ansible_collections.shipyard.webstack.plugins.module_utils '
             'import _pg; print(_pg.PG_DRIVER)']
    args = gate.args(command=probe)
    first = run_module(MODULE, args)
    assert first.get('failed') is not True, first.get('msg')
    assert first['ran'] is True and first['output_tail'].strip() == 'psycopg2'
    assert run_module(MODULE, args)['skipped'] is True
    refused = run_module(MODULE, gate.args(url=pgbouncer_server.url(), direct_check='pooling'))
    assert refused['failed'] is True and 'Use the DIRECT_URL' in refused['msg']


def test_check_mode_with_a_password_this_run_rotates_warns_and_does_not_fail(gate):
    """deploy --check of a password rotation: the inventory's new password is not on the server yet (the
    postgres role only previews it), so the gate's preview cannot log in. It says it cannot tell, without
    failing the preview and without the password; a real run with that password fails as before."""
    rotated = gate.pg.url().replace(gate.pg.app_password, 'rotated-password-%s' % uuid.uuid4().hex[:6])
    preview = run_module(MODULE, gate.args(url=rotated), check_mode=True)
    assert preview.get('failed') is not True, preview.get('msg')
    assert preview['pending'] is None and preview['changed'] is False and preview['would_run'] == []
    assert preview['connection_state'] == 'auth_failed'
    assert 'check mode cannot tell whether migrations are pending' in preview['reason']
    # ansible-core 2.19 returns warnings as structured records, earlier ones as strings.
    assert preview.get('warnings') and 'cannot tell' in json.dumps(preview['warnings']), preview
    assert 'rotated-password' not in preview['_stdout']
    assert gate.runs() == 0 and not gate.ledger_exists()
    # Not in check mode, the refused login fails the gate.
    real = run_module(MODULE, gate.args(url=rotated))
    assert real['failed'] is True and real['connection_state'] == 'auth_failed'
    # A server that does not answer is not something the run fixes: check mode fails on it too.
    down = run_module(MODULE, gate.args(url='postgresql://app:x@127.0.0.1:%d/app' % closed_port()), check_mode=True)
    assert down['failed'] is True and down['connection_state'] == 'no_response'

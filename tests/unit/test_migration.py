"""Unit tests of migration_gate's pure parts (plugins/module_utils/_migration.py) and its port check."""

import os
import re
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS = os.path.join(ROOT, '.cache', 'collections')
if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)

from ansible_collections.shipyard.webstack.plugins.module_utils import _migration as mig  # noqa: E402
from ansible_collections.shipyard.webstack.plugins.module_utils._pg import port_mismatch_evidence, POOLER_MESSAGE  # noqa: E402


# ------------------------------------------------------------------ lock keys

def test_lock_key_from_name_is_pinned():
    # Pinned: a change here would make old and new gates lock different keys during an upgrade.
    assert mig.lock_key_from_name('myapp-migrations') == -7342117028920041590
    assert mig.resolve_lock_key('myapp-migrations') == -7342117028920041590


def test_lock_keys_are_bigints_and_differ_by_name():
    keys = set(mig.lock_key_from_name('app-%d' % i) for i in range(200))
    assert len(keys) == 200
    assert all(mig.INT64_MIN <= key <= mig.INT64_MAX for key in keys)
    assert any(key < 0 for key in keys), 'keys use the whole signed range'


@pytest.mark.parametrize('value, expected', [(42, 42), ('42', 42), (' -7 ', -7), (2 ** 63 - 1, 2 ** 63 - 1)])
def test_integer_lock_keys_pass_through(value, expected):
    assert mig.resolve_lock_key(value) == expected


@pytest.mark.parametrize('value', [2 ** 63, str(-(2 ** 63) - 1), '', '   ', True])
def test_bad_lock_keys_are_refused(value):
    with pytest.raises(ValueError):
        mig.resolve_lock_key(value)


@pytest.mark.parametrize('key', [0, 1, -1, 2 ** 32, 2 ** 63 - 1, -(2 ** 63), mig.lock_key_from_name('x')])
def test_lock_key_parts_match_pg_locks_layout(key):
    classid, objid = mig.lock_key_parts(key)
    assert 0 <= classid < 2 ** 32 and 0 <= objid < 2 ** 32
    assert int.from_bytes(((classid << 32) | objid).to_bytes(8, 'big'), 'big', signed=True) == key


def test_application_name_fits_postgres_limit():
    name = mig.application_name('sha256:' + 'a' * 64, 'a-very-long-host-name.' * 5)
    assert name.startswith('shipyard migration_gate sha256:aaaaaaaaaaaaaaaa')
    assert len(name.encode('utf-8')) <= 63
    assert len(mig.application_name('r\u00e9l\u00e9ase-\u00e9\u00e9\u00e9', 'h\u00f4te-' * 20).encode('utf-8')) <= 63


# ------------------------------------------------------------------ ledger SQL

@pytest.mark.parametrize('value, expected', [('deploy.migrations', ('deploy', 'migrations')),
                                             ('migrations', ('public', 'migrations')),
                                             ('S_1.t$2', ('S_1', 't$2'))])
def test_parse_table_name(value, expected):
    assert mig.parse_table_name(value) == expected


@pytest.mark.parametrize('value', ['a.b.c', 'x; DROP TABLE users', '"quoted".t', '1abc.t', 'a.', '', None, 'a.' + 'x' * 64])
def test_parse_table_name_refuses_anything_but_plain_identifiers(value):
    with pytest.raises(ValueError):
        mig.parse_table_name(value)


def test_ledger_ddl_is_idempotent_and_has_every_column():
    create_table, create_index = mig.ledger_ddl('deploy', 'migrations')
    assert create_table.startswith('CREATE TABLE IF NOT EXISTS "deploy"."migrations" (')
    for column in mig.LEDGER_COLUMNS:
        assert re.search(r'\n  %s ' % column, create_table), column
    for status in mig.LEDGER_STATUSES:
        assert "'%s'" % status in create_table
    assert create_index == 'CREATE INDEX IF NOT EXISTS "migrations_release_idx" ON "deploy"."migrations" (release, fingerprint, status)'


def test_ledger_index_name_stays_within_63_characters():
    _table, create_index = mig.ledger_ddl('s', 'x' * 63)
    assert '"%s"' % ('x' * 63) in create_index.split(' ON ')[0]


@pytest.mark.parametrize('builder, placeholders', [
    (mig.sql_find_applied, 2), (mig.sql_last_for_release, 1), (mig.sql_insert, 7),
    (mig.sql_insert_finished, 9), (mig.sql_finish, 6), (mig.sql_mark_interrupted, 0)])
def test_ledger_statements_are_parameterized(builder, placeholders):
    sql = builder('deploy', 'migrations')
    assert sql.count('%s') == placeholders
    assert '"deploy"."migrations"' in sql
    assert 'RETURNING ' + ', '.join(mig.LEDGER_COLUMNS) in sql or builder is mig.sql_find_applied or builder is mig.sql_last_for_release


def test_only_successful_rows_count_as_applied():
    sql = mig.sql_find_applied('s', 't')
    assert "status IN ('ok', 'up_to_date')" in sql
    assert 'release = %s AND fingerprint = %s' in sql


def test_lock_holder_sql_uses_both_halves_of_the_key():
    sql = mig.sql_lock_holder()
    assert sql.count('%s') == 2
    assert "locktype = 'advisory'" in sql and 'objsubid = 1' in sql and 'l.granted' in sql


def test_row_to_dict_makes_timestamps_json_friendly():
    import datetime
    stamp = datetime.datetime(2026, 11, 23, 15, 0, tzinfo=datetime.timezone.utc)
    assert mig.row_to_dict(('id', 'started_at'), (1, stamp)) == {'id': 1, 'started_at': '2026-11-23T15:00:00+00:00'}
    assert mig.row_to_dict(('id',), None) is None


def test_describe_holder_names_the_session():
    text = mig.describe_holder(dict(pid=42, application_name='shipyard migration_gate r1 on web2', client_addr='10.0.0.5',
                                    client_port=5123, username='app', backend_start='2026-11-23T15:00:00+00:00',
                                    state='active', state_change='2026-11-23T15:01:00+00:00'))
    assert 'pid 42' in text and 'web2' in text and '10.0.0.5:5123' in text and '2026-11-23T15:00:00' in text
    assert 'could not be identified' in mig.describe_holder(None)


# ------------------------------------------------------------------ fingerprint

def test_fingerprint_ignores_line_endings_and_blank_lines():
    unix = 'a1  001_init.sql\nb2  002_orders.sql\n'
    windows = 'a1  001_init.sql  \r\n\r\nb2  002_orders.sql\r\n'
    assert mig.fingerprint_from_output(unix) == mig.fingerprint_from_output(windows)
    assert re.match(r'^sha256:[0-9a-f]{64}$', mig.fingerprint_from_output(unix))


def test_fingerprint_changes_with_content_and_order():
    base = mig.fingerprint_from_output('001\n002\n')
    assert mig.fingerprint_from_output('001\n002\n003\n') != base
    assert mig.fingerprint_from_output('002\n001\n') != base


def test_fingerprint_is_pinned():
    assert mig.fingerprint_from_output('001_init\n') == (
        'sha256:' + __import__('hashlib').sha256(b'001_init').hexdigest())


@pytest.mark.parametrize('output', ['', '\n\n', '   \r\n', None])
def test_empty_fingerprint_output_is_an_error(output):
    with pytest.raises(ValueError):
        mig.fingerprint_from_output(output)


# ------------------------------------------------------------------ secrets and redaction

def test_secrets_from_env():
    found = mig.secrets_from_env({
        'DATABASE_URL': 'postgresql://app:s3cr3t-pass@db:5432/app',
        'REDIS_URL': 'redis://cache:6379/0',
        'SECRET_KEY_BASE': 'deadbeefcafe1234',
        'API_TOKEN': 'tok-123456',
        'FEATURE_KEY_ENABLED': 'true',
        'PORT': '3000',
        'NODE_ENV': 'production',
    })
    assert sorted(found) == ['deadbeefcafe1234', 's3cr3t-pass', 'tok-123456']


def test_connection_secrets_take_the_password_from_both_places():
    assert mig.connection_secrets({'password': 'pw-one'}, 'postgresql://u:pw%40two@h/db') == ['pw-one', 'pw@two']
    assert mig.connection_secrets({}, 'postgresql://u@h/db') == []


def test_output_tail_redacts_before_cutting():
    secret = 'S3CRET-' + 'x' * 20
    # the secret straddles the 4 KB boundary: cutting first would keep its readable second half
    text = 'a' * 10 + secret + 'b' * (4096 - 10)
    tail = mig.output_tail(text, [secret])
    assert 'xxxxxxxxxx' not in tail
    assert len(tail.encode('utf-8')) <= 4096


def test_output_tail_is_at_most_4_kb_of_utf8_and_starts_at_a_line():
    text = ''.join('ligne \u00e9\u00e9\u00e9 %05d\n' % i for i in range(2000))
    tail = mig.output_tail(text)
    assert len(tail.encode('utf-8')) <= 4096
    assert tail.startswith('ligne ') and tail.endswith('01999\n')
    assert mig.output_tail('short') == 'short'


def test_output_tail_masks_url_credentials_and_password_pairs():
    tail = mig.output_tail('connect postgresql://app:hunter22@db/app\nPGPASSWORD=hunter33 psql\n', ['hunter44'])
    assert 'hunter22' not in tail and 'hunter33' not in tail
    assert 'postgresql://app:********@db/app' in tail


def test_redact_argv_quotes_and_masks():
    argv = ['docker', 'run', '-e', 'DATABASE_URL=postgresql://u:pw-9f8e7d@db/app', 'img', 'sh', '-c', 'echo hi']
    text = mig.redact_argv(argv, ['pw-9f8e7d'])
    assert 'pw-9f8e7d' not in text
    assert text.endswith("sh -c 'echo hi'")


# ------------------------------------------------------------------ decision

def _result(rc, timed_out=False, error=None):
    return mig.CommandResult(rc=rc, timed_out=timed_out, error=error)


def test_force_runs_even_when_applied():
    assert mig.ledger_decision({'id': 1}, force=True).action == 'run'


def test_applied_row_skips_and_says_why():
    decision = mig.ledger_decision({'id': 7, 'release': 'r1', 'fingerprint': 'f1', 'status': 'ok', 'host': 'web1',
                                    'finished_at': '2026-11-23T15:00:00+00:00'})
    assert decision.action == 'skip' and not decision.record
    assert 'release r1 with fingerprint f1' in decision.reason and 'row 7' in decision.reason


def test_no_applied_row_defers_to_the_status_command():
    assert mig.ledger_decision(None) is None
    assert mig.status_decision(None).action == 'run'


@pytest.mark.parametrize('result, action, record', [
    (_result(0), 'skip', True), (_result(1), 'run', False), (_result(2), 'error', False),
    (_result(-9, timed_out=True), 'error', False), (_result(None, error='could not start'), 'error', False),
    (_result(1, timed_out=True), 'error', False)])
def test_status_command_exit_codes(result, action, record):
    decision = mig.status_decision(result, timeout=5)
    assert (decision.action, decision.record) == (action, record)


# ------------------------------------------------------------------ running commands

def test_run_command_merges_output_and_passes_env_and_cwd(tmp_path):
    result = mig.run_command(['sh', '-c', 'echo out; echo err >&2; echo "$GREETING"; pwd; exit 3'],
                             env={'GREETING': 'hello'}, cwd=str(tmp_path), timeout=10)
    assert result.rc == 3 and not result.ok and not result.timed_out
    assert result.output.split('\n')[:4] == ['out', 'err', 'hello', str(tmp_path)]


def test_run_command_kills_the_process_group_on_timeout(tmp_path):
    pidfile = tmp_path / 'child'
    started = time.monotonic()
    result = mig.run_command(['sh', '-c', 'trap "" TERM; sleep 30 & echo $! > %s; echo begun; wait' % pidfile],
                             timeout=0.5, kill_grace=0.5)
    assert result.timed_out and not result.ok
    assert time.monotonic() - started < 10
    assert 'begun' in result.output
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and os.path.exists('/proc/%d' % child) and \
            open('/proc/%d/stat' % child).read().split(')')[-1].split()[0] != 'Z':
        time.sleep(0.05)
    assert not os.path.exists('/proc/%d' % child) or open('/proc/%d/stat' % child).read().split(')')[-1].split()[0] == 'Z'


def test_run_command_that_cannot_start():
    result = mig.run_command(['/nonexistent/migrate'], timeout=5)
    assert result.rc is None and 'could not start /nonexistent/migrate' in result.error
    assert 'could not start' in mig.describe_result('the migration command', result, 5)


def test_run_command_keeps_only_the_end_of_huge_output():
    result = mig.run_command(['sh', '-c', 'yes line | head -n 100000; echo THE-END'], timeout=20)
    assert result.ok
    assert len(result.output.encode('utf-8')) <= mig.KEEP_BYTES
    assert result.output.endswith('THE-END\n')


# ------------------------------------------------------------------ direct-connection port check

@pytest.mark.parametrize('params, server_port, expected', [
    ({'host': 'db', 'port': 5432}, 5432, None),
    ({'host': 'db', 'port': 6432}, 5432, 'we connected to port 6432 but the server itself listens on port 5432'),
    ({'host': 'db'}, 6432, 'we connected to port 5432 but the server itself listens on port 6432'),
    ({'host': 'db', 'port': 6432}, None, 'we connected to TCP port 6432 but the server sees us on a unix socket'),
    ({'host': '/var/run/postgresql', 'port': 6432}, None, None),
    ({}, None, None),
])
def test_port_mismatch_evidence(params, server_port, expected):
    assert port_mismatch_evidence(params, server_port) == expected


def test_pooler_message_tells_what_to_do():
    text = POOLER_MESSAGE.format(evidence='x')
    assert 'Use the DIRECT_URL' in text and 'transaction pooling' in text

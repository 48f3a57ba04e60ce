"""audit_log run for real: one JSON line per run, concurrent writers never interleave, earlier lines
untouched, secrets redacted, check mode writes nothing."""

import json
import os

import pytest

from modrun import finish_module, run_module, start_module


@pytest.fixture
def log_path(tmp_path):
    return str(tmp_path / 'var-log-shipyard' / 'audit.jsonl')


def lines(path):
    with open(path, 'rb') as handle:
        data = handle.read()
    assert data.endswith(b'\n')
    return [json.loads(line) for line in data.decode('utf-8').splitlines()]


def args(path, **extra):
    base = dict(path=path, release='registry.example.com/app:1.4.2', digest='sha256:9f2c', result='success',
                who='alice@ops', host='web1', run_id='run-1', durations={'pull': 12.1, 'rollout': 40.2},
                migrations={'ran': True, 'reason': 'pending'})
    base.update(extra)
    return base


def test_first_append_creates_dir_and_file_0640(log_path):
    result = run_module('audit_log', args(log_path))
    assert result['changed'] and result['created'] and result['bytes'] > 0
    assert os.stat(log_path).st_mode & 0o777 == 0o640
    assert os.stat(os.path.dirname(log_path)).st_mode & 0o777 == 0o750
    (record,) = lines(log_path)
    assert record == result['record']
    assert list(record) == ['when', 'event', 'release', 'digest', 'result', 'who', 'host', 'run_id', 'durations',
                            'migrations']
    assert record['event'] == 'deploy' and record['durations'] == {'pull': 12.1, 'rollout': 40.2}


def test_appends_never_rewrite_earlier_lines(log_path):
    run_module('audit_log', args(log_path, result='failed'))
    with open(log_path, 'rb') as handle:
        before = handle.read()
    result = run_module('audit_log', args(log_path, event='rollback', timestamp='2026-01-31T12:00:00Z'))
    assert not result['created']
    with open(log_path, 'rb') as handle:
        after = handle.read()
    assert after.startswith(before) and len(after) == len(before) + result['bytes']
    assert [r['result'] for r in lines(log_path)] == ['failed', 'success']
    assert lines(log_path)[1]['when'] == '2026-01-31T12:00:00Z'


def test_concurrent_writers_never_interleave(log_path):
    # ~200 KB per line, far above PIPE_BUF and a page: a torn or interleaved write would show.
    blob = dict(('part%02d' % k, ('run %d part %d ' % (0, k)) * 200) for k in range(60))
    procs = [start_module('audit_log', args(log_path, run_id='run-%d' % i, extra=dict(blob, n=i)))
             for i in range(16)]
    results = [finish_module(*proc) for proc in procs]
    assert all(r['changed'] and not r.get('failed') for r in results), results
    assert all(r['bytes'] > 150000 for r in results)
    records = lines(log_path)
    assert sorted(r['extra']['n'] for r in records) == list(range(16))
    assert all(dict(r['extra'], n=None) == dict(blob, n=None) for r in records)


def test_long_strings_keep_their_end(log_path):
    result = run_module('audit_log', args(log_path, migrations='line\n' * 3000 + 'the end'))
    assert result['record']['migrations'].startswith('[...] ') and result['record']['migrations'].endswith('the end')
    assert len(result['record']['migrations']) <= 4096 + 6


def test_free_form_fields_are_redacted(log_path):
    result = run_module('audit_log', args(
        log_path,
        migrations='migrate: connecting to postgresql://app:Vq7pL2zR9kk@db1:5432/app ... password=hunter22 ok',
        extra={'db_password': 'hunter22', 'note': 'seen Sup3rS3cretValue in the log', 'api_token': 'tok_abcdef'},
        secrets=['Sup3rS3cretValue']))
    with open(log_path) as handle:
        text = handle.read()
    for secret in ('Vq7pL2zR9kk', 'hunter22', 'Sup3rS3cretValue', 'tok_abcdef'):
        assert secret not in text and secret not in result['_stdout']
    record = lines(log_path)[0]
    assert record['extra']['db_password'] == '********' and 'seen ******** in the log' == record['extra']['note']


def test_check_mode_writes_nothing(log_path):
    result = run_module('audit_log', args(log_path), check_mode=True)
    assert result['changed'] and result['created'] and result['bytes'] == 0
    assert result['record']['release'] == 'registry.example.com/app:1.4.2'
    assert not os.path.exists(os.path.dirname(log_path))
    run_module('audit_log', args(log_path))
    size = os.path.getsize(log_path)
    assert not run_module('audit_log', args(log_path), check_mode=True)['created']
    assert os.path.getsize(log_path) == size


def test_bad_mode_and_group_fail_cleanly(log_path):
    assert 'octal' in run_module('audit_log', args(log_path, mode='rw-r-----'))['msg']
    assert 'does not exist' in run_module('audit_log', args(log_path, group='no-such-group-xyz'))['msg']
    assert not os.path.exists(log_path)

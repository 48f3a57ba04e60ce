"""audit_log's pure parts: record building, redaction of free-form fields, the single O_APPEND write."""

import json
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS = os.path.join(ROOT, '.cache', 'collections')
if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)

from ansible_collections.shipyard.webstack.plugins.module_utils import _audit as audit  # noqa: E402
from ansible_collections.shipyard.webstack.plugins.module_utils import _files as files  # noqa: E402
from ansible_collections.shipyard.webstack.plugins.module_utils._redact import MASK  # noqa: E402


def test_record_order_and_empty_fields_left_out():
    record = audit.build_record({'when': '2026-01-31T12:00:00Z', 'event': 'deploy', 'release': 'app:1.4', 'digest': None,
                                 'result': 'success', 'who': 'alice@ops', 'host': 'web1', 'run_id': '',
                                 'durations': {'pull': 1.5}, 'migrations': None, 'extra': {}})
    assert list(record) == ['when', 'event', 'release', 'result', 'who', 'host', 'durations']


def test_redact_data_masks_secret_keys_values_and_url_credentials():
    data = {
        'db_password': 'hunter22',
        'API_KEY': 12345678,
        'nested': [{'token': 'abc.def'}, 'postgresql://app:s3cr3tpw@db1/app', 'PGPASSWORD=s3cr3tpw rest'],
        'note': 'the vault value Vq7pL2zR9kk leaked here',
        'empty_secret': '',
        'secret_flag': True,
        'count': 3, 'ratio': 0.5, 'nothing': None,
    }
    out = audit.redact_data(data, ['Vq7pL2zR9kk'])
    assert out['db_password'] == MASK and out['API_KEY'] == MASK
    assert out['nested'][0]['token'] == MASK
    assert out['nested'][1] == 'postgresql://app:%s@db1/app' % MASK
    assert 's3cr3tpw' not in out['nested'][2]
    assert out['note'] == 'the vault value %s leaked here' % MASK
    assert out['empty_secret'] == '' and out['secret_flag'] is True
    assert (out['count'], out['ratio'], out['nothing']) == (3, 0.5, None)
    assert data['db_password'] == 'hunter22'  # the input is not modified


def test_build_record_redacts_only_free_form_fields():
    record = audit.build_record({'release': 'app:1', 'result': 'failed',
                                 'migrations': 'migrate failed: password=hunter22 rejected',
                                 'extra': {'stripe_secret': 'sk_live_x'}, 'durations': {'secret_phase': 3.0}})
    assert record['migrations'] == 'migrate failed: password=%s rejected' % MASK
    assert record['extra'] == {'stripe_secret': MASK}
    assert record['durations'] == {'secret_phase': MASK}


def test_encode_line_is_one_line_of_json():
    line = audit.encode_line({'extra': {'log': 'line1\nline2', 'name': 'é'}})
    assert line.endswith(b'\n') and line.count(b'\n') == 1
    assert json.loads(line.decode('utf-8')) == {'extra': {'log': 'line1\nline2', 'name': 'é'}}


def test_append_creates_with_mode_and_appends(tmp_path):
    path = str(tmp_path / 'audit.jsonl')
    created, written = audit.append_line(path, b'{"a":1}\n', 0o640)
    assert created and written == 8 and os.stat(path).st_mode & 0o777 == 0o640
    created, _written = audit.append_line(path, b'{"a":2}\n', 0o600)
    assert not created and os.stat(path).st_mode & 0o777 == 0o640  # an existing file keeps its mode
    with open(path, 'rb') as handle:
        assert handle.read() == b'{"a":1}\n{"a":2}\n'


def test_append_after_a_cut_line_starts_a_new_line(tmp_path):
    path = str(tmp_path / 'audit.jsonl')
    with open(path, 'wb') as handle:
        handle.write(b'{"a":1}\n{"cut sho')
    _created, written = audit.append_line(path, b'{"a":3}\n')
    assert written == 9
    with open(path, 'rb') as handle:
        assert handle.read() == b'{"a":1}\n{"cut sho\n{"a":3}\n'


def test_ensure_dir(tmp_path):
    directory = str(tmp_path / 'var' / 'log' / 'shipyard')
    assert files.ensure_dir(directory, 0o750) is True
    assert os.stat(directory).st_mode & 0o777 == 0o750
    assert files.ensure_dir(directory, 0o750) is False


def test_ensure_dir_keeps_a_directory_a_concurrent_run_created_at_the_same_moment(tmp_path, monkeypatch):
    target = str(tmp_path / 'var-lib-shipyard')
    real_makedirs = os.makedirs

    def racing_makedirs(path, mode=0o777):
        real_makedirs(path, 0o700)    # the other run wins the race, with its own mode
        real_makedirs(path, mode)     # then ours: EEXIST
    monkeypatch.setattr(files.os, 'makedirs', racing_makedirs)
    assert files.ensure_dir(target, 0o755) is False
    assert os.path.isdir(target) and oct(os.stat(target).st_mode & 0o777) == oct(0o700)
    (tmp_path / 'a-file').write_text('x')
    with pytest.raises(OSError):
        files.ensure_dir(str(tmp_path / 'a-file'), 0o755)   # a file in the way is still an error

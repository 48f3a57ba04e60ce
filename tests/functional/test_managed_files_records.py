"""managed_files' records, for real: the module records a step after a run, host_state reports the records
whose paths are still as recorded, and the action then skips the module run on the controller - only
when neither the step's options nor anything on the host changed (a hand edit, a mode, a removed path,
an absent path that came back each make it run and repair)."""

import json
import os
import subprocess
import sys

from modrun import ROOT, run_module


def step(tmp_path, content='port = 6432\n', mode='0640'):
    conf = str(tmp_path / 'etc')
    return dict(directories=[{'path': conf, 'mode': '0750'}],
                files=[{'path': conf + '/app.ini', 'content': content, 'mode': mode}],
                absent=[conf + '/old.ini'], record='test-step', record_dir=str(tmp_path / 'records'),
                record_fingerprint='salt$digest')


def records(tmp_path):
    facts = run_module('host_state', {'managed_files_record_dir': str(tmp_path / 'records')})['ansible_facts']
    return facts['shipyard_managed_files']


def test_a_run_records_the_step_and_host_state_reports_it_while_the_paths_stay(tmp_path):
    assert records(tmp_path) == {}
    result = run_module('managed_files', step(tmp_path))
    assert result['changed'] and result['skipped_by_record'] is False
    assert oct(os.stat(str(tmp_path / 'records' / 'test-step.json')).st_mode & 0o777) == '0o600'
    assert records(tmp_path) == {'test-step': 'salt$digest'}
    os.chmod(str(tmp_path / 'etc' / 'app.ini'), 0o644)
    assert records(tmp_path) == {}, 'a changed mode must invalidate the record'
    run_module('managed_files', step(tmp_path))
    (tmp_path / 'etc' / 'old.ini').write_text('back\n')
    assert records(tmp_path) == {}, 'an absent path that came back must invalidate the record'


def test_check_mode_and_a_failed_run_leave_no_valid_record(tmp_path):
    run_module('managed_files', step(tmp_path), check_mode=True)
    assert records(tmp_path) == {}
    run_module('managed_files', step(tmp_path))
    bad = step(tmp_path, content='new\n')
    bad['files'][0]['validate'] = 'false %s'
    assert run_module('managed_files', bad)['failed']
    assert records(tmp_path) == {}


def test_a_record_name_that_is_a_path_is_refused(tmp_path):
    args = dict(step(tmp_path), record='../x')
    result = run_module('managed_files', args)
    assert result['failed'] and 'record must be letters' in result['msg']
    assert not os.path.exists(str(tmp_path / 'etc'))


PLAY = '''- hosts: localhost
  gather_facts: false
  tasks:
    - shipyard.webstack.host_state:
        managed_files_record_dir: {records}
    - shipyard.webstack.managed_files:
        directories: [{{path: {conf}, mode: "0750"}}]
        files: [{{path: {conf}/app.ini, content: "{{{{ step_content }}}}", mode: "0640"}}]
        record: test-step
        record_dir: {records}
      register: step_result
    - ansible.builtin.copy:
        content: "{{{{ step_result | to_json }}}}"
        dest: {result}
        mode: "0600"
'''


def play(tmp_path, content):
    playbook = tmp_path / 'play.yml'
    playbook.write_text(PLAY.format(records=tmp_path / 'records', conf=tmp_path / 'etc', result=tmp_path / 'result.json'))
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, 'ansible.cfg'), ANSIBLE_NOCOLOR='1')
    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), 'ansible-playbook'), '-i', 'localhost,',
                           '-c', 'local', '-e', json.dumps({'step_content': content,
                                                            'ansible_python_interpreter': sys.executable}),
                           str(playbook)], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          timeout=180, check=False)
    out = proc.stdout.decode('utf-8', 'replace')
    assert proc.returncode == 0, out
    return json.loads((tmp_path / 'result.json').read_text())


def test_the_action_skips_the_module_only_while_nothing_changed(tmp_path):
    ini = tmp_path / 'etc' / 'app.ini'
    first = play(tmp_path, 'port = 6432\n')
    assert first['changed'] and first['skipped_by_record'] is False
    again = play(tmp_path, 'port = 6432\n')
    assert not again['changed'] and again['skipped_by_record'] is True
    ini.write_text('port = 5432\n')                      # edited by hand: the step runs and repairs it
    repaired = play(tmp_path, 'port = 6432\n')
    assert repaired['changed'] and repaired['skipped_by_record'] is False
    assert ini.read_text() == 'port = 6432\n'
    changed = play(tmp_path, 'port = 7432\n')            # the step asks for something else
    assert changed['changed'] and changed['changed_paths'] == [str(ini)] and ini.read_text() == 'port = 7432\n'
    assert play(tmp_path, 'port = 7432\n')['skipped_by_record'] is True

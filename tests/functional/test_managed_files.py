"""managed_files on real paths of this machine: directories, files and absent paths of one role step in
one module run, compared, written atomically, validated, with check and diff modes."""

import grp
import os
import pwd
import stat

from modrun import run_module


def mode_of(path):
    return oct(stat.S_IMODE(os.stat(path).st_mode))


def layout(tmp_path, unit='[Unit]\nDescription=backup\n'):
    conf = str(tmp_path / 'etc')
    return dict(
        directories=[{'path': conf, 'owner': 'root', 'group': 'nogroup', 'mode': '0750'},
                     {'path': str(tmp_path / 'state'), 'owner': 'nobody', 'mode': '0700'}],
        files=[{'path': conf + '/backup.service', 'content': unit, 'mode': '0644'},
               {'path': conf + '/config.json', 'content': '{"keep": 30}\n', 'owner': 'root', 'group': 'nogroup',
                'mode': '0640'}],
        absent=[str(tmp_path / 'etc' / 'old.passfile')])


def test_creates_everything_then_changes_nothing(tmp_path):
    args = layout(tmp_path)
    first = run_module('managed_files', args)
    assert first.get('failed') is not True, first.get('msg')
    assert first['changed'] and len(first['changed_paths']) == 4
    conf = str(tmp_path / 'etc')
    assert mode_of(conf) == '0o750' and grp.getgrgid(os.stat(conf).st_gid).gr_name == 'nogroup'
    assert pwd.getpwuid(os.stat(str(tmp_path / 'state')).st_uid).pw_name == 'nobody'
    assert open(conf + '/backup.service').read() == '[Unit]\nDescription=backup\n'
    assert mode_of(conf + '/config.json') == '0o640' and mode_of(conf + '/backup.service') == '0o644'
    again = run_module('managed_files', args)
    assert again.get('failed') is not True and not again['changed'] and again['changed_paths'] == []


def test_only_what_differs_changes_and_diff_shows_it(tmp_path):
    run_module('managed_files', layout(tmp_path))
    conf = str(tmp_path / 'etc')
    os.chmod(conf + '/config.json', 0o666)
    open(conf + '/old.passfile', 'w').write('secret\n')
    result = run_module('managed_files', layout(tmp_path, unit='[Unit]\nDescription=backup v2\n'), diff=True)
    assert result['changed_paths'] == [conf + '/old.passfile', conf + '/backup.service', conf + '/config.json']
    assert result['diff'] == [{'before_header': conf + '/backup.service', 'after_header': conf + '/backup.service',
                               'before': '[Unit]\nDescription=backup\n', 'after': '[Unit]\nDescription=backup v2\n'}]
    assert mode_of(conf + '/config.json') == '0o640' and not os.path.exists(conf + '/old.passfile')


def test_absent_paths_go_before_a_file_is_validated(tmp_path):
    # As nginx's default site: the new site only validates once the old one is gone.
    old = tmp_path / 'default-site'
    old.write_text('listen 80 default_server;\n')
    args = {'files': [{'path': str(tmp_path / 'site'), 'content': 'new\n',
                       'validate': "sh -c 'test ! -e %s' %%s" % old}],
            'absent': [str(old)]}
    result = run_module('managed_files', args)
    assert result.get('failed') is not True, result.get('msg')
    assert result['changed_paths'] == [str(old), str(tmp_path / 'site')]


def test_check_mode_reports_and_writes_nothing(tmp_path):
    result = run_module('managed_files', layout(tmp_path), check_mode=True)
    assert result['changed'] and len(result['changed_paths']) == 4
    assert not os.path.exists(str(tmp_path / 'etc'))
    run_module('managed_files', layout(tmp_path))
    changed = run_module('managed_files', layout(tmp_path, unit='new\n'), check_mode=True)
    assert changed['changed_paths'] == [str(tmp_path / 'etc' / 'backup.service')]
    assert open(str(tmp_path / 'etc' / 'backup.service')).read() == '[Unit]\nDescription=backup\n'


def test_validate_refuses_a_file_and_leaves_the_old_one(tmp_path):
    run_module('managed_files', layout(tmp_path))
    args = layout(tmp_path, unit='broken\n')
    args['files'][0]['validate'] = "sh -c 'grep -q Unit %s'"
    result = run_module('managed_files', args)
    assert result['failed'] and 'refused by sh' in result['msg'] and 'the file stays as it was' in result['msg']
    assert open(str(tmp_path / 'etc' / 'backup.service')).read() == '[Unit]\nDescription=backup\n'
    args = layout(tmp_path, unit='[Unit]\nok\n')
    args['files'][0]['validate'] = "sh -c 'grep -q Unit %s'"
    assert run_module('managed_files', args)['changed_paths'] == [str(tmp_path / 'etc' / 'backup.service')]


def test_bad_input_is_named(tmp_path):
    result = run_module('managed_files', {'files': [{'path': 'relative/file', 'content': 'x'}]})
    assert result['failed'] and 'relative/file: give an absolute path' in result['msg']
    missing_dir = run_module('managed_files', {'files': [{'path': str(tmp_path / 'nope' / 'f'), 'content': 'x'}]})
    assert missing_dir['failed'] and 'list it under directories' in missing_dir['msg']

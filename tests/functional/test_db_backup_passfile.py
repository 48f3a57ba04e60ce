"""The db_backup role's password file, rendered by ansible-playbook from the role's own variables and read
by libpq against a real PostgreSQL on loopback: a password with ':' and '\\' logs in, and the file is one
line ending in a line break (libpq reads a backslash as an escape, so a stray '\\n' would change the password)."""

import json
import os
import subprocess
import sys

import psycopg

from pgservers import make_password

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ROLE = os.path.join(ROOT, 'roles', 'db_backup')


def render_passfile(tmp_path, variables):
    """The content of the role's passfile entry (vars/main.yml: _db_backup_passfile_entry), written by copy."""
    out = tmp_path / 'pgpass'
    playbook = tmp_path / 'play.yml'
    playbook.write_text(
        '- hosts: localhost\n  gather_facts: false\n  tasks:\n'
        '    - ansible.builtin.include_vars: {file: %s/defaults/main.yml}\n'
        '    - ansible.builtin.include_vars: {file: %s/vars/main.yml}\n'
        '    - ansible.builtin.copy:\n'
        '        dest: %s\n'
        '        content: "{{ _db_backup_passfile_entry.content }}"\n'
        '        mode: "0600"\n'
        '      no_log: true\n' % (ROLE, ROLE, out))
    varfile = tmp_path / 'vars.json'
    # The module runs under this interpreter (the venv's), not whatever python3 the PATH finds first.
    varfile.write_text(json.dumps(dict(variables, ansible_python_interpreter=sys.executable)))
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, 'ansible.cfg'), ANSIBLE_NOCOLOR='1')
    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), 'ansible-playbook'), '-i', 'localhost,',
                           '-c', 'local', '-e', '@%s' % varfile, str(playbook)],
                          cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=180, check=False)
    output = proc.stdout.decode('utf-8', 'replace')
    assert proc.returncode == 0, output
    assert variables['db_backup_connection_password'] not in output
    return out


def test_a_password_with_colons_and_backslashes_logs_in_through_the_rendered_passfile(tmp_path, pg_server):
    password = 'Bk:%s\\x:\\\\' % make_password('bk')
    pg_server.sql('DROP ROLE IF EXISTS passfile_backup')
    pg_server.sql("CREATE ROLE passfile_backup LOGIN PASSWORD '%s'" % password.replace("'", "''"))
    passfile = render_passfile(tmp_path, {'db_backup_connection_password': password,
                                          'db_backup_connection_user': 'passfile_backup',
                                          'db_backup_connection_port': pg_server.port})
    content = passfile.read_text()
    assert content.count('\n') == 1 and content.endswith('\n'), repr(content[-3:])
    with psycopg.connect(host=pg_server.host, port=pg_server.port, user='passfile_backup',
                         dbname=pg_server.database, passfile=str(passfile)) as conn:
        assert conn.execute('SELECT current_user').fetchone() == ('passfile_backup',)


def test_without_a_user_the_line_matches_any_user(tmp_path, pg_server):
    passfile = render_passfile(tmp_path, {'db_backup_connection_password': 'Ap:%s' % make_password('any'),
                                          'db_backup_connection_port': 5432})
    assert passfile.read_text().startswith('*:5432:*:*:Ap\\:')

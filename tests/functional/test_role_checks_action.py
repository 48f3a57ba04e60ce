"""The action shipyard.webstack.role_checks run by ansible-playbook for real, inside the roles' own
preflight: the role's defaults are in scope, templated variables are checked as the role sees them,
every violation is named at once, and no value reaches the output, even at -vvv (the task has no no_log:
it never puts a value in its arguments or its result)."""

import json
import os
import subprocess
import sys

import pytest

from modrun import ROOT

SHORT_SECRET = 'Sh0rt-Secr3t'   # 12 characters: under redis_password's 16
BAD_SIZE = '512 megabytes'


def run_role_preflight(tmp_path, role, variables, verbosity=''):
    playbook = tmp_path / 'play.yml'
    playbook.write_text(
        '- hosts: localhost\n  gather_facts: false\n  tasks:\n'
        '    - ansible.builtin.import_role:\n        name: shipyard.webstack.%s\n        tasks_from: preflight\n'
        '    - ansible.builtin.debug:\n        msg: PREFLIGHT PASSED\n' % role)
    varfile = tmp_path / 'vars.json'
    varfile.write_text(json.dumps(dict(variables, ansible_python_interpreter=sys.executable)))
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, 'ansible.cfg'), ANSIBLE_NOCOLOR='1')
    cmd = [os.path.join(os.path.dirname(sys.executable), 'ansible-playbook'), '-i', 'localhost,', '-c', 'local',
           '-e', '@%s' % varfile, str(playbook)] + ([verbosity] if verbosity else [])
    proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=180,
                          check=False)
    return proc.returncode, ' '.join(proc.stdout.decode('utf-8', 'replace').split())


def test_the_role_defaults_with_valid_routes_pass(tmp_path):
    rc, out = run_role_preflight(tmp_path, 'proxy', {
        'proxy_upstreams': {'web_http': {'blue': ['127.0.0.1:18000'], 'green': ['127.0.0.1:18100']}},
        'proxy_routes': [{'path': '/', 'upstream': 'web_http'}],
    })
    assert rc == 0, out
    assert 'PREFLIGHT PASSED' in out


def test_a_route_to_an_unknown_upstream_fails_naming_it(tmp_path):
    rc, out = run_role_preflight(tmp_path, 'proxy', {
        'proxy_upstreams': {'web_http': {'blue': ['127.0.0.1:18000'], 'green': ['127.0.0.1:18100']}},
        'proxy_routes': [{'path': '/api', 'upstream': 'api_http'}],
    })
    assert rc == 2 and 'PREFLIGHT PASSED' not in out, out
    assert 'proxy_routes[0].upstream on localhost (role proxy): must name a key of proxy_upstreams' in out, out
    assert 'proxy_routes[0].path' not in out, out


@pytest.mark.parametrize('verbosity', ['', '-vvv'])
def test_templated_secrets_are_checked_as_the_role_sees_them_and_never_printed(tmp_path, verbosity):
    rc, out = run_role_preflight(tmp_path, 'redis', {
        'vault_redis_password': SHORT_SECRET,
        'redis_password': '{{ vault_redis_password }}',
        'redis_maxmemory': BAD_SIZE,
    }, verbosity)
    assert rc == 2 and 'PREFLIGHT PASSED' not in out, out
    assert 'redis_password on localhost (role redis): must be at least 16 characters' in out, out
    assert 'redis_maxmemory on localhost (role redis): must be a size like 256mb' in out, out
    assert out.count('fatal: [localhost]') == 1, out    # one task names both
    # The values appear only where ansible-playbook echoes the extra vars file's path, never its content.
    assert SHORT_SECRET not in out and BAD_SIZE not in out, out


def test_an_undefined_variable_in_a_template_is_named(tmp_path):
    rc, out = run_role_preflight(tmp_path, 'redis', {'redis_password': '{{ vault_redis_password_missing }}'})
    assert rc == 2 and 'PREFLIGHT PASSED' not in out, out
    assert ('the variables of the role redis could not be evaluated (vault_redis_password_missing is undefined)'
            in out), out


def test_a_role_without_checks_is_a_clear_error(tmp_path):
    playbook = tmp_path / 'play.yml'
    playbook.write_text('- hosts: localhost\n  gather_facts: false\n  tasks:\n'
                        '    - shipyard.webstack.role_checks: {role: nginx}\n')
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, 'ansible.cfg'), ANSIBLE_NOCOLOR='1')
    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), 'ansible-playbook'), '-i', 'localhost,',
                           '-c', 'local', str(playbook)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=180, check=False)
    out = proc.stdout.decode('utf-8', 'replace')
    assert proc.returncode == 2 and 'no checks for the role nginx' in out, out

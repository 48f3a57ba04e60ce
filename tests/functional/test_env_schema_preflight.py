"""playbooks/tasks/preflight_env_schema.yml run by ansible-playbook for real: one failure naming every
violation, no value anywhere in the output (even at -vvv), a valid environment passes."""

import json
import os
import subprocess
import sys

import pytest

from modrun import ROOT

TASKS = os.path.join(ROOT, 'playbooks', 'tasks', 'preflight_env_schema.yml')
SECRETS = {
    'JWT_SECRET': 'short-but-Secret-V4lue',
    'ENCRYPTION_KEY': 'k3J9sLq2Vb7Nw4Rt8Yp1Zc6Hd0Fg5Mx',  # 31 characters
    'STRIPE_KEY': 'your_stripe_key_here',
}
GOOD_SECRETS = {
    'JWT_SECRET': 'Qm9vdHN0cmFwUmFuZG9tSnd0S2V5VGhhdElzTG9uZ0Vub3VnaDY0Q2hhcnNYWVo3',
    'ENCRYPTION_KEY': 'k3J9sLq2Vb7Nw4Rt8Yp1Zc6Hd0Fg5Mx2',
    'STRIPE_KEY': 'sk_live_51HqLyjWDarjtT1zdp7dcXYZab',
}
SCHEMA = {
    'production': {
        'NODE_ENV': {'required': True, 'allowed': ['production']},
        'DATABASE_URL': {'required': True, 'type': 'url', 'schemes': ['postgresql']},
        'JWT_SECRET': {'required': True, 'min_length': 64},
        'ENCRYPTION_KEY': {'required': True, 'length': 32},
        'STRIPE_KEY': {'required': True, 'regex': 'sk_live_[A-Za-z0-9]{24,}'},
    },
    'staging': {'NODE_ENV': {'required': True}},
}


def run_preflight(tmp_path, variables, verbosity='', extra_args=()):
    playbook = tmp_path / 'play.yml'
    playbook.write_text(
        '- hosts: localhost\n  gather_facts: false\n  tasks:\n'
        '    - ansible.builtin.include_tasks: %s\n'
        '    - ansible.builtin.debug:\n        msg: PREFLIGHT PASSED\n' % TASKS)
    varfile = tmp_path / 'vars.json'
    varfile.write_text(json.dumps(variables))
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, 'ansible.cfg'), ANSIBLE_NOCOLOR='1')
    cmd = [os.path.join(os.path.dirname(sys.executable), 'ansible-playbook'), '-i', 'localhost,', '-c', 'local',
           '-e', '@%s' % varfile, str(playbook)]
    cmd.extend(extra_args)
    if verbosity:
        cmd.append(verbosity)
    proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=180,
                          check=False)
    return proc.returncode, proc.stdout.decode('utf-8', 'replace')


@pytest.mark.parametrize('verbosity', ['', '-vvv'])
def test_bad_environment_fails_once_naming_every_violation_and_no_value(tmp_path, verbosity):
    variables = {
        'shipyard_environment': 'production',
        'app_env_schema': SCHEMA,
        'app_env': {'NODE_ENV': 'development', 'DATABASE_URL': 'postgresql://app:password@db1:6432/app'},
        'app_secret_env': SECRETS,
    }
    rc, out = run_preflight(tmp_path, variables, verbosity)
    assert rc == 2, out
    out = ' '.join(out.split())  # the callback folds long lines
    assert 'PREFLIGHT PASSED' not in out
    for message in ('NODE_ENV: must be one of: production',
                    'DATABASE_URL: looks like a placeholder value: set the real value',
                    'JWT_SECRET: must be at least 64 characters long (it has 22)',
                    'JWT_SECRET: looks like a placeholder value: set the real value',
                    'ENCRYPTION_KEY: must be exactly 32 characters long (it has 31)',
                    'STRIPE_KEY: does not match the pattern sk_live_[A-Za-z0-9]{24,}',
                    'STRIPE_KEY: looks like a placeholder value: set the real value',
                    'in 7 place(s)'):
        assert message in out, out
    assert out.count('fatal: [localhost]') == 1 and 'failed=1' in out  # one failed task lists them all
    for value in list(SECRETS.values()) + ['postgresql://app:password@db1', 'development']:
        assert value not in out.replace(json.dumps(variables), ''), value


def test_valid_environment_passes(tmp_path):
    variables = {
        'shipyard_environment': 'production',
        'app_env_schema': SCHEMA,
        'app_env': {'NODE_ENV': 'production', 'DATABASE_URL': 'postgresql://app:Vq7pL2zR9kk@db1:6432/app'},
        'app_secret_env': GOOD_SECRETS,
    }
    rc, out = run_preflight(tmp_path, variables)
    assert rc == 0 and 'PREFLIGHT PASSED' in out, out


def test_missing_environment_schema_is_named(tmp_path):
    rc, out = run_preflight(tmp_path, {'shipyard_environment': 'qa', 'app_env_schema': SCHEMA, 'app_env': {}})
    assert rc == 2
    out = ' '.join(out.split())
    assert "no schema for the environment 'qa'" in out and 'production, staging' in out


def test_no_schema_no_check(tmp_path):
    rc, out = run_preflight(tmp_path, {'app_env': {'A': 'changeme'}})
    assert rc == 0 and 'PREFLIGHT PASSED' in out, out


def test_vaulted_values_are_checked_and_never_printed(tmp_path):
    """app_secret_env from a vault (inline !vault values), as in real inventories."""
    password_file = tmp_path / 'vault-pass'
    password_file.write_text('demo-vault-password\n')
    bin_dir = os.path.dirname(sys.executable)
    vaulted = {}
    for name, value in (('JWT_SECRET', 'vaulted-but-too-short-V4lu3'), ('ENCRYPTION_KEY', GOOD_SECRETS['ENCRYPTION_KEY']),
                        ('STRIPE_KEY', 'sk_live_REPLACE_ME_with_the_real_key_0123')):
        proc = subprocess.run([os.path.join(bin_dir, 'ansible-vault'), 'encrypt_string', '--vault-password-file',
                               str(password_file), value, '--name', name], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              check=True, cwd=ROOT)
        vaulted[name] = proc.stdout.decode()
    secrets_file = tmp_path / 'secrets.yml'
    secrets_file.write_text('app_secret_env:\n' + ''.join('  ' + text.replace('\n', '\n  ').rstrip() + '\n'
                                                          for text in vaulted.values()))
    variables = {'shipyard_environment': 'production', 'app_env_schema': SCHEMA,
                 'app_env': {'NODE_ENV': 'production', 'DATABASE_URL': 'postgresql://app:Vq7pL2zR9kk@db1:6432/app'}}
    rc, out = run_preflight(tmp_path, variables, '-vvv',
                            extra_args=['-e', '@%s' % secrets_file, '--vault-password-file', str(password_file)])
    assert rc == 2, out
    flat = ' '.join(out.split())
    assert 'in 3 place(s)' in flat, out
    assert 'JWT_SECRET: must be at least 64 characters long (it has 27)' in flat
    assert 'STRIPE_KEY: looks like a placeholder value: set the real value' in flat
    assert 'ENCRYPTION_KEY' not in flat.split('place(s):')[1]
    for value in ('vaulted-but-too-short-V4lu3', GOOD_SECRETS['ENCRYPTION_KEY'], 'REPLACE_ME_with'):
        assert value not in out

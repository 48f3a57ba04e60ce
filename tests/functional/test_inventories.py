"""inventories/production and inventories/staging are sound: they parse without a vault; filled with
strong generated secrets they pass deploy.yml's preflight (every check: role argument specs, cross-role,
env schema, the environment policy); with their vault template's placeholder values they fail it,
naming every variable that uses a placeholder (so the policy is live, not decoration).

Each run copies the inventory, makes every host the controller (connection local, lock and audit log
in tmp_path) and runs deploy.yml with --tags preflight: only the plays tagged `always` run (run
identity, preflight, summary; no lock, no audit line), no role touches the machine. Cost: 4 ansible-playbook runs."""

import json
import os
import secrets
import shutil
import string
import subprocess

import pytest
import yaml

from deploy_runs import BIN, deploy, local_host_vars, recap
from modrun import ROOT

ENVIRONMENTS = ['production', 'staging']
HOSTS = {
    'production': ['db1.example.internal', 'cache1.example.internal', 'app1.example.internal', 'app2.example.internal'],
    'staging': ['staging-db1.example.internal', 'staging-app1.example.internal'],
}
# Each vault variable of the templates -> what the preflight says when it holds its placeholder.
# A vault variable added to a template must be added here (checked below).
PLACEHOLDER_MESSAGES = {
    'vault_postgres_app_password': ['postgres_users[app].password looks like a placeholder',
                                    'app_database_password looks like a placeholder'],
    'vault_pgbouncer_auth_password': ['pgbouncer_auth_password looks like a placeholder'],
    'vault_pgbouncer_admin_password': ['pgbouncer_admin_password looks like a placeholder'],
    'vault_pgbouncer_stats_password': ['pgbouncer_stats_password looks like a placeholder'],
    'vault_redis_password': ['redis_password looks like a placeholder'],
    'vault_redis_app_password': ['redis_app_password looks like a placeholder',
                                 'app_redis_password looks like a placeholder'],
    'vault_redis_monitor_password': ['redis_monitor_password looks like a placeholder'],
    'vault_app_jwt_secret': ['JWT_SECRET: looks like a placeholder value'],
    'vault_app_encryption_key': ['ENCRYPTION_KEY: looks like a placeholder value'],
    'vault_proxy_tls_certificate': ['(role proxy): must hold the PEM certificate (chain)'],
    'vault_proxy_tls_certificate_key': ['(role proxy): must hold the PEM private key'],
}


def template(env):
    with open(os.path.join(ROOT, 'inventories', env, 'group_vars', 'all', 'vault.yml.example')) as handle:
        return yaml.safe_load(handle)


def strong(length=48):
    # Letters and digits only, starting with a letter no placeholder pattern starts with.
    alphabet = string.ascii_letters + string.digits
    return 'Q' + ''.join(secrets.choice(alphabet) for _pos in range(length - 1))


def fake_pem(kind):
    body = '\n'.join(strong(64) for _line in range(4))
    return '-----BEGIN %s-----\n%s\n-----END %s-----\n' % (kind, body, kind)


def filled(name, placeholder):
    if name.endswith('_tls_certificate'):
        return fake_pem('CERTIFICATE')
    if name.endswith('_tls_certificate_key'):
        return fake_pem('PRIVATE KEY')
    if name == 'vault_app_encryption_key':
        return strong(32)   # the schema wants exactly 32
    return strong(max(48, len(placeholder)))


def prepared(tmp_path, env, vault):
    """A copy of inventories/<env> with this vault (plain YAML: only the test reads it) and extra vars
    making every host the controller."""
    copy = tmp_path / env
    shutil.copytree(os.path.join(ROOT, 'inventories', env), str(copy))
    (copy / 'group_vars' / 'all' / 'vault.yml').write_text(yaml.safe_dump(vault, default_flow_style=False))
    extra = tmp_path / 'local.json'
    extra.write_text(json.dumps(local_host_vars(tmp_path)))
    return str(copy), '@%s' % extra


@pytest.mark.parametrize('env', ENVIRONMENTS)
def test_inventory_parses_without_the_vault(env):
    proc = subprocess.run([os.path.join(BIN, 'ansible-inventory'), '-i', os.path.join(ROOT, 'inventories', env),
                           '--list'], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False,
                          env=dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, 'ansible.cfg')))
    assert proc.returncode == 0, proc.stderr.decode()
    listing = json.loads(proc.stdout.decode())
    for group in ('postgres', 'pgbouncer', 'redis', 'app', 'db_backup'):
        assert listing[group]['hosts'], group
    assert sorted(listing['_meta']['hostvars']) == sorted(HOSTS[env])
    some = listing['_meta']['hostvars'][HOSTS[env][0]]
    assert some['shipyard_environment'] == env and some['deploy_policy']
    # The template is not loaded as variables (its name does not end in .yml).
    assert not any(name.startswith('vault_') for host in listing['_meta']['hostvars'].values() for name in host)


def test_templates_list_every_vault_variable_the_inventories_use():
    for env in ENVIRONMENTS:
        names = set(template(env))
        assert names <= set(PLACEHOLDER_MESSAGES), names - set(PLACEHOLDER_MESSAGES)
        used = set()
        for folder, _dirs, files in os.walk(os.path.join(ROOT, 'inventories', env)):
            for name in files:
                if name.endswith('.yml'):
                    with open(os.path.join(folder, name)) as handle:
                        used.update(word for word in handle.read().replace('}', ' ').replace('{', ' ').split()
                                    if word.startswith('vault_'))
        assert used == names, (env, used ^ names)


@pytest.mark.parametrize('env', ENVIRONMENTS)
def test_filled_inventory_passes_the_preflight(tmp_path, env):
    vault = {name: filled(name, str(value)) for name, value in template(env).items()}
    inv, extra = prepared(tmp_path, env, vault)
    rc, out = deploy(inv, '-e', extra, tags='preflight', run_id='inventory-%s' % env)
    assert rc == 0, out
    flat = ' '.join(out.split())
    # It went past the preflight to the summary (a preflight-only run takes no lock and writes no audit line).
    assert 'The preflight found' not in out and 'result: success' in flat, out
    assert '--tags preflight: the checks only, nothing deployed, no lock taken' in flat, out
    assert not (tmp_path / 'deploy.lock').exists() and not (tmp_path / 'audit.jsonl').exists()
    for value in vault.values():
        assert value.splitlines()[1 if '\n' in value else 0] not in out
    assert set(recap(out)) >= set(HOSTS[env])


@pytest.mark.parametrize('env', ENVIRONMENTS)
def test_template_placeholders_fail_the_preflight_naming_each_variable(tmp_path, env):
    vault = template(env)
    inv, extra = prepared(tmp_path, env, vault)
    rc, out = deploy(inv, '-e', extra, tags='preflight')
    assert rc != 0, out
    flat = ' '.join(out.split())
    assert 'The preflight found' in flat, out
    for name in vault:
        for message in PLACEHOLDER_MESSAGES[name]:
            assert message in flat, '%s: %r missing from:\n%s' % (name, message, out)
    for value in vault.values():
        assert value not in out, value
    # Nothing changed: no lock, no audit line, no role, changed=0 everywhere.
    assert not (tmp_path / 'deploy.lock').exists() and not (tmp_path / 'audit.jsonl').exists()
    assert 'Take the deploy lock' not in out
    assert all(counts['changed'] == 0 for counts in recap(out).values()), recap(out)

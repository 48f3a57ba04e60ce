"""playbooks/deploy.yml run by ansible-playbook for real, on the controller as its only host (connection
local, temporary lock and audit paths): the preflight rejects bad environments naming every violation
and changing nothing; a phase that fails still releases the deploy lock (the final play always runs);
a deploy started while another holds the lock fails naming the holder, or waits for it.

Only the plays tagged `always` plus `verify` run (--tags verify): no role touches the machine.
Cost: ~6 ansible-playbook runs, about a minute on a loaded 2-core machine."""

import json
import threading
import time

import pytest

import os

from deploy_runs import SECRET, closed_port, deploy, inventory, lock_module
from modrun import ROOT


BAD_ENVIRONMENTS = {
    'clashing ports, weak secrets, bad image, no canary': (
        {'proxy_http_port': 18100, 'app_image_repository': 'Registry.Example.com/Shop App',
         'app_rollout_serial': [2, '100%'], 'app_database_password': 'changeme',
         'redis_password': 'short1', 'deploy_policy': {'require_tls': True, 'min_secret_length': 20, 'canary': 1}},
        ['proxy_http_port and app_processes.web.ports[http] (green slot) all use port 18100 on host h1',
         'app_image_repository and app_image_tag on h1 do not form a valid image reference',
         'app_rollout_serial starts with a batch of 2',
         'proxy_tls_enabled is false on h1',
         'app_database_sslmode on h1 must be one of',
         'app_database_password is 8 characters, at least 20 are required',
         'redis_password is 6 characters, at least 20 are required'],
        ['changeme', 'short1']),
    'env schema and missing database': (
        {'app_postgres_host': '', 'app_env': {'NODE_ENV': 'development'},
         'app_secret_env': {'JWT_SECRET': 'tooShortJwt'},
         'app_env_schema': {'production': {'NODE_ENV': {'required': True, 'allowed': ['production']},
                                           'JWT_SECRET': {'required': True, 'min_length': 64},
                                           'ENCRYPTION_KEY': {'required': True, 'length': 32}}}},
        ["no host in 'postgres' and neither app_postgres_host nor app_database_url is set",
         'NODE_ENV', 'JWT_SECRET', 'ENCRYPTION_KEY'],
        ['tooShortJwt', 'development']),
    'pools larger than postgres allows': (
        {'deploy_policy': {'require_backup_before_migrations': True}, 'app_backup_before_migrations': False,
         'app_processes': {'web': {'command': ['web'], 'ports': [{'container_port': 8000}]}, 'Bad Name': {}}},
        ["policy (production requires the pre-migration backup): no host in 'db_backup'",
         'app_backup_before_migrations is false on h1',
         'app_processes on h1:'],
        []),
}


@pytest.mark.parametrize('case', sorted(BAD_ENVIRONMENTS))
def test_preflight_rejects_bad_environments_naming_every_violation(tmp_path, case):
    over, expected, values = BAD_ENVIRONMENTS[case]
    rc, out = deploy(inventory(tmp_path, **over))
    assert rc != 0, out
    assert 'The preflight found' in out, out
    for text in expected:
        assert text in out, '%r missing from:\n%s' % (text, out)
    for value in values + [SECRET]:
        assert value not in out.replace('app_database_password', ''), value
    # Nothing changed: no lock taken, no audit line.
    assert not (tmp_path / 'deploy.lock').exists()
    assert not (tmp_path / 'audit.jsonl').exists()
    assert 'Take the deploy lock' not in out


def test_failed_phase_still_releases_the_lock_and_audits(tmp_path):
    rc, out = deploy(inventory(tmp_path), run_id='run-failing-verify')
    assert rc != 0, out
    assert 'took the deploy lock' in out, out
    assert 'verify on h1' in out and 'The deploy failed; the lock was released.' in out, out
    assert not (tmp_path / 'deploy.lock').exists(), 'the lock survived a failed deploy'
    lines = [json.loads(line) for line in (tmp_path / 'audit.jsonl').read_text().splitlines()]
    assert [(r['result'], r['run_id'], r['who']) for r in lines] == [('failed', 'run-failing-verify', 'bob@ci')]
    assert SECRET not in out


def test_second_deploy_fails_naming_the_first_owner_then_waits(tmp_path):
    held = lock_module(tmp_path, {'run_id': 'first-run', 'owner': 'alice@laptop', 'label': 'deploy.yml app:1.4.1',
                                  'ttl': 600})
    assert held.returncode == 0, held.stdout
    inv = inventory(tmp_path, proxy_http_port=closed_port())
    rc, out = deploy(inv, run_id='second-run')
    assert rc != 0
    assert 'held by another run: alice@laptop' in out and 'first-run' in out, out
    assert json.loads((tmp_path / 'deploy.lock').read_text())['run_id'] == 'first-run'

    # With deploy_lock_wait the second run waits until the first releases, then goes on.
    def release_later():
        time.sleep(4)
        lock_module(tmp_path, {'state': 'released', 'run_id': 'first-run'})
    thread = threading.Thread(target=release_later)
    thread.start()
    rc, out = deploy(inv, '-e', 'deploy_lock_wait=120', run_id='second-run')
    thread.join()
    assert 'took the deploy lock' in out, out
    assert 'waited' in out or 'second-run' in out
    assert not (tmp_path / 'deploy.lock').exists()


@pytest.mark.parametrize('playbook', ['rollout.yml', 'release.yml'])
def test_phase_playbook_refuses_while_another_run_holds_the_lock(tmp_path, playbook):
    """rollout.yml (rollback.yml's second half) and release.yml take the deploy lock before they touch a host:
    a deploy in progress (here: a lock held by alice) makes them fail naming the holder, with nothing pulled,
    migrated or rolled out."""
    held = lock_module(tmp_path, {'run_id': 'deploy-in-progress', 'owner': 'alice@laptop',
                                  'label': 'deploy.yml app:1.4.2', 'ttl': 600})
    assert held.returncode == 0, held.stdout
    rc, out = deploy(inventory(tmp_path), run_id='phase-run', tags='all',
                     playbook=os.path.join(ROOT, 'playbooks', playbook))
    assert rc != 0, out
    assert 'held by another run: alice@laptop' in out and 'deploy-in-progress' in out, out
    assert 'TASK [Roll out]' not in out and 'shipyard.webstack.app :' not in out, out
    assert json.loads((tmp_path / 'deploy.lock').read_text())['run_id'] == 'deploy-in-progress'
    assert not (tmp_path / 'audit.jsonl').exists()


def test_failed_release_phase_releases_the_lock_and_audits(tmp_path):
    """release.yml alone: a phase that fails (here the app role's own checks, before anything is pulled) is
    rescued, so its last play still writes the `release` audit line, releases the lock and fails the run
    saying what failed."""
    rc, out = deploy(inventory(tmp_path, app_name='Shop App'), run_id='run-failing-release', tags='all',
                     playbook=os.path.join(ROOT, 'playbooks', 'release.yml'))
    assert rc != 0, out
    assert 'took the deploy lock' in out, out
    assert 'The release phase failed; the lock was released.' in out, out
    assert "- release on h1: app_name on h1 (role app): must be lower case letters, digits and '-'" in out, out
    assert 'Migration gate' not in out or 'skipping' in out, out
    assert not (tmp_path / 'deploy.lock').exists(), 'the lock survived a failed release phase'
    lines = [json.loads(line) for line in (tmp_path / 'audit.jsonl').read_text().splitlines()]
    assert [(r['event'], r['result'], r['run_id'], r['who']) for r in lines] == [
        ('release', 'failed', 'run-failing-release', 'bob@ci')]
    assert lines[0]['extra']['failures'] == ['release'], lines[0]
    assert SECRET not in out


@pytest.mark.parametrize('playbook', ['deploy.yml', 'rollout.yml', 'release.yml'])
def test_limit_without_localhost_stops_before_anything_changes(tmp_path, playbook):
    """--limit applies to the plays on localhost too (run identity, lock, audit): without localhost in it
    the run would go on without its lock. It stops at once, saying how to write the limit."""
    rc, out = deploy(inventory(tmp_path), '--limit', 'h1', tags='all',
                     playbook=os.path.join(ROOT, 'playbooks', playbook))
    assert rc != 0, out
    assert "leaves localhost out" in out and "--limit 'h1,localhost'" in out, out
    assert 'Take the deploy lock' not in out and 'shipyard.webstack.app :' not in out, out
    assert not (tmp_path / 'deploy.lock').exists()
    assert not (tmp_path / 'audit.jsonl').exists()


def test_tags_preflight_only_checks_takes_no_lock_and_writes_no_audit_line(tmp_path):
    """--tags preflight: the checks and the summary; nothing is deployed, so no lock (it runs even while a
    deploy holds the lock) and no audit line claiming a deploy."""
    held = lock_module(tmp_path, {'run_id': 'deploy-in-progress', 'owner': 'alice@laptop', 'label': 'deploy.yml app:1',
                                  'ttl': 600})
    assert held.returncode == 0, held.stdout
    rc, out = deploy(inventory(tmp_path), run_id='preflight-run', tags='preflight')
    assert rc == 0, out
    # (the YAML callback folds long lines)
    assert '--tags preflight: the checks only, nothing deployed, no lock taken' in ' '.join(out.split()), out
    assert 'took the deploy lock' not in out and 'released the deploy lock' not in out, out
    assert 'held by another run' not in out, out
    assert json.loads((tmp_path / 'deploy.lock').read_text())['run_id'] == 'deploy-in-progress'
    assert not (tmp_path / 'audit.jsonl').exists()

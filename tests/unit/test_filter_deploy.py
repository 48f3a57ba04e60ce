"""deploy.yml's preflight: every cross-role violation at once, by name, never a secret's value."""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS = os.path.join(ROOT, '.cache', 'collections')
if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)

from ansible_collections.shipyard.webstack.plugins.filter.deploy import (  # noqa: E402
    deploy_batches, deploy_durations, deploy_host_summary, deploy_preflight_violations, deploy_secret_summary,
    valid_image_reference,
)

WEB = {'web': {'command': ['web'], 'ports': [{'container_port': 8000, 'host_port': 18000}],
               'health': {'path': '/api/health'}}}


def vps(**over):
    facts = {
        'groups': ['postgres', 'pgbouncer', 'redis', 'db_backup', 'app'],
        'postgres': {'port': 5432, 'max_connections': 100, 'superuser_reserved': 3},
        'pgbouncer': {'port': 6432, 'default_pool_size': 20, 'reserve_pool_size': 5, 'databases': 1},
        'redis': {'port': 6379, 'tls_port': ''},
        'proxy': {'http_port': 80, 'https_port': 443, 'tls': False},
        'app': {'processes': WEB, 'image_repository': 'registry.example.com/shop/app', 'image_tag': '1.4.2',
                'image_digest': '', 'rollout_serial': [1, '100%']},
        'secrets': {},
    }
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(facts.get(key), dict):
            facts[key] = dict(facts[key], **value)
        else:
            facts[key] = value
    return facts


GROUPS = {g: ['vps'] for g in ('postgres', 'pgbouncer', 'redis', 'db_backup', 'app')}
PRODUCTION = {'name': 'production', 'require_tls': True, 'min_secret_length': 24, 'canary': 1,
              'require_backup_before_migrations': True}


def test_single_vps_is_clean():
    assert deploy_preflight_violations({'vps': vps()}, GROUPS) == []


def test_every_violation_at_once_by_name_never_a_value():
    secret = 'changeme'
    stack = {'vps': vps(
        pgbouncer={'port': 5432, 'default_pool_size': 90},
        app={'image_repository': 'Registry.example.com/UPPER case', 'rollout_serial': [2, '100%'],
             'backup_before_migrations': False},
        secrets=deploy_secret_summary({'redis_password': secret, 'pgbouncer_admin_password': 'short'}),
    )}
    out = deploy_preflight_violations(stack, GROUPS, PRODUCTION)
    text = '\n'.join(out)
    assert 'postgres_port and pgbouncer_listen_port all use port 5432 on host vps' in text
    assert 'pools:' in text and 'postgres_max_connections' in text
    assert 'image: app_image_repository and app_image_tag' in text
    assert 'proxy_tls_enabled is false on vps' in text
    assert 'app_rollout_serial starts with a batch of 2' in text
    assert 'app_backup_before_migrations is false on vps' in text
    assert 'redis_password is 8 characters' in text
    assert 'pgbouncer_admin_password is 5 characters' in text
    assert secret not in text and 'short' not in text.replace('shrink', '')
    assert len(out) == 8


def test_groups_missing():
    out = deploy_preflight_violations({'db1': vps(groups=['pgbouncer'])}, {'pgbouncer': ['db1']})
    text = '\n'.join(out)
    assert "no host in the group 'app'" in text
    assert "db1 is in 'pgbouncer' but there is no host in 'postgres'" in text


def test_app_slot_port_clashes_with_a_service():
    stack = {'vps': vps(app={'processes': {'web': {'ports': [{'container_port': 8000, 'host_port': 6279}]}}})}
    out = deploy_preflight_violations(stack, GROUPS)
    assert any('redis_port and app_processes.web.ports[http] (green slot) all use port 6379' in o for o in out)


def test_placeholder_secret_is_named():
    stack = {'vps': vps(secrets=deploy_secret_summary({'redis_app_password': 'your_redis_password_here_long'}))}
    out = deploy_preflight_violations(stack, GROUPS, {'name': 'staging', 'min_secret_length': 8})
    assert out == ['policy (staging requires strong secrets): redis_app_password looks like a placeholder']


def test_image_references():
    assert valid_image_reference('shipyard-test/app', 'v1')
    assert valid_image_reference('registry.example.com:5000/team/app', '', 'sha256:' + 'a' * 64)
    assert not valid_image_reference('', 'v1')
    assert not valid_image_reference('app', 'bad tag')
    assert not valid_image_reference('app', '', 'sha256:123')


def test_batches_follow_ansible_serial():
    hosts = ['a', 'b', 'c', 'd', 'e']
    assert deploy_batches(hosts, [1, '100%']) == [['a'], ['b', 'c', 'd', 'e']]
    assert deploy_batches(hosts, [1, 2]) == [['a'], ['b', 'c'], ['d', 'e']]
    assert deploy_batches(hosts, '40%') == [['a', 'b'], ['c', 'd'], ['e']]
    assert deploy_batches(['a'], [1, '100%']) == [['a']]


def test_durations():
    marks = {'start': 100.0, 'release': 110.0, 'rollout': 130.5}
    assert deploy_durations(marks, 150.0) == {'release': 20.5, 'rollout': 19.5, 'total': 50.0}


def test_host_summary_carries_the_rollout_phases():
    host = {'deploy_release_before': 'shop:v1', 'app_release': {'image': 'shop:v2'},
            'app_rollout_result': {'status': 'changed', 'seconds': 4.2,
                                   'phases': {'start': 0.4, 'health': 2.6, 'switch': 0.2, 'drain': 0.3, 'stop': 0.5}}}
    line = deploy_host_summary(host)
    assert (line['before'], line['after'], line['rollout'], line['seconds']) == ('shop:v1', 'shop:v2', 'changed', 4.2)
    assert line['phases'] == {'start': 0.4, 'health': 2.6, 'switch': 0.2, 'drain': 0.3, 'stop': 0.5}
    # A host the rollout never reached: no phases, the release it ran before stays its release.
    skipped = deploy_host_summary({'deploy_release_before': 'shop:v1', 'app_release': {'image': 'shop:v2'},
                                   'app_rollout_result': {'status': 'skipped'}})
    assert (skipped['after'], skipped['phases'], skipped['seconds']) == ('shop:v1', {}, 0)


def test_values_that_are_not_numbers_are_left_to_the_role_spec_check():
    bad = vps(postgres={'port': 'fivefour', 'max_connections': 'many'}, pgbouncer={'default_pool_size': 'big'},
              app={'host_port_base': 'x'})
    out = deploy_preflight_violations({'vps': bad}, GROUPS, {})
    assert not any(m.startswith('pools:') or m.startswith('ports:') for m in out), out

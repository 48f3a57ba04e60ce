"""The app tier after converge (v1 deployed) and side_effect (v2, broken, bad-migration, rollback to v1,
v1 again, ..., and last the prune step's v2b, v2's app with its own image): v2b serves through nginx on
both app hosts."""

import json
import os

import testinfra.utils.ansible_runner

RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(os.environ['MOLECULE_INVENTORY_FILE'])
testinfra_hosts = RUNNER.get_hosts('app')

APP = 'shop'
VERSION = '2.0.0'   # v2b, deployed by side_effect's last step (prune)
PORTS = {'blue': 18000, 'green': 18100}  # molecule.yml: host_port 18000, app_slot_port_offset 100


def containers(host):
    names = host.check_output("docker ps --filter label=org.shipyard.webstack.app=%s --format '{{.Names}}'" % APP)
    return sorted(names.split())


def inspect(host, name):
    return json.loads(host.check_output('docker inspect %s' % name))[0]


def get_json(host, path):
    return json.loads(host.check_output(
        "python3 -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())' "
        'http://127.0.0.1%s' % path))


def active_slot(host):
    return host.file('/var/lib/shipyard/proxy/web.slot').content_string.strip()


def test_one_web_and_one_worker_run(host):
    running = containers(host)
    assert len(running) == 2, running
    assert running[0].startswith(APP + '-web-') and running[1].startswith(APP + '-worker-')
    # The web container is the slot nginx serves.
    assert running[0] == '%s-web-%s' % (APP, active_slot(host))


def test_proxy_serves_the_release_with_a_healthy_backend(host):
    out = get_json(host, '/api/version')
    assert out['version'] == VERSION
    assert out['schema'] in ('current', 'ahead')  # after the rollback the schema is v2's (ahead)
    health = get_json(host, '/api/health')
    assert health['status'] == 'ok'
    assert health['checks']['database']['status'] == 'ok' and health['checks']['redis']['status'] == 'ok'


def test_web_container_is_hardened_and_published_on_loopback(host):
    slot = active_slot(host)
    info = inspect(host, '%s-web-%s' % (APP, slot))
    hc = info['HostConfig']
    assert hc['ReadonlyRootfs'] is True
    assert hc['CapDrop'] == ['ALL']
    assert 'no-new-privileges' in hc['SecurityOpt']
    assert hc['Memory'] == 256 * 1024 * 1024
    assert hc['NanoCpus'] == 500000000
    assert hc['RestartPolicy']['Name'] == 'always'
    assert hc['LogConfig'] == {'Type': 'json-file', 'Config': {'max-file': '5', 'max-size': '10m'}}
    assert '/tmp' in hc['Tmpfs']
    assert hc['PortBindings'] == {'8000/tcp': [{'HostIp': '127.0.0.1', 'HostPort': str(PORTS[slot])}]}
    assert info['Config']['User'] == '10001:10001'  # the image's non-root user
    assert info['Config']['StopTimeout'] == 15
    labels = info['Config']['Labels']
    assert labels['org.shipyard.webstack.slot'] == slot
    assert labels['org.shipyard.webstack.release'].startswith('sha256:')


def test_env_file_is_secret_and_has_the_urls(host):
    env = host.file('/etc/shipyard/%s/app.env' % APP)
    assert env.user == 'root' and env.mode == 0o600
    lines = dict(line.split('=', 1) for line in env.content_string.splitlines() if line and not line.startswith('#'))
    assert lines['DATABASE_URL'].startswith('postgresql://app:') and ':6432/app' in lines['DATABASE_URL']
    assert lines['DIRECT_URL'].startswith('postgresql://app:') and ':5432/app' in lines['DIRECT_URL']
    assert lines['REDIS_URL'].startswith('redis://app:') and lines['REDIS_URL'].endswith(':6379/0')


def test_worker_beats(host):
    worker = [c for c in containers(host) if '-worker-' in c][0]
    assert inspect(host, worker)['State']['Health']['Status'] == 'healthy'


def test_release_history(host):
    history = host.file('/var/lib/shipyard/%s/releases.json' % APP)
    assert history.user == 'root' and history.mode == 0o640
    releases = json.loads(history.content_string)['releases']
    assert releases, 'empty history'
    last = releases[-1]
    assert last['result'] == 'ok' and last['version'] == VERSION
    for key in ('release', 'image', 'image_id', 'time', 'by', 'fingerprint', 'action'):
        assert key in last, key
    assert last['by'] == 'molecule'
    # A release never appears twice in a row with the same result: a repeated deploy writes nothing.
    pairs = [(r['release'], r['result']) for r in releases]
    assert all(a != b for a, b in zip(pairs, pairs[1:])), pairs
    # The running release and the rollback target (the newest good release with another image) keep their
    # images; the prune step kept one release (app_keep_releases=1), so older ones may be gone.
    good = [entry['image_id'] for entry in releases if entry['result'] == 'ok']
    target = [image for image in good if image != good[-1]][-1]
    for image in (good[-1], target):
        host.check_output('docker image inspect %s' % image)


def test_audit_log_records_the_rollback(host):
    """rollback.yml writes an audit line on every app host, like a deploy (side_effect's rollback step)."""
    lines = [json.loads(line) for line in host.file('/var/log/shipyard/audit.jsonl').content_string.splitlines()]
    rollbacks = [r for r in lines if r['event'] == 'rollback']
    assert len(rollbacks) == 1, [(r['event'], r['result']) for r in lines]
    assert rollbacks[0]['result'] == 'success' and rollbacks[0]['release'].endswith(':v1'), rollbacks[0]
    assert '@' in rollbacks[0]['who'] and rollbacks[0]['run_id'], rollbacks[0]


def test_audit_log_records_the_release_phase_run_alone(host):
    """release.yml writes a `release` line on every app host (side_effect's v1-release step)."""
    lines = [json.loads(line) for line in host.file('/var/log/shipyard/audit.jsonl').content_string.splitlines()]
    releases = [r for r in lines if r['event'] == 'release']
    assert len(releases) == 1, [(r['event'], r['result']) for r in lines]
    assert releases[0]['result'] == 'success' and releases[0]['release'].endswith(':v1'), releases[0]
    assert releases[0]['digest'].startswith('sha256:') and releases[0]['run_id'], releases[0]


def test_deploy_recorded_every_file_step_root_only_and_without_values(host):
    records = host.file('/var/lib/shipyard/managed-files')
    assert (records.is_directory, records.mode, records.user) == (True, 0o700, 'root')
    names = sorted(host.check_output('ls /var/lib/shipyard/managed-files').split())
    assert names == ['app-%s-env.json' % APP, 'docker-daemon.json', 'pgbouncer-config.json', 'proxy-site.json']
    secrets = ['auth-rollout-pw-0001', 'redis-app-rollout-pw-01', 'app-rollout-pw-0001']   # molecule.yml's
    for name in names:
        record = host.file('/var/lib/shipyard/managed-files/' + name)
        assert (record.mode, record.user) == (0o600, 'root'), name
        content = json.loads(record.content_string)
        assert sorted(content) == ['fingerprint', 'paths'], name
        assert not any(secret in record.content_string for secret in secrets), name


def test_redis_kernel_setting_written_with_its_settings():
    cache = RUNNER.get_host('cache1')
    sysctl = cache.file('/etc/sysctl.d/60-shipyard-redis.conf')
    assert (sysctl.content_string, sysctl.mode, sysctl.user) == ('vm.overcommit_memory=1\n', 0o644, 'root')
    assert cache.file('/var/lib/shipyard/managed-files/redis-settings.json').exists

"""molecule/shapes: shape 1 (inventories/local) converged for real, the secrets check of issue 9,
and shapes 2-5 in check mode against the same host (evidence written by side_effect.yml)."""

import json
import os
import re

import pytest

testinfra_hosts = ['vps']

EVIDENCE = os.path.join(os.environ.get('MOLECULE_EPHEMERAL_DIRECTORY', '/nonexistent'), 'shapes')
SHAPES = ['multi-process', 'two-port-container', 'managed-data-tls', 'external-db-oneoff-migrations']
# The secrets of shape 1 the app's env file must hold (inside DATABASE_URL, DIRECT_URL, REDIS_URL
# and as SESSION_SECRET): proof that the search finds a value where it is.
ENV_FILE_SECRETS = ['vault_postgres_app_password', 'vault_redis_app_password', 'vault_app_session_secret']
# Places no secret may reach.
NEVER = ['check_output', 'deploy_output', 'shapes_check_output', 'audit_log', 'var_log', 'journal']


def load(name):
    with open(os.path.join(EVIDENCE, name)) as handle:
        return json.load(handle)


def http_get(host, path):
    """Status and body of GET http://127.0.0.1<path> on the host (through nginx), without curl."""
    script = ("import urllib.request, urllib.error\n"
              "try:\n"
              "    r = urllib.request.urlopen('http://127.0.0.1%s', timeout=10)\n"
              "    print(r.status); print(r.read().decode())\n"
              "except urllib.error.HTTPError as e:\n"
              "    print(e.code); print(e.read().decode())\n" % path)
    out = host.check_output("python3 -c %s", script)
    status, body = out.split("\n", 1)
    return int(status), body


# ----------------------------------------------------------------------------- shape 1, for real
def test_stack_answers_health_through_nginx(host):
    status, body = http_get(host, '/api/health')
    assert status == 200, body
    checks = json.loads(body)
    assert checks['status'] == 'ok', body


@pytest.mark.parametrize('unit', ['postgresql', 'pgbouncer', 'redis-server', 'docker', 'nginx'])
def test_service_running(host, unit):
    service = host.service(unit)
    assert service.is_running
    assert service.is_enabled


@pytest.mark.parametrize('port', [5432, 6432, 6379, 80])
def test_listening(host, port):
    assert host.socket('tcp://127.0.0.1:%d' % port).is_listening


def test_pgbouncer_is_the_design_pool(host):
    ini = host.file('/etc/pgbouncer/pgbouncer.ini').content_string
    for line in ['pool_mode = transaction', 'listen_port = 6432', 'max_client_conn = 200',
                 'default_pool_size = 20', 'min_pool_size = 5', 'reserve_pool_size = 5']:
        assert re.search(r'^%s$' % re.escape(line), ini, re.M), line


def test_redis_persists_with_a_password_and_256mb_lru(host):
    conf = host.file('/etc/redis/shipyard.conf')
    assert conf.mode & 0o077 in (0, 0o040)  # it holds the password: 0600/0640
    content = host.check_output('cat /etc/redis/shipyard.conf')
    assert re.search(r'^appendonly yes$', content, re.M)
    assert re.search(r'^maxmemory 256mb$', content, re.M)
    assert re.search(r'^maxmemory-policy allkeys-lru$', content, re.M)
    # The default user has a password (stored as its SHA-256), never nopass.
    assert re.search(r'^user default on #[0-9a-f]{64} ', content, re.M)
    assert 'nopass' not in content
    assert 'NOAUTH' in host.run('redis-cli -p 6379 PING').stdout


def test_web_container_limits_and_restart(host):
    names = host.check_output("docker ps --filter label=org.shipyard.webstack.process=web --format '{{.Names}}'").split()
    assert len(names) == 1, names
    info = json.loads(host.check_output('docker inspect %s' % names[0]))[0]['HostConfig']
    assert info['Memory'] == 1024 ** 3
    assert info['NanoCpus'] == 10 ** 9
    assert info['RestartPolicy']['Name'] == 'always'


def test_env_file_urls(host):
    env = host.file('/etc/shipyard/shop/app.env')
    assert env.mode == 0o600
    content = env.content_string
    database_url = re.search(r'^DATABASE_URL=(.*)$', content, re.M).group(1)
    direct_url = re.search(r'^DIRECT_URL=(.*)$', content, re.M).group(1)
    assert re.match(r'^postgresql://app:[^@]+@[^:/]+:6432/app', database_url)
    assert re.match(r'^postgresql://app:[^@]+@[^:/]+:5432/app', direct_url)


def test_backup_timer_daily_0200_utc_kept_30_days(host):
    out = host.check_output('systemctl show -p TimersCalendar -p ActiveState -p UnitFileState shipyard-db-backup.timer')
    assert 'ActiveState=active' in out
    assert 'UnitFileState=enabled' in out
    assert re.search(r'OnCalendar=\*-\*-\* 02:00:00 UTC', out), out
    config = json.loads(host.check_output('cat /etc/shipyard-db-backup/config.json'))
    assert int(config['retention']['days']) == 30


def test_audit_log_line_written(host):
    lines = host.file('/var/log/shipyard/audit.jsonl').content_string.splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    deploys = [r for r in records if r.get('event') == 'deploy']
    assert deploys, lines
    assert all(r['result'] == 'success' for r in deploys), deploys
    # converge, idempotence and the secrets deploy; check-mode runs write nothing.
    assert len(deploys) == 3, [r.get('run_id') for r in deploys]


def test_deploy_lock_released(host):
    assert not host.file('/var/lib/shipyard/deploy.lock').exists


# ----------------------------------------------------------------------------- secrets (issue 9)
@pytest.fixture(scope='module')
def scan():
    return load('secrets-evidence.json')


def test_secrets_deploy_succeeded():
    with open(os.path.join(EVIDENCE, 'secrets-deploy.rc')) as handle:
        assert handle.read().strip() == '0'


def test_secrets_check_run_succeeded():
    evidence = load('secrets-check.json')
    assert evidence['finished'] and int(evidence['rc']) == 0, evidence['recap']


def test_check_mode_of_a_secret_rotation_exits_0_and_says_what_it_cannot_tell():
    """deploy --check with every password rotated (not applied): the data tier roles preview the new
    passwords; the migration gate and the verify phase, which cannot log in with passwords the server does
    not have yet, say so instead of failing the preview. The host is unchanged (the batch's snapshots)."""
    evidence = load('rotation-check.json')
    assert evidence['finished'] and int(evidence['rc']) == 0, evidence['recap']
    assert evidence['recap'] and 'failed=0' in evidence['recap'][-1], evidence['recap']
    with open(os.path.join(EVIDENCE, 'rotation-check.log')) as handle:
        log = ' '.join(handle.read().split())   # the output callback may fold long lines
    assert 'check mode cannot tell whether migrations are pending' in log
    # The verify phase's health checks log in with the previewed passwords: reported, not failed.
    assert 'Check mode cannot verify postgres, pgbouncer, redis on vps: the login was refused' in log
    assert evidence['after'] == evidence['before'] and evidence['before']


def test_secrets_scan_covers_every_secret_and_place(scan):
    # 11 new values (8 of shape 1, 3 more used by shapes 2-5), the 8 the host had before and the 11 values
    # of the rotation preview.
    assert len([name for name in scan['secrets'] if ':' not in name]) == 11
    assert len([name for name in scan['secrets'] if name.startswith('before:')]) == 8
    assert len([name for name in scan['secrets'] if name.startswith('rotated:')]) == 11
    for place in NEVER + ['env_file']:
        entry = scan['places'][place]
        assert entry['exists'] and entry['files'] > 0 and entry['bytes'] > 0, place
    # -vvv output of a whole deploy is large: a truncated capture would prove nothing.
    assert scan['places']['deploy_output']['bytes'] > 200000


@pytest.mark.parametrize('place', NEVER)
def test_secret_search_finds_the_marker(scan, place):
    """The marker (the deploy owner, also logged on purpose) is found: the search works there."""
    assert scan['places'][place]['marker'] > 0


def test_secret_search_finds_the_secrets_in_the_env_file(scan):
    """The 0600 env file must hold the app's secrets: the same search finds them there."""
    hits = scan['places']['env_file']['hits']
    for name in ENV_FILE_SECRETS:
        assert hits[name] > 0, name


def test_secrets_never_printed_in_the_check_output(scan):
    entry = scan['places']['check_output']
    assert entry['hits'] == {name: 0 for name in scan['secrets']}, entry['files_with_secrets']


def test_secrets_never_printed_in_the_deploy_output(scan):
    entry = scan['places']['deploy_output']
    assert entry['hits'] == {name: 0 for name in scan['secrets']}, entry['files_with_secrets']


def test_secrets_never_printed_in_the_shapes_check_output(scan):
    entry = scan['places']['shapes_check_output']
    assert entry['hits'] == {name: 0 for name in scan['secrets']}, entry['files_with_secrets']


def test_secrets_never_written_to_the_audit_log(scan):
    entry = scan['places']['audit_log']
    assert entry['hits'] == {name: 0 for name in scan['secrets']}, entry['files_with_secrets']


def test_secrets_never_written_under_var_log(scan):
    entry = scan['places']['var_log']
    assert entry['hits'] == {name: 0 for name in scan['secrets']}, entry['files_with_secrets']


def test_secrets_never_written_to_the_journal(scan):
    entry = scan['places']['journal']
    assert entry['hits'] == {name: 0 for name in scan['secrets']}, entry['files_with_secrets']


# ----------------------------------------------------------------------------- shapes 2-5, check mode
@pytest.mark.parametrize('shape', SHAPES)
def test_shape_check_mode_exits_0(shape):
    evidence = load('check-%s.json' % shape)
    assert evidence['finished'] and int(evidence['rc']) == 0, evidence['recap']
    assert evidence['recap'] and 'failed=0' in evidence['recap'][-1], evidence['recap']


@pytest.mark.parametrize('shape', SHAPES)
def test_shape_check_mode_changes_nothing(shape):
    evidence = load('check-%s.json' % shape)
    assert evidence['before'], 'empty snapshot'
    assert any(' shipyard-test/app:' in line or 'shop-web-' in line for line in evidence['before'])
    assert evidence['after'] == evidence['before']

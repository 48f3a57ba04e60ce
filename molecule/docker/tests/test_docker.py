"""The docker role on real Debian 12/13 hosts: engine, daemon.json, registry CA, a hardened app container."""

import json
import os
import time

import testinfra.utils.ansible_runner

RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(os.environ['MOLECULE_INVENTORY_FILE'])
testinfra_hosts = RUNNER.get_hosts('app')

STORAGE_DRIVER = 'overlay2'  # molecule.yml: docker_storage_driver
REGISTRY = 'docker-deb12:5000'
APP_IMAGE = 'shipyard-test/app:v1'
REGISTRY_IMAGE = REGISTRY + '/shipyard/busybox:1'
CA_FILE = os.path.join(os.environ['MOLECULE_EPHEMERAL_DIRECTORY'], 'test-ca', 'ca.crt')
PORT = 8000


def docker_info(host):
    out = host.check_output("docker info --format '{{json .}}'")
    return json.loads(out)


def test_packages_and_service(host):
    assert host.package('docker.io').is_installed
    assert host.package('python3-docker').is_installed
    service = host.service('docker')
    assert service.is_running
    assert service.is_enabled
    # The community.docker modules' Python side works on the host.
    host.check_output("python3 -c 'import docker, requests'")


def test_daemon_json(host):
    daemon = host.file('/etc/docker/daemon.json')
    assert daemon.user == 'root' and daemon.mode == 0o644
    config = json.loads(daemon.content_string)
    assert config == {
        'log-driver': 'json-file',
        'log-opts': {'max-size': '20m', 'max-file': '3'},
        'live-restore': True,
        'storage-driver': STORAGE_DRIVER,
    }


def test_daemon_runs_with_the_settings(host):
    info = docker_info(host)
    assert info['Driver'] == STORAGE_DRIVER
    assert info['LiveRestoreEnabled'] is True
    assert info['LoggingDriver'] == 'json-file'


def test_registry_ca_certificate(host):
    directory = host.file('/etc/docker/certs.d/%s' % REGISTRY)
    assert directory.is_directory and directory.mode == 0o755
    cert = host.file('/etc/docker/certs.d/%s/ca.crt' % REGISTRY)
    assert cert.user == 'root' and cert.group == 'root' and cert.mode == 0o644
    with open(CA_FILE) as handle:
        assert cert.content_string.strip() == handle.read().strip()


def wait_healthy(host, name, timeout=60):
    deadline = time.monotonic() + timeout
    state = None
    while time.monotonic() < deadline:
        state = host.check_output("docker inspect -f '{{.State.Health.Status}}' %s" % name)
        if state == 'healthy':
            return state
        time.sleep(1)
    return state


def test_app_container_from_the_moved_image(host):
    inspect = json.loads(host.check_output('docker inspect app-web'))[0]
    assert inspect['Config']['Image'] == APP_IMAGE
    assert inspect['State']['Running']
    # Hardened: read-only root, no capabilities, non-root user from the image.
    assert inspect['HostConfig']['ReadonlyRootfs'] is True
    assert inspect['HostConfig']['CapDrop'] == ['ALL']
    assert inspect['Config']['User'] == '10001:10001'
    # The daemon's log rotation applies to containers created under it.
    assert inspect['HostConfig']['LogConfig'] == {'Type': 'json-file', 'Config': {'max-file': '3', 'max-size': '20m'}}
    assert wait_healthy(host, 'app-web') == 'healthy'


def test_app_answers_health(host):
    script = ("import json, urllib.request as u; "
              "r = u.urlopen('http://127.0.0.1:%d/api/health?quick=true', timeout=5); "
              "print(r.status, json.dumps(json.load(r)))" % PORT)
    out = host.check_output('python3 -c "%s"' % script)
    status, body = out.split(' ', 1)
    assert status == '200'
    body = json.loads(body)
    assert body['status'] == 'ok' and body['version'] == '1.0.0'


def test_live_restore_keeps_containers_across_a_daemon_restart():
    # On one host (it restarts the daemon): the container keeps its process.
    host = RUNNER.get_host(testinfra_hosts[0])
    before = json.loads(host.check_output('docker inspect app-web'))[0]['State']
    host.check_output('systemctl restart docker')
    after = json.loads(host.check_output('docker inspect app-web'))[0]['State']
    assert after['Running'] and after['Pid'] == before['Pid'] and after['StartedAt'] == before['StartedAt']


def test_registry_login_is_stored_for_root(host):
    config = host.file('/root/.docker/config.json')
    assert config.mode == 0o600
    assert REGISTRY in json.loads(config.content_string)['auths']


def test_image_was_pulled_through_the_registry(host):
    # deb12 pushed it; deb13 never had it moved in: it pulled it, over TLS checked against
    # the CA the role installed, with the login the role made.
    image = json.loads(host.check_output('docker image inspect %s' % REGISTRY_IMAGE))[0]
    assert any(d.startswith(REGISTRY + '/shipyard/busybox@sha256:') for d in image['RepoDigests']), image['RepoDigests']


def test_registry_refuses_a_pull_without_the_login(host):
    # Same daemon (same CA), no credentials: the registry's htpasswd auth says no.
    out = host.run('DOCKER_CONFIG=$(mktemp -d) docker pull %s/shipyard/busybox:missing-tag' % REGISTRY)
    assert out.rc != 0
    assert 'no basic auth credentials' in out.stderr or 'unauthorized' in out.stderr, out.stderr

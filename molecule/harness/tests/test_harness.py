"""The test bed is real: systemd runs, hosts find each other, Docker runs inside."""

import pytest
import testinfra.utils.ansible_runner

RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(
    __import__('os').environ['MOLECULE_INVENTORY_FILE'])
ALL_HOSTS = RUNNER.get_hosts('bed')
testinfra_hosts = ALL_HOSTS


def test_systemd_is_pid_1_and_running(host):
    assert host.run('cat /proc/1/comm').stdout.strip() == 'systemd'
    state = host.run('systemctl is-system-running').stdout.strip()
    failed = host.run('systemctl --failed --no-legend').stdout
    assert state == 'running', 'system state %r, failed units:\n%s' % (state, failed)


@pytest.mark.parametrize('peer', ALL_HOSTS)
def test_hosts_resolve_each_other_by_name(host, peer):
    addr = host.run('getent hosts %s' % peer)
    assert addr.rc == 0 and addr.stdout.split()[0], 'cannot resolve %s' % peer
    # And really reach it: a TCP connect to a port nobody listens on must be refused
    # by the peer (not time out), which proves the route.
    probe = host.run(
        "python3 -c \"import socket,sys; s=socket.socket(); s.settimeout(3)\n"
        "try: s.connect(('%s', 9)); print('open')\n"
        "except ConnectionRefusedError: print('refused')\n"
        "except OSError as e: print('error', e)\"" % peer)
    assert probe.stdout.strip() in ('refused', 'open'), probe.stdout + probe.stderr


def test_distributions_are_mixed():
    versions = {RUNNER.get_host(h).file('/etc/debian_version').content_string.split('.')[0]
                for h in ALL_HOSTS}
    assert {'12', '13'} <= {v[:2] for v in versions}, versions


def test_docker_runs_a_container_inside_a_host():
    docker_host = RUNNER.get_host(RUNNER.get_hosts('bed_docker')[0])
    assert docker_host.service('docker').is_running
    state = docker_host.run("docker inspect -f '{{.State.Status}}' harness-web")
    assert state.stdout.strip() == 'running', state.stdout + state.stderr
    page = docker_host.run(
        "python3 -c \"import urllib.request as u; r=u.urlopen('http://127.0.0.1:8080/', timeout=5)\" ; echo rc=$?")
    # busybox httpd serves an empty docroot: 404 is an HTTP answer from inside the container.
    assert 'HTTP Error 404' in page.stderr or 'rc=0' in page.stdout, page.stdout + page.stderr

"""slot_rollout against the real Docker engine of this machine (busybox containers serving HTTP) and
nginx's commands played by small programs (as in test_proxy_switch.py): the rollout of a host in one
module run - start, health gate, switch, drain, stop - and the rescue when a step fails.

nginx itself, the reference app and the load that must see no failed request are proven by the
molecule rollout scenario; here every decision and every undo is seen on real containers.
"""

import json
import os
import subprocess
import time

import pytest

from modrun import run_module
from pgservers import free_fixed_ports
from servers import docker
from test_proxy_switch import Proxy, _slot_of, _upstream

from ansible_collections.shipyard.webstack.plugins.filter import app as F

SECRET = 'rollout-secret-Pw-7731'
SERVE = 'mkdir -p /tmp/www && echo ok > /tmp/www/health && echo "web {release} up" && exec httpd -f -p 8000 -h /tmp/www'
BROKEN = 'mkdir -p /tmp/www && echo "booting with APP_PASSWORD=$APP_PASSWORD" && exec httpd -f -p 8000 -h /tmp/www'
WORKER = 'echo "worker {release} up" && exec sleep 600'


def plan(base, web=SERVE, release='r1'):
    processes = {
        'web': {'command': ['sh', '-c', web.format(release=release)],
                'ports': [{'container_port': 8000, 'routes': ['/']}],
                'health': {'path': '/health'}, 'memory': '64m', 'cpus': 0.5, 'stop_timeout': 2,
                'read_only': True, 'tmpfs': ['/tmp']},
        'worker': {'command': ['sh', '-c', WORKER.format(release=release)], 'memory': '32m', 'cpus': 0.25,
                   'stop_timeout': 1},
    }
    return F.app_process_plan(processes, None, base, 100)


class Host:
    """One app host's rollout state: a unique app name, its env file and the stand-in proxy."""

    def __init__(self, tmp_path, proxy, busybox):
        self.app = 'sr%s' % os.urandom(3).hex()
        self.base = free_fixed_ports(0, 100)   # the blue and green slots' host ports
        self.image = busybox
        self.proxy = proxy
        self.env_file = str(tmp_path / 'app.env')
        with open(self.env_file, 'w') as handle:
            handle.write('# Managed by the test\nAPP_PASSWORD=%s\nGREETING=hello world\n' % SECRET)
        os.chmod(self.env_file, 0o600)
        self.pid_file = str(tmp_path / 'nginx.pid')
        with open(self.pid_file, 'w') as handle:
            handle.write('%d\n' % os.getpid())   # this test is nginx's master: its children titled as workers count

    def args(self, release='r1', web=SERVE, **extra):
        upstream = 'web'
        targets = [dict(upstream=upstream, slot=slot,
                        content=_upstream(slot).replace('18000', str(self.base)).replace('18100', str(self.base + 100)),
                        verify=self.proxy.args(slot)['verify']) for slot in ('blue', 'green')]
        args = dict(app=self.app, release=dict(id=release, ref=self.image, image='busybox:%s' % release),
                    processes=plan(self.base, web, release), config_common={'env': 'e1'},
                    container=dict(env_file=self.env_file, cap_drop=['ALL'], security_opts=['no-new-privileges']),
                    health=dict(timeout=10, interval=0.2, consecutive_successes=2, check_timeout=2),
                    proxy=dict(upstreams=targets, upstreams_dir=self.proxy.upstreams, state_dir=self.proxy.state,
                               validate=self.proxy.validate, test_command=[self.proxy.test],
                               reload_command=[self.proxy.reload], live_url=self.proxy.server.url('/__proxy_health'),
                               pid_file=self.pid_file, timeout=3, interval=0.1),
                    drain_seconds=5, log_lines=5)
        args.update(extra)
        return args

    def containers(self):
        """name -> (id, state, release label) of this app's containers."""
        out = docker('ps', '-a', '--filter', 'label=org.shipyard.webstack.app=%s' % self.app, '--format',
                     '{{.Names}} {{.ID}} {{.State}} {{.Label "org.shipyard.webstack.release"}}')
        return dict((line.split()[0], tuple(line.split()[1:])) for line in out.splitlines() if line.strip())

    def cleanup(self):
        for name in self.containers():
            docker('rm', '-f', name, check=False)


@pytest.fixture
def host(tmp_path, http_server, busybox_image):
    proxy = Proxy(tmp_path / 'proxy', http_server)
    proxy.install('blue')
    box = Host(tmp_path, proxy, busybox_image)
    yield box
    box.cleanup()


def inspect(name):
    return json.loads(docker('inspect', name))[0]


def test_first_rollout_starts_every_process_hardened_and_switches_the_proxy(host):
    result = run_module('slot_rollout', host.args())
    assert result.get('failed') is not True, result.get('msg')
    assert result['changed'] and [p['process'] for p in result['processes']] == ['web', 'worker']
    web, worker = '%s-web-green' % host.app, '%s-worker-green' % host.app
    assert host.containers() == {web: (host.containers()[web][0], 'running', 'r1'),
                                 worker: (host.containers()[worker][0], 'running', 'r1')}
    info = inspect(web)
    hc = info['HostConfig']
    assert hc['ReadonlyRootfs'] and hc['CapDrop'] == ['ALL'] and hc['SecurityOpt'] == ['no-new-privileges']
    assert hc['Memory'] == 64 * 1024 ** 2 and hc['NanoCpus'] == 500000000 and hc['RestartPolicy']['Name'] == 'always'
    assert hc['PortBindings'] == {'8000/tcp': [{'HostIp': '127.0.0.1', 'HostPort': str(host.base + 100)}]}
    assert 'APP_PASSWORD=%s' % SECRET in info['Config']['Env'] and 'GREETING=hello world' in info['Config']['Env']
    # The proxy now serves green (file, reload, record), after the validate program and nginx -t.
    assert host.proxy.commands() == ['check', 'nginx-t', 'reload']
    assert host.proxy.file() == 'green' and host.proxy.recorded() == 'green'
    assert result['switches'][0]['to'] == 'green' and result['health']['ready']
    assert SECRET not in result['_stdout']
    # The images on the host, as docker lists them (the role's pruning reads them instead of listing again).
    listed = sorted(set(docker('image', 'ls', '--no-trunc', '--quiet').split()))
    assert result['images'] == listed and inspect(web)['Image'] in result['images']
    # The same release again: nothing to do, nothing restarted; the images are listed all the same.
    before = host.containers()
    again = run_module('slot_rollout', host.args())
    assert again.get('failed') is not True and not again['changed'], again.get('msg')
    assert 'nothing to do' in again['msg'] and host.containers() == before
    assert again['images'] == listed


def test_next_release_goes_to_the_other_slot_drains_and_stops_the_old_one(host):
    assert run_module('slot_rollout', host.args('r1')).get('failed') is not True
    # An nginx worker of the old configuration with a request in flight: it exits 3 s from now, some 2 s after
    # the switch.
    old_worker = subprocess.Popen(['bash', '-c', 'exec -a "nginx: worker process" sleep 3'])
    try:
        result = run_module('slot_rollout', host.args('r2'))
    finally:
        old_worker.kill()
        old_worker.wait()
    assert result.get('failed') is not True, result.get('msg')
    assert sorted(host.containers()) == ['%s-web-blue' % host.app, '%s-worker-blue' % host.app]
    assert set(c[2] for c in host.containers().values()) == {'r2'}
    assert host.proxy.file() == 'blue' and host.proxy.recorded() == 'blue'
    # The drain lasted until the old worker was gone (not the whole 5 s), and only then the old slot stopped.
    assert 1.0 <= result['timings']['drain'] < 4.5, result['timings']
    assert result['msg'].startswith('web: started busybox:r2 (r2) as %s-web-blue, switched the proxy green -> blue '
                                    'and stopped %s-web-green' % (host.app, host.app))


def test_the_drain_never_waits_longer_than_drain_seconds(host):
    assert run_module('slot_rollout', host.args('r1')).get('failed') is not True
    stuck = subprocess.Popen(['bash', '-c', 'exec -a "nginx: worker process" sleep 60'])
    try:
        result = run_module('slot_rollout', host.args('r2', drain_seconds=1))
    finally:
        stuck.kill()
        stuck.wait()
    assert result.get('failed') is not True, result.get('msg')
    assert 0.9 <= result['timings']['drain'] < 2.0, result['timings']


def test_an_unhealthy_release_is_removed_and_the_old_one_keeps_serving(host):
    assert run_module('slot_rollout', host.args('r1')).get('failed') is not True
    before = host.containers()
    commands = host.proxy.commands()
    started = time.monotonic()
    result = run_module('slot_rollout', host.args('r2', web=BROKEN, health=dict(timeout=2, interval=0.2)))
    took = time.monotonic() - started
    assert result['failed'] and result['failure']['failed_at'] == 'health'
    msg = result['msg']
    assert "failed at 'health': Failing check 'web http /health'" in msg and 'bad_status' in msg
    assert 'last HTTP status 404' in msg
    assert 'The new containers %s-web-blue, %s-worker-blue were removed; the old ones keep serving' % (host.app, host.app) in msg
    # The log of the failing process, with the secret it printed masked; not the healthy worker's.
    assert 'log lines of %s-web-blue' % host.app in msg and 'booting with APP_PASSWORD=********' in msg
    assert 'log lines of %s-worker-blue' % host.app not in msg
    assert SECRET not in result['_stdout']
    # Nothing changed: the old containers run as before, the proxy was never touched.
    assert host.containers() == before and host.proxy.commands() == commands
    assert host.proxy.file() == 'green' and host.proxy.recorded() == 'green'
    # The rescue is one part of the same module run: the timeout plus a little.
    assert took < 2 + 3, took


def test_a_switch_nginx_refuses_goes_back_and_removes_the_new_containers(host):
    assert run_module('slot_rollout', host.args('r1')).get('failed') is not True
    before = host.containers()
    open(host.proxy.fail + 'test', 'w').close()
    result = run_module('slot_rollout', host.args('r2'))
    assert result['failed'] and result['failure']['failed_at'] == 'switch'
    assert 'nginx refused its configuration' in result['msg'] and 'the previous file is back' in result['msg']
    assert host.containers() == before
    assert host.proxy.file() == 'green' and _slot_of(host.proxy.loaded) == 'green' and host.proxy.recorded() == 'green'


def test_a_switch_nginx_does_not_confirm_is_switched_back(host):
    assert run_module('slot_rollout', host.args('r1')).get('failed') is not True
    before = host.containers()
    # nginx's health route keeps saying green after the reload to blue: the verify fails.
    host.proxy.server.set(lambda n, t: (200, {'status': 'ok', 'config': 'c1', 'slots': {'web': 'green'}}))
    result = run_module('slot_rollout', host.args('r2'))
    assert result['failed'] and result['failure']['failed_at'] == 'switch'
    assert 'did not answer as expected' in result['msg']
    # The file that was loaded is replaced by the old slot's again (and loaded), the new containers are gone.
    assert host.proxy.file() == 'green' and _slot_of(host.proxy.loaded) == 'green' and host.proxy.recorded() == 'green'
    assert host.containers() == before


def test_check_mode_previews_and_changes_nothing(host):
    result = run_module('slot_rollout', host.args('r1'), check_mode=True)
    assert result.get('failed') is not True and result['changed'] and result['check_mode']
    assert result['plan'].startswith('web: would start busybox:r1 (r1) as %s-web-green, switch the proxy blue -> green'
                                     % host.app)
    assert host.containers() == {} and host.proxy.commands() == [] and host.proxy.recorded() == 'blue'


def test_a_container_an_interrupted_run_left_in_the_idle_slot_is_replaced(host):
    assert run_module('slot_rollout', host.args('r1')).get('failed') is not True
    # As if a run was killed after starting r2's web in blue.
    docker('run', '-d', '--name', '%s-web-blue' % host.app, '--label', 'org.shipyard.webstack.app=%s' % host.app,
           host.image, 'sleep', '600')
    result = run_module('slot_rollout', host.args('r2'))
    assert result.get('failed') is not True, result.get('msg')
    assert set(c[2] for c in host.containers().values()) == {'r2'}


def test_a_container_that_runs_another_image_than_the_release_is_not_current(host):
    args = host.args('r1')
    args['release']['image_id'] = json.loads(docker('image', 'inspect', host.image))[0]['Id']
    assert run_module('slot_rollout', args).get('failed') is not True
    again = run_module('slot_rollout', args)
    assert not again['changed'] and 'nothing to do' in again['msg']
    # Same labels, another image (a container re-created by hand): the release is not running there.
    args['release']['image_id'] = 'sha256:' + 'f' * 64
    drifted = run_module('slot_rollout', args, check_mode=True)
    assert drifted['changed'] and drifted['plan'].startswith('web: would start busybox:r1 (r1) as %s-web-blue'
                                                             % host.app), drifted['plan']


def test_bad_input_is_refused_before_anything_changes(host):
    args = host.args('r1', health=dict(interval=0), processes=[{'name': 'web'}])
    result = run_module('slot_rollout', args)
    assert result['failed'] and 'health.interval must be more than 0' in result['msg']
    assert "processes[0] lacks ports, health, slotted" in result['msg']
    assert host.containers() == {}

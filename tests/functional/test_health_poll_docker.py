"""health_poll against real containers on the local Docker engine (busybox image built locally)."""

import time

from modrun import finish_module, run_module, start_module
from servers import docker

FAST = dict(interval=0.2, check_timeout=3)

# Health checks every 0.3 s so the tests see state changes quickly.
HEALTH = ['--health-interval', '300ms', '--health-timeout', '2s', '--health-retries', '2']


def states(check):
    return [entry['state'] for entry in check['history']]


def docker_check(name, **extra):
    options = dict(container=name)
    options.update(extra)
    return dict(checks=[{'name': 'app', 'docker': options}], **FAST)


def test_healthcheck_starting_then_healthy(containers):
    # Ready only when the test says so (docker exec), so "starting" lasts as long as needed.
    name = containers.run('starting', 'exec sleep 300',
                          '--health-cmd', 'test -f /tmp/ready || { echo not ready yet; exit 1; }',
                          '--health-start-period', '60s', '--health-interval', '1500ms', '--health-timeout', '2s')
    starting = run_module('health_poll', dict(docker_check(name), timeout=1))
    assert starting['failed'] is True
    check = starting['checks'][0]
    assert check['state'] == 'starting' and check['details']['status'] == 'running'
    assert "check 'app' (docker container %s) stuck in state 'starting'" % name in starting['msg']
    proc, path = start_module('health_poll', dict(docker_check(name), timeout=30))
    time.sleep(1.0)
    docker('exec', name, 'touch', '/tmp/ready')
    result = finish_module(proc, path)
    assert result.get('failed') is not True, result['msg']
    check = result['checks'][0]
    assert states(check)[-1] == 'healthy'
    assert check['details']['status'] == 'running' and check['details']['health'] == 'healthy'
    # Docker's own health log shows the change the module waited for: failing checks, then a passing one.
    exit_codes = [entry['exit_code'] for entry in check['details']['health_log']]
    assert exit_codes[-1] == 0 and 1 in exit_codes, exit_codes


def test_dockers_healthy_is_seen_between_rounds(containers):
    # Rounds 3 s apart. Docker's state is all the poll waits for, so it is read every 0.1 s in between:
    # the poll ends within the first interval, soon after Docker's own check passes.
    name = containers.run('between', 'exec sleep 300', '--health-cmd', 'test -f /tmp/ready',
                          '--health-start-period', '60s', '--health-interval', '500ms', '--health-timeout', '2s')
    proc, path = start_module('health_poll', dict(checks=[{'name': 'app', 'docker': {'container': name}}],
                                                  interval=3, check_timeout=3, timeout=30))
    time.sleep(1.5)
    docker('exec', name, 'touch', '/tmp/ready')
    result = finish_module(proc, path)
    assert result.get('failed') is not True, result['msg']
    check = result['checks'][0]
    assert check['state'] == 'healthy'
    assert result['rounds'] == 1, result
    assert check['attempts'] > 5 and check['elapsed'] < 3.0, check


def test_healthcheck_turning_unhealthy(containers):
    name = containers.run('unhealthy', 'touch /tmp/ok; exec sleep 300',
                          '--health-cmd', 'test -f /tmp/ok || { echo disk check failed; exit 1; }', *HEALTH)
    # Healthy first; then the test breaks it and waits until Docker marks it unhealthy.
    first = run_module('health_poll', dict(docker_check(name), timeout=30))
    assert first.get('failed') is not True, first['msg']
    assert first['checks'][0]['state'] == 'healthy'
    docker('exec', name, 'rm', '/tmp/ok')
    deadline = time.monotonic() + 30
    while docker('inspect', '-f', '{{.State.Health.Status}}', name) != 'unhealthy' and time.monotonic() < deadline:
        time.sleep(0.2)
    result = run_module('health_poll', dict(docker_check(name), timeout=0.5))
    assert result['failed'] is True
    check = result['checks'][0]
    assert check['state'] == 'unhealthy'
    assert check['details']['health_log'][-1]['exit_code'] == 1
    assert 'disk check failed' in check['details']['health_log'][-1]['output']
    assert "stuck in state 'unhealthy'" in result['msg'] and 'disk check failed' in result['msg']


def test_running_without_healthcheck_and_require_healthcheck(containers):
    name = containers.run('plain', 'exec sleep 300')
    result = run_module('health_poll', dict(docker_check(name), timeout=10))
    assert result.get('failed') is not True, result['msg']
    assert result['checks'][0]['state'] == 'running'
    strict = run_module('health_poll', dict(docker_check(name, require_healthcheck=True), timeout=0.3))
    assert strict['checks'][0]['state'] == 'no_healthcheck'


def test_exited_and_oom_killed_containers_report_exit_code(containers):
    exited = containers.run('exited', 'echo boom; exit 3')
    # tail buffers /dev/zero (no newline ever) until the 16 MiB limit kills it
    oom = containers.run('oom', 'exec tail /dev/zero', '--memory', '16m', '--memory-swap', '16m')
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and 'running' in [docker('inspect', '-f', '{{.State.Status}}', name)
                                                        for name in (exited, oom)]:
        time.sleep(0.2)
    result = run_module('health_poll', dict(checks=[{'name': 'exited', 'docker': {'container': exited}},
                                                    {'name': 'oom', 'docker': {'container': oom}}],
                                            timeout=0.3, **FAST))
    first, second = result['checks']
    assert first['state'] == 'exited' and first['details']['exit_code'] == 3
    assert first['details']['oom_killed'] is False
    assert 'exit code 3' in result['msg']
    assert second['state'] == 'exited' and second['details']['exit_code'] == 137
    # Whether the engine notices the OOM kill depends on its cgroup setup: report exactly what it says.
    engine_says = docker('inspect', '-f', '{{.State.OOMKilled}}', oom) == 'true'
    assert second['details']['oom_killed'] is engine_says
    assert ('OOM-killed' if engine_says else 'killed by SIGKILL') in result['msg']


def test_missing_container_and_missing_socket(containers):
    result = run_module('health_poll', dict(docker_check(containers.prefix + '-nope'), timeout=0.3))
    assert result['checks'][0]['state'] == 'not_found'
    no_engine = run_module('health_poll', dict(docker_check('x', docker_host='unix:///nonexistent/docker.sock'),
                                               timeout=0.3))
    assert no_engine['checks'][0]['state'] == 'no_response'
    assert '/nonexistent/docker.sock' in no_engine['msg']

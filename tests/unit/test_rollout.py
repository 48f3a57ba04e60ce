"""The rollout on one host as pure logic: module_utils/_rollout.py (steps, container, messages),
the Docker Engine client's encoders (_engine.py) and the drain's process checks (_proxy.py)."""

import os
import struct
import subprocess
import time

import pytest

from ansible_collections.shipyard.webstack.plugins.filter import app as F
from ansible_collections.shipyard.webstack.plugins.module_utils import _engine as E
from ansible_collections.shipyard.webstack.plugins.module_utils import _proxy as X
from ansible_collections.shipyard.webstack.plugins.module_utils import _rollout as R
from ansible_collections.shipyard.webstack.plugins.modules import slot_rollout as M
from test_filter_app import TWO  # the same three processes (web with two ports, worker, scheduler)

RELEASE = {'id': 'sha256:abc', 'ref': 'sha256:abc', 'image': 'shop:1.2'}


def _container(name, state='running', config=''):
    return {'Names': ['/' + name], 'State': state, 'Labels': {'org.shipyard.webstack.config': config}}


def test_config_hash_equals_ansibles_to_json_and_hash_filters():
    # Containers of releases rolled out before the hash moved into this filter keep their label.
    from ansible.plugins.filter.core import get_hash, to_json
    plan = F.app_process_plan(TWO)
    common = {'user': '', 'cap_drop': ['ALL'], 'log': ['10m', '3'], 'env': 'abc'}
    expected = get_hash(to_json({'release': 'r1', 'process': plan[0], 'common': common, 'name': 'shop'},
                                sort_keys=True), 'sha256')
    assert R.config_hash(plan[0], 'r1', common, 'shop') == expected


def test_rollout_steps_of_a_first_deploy_start_everything_in_blue():
    plan = F.app_process_plan(TWO)
    steps = R.rollout_steps(plan, [], {}, 'r1', {}, 'shop')
    assert [s['name'] for s in steps] == ['web', 'scheduler', 'worker']
    web, scheduler, worker = steps
    assert not any(s['current'] or s['active_running'] or s['active_exists'] or s['idle_exists'] for s in steps)
    # Nothing runs: the first slot is "active" (empty), the new container goes to the other one.
    assert (web['active'], web['idle'], web['new_container']) == ('blue', 'green', 'shop-web-green')
    assert web['switch'] == [{'upstream': 'web_api', 'to': 'green'}, {'upstream': 'web_front', 'to': 'green'}]
    assert web['switch_back'] == [] and worker['switch'] == []
    assert web['checks'] == [
        {'name': 'web http /api/health', 'http': {'url': 'http://127.0.0.1:%d/api/health'
                                                         % plan[0]['ports'][0]['host_ports']['green'],
                                                  'status_codes': [200]}},
        {'name': 'web container', 'docker': {'container': 'shop-web-green'}}]
    assert scheduler['checks'] == [{'name': 'scheduler command',
                                    'command': {'argv': ['docker', 'exec', 'shop-scheduler-green', 'true']}}]
    assert worker['checks'] == [{'name': 'worker container', 'docker': {'container': 'shop-worker-green'}}]
    assert web['record'] == {'process': 'web', 'from': 'blue', 'to': 'green', 'container': 'shop-web-green'}


def test_the_health_gate_reads_dockers_health_once_and_asks_the_others_for_a_streak():
    steps = R.rollout_steps(F.app_process_plan(TWO), [], {}, 'r1', {}, 'shop')
    checks = M.build_checks(steps, 5)
    assert [(c.name, c.successes) for c in checks] == [
        ('web http /api/health', None), ('web container', 1), ('scheduler command', None), ('worker container', 1)]


def test_rollout_steps_leave_a_current_process_alone_and_replace_a_changed_one():
    plan = F.app_process_plan(TWO)
    web_hash = R.config_hash(plan[0], 'r1', {}, 'shop')
    worker_hash = R.config_hash(plan[2], 'r0', {}, 'shop')
    containers = [_container('shop-web-green', config=web_hash), _container('shop-web-blue', 'exited'),
                  _container('shop-worker-green', config=worker_hash), _container('other-web-blue')]
    slots = {'web_api': 'green', 'web_front': 'green'}
    web, scheduler, worker = R.rollout_steps(plan, containers, slots, 'r1', {}, 'shop')
    assert web['current'] and web['active'] == 'green' and web['idle_exists']    # a leftover in blue
    assert not worker['current'] and worker['active'] == 'green' and worker['new_container'] == 'shop-worker-blue'
    assert worker['active_running'] and not worker['idle_exists']
    assert not scheduler['current'] and not scheduler['active_running'] and not scheduler['active_exists']
    assert worker['active_exists'] and worker['switch'] == [] and worker['switch_back'] == []


def test_rollout_steps_with_the_image_id_want_the_running_container_on_that_image():
    plan = F.app_process_plan(TWO)[:1]
    web_hash = R.config_hash(plan[0], 'r1', {}, 'shop')
    running = [{'Names': ['/shop-web-blue'], 'State': 'running', 'ImageID': 'sha256:aaa',
                'Labels': {'org.shipyard.webstack.config': web_hash}}]
    slots = {'web_api': 'blue', 'web_front': 'blue'}
    assert R.rollout_steps(plan, running, slots, 'r1', {}, 'shop')[0]['current']
    assert R.rollout_steps(plan, running, slots, 'r1', {}, 'shop', image_id='sha256:aaa')[0]['current']
    assert not R.rollout_steps(plan, running, slots, 'r1', {}, 'shop', image_id='sha256:bbb')[0]['current']


def test_rollout_steps_replace_web_when_the_proxy_is_split_between_slots():
    plan = F.app_process_plan(TWO)
    web_hash = R.config_hash(plan[0], 'r1', {}, 'shop')
    containers = [_container('shop-web-blue', config=web_hash), _container('shop-web-green', config=web_hash)]
    web = R.rollout_steps(plan, containers, {'web_api': 'blue', 'web_front': 'green'}, 'r1', {}, 'shop')[0]
    # Serving from blue (its first upstream), but one upstream points at green: not current.
    assert web['active'] == 'blue' and not web['current']
    assert web['switch_back'] == [{'upstream': 'web_api', 'to': 'blue', 'from': 'green'},
                                  {'upstream': 'web_front', 'to': 'blue', 'from': 'green'}]


def test_container_spec_and_engine_body_carry_the_hardening_and_the_slot_ports():
    plan = F.app_process_plan(TWO)
    web = R.rollout_steps(plan, [], {}, 'r1', {}, 'shop')[0]
    settings = {'user': '1000', 'cap_drop': ['ALL'], 'security_opts': ['no-new-privileges'],
                'log_max_size': '10m', 'log_max_file': 5}
    web['process']['env'] = {'PORT': '4001', 'A': 'from the process'}
    spec = R.container_spec(web, RELEASE, settings, ['A=1', 'DATABASE_URL=postgresql://u:p@h/db'], 'shop')
    body = E.container_config(spec)
    host = body['HostConfig']
    assert body['Image'] == 'sha256:abc' and body['Cmd'] == ['web'] and body['User'] == '1000'
    # One entry per name; the process's own env wins over the env file.
    assert body['Env'] == ['A=from the process', 'DATABASE_URL=postgresql://u:p@h/db', 'PORT=4001']
    green = plan[0]['ports'][0]['host_ports']['green']
    assert host['PortBindings']['4001/tcp'] == [{'HostIp': '127.0.0.1', 'HostPort': str(green)}]
    assert body['ExposedPorts'] == {'4001/tcp': {}, '4000/tcp': {}}
    assert host['Memory'] == host['MemorySwap'] == 1024 ** 3 and host['NanoCpus'] == 10 ** 9
    assert host['CapDrop'] == ['ALL'] and host['SecurityOpt'] == ['no-new-privileges']
    assert host['RestartPolicy'] == {'Name': 'always'} and body['StopTimeout'] == 30
    assert host['LogConfig'] == {'Type': 'json-file', 'Config': {'max-size': '10m', 'max-file': '5'}}
    assert body['Labels']['org.shipyard.webstack.config'] == web['hash']
    assert body['Labels']['org.shipyard.webstack.slot'] == 'green'


def test_engine_body_of_a_read_only_worker_with_tmpfs_and_no_restart():
    body = E.container_config({'image': 'i', 'command': [], 'read_only': True, 'tmpfs': ['/tmp', '/run:size=8m'],
                               'restart_policy': 'no', 'cpus': 0.25, 'memory': '128m'})
    host = body['HostConfig']
    assert 'Cmd' not in body and 'User' not in body
    assert host['ReadonlyRootfs'] is True and host['Tmpfs'] == {'/tmp': '', '/run': 'size=8m'}
    assert host['RestartPolicy'] == {'Name': ''} and host['NanoCpus'] == 250000000 and host['Memory'] == 128 * 1024 ** 2


@pytest.mark.parametrize('text,expected', [('512m', 512 * 1024 ** 2), ('1g', 1024 ** 3), ('1.5g', 1536 * 1024 ** 2),
                                           ('1024', 1024), ('64MB', 64 * 1024 ** 2), ('2k', 2048)])
def test_sizes_as_docker_reads_them(text, expected):
    assert E.size_bytes(text) == expected


def test_a_size_docker_would_not_read_is_refused():
    with pytest.raises(ValueError, match='not a size'):
        E.size_bytes('lots')


def test_env_file_lines_as_docker_reads_them():
    text = '# Managed by shipyard\n\nA=1\n  B=x=y\nEMPTY=\n'
    assert E.parse_env_file(text) == ['A=1', 'B=x=y', 'EMPTY=']
    with pytest.raises(ValueError, match='without "="'):
        E.parse_env_file('JUSTANAME\n')


def test_log_streams_are_unframed():
    def frame(stream, text):
        return struct.pack('>BxxxI', stream, len(text)) + text

    assert E.demux_log(frame(1, b'out 1\n') + frame(2, b'err 1\n') + frame(1, b'out 2\n')) == 'out 1\nerr 1\nout 2\n'
    assert E.demux_log(b'a tty log\n') == 'a tty log\n'


def test_preview_and_done_messages():
    plan = F.app_process_plan(TWO)
    web_hash = R.config_hash(plan[0], 'sha256:abc', {}, 'shop')
    containers = [{'Names': ['/shop-web-blue'], 'State': 'running', 'Labels': {'org.shipyard.webstack.config': 'old'}},
                  {'Names': ['/shop-worker-blue'], 'State': 'running', 'Labels': {}}]
    steps = R.rollout_steps(plan, containers, {'web_api': 'blue', 'web_front': 'blue'}, 'sha256:abc', {}, 'shop')
    text = R.preview(steps, RELEASE)
    assert text.startswith('web: would start shop:1.2 (sha256:abc) as shop-web-green, switch the proxy blue -> green '
                           'and stop shop-web-blue; ')
    assert 'scheduler: would start shop:1.2 (sha256:abc) as shop-scheduler-green;' in text
    assert R.preview(steps, RELEASE, done=True).startswith('web: started shop:1.2 (sha256:abc) as shop-web-green, '
                                                           'switched the proxy blue -> green and stopped shop-web-blue')
    current = [{'Names': ['/shop-web-blue'], 'State': 'running', 'Labels': {'org.shipyard.webstack.config': web_hash}}]
    steps = R.rollout_steps(plan[:1], current, {'web_api': 'blue', 'web_front': 'blue'}, 'sha256:abc', {}, 'shop')
    assert R.preview(steps, RELEASE) == 'web: already runs sha256:abc in slot blue: nothing to do'


def test_failure_message_names_the_checks_what_was_undone_and_the_logs():
    plan = F.app_process_plan(TWO)
    containers = [{'Names': ['/shop-web-blue'], 'State': 'running', 'Labels': {}}]
    steps = R.rollout_steps(plan, containers, {'web_api': 'blue', 'web_front': 'blue'}, 'sha256:abc', {}, 'shop')
    check = {'name': 'web http /api/health', 'type': 'http', 'target': 'http://127.0.0.1:18100/api/health',
             'state': 'bad_status', 'attempts': 12, 'last_error': 'HTTP 503',
             'details': {'status': 503, 'body_excerpt': '{"status": "starting"}'},
             'history': [{'state': 'refused', 'at': 0.0}, {'state': 'bad_status', 'at': 1.5}]}
    docker = {'name': 'web container', 'type': 'docker', 'target': 'container shop-web-green', 'state': 'unhealthy',
              'attempts': 12, 'last_error': 'health is unhealthy',
              'details': {'health_log': [{'output': 'a'}, {'output': 'b'}, {'output': 'c'}]}}
    text = R.failure_message(RELEASE, 'health', 'not healthy', [check, docker], steps, {'shop-web-green': ['l1', 'l2', 'l3']},
                             2, ['switching the proxy back failed: x'])
    assert text.startswith("the rollout of shop:1.2 (sha256:abc) failed at 'health': Failing check 'web http /api/health'")
    assert 'state bad_status after 12 attempt(s), last error: HTTP 503; last HTTP status 503, body: {"status": "starting"}' in text
    assert 'body: {"status": "starting"}; states seen: refused from 0s, bad_status from 1.5s.' in text
    assert 'Docker health log (last 2): b / c.' in text
    assert 'The new containers shop-web-green, shop-scheduler-green, shop-worker-green were removed; ' \
           'the old ones keep serving: shop-web-blue.' in text
    assert 'switching the proxy back failed: x.' in text
    assert text.endswith('Last 2 log lines of shop-web-green: l2 | l3')
    kept = R.failure_message(RELEASE, 'stop', 'the old ones could not be removed', [], steps[:1], {}, 5, undone=False)
    assert "failed at 'stop': the old ones could not be removed The new containers shop-web-green serve." in kept


def test_env_secrets_are_the_values_of_secret_names_and_url_passwords():
    lines = ['APP_PASSWORD=hunter22', 'DATABASE_URL=postgresql://app:s3cr3t-pw@db:6432/app', 'PORT=8000',
             'API_TOKEN=abcd1234', 'LOG_LEVEL=info', 'SHORT_KEY=ab']
    secrets = M.env_secrets(lines)
    assert 'hunter22' in secrets and 's3cr3t-pw' in secrets and 'abcd1234' in secrets
    assert '8000' not in secrets and 'info' not in secrets and 'ab' not in secrets


def test_nginx_workers_are_the_children_of_the_master_in_the_pid_file(tmp_path):
    # A stand-in master (this test's process) with one child titled as nginx titles its workers.
    pid_file = tmp_path / 'nginx.pid'
    pid_file.write_text('%d\n' % os.getpid())
    child = subprocess.Popen(['bash', '-c', 'exec -a "nginx: worker process" sleep 30'])
    other = subprocess.Popen(['sleep', '30'])
    try:
        for _attempt in range(100):   # until bash has exec'd under the new title
            if X.nginx_workers(str(pid_file)):
                break
            time.sleep(0.02)
        assert X.nginx_workers(str(pid_file)) == [child.pid]
        waited, left = X.wait_exited([child.pid], 0.2)
        assert left == [child.pid] and waited >= 0.2
        child.terminate()
        child.wait()
        waited, left = X.wait_exited([child.pid], 5)
        assert left == [] and waited < 1
    finally:
        for proc in (child, other):
            proc.kill()
            proc.wait()
    assert X.nginx_workers(str(tmp_path / 'missing.pid')) == []

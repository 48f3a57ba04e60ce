"""Run playbooks/deploy.yml for real with the controller as every host (connection local): shared by
test_deploy_playbook.py, test_inventories.py and test_bad_input_corpus.py.

Lock and audit paths point into the test's temporary directory; the proxy ports are closed loopback
ports, so with `--tags verify` only the plays tagged `always` plus verify run and no role touches the
machine."""

import json
import os
import re
import socket
import subprocess
import sys

from modrun import ROOT

BIN = os.path.dirname(sys.executable)
SECRET = 'Vq3rT8zL0pW6nB2mK9xC4'   # never in any output
PLAYBOOK = os.path.join(ROOT, 'playbooks', 'deploy.yml')


def closed_port():
    """A loopback port nothing listens on (bound, then released)."""
    sock = socket.socket()
    sock.bind(('127.0.0.1', 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def local_host_vars(tmp_path):
    """What makes any inventory host the controller itself, with its lock and audit log in tmp_path."""
    return {
        'ansible_connection': 'local',
        # The inventories' become (sudo, for a non-root SSH user) has no place on the controller.
        'ansible_become': False,
        'ansible_python_interpreter': sys.executable,
        'deploy_lock_path': str(tmp_path / 'deploy.lock'),
        'deploy_audit_log_path': str(tmp_path / 'audit.jsonl'),
    }


def inventory(tmp_path, **over):
    """One app host (h1) of a production environment with an external database; over: its variables."""
    host = dict(local_host_vars(tmp_path), **{
        'shipyard_environment': 'production',
        'app_image_repository': 'registry.example.com/shop/app',
        'app_image_tag': '1.4.2',
        'app_postgres_host': 'db.example.internal',
        'app_redis_url_enabled': False,
        'app_database_password': SECRET,
        'app_processes': {'web': {'command': ['web'], 'health': {'path': '/api/health'},
                                  'ports': [{'container_port': 8000, 'host_port': 18000}]}},
        'proxy_http_port': closed_port(),
        'proxy_tls_enabled': False,
        'shipyard_health_timeout': 2,
    })
    host.update(over)
    inv = {'all': {'children': {'app': {'hosts': {'h1': host}}}}}
    path = tmp_path / 'inventory.json'
    path.write_text(json.dumps(inv))
    return str(path)


def deploy(inv, *args, owner='bob@ci', run_id=None, timeout=300, tags='verify', playbook=PLAYBOOK):
    """ansible-playbook deploy.yml (or playbook) -i inv (a path or a list of them) --tags <tags> args...:
    (rc, output)."""
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, 'ansible.cfg'), ANSIBLE_NOCOLOR='1',
               SHIPYARD_DEPLOY_OWNER=owner)
    if run_id:
        env['SHIPYARD_DEPLOY_RUN_ID'] = run_id
    cmd = [os.path.join(BIN, 'ansible-playbook')]
    for path in ([inv] if isinstance(inv, str) else inv):
        cmd += ['-i', path]
    cmd += [playbook, '--tags', tags] + list(args)
    proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          timeout=timeout, check=False)
    return proc.returncode, proc.stdout.decode('utf-8', 'replace')


def lock_module(tmp_path, args):
    """The deploy_lock module run ad hoc on the controller against tmp_path/deploy.lock."""
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, 'ansible.cfg'), ANSIBLE_NOCOLOR='1')
    cmd = [os.path.join(BIN, 'ansible'), 'localhost', '-c', 'local', '-e',
           'ansible_python_interpreter=%s' % sys.executable, '-m', 'shipyard.webstack.deploy_lock', '-a',
           json.dumps(dict(args, path=str(tmp_path / 'deploy.lock')))]
    return subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120,
                          check=False)


def changed_tasks(output):
    """Names of the tasks that reported a change, from the default callback's output."""
    names, task = set(), None
    for line in output.splitlines():
        match = re.match(r'TASK \[(.*)\] \*+', line)
        if match:
            task = match.group(1)
        elif line.startswith('changed: [') and task:
            names.add(task)
    return sorted(names)


def recap(output):
    """{host: {ok, changed, unreachable, failed, ...}} from the PLAY RECAP."""
    hosts = {}
    seen = False
    for line in output.splitlines():
        if line.startswith('PLAY RECAP'):
            seen = True
            continue
        if seen and not line.strip():
            break   # the recap ends at its blank line (profile_tasks' TASKS RECAP may follow)
        if seen and ':' in line and '=' in line:
            host, _sep, counts = line.partition(':')
            hosts[host.strip()] = dict((key, int(value)) for key, value in
                                       (item.split('=') for item in counts.split()))
    return hosts

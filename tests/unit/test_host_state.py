"""host_state's parsers (on systemctl's and dpkg-query's own output, read off a test host) and
unit_settled, which decides whether a role's "enable and start" task can be skipped."""

import ast
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS = os.path.join(ROOT, '.cache', 'collections')
if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)

from ansible.errors import AnsibleFilterError  # noqa: E402
from ansible_collections.shipyard.webstack.plugins.filter.packages import unit_settled  # noqa: E402
import ansible.modules.setup  # noqa: E402
from ansible_collections.shipyard.webstack.plugins.modules import host_state  # noqa: E402
from ansible_collections.shipyard.webstack.plugins.modules.host_state import parse_dpkg, parse_units  # noqa: E402

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data')


def read(name):
    with open(os.path.join(DATA, name), encoding='utf-8') as handle:
        return handle.read()


@pytest.fixture(name='units', scope='module')
def fixture_units():
    # A converged PostgreSQL host: the clusters, the backup timers, Debian's units.
    return parse_units(read('list-units.txt'), read('list-unit-files.txt'))


def test_running_and_enabled_services(units):
    assert units['postgresql.service'] == {'active': 'active', 'enabled': 'enabled'}
    assert units['shipyard-db-backup.timer'] == {'active': 'active', 'enabled': 'enabled'}


def test_an_instance_of_a_template_has_no_unit_file_state(units):
    assert units['postgresql@15-main.service'] == {'active': 'active', 'enabled': None}


def test_a_unit_file_that_is_not_loaded_is_inactive(units):
    assert units['pg_receivewal@.service'] == {'active': 'inactive', 'enabled': 'disabled'}


def test_the_status_bullet_of_a_failed_unit_is_not_its_name():
    units = parse_units('\u25cf redis-server.service loaded failed failed Advanced key-value store\n',
                        'redis-server.service enabled enabled\n')
    assert units == {'redis-server.service': {'active': 'failed', 'enabled': 'enabled'}}


def test_dpkg_lists_only_the_installed():
    out = 'ii  nginx 1.22.1-9+deb12u1\nrc  redis-server 5:7.0.15-1~deb12u1\nii  pgbouncer 1.18.0-1\nun  docker.io \n\n'
    assert parse_dpkg(out) == {'nginx': '1.22.1-9+deb12u1', 'pgbouncer': '1.18.0-1'}


def test_settled_when_active_and_enabled(units):
    assert unit_settled('postgresql', units)
    assert unit_settled('shipyard-db-backup.timer', units)
    assert unit_settled('postgresql@15-main', units, enabled=None)


def test_not_settled_when_the_state_differs(units):
    assert not unit_settled('postgresql@15-main', units)          # its enabled state is not known
    assert not unit_settled('postgresql', units, active=False, enabled=False)
    assert not unit_settled('shipyard-db-backup.service', units)  # inactive
    assert not unit_settled('pgbouncer', units)                   # not on this host at all


def test_a_stopped_disabled_unit_is_settled_when_that_is_asked():
    units = {'shipyard-db-backup.timer': {'active': 'inactive', 'enabled': 'disabled'}}
    assert unit_settled('shipyard-db-backup.timer', units, active=False, enabled=False)
    assert not unit_settled('shipyard-db-backup.timer', units)


def test_service_facts_answer_the_same():
    services = {'nginx.service': {'name': 'nginx.service', 'state': 'running', 'status': 'enabled', 'source': 'systemd'},
                'pgbouncer.service': {'name': 'pgbouncer.service', 'state': 'stopped', 'status': 'enabled',
                                      'source': 'systemd'},
                'redis-server.service': {'name': 'redis-server.service', 'state': 'running', 'status': 'disabled',
                                         'source': 'systemd'}}
    assert unit_settled('nginx', services)
    assert not unit_settled('pgbouncer', services)
    assert unit_settled('pgbouncer', services, active=False)
    assert not unit_settled('redis-server', services)
    assert unit_settled('redis-server', services, enabled=None)


def test_without_facts_nothing_is_settled():
    assert not unit_settled('postgresql', None)


def test_bad_input_is_named():
    with pytest.raises(AnsibleFilterError, match='expects a unit name'):
        unit_settled('', {})
    with pytest.raises(AnsibleFilterError, match='shipyard_units'):
        unit_settled('nginx', ['nginx'])


def test_the_facts_always_gathered_are_setups():
    # setup keeps its list in a local variable of main(), so host_state cannot import it. Read it from
    # the installed ansible-core's source: a core that changes it fails here, not on a host.
    with open(ansible.modules.setup.__file__, encoding='utf-8') as handle:
        tree = ast.parse(handle.read())
    found = [node.value for node in ast.walk(tree) if isinstance(node, ast.Assign)
             and any(getattr(target, 'id', None) == 'minimal_gather_subset' for target in node.targets)]
    assert len(found) == 1
    assert frozenset(ast.literal_eval(found[0].args[0])) == host_state._MINIMAL_SUBSET


def test_file_lines_reports_the_whole_lines_present(tmp_path):
    conf = tmp_path / 'redis.conf'
    conf.write_text('bind 127.0.0.1\n  include /etc/redis/shipyard.conf  \n# include /etc/redis/other.conf\n')
    found = host_state.read_file_lines({
        str(conf): ['include /etc/redis/shipyard.conf', 'include /etc/redis/other.conf', 'bind 127.0.0'],
        str(tmp_path / 'missing.conf'): ['include /etc/redis/shipyard.conf'],
    })
    assert found == {str(conf): ['include /etc/redis/shipyard.conf'], str(tmp_path / 'missing.conf'): []}


def test_deploy_looks_for_the_redis_roles_include_line():
    # deploy.yml cannot read a role's vars before the role runs, so it names the line itself: it must
    # stay the one the role writes, or the role would skip its step on a line it does not use.
    import yaml
    with open(os.path.join(ROOT, 'playbooks', 'vars', 'deploy.yml'), encoding='utf-8') as handle:
        wanted = yaml.safe_load(handle)['_deploy_redis_include']
    with open(os.path.join(ROOT, 'roles', 'redis', 'vars', 'main.yml'), encoding='utf-8') as handle:
        role = yaml.safe_load(handle)
    line = role['_redis_include_line'].replace('{{ _redis_managed_conf }}', role['_redis_managed_conf'])
    assert wanted == {role['_redis_conf']: [line]}


def _docker_config(tmp_path, config):
    import json
    path = tmp_path / 'config.json'
    path.write_text(json.dumps(config))
    return str(path)


def _auth(user, password):
    import base64
    return base64.b64encode(('%s:%s' % (user, password)).encode()).decode()


def test_docker_logins_are_digests_that_docker_login_settled_compares(tmp_path):
    from ansible_collections.shipyard.webstack.plugins.filter.packages import docker_login_settled
    # The shape community.docker's docker_login writes (auths.<registry>.auth = base64(user:password)).
    path = _docker_config(tmp_path, {'auths': {'reg:5000': {'auth': _auth('ci', 's3cret-pw')},
                                               'other:443': {'auth': _auth('ci', 'x')}}})
    logins = host_state.read_docker_logins(path)
    assert sorted(logins) == ['other:443', 'reg:5000']
    assert not any('s3cret-pw' in value or _auth('ci', 's3cret-pw') in value for value in logins.values())
    login = {'registry': 'reg:5000', 'username': 'ci', 'password': 's3cret-pw'}
    assert docker_login_settled(login, logins)
    assert not docker_login_settled(dict(login, password='rotated'), logins)
    assert not docker_login_settled(dict(login, username='someone'), logins)
    assert not docker_login_settled(dict(login, registry='https://reg:5000'), logins)
    assert not docker_login_settled(login, None)
    assert not docker_login_settled(dict(login, password=''), logins)
    # A new salt on every read: the digests of two reads differ, and both compare.
    again = host_state.read_docker_logins(path)
    assert again['reg:5000'] != logins['reg:5000'] and docker_login_settled(login, again)


def test_docker_logins_kept_by_a_credential_helper_are_not_reported(tmp_path):
    assert host_state.read_docker_logins(_docker_config(tmp_path, {'credsStore': 'pass', 'auths': {'reg': {}}})) == {}
    helper = _docker_config(tmp_path, {'credHelpers': {'reg': 'ecr-login'},
                                       'auths': {'reg': {'auth': _auth('a', 'b')}, 'other': {'auth': _auth('a', 'b')}}})
    assert sorted(host_state.read_docker_logins(helper)) == ['other']
    assert host_state.read_docker_logins(str(tmp_path / 'missing.json')) == {}
    assert host_state.read_docker_logins(None) is None


def test_docker_login_settled_names_bad_input():
    from ansible_collections.shipyard.webstack.plugins.filter.packages import docker_login_settled
    with pytest.raises(AnsibleFilterError, match='expects a login'):
        docker_login_settled('reg:5000', {})
    with pytest.raises(AnsibleFilterError, match='shipyard_docker_logins'):
        docker_login_settled({'registry': 'r', 'username': 'u', 'password': 'p'}, ['r'])


def test_slurp_returns_what_slurp_would_for_readable_files(tmp_path):
    import base64
    history = tmp_path / 'releases.json'
    history.write_bytes(b'{"releases": []}')
    big = tmp_path / 'big'
    big.write_bytes(b'x' * (host_state._SLURP_LIMIT + 1))
    found = host_state.slurp_files([str(history), str(tmp_path / 'missing.json'), str(big)])
    assert found == {str(history): {'content': base64.b64encode(b'{"releases": []}').decode(), 'encoding': 'base64',
                                    'source': str(history)}}


def test_tcp_open_tries_each_address_once():
    import socket
    listener = socket.socket()
    listener.bind(('127.0.0.1', 0))
    listener.listen(1)
    open_port = listener.getsockname()[1]
    closed = socket.socket()
    closed.bind(('127.0.0.1', 0))
    closed_port = closed.getsockname()[1]   # bound, never listening: refused
    try:
        found = host_state.tcp_open(['127.0.0.1:%d' % open_port, '127.0.0.1:%d' % closed_port])
    finally:
        listener.close()
        closed.close()
    assert found == {'127.0.0.1:%d' % open_port: True, '127.0.0.1:%d' % closed_port: False}


# ------------------------------------------------------------------ the reads, started together

class FakeModule:
    """What Reads asks of AnsibleModule: where a command is, and how to fail."""

    def __init__(self, bindir):
        self.bindir = bindir

    def get_bin_path(self, name):
        path = os.path.join(self.bindir, name)
        return path if os.path.exists(path) else None

    def fail_json(self, msg):
        raise RuntimeError(msg)

    @staticmethod
    def run_command(argv):
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
        return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


def _command(bindir, name, script):
    path = bindir / name
    path.write_text('#!/bin/sh\n' + script)
    path.chmod(0o755)


def test_reads_parse_what_dpkg_query_and_systemctl_print(tmp_path):
    for name, text in (('list-units', read('list-units.txt')), ('list-unit-files', read('list-unit-files.txt'))):
        (tmp_path / name).write_text(text)
    _command(tmp_path, 'systemctl', 'cat "%s/$1"\n' % tmp_path)
    _command(tmp_path, 'dpkg-query', 'printf "ii  nginx 1.22.1-9\\nrc  redis-server 5:7.0\\n"\n')
    module = FakeModule(str(tmp_path))
    reads = host_state.Reads(module)
    assert reads.packages(module) == {'nginx': '1.22.1-9'}
    assert reads.unit_states(module) == parse_units(read('list-units.txt'), read('list-unit-files.txt'))


def test_reads_without_systemd_or_dpkg_know_nothing(tmp_path):
    _command(tmp_path, 'systemctl', 'echo "System has not been booted with systemd" >&2; exit 1\n')
    reads = host_state.Reads(FakeModule(str(tmp_path)))
    assert reads.unit_states(FakeModule(str(tmp_path))) is None
    assert reads.packages(FakeModule(str(tmp_path))) is None


def test_a_failing_dpkg_query_fails_the_module(tmp_path):
    _command(tmp_path, 'dpkg-query', 'echo "database locked" >&2; exit 2\n')
    reads = host_state.Reads(FakeModule(str(tmp_path)))
    with pytest.raises(RuntimeError, match='dpkg-query could not list the installed packages .exit 2.: database locked'):
        reads.packages(FakeModule(str(tmp_path)))


def test_memory_is_the_hardware_subsets_memtotal_mb():
    from ansible.module_utils.facts.hardware.linux import LinuxHardware
    expected = LinuxHardware(module=None).get_memory_facts()['memtotal_mb']
    assert expected > 0
    assert host_state.memory_facts() == {'ansible_memtotal_mb': expected}

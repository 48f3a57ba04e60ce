"""proxy_switch against a real HTTP server on loopback standing in for nginx's routes.

nginx itself is proven by the molecule proxy and rollout scenarios (real nginx on systemd hosts);
here its commands are small programs whose effects the test can see: the reload "loads" the
upstream file (copies it where the HTTP server reads the served slot from), the test command
and the validate program pass or fail on demand and leave a log of their calls.
"""

import os
import stat
import sys

import pytest

from modrun import run_module


def _slot_of(path):
    try:
        with open(path) as handle:
            for line in handle:
                if line.startswith('# shipyard-proxy-slot:'):
                    return line.split(':', 1)[1].strip()
    except FileNotFoundError:
        return None
    return None


def _upstream(slot):
    return '# shipyard-proxy-slot: %s\nupstream shipyard_web {\n    server 127.0.0.1:%d;\n}\n' % (
        slot, 18000 if slot == 'blue' else 18100)


def _program(path, body):
    with open(path, 'w') as handle:
        handle.write('#!%s\nimport sys, os\n%s\n' % (sys.executable, body))
    os.chmod(path, stat.S_IRWXU)
    return path


class Proxy:
    """A host's proxy files in a temporary directory, and nginx's commands as programs."""

    def __init__(self, tmp, server):
        self.dir = str(tmp)
        self.upstreams = os.path.join(self.dir, 'upstreams')
        self.state = os.path.join(self.dir, 'state')
        self.loaded = os.path.join(self.dir, 'loaded.conf')
        self.calls = os.path.join(self.dir, 'calls.log')
        os.makedirs(self.upstreams)
        os.makedirs(self.state)
        self.fail = os.path.join(self.dir, 'fail-')
        log = "open(%r, 'a').write(' '.join([os.path.basename(sys.argv[0])] + sys.argv[1:2]) + '\\n')\n" % self.calls
        self.test = _program(os.path.join(self.dir, 'nginx-t'), log + 'sys.exit(1 if os.path.exists(%r) else 0)' % (self.fail + 'test'))
        self.validate = _program(os.path.join(self.dir, 'check'), log + 'sys.exit(1 if os.path.exists(%r) else 0)' % (self.fail + 'validate'))
        self.reload = _program(os.path.join(self.dir, 'reload'), log + 'import shutil; shutil.copy(%r, %r)' % (
            os.path.join(self.upstreams, 'web.conf'), self.loaded))
        self.server = server
        # nginx's health route reports the slot of the loaded file; the route answers once one is loaded.
        server.set(lambda n, t: (200, {'status': 'ok', 'config': 'c1', 'slots': {'web': _slot_of(self.loaded)}}))

    def install(self, slot, loaded=None, recorded=None):
        with open(os.path.join(self.upstreams, 'web.conf'), 'w') as handle:
            handle.write(_upstream(slot))
        with open(self.loaded, 'w') as handle:
            handle.write(_upstream(loaded or slot))
        with open(os.path.join(self.state, 'web.slot'), 'w') as handle:
            handle.write((recorded or slot) + '\n')

    def args(self, slot, **extra):
        args = {'upstream': 'web', 'slot': slot, 'content': _upstream(slot), 'upstreams_dir': self.upstreams,
                'state_dir': self.state, 'validate': self.validate, 'test_command': [self.test],
                'reload_command': [self.reload], 'live_url': self.server.url('/__proxy_health'),
                'verify': [{'name': 'nginx health route', 'url': self.server.url('/__proxy_health'),
                            'body_regex': '"config": "c1"', 'json_field': 'slots.web', 'json_value': slot}],
                'timeout': 3, 'interval': 0.1}
        args.update(extra)
        return args

    def file(self):
        return _slot_of(os.path.join(self.upstreams, 'web.conf'))

    def recorded(self):
        with open(os.path.join(self.state, 'web.slot')) as handle:
            return handle.read().strip()

    def commands(self):
        if not os.path.exists(self.calls):
            return []
        with open(self.calls) as handle:
            return [line.split()[0] for line in handle.read().splitlines()]


@pytest.fixture
def proxy(tmp_path, http_server):
    return Proxy(tmp_path, http_server)


def test_switch_rewrites_validates_tests_reloads_verifies_and_records(proxy):
    proxy.install('blue')
    result = run_module('proxy_switch', proxy.args('green'))
    assert result.get('failed') is not True, result
    assert result['changed'] and result['file_changed'] and result['reloaded'] and result['recorded']
    assert (result['from'], result['to'], result['slots']) == ('blue', 'green', {'web': 'green'})
    assert proxy.commands() == ['check', 'nginx-t', 'reload']
    assert proxy.file() == 'green' and _slot_of(proxy.loaded) == 'green' and proxy.recorded() == 'green'
    assert [c['ok'] for c in result['verify']] == [True]
    assert oct(os.stat(os.path.join(proxy.upstreams, 'web.conf')).st_mode & 0o777) == '0o644'


def test_switching_to_the_active_slot_changes_nothing(proxy):
    proxy.install('green')
    result = run_module('proxy_switch', proxy.args('green'))
    assert result.get('failed') is not True, result
    assert not result['changed'] and not result['reloaded'] and proxy.commands() == []


def test_a_written_but_never_loaded_file_is_reloaded(proxy):
    # A run that failed after writing: the file says green, nginx still serves blue.
    proxy.install('green', loaded='blue', recorded='green')
    result = run_module('proxy_switch', proxy.args('green'))
    assert result['changed'] and not result['file_changed'] and result['reloaded'] and not result['recorded']
    assert proxy.commands() == ['nginx-t', 'reload'] and _slot_of(proxy.loaded) == 'green'


def test_check_mode_reports_and_changes_nothing(proxy):
    proxy.install('blue')
    result = run_module('proxy_switch', proxy.args('green'), check_mode=True, diff=True)
    assert result['changed'] and result['check_mode'] and result['slots'] == {'web': 'blue'}
    assert proxy.commands() == [] and proxy.file() == 'blue' and proxy.recorded() == 'blue'
    assert 'green' in result['diff'][0]['after'] and result['diff'][1] == {
        'before_header': os.path.join(proxy.state, 'web.slot'), 'after_header': os.path.join(proxy.state, 'web.slot'),
        'before': 'blue\n', 'after': 'green\n'}


def test_a_configuration_nginx_refuses_puts_the_previous_file_back(proxy):
    proxy.install('blue')
    open(proxy.fail + 'test', 'w').close()
    result = run_module('proxy_switch', proxy.args('green'))
    assert result['failed'] and 'nginx refused its configuration' in result['msg']
    assert 'the previous file is back, nginx was not reloaded' in result['msg']
    assert proxy.commands() == ['check', 'nginx-t']
    assert proxy.file() == 'blue' and proxy.recorded() == 'blue' and _slot_of(proxy.loaded) == 'blue'


def test_a_file_the_validate_program_refuses_never_replaces_the_live_one(proxy):
    proxy.install('blue')
    open(proxy.fail + 'validate', 'w').close()
    result = run_module('proxy_switch', proxy.args('green'))
    assert result['failed'] and 'the new upstream file was refused by' in result['msg']
    assert proxy.commands() == ['check'] and proxy.file() == 'blue' and proxy.recorded() == 'blue'


def test_a_switch_nginx_does_not_confirm_fails_and_records_nothing(proxy):
    proxy.install('blue')
    # The health route keeps reporting blue (as if the reload never took effect).
    proxy.server.set(lambda n, t: (200, {'status': 'ok', 'config': 'c1', 'slots': {'web': 'blue'}}))
    result = run_module('proxy_switch', proxy.args('green', timeout=1))
    assert result['failed'] and 'did not answer as expected within 1s' in result['msg']
    assert "'nginx health route'" in result['msg'] and 'the new slot is not recorded' in result['msg']
    assert proxy.recorded() == 'blue'


def test_an_upstream_the_role_never_configured_is_refused(proxy):
    result = run_module('proxy_switch', proxy.args('green'))
    assert result['failed'] and 'apply the shipyard.webstack.proxy role' in result['msg']
    assert proxy.commands() == [] and proxy.file() is None

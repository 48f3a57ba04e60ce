"""The proxy role on real hosts: routes, headers, health route, TLS, retries, and a
blue->green switch under load (run by side_effect.yml) with no failed request."""

import json
import os

import pytest
import testinfra.utils.ansible_runner

RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(os.environ['MOLECULE_INVENTORY_FILE'])
ALL_HOSTS = RUNNER.get_hosts('app')
TLS_HOSTS = RUNNER.get_hosts('proxy_tls')
testinfra_hosts = ALL_HOSTS

WEB_API = {'blue': {18000, 18001}, 'green': {18100, 18101}}
RESULTS = '/var/lib/shipyard-test'

# Runs inside the host: one HTTP request to loopback, no redirect followed; prints JSON.
FETCH = r'''
import http.client, json, ssl, sys
scheme, port, host, method, path, size = sys.argv[1:7]
if scheme == "https":
    c = http.client.HTTPSConnection("127.0.0.1", int(port), timeout=10, context=ssl._create_unverified_context())
else:
    c = http.client.HTTPConnection(sys.argv[7] if len(sys.argv) > 7 else "127.0.0.1", int(port), timeout=10)
body = b"x" * int(size) if int(size) else None
c.request(method, path, body=body, headers={"Host": host})
r = c.getresponse()
data = r.read().decode("utf-8", "replace")
try:
    parsed = json.loads(data)
except ValueError:
    parsed = None
print(json.dumps({"status": r.status, "headers": {k.lower(): v for k, v in r.getheaders()}, "body": data, "json": parsed}))
'''


def _is_tls(host):
    return host.backend.get_hostname() in TLS_HOSTS


def fetch(host, path, method='GET', size=0, scheme=None, address=None):
    tls = _is_tls(host)
    scheme = scheme or ('https' if tls else 'http')
    port = '443' if scheme == 'https' else '80'
    name = 'proxy.test' if tls else 'localhost'
    args = [scheme, port, name, method, path, str(size)] + ([address] if address else [])
    cmd = host.run('python3 -c %s %s' % (_quote(FETCH), ' '.join(_quote(a) for a in args)))
    assert cmd.rc == 0, cmd.stderr
    return json.loads(cmd.stdout)


def _quote(text):
    return "'" + text.replace("'", "'\"'\"'") + "'"


def _results(host, name):
    return json.loads(host.file('%s/%s' % (RESULTS, name)).content_string)


def test_nginx_config_is_valid_and_running(host):
    check = host.run('nginx -t')
    assert check.rc == 0, check.stderr
    assert host.service('nginx').is_running
    assert host.service('nginx').is_enabled


def test_both_nginx_generations_are_covered():
    versions = {RUNNER.get_host(h).run('nginx -v').stderr.strip().split('/')[-1].rsplit('.', 1)[0] for h in ALL_HOSTS}
    assert versions == {'1.22', '1.26'}, versions


def test_default_site_is_gone(host):
    assert not host.file('/etc/nginx/sites-enabled/default').exists
    # An unknown Host lands on the proxy (default_server), not on Debian's welcome page.
    page = fetch(host, '/', scheme='http')
    assert 'Welcome to nginx' not in page['body']
    assert page['status'] in (200, 301)


def test_routes_go_where_configured(host):
    api = fetch(host, '/api/users?id=1')
    assert api['status'] == 200, api
    assert api['json']['port'] in WEB_API['green'], api['json']   # switched by side_effect
    assert api['json']['path'] == '/api/users?id=1'

    exact = fetch(host, '/api')
    assert exact['json']['port'] in WEB_API['green'] and exact['json']['path'] == '/api'

    root = fetch(host, '/index.html')
    assert root['json']['port'] == 18010 and root['json']['path'] == '/index.html'

    # /apix is not under /api: the longest matching prefix is /.
    apix = fetch(host, '/apix')
    assert apix['json']['port'] == 18010, apix['json']

    stripped = fetch(host, '/static/app.js')
    assert stripped['json']['port'] == 18010 and stripped['json']['path'] == '/app.js', stripped['json']
    not_stripped = fetch(host, '/staticfile')
    assert not_stripped['json']['path'] == '/staticfile', not_stripped['json']


def test_proxy_headers_and_upstream_keepalive(host):
    seen = fetch(host, '/api/headers')['json']
    tls = _is_tls(host)
    assert seen['host'] == ('proxy.test' if tls else 'localhost')
    assert seen['x_forwarded_for'] == '127.0.0.1'
    assert seen['x_real_ip'] == '127.0.0.1'
    assert seen['x_forwarded_proto'] == ('https' if tls else 'http')
    # nginx talks HTTP/1.1 with keep-alive to the app: it sends no 'Connection: close'.
    assert seen['connection'] in (None, ''), seen


def test_security_headers(host):
    for path in ('/api/x', '/__proxy_health', '/upload'):
        headers = fetch(host, path, method='POST' if path == '/upload' else 'GET', size=4096 if path == '/upload' else 0)['headers']
        assert headers.get('x-content-type-options') == 'nosniff', (path, headers)
        assert headers.get('x-frame-options') == 'SAMEORIGIN', (path, headers)
        assert headers.get('referrer-policy') == 'strict-origin-when-cross-origin', (path, headers)
        assert headers.get('server') == 'nginx', (path, headers)   # server_tokens off: no version
        if _is_tls(host):
            assert headers.get('strict-transport-security') == 'max-age=31536000', (path, headers)
        else:
            assert 'strict-transport-security' not in headers, (path, headers)


def test_health_route_reports_the_live_slots(host):
    health = fetch(host, '/__proxy_health', scheme='http')
    assert health['status'] == 200
    assert health['json']['status'] == 'ok'
    assert health['json']['slots'] == {'flaky': 'blue', 'flaky_noretry': 'blue', 'frontend': 'blue', 'web_api': 'green'}


@pytest.mark.parametrize('name,peer', [(name, peer) for name in ALL_HOSTS for peer in ALL_HOSTS if peer != name])
def test_health_route_is_loopback_only(name, peer):
    host = RUNNER.get_host(name)
    address = host.run('getent hosts %s' % peer).stdout.split()[0]
    remote = fetch(host, '/__proxy_health', scheme='http', address=address)
    assert remote['status'] == 403, remote
    assert remote['headers'].get('x-content-type-options') == 'nosniff'


def test_body_size_limits(host):
    assert fetch(host, '/upload', method='POST', size=512)['status'] == 200
    assert fetch(host, '/upload', method='POST', size=4096)['status'] == 413      # route: 1k
    assert fetch(host, '/api/items', method='POST', size=32 * 1024)['status'] == 200
    assert fetch(host, '/api/items', method='POST', size=100 * 1024)['status'] == 413  # global: 64k


def test_only_idempotent_requests_are_retried(host):
    # 18020 answers 503, 18021 answers 200. POST is never passed to the next server...
    posts = [fetch(host, '/flaky/p%d' % i, method='POST', size=10)['status'] for i in range(6)]
    assert 503 in posts, posts
    # ...GET is, on the same upstream.
    gets = [fetch(host, '/flaky/g%d' % i)['status'] for i in range(6)]
    assert gets == [200] * 6, gets
    # With idempotent_retry: false nothing is retried.
    noretry = [fetch(host, '/flaky-noretry/g%d' % i)['status'] for i in range(6)]
    assert 503 in noretry, noretry


def test_tls_files_and_redirect(host):
    if not _is_tls(host):
        assert not host.file('/etc/nginx/shipyard/tls/proxy.key').exists
        assert fetch(host, '/api/x', scheme='http')['status'] == 200
        return
    key = host.file('/etc/nginx/shipyard/tls/proxy.key')
    assert key.mode == 0o600 and key.user == 'root'
    assert host.file('/etc/nginx/shipyard/tls/proxy.crt').mode == 0o640
    redirect = fetch(host, '/api/x?y=1', scheme='http')
    assert redirect['status'] == 301
    assert redirect['headers']['location'] == 'https://proxy.test/api/x?y=1'
    assert 'strict-transport-security' not in redirect['headers']   # HSTS only over HTTPS
    assert host.run('python3 -c %s' % _quote(
        'import socket, ssl; c = ssl._create_unverified_context(); c.set_alpn_protocols(["h2", "http/1.1"]); '
        's = c.wrap_socket(socket.create_connection(("127.0.0.1", 443)), server_hostname="proxy.test"); '
        'print(s.selected_alpn_protocol())')).stdout.strip() == 'h2'


def test_switch_under_load_failed_no_request(host):
    load = _results(host, 'load.json')
    assert load['failed'] == 0, load['failures']
    assert load['ok'] == load['total'] >= 2000, load
    assert load['stop_at'] is not None, 'the load loop hit its bounds before the switch finished'
    # Requests kept coming while the switch ran (between the warm-up and the stop signal), not
    # only before and after it.
    assert load['during_switch'] >= 200, load
    assert load['slots'].get('blue', 0) > 0 and load['slots'].get('green', 0) > 0, load['slots']
    assert load['last_200'] == ['green'] * 200, load['last_200']


def test_switch_was_a_reload_and_is_recorded(host):
    switch = _results(host, 'switch.json')
    assert switch['result'] == {'upstream': 'web_api', 'from': 'blue', 'to': 'green', 'changed': True, 'check_mode': False}
    assert switch['active']['web_api'] == 'green' and switch['idle']['web_api'] == 'blue'
    assert switch['pid_before'] == switch['pid_after'], 'nginx was restarted, not reloaded'
    assert host.file('/var/lib/shipyard/proxy/web_api.slot').content_string == 'green\n'
    upstream = host.file('/etc/nginx/shipyard/upstreams/web_api.conf').content_string
    assert 'server 127.0.0.1:18100;' in upstream and '18000' not in upstream


def test_switch_is_idempotent_and_check_mode_only_reports(host):
    again = _results(host, 'switch-again.json')
    assert again == {'upstream': 'web_api', 'from': 'green', 'to': 'green', 'changed': False, 'check_mode': False}
    preview = _results(host, 'switch-check.json')
    assert preview == {'upstream': 'web_api', 'from': 'green', 'to': 'blue', 'changed': True, 'check_mode': True}


def test_role_run_after_switch_keeps_green(host):
    assert _results(host, 'after-role.json')['web_api'] == 'green'
    assert fetch(host, '/api/after')['json']['port'] in WEB_API['green']


def test_role_run_removes_a_retired_upstreams_files(host):
    assert not host.file('/etc/nginx/shipyard/upstreams/retired_http.conf').exists
    assert not host.file('/var/lib/shipyard/proxy/retired_http.slot').exists
    assert host.file('/etc/nginx/shipyard/upstreams/web_api.conf').exists
    assert host.file('/var/lib/shipyard/proxy/web_api.slot').content_string.strip() == 'green'

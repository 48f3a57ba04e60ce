"""TLS on the data tier, for scenarios whose inventory gives PostgreSQL and Redis a certificate.

Linked only into those scenarios' tests/ (today: single); the first check fails if a scenario
links it without giving any host a certificate, so nothing here can pass by having nothing to check.
"""

import os

import pytest

from test_data_tier import (APP_DB, APP_PASSWORD, APP_USER, POSTGRES, REDIS, RUNNER, _address, _admin_sql, _host,
                            _listening, _python)

TLS_POSTGRES = [h for h in POSTGRES if RUNNER.get_variables(h).get('postgres_tls_cert')]
TLS_REDIS = [h for h in REDIS if RUNNER.get_variables(h).get('redis_tls_cert')]

REDIS_TLS_PING = r'''
import socket, ssl, sys
host, port, password = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ctx = ssl.create_default_context(cafile=sys.argv[4])
ctx.check_hostname = False
s = ctx.wrap_socket(socket.create_connection((host, port), timeout=5))
def cmd(*parts):
    s.sendall(('*%d\r\n' % len(parts) + ''.join('$%d\r\n%s\r\n' % (len(p), p) for p in parts)).encode())
    return s.recv(65536).decode().split('\r\n')[0]
print('AUTH', cmd('AUTH', password))
print('PING', cmd('PING'))
'''


def test_the_scenario_gives_postgres_and_redis_a_certificate():
    assert TLS_POSTGRES and TLS_REDIS, (TLS_POSTGRES, TLS_REDIS)


@pytest.mark.parametrize('name', TLS_POSTGRES)
def test_postgres_serves_the_given_certificate(name):
    host = _host(name)
    key = host.file(_admin_sql('SHOW ssl_key_file'))
    assert (key.mode, key.user) == (0o600, 'postgres')
    cert_path = _admin_sql('SHOW ssl_cert_file')
    with open(os.path.join(os.path.dirname(os.path.realpath(__file__)), '..', 'files', 'test-only-server.crt')) as fixture:
        assert host.file(cert_path).content_string.strip() == fixture.read().strip()
    # A client verifying against that certificate gets a TLS session.
    res = host.run("PGPASSWORD='%s' psql -XAtq 'host=127.0.0.1 user=%s dbname=%s sslmode=verify-ca sslrootcert=%s' "
                   "-c 'SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()'"
                   % (APP_PASSWORD, APP_USER, APP_DB, cert_path))
    assert res.rc == 0 and res.stdout.strip() == 't', res.stderr


@pytest.mark.parametrize('name', TLS_REDIS)
def test_redis_serves_tls_with_the_password(name):
    host = _host(name)
    assert _listening(host, 6380) == {'127.0.0.1', _address(name)}
    key = host.file('/etc/redis/tls/redis.key')
    assert (key.mode, key.user) == (0o640, 'redis')
    res = _python(host, REDIS_TLS_PING, '127.0.0.1', '6380', RUNNER.get_variables(name)['redis_password'],
                  '/etc/redis/tls/redis.crt')
    assert 'AUTH +OK' in res.stdout and 'PING +PONG' in res.stdout, res.stdout + res.stderr

"""The data tier really works as configured: single host or spread over several.

Hosts and credentials come from the scenario's inventory, so the same checks run in
`single` (everything on one host) and `multihost` (one host per service, Debian 12 and 13).
"""

import base64
import os
import re
import threading
import time

import pytest
import testinfra.utils.ansible_runner

RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(os.environ['MOLECULE_INVENTORY_FILE'])
POSTGRES = RUNNER.get_hosts('postgres')
PGBOUNCER = RUNNER.get_hosts('pgbouncer')
REDIS = RUNNER.get_hosts('redis')
OUTSIDERS = RUNNER.get_hosts('outsider')
VARS = RUNNER.get_variables(POSTGRES[0])
APP_USER = VARS['postgres_users'][0]['name']
APP_PASSWORD = VARS['postgres_users'][0]['password']
APP_DB = VARS['postgres_databases'][0]['name']
DB_HOST = POSTGRES[0]
testinfra_hosts = sorted(set(POSTGRES + PGBOUNCER + REDIS + OUTSIDERS))


def _host(name):
    return RUNNER.get_host(name)


def _address(name):
    """The address a host has on the scenario network (what the roles call its private address)."""
    out = _host(name).check_output('getent ahostsv4 %s' % name)
    return out.split()[0]


def _python(host, script, *args):
    """Run a Python script on a host (no quoting trouble: it travels base64-encoded)."""
    code = base64.b64encode(script.encode()).decode()
    return host.run("echo %s | base64 -d > /tmp/t.py && python3 /tmp/t.py %s"
                    % (code, ' '.join("'%s'" % a for a in args)))


def _listening(host, port):
    out = host.check_output('ss -Hltn')
    addrs = set()
    for line in out.splitlines():
        local = line.split()[3]
        addr, _sep, lport = local.rpartition(':')
        if lport == str(port):
            addrs.add(addr.strip('[]'))
    return addrs


def _psql_command(sql, host_addr, port, user, password, db=APP_DB):
    return ("PGPASSWORD='%s' PGCONNECT_TIMEOUT=5 psql -XAtq -h %s -p %s -U %s -d %s -c \"%s\""
            % (password, host_addr, port, user, db, sql))


def _psql(host, sql, host_addr, port, user, password, db=APP_DB):
    return host.run(_psql_command(sql, host_addr, port, user, password, db))


def _admin_sql(sql, db='postgres'):
    """As postgres on the server's socket (root is mapped to postgres by pg_ident)."""
    return _host(DB_HOST).check_output("psql -XAtq -U postgres -d %s -c \"%s\"" % (db, sql))


REDIS_PING = r'''
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
auth = sys.argv[3:]
s = socket.create_connection((host, port), timeout=5)
def cmd(*parts):
    s.sendall(('*%d\r\n' % len(parts) + ''.join('$%d\r\n%s\r\n' % (len(p), p) for p in parts)).encode())
    return s.recv(65536).decode().split('\r\n')[0]
if auth:
    print('AUTH', cmd('AUTH', *auth))
print('PING', cmd('PING'))
'''


# --- listening only where intended -------------------------------------------------------------

@pytest.mark.parametrize('name,port,group', [(h, 5432, 'postgres') for h in POSTGRES]
                         + [(h, 6432, 'pgbouncer') for h in PGBOUNCER]
                         + [(h, 6379, 'redis') for h in REDIS])
def test_listens_on_loopback_and_private_address_only(name, port, group):
    addrs = _listening(_host(name), port)
    assert addrs == {'127.0.0.1', _address(name)}, '%s on %s listens on %s' % (group, name, sorted(addrs))


# --- PostgreSQL ---------------------------------------------------------------------------------

def test_postgres_settings_from_the_role():
    settings = dict(line.split('|') for line in _admin_sql(
        "SELECT name, setting FROM pg_settings WHERE name IN "
        "('password_encryption', 'data_checksums', 'max_connections', 'shared_buffers')").splitlines())
    assert settings['password_encryption'] == 'scram-sha-256'
    assert settings['data_checksums'] == 'on'
    assert settings['max_connections'] == '100'
    memtotal_kb = int(re.search(r'MemTotal:\s+(\d+)', _host(DB_HOST).file('/proc/meminfo').content_string).group(1))
    shared_mb = int(settings['shared_buffers']) * 8 // 1024
    assert abs(shared_mb - memtotal_kb // 1024 // 4) <= 1, (shared_mb, memtotal_kb)


def test_pg_hba_is_scram_only():
    hba = _host(DB_HOST).file(_admin_sql('SHOW hba_file'))
    assert hba.mode == 0o640 and hba.user == 'postgres'
    methods = _admin_sql("SELECT DISTINCT auth_method FROM pg_hba_file_rules WHERE error IS NULL").split()
    assert set(methods) <= {'scram-sha-256', 'peer'}, methods
    assert _admin_sql("SELECT count(*) FROM pg_hba_file_rules WHERE error IS NOT NULL") == '0'


def _client():
    """A host allowed by pg_hba that is not the server (or the server itself on one host)."""
    others = [h for h in PGBOUNCER if h != DB_HOST]
    return (others[0], _address(DB_HOST)) if others else (DB_HOST, '127.0.0.1')


def test_postgres_accepts_the_right_password_and_refuses_a_wrong_one():
    client, addr = _client()
    good = _psql(_host(client), 'SELECT current_user', addr, 5432, APP_USER, APP_PASSWORD)
    assert good.rc == 0 and good.stdout.strip() == APP_USER, good.stderr
    bad = _psql(_host(client), 'SELECT 1', addr, 5432, APP_USER, 'not-the-password')
    assert bad.rc != 0 and 'password authentication failed' in bad.stderr, bad.stderr


def test_auth_function_is_not_executable_by_others():
    client, addr = _client()
    res = _psql(_host(client), "SELECT * FROM pgbouncer.get_auth('%s')" % APP_USER, addr, 5432,
                APP_USER, APP_PASSWORD)
    assert res.rc != 0 and 'permission denied' in res.stderr, res.stdout + res.stderr
    assert _admin_sql("SELECT prosecdef FROM pg_proc WHERE proname = 'get_auth'", db=APP_DB) == 't'


# --- PgBouncer ----------------------------------------------------------------------------------

@pytest.mark.parametrize('name', PGBOUNCER)
def test_query_through_pgbouncer_reaches_postgres(name):
    res = _psql(_host(name), "SELECT coalesce(host(inet_server_addr()), 'socket') || ' ' || current_user",
                '127.0.0.1', 6432, APP_USER, APP_PASSWORD)
    assert res.rc == 0, res.stderr
    # On PostgreSQL's own host PgBouncer comes in through the unix socket (no server address).
    expected = 'socket' if name == DB_HOST else _address(DB_HOST)
    assert res.stdout.strip() == '%s %s' % (expected, APP_USER)


@pytest.mark.parametrize('name', PGBOUNCER)
def test_user_created_later_logs_in_through_pgbouncer(name):
    # A new name on every run: a dropped and re-created role would meet PgBouncer's pooled server
    # connection of the old one ("invalid role OID").
    user = 'late_%s_%d' % (re.sub(r'\W', '_', name), time.time() * 1000)
    _admin_sql("CREATE ROLE %s LOGIN PASSWORD 'late-password-1'" % user)
    res = _psql(_host(name), 'SELECT current_user', '127.0.0.1', 6432, user, 'late-password-1')
    assert res.rc == 0 and res.stdout.strip() == user, res.stderr
    # PgBouncer itself was not told about the user: it is in no file of its.
    assert user not in _host(name).file('/etc/pgbouncer/userlist.txt').content_string
    wrong = _psql(_host(name), 'SELECT 1', '127.0.0.1', 6432, user, 'wrong-password')
    assert wrong.rc != 0


@pytest.mark.parametrize('name', PGBOUNCER)
def test_pgbouncer_files_are_private(name):
    for path in ('/etc/pgbouncer/userlist.txt', '/etc/pgbouncer/pgbouncer.ini'):
        f = _host(name).file(path)
        assert (f.mode, f.user, f.group) == (0o640, 'postgres', 'postgres'), path


def _pgbouncer_show(name, what):
    variables = RUNNER.get_variables(name)
    res = _psql(_host(name), 'SHOW %s' % what, '127.0.0.1', 6432, 'pgbouncer_admin',
                variables['pgbouncer_admin_password'], db='pgbouncer')
    assert res.rc == 0, res.stderr
    return res.stdout


@pytest.mark.parametrize('name', PGBOUNCER)
def test_pgbouncer_version_gated_settings(name):
    config = dict(line.split('|')[:2] for line in _pgbouncer_show(name, 'CONFIG').splitlines())
    version = _host(name).check_output("dpkg-query -W -f '${Version}' pgbouncer")
    major, minor = (int(x) for x in version.split('.')[:2])
    ini = _host(name).file('/etc/pgbouncer/pgbouncer.ini').content_string
    if (major, minor) >= (1, 21):
        assert config['max_prepared_statements'] == '200'
    else:
        assert 'max_prepared_statements' not in ini
    assert config['pool_mode'] == 'transaction' and config['max_client_conn'] == '200'
    limits = _host(name).file('/proc/%s/limits' % _host(name).check_output(
        'systemctl show -p MainPID --value pgbouncer')).content_string
    # LimitNOFILE drop-in: 2 x max_client_conn 200 + 1024
    assert re.search(r'Max open files\s+1424\s+1424\s', limits), limits


def test_pgbouncer_serves_again_right_after_a_postgres_restart():
    """F10 at the pool: clients query through PgBouncer every 0.1 s while PostgreSQL restarts. With
    PgBouncer's own server_login_retry (15 s) a login it tried during the restart refused every client
    for about 10 s ("server login has been failing"); the role's 2 s must leave none refused."""
    name = PGBOUNCER[0]
    loop = ('for i in $(seq 1 60); do %s 2>&1 | head -n 1; sleep 0.1; done'
            % _psql_command('SELECT 1', '127.0.0.1', 6432, APP_USER, APP_PASSWORD))
    result = {}
    clients = threading.Thread(target=lambda: result.update(run=_host(name).run(loop)))
    clients.start()
    time.sleep(1.5)
    _host(DB_HOST).check_output('systemctl restart postgresql')
    clients.join(120)
    lines = result['run'].stdout.splitlines()
    refused = [line for line in lines if 'server_login_retry' in line]
    assert len(lines) == 60, lines
    assert not refused, '%d of %d queries refused after the restart' % (len(refused), len(lines))
    assert lines[-5:] == ['1'] * 5, lines


def test_pool_resize_kept_the_client_connected():
    """side_effect: a client kept one connection open while the role reloaded a new pool size."""
    name = PGBOUNCER[0]
    host = _host(name)
    log = host.file('/root/holdconn.log').content_string
    assert not re.search(r'^error', log, re.M) and re.search(r'^done queries=(\d+) errors=0$', log, re.M), log
    assert int(re.search(r'done queries=(\d+)', log).group(1)) >= 2
    # The new size is live, and it was a reload: the same PgBouncer process.
    config = dict(line.split('|')[:2] for line in _pgbouncer_show(name, 'CONFIG').splitlines())
    assert config['default_pool_size'] == '15'
    pid_before = host.file('/root/pgbouncer.pid.before').content_string.strip()
    assert host.check_output('systemctl show -p MainPID --value pgbouncer') == pid_before


# --- Redis --------------------------------------------------------------------------------------

def _redis_clients():
    return [(r, h) for r in REDIS for h in sorted(set([r] + PGBOUNCER))]


@pytest.mark.parametrize('server,client', _redis_clients())
def test_redis_needs_the_password(server, client):
    addr = '127.0.0.1' if server == client else _address(server)
    password = RUNNER.get_variables(server)['redis_password']
    anon = _python(_host(client), REDIS_PING, addr, '6379')
    assert 'PING -NOAUTH' in anon.stdout, anon.stdout + anon.stderr
    authed = _python(_host(client), REDIS_PING, addr, '6379', password)
    assert 'AUTH +OK' in authed.stdout and 'PING +PONG' in authed.stdout, authed.stdout + authed.stderr


@pytest.mark.parametrize('name', REDIS)
def test_redis_acl_users(name):
    variables = RUNNER.get_variables(name)
    host = _host(name)
    mon = _python(host, REDIS_PING, '127.0.0.1', '6379', 'monitor', variables['redis_monitor_password'])
    assert 'AUTH +OK' in mon.stdout and 'PING +PONG' in mon.stdout, mon.stdout
    cli = "redis-cli --no-auth-warning --user %s --pass '%s' "
    assert host.run(cli % ('monitor', variables['redis_monitor_password']) + 'SET k v').stdout.startswith('NOPERM')
    assert host.run(cli % ('app', variables['redis_app_password']) + 'SET k v').stdout.strip() == 'OK'


@pytest.mark.parametrize('name', REDIS)
def test_redis_settings_and_secret_file(name):
    variables = RUNNER.get_variables(name)
    host = _host(name)
    conf = host.file('/etc/redis/shipyard.conf')
    assert (conf.mode, conf.user, conf.group) == (0o640, 'redis', 'redis')
    assert variables['redis_password'] not in conf.content_string
    cli = "redis-cli --no-auth-warning -a '%s' " % variables['redis_password']
    got = {}
    for key in ('maxmemory', 'maxmemory-policy', 'appendonly', 'appendfsync', 'protected-mode'):
        got[key] = host.check_output(cli + 'CONFIG GET ' + key).splitlines()[1]
    assert got == {'maxmemory': str(256 * 1024 * 1024), 'maxmemory-policy': 'allkeys-lru', 'appendonly': 'yes',
                   'appendfsync': 'everysec', 'protected-mode': 'yes'}
    # vm.overcommit_memory for the kernel at boot (the container's /proc/sys is read-only).
    sysctl = host.file('/etc/sysctl.d/60-shipyard-redis.conf')
    assert (sysctl.content_string, sysctl.mode, sysctl.user) == ('vm.overcommit_memory=1\n', 0o644, 'root')
    # Debian's hardened unit is kept: only drop-ins are added.
    # (redis.conf itself only gains the include line.)
    changed = [line for line in host.run('dpkg -V redis-server').stdout.splitlines()
               if not line.endswith(' /etc/redis/redis.conf')]
    assert changed == [] and host.file('/lib/systemd/system/redis-server.service').exists
    assert 'ProtectSystem=' in host.check_output('systemctl cat redis-server')


@pytest.mark.parametrize('name', REDIS)
def test_f9_redis_killed_and_restarted_keeps_its_aof_data(name):
    """F9: a write acknowledged a second before Redis is killed (SIGKILL: no save on shutdown, so
    only the append-only file can bring it back, appendfsync everysec) is there after the restart."""
    password = RUNNER.get_variables(name)['redis_password']
    host = _host(name)
    cli = "redis-cli --no-auth-warning -a '%s' " % password
    token = 'v%d' % time.time()
    assert host.check_output(cli + 'SET shipyard:restart ' + token) == 'OK'
    time.sleep(1.5)   # appendfsync everysec: the write is on disk within a second
    host.check_output('systemctl kill --signal=KILL redis-server')
    host.check_output('systemctl restart redis-server')
    for _attempt in range(50):
        if host.run(cli + 'PING').stdout.strip() == 'PONG':
            break
        time.sleep(0.2)
    assert host.check_output(cli + 'GET shipyard:restart') == token
    assert 'aof_enabled:1' in host.check_output(cli + 'INFO persistence')

"""The roles' checks of formats, ranges and pairs (plugins/plugin_utils/role_checks.py): the defaults pass, each
bad value is named with what is wrong and never quoted, wrong types are left to the spec check, and the
argument specs' defaults fill in what deploy.yml's preflight does not have."""

import os

import pytest
import yaml

from ansible.errors import AnsibleFilterError
from ansible_collections.shipyard.webstack.plugins.plugin_utils.role_checks import (
    READS, role_check_violations, role_checked_variables, undefined_variables,
)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ROLES = ['postgres', 'pgbouncer', 'redis', 'db_backup', 'docker', 'proxy', 'app']
SPECS = {}
for _role in ROLES:
    with open(os.path.join(ROOT, 'roles', _role, 'meta', 'argument_specs.yml')) as _handle:
        SPECS[_role] = yaml.safe_load(_handle)['argument_specs']['main']['options']
PEM_CERT = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n'
PEM_KEY = '-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n'
# What a valid host adds to the roles' defaults (the required secrets, an app with a web process).
VALID = {
    'redis_password': 'Rd2Xw7Qk4Lr9Mv3Nz8Ts',
    'pgbouncer_auth_password': 'Pa7Nq2Xw9Lr4Kv8Mz3Ts', 'pgbouncer_admin_password': 'Pd3Mw8Qx2Lr7Kv4Nz9Ts',
    'pgbouncer_stats_password': 'Ps9Kw3Qx8Lr2Mv7Nz4Ts',
    'app_processes': {'web': {'command': ['web'], 'health': {'path': '/health'},
                              'ports': [{'container_port': 8000}]}},
    'proxy_upstreams': {'web_http': {'blue': ['127.0.0.1:18000'], 'green': ['127.0.0.1:18100']}},
    'proxy_routes': [{'path': '/', 'upstream': 'web_http'}],
}


def check(values, roles=None, host='h1'):
    return role_check_violations(dict(VALID, **values), roles or ROLES, host, SPECS)


def test_the_defaults_and_a_valid_host_pass():
    assert check({}) == []
    # The role's own call: every variable its rules read, no specs.
    for role in ROLES:
        values = dict((name, SPECS[role][name].get('default', '')) for name in role_checked_variables(role))
        values.update((name, VALID[name]) for name in values if name in VALID)
        assert role_check_violations(values, role, 'h1') == [], role


def test_every_variable_a_rule_reads_is_an_option_of_its_role():
    # A misspelt name would make its rule skip silently (an unknown input skips the rule).
    for role, names in READS.items():
        assert set(names) <= set(SPECS[role]), (role, set(names) - set(SPECS[role]))
    assert set(READS) == set(ROLES)


@pytest.mark.parametrize('values, roles, expected', [
    ({'docker_log_max_size': '10 MB'}, ['docker'],
     'docker_log_max_size on h1 (role docker): must be a size like 10m, 500k or 1g'),
    ({'docker_log_max_file': 0}, ['docker'], 'docker_log_max_file on h1 (role docker): must be at least 1'),
    ({'docker_data_root': 'srv/docker'}, ['docker'],
     'docker_data_root on h1 (role docker): must be an absolute path or empty'),
    ({'docker_distribution_packages': []}, ['docker'],
     'docker_distribution_packages on h1 (role docker): is empty: name the Docker Engine packages to install'),
    ({'docker_registry_ca_certs': [{'registry': 'https://r.example/x', 'ca_cert': PEM_CERT}]}, ['docker'],
     'docker_registry_ca_certs[0].registry on h1 (role docker): must be a registry host or host:port'),
    ({'docker_registry_ca_certs': [{'registry': 'r.example:5000', 'ca_cert': '/etc/ca.pem'}]}, ['docker'],
     'docker_registry_ca_certs[0].ca_cert on h1 (role docker): must hold a PEM certificate'),
    ({'docker_registry_logins': [{'registry': 'r.example', 'username': 'ci'}]}, ['docker'],
     'docker_registry_logins[0].password on h1 (role docker): is required but not set'),
    ({'redis_password': 'Short9Pw'}, ['redis'], 'redis_password on h1 (role redis): must be at least 16 characters'),
    ({'redis_maxmemory': '256 megabytes'}, ['redis'], 'redis_maxmemory on h1 (role redis): must be a size like 256mb'),
    ({'redis_tls_cert': PEM_CERT}, ['redis'], 'redis_tls_cert and redis_tls_key on h1 (role redis): must be given together'),
    ({'redis_app_password': 'Ap9Kw3Qx8Lr2Mv7N', 'redis_app_user': 'default'}, ['redis'],
     "redis_app_user on h1 (role redis): must be an ACL user name other than 'default'"),
    ({'redis_acl_users': [{'name': 'cache', 'password': 'Cx8Lr2Mv7Nz4Ts6H'}]}, ['redis'],
     'redis_acl_users[0].acl on h1 (role redis): is required but not set'),
    ({'proxy_upstreams': {'Web': {'blue': ['127.0.0.1:1'], 'green': ['127.0.0.1:2']}},
      'proxy_routes': [{'path': '/', 'upstream': 'Web'}]}, ['proxy'],
     'proxy_upstreams.Web on h1 (role proxy): an upstream name is lower case letters'),
    ({'proxy_upstreams': {'web': {'blue': ['127.0.0.1:1']}}, 'proxy_routes': [{'path': '/', 'upstream': 'web'}]},
     ['proxy'], 'proxy_upstreams.web.green on h1 (role proxy): must be a non-empty list of servers'),
    ({'proxy_upstreams': {'web': {'blue': ['127.0.0.1:1'], 'green': ['app one:8000']}},
      'proxy_routes': [{'path': '/', 'upstream': 'web'}]},
     ['proxy'], 'proxy_upstreams.web.green on h1 (role proxy): every server must be host:port or unix:/path'),
    ({'proxy_routes': [{'path': '/api/', 'upstream': 'web_http'}]}, ['proxy'],
     "proxy_routes[0].path on h1 (role proxy): must start with '/', without a trailing '/'"),
    ({'proxy_routes': [{'path': '/api', 'upstream': 'api'}]}, ['proxy'],
     'proxy_routes[0].upstream on h1 (role proxy): must name a key of proxy_upstreams'),
    ({'proxy_routes': [{'path': '/', 'upstream': 'web_http'}, {'path': '/', 'upstream': 'web_http'}]}, ['proxy'],
     'proxy_routes on h1 (role proxy): each path may appear once (repeated: /)'),
    ({'proxy_health_path': '/'}, ['proxy'],
     'proxy_health_path on h1 (role proxy): must be a path of its own, not one of proxy_routes'),
    ({'proxy_tls_enabled': True, 'proxy_tls_certificate': '/etc/ssl/shop.crt', 'proxy_tls_certificate_key': PEM_KEY},
     ['proxy'], 'proxy_tls_certificate on h1 (role proxy): must hold the PEM certificate (chain)'),
    ({'proxy_tls_enabled': 'yes', 'proxy_tls_certificate': PEM_CERT, 'proxy_tls_certificate_key': ''},
     ['proxy'], 'proxy_tls_certificate_key on h1 (role proxy): must hold the PEM private key'),
    ({'pgbouncer_auth_user': 'PgBouncer'}, ['pgbouncer'],
     'pgbouncer_auth_user on h1 (role pgbouncer): must be a plain lower-case identifier'),
    ({'pgbouncer_min_pool_size': 30}, ['pgbouncer'],
     'pgbouncer_min_pool_size on h1 (role pgbouncer): must not be above pgbouncer_default_pool_size'),
    ({'pgbouncer_max_client_conn': 0}, ['pgbouncer'], 'pgbouncer_max_client_conn on h1 (role pgbouncer): must be positive'),
    ({'pgbouncer_server_login_retry': 0}, ['pgbouncer'], 'pgbouncer_server_login_retry on h1 (role pgbouncer): must be at least 1'),
    ({'pgbouncer_stats_password': ''}, ['pgbouncer'], 'pgbouncer_stats_password on h1 (role pgbouncer): must not be empty'),
    ({'postgres_superuser_reserved_connections': 100}, ['postgres'],
     'postgres_superuser_reserved_connections on h1 (role postgres): must be below postgres_max_connections'),
    ({'postgres_max_connections': 0}, ['postgres'], 'postgres_max_connections on h1 (role postgres): must be positive'),
    ({'postgres_listen_addresses': ['*']}, ['postgres'], "postgres_listen_addresses on h1 (role postgres): contains '*'"),
    ({'postgres_hba_entries': [{'type': 'host', 'address': '10.0.0.0/8', 'method': 'md5'}]}, ['postgres'],
     'postgres_hba_entries[0].method on h1 (role postgres): must be one of: scram-sha-256, cert, reject, peer'),
    ({'postgres_hba_entries': [{'type': 'host', 'address': '10.0.0.0/8', 'method': 'peer'}]}, ['postgres'],
     'postgres_hba_entries[0].method on h1 (role postgres): peer is for type local only'),
    ({'postgres_hba_entries': [{'type': 'host'}]}, ['postgres'],
     'postgres_hba_entries[0].address on h1 (role postgres): is required for a host line'),
    ({'postgres_hba_entries': [{'type': 'host', 'address': '0.0.0.0/0'}]}, ['postgres'],
     'postgres_hba_entries[0].address on h1 (role postgres): accepts any address'),
    ({'postgres_hba_require_tls': True}, ['postgres'],
     'postgres_hba_require_tls on h1 (role postgres): needs postgres_tls_cert and postgres_tls_key'),
    ({'postgres_users': [{'name': 'app'}]}, ['postgres'],
     'postgres_users[0].password on h1 (role postgres): is required for a present user'),
    ({'postgres_users': [{'name': 'app', 'passwrd': 'x'}]}, ['postgres'],
     'postgres_users[0] on h1 (role postgres): has unknown key(s) passwrd; known: name, password, role_attr_flags, state'),
    ({'postgres_databases': [{'name': 'shop', 'extension': ['pg_trgm']}]}, ['postgres'],
     'postgres_databases[0] on h1 (role postgres): has unknown key(s) extension; known: name, owner, encoding, extensions'),
    ({'postgres_databases': [{'name': 'shop', 'owner': 'shop'}]}, ['postgres'],
     'postgres_databases[0].owner on h1 (role postgres): must be postgres or one of postgres_users'),
    ({'db_backup_dir': 'backups'}, ['db_backup'], 'db_backup_dir on h1 (role db_backup): must be an absolute path'),
    ({'db_backup_dir': '/srv/b', 'db_backup_state_dir': '/srv/b'}, ['db_backup'],
     'db_backup_state_dir on h1 (role db_backup): must differ from db_backup_dir'),
    ({'db_backup_on_calendar': ''}, ['db_backup'], 'db_backup_on_calendar on h1 (role db_backup): must be a systemd OnCalendar'),
    ({'db_backup_labelled_keep': 0}, ['db_backup'], 'db_backup_labelled_keep on h1 (role db_backup): must be at least 1'),
    ({'db_backup_retention_daily': -1}, ['db_backup'], 'db_backup_retention_daily on h1 (role db_backup): must not be negative'),
    ({'db_backup_offsite_enabled': True, 'db_backup_offsite_host': 'vault1'}, ['db_backup'],
     "db_backup_offsite_known_hosts on h1 (role db_backup): must hold the far side's host key lines"),
    ({'app_name': 'Shop_App'}, ['app'], "app_name on h1 (role app): must be lower case letters, digits and '-'"),
    ({'app_keep_releases': 0}, ['app'], 'app_keep_releases on h1 (role app): must be at least 1'),
    ({'app_health_timeout': 0}, ['app'], 'app_health_timeout on h1 (role app): must be above 0'),
    ({'app_env': {'NODE-ENV': 'production'}}, ['app'],
     'app_env on h1 (role app): every name must be a shell-style variable name (not: NODE-ENV)'),
    ({'app_processes': {'web': {'command': ['web'], 'ports': [{'container_port': 8000}]}}}, ['app'],
     'app_processes on h1 (role app): every process with ports needs an HTTP health check'),
])
def test_a_bad_value_is_named_with_what_is_wrong(values, roles, expected):
    out = check(values, roles)
    assert any(message.startswith(expected) for message in out), out


def test_values_are_never_quoted():
    secret = 'Zk8wQv3nTr5LmP2x\nYc7B'
    out = check({'app_secret_env': {'API_TOKEN': secret}, 'redis_password': 'Wk7Rq2Lm',
                 'proxy_tls_enabled': True, 'proxy_tls_certificate': 'Hx7pWq2mZr9KdL4s',
                 'proxy_tls_certificate_key': 'Nv6TJr5tNm8QwZ2x'})
    assert 'app_secret_env on h1 (role app): no value may span lines (values with a line break: API_TOKEN)' in out
    text = '\n'.join(out)
    for value in ('Zk8wQv3nTr5LmP2x', 'Wk7Rq2Lm', 'Hx7pWq2mZr9KdL4s', 'Nv6TJr5tNm8QwZ2x'):
        assert value not in text


def test_wrong_types_are_left_to_the_spec_check():
    assert check({'docker_log_max_file': 'many', 'postgres_users': ['app:pw'], 'proxy_upstreams': ['web'],
                  'pgbouncer_default_pool_size': '20 connections', 'app_health_timeout': True}) == []


def test_the_specs_defaults_fill_what_the_host_does_not_set():
    # Only min_pool_size given: the check compares it with the default pool size (20) from the spec.
    assert role_check_violations({'pgbouncer_min_pool_size': 25}, ['pgbouncer'], 'h1', SPECS) == [
        'pgbouncer_min_pool_size on h1 (role pgbouncer): must not be above pgbouncer_default_pool_size']
    # Without specs a missing input skips the rule.
    assert role_check_violations({'pgbouncer_min_pool_size': 25}, ['pgbouncer'], 'h1') == []


def test_every_violation_at_once_across_roles():
    out = check({'docker_data_root': 'x', 'db_backup_dir': 'y', 'app_name': 'Z'})
    assert [message.split(' on ')[0] for message in out] == ['db_backup_dir', 'docker_data_root', 'app_name']


def test_bad_calls():
    with pytest.raises(AnsibleFilterError, match='expects a dict'):
        role_check_violations(['x'], ['app'])
    with pytest.raises(AnsibleFilterError, match='no checks for the role nginx'):
        role_check_violations({}, ['nginx'])
    with pytest.raises(AnsibleFilterError, match='no checks for the role nginx'):
        role_checked_variables('nginx')


def test_undefined_variables_repeats_only_the_names():
    message = ("The task includes an option with an undefined variable. 'vault_redis_pw' is undefined. "
               "'vault_redis_pw' is undefined; value 'sekrit-1234' of redis_password; 'a_b2' is undefined")
    assert undefined_variables(message) == ['a_b2', 'vault_redis_pw']
    assert undefined_variables("template error while templating string: unexpected '}'") == []
    assert undefined_variables(None) == []

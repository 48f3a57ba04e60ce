"""The bad input corpus (bad_input_corpus.yml, issue 9): every invalid variable set fails deploy.yml's
preflight with a message naming the variable and what is wrong, prints no secret value, and changes
nothing (no lock file, no audit line, no role ran, changed=0 in the PLAY RECAP).

The cases of one run share one inventory, one host per case, and one ansible-playbook invocation
(the preflight reports every host's violations at once), so the whole corpus costs four runs. The
per-host run is made at -vvv: even then no value may show."""

import json
import os

import pytest
import yaml

from deploy_runs import deploy, local_host_vars, recap

HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(HERE, 'bad_input_corpus.yml')) as _handle:
    CORPUS = yaml.safe_load(_handle)['runs']
CASES = [(run, case) for run in CORPUS for case in CORPUS[run]['cases']]
VERBOSE_RUNS = {'per_host'}


def _pem(kind):
    body = 'MIIBszCCAVmgAwIBAgIUQ2h5c3RlbVRlc3RDZXJ0aWZpY2F0ZTAKBggqhkjOPQQDAjAS'
    return '-----BEGIN %s-----\n%s\n-----END %s-----\n' % (kind, body, kind)


# The valid variables of each group (per host: a case may unset one of them).
BASE_SECRETS = {
    'postgres_users': [{'name': 'app', 'password': 'Pg4Lw9Vr2Xk7Mn3Qs8Zt6Hb1Jc5Fd0Ye'}],
    'pgbouncer_auth_password': 'Pa7Nq2Xw9Lr4Kv8Mz3Ts6Hb1Jc5Fd0Ye',
    'pgbouncer_admin_password': 'Pd3Mw8Qx2Lr7Kv4Nz9Ts6Hb1Jc5Fd0Ye',
    'pgbouncer_stats_password': 'Ps9Kw3Qx8Lr2Mv7Nz4Ts6Hb1Jc5Fd0Ye',
    'redis_password': 'Rd2Xw7Qk4Lr9Mv3Nz8Ts6Hb1Jc5Fd0Ye',
    'app_database_password': 'Pg4Lw9Vr2Xk7Mn3Qs8Zt6Hb1Jc5Fd0Ye',
}
BASE = {
    'all': {'shipyard_environment': 'production'},
    'postgres': {'postgres_max_connections': 5000, 'postgres_users': BASE_SECRETS['postgres_users'],
                 'postgres_databases': [{'name': 'app', 'owner': 'app'}]},
    'pgbouncer': {name: BASE_SECRETS[name] for name in ('pgbouncer_auth_password', 'pgbouncer_admin_password',
                                                        'pgbouncer_stats_password')},
    'redis': {'redis_password': BASE_SECRETS['redis_password']},
    'app': {'app_image_repository': 'registry.example.internal/shop/app', 'app_image_tag': '1.4.2',
            'app_database_password': BASE_SECRETS['app_database_password'],
            'app_processes': {'web': {'command': ['web'], 'health': {'path': '/api/health'},
                                      'ports': [{'container_port': 8000, 'host_port': 18000}]}},
            'proxy_tls_enabled': True, 'proxy_tls_certificate': _pem('CERTIFICATE'),
            'proxy_tls_certificate_key': _pem('PRIVATE KEY')},
    'db_backup': {},
}


def host_vars(groups, over=None, unset=()):
    values = dict(BASE['all'])
    for group in groups:
        values.update(BASE[group])
    values.update(over or {})
    for name in unset:
        values.pop(name, None)
    return values


def build_inventory(tmp_path, run):
    spec = CORPUS[run]
    hosts = {'base': (spec['base_groups'], host_vars(spec['base_groups']))}
    order = ['base']
    for name, case in spec['cases'].items():
        hosts[name] = (case['groups'], host_vars(case['groups'], case.get('vars'), case.get('unset', ())))
        if case.get('first'):
            order.insert(0, name)
        else:
            order.append(name)
    children = {}
    for name in order:
        groups, values = hosts[name]
        for group in groups:
            children.setdefault(group, {'hosts': {}})['hosts'][name] = values
    inv = {'all': {'vars': {'deploy_policy': spec['policy']}, 'children': children}}
    path = tmp_path / ('%s.json' % run)
    path.write_text(json.dumps(inv))
    return str(path)


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    """run -> (rc, output, its temporary directory), each run made once for the module."""
    done = {}

    def get(run):
        if run not in done:
            tmp_path = tmp_path_factory.mktemp(run)
            extra = tmp_path / 'local.json'
            extra.write_text(json.dumps(local_host_vars(tmp_path)))
            args = ['-e', '@%s' % extra] + (['-vvv'] if run in VERBOSE_RUNS else [])
            rc, out = deploy(build_inventory(tmp_path, run), *args, tags='preflight', timeout=240)
            done[run] = (rc, out, tmp_path)
        return done[run]
    return get


def test_the_corpus_is_big_enough():
    assert len(CASES) >= 30
    for run, case in CASES:
        assert CORPUS[run]['cases'][case]['expect'], case


@pytest.mark.parametrize('run', sorted(CORPUS))
def test_run_fails_in_the_preflight_and_changes_nothing(runs, run):
    rc, out, tmp_path = runs(run)
    assert rc != 0, out
    assert 'The preflight found' in out, out
    assert not (tmp_path / 'deploy.lock').exists() and not (tmp_path / 'audit.jsonl').exists()
    # No role ran: their tasks are named '<role> : ...' and the phases include them as 'Deploy | Role <role>'.
    assert 'Take the deploy lock' not in out and 'Deploy | Role ' not in out
    assert not any(' : ' in line for line in out.splitlines() if line.startswith('TASK [')), out
    counts = recap(out)
    assert set(counts) >= set(CORPUS[run]['cases']), counts
    assert all(host['changed'] == 0 for host in counts.values()), counts
    for value in BASE_SECRETS.values():
        assert (value if isinstance(value, str) else value[0]['password']) not in out


@pytest.mark.parametrize('run, case', CASES, ids=['%s-%s' % item for item in CASES])
def test_case_is_named_and_no_secret_printed(runs, run, case):
    rc, out, _err = runs(run)
    spec = CORPUS[run]['cases'][case]
    report = ' '.join(out.split())   # the callback folds long lines
    assert rc != 0
    for text in spec['expect']:
        text = ' '.join(text.replace('{host}', case).split())
        assert text in report, '%s: %r missing from:\n%s' % (case, text, out)
    for secret in spec.get('secrets', []):
        assert secret not in out, '%s: %r printed' % (case, secret)

"""What side_effect.yml's steps recorded (runs/<step>.json): the operator's story of issue 6 and
the faults F1, F2, F3 and F10 of issue 9, one test per case. Each step ran ansible-playbook as an
operator would; the evidence is its exit code and output, the app containers (name -> id) and
the version each proxy served before and after, and the load generator's result where the step
ran under load (cache1 sending requests to both proxies, a failed request being any error or
any status other than 200)."""

import json
import os
import re
import sys

import pytest

# The deploy output parsers the functional tests and the benchmarks use too. The lock and the audit line
# are the run's bookkeeping and report ok: a deploy that changes nothing has no changed task at all.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', '..', 'tests', 'functional'))
from deploy_runs import changed_tasks, recap  # noqa: E402  pylint: disable=wrong-import-position

RUNS = os.path.join(os.environ['MOLECULE_EPHEMERAL_DIRECTORY'], 'runs')
REPO = 'cache1:5000/shipyard/app'


def step(name):
    path = os.path.join(RUNS, name + '.json')
    if not os.path.exists(path):
        pytest.fail('side_effect.yml did not record the step %s (%s)' % (name, path))
    with open(path, encoding='utf-8') as handle:
        return json.load(handle)


def ledger(name):
    with open(os.path.join(RUNS, 'ledger-%s.json' % name), encoding='utf-8') as handle:
        return json.load(handle)


def served(run, when, version):
    return all(run[when][h]['web_version'] == version for h in ('app1', 'app2'))


def untouched(run):
    return all(run['after'][h]['containers'] == run['before'][h]['containers'] for h in ('app1', 'app2'))


def no_failed_request(run, only_versions=None):
    load = run['load']
    assert load['failed'] == 0, load.get('urls')
    for url in ('http://app1/', 'http://app2/'):
        assert load['urls'][url]['ok'] > 50, (url, load['urls'][url])
        if only_versions:
            assert sorted(load['urls'][url]['versions']) == sorted(only_versions), (url, load['urls'][url]['versions'])


def test_check_mode_prints_the_plan_and_changes_nothing():
    run = step('v2-check')
    assert run['rc'] == 0, run['stdout'][-3000:]
    assert 'Deploy | The release plan' in run['stdout']
    assert 'migrations pending' in run['stdout']
    assert 'would start %s:v2' % REPO in run['stdout']
    assert untouched(run) and served(run, 'after', '1.0.0')
    # The plan said there was work: the real run afterwards did it.
    assert not untouched(step('v2'))


def test_v2_under_load_no_failed_request_and_the_migration_ran_once():
    run = step('v2')
    assert run['rc'] == 0, run['stdout'][-3000:]
    no_failed_request(run)
    for url in ('http://app1/', 'http://app2/'):
        assert run['load']['urls'][url]['sequence'][-1] == '2.0.0'
    assert served(run, 'after', '2.0.0')
    # v1's and v2's gate runs are the ledger's only rows; v2's migration 0003 is applied.
    assert ledger('v2') == {'ok': 2, 'rows': 2, 'v2_schema': 1, 'last': {'status': 'ok', 'return_code': 0}}


def test_f1_failed_migration_touches_no_host_and_the_ledger_records_it():
    run = step('F1-bad-migration')
    assert run['rc'] != 0
    assert 'The migrations of %s:bad-migration' % REPO in run['stdout']
    assert 'Deploy | Roll out' not in run['stdout'] or 'skipping' in run['stdout']
    assert untouched(run) and served(run, 'after', '2.0.0')
    assert ledger('F1-bad-migration')['last'] == {'status': 'failed', 'return_code': 1}
    assert 'The deploy failed; the lock was released' in run['stdout']


def test_f2_unhealthy_release_is_reverted_with_no_failed_request():
    run = step('F2-broken')
    assert run['rc'] != 0
    for text in ('Failing check', 'web http /api/health', 'bad_status', 'last HTTP status 503', 'Docker health log'):
        assert text in run['stdout'], text
    # The log tail of the failing process (web), not of the healthy one (worker).
    assert re.search(r'log lines of shop-web-(blue|green):', run['stdout']), run['stdout'][-3000:]
    assert not re.search(r'log lines of shop-worker-', run['stdout']), run['stdout'][-3000:]
    no_failed_request(run, only_versions=['2.0.0'])
    # The first host's new container was removed, the second host was never touched.
    assert untouched(run) and served(run, 'after', '2.0.0')
    assert 'The deploy failed; the lock was released' in run['stdout']


def test_failed_rollout_switches_back_the_hosts_already_done():
    run = step('revert')
    assert run['rc'] != 0
    assert '/api/no-such-route' in run['stdout']          # app2's failing check is named
    assert 'Switch this host back to' in run['stdout']    # app1 went back
    no_failed_request(run)
    assert served(run, 'after', '2.0.0'), run['after']    # the fleet is not mixed
    app1 = run['load']['urls']['http://app1/']['versions']
    assert '1.0.0' in app1, app1                          # app1 really had moved before it went back


def test_rollback_returns_to_the_last_good_release_with_the_warning():
    run = step('rollback')
    assert run['rc'] == 0, run['stdout'][-3000:]
    assert 'WARNING: the database has migrations of releases deployed after %s:v1' % REPO in run['stdout']
    no_failed_request(run)
    assert served(run, 'after', '1.0.0')
    # Under the deploy lock, like a deploy: taken before the rollout, released at its end.
    assert 'took the deploy lock' in run['stdout'] and 'Release the deploy lock on db1' in run['stdout']
    with open(os.path.join(RUNS, 'rollback-lock.json'), encoding='utf-8') as handle:
        assert json.load(handle) == {'lock_present': False}


def test_deploying_the_running_release_again_changes_nothing():
    run = step('v1-again')
    assert run['rc'] == 0, run['stdout'][-3000:]
    assert changed_tasks(run['stdout']) == []
    assert 'Take the deploy lock on db1' in run['stdout']   # the parser saw the run's tasks
    counts = recap(run['stdout'])
    assert len(counts) == 5 and not any(host['changed'] for host in counts.values()), counts   # 4 hosts + localhost
    assert untouched(run)


def test_release_playbook_alone_runs_under_the_lock_and_changes_nothing_for_the_running_release():
    run = step('v1-release')
    assert run['rc'] == 0, run['stdout'][-3000:]
    assert 'took the deploy lock' in run['stdout'] and 'Release the deploy lock on db1' in run['stdout']
    assert 'Release %s:v1' % REPO in run['stdout'] and 'migrations up to date' in run['stdout'], run['stdout'][-3000:]
    assert changed_tasks(run['stdout']) == []
    assert untouched(run) and served(run, 'after', '1.0.0')


def test_f3_postgres_down_fails_in_the_preflight_and_changes_nothing():
    run = step('F3-postgres-down')
    assert run['rc'] != 0
    assert 'The preflight found' in run['stdout'] and 'nothing has been changed' in run['stdout']
    assert 'PostgreSQL on db1' in run['stdout'] and 'does not answer' in run['stdout']
    assert 'Take the deploy lock' not in run['stdout']
    assert re.findall(r'changed=(\d+)', run['stdout']) and not any(int(n) for n in re.findall(r'changed=(\d+)', run['stdout']))
    assert untouched(run) and served(run, 'after', '1.0.0')
    with open(os.path.join(RUNS, 'F3-lock.json'), encoding='utf-8') as handle:
        assert json.load(handle) == {'lock_present': False}


def test_f10_postgres_restart_recovers_without_a_deploy():
    run = step('F10-postgres-restart')
    assert run['rc'] == 0, run['stdout'][-3000:]    # status.yml: every component healthy again
    no_failed_request(run, only_versions=['1.0.0'])
    assert untouched(run)                            # no container was restarted or replaced


def test_f4_unreachable_host_stops_the_rollout_and_the_fleet_stays_one_release():
    run = step('F4-unreachable')
    assert run['rc'] != 0
    assert 'app2 could not be reached when its batch began' in run['stdout']
    assert 'Switch this host back to' in run['stdout']          # app1 had moved: switched back
    assert 'The deploy failed; the lock was released' in run['stdout']
    assert served(run, 'before', '1.0.0') and served(run, 'after', '1.0.0'), run['after']
    assert run['after']['app2']['containers'] == run['before']['app2']['containers']
    with open(os.path.join(RUNS, 'F4-lock.json'), encoding='utf-8') as handle:
        assert json.load(handle) == {'lock_present': False}


def test_restore_swap_stops_the_apps_containers_found_by_their_label_and_starts_them_again():
    run = step('restore-swap')
    assert run['rc'] == 0, run['stdout'][-3000:]
    assert 'is now the restored copy of backup' in run['stdout']
    for host in ('app1', 'app2'):
        names = sorted(run['before'][host]['containers'])
        assert names, run['before']
        for name in names:
            # Stopped before the swap and started again after it, on the host they run on.
            assert run['stdout'].count("'%s', '%s'" % (host, name)) >= 2, (host, name)
    # The same containers serve again: started, not replaced.
    assert untouched(run)
    assert all(run['after'][h]['web_version'] == run['before'][h]['web_version'] for h in ('app1', 'app2'))


def test_prune_removes_the_images_of_older_releases_and_keeps_the_rollback_target():
    run = step('prune')
    assert run['rc'] == 0, run['stdout'][-3000:]
    assert served(run, 'after', '2.0.0')
    # app2 ran v1, v2, then v1 again (the rollback) before v2b; with one release kept, v2's image goes and
    # v1's, the rollback target, stays. broken and bad-migration were pulled there but never rolled out:
    # not in its history, so not the prune's to remove.
    before, after = run['before']['app2']['images'], run['after']['app2']['images']
    assert {'v1', 'v2', 'broken', 'bad-migration'} <= set(before), before
    assert sorted(after) == ['bad-migration', 'broken', 'v1', 'v2b'], after
    assert after['v1'] == before['v1']
    # app1 built and published the images, so each is also tagged outside the app's repository
    # (shipyard-test/app): Docker will not remove such an image by id without force, and the prune leaves it.
    assert {'v1', 'v2', 'broken', 'v2b'} <= set(run['after']['app1']['images']), run['after']['app1']
    # ... and says so: v2 (older than the one kept) and broken (a failed release), by image id.
    kept = ' '.join(run['stdout'].split())
    assert 'app1 keeps 2 image(s) of older releases that Docker would not remove without force' in kept, run['stdout'][-3000:]
    for tag in ('v2', 'broken'):
        assert run['before']['app1']['images'][tag] in kept, tag

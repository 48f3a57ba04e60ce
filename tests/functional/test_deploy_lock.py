"""deploy_lock run for real (as AnsiballZ runs it): concurrency, waiting, stale locks, release rules, check mode."""

import json
import os
import re
import sys
import time

import pytest

from modrun import COLLECTIONS, finish_module, run_module, start_module

if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)

from ansible_collections.shipyard.webstack.plugins.module_utils import _lock as lk  # noqa: E402


@pytest.fixture
def lock_path(tmp_path):
    return str(tmp_path / 'var-lib-shipyard' / 'deploy.lock')


def acquire(path, run_id, check_mode=False, diff=False, **extra):
    args = dict(path=path, run_id=run_id, owner='%s@ctl' % run_id, label='deploy.yml app:%s' % run_id)
    args.update(extra)
    return run_module('deploy_lock', args, check_mode=check_mode, diff=diff)


def release(path, run_id, check_mode=False, **extra):
    return run_module('deploy_lock', dict(path=path, run_id=run_id, state='released', **extra), check_mode=check_mode)


def on_disk(path):
    with open(path) as handle:
        return json.load(handle)


def plant(path, run_id, started, ttl=60, owner='ghost@old-laptop'):
    """A lock record written as a crashed run would have left it."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    assert lk.create_lock(path, lk.make_record(owner, run_id, 'deploy.yml crashed', ttl, started, 'db1'))


def test_acquire_creates_dir_and_record(lock_path):
    result = acquire(lock_path, 'run-a')
    assert result['changed'] and result['acquired'] and result['status'] == 'free'
    rec = on_disk(lock_path)
    assert rec == result['lock']
    assert rec['owner'] == 'run-a@ctl' and rec['run_id'] == 'run-a' and rec['label'] == 'deploy.yml app:run-a'
    assert lk.parse_iso(rec['expires']) - lk.parse_iso(rec['started']) == 3600
    assert abs(lk.parse_iso(rec['started']) - time.time()) < 5
    assert oct(os.stat(os.path.dirname(lock_path)).st_mode & 0o777) == oct(0o755 & ~_umask())


def test_reacquire_same_run_is_idempotent_and_refresh_moves_expiry(lock_path):
    first = acquire(lock_path, 'run-a', ttl=600)
    again = acquire(lock_path, 'run-a', ttl=600)
    assert again['changed'] is False and again['acquired'] and again['status'] == 'ours'
    assert on_disk(lock_path) == first['lock']
    time.sleep(1.1)
    refreshed = acquire(lock_path, 'run-a', ttl=900, refresh=True)
    assert refreshed['changed'] and refreshed['lock']['started'] == first['lock']['started']
    assert lk.parse_iso(refreshed['lock']['expires']) > lk.parse_iso(first['lock']['expires'])
    assert on_disk(lock_path) == refreshed['lock']


def test_our_own_expired_lock_is_extended(lock_path):
    plant(lock_path, 'run-a', time.time() - 120, ttl=60, owner='run-a@ctl')
    result = acquire(lock_path, 'run-a')
    assert result['changed'] and result['acquired'] and result['status'] == 'ours_expired'
    assert lk.parse_iso(on_disk(lock_path)['expires']) > time.time() + 3000


def test_live_lock_of_another_run_fails_naming_owner_run_since_and_expiry(lock_path):
    held = acquire(lock_path, 'run-a')['lock']
    result = acquire(lock_path, 'run-b')
    assert result['failed'] and not result['acquired'] and result['status'] == 'held'
    for part in ('run-a@ctl', 'run run-a', 'since %s' % held['started'], 'expires %s' % held['expires'],
                 'not waiting (wait=0)'):
        assert part in result['msg']
    assert result['lock'] == held and on_disk(lock_path) == held


def test_two_acquisitions_at_the_same_moment_exactly_one_wins(lock_path):
    runs = ['run-%d' % i for i in range(10)]
    started = [start_module('deploy_lock', dict(path=lock_path, run_id=run, owner='%s@ctl' % run)) for run in runs]
    results = dict(zip(runs, (finish_module(*pair) for pair in started)))
    winners = [run for run, res in results.items() if res.get('acquired')]
    assert len(winners) == 1, results
    winner = winners[0]
    assert on_disk(lock_path)['run_id'] == winner
    for run, res in results.items():
        if run != winner:
            assert res['failed'] and '%s@ctl (run %s' % (winner, winner) in res['msg']


def test_waits_until_the_holder_releases(lock_path):
    acquire(lock_path, 'run-a')
    proc = start_module('deploy_lock', dict(path=lock_path, run_id='run-b', wait=30, poll_interval=0.2))
    time.sleep(1.5)
    assert on_disk(lock_path)['run_id'] == 'run-a'
    assert release(lock_path, 'run-a')['released']
    result = finish_module(*proc)
    assert result['acquired'] and result['changed'], result
    assert 1.0 <= result['waited'] < 60  # generous: a loaded machine starts modules slowly
    assert on_disk(lock_path)['run_id'] == 'run-b'


def test_wait_expires_and_fails_naming_the_holder(lock_path):
    acquire(lock_path, 'run-a')
    began = time.monotonic()
    result = acquire(lock_path, 'run-b', wait=1.5, poll_interval=0.3)
    assert result['failed'] and time.monotonic() - began >= 1.4
    assert result['waited'] >= 1.2 and 'waited' in result['msg'] and 'run run-a' in result['msg']


def test_f5_stale_lock_is_reported_not_removed_then_broken_only_on_request(lock_path):
    plant(lock_path, 'run-crashed', time.time() - 3 * 3600, ttl=3600)
    before = on_disk(lock_path)
    result = acquire(lock_path, 'run-b', wait=30)
    assert result['waited'] == 0  # a stale lock is not waited for
    assert result['failed'] and result['stale'] and result['status'] == 'stale'
    assert 'STALE' in result['msg'] and 'ghost@old-laptop' in result['msg'] and 'run run-crashed' in result['msg']
    assert re.search(r'\(3h(\d+m)?(\d+s)? ago\)', result['msg']) and 'break_stale=true' in result['msg']
    assert result['age'] >= 3 * 3600 - 5 and result['expires_in'] < -7000
    assert on_disk(lock_path) == before

    inspected = run_module('deploy_lock', dict(path=lock_path, state='inspect'))
    assert not inspected.get('failed') and inspected['stale'] and not inspected['changed']
    assert on_disk(lock_path) == before

    broke = acquire(lock_path, 'run-b', break_stale=True)
    assert broke['changed'] and broke['acquired'] and broke['stale']
    assert broke['broken'] == before and 'removing the stale lock of ghost@old-laptop' in broke['msg']
    assert on_disk(lock_path)['run_id'] == 'run-b'


def test_break_stale_never_breaks_a_live_lock(lock_path):
    acquire(lock_path, 'run-a')
    result = acquire(lock_path, 'run-b', break_stale=True)
    assert result['failed'] and on_disk(lock_path)['run_id'] == 'run-a'


def test_concurrent_breakers_of_a_stale_lock_one_wins(lock_path):
    plant(lock_path, 'run-crashed', time.time() - 7200)
    runs = ['run-%d' % i for i in range(8)]
    started = [start_module('deploy_lock', dict(path=lock_path, run_id=run, break_stale=True)) for run in runs]
    results = [finish_module(*pair) for pair in started]
    winners = [res for res in results if res.get('acquired')]
    assert len(winners) == 1
    assert on_disk(lock_path)['run_id'] == winners[0]['lock']['run_id']
    assert sum(1 for res in results if res.get('broken')) == 1


def test_unreadable_lock_file_counts_as_stale(lock_path):
    os.makedirs(os.path.dirname(lock_path))
    with open(lock_path, 'w') as handle:
        handle.write('garbage')
    result = acquire(lock_path, 'run-b')
    assert result['failed'] and result['stale'] and 'unreadable' in result['msg']
    assert acquire(lock_path, 'run-b', break_stale=True)['acquired']


def test_release_by_a_non_owner_is_refused_force_removes(lock_path):
    acquire(lock_path, 'run-a')
    refused = release(lock_path, 'run-b')
    assert refused['failed'] and not refused['released']
    assert 'run run-a' in refused['msg'] and 'not by this run (run run-b)' in refused['msg']
    assert on_disk(lock_path)['run_id'] == 'run-a'
    forced = run_module('deploy_lock', dict(path=lock_path, state='released', force=True))
    assert forced['released'] and forced['changed'] and not os.path.exists(lock_path)
    assert forced['released_lock']['run_id'] == 'run-a' and forced['lock'] is None


def test_release_own_and_absent(lock_path):
    assert release(lock_path, 'run-a')['changed'] is False  # no directory at all
    acquire(lock_path, 'run-a')
    result = release(lock_path, 'run-a')
    assert result['released'] and result['changed'] and not os.path.exists(lock_path)
    again = release(lock_path, 'run-a')
    assert again['changed'] is False and not again.get('failed') and again['status'] == 'free'


def test_release_needs_a_run_id_or_force(lock_path):
    result = run_module('deploy_lock', dict(path=lock_path, state='released'))
    assert result['failed'] and 'run_id' in result['msg']


def test_check_mode_touches_nothing(lock_path):
    preview = acquire(lock_path, 'run-a', check_mode=True, diff=True)
    assert preview['changed'] and preview['acquired'] and preview['lock']['run_id'] == 'run-a'
    assert preview['diff']['before'] == {} and preview['diff']['after']['run_id'] == 'run-a'
    assert not os.path.exists(os.path.dirname(lock_path))  # not even the directory

    acquire(lock_path, 'run-a')
    before = on_disk(lock_path)
    assert release(lock_path, 'run-a', check_mode=True)['released']
    assert on_disk(lock_path) == before
    held = acquire(lock_path, 'run-b', check_mode=True)
    assert held['failed'] and 'run run-a' in held['msg']
    waiting = acquire(lock_path, 'run-b', check_mode=True, wait=60)
    assert not waiting.get('failed') and not waiting['acquired'] and 'would wait up to 60' in waiting['msg']
    assert waiting['waited'] == 0

    os.unlink(lock_path)
    plant(lock_path, 'run-crashed', time.time() - 7200)
    stale = on_disk(lock_path)
    would_break = acquire(lock_path, 'run-b', check_mode=True, break_stale=True)
    assert would_break['changed'] and would_break['broken'] == stale
    assert on_disk(lock_path) == stale
    assert sorted(os.listdir(os.path.dirname(lock_path))) == ['deploy.lock', 'deploy.lock.guard']


def test_inspect_and_status(lock_path):
    free = run_module('deploy_lock', dict(path=lock_path, state='status'))
    assert free['status'] == 'free' and free['lock'] is None and not free['changed']
    acquire(lock_path, 'run-a')
    seen = run_module('deploy_lock', dict(path=lock_path, state='inspect', run_id='run-a'))
    assert seen['status'] == 'ours' and seen['acquired'] and seen['lock']['run_id'] == 'run-a'
    other = run_module('deploy_lock', dict(path=lock_path, state='inspect'))
    assert other['status'] == 'held' and 'run-a@ctl' in other['msg']


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask

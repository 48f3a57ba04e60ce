"""deploy_lock's pure parts: records, classification, decisions, messages, file operations."""

import json
import multiprocessing
import os
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS = os.path.join(ROOT, '.cache', 'collections')
if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)

from ansible_collections.shipyard.webstack.plugins.module_utils import _lock as lk  # noqa: E402

NOW = 1800000000  # 2027-01-15T08:00:00Z


def record(run_id='r1', started=NOW - 60, ttl=3600, owner='alice@ops1', label='deploy v1'):
    return lk.make_record(owner, run_id, label, ttl, started, 'db1')


def test_iso_round_trip_is_utc():
    assert lk.iso(NOW) == '2027-01-15T08:00:00Z'
    assert lk.parse_iso('2027-01-15T08:00:00Z') == NOW


@pytest.mark.parametrize('bad', ['', '2027-01-15 08:00:00', '2027-01-15T08:00:00+00:00', None, 5])
def test_parse_iso_rejects_other_formats(bad):
    with pytest.raises(ValueError):
        lk.parse_iso(bad)


def test_make_record_fields():
    rec = lk.make_record('alice@ops1', 'r1', None, 7200, NOW, 'db1')
    assert rec == {'owner': 'alice@ops1', 'run_id': 'r1', 'label': '', 'host': 'db1',
                   'started': '2027-01-15T08:00:00Z', 'expires': '2027-01-15T10:00:00Z', 'ttl': 7200}


def test_refreshed_keeps_start_and_moves_expiry():
    rec = record()
    new = lk.refreshed(rec, 600, NOW)
    assert new['started'] == rec['started'] and new['expires'] == lk.iso(NOW + 600)
    assert new['refreshed'] == lk.iso(NOW) and new['ttl'] == 600
    assert 'refreshed' not in rec  # the original is not modified


@pytest.mark.parametrize('text', ['', 'not json', '[]', '{}', '{"run_id": ""}', '"x"'])
def test_parse_record_unreadable_is_corrupt(text):
    assert lk.parse_record(text) == {'corrupt': True}


def test_parse_record_bad_timestamps_is_corrupt_but_keeps_owner():
    rec = lk.parse_record(json.dumps({'run_id': 'r9', 'owner': 'bob@x', 'started': 'yesterday', 'expires': 'soon'}))
    assert rec['corrupt'] is True and rec['owner'] == 'bob@x'


@pytest.mark.parametrize('rec, run_id, expected', [
    (None, 'r1', lk.FREE),
    (record('r1'), 'r1', lk.OURS),
    (record('r1', started=NOW - 7200), 'r1', lk.OURS_EXPIRED),
    (record('r2'), 'r1', lk.HELD),
    (record('r2', started=NOW - 7200), 'r1', lk.STALE),
    (record('r2', started=NOW - 3600), 'r1', lk.STALE),  # expiry is exclusive: at expires it is stale
    (record('r2'), None, lk.HELD),  # inspect without a run id
    ({'corrupt': True}, 'r1', lk.STALE),
    (dict(record('r1'), corrupt=True), 'r1', lk.STALE),  # a corrupt record is nobody's, even with our id
])
def test_classify(rec, run_id, expected):
    assert lk.classify(rec, run_id, NOW) == expected


@pytest.mark.parametrize('status, break_stale, refresh, time_left, expected', [
    (lk.FREE, False, False, 0, lk.CREATE),
    (lk.OURS, False, False, 0, lk.KEEP),
    (lk.OURS, False, True, 0, lk.REFRESH),
    (lk.OURS_EXPIRED, False, False, 0, lk.REFRESH),
    (lk.HELD, False, False, 0, lk.FAIL_HELD),
    (lk.HELD, True, False, 0, lk.FAIL_HELD),  # break_stale never breaks a live lock
    (lk.HELD, False, False, 5, lk.WAIT),
    (lk.HELD, False, False, -0.1, lk.FAIL_HELD),
    (lk.STALE, False, False, 600, lk.FAIL_STALE),  # a stale lock is not waited for
    (lk.STALE, True, False, 0, lk.BREAK),
])
def test_decide_acquire(status, break_stale, refresh, time_left, expected):
    assert lk.decide_acquire(status, break_stale, refresh, time_left) == expected


@pytest.mark.parametrize('status, force, expected', [
    (lk.FREE, False, lk.NOTHING),
    (lk.FREE, True, lk.NOTHING),
    (lk.OURS, False, lk.REMOVE),
    (lk.OURS_EXPIRED, False, lk.REMOVE),
    (lk.HELD, False, lk.REFUSE),
    (lk.STALE, False, lk.REFUSE),
    (lk.HELD, True, lk.REMOVE),
    (lk.STALE, True, lk.REMOVE),
])
def test_decide_release(status, force, expected):
    assert lk.decide_release(status, force) == expected


@pytest.mark.parametrize('seconds, text', [(0, '0s'), (42, '42s'), (60, '1m'), (3725, '1h2m5s'),
                                           (90061, '1d1h1m1s'), (-125, '2m5s')])
def test_human_duration(seconds, text):
    assert lk.human_duration(seconds) == text


def test_describe_holder_live_and_stale():
    assert lk.describe_holder(record(), NOW) == (
        'alice@ops1 (run r1, "deploy v1") since 2027-01-15T07:59:00Z (1m ago), expires 2027-01-15T08:59:00Z (in 59m)')
    stale = record('r7', started=NOW - 5400, label='')
    assert lk.describe_holder(stale, NOW) == (
        'alice@ops1 (run r7) since 2027-01-15T06:30:00Z (1h30m ago), expired 2027-01-15T07:30:00Z (30m ago)')
    assert 'unreadable' in lk.describe_holder({'corrupt': True}, NOW)


def test_age_and_expires_in():
    rec = record(started=NOW - 100, ttl=60)
    assert lk.age_of(rec, NOW) == 100 and lk.expires_in(rec, NOW) == -40
    assert lk.age_of({'corrupt': True}, NOW) is None and lk.expires_in({}, NOW) is None


def test_messages_name_owner_run_since_and_expiry():
    held = lk.held_message('/l', record('r2', owner='bob@ci'), NOW, 30, 60)
    for part in ('/l', 'bob@ci', 'run r2', 'since 2027-01-15T07:59:00Z', 'expires 2027-01-15T08:59:00Z',
                 'waited 30s of the allowed 1m'):
        assert part in held
    assert 'not waiting (wait=0)' in lk.held_message('/l', record(), NOW, 0, 0)
    stale = lk.stale_message('/l', record('r2', started=NOW - 4000), NOW)
    assert 'STALE' in stale and 'run r2' in stale and '1h6m40s ago' in stale and 'break_stale=true' in stale
    refuse = lk.refuse_message('/l', record('r2'), 'r3', NOW)
    assert 'run r2' in refuse and 'not by this run (run r3)' in refuse and 'force=true' in refuse


# ------------------------------------------------------------------ files

def test_create_lock_is_exclusive(tmp_path):
    path = str(tmp_path / 'deploy.lock')
    assert lk.read_lock(path) is None
    assert lk.create_lock(path, record('r1')) is True
    assert lk.create_lock(path, record('r2')) is False
    assert lk.read_lock(path)['run_id'] == 'r1'
    assert os.stat(path).st_mode & 0o777 == 0o644 & ~_umask()


def test_replace_and_remove(tmp_path):
    path = str(tmp_path / 'deploy.lock')
    lk.create_lock(path, record('r1'))
    lk.replace_lock(path, lk.refreshed(record('r1'), 60, NOW))
    assert lk.read_lock(path)['refreshed'] == lk.iso(NOW)
    assert os.listdir(str(tmp_path)) == ['deploy.lock']  # no temporary file left
    assert lk.remove_lock(path) is True
    assert lk.remove_lock(path) is False


def test_guarded_without_create_does_not_create_the_guard(tmp_path):
    path = str(tmp_path / 'deploy.lock')
    with lk.guarded(path, shared=True, create=False):
        pass
    assert not os.path.exists(lk.guard_path(path))
    with lk.guarded(path):
        pass
    assert os.path.exists(lk.guard_path(path))


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _guarded_acquire(path, run_id, barrier, results):
    barrier.wait()
    with lk.guarded(path):
        rec = lk.read_lock(path)
        status = lk.classify(rec, run_id, time.time())
        if lk.decide_acquire(status) == lk.CREATE:
            results.put((run_id, lk.create_lock(path, lk.make_record('x', run_id, '', 60, time.time(), 'h'))))
        else:
            results.put((run_id, False))


def test_guarded_read_decide_create_has_one_winner(tmp_path):
    path = str(tmp_path / 'deploy.lock')
    ctx = multiprocessing.get_context('fork')
    barrier, results = ctx.Barrier(12), ctx.Queue()
    procs = [ctx.Process(target=_guarded_acquire, args=(path, 'r%d' % i, barrier, results)) for i in range(12)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(30)
    outcomes = dict(results.get(timeout=5) for _proc in procs)
    winners = [run for run, won in outcomes.items() if won]
    assert len(winners) == 1
    assert lk.read_lock(path)['run_id'] == winners[0]

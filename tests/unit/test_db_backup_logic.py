"""Pure logic of the db_backup program: retention selection, naming, manifest, sums, metrics."""

import datetime
import importlib.machinery
import importlib.util
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROGRAM = os.path.join(ROOT, 'roles', 'db_backup', 'files', 'shipyard_db_backup.py')


def _load():
    loader = importlib.machinery.SourceFileLoader('shipyard_db_backup', PROGRAM)
    spec = importlib.util.spec_from_loader('shipyard_db_backup', loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


dbb = _load()
DAY = 86400
NOW = datetime.datetime(2026, 11, 23, 12, 0, tzinfo=datetime.timezone.utc).timestamp()


def b(bid, days_ago, label=None):
    return {'id': bid, 'time': NOW - days_ago * DAY, 'label': label}


# ------------------------------------------------------------- retention

def test_age_rule_keeps_younger_than_days():
    backups = [b('a', 1), b('b', 29.9), b('c', 30.1), b('d', 45)]
    keep, delete, reasons = dbb.select_retention(backups, NOW, days=30)
    assert keep == ['a', 'b'] and delete == ['c', 'd']
    assert 'newest' in reasons['a']


def test_newest_successful_backup_is_never_deleted():
    backups = [b('old', 100), b('older', 200)]
    keep, delete, reasons = dbb.select_retention(backups, NOW, days=30)
    assert keep == ['old'] and delete == ['older']
    assert reasons['old'] == ['newest', 'newest scheduled']


def test_no_rule_keeps_everything():
    backups = [b('a', 1), b('b', 400)]
    keep, delete, _reasons = dbb.select_retention(backups, NOW, days=0)
    assert keep == ['a', 'b'] and delete == []


def test_daily_weekly_monthly_keep_newest_of_each_bucket():
    # two backups a day for 100 days
    backups = [b('d%03d-%d' % (n, h), n + h / 24.0) for n in range(100) for h in (0, 6)]
    keep, delete, reasons = dbb.select_retention(backups, NOW, days=0, daily=7, weekly=4, monthly=3)
    daily = [k for k in keep if 'daily' in reasons[k]]
    assert daily == ['d%03d-0' % n for n in range(7)]
    weekly = [k for k in keep if 'weekly' in reasons[k]]
    assert len(weekly) == 4
    monthly = [k for k in keep if 'monthly' in reasons[k]]
    assert len(monthly) == 3
    # the newest of each month: Nov 23 (today), the last of October (23 days ago), of September (54)
    assert monthly[0] == 'd000-0'
    assert monthly[1] == 'd023-0'
    assert monthly[2] == 'd054-0'
    assert len(keep) < 14 and len(keep) + len(delete) == 200
    assert all(x.endswith('-0') for x in keep)


def test_counts_combine_with_days():
    backups = [b('n%02d' % n, n) for n in range(60)]
    keep, _delete, reasons = dbb.select_retention(backups, NOW, days=10, monthly=2)
    assert set('n%02d' % n for n in range(10)) <= set(keep)
    assert 'n23' in keep and 'monthly' in reasons['n23']
    assert 'n30' not in keep


def test_labelled_backups_have_their_own_count():
    backups = [b('s1', 1), b('s2', 50), b('l1', 2, 'rel-3'), b('l2', 3, 'rel-2'), b('l3', 400, 'rel-1')]
    keep, delete, reasons = dbb.select_retention(backups, NOW, days=30, labelled_keep=2)
    assert sorted(keep) == ['l1', 'l2', 's1']
    assert sorted(delete) == ['l3', 's2']
    assert 'newest labelled' in reasons['l1']


def test_labelled_never_push_out_the_newest_scheduled_one():
    backups = [b('l%d' % n, n * 0.1, 'r%d' % n) for n in range(5)] + [b('s', 90)]
    keep, _delete, reasons = dbb.select_retention(backups, NOW, days=30, labelled_keep=1)
    assert 's' in keep and 'newest scheduled' in reasons['s']
    assert [k for k in keep if k.startswith('l')] == ['l0']


def test_labelled_keep_zero_still_keeps_one():
    backups = [b('l1', 1, 'x'), b('l2', 2, 'y')]
    keep, delete, _reasons = dbb.select_retention(backups, NOW, labelled_keep=0)
    assert keep == ['l1'] and delete == ['l2']


def test_empty_input():
    assert dbb.select_retention([], NOW) == ([], [], {})


# ------------------------------------------------------------- naming

def test_backup_id_and_label():
    when = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    assert dbb.backup_id(when) == '20260102T030405Z'
    assert dbb.backup_id(when, 'release 42/rc1') == '20260102T030405Z-release-42-rc1'
    assert dbb.is_backup_id('20260102T030405Z-release-42-rc1')
    assert dbb.is_backup_id('20260102T030405Z.2')
    assert not dbb.is_backup_id('.tmp-20260102T030405Z')
    assert not dbb.is_backup_id('README')


@pytest.mark.parametrize('label', ['', '   ', '///', '..'])
def test_unusable_labels_are_refused(label):
    with pytest.raises(ValueError):
        dbb.sanitize_label(label)


def test_labels_are_shortened():
    assert len(dbb.sanitize_label('x' * 200)) == 63


def test_unique_id():
    assert dbb.unique_id('a', set()) == 'a'
    assert dbb.unique_id('a', {'a'}) == 'a.2'
    assert dbb.unique_id('a', {'a', 'a.2'}) == 'a.3'


def test_dump_filenames_are_safe_and_distinct():
    assert dbb.dump_filename('appdb') == 'db-appdb.dump'
    odd = dbb.dump_filename('odd name-ü/..')
    assert '/' not in odd and ' ' not in odd and odd.endswith('.dump')
    assert dbb.dump_filename('a b') != dbb.dump_filename('a_b') != dbb.dump_filename('a%20b')


def test_scratch_names_fit_postgres_limit():
    assert dbb.scratch_name('shipyard_restore_test', 'appdb') == 'shipyard_restore_test_appdb'
    long_a = dbb.scratch_name('shipyard_restore_test', 'x' * 80 + 'a')
    long_b = dbb.scratch_name('shipyard_restore_test', 'x' * 80 + 'b')
    assert len(long_a) <= 63 and long_a != long_b


def test_quoting():
    assert dbb.quote_ident('we"ird') == '"we""ird"'
    assert dbb.quote_literal("it's") == "'it''s'"
    assert dbb._shquote('simple/path') == 'simple/path'
    assert dbb._shquote("it's here") == "'it'\"'\"'s here'"


# ------------------------------------------------------------- manifest and sums

def _files():
    return [{'name': 'db-appdb.dump', 'kind': 'database', 'database': 'appdb', 'size': 10, 'sha256': 'a' * 64},
            {'name': 'globals.sql', 'kind': 'globals', 'size': 5, 'sha256': 'b' * 64}]


def test_manifest_fields():
    start = datetime.datetime(2026, 1, 2, 2, 0, 0, tzinfo=datetime.timezone.utc)
    end = start + datetime.timedelta(seconds=90)
    manifest = dbb.build_manifest('20260102T020000Z-r1', 'r1', start, end, '15.8', 'pg_dump 15.8', _files(), host='db1')
    assert manifest['kind'] == 'labelled' and manifest['label'] == 'r1'
    assert manifest['start'] == '2026-01-02T02:00:00Z' and manifest['end'] == '2026-01-02T02:01:30Z'
    assert manifest['duration_seconds'] == 90 and manifest['total_size'] == 15
    assert manifest['server_version'] == '15.8'
    dbb.check_manifest(manifest)


@pytest.mark.parametrize('breakage', ['no_files', 'no_sha', 'slash', 'dup', 'no_db'])
def test_bad_manifests_are_refused(breakage):
    start = datetime.datetime(2026, 1, 2, tzinfo=datetime.timezone.utc)
    manifest = dbb.build_manifest('x', None, start, start, '15', 'pg_dump', _files(), host='h')
    if breakage == 'no_files':
        del manifest['files']
    elif breakage == 'no_sha':
        del manifest['files'][0]['sha256']
    elif breakage == 'slash':
        manifest['files'][0]['name'] = '../etc/passwd'
    elif breakage == 'dup':
        manifest['files'][1]['name'] = manifest['files'][0]['name']
    else:
        del manifest['files'][0]['database']
    with pytest.raises(ValueError):
        dbb.check_manifest(manifest)


def test_sums_round_trip():
    text = dbb.format_sums(_files())
    assert text == '%s  db-appdb.dump\n%s  globals.sql\n' % ('a' * 64, 'b' * 64)
    assert dbb.parse_sums(text) == {'db-appdb.dump': 'a' * 64, 'globals.sql': 'b' * 64}
    # sha256sum run in another directory prints paths; binary-mode marker too
    assert dbb.parse_sums('%s *dir/x.dump\n' % ('c' * 64)) == {'x.dump': 'c' * 64}
    with pytest.raises(ValueError):
        dbb.parse_sums('garbage\n')


def test_merge_config():
    merged = dbb.merge_config(dbb.DEFAULTS, {'retention': {'days': 7}, 'databases': ['a']})
    assert merged['retention']['days'] == 7 and merged['retention']['labelled_keep'] == 10
    assert merged['databases'] == ['a'] and dbb.DEFAULTS['databases'] == []


# ------------------------------------------------------------- metrics

def test_metrics_text():
    status = {'last_run': {'status': 'failed', 'duration_seconds': 12.5, 'end_timestamp': 1700000100},
              'last_success': {'end_timestamp': 1700000000, 'size_bytes': 12345},
              'restore_test': {'status': 'success', 'end_timestamp': 1700000200}}
    text = dbb.metrics_text(status)
    assert 'shipyard_db_backup_last_status 0\n' in text
    assert 'shipyard_db_backup_last_success_timestamp 1700000000\n' in text
    assert 'shipyard_db_backup_last_duration_seconds 12.5\n' in text
    assert 'shipyard_db_backup_last_size_bytes 12345\n' in text
    assert 'shipyard_db_backup_restore_test_last_status 1\n' in text
    assert '# TYPE shipyard_db_backup_last_status gauge' in text


def test_metrics_text_before_any_run():
    assert dbb.metrics_text({}) == '\n'

"""issue 7 on real hosts: what the backup scenario's side effect left behind on db1 and store1."""

import json
import os

import testinfra.utils.ansible_runner

RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(os.environ['MOLECULE_INVENTORY_FILE'])
testinfra_hosts = RUNNER.get_hosts('db_backup')
BACKUP_DIR = '/var/backups/shipyard-db'
STATE = '/var/lib/shipyard-db-backup/status.json'
OFFSITE = '/srv/shipyard-backups'


def show(host):
    return json.loads(host.file('/var/tmp/shipyard-backup-show.json').content_string)


def manifest(host, backup):
    return json.loads(host.file('%s/%s/manifest.json' % (BACKUP_DIR, backup)).content_string)


def test_units_and_schedule(host):
    timer = host.file('/etc/systemd/system/shipyard-db-backup.timer').content_string
    assert 'OnCalendar=*-*-* 02:00:00 UTC' in timer
    assert 'Persistent=true' in timer
    assert 'RandomizedDelaySec=600' in timer
    for unit in ('shipyard-db-backup.timer', 'shipyard-db-backup-restore-test.timer'):
        assert host.service(unit).is_enabled
        assert host.service(unit).is_running
    service = host.file('/etc/systemd/system/shipyard-db-backup.service').content_string
    assert 'User=postgres' in service and 'OnFailure=shipyard-db-backup-notify@%n.service' in service
    assert 'ProtectSystem=strict' in service
    config = host.file('/etc/shipyard-db-backup/config.json')
    assert config.mode == 0o640 and config.user == 'root' and config.group == 'postgres'
    assert host.file(BACKUP_DIR).mode == 0o700 and host.file(BACKUP_DIR).user == 'postgres'


def test_every_line_of_the_services_settings_reaches_systemd(host):
    # The units include their background and hardening settings: each included line must stay a line of
    # its own (an include that ate the line break merged two settings, and systemd ignored both).
    for unit in ('shipyard-db-backup.service', 'shipyard-db-backup-restore-test.service',
                 'shipyard-db-backup-labelled@rollout.service'):
        shown = host.check_output('systemctl show %s -p IOSchedulingPriority -p NoNewPrivileges -p Nice -p ProtectSystem'
                                  % unit).split()
        assert sorted(shown) == ['IOSchedulingPriority=7', 'Nice=10', 'NoNewPrivileges=yes', 'ProtectSystem=strict'], \
            (unit, shown)
    for name in ('shipyard-db-backup.service', 'shipyard-db-backup-restore-test.service',
                 'shipyard-db-backup-labelled@.service'):
        text = host.file('/etc/systemd/system/' + name).content_string
        assert 'IOSchedulingPriority=7\n' in text and '\nNoNewPrivileges=yes\n' in text, name


def test_f8_restore_gave_back_identical_tables(host):
    facts = show(host)
    assert facts['after'] == facts['before']
    assert 'orders=' in facts['after'] and ':30000' in facts['after']
    # the app's stand-in was stopped around the swap and started again
    log = host.file('/var/tmp/fake-app.log').content_string.split()
    assert log[-3:] == ['started', 'stopped', 'started']
    assert host.service('fake-app.service').is_running
    dbs = host.check_output("runuser -u postgres -- psql -XAtc 'SELECT datname FROM pg_database'").split()
    assert 'appdb' in dbs and [d for d in dbs if d.startswith('appdb_replaced_')]


def test_restore_swap_ran_under_the_deploy_lock_and_was_audited(host):
    # The swap took the deploy lock (on db1, the first postgres host) and released it, and wrote an audit line.
    assert not host.file('/var/lib/shipyard/deploy.lock').exists
    lines = [json.loads(line) for line in host.file('/var/log/shipyard/audit.jsonl').content_string.splitlines()]
    restores = [r for r in lines if r['event'] == 'restore']
    assert len(restores) == 1, lines
    assert restores[0]['result'] == 'success' and restores[0]['release'].startswith('appdb from backup '), restores[0]
    assert restores[0]['extra']['previous'].startswith('appdb_replaced_'), restores[0]


def test_retention_removed_only_the_old_backup(host):
    facts = show(host)
    names = host.file(BACKUP_DIR).listdir()
    assert facts['first_backup'] not in names
    for backup in facts['listed_after_prune']:
        assert backup in names
    assert facts['listed_before_prune'][0] in names


def test_f7_full_disk_failed_loudly_and_kept_the_older_backups(host):
    facts = show(host)
    assert facts['full_disk_rc'] != '0'
    status = facts['status']
    assert status['last_run']['status'] == 'failed'
    assert 'No space left on device' in status['last_run']['error'] or 'could not write' in status['last_run']['error']
    assert status['last_success']['backup_id'] in facts['listed_after_prune']
    assert facts['verify_after_full_disk'] == ['%s OK' % b for b in facts['listed_after_prune']]
    notified = host.file('/var/tmp/shipyard-db-backup-notified').content_string
    assert 'shipyard-db-backup.service failed on' in notified
    assert not [n for n in host.file(BACKUP_DIR).listdir() if n.startswith('.tmp-')]
    metrics = host.file('/var/lib/prometheus/node-exporter/shipyard_db_backup.prom').content_string
    assert 'shipyard_db_backup_last_status 0' in metrics
    assert 'shipyard_db_backup_last_success_timestamp ' in metrics
    assert 'shipyard_db_backup_last_size_bytes ' in metrics


def test_restore_test_result_in_status_file(host):
    status = json.loads(host.file(STATE).content_string)
    result = status['restore_test']
    assert result['status'] == 'success'
    counts = {t['table']: t['rows'] for t in result['databases']['appdb']['largest_tables']}
    assert counts == {'public.orders': 30000, 'public.customers': 5000}
    dbs = host.check_output("runuser -u postgres -- psql -XAtc 'SELECT datname FROM pg_database'").split()
    assert not [d for d in dbs if d.startswith('shipyard_restore_test')]


def test_offsite_copy_matches_sha256(host):
    store = testinfra.get_host('ansible://store1?ansible_inventory=%s' % os.environ['MOLECULE_INVENTORY_FILE'])
    facts = show(host)
    latest = facts['status']['last_success']['backup_id']
    copied = store.file(OFFSITE).listdir()
    assert latest in copied
    assert not [n for n in copied if n.startswith('.tmp-')]
    # off-site retention follows the local one
    assert facts['first_backup'] not in copied
    for entry in manifest(host, latest)['files']:
        far = store.check_output('sha256sum %s/%s/%s' % (OFFSITE, latest, entry['name'])).split()[0]
        assert far == entry['sha256']
    assert store.file('%s/%s' % (OFFSITE, latest)).user == 'shipyard-backup'

"""The db_backup role's program (roles/db_backup/files/shipyard-db-backup) against a real PostgreSQL.

The program runs as the role runs it: a separate process with a JSON config,
pg_dump/pg_restore/psql of this machine, talking to a throw-away cluster on
loopback (scram, password from a passfile). Nothing is mocked: dumps are
corrupted on disk, mtimes set back, the backup directory is a tiny tmpfs that
fills up, and restores are compared table by table with md5 checksums.
"""

import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

from pgservers import pg_bindir

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROGRAM = os.path.join(ROOT, 'roles', 'db_backup', 'files', 'shipyard_db_backup.py')
ODD_DB = 'odd name-ü'


@pytest.fixture(scope='module')
def pg(pg_module_factory):
    server = pg_module_factory.postgres(name='pg-backup')
    server.sql('CREATE DATABASE %s' % '"%s"' % ODD_DB, database='postgres')
    server.sql('CREATE TABLE t (id int primary key, v text)', database=ODD_DB)
    server.sql("INSERT INTO t SELECT g, 'odd ' || g FROM generate_series(1, 50) g", database=ODD_DB)
    app = server.connect(user='app', database=server.database)
    with app:
        app.execute('CREATE TABLE customers (id int primary key, name text, created timestamptz default now())')
        app.execute("INSERT INTO customers (id, name) SELECT g, 'customer ' || g FROM generate_series(1, 5000) g")
        app.execute('CREATE TABLE orders (id bigserial primary key, customer int references customers, '
                    'amount numeric(10,2), note text)')
        app.execute("INSERT INTO orders (customer, amount, note) SELECT 1 + g % 5000, g * 1.5, md5(g::text) "
                    "FROM generate_series(1, 20000) g")
        app.execute('CREATE INDEX ON orders (customer)')
        app.execute("CREATE VIEW big_orders AS SELECT * FROM orders WHERE amount > 100")
    return server


class Env:
    """A backup dir + state dir + config file for one test."""

    def __init__(self, pg, backup_dir=None, **overrides):
        self.base = tempfile.mkdtemp(prefix='shipyard-dbb-')
        self.backup_dir = backup_dir or os.path.join(self.base, 'backups')
        self.state_dir = os.path.join(self.base, 'state')
        self.metrics_dir = os.path.join(self.base, 'textfile')
        os.makedirs(self.metrics_dir)
        passfile = os.path.join(self.base, 'pgpass')
        with open(passfile, 'w') as handle:
            handle.write('%s:%s:*:%s:%s\n' % (pg.host, pg.port, pg.superuser, pg.superuser_password))
        os.chmod(passfile, 0o600)
        self.config = {
            'backup_dir': self.backup_dir,
            'state_dir': self.state_dir,
            'metrics_dir': self.metrics_dir,
            'pg_bindir': pg_bindir(),
            'connection': {'host': pg.host, 'port': pg.port, 'user': pg.superuser, 'passfile': passfile},
            'retention': {'days': 30, 'labelled_keep': 2},
        }
        for key, value in overrides.items():
            self.config[key] = value
        self.config_path = os.path.join(self.base, 'config.json')
        self.write()

    def write(self):
        with open(self.config_path, 'w') as handle:
            json.dump(self.config, handle)

    def run(self, *args, timeout=300):
        proc = subprocess.run([sys.executable, PROGRAM, '--config', self.config_path] + list(args),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout, check=False)
        proc.out = proc.stdout.decode()
        proc.err = proc.stderr.decode()
        return proc

    def ok(self, *args):
        proc = self.run(*args)
        assert proc.returncode == 0, 'rc=%s\nstdout: %s\nstderr: %s' % (proc.returncode, proc.out, proc.err)
        return proc

    def status(self):
        with open(os.path.join(self.state_dir, 'status.json')) as handle:
            return json.load(handle)

    def backups(self):
        return sorted(n for n in os.listdir(self.backup_dir) if not n.startswith('.'))

    def manifest(self, bid):
        with open(os.path.join(self.backup_dir, bid, 'manifest.json')) as handle:
            return json.load(handle)

    def age(self, bid, days):
        """Set every mtime in a backup back by `days`."""
        when = time.time() - days * 86400
        path = os.path.join(self.backup_dir, bid)
        for name in os.listdir(path):
            os.utime(os.path.join(path, name), (when, when))
        os.utime(path, (when, when))

    def cleanup(self):
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture
def env(pg):
    environment = Env(pg)
    yield environment
    environment.cleanup()


def table_checksums(pg, database):
    """{table: md5 of its rows in primary-key order} for the app's tables."""
    out = {}
    for table in ('customers', 'orders'):
        rows = pg.sql('SELECT md5(string_agg(t::text, \'|\' ORDER BY id)), count(*) FROM %s t' % table,
                      database=database)
        out[table] = rows[0]
    return out


def test_run_writes_a_verified_backup_with_manifest_status_and_metrics(env, pg):
    proc = env.ok('run')
    bid = proc.out.strip()
    assert env.backups() == [bid]
    path = os.path.join(env.backup_dir, bid)
    names = sorted(os.listdir(path))
    manifest = env.manifest(bid)
    dbs = sorted(f['database'] for f in manifest['files'] if f['kind'] == 'database')
    # every non-template database, the odd name included, plus the globals
    assert dbs == sorted(['postgres', pg.database, ODD_DB])
    assert 'globals.sql' in names and 'manifest.json' in names and 'SHA256SUMS' in names
    assert not [n for n in names if n.endswith('.part')]
    assert manifest['label'] is None and manifest['kind'] == 'scheduled'
    assert manifest['server_version'].split('.')[0] == pg.sql('SHOW server_version')[0][0].split('.')[0]
    for key in ('start', 'end', 'duration_seconds', 'total_size', 'pg_dump_version'):
        assert key in manifest
    sums = open(os.path.join(path, 'SHA256SUMS')).read()
    for entry in manifest['files']:
        digest = subprocess.run(['sha256sum', os.path.join(path, entry['name'])], stdout=subprocess.PIPE,
                                check=True).stdout.decode().split()[0]
        assert digest == entry['sha256']
        assert '%s  %s' % (digest, entry['name']) in sums
        assert entry['size'] == os.path.getsize(os.path.join(path, entry['name']))
        assert entry['verified'] is True
    assert os.stat(path).st_mode & 0o077 == 0
    globals_sql = open(os.path.join(path, 'globals.sql')).read()
    assert 'CREATE ROLE %s' % pg.app_user in globals_sql
    status = env.status()
    assert status['last_run']['status'] == 'success'
    assert status['last_success']['backup_id'] == bid
    assert status['last_success']['size_bytes'] == manifest['total_size']
    env.ok('publish-metrics')
    metrics = open(os.path.join(env.metrics_dir, 'shipyard_db_backup.prom')).read()
    assert 'shipyard_db_backup_last_status 1' in metrics
    assert 'shipyard_db_backup_last_size_bytes %d' % manifest['total_size'] in metrics
    assert 'shipyard_db_backup_last_success_timestamp ' in metrics
    assert 'shipyard_db_backup_last_duration_seconds ' in metrics
    listing = json.loads(env.ok('list', '--json').out)
    assert listing[0]['id'] == bid
    assert env.ok('verify', '--backup', 'all').out.strip() == '%s OK' % bid


def test_verify_detects_a_corrupted_dump(env, pg):
    bid = env.ok('run').out.strip()
    manifest = env.manifest(bid)
    entry = [f for f in manifest['files'] if f.get('database') == pg.database][0]
    path = os.path.join(env.backup_dir, bid, entry['name'])
    with open(path, 'r+b') as handle:
        handle.seek(entry['size'] // 2)
        byte = handle.read(1)
        handle.seek(entry['size'] // 2)
        handle.write(bytes([byte[0] ^ 0xFF]))
    proc = env.run('verify', '--backup', bid)
    assert proc.returncode == 1
    assert 'FAILED' in proc.out and entry['name'] in proc.out and 'sha256' in proc.out
    # a truncated file is caught too
    with open(path, 'r+b') as handle:
        handle.truncate(entry['size'] // 3)
    proc = env.run('verify', '--backup', bid, '--quick')
    assert proc.returncode == 1 and 'size' in proc.out


def test_f8_restore_round_trip_has_identical_table_checksums(env, pg):
    before = table_checksums(pg, pg.database)
    bid = env.ok('run', '--label', 'release 42/rc1').out.strip()
    assert bid.endswith('-release-42-rc1')
    assert env.manifest(bid)['label'] == 'release-42-rc1'
    pg.sql('DROP TABLE orders CASCADE', database=pg.database)
    try:
        out = json.loads(env.ok('restore', '--backup', bid, '--database', pg.database, '--into', 'appdb_restored').out)
        assert out['backup_id'] == bid
        assert table_checksums(pg, 'appdb_restored') == before
        owner = pg.sql("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'appdb_restored'")[0][0]
        assert owner == pg.app_user
        # never over an existing database
        proc = env.run('restore', '--backup', 'latest', '--database', pg.database, '--into', 'appdb_restored')
        assert proc.returncode == 1 and 'already exists' in proc.err
        # swapping needs --confirm, then the restored copy becomes the live one
        proc = env.run('swap', '--live', pg.database, '--with', 'appdb_restored')
        assert proc.returncode == 1 and '--confirm' in proc.err
        idle = pg.connect(user='app', database=pg.database)  # a leftover session is terminated by swap
        swapped = json.loads(env.ok('swap', '--live', pg.database, '--with', 'appdb_restored', '--confirm').out)
        idle.close()
        assert table_checksums(pg, pg.database) == before
        names = {r[0] for r in pg.sql('SELECT datname FROM pg_database')}
        assert swapped['previous'] in names and 'appdb_restored' not in names
        assert pg.sql("SELECT count(*) FROM information_schema.tables WHERE table_name = 'orders'",
                      database=swapped['previous'])[0][0] == 0
        with pg.connect(user='app', database=pg.database) as conn:
            assert conn.execute('SELECT count(*) FROM orders').fetchone()[0] == before['orders'][1]
        pg.sql('DROP DATABASE %s' % swapped['previous'])
    finally:
        pg.sql('DROP DATABASE IF EXISTS appdb_restored')


def test_restore_test_restores_counts_and_drops_the_scratch_db(env, pg):
    env.ok('run')
    proc = env.ok('restore-test')
    result = json.loads(proc.out)
    assert result['status'] == 'success'
    app = result['databases'][pg.database]
    counts = {t['table']: t['rows'] for t in app['largest_tables']}
    assert counts['public.orders'] == 20000 and counts['public.customers'] == 5000
    assert app['tables'] >= app['table_data_entries'] == 2
    names = [r[0] for r in pg.sql('SELECT datname FROM pg_database')]
    assert not [n for n in names if n.startswith('shipyard_restore_test')]
    assert env.status()['restore_test']['status'] == 'success'
    env.ok('publish-metrics')
    assert 'shipyard_db_backup_restore_test_last_status 1' in open(
        os.path.join(env.metrics_dir, 'shipyard_db_backup.prom')).read()


def test_retention_removes_only_old_backups_and_keeps_the_newest(env, pg):
    env.config['databases'] = [pg.database]
    env.config['retention'] = {'days': 30, 'labelled_keep': 2}
    env.write()
    ids = []
    for _n in range(3):
        ids.append(env.ok('run', '--no-prune').out.strip())
    labelled = [env.ok('run', '--no-prune', '--label', 'rel-%d' % n).out.strip() for n in range(3)]
    env.age(ids[0], 40)
    env.age(ids[1], 31)
    env.age(labelled[0], 400)
    env.ok('prune')
    assert env.backups() == sorted([ids[2]] + labelled[1:])
    # every scheduled backup old: the newest one is still kept
    env.age(ids[2], 90)
    for bid in labelled[1:]:
        env.age(bid, 90)
    env.ok('prune')
    assert env.backups() == sorted([ids[2]] + labelled[1:])
    # a stale temp dir of a crashed run goes; an unrelated file stays
    os.mkdir(os.path.join(env.backup_dir, '.tmp-20200101T000000Z'))
    open(os.path.join(env.backup_dir, 'README'), 'w').close()
    env.ok('prune')
    assert sorted(os.listdir(env.backup_dir)) == sorted(['.lock', 'README', ids[2]] + labelled[1:])


def test_nothing_runs_or_prunes_while_a_run_holds_the_lock(env, pg):
    env.config['databases'] = [pg.database]
    env.write()
    first = env.ok('run').out.strip()
    env.age(first, 100)
    second = env.ok('run', '--no-prune').out.strip()
    lock_fd = os.open(os.path.join(env.backup_dir, '.lock'), os.O_RDWR)
    fcntl.flock(lock_fd, fcntl.LOCK_EX)
    try:
        proc = env.run('prune')
        assert proc.returncode == 75 and 'in progress' in proc.err
        assert env.backups() == sorted([first, second])
        proc = env.run('run', '--wait', '1')
        assert proc.returncode == 75 and 'holds' in proc.err
    finally:
        fcntl.flock(lock_fd, fcntl.LOCK_UN)
        os.close(lock_fd)
    env.ok('prune')
    assert env.backups() == [second]


def test_f7_a_full_backup_disk_fails_loudly_and_keeps_older_backups(pg):
    mount_point = tempfile.mkdtemp(prefix='shipyard-dbb-full-')
    subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=6m,mode=0700', 'tmpfs', mount_point], check=True)
    environment = Env(pg, backup_dir=os.path.join(mount_point, 'backups'), databases=[pg.database, 'bulk'])
    try:
        pg.sql('CREATE DATABASE bulk')
        pg.sql("CREATE TABLE noise AS SELECT g, md5(random()::text) || md5(random()::text) AS x "
               "FROM generate_series(1, 1000) g", database='bulk')
        good = environment.ok('run').out.strip()
        # now the bulk database needs far more room than is left
        pg.sql("INSERT INTO noise SELECT g, md5(random()::text) || md5(random()::text) FROM generate_series(1, 200000) g",
               database='bulk')
        proc = environment.run('run')
        assert proc.returncode == 1
        assert 'No space left on device' in proc.err or 'could not write' in proc.err, proc.err
        status = environment.status()
        assert status['last_run']['status'] == 'failed'
        assert 'pg_dump of bulk' in status['last_run']['error']
        assert status['last_success']['backup_id'] == good
        # the older backup is intact and no partial backup is left behind
        assert environment.backups() == [good]
        assert not [n for n in os.listdir(environment.backup_dir) if n.startswith('.tmp-')]
        assert environment.ok('verify', '--backup', good).out.strip() == '%s OK' % good
        environment.ok('publish-metrics')
        assert 'shipyard_db_backup_last_status 0' in open(
            os.path.join(environment.metrics_dir, 'shipyard_db_backup.prom')).read()
    finally:
        pg.sql('DROP DATABASE IF EXISTS bulk')
        environment.cleanup()
        subprocess.run(['umount', mount_point], check=False)
        os.rmdir(mount_point)


def test_a_database_that_cannot_be_dumped_fails_the_run(env, pg):
    env.config['databases'] = ['does_not_exist']
    env.write()
    proc = env.run('run')
    assert proc.returncode == 1 and 'does_not_exist' in proc.err
    assert env.status()['last_run']['status'] == 'failed'
    assert env.backups() == []

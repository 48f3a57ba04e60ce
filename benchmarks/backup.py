"""Benchmark (issue 7): the backup job's time over bare `pg_dump -Fc`, in one run.

Starts a throw-away PostgreSQL on loopback (tests/functional/pgservers.py), fills a
database of at least --min-gb GB with `pgbench -i` at a large scale, then times, on
the same server, one after the other:

  1. bare `pg_dump -Fc -f FILE appdb`
  2. `shipyard-db-backup run` (the role's program) restricted to appdb: pg_dump -Fc to a
     temp name, fsync + rename, sha256, pg_restore --list, a full read of the dump
     (pg_restore -f /dev/null), manifest, SHA256SUMS, plus pg_dumpall --globals-only
  3. `shipyard-db-backup restore` of that backup into a new database (pg_restore -j 2)

and prints both times, the ratio (goal <= 1.6x) and the restore time. Not part of
`make test`: it takes minutes and a few GB of disk.

    .venv/bin/python benchmarks/backup.py [--scale 80] [--min-gb 1.0] [--keep]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 'tests', 'functional'))

from pgservers import PostgresServer, pg_bindir  # noqa: E402  pylint: disable=wrong-import-position

PROGRAM = os.path.join(ROOT, 'roles', 'db_backup', 'files', 'shipyard_db_backup.py')
GOAL = 1.6


def timed(argv, env):
    start = time.monotonic()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.PIPE)
    return time.monotonic() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n', maxsplit=1)[0])
    parser.add_argument('--scale', type=int, default=80, help='pgbench scale (80 is about 1.2 GB)')
    parser.add_argument('--min-gb', type=float, default=1.0, help='refuse to measure a smaller database')
    parser.add_argument('--keep', action='store_true', help='keep the work directory')
    args = parser.parse_args()

    bindir = pg_bindir()
    work = tempfile.mkdtemp(prefix='shipyard-bench-backup-')
    os.chmod(work, 0o755)
    server = PostgresServer(name='bench-backup', settings={'shared_buffers': '256MB', 'max_wal_size': '4GB',
                                                           'checkpoint_timeout': '30min'})
    with server:
        env = dict(os.environ, PGHOST=server.host, PGPORT=str(server.port), PGUSER=server.superuser,
                   PGPASSWORD=server.superuser_password, PGDATABASE=server.database)
        print('filling %s with pgbench -i -s %d ...' % (server.database, args.scale), flush=True)
        t_fill = timed([os.path.join(bindir, 'pgbench'), '-i', '-q', '-s', str(args.scale), server.database], env)
        size = int(server.sql('SELECT pg_database_size(%s)', (server.database,))[0][0])
        print('database size: %.2f GB (filled in %.0fs)' % (size / 1e9, t_fill))
        if size < args.min_gb * 1e9:
            print('ERROR: database is smaller than %.1f GB: raise --scale' % args.min_gb)
            return 2
        server.sql('CHECKPOINT')

        bare = os.path.join(work, 'bare.dump')
        t_bare = timed([os.path.join(bindir, 'pg_dump'), '-Fc', '-f', bare, server.database], env)
        bare_size = os.path.getsize(bare)
        os.unlink(bare)

        passfile = os.path.join(work, 'pgpass')
        with open(passfile, 'w') as handle:
            handle.write('%s:%s:*:%s:%s\n' % (server.host, server.port, server.superuser, server.superuser_password))
        os.chmod(passfile, 0o600)
        config = os.path.join(work, 'config.json')
        with open(config, 'w') as handle:
            json.dump({'backup_dir': os.path.join(work, 'backups'), 'state_dir': os.path.join(work, 'state'),
                       'pg_bindir': bindir, 'databases': [server.database],
                       'connection': {'host': server.host, 'port': server.port, 'user': server.superuser,
                                      'passfile': passfile}}, handle)
        job_env = {k: v for k, v in os.environ.items() if not k.startswith('PG')}
        t_job = timed([sys.executable, PROGRAM, '--config', config, 'run'], job_env)
        t_restore = timed([sys.executable, PROGRAM, '--config', config, 'restore', '--database', server.database,
                           '--into', 'bench_restored'], job_env)
        restored = int(server.sql("SELECT count(*) FROM pgbench_accounts", database='bench_restored')[0][0])

    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    ratio = t_job / t_bare
    print('pgbench scale %d: %.2f GB database, dump %.0f MB' % (args.scale, size / 1e9, bare_size / 1e6))
    print('bare pg_dump -Fc:            %7.1f s' % t_bare)
    print('shipyard-db-backup run:      %7.1f s  (dump + sha256 + pg_restore --list + full read + globals + manifest)'
          % t_job)
    print('ratio:                       %7.2f x  (goal <= %.1f x: %s)' % (ratio, GOAL, 'met' if ratio <= GOAL else 'NOT met'))
    print('restore (pg_restore -j 2):   %7.1f s  (%d rows in pgbench_accounts)' % (t_restore, restored))
    return 0 if ratio <= GOAL else 1


if __name__ == '__main__':
    sys.exit(main())

# -*- coding: utf-8 -*-
# Copyright (c) 2026, shipyard.webstack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""shipyard-db-backup: scheduled, verified, restorable PostgreSQL backups.

Installed by the shipyard.webstack.db_backup role as
/usr/local/lib/shipyard-db-backup/shipyard_db_backup.py, run through the wrapper
/usr/local/sbin/shipyard-db-backup (python3 -I); standard library only.

  shipyard-db-backup run [--label L] [--wait SECONDS]   dump every database + globals, verify, prune
  shipyard-db-backup prune                              apply retention (refuses while a run holds the lock)
  shipyard-db-backup verify [--backup ID|latest|all]    re-check sha256 and readability of backups
  shipyard-db-backup restore-test                       restore the newest backup into scratch dbs, count rows
  shipyard-db-backup list [--json]                      the backups, newest first
  shipyard-db-backup restore --backup ID|latest --database SRC --into NEWDB
  shipyard-db-backup swap --live DB --with NEWDB --confirm   put a restored db in place of the live one
  shipyard-db-backup publish-metrics                    copy the metrics textfile to the node-exporter dir

A backup is a directory <backup_dir>/<ID> holding one pg_dump -Fc file per
database, globals.sql (pg_dumpall --globals-only), manifest.json and SHA256SUMS.
It is built under .tmp-<ID> and renamed into place only once every file has
been written, checksummed and verified: a directory named like a backup is a
complete backup. Exit status: 0 success, 1 failure, 2 usage error,
75 another run holds the lock.
"""

import argparse
import datetime
import errno
import fcntl
import glob
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

VERSION = '1.0.0'
MANIFEST = 'manifest.json'
SUMS = 'SHA256SUMS'
GLOBALS = 'globals.sql'
LOCK = '.lock'
TMP_PREFIX = '.tmp-'
ID_RE = re.compile(r'^(\d{8}T\d{6}Z)(-[A-Za-z0-9._-]+)?$')
LABEL_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$')
DBNAME_RE = re.compile(r'^[A-Za-z_][A-Za-z0-9_]{0,62}$')
EX_OK, EX_FAIL, EX_USAGE, EX_BUSY = 0, 1, 2, 75
CHUNK = 1024 * 1024

DEFAULTS = {
    'backup_dir': '/var/backups/shipyard-db',
    'state_dir': '/var/lib/shipyard-db-backup',
    'metrics_dir': '',
    'pg_bindir': '',
    'connection': {'host': '', 'port': 0, 'user': '', 'passfile': ''},
    'databases': [],
    'exclude_databases': [],
    'compress_level': -1,
    'verify_full_read': True,
    'retention': {'days': 30, 'daily': 0, 'weekly': 0, 'monthly': 0, 'labelled_keep': 10},
    'restore_test': {'prefix': 'shipyard_restore_test', 'databases': [], 'top_tables': 5},
    'offsite': {'enabled': False, 'host': '', 'user': '', 'port': 22, 'path': '', 'ssh_key': '',
                'known_hosts': '', 'prune': True, 'bwlimit_kbps': 0},
}


class BackupError(Exception):
    """A failure the operator must see: the message says what and where."""


class LockBusy(BackupError):
    """Another run holds the lock."""


# ------------------------------------------------------------------ pure helpers

def utcnow():
    return datetime.datetime.now(datetime.timezone.utc)


def iso(ts):
    """ISO 8601 UTC string of a datetime or epoch seconds."""
    if isinstance(ts, (int, float)):
        ts = datetime.datetime.fromtimestamp(ts, datetime.timezone.utc)
    return ts.astimezone(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')


def merge_config(base, override):
    """Deep-merge two dicts (override wins); unknown keys are kept."""
    out = dict(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_config(out[key], value)
        else:
            out[key] = value
    return out


def sanitize_label(label):
    """A label usable in a directory name; raises ValueError when nothing usable is left."""
    cleaned = re.sub(r'[^A-Za-z0-9._-]+', '-', str(label or '').strip()).strip('-.')
    cleaned = cleaned[:63]
    if not cleaned or not LABEL_RE.match(cleaned):
        raise ValueError('label %r has no usable characters (allowed: letters, digits, . _ -)' % (label,))
    return cleaned


def backup_id(when, label=None):
    """Directory name of a backup taken at `when` (UTC), e.g. 20261123T020000Z or 20261123T020000Z-release-42."""
    stamp = when.astimezone(datetime.timezone.utc).strftime('%Y%m%dT%H%M%SZ')
    return stamp + ('-' + sanitize_label(label) if label else '')


def unique_id(base, existing):
    """base, or base.N (N = 2, 3, ...) when base is taken."""
    if base not in existing:
        return base
    for n in range(2, 1000):
        cand = '%s.%d' % (base, n)
        if cand not in existing:
            return cand
    raise BackupError('could not find a free backup id next to %s' % base)


def is_backup_id(name):
    return bool(re.match(r'^\d{8}T\d{6}Z[A-Za-z0-9._-]*$', name)) and not name.startswith(TMP_PREFIX)


def dump_filename(database):
    """File name for a database's dump: safe characters kept, anything else %-encoded (never collides)."""
    out = []
    for ch in database:
        if re.match(r'[A-Za-z0-9_-]', ch):
            out.append(ch)
        else:
            out.extend('%%%02X' % b for b in ch.encode('utf-8'))
    return 'db-' + ''.join(out) + '.dump'


def quote_ident(name):
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value):
    return "'" + value.replace("'", "''") + "'"


def scratch_name(prefix, database):
    """Name of the scratch database a restore test of `database` uses (<= 63 bytes)."""
    safe = re.sub(r'[^a-z0-9_]', '_', database.lower())
    name = '%s_%s' % (prefix, safe)
    if len(name) > 63:
        name = name[:54] + '_' + hashlib.sha256(database.encode()).hexdigest()[:8]
    return name


def parse_sums(text):
    """Parse `sha256sum` output into {filename: digest}."""
    sums = {}
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        match = re.match(r'^([0-9a-f]{64}) [ *](.+)$', line)
        if not match:
            raise ValueError('not a sha256sum line: %r' % line)
        sums[os.path.basename(match.group(2))] = match.group(1)
    return sums


def format_sums(files):
    """SHA256SUMS content for manifest file entries."""
    return ''.join('%s  %s\n' % (f['sha256'], f['name']) for f in sorted(files, key=lambda f: f['name']))


def build_manifest(backup, label, start, end, server_version, tool_version, files, host=None):
    """The manifest of a complete backup (dict; written as JSON)."""
    return {
        'format': 1,
        'id': backup,
        'label': label,
        'kind': 'labelled' if label else 'scheduled',
        'host': host or socket.gethostname(),
        'start': iso(start),
        'end': iso(end),
        'duration_seconds': round(max(0.0, end.timestamp() - start.timestamp()), 3),
        'server_version': server_version,
        'pg_dump_version': tool_version,
        'program_version': VERSION,
        'total_size': sum(f['size'] for f in files),
        'files': files,
    }


def check_manifest(manifest):
    """Raise ValueError if a manifest lacks what restore and verify rely on."""
    for key in ('id', 'start', 'end', 'server_version', 'files'):
        if key not in manifest:
            raise ValueError('manifest has no %r' % key)
    names = set()
    for entry in manifest['files']:
        for key in ('name', 'kind', 'size', 'sha256'):
            if key not in entry:
                raise ValueError('manifest file entry has no %r: %r' % (key, entry))
        if entry['kind'] == 'database' and 'database' not in entry:
            raise ValueError('database entry without a database name: %r' % entry)
        if '/' in entry['name'] or entry['name'] in ('.', '..'):
            raise ValueError('bad file name in manifest: %r' % entry['name'])
        names.add(entry['name'])
    if len(names) != len(manifest['files']):
        raise ValueError('duplicate file names in manifest')


def select_retention(backups, now, days=30, daily=0, weekly=0, monthly=0, labelled_keep=10):
    """Decide which backups to keep.

    backups: iterable of dicts with 'id', 'time' (epoch seconds; the manifest's mtime),
    'label' (None for scheduled runs). Only complete backups are passed in.
    Scheduled backups are kept when younger than `days` (0 = no age rule), or when
    they are the newest of one of the `daily` most recent days, `weekly` ISO weeks or
    `monthly` months that have a backup. With no rule at all (days=0 and no counts),
    every scheduled backup is kept. Labelled backups are kept by their own count
    (`labelled_keep` newest). The newest backup of each kind and the newest overall
    are never removed.

    Returns (keep_ids, delete_ids, reasons) where reasons maps id -> list of why kept.
    """
    items = sorted(backups, key=lambda b: (b['time'], b['id']), reverse=True)
    reasons = {b['id']: [] for b in items}
    scheduled = [b for b in items if not b.get('label')]
    labelled = [b for b in items if b.get('label')]
    if items:
        reasons[items[0]['id']].append('newest')
    if scheduled:
        reasons[scheduled[0]['id']].append('newest scheduled')
    if labelled:
        reasons[labelled[0]['id']].append('newest labelled')
    no_rule = not days and not daily and not weekly and not monthly
    for b in scheduled:
        age = now - b['time']
        if no_rule:
            reasons[b['id']].append('no retention rule')
        elif days and age < days * 86400:
            reasons[b['id']].append('younger than %d days' % days)

    def bucket_keep(count, key_fn, why):
        if not count:
            return
        seen = []
        for b in scheduled:  # newest first: the first of each bucket is its newest
            key = key_fn(datetime.datetime.fromtimestamp(b['time'], datetime.timezone.utc))
            if key in seen:
                continue
            seen.append(key)
            if len(seen) > count:
                break
            reasons[b['id']].append(why)

    bucket_keep(daily, lambda d: d.strftime('%Y-%m-%d'), 'daily')
    bucket_keep(weekly, lambda d: '%d-W%02d' % d.isocalendar()[:2], 'weekly')
    bucket_keep(monthly, lambda d: d.strftime('%Y-%m'), 'monthly')
    for b in labelled[:max(labelled_keep, 1)]:
        reasons[b['id']].append('labelled (newest %d)' % max(labelled_keep, 1))
    keep = [b['id'] for b in items if reasons[b['id']]]
    delete = [b['id'] for b in items if not reasons[b['id']]]
    return keep, delete, {k: v for k, v in reasons.items() if v}


def metrics_text(status):
    """node-exporter textfile content for a status dict."""
    run = status.get('last_run') or {}
    success = status.get('last_success') or {}
    rtest = status.get('restore_test') or {}
    lines = []

    def gauge(name, help_text, value):
        if value is None:
            return
        lines.append('# HELP shipyard_db_backup_%s %s' % (name, help_text))
        lines.append('# TYPE shipyard_db_backup_%s gauge' % name)
        lines.append('shipyard_db_backup_%s %s' % (name, repr(float(value)) if isinstance(value, float) else value))

    gauge('last_success_timestamp', 'Unix time the last successful backup ended.', success.get('end_timestamp'))
    gauge('last_duration_seconds', 'Duration of the last backup run.', run.get('duration_seconds'))
    gauge('last_size_bytes', 'Total size of the last successful backup.', success.get('size_bytes'))
    if run:
        gauge('last_status', 'Outcome of the last backup run: 1 success, 0 failure.',
              1 if run.get('status') == 'success' else 0)
        gauge('last_run_timestamp', 'Unix time the last backup run ended.', run.get('end_timestamp'))
    if rtest:
        gauge('restore_test_last_status', 'Outcome of the last restore test: 1 success, 0 failure.',
              1 if rtest.get('status') == 'success' else 0)
        gauge('restore_test_last_timestamp', 'Unix time the last restore test ended.', rtest.get('end_timestamp'))
    return '\n'.join(lines) + '\n'


# ------------------------------------------------------------------ file helpers

def atomic_write(path, data, mode=0o640):
    directory = os.path.dirname(path) or '.'
    fd, tmp = tempfile.mkstemp(prefix='.' + os.path.basename(path) + '.', dir=directory)
    try:
        with os.fdopen(fd, 'w') as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def fsync_dir(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, 'rb') as handle:
        while True:
            chunk = handle.read(CHUNK)
            if not chunk:
                break
            digest.update(chunk)
    return digest.hexdigest()


def read_json(path, default=None):
    try:
        with open(path) as handle:
            return json.load(handle)
    except FileNotFoundError:
        return default


class Lock:
    """An flock on <backup_dir>/.lock; holder info written into the file for messages."""

    def __init__(self, backup_dir):
        self.path = os.path.join(backup_dir, LOCK)
        self.fd = None

    def acquire(self, wait=0.0, purpose='run'):
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o640)
        deadline = time.monotonic() + max(0.0, wait)
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() >= deadline:
                    holder = self.holder()
                    os.close(self.fd)
                    self.fd = None
                    raise LockBusy('another shipyard-db-backup run holds %s (%s); not starting %s'
                                   % (self.path, holder or 'holder unknown', purpose))
                time.sleep(min(1.0, max(0.05, deadline - time.monotonic())))
        os.ftruncate(self.fd, 0)
        os.write(self.fd, ('pid %d, %s since %s\n' % (os.getpid(), purpose, iso(utcnow()))).encode())
        return self

    def holder(self):
        try:
            with open(self.path) as handle:
                return handle.read().strip()
        except OSError:
            return ''

    def release(self):
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


# ------------------------------------------------------------------ the program

class Program:
    def __init__(self, config, log=None):
        self.cfg = merge_config(DEFAULTS, config)
        self.backup_dir = self.cfg['backup_dir']
        self.state_dir = self.cfg['state_dir']
        self.status_path = os.path.join(self.state_dir, 'status.json')
        self.metrics_path = os.path.join(self.state_dir, 'shipyard_db_backup.prom')
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.env = dict(os.environ)
        conn = self.cfg['connection']
        for key, var in (('host', 'PGHOST'), ('port', 'PGPORT'), ('user', 'PGUSER'), ('passfile', 'PGPASSFILE')):
            if conn.get(key):
                self.env[var] = str(conn[key])
        self.env.setdefault('PGAPPNAME', 'shipyard-db-backup')
        self.env['PGCONNECT_TIMEOUT'] = self.env.get('PGCONNECT_TIMEOUT', '10')
        self._bindir = None

    # -- binaries and queries
    @property
    def bindir(self):
        if self._bindir is None:
            wanted = self.cfg.get('pg_bindir')
            if wanted:
                self._bindir = wanted
            else:
                found = sorted(glob.glob('/usr/lib/postgresql/*/bin/pg_dump'),
                               key=lambda p: int(re.sub(r'\D', '', p.split('/')[-3]) or 0))
                self._bindir = os.path.dirname(found[-1]) if found else ''
        return self._bindir

    def tool(self, name):
        path = os.path.join(self.bindir, name) if self.bindir else shutil.which(name)
        if not path or not os.access(path, os.X_OK):
            raise BackupError('%s not found (pg_bindir=%r); install the PostgreSQL client programs'
                              % (name, self.bindir))
        return path

    def run_tool(self, argv, what, timeout=None, stdout=subprocess.PIPE):
        proc = subprocess.run(argv, env=self.env, stdout=stdout, stderr=subprocess.PIPE,
                              stdin=subprocess.DEVNULL, timeout=timeout, check=False)
        if proc.returncode != 0:
            err = proc.stderr.decode('utf-8', 'replace').strip()[-2000:]
            raise BackupError('%s failed (exit %s): %s' % (what, proc.returncode, err or '(no output)'))
        return proc.stdout.decode('utf-8', 'replace') if stdout == subprocess.PIPE else ''

    def psql(self, sql, database='postgres'):
        """Rows of a query, as lists of strings (unit-separator delimited)."""
        out = self.run_tool([self.tool('psql'), '-X', '-q', '-A', '-t', '-F', '\x1f', '-v', 'ON_ERROR_STOP=1',
                             '-d', database, '-c', sql], 'psql on %s' % database, timeout=3600)
        return [line.split('\x1f') for line in out.splitlines() if line != '']

    def server_version(self):
        return self.psql('SHOW server_version')[0][0]

    def databases(self):
        rows = self.psql("SELECT datname FROM pg_database WHERE NOT datistemplate AND datallowconn ORDER BY datname")
        present = [r[0] for r in rows]
        wanted = self.cfg.get('databases') or present
        missing = [d for d in wanted if d not in present]
        if missing:
            raise BackupError('configured database(s) not found on the server: %s (databases: %s)'
                              % (', '.join(missing), ', '.join(present)))
        prefix = self.cfg['restore_test']['prefix']
        excluded = set(self.cfg.get('exclude_databases') or [])
        return [d for d in wanted if d not in excluded and not d.startswith(prefix + '_')]

    # -- state
    def status(self):
        return read_json(self.status_path, {}) or {}

    def write_status(self, **updates):
        status = self.status()
        status.update(updates)
        status['updated'] = iso(utcnow())
        os.makedirs(self.state_dir, exist_ok=True)
        atomic_write(self.status_path, json.dumps(status, indent=2, sort_keys=True) + '\n', 0o644)
        atomic_write(self.metrics_path, metrics_text(status), 0o644)
        return status

    # -- listing
    def backups(self, with_tmp=False):
        """Complete backups (dicts with id, path, time, label, manifest), newest first."""
        out = []
        try:
            names = os.listdir(self.backup_dir)
        except FileNotFoundError:
            return out
        for name in names:
            path = os.path.join(self.backup_dir, name)
            if not os.path.isdir(path):
                continue
            if name.startswith(TMP_PREFIX):
                if with_tmp:
                    out.append({'id': name, 'path': path, 'tmp': True, 'time': os.stat(path).st_mtime})
                continue
            if not is_backup_id(name):
                continue
            mpath = os.path.join(path, MANIFEST)
            try:
                manifest = read_json(mpath)
                mtime = os.stat(mpath).st_mtime
            except (OSError, ValueError):
                manifest = None
            if not manifest:
                continue
            out.append({'id': name, 'path': path, 'time': mtime, 'label': manifest.get('label'),
                        'manifest': manifest, 'tmp': False})
        return sorted(out, key=lambda b: (b['time'], b['id']), reverse=True)

    def find(self, which):
        backups = self.backups()
        if not backups:
            raise BackupError('no complete backup in %s' % self.backup_dir)
        if which in (None, '', 'latest', 'newest'):
            return backups[0]
        for b in backups:
            if b['id'] == which:
                return b
        have = ', '.join(b['id'] for b in backups[:10])
        raise BackupError('no backup %r in %s (have: %s)' % (which, self.backup_dir, have))

    # -- verification
    def verify_file(self, path, expected_sha=None, full_read=True):
        """sha256 + pg_restore --list + (full read) of one file, concurrently; returns (sha256, toc_entries)."""
        result = {}

        def digest():
            result['sha256'] = sha256_file(path)

        thread = threading.Thread(target=digest)
        thread.start()
        toc, read_error = None, None
        try:
            if path.endswith('.dump'):
                listing = self.run_tool([self.tool('pg_restore'), '--list', path], 'pg_restore --list %s' % path)
                toc = len([line for line in listing.splitlines() if line and not line.startswith(';')])
                if full_read:
                    self.run_tool([self.tool('pg_restore'), '-f', os.devnull, path],
                                  'full read of %s (pg_restore -f /dev/null)' % path, stdout=subprocess.DEVNULL)
        except BackupError as exc:
            read_error = exc
        finally:
            thread.join()
        problems = []
        if expected_sha and result.get('sha256') != expected_sha:
            problems.append('%s: sha256 %s does not match the manifest (%s): the file is damaged'
                            % (path, result.get('sha256'), expected_sha))
        if read_error is not None:
            problems.append(str(read_error))
        if problems:
            raise BackupError('; '.join(problems))
        return result['sha256'], toc

    def verify_backup(self, backup, full_read=True):
        manifest = backup['manifest']
        check_manifest(manifest)
        sums_path = os.path.join(backup['path'], SUMS)
        with open(sums_path) as handle:
            sums = parse_sums(handle.read())
        problems = []
        for entry in manifest['files']:
            path = os.path.join(backup['path'], entry['name'])
            if sums.get(entry['name']) != entry['sha256']:
                problems.append('%s: SHA256SUMS and manifest disagree' % entry['name'])
                continue
            try:
                size = os.path.getsize(path)
                if size != entry['size']:
                    raise BackupError('%s: size %d, manifest says %d' % (path, size, entry['size']))
                self.verify_file(path, entry['sha256'], full_read=full_read)
            except (OSError, BackupError) as exc:
                problems.append(str(exc))
        if problems:
            raise BackupError('backup %s failed verification: %s' % (backup['id'], '; '.join(problems)))

    # -- run
    def run(self, label=None, wait=0.0, prune=True):
        start = utcnow()
        status_run = {'status': 'running', 'start': iso(start), 'label': label, 'pid': os.getpid()}
        backup = None
        try:
            os.makedirs(self.backup_dir, mode=0o700, exist_ok=True)
            with Lock(self.backup_dir).acquire(wait=wait, purpose='backup'):
                self.write_status(last_run=status_run)
                backup = self._run_locked(label, start)
                if prune:
                    self._prune_locked(offsite=False)
                if self.cfg['offsite'].get('enabled'):
                    self.offsite_copy(backup)
        except LockBusy as exc:
            self.log('ERROR: %s' % exc)
            return EX_BUSY
        except Exception as exc:  # pylint: disable=broad-except  # every failure is recorded, then exit 1
            end = utcnow()
            msg = str(exc) if isinstance(exc, BackupError) else '%s: %s' % (type(exc).__name__, exc)
            self.log('ERROR: backup failed: %s' % msg)
            status_run.update(status='failed', error=msg, end=iso(end), end_timestamp=int(end.timestamp()),
                              duration_seconds=round(end.timestamp() - start.timestamp(), 3),
                              backup_id=backup['id'] if backup else None)
            self.write_status(last_run=status_run)
            return EX_FAIL
        end = utcnow()
        status_run.update(status='success', end=iso(end), end_timestamp=int(end.timestamp()),
                          duration_seconds=round(end.timestamp() - start.timestamp(), 3), backup_id=backup['id'],
                          size_bytes=backup['manifest']['total_size'])
        self.write_status(last_run=status_run, last_success=dict(status_run))
        self.log('backup %s complete: %d files, %d bytes in %.1fs' % (
            backup['id'], len(backup['manifest']['files']), backup['manifest']['total_size'],
            status_run['duration_seconds']))
        print(backup['id'])
        return EX_OK

    def _run_locked(self, label, start):
        existing = set(os.listdir(self.backup_dir))
        bid = unique_id(backup_id(start, label), existing)
        tmp = os.path.join(self.backup_dir, TMP_PREFIX + bid)
        os.mkdir(tmp, 0o700)
        try:
            server_version = self.server_version()
            tool_version = self.run_tool([self.tool('pg_dump'), '--version'], 'pg_dump --version').strip()
            files = []
            for database in self.databases():
                files.append(self._dump_one(tmp, database))
            files.append(self._dump_globals(tmp))
            end = utcnow()
            manifest = build_manifest(bid, label, start, end, server_version, tool_version, files)
            atomic_write(os.path.join(tmp, SUMS), format_sums(files), 0o600)
            atomic_write(os.path.join(tmp, MANIFEST), json.dumps(manifest, indent=2) + '\n', 0o600)
            fsync_dir(tmp)
            final = os.path.join(self.backup_dir, bid)
            os.rename(tmp, final)
            fsync_dir(self.backup_dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return {'id': bid, 'path': final, 'manifest': manifest, 'label': label}

    def _finish_file(self, tmpdir, name, kind, database, t0, full_read):
        part = os.path.join(tmpdir, name + '.part')
        with open(part, 'rb') as handle:
            os.fsync(handle.fileno())
        path = os.path.join(tmpdir, name)
        os.rename(part, path)
        # verify the file under its final name (pg_restore only reads .dump files)
        digest, toc = self.verify_file(path, full_read=full_read)
        entry = {'name': name, 'kind': kind, 'size': os.path.getsize(path), 'sha256': digest,
                 'start': iso(t0), 'end': iso(utcnow()), 'verified': True}
        if database is not None:
            entry['database'] = database
        if toc is not None:
            entry['toc_entries'] = toc
        return entry

    def _dump_one(self, tmpdir, database):
        name = dump_filename(database)
        t0 = utcnow()
        self.log('dumping %s' % database)
        argv = [self.tool('pg_dump'), '-Fc', '-f', os.path.join(tmpdir, name + '.part'), '-d', database]
        if int(self.cfg.get('compress_level', -1)) >= 0:
            argv[2:2] = ['-Z', str(int(self.cfg['compress_level']))]
        self.run_tool(argv, 'pg_dump of %s' % database)
        return self._finish_file(tmpdir, name, 'database', database, t0, self.cfg.get('verify_full_read', True))

    def _dump_globals(self, tmpdir):
        t0 = utcnow()
        self.run_tool([self.tool('pg_dumpall'), '--globals-only', '-f', os.path.join(tmpdir, GLOBALS + '.part')],
                      'pg_dumpall --globals-only')
        return self._finish_file(tmpdir, GLOBALS, 'globals', None, t0, False)

    # -- retention
    def prune(self):
        try:
            with Lock(self.backup_dir).acquire(wait=0, purpose='prune'):
                self._prune_locked()
        except LockBusy as exc:
            self.log('ERROR: %s: a backup is in progress, nothing pruned' % exc)
            return EX_BUSY
        except BackupError as exc:
            self.log('ERROR: %s' % exc)
            return EX_FAIL
        return EX_OK

    def _prune_locked(self, offsite=True):
        ret = self.cfg['retention']
        everything = self.backups(with_tmp=True)
        for stale in [b for b in everything if b['tmp']]:
            # we hold the lock: no run is writing it; a crashed run left it behind
            self.log('removing incomplete backup %s left by an interrupted run' % stale['id'])
            shutil.rmtree(stale['path'])
        backups = [b for b in everything if not b['tmp']]
        keep, delete, reasons = select_retention(
            backups, time.time(), days=int(ret.get('days') or 0), daily=int(ret.get('daily') or 0),
            weekly=int(ret.get('weekly') or 0), monthly=int(ret.get('monthly') or 0),
            labelled_keep=int(ret.get('labelled_keep') or 1))
        for bid in delete:
            path = os.path.join(self.backup_dir, bid)
            # rename first so a half-deleted directory never looks like a backup
            doomed = os.path.join(self.backup_dir, TMP_PREFIX + 'deleting-' + bid)
            os.rename(path, doomed)
            shutil.rmtree(doomed)
            self.log('pruned %s' % bid)
        for bid in keep:
            self.log('kept %s (%s)' % (bid, ', '.join(reasons[bid])))
        off = self.cfg['offsite']
        if offsite and off.get('enabled') and off.get('prune', True):
            self.offsite_prune(set(keep))
        return keep, delete

    # -- off-site copy
    def _ssh_base(self):
        off = self.cfg['offsite']
        argv = ['ssh', '-o', 'BatchMode=yes', '-p', str(off.get('port') or 22)]
        if off.get('ssh_key'):
            argv += ['-i', off['ssh_key'], '-o', 'IdentitiesOnly=yes']
        if off.get('known_hosts'):
            argv += ['-o', 'UserKnownHostsFile=%s' % off['known_hosts'], '-o', 'StrictHostKeyChecking=yes']
        return argv

    def _remote(self):
        off = self.cfg['offsite']
        if not off.get('host') or not off.get('path'):
            raise BackupError('offsite copy enabled but offsite.host/offsite.path not set')
        return ('%s@%s' % (off['user'], off['host'])) if off.get('user') else off['host']

    def _ssh(self, command, what):
        return self.run_tool(self._ssh_base() + [self._remote(), command], what, timeout=3600)

    def offsite_copy(self, backup):
        """rsync the backup to <path>/.tmp-<ID> on the far side, sha256 it there, rename it to <path>/<ID>."""
        off = self.cfg['offsite']
        remote, rpath = self._remote(), off['path'].rstrip('/')
        bid = backup['id']
        partial = '%s/%s%s' % (rpath, TMP_PREFIX, bid)
        final = '%s/%s' % (rpath, bid)
        self.log('copying %s to %s:%s' % (bid, remote, rpath))
        ssh_cmd = ' '.join(_shquote(a) for a in self._ssh_base())
        argv = ['rsync', '-a', '--partial', '-e', ssh_cmd,
                '--rsync-path', 'mkdir -p -- %s && rsync' % _shquote(rpath)]
        if off.get('bwlimit_kbps'):
            argv.append('--bwlimit=%d' % int(off['bwlimit_kbps']))
        self.run_tool(argv + [backup['path'] + '/', '%s:%s/' % (remote, partial)], 'rsync to %s' % remote,
                      timeout=24 * 3600)
        names = [f['name'] for f in backup['manifest']['files']]
        out = self._ssh('cd -- %s && sha256sum -- %s' % (_shquote(partial), ' '.join(_shquote(n) for n in names)),
                        'sha256sum on %s' % remote)
        far = parse_sums(out)
        bad = [f['name'] for f in backup['manifest']['files'] if far.get(f['name']) != f['sha256']]
        if bad:
            raise BackupError('off-site copy on %s: sha256 differs for %s' % (remote, ', '.join(bad)))
        self._ssh('rm -rf -- %s && mv -- %s %s' % (_shquote(final), _shquote(partial), _shquote(final)),
                  'rename on %s' % remote)
        self.log('off-site copy %s:%s verified (sha256 of %d files on the far side)' % (remote, final, len(names)))
        if off.get('prune', True):
            self.offsite_prune({b['id'] for b in self.backups()} | {bid})

    def offsite_prune(self, keep):
        """Remove backups (and leftover temp dirs) on the far side that are not in `keep`."""
        off = self.cfg['offsite']
        remote, rpath = self._remote(), off['path'].rstrip('/')
        listing = self._ssh('mkdir -p -- %s && ls -1a -- %s' % (_shquote(rpath), _shquote(rpath)),
                            'ls on %s' % remote)
        doomed = [n for n in listing.split()
                  if (is_backup_id(n) or n.startswith(TMP_PREFIX)) and n not in keep]
        if doomed:
            self._ssh('cd -- %s && rm -rf -- %s' % (_shquote(rpath), ' '.join(_shquote(n) for n in doomed)),
                      'prune on %s' % remote)
            for name in doomed:
                self.log('pruned off-site %s' % name)
        return doomed

    # -- restore
    def restore(self, which, database, into, jobs=2, check_only=False):
        if not DBNAME_RE.match(into):
            raise BackupError('target database name %r: use letters, digits and _ only' % into)
        backup = self.find(which)
        entries = [f for f in backup['manifest']['files'] if f.get('database') == database]
        if not entries:
            raise BackupError('backup %s has no dump of database %r (it has: %s)' % (
                backup['id'], database,
                ', '.join(f['database'] for f in backup['manifest']['files'] if f.get('database'))))
        entry = entries[0]
        path = os.path.join(backup['path'], entry['name'])
        if self.psql('SELECT 1 FROM pg_database WHERE datname = %s' % quote_literal(into)):
            raise BackupError('database %s already exists: restore only ever creates a new database' % into)
        self.verify_file(path, entry['sha256'], full_read=False)
        if check_only:
            return backup
        t0 = time.monotonic()
        self.psql('CREATE DATABASE %s TEMPLATE template0' % quote_ident(into))
        try:
            self.run_tool([self.tool('pg_restore'), '--exit-on-error', '-j', str(max(1, jobs)), '-d', into, path],
                          'pg_restore of %s into %s' % (entry['name'], into), timeout=24 * 3600)
            owner = self.psql("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s"
                              % quote_literal(database))
            if owner:
                self.psql('ALTER DATABASE %s OWNER TO %s' % (quote_ident(into), quote_ident(owner[0][0])))
        except BaseException:
            self.psql('DROP DATABASE IF EXISTS %s' % quote_ident(into))
            raise
        self.log('restored %s/%s into %s in %.1fs' % (backup['id'], database, into, time.monotonic() - t0))
        backup['restore_seconds'] = round(time.monotonic() - t0, 3)
        return backup

    def swap(self, live, new, keep_suffix=None):
        """Put `new` in place of `live`; the old one is kept as live_replaced_<stamp>. Returns its name."""
        for name in (live, new):
            if not DBNAME_RE.match(name):
                raise BackupError('database name %r: use letters, digits and _ only' % name)
        present = {r[0] for r in self.psql('SELECT datname FROM pg_database')}
        for name in (live, new):
            if name not in present:
                raise BackupError('database %s does not exist' % name)
        old = ('%s_replaced_%s' % (live, keep_suffix or utcnow().strftime('%Y%m%d%H%M%S')))[:63]
        if old in present:
            raise BackupError('database %s already exists' % old)
        self.psql('ALTER DATABASE %s WITH ALLOW_CONNECTIONS false' % quote_ident(live))
        try:
            self.psql('ALTER DATABASE %s WITH ALLOW_CONNECTIONS false' % quote_ident(new))
            self.psql('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname IN (%s, %s) '
                      'AND pid <> pg_backend_pid()' % (quote_literal(live), quote_literal(new)))
            for _attempt in range(50):
                if not self.psql('SELECT 1 FROM pg_stat_activity WHERE datname IN (%s, %s)'
                                 % (quote_literal(live), quote_literal(new))):
                    break
                time.sleep(0.2)
            self.psql('BEGIN; ALTER DATABASE %s RENAME TO %s; ALTER DATABASE %s RENAME TO %s; COMMIT'
                      % (quote_ident(live), quote_ident(old), quote_ident(new), quote_ident(live)))
        except BaseException:
            for name in (live, new):
                try:
                    self.psql('ALTER DATABASE %s WITH ALLOW_CONNECTIONS true' % quote_ident(name))
                except BackupError:
                    pass
            raise
        for name in (live, old):
            self.psql('ALTER DATABASE %s WITH ALLOW_CONNECTIONS true' % quote_ident(name))
        self.log('swapped: %s is now the restored database; the previous one is kept as %s' % (live, old))
        return old

    # -- restore test
    def restore_test(self):
        start = utcnow()
        result = {'status': 'running', 'start': iso(start)}
        scratch = []
        try:
            backup = self.find('latest')
            result['backup_id'] = backup['id']
            rconf = self.cfg['restore_test']
            dbs = [f['database'] for f in backup['manifest']['files'] if f.get('kind') == 'database']
            if rconf.get('databases'):
                dbs = [d for d in dbs if d in rconf['databases']]
            if not dbs:
                raise BackupError('backup %s holds none of the databases to test' % backup['id'])
            result['databases'] = {}
            for database in dbs:
                name = scratch_name(rconf['prefix'], database)
                self.psql('DROP DATABASE IF EXISTS %s' % quote_ident(name))
                scratch.append(name)
                entry = [f for f in backup['manifest']['files'] if f.get('database') == database][0]
                listing = self.run_tool([self.tool('pg_restore'), '--list',
                                         os.path.join(backup['path'], entry['name'])], 'pg_restore --list')
                expected_tables = len([ln for ln in listing.splitlines()
                                       if re.match(r'^\d+; \d+ \d+ TABLE DATA ', ln)])
                t0 = time.monotonic()
                self.restore(backup['id'], database, name)
                tables = self.psql(
                    "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
                    "AND n.nspname NOT LIKE 'pg_toast%%' ORDER BY pg_total_relation_size(c.oid) DESC, 1, 2", name)
                counts = []
                for schema, table in tables[:int(rconf.get('top_tables') or 5)]:
                    rows = self.psql('SELECT count(*) FROM %s.%s' % (quote_ident(schema), quote_ident(table)), name)
                    counts.append({'table': '%s.%s' % (schema, table), 'rows': int(rows[0][0])})
                restored_tables = len(self.psql(
                    "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r' "
                    "AND n.nspname NOT IN ('pg_catalog', 'information_schema')", name))
                result['databases'][database] = {'scratch': name, 'restore_seconds': round(time.monotonic() - t0, 3),
                                                 'tables': restored_tables, 'table_data_entries': expected_tables,
                                                 'largest_tables': counts}
                if restored_tables < expected_tables:
                    raise BackupError('%s: %d tables restored, the dump has data for %d'
                                      % (database, restored_tables, expected_tables))
                self.psql('DROP DATABASE %s' % quote_ident(name))
                scratch.remove(name)
        except Exception as exc:  # pylint: disable=broad-except  # recorded in the status file, exit 1
            result['status'] = 'failed'
            result['error'] = str(exc)
            self.log('ERROR: restore test failed: %s' % exc)
        else:
            result['status'] = 'success'
        finally:
            for name in scratch:
                try:
                    self.psql('DROP DATABASE IF EXISTS %s' % quote_ident(name))
                except BackupError as exc:
                    self.log('WARNING: could not drop scratch database %s: %s' % (name, exc))
        end = utcnow()
        result.update(end=iso(end), end_timestamp=int(end.timestamp()),
                      duration_seconds=round(end.timestamp() - start.timestamp(), 3))
        self.write_status(restore_test=result)
        print(json.dumps(result, indent=2))
        return EX_OK if result['status'] == 'success' else EX_FAIL

    def publish_metrics(self):
        target_dir = self.cfg.get('metrics_dir')
        if not target_dir:
            return EX_OK
        if not os.path.exists(self.metrics_path):
            self.write_status()
        with open(self.metrics_path) as handle:
            data = handle.read()
        atomic_write(os.path.join(target_dir, 'shipyard_db_backup.prom'), data, 0o644)
        return EX_OK


def _shquote(value):
    if re.match(r'^[A-Za-z0-9_./:=@%+,-]+$', value):
        return value
    return "'" + value.replace("'", "'\"'\"'") + "'"


# ------------------------------------------------------------------ CLI

def load_config(path):
    cfg = read_json(path, None)
    if cfg is None:
        if path == DEFAULT_CONFIG:
            return {}
        raise BackupError('config file %s not found' % path)
    return cfg


DEFAULT_CONFIG = '/etc/shipyard-db-backup/config.json'


def main(argv=None):
    parser = argparse.ArgumentParser(prog='shipyard-db-backup', description=__doc__.split('\n\n', maxsplit=1)[0])
    parser.add_argument('--config', default=os.environ.get('SHIPYARD_DB_BACKUP_CONFIG', DEFAULT_CONFIG))
    parser.add_argument('--version', action='version', version=VERSION)
    sub = parser.add_subparsers(dest='cmd', required=True)
    p = sub.add_parser('run', help='take a backup')
    p.add_argument('--label', help='label (e.g. the release id); kept under the labelled retention count')
    p.add_argument('--wait', type=float, default=0, help='seconds to wait for a running backup to finish')
    p.add_argument('--no-prune', action='store_true')
    sub.add_parser('prune', help='apply retention')
    p = sub.add_parser('verify', help='re-verify backups')
    p.add_argument('--backup', default='latest', help='ID, latest or all')
    p.add_argument('--quick', action='store_true', help='sha256 and pg_restore --list only')
    sub.add_parser('restore-test', help='restore the newest backup into scratch databases')
    p = sub.add_parser('list', help='list backups')
    p.add_argument('--json', action='store_true')
    p = sub.add_parser('restore', help='restore one database of a backup into a NEW database')
    p.add_argument('--backup', default='latest')
    p.add_argument('--database', required=True, help='the database whose dump to restore')
    p.add_argument('--into', required=True, help='name of the new database (must not exist)')
    p.add_argument('--jobs', type=int, default=2)
    p.add_argument('--check', action='store_true', help='only check that the restore could run')
    p = sub.add_parser('swap', help='swap a restored database in place of the live one')
    p.add_argument('--live', required=True)
    p.add_argument('--with', dest='new', required=True)
    p.add_argument('--confirm', action='store_true', help='required: the live database is renamed away')
    sub.add_parser('publish-metrics', help='copy the metrics textfile into metrics_dir')
    sub.add_parser('status', help='print the status file')
    args = parser.parse_args(argv)

    try:
        prog = Program(load_config(args.config))
        if args.cmd == 'run':
            label = sanitize_label(args.label) if args.label else None
            return prog.run(label=label, wait=args.wait, prune=not args.no_prune)
        if args.cmd == 'prune':
            return prog.prune()
        if args.cmd == 'verify':
            targets = prog.backups() if args.backup == 'all' else [prog.find(args.backup)]
            failed = 0
            for b in targets:
                try:
                    prog.verify_backup(b, full_read=not args.quick)
                    print('%s OK' % b['id'])
                except (BackupError, ValueError, OSError) as exc:
                    failed += 1
                    print('%s FAILED: %s' % (b['id'], exc))
            return EX_FAIL if failed or not targets else EX_OK
        if args.cmd == 'restore-test':
            return prog.restore_test()
        if args.cmd == 'list':
            backups = prog.backups()
            if args.json:
                print(json.dumps([{'id': b['id'], 'label': b['label'], 'time': iso(b['time']),
                                   'size': b['manifest'].get('total_size'),
                                   'databases': [f['database'] for f in b['manifest']['files'] if f.get('database')]}
                                  for b in backups], indent=2))
            else:
                for b in backups:
                    size = b['manifest'].get('total_size', 0)
                    print('%-40s %-20s %12d  %s' % (b['id'], iso(b['time']), size, b['label'] or ''))
            return EX_OK
        if args.cmd == 'restore':
            backup = prog.restore(args.backup, args.database, args.into, jobs=args.jobs, check_only=args.check)
            print(json.dumps({'backup_id': backup['id'], 'database': args.database, 'into': args.into,
                              'checked_only': args.check, 'restore_seconds': backup.get('restore_seconds')}))
            return EX_OK
        if args.cmd == 'swap':
            if not args.confirm:
                raise BackupError('swap renames the live database away: pass --confirm')
            old = prog.swap(args.live, args.new)
            print(json.dumps({'live': args.live, 'previous': old}))
            return EX_OK
        if args.cmd == 'publish-metrics':
            return prog.publish_metrics()
        if args.cmd == 'status':
            print(json.dumps(prog.status(), indent=2, sort_keys=True))
            return EX_OK
    except LockBusy as exc:
        print('ERROR: %s' % exc, file=sys.stderr)
        return EX_BUSY
    except (BackupError, ValueError, OSError) as exc:
        print('ERROR: %s' % exc, file=sys.stderr)
        return EX_FAIL
    return EX_USAGE


if __name__ == '__main__':
    sys.exit(main())

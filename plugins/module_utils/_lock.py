# -*- coding: utf-8 -*-
# Copyright (c) 2026, shipyard.webstack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The deploy lock of deploy_lock: its record, how a found lock is classified,
what to do about it, messages, and the file operations (all serialized by a
flock on a guard file next to the lock). Private to the collection.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import calendar
import contextlib
import errno
import fcntl
import json
import os
import tempfile
import time

TIME_FORMAT = '%Y-%m-%dT%H:%M:%SZ'
GUARD_SUFFIX = '.guard'

# What a lock file found on disk is, relative to our run.
FREE = 'free'        # no lock file
OURS = 'ours'        # held by our run_id, not expired
OURS_EXPIRED = 'ours_expired'  # held by our run_id, past its expiry
HELD = 'held'        # held by another run, not expired
STALE = 'stale'      # held by another run (or unreadable), past its expiry

# What acquiring does about it.
CREATE = 'create'
KEEP = 'keep'
REFRESH = 'refresh'
BREAK = 'break'
WAIT = 'wait'
FAIL_HELD = 'fail_held'
FAIL_STALE = 'fail_stale'

# What releasing does about it.
REMOVE = 'remove'
NOTHING = 'nothing'
REFUSE = 'refuse'


def iso(epoch):
    """Epoch seconds -> '2026-01-31T12:00:00Z' (UTC)."""
    return time.strftime(TIME_FORMAT, time.gmtime(int(epoch)))


def parse_iso(text):
    """'2026-01-31T12:00:00Z' -> epoch seconds (int); ValueError when malformed."""
    if not isinstance(text, str):
        raise ValueError('not a timestamp: %r' % (text,))
    return calendar.timegm(time.strptime(text, TIME_FORMAT))


def make_record(owner, run_id, label, ttl, now, host):
    """The JSON record written into the lock file."""
    return {
        'owner': owner,
        'run_id': run_id,
        'label': label or '',
        'host': host,
        'started': iso(now),
        'expires': iso(now + ttl),
        'ttl': int(ttl),
    }


def refreshed(record, ttl, now):
    """Our own record with its expiry moved to now + ttl (start time kept)."""
    new = dict(record)
    new['expires'] = iso(now + ttl)
    new['ttl'] = int(ttl)
    new['refreshed'] = iso(now)
    return new


def parse_record(text):
    """Lock file content -> record dict. Unreadable content gives {'corrupt': True} (treated as stale)."""
    try:
        record = json.loads(text)
    except ValueError:
        return {'corrupt': True}
    if not isinstance(record, dict) or not record.get('run_id'):
        return {'corrupt': True}
    try:
        parse_iso(record.get('started'))
        parse_iso(record.get('expires'))
    except ValueError:
        record = dict(record, corrupt=True)
    return record


def classify(record, run_id, now):
    """FREE, OURS, OURS_EXPIRED, HELD or STALE for a record found on disk (None: no lock file)."""
    if record is None:
        return FREE
    expired = record.get('corrupt') or now >= parse_iso(record['expires'])
    if not record.get('corrupt') and run_id and record.get('run_id') == run_id:
        return OURS_EXPIRED if expired else OURS
    return STALE if expired else HELD


def decide_acquire(status, break_stale=False, refresh=False, time_left=0):
    """What state=acquired does about what it found."""
    if status == FREE:
        return CREATE
    if status == OURS:
        return REFRESH if refresh else KEEP
    if status == OURS_EXPIRED:
        return REFRESH
    if status == STALE:
        return BREAK if break_stale else FAIL_STALE
    # HELD: a live lock of another run.
    return WAIT if time_left > 0 else FAIL_HELD


def decide_release(status, force=False):
    """What state=released does about what it found."""
    if status == FREE:
        return NOTHING
    if status in (OURS, OURS_EXPIRED) or force:
        return REMOVE
    return REFUSE


def age_of(record, now):
    """Seconds since the lock was taken (None when unknown)."""
    try:
        return max(0, int(now - parse_iso(record['started'])))
    except (KeyError, TypeError, ValueError):
        return None


def expires_in(record, now):
    """Seconds until expiry; negative once stale (None when unknown)."""
    try:
        return int(parse_iso(record['expires']) - now)
    except (KeyError, TypeError, ValueError):
        return None


def human_duration(seconds):
    """3725 -> '1h2m5s'; 42 -> '42s'."""
    seconds = int(abs(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = []
    if days:
        parts.append('%dd' % days)
    if hours:
        parts.append('%dh' % hours)
    if minutes:
        parts.append('%dm' % minutes)
    if secs or not parts:
        parts.append('%ds' % secs)
    return ''.join(parts)


def describe_holder(record, now):
    """'alice@ops1 (run 42, "deploy v1.2") since 2026-...Z (4m ago), expires 2026-...Z (in 56m)'."""
    if record is None:
        return 'nobody'
    if record.get('corrupt') and not record.get('run_id'):
        return 'an unreadable lock file (no owner, run id or expiry can be read from it)'
    text = '%s (run %s' % (record.get('owner') or 'an unknown owner', record.get('run_id'))
    if record.get('label'):
        text += ', "%s"' % record['label']
    text += ')'
    age = age_of(record, now)
    if age is not None:
        text += ' since %s (%s ago)' % (record['started'], human_duration(age))
    left = expires_in(record, now)
    if left is not None:
        if left > 0:
            text += ', expires %s (in %s)' % (record['expires'], human_duration(left))
        else:
            text += ', expired %s (%s ago)' % (record['expires'], human_duration(left))
    return text


def held_message(path, record, now, waited, wait):
    msg = 'the deploy lock %s is held by another run: %s' % (path, describe_holder(record, now))
    if wait > 0:
        msg += '; waited %s of the allowed %s' % (human_duration(waited), human_duration(wait))
    else:
        msg += '; not waiting (wait=0)'
    return msg + '. Let that run finish, or raise the wait.'


def stale_message(path, record, now):
    return ('the deploy lock %s is STALE: %s. Its run probably crashed or was interrupted; the lock was NOT removed. '
            'Make sure that run is gone, then acquire with break_stale=true (or remove the file).'
            % (path, describe_holder(record, now)))


def refuse_message(path, record, run_id, now):
    return ('not releasing the deploy lock %s: it is held by %s, not by this run (run %s). '
            'Use force=true to remove another run\'s lock.' % (path, describe_holder(record, now), run_id))


# ------------------------------------------------------------------ files

def guard_path(path):
    return path + GUARD_SUFFIX


@contextlib.contextmanager
def guarded(path, shared=False, create=True):
    """Hold a flock on the lock's guard file: every change of the lock file happens under it, so a
    read-decide-write sequence is atomic against other deploy_lock runs on the host. A process that
    dies drops its flock, so the guard can never be left held. With create=False and no guard file,
    nothing is locked (a reader in check mode must not create files)."""
    gpath = guard_path(path)
    flags = os.O_RDWR | os.O_CREAT if create else os.O_RDONLY
    try:
        fd = os.open(gpath, flags, 0o644)
    except OSError as exc:
        if not create and exc.errno in (errno.ENOENT, errno.EACCES):
            yield
            return
        raise
    try:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # drops the flock


def read_lock(path):
    """The record in the lock file, or None when there is none."""
    try:
        with open(path, 'r') as handle:
            return parse_record(handle.read())
    except (IOError, OSError) as exc:
        if exc.errno == errno.ENOENT:
            return None
        raise


def _encode(record):
    return (json.dumps(record, sort_keys=True, indent=2) + '\n').encode('utf-8')


def create_lock(path, record, mode=0o644):
    """Create the lock file with O_EXCL: True when created, False when a lock file already exists."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except OSError as exc:
        if exc.errno == errno.EEXIST:
            return False
        raise
    try:
        data = _encode(record)
        while data:
            data = data[os.write(fd, data):]
        os.fsync(fd)
    except Exception:
        os.close(fd)
        os.unlink(path)
        raise
    os.close(fd)
    return True


def replace_lock(path, record, mode=0o644):
    """Replace the lock file's record atomically (write a temporary file, rename it over)."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or '.', prefix='.%s.' % os.path.basename(path))
    try:
        os.write(fd, _encode(record))
        os.fchmod(fd, mode)
        os.fsync(fd)
        os.close(fd)
        os.rename(tmp, path)
    except Exception:
        try:
            os.close(fd)
        except OSError:
            pass
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def remove_lock(path):
    """Remove the lock file; True when it was there."""
    try:
        os.unlink(path)
        return True
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return False
        raise

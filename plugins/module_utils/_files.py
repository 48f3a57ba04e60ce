# -*- coding: utf-8 -*-
# Copyright (c) 2026, shipyard.webstack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filesystem helpers the modules share (the lock's, the audit log's and the proxy's state, managed_files'
records read by host_state). Private to the collection."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import hashlib
import json
import os
import stat
import tempfile


def ensure_dir(directory, mode):
    """Create the directory (and parents) with mode; True when this call created it.

    Safe against a concurrent run creating it at the same moment (two deploys taking the lock, two
    hosts' writers on a shared path): that one's directory is kept as it is.
    """
    if not directory or os.path.isdir(directory):
        return False
    try:
        os.makedirs(directory, mode)
    except OSError as exc:
        if exc.errno == errno.EEXIST and os.path.isdir(directory):
            return False
        raise
    os.chmod(directory, mode)  # makedirs' mode is subject to the umask
    return True


# Records of managed_files steps. After a run, managed_files writes what one step's paths are (content
# digest, mode, owner and group ids, or absent) next to a fingerprint of what the step asked for; host_state
# re-reads the paths of every record and reports the fingerprints whose paths are still exactly as
# recorded. The step's action then compares the fingerprint of what it asks for now on the controller
# and skips the module run when both are the same: nothing asked changed and nothing on the host did.
RECORDS_DIR = '/var/lib/shipyard/managed-files'
RECORD_NAME_RE = r'^[A-Za-z0-9][A-Za-z0-9_.-]*$'


def path_state(path):
    """What a path is now, as a record holds it: a JSON-able list."""
    try:
        info = os.lstat(path)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return ['absent']
        raise
    attributes = [stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid]
    if stat.S_ISDIR(info.st_mode):
        return ['directory'] + attributes
    if stat.S_ISREG(info.st_mode):
        digest = hashlib.sha256()
        with open(path, 'rb') as handle:
            for block in iter(lambda: handle.read(65536), b''):
                digest.update(block)
        return ['file', digest.hexdigest()] + attributes
    return ['other'] + attributes


def step_fingerprint(salt, directories, files, absent):
    """The salted digest of what a managed_files step asks for (options as given to the module).

    Salted per record, so the digest of a step whose files hold a secret cannot be looked up.
    """
    def item(entry, keys):
        return [None if entry.get(key) is None else str(entry.get(key)) for key in keys]

    wanted = {
        'directories': [item(entry, ('path', 'owner', 'group', 'mode')) for entry in directories or []],
        'files': [item(entry, ('path', 'owner', 'group', 'mode', 'validate'))
                  + [hashlib.sha256(str(entry.get('content', '')).encode('utf-8')).hexdigest()]
                  for entry in files or []],
        'absent': [str(path) for path in absent or []],
    }
    digest = hashlib.sha256(str(salt).encode('utf-8'))
    digest.update(json.dumps(wanted, sort_keys=True).encode('utf-8'))
    return digest.hexdigest()


def write_record(directory, name, fingerprint, paths):
    """Record the step's fingerprint and the state of its paths now (atomically, root-only)."""
    ensure_dir(directory, 0o700)
    record = {'fingerprint': fingerprint, 'paths': dict((path, path_state(path)) for path in paths)}
    handle = tempfile.NamedTemporaryFile('w', dir=directory, prefix='.%s.' % name, delete=False)
    try:
        with handle:
            json.dump(record, handle, sort_keys=True)
        os.chmod(handle.name, 0o600)
        os.rename(handle.name, os.path.join(directory, name + '.json'))
    finally:
        if os.path.exists(handle.name):
            os.unlink(handle.name)


def remove_record(directory, name):
    try:
        os.unlink(os.path.join(directory, name + '.json'))
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            raise


def valid_records(directory):
    """{name: fingerprint} of the records whose every path is still as recorded; {} without records."""
    try:
        names = sorted(entry for entry in os.listdir(directory) if entry.endswith('.json'))
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.EACCES):
            return {}   # no records, or not readable without become: every step runs
        raise
    valid = {}
    for entry in names:
        try:
            with open(os.path.join(directory, entry)) as handle:
                record = json.load(handle)
            paths = record['paths']
            if all(path_state(path) == state for path, state in paths.items()):
                valid[entry[:-len('.json')]] = record['fingerprint']
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue   # unreadable or torn: as good as no record, the step runs
    return valid

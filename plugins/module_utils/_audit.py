# -*- coding: utf-8 -*-
# Copyright (c) 2026, shipyard.webstack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The audit log of audit_log: the record, redaction of its free-form parts, and
appending one JSON line with a single O_APPEND write. Private to the collection.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import fcntl
import json
import os
import re
import time

from ansible_collections.shipyard.webstack.plugins.module_utils._redact import MASK, redact, tail

TIME_FORMAT = '%Y-%m-%dT%H:%M:%SZ'

# A string of a free-form field keeps its last this many characters: an audit line is a summary,
# and the redaction patterns cost more than linear time on long unbroken text.
MAX_STRING = 4096

# Keys whose values are masked whole, wherever they appear in a free-form field.
SECRET_KEY = re.compile(r'(password|passwd|secret|token|api_?key|private_?key|credential|dsn)', re.I)


def now_iso(epoch=None):
    return time.strftime(TIME_FORMAT, time.gmtime(time.time() if epoch is None else epoch))


def redact_data(value, secrets=()):
    """A copy of value (dicts, lists, scalars) with secrets masked: values under secret-looking keys,
    the given secret values, URL credentials and password=... pairs inside strings. Strings longer than
    MAX_STRING keep their end only (cut at a line start where possible), marked '[...] '."""
    if isinstance(value, dict):
        result = {}
        for key, item in value.items():
            if SECRET_KEY.search(str(key)) and item not in (None, '') and not isinstance(item, (dict, list, tuple, bool)):
                result[key] = MASK
            else:
                result[key] = redact_data(item, secrets)
        return result
    if isinstance(value, (list, tuple)):
        return [redact_data(item, secrets) for item in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return _redact_text(str(value), secrets)


def _redact_text(text, secrets):
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)  # whole values first, before a cut could split one
    if len(text) > MAX_STRING:
        text = '[...] ' + tail(text, MAX_STRING)
    return redact(text, secrets)


def build_record(fields, secrets=()):
    """The record, keys in a fixed order; free-form parts (durations, migrations, extra) redacted."""
    record = {}
    for key in ('when', 'event', 'release', 'digest', 'result', 'who', 'host', 'run_id'):
        if fields.get(key) not in (None, ''):
            record[key] = fields[key]
    for key in ('durations', 'migrations', 'extra'):
        if fields.get(key) not in (None, '', {}, []):
            record[key] = redact_data(fields[key], secrets)
    return record


def encode_line(record):
    """One line of JSON (newlines inside strings are escaped by JSON), as UTF-8 bytes."""
    return (json.dumps(record, separators=(',', ':'), ensure_ascii=False, default=str) + '\n').encode('utf-8')


def append_line(path, data, mode=0o640, gid=-1):
    """Append data (one line, bytes) to path with one O_APPEND write; returns (created, bytes_written).

    The file is opened O_APPEND, so every write lands at the end whatever other writers do; an
    exclusive flock is held for the write, so even a short write's remainder cannot be interleaved
    with another writer's line. If the file does not end with a newline (a line cut by a crash), a
    newline is written first so that line cannot swallow ours. Earlier bytes are never touched.
    """
    created = False
    try:
        fd = os.open(path, os.O_RDWR | os.O_APPEND)
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            raise
        try:
            fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_EXCL, mode)
            created = True
        except OSError as exc2:
            if exc2.errno != errno.EEXIST:
                raise
            fd = os.open(path, os.O_RDWR | os.O_APPEND)
    try:
        if created:
            os.fchmod(fd, mode)  # the umask may have taken bits away
            if gid != -1:
                os.fchown(fd, -1, gid)
        fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b'\n':
            data = b'\n' + data
        written = 0
        while written < len(data):
            written += os.write(fd, data[written:])
        os.fsync(fd)
        return created, written
    finally:
        os.close(fd)

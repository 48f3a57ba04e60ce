# -*- coding: utf-8 -*-
# Copyright (c) 2026, shipyard.webstack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""nginx's blue/green upstreams on the host: the slot switch shared by proxy_switch and slot_rollout.
Private to the collection.

A switch writes an upstream's file (once the validate program accepted it), tests nginx's whole
configuration, reloads nginx gracefully, polls checks through nginx and records the slot. Several
upstreams switch together with one test and one reload. Failures raise SwitchError; the caller
decides whether that fails the module (proxy_switch) or starts a rescue (slot_rollout).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
import tempfile
import time

from ansible.module_utils.common.text.converters import to_bytes

from ansible_collections.shipyard.webstack.plugins.module_utils._files import ensure_dir
from ansible_collections.shipyard.webstack.plugins.module_utils._probes import (
    PROBES,
    Check,
    excerpt,
    poll,
    probe_http,
)

SLOTS = ('blue', 'green')
SLOT_FILE_RE = re.compile(r'^([a-z][a-z0-9_]*)\.slot$')
UPSTREAM_RE = re.compile(r'^[a-z][a-z0-9_]*$')
VERIFY_KEYS = ('url', 'status_codes', 'body_regex', 'json_field', 'json_value', 'headers', 'validate_certs')
NGINX_WORKER_TITLE = 'nginx: worker process'


def switch_settings_spec():
    """The options of a switch besides what to switch (proxy_switch's, and slot_rollout's proxy)."""
    return dict(
        upstreams_dir=dict(type='path', default='/etc/nginx/shipyard/upstreams'),
        state_dir=dict(type='path', default='/var/lib/shipyard/proxy'),
        validate=dict(type='path'),
        test_command=dict(type='list', elements='str', default=['nginx', '-t', '-q']),
        reload_command=dict(type='list', elements='str', default=['systemctl', 'reload', 'nginx']),
        live_url=dict(type='str'),
        timeout=dict(type='float', default=30),
        interval=dict(type='float', default=0.2),
    )


class SwitchError(Exception):
    """A switch that could not be made; nginx's files are as they were unless the message says otherwise."""

    def __init__(self, message, reports=None):
        super(SwitchError, self).__init__(message)
        self.reports = reports or []


def read_text(path):
    """A file's text, or None when it does not exist."""
    try:
        with open(path, 'rb') as handle:
            return handle.read().decode('utf-8')
    except (IOError, OSError) as exc:
        if getattr(exc, 'errno', None) == 2:
            return None
        raise


def recorded_slots(state_dir):
    """upstream -> slot, from the <upstream>.slot files of state_dir (none when it does not exist)."""
    slots = {}
    if not os.path.isdir(state_dir):
        return slots
    for entry in sorted(os.listdir(state_dir)):
        match = SLOT_FILE_RE.match(entry)
        if match:
            value = (read_text(os.path.join(state_dir, entry)) or '').strip()
            # As the role's status read: a file holding anything but a slot records nothing.
            if value in SLOTS:
                slots[match.group(1)] = value
    return slots


def serves_slot(url, upstream, slot, timeout=5):
    """nginx's health route says it serves slot for upstream (no answer: it does not)."""
    return probe_http({'url': url, 'status_codes': [200], 'json_field': 'slots.' + upstream, 'json_value': slot},
                      timeout)['ok']


def write_temp(module, text, prefix, mode=0o644):
    """text in a new file of the module's temporary directory; returns its path."""
    fd, tmp = tempfile.mkstemp(prefix=prefix, dir=module.tmpdir)
    with os.fdopen(fd, 'wb') as handle:
        handle.write(to_bytes(text))
    os.chmod(tmp, mode)
    return tmp


def write_atomic(module, path, text, mode=0o644):
    """Replace path with text in one rename (readers see the old or the new file, never half)."""
    directory = os.path.dirname(path)
    tmp = write_temp(module, text, '.%s.' % os.path.basename(path), mode)
    try:
        ensure_dir(directory, 0o755)
        module.atomic_move(tmp, path)
        os.chmod(path, mode)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def run_or_raise(module, argv, what):
    rc, out, err = module.run_command(argv)
    if rc != 0:
        raise SwitchError('%s failed (%s, exit %d): %s' % (what, ' '.join(argv), rc, excerpt((err or out).strip(), 600)))


def verify_checks(items):
    return [Check(item['name'], 'http', dict((key, item.get(key)) for key in VERIFY_KEYS), timeout=5) for item in items]


def describe(check):
    report = check.report()
    text = "'%s' (%s): state %s after %d attempt(s)" % (report['name'], report['target'], report['state'], report['attempts'])
    if report['last_error']:
        text += ', last error: %s' % report['last_error']
    body = (report['details'] or {}).get('body_excerpt')
    if body:
        text += '; body: %s' % excerpt(body, 200)
    return text


def nginx_workers(pid_file):
    """Process ids of the nginx master's workers now (none when nginx's pid file is missing)."""
    try:
        master = int((read_text(pid_file) or '').strip() or 0)
    except (ValueError, OSError):
        return []
    if not master:
        return []
    workers = []
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open('/proc/%s/stat' % entry, 'rb') as handle:
                stat = handle.read().decode('utf-8', 'replace')
            # pid (comm) state ppid ...: comm may hold spaces, so split after its closing parenthesis.
            ppid = int(stat.rsplit(')', 1)[1].split()[1])
            if ppid == master and NGINX_WORKER_TITLE in _cmdline(entry):
                workers.append(int(entry))
        except (IOError, OSError, IndexError, ValueError):
            continue   # the process ended while we looked
    return sorted(workers)


def _cmdline(pid):
    with open('/proc/%s/cmdline' % pid, 'rb') as handle:
        return handle.read().replace(b'\x00', b' ').decode('utf-8', 'replace')


def alive(pids):
    """The pids of the list that still run (a zombie has finished)."""
    out = []
    for pid in pids:
        try:
            with open('/proc/%d/stat' % pid, 'rb') as handle:
                state = handle.read().decode('utf-8', 'replace').rsplit(')', 1)[1].split()[0]
        except (IOError, OSError, IndexError):
            continue
        if state != 'Z':
            out.append(pid)
    return out


def wait_exited(pids, timeout, interval=0.05, clock=time.monotonic, sleep=time.sleep):
    """Wait until none of pids runs, at most timeout seconds; returns (seconds waited, pids still running)."""
    started = clock()
    left = alive(pids)
    while left and clock() - started < timeout:
        sleep(interval)
        left = alive(left)
    return round(clock() - started, 3), left


class Switch(object):
    """One upstream to one slot: what the files say now and what must change."""

    def __init__(self, upstreams_dir, state_dir, upstream, slot, content, verify=None, slots=None):
        if not UPSTREAM_RE.match(upstream):
            raise SwitchError('upstream %r: lower-case letters, digits and _ only, starting with a letter' % upstream)
        if slot not in SLOTS:
            raise SwitchError('upstream %s: slot must be blue or green, got %r' % (upstream, slot))
        self.upstream, self.slot = upstream, slot
        self.dest = os.path.join(upstreams_dir, upstream + '.conf')
        self.state_file = os.path.join(state_dir, upstream + '.slot')
        self.content = content if content.endswith('\n') else content + '\n'
        self.verify = list(verify or [])
        recorded = recorded_slots(state_dir) if slots is None else slots
        self.before_slot = recorded.get(upstream)
        self.before_text = read_text(self.dest)
        self.file_changed = self.before_text != self.content
        self.recorded = self.before_slot != slot
        self.reload_needed = self.file_changed

    def look_at_nginx(self, live_url):
        """An unchanged file is reloaded when nginx does not serve the slot yet (a run failed before its reload)."""
        if not self.file_changed and live_url:
            self.reload_needed = not serves_slot(live_url, self.upstream, self.slot)

    @property
    def changed(self):
        return self.file_changed or self.reload_needed or self.recorded

    def diff(self):
        return [
            dict(before_header=self.dest, after_header=self.dest, before=self.before_text or '', after=self.content),
            dict(before_header=self.state_file, after_header=self.state_file,
                 before=(self.before_slot + '\n') if self.before_slot else '', after=self.slot + '\n'),
        ]

    def put_back(self, module):
        if self.before_text is not None:
            write_atomic(module, self.dest, self.before_text)
        elif os.path.exists(self.dest):
            os.unlink(self.dest)


def apply_switches(module, switches, validate=None, test_command=('nginx', '-t', '-q'),
                   reload_command=('systemctl', 'reload', 'nginx'), timeout=30, interval=0.2):
    """Make the switches (Switch objects) real: write, test once, reload once, verify, record.

    Returns the verify reports (a list, empty when nothing was verified). Raises SwitchError: when
    a file is refused or nginx -t fails, every file is put back and nothing is reloaded; when the
    checks fail after the reload, no slot is recorded.
    """
    written = []
    try:
        for switch in switches:
            if not switch.file_changed:
                continue
            if validate:
                candidate = write_temp(module, switch.content, '.%s.candidate.' % switch.upstream)
                try:
                    run_or_raise(module, [validate, switch.dest, candidate], 'the new upstream file was refused by ' + validate)
                finally:
                    os.unlink(candidate)
            write_atomic(module, switch.dest, switch.content)
            written.append(switch)
        if any(s.reload_needed for s in switches):
            rc, out, err = module.run_command(list(test_command))
            if rc != 0:
                raise SwitchError('nginx refused its configuration with the new upstream %s (%s, exit %d): %s; the '
                                  'previous file is back, nginx was not reloaded'
                                  % (', '.join(s.upstream for s in switches), ' '.join(test_command), rc,
                                     excerpt((err or out).strip(), 600)))
            run_or_raise(module, list(reload_command), 'the graceful reload of nginx')
    except SwitchError:
        for switch in written:
            switch.put_back(module)
        raise
    reports = []
    checks = [check for switch in switches for check in verify_checks(switch.verify)]
    if checks:
        outcome = poll(checks, timeout, interval=interval, fail_fast=False, probes=PROBES)
        reports = [dict((k, v) for k, v in c.report().items() if k in ('name', 'ok', 'state', 'attempts', 'last_error'))
                   for c in checks]
        if not outcome.ok:
            raise SwitchError('after switching %s nginx did not answer as expected within %gs: %s; the new '
                              'slot is not recorded' % (', '.join('%s to %s' % (s.upstream, s.slot) for s in switches),
                                                        timeout, '. '.join(describe(c) for c in checks if not c.last['ok'])),
                              reports)
    for switch in switches:
        if switch.recorded:
            write_atomic(module, switch.state_file, switch.slot + '\n')
    return reports

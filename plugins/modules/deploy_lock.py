#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, shipyard.webstack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: deploy_lock
short_description: Take, release or inspect the deploy lock, a lock file naming its owner, run and expiry
version_added: 0.1.0
description:
  - Keeps two deploys of the same stack from running at once. The lock is a file on one host (the playbook
    picks it, for example the first host of the C(postgres) group) holding a JSON record of who holds it
    (O(owner)), the run (O(run_id)), a O(label), when it was taken and when it expires.
  - O(state=acquired) creates the lock file with C(O_EXCL). Every change of the lock file happens under a
    C(flock) on a guard file next to it (O(path) plus C(.guard)), so of two runs acquiring at the same
    moment exactly one wins; the other waits up to O(wait) seconds, polling, then fails naming the holder.
  - Acquiring again with the run id that holds the lock changes nothing (or extends the expiry with
    O(refresh=true)); a lock of our own run past its expiry is extended.
  - A lock of another run past its expiry is B(stale) (its run probably crashed). It is reported with its
    owner, run id and age, and the module fails without waiting; it is removed only with O(break_stale=true).
  - O(state=released) removes the lock only when O(run_id) holds it; another run's lock is left alone
    unless O(force=true). No lock file is not an error.
  - O(state=inspect) (or V(status)) reports the lock without changing anything, stale or not.
  - All times are the clock of the host holding the lock file, in UTC.
author:
  - shipyard.webstack contributors (@shipyard-webstack)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details:
      - Reads the lock file and reports what would happen; creates, changes and removes nothing (not even
        the directory or the guard file) and does not wait.
      - A live lock of another run fails as a real run would when O(wait=0); with a O(wait), check mode
        reports that a real run would wait.
  diff_mode:
    support: full
    details:
      - Shows the lock record before and after.
  platform:
    platforms: posix
options:
  state:
    description:
      - V(acquired) takes the lock, V(released) gives it back, V(inspect) (or its synonym V(status)) only reports.
    type: str
    choices: [acquired, released, inspect, status]
    default: acquired
  path:
    description:
      - The lock file. Its directory is created (mode 0755) when missing.
    type: path
    default: /var/lib/shipyard/deploy.lock
  run_id:
    description:
      - Identifier of this run (unique per C(ansible-playbook) run). Required for V(acquired) and, unless
        O(force=true), for V(released).
    type: str
  owner:
    description:
      - Who holds the lock, recorded and named in messages; the playbook passes C(user@controller).
      - Defaults to the remote user at the lock host's name.
    type: str
  label:
    description:
      - Free text recorded with the lock, for example the playbook and the release being deployed.
    type: str
  ttl:
    description:
      - Seconds the lock is valid from the moment it is taken (or refreshed). Past it the lock is stale.
      - Choose it longer than the longest deploy.
    type: int
    default: 3600
  wait:
    description:
      - Seconds to wait for a live lock of another run to be released, polling every O(poll_interval).
        V(0) fails at once. A stale lock is never waited for.
    type: float
    default: 0
  poll_interval:
    description:
      - Seconds between two looks at a held lock while waiting.
    type: float
    default: 2
  break_stale:
    description:
      - Remove a stale lock of another run and take the lock. The removed record is returned as RV(broken).
    type: bool
    default: false
  refresh:
    description:
      - When our run already holds the lock, move its expiry to now plus O(ttl).
    type: bool
    default: false
  force:
    description:
      - With O(state=released), remove the lock even when another run holds it.
    type: bool
    default: false
notes:
  - The guard file (O(path) with C(.guard)) stays in place; it holds no data. A process that dies drops its
    C(flock), so the guard never blocks anybody.
  - The lock file's directory must be on a file system of the lock host where C(flock) works (any local one).
seealso:
  - module: shipyard.webstack.migration_gate
  - module: shipyard.webstack.audit_log
'''

EXAMPLES = r'''
- name: Take the deploy lock on the first database host, waiting up to 10 minutes
  shipyard.webstack.deploy_lock:
    state: acquired
    run_id: "{{ deploy_run_id }}"
    owner: "{{ lookup('ansible.builtin.env', 'USER') }}@{{ lookup('ansible.builtin.pipe', 'hostname') }}"
    label: "deploy.yml {{ app_image }}"
    ttl: 7200
    wait: 600
  delegate_to: "{{ groups['postgres'][0] }}"
  run_once: true

- name: Remove a stale lock (its run crashed) and take it
  shipyard.webstack.deploy_lock:
    run_id: "{{ deploy_run_id }}"
    break_stale: true
  delegate_to: "{{ groups['postgres'][0] }}"
  run_once: true

- name: Give the lock back (in an always section, so a failed deploy releases it too)
  shipyard.webstack.deploy_lock:
    state: released
    run_id: "{{ deploy_run_id }}"
  delegate_to: "{{ groups['postgres'][0] }}"
  run_once: true

- name: Who holds the lock?
  shipyard.webstack.deploy_lock:
    state: inspect
  register: lock
  delegate_to: "{{ groups['postgres'][0] }}"
  run_once: true
'''

RETURN = r'''
lock:
  description:
    - The lock record in the file after the module ran (in check mode, as it would be), or the record that
      blocked it. Keys are C(owner),
      C(run_id), C(label), C(host), C(started), C(expires) (UTC, ISO 8601), C(ttl), and C(refreshed) when
      the expiry was moved. V(null) when there is no lock.
    - An unreadable lock file gives a dictionary with C(corrupt=true).
  returned: always
  type: dict
  sample:
    owner: alice@ops-laptop
    run_id: 20260131T120000-4242
    label: deploy.yml registry.example.com/app:1.4.2
    host: db1
    started: "2026-01-31T12:00:00Z"
    expires: "2026-01-31T14:00:00Z"
    ttl: 7200
status:
  description:
    - What the lock was, relative to O(run_id), when the module decided. V(free), V(ours), V(ours_expired),
      V(held) (by another run) or V(stale) (another run's lock past its expiry, or an unreadable file).
  returned: always
  type: str
  sample: held
acquired:
  description: Whether this run holds the lock after the module (in check mode, whether it would).
  returned: always
  type: bool
released:
  description: Whether the lock file was removed (in check mode, whether it would be).
  returned: always
  type: bool
stale:
  description: Whether the lock found was stale.
  returned: always
  type: bool
waited:
  description: Seconds spent waiting for another run's lock.
  returned: always
  type: float
  sample: 12.4
age:
  description: Seconds since the lock in RV(lock) was taken.
  returned: when there is a lock
  type: int
  sample: 252
expires_in:
  description: Seconds until the lock in RV(lock) expires; negative when it is stale.
  returned: when there is a lock
  type: int
  sample: 3348
released_lock:
  description: The record removed by O(state=released) (in check mode, the one that would be).
  returned: when a lock was released
  type: dict
broken:
  description: The stale record removed by O(break_stale=true).
  returned: when a stale lock was broken
  type: dict
msg:
  description: What happened, in words (owner, run id, since when, expiry).
  returned: always
  type: str
  sample: took the deploy lock /var/lib/shipyard/deploy.lock for run 20260131T120000-4242
'''

import getpass
import os
import socket
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.shipyard.webstack.plugins.module_utils import _lock as lk
from ansible_collections.shipyard.webstack.plugins.module_utils._files import ensure_dir


class DeployLock(object):

    def __init__(self, module):
        self.module = module
        p = module.params
        self.p = p
        self.path = p['path']
        self.run_id = p['run_id']
        self.check = module.check_mode
        self.result = dict(changed=False, lock=None, status=lk.FREE, acquired=False, released=False, stale=False,
                           waited=0.0, msg='')
        self.before = None

    # ------------------------------------------------------------ helpers
    def dir_exists(self):
        return os.path.isdir(os.path.dirname(self.path) or '.')

    def ensure_dir(self):
        ensure_dir(os.path.dirname(self.path), 0o755)

    def look(self):
        """Read the lock without changing anything (shared guard, only when the guard already exists)."""
        if not self.dir_exists():
            return None
        with lk.guarded(self.path, shared=True, create=False):
            return lk.read_lock(self.path)

    def owner(self):
        if self.p['owner']:
            return self.p['owner']
        try:
            user = getpass.getuser()
        except Exception:  # pylint: disable=broad-except  # no passwd entry for the uid
            user = str(os.getuid())
        return '%s@%s' % (user, socket.gethostname())

    def new_record(self, now):
        return lk.make_record(self.owner(), self.run_id, self.p['label'], self.p['ttl'], now, socket.gethostname())

    def report(self, record, status, now):
        self.result.update(lock=record, status=status, stale=status == lk.STALE)
        if record is not None:
            self.result['age'] = lk.age_of(record, now)
            self.result['expires_in'] = lk.expires_in(record, now)
        else:
            self.result.pop('age', None)
            self.result.pop('expires_in', None)

    def fail(self, msg):
        self.result['msg'] = msg
        self.set_diff(self.result['lock'])
        self.module.fail_json(**self.result)

    def set_diff(self, after):
        if self.module._diff:
            self.result['diff'] = dict(before=self.before or {}, after=after or {})

    # ------------------------------------------------------------ acquire
    def acquire(self):
        p = self.p
        started = time.monotonic()
        deadline = started + p['wait']
        while True:
            outcome = self.try_acquire(deadline)
            if outcome is not None:
                return outcome
            remaining = deadline - time.monotonic()
            time.sleep(max(0.01, min(p['poll_interval'], remaining)))
            self.result['waited'] = round(time.monotonic() - started, 3)

    def try_acquire(self, deadline):
        """One look (under the guard in a real run). Returns None to wait more, else the action taken."""
        if self.check:
            return self.decide_acquire(self.look(), deadline)
        self.ensure_dir()
        with lk.guarded(self.path):
            return self.decide_acquire(lk.read_lock(self.path), deadline)

    def decide_acquire(self, record, deadline):
        p = self.p
        now = time.time()
        status = lk.classify(record, self.run_id, now)
        if self.before is None:
            self.before = record
        time_left = p['wait'] if self.check else deadline - time.monotonic()
        action = lk.decide_acquire(status, p['break_stale'], p['refresh'], time_left)
        self.report(record, status, now)
        if action == lk.WAIT:
            if not self.check:
                return None
            self.result['msg'] = ('a real run would wait up to %ss: %s'
                                  % (p['wait'], lk.held_message(self.path, record, now, 0, p['wait'])))
            self.set_diff(record)
            return action
        if action == lk.FAIL_HELD:
            self.fail(lk.held_message(self.path, record, now, self.result['waited'], p['wait']))
        if action == lk.FAIL_STALE:
            self.fail(lk.stale_message(self.path, record, now))
        self.apply_acquire(action, record, now)
        return action

    def apply_acquire(self, action, record, now):
        p = self.p
        verb = 'would take' if self.check else 'took'
        if action == lk.KEEP:
            self.result.update(acquired=True, msg='run %s already holds the deploy lock %s' % (self.run_id, self.path))
            self.set_diff(record)
            return
        if action == lk.REFRESH:
            new = lk.refreshed(record, p['ttl'], now)
            if not self.check:
                lk.replace_lock(self.path, new)
            verb = 'would extend' if self.check else 'extended'
            msg = '%s the deploy lock %s of run %s until %s' % (verb, self.path, self.run_id, new['expires'])
        else:
            new = self.new_record(now)
            if action == lk.BREAK:
                self.result['broken'] = record
                if not self.check:
                    lk.remove_lock(self.path)
            if not self.check and not lk.create_lock(self.path, new):
                # Cannot happen under the guard, unless something else writes the file without it.
                self.fail('the deploy lock %s appeared while taking it (something writes it without the guard)'
                          % self.path)
            msg = '%s the deploy lock %s for run %s' % (verb, self.path, self.run_id)
            if action == lk.BREAK:
                msg += ', removing the stale lock of %s' % lk.describe_holder(record, now)
        self.result.update(changed=True, acquired=True, msg=msg)
        self.report(new, self.result['status'], now)
        self.set_diff(new)

    # ------------------------------------------------------------ release
    def release(self):
        if self.check or not self.dir_exists():
            record = self.look()
            return self.decide_release(record)
        with lk.guarded(self.path):
            return self.decide_release(lk.read_lock(self.path))

    def decide_release(self, record):
        now = time.time()
        status = lk.classify(record, self.run_id, now)
        self.before = record
        self.report(record, status, now)
        action = lk.decide_release(status, self.p['force'])
        if action == lk.NOTHING:
            self.result['msg'] = 'no deploy lock at %s: nothing to release' % self.path
            self.set_diff(None)
            return
        if action == lk.REFUSE:
            self.fail(lk.refuse_message(self.path, record, self.run_id, now))
        if not self.check:
            lk.remove_lock(self.path)
        whose = 'of run %s' % self.run_id if status in (lk.OURS, lk.OURS_EXPIRED) else \
            '(force) held by %s' % lk.describe_holder(record, now)
        self.result.update(changed=True, released=True, released_lock=record,
                           msg='%s the deploy lock %s %s' % ('would release' if self.check else 'released', self.path, whose))
        self.report(None, status, now)
        self.set_diff(None)

    # ------------------------------------------------------------ inspect
    def inspect(self):
        record = self.look()
        now = time.time()
        status = lk.classify(record, self.run_id, now)
        self.before = record
        self.report(record, status, now)
        if record is None:
            self.result['msg'] = 'no deploy lock at %s' % self.path
        elif status == lk.STALE:
            self.result['msg'] = lk.stale_message(self.path, record, now)
        else:
            self.result['msg'] = 'the deploy lock %s is held by %s' % (self.path, lk.describe_holder(record, now))
        self.result['acquired'] = status == lk.OURS
        self.set_diff(record)

    def main(self):
        state = self.p['state']
        try:
            if state == 'acquired':
                self.acquire()
            elif state == 'released':
                self.release()
            else:
                self.inspect()
        except (IOError, OSError) as exc:
            self.fail('deploy lock %s: %s' % (self.path, exc))
        self.module.exit_json(**self.result)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type='str', choices=['acquired', 'released', 'inspect', 'status'], default='acquired'),
            path=dict(type='path', default='/var/lib/shipyard/deploy.lock'),
            run_id=dict(type='str'),
            owner=dict(type='str'),
            label=dict(type='str'),
            ttl=dict(type='int', default=3600),
            wait=dict(type='float', default=0),
            poll_interval=dict(type='float', default=2),
            break_stale=dict(type='bool', default=False),
            refresh=dict(type='bool', default=False),
            force=dict(type='bool', default=False),
        ),
        required_if=[('state', 'acquired', ['run_id'])],
        supports_check_mode=True,
    )
    p = module.params
    if p['state'] == 'released' and not p['run_id'] and not p['force']:
        module.fail_json(msg='state=released needs run_id (the run holding the lock), or force=true')
    if p['ttl'] <= 0:
        module.fail_json(msg='ttl must be a positive number of seconds, got %s' % p['ttl'])
    if p['wait'] < 0 or p['poll_interval'] <= 0:
        module.fail_json(msg='wait must be >= 0 and poll_interval > 0')
    DeployLock(module).main()


if __name__ == '__main__':
    main()

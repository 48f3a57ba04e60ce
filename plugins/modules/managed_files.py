#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, shipyard.webstack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: managed_files
short_description: A role's directories and files on the host in one module run
version_added: 0.2.0
description:
  - Makes the directories, files and absent paths of one step of a role what they should be, in one module run
    instead of one per path - the roles of this collection render their files on the controller (for example with
    C(lookup('ansible.builtin.template', ...))) and hand them over here together.
  - A directory is created when missing; its owner, group and mode are set when they differ.
  - A file is written when its content differs, atomically (readers see the old or the new file), after the
    O(files[].validate) command accepted the new content; its owner, group and mode are set when they differ.
  - An O(absent) path is removed when it exists (a file, or an empty directory), before anything is written, so
    a file validated later does not meet it (nginx's default site, for example).
  - Reports RV(ignore:changed) when anything changed, and which paths did in RV(changed_paths).
  - With O(record), a rerun where nothing asked and nothing on the host changed costs no module run (see O(record)).
author:
  - shipyard.webstack contributors (@shipyard-webstack)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Compares everything and reports what a real run would change; writes nothing.
  diff_mode:
    support: full
    details: The old and new content of every file that changes (use C(no_log) for files holding secrets).
  platform:
    platforms: posix
options:
  directories:
    description: Directories, created first, in this order.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Absolute path.
        type: path
        required: true
      owner:
        description: Owner (name or uid); unchanged when not given.
        type: str
      group:
        description: Group (name or gid); unchanged when not given.
        type: str
      mode:
        description: Mode, as an octal string such as C("0750").
        type: raw
  files:
    description: Files, written after the directories.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Absolute path.
        type: path
        required: true
      content:
        description: The whole content of the file.
        type: str
        required: true
      owner:
        description: Owner (name or uid); unchanged when not given.
        type: str
      group:
        description: Group (name or gid); unchanged when not given.
        type: str
      mode:
        description: Mode, as an octal string such as C("0640").
        type: raw
      backup:
        description: Keep a timestamped copy of the file it replaces (as M(ansible.builtin.template) does).
        type: bool
        default: false
      validate:
        description:
          - Command run on the new content before it replaces the file, C(%s) standing for the candidate's path
            (as in M(ansible.builtin.template)). A non-zero exit refuses it and fails the module; the file stays as
            it was.
        type: str
  absent:
    description: Paths that must not exist, removed first.
    type: list
    elements: path
    default: []
  record:
    description:
      - Name of the step's record. After a run (not in check mode), the module writes under
        C(/var/lib/shipyard/managed-files) what every path of the step is (content digest, mode, owner, group) and a
        salted fingerprint of the options it was given.
      - M(shipyard.webstack.host_state) reads the records back, and reports the fingerprint of every record whose
        paths are all still as recorded. When that fact (C(shipyard_managed_files)) is set, the action compares the
        fingerprint of the options on the controller and, when it is the same, returns unchanged without running
        the module on the host.
      - So a file edited by hand, a mode changed, a path removed or any option changed all make the step run.
        The fact is as of host_state's read; a playbook that changes a step's paths by other means after that
        read, and then runs the step, should read the host state again first.
      - Letters, digits, C(_), C(.) and C(-); unique per host.
    type: str
  record_dir:
    description: Where the records are kept; M(shipyard.webstack.host_state) must read the same directory.
    type: path
    default: /var/lib/shipyard/managed-files
  record_fingerprint:
    description:
      - Set by the action from the other options when O(record) is given; not for playbooks.
    type: str
'''

EXAMPLES = r'''
- name: Install the backup program's units and configuration
  shipyard.webstack.managed_files:
    directories:
      - {path: /etc/shipyard-db-backup, owner: root, group: postgres, mode: "0750"}
    files:
      - path: /etc/systemd/system/shipyard-db-backup.service
        content: "{{ lookup('ansible.builtin.template', 'shipyard-db-backup.service.j2') }}"
        mode: "0644"
    absent: [/etc/shipyard-db-backup/pgpass]
  notify: db_backup units changed

- name: The same, skipped on the controller when neither it nor the host changed since the last run
  shipyard.webstack.managed_files:
    directories:
      - {path: /etc/shipyard-db-backup, owner: root, group: postgres, mode: "0750"}
    files:
      - path: /etc/systemd/system/shipyard-db-backup.service
        content: "{{ lookup('ansible.builtin.template', 'shipyard-db-backup.service.j2') }}"
        mode: "0644"
    record: db_backup-units
  notify: db_backup units changed
'''

RETURN = r'''
backups:
  description: Path of the copy kept of every file replaced with O(files[].backup).
  returned: always
  type: dict
  sample: {"/etc/postgresql/15/main/pg_hba.conf": "/etc/postgresql/15/main/pg_hba.conf.12345.2026-12-03@16:01:02~"}
changed_paths:
  description: Every path that changed (or, in check mode, would change), in the order given.
  returned: always
  type: list
  elements: str
  sample: [/etc/systemd/system/shipyard-db-backup.service]
skipped_by_record:
  description: True when the action found the step unchanged since its record and did not run the module.
  returned: when O(record) is given
  type: bool
  sample: true
'''

import os
import re
import shlex
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_bytes, to_native
from ansible_collections.shipyard.webstack.plugins.module_utils._files import (
    RECORD_NAME_RE, RECORDS_DIR, remove_record, write_record,
)


def attributes(module, item, changed):
    """Owner, group and mode of a path as given (check mode: only compared)."""
    path = item['path']
    changed = module.set_owner_if_different(path, item.get('owner'), changed)
    changed = module.set_group_if_different(path, item.get('group'), changed)
    return module.set_mode_if_different(path, item.get('mode'), changed)


def read_bytes(path):
    try:
        with open(path, 'rb') as handle:
            return handle.read()
    except (IOError, OSError) as exc:
        if getattr(exc, 'errno', None) == 2:
            return None
        raise


def ensure_directory(module, item):
    path = item['path']
    created = False
    if not os.path.isdir(path):
        if os.path.exists(path):
            module.fail_json(msg='%s exists and is not a directory' % path)
        created = True
        if not module.check_mode:
            os.makedirs(path)
    if module.check_mode and created:
        return True
    return attributes(module, item, created)


def validate(module, command, candidate, path):
    if '%s' not in command:
        module.fail_json(msg='files[%s].validate must contain %%s (the candidate file): %s' % (path, command))
    rc, out, err = module.run_command([arg.replace('%s', candidate) for arg in shlex.split(command)])
    if rc != 0:
        module.fail_json(msg='the new content of %s was refused by %s (exit %d): %s; the file stays as it was'
                             % (path, command.split()[0], rc, (err or out).strip()[-600:]))


def ensure_file(module, item, diffs, backups):
    path = item['path']
    wanted = to_bytes(item['content'])
    current = read_bytes(path)
    content_changed = current != wanted
    if content_changed and module._diff:
        diffs.append(dict(before_header=path, after_header=path,
                          before=to_native(current or b'', errors='replace'), after=item['content']))
    if content_changed and not module.check_mode:
        directory = os.path.dirname(path)
        if not os.path.isdir(directory):
            module.fail_json(msg='the directory of %s does not exist (list it under directories)' % path)
        fd, tmp = tempfile.mkstemp(prefix='.%s.' % os.path.basename(path), dir=module.tmpdir)
        try:
            with os.fdopen(fd, 'wb') as handle:
                handle.write(wanted)
            if item.get('validate'):
                validate(module, item['validate'], tmp, path)
            if item.get('backup') and current is not None:
                backups[path] = module.backup_local(path)
            module.atomic_move(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    if module.check_mode and current is None:
        return True
    return attributes(module, item, content_changed)


def ensure_absent(module, path):
    if not os.path.lexists(path):
        return False
    if not module.check_mode:
        if os.path.isdir(path) and not os.path.islink(path):
            os.rmdir(path)
        else:
            os.unlink(path)
    return True


def main():
    path_item = dict(path=dict(type='path', required=True), owner=dict(type='str'), group=dict(type='str'),
                     mode=dict(type='raw'))
    file_item = dict(path_item, content=dict(type='str', required=True), validate=dict(type='str'),
                     backup=dict(type='bool', default=False))
    module = AnsibleModule(
        argument_spec=dict(
            directories=dict(type='list', elements='dict', default=[], options=path_item),
            files=dict(type='list', elements='dict', default=[], options=file_item),
            absent=dict(type='list', elements='path', default=[]),
            record=dict(type='str'),
            record_dir=dict(type='path', default=RECORDS_DIR),
            record_fingerprint=dict(type='str'),
        ),
        supports_check_mode=True,
        required_by=dict(record=['record_fingerprint']),
    )
    p = module.params
    for item in p['directories'] + p['files']:
        if not os.path.isabs(item['path']):
            module.fail_json(msg='%s: give an absolute path' % item['path'])
    if p['record'] is not None and not re.match(RECORD_NAME_RE, p['record']):
        module.fail_json(msg='record must be letters, digits, _ . - (a name, not a path)')
    if p['record'] and not module.check_mode:
        # A run that fails half way leaves no record, so the next one runs in full.
        remove_record(p['record_dir'], p['record'])
    changed_paths = []
    diffs = []
    backups = {}
    for path in p['absent']:
        if ensure_absent(module, path):
            changed_paths.append(path)
    for item in p['directories']:
        if ensure_directory(module, item):
            changed_paths.append(item['path'])
    for item in p['files']:
        if ensure_file(module, item, diffs, backups):
            changed_paths.append(item['path'])
    result = dict(changed=bool(changed_paths), changed_paths=changed_paths, backups=backups)
    if p['record']:
        if not module.check_mode:
            write_record(p['record_dir'], p['record'], p['record_fingerprint'],
                         p['absent'] + [item['path'] for item in p['directories'] + p['files']])
        result['skipped_by_record'] = False
    if module._diff:
        result['diff'] = diffs
    module.exit_json(**result)


if __name__ == '__main__':
    main()

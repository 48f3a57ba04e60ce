#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, shipyard.webstack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: audit_log
short_description: Append one JSON line about a deploy to an append-only audit log
version_added: 0.1.0
description:
  - Appends one line of JSON (a record of a deploy, rollback or other operation) to an audit log file,
    creating the file and its directory when missing.
  - The line is written with one C(write) on a file opened with C(O_APPEND), under an exclusive C(flock), so
    lines of writers running at the same time never interleave. Earlier lines are never changed or truncated
    (only the last byte is read); if the file does not end with a newline (a line cut short by a crash), a
    newline is written first.
  - "The record's keys, in this order: C(when), C(event), C(release), C(digest), C(result), C(who), C(host),
    C(run_id), C(durations), C(migrations), C(extra); empty ones are left out."
  - The free-form fields O(durations), O(migrations) and O(extra) are redacted before they are written;
    values under keys that look secret (C(password), C(token), C(secret), C(api_key), C(dsn), ...), the
    values in O(secrets), URL credentials and C(password=...) pairs inside strings are masked, in the file,
    in the result and in the invocation shown at C(-vvv). A string longer than 4096 characters keeps its end
    only, marked C([...]).
  - Every run appends a line, so the task always reports a change.
author:
  - shipyard.webstack contributors (@shipyard-webstack)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details:
      - Builds and returns the record; writes nothing, creates neither the file nor the directory.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  path:
    description:
      - The audit log file (JSON lines).
    type: path
    default: /var/log/shipyard/audit.jsonl
  mode:
    description:
      - Permissions (octal string) of the file when this module creates it. An existing file keeps its own.
    type: str
    default: '0640'
  dir_mode:
    description:
      - Permissions (octal string) of the directory and its missing parents when this module creates them.
    type: str
    default: '0750'
  group:
    description:
      - Group given to the file when this module creates it (for example V(adm), so operators can read it).
    type: str
  event:
    description:
      - What happened, for example V(deploy), V(rollback), V(restore).
    type: str
    default: deploy
  release:
    description:
      - The release (image reference or version) the record is about.
    type: str
    required: true
  digest:
    description:
      - The image digest of the release.
    type: str
  result:
    description:
      - The outcome, for example V(success), V(failed), V(rolled_back).
    type: str
    required: true
  who:
    description:
      - Who ran it, for example C(user@controller). Defaults to the remote user at this host's name.
    type: str
  timestamp:
    description:
      - When it happened (ISO 8601), recorded as C(when). Defaults to now, in UTC, on this host's clock.
    type: str
  host:
    description:
      - The host the record is about (for example C(inventory_hostname)). Defaults to this host's name.
    type: str
  run_id:
    description:
      - The run's identifier (the O(shipyard.webstack.deploy_lock#module:run_id) of the deploy lock).
    type: str
  durations:
    description:
      - Durations in seconds by phase, for example C(pull=12.1), C(migrate=3.4), C(rollout=40.2).
    type: dict
  migrations:
    description:
      - What happened to migrations, free-form; typically the result of P(shipyard.webstack.migration_gate#module)
        (ran, skipped, reason, fingerprint) or a short text. Redacted.
    type: raw
  extra:
    description:
      - Anything else worth keeping, free-form. Redacted.
    type: dict
  secrets:
    description:
      - Values to mask wherever they appear in the free-form fields (for example the database password).
    type: list
    elements: str
    default: []
notes:
  - The module never rotates or trims the log; use logrotate with C(copytruncate) off (the default
    C(create) mode is fine, a new file is created by the next append).
seealso:
  - module: shipyard.webstack.deploy_lock
  - module: shipyard.webstack.migration_gate
'''

EXAMPLES = r'''
- name: Record the deploy on every app host
  shipyard.webstack.audit_log:
    event: deploy
    release: "{{ app_image }}"
    digest: "{{ release_digest }}"
    result: "{{ 'success' if rollout_ok else 'failed' }}"
    who: "{{ deploy_owner }}"
    host: "{{ inventory_hostname }}"
    run_id: "{{ deploy_run_id }}"
    durations:
      pull: "{{ pull_seconds }}"
      rollout: "{{ rollout_seconds }}"
    migrations: "{{ migration | default({}) }}"
    extra:
      previous_release: "{{ previous_digest | default('') }}"
    secrets:
      - "{{ vault_app_db_password }}"
    group: adm
'''

RETURN = r'''
record:
  description: The record appended (in check mode, the one that would be), redacted.
  returned: always
  type: dict
  sample:
    when: "2026-01-31T12:04:11Z"
    event: deploy
    release: registry.example.com/app:1.4.2
    digest: sha256:9f2c0e1c
    result: success
    who: alice@ops-laptop
    host: web1
    run_id: 20260131T120000-4242
    durations: {pull: 12.1, migrate: 3.4, rollout: 40.2}
    migrations: {ran: true, reason: pending according to the status command}
path:
  description: The audit log file.
  returned: always
  type: str
  sample: /var/log/shipyard/audit.jsonl
created:
  description: Whether the file was created by this run.
  returned: always
  type: bool
bytes:
  description: Bytes appended (0 in check mode).
  returned: always
  type: int
  sample: 311
'''

import getpass
import grp
import os
import socket

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.shipyard.webstack.plugins.module_utils import _audit as audit
from ansible_collections.shipyard.webstack.plugins.module_utils._files import ensure_dir


def octal(module, name):
    try:
        value = int(module.params[name], 8)
    except (TypeError, ValueError):
        module.fail_json(msg='%s must be an octal string such as 0640, got %r' % (name, module.params[name]))
    if not 0 <= value <= 0o7777:
        module.fail_json(msg='%s must be between 0000 and 7777' % name)
    return value


def default_who():
    try:
        user = getpass.getuser()
    except Exception:  # pylint: disable=broad-except  # no passwd entry for the uid
        user = str(os.getuid())
    return '%s@%s' % (user, socket.gethostname())


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type='path', default='/var/log/shipyard/audit.jsonl'),
            mode=dict(type='str', default='0640'),
            dir_mode=dict(type='str', default='0750'),
            group=dict(type='str'),
            event=dict(type='str', default='deploy'),
            release=dict(type='str', required=True),
            digest=dict(type='str'),
            result=dict(type='str', required=True),
            who=dict(type='str'),
            timestamp=dict(type='str'),
            host=dict(type='str'),
            run_id=dict(type='str'),
            durations=dict(type='dict'),
            migrations=dict(type='raw'),
            extra=dict(type='dict'),
            secrets=dict(type='list', elements='str', default=[], no_log=True),
        ),
        supports_check_mode=True,
    )
    p = module.params
    mode, dir_mode = octal(module, 'mode'), octal(module, 'dir_mode')
    gid = -1
    if p['group']:
        try:
            gid = grp.getgrnam(p['group']).gr_gid
        except KeyError:
            module.fail_json(msg='group %s does not exist on this host' % p['group'])
    fields = dict(p, when=p['timestamp'] or audit.now_iso(), who=p['who'] or default_who(),
                  host=p['host'] or socket.gethostname())
    record = audit.build_record(fields, p['secrets'])
    # The invocation echoed at -vvv must not carry the free-form fields unredacted.
    shown = dict(p, **dict((key, record.get(key)) for key in ('durations', 'migrations', 'extra')))
    result = dict(changed=True, record=record, path=p['path'], created=False, bytes=0,
                  invocation=dict(module_args=shown))
    if module.check_mode:
        result['created'] = not os.path.exists(p['path'])
        module.exit_json(**result)
    try:
        ensure_dir(os.path.dirname(p['path']), dir_mode)
        result['created'], result['bytes'] = audit.append_line(p['path'], audit.encode_line(record), mode, gid)
    except (IOError, OSError) as exc:
        module.fail_json(msg='cannot append to the audit log %s: %s' % (p['path'], exc), **result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()

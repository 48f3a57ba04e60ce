#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, shipyard.webstack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: proxy_switch
short_description: Point one nginx upstream at a blue/green slot - validate, graceful reload, verify, record
version_added: 0.1.0
description:
  - The slot switch of the C(shipyard.webstack.proxy) role in one call on the host (the role's C(switch) entry
    point uses it; call that rather than this module).
  - Writes O(content) to C(<upstreams_dir>/<upstream>.conf) when the file differs, once the O(validate) program
    accepted the new text. Reloads nginx gracefully (O(reload_command)) when the file changed or nginx does not
    serve O(slot) yet (its health route O(live_url) reports the slot of every upstream), after O(test_command)
    passed; when the test fails the previous file is put back and nothing is reloaded.
  - Then polls the O(verify) checks (HTTP, as in P(shipyard.webstack.health_poll#module)) until all pass within
    O(timeout), and records the slot in C(<state_dir>/<upstream>.slot).
  - Returns the recorded slot of every upstream (C(slots)).
author:
  - shipyard.webstack contributors (@shipyard-webstack)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details:
      - Compares the file and the recorded slot and asks nginx which slot it serves; writes, tests, reloads and
        records nothing, and reports whether a real run would change something.
  diff_mode:
    support: full
    details:
      - Shows the upstream file and the recorded slot before and after.
  platform:
    platforms: posix
options:
  upstream:
    description: Name of the upstream (its file is C(<upstream>.conf), its state C(<upstream>.slot)).
    type: str
    required: true
  slot:
    description: The slot to serve from now on.
    type: str
    required: true
    choices: [blue, green]
  content:
    description: The upstream file for O(slot), as the role renders it.
    type: str
    required: true
  upstreams_dir:
    description: Directory of the upstream files nginx includes.
    type: path
    default: /etc/nginx/shipyard/upstreams
  state_dir:
    description: Directory of the recorded slots.
    type: path
    default: /var/lib/shipyard/proxy
  validate:
    description:
      - Program run as C(<validate> <dest> <candidate>) before a changed file replaces the live one; a non-zero exit
        refuses the file.
    type: path
  test_command:
    description: Tests the whole nginx configuration before a reload.
    type: list
    elements: str
    default: [nginx, -t, -q]
  reload_command:
    description: Reloads nginx gracefully (old workers finish their requests).
    type: list
    elements: str
    default: [systemctl, reload, nginx]
  live_url:
    description:
      - nginx's health route, answering JSON whose C(slots) field names the slot of every upstream. Without it an
        unchanged file is never reloaded.
    type: str
  verify:
    description: HTTP checks that must all pass after the switch (through nginx).
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: Name in messages.
        type: str
        required: true
      url:
        description: URL to request.
        type: str
        required: true
      status_codes:
        description: Statuses that pass (default 200-399).
        type: list
        elements: int
      body_regex:
        description: A regular expression the body must match.
        type: str
      json_field:
        description: Dotted path of a field of the JSON body that must be there.
        type: str
      json_value:
        description: The value O(verify[].json_field) must have.
        type: raw
      headers:
        description: Request headers (for example C(Host)).
        type: dict
      validate_certs:
        description: Verify the TLS certificate.
        type: bool
        default: true
  timeout:
    description: Seconds the O(verify) checks may take to pass.
    type: float
    default: 30
  interval:
    description: Seconds between rounds of the O(verify) checks.
    type: float
    default: 0.2
  require_configured:
    description:
      - Fail when the upstream has no recorded slot (the proxy role has not configured this host). Not checked in
        check mode.
    type: bool
    default: true
notes:
  - Only the files of this one upstream are written; nginx's other configuration is left as it is.
'''

EXAMPLES = r'''
- name: Serve the upstream web from the green slot
  shipyard.webstack.proxy_switch:
    upstream: web
    slot: green
    content: "{{ lookup('ansible.builtin.template', 'upstream.conf.j2') }}"
    validate: /usr/local/sbin/shipyard-proxy-check
    live_url: http://127.0.0.1/__proxy_health
    verify:
      - name: route / through nginx
        url: http://127.0.0.1/
        status_codes: [200]
'''

RETURN = r'''
upstream:
  description: The upstream.
  returned: always
  type: str
  sample: web
from:
  description: The slot recorded before (null when none was).
  returned: always
  type: str
  sample: blue
to:
  description: The slot served now (in check mode, the slot a real run would serve).
  returned: always
  type: str
  sample: green
file_changed:
  description: The upstream file was (or, in check mode, would be) rewritten.
  returned: always
  type: bool
reloaded:
  description: nginx was (or would be) reloaded.
  returned: always
  type: bool
recorded:
  description: The recorded slot was (or would be) changed.
  returned: always
  type: bool
slots:
  description: The recorded slot of every upstream after the switch (in check mode, as recorded now).
  returned: always
  type: dict
  sample: {"web": "green"}
check_mode:
  description: The module ran in check mode (nothing was written).
  returned: always
  type: bool
verify:
  description: The verify checks (name, ok, state, attempts, last error).
  returned: when nginx was reloaded or verified
  type: list
  elements: dict
'''

import os
import re
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_bytes

from ansible_collections.shipyard.webstack.plugins.module_utils._probes import (
    PROBES,
    Check,
    excerpt,
    poll,
    probe_http,
)

SLOT_RE = re.compile(r'^([a-z][a-z0-9_]*)\.slot$')
UPSTREAM_RE = re.compile(r'^[a-z][a-z0-9_]*$')
SLOTS = ('blue', 'green')


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
        match = SLOT_RE.match(entry)
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
        if not os.path.isdir(directory):
            os.makedirs(directory, 0o755)
        module.atomic_move(tmp, path)
        os.chmod(path, mode)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def run_or_fail(module, argv, what, **extra):
    rc, out, err = module.run_command(argv)
    if rc != 0:
        module.fail_json(msg='%s failed (%s, exit %d): %s' % (what, ' '.join(argv), rc, excerpt((err or out).strip(), 600)),
                         **extra)


def verify_checks(items):
    checks = []
    for item in items:
        keys = ('url', 'status_codes', 'body_regex', 'json_field', 'json_value', 'headers', 'validate_certs')
        options = dict((key, item.get(key)) for key in keys)
        checks.append(Check(item['name'], 'http', options, timeout=5))
    return checks


def describe(check):
    report = check.report()
    text = "'%s' (%s): state %s after %d attempt(s)" % (report['name'], report['target'], report['state'], report['attempts'])
    if report['last_error']:
        text += ', last error: %s' % report['last_error']
    body = (report['details'] or {}).get('body_excerpt')
    if body:
        text += '; body: %s' % excerpt(body, 200)
    return text


def main():
    module = AnsibleModule(
        argument_spec=dict(
            upstream=dict(type='str', required=True),
            slot=dict(type='str', required=True, choices=list(SLOTS)),
            content=dict(type='str', required=True),
            upstreams_dir=dict(type='path', default='/etc/nginx/shipyard/upstreams'),
            state_dir=dict(type='path', default='/var/lib/shipyard/proxy'),
            validate=dict(type='path'),
            test_command=dict(type='list', elements='str', default=['nginx', '-t', '-q']),
            reload_command=dict(type='list', elements='str', default=['systemctl', 'reload', 'nginx']),
            live_url=dict(type='str'),
            verify=dict(type='list', elements='dict', default=[], options=dict(
                name=dict(type='str', required=True),
                url=dict(type='str', required=True),
                status_codes=dict(type='list', elements='int'),
                body_regex=dict(type='str'),
                json_field=dict(type='str'),
                json_value=dict(type='raw'),
                headers=dict(type='dict'),
                validate_certs=dict(type='bool', default=True),
            )),
            timeout=dict(type='float', default=30),
            interval=dict(type='float', default=0.2),
            require_configured=dict(type='bool', default=True),
        ),
        supports_check_mode=True,
    )
    p = module.params
    upstream, slot = p['upstream'], p['slot']
    if not UPSTREAM_RE.match(upstream):
        module.fail_json(msg='upstream %r: lower-case letters, digits and _ only, starting with a letter' % upstream)
    if p['timeout'] < 0 or p['interval'] <= 0:
        module.fail_json(msg='timeout must be 0 or more and interval more than 0')

    dest = os.path.join(p['upstreams_dir'], upstream + '.conf')
    state_file = os.path.join(p['state_dir'], upstream + '.slot')
    content = p['content'] if p['content'].endswith('\n') else p['content'] + '\n'
    slots = recorded_slots(p['state_dir'])
    before_slot = slots.get(upstream)
    if before_slot is None and p['require_configured'] and not module.check_mode:
        module.fail_json(msg='upstream %s: this host has no recorded slot for it (%s); apply the '
                             'shipyard.webstack.proxy role (tasks from main) before switching' % (upstream, state_file))

    before_text = read_text(dest)
    file_changed = before_text != content
    # A rewritten file is always loaded; an unchanged one only when nginx does not serve it (written by
    # a run that failed before its reload).
    reload_needed = file_changed or bool(p['live_url'] and not serves_slot(p['live_url'], upstream, slot))
    recorded = before_slot != slot
    result = dict(changed=file_changed or reload_needed or recorded, upstream=upstream, to=slot,
                  file_changed=file_changed, reloaded=reload_needed, recorded=recorded, slots=slots,
                  check_mode=module.check_mode)
    result['from'] = before_slot
    if module._diff:
        result['diff'] = [
            dict(before_header=dest, after_header=dest, before=before_text or '', after=content),
            dict(before_header=state_file, after_header=state_file,
                 before=(before_slot + '\n') if before_slot else '', after=slot + '\n'),
        ]
    if module.check_mode or not result['changed']:
        module.exit_json(**result)

    if file_changed:
        if p['validate']:
            candidate = write_temp(module, content, '.%s.candidate.' % upstream)
            try:
                run_or_fail(module, [p['validate'], dest, candidate], 'the new upstream file was refused by ' + p['validate'])
            finally:
                os.unlink(candidate)
        write_atomic(module, dest, content)
    if reload_needed:
        rc, out, err = module.run_command(p['test_command'])
        if rc != 0:
            # Leave nginx's files as they were: the previous file back, nothing reloaded.
            if file_changed and before_text is not None:
                write_atomic(module, dest, before_text)
            elif file_changed:
                os.unlink(dest)
            module.fail_json(msg='nginx refused its configuration with the new upstream %s (%s, exit %d): %s; the '
                                 'previous file is back, nginx was not reloaded'
                                 % (upstream, ' '.join(p['test_command']), rc, excerpt((err or out).strip(), 600)),
                             **result)
        run_or_fail(module, p['reload_command'], 'the graceful reload of nginx', **result)
    if p['verify']:
        checks = verify_checks(p['verify'])
        outcome = poll(checks, p['timeout'], interval=p['interval'], fail_fast=False, probes=PROBES)
        result['verify'] = [dict((k, v) for k, v in c.report().items() if k in ('name', 'ok', 'state', 'attempts', 'last_error'))
                            for c in checks]
        if not outcome.ok:
            module.fail_json(msg='after switching %s to %s nginx did not answer as expected within %gs: %s; the new '
                                 'slot is not recorded' % (upstream, slot, p['timeout'],
                                                           '. '.join(describe(c) for c in checks if not c.last['ok'])),
                             **result)
    if recorded:
        write_atomic(module, state_file, slot + '\n')
    result['slots'] = dict(slots, **{upstream: slot})
    module.exit_json(**result)


if __name__ == '__main__':
    main()

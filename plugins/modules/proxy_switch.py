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

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.shipyard.webstack.plugins.module_utils._proxy import (
    SLOTS,
    Switch,
    SwitchError,
    apply_switches,
    recorded_slots,
    switch_settings_spec,
)


def main():
    spec = switch_settings_spec()
    spec.update(
        upstream=dict(type='str', required=True),
        slot=dict(type='str', required=True, choices=list(SLOTS)),
        content=dict(type='str', required=True),
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
        require_configured=dict(type='bool', default=True),
    )
    module = AnsibleModule(
        argument_spec=spec,
        supports_check_mode=True,
    )
    p = module.params
    upstream, slot = p['upstream'], p['slot']
    if p['timeout'] < 0 or p['interval'] <= 0:
        module.fail_json(msg='timeout must be 0 or more and interval more than 0')
    slots = recorded_slots(p['state_dir'])
    try:
        switch = Switch(p['upstreams_dir'], p['state_dir'], upstream, slot, p['content'], p['verify'], slots)
    except SwitchError as exc:
        module.fail_json(msg=str(exc))
    if switch.before_slot is None and p['require_configured'] and not module.check_mode:
        module.fail_json(msg='upstream %s: this host has no recorded slot for it (%s); apply the '
                             'shipyard.webstack.proxy role (tasks from main) before switching' % (upstream, switch.state_file))
    switch.look_at_nginx(p['live_url'])
    result = dict(changed=switch.changed, upstream=upstream, to=slot, file_changed=switch.file_changed,
                  reloaded=switch.reload_needed, recorded=switch.recorded, slots=slots, check_mode=module.check_mode)
    result['from'] = switch.before_slot
    if module._diff:
        result['diff'] = switch.diff()
    if module.check_mode or not result['changed']:
        module.exit_json(**result)
    try:
        reports = apply_switches(module, [switch], p['validate'], p['test_command'], p['reload_command'],
                                 p['timeout'], p['interval'])
    except SwitchError as exc:
        if exc.reports:
            result['verify'] = exc.reports
        module.fail_json(msg=str(exc), **result)
    if reports:
        result['verify'] = reports
    result['slots'] = dict(slots, **{upstream: slot})
    module.exit_json(**result)


if __name__ == '__main__':
    main()

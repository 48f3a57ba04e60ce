#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, shipyard.webstack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: role_checks
short_description: Check a role's variables for what its argument spec cannot say
version_added: 0.1.0
description:
  - Runs the checks of one role of this collection over the role's variables as the task sees them (the role's
    defaults, the inventory, extra vars) - formats (C(docker_log_max_size) like C(10m)), ranges
    (C(pgbouncer_min_pool_size) not above the default pool), pairs (a TLS certificate with its key), the shape of
    list items (each C(postgres_hba) entry). The argument spec check names wrong types and missing required
    variables; a check whose input has the wrong type is left to it.
  - Fails with every violation at once, each naming the variable and what is wrong, never its value.
  - Reads the variables itself on the controller, so no value passes through the task's arguments or its result,
    and the task needs no C(no_log) to keep a secret out of the output.
  - The same rules run in C(deploy.yml)'s preflight, for every role a host gets, through the filter
    C(shipyard.webstack.role_check_violations).
  - An action plugin; it runs on the controller and does not connect to the host.
author:
  - shipyard.webstack contributors (@shipyard-webstack)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reads only; the same in check mode.
  diff_mode:
    support: none
  platform:
    platforms: all
options:
  role:
    description:
      - The role whose checks to run.
    type: str
    required: true
    choices: [app, db_backup, docker, pgbouncer, postgres, proxy, redis]
'''

EXAMPLES = r'''
- name: Check the variables (formats, ranges, pairs)
  shipyard.webstack.role_checks:
    role: docker
'''

RETURN = r'''
violations:
  description: 'Each violation, as C(<variable> on <host> (role <role>): <what is wrong>); empty when the variables pass.'
  returned: success and when a check fails
  type: list
  elements: str
  sample: ["docker_log_max_size on app1 (role docker): must be a size like 10m, 500k or 1g"]
'''

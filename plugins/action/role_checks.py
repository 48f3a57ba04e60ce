# -*- coding: utf-8 -*-
# Copyright (c) 2026, shipyard.webstack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action of shipyard.webstack.role_checks (documented in plugins/modules/role_checks.py): a role's
checks of formats, ranges and pairs, on the controller. It reads the variables from the task's own
variables so that no value travels through the task's arguments or its result: the result carries
variable names and what is wrong, which is why the task needs no no_log."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleError
from ansible.plugins.action import ActionBase

from ansible_collections.shipyard.webstack.plugins.plugin_utils.role_checks import (
    role_check_violations, role_checked_variables, undefined_variables,
)


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(('role',))
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        task_vars = task_vars or {}
        role = self._task.args.get('role')
        if not isinstance(role, str) or not role:
            result.update(failed=True, msg='role_checks: role is required (the name of a role of this collection)')
            return result
        try:
            names = role_checked_variables(role)
        except AnsibleError as error:
            result.update(failed=True, msg='role_checks: %s' % error)
            return result
        names = [name for name in names if name in task_vars]
        try:
            # Templated as the role would see them; a variable missing from the task's variables is
            # left out, and the rules that read it are skipped (the argument spec check names it).
            values = dict(zip(names, self._templar.template([task_vars[name] for name in names])))
            violations = role_check_violations(values, role, task_vars.get('inventory_hostname', ''))
        except AnsibleError as error:
            # A template among the variables failed. Its message may quote a value: repeat only the names
            # of undefined variables.
            undefined = undefined_variables(error)
            result.update(failed=True, msg='role_checks: the variables of the role %s could not be evaluated (%s)' % (
                role, ', '.join(undefined) + ' is undefined' if undefined else 'a template in them failed'))
            return result
        result.update(changed=False, violations=violations)
        if violations:
            result.update(failed=True, msg='; '.join(violations))
        else:
            result['msg'] = 'the variables of the role %s pass its checks' % role
        return result

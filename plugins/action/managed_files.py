# -*- coding: utf-8 -*-
# Copyright (c) 2026, shipyard.webstack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action of shipyard.webstack.managed_files: with `record`, a step that asks for what its record says
it asked for last time, on a host where host_state found the record's paths untouched, returns
unchanged on the controller instead of running the module (a module run per role step and host is
most of what a deploy that changes nothing costs). Otherwise the module runs, with the fingerprint it
records."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import secrets

from ansible.plugins.action import ActionBase

from ansible_collections.shipyard.webstack.plugins.module_utils._files import step_fingerprint


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        task_vars = task_vars or {}
        args = dict(self._task.args)
        record = args.get('record')
        if record:
            args.pop('record_fingerprint', None)
            known = self._recorded(task_vars, record)
            salt = known.split('$', 1)[0] if known else secrets.token_hex(16)
            fingerprint = '%s$%s' % (salt, step_fingerprint(salt, args.get('directories'), args.get('files'),
                                                            args.get('absent')))
            if known == fingerprint:
                result.update(changed=False, changed_paths=[], backups={}, skipped_by_record=True,
                              msg='unchanged since the last run (record %s); the module did not run' % record)
                return result
            args['record_fingerprint'] = fingerprint
        result.update(self._execute_module(module_name='shipyard.webstack.managed_files', module_args=args,
                                           task_vars=task_vars))
        return result

    def _recorded(self, task_vars, record):
        """The fingerprint host_state found valid for this record on this task's host, or None."""
        if self._task.delegate_to:
            return None   # the fact describes the inventory host, not the one delegated to
        records = task_vars.get('shipyard_managed_files')
        if not isinstance(records, dict):
            return None
        known = records.get(record)
        return known if isinstance(known, str) and '$' in known else None

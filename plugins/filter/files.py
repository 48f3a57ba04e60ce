# -*- coding: utf-8 -*-
# Copyright (c) 2026, shipyard.webstack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""paths_changed: whether a managed_files run changed one of some paths, so that a role writing several
files in one module run can still restart or reload only for the files that need it."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError


def paths_changed(result, paths):
    """True when the registered managed_files result lists one of paths in its changed_paths.

    A result that did not run (skipped, undefined and defaulted to {}) changed nothing.
    """
    if result is None:
        return False
    if not isinstance(result, dict):
        raise AnsibleFilterError('paths_changed: expects a registered managed_files result (a dict)')
    if isinstance(paths, str):
        paths = [paths]
    changed = set(result.get('changed_paths') or [])
    return any(path in changed for path in paths or [])


class FilterModule(object):
    def filters(self):
        return {'paths_changed': paths_changed}

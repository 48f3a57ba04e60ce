# -*- coding: utf-8 -*-
# Copyright (c) 2026, shipyard.webstack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The roles' checks of formats, ranges and pairs as a filter, for deploy.yml's preflight (which checks
every role a host gets at once). The rules are in plugins/plugin_utils/role_checks.py; a role's own
preflight runs them through the action shipyard.webstack.role_checks. undefined_variables lets the
preflight's rescue repeat what the action repeats of a failed template: the undefined variables' names."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.shipyard.webstack.plugins.plugin_utils.role_checks import role_check_violations, undefined_variables


class FilterModule(object):
    def filters(self):
        return {'role_check_violations': role_check_violations, 'undefined_variables': undefined_variables}

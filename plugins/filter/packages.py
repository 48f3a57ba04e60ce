# -*- coding: utf-8 -*-
# Copyright (c) 2026, shipyard.webstack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the host's state facts (the host_state module's) say a role still has to do.

packages_missing: a role's install task asks apt only when something is missing - an apt run that
finds everything present still costs a module run (and, past the cache time, a refresh of the
package lists), and a deploy runs one per role and host.
package_version: the installed version of a package as the facts know it ('' when they do not), so a
role reads the version on the host only when the facts cannot answer.
unit_settled: a role's "enable and start" task runs only when its unit is not already so - a
systemd_service run that finds nothing to do costs a module run as well.
docker_login_settled: a registry login runs only when the Docker client config does not already hold
the same user name and password (a docker_login run that finds them there still loads the Docker SDK
and asks the daemon).
Without the facts nothing counts as done, so a role applied alone runs those tasks as before.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import hashlib
import hmac

from ansible.errors import AnsibleFilterError

# A name apt resolves itself (a version, a release, a pattern, a file): the facts cannot answer for it.
_APT_SYNTAX = ('=', '/', '*', '?', '[', '>', '<')


def packages_missing(wanted, installed=None):
    """The names in wanted that installed does not list, in wanted's order.

    installed: the names of the installed packages (deploy.yml's shipyard_installed_packages), or
    ansible_facts.packages as package_facts sets it, or None (nothing known).
    """
    if isinstance(wanted, str) or not isinstance(wanted, (list, tuple)):
        raise AnsibleFilterError('packages_missing: expects a list of package names, got %s' % type(wanted).__name__)
    if isinstance(installed, (list, tuple)):
        installed = dict((str(name), True) for name in installed)
    if installed is not None and not isinstance(installed, dict):
        raise AnsibleFilterError('packages_missing: the installed packages must be a list of names or '
                                 'ansible_facts.packages (a dict), got %s' % type(installed).__name__)
    known = installed or {}
    missing = []
    for name in wanted:
        name = str(name)
        if installed is None or any(mark in name for mark in _APT_SYNTAX) or not known.get(name):
            missing.append(name)
    return missing


def package_version(name, versions=None):
    """The version versions lists for the package name, '' when unknown or no facts at all.

    versions: deploy.yml's shipyard_package_versions ({name: version}), or ansible_facts.packages as
    package_facts sets it ({name: [{'version': ...}, ...]}), or None.
    """
    if not isinstance(name, str) or not name:
        raise AnsibleFilterError('package_version: expects a package name, got %r' % (name,))
    if versions is None:
        return ''
    if not isinstance(versions, dict):
        raise AnsibleFilterError('package_version: the versions must be a dict of name: version or '
                                 'ansible_facts.packages, got %s' % type(versions).__name__)
    found = versions.get(name)
    if isinstance(found, (list, tuple)):
        found = found[0].get('version') if found and isinstance(found[0], dict) else None
    return str(found) if found else ''


_UNIT_SUFFIXES = ('.service', '.timer', '.socket', '.target', '.mount', '.path')


def unit_settled(name, units=None, active=True, enabled=True):
    """Whether units shows the unit as asked: active (or not), enabled (or disabled; None: either).
    Unknown units, or no facts at all, are never settled.

    units: host_state's shipyard_units ({unit: {'active': ..., 'enabled': ...}}), or
    ansible_facts.services as service_facts sets it ({unit: {'state': 'running', 'status': 'enabled'}}).
    """
    if not isinstance(name, str) or not name:
        raise AnsibleFilterError('unit_settled: expects a unit name, got %r' % (name,))
    if units is None:
        return False
    if not isinstance(units, dict):
        raise AnsibleFilterError('unit_settled: the units must be host_state\'s shipyard_units (a dict), got %s'
                                 % type(units).__name__)
    if not name.endswith(_UNIT_SUFFIXES):
        name += '.service'
    state = units.get(name)
    if not isinstance(state, dict):
        return False
    if 'active' not in state and 'state' in state:   # service_facts' words for the same
        state = {'active': 'active' if state.get('state') == 'running' else 'inactive', 'enabled': state.get('status')}
    if (state.get('active') == 'active') != bool(active):
        return False
    if enabled is None:
        return True
    return state.get('enabled') == ('enabled' if enabled else 'disabled')


def docker_login_settled(login, logins=None):
    """Whether logins (host_state's shipyard_docker_logins) shows login ({registry, username, password}) stored.

    The stored login is known only as 'salt$sha256(salt + base64(user:password))': the password is compared
    on the controller without the host's copy ever being read back. No facts, or another login: not settled.
    """
    if not isinstance(login, dict):
        raise AnsibleFilterError('docker_login_settled: expects a login (a dict with registry, username and password)')
    if logins is None or not all(login.get(key) for key in ('registry', 'username', 'password')):
        return False
    if not isinstance(logins, dict):
        raise AnsibleFilterError('docker_login_settled: the logins must be shipyard_docker_logins (a dict), got %s'
                                 % type(logins).__name__)
    stored = logins.get(str(login['registry']))
    if not isinstance(stored, str) or '$' not in stored:
        return False
    salt, digest = stored.split('$', 1)
    auth = base64.b64encode(('%s:%s' % (login['username'], login['password'])).encode('utf-8')).decode('ascii')
    return hmac.compare_digest(hashlib.sha256((salt + auth).encode('utf-8')).hexdigest(), digest)


class FilterModule(object):
    def filters(self):
        return {'packages_missing': packages_missing, 'package_version': package_version,
                'unit_settled': unit_settled, 'docker_login_settled': docker_login_settled}

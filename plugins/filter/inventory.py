# -*- coding: utf-8 -*-
# Copyright (c) 2026, shipyard.webstack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Addresses of inventory hosts, for listen addresses and access lists.

The data-tier roles need the same answer in several places: the address a
host is reached at on the private network (postgres and redis listen on it,
pg_hba lets the pgbouncer/app/backup hosts in by it, pgbouncer connects to it).
One definition here keeps them in agreement.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress

from ansible.errors import AnsibleFilterError


def _is_ip(value):
    try:
        ipaddress.ip_address(str(value))
    except ValueError:
        return False
    return True


def private_address(host_vars, name=None):
    """The address other inventory hosts reach this host at.

    Order: the variable ``shipyard_private_address``; the default IPv4 address
    from the gathered facts; ``ansible_host`` when it is an IP address.
    """
    if not hasattr(host_vars, 'get'):
        raise AnsibleFilterError('private_address expects a host\'s variables (hostvars[name]), got %s'
                                 % type(host_vars).__name__)
    label = name or host_vars.get('inventory_hostname', 'this host')
    explicit = host_vars.get('shipyard_private_address')
    if explicit:
        if not _is_ip(explicit):
            raise AnsibleFilterError('%s: shipyard_private_address=%r is not an IP address' % (label, explicit))
        return str(explicit)
    default_ipv4 = host_vars.get('ansible_default_ipv4') or {}
    if default_ipv4.get('address'):
        return str(default_ipv4['address'])
    if _is_ip(host_vars.get('ansible_host', '')):
        return str(host_vars['ansible_host'])
    raise AnsibleFilterError(
        '%s: no private address known: gather its facts in the play (gather_facts or setup), '
        'or set shipyard_private_address for it' % label)


def group_addresses(groups, hostvars, group_names, exclude=None):
    """Sorted, unique private addresses of every host in any of group_names.

    Groups absent from the inventory contribute nothing. Hosts named in
    exclude (for example the server itself, which reaches itself on loopback)
    are left out.
    """
    if isinstance(group_names, str):
        group_names = [group_names]
    exclude = set([exclude] if isinstance(exclude, str) else (exclude or []))
    names = []
    for group in group_names:
        for host in groups.get(group, []):
            if host not in exclude and host not in names:
                names.append(host)
    addresses = set(private_address(hostvars[host], host) for host in names)
    return sorted(addresses, key=lambda a: (ipaddress.ip_address(a).version, ipaddress.ip_address(a)))


class FilterModule(object):
    """Inventory address filters."""

    def filters(self):
        return {
            'private_address': private_address,
            'group_addresses': group_addresses,
        }

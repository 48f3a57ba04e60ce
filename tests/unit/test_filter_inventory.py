"""Inventory address filters: the one definition of a host's private address."""

import os
import sys

import pytest
from ansible.errors import AnsibleFilterError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS = os.path.join(ROOT, '.cache', 'collections')
if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)

from ansible_collections.shipyard.webstack.plugins.filter.inventory import group_addresses, private_address  # noqa: E402

HOSTVARS = {
    'db1': {'inventory_hostname': 'db1', 'ansible_default_ipv4': {'address': '10.0.0.5'}, 'ansible_host': 'db1'},
    'app1': {'inventory_hostname': 'app1', 'ansible_default_ipv4': {'address': '10.0.0.10'},
             'shipyard_private_address': '192.168.1.10'},
    'app2': {'inventory_hostname': 'app2', 'ansible_host': '10.0.0.11'},
    'bare': {'inventory_hostname': 'bare', 'ansible_host': 'bare.example.com'},
}


def test_explicit_address_wins_over_facts():
    assert private_address(HOSTVARS['app1']) == '192.168.1.10'


def test_facts_then_ansible_host():
    assert private_address(HOSTVARS['db1']) == '10.0.0.5'
    assert private_address(HOSTVARS['app2']) == '10.0.0.11'


def test_unknown_address_names_the_host():
    with pytest.raises(AnsibleFilterError, match='bare: no private address known'):
        private_address(HOSTVARS['bare'])


def test_explicit_address_must_be_an_ip():
    with pytest.raises(AnsibleFilterError, match='is not an IP address'):
        private_address({'inventory_hostname': 'x', 'shipyard_private_address': 'db.internal'})


def test_group_addresses_sorted_unique_missing_groups_ignored():
    groups = {'pgbouncer': ['app2', 'app1'], 'app': ['app1', 'app2'], 'postgres': ['db1']}
    assert group_addresses(groups, HOSTVARS, ['pgbouncer', 'app', 'db_backup']) == ['10.0.0.11', '192.168.1.10']
    assert group_addresses(groups, HOSTVARS, 'postgres') == ['10.0.0.5']
    assert group_addresses(groups, HOSTVARS, ['postgres', 'app'], exclude='db1') == ['10.0.0.11', '192.168.1.10']
    assert group_addresses(groups, HOSTVARS, ['nothing']) == []

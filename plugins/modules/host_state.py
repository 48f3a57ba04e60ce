#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, shipyard.webstack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: host_state
short_description: The host's installed packages and systemd units, read once for every role
version_added: 0.3.0
description:
  - Reads the installed Debian packages and their versions (C(dpkg-query)) and the state of the systemd services and timers
    (C(systemctl list-units) and C(systemctl list-unit-files)) in one module run, and sets them as facts.
  - The roles of this collection then skip an C(apt) run when none of their packages is missing, and a
    C(systemd_service) run when their unit is already in the state they want - each of which costs a module run
    per role and host on a deploy where nothing changes. Without these facts (a role applied alone) every such
    task runs as usual.
  - Checks the records of M(shipyard.webstack.managed_files) steps against the paths they name, so their
    unchanged steps need no module run of their own.
  - With O(gather_subset), gathers Ansible's facts in the same module run, so a play needs no
    M(ansible.builtin.setup) run of its own.
  - Reads only; changes nothing.
author:
  - shipyard.webstack contributors (@shipyard-webstack)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.facts
attributes:
  check_mode:
    support: full
    details: Reads the same in check mode.
  diff_mode:
    support: none
  facts:
    support: full
  platform:
    platforms: posix
options:
  gather_subset:
    description:
      - Also gather these subsets of Ansible's facts, as M(ansible.builtin.setup) does with its C(gather_subset)
        (C(min), C(network), C(hardware), ...), in the same module run. Empty gathers none.
    type: list
    elements: str
    default: []
  memory:
    description:
      - Also set C(ansible_memtotal_mb), as the C(hardware) subset of O(gather_subset) sets it, from C(/proc/meminfo)
        alone. The C(hardware) subset also reads every mount, device and DMI entry, which takes much longer.
    type: bool
    default: false
  kernel_settings:
    description:
      - Kernel settings (sysctl names such as C(vm.overcommit_memory)) to read from C(/proc/sys), with whether
        they can be changed here (not in a container, whose C(/proc/sys) is read-only).
    type: list
    elements: str
    default: []
  globs:
    description:
      - Shell-style path patterns (C(/etc/postgresql/*/*/conf.d/50-shipyard.conf)) to look up, each reported with the
        paths that match it.
    type: list
    elements: str
    default: []
  docker_config:
    description:
      - A Docker client configuration (V(~/.docker/config.json) of the user M(community.docker.docker_login) runs as)
        whose stored registry logins to report, each as a salted digest, never the credentials themselves.
      - The docker role then skips a login whose registry already holds the same user name and password.
      - Logins kept by a credential helper (C(credsStore), C(credHelpers)) are not reported.
    type: path
  tcp_ports:
    description:
      - Addresses (V(127.0.0.1:5432)) to try to connect to once, with a one-second timeout, each reported with whether
        it accepted the connection. A quick look, not a wait; M(shipyard.webstack.health_poll) is the one that waits.
    type: list
    elements: str
    default: []
  slurp:
    description:
      - Files to read whole, as M(ansible.builtin.slurp) would (base64), for a read that needs no module run of its
        own. A file that is missing, unreadable or over 1 MiB is left out.
      - Only for files that hold no secret (the facts are kept with the host's variables).
    type: list
    elements: path
    default: []
  file_lines:
    description:
      - Lines to look for, by file path (for example the path V(/etc/redis/redis.conf) with the line
        V(include /etc/redis/shipyard.conf)). Each file is reported with the ones it contains, as whole lines
        (surrounding whitespace ignored).
    type: dict
    default: {}
  managed_files_record_dir:
    description: Where M(shipyard.webstack.managed_files) keeps the records of its steps (its O(shipyard.webstack.managed_files#module:record_dir)).
    type: path
    default: /var/lib/shipyard/managed-files
notes:
  - A fact is C(null) when the host cannot answer for it (no C(dpkg-query), or systemd is not running), which the
    roles read as "nothing known".
'''

EXAMPLES = r'''
- name: Read the installed packages and the units' states
  shipyard.webstack.host_state:

- name: The same, and Ansible's minimal and network facts, in one module run
  shipyard.webstack.host_state:
    gather_subset: [min, network]

- name: Start Redis unless it already runs and starts at boot
  ansible.builtin.systemd_service:
    name: redis-server
    state: started
    enabled: true
  when: not ('redis-server' | shipyard.webstack.unit_settled(shipyard_units | default(none)))
'''

RETURN = r'''
ansible_facts:
  description: The facts set.
  returned: always
  type: complex
  contains:
    ansible_memtotal_mb:
      description: The host's memory in MiB, with O(memory).
      type: int
      returned: when O(memory) is true and C(/proc/meminfo) can be read
      sample: 7951
    shipyard_installed_packages:
      description: Names of the packages dpkg shows installed (status C(ii)); null without dpkg.
      type: list
      elements: str
      sample: [nginx, pgbouncer, redis-server]
    shipyard_package_versions:
      description: The version of each installed package, by name; null without dpkg.
      type: dict
      sample: {"nginx": "1.22.1-9+deb12u1", "pgbouncer": "1.18.0-1"}
    shipyard_globs:
      description: The paths that match each of O(globs), sorted (an empty list when none does).
      type: dict
      sample: {"/etc/postgresql/*/*/conf.d/50-shipyard.conf": ["/etc/postgresql/15/main/conf.d/50-shipyard.conf"]}
    shipyard_docker_logins:
      description:
        - By registry, a salted SHA-256 digest (V(salt$hex)) of the login O(docker_config) stores for it, for
          M(shipyard.webstack.docker_login_settled) to compare with; empty when the file is missing or a credential
          helper keeps the logins; null without O(docker_config).
      type: dict
      sample: {"registry.example.com:5000": "3b1f...$9c2e..."}
    shipyard_tcp_open:
      description: Each address of O(tcp_ports) with whether it accepted a connection.
      type: dict
      sample: {"127.0.0.1:5432": true}
    shipyard_slurped:
      description:
        - Each readable file of O(slurp) by path, as M(ansible.builtin.slurp) returns it (C(content) in base64,
          C(encoding), C(source)).
      type: dict
      sample:
        /var/lib/shipyard/shop/releases.json:
          content: eyJyZWxlYXNlcyI6IFtdfQ==
          encoding: base64
          source: /var/lib/shipyard/shop/releases.json
    shipyard_file_lines:
      description:
        - Each path of O(file_lines) with the given lines it contains (an empty list when the file is missing
          or unreadable).
      type: dict
      sample: {"/etc/redis/redis.conf": ["include /etc/redis/shipyard.conf"]}
    shipyard_kernel_settings:
      description:
        - Each of O(kernel_settings) with its C(value) (whitespace folded; null when the kernel has no such
          setting) and whether it is C(writable) here.
      type: dict
      sample: {"vm.overcommit_memory": {"value": "1", "writable": false}}
    shipyard_managed_files:
      description:
        - The salted fingerprint of every M(shipyard.webstack.managed_files) step whose record still matches the
          host (every path as the step left it), by record name; the step skips its module run when it would ask
          for the same. Empty without records.
        - Keep the task's output hidden (C(no_log)) where its steps write secrets, as the roles do.
      type: dict
      sample: {"postgres-settings": "3f1c...$9a0b..."}
    shipyard_units:
      description:
        - Services and timers by unit name, each with C(active) (its ActiveState) and C(enabled) (its unit file's
          state; null for an instance of a template, which has no file of its own); null when systemd is not
          running.
      type: dict
      sample: {"redis-server.service": {"active": "active", "enabled": "enabled"}}
'''

import base64
import binascii
import glob
import hashlib
import json
import os
import re
import socket

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_text
from ansible.module_utils.facts import ansible_collector, default_collectors
from ansible.module_utils.facts.collector import CollectorNotFoundError, CycleFoundInFactDeps, UnresolvedFactDep
from ansible.module_utils.facts.namespace import PrefixFactNamespace
from ansible_collections.shipyard.webstack.plugins.module_utils._files import RECORDS_DIR, valid_records

_UNIT_TYPES = '--type=service,timer'
_LIST_FLAGS = ['--all', '--full', '--plain', '--no-legend', '--no-pager']


def parse_dpkg(output):
    """dpkg-query's '${db:Status-Abbrev} ${Package} ${Version}' lines -> {name: version} of the installed (ii)."""
    versions = {}
    for line in output.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == 'ii':
            versions[fields[1]] = fields[2] if len(fields) > 2 else ''
    return versions


def _unit_lines(output):
    """The fields of each line, without the status bullet systemctl puts before a failed or missing unit."""
    for line in output.splitlines():
        fields = line.split()
        if fields and not fields[0][:1].isalnum():
            fields = fields[1:]
        if fields:
            yield fields


def parse_units(list_units, list_unit_files):
    """systemctl list-units (UNIT LOAD ACTIVE SUB ...) and list-unit-files (UNIT STATE ...) -> {unit: state}."""
    units = {}
    for fields in _unit_lines(list_unit_files):
        if len(fields) >= 2:
            units[fields[0]] = {'active': 'inactive', 'enabled': fields[1]}
    for fields in _unit_lines(list_units):
        if len(fields) >= 3:
            units.setdefault(fields[0], {'active': 'inactive', 'enabled': None})['active'] = fields[2]
    return units


class Reads(object):
    """The read-only commands (dpkg-query, systemctl), one after the other. Not in parallel: on a host that
    serves while it is deployed to, a burst of processes at once slows the app's requests more than the
    same work in turn (benchmarks/NOTES.md, P1)."""

    def __init__(self, module):
        self.module = module
        dpkg = module.get_bin_path('dpkg-query')
        systemctl = module.get_bin_path('systemctl')
        self.commands = {
            'dpkg': [dpkg, '--show', '--showformat', '${db:Status-Abbrev} ${Package} ${Version}\n'] if dpkg else None,
            'units': [systemctl, 'list-units', _UNIT_TYPES] + _LIST_FLAGS if systemctl else None,
            'unit_files': [systemctl, 'list-unit-files', _UNIT_TYPES] + _LIST_FLAGS if systemctl else None,
        }

    def _run(self, name):
        """(rc, out, err) of the command, or None when it was not found."""
        argv = self.commands[name]
        return None if argv is None else self.module.run_command(argv)

    def packages(self, module):
        finished = self._run('dpkg')
        if finished is None:
            return None
        rc, out, err = finished
        if rc != 0:
            module.fail_json(msg='dpkg-query could not list the installed packages (exit %d): %s' % (rc, err.strip()))
        return parse_dpkg(out)

    def unit_states(self, module):
        units = self._run('units')
        if units is None or units[0] != 0:   # systemd is not PID 1 here: nothing is known, every service task runs
            return None
        unit_files = self._run('unit_files')
        if unit_files[0] != 0:
            module.fail_json(msg='systemctl list-unit-files failed (exit %d): %s' % (unit_files[0], unit_files[2].strip()))
        return parse_units(units[1], unit_files[1])


def memory_facts():
    """ansible_memtotal_mb as the hardware subset computes it, without that subset's mount, device and DMI reads."""
    try:
        with open('/proc/meminfo') as handle:
            for line in handle:
                if line.startswith('MemTotal:'):
                    return {'ansible_memtotal_mb': int(line.split()[1]) // 1024}
    except (IOError, OSError, ValueError, IndexError):
        pass
    return {}


def read_docker_logins(path):
    """{registry: 'salt$sha256(salt + auth)'} of the logins a Docker client config stores in the file itself."""
    if path is None:
        return None
    try:
        with open(path, 'rb') as handle:
            config = json.loads(to_text(handle.read(), errors='surrogate_or_strict'))
    except (IOError, OSError, UnicodeError, ValueError):
        return {}
    if not isinstance(config, dict) or config.get('credsStore'):
        return {}
    helpers = config.get('credHelpers') or {}
    salt = binascii.hexlify(os.urandom(16)).decode('ascii')
    logins = {}
    for registry, entry in (config.get('auths') or {}).items():
        if isinstance(entry, dict) and isinstance(entry.get('auth'), str) and entry['auth'] and registry not in helpers:
            logins[registry] = '%s$%s' % (salt, hashlib.sha256((salt + entry['auth']).encode('utf-8')).hexdigest())
    return logins


_SLURP_LIMIT = 1024 * 1024


def tcp_open(addresses, timeout=1.0):
    """{'host:port': whether a TCP connection to it succeeded, once}."""
    found = {}
    for address in addresses:
        host, port = address.rsplit(':', 1)
        try:
            socket.create_connection((host.strip('[]'), int(port)), timeout=timeout).close()
            found[address] = True
        except (OSError, ValueError):
            found[address] = False
    return found


def slurp_files(paths):
    """{path: slurp's result} of the files that can be read (and are not over _SLURP_LIMIT)."""
    found = {}
    for path in paths:
        try:
            with open(path, 'rb') as handle:
                data = handle.read(_SLURP_LIMIT + 1)
        except (IOError, OSError):
            continue
        if len(data) <= _SLURP_LIMIT:
            found[path] = {'content': base64.b64encode(data).decode('ascii'), 'encoding': 'base64', 'source': path}
    return found


def read_file_lines(wanted):
    """{path: [the wanted lines the file contains]}; [] for a file that cannot be read."""
    found = {}
    for path, lines in wanted.items():
        try:
            with open(path, 'rb') as handle:
                present = set(to_text(line, errors='surrogate_or_strict').strip() for line in handle)
        except (IOError, OSError, UnicodeError):
            present = set()
        found[path] = [line for line in lines if line.strip() in present]
    return found


def read_kernel_settings(names):
    """{name: {value, writable}} from /proc/sys (vm.overcommit_memory -> /proc/sys/vm/overcommit_memory)."""
    settings = {}
    for name in names:
        path = '/proc/sys/' + name.replace('.', '/')
        try:
            with open(path) as handle:
                value = ' '.join(handle.read().split())
        except (IOError, OSError):
            value = None
        settings[name] = dict(value=value, writable=value is not None and os.access(path, os.W_OK))
    return settings


# What ansible.builtin.setup always collects along with the subsets asked for (setup keeps it inside its
# main(); tests/unit/test_host_state.py checks that this copy equals the installed core's).
_MINIMAL_SUBSET = frozenset(['apparmor', 'caps', 'cmdline', 'date_time', 'distribution', 'dns', 'env', 'fips',
                             'local', 'lsb', 'pkg_mgr', 'platform', 'python', 'selinux', 'service_mgr',
                             'ssh_pub_keys', 'user'])


def gather_facts(module, subset):
    """Ansible's own facts of these subsets, named as ansible.builtin.setup names them (one run less)."""
    if not subset:
        return {}
    try:
        collector = ansible_collector.get_ansible_collector(
            all_collector_classes=default_collectors.collectors,
            namespace=PrefixFactNamespace(namespace_name='ansible', prefix='ansible_'),
            filter_spec=[], gather_subset=subset, gather_timeout=10, minimal_gather_subset=_MINIMAL_SUBSET)
    except (TypeError, CollectorNotFoundError, CycleFoundInFactDeps, UnresolvedFactDep) as exc:
        module.fail_json(msg='gather_subset: %s' % to_text(exc))
    return collector.collect(module=module)


def main():
    module = AnsibleModule(argument_spec=dict(
        gather_subset=dict(type='list', elements='str', default=[]),
        memory=dict(type='bool', default=False),
        kernel_settings=dict(type='list', elements='str', default=[]),
        globs=dict(type='list', elements='str', default=[]),
        docker_config=dict(type='path'),
        tcp_ports=dict(type='list', elements='str', default=[]),
        slurp=dict(type='list', elements='path', default=[]),
        file_lines=dict(type='dict', default={}),
        managed_files_record_dir=dict(type='path', default=RECORDS_DIR),
    ), supports_check_mode=True)
    for path, lines in module.params['file_lines'].items():
        if not os.path.isabs(path) or not isinstance(lines, list) or not all(isinstance(line, str) for line in lines):
            module.fail_json(msg='file_lines: %s must be an absolute path with a list of lines' % path)
    for address in module.params['tcp_ports']:
        if not re.match(r'^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9_.-]+):[0-9]{1,5}$', address):
            module.fail_json(msg='tcp_ports: %s is not a host:port address (like 127.0.0.1:5432)' % address)
    for name in module.params['kernel_settings']:
        if not re.match(r'^[a-z0-9_]+(\.[A-Za-z0-9_-]+)+$', name):
            module.fail_json(msg='kernel_settings: %s is not a sysctl name (like vm.overcommit_memory)' % name)
    reads = Reads(module)
    facts = gather_facts(module, module.params['gather_subset'])
    if module.params['memory']:
        facts.update(memory_facts())
    versions = reads.packages(module)
    facts.update(
        shipyard_kernel_settings=read_kernel_settings(module.params['kernel_settings']),
        shipyard_docker_logins=read_docker_logins(module.params['docker_config']),
        shipyard_file_lines=read_file_lines(module.params['file_lines']),
        shipyard_slurped=slurp_files(module.params['slurp']),
        shipyard_tcp_open=tcp_open(module.params['tcp_ports']),
        shipyard_globs=dict((pattern, sorted(glob.glob(pattern))) for pattern in module.params['globs']),
        shipyard_managed_files=valid_records(module.params['managed_files_record_dir']),
        shipyard_installed_packages=sorted(versions) if versions is not None else None,
        shipyard_package_versions=versions,
        shipyard_units=reads.unit_states(module))
    module.exit_json(changed=False, ansible_facts=facts)


if __name__ == '__main__':
    main()

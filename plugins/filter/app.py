# -*- coding: utf-8 -*-
# Copyright (c) 2026, shipyard.webstack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The app's processes, planned once: containers, slot ports and what nginx needs.

``app_processes`` (the app role's variable) says what runs; these filters turn it
into the one plan the app role, the rollout and the proxy role all read, so the
ports a slot publishes and the ports nginx sends traffic to cannot disagree.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import binascii
import json
import re

from ansible.errors import AnsibleFilterError

from ansible_collections.shipyard.webstack.plugins.module_utils._rollout import SLOTS

# Keep equal to roles/app/defaults/main.yml (tests/unit/test_filter_app.py checks it).
DEFAULT_HOST_PORT_BASE = 18000
DEFAULT_SLOT_PORT_OFFSET = 100
DEFAULT_PROCESS = {
    'memory': '1g',
    'cpus': 1.0,
    'stop_timeout': 30,
    'restart_policy': 'always',
    'read_only': False,
    'tmpfs': [],
    'user': '',
    'cap_add': [],
    'env': {},
}
_NAME_RE = re.compile(r'^[a-z][a-z0-9_-]*$')
_KNOWN_KEYS = set(DEFAULT_PROCESS) | {'command', 'ports', 'health'}


def _fail(msg):
    raise AnsibleFilterError('app_processes: ' + msg)


def _upstream_name(process, port, single):
    name = process if single else '%s_%s' % (process, port)
    return re.sub(r'[^a-z0-9_]', '_', name.lower())


def _routes(proc_name, port_name, routes):
    out = []
    for route in routes or []:
        if isinstance(route, str):
            route = {'path': route}
        if not isinstance(route, dict) or not str(route.get('path', '')).startswith('/'):
            _fail('%s.ports[%s].routes: each route is a path starting with / or a dict with one (got %r)'
                  % (proc_name, port_name, route))
        out.append(dict(route))
    return out


def app_process_plan(processes, defaults=None, host_port_base=DEFAULT_HOST_PORT_BASE,
                     slot_port_offset=DEFAULT_SLOT_PORT_OFFSET):
    """app_processes -> list of fully specified processes, slotted (with ports) first, by name.

    Each: name, command (list), slotted, ports (name, container_port, upstream,
    host_ports {blue, green}, routes), health (type http|docker|command|running and its
    fields), memory, cpus, stop_timeout, restart_policy, read_only, tmpfs, user, cap_add, env.
    """
    if not isinstance(processes, dict) or not processes:
        _fail('must be a non-empty dict of process name -> settings, got %r' % (processes,))
    base_defaults = dict(DEFAULT_PROCESS)
    base_defaults.update(defaults or {})
    host_port_base = int(host_port_base)
    slot_port_offset = int(slot_port_offset)
    if slot_port_offset < 1:
        _fail('the slot port offset must be at least 1, got %d' % slot_port_offset)
    plan = []
    next_port = host_port_base
    for name in sorted(processes, key=lambda n: (not (processes[n] or {}).get('ports'), n)):
        spec = processes[name] or {}
        if not _NAME_RE.match(str(name)):
            _fail('process name %r: use lower case letters, digits, "-" and "_", starting with a letter' % (name,))
        if not isinstance(spec, dict):
            _fail('%s must be a dict, got %r' % (name, spec))
        unknown = sorted(set(spec) - _KNOWN_KEYS)
        if unknown:
            _fail('%s has unknown keys %s (known: %s)' % (name, ', '.join(unknown), ', '.join(sorted(_KNOWN_KEYS))))
        proc = {key: spec.get(key, value) for key, value in base_defaults.items()}
        proc['env'] = dict(base_defaults.get('env') or {}, **(spec.get('env') or {}))
        proc['env'] = {str(k): str(v) for k, v in proc['env'].items()}
        command = spec.get('command', [])
        if isinstance(command, str):
            command = command.split()
        proc['name'] = name
        proc['command'] = [str(c) for c in command]
        ports = []
        raw_ports = spec.get('ports') or []
        for index, port in enumerate(raw_ports):
            if not isinstance(port, dict) or 'container_port' not in port:
                _fail('%s.ports[%d] needs container_port (and a name when there are several)' % (name, index))
            port_name = str(port.get('name') or ('http' if len(raw_ports) == 1 else ''))
            if not port_name:
                _fail('%s.ports[%d]: several ports need a name each' % (name, index))
            blue = int(port.get('host_port') or next_port)
            next_port = max(next_port, blue) + 1
            ports.append({
                'name': port_name,
                'container_port': int(port['container_port']),
                'upstream': _upstream_name(name, port_name, len(raw_ports) == 1),
                'host_ports': {'blue': blue, 'green': blue + slot_port_offset},
                'routes': _routes(name, port_name, port.get('routes')),
            })
        if len(set(p['name'] for p in ports)) != len(ports):
            _fail('%s: port names must be unique' % name)
        proc['ports'] = ports
        proc['slotted'] = bool(ports)
        proc['health'] = _health(name, spec.get('health'), ports)
        proc['memory'] = str(proc['memory'])
        proc['cpus'] = float(proc['cpus'])
        proc['stop_timeout'] = int(proc['stop_timeout'])
        proc['tmpfs'] = list(proc['tmpfs'] or [])
        proc['cap_add'] = list(proc['cap_add'] or [])
        proc['user'] = str(proc['user'] or '')
        plan.append(proc)
    _check_ports(plan)
    return plan


def _health(name, health, ports):
    health = dict(health or {})
    if 'path' in health:
        if not ports:
            _fail('%s.health.path needs a port to poll: the process has none' % name)
        port_name = str(health.get('port') or ports[0]['name'])
        port = [p for p in ports if p['name'] == port_name or str(p['container_port']) == port_name]
        if not port:
            _fail('%s.health.port %r is not one of its ports (%s)'
                  % (name, port_name, ', '.join(p['name'] for p in ports)))
        return {'type': 'http', 'path': str(health['path']), 'port': port[0]['name'],
                'status_codes': health.get('status_codes', [200]), 'docker': bool(health.get('docker', True))}
    if 'command' in health:
        command = health['command']
        if isinstance(command, str):
            command = command.split()
        return {'type': 'command', 'command': [str(c) for c in command], 'docker': bool(health.get('docker', False))}
    if health.get('docker'):
        return {'type': 'docker', 'docker': True}
    if health:
        _fail('%s.health: give path (HTTP), command (run inside the container) or docker: true' % name)
    # Nothing said: the image's own HEALTHCHECK if it has one, else "running".
    return {'type': 'docker', 'docker': True}


def _check_ports(plan):
    seen = {}
    for proc in plan:
        for port in proc['ports']:
            for slot in SLOTS:
                number = port['host_ports'][slot]
                where = '%s.%s (%s)' % (proc['name'], port['name'], slot)
                if not 0 < number < 65536:
                    _fail('%s: host port %d is out of range' % (where, number))
                if number in seen:
                    _fail('%s and %s would both publish host port %d; set host_port or leave room'
                          % (seen[number], where, number))
                seen[number] = where


def _as_plan(processes, host_port_base, slot_port_offset):
    if isinstance(processes, list):
        return processes
    return app_process_plan(processes, None, host_port_base, slot_port_offset)


def app_proxy_upstreams(processes, host_port_base=DEFAULT_HOST_PORT_BASE, slot_port_offset=DEFAULT_SLOT_PORT_OFFSET):
    """The proxy role's proxy_upstreams: one upstream per port of every slotted process."""
    upstreams = {}
    for proc in _as_plan(processes, host_port_base, slot_port_offset):
        health = proc['health']
        for port in proc['ports']:
            entry = {slot: ['127.0.0.1:%d' % port['host_ports'][slot]] for slot in SLOTS}
            if health['type'] == 'http' and health['port'] == port['name']:
                entry['check_path'] = health['path']
            upstreams[port['upstream']] = entry
    return upstreams


def app_proxy_routes(processes, host_port_base=DEFAULT_HOST_PORT_BASE, slot_port_offset=DEFAULT_SLOT_PORT_OFFSET):
    """The proxy role's proxy_routes: the routes given on each port, pointing at its upstream."""
    routes = []
    paths = {}
    for proc in _as_plan(processes, host_port_base, slot_port_offset):
        for port in proc['ports']:
            for route in port['routes']:
                if route['path'] in paths:
                    _fail('route %s is given twice (%s and %s.%s)'
                          % (route['path'], paths[route['path']], proc['name'], port['name']))
                paths[route['path']] = '%s.%s' % (proc['name'], port['name'])
                entry = dict(route)
                entry['upstream'] = port['upstream']
                routes.append(entry)
    return sorted(routes, key=lambda r: r['path'])


def app_history_releases(slurped):
    """The releases (oldest first) of releases.json as ansible.builtin.slurp returned it; [] when it was not read
    (no file yet, or a read that was let fail)."""
    if not isinstance(slurped, dict) or 'content' not in slurped:
        return []
    try:
        data = json.loads(base64.b64decode(slurped['content']).decode('utf-8'))
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise AnsibleFilterError('app_history_releases: %s is not a release history (%s)'
                                 % (slurped.get('source') or 'releases.json', exc))
    releases = data.get('releases', []) if isinstance(data, dict) else None
    if not isinstance(releases, list):
        raise AnsibleFilterError('app_history_releases: %s has no list of releases' % (slurped.get('source') or 'releases.json'))
    return releases


def app_running_release(history):
    """The image of the newest release in the history whose rollout succeeded, or 'none'."""
    images = [entry.get('image') for entry in history or [] if isinstance(entry, dict) and entry.get('result') == 'ok']
    return (images[-1] if images else None) or 'none'


def app_history_record(history, entry, keep=50):
    """The history with entry appended, unless the last entry already records the same release
    with the same result (a repeated deploy changes nothing). Oldest entries beyond keep are dropped."""
    history = list(history or [])
    if history:
        last = history[-1]
        if all(last.get(k) == entry.get(k) for k in ('release', 'result')):
            return history
    history.append(dict(entry))
    keep = int(keep)
    return history[-keep:] if keep > 0 else history


def _rolled_back(history):
    return set(e.get('rolled_back_from') for e in history if e.get('rolled_back_from'))


def app_rollback_target(history, current=None):
    """The last good release before the current one: the newest entry with result ok whose
    release is not the current one and was not itself left by a rollback. None if there is none."""
    history = list(history or [])
    if current is None:
        ok = [e for e in history if e.get('result') == 'ok']
        current = ok[-1]['release'] if ok else None
    left = _rolled_back(history)
    for entry in reversed(history):
        if entry.get('result') == 'ok' and entry.get('release') != current and entry.get('release') not in left:
            return entry
    return None


def app_images_to_prune(history, present, keep=3, protect=None):
    """Image ids of earlier releases that may be removed: recorded in the history, present on the
    host, older than the keep newest good releases, and neither protected nor a rollback target."""
    history = list(history or [])
    present = set(present or [])
    protect = set(p for p in (protect or []) if p)
    kept = []
    for entry in reversed(history):
        image_id = entry.get('image_id')
        if entry.get('result') == 'ok' and image_id and image_id not in kept:
            kept.append(image_id)
    kept = set(kept[:int(keep)])
    target = app_rollback_target(history)
    if target:
        protect.add(target.get('image_id'))
    out = []
    for entry in history:
        image_id = entry.get('image_id')
        if image_id and image_id in present and image_id not in kept and image_id not in protect and image_id not in out:
            out.append(image_id)
    return out


class FilterModule(object):
    """App process filters."""

    def filters(self):
        return {
            'app_process_plan': app_process_plan,
            'app_proxy_upstreams': app_proxy_upstreams,
            'app_proxy_routes': app_proxy_routes,
            'app_history_releases': app_history_releases,
            'app_running_release': app_running_release,
            'app_history_record': app_history_record,
            'app_rollback_target': app_rollback_target,
            'app_images_to_prune': app_images_to_prune,
        }

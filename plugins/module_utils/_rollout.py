# -*- coding: utf-8 -*-
# Copyright (c) 2026, shipyard.webstack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The app's blue/green rollout on one host, as pure logic: what to do per process, the container
each new slot gets, and the message of a failed rollout. Private to the collection; used by the
slot_rollout module (the app role's rollout) and unit-tested without Docker.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import json

SLOTS = ('blue', 'green')
DEFAULT_LABEL_PREFIX = 'org.shipyard.webstack'


def config_hash(process, release_id, common, app_name):
    """What a process's container is made of (release, process plan, shared settings), as one
    sha256: a container whose label carries the same hash needs no replacement."""
    blob = json.dumps({'release': release_id, 'process': process, 'common': common, 'name': app_name},
                      sort_keys=True)
    return hashlib.sha256(blob.encode('utf-8')).hexdigest()


def health_checks(proc, container, slot):
    """health_poll checks that a process's new container (in slot) is ready."""
    health = proc.get('health') or {'type': 'docker', 'docker': True}
    checks = []
    if health.get('type') == 'http':
        port = [p for p in proc['ports'] if p['name'] == health.get('port')]
        checks.append({'name': '%s http %s' % (proc['name'], health.get('path', '')),
                       'http': {'url': 'http://127.0.0.1:%d%s' % (port[0]['host_ports'][slot] if port else 0,
                                                                  health.get('path', '')),
                                'status_codes': list(health.get('status_codes') or [200])}})
    if health.get('type') == 'command':
        checks.append({'name': '%s command' % proc['name'],
                       'command': {'argv': ['docker', 'exec', container] + list(health.get('command') or [])}})
    if health.get('type') == 'docker' or health.get('docker'):
        checks.append({'name': '%s container' % proc['name'], 'docker': {'container': container}})
    return checks


def rollout_steps(plan, containers, active_slots, release_id, common, app_name, label_prefix=DEFAULT_LABEL_PREFIX,
                  image_id=None):
    """What the rollout does for every process of the plan on one host.

    containers: the app's containers on the host (Docker's container list: Names, State, Labels, ImageID);
    active_slots: the proxy's active slot per upstream. Per process: the active and idle slots,
    their container names, whether the active one already runs this release with this
    configuration (current: nothing to do; with image_id, its image must be that one too), and the
    health checks of a new container in the idle slot.
    """
    by_name = {}
    for container in containers or []:
        for name in container.get('Names') or []:
            by_name[name.lstrip('/')] = container
    active_slots = active_slots or {}
    steps = []
    for proc in plan:
        names = dict((slot, '%s-%s-%s' % (app_name, proc['name'], slot)) for slot in SLOTS)
        slot_containers = dict((slot, by_name.get(names[slot])) for slot in SLOTS)
        running = [slot for slot in SLOTS if (slot_containers[slot] or {}).get('State') == 'running']
        upstream_slots = [active_slots.get(port['upstream']) for port in proc.get('ports') or []]
        if proc.get('slotted') and upstream_slots and upstream_slots[0] in SLOTS:
            active = upstream_slots[0]          # the slot the proxy serves
        else:
            active = running[0] if running else SLOTS[0]
        idle = [slot for slot in SLOTS if slot != active][0]
        upstreams = [port['upstream'] for port in proc.get('ports') or []] if proc.get('slotted') else []
        config = config_hash(proc, release_id, common, app_name)
        labels = (slot_containers[active] or {}).get('Labels') or {}
        current = (active in running and labels.get(label_prefix + '.config') == config
                   and (not image_id or slot_containers[active].get('ImageID') == image_id)
                   and (not proc.get('slotted') or set(upstream_slots) == set([active])))
        steps.append({
            'name': proc['name'], 'process': proc, 'slotted': bool(proc.get('slotted')),
            'active': active, 'idle': idle,
            'active_container': names[active], 'new_container': names[idle],
            'active_running': active in running, 'active_exists': slot_containers[active] is not None,
            'idle_exists': slot_containers[idle] is not None,
            'hash': config, 'current': current,
            'checks': health_checks(proc, names[idle], idle),
            # The proxy's upstreams to point at the new slot, and back (only where an old one still serves).
            'switch': [{'upstream': u, 'to': idle} for u in upstreams],
            'switch_back': [{'upstream': u, 'to': active, 'from': idle} for u in upstreams if active in running],
            # What the release history and the run's result keep of this step.
            'record': {'process': proc['name'], 'from': active, 'to': idle, 'container': names[idle]},
        })
    return steps


def container_spec(step, release, settings, env, app_name, label_prefix=DEFAULT_LABEL_PREFIX):
    """The new container of a step (for _engine.container_config): the process in its idle slot.

    release: id, ref (what Docker runs), image (the name people read); settings: user, cap_drop,
    security_opts, log_max_size, log_max_file; env: KEY=VALUE lines (the env file, then the process's own).
    """
    proc, slot = step['process'], step['idle']
    merged = {}
    for line in env:   # the process's own env wins over the env file, as with docker run --env-file --env
        name, _sep, value = line.partition('=')
        merged[name] = value
    merged.update((str(k), str(v)) for k, v in (proc.get('env') or {}).items())
    return {
        'image': release['ref'],
        'command': list(proc.get('command') or []),
        'env': ['%s=%s' % (k, v) for k, v in sorted(merged.items())],
        'ports': [{'host_ip': '127.0.0.1', 'host_port': port['host_ports'][slot], 'container_port': port['container_port']}
                  for port in proc.get('ports') or []],
        'memory': proc.get('memory'),
        'memory_swap': proc.get('memory'),
        'cpus': proc.get('cpus'),
        'stop_timeout': proc.get('stop_timeout'),
        'restart_policy': proc.get('restart_policy'),
        'read_only': proc.get('read_only'),
        'tmpfs': list(proc.get('tmpfs') or []),
        'user': proc.get('user') or settings.get('user') or '',
        'cap_drop': list(settings.get('cap_drop') or []),
        'cap_add': list(proc.get('cap_add') or []),
        'security_opts': list(settings.get('security_opts') or []),
        'log_driver': 'json-file',
        'log_options': {'max-size': settings.get('log_max_size'), 'max-file': str(settings.get('log_max_file'))},
        'labels': {label_prefix + '.app': app_name, label_prefix + '.process': step['name'],
                   label_prefix + '.slot': slot, label_prefix + '.release': release['id'],
                   label_prefix + '.image': release['image'], label_prefix + '.config': step['hash']},
    }


def preview(steps, release, done=False):
    """One line per process: what a real run would do (check mode), or did (done)."""
    verbs = ('started', 'switched', 'stopped') if done else ('would start', 'switch', 'stop')
    parts = []
    for s in steps:
        if s['current']:
            parts.append('%s: already runs %s in slot %s: nothing to do' % (s['name'], release['id'], s['active']))
            continue
        text = '%s: %s %s (%s) as %s' % (s['name'], verbs[0], release['image'], release['id'], s['new_container'])
        if s['slotted']:
            text += ', %s the proxy %s -> %s' % (verbs[1], s['active'], s['idle'])
        if s['active_running']:
            text += ' and %s %s' % (verbs[2], s['active_container'])
        parts.append(text)
    return '; '.join(parts)


def _shorten(text, limit):
    text = text or ''
    return text if len(text) <= limit else text[:limit - 3] + '...'


def describe_check(check):
    """A failing check of the rollout's health poll (its report), for the failure message."""
    details = check.get('details') or {}
    text = " Failing check '%s' (%s): state %s after %s attempt(s), last error: %s" % (
        check.get('name'), check.get('target', ''), check.get('state'), check.get('attempts'), check.get('last_error'))
    if check.get('type') == 'http':
        text += '; last HTTP status %s, body: %s' % (details.get('status', 'none'),
                                                     _shorten(details.get('body_excerpt'), 300))
    if details.get('health_log') is not None:
        text += '; Docker health log (last 2): %s' % ' / '.join(
            _shorten(entry.get('output') or '', 200) for entry in details['health_log'][-2:])
    if len(check.get('history') or []) > 1:
        text += '; states seen: %s' % ', '.join(
            '%s from %gs' % (entry['state'], entry['at']) for entry in check['history'])
    return text + '.'


def failure_message(release, failed_at, error, failed_checks, changing, logs, log_lines, problems=(), undone=True):
    """What an operator reads when the rollout on a host failed: where, which checks and why, what was
    undone (nothing when undone is false: the new release already served), and the end of the logs of
    the new containers that failed."""
    text = 'the rollout of %s (%s) failed at %r:' % (release['image'], release['id'], failed_at)
    if failed_checks:
        text += ''.join(describe_check(c) for c in failed_checks)
    else:
        text += ' %s' % error
    old = [s['active_container'] for s in changing if s['active_running']]
    if undone:
        text += ' The new containers %s were removed; %s.' % (
            ', '.join(s['new_container'] for s in changing),
            'the old ones keep serving: ' + ', '.join(old) if old else 'nothing ran there before')
    else:
        text += ' The new containers %s serve.' % ', '.join(s['new_container'] for s in changing)
    for problem in problems:
        text += ' %s.' % problem
    for name in sorted(logs):
        lines = logs[name][-log_lines:] if log_lines > 0 else []
        text += ' Last %d log lines of %s: %s' % (len(lines), name, ' | '.join(lines))
    return text

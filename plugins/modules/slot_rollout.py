#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, shipyard.webstack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: slot_rollout
short_description: Roll a release out on one host in one call - blue/green slots, health gate, proxy switch, drain
version_added: 0.2.0
description:
  - The app role's rollout on a host (its C(service) step uses it; apply the role rather than calling this module).
  - Reads the app's containers (by label) and the proxy's recorded slots, and decides per process whether it already
    runs this release with this configuration (nothing to do) or gets a new container in its idle slot.
  - Starts every new container at once through the Docker Engine API, polls all their health checks together
    (as P(shipyard.webstack.health_poll#module) does), and only when every one is ready switches the proxy's
    upstreams to the new slots (as P(shipyard.webstack.proxy_switch#module) does, one C(nginx -t) and one graceful
    reload for all of them), drains and stops the old containers (SIGTERM, then SIGKILL after their stop timeout).
  - The drain ends when the nginx workers that served before the switch have finished their requests in flight and
    exited, at most O(drain_seconds) after the switch.
  - On any failure before the switch is complete the host is left on the release it ran before. The end of the
    logs of the new containers that failed is read, upstreams already switched go back to the old slots, the new
    containers are removed, and the module fails with a message naming the failing checks, their last states,
    HTTP statuses and bodies and Docker's health log.
  - A container left in an idle slot by an interrupted run is removed first.
author:
  - shipyard.webstack contributors (@shipyard-webstack)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details:
      - Reads the containers and the recorded slots and reports per process what a real run would do (RV(plan));
        starts, switches and stops nothing.
  diff_mode:
    support: none
  platform:
    platforms: posix
requirements:
  - Only the Python standard library on the target; the Docker Engine socket; nginx for the proxy switch.
options:
  app:
    description: The app's name; its containers are C(<app>-<process>-<slot>) and carry the label C(<label_prefix>.app=<app>).
    type: str
    required: true
  label_prefix:
    description: Prefix of the labels put on the app's containers.
    type: str
    default: org.shipyard.webstack
  release:
    description: The release to run.
    type: dict
    required: true
    suboptions:
      id:
        description: The release's id (the image's digest or id); part of every container's configuration hash.
        type: str
        required: true
      ref:
        description: What Docker runs (an image id or a name that resolves to the release on this host).
        type: str
        required: true
      image:
        description: The name people read (repository and tag).
        type: str
        required: true
      image_id:
        description:
          - The image id (C(sha256:...)) of the release on this host. When given, a running container counts as
            current only when it runs this image too, not only when its labels say so (a container re-created by
            hand with the labels of another).
        type: str
  processes:
    description:
      - The app's processes, as the P(shipyard.webstack.app_process_plan#filter) filter plans them (name, command,
        ports with their slot host ports and upstreams, health, limits, hardening).
    type: list
    elements: dict
    required: true
  config_common:
    description: Settings shared by every process, part of each container's configuration hash (a change replaces them).
    type: dict
    default: {}
  container:
    description: What every new container gets besides its process's own settings.
    type: dict
    required: true
    suboptions:
      env_file:
        description: The app's env file on the host (KEY=VALUE lines), read here; its values never leave the host.
        type: path
        required: true
      user:
        description: User the containers run as when a process sets none (empty - the image's user).
        type: str
        default: ''
      cap_drop:
        description: Capabilities to drop.
        type: list
        elements: str
        default: [ALL]
      security_opts:
        description: Docker security options.
        type: list
        elements: str
        default: [no-new-privileges]
      log_max_size:
        description: Size of a json-file log before it is rotated.
        type: str
        default: 10m
      log_max_file:
        description: Rotated log files kept.
        type: int
        default: 3
  health:
    description: The health gate of the new containers.
    type: dict
    default: {}
    suboptions:
      timeout:
        description: Seconds (after O(health.start_period)) the new containers may take to pass every check.
        type: float
        default: 120
      interval:
        description: Seconds between rounds of the checks.
        type: float
        default: 1
      consecutive_successes:
        description:
          - Attempts in a row every check must pass.
          - A C(docker) check counts once, since it reads the status Docker keeps, which changes only when the image's
            HEALTHCHECK runs again (its interval); reading it again in between proves nothing more. When such checks
            are all the gate still waits for, they are read every 0.1 s between rounds, so the gate ends at most
            0.1 s after Docker reports the containers healthy.
        type: int
        default: 3
      start_period:
        description: Seconds after the start in which failures do not count.
        type: float
        default: 0
      check_timeout:
        description: Seconds one attempt of a check may take.
        type: float
        default: 5
  proxy:
    description:
      - The proxy the slotted processes sit behind. Needed when a process has ports; its upstreams must have a
        recorded slot (the proxy role configured them).
    type: dict
    suboptions:
      upstreams:
        description:
          - Every upstream in every slot it can switch to - C(upstream), C(slot), C(content) (the upstream file
            pointing at that slot) and C(verify) (HTTP checks through nginx after the switch, each with C(name), C(url)
            and optionally C(status_codes), C(body_regex), C(json_field), C(json_value), C(headers), C(validate_certs)).
          - The proxy role's C(switch_plan) entry point renders them.
        type: list
        elements: dict
        required: true
      upstreams_dir:
        description: Directory of the upstream files nginx includes.
        type: path
        default: /etc/nginx/shipyard/upstreams
      state_dir:
        description: Directory of the recorded slots.
        type: path
        default: /var/lib/shipyard/proxy
      validate:
        description: Program run as C(<validate> <dest> <candidate>) before a changed upstream file goes live.
        type: path
      test_command:
        description: Tests the whole nginx configuration before the reload.
        type: list
        elements: str
        default: [nginx, -t, -q]
      reload_command:
        description: Reloads nginx gracefully.
        type: list
        elements: str
        default: [systemctl, reload, nginx]
      live_url:
        description: nginx's health route (its JSON C(slots) field names the slot of every upstream).
        type: str
      pid_file:
        description: nginx's pid file; the workers of its master before the reload are the ones the drain waits for.
        type: path
        default: /run/nginx.pid
      timeout:
        description: Seconds the verify checks may take after the reload.
        type: float
        default: 30
      interval:
        description: Seconds between rounds of the verify checks.
        type: float
        default: 0.2
  drain_seconds:
    description:
      - At most this long after the switch the old containers keep running, for the requests nginx's old workers still
        have in flight; the drain ends earlier once those workers have exited. Without nginx's pid file the whole time
        is waited. C(0) stops the old containers right after the switch.
    type: float
    default: 10
  log_lines:
    description: Lines of the end of a failing container's log in the failure message.
    type: int
    default: 20
  docker_host:
    description: The Docker Engine socket.
    type: str
    default: unix:///var/run/docker.sock
notes:
  - Values of the env file whose names look secret (password, secret, token, key, credentials in URLs) are masked
    in the log lines and messages the module returns.
seealso:
  - module: shipyard.webstack.health_poll
  - module: shipyard.webstack.proxy_switch
'''

EXAMPLES = r'''
- name: Roll the release out on this host
  shipyard.webstack.slot_rollout:
    app: shop
    release: {id: "sha256:4f1c...", ref: "sha256:4f1c...", image: "registry.example.com/shop:1.4.2"}
    processes: "{{ app_processes | shipyard.webstack.app_process_plan }}"
    container:
      env_file: /etc/shipyard/shop/app.env
    health: {timeout: 60, interval: 0.5, consecutive_successes: 3}
    proxy: "{{ proxy_switch_plan }}"
    drain_seconds: 10
  register: rollout
'''

RETURN = r'''
plan:
  description: Per process, what the run does (in check mode, what a real run would do).
  returned: always
  type: str
  sample: "web: would start shop:1.4.2 (sha256:4f1c...) as shop-web-green, switch the proxy blue -> green and stop shop-web-blue"
steps:
  description: Per process - name, current (already runs this release), active and idle slot, the new and the old container.
  returned: always
  type: list
  elements: dict
processes:
  description: What the release history keeps of every replaced process (process, from, to, container, health_seconds).
  returned: always
  type: list
  elements: dict
  sample: [{"process": "web", "from": "blue", "to": "green", "container": "shop-web-green", "health_seconds": 2.1}]
health:
  description: The health poll of the new containers (checks as health_poll reports them, elapsed, rounds, ready).
  returned: when new containers were started
  type: dict
switches:
  description: The upstreams switched (upstream, from, to, reloaded) and the verify checks.
  returned: when the proxy was switched
  type: list
  elements: dict
images:
  description:
    - The ids of the images on the host after the rollout, sorted (the app role's pruning of older releases reads them
      instead of listing the images again).
    - Null, with a warning, when Docker could not list them; the role then prunes nothing this time.
  returned: when the rollout did not fail, outside check mode
  type: list
  elements: str
  sample: ["sha256:4f1c7e0b2a9d..."]
timings:
  description: Seconds each phase took (start, health, switch, drain, stop; rescue on failure).
  returned: always
  type: dict
  sample: {"start": 0.6, "health": 2.1, "switch": 0.3, "drain": 0.1, "stop": 0.4}
failure:
  description:
    - On failure - processes, failed_at (start, health, switch, drain or stop), checks (the failing checks' reports),
      logs (container name to its last lines) and message.
  returned: on failure
  type: dict
check_mode:
  description: The module ran in check mode (nothing was changed).
  returned: always
  type: bool
'''

import re
import threading
import time
import traceback

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.shipyard.webstack.plugins.module_utils._engine import (
    Engine,
    EngineError,
    container_config,
    parse_env_file,
)
from ansible_collections.shipyard.webstack.plugins.module_utils._probes import PROBES, Check, poll
from ansible_collections.shipyard.webstack.plugins.module_utils._proxy import (
    Switch,
    SwitchError,
    apply_switches,
    nginx_workers,
    recorded_slots,
    switch_settings_spec,
    wait_exited,
)
from ansible_collections.shipyard.webstack.plugins.module_utils._redact import redact
from ansible_collections.shipyard.webstack.plugins.module_utils._rollout import (
    container_spec,
    failure_message,
    preview,
    rollout_steps,
)

SECRET_NAME_RE = re.compile(r'pass|secret|token|key|credential|auth|_url$|^url$|dsn', re.I)
CHECK_KINDS = ('http', 'docker', 'command')


class RolloutFailure(Exception):
    def __init__(self, phase, message, checks=None):
        super(RolloutFailure, self).__init__(message)
        self.phase = phase
        self.checks = checks or []


def env_secrets(env_lines):
    """Values of the env file worth masking: those of secret-looking names, and passwords inside URLs."""
    secrets = []
    for line in env_lines:
        name, _sep, value = line.partition('=')
        if value and SECRET_NAME_RE.search(name):
            secrets.append(value)
        match = re.search(r'://[^:/@\s]*:([^@\s/]+)@', value)
        if match:
            secrets.append(match.group(1))
    return [s for s in secrets if len(s) >= 4]


def in_parallel(items, work):
    """work(item) for every item in its own thread; returns [(item, exception or None)] in order."""
    outcomes = [None] * len(items)

    def run(index):
        try:
            work(items[index])
        except Exception as exc:  # reported by the caller with the container's name
            outcomes[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(items))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return list(zip(items, outcomes))


def build_checks(steps, check_timeout):
    checks = []
    for step in steps:
        for item in step['checks']:
            kind = [k for k in CHECK_KINDS if k in item][0]
            checks.append(Check(item['name'], kind, item[kind], check_timeout))
    return checks


class Rollout(object):
    """One host's rollout: the phases, and the rescue that puts the host back when one fails."""

    def __init__(self, module, engine, steps):
        self.module = module
        self.params = module.params
        self.engine = engine
        self.steps = steps
        self.changing = [s for s in steps if not s['current']]
        self.timings = {}
        self.health = None
        self.switches = []
        self.attempted = []
        self.secrets = []
        self.created = []

    def timed(self, phase, work):
        began = time.monotonic()
        try:
            return work()
        finally:
            self.timings[phase] = round(time.monotonic() - began, 3)

    def proxy(self):
        return self.params['proxy'] or {}

    # --- phases -------------------------------------------------------------------------------
    def remove_leftovers(self):
        leftovers = [s for s in self.steps if s['idle_exists']]
        for step, exc in in_parallel(leftovers, lambda s: self._stop_and_remove(s['new_container'], s)):
            if exc is not None:
                self.module.fail_json(msg='could not remove %s, left in an idle slot by an earlier run: %s'
                                          % (step['new_container'], exc), timings=self.timings)
        return leftovers

    def _stop_and_remove(self, name, step):
        self.engine.stop(name, step['process'].get('stop_timeout') or 10)
        self.engine.remove(name, force=True)

    def start(self):
        settings = self.params['container']
        try:
            with open(settings['env_file'], 'rb') as handle:
                env = parse_env_file(handle.read().decode('utf-8'))
        except (IOError, OSError, ValueError) as exc:
            raise RolloutFailure('start', 'cannot read the env file %s: %s' % (settings['env_file'], exc))
        self.secrets = env_secrets(env)
        release, app, prefix = self.params['release'], self.params['app'], self.params['label_prefix']

        def create_and_start(step):
            config = container_config(container_spec(step, release, settings, env, app, prefix))
            self.engine.create(step['new_container'], config)
            self.created.append(step['new_container'])   # from here on the rescue removes it
            self.engine.start(step['new_container'])

        failed = ['%s: %s' % (step['new_container'], exc)
                  for step, exc in in_parallel(self.changing, create_and_start) if exc is not None]
        if failed:
            raise RolloutFailure('start', 'Docker did not start ' + '; '.join(failed))

    def wait_healthy(self):
        health = self.params['health']
        checks = build_checks(self.changing, health['check_timeout'])
        outcome = poll(checks, health['timeout'], interval=health['interval'], start_period=health['start_period'],
                       consecutive_successes=health['consecutive_successes'], fail_fast=True, probes=PROBES)
        self.health = dict(checks=[c.report() for c in checks], elapsed=round(outcome.elapsed, 3),
                           rounds=outcome.rounds, ready=outcome.ok)
        if not outcome.ok:
            failing = [c for c in self.health['checks'] if not c['ok']]
            if not failing:   # every check passed the last round, but not enough rounds in a row
                failing = [c.report() for c in checks if c.last_failure]
            raise RolloutFailure('health', 'the new containers did not become healthy within %gs' % health['timeout'],
                                 failing)

    def _switches(self, moves):
        proxy = self.proxy()
        slots = recorded_slots(proxy['state_dir'])
        switches = []
        targets = dict(((t.get('upstream'), t.get('slot')), t) for t in proxy['upstreams'])
        for move in moves:
            spec = targets.get((move['upstream'], move['to']))
            if not spec or 'content' not in spec:
                raise SwitchError('proxy.upstreams has no %s slot for the upstream %s' % (move['to'], move['upstream']))
            switches.append(Switch(proxy['upstreams_dir'], proxy['state_dir'], move['upstream'], move['to'],
                                   spec['content'], spec.get('verify'), slots))
        return switches

    def _apply(self, switches):
        proxy = self.proxy()
        for switch in switches:
            switch.look_at_nginx(proxy.get('live_url'))
        reloading = any(s.reload_needed for s in switches)
        workers = nginx_workers(proxy['pid_file']) if reloading else []
        reports = apply_switches(self.module, switches, proxy.get('validate'), proxy['test_command'],
                                 proxy['reload_command'], proxy['timeout'], proxy['interval'])
        return reloading, workers, reports

    def switch(self):
        moves = [move for step in self.changing for move in step['switch']]
        if not moves:
            return None
        if not self.params['proxy']:
            raise RolloutFailure('switch', 'the processes %s have ports but no proxy was given'
                                 % ', '.join(s['name'] for s in self.changing if s['switch']))
        try:
            switches = self._switches(moves)
            self.attempted = switches
            reloading, workers, reports = self._apply(switches)
        except SwitchError as exc:
            raise RolloutFailure('switch', str(exc))
        self.switches = [dict(upstream=s.upstream, to=s.slot, reloaded=s.reload_needed, verify=reports, **{'from': s.before_slot})
                         for s in switches]
        return reloading, workers

    def drain(self, switched):
        seconds = self.params['drain_seconds']
        served_before = any(step['switch_back'] for step in self.changing)
        if not switched or not served_before or seconds <= 0:
            return
        reloading, workers = switched
        if not reloading:
            return
        if workers:
            wait_exited(workers, seconds)
        else:
            time.sleep(seconds)   # nginx's workers cannot be seen: the whole drain

    def stop_old(self):
        old = [s for s in self.changing if s['active_exists']]
        failed = ['%s: %s' % (step['active_container'], exc)
                  for step, exc in in_parallel(old, lambda s: self._stop_and_remove(s['active_container'], s))
                  if exc is not None]
        if failed:
            raise RolloutFailure('stop', 'the new release serves, but the old containers could not be removed: '
                                 + '; '.join(failed))

    # --- failure ------------------------------------------------------------------------------
    def rescue(self, failure):
        problems = []
        logs = {}
        failing = set(c['name'] for c in failure.checks)
        for step in self.changing:
            names = set(c['name'] for c in step['checks'])
            if step['new_container'] in self.created and (not failing or names & failing):
                try:
                    logs[step['new_container']] = [redact(line, self.secrets)
                                                   for line in self.engine.logs(step['new_container'], self.params['log_lines'])]
                except EngineError as exc:
                    problems.append('the log of %s could not be read: %s' % (step['new_container'], exc))
        if failure.phase == 'stop':
            return logs, problems   # the switch is done and serves: nothing to undo
        back = [move for step in self.changing for move in step['switch_back']
                if move['upstream'] in set(s.upstream for s in self.attempted)]
        if back:
            try:
                self._apply(self._switches(back))
            except SwitchError as exc:
                problems.append('switching the proxy back failed: %s' % exc)
        for step, exc in in_parallel([s for s in self.changing if s['new_container'] in self.created],
                                     lambda s: self.engine.remove(s['new_container'], force=True)):
            if exc is not None:
                problems.append('%s could not be removed: %s' % (step['new_container'], exc))
        return logs, problems


def step_summary(step):
    keys = ('name', 'current', 'active', 'idle', 'new_container', 'active_container', 'active_running', 'slotted')
    return dict((key, step[key]) for key in keys)


def argument_spec():
    return dict(
        app=dict(type='str', required=True),
        label_prefix=dict(type='str', default='org.shipyard.webstack'),
        release=dict(type='dict', required=True, options=dict(
            id=dict(type='str', required=True),
            ref=dict(type='str', required=True),
            image=dict(type='str', required=True),
            image_id=dict(type='str'),
        )),
        processes=dict(type='list', elements='dict', required=True),
        config_common=dict(type='dict', default={}),
        container=dict(type='dict', required=True, options=dict(
            env_file=dict(type='path', required=True),
            user=dict(type='str', default=''),
            cap_drop=dict(type='list', elements='str', default=['ALL']),
            security_opts=dict(type='list', elements='str', default=['no-new-privileges']),
            log_max_size=dict(type='str', default='10m'),
            log_max_file=dict(type='int', default=3),
        )),
        health=dict(type='dict', default={}, options=dict(
            timeout=dict(type='float', default=120),
            interval=dict(type='float', default=1),
            consecutive_successes=dict(type='int', default=3),
            start_period=dict(type='float', default=0),
            check_timeout=dict(type='float', default=5),
        )),
        proxy=dict(type='dict', options=dict(
            switch_settings_spec(),
            upstreams=dict(type='list', elements='dict', required=True),
            pid_file=dict(type='path', default='/run/nginx.pid'),
        )),
        drain_seconds=dict(type='float', default=10),
        log_lines=dict(type='int', default=20),
        docker_host=dict(type='str', default='unix:///var/run/docker.sock'),
    )


def validate(module):
    p = module.params
    problems = []
    health = p['health']
    if health['timeout'] < 0:
        problems.append('health.timeout must be 0 or more')
    if health['interval'] <= 0:
        problems.append('health.interval must be more than 0')
    if health['consecutive_successes'] < 1:
        problems.append('health.consecutive_successes must be 1 or more')
    if health['start_period'] < 0 or health['check_timeout'] <= 0:
        problems.append('health.start_period must be 0 or more and health.check_timeout more than 0')
    if p['drain_seconds'] < 0:
        problems.append('drain_seconds must be 0 or more')
    if p['log_lines'] < 0:
        problems.append('log_lines must be 0 or more')
    for index, proc in enumerate(p['processes']):
        missing = [key for key in ('name', 'ports', 'health', 'slotted') if key not in proc]
        if missing:
            problems.append('processes[%d] lacks %s: give the app_process_plan filter\'s plan' % (index, ', '.join(missing)))
    if problems:
        module.fail_json(msg='; '.join(problems))


def image_ids(module, engine):
    """The images on the host for the role's pruning; None (with a warning: nothing is pruned) when Docker does not say."""
    try:
        return engine.image_ids()
    except (ValueError, EngineError) as exc:
        module.warn('cannot list the images after the rollout: %s' % exc)
        return None


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    p = module.params
    validate(module)
    release = p['release']
    try:
        engine = Engine(p['docker_host'])
        containers = engine.containers('%s.app=%s' % (p['label_prefix'], p['app']))
    except (ValueError, EngineError) as exc:
        module.fail_json(msg='cannot read the containers of %s: %s' % (p['app'], exc))
    slots = recorded_slots(p['proxy']['state_dir']) if p['proxy'] else {}
    steps = rollout_steps(p['processes'], containers, slots, release['id'], p['config_common'], p['app'],
                          p['label_prefix'], image_id=release.get('image_id'))
    rollout = Rollout(module, engine, steps)
    result = dict(changed=bool(rollout.changing or [s for s in steps if s['idle_exists']]), plan=preview(steps, release),
                  steps=[step_summary(s) for s in steps], processes=[], timings=rollout.timings,
                  check_mode=module.check_mode)
    if module.check_mode:
        module.exit_json(msg=result['plan'], **result)
    rollout.timed('leftovers', rollout.remove_leftovers)
    if not rollout.changing:
        module.exit_json(msg=result['plan'], images=image_ids(module, engine), **result)
    phase = 'start'
    try:
        rollout.timed('start', rollout.start)
        phase = 'health'
        rollout.timed('health', rollout.wait_healthy)
        phase = 'switch'
        switched = rollout.timed('switch', rollout.switch)
        phase = 'drain'
        rollout.timed('drain', lambda: rollout.drain(switched))
        phase = 'stop'
        rollout.timed('stop', rollout.stop_old)
    except Exception as exc:  # every failure leaves the host on its old release, then fails the module
        failure = exc if isinstance(exc, RolloutFailure) else RolloutFailure(
            phase, redact('%s: %s' % (type(exc).__name__, exc), rollout.secrets))
        logs, problems = rollout.timed('rescue', lambda: rollout.rescue(failure))
        message = failure_message(release, failure.phase, str(failure), failure.checks, rollout.changing, logs,
                                  p['log_lines'], problems, undone=failure.phase != 'stop')
        result['failure'] = dict(processes=[s['name'] for s in rollout.changing], failed_at=failure.phase,
                                 checks=failure.checks, logs=logs, message=redact(message, rollout.secrets))
        if rollout.health:
            result['health'] = rollout.health
        if not isinstance(exc, RolloutFailure):
            result['exception'] = redact(traceback.format_exc(), rollout.secrets)
        module.fail_json(msg=result['failure']['message'], **result)
    health_seconds = rollout.health['elapsed'] if rollout.health else None
    result.update(processes=[dict(s['record'], health_seconds=health_seconds) for s in rollout.changing],
                  health=rollout.health, switches=rollout.switches, msg=preview(steps, release, done=True),
                  images=image_ids(module, engine))
    module.exit_json(**result)


if __name__ == '__main__':
    main()

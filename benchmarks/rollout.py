"""Rollout benchmarks P1-P4 (issue 9), measured side by side in one run on the four hosts of the
molecule scenario `rollout` (db1, cache1, app1 on Debian 12, app2 on Debian 13; the reference app):

  P3  first converge of playbooks/deploy.yml, then a no-op rerun: changed tasks, time ratio
  P1  failed requests and p99 latency during a two-host rolling deploy (v1 -> v2) under steady load,
      against the naive flow (stop old, start new, fixed sleep) under the same load on the same hosts
  P2  rollout time per host minus the app's own boot-to-healthy time
  P4  a release that never becomes healthy: detect-and-revert time minus the health timeout,
      failed requests meanwhile

The load comes from cache1 (molecule/_shared/files/loadgen.py: two workers per proxy, one
keep-alive, one connection per request, each at --rate requests/s); only the scenario's hosts
are targeted, the run is bounded. The hosts are created here and destroyed at the end
(--keep leaves them). Do not run it while the rollout scenario runs from the same checkout
(molecule keys its state by checkout and scenario).

The controller (this script, molecule, ansible-playbook and its forks) runs at nice 10 by default
(--controller-nice): in production it is a machine of its own (a CI runner, a laptop), here it
shares the machine's cores with the four hosts and the load generator, and its own CPU time
(~0.5 s per task and host) would otherwise be measured as the app's latency. The module runs
on the hosts are not reniced (Docker starts them, not the controller): the deploy's work on the
app hosts is measured. For the same reason the load generator runs at nice -10 (--load-nice): in
production the clients are elsewhere, here a client waiting for a core would count its own
delay as the servers' latency.

Usage: python benchmarks/rollout.py [--rate 40] [--keep] [--json results.json]
"""
import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, '.venv', 'bin')
sys.path.insert(0, os.path.join(ROOT, 'tests', 'functional'))
from deploy_runs import changed_tasks  # noqa: E402  pylint: disable=wrong-import-position
HEALTH_TIMEOUT = 25          # molecule/rollout/molecule.yml: app_health_timeout
GOALS = {'P1_failed': 0, 'P1_p99_ratio': 2.0, 'P2': 3.0, 'P3': 0.25, 'P4': 5.0}


def env():
    run_id = os.environ.get('SHIPYARD_RUN_ID') or 'bench%d' % os.getpid()
    return dict(os.environ, PATH=BIN + os.pathsep + os.environ['PATH'], SHIPYARD_RUN_ID=run_id,
                ANSIBLE_CONFIG=os.path.join(ROOT, 'ansible.cfg'), ANSIBLE_FORCE_COLOR='0', PY_COLORS='0',
                ANSIBLE_NOCOLOR='1', ANSIBLE_CALLBACK_RESULT_FORMAT='json')  # summary() reads JSON results


def molecule(action, log):
    with open(log, 'a', encoding='utf-8') as out:
        started = time.monotonic()
        rc = subprocess.call([os.path.join(BIN, 'molecule'), action, '-s', 'rollout'], cwd=ROOT, env=env(),
                             stdout=out, stderr=subprocess.STDOUT)
    if rc != 0:
        sys.exit('molecule %s failed (exit %d): see %s' % (action, rc, log))
    return time.monotonic() - started


def ephemeral_dir():
    marker = 'shipyard-%s-rollout-' % env()['SHIPYARD_RUN_ID']
    for inventory in glob.glob(os.path.expanduser('~/.ansible/tmp/molecule.*.rollout/inventory/ansible_inventory.yml')):
        with open(inventory, encoding='utf-8') as handle:
            if marker in handle.read():
                return os.path.dirname(os.path.dirname(inventory))
    sys.exit('cannot find the scenario state of run %s' % env()['SHIPYARD_RUN_ID'])


def summary(output):
    """The last deploy summary's message (the debug task's JSON) from ansible-playbook output."""
    at = output.rfind('TASK [Deploy | Summary]')
    if at < 0:
        return {}
    at = output.find('"msg": ', at)
    return json.JSONDecoder().raw_decode(output[at + len('"msg": '):])[0] if at >= 0 else {}


def host_results_per_play(output):
    """{play name: results that ran (ok or changed, one per host and task or loop item)} from the
    default callback's output; plays of the same name (the rollout's batches) add up. Where the
    no-op's time goes: each result is a task's round on a host."""
    counts, play = {}, None
    for line in output.splitlines():
        match = re.match(r'PLAY \[(.*)\] \*+', line)
        if match:
            play = match.group(1)
        elif play and re.match(r'(ok|changed): \[', line):
            counts[play] = counts.get(play, 0) + 1
    return counts


def percentile(values, pct):
    ordered = sorted(values)
    if not ordered:
        return float('nan')
    return ordered[min(len(ordered) - 1, int(round(pct / 100.0 * (len(ordered) - 1))))]


def load_figures(step):
    load = step['load']
    latencies = [ms for url in load['urls'].values() for ms in url['latencies_ms']]
    return {'requests': load['total'], 'failed': load['failed'], 'p50_ms': percentile(latencies, 50),
            'p99_ms': percentile(latencies, 99), 'max_ms': max(latencies) if latencies else float('nan'),
            'failures': [f for url in load['urls'].values() for f in url['failures']][:5]}


def read(results, name):
    with open(os.path.join(results, name + '.json'), encoding='utf-8') as handle:
        return json.load(handle)


def measure(args, log):
    molecule('destroy', log)
    molecule('create', log)
    molecule('prepare', log)
    with open(log, encoding='utf-8') as handle:
        before = len(handle.read())
    molecule('converge', log)
    with open(log, encoding='utf-8') as handle:
        converge_output = handle.read()[before:]
    first = summary(converge_output)
    state = ephemeral_dir()
    # Outside molecule's state folder: `molecule destroy` removes that one.
    results = os.path.join(os.path.dirname(log), 'bench-rollout-results')
    shutil.rmtree(results, ignore_errors=True)
    cmd = [os.path.join(BIN, 'ansible-playbook'), '-i', os.path.join(state, 'inventory'),
           os.path.join(ROOT, 'benchmarks', 'rollout', 'bench.yml'),
           '-e', 'bench_results=%s' % results, '-e', 'bench_inventory=%s' % os.path.join(state, 'inventory'),
           '-e', 'bench_rate=%s' % args.rate, '-e', 'bench_load_nice=%d' % args.load_nice]
    # The scenario's variables read molecule's environment (the registry's test CA lives in its state folder).
    bench_env = dict(env(), MOLECULE_EPHEMERAL_DIRECTORY=state, MOLECULE_PROJECT_DIRECTORY=ROOT,
                     MOLECULE_SCENARIO_DIRECTORY=os.path.join(ROOT, 'molecule', 'rollout'))
    with open(log, 'a', encoding='utf-8') as out:
        rc = subprocess.call(cmd, cwd=ROOT, env=bench_env, stdout=out, stderr=subprocess.STDOUT)
    if rc != 0:
        sys.exit('the benchmark playbook failed (exit %d): see %s' % (rc, log))
    return first, results


def report(first, results):
    noop, steady, rolling, broken, naive = (read(results, n) for n in ('noop', 'steady', 'rolling', 'broken', 'naive'))
    boot = read(results, 'boot')
    noop_summary, rolling_summary, broken_summary = summary(noop['stdout']), summary(rolling['stdout']), summary(broken['stdout'])
    fig = {
        'P3': {'first_converge_s': first.get('durations', {}).get('total'),
               'noop_rerun_s': noop_summary.get('durations', {}).get('total'),
               'noop_rc': noop['rc'], 'changed_tasks': changed_tasks(noop['stdout']),
               'phases_s': {phase: [first.get('durations', {}).get(phase), seconds]
                            for phase, seconds in sorted(noop_summary.get('durations', {}).items()) if phase != 'total'},
               'noop_results_per_play': host_results_per_play(noop['stdout'])},
        'steady': load_figures(steady),
        'rolling': dict(load_figures(rolling), rc=rolling['rc']),
        'naive': dict(load_figures(naive), rc=naive['rc']),
        'broken': dict(load_figures(broken), rc=broken['rc']),
        'boot_to_healthy_s': boot['boot_to_healthy_seconds'],
        'boot_to_docker_healthy_s': boot.get('boot_to_docker_healthy_seconds', []),
    }
    if fig['P3']['noop_rerun_s'] is None or fig['P3']['first_converge_s'] is None:
        sys.exit('no deploy summary in the output of the first converge or of the no-op rerun: %s' % fig['P3'])
    fig['P3']['ratio'] = round(float(fig['P3']['noop_rerun_s']) / float(fig['P3']['first_converge_s']), 3)
    hosts = rolling_summary.get('hosts', {})
    boot_median = boot['median']
    docker_median = boot.get('docker_healthy_median', boot_median)
    fig['P2'] = {host: {'rollout_s': line.get('seconds'),
                        'minus_boot_s': round(float(line.get('seconds', 0)) - boot_median, 2),
                        'minus_docker_healthy_s': round(float(line.get('seconds', 0)) - docker_median, 2),
                        # slot_rollout's own phases; what is left of rollout_s is the tasks around it.
                        'phases_s': line.get('phases') or {}}
                 for host, line in sorted(hosts.items())}
    failed_host = [line for line in broken_summary.get('hosts', {}).values() if line.get('rollout') == 'failed']
    fig['P4'] = {'detect_and_revert_s': failed_host[0]['seconds'] if failed_host else None,
                 'health_timeout_s': HEALTH_TIMEOUT}
    fig['P4']['minus_timeout_s'] = (round(float(fig['P4']['detect_and_revert_s']) - HEALTH_TIMEOUT, 2)
                                    if failed_host else None)
    fig['P1'] = {'rolling_failed': fig['rolling']['failed'], 'rolling_requests': fig['rolling']['requests'],
                 'naive_failed': fig['naive']['failed'], 'naive_requests': fig['naive']['requests'],
                 'p99_ratio': round(fig['rolling']['p99_ms'] / fig['steady']['p99_ms'], 2)}
    return fig


def print_figures(fig):
    p1, p2, p3, p4 = fig['P1'], fig['P2'], fig['P3'], fig['P4']
    worst_p2 = max(v['minus_boot_s'] for v in p2.values()) if p2 else float('nan')
    worst_p2_docker = max(v['minus_docker_healthy_s'] for v in p2.values()) if p2 else float('nan')
    docker_boot = fig.get('boot_to_docker_healthy_s') or [float('nan')]
    print('controller niceness: %d, load generator niceness: %d (the hosts\' own processes run at 0)'
          % (os.nice(0), fig.get('load_nice', 0)))
    print('P1 rolling: %d failed of %d requests, p99 %.1f ms (steady p99 %.1f ms)'
          % (p1['rolling_failed'], p1['rolling_requests'], fig['rolling']['p99_ms'], fig['steady']['p99_ms']))
    print('P1 naive:   %d failed of %d requests, p99 %.1f ms; first failures: %s'
          % (p1['naive_failed'], p1['naive_requests'], fig['naive']['p99_ms'], fig['naive']['failures'][:2]))
    print('P2 rollout per host: %s; the app boots to healthy in %s s (median %.2f), to healthy by its own Docker '
          'HEALTHCHECK as well in %s s (median %.2f)'
          % (', '.join('%s %.1f s' % (h, float(v['rollout_s'])) for h, v in p2.items()), fig['boot_to_healthy_s'],
             sorted(fig['boot_to_healthy_s'])[len(fig['boot_to_healthy_s']) // 2], docker_boot,
             sorted(docker_boot)[len(docker_boot) // 2]))
    for host, line in p2.items():
        phases = line.get('phases_s') or {}
        if phases:
            print('P2 %s: rollout %.1f s = slot_rollout %s, the tasks around it %.1f s'
                  % (host, float(line['rollout_s']), ' + '.join('%s %.1f' % (k, float(v)) for k, v in phases.items()),
                     float(line['rollout_s']) - sum(float(v) for v in phases.values())))
    print('P3 first converge %.1f s, no-op rerun %.1f s (exit %d), tasks changed: %s'
          % (p3['first_converge_s'], p3['noop_rerun_s'], p3['noop_rc'], p3['changed_tasks'] or 'none'))
    print('P3 phases, first converge / no-op rerun: %s'
          % ', '.join('%s %s/%s s' % (phase, first_s, noop_s) for phase, (first_s, noop_s) in p3['phases_s'].items()))
    per_play = p3['noop_results_per_play']
    print('P3 no-op rerun: %d host results (ok or changed) in all; most in: %s'
          % (sum(per_play.values()), ', '.join('%s %d' % (play, count) for play, count in
                                               sorted(per_play.items(), key=lambda item: -item[1])[:5])))
    print('P4 detect-and-revert %s s with a %d s health timeout; %d failed of %d requests meanwhile'
          % (p4['detect_and_revert_s'], p4['health_timeout_s'], fig['broken']['failed'], fig['broken']['requests']))
    print('ratio P1: rolling failed %d vs naive failed %d (goal 0 of >= 5000); p99 during/steady %.2f (goal <= %.1f)'
          % (p1['rolling_failed'], p1['naive_failed'], p1['p99_ratio'], GOALS['P1_p99_ratio']))
    print('ratio P2: rollout minus boot-to-healthy, worst host %.2f s (goal <= %.1f s)' % (worst_p2, GOALS['P2']))
    print('ratio P2 (boot-to-healthy including the image\'s Docker HEALTHCHECK, which the rollout waits for too): '
          'worst host %.2f s (goal <= %.1f s)' % (worst_p2_docker, GOALS['P2']))
    print('ratio P3: no-op rerun / first converge %.3f (goal <= %.2f)' % (p3['ratio'], GOALS['P3']))
    print('ratio P4: detect-and-revert minus health timeout %s s (goal <= %.1f s), failed requests %d (goal 0)'
          % (p4['minus_timeout_s'], GOALS['P4'], fig['broken']['failed']))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--rate', type=float, default=40.0,
                        help="requests per second and load worker (4 workers; at 40 the deploy sees P1's 5,000)")
    parser.add_argument('--keep', action='store_true', help='leave the hosts (molecule destroy -s rollout removes them)')
    parser.add_argument('--json', help='write the figures to this file')
    parser.add_argument('--controller-nice', type=int, default=10, metavar='N',
                        help='niceness of the controller side (0: as started)')
    parser.add_argument('--load-nice', type=int, default=-10, metavar='N',
                        help='niceness of the load generator on cache1 (0: as the hosts\' own processes)')
    parser.add_argument('--report-only', metavar='DIR', help='only report the results of an earlier run '
                        '(its first converge time is then unknown)')
    args = parser.parse_args()
    if args.controller_nice:
        os.nice(args.controller_nice)
    if args.report_only:
        fig = report({'durations': {'total': float('nan')}}, args.report_only)   # P3's ratio prints as nan
    else:
        log = os.path.join(os.environ.get('SHIPYARD_CACHE', os.path.expanduser('~/.cache/shipyard-webstack')),
                           'bench-rollout.log')
        os.makedirs(os.path.dirname(log), exist_ok=True)
        open(log, 'w').close()
        print('rollout benchmark: creating and converging the four hosts (log: %s)' % log, flush=True)
        try:
            first, results = measure(args, log)
            fig = report(first, results)
            fig['load_nice'] = args.load_nice
        finally:
            if not args.keep:
                molecule('destroy', log)
    print_figures(fig)
    if args.json:
        with open(args.json, 'w', encoding='utf-8') as handle:
            json.dump(fig, handle, indent=1, sort_keys=True)


if __name__ == '__main__':
    main()

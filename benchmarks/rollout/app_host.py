"""Benchmark helper run on an app host (benchmarks/rollout.py). Two measurements:

  app_host.py naive APP NEW_IMAGE SLEEP   the naive deploy the rollout is compared against: stop
                                          the web container nginx serves, start the new image in
                                          its place with the same settings, sleep a fixed time
                                          (what a `compose pull && up -d; sleep 10` script does)
  app_host.py boot APP IMAGE RUNS         the app's own boot-to-healthy time: start the image with
                                          the web container's settings on a spare loopback port,
                                          poll /api/health every 20 ms until it answers 200, then
                                          Docker's health state until the image's own HEALTHCHECK
                                          says healthy (what a rollout waits for too); RUNS times

Prints one JSON object.
"""
import json
import subprocess
import sys
import time
import urllib.request

SPARE_PORT = 18999


def docker(*args):
    return subprocess.check_output(('docker',) + args).decode()


def web_container(app):
    with open('/var/lib/shipyard/proxy/web.slot', encoding='utf-8') as handle:
        return '%s-web-%s' % (app, handle.read().strip())


def run_args(name, info, image, publish=None):
    """`docker run` arguments reproducing the inspected container with another image."""
    config, host = info['Config'], info['HostConfig']
    args = ['run', '--detach', '--name', name, '--network', host['NetworkMode'],
            '--restart', host['RestartPolicy']['Name'] or 'no', '--stop-timeout', str(config.get('StopTimeout') or 10)]
    for env in config.get('Env') or []:
        args += ['--env', env]
    for container_port, binds in (host.get('PortBindings') or {}).items():
        for bind in binds or []:
            args += ['--publish', '%s:%s:%s' % (bind['HostIp'], publish or bind['HostPort'], container_port.split('/')[0])]
    for extra in host.get('ExtraHosts') or []:
        args += ['--add-host', extra]
    for path, opts in (host.get('Tmpfs') or {}).items():
        args += ['--tmpfs', '%s:%s' % (path, opts) if opts else path]
    if publish is None:
        for key, value in (config.get('Labels') or {}).items():
            args += ['--label', '%s=%s' % (key, value)]
    if host.get('ReadonlyRootfs'):
        args.append('--read-only')
    if config.get('User'):
        args += ['--user', config['User']]
    for cap in host.get('CapDrop') or []:
        args += ['--cap-drop', cap]
    for opt in host.get('SecurityOpt') or []:
        args += ['--security-opt', opt]
    return args + [image] + (config.get('Cmd') or [])


def naive(app, image, pause):
    name = web_container(app)
    info = json.loads(docker('inspect', name))[0]
    stopped = time.monotonic()
    docker('stop', '--time', str(info['Config'].get('StopTimeout') or 10), name)
    docker('rm', name)
    docker(*run_args(name, info, image))
    started = time.monotonic()
    time.sleep(pause)
    return {'container': name, 'image': image, 'stop_to_start_seconds': round(started - stopped, 2), 'sleep': pause}


def docker_health(name):
    return json.loads(docker('inspect', '--format', '{{json .State.Health}}', name)) or {}


def boot(app, image, runs):
    info = json.loads(docker('inspect', web_container(app)))[0]
    name = '%s-bench-boot' % app
    times = []
    healthy_times = []
    for _run in range(runs):
        subprocess.call(['docker', 'rm', '--force', name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started = time.monotonic()
        docker(*run_args(name, info, image, publish=SPARE_PORT))
        try:
            while time.monotonic() - started < 60:
                try:
                    with urllib.request.urlopen('http://127.0.0.1:%d/api/health' % SPARE_PORT, timeout=1) as resp:
                        if resp.status == 200:
                            break
                except OSError:
                    pass
                time.sleep(0.02)
            else:
                raise SystemExit('%s did not become healthy in 60 s' % image)
            times.append(round(time.monotonic() - started, 3))
            while time.monotonic() - started < 60 and docker_health(name).get('Status', 'healthy') != 'healthy':
                time.sleep(0.05)
            healthy_times.append(round(time.monotonic() - started, 3))
        finally:
            subprocess.call(['docker', 'rm', '--force', name], stdout=subprocess.DEVNULL)
    return {'image': image, 'boot_to_healthy_seconds': times, 'median': sorted(times)[len(times) // 2],
            'boot_to_docker_healthy_seconds': healthy_times,
            'docker_healthy_median': sorted(healthy_times)[len(healthy_times) // 2]}


def main():
    mode = sys.argv[1]
    if mode == 'naive':
        out = naive(sys.argv[2], sys.argv[3], float(sys.argv[4]))
    elif mode == 'boot':
        out = boot(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        raise SystemExit('usage: app_host.py naive|boot ...')
    print(json.dumps(out))


if __name__ == '__main__':
    main()

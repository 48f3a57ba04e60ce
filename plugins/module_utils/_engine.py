# -*- coding: utf-8 -*-
# Copyright (c) 2026, shipyard.webstack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A small Docker Engine API client over the unix socket (standard library only). Private to the collection.

Used by the docker probe of health_poll and by slot_rollout, which starts, stops and removes the
app's containers in one module run instead of one module run per container.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import re
import socket
import struct

try:
    import http.client as http_client
    from urllib.parse import quote, urlencode
except ImportError:  # pragma: no cover - Python 2 is not supported
    http_client = None  # type: ignore
    quote = urlencode = None  # type: ignore

from ansible_collections.shipyard.webstack.plugins.module_utils._redact import redact_url

DEFAULT_SOCKET = '/var/run/docker.sock'


class EngineError(Exception):
    """The Engine answered with an error status (or not at all)."""

    def __init__(self, message, status=None):
        super(EngineError, self).__init__(message)
        self.status = status


class UnixHTTPConnection(http_client.HTTPConnection if http_client else object):
    """HTTP over a unix socket, for the Docker Engine API."""

    def __init__(self, path, timeout):
        super(UnixHTTPConnection, self).__init__('localhost', timeout=timeout)
        self._socket_path = path

    def connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._socket_path)
        except Exception:
            sock.close()
            raise
        self.sock = sock


def docker_socket_path(docker_host):
    """Path of the Engine socket from a unix:// URL (or a bare path)."""
    if not docker_host:
        return DEFAULT_SOCKET
    if docker_host.startswith('unix://'):
        return docker_host[len('unix://'):]
    if docker_host.startswith('/'):
        return docker_host
    raise ValueError('only unix:// docker hosts are supported, got %r' % redact_url(docker_host))


def engine_request(socket_path, method, path, timeout, body=None, query=None):
    """(status, raw bytes) of one Engine API request."""
    if query:
        path += '?' + urlencode(query)
    headers = {'Host': 'docker'}
    payload = None
    if body is not None:
        payload = json.dumps(body).encode('utf-8')
        headers['Content-Type'] = 'application/json'
    conn = UnixHTTPConnection(socket_path, timeout)
    try:
        conn.request(method, path, body=payload, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def decode(raw):
    """Decoded JSON of an answer, else its text."""
    text = raw.decode('utf-8', 'replace')
    try:
        return json.loads(text)
    except ValueError:
        return text


def docker_get(socket_path, path, timeout):
    """(status, decoded JSON or text) of a GET on the Engine API."""
    status, raw = engine_request(socket_path, 'GET', path, timeout)
    return status, decode(raw)


def _message(raw):
    data = decode(raw)
    if isinstance(data, dict) and data.get('message'):
        return data['message']
    return data if isinstance(data, str) and data else 'no message'


class Engine(object):
    """The Engine calls slot_rollout makes; every failure raises EngineError with Docker's message."""

    def __init__(self, docker_host=None, timeout=30.0):
        self.socket_path = docker_socket_path(docker_host)
        self.timeout = timeout

    def _call(self, method, path, what, ok=(200, 201, 204), body=None, query=None, timeout=None):
        try:
            status, raw = engine_request(self.socket_path, method, path, timeout or self.timeout, body, query)
        except (OSError, http_client.HTTPException) as exc:
            raise EngineError('%s: Docker Engine at %s did not answer: %s' % (what, self.socket_path, exc))
        if status not in ok:
            raise EngineError('%s: %s' % (what, _message(raw)), status)
        return status, raw

    def containers(self, label):
        """Every container (running or not) carrying the label (key=value): Docker's list entries."""
        _status, raw = self._call('GET', '/containers/json', 'list the containers labelled %s' % label,
                                  query={'all': '1', 'filters': json.dumps({'label': [label]})})
        return decode(raw)

    def image_ids(self):
        """The ids of the images on the host (as `docker image ls --quiet --no-trunc` lists them), sorted."""
        _status, raw = self._call('GET', '/images/json', 'list the images')
        return sorted(set(image['Id'] for image in decode(raw) if image.get('Id')))

    def create(self, name, config):
        _status, raw = self._call('POST', '/containers/create', 'create %s' % name, ok=(201,), body=config,
                                  query={'name': name})
        return decode(raw)['Id']

    def start(self, name):
        self._call('POST', '/containers/%s/start' % quote(name, safe=''), 'start %s' % name, ok=(204, 304))

    def stop(self, name, stop_timeout):
        """SIGTERM (the image's stop signal), then SIGKILL after stop_timeout seconds; gone is fine."""
        self._call('POST', '/containers/%s/stop' % quote(name, safe=''), 'stop %s' % name, ok=(204, 304, 404),
                   query={'t': str(int(stop_timeout))}, timeout=self.timeout + stop_timeout)

    def remove(self, name, force=False):
        self._call('DELETE', '/containers/%s' % quote(name, safe=''), 'remove %s' % name, ok=(204, 404),
                   query={'force': '1' if force else '0'})

    def logs(self, name, tail):
        """The last tail lines the container wrote (stdout and stderr, in order)."""
        _status, raw = self._call('GET', '/containers/%s/logs' % quote(name, safe=''), 'read the log of %s' % name,
                                  query={'stdout': '1', 'stderr': '1', 'tail': str(int(tail))})
        return demux_log(raw).splitlines()


def demux_log(raw):
    """Text of a log stream: Docker frames it (8-byte headers) for containers without a TTY."""
    chunks = []
    at = 0
    while at + 8 <= len(raw) and raw[at:at + 1] in (b'\x00', b'\x01', b'\x02') and raw[at + 1:at + 4] == b'\x00\x00\x00':
        size = struct.unpack('>I', raw[at + 4:at + 8])[0]
        chunks.append(raw[at + 8:at + 8 + size])
        at += 8 + size
    if at < len(raw):
        chunks.append(raw[at:])   # a TTY container's log is plain text
    return b''.join(chunks).decode('utf-8', 'replace')


_UNITS = {'': 1, 'b': 1, 'k': 1024, 'm': 1024 ** 2, 'g': 1024 ** 3, 't': 1024 ** 4}
_SIZE_RE = re.compile(r'^\s*(\d+(?:\.\d+)?)\s*([bkmgt]?)b?\s*$', re.I)


def size_bytes(text):
    """Docker's sizes (512m, 1g, 1.5g, 1024) in bytes."""
    match = _SIZE_RE.match(str(text))
    if not match:
        raise ValueError('not a size: %r (use a number with b, k, m or g)' % (text,))
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def parse_env_file(text):
    """KEY=VALUE lines of an env file as Docker reads one (# comments and blank lines skipped)."""
    env = []
    for line in text.splitlines():
        stripped = line.lstrip()
        if not stripped or stripped.startswith('#'):
            continue
        if '=' not in stripped:
            raise ValueError('env file line without "=": %s' % stripped.split()[0])
        env.append(stripped)
    return env


def container_config(spec):
    """The body of POST /containers/create for one container of the app.

    spec: image, command (list, may be empty), env (KEY=VALUE list), labels, user, ports (list of
    {host_ip, host_port, container_port}), memory, cpus, stop_timeout, restart_policy, read_only,
    tmpfs (paths, optionally path:options), cap_drop, cap_add, security_opts, log_driver, log_options.
    """
    exposed, bindings = {}, {}
    for port in spec.get('ports') or []:
        key = '%d/tcp' % int(port['container_port'])
        exposed[key] = {}
        bindings.setdefault(key, []).append({'HostIp': port.get('host_ip', '127.0.0.1'),
                                             'HostPort': str(port['host_port'])})
    tmpfs = {}
    for entry in spec.get('tmpfs') or []:
        path, _sep, options = str(entry).partition(':')
        tmpfs[path] = options
    restart = spec.get('restart_policy') or 'no'
    host_config = {
        'PortBindings': bindings,
        'RestartPolicy': {'Name': '' if restart == 'no' else restart},
        'ReadonlyRootfs': bool(spec.get('read_only')),
        'Tmpfs': tmpfs,
        'CapDrop': list(spec.get('cap_drop') or []),
        'CapAdd': list(spec.get('cap_add') or []),
        'SecurityOpt': list(spec.get('security_opts') or []),
        'LogConfig': {'Type': spec.get('log_driver') or 'json-file',
                      'Config': dict((str(k), str(v)) for k, v in (spec.get('log_options') or {}).items())},
    }
    if spec.get('memory'):
        host_config['Memory'] = size_bytes(spec['memory'])
        host_config['MemorySwap'] = size_bytes(spec.get('memory_swap') or spec['memory'])
    if spec.get('cpus'):
        host_config['NanoCpus'] = int(round(float(spec['cpus']) * 1e9))
    config = {
        'Image': spec['image'],
        'Env': list(spec.get('env') or []),
        'Labels': dict((str(k), str(v)) for k, v in (spec.get('labels') or {}).items()),
        'ExposedPorts': exposed,
        'HostConfig': host_config,
    }
    if spec.get('command'):
        config['Cmd'] = [str(arg) for arg in spec['command']]
    if spec.get('user'):
        config['User'] = str(spec['user'])
    if spec.get('stop_timeout') is not None:
        config['StopTimeout'] = int(spec['stop_timeout'])
    return config

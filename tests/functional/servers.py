"""Real Redis, HTTP(S) servers and Docker containers on loopback, for functional tests.

Nothing is mocked: redis-server runs from the Debian package, HTTP servers
are real sockets on 127.0.0.1 (served from a thread of the test process, so a
test can change what they answer), test CAs are made with the openssl
program, and containers run on the local Docker engine from a busybox image
built locally (no registry needed).

Missing prerequisites FAIL the test with the package to install; never skip.
"""

import http.server
import json
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time

import pytest

from pgservers import free_port, make_password  # noqa: F401  (re-exported for tests)

START_TIMEOUT = 20


class PrerequisiteError(RuntimeError):
    """Something the tests need is not installed or not running."""


def _require(program, package):
    path = shutil.which(program) or (os.path.join('/usr/sbin', program) if os.path.exists('/usr/sbin/' + program) else None)
    if not path:
        raise PrerequisiteError('%s not found: install it (apt-get install %s)' % (program, package))
    return path


# ---------------------------------------------------------------- Redis

def resp_command(sock_file, sock, *args):
    """Send one command, return the raw first reply line (and bulk/array payload as text). Test helper only."""
    out = [b'*%d\r\n' % len(args)]
    for arg in args:
        data = str(arg).encode()
        out.append(b'$%d\r\n%s\r\n' % (len(data), data))
    sock.sendall(b''.join(out))
    return _read(sock_file)


def _read(sock_file):
    line = sock_file.readline()
    if not line:
        raise ConnectionError('redis closed the connection')
    kind, rest = line[:1], line[1:-2].decode()
    if kind in (b'+', b'-', b':'):
        return kind.decode() + rest
    if kind == b'$':
        size = int(rest)
        return None if size < 0 else sock_file.read(size + 2)[:-2].decode()
    if kind == b'*':
        return [_read(sock_file) for dummy in range(int(rest))]
    raise ConnectionError('bad reply %r' % line)


class RedisServer:
    """redis-server on 127.0.0.1:<free port>, run as the ``redis`` user (so file permissions apply)."""

    def __init__(self, password=None, args=(), name='redis', tls=None):
        self.password = password
        self.args = list(args)
        self.name = name
        self.tls = tls  # dict(cert=, key=, ca=) to listen with TLS only
        self.host = '127.0.0.1'
        self.port = None
        self.basedir = None
        self.logfile = None
        self.proc = None

    def start(self, wait=True):
        binary = _require('redis-server', 'redis-server')
        if self.basedir is None:
            self.basedir = tempfile.mkdtemp(prefix='shipyard-%s-' % self.name)
            self.logfile = os.path.join(self.basedir, 'redis.log')
            self.port = free_port()
        self._chown(self.basedir)
        argv = [binary, '--bind', self.host, '--dir', self.basedir, '--save', '', '--appendonly', 'no',
                '--daemonize', 'no', '--logfile', self.logfile, '--enable-debug-command', 'local']
        if self.tls:
            argv += ['--port', '0', '--tls-port', str(self.port), '--tls-cert-file', self.tls['cert'],
                     '--tls-key-file', self.tls['key'], '--tls-ca-cert-file', self.tls['ca'], '--tls-auth-clients', 'no']
        else:
            argv += ['--port', str(self.port)]
        if self.password:
            argv += ['--requirepass', self.password]
        argv += self.args
        self.proc = subprocess.Popen(argv, cwd=self.basedir, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, **self._run_as())
        if wait:
            self.wait_listening()
        return self

    def _run_as(self):
        if os.geteuid() != 0:
            return {}
        ent = pwd.getpwnam('redis') if _user_exists('redis') else pwd.getpwnam('nobody')
        return dict(user=ent.pw_uid, group=ent.pw_gid, extra_groups=[])

    def _chown(self, path):
        kwargs = self._run_as()
        if kwargs:
            os.chown(path, kwargs['user'], kwargs['group'])

    def wait_listening(self, timeout=START_TIMEOUT):
        """Wait until the port accepts connections and answers anything (PONG, NOAUTH, LOADING...)."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise PrerequisiteError('redis-server exited rc=%s: %s' % (self.proc.returncode, self.log_tail()))
            try:
                return self.command('PING', auth=False)
            except (OSError, ConnectionError, ssl.SSLError) as exc:
                last = exc
                time.sleep(0.05)
        raise PrerequisiteError('redis did not answer within %ss: %s; %s' % (timeout, last, self.log_tail()))

    def _connect(self):
        sock = socket.create_connection((self.host, self.port), timeout=10)
        if self.tls:
            ctx = ssl.create_default_context(cafile=self.tls['ca'])
            sock = ctx.wrap_socket(sock, server_hostname='localhost')
        return sock

    def command(self, *args, **kwargs):
        """Run one command (after AUTH with the server password unless auth=False); return the reply."""
        sock = self._connect()
        try:
            handle = sock.makefile('rb')
            if self.password and kwargs.get('auth', True):
                resp_command(handle, sock, 'AUTH', self.password)
            return resp_command(handle, sock, *args)
        finally:
            sock.close()

    def info(self, section=None):
        text = self.command(*(['INFO'] + ([section] if section else [])))
        return dict(line.split(':', 1) for line in text.splitlines() if ':' in line and not line.startswith('#'))

    def wait_info(self, key, value, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.info().get(key) == value:
                return
            time.sleep(0.05)
        raise AssertionError('redis INFO %s never became %s' % (key, value))

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def cleanup(self):
        try:
            self.stop()
        finally:
            if self.basedir:
                subprocess.run(['chmod', '-R', 'u+rwX', self.basedir], check=False)
                shutil.rmtree(self.basedir, ignore_errors=True)

    def log_tail(self, limit=2000):
        try:
            with open(self.logfile, errors='replace') as handle:
                return handle.read()[-limit:]
        except (OSError, TypeError):
            return '(no log)'


def _user_exists(name):
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


# ---------------------------------------------------------------- HTTP(S)

class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.0'

    def do_GET(self):  # noqa: N802 (http.server's naming)
        server = self.server.owner
        with server.lock:
            server.requests += 1
            count = server.requests
            server.seen_headers.append(dict(self.headers.items()))
            if server.started is None:
                server.started = time.monotonic()
        status, body = server.behaviour(count, time.monotonic() - server.started)
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header('Content-Type', 'text/plain; charset=utf-8' if isinstance(body, str) else 'application/json')
        self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_HEAD = do_GET

    def log_message(self, *args):  # keep pytest output clean
        pass


class HttpServer:
    """A real HTTP(S) server on 127.0.0.1:<free port>, served by a thread of the test process.

    ``behaviour(request_number, seconds_since_first_request) -> (status, body)``
    decides each answer (body: str, or an object sent as JSON); change it with
    set(). Time counts from the first request, not from set(): a module that is
    slow to start (a loaded machine) still sees the whole scripted sequence.
    """

    def __init__(self, behaviour=None, tls=None):
        self.behaviour = behaviour or (lambda n, t: (200, 'ok'))
        self.lock = threading.Lock()
        self.requests = 0
        self.seen_headers = []
        self.started = None
        self.httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.owner = self
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(tls['cert'], tls['key'])
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.scheme = 'https' if tls else 'http'
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={'poll_interval': 0.05}, daemon=True)
        self.thread.start()

    def url(self, path='/health', host='127.0.0.1'):
        return '%s://%s:%s%s' % (self.scheme, host, self.port, path)

    def set(self, behaviour):
        """Answer with a new behaviour; request numbers and time restart from the next request."""
        with self.lock:
            self.behaviour = behaviour
            self.requests = 0
            self.seen_headers = []
            self.started = None

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


# ---------------------------------------------------------------- test CA (openssl)

def make_test_ca(directory, names=('localhost',), ips=('127.0.0.1',)):
    """A CA and a server certificate signed by it, made with openssl. Returns dict(ca, cert, key)."""
    openssl = _require('openssl', 'openssl')
    ca_key, ca_cert = os.path.join(directory, 'ca.key'), os.path.join(directory, 'ca.pem')
    key, csr, cert = (os.path.join(directory, n) for n in ('server.key', 'server.csr', 'server.pem'))
    ext = os.path.join(directory, 'server.ext')
    san = ','.join(['DNS:%s' % n for n in names] + ['IP:%s' % i for i in ips])
    with open(ext, 'w') as handle:
        handle.write('subjectAltName=%s\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n'
                     'extendedKeyUsage=serverAuth\n' % san)

    def run(*args):
        subprocess.run([openssl] + list(args), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)

    run('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', ca_key, '-out', ca_cert, '-days', '2',
        '-subj', '/CN=shipyard test CA', '-addext', 'basicConstraints=critical,CA:TRUE',
        '-addext', 'keyUsage=critical,keyCertSign,cRLSign')
    run('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', csr, '-subj', '/CN=%s' % names[0])
    run('x509', '-req', '-in', csr, '-CA', ca_cert, '-CAkey', ca_key, '-CAcreateserial', '-out', cert,
        '-days', '2', '-extfile', ext)
    for path in (ca_cert, cert, key):
        os.chmod(path, 0o644)  # redis runs as another user and must read them
    os.chmod(directory, 0o755)
    return dict(ca=ca_cert, cert=cert, key=key)


# ---------------------------------------------------------------- Docker

DOCKER_SOCKET = '/var/run/docker.sock'
BUSYBOX_IMAGE = 'shipyard-test-busybox:1'


def docker(*args, **kwargs):
    """Run the docker CLI; returns stdout text. Raises with stderr on failure."""
    binary = _require('docker', 'docker.io (Docker Engine and CLI)')
    proc = subprocess.run([binary] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=kwargs.get('timeout', 120), input=kwargs.get('input'), check=False)
    if proc.returncode != 0 and kwargs.get('check', True):
        raise PrerequisiteError('docker %s failed: %s' % (' '.join(args[:2]), proc.stderr.decode(errors='replace')))
    return proc.stdout.decode(errors='replace').strip()


def ensure_busybox_image():
    """A tiny local image made from the busybox-static package (no registry is reachable)."""
    if not os.path.exists(DOCKER_SOCKET):
        raise PrerequisiteError('Docker engine socket %s not found: install and start docker.io' % DOCKER_SOCKET)
    docker('version', '--format', '{{.Server.Version}}')
    if docker('images', '-q', BUSYBOX_IMAGE):
        return BUSYBOX_IMAGE
    busybox = '/bin/busybox'
    if not os.path.exists(busybox):
        raise PrerequisiteError('/bin/busybox not found: apt-get install busybox-static')
    root = tempfile.mkdtemp(prefix='shipyard-rootfs-')
    try:
        os.makedirs(os.path.join(root, 'bin'))
        os.makedirs(os.path.join(root, 'tmp'))
        shutil.copy2(busybox, os.path.join(root, 'bin', 'busybox'))
        applets = subprocess.run([busybox, '--list'], stdout=subprocess.PIPE, check=True).stdout.decode().split()
        for applet in applets:
            if applet != 'busybox':
                os.symlink('busybox', os.path.join(root, 'bin', applet))
        tar = subprocess.run(['tar', '-C', root, '-c', '.'], stdout=subprocess.PIPE, check=True).stdout
        docker('import', '--change', 'ENV PATH=/bin', '-', BUSYBOX_IMAGE, input=tar)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return BUSYBOX_IMAGE


class Containers:
    """Starts containers with unique names and removes them all at teardown."""

    def __init__(self, image):
        self.image = image
        self.names = []
        self.prefix = 'shipyard-hp-%s' % os.urandom(3).hex()

    def run(self, suffix, command, *options):
        name = '%s-%s' % (self.prefix, suffix)
        docker('run', '-d', '--name', name, *(list(options) + [self.image, 'sh', '-c', command]))
        self.names.append(name)
        return name

    def cleanup(self):
        for name in self.names:
            docker('rm', '-f', name, check=False)


# ---------------------------------------------------------------- pytest fixtures

def _fail_on_prerequisite(func, *args, **kwargs):
    try:
        return func(*args, **kwargs)
    except PrerequisiteError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope='session')
def test_ca():
    """A test CA and a server certificate for localhost / 127.0.0.1 (made with openssl)."""
    # Not under pytest's tmp_path: that is private to root, and redis (another user) must read the files.
    directory = tempfile.mkdtemp(prefix='shipyard-ca-')
    try:
        yield _fail_on_prerequisite(make_test_ca, directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def redis_factory():
    """redis_factory(password=..., args=[...], wait=True) -> RedisServer; all stopped at teardown."""
    servers = []

    def make(password=None, args=(), wait=True, tls=None, name='redis'):
        server = RedisServer(password=password, args=args, tls=tls, name=name)
        servers.append(server)
        return _fail_on_prerequisite(server.start, wait=wait)

    yield make
    for server in servers:
        server.cleanup()


@pytest.fixture(scope='module')
def redis_with_password():
    """A module-scoped redis-server with requirepass (password in .password)."""
    server = RedisServer(password=make_password('redis'), name='redis-auth')
    try:
        _fail_on_prerequisite(server.start)
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def http_server():
    """A real HTTP server on loopback; set its behaviour with .set(lambda n, t: (status, body))."""
    server = HttpServer()
    yield server
    server.close()


@pytest.fixture(scope='session')
def busybox_image():
    return _fail_on_prerequisite(ensure_busybox_image)


@pytest.fixture
def containers(busybox_image):
    """containers.run(suffix, shell_command, *docker_run_options) -> name; removed at teardown."""
    box = Containers(busybox_image)
    yield box
    box.cleanup()

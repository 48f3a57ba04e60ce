"""The reference app's pure parts (tests/app/shipyard_app.py) and its variants' recipe.

The app itself runs in containers in tests/functional/test_reference_app.py; here
are the parsers and decisions that would be painful to debug through a container.
"""

import importlib.util
import io
import os
import signal
import threading
import time
import urllib.request

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
APP_DIR = os.path.join(ROOT, 'tests', 'app')

_spec = importlib.util.spec_from_file_location('shipyard_app', os.path.join(APP_DIR, 'shipyard_app.py'))
app = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(app)


# ---------------------------------------------------------------- URLs and secrets

@pytest.mark.parametrize('url, expected', [
    ('redis://127.0.0.1:6390/2', dict(host='127.0.0.1', port=6390, username=None, password=None, db=2, tls=False)),
    ('redis://:s3cret@cache1', dict(host='cache1', port=6379, username=None, password='s3cret', db=0, tls=False)),
    ('rediss://app:p%40ss%2Fw@cache1:6380/0', dict(host='cache1', port=6380, username='app', password='p@ss/w', db=0, tls=True)),
    ('redis://cache1?db=3', dict(host='cache1', port=6379, username=None, password=None, db=3, tls=False)),
])
def test_parse_redis_url(url, expected):
    conf = app.parse_redis_url(url)
    assert {k: conf[k] for k in expected} == expected
    assert conf['verify'] is True


def test_parse_redis_url_tls_without_verification():
    assert app.parse_redis_url('rediss://cache1?ssl_cert_reqs=none')['verify'] is False


@pytest.mark.parametrize('url, message', [
    ('http://cache1', 'must start with redis://'),
    ('redis://', 'has no host'),
    ('redis://cache1/abc', 'must be a number'),
    ('redis://:topsecret@cache1:notaport', 'bad port'),
])
def test_parse_redis_url_errors_never_show_the_password(url, message):
    with pytest.raises(app.AppError) as exc:
        app.parse_redis_url(url)
    assert message in str(exc.value)
    assert 'topsecret' not in str(exc.value)


def test_redact_url_and_text():
    url = 'postgresql://app:pa%3Ass@db1:5432/appdb'
    assert app.redact_url(url) == 'postgresql://app:***@db1:5432/appdb'
    assert app.redact_url('postgresql://db1/appdb') == 'postgresql://db1/appdb'
    text = 'password authentication failed: pa%3Ass / pa:ss'
    assert app.redact_text(text, [url, None, '']) == 'password authentication failed: *** / ***'


# ---------------------------------------------------------------- RESP

def test_resp_encode():
    assert app.resp_encode('SET', 'k', 12) == b'*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\n12\r\n'
    assert app.resp_encode(b'\x00') == b'*1\r\n$1\r\n\x00\r\n'


def test_resp_read_every_reply_kind():
    stream = io.BytesIO(b'+PONG\r\n:42\r\n$5\r\nhello\r\n$-1\r\n*2\r\n$1\r\na\r\n:1\r\n*-1\r\n-WRONGPASS invalid\r\n')
    assert app.resp_read(stream) == 'PONG'
    assert app.resp_read(stream) == 42
    assert app.resp_read(stream) == 'hello'
    assert app.resp_read(stream) is None
    assert app.resp_read(stream) == ['a', 1]
    assert app.resp_read(stream) is None
    error = app.resp_read(stream)
    assert isinstance(error, app.RedisReplyError) and str(error) == 'WRONGPASS invalid'


@pytest.mark.parametrize('data', [b'', b'+PON', b'$5\r\nhel', b'?what\r\n'])
def test_resp_read_truncated_or_garbage(data):
    with pytest.raises(ConnectionError):
        app.resp_read(io.BytesIO(data))


# ---------------------------------------------------------------- migrations

def write(directory, name, text='SELECT 1;'):
    with open(os.path.join(directory, name), 'w') as handle:
        handle.write(text)


def test_load_migrations_orders_by_number_and_ignores_other_files(tmp_path):
    write(tmp_path, '10_later.sql')
    write(tmp_path, '0002_second.sql', 'CREATE TABLE b ();')
    write(tmp_path, '1_first.sql')
    write(tmp_path, 'README')
    found = app.load_migrations(str(tmp_path))
    assert [(m['version'], m['name']) for m in found] == [(1, 'first'), (2, 'second'), (10, 'later')]
    assert found[1]['sql'] == 'CREATE TABLE b ();'
    assert len(found[0]['checksum']) == 64


def test_load_migrations_refuses_duplicates_and_bad_names(tmp_path):
    write(tmp_path, '0001_a.sql')
    write(tmp_path, '001_b.sql')
    with pytest.raises(app.AppError, match='two migrations have version 1'):
        app.load_migrations(str(tmp_path))
    os.unlink(os.path.join(str(tmp_path), '001_b.sql'))
    write(tmp_path, 'add-things.sql')
    with pytest.raises(app.AppError, match='not named NNNN_name.sql'):
        app.load_migrations(str(tmp_path))
    with pytest.raises(app.AppError, match='cannot read the migrations directory'):
        app.load_migrations(str(tmp_path / 'missing'))


MIGS = [{'version': v, 'name': 'm%d' % v, 'checksum': 'c%d' % v} for v in (1, 2, 3)]


@pytest.mark.parametrize('applied, state, pending, unknown, mismatched', [
    ({}, 'pending', [1, 2, 3], [], []),
    ({1: 'c1'}, 'pending', [2, 3], [], []),
    ({1: 'c1', 2: 'c2', 3: 'c3'}, 'current', [], [], []),
    ({1: 'c1', 2: 'c2', 3: 'c3', 4: 'c4'}, 'ahead', [], [4], []),     # a rollback to an older build
    ({1: 'c1', 2: 'other', 3: 'c3'}, 'mismatch', [], [], [2]),
    ({1: 'c1', 3: 'c3'}, 'pending', [2], [], []),                      # a gap is pending too
])
def test_plan_migrations(applied, state, pending, unknown, mismatched):
    plan = app.plan_migrations(MIGS, applied)
    assert plan['state'] == state
    assert [m['version'] for m in plan['pending']] == pending
    assert plan['unknown'] == unknown and plan['mismatched'] == mismatched


def test_lock_key_is_a_stable_signed_bigint():
    key = app.lock_key(app.DEFAULT_LOCK_NAME)
    assert key == app.lock_key(app.DEFAULT_LOCK_NAME)
    assert -(1 << 63) <= key < (1 << 63)
    assert app.lock_key('other') != key


# ---------------------------------------------------------------- health and config

def test_overall_health():
    assert app.overall_health({})[0] == 200
    ok = {'database': {'status': 'ok'}, 'redis': {'status': 'skipped'}}
    assert app.overall_health(ok) == (200, {'status': 'ok', 'checks': ok})
    status, body = app.overall_health({'database': {'status': 'failing'}, 'redis': {'status': 'ok'}})
    assert status == 503 and body['failed'] == ['database']
    status, body = app.overall_health({}, mode='broken')
    assert status == 503 and 'broken' in body['error']


def test_env_number():
    assert app.env_number({}, 'X', 2.0) == 2.0
    assert app.env_number({'X': '0.5'}, 'X', 2.0) == 0.5
    assert app.env_number({'X': '8080'}, 'X', 1, int, 1) == 8080
    with pytest.raises(app.AppError, match='X=.abc. is not a number'):
        app.env_number({'X': 'abc'}, 'X', 1)
    with pytest.raises(app.AppError, match='at least 1'):
        app.env_number({'X': '0'}, 'X', 1, int, 1)


def test_build_info_defaults_outside_an_image(tmp_path):
    assert app.build_info(str(tmp_path / 'none.json')) == {'version': '0.0.0-dev', 'health': 'ok'}
    path = tmp_path / 'build.json'
    path.write_text('{"version": "2.0.0", "health": "broken"}')
    assert app.build_info(str(path)) == {'version': '2.0.0', 'health': 'broken'}


def test_unknown_command_is_a_usage_error(capsys):
    assert app.main(['frobnicate'], {}) == 2
    assert 'usage' in capsys.readouterr().err


def test_migrate_needs_direct_url(capsys):
    assert app.main(['migrate-status'], {}) == 2
    assert 'DIRECT_URL is not set' in capsys.readouterr().out


# ---------------------------------------------------------------- the web server, in-process

def test_web_serves_and_drains_on_sigterm(monkeypatch):
    """cmd_web in a thread: a slow request in flight when SIGTERM comes still gets its answer."""
    sock = __import__('socket').socket()
    sock.bind(('127.0.0.1', 0))
    port = sock.getsockname()[1]
    sock.close()
    handlers = {}
    monkeypatch.setattr(app.signal, 'signal', handlers.__setitem__)
    result = {}
    env = {'PORT': str(port), 'HOST': '127.0.0.1', 'SHUTDOWN_TIMEOUT': '10'}
    thread = threading.Thread(target=lambda: result.setdefault('rc', app.cmd_web(env)))
    thread.start()
    deadline = time.monotonic() + 10
    while True:
        try:
            with urllib.request.urlopen('http://127.0.0.1:%d/api/health?quick=true' % port, timeout=2) as resp:
                assert resp.status == 200
            break
        except OSError:
            assert time.monotonic() < deadline, 'the web server did not come up'
            time.sleep(0.05)
    slow = {}

    def fetch():
        with urllib.request.urlopen('http://127.0.0.1:%d/api/slow?seconds=1' % port, timeout=10) as resp:
            slow['status'] = resp.status
    client = threading.Thread(target=fetch)
    client.start()
    time.sleep(0.3)
    handlers[signal.SIGTERM](signal.SIGTERM, None)
    client.join(10)
    thread.join(10)
    assert slow == {'status': 200}
    assert result == {'rc': 0}
    with pytest.raises(OSError):
        urllib.request.urlopen('http://127.0.0.1:%d/' % port, timeout=2)


# ---------------------------------------------------------------- the variants' recipe

def read_variants():
    rows = {}
    with open(os.path.join(APP_DIR, 'variants')) as handle:
        for line in handle:
            if line.strip() and not line.startswith('#'):
                tag, version, migrations, health = line.split()
                rows[tag] = dict(version=version, migrations=migrations.split(','), health=health)
    return rows


def test_variants_build_on_each_other():
    """v2 only adds to v1 (backward compatible); bad-migration adds one failing migration to v2."""
    variants = read_variants()
    assert set(variants) == {'v1', 'v2', 'broken', 'bad-migration'}
    files = {m['file'].split('_', 1)[0]: m for m in app.load_migrations(os.path.join(APP_DIR, 'migrations'))}
    for tag, row in variants.items():
        assert all(prefix in files for prefix in row['migrations']), tag
    assert variants['v2']['migrations'][:-1] == variants['v1']['migrations']
    assert variants['bad-migration']['migrations'][:-1] == variants['v2']['migrations']
    assert variants['broken']['migrations'] == variants['v2']['migrations']
    assert [row['health'] for row in variants.values()].count('broken') == 1
    assert variants['broken']['health'] == 'broken'
    added = files[variants['v2']['migrations'][-1]]['sql'].upper()
    assert 'DROP ' not in added and 'NOT NULL DEFAULT' not in added.split('CREATE TABLE')[0]

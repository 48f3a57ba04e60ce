"""Run the collection's modules for real, as Ansible would, outside a playbook.

Each call executes the module file in a fresh Python process with
ANSIBLE_MODULE_ARGS, exactly how AnsiballZ runs it on a target, and returns
the JSON result. This keeps the functional tests fast (no playbook start-up)
while still exercising argument parsing, check mode and no_log handling.
"""

import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS = os.path.join(ROOT, '.cache', 'collections')


def _env():
    env = dict(os.environ)
    env['PYTHONPATH'] = COLLECTIONS + (os.pathsep + env['PYTHONPATH'] if env.get('PYTHONPATH') else '')
    return env


def _args_file(args, check_mode, diff):
    payload = dict(args)
    payload['_ansible_check_mode'] = check_mode
    payload['_ansible_diff'] = diff
    fd, path = tempfile.mkstemp(prefix='modargs-', suffix='.json')
    with os.fdopen(fd, 'w') as handle:
        json.dump({'ANSIBLE_MODULE_ARGS': payload}, handle)
    return path


def start_module(name, args, check_mode=False, diff=False):
    """Start a module in the background; returns (Popen, args_path). Use finish_module() to collect.

    name: one of this collection's modules, or a dotted Python module (ansible.modules.setup)."""
    path = _args_file(args, check_mode, diff)
    proc = subprocess.Popen(
        [sys.executable, '-m', name if '.' in name else 'ansible_collections.shipyard.webstack.plugins.modules.%s' % name,
         path],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(), cwd=ROOT)
    return proc, path


def finish_module(proc, path, timeout=300):
    """Wait for a module started by start_module(); returns its result dict (rc added)."""
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        os.unlink(path)
    text = out.decode('utf-8', 'replace')
    try:
        # AnsibleModule prints exactly one JSON document on stdout.
        result = json.loads(text[text.index('{'):])
    except (ValueError, json.JSONDecodeError):
        raise AssertionError('module printed no JSON (rc=%s)\nstdout:\n%s\nstderr:\n%s'
                             % (proc.returncode, text, err.decode('utf-8', 'replace')))
    result['rc_process'] = proc.returncode
    result['_stdout'] = text
    return result


def run_module(name, args, check_mode=False, diff=False, timeout=300):
    """Run a module to completion; returns its result dict.

    The dict carries ``rc_process`` and ``_stdout`` (the raw output, so tests
    can assert that no secret appears anywhere in what the module printed).
    """
    proc, path = start_module(name, args, check_mode=check_mode, diff=diff)
    return finish_module(proc, path, timeout=timeout)


def run_module_without(name, args, blocked, check_mode=False, env=None, timeout=300):
    """Run a module as run_module() does, but with the Python modules in ``blocked`` made unimportable.

    For testing fallbacks on targets that lack a library (e.g. blocked=['psycopg', 'psycopg2']).
    ``env`` entries override the environment (e.g. PATH without psql).
    """
    path = _args_file(args, check_mode, False)
    code = ('import runpy, sys\n'
            'for name in sys.argv[2].split(","):\n'
            '    sys.modules[name] = None  # "import name" now raises ImportError\n'
            'del sys.argv[2]\n'
            'runpy.run_module("ansible_collections.shipyard.webstack.plugins.modules.%s", run_name="__main__", '
            'alter_sys=True)\n' % name)
    full_env = _env()
    full_env.update(env or {})
    proc = subprocess.Popen([sys.executable, '-c', code, path, ','.join(blocked)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=full_env, cwd=ROOT)
    return finish_module(proc, path, timeout=timeout)

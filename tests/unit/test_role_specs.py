"""Every role's meta/argument_specs.yml equals its defaults/main.yml.

The argument spec is the documented contract (it also generates the docs):
each default must be declared there with the same default value, and every
optional option declared there must have its default in defaults/main.yml.
Private variables (leading underscore) never appear in either.
"""

import os

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ROLES_DIR = os.path.join(ROOT, 'roles')
ROLES = sorted(d for d in os.listdir(ROLES_DIR) if os.path.isdir(os.path.join(ROLES_DIR, d))) \
    if os.path.isdir(ROLES_DIR) else []


def _load(path):
    with open(path) as handle:
        return yaml.safe_load(handle) or {}


def test_there_are_roles_to_check():
    # Guards the parametrized test below against silently checking nothing
    # once roles exist; before the first role this is the expected state.
    assert os.path.isdir(ROLES_DIR)


@pytest.mark.parametrize('role', ROLES)
def test_argument_specs_equal_defaults(role):
    defaults_path = os.path.join(ROLES_DIR, role, 'defaults', 'main.yml')
    specs_path = os.path.join(ROLES_DIR, role, 'meta', 'argument_specs.yml')
    assert os.path.exists(specs_path), '%s has no meta/argument_specs.yml' % role
    defaults = _load(defaults_path) if os.path.exists(defaults_path) else {}
    options = _load(specs_path)['argument_specs']['main'].get('options', {})

    prefix = role + '_'
    for name in defaults:
        assert name.startswith(prefix), '%s: default %s lacks the %s prefix' % (role, name, prefix)
    for name in options:
        assert name.startswith(prefix), '%s: option %s lacks the %s prefix' % (role, name, prefix)

    missing_in_spec = sorted(set(defaults) - set(options))
    assert not missing_in_spec, '%s: defaults not in argument_specs: %s' % (role, missing_in_spec)
    for name, spec in options.items():
        if spec.get('required'):
            assert name not in defaults, '%s: required option %s must not have a default' % (role, name)
            continue
        assert name in defaults, '%s: optional option %s has no default in defaults/main.yml' % (role, name)
        assert 'default' in spec, '%s: option %s does not state its default' % (role, name)
        assert spec['default'] == defaults[name], (
            '%s: %s default differs: argument_specs %r vs defaults %r'
            % (role, name, spec['default'], defaults[name]))

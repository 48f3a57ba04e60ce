"""docs/roles/*.md carry the variables of roles/*/meta/argument_specs.yml (scripts/role-docs).

The docs are rendered in memory and compared with the files: a changed argument spec without
`make role-docs` fails here, naming the role. The renderer's own rules (hand-written text kept,
markup, secrets, nested options) are checked on small inputs.
"""

import importlib.machinery
import importlib.util
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, 'scripts', 'role-docs')


def _load_script():
    # scripts/role-docs has no .py suffix (it is a command): load it by path.
    loader = importlib.machinery.SourceFileLoader('role_docs', SCRIPT)
    spec = importlib.util.spec_from_loader('role_docs', loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


role_docs = _load_script()
ROLES = role_docs.roles(ROOT)


def test_there_are_roles_to_document():
    # Guards the parametrized test below against checking nothing.
    assert len(ROLES) >= 7, ROLES


@pytest.mark.parametrize('role', ROLES)
def test_role_docs_are_current(role):
    path = os.path.join(ROOT, 'docs', 'roles', role + '.md')
    expected = role_docs.expected_documents(ROOT)[path]
    current = None
    if os.path.exists(path):
        with open(path) as handle:
            current = handle.read()
    if current != expected:
        # No diff of whole documents: the message says what to do.
        pytest.fail('docs/roles/%s.md is stale: roles/%s/meta/argument_specs.yml and the docs differ. '
                    'Run `make role-docs` (or `.venv/bin/python scripts/role-docs`) and commit docs/roles/%s.md.'
                    % (role, role, role), pytrace=False)


@pytest.mark.parametrize('role', ROLES)
def test_every_option_of_every_entry_point_is_in_the_docs(role):
    import yaml
    with open(os.path.join(ROOT, 'roles', role, 'meta', 'argument_specs.yml')) as handle:
        specs = yaml.safe_load(handle)['argument_specs']
    block = role_docs.render_block(role, specs)
    for entry, spec in specs.items():
        assert '### Entry point `%s`' % entry in block
        for name in (spec or {}).get('options') or {}:
            assert '| `%s` |' % name in block, '%s: %s (entry point %s) missing' % (role, name, entry)


SPECS = {
    'main': {
        'short_description': 'Demo role',
        'description': ['Uses C(thing) and O(main/demo_b).'],
        'options': {
            'demo_a': {'type': 'str', 'default': '', 'description': 'Empty by default.'},
            'demo_b': {'type': 'list', 'elements': 'str', 'default': ['x|y'], 'description': 'Pipes escaped.'},
            'demo_secret': {'type': 'str', 'default': '', 'no_log': True, 'description': 'A password.'},
            'demo_mode': {'type': 'str', 'default': 'on', 'choices': ['on', 'off'], 'description': 'V(on) or V(off).'},
            'demo_items': {'type': 'list', 'elements': 'dict', 'default': [], 'description': 'Items.',
                           'options': {'name': {'type': 'str', 'required': True, 'description': 'Name.'}}},
        },
    },
    'extra': {'short_description': 'Another entry point', 'options': {
        'demo_label': {'type': 'str', 'required': True, 'description': 'Label.'}}},
}


def test_render_block_table():
    block = role_docs.render_block('demo', SPECS)
    assert block.startswith(role_docs.BEGIN) and block.rstrip().endswith(role_docs.END)
    assert '| `demo_a` | str | `""` | no |  | Empty by default. |' in block
    assert '`[\\"x\\|y\\"]`' not in block and '`["x\\|y"]`' in block
    assert '**Secret** (no_log). A password.' in block
    assert 'choices: `on`, `off`' in block and '`on` or `off`.' in block
    assert '| `demo_items[].name` | str | — | yes |' in block
    assert 'Uses `thing` and `demo_b`.' in block
    assert block.index('### Entry point `main`') < block.index('### Entry point `extra` (`tasks_from: extra`)')
    assert '| `demo_label` | str | — | yes |' in block


def test_hand_written_text_is_kept_around_the_generated_part():
    block = role_docs.render_block('demo', SPECS)
    hand = '# demo\n\nHand-written notes.\n'
    first = role_docs.update_document(hand, 'demo', block)
    assert first.startswith(hand) and first.endswith(block)
    # idempotent, and text after the markers survives a re-render with a changed spec
    assert role_docs.update_document(first, 'demo', block) == first
    with_tail = first + '\n## After\n\nMore notes.\n'
    changed = role_docs.render_block('demo', {'main': {'short_description': 'Changed'}})
    updated = role_docs.update_document(with_tail, 'demo', changed)
    assert updated.startswith(hand) and 'Changed.' in updated and updated.endswith('\n## After\n\nMore notes.\n')
    assert 'demo_a' not in updated


def test_new_document_gets_a_title():
    text = role_docs.update_document(None, 'demo', role_docs.render_block('demo', SPECS))
    assert text.startswith('# Role `shipyard.webstack.demo`\n')


def test_missing_end_marker_is_an_error_not_a_silent_truncation():
    with pytest.raises(ValueError, match='end marker'):
        role_docs.update_document('# x\n' + role_docs.BEGIN + '\nhalf\n', 'demo', 'block\n')

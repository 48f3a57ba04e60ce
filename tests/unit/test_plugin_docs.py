"""Every plugin's documentation parses as YAML, and each module documents exactly the options its argument
spec takes: ansible-doc and the build stage fail late (and all at once) on what a one-second parse finds here."""

import ast
import glob
import os

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODULES = sorted(glob.glob(os.path.join(ROOT, 'plugins', 'modules', '*.py')))
FILTER_DOCS = sorted(glob.glob(os.path.join(ROOT, 'plugins', 'filter', '*.yml')))
DOC_BLOCKS = ('DOCUMENTATION', 'EXAMPLES', 'RETURN')


def doc_blocks(path):
    """The module's string constants DOCUMENTATION, EXAMPLES and RETURN, read without importing it."""
    with open(path, encoding='utf-8') as handle:
        tree = ast.parse(handle.read(), path)
    blocks = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if name in DOC_BLOCKS and isinstance(node.value, ast.Constant):
                blocks[name] = node.value.value
    return blocks


def test_there_are_plugins_to_check():
    assert len(MODULES) >= 5
    assert len(FILTER_DOCS) >= 10


@pytest.mark.parametrize('path', MODULES, ids=os.path.basename)
def test_module_doc_blocks_parse(path):
    blocks = doc_blocks(path)
    assert set(blocks) == set(DOC_BLOCKS), 'missing: %s' % sorted(set(DOC_BLOCKS) - set(blocks))
    for name, text in blocks.items():
        try:
            yaml.safe_load(text)
        except yaml.YAMLError as exc:
            pytest.fail('%s of %s does not parse: %s' % (name, os.path.basename(path), exc))
    documentation = yaml.safe_load(blocks['DOCUMENTATION'])
    assert documentation['module'] == os.path.basename(path)[:-3]
    for option, spec in (documentation.get('options') or {}).items():
        assert spec.get('description'), 'option %s has no description' % option


@pytest.mark.parametrize('path', FILTER_DOCS, ids=os.path.basename)
def test_filter_docs_parse(path):
    with open(path, encoding='utf-8') as handle:
        try:
            document = yaml.safe_load(handle)
        except yaml.YAMLError as exc:
            pytest.fail('%s does not parse: %s' % (os.path.basename(path), exc))
    assert document['DOCUMENTATION']['name'] == os.path.basename(path)[:-4]
    assert 'EXAMPLES' in document and 'RETURN' in document

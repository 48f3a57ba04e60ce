"""Unit tests of module_utils/_redact.py: secrets never reach messages."""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS = os.path.join(ROOT, '.cache', 'collections')
if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)

from ansible_collections.shipyard.webstack.plugins.module_utils._redact import MASK, redact, redact_url, tail  # noqa: E402


def test_known_secret_values_are_masked_everywhere():
    text = 'FATAL: password for hunter22 rejected; again: hunter22'
    assert redact(text, ['hunter22']) == 'FATAL: password for %s rejected; again: %s' % (MASK, MASK)


def test_longer_secrets_first_and_short_ones_ignored():
    assert redact('abcdefgh abcd', ['abcd', 'abcdefgh']) == '%s %s' % (MASK, MASK)
    assert redact('a b c', ['a']) == 'a b c'  # masking every "a" would protect nothing


def test_url_credentials_are_masked():
    assert redact('postgresql://app:s3cret@db:5432/app') == 'postgresql://app:%s@db:5432/app' % MASK
    assert redact_url('redis://:pw1234@cache:6379/0') == 'redis://:%s@cache:6379/0' % MASK
    assert redact_url('http://example.com/x') == 'http://example.com/x'
    assert redact_url(None) is None


def test_key_value_pairs_are_masked():
    assert redact('host=db password=s3cret user=app') == 'host=db password=%s user=app' % MASK
    assert redact('PGPASSWORD=abc123 psql') == 'PGPASSWORD=%s psql' % MASK
    assert redact('{"api_key": "k-123"}') == '{"api_key": "%s"}' % MASK


def test_non_strings_and_none():
    assert redact(None) is None
    assert redact(12345, ['12345']) == MASK


def test_tail_cuts_at_a_line_start():
    text = 'first line\n' + 'x' * 50 + '\nlast line\n'
    assert tail(text, 20) == 'last line\n'
    assert tail('short', 100) == 'short'
    assert tail(None) == ''


def test_secret_pair_inside_a_harmless_pairs_value_is_masked():
    # "failed: password=..." — the harmless pair must not swallow the secret one.
    assert redact('migrate failed: password=hunter22 rejected') == 'migrate failed: password=%s rejected' % MASK


def test_long_unbroken_text_is_left_alone():
    blob = 'x' * 50000 + ' a:' * 20000
    assert redact(blob) == blob

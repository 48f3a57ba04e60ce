# -*- coding: utf-8 -*-
# Copyright (c) 2026, shipyard.webstack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Keep secrets out of messages, results and ledgers. Private to the collection."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

MASK = '********'

# scheme://user:password@host -> scheme://user:********@host
# The look-behinds make each pattern start only at a token boundary, so the
# scan stays linear on long unbroken text (a log line of 200 KB of base64).
_URL_CREDENTIALS = re.compile(
    r'(?<![a-zA-Z0-9+.-])(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*):(?P<secret>[^@\s/]*)@')
# password=..., PGPASSWORD=..., "password": "..." (key/value pairs in DSNs, env dumps and JSON):
# any key/value pair is matched, and masked when its key names a secret.
_KEY_SEP = re.compile(r'(?<![\w.-])(?P<key>[\w.-]+)(?P<sep>["\']?\s*[=:]\s*["\']?)')
_VALUE = re.compile(r'[^\s"\',;&]+')
_SECRET_KEY = re.compile(r'password|passwd|secret|token|api_?key', re.I)


def _mask_secret_pairs(text):
    """Mask the values of key=value / key: value pairs whose key names a secret.

    A pair whose key is harmless is stepped over only up to its separator, so a
    secret pair inside its value ("failed: password=x") is still found.
    """
    out = []
    pos = 0
    while True:
        match = _KEY_SEP.search(text, pos)
        if match is None:
            out.append(text[pos:])
            return ''.join(out)
        out.append(text[pos:match.end()])
        pos = match.end()
        if _SECRET_KEY.search(match.group('key')):
            value = _VALUE.match(text, pos)
            if value:
                out.append(MASK)
                pos = value.end()


# Secrets shorter than this are not searched for in free text: masking every
# "a" in a log would destroy it and protect nothing.
MIN_SECRET_LEN = 4


def redact(text, secrets=()):
    """Return text with the given secret values, URL credentials and password=... pairs masked."""
    if text is None:
        return text
    if not isinstance(text, str):
        text = str(text)
    for secret in sorted((s for s in secrets if s and len(str(s)) >= MIN_SECRET_LEN), key=len, reverse=True):
        text = text.replace(str(secret), MASK)
    text = _URL_CREDENTIALS.sub(lambda m: '%s:%s@' % (m.group('head'), MASK), text)
    text = _mask_secret_pairs(text)
    return text


def redact_url(url):
    """A URL fit for a message: the password (if any) masked."""
    return redact(url) if url else url


def tail(text, limit=4096):
    """The last ``limit`` characters of text, cut at a line start where possible."""
    if text is None:
        return ''
    if len(text) <= limit:
        return text
    cut = text[-limit:]
    newline = cut.find('\n')
    if 0 <= newline < len(cut) - 1 and newline < 200:
        cut = cut[newline + 1:]
    return cut

# -*- coding: utf-8 -*-
# Copyright (c) 2026, shipyard.webstack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Check the app's environment against a schema, reporting every violation by
variable name and never a value (so the result is safe to print even when the
environment holds secrets).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from urllib.parse import urlsplit

from ansible.errors import AnsibleFilterError

# Matched case-insensitively, each at the start of the value or after a character that
# is not a letter or digit (so 'your_api_key_here', 'CHANGEME123', 'postgres://u:password@h'
# match, while a random 'aXxxB' does not). '*' matches anything.
DEFAULT_PLACEHOLDERS = (
    'changeme', 'change_me', 'change-me', 'replaceme', 'replace_me', 'replace-me',
    'example', 'your_*', 'your-*', 'xxx', 'todo', 'tbd', 'fixme', 'password', 'secret',
    'placeholder', 'dummy', 'insert_*', '<*>',
)

TYPES = ('string', 'int', 'url', 'bool')
TRUE_WORDS = ('true', 'yes', 'on', '1')
FALSE_WORDS = ('false', 'no', 'off', '0')

# rule -> the Python types its value may have in the schema
RULES = {
    'required': (bool,),
    'type': (str,),
    'min_length': (int,),
    'max_length': (int,),
    'length': (int,),
    'regex': (str,),
    'allowed': (list, tuple),
    'placeholders': (bool,),
    'forbidden': (list, tuple),
    'min': (int,),
    'max': (int,),
    'schemes': (list, tuple),
    'hint': (str,),
    'description': (str,),
}

_INT_RE = re.compile(r'^[+-]?[0-9]+$')
_CACHE = {}


def _fail(msg):
    raise AnsibleFilterError('env_schema_violations: %s' % msg)


def placeholder_regex(pattern):
    """A placeholder pattern ('your_*') -> compiled regex matching it anywhere at a word start."""
    key = pattern.lower()
    if key not in _CACHE:
        body = ''.join('.*' if char == '*' else re.escape(char) for char in key)
        _CACHE[key] = re.compile(r'(?<![a-z0-9])' + body, re.I | re.S)
    return _CACHE[key]


def find_placeholder(text, patterns):
    """The first pattern the text matches (or None)."""
    for pattern in patterns:
        if placeholder_regex(str(pattern)).search(text):
            return pattern
    return None


def _check_rules(name, rules):
    if rules is None:
        return {}
    if not isinstance(rules, dict):
        _fail('the schema of %s must be a dictionary of rules, not %s' % (name, type(rules).__name__))
    for rule, value in rules.items():
        if rule not in RULES:
            _fail('the schema of %s has an unknown rule %r (known: %s)' % (name, rule, ', '.join(sorted(RULES))))
        allowed = RULES[rule]
        if not isinstance(value, allowed) or (bool not in allowed and isinstance(value, bool)):
            _fail('the schema of %s: %s must be a %s' % (name, rule, ' or '.join(t.__name__ for t in allowed)))
    if rules.get('type', 'string') not in TYPES:
        _fail('the schema of %s: type must be one of %s' % (name, ', '.join(TYPES)))
    if 'regex' in rules:
        try:
            re.compile(rules['regex'])
        except re.error as exc:
            _fail('the schema of %s: regex is not a valid regular expression (%s)' % (name, exc))
    return rules


def _as_text(value):
    if isinstance(value, bool):
        return 'true' if value else 'false'
    return str(value)


def _url_scheme(text):
    """The lower-cased scheme of an absolute URL with a host, or None when it is not one."""
    try:
        parts = urlsplit(text)
        if parts.port is not None and not 0 < parts.port < 65536:  # ValueError on a non-numeric port
            return None
    except ValueError:
        return None
    if parts.scheme and parts.netloc and parts.hostname:
        return parts.scheme.lower()
    return None


def _type_problem(value, text, rules):
    """What is wrong with the value's type (or None)."""
    kind = rules.get('type', 'string')
    if kind == 'string':
        if isinstance(value, bool):
            return 'must be a string, not a YAML boolean (quote it)'
        return None
    if kind == 'int':
        if isinstance(value, bool) or not (isinstance(value, int) or _INT_RE.match(text.strip())):
            return 'must be an integer'
        number = int(text.strip()) if not isinstance(value, int) else value
        if 'min' in rules and number < rules['min']:
            return 'must be an integer >= %d' % rules['min']
        if 'max' in rules and number > rules['max']:
            return 'must be an integer <= %d' % rules['max']
        return None
    if kind == 'bool':
        if isinstance(value, bool) or text.strip().lower() in TRUE_WORDS + FALSE_WORDS:
            return None
        return 'must be a boolean (true/false, yes/no, on/off, 1/0)'
    # url
    schemes = [str(s).lower() for s in rules.get('schemes') or ()]
    scheme = _url_scheme(text.strip())
    if scheme is None:
        return 'must be a URL (scheme://host...)' + (' with scheme %s' % ' or '.join(schemes) if schemes else '')
    if schemes and scheme not in schemes:
        return 'must be a URL with scheme %s' % ' or '.join(schemes)
    return None


def _key_violations(name, value, rules, placeholders):
    """Every violation of one variable, as 'what is wrong' phrases (no name, never the value)."""
    if value is None or (isinstance(value, str) and value == ''):
        if rules.get('required'):
            return ['is required but %s' % ('empty' if value == '' else 'not set')]
        return []
    if isinstance(value, dict):
        return ['must be a single value, not a mapping']
    if isinstance(value, (list, tuple)):
        return ['must be a single value, not a list']
    text = _as_text(value)
    problems = []
    problem = _type_problem(value, text, rules)
    if problem:
        problems.append(problem)
    length = len(text)
    if 'length' in rules and length != rules['length']:
        problems.append('must be exactly %d characters long (it has %d)' % (rules['length'], length))
    if 'min_length' in rules and length < rules['min_length']:
        problems.append('must be at least %d characters long (it has %d)' % (rules['min_length'], length))
    if 'max_length' in rules and length > rules['max_length']:
        problems.append('must be at most %d characters long (it has %d)' % (rules['max_length'], length))
    if 'regex' in rules and not re.fullmatch(rules['regex'], text):
        problems.append('does not match the pattern %s' % rules['regex'])
    if 'allowed' in rules and text not in [_as_text(choice) for choice in rules['allowed']]:
        problems.append('must be one of: %s' % ', '.join(_as_text(choice) for choice in rules['allowed']))
    patterns = list(placeholders) if rules.get('placeholders', True) else []
    patterns += [str(p) for p in rules.get('forbidden') or ()]
    found = find_placeholder(text, patterns)
    if found is not None:
        # The matched pattern is not named: it is a piece of the value.
        problems.append('looks like a placeholder value: set the real value')
    return problems


def env_schema_violations(env, schema, placeholders=None, allow_unknown=True):
    """Every violation of ``env`` (dict of variables) against ``schema`` (dict of name -> rules).

    Returns a list of messages 'NAME: what is wrong', in the schema's order, empty when the
    environment is valid. No message ever contains a value of the environment.
    """
    if env is None:
        env = {}
    if not isinstance(env, dict):
        _fail('the environment must be a dictionary of variables, not %s' % type(env).__name__)
    if schema is None:
        schema = {}
    if not isinstance(schema, dict):
        _fail('the schema must be a dictionary of variable names to rules, not %s' % type(schema).__name__)
    if placeholders is None:
        placeholders = DEFAULT_PLACEHOLDERS
    elif not isinstance(placeholders, (list, tuple)):
        _fail('placeholders must be a list of patterns')
    violations = []
    for name, rules in schema.items():
        rules = _check_rules(name, rules)
        hint = rules.get('hint')
        for problem in _key_violations(name, env.get(name), rules, placeholders):
            violations.append('%s: %s%s' % (name, problem, ' (%s)' % hint if hint else ''))
    if not allow_unknown:
        for name in env:
            if name not in schema:
                violations.append('%s: is not in the schema' % name)
    return violations


class FilterModule(object):
    """App environment schema filters."""

    def filters(self):
        return {
            'env_schema_violations': env_schema_violations,
        }

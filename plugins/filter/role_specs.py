# -*- coding: utf-8 -*-
# Copyright (c) 2026, shipyard.webstack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A host's role variables against the roles' meta/argument_specs.yml, for deploy.yml's preflight:
every violation at once, by variable name, never a value.

Uses the same validator as ansible.builtin.validate_argument_spec (and as a role's own start-up check),
so the preflight and the roles agree. Its messages can carry the offending value ("got: foo",
"'5432/tcp' cannot be converted"); they are rewritten from their parts (name, expected type or choices)
and anything left over is stripped of secret values.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

# Which roles deploy.yml applies to the hosts of each inventory group.
GROUP_ROLES = {
    'postgres': ['postgres'],
    'pgbouncer': ['pgbouncer'],
    'redis': ['redis'],
    'app': ['docker', 'proxy', 'app'],
    'db_backup': ['db_backup'],
}

# The validator puts "found in '<parent>'" after the name (elements) or after the type (options).
_TYPE_RE = re.compile(r"^(?P<kind>argument|Elements value for option) '(?P<name>[^']+)'"
                      r"(?: found in '(?P<ctx>[^']+)'\.?)? is of type (?P<given>\S+)"
                      r"(?: found in '(?P<ctx2>[^']+)'\.?)? and we were unable to convert to (?P<wanted>\w+)")
_CHOICE_RE = re.compile(r'^value of (?P<name>\S+) must be one (?P<more>or more )?of: (?P<choices>.*?)'
                        r'(?:, got: |\. Got no match for: ).*?(?: found in (?P<ctx>.*))?$', re.S)
_REQUIRED_RE = re.compile(r'^missing required arguments: (?P<names>.*?)(?: found in (?P<ctx>.*))?$', re.S)
_UNSUPPORTED_RE = re.compile(r'^(?P<name>[^\s.]+(?:\.[^\s.]+)*)\. Supported parameters include: (?P<known>.*?)\.?$',
                             re.S)
_SECRET_KEY_RE = re.compile(r'pass|secret|key|token|cert', re.I)
_REDACTED = '********'


def _article(kind):
    return 'an' if kind[:1] in 'aeiou' else 'a'


def _secrets_of(values, options):
    """String leaves of the values of no_log options and of keys that name a secret (for the safety net)."""
    found = set()

    def walk(value, secret):
        if isinstance(value, dict):
            for key, item in value.items():
                walk(item, secret or bool(_SECRET_KEY_RE.search(str(key))))
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item, secret)
        elif secret and value not in (None, '') and not isinstance(value, bool):
            found.add(str(value))

    for name, value in values.items():
        spec = options.get(name) or {}
        walk(value, bool(spec.get('no_log')) or bool(_SECRET_KEY_RE.search(name)))
    return found


def _plain(value):
    """The same data as built-in dicts, lists and strs.

    The validator deep-copies its spec and parameters; a template's result carries ansible-core's
    tags (origins) on every string, and copying those made the check of one host take seconds.
    """
    if isinstance(value, dict):
        return dict((_plain(key), _plain(item)) for key, item in value.items())
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, str):
        return str.__str__(value)   # a subclass's instance as a str (a str itself is returned as is)
    return value


def _rewrite(message):
    """[(variable, what is wrong)] from one validator message, built from its parts, no value."""
    match = _TYPE_RE.match(message)
    if match:
        ctx = match.group('ctx') or match.group('ctx2')
        name = match.group('name') if not ctx else '%s.%s' % (ctx.replace(' -> ', '.'), match.group('name'))
        wanted = match.group('wanted')
        if match.group('kind') == 'argument':
            return [(name, 'must be %s %s (it is %s %s)' % (_article(wanted), wanted, _article(match.group('given')),
                                                            match.group('given')))]
        given = match.group('given')
        return [(name, 'every item must be %s %s (one is %s %s)' % (_article(wanted), wanted, _article(given), given))]
    match = _CHOICE_RE.match(message)
    if match:
        name = match.group('name') if not match.group('ctx') else '%s.%s' % (match.group('ctx').replace(' -> ', '.'),
                                                                             match.group('name'))
        choices = ', '.join(choice or '""' for choice in match.group('choices').split(', '))
        return [(name, 'must be one %sof: %s' % (match.group('more') or '', choices))]
    match = _REQUIRED_RE.match(message)
    if match:
        prefix = (match.group('ctx').replace(' -> ', '.') + '.') if match.group('ctx') else ''
        return [(prefix + name.strip(), 'is required but not set') for name in match.group('names').split(',')]
    match = _UNSUPPORTED_RE.match(message)
    if match:
        return [(match.group('name'), 'is not a known option here (known: %s)' % match.group('known'))]
    return [(None, message)]


def role_spec_violations(values, specs, roles, host=''):
    """Every violation of a host's variables against the argument specs of the roles it gets.

    values: {variable: value}, the host's variables that some spec names (only the defined ones: the
    roles' defaults fill the rest, as when the role runs); specs: {role: options of its main entry point};
    roles: the roles this host gets. Returns ['<variable> on <host> (role <role>): <what is wrong>', ...].
    """
    if not isinstance(values, dict):
        raise AnsibleFilterError('role_spec_violations: expects a dict of variable -> value')
    if not isinstance(specs, dict):
        raise AnsibleFilterError('role_spec_violations: specs must be a dict of role -> argument spec options')
    out = []
    for role in roles or []:
        if role not in specs:
            raise AnsibleFilterError('role_spec_violations: no argument spec for the role %s' % role)
        options = _plain(specs[role] or {})
        provided = _plain(dict((name, values[name]) for name in options if name in values))
        secrets = sorted(_secrets_of(provided, options), key=len, reverse=True)
        result = ArgumentSpecValidator(options).validate(provided, validate_role_argument_spec=True)
        for message in result.error_messages:
            for name, problem in _rewrite(str(message)):
                text = problem if name is None else '%s: %s' % (name, problem)
                for secret in secrets:
                    text = text.replace(secret, _REDACTED)
                if name is None:
                    # Not a message this filter knows how to rebuild: keep it up to the first ': '
                    # (what comes after is where the validator quotes what it was given).
                    text = text.split(': ', 1)[0]
                    out.append('%s on %s (role %s): %s' % ('role variables', host, role, text))
                else:
                    variable, _sep, what = text.partition(': ')
                    out.append('%s on %s (role %s): %s' % (variable, host, role, what))
    return out


def role_spec_roles(group_names):
    """The roles deploy.yml applies to a host in these groups, in the order it applies them."""
    order = ['postgres', 'redis', 'pgbouncer', 'db_backup', 'docker', 'proxy', 'app']
    wanted = set()
    for group in group_names or []:
        wanted.update(GROUP_ROLES.get(group, []))
    return [role for role in order if role in wanted]


class FilterModule(object):
    def filters(self):
        return {
            'role_spec_violations': role_spec_violations,
            'role_spec_roles': role_spec_roles,
        }

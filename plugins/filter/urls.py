# -*- coding: utf-8 -*-
# Copyright (c) 2026, shipyard.webstack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Connection URLs for the app's environment, with credentials percent-encoded.

A password with '@', ':' or '/' in it silently breaks a hand-built URL; these
filters encode every part so any vault value is safe to use.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from urllib.parse import quote, urlencode

from ansible.errors import AnsibleFilterError


def _require(spec, keys, filter_name):
    if not isinstance(spec, dict):
        raise AnsibleFilterError('%s expects a dict, got %s' % (filter_name, type(spec).__name__))
    missing = [key for key in keys if spec.get(key) in (None, '')]
    if missing:
        raise AnsibleFilterError('%s: missing %s' % (filter_name, ', '.join(missing)))


def _host(host):
    # IPv6 literals need brackets inside a URL.
    return '[%s]' % host if ':' in host and not host.startswith('[') else host


def _userinfo(user, password):
    if user in (None, '') and password in (None, ''):
        return ''
    text = quote(str(user or ''), safe='')
    if password not in (None, ''):
        text += ':' + quote(str(password), safe='')
    return text + '@'


def postgres_url(spec):
    """{user, password, host, port, database, sslmode?, params?} -> postgresql://... ."""
    _require(spec, ('user', 'host', 'database'), 'postgres_url')
    url = 'postgresql://%s%s:%d/%s' % (
        _userinfo(spec['user'], spec.get('password')), _host(str(spec['host'])),
        int(spec.get('port') or 5432), quote(str(spec['database']), safe=''))
    params = dict(spec.get('params') or {})
    if spec.get('sslmode'):
        params['sslmode'] = spec['sslmode']
    if params:
        url += '?' + urlencode(sorted(params.items()))
    return url


def redis_url(spec):
    """{host, port, password?, username?, db?, tls?} -> redis:// or rediss:// ."""
    _require(spec, ('host',), 'redis_url')
    scheme = 'rediss' if spec.get('tls') else 'redis'
    password = spec.get('password')
    username = spec.get('username')
    userinfo = ''
    if password not in (None, ''):
        userinfo = _userinfo(username or '', password)
    elif username:
        raise AnsibleFilterError('redis_url: a username needs a password')
    return '%s://%s%s:%d/%d' % (scheme, userinfo, _host(str(spec['host'])),
                                int(spec.get('port') or 6379), int(spec.get('db') or 0))


def pgpass_line(spec):
    """{host?, port?, database?, user?, password} -> one line of a libpq password file (no newline).

    Fields left out or empty match anything (*). libpq reads a backslash as escaping the next character,
    so ':' and '\\' are escaped in every field; a line break cannot be written in one.
    """
    if not isinstance(spec, dict):
        raise AnsibleFilterError('pgpass_line: expects a dict with password and optionally host, port, database, user')
    if spec.get('password') in (None, ''):
        raise AnsibleFilterError('pgpass_line: password is required')
    fields = []
    for key in ('host', 'port', 'database', 'user', 'password'):
        value = spec.get(key)
        value = '*' if value in (None, '') and key != 'password' else str(value)
        if '\n' in value or '\r' in value:
            raise AnsibleFilterError('pgpass_line: %s cannot hold a line break' % key)
        fields.append(value if value == '*' and key != 'password' else value.replace('\\', '\\\\').replace(':', '\\:'))
    return ':'.join(fields)


class FilterModule(object):
    """URL filters."""

    def filters(self):
        return {
            'postgres_url': postgres_url,
            'redis_url': redis_url,
            'pgpass_line': pgpass_line,
        }

"""packages_missing and package_version: a role asks apt, or reads a version, only for what the facts do not show."""

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS = os.path.join(ROOT, '.cache', 'collections')
if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)

from ansible.errors import AnsibleFilterError  # noqa: E402
from ansible_collections.shipyard.webstack.plugins.filter.packages import package_version, packages_missing  # noqa: E402

FACTS = {'nginx': [{'name': 'nginx', 'version': '1.22.1-9', 'source': 'apt'}],
         'python3-psycopg2': [{'name': 'python3-psycopg2', 'version': '2.9.5-1', 'source': 'apt'}],
         'gone': []}


def test_installed_packages_are_not_missing():
    assert packages_missing(['nginx', 'python3-psycopg2'], FACTS) == []


def test_the_missing_ones_in_the_order_given():
    assert packages_missing(['redis-server', 'nginx', 'gone', 'pgbouncer'], FACTS) == ['redis-server', 'gone', 'pgbouncer']


def test_a_list_of_installed_names_answers_the_same():
    assert packages_missing(['redis-server', 'nginx', 'gone'], ['nginx', 'python3-psycopg2']) == ['redis-server', 'gone']
    assert packages_missing(['nginx'], []) == ['nginx']


def test_without_package_facts_everything_is_missing():
    assert packages_missing(['nginx', 'pgbouncer']) == ['nginx', 'pgbouncer']
    assert packages_missing(['nginx'], None) == ['nginx']


@pytest.mark.parametrize('name', ['nginx=1.22.1-9', 'nginx/bookworm-backports', 'nginx*', 'ngin?', '/tmp/nginx.deb',
                                  'nginx>=1.22'])
def test_names_apt_resolves_itself_always_go_to_apt(name):
    assert packages_missing([name], FACTS) == [name]


def test_bad_input_is_named():
    with pytest.raises(AnsibleFilterError, match='list of package names'):
        packages_missing('nginx', FACTS)
    with pytest.raises(AnsibleFilterError, match='ansible_facts.packages'):
        packages_missing(['nginx'], 'nginx')


def test_package_version_reads_either_fact_format():
    assert package_version('nginx', {'nginx': '1.22.1-9', 'pgbouncer': '1.18.0-1'}) == '1.22.1-9'
    assert package_version('nginx', FACTS) == '1.22.1-9'


def test_package_version_is_empty_when_unknown():
    assert package_version('pgbouncer', {'nginx': '1.22.1-9'}) == ''
    assert package_version('gone', FACTS) == ''
    assert package_version('nginx') == ''
    assert package_version('nginx', None) == ''


@pytest.mark.parametrize('name, versions, message', [
    ('', {}, 'expects a package name'),
    (['nginx'], {}, 'expects a package name'),
    ('nginx', ['nginx'], 'the versions must be a dict'),
])
def test_package_version_bad_input_is_named(name, versions, message):
    with pytest.raises(AnsibleFilterError, match=message):
        package_version(name, versions)

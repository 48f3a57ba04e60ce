"""paths_changed: a handler of a role that writes several files in one managed_files run acts only for its files."""

import pytest

from ansible.errors import AnsibleFilterError
from ansible_collections.shipyard.webstack.plugins.filter.files import paths_changed

RESULT = {'changed': True, 'changed_paths': ['/etc/pgbouncer/pgbouncer.ini', '/etc/systemd/system/x.timer']}


def test_one_of_the_paths_changed():
    assert paths_changed(RESULT, '/etc/pgbouncer/pgbouncer.ini') is True
    assert paths_changed(RESULT, ['/etc/systemd/system/y.service', '/etc/systemd/system/x.timer']) is True


def test_none_of_the_paths_changed():
    assert paths_changed(RESULT, '/etc/docker/daemon.json') is False
    assert paths_changed(RESULT, []) is False
    assert paths_changed({'changed': False, 'changed_paths': []}, '/etc/pgbouncer/pgbouncer.ini') is False


def test_a_task_that_did_not_run_changed_nothing():
    assert paths_changed(None, '/etc/docker/daemon.json') is False
    assert paths_changed({'skipped': True, 'changed': False}, '/etc/docker/daemon.json') is False


def test_not_a_result():
    with pytest.raises(AnsibleFilterError, match='expects a registered managed_files result'):
        paths_changed(['/etc/docker/daemon.json'], '/etc/docker/daemon.json')

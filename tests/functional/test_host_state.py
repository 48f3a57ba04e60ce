"""host_state on this machine: the installed packages and versions dpkg knows, and the units only where
systemd runs (the molecule hosts; this machine runs without it, so nothing is known of its units)."""

import os
import subprocess

from modrun import run_module


def dpkg_installed():
    out = subprocess.run(['dpkg-query', '--show', '--showformat', '${db:Status-Abbrev}|${Package}|${Version}\n'],
                         check=True, capture_output=True, text=True).stdout
    return dict(line.split('|')[1:] for line in out.splitlines() if line.startswith('ii'))


def test_packages_and_versions_are_dpkgs():
    result = run_module('host_state', {})
    assert result.get('failed') is not True, result.get('msg')
    assert result['changed'] is False
    facts = result['ansible_facts']
    installed = dpkg_installed()
    assert facts['shipyard_package_versions'] == installed
    assert facts['shipyard_installed_packages'] == sorted(installed)
    assert 'dpkg' in facts['shipyard_installed_packages']


def test_units_are_known_only_where_systemd_runs():
    units = run_module('host_state', {})['ansible_facts']['shipyard_units']
    if os.path.isdir('/run/systemd/system'):
        assert isinstance(units, dict) and any(name.endswith('.service') for name in units)
    else:
        assert units is None


def test_check_mode_reads_the_same():
    assert (run_module('host_state', {}, check_mode=True)['ansible_facts']
            == run_module('host_state', {})['ansible_facts'])


def test_gather_subset_gives_the_facts_setup_gives_under_the_same_names():
    mine = run_module('host_state', {'gather_subset': ['min', 'network']})['ansible_facts']
    theirs = run_module('ansible.modules.setup', {'gather_subset': ['min', 'network']})['ansible_facts']
    shipyard = set(name for name in mine if name.startswith('shipyard_'))
    assert set(mine) - shipyard == set(theirs)
    for name in ('ansible_os_family', 'ansible_distribution', 'ansible_default_ipv4', 'ansible_all_ipv4_addresses'):
        assert mine[name] == theirs[name], name
    assert 'ansible_os_family' not in run_module('host_state', {})['ansible_facts']


def test_an_unknown_subset_is_a_clear_error():
    result = run_module('host_state', {'gather_subset': ['no_such_subset']})
    assert result['failed'] and result['msg'].startswith('gather_subset: ') and 'no_such_subset' in result['msg']


def test_kernel_settings_are_read_with_whether_they_can_be_changed():
    facts = run_module('host_state', {'kernel_settings': ['vm.overcommit_memory', 'vm.no_such_setting']})['ansible_facts']
    with open('/proc/sys/vm/overcommit_memory') as handle:
        value = handle.read().strip()
    settings = facts['shipyard_kernel_settings']
    assert settings['vm.overcommit_memory'] == {'value': value,
                                                'writable': os.access('/proc/sys/vm/overcommit_memory', os.W_OK)}
    assert settings['vm.no_such_setting'] == {'value': None, 'writable': False}
    bad = run_module('host_state', {'kernel_settings': ['../../etc/shadow']})
    assert bad['failed'] and 'is not a sysctl name' in bad['msg']


def test_globs_report_the_paths_that_match(tmp_path):
    (tmp_path / '15' / 'main' / 'conf.d').mkdir(parents=True)
    (tmp_path / '15' / 'main' / 'conf.d' / '50-shipyard.conf').write_text('x\n')
    (tmp_path / '16' / 'main').mkdir(parents=True)
    ours = str(tmp_path / '*' / '*' / 'conf.d' / '50-shipyard.conf')
    nothing = str(tmp_path / 'nothing' / '*.conf')
    globs = run_module('host_state', {'globs': [ours, nothing]})['ansible_facts']['shipyard_globs']
    assert globs == {ours: [str(tmp_path / '15' / 'main' / 'conf.d' / '50-shipyard.conf')], nothing: []}

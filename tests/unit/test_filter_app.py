"""App process plan, proxy feed, release history: pure logic of plugins/filter/app.py."""

import os

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from ansible_collections.shipyard.webstack.plugins.filter import app as F

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

TWO = {
    'web': {'command': ['web'], 'ports': [{'name': 'api', 'container_port': 4001, 'routes': ['/api']},
                                          {'name': 'front', 'container_port': 4000, 'routes': ['/']}],
            'health': {'path': '/api/health', 'port': 'api'}},
    'worker': {'command': 'worker --queue default', 'memory': '512m'},
    'scheduler': {'command': ['scheduler'], 'health': {'command': ['true']}},
}


def test_filter_defaults_equal_the_role_defaults():
    with open(os.path.join(ROOT, 'roles', 'app', 'defaults', 'main.yml')) as handle:
        defaults = yaml.safe_load(handle)
    assert F.DEFAULT_HOST_PORT_BASE == defaults['app_host_port_base']
    assert F.DEFAULT_SLOT_PORT_OFFSET == defaults['app_slot_port_offset']
    assert F.DEFAULT_PROCESS == defaults['app_process_defaults']


def test_plan_orders_slotted_first_and_fills_defaults():
    plan = F.app_process_plan(TWO)
    assert [p['name'] for p in plan] == ['web', 'scheduler', 'worker']
    web, scheduler, worker = plan
    assert web['slotted'] and not worker['slotted'] and not scheduler['slotted']
    assert worker['command'] == ['worker', '--queue', 'default']
    assert worker['memory'] == '512m' and web['memory'] == '1g'
    assert web['cpus'] == 1.0 and web['stop_timeout'] == 30 and web['restart_policy'] == 'always'
    assert worker['health'] == {'type': 'docker', 'docker': True}
    assert scheduler['health']['type'] == 'command' and scheduler['health']['command'] == ['true']
    assert web['health']['type'] == 'http' and web['health']['port'] == 'api'


def test_two_ports_get_two_upstreams_and_slot_ports():
    web = F.app_process_plan(TWO)[0]
    assert [(p['upstream'], p['host_ports']) for p in web['ports']] == [
        ('web_api', {'blue': 18000, 'green': 18100}), ('web_front', {'blue': 18001, 'green': 18101})]


def test_proxy_feed():
    upstreams = F.app_proxy_upstreams(TWO)
    assert upstreams == {
        'web_api': {'blue': ['127.0.0.1:18000'], 'green': ['127.0.0.1:18100'], 'check_path': '/api/health'},
        'web_front': {'blue': ['127.0.0.1:18001'], 'green': ['127.0.0.1:18101']},
    }
    assert F.app_proxy_routes(TWO) == [{'path': '/', 'upstream': 'web_front'}, {'path': '/api', 'upstream': 'web_api'}]
    # The plan and the raw dict give the same answer; a base moves every port.
    assert F.app_proxy_upstreams(F.app_process_plan(TWO)) == upstreams
    assert F.app_proxy_upstreams(TWO, 20000, 10)['web_api'] == {
        'blue': ['127.0.0.1:20000'], 'green': ['127.0.0.1:20010'], 'check_path': '/api/health'}


def test_single_port_upstream_is_the_process_name():
    plan = F.app_process_plan({'web': {'ports': [{'container_port': 8000, 'host_port': 9000}], 'health': {'path': '/h'}}})
    assert plan[0]['ports'][0]['upstream'] == 'web'
    assert plan[0]['ports'][0]['host_ports'] == {'blue': 9000, 'green': 9100}


@pytest.mark.parametrize('processes, words', [
    ({}, 'non-empty'),
    ({'Web': {}}, 'process name'),
    ({'web': {'ports': [{'container_port': 1}], 'health': {'path': '/'}, 'colour': 'red'}}, 'unknown keys colour'),
    ({'web': {'ports': [{'container_port': 1}, {'container_port': 2}]}}, 'need a name'),
    ({'web': {'ports': [{'container_port': 1, 'host_port': 9000}]},
      'api': {'ports': [{'container_port': 1, 'host_port': 9100}]}}, 'both publish host port 9100'),
    ({'worker': {'health': {'path': '/health'}}}, 'has none'),
    ({'web': {'ports': [{'name': 'http', 'container_port': 1}], 'health': {'path': '/', 'port': 'admin'}}}, 'not one of its ports'),
    ({'web': {'ports': [{'container_port': 1, 'routes': ['api']}]}}, 'starting with /'),
])
def test_bad_processes_are_refused_with_the_reason(processes, words):
    with pytest.raises(AnsibleFilterError, match=words):
        F.app_process_plan(processes)


def test_duplicate_route_is_refused():
    with pytest.raises(AnsibleFilterError, match='given twice'):
        F.app_proxy_routes({'a': {'ports': [{'container_port': 1, 'routes': ['/']}]},
                            'b': {'ports': [{'container_port': 1, 'routes': ['/']}]}})


def entry(release, result='ok', **extra):
    out = {'release': release, 'image_id': 'id-' + release, 'result': result}
    out.update(extra)
    return out


def test_history_record_skips_a_repeated_release_and_trims():
    history = [entry('a')]
    assert F.app_history_record(history, entry('a', time='later')) == history
    assert F.app_history_record(history, entry('b')) == [entry('a'), entry('b')]
    assert F.app_history_record(history, entry('a', 'failed'))[-1]['result'] == 'failed'
    assert len(F.app_history_record([entry(str(i)) for i in range(5)], entry('x'), 3)) == 3


def test_rollback_target_is_the_last_good_other_release():
    history = [entry('v1'), entry('v2'), entry('broken', 'failed'), entry('bad', 'failed')]
    assert F.app_rollback_target(history)['release'] == 'v1'
    # After the rollback, v2 (left by it) is not a target any more.
    history.append(entry('v1', action='rollback', rolled_back_from='v2'))
    assert F.app_rollback_target(history) is None
    history += [entry('v3')]
    assert F.app_rollback_target(history)['release'] == 'v1'
    assert F.app_rollback_target([]) is None


def test_images_to_prune_keeps_the_newest_and_the_rollback_target():
    history = [entry('v1'), entry('v2'), entry('broken', 'failed'), entry('v3'), entry('v4')]
    present = ['id-v1', 'id-v2', 'id-broken', 'id-v3', 'id-v4', 'id-not-ours']
    assert F.app_images_to_prune(history, present, keep=2) == ['id-v1', 'id-v2', 'id-broken']
    assert F.app_images_to_prune(history, present, keep=2, protect=['id-v1']) == ['id-v2', 'id-broken']
    # Only images present and recorded in the history are ever named.
    assert 'id-not-ours' not in F.app_images_to_prune(history, present, keep=1)
    assert F.app_images_to_prune(history, ['id-v4'], keep=1) == []


def slurped(data, source='/var/lib/shipyard/shop/releases.json'):
    import base64
    import json
    text = data if isinstance(data, str) else json.dumps(data)
    return {'content': base64.b64encode(text.encode()).decode(), 'encoding': 'base64', 'source': source}


def test_history_releases_from_a_slurp():
    history = [{'image': 'shop:v1', 'result': 'ok'}, {'image': 'shop:v2', 'result': 'failed'}]
    assert F.app_history_releases(slurped({'releases': history})) == history
    assert F.app_history_releases(slurped({})) == []
    # Not read (no file yet, failed_when: false, a skipped task): an empty history.
    assert F.app_history_releases({'failed': True, 'msg': 'file not found: x'}) == []
    assert F.app_history_releases({'skipped': True}) == []
    assert F.app_history_releases(None) == []
    with pytest.raises(AnsibleFilterError, match='/var/lib/shipyard/shop/releases.json is not a release history'):
        F.app_history_releases(slurped('{"releases": [}'))
    with pytest.raises(AnsibleFilterError, match='has no list of releases'):
        F.app_history_releases(slurped({'releases': None}))


def test_running_release_is_the_newest_successful_rollout():
    history = [{'image': 'shop:v1', 'result': 'ok'}, {'image': 'shop:v2', 'result': 'ok'},
               {'image': 'shop:v3', 'result': 'failed'}]
    assert F.app_running_release(history) == 'shop:v2'
    assert F.app_running_release([{'image': 'shop:v3', 'result': 'failed'}]) == 'none'
    assert F.app_running_release([]) == 'none'
    assert F.app_running_release([{'result': 'ok'}]) == 'none'

"""benchmarks/rollout.py's parsing of ansible-playbook output and its percentiles."""
import importlib.util
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SPEC = importlib.util.spec_from_file_location('bench_rollout', os.path.join(ROOT, 'benchmarks', 'rollout.py'))
bench = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(bench)

OUTPUT = '''
TASK [Deploy | Take the deploy lock on db1] ************************************
changed: [localhost -> db1]

TASK [shipyard.webstack.app : Start the new container - shop-web-blue] *********
changed: [app1]
ok: [app2]

TASK [Deploy | Summary] ********************************************************
ok: [localhost] => {
    "msg": {
        "durations": {"release": 10.5, "rollout": 20.0, "total": 41.2},
        "hosts": {"app1": {"rollout": "changed", "seconds": 9.5}, "app2": {"rollout": "failed", "seconds": 27.1}},
        "result": "FAILED"
    }
}
'''


def test_summary_is_the_last_deploy_summary_message():
    out = bench.summary('TASK [Deploy | Summary] ***\nok: [localhost] => {\n    "msg": {"old": 1}\n}\n' + OUTPUT)
    assert out['durations']['total'] == 41.2
    assert out['hosts']['app2'] == {'rollout': 'failed', 'seconds': 27.1}


def test_summary_of_an_output_without_one_is_empty():
    assert bench.summary('PLAY RECAP\n') == {}


def test_changed_tasks_are_named():
    changed = bench.changed_tasks(OUTPUT)
    assert changed == ['Deploy | Take the deploy lock on db1', 'shipyard.webstack.app : Start the new container - shop-web-blue']


def test_percentile_nearest_rank():
    values = list(range(1, 101))
    assert bench.percentile(values, 50) == 51   # index round(0.5 * 99) = 50
    assert bench.percentile(values, 99) == 99
    assert bench.percentile([7.0], 99) == 7.0


def test_host_results_are_counted_per_play_and_plays_of_one_name_add_up():
    output = '''
PLAY [Deploy | Data tier | Redis] **********************************************

TASK [shipyard.webstack.redis : Check the password] ****************************
ok: [cache1]

TASK [shipyard.webstack.redis : Install Redis] *********************************
skipping: [cache1]

PLAY [Deploy | Rollout | One batch at a time] **********************************

TASK [Deploy | Is this host still reachable?] **********************************
ok: [app1]

PLAY [Deploy | Rollout | One batch at a time] **********************************

TASK [Deploy | Is this host still reachable?] **********************************
ok: [app2]

TASK [shipyard.webstack.app : Roll out every process] **************************
changed: [app2]
failed: [app2] => {"msg": "not counted: it did not run to the end"}
'''
    assert bench.host_results_per_play(output) == {'Deploy | Data tier | Redis': 1,
                                                   'Deploy | Rollout | One batch at a time': 3}

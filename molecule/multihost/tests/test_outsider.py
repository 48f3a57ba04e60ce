"""PostgreSQL refuses a host that is in no inventory group pg_hba lets in (the scenario's `outsider`)."""

import pytest

from test_data_tier import APP_PASSWORD, APP_USER, DB_HOST, OUTSIDERS, _address, _host, _psql


def test_the_scenario_has_an_outsider():
    assert OUTSIDERS


@pytest.mark.parametrize('outsider', OUTSIDERS)
def test_postgres_refuses_a_host_not_in_the_inventory(outsider):
    res = _psql(_host(outsider), 'SELECT 1', _address(DB_HOST), 5432, APP_USER, APP_PASSWORD)
    assert res.rc != 0 and 'no pg_hba.conf entry for host "%s"' % _address(outsider) in res.stderr, res.stderr

"""What an application's own tests look like against unisender-local."""

import urllib.error


def test_the_fixture_is_there(unisender):
    lists = unisender.api("getLists")["result"]
    assert [l["title"] for l in lists] == ["Customers"]
    count = unisender.api("getContactCount", list_id=lists[0]["id"])["result"]["count"]
    assert count == 2


def test_an_import_is_journaled_with_its_key_masked(unisender):
    unisender.api("importContacts", **{"field_names[0]": "email", "data[0][0]": "clara@example.com"})
    calls = unisender.local("GET", "/_local/requests?method=importContacts")["requests"]
    assert calls[0]["outcome"]["inserted"] == 1
    assert calls[0]["params"]["api_key"] == "…-key"


def test_each_test_starts_from_the_fixture(unisender):
    total = unisender.api("getTotalContactsCount", login="shop")["result"]["total"]
    assert total == 2


def test_a_retry_path(unisender):
    unisender.local("POST", "/_local/faults",
                    {"method": "getLists", "times": 1, "http_status": 503})
    try:
        unisender.api("getLists")
        raise AssertionError("the first call should fail")
    except urllib.error.HTTPError as error:
        assert error.code == 503
        assert error.headers["Retry-After"] == "1"
    assert unisender.api("getLists")["result"][0]["title"] == "Customers"

"""account_plan: conflicts, and only the groups and users that need a module run, from one reading of a node."""

import pytest

from ansible.errors import AnsibleFilterError
from ansible_collections.positops.ha.plugins.filter.account_plan import FilterModule

account_plan = FilterModule().filters()["account_plan"]

ACCOUNTS = [
    {"name": "rstudio-pm", "uid": 2101, "group": "rstudio-pm", "gid": 2101, "home": "/var/lib/rstudio-pm"},
    {"name": "rstudio-connect", "uid": 2102, "gid": 2102},
]
PASSWD_DONE = ("root:x:0:0:root:/root:/bin/bash\n"
               "rstudio-pm:x:2101:2101::/var/lib/rstudio-pm:/usr/sbin/nologin\n"
               "rstudio-connect:x:2102:2102::/var/lib/rstudio-connect:/usr/sbin/nologin\n")
GROUP_DONE = "root:x:0:\nrstudio-pm:x:2101:\nrstudio-connect:x:2102:\n"


def reading(passwd="root:x:0:0:root:/root:/bin/bash\n", group="root:x:0:\n", homes=""):
    return "#passwd\n%s#group\n%s#homes\n%s" % (passwd, group, homes)


def test_a_bare_node_gets_every_group_and_user_with_the_role_defaults():
    plan = account_plan(reading(), ACCOUNTS)
    assert plan["conflicts"] == []
    assert plan["groups"] == [{"name": "rstudio-pm", "gid": 2101, "system": True},
                              {"name": "rstudio-connect", "gid": 2102, "system": True}]
    assert plan["users"][1] == {"name": "rstudio-connect", "uid": 2102, "group": "rstudio-connect",
                                "home": "/var/lib/rstudio-connect", "system": True, "shell": "/usr/sbin/nologin"}


def test_a_node_already_as_wanted_needs_no_module_run():
    plan = account_plan(reading(PASSWD_DONE, GROUP_DONE, "rstudio-pm\nrstudio-connect\n"), ACCOUNTS)
    assert plan == {"conflicts": [], "groups": [], "users": []}


@pytest.mark.parametrize("passwd_line, homes", [
    ("rstudio-connect:x:2102:2102::/var/lib/rstudio-connect:/usr/sbin/nologin\n", "rstudio-pm\n"),  # home gone
    ("rstudio-connect:x:2102:2102::/srv/elsewhere:/usr/sbin/nologin\n", "rstudio-pm\nrstudio-connect\n"),
    ("rstudio-connect:x:2102:2102::/var/lib/rstudio-connect:/bin/bash\n", "rstudio-pm\nrstudio-connect\n"),
    ("rstudio-connect:x:2102:0::/var/lib/rstudio-connect:/usr/sbin/nologin\n", "rstudio-pm\nrstudio-connect\n"),
    ("", "rstudio-pm\n"),  # the user is missing
])
def test_a_user_that_differs_in_any_managed_field_is_passed_to_the_module(passwd_line, homes):
    passwd = "rstudio-pm:x:2101:2101::/var/lib/rstudio-pm:/usr/sbin/nologin\n" + passwd_line
    plan = account_plan(reading(passwd, GROUP_DONE, homes), ACCOUNTS)
    assert [user["name"] for user in plan["users"]] == ["rstudio-connect"]
    assert plan["groups"] == [] and plan["conflicts"] == []


def test_conflicts_name_the_account_the_id_and_what_holds_it():
    passwd = ("rstudio-pm:x:999:999::/var/lib/rstudio-pm:/usr/sbin/nologin\n"
              "someone:x:2102:2102::/home/someone:/bin/bash\n")
    group = "rstudio-pm:x:999:\nstaff2:x:2102:\n"
    plan = account_plan(reading(passwd, group), ACCOUNTS)
    assert plan["conflicts"] == [
        "user rstudio-pm has UID 999, wanted 2101",
        "group rstudio-pm has GID 999, wanted 2101",
        "UID 2102 wanted for user rstudio-connect is taken by user someone",
        "GID 2102 wanted for group rstudio-connect is taken by group staff2",
    ]


def test_a_group_shared_by_two_accounts_is_created_once():
    accounts = [{"name": "a", "uid": 3001, "group": "shared", "gid": 3000},
                {"name": "b", "uid": 3002, "group": "shared", "gid": 3000, "system": False}]
    plan = account_plan(reading(), accounts)
    assert plan["groups"] == [{"name": "shared", "gid": 3000, "system": True}]
    assert plan["users"][1]["home"] == "/home/b"


def test_other_sections_of_the_reading_are_ignored():
    text = reading(PASSWD_DONE, GROUP_DONE, "rstudio-pm\n") + "#chrony\nii \nrstudio-connect\n"
    plan = account_plan(text, ACCOUNTS)
    assert [user["name"] for user in plan["users"]] == ["rstudio-connect"]


def test_no_accounts_or_no_reading_plans_nothing():
    assert account_plan("", []) == {"conflicts": [], "groups": [], "users": []}
    assert account_plan(None, None) == {"conflicts": [], "groups": [], "users": []}


def test_an_account_without_numeric_ids_is_refused_naming_it():
    with pytest.raises(AnsibleFilterError, match="needs name, and numeric uid and gid"):
        account_plan(reading(), [{"name": "x", "uid": "abc", "gid": 1}])

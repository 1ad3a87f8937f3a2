"""product_common's package_check refuses a download it cannot verify, naming the variable to set."""

import pytest

from .conftest import failure_messages

SHA256 = "sha256:" + "ab" * 32
URL = "https://user:s3cr3t@downloads.example.com/rstudio-pm_2023.12.0-13_amd64.deb?token=t0k3n"


def check(run_playbook, **variables):
    variables.setdefault("product_common_package_url", URL)
    variables.setdefault("product_common_package_checksum_var", "package_manager_package_checksum")
    return run_playbook([{"name": "Check", "ansible.builtin.include_role": {
        "name": "positops.ha.product_common", "tasks_from": "package_check"}, "vars": variables}])


def test_an_empty_checksum_is_refused_with_the_variables_to_set(run_playbook):
    result = check(run_playbook)
    assert result.returncode == 2, result.stdout + result.stderr
    [message] = failure_messages(result.json)
    assert "refusing to install https://***@downloads.example.com/rstudio-pm_2023.12.0-13_amd64.deb?*** without a " \
           "checksum" in message
    assert 'Set package_manager_package_checksum to "sha256:<hex>"' in message
    assert "opt out explicitly with package_manager_package_checksum_required: false" in message
    assert "s3cr3t" not in result.stdout + result.stderr and "t0k3n" not in result.stdout + result.stderr


@pytest.mark.parametrize("variables", [
    {"product_common_package_checksum": SHA256},
    {"product_common_package_checksum": "SHA512:" + "0F" * 64},
    {"product_common_package_checksum": "", "product_common_package_checksum_required": False},
    # Extra vars arrive as strings.
    {"product_common_package_checksum": "", "product_common_package_checksum_required": "false"},
])
def test_a_checksum_or_an_explicit_opt_out_passes(run_playbook, variables):
    result = check(run_playbook, **variables)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("checksum,expected", [
    ("md5:" + "a" * 32, 'must be "sha256:<hex>", "sha384:<hex>" or "sha512:<hex>" (got an algorithm of "md5")'),
    ("ab" * 32, 'must be "sha256:<hex>"'),
    ("sha256:" + "ab" * 31, "a sha256 checksum has 64 hex digits after \"sha256:\" (got 62 characters)"),
    ("sha256:" + "zz" * 32, "a sha256 checksum has 64 hex digits"),
])
def test_a_malformed_checksum_is_refused_even_when_not_required(run_playbook, checksum, expected):
    result = check(run_playbook, product_common_package_checksum=checksum,
                   product_common_package_checksum_required=False)
    assert result.returncode == 2, result.stdout + result.stderr
    [message] = failure_messages(result.json)
    assert expected in message
    assert message.startswith("localhost: package_manager_package_checksum")

"""redact_url: no URL in a message carries its credentials or its query string."""

import pytest

from ansible_collections.positops.ha.plugins.filter.redact_url import FilterModule

redact_url = FilterModule().filters()["redact_url"]


@pytest.mark.parametrize("text, expected", [
    ("https://cdn.example.com/pm/rstudio-pm_1_amd64.deb", "https://cdn.example.com/pm/rstudio-pm_1_amd64.deb"),
    ("https://cdn.example.com/a.deb?X-Amz-Signature=abc&token=s3cr3t", "https://cdn.example.com/a.deb?***"),
    ("https://user:s3cr3t@repo.example.com/a.deb", "https://***@repo.example.com/a.deb"),
    ("Request failed: <urlopen error https://u:p@h/x.deb?t=1> (404)", "Request failed: <urlopen error https://***@h/x.deb?***> (404)"),
    ("postgres://rspm:pw@db:5432/rspm?sslmode=disable", "postgres://***@db:5432/rspm?***"),
    ("no url here", "no url here"),
    (None, ""),
])
def test_secrets_are_hidden_and_the_rest_kept(text, expected):
    assert redact_url(text) == expected
    assert "s3cr3t" not in redact_url(text)

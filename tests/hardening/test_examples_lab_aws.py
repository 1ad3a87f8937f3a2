"""The AWS example (Package Manager on S3 with RDS) builds in the lab and passes pre-flight, group_vars unchanged.

RDS is a lab PostgreSQL container answering to the example's RDS endpoint name; S3 is not reachable from the lab,
so the emulator keeps its data where Server.DataDir points (each instance's disk, as with S3). What this shows:
pre-flight no longer asks that local DataDir to be shared, and both nodes hold the one encryption key.
"""

import os
import secrets

import pytest

from tests.hardening.examplelab import ExampleLab
from tests.lab.lab import Lab

pytestmark = pytest.mark.lab

BASE = os.environ.get("POSITOPS_LAB", "hd")
RDS = "rspm-db.abcdefghijkl.us-east-1.rds.amazonaws.com"
DB_PASSWORD = "lab-Db-Secret-7"


@pytest.fixture(scope="module")
def aws(node_image, debs):
    lab = Lab("%s-aws" % BASE)
    lab.destroy()
    example = ExampleLab(lab, "aws_package_manager", secrets={
        "vault_package_manager_db_password": DB_PASSWORD,
        "vault_package_manager_encryption_key": secrets.token_hex(32),
    }, volumes={}, aliases={"rds": [RDS]})
    lab.ensure_network()
    lab.start_postgres(name="rds")
    lab.create_database("rstudio_pm", "rstudio_pm", DB_PASSWORD)
    example.start()
    lab_vars = example.package_vars({"package_manager": "2023.12.0-13"})
    lab_vars.update(example.time_vars(example.hosts()[0]))
    example.write_inventory(lab_vars)
    example.site = example.require(example.playbook("site.yml"), "site.yml")
    yield example
    if not os.environ.get("POSITOPS_KEEP_LAB"):
        lab.destroy()


def test_aws_builds_and_passes_preflight(aws):
    result = aws.require(aws.playbook("preflight.yml"), "preflight.yml")
    assert "not shared" not in result.output


def test_aws_nodes_share_the_encryption_key_and_keep_data_local(aws):
    hosts = ("rspm-a.internal.example.com", "rspm-b.internal.example.com")
    keys = {aws.node(host).read_file("/var/lib/rstudio-pm/rstudio-pm.key").strip() for host in hosts}
    assert keys == {aws.secrets["vault_package_manager_encryption_key"]}
    modes = {aws.node(host).output("stat -c '%U %a' /var/lib/rstudio-pm/rstudio-pm.key") for host in hosts}
    assert modes == {"rstudio-pm 600"}
    config = aws.node(hosts[0]).read_file("/etc/rstudio-pm/rstudio-pm.gcfg")
    assert "DataDir = /var/lib/rstudio-pm/data" in config

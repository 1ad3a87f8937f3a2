"""The AWS example (Package Manager on S3 with RDS) builds in the lab and passes pre-flight, group_vars unchanged.

RDS is a lab PostgreSQL container answering to the example's RDS endpoint name. S3 is not reachable from the lab:
the emulator's stand-in for the bucket is the directory /srv/s3 (POSITEMU_S3_DIR), here a lab volume on both nodes,
writable by the service as a bucket is by the instances' IAM role; the nodes need nothing for it, as with S3.
What this shows: pre-flight does not ask the local DataDir to be shared, both nodes hold the one encryption key,
and an object one node stores in the bucket, sealed with that key, the other node reads.
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
    }, volumes={"package_manager": {"s3": "/srv/s3"}}, aliases={"rds": [RDS]})
    lab.ensure_network()
    lab.start_postgres(name="rds")
    lab.create_database("rstudio_pm", "rstudio_pm", DB_PASSWORD)
    example.start()
    # The bucket's access policy, which real S3 keeps outside the nodes (a new volume is root's, mode 0755).
    example.node(example.hosts()[0]).exec("chmod 1777 /srv/s3")
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


def test_aws_nodes_read_each_others_objects_in_the_bucket(aws):
    first, second = (aws.node(host) for host in ("rspm-a.internal.example.com", "rspm-b.internal.example.com"))
    body = secrets.token_hex(16)
    first.http_ok("http://127.0.0.1:4242/__emulator__/data/lab/object.txt", method="PUT", data=body)
    assert second.http_ok("http://127.0.0.1:4242/__emulator__/data/lab/object.txt") == body
    # In the bucket sealed with the shared key, not in the clear and not in the node's DataDir.
    first.exec("test -s /srv/s3/example-rspm-data/lab/object.txt && ! grep -q %s "
               "/srv/s3/example-rspm-data/lab/object.txt && ! test -e /var/lib/rstudio-pm/data/lab" % body)

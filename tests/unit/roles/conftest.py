"""Run a small playbook of the collection's roles on localhost (connection local), as ansible-playbook does.

``run_playbook(tasks, extra_vars=None, facts=None)`` writes a one-play playbook with ``tasks``, runs it with this
Python's ansible-playbook and returns the CompletedProcess (stdout holds the JSON callback's output, parsed into
``result.json``). ``facts`` are set first by a small module returning them as ``ansible_facts``, so the tasks see them
as the host's gathered facts (the way a platform other than this machine's is simulated). The collection is found
through a temporary ``ansible_collections/positops/ha`` link to this copy of it, under plain pytest and under
``ansible-test units`` alike.
"""

import json
import os
import pathlib
import subprocess
import sys

import pytest

COLLECTION = pathlib.Path(__file__).resolve().parents[3]
FACTS_MODULE = """#!/usr/bin/python
from ansible.module_utils.basic import AnsibleModule

module = AnsibleModule(argument_spec={"facts": {"type": "dict", "required": True}})
module.exit_json(changed=False, ansible_facts=module.params["facts"])
"""


@pytest.fixture
def run_playbook(tmp_path):
    link = tmp_path / "collections" / "ansible_collections" / "positops" / "ha"
    link.parent.mkdir(parents=True)
    link.symlink_to(COLLECTION)

    def run(tasks, extra_vars=None, facts=None, verbosity=0):
        if facts is not None:
            library = tmp_path / "library"
            library.mkdir(exist_ok=True)
            (library / "positops_test_facts.py").write_text(FACTS_MODULE)
            tasks = [{"name": "Set the simulated facts", "positops_test_facts": {"facts": facts}}] + list(tasks)
        play = {"hosts": "localhost", "gather_facts": False, "tasks": tasks}
        playbook = tmp_path / "playbook.yml"
        playbook.write_text(json.dumps([play]))
        env = dict(os.environ)
        env.update({
            "ANSIBLE_COLLECTIONS_PATH": str(tmp_path / "collections"),
            # ansible.posix (its json callback) is not installed where ansible-test units runs.
            "ANSIBLE_CALLBACK_PLUGINS": str(pathlib.Path(__file__).resolve().parent / "callback_plugins"),
            "ANSIBLE_STDOUT_CALLBACK": "positops_test_json",
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_RETRY_FILES_ENABLED": "0",
            "ANSIBLE_LOCAL_TEMP": str(tmp_path / "tmp"),
            "ANSIBLE_HOME": str(tmp_path / "home"),
        })
        args = [sys.executable, "-m", "ansible.cli.playbook", "-i", "localhost,", "-c", "local",
                "-e", "ansible_python_interpreter=%s" % sys.executable, str(playbook)]
        if extra_vars:
            args += ["-e", json.dumps(extra_vars)]
        if verbosity:
            args.append("-" + "v" * verbosity)
        proc = subprocess.run(args, capture_output=True, text=True, env=env, cwd=str(tmp_path), timeout=300,
                              check=False)
        try:
            proc.json = json.loads(proc.stdout)
        except ValueError:
            proc.json = None
        return proc

    return run


def task_results(output):
    """``[(task name, result for localhost)]`` of a JSON callback output, in order."""
    results = []
    for play in output["plays"]:
        for task in play["tasks"]:
            results.append((task["task"]["name"], task["hosts"].get("localhost", {})))
    return results


def failure_messages(output):
    return [result.get("msg", "") for _name, result in task_results(output) if result.get("failed")]

"""Every recorded CLI output names its source (cli_output/sources.yml): a seed, a public page or the emulator."""

import pathlib
import re

import pytest
import yaml

CLI_OUTPUT = pathlib.Path(__file__).resolve().parent / "cli_output"
SOURCES = CLI_OUTPUT / "sources.yml"
SOURCE = re.compile(r"^(seed \d{3}_[0-9a-f]{16}\.txt lines \d+(-\d+)?|https://\S+|emulator tests/emulator/\S+ .+)$")


def recorded_files():
    return sorted(str(path.relative_to(CLI_OUTPUT)) for path in CLI_OUTPUT.rglob("*")
                  if path.is_file() and path != SOURCES)


def sources():
    with SOURCES.open() as handle:
        return yaml.safe_load(handle)


def test_every_recorded_output_has_a_source_and_every_source_a_file():
    entries = sources()
    assert sorted(set(recorded_files()) - set(entries)) == [], "recorded outputs without an entry in sources.yml"
    assert sorted(set(entries) - set(recorded_files())) == [], "entries in sources.yml without a recorded output"


@pytest.mark.parametrize("name", recorded_files())
def test_each_source_is_a_seed_a_page_or_the_emulator(name):
    entry = sources()[name]
    assert sorted(entry) == ["source", "variant"], name
    assert SOURCE.match(entry["source"]), "%s: source %r is not 'seed NNN_<hash>.txt lines N-M', an https:// page " \
                                          "or 'emulator tests/emulator/<path> <what>'" % (name, entry["source"])
    assert entry["variant"].strip(), "%s: say 'verbatim' or how the sample differs from its source" % name

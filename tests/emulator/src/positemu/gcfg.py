"""A gcfg (git-config style INI) reader, the format of rstudio-pm.gcfg and rstudio-connect.gcfg.

gcfg rules followed here: section, subsection-less key names are case-insensitive; ``[Section "sub"]`` names a
subsection whose name is case-sensitive; ``;`` and ``#`` start comments outside quotes; values may be quoted with
``"`` (escapes ``\\"``, ``\\\\``, ``\\n``, ``\\t``); a key without ``=`` is a boolean ``true``; a key given several
times keeps every value (``get`` returns the last, ``get_all`` all of them). A key outside any section, a bad
section header or an unterminated quote is an error naming the file and line, as the real servers refuse to start.
"""

import re

_SECTION = re.compile(r'^\[\s*([A-Za-z0-9][A-Za-z0-9.-]*)\s*(?:"((?:[^"\\]|\\.)*)")?\s*\]$')
_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9-]*$")
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


class ConfigError(Exception):
    """The configuration cannot be read; the message names the file, the line and what is wrong."""


class Config:
    """Parsed configuration. Look-ups ignore the case of section and key names."""

    def __init__(self, path="<string>"):
        self.path = path
        # (section lower, subsection or None) -> {key lower: [values]}
        self._sections = {}
        self._section_names = {}

    def _section(self, name, sub):
        ident = (name.lower(), sub)
        if ident not in self._sections:
            self._sections[ident] = {}
            self._section_names[ident] = name
        return self._sections[ident]

    def has_section(self, name, sub=None):
        return (name.lower(), sub) in self._sections

    def sections(self):
        """Section names as written (first spelling), with their subsection: [(name, sub), ...]."""
        return [(self._section_names[ident], ident[1]) for ident in self._sections]

    def get_all(self, section, key, sub=None):
        return list(self._sections.get((section.lower(), sub), {}).get(key.lower(), []))

    def get(self, section, key, default=None, sub=None):
        values = self.get_all(section, key, sub)
        return values[-1] if values else default

    def get_int(self, section, key, default=None, sub=None):
        value = self.get(section, key, None, sub)
        if value is None:
            return default
        try:
            return int(value.strip())
        except ValueError:
            raise ConfigError("%s: %s.%s must be an integer, got %r" % (self.path, section, key, value)) from None

    def get_bool(self, section, key, default=None, sub=None):
        value = self.get(section, key, None, sub)
        if value is None:
            return default
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ConfigError("%s: %s.%s must be true or false, got %r" % (self.path, section, key, value))

    def items(self, section, sub=None):
        """{key lower: last value} of one section."""
        return {key: values[-1] for key, values in self._sections.get((section.lower(), sub), {}).items()}


def _unquote(raw, path, lineno):
    """Strip comments and quotes from a raw value, gcfg style (quotes may appear anywhere in the value)."""
    out = []
    in_quotes = False
    index = 0
    pending_space = ""
    while index < len(raw):
        char = raw[index]
        if char == "\\":
            if index + 1 >= len(raw):
                raise ConfigError("%s:%d: a backslash ends the line (line continuation is not supported)"
                                  % (path, lineno))
            escaped = raw[index + 1]
            mapping = {'"': '"', "\\": "\\", "n": "\n", "t": "\t"}
            if escaped not in mapping:
                raise ConfigError("%s:%d: unknown escape \\%s in value" % (path, lineno, escaped))
            out.append(pending_space + mapping[escaped])
            pending_space = ""
            index += 2
            continue
        if char == '"':
            in_quotes = not in_quotes
            out.append(pending_space)
            pending_space = ""
        elif not in_quotes and char in ";#":
            break
        elif not in_quotes and char in " \t":
            # Unquoted whitespace inside a value is kept once something follows it; trailing space is dropped.
            if out or pending_space:
                pending_space += char
        else:
            out.append(pending_space + char)
            pending_space = ""
        index += 1
    if in_quotes:
        raise ConfigError("%s:%d: unterminated quote in value" % (path, lineno))
    return "".join(out)


def parse(text, path="<string>"):
    config = Config(path)
    current = None
    for lineno, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped[0] in ";#":
            continue
        if stripped.startswith("["):
            # A comment may follow the header.
            header = re.sub(r'\s*[;#][^"\]]*$', "", stripped)
            match = _SECTION.match(header)
            if not match:
                raise ConfigError("%s:%d: bad section header %r (expected [Section] or [Section \"name\"])"
                                  % (path, lineno, stripped))
            sub = match.group(2)
            if sub is not None:
                sub = sub.replace('\\"', '"').replace("\\\\", "\\")
            current = config._section(match.group(1), sub)
            continue
        if current is None:
            raise ConfigError("%s:%d: %r is outside any [Section]" % (path, lineno, stripped))
        if "=" in stripped:
            key, raw_value = stripped.split("=", 1)
            key = key.strip()
            value = _unquote(raw_value.strip(), path, lineno)
        else:
            key = re.split(r"[\s;#]", stripped, 1)[0]
            value = "true"
        if not _KEY.match(key):
            raise ConfigError("%s:%d: bad key name %r" % (path, lineno, key))
        current.setdefault(key.lower(), []).append(value)
    return config


def load(path):
    """Read and parse a gcfg file; a missing or unreadable file is a ConfigError naming it."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        raise ConfigError("configuration file %s does not exist: create it or pass --config" % path) from None
    except PermissionError:
        import os
        import pwd
        try:
            user = pwd.getpwuid(os.geteuid()).pw_name
        except KeyError:
            user = "uid %d" % os.geteuid()
        raise ConfigError("configuration file %s is not readable by %s (uid %d): the service reads it as its "
                          "account; check its owner, group and mode" % (path, user, os.geteuid())) from None
    return parse(text, path)

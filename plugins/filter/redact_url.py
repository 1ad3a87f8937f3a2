# -*- coding: utf-8 -*-
# Copyright: positops.ha contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Hide the secrets a URL may carry (user:password@, a token in the query string) wherever URLs appear in a text."""

from __future__ import annotations

DOCUMENTATION = r"""
name: redact_url
short_description: Hide credentials and query strings of the URLs in a text
version_added: 0.2.0
author:
  - positops.ha maintainers (@positops)
description:
  - Download URLs of vendor packages may carry a token (a signed URL, C(?token=...)) or C(user:password@); error
    messages quote them. This filter replaces, in every C(http), C(https), C(ftp), C(postgres) or C(postgresql) URL of
    the text, the user information with C(***) and the query string with C(?***), so a message can name the URL
    without its secrets.
options:
  _input:
    description: A URL, or any text holding URLs.
    type: str
    required: true
"""

EXAMPLES = r"""
- name: Name the package without its token
  ansible.builtin.debug:
    msg: "could not fetch {{ package_url | positops.ha.redact_url }}"
  # https://downloads.example.com/rstudio-pm_2023.12.0-13_amd64.deb?***
"""

RETURN = r"""
_value:
  description: The text with every URL's credentials and query string hidden.
  type: str
"""

import re

_URL = re.compile(r"(?P<scheme>\b(?:https?|ftp|postgres(?:ql)?)://)(?P<userinfo>[^/\s@?#]*@)?(?P<rest>[^\s?#'\"<>]*)"
                  r"(?P<query>\?[^\s#'\"<>]*)?")


def redact_url(text):
    def hide(match):
        return "%s%s%s%s" % (match.group("scheme"), "***@" if match.group("userinfo") else "", match.group("rest"),
                             "?***" if match.group("query") else "")
    return _URL.sub(hide, "" if text is None else str(text))


class FilterModule:
    def filters(self):
        return {"redact_url": redact_url}

# -*- coding: utf-8 -*-
# Copyright: positops.ha contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Note that this module util is **PRIVATE** to the collection. It can have breaking changes at any time.
# Do not use this from other collections or standalone plugins/modules!
"""One request to a product's health URL, as wait_for_health and cluster_node read it."""

from __future__ import annotations

from ansible.module_utils.urls import fetch_url


def probe(module, url, request_timeout):
    """(status, error) of one GET: the HTTP status, or None and why there was no answer."""
    response, info = fetch_url(module, url, method="GET", timeout=request_timeout)
    if response is not None:
        response.close()
    status = info.get("status", -1)
    if status is None or status < 0:
        return None, info.get("msg") or "no answer"
    return status, None

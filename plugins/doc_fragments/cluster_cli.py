# -*- coding: utf-8 -*-
# Copyright: positops.ha contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # Options shared by the modules that drive a product's cluster CLI
    # (plugins/module_utils/_cluster.py, cluster_argument_spec()).
    DOCUMENTATION = r"""
options:
  product:
    description:
      - The product whose cluster is managed.
      - V(package_manager) runs C(rspm cluster ...) (Posit Package Manager).
      - V(workbench) runs C(rstudio-server ...) (Posit Workbench).
      - V(connect) is accepted only to fail with an explanation, because Posit Connect has no command to list or
        change nodes; its nodes are taken out and brought back by stopping and starting the C(rstudio-connect)
        service and by the load balancer.
    type: str
    required: true
    choices: [package_manager, workbench, connect]
  cli_path:
    description:
      - Path of the product's command line tool on the managed host.
      - Defaults to C(/opt/rstudio-pm/bin/rspm) for O(product=package_manager) and
        C(/usr/sbin/rstudio-server) for O(product=workbench).
      - The tool is always run with C(LC_ALL=C), because its output is parsed.
    type: path
attributes:
  platform:
    platforms: posix
notes:
  - The modules run the product's own CLI on the managed host, which must be a node of the cluster.
"""

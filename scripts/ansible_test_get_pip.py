# -*- coding: utf-8 -*-
# Copyright: positops.ha contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Stand-in for the pip bootstrap script that ansible-test downloads from a host this network cannot reach.

ansible-test runs the script inside a fresh, pip-less virtual environment as
``python get_pip_X_Y.py [pip options] pip==X.Y --no-setuptools --no-wheel``.
This stand-in installs the interpreter's bundled pip with ensurepip, then installs the requested packages
(the pinned pip) from the package index. scripts/checks copies it to ansible-test's cache path.
"""

from __future__ import annotations

import subprocess
import sys

GET_PIP_ONLY_OPTIONS = ('--no-setuptools', '--no-wheel')


def main() -> None:
    pip_arguments = [argument for argument in sys.argv[1:] if argument not in GET_PIP_ONLY_OPTIONS]
    subprocess.check_call([sys.executable, '-m', 'ensurepip', '--default-pip'])
    subprocess.check_call([sys.executable, '-m', 'pip', 'install', '--quiet'] + pip_arguments)


if __name__ == '__main__':
    main()

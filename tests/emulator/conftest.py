"""Local emulator tests (no Docker): make ``positemu`` importable from tests/emulator/src."""

import pathlib
import sys

SRC = pathlib.Path(__file__).resolve().parent / "src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))

"""The docker command line, as every lab module calls it."""

import subprocess


class LabError(RuntimeError):
    pass


def docker(*args, check=True, input=None, timeout=300):
    proc = subprocess.run(("docker",) + tuple(args), capture_output=True, text=True, input=input,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise LabError("docker %s failed (rc=%s): %s" % (" ".join(args), proc.returncode, proc.stderr.strip()))
    return proc

#!/usr/bin/env python3
"""The README's first command is one line and its `fibration` call prints
exactly the output the README shows after it; the second command's script
exists. Usage: check_readme_main_job.py ROOT FIBRATION (the built command)."""

import os
import re
import shlex
import subprocess
import sys


def blocks(text):
    """(language, body) of every fenced block, in order."""
    return re.findall(r"^```(\w*)\n(.*?)^```$", text, flags=re.M | re.S)


def main(argv):
    root, fibration = argv[1], os.path.abspath(argv[2])
    with open(os.path.join(root, "README.md"), encoding="utf-8") as fh:
        fenced = blocks(fh.read())
    shell = [i for i, (lang, _) in enumerate(fenced) if lang == "sh"]
    first = fenced[shell[0]][1].strip()
    if "\n" in first:
        sys.exit("the README's first command is not one line:\n" + first)
    step = first.split("&&")[-1].split()
    if step[0] != "build/src/cli/fibration":
        sys.exit("the README's first command does not end with build/src/cli/fibration: " + first)
    shown = fenced[shell[0] + 1]
    if shown[0] != "":
        sys.exit("the README shows no output block after its first command")
    run = subprocess.run([fibration] + step[1:], cwd=root, capture_output=True, text=True,
                         timeout=120)
    if run.returncode != 0:
        sys.exit("%s failed (%d): %s" % (shlex.join(step), run.returncode, run.stderr))
    got = [line.rstrip() for line in run.stdout.strip().split("\n")]
    want = [line.rstrip() for line in shown[1].strip().split("\n")]
    if got != want:
        sys.exit("%s prints\n%s\nbut the README shows\n%s" % (shlex.join(step), "\n".join(got),
                                                             "\n".join(want)))
    second = fenced[shell[1]][1].strip().split()
    if second[:1] != ["bash"] or not os.path.exists(os.path.join(root, second[1])):
        sys.exit("the README's second command runs a script that does not exist: %s" % second)
    print("README commands: ok")


if __name__ == "__main__":
    main(sys.argv)

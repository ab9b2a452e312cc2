#!/usr/bin/env python3
"""Writes the man page fibration(1) from the command's own help texts:
`fibration --help` (the verbs), then `fibration VERB --help` for every verb
it lists, so the page always says what the installed command does.

Usage: make_manpage.py FIBRATION OUT VERSION
Runs with the Python that runs meson: the build needs nothing else."""

import datetime
import os
import re
import subprocess
import sys


def help_text(command, *args):
    run = subprocess.run([command, *args, "--help"], capture_output=True, text=True, check=True)
    return run.stdout


def roff(text):
    """Verbatim text as roff: backslashes and leading dots escaped, '-' as
    the minus sign man pages use for options."""
    out = []
    for line in text.rstrip("\n").split("\n"):
        line = line.replace("\\", "\\e").replace("-", "\\-")
        if line.startswith((".", "'")):
            line = "\\&" + line
        out.append(line)
    return "\n".join(out)


def verbs(main_help):
    """The verbs listed under 'verbs:' in the main help, in order."""
    names = []
    listing = False
    for line in main_help.split("\n"):
        if line.strip() == "verbs:":
            listing = True
        elif listing:
            m = re.match(r"^  ([a-z][a-z0-9_-]*)\s", line)
            if not m:
                break
            names.append(m.group(1))
    return names


def main(argv):
    command, out_path, version = argv[1], argv[2], argv[3]
    main_help = help_text(command)
    names = verbs(main_help)
    if not names:
        sys.exit("make_manpage.py: no verbs in '%s --help'" % command)
    helps = {name: help_text(command, name) for name in names}
    # SOURCE_DATE_EPOCH keeps reproducible builds reproducible.
    when = datetime.datetime.fromtimestamp(
        int(os.environ.get("SOURCE_DATE_EPOCH", "0")) or datetime.datetime.now().timestamp(),
        datetime.timezone.utc)
    page = [
        '.TH FIBRATION 1 "%s" "libfibration %s" "User Commands"' % (when.strftime("%Y-%m-%d"), version),
        ".SH NAME",
        "fibration \\- find the fibration symmetries of neural networks and directed graphs",
        ".SH SYNOPSIS",
        ".nf",
    ]
    for name in names:  # each verb's own usage line
        usage = helps[name].split("\n", 1)[0]
        page.append(roff(usage[len("usage: "):] if usage.startswith("usage: ") else usage))
    page += ["\\fBfibration\\fR \\-\\-help | \\-\\-version | help \\fIVERB\\fR", ".fi",
             ".SH DESCRIPTION", ".nf", roff(main_help), ".fi", ".SH VERBS"]
    for name in names:
        page += [".SS fibration %s" % name, ".nf", roff(helps[name]), ".fi"]
    page += [
        ".SH EXIT STATUS",
        "0 success, 1 failure, 2 bad command line, 3 file not readable or writable,",
        "4 malformed or unsupported model file.",
        ".SH SEE ALSO",
        "docs/cli.md, docs/model-files.md and docs/graphs.md in the libfibration sources;",
        "the C library's header fibration.h.",
    ]
    with open(out_path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(page) + "\n")


if __name__ == "__main__":
    main(sys.argv)

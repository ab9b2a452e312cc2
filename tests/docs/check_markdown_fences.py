#!/usr/bin/env python3
"""Every Markdown file of the repository has balanced code fences.

A fence that is never closed, or a line inside a fence that looks like a
closing fence with text after it (```` ``` Tensor ````, which Markdown reads
as code, not as the end of the block), turns the rest of the page into one
code block. Usage: check_markdown_fences.py [ROOT]; exit status 1 and one
line per problem when a file is wrong."""

import os
import re
import sys

SKIP_DIRS = {".git", "node_modules", "target", "__pycache__"}
FENCE = re.compile(r"^(`{3,}|~{3,})(.*)$")


def fence_problems(lines):
    """(line number, message) for every fence problem of one file."""
    problems = []
    open_at = None  # (line number, fence characters) of the open fence
    for number, line in enumerate(lines, 1):
        m = FENCE.match(line.strip())
        if not m:
            continue
        marks, rest = m.group(1), m.group(2).strip()
        if open_at is None:
            open_at = (number, marks)
            continue
        opened_line, opened = open_at
        if marks[0] != opened[0] or len(marks) < len(opened):
            continue  # a shorter or other fence is content of the block
        if rest:
            problems.append((number, "%r inside the code block opened at line %d: a closing "
                             "fence takes no text after it" % (line.strip(), opened_line)))
            continue
        open_at = None
    if open_at is not None:
        problems.append((open_at[0], "code fence %r is never closed" % open_at[1]))
    return problems


def markdown_files(root):
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith("build"))
        for name in sorted(files):
            if name.endswith(".md"):
                yield os.path.join(folder, name)


def main(argv):
    root = argv[1] if len(argv) > 1 else os.path.dirname(os.path.dirname(
        os.path.dirname(os.path.abspath(__file__))))
    # The checker must see the defect it exists for.
    assert fence_problems(["```", "$ fibration compress", "``` Tensor", "names"]), "checker blind"
    bad = 0
    count = 0
    for path in markdown_files(root):
        count += 1
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
        for number, message in fence_problems(lines):
            print("%s:%d: %s" % (os.path.relpath(path, root), number, message))
            bad += 1
    if count == 0:
        print("no Markdown files found under %s" % root)
        return 1
    print("%d Markdown files, %d fence problems" % (count, bad))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

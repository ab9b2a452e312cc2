#!/usr/bin/env python3
"""docs/blocks/ has a page for every block kind of include/fibration.h
(FIB_OP_*, except the input and the node groups of general graphs), as the
README says. LSTM and GRU share gated.md, the attention core attention.md, the
selected step last_step.md.
Usage: check_block_pages.py ROOT."""

import os
import re
import sys

PAGE = {"lstm": "gated", "gru": "gated", "attend": "attention", "select_step": "last_step"}
NOT_BLOCKS = {"input", "nodes"}


def main(argv):
    root = argv[1]
    with open(os.path.join(root, "include", "fibration.h"), encoding="utf-8") as fh:
        kinds = re.findall(r"^#define FIB_OP_(\w+) \d+", fh.read(), flags=re.M)
    missing = []
    for kind in (k.lower() for k in kinds):
        if kind in NOT_BLOCKS:
            continue
        page = os.path.join(root, "docs", "blocks", PAGE.get(kind, kind) + ".md")
        if not os.path.exists(page):
            missing.append("FIB_OP_%s (%s)" % (kind.upper(), os.path.relpath(page, root)))
    if not kinds or missing:
        sys.exit("block kinds without a page in docs/blocks: %s" % ", ".join(missing or ["?"]))
    print("docs/blocks: a page for each of %d block kinds" % (len(kinds) - len(NOT_BLOCKS)))


if __name__ == "__main__":
    main(sys.argv)

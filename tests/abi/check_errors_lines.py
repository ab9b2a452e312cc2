#!/usr/bin/env python3
"""The public header as a manual: every function that returns a status
(FIB_API int32_t) says which errors it returns, in an "Errors:" line of the
comment just above its declaration.

    check_errors_lines.py HEADER    exit 1 and the functions without one

It also checks itself: the same header with one "Errors:" line removed
must fail.
"""
import re
import sys

# int32_t functions whose value is not a status, with the reason.
NOT_A_STATUS = {
    "fib_version": "returns the version number (FIB_VERSION_NUMBER)",
}

DECLARATION = re.compile(r"FIB_API\s+int32_t\s+(fib_\w+)\s*\(")


def without_errors_line(text):
    """Names of status-returning functions whose comment just above has no
    "Errors:"."""
    missing = []
    for m in DECLARATION.finditer(text):
        name = m.group(1)
        if name in NOT_A_STATUS:
            continue
        before = text[:m.start()].rstrip()
        comment = before[before.rfind("/*"):] if before.endswith("*/") else ""
        if "Errors:" not in comment:
            missing.append(name)
    return missing


def main():
    with open(sys.argv[1], encoding="utf-8") as fh:
        text = fh.read()
    functions = [m.group(1) for m in DECLARATION.finditer(text)]
    missing = without_errors_line(text)
    for name in missing:
        print(f"FAIL: {name} returns a status but its comment has no 'Errors:' line")
    # the check itself: one Errors line planted away must be found
    planted = text.replace("Errors:", "Fails with:", 1)
    if not without_errors_line(planted):
        print("FAIL: the check misses a comment without 'Errors:'")
        missing.append("(self-check)")
    print(f"{len(functions) - len(NOT_A_STATUS)} status-returning functions, "
          f"{len(missing)} without an Errors line")
    return 1 if missing or not functions else 0


if __name__ == "__main__":
    sys.exit(main())

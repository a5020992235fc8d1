"""Prints the valgrind records (errors and lost blocks) that belong to
stripepay or the libraries it drives: those whose innermost frame, past
valgrind's own and the C library's, is in stripepay, libcurl, json-c or
OpenSSL.  A record that merely has stripepay further up its stack (Postgres
code called by stripepay, e.g. the executor) is Postgres's."""
import re
import sys

OURS = re.compile(r"stripepay\.so|\((sp_\w+|stripepay)\.c:\d+\)|libcurl|libjson-c|libssl|libcrypto|libnghttp")
SKIP = re.compile(r"vgpreload|/libc\.so|\((strdup|memcpy|malloc|calloc|realloc)[^)]*\.c:|libc-|ld-linux")
KIND = re.compile(r"lost in loss record|Invalid|uninitialised|Mismatched|overlap|unaddressable")

records, current = [], []
for line in open(sys.argv[1], errors="replace"):
    body = re.sub(r"^==\d+== ?", "", line.rstrip("\n"))
    if body == "":
        if current:
            records.append(current)
        current = []
    else:
        current.append(body)
if current:
    records.append(current)

found = 0
for rec in records:
    if not KIND.search(rec[0]):
        continue
    frames = [f for f in rec[1:] if re.match(r"\s*(at|by) 0x", f)]
    inner = next((f for f in frames if not SKIP.search(f)), "")
    if OURS.search(inner):
        found += 1
        print("\n".join(rec))
        print()
sys.exit(1 if found else 0)

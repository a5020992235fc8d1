#!/usr/bin/env python3
"""Writes what-if variants of stripepay._ingest, made from the install
script as it is now, for BENCH_EXTRA_SQL (they break the verification on
purpose: they store less):

  ingest_variants.py [sql/stripepay--X.sql] OUTDIR
    OUTDIR/noop_ingest.sql       _ingest returns at once: what is left is the C
                                 side (signature, decoding, facts, SPI) and the call
    OUTDIR/insert_only.sql       _ingest only INSERTs the webhook_event row
    OUTDIR/no_link_update.sql    _ingest without the UPDATE that links the
                                 event to its order and payment
"""
import glob
import os
import re
import sys

here = os.path.dirname(os.path.abspath(__file__))
args = sys.argv[1:]
if len(args) == 1:
    scripts = sorted(glob.glob(os.path.join(here, "../../../sql/stripepay--*.sql")))
    scripts = [s for s in scripts if re.search(r"--[0-9.]+\.sql$", s)]
    if not scripts:
        sys.exit("no install script found")
    args = [scripts[-1]] + args
if len(args) != 2:
    sys.exit(__doc__)
src, outdir = args
text = open(src).read()
m = re.search(r"^CREATE FUNCTION @extschema@\._ingest\(.*?^\$\$;\n", text, re.S | re.M)
if not m:
    sys.exit("no _ingest in " + src)
fn = m.group(0).replace("@extschema@", "stripepay").replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)
os.makedirs(outdir, exist_ok=True)


def cut(start, end, replacement, what):
    a = fn.index(start)
    b = fn.index(end, a)
    with open(os.path.join(outdir, what), "w") as f:
        f.write("-- what-if made by ingest_variants.py from %s\n" % os.path.basename(src))
        f.write(fn[:a] + replacement + fn[b:])


cut("BEGIN\n", "END\n$$;", "BEGIN\n\tRETURN false;\n", "noop_ingest.sql")
cut("\tlinks := CASE", "END\n$$;", "\tRETURN false;\n", "insert_only.sql")
cut("\tIF links.order_id IS NOT NULL OR links.payment_id", "\tRETURN false;\nEND", "", "no_link_update.sql")
print("wrote noop_ingest.sql, insert_only.sql, no_link_update.sql to " + outdir)

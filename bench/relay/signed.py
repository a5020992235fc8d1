#!/usr/bin/env python3
"""Signs bench/ingest's event bodies for wrk (bench/relay/load.lua).

  signed.py BODIES.bin SECRET FIRST LAST OUT
      BODIES.bin as bench/ingest/events.py generate writes it.  Writes, for
      events FIRST..LAST, "<Stripe-Signature>\\t<length>\\n<body>" each,
      signed now: t=<unix time>,v1=HMAC-SHA256(secret, "<t>." + body).
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "ingest"))
from events import signed_bodies  # noqa: E402


def main(bodies_path, secret, first, last, out_path):
    n_out = 0
    with open(out_path, "wb") as out:
        for _, signature, body in signed_bodies(bodies_path, secret, first, last):
            out.write(b"%s\t%d\n" % (signature, len(body)) + body)
            n_out += 1
    if n_out != last - first + 1:
        sys.exit(f"signed {n_out} events, expected {last - first + 1}")


if __name__ == "__main__":
    if len(sys.argv) != 6:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])

#!/usr/bin/env python3
"""Signs bench/ingest's event bodies for wrk (bench/relay/load.lua).

  signed.py BODIES.bin SECRET FIRST LAST OUT
      BODIES.bin as bench/ingest/events.py generate writes it.  Writes, for
      events FIRST..LAST, "<Stripe-Signature>\\t<length>\\n<body>" each,
      signed now: t=<unix time>,v1=HMAC-SHA256(secret, "<t>." + body).
"""
import hashlib
import hmac
import struct
import sys
import time


def main(bodies_path, secret, first, last, out_path):
    t = int(time.time())
    key = secret.encode()
    n_out = 0
    with open(bodies_path, "rb") as f, open(out_path, "wb") as out:
        while True:
            head = f.read(8)
            if not head:
                break
            n, size = struct.unpack("!II", head)
            body = f.read(size)
            if first <= n <= last:
                mac = hmac.new(key, b"%d." % t + body, hashlib.sha256).hexdigest()
                out.write(b"t=%d,v1=%s\t%d\n" % (t, mac.encode(), len(body)) + body)
                n_out += 1
    if n_out != last - first + 1:
        sys.exit(f"signed {n_out} events, expected {last - first + 1}")


if __name__ == "__main__":
    if len(sys.argv) != 6:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])

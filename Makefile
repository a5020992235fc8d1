# stripepay: Stripe payments inside PostgreSQL (PGXS)

EXTENSION   = stripepay
EXTVERSION  = $(shell sed -n "s/^default_version = '\(.*\)'/\1/p" $(EXTENSION).control)

MODULE_big  = $(EXTENSION)
OBJS        = $(patsubst %.c,%.o,$(wildcard src/*.c))
DATA        = $(wildcard sql/$(EXTENSION)--*.sql)

# pg_regress inputs live in sql/ beside the install scripts, outputs in expected/
REGRESS     = $(sort $(patsubst sql/%.sql,%,$(filter-out sql/$(EXTENSION)--%,$(wildcard sql/*.sql))))
REGRESS_OPTS = --load-extension=$(EXTENSION)

PG_CONFIG ?= pg_config
DEPS_PKGS   = libcurl json-c libcrypto
# Postgres's own headers, as system headers: -Wextra then judges our code alone
PG_CPPFLAGS = -isystem $(shell $(PG_CONFIG) --includedir-server) -Isrc -DSTRIPEPAY_VERSION=\"$(EXTVERSION)\" $(shell pkg-config --cflags $(DEPS_PKGS))
PG_CFLAGS   = -Wall -Wextra -Werror
SHLIB_LINK  = $(shell pkg-config --libs $(DEPS_PKGS))

EXTRA_CLEAN = results regression.diffs regression.out tmp_check

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

.PHONY: unit test demo

# C unit tests of the pure parts, under AddressSanitizer and UBSan
unit:
	$(MAKE) -C test/unit check

# Everything a fresh machine needs, then every test (this is what CI runs)
test:
	bash test/run-all.sh

# The whole loop against the local Stripe emulator (or real Stripe test
# mode when STRIPE_SECRET_KEY is set)
demo:
	bash test/demo.sh

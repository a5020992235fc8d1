# stripepay: Stripe payments inside PostgreSQL (PGXS)

EXTENSION   = stripepay
EXTVERSION  = $(shell sed -n "s/^default_version = '\(.*\)'/\1/p" $(EXTENSION).control)

MODULE_big  = $(EXTENSION)
OBJS        = $(patsubst %.c,%.o,$(wildcard src/*.c src/pure/*.c))
DATA        = $(wildcard sql/$(EXTENSION)--*.sql)

# pg_regress inputs live in sql/ beside the install scripts, outputs in
# expected/: the state machine and the rules, with no network at all.
# Those that call Stripe's API (the emulator) have a directory of their own.
REGRESS     = $(sort $(patsubst sql/%.sql,%,$(filter-out sql/$(EXTENSION)--%,$(wildcard sql/*.sql))))
REGRESS_OPTS = --load-extension=$(EXTENSION)
EMULATOR_REGRESS = $(sort $(patsubst test/emulator_regress/sql/%.sql,%,$(wildcard test/emulator_regress/sql/*.sql)))

PG_CONFIG ?= pg_config
DEPS_PKGS   = libcurl libcrypto
# Postgres's own headers, as system headers: -Wextra then judges our code alone
PG_CPPFLAGS = -isystem $(shell $(PG_CONFIG) --includedir-server) -Isrc -DSTRIPEPAY_VERSION=\"$(EXTVERSION)\" $(shell pkg-config --cflags $(DEPS_PKGS))
PG_CFLAGS   = -Wall -Wextra -Werror
SHLIB_LINK  = $(shell pkg-config --libs $(DEPS_PKGS))

EXTRA_CLEAN = results regression.diffs regression.out tmp_check \
	test/emulator_regress/results test/emulator_regress/regression.diffs \
	test/emulator_regress/regression.out

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# PGXS tracks no header dependencies: an object built against an older
# struct layout would write past what another object allocated (and JIT
# could inline bitcode of an older layout)
$(OBJS) $(OBJS:.o=.bc): $(wildcard src/*.h src/pure/*.h) $(EXTENSION).control

.PHONY: unit test demo analyze installcheck-emulator

# C unit tests of the pure parts, under AddressSanitizer and UBSan
unit:
	$(MAKE) -C test/unit check

# pg_regress against a server whose stripepay.api_base is the emulator
installcheck-emulator:
	$(pg_regress_installcheck) $(REGRESS_OPTS) --inputdir=test/emulator_regress \
		--outputdir=test/emulator_regress $(EMULATOR_REGRESS)

# Everything a fresh machine needs, then every test (this is what CI runs);
# SUITES="webhooks money" runs those only, PG=17 the extension's suites on 17
test:
ifdef PG
	bash test/matrix.sh $(PG) $(SUITES)
else
	bash test/run-all.sh $(SUITES)
endif

# gcc -fanalyzer, cppcheck and clang-tidy over every C file; no finding allowed
analyze:
	PG_CONFIG=$(PG_CONFIG) bash test/analyze.sh

# The whole loop against the local Stripe emulator (or real Stripe test
# mode when STRIPE_SECRET_KEY is set)
demo:
	bash test/demo.sh

# --- stripepay-relay ---
# The webhook relay (src/relay/): a program beside the extension, on
# libmicrohttpd and libpq.  Built by "make", installed into pg_config's
# bindir, removed by "make clean".  Compiled apart from PGXS's CFLAGS: it is
# not a backend module and must not be built with -fPIC or PG's includes.
RELAY           = src/relay/stripepay-relay
RELAY_SRCS      = $(wildcard src/relay/*.c)
RELAY_HDRS      = $(wildcard src/relay/*.h)
RELAY_CFLAGS    = -std=gnu11 -O2 -g -pthread -Wall -Wextra -Werror \
	-Wmissing-prototypes -Wdeclaration-after-statement -Wpointer-arith -Wvla \
	-Wformat-security -DRELAY_VERSION=\"$(EXTVERSION)\" \
	-isystem $(shell $(PG_CONFIG) --includedir) \
	$(patsubst -I%,-isystem %,$(shell pkg-config --cflags libmicrohttpd))
RELAY_LIBS      = -L$(shell $(PG_CONFIG) --libdir) -lpq \
	$(shell pkg-config --libs libmicrohttpd) -pthread

all: $(RELAY)

$(RELAY): $(RELAY_SRCS) $(RELAY_HDRS)
	$(CC) $(RELAY_CFLAGS) -o $@ $(RELAY_SRCS) $(RELAY_LIBS)

install: install-relay
install-relay: $(RELAY)
	$(MKDIR_P) '$(DESTDIR)$(bindir)'
	$(INSTALL_PROGRAM) $(RELAY) '$(DESTDIR)$(bindir)/stripepay-relay'

clean: clean-relay
clean-relay:
	rm -f $(RELAY)
	$(MAKE) -C test/relay clean

.PHONY: install-relay clean-relay
# --- end stripepay-relay ---

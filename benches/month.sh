#!/usr/bin/env bash
# A month of usage, generated, loaded, closed and dumped, next to the database's own floor
# for the same usage file. See BENCHMARKS.md.
#
#   benches/month.sh [sqlite|postgres|both]        (default: both)
#
# Environment:
#   COMPANIES (1000), EVENTS (1000000), SEED (42)  the generated month
#   WORK (/tmp/billrun-bench)                      scratch folder, emptied first
#   BILLRUN (target/release/billrun)               the binary (cargo build --release)
#   LOAD_BILLRUN ($BILLRUN)                        the binary that loads (to time an old
#                                                  close after a load it could not finish)
#   STEPWISE (1)                                   0: skip the step-by-step close (and the
#                                                  copy it needs), for the largest months
#   BILLRUN_BENCH_POSTGRES                         a server URL where the benchmark may create
#       (postgres://postgres@127.0.0.1:5432/postgres)   and drop the database billrun_bench
#
# Each phase is its own process, timed by /usr/bin/time (elapsed seconds, peak RSS). After the
# load the database is copied. The copy is closed as production closes it, by one
# `run-due --as-of` (the "close" of the summary line). The original is closed step by step
# (`run-due --job`), so each step is timed alone: first the anchors (boundary 0 of every
# company), then each step of the first month; each of these runs reads the companies'
# history again, so they add up to more than the one run. The floor is what the database
# itself needs for the same usage.csv: take it in (COPY / .import), one GROUP BY (company,
# service) pass, one copy out sorted by (company, occurred_at, id).
set -euo pipefail

backends=${1:-both}
COMPANIES=${COMPANIES:-1000}
EVENTS=${EVENTS:-1000000}
SEED=${SEED:-42}
WORK=${WORK:-/tmp/billrun-bench}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BILLRUN=${BILLRUN:-$ROOT/target/release/billrun}
LOAD_BILLRUN=${LOAD_BILLRUN:-$BILLRUN}
PG_SERVER=${BILLRUN_BENCH_POSTGRES:-postgres://postgres@127.0.0.1:5432/postgres}
PG_DB=billrun_bench
ANCHORS_AS_OF=2026-01-29T12:00:00Z
MONTH_AS_OF=2026-03-01T12:00:00Z
STEPS=(rate expire apply-removals invoice grant usage-email)

[ -x "$BILLRUN" ] || { echo "no binary at $BILLRUN: cargo build --release" >&2; exit 1; }
rm -rf "$WORK"
mkdir -p "$WORK"
FIXTURE=$WORK/month
echo "generating $COMPANIES companies, $EVENTS usage rows (seed $SEED) into $FIXTURE" >&2
"$BILLRUN" gen --companies "$COMPANIES" --events "$EVENTS" --seed "$SEED" --out "$FIXTURE" >/dev/null
ROWS=$(($(wc -l <"$FIXTURE/usage.csv") - 1))
export WORK FIXTURE

# timed NAME CMD...: runs CMD, appends "NAME seconds peak_kib" to $RESULTS. Exit status 3
# (done, some items rejected) counts as done.
timed() {
    local name=$1
    shift
    local t=$WORK/time.txt status=0
    /usr/bin/time -f "%e %M" -o "$t" "$@" >>"$WORK/$name.log" 2>&1 || status=$?
    if [ "$status" -ne 0 ] && [ "$status" -ne 3 ]; then
        echo "$name failed with status $status; see $WORK/$name.log" >&2
        tail -5 "$WORK/$name.log" >&2
        exit 1
    fi
    echo "$name $(tail -1 "$t")" >>"$RESULTS"
    echo "  $name: $(tail -1 "$t")" >&2
}

floor_sqlite() {
    local db=$WORK/floor.db
    rm -f "$db" "$db-wal" "$db-shm"
    sqlite3 "$db" <<SQL
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
.import --csv $FIXTURE/usage.csv usage_raw
CREATE TABLE totals AS
  SELECT company, service, count(*) AS n, sum(CAST(duration_s AS INTEGER)) AS seconds
  FROM usage_raw GROUP BY company, service;
.mode csv
.output $WORK/floor-out.csv
SELECT * FROM usage_raw ORDER BY company, occurred_at, id;
.output stdout
SQL
}

floor_postgres() {
    local url=$1
    psql -q -X -v ON_ERROR_STOP=1 "$url" <<SQL
DROP SCHEMA IF EXISTS floor CASCADE;
CREATE SCHEMA floor;
CREATE TABLE floor.usage_raw (id text, occurred_at text, company text, office text,
  "user" text, service text, type text, direction text, remote_number text, number_used text,
  duration_s text, segments text, body text, pages text, sessions text, units text,
  received_at text);
\copy floor.usage_raw FROM '$FIXTURE/usage.csv' WITH (FORMAT csv, HEADER true)
CREATE TABLE floor.totals AS
  SELECT company, service, count(*) AS n, sum(NULLIF(duration_s, '')::bigint) AS seconds
  FROM floor.usage_raw GROUP BY company, service;
\copy (SELECT * FROM floor.usage_raw ORDER BY company, occurred_at, id) TO '$WORK/floor-out.csv' WITH (FORMAT csv)
SQL
}

export -f floor_sqlite floor_postgres

# The loaded database closed twice: a copy in one run, the original step by step.
close_twice() {
    local backend=$1 whole
    if [ "$backend" = sqlite ]; then
        cp "$WORK/billrun.db" "$WORK/whole.db"
        whole=sqlite://$WORK/whole.db
    else
        psql -q -X -v ON_ERROR_STOP=1 "$PG_SERVER" -c "DROP DATABASE IF EXISTS ${PG_DB}_whole" \
            -c "CREATE DATABASE ${PG_DB}_whole TEMPLATE $PG_DB" >/dev/null
        whole=${PG_SERVER%/*}/${PG_DB}_whole
    fi
    BILLRUN_DATABASE_URL=$whole BILLRUN_OUTBOX=$WORK/outbox-whole-$backend \
        timed close "$BILLRUN" run-due --as-of "$MONTH_AS_OF"
    timed anchors "$BILLRUN" run-due --as-of "$ANCHORS_AS_OF"
    for step in "${STEPS[@]}"; do
        timed "$step" "$BILLRUN" run-due --as-of "$MONTH_AS_OF" --job "$step"
    done
    timed rest "$BILLRUN" run-due --as-of "$MONTH_AS_OF"
}

run_backend() {
    local backend=$1 url
    RESULTS=$WORK/results-$backend.txt
    : >"$RESULTS"
    echo "$backend:" >&2
    if [ "$backend" = sqlite ]; then
        url=sqlite://$WORK/billrun.db
    else
        psql -q -X -v ON_ERROR_STOP=1 "$PG_SERVER" -c "DROP DATABASE IF EXISTS $PG_DB" \
            -c "CREATE DATABASE $PG_DB" >/dev/null
        url=${PG_SERVER%/*}/$PG_DB
    fi
    export BILLRUN_DATABASE_URL=$url BILLRUN_OUTBOX=$WORK/outbox-$backend
    timed load "$LOAD_BILLRUN" load "$FIXTURE"
    if [ "${STEPWISE:-1}" = 0 ]; then
        timed close "$BILLRUN" run-due --as-of "$MONTH_AS_OF"
    else
        close_twice "$backend"
    fi
    timed dump "$BILLRUN" dump --out "$WORK/dump-$backend"
    timed export "$BILLRUN" export-usage --company co00000 --month 2026-01 \
        --out "$WORK/export-$backend.csv"
    if [ "$backend" = sqlite ]; then
        timed floor bash -c floor_sqlite
    else
        timed floor bash -c 'floor_postgres "$0"' "$url"
    fi
    unset BILLRUN_DATABASE_URL BILLRUN_OUTBOX
    report "$backend"
}

# The per-phase table and the summary line of one backend.
report() {
    python3 - "$1" "$RESULTS" "$ROWS" "$COMPANIES" <<'PY'
import sys
backend, path, rows, companies = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
phases = []
for line in open(path):
    name, secs, kib = line.split()
    phases.append((name, float(secs), int(kib)))
t = {n: s for n, s, _ in phases}
close = t["close"]
steps = ["anchors", "rate", "expire", "apply-removals", "invoice", "grant", "usage-email", "rest"]
floor = t["floor"]
ratio = (t["load"] + close) / floor
peak = max(k for n, _, k in phases if n != "floor")
print(f"\n{backend}: {companies} companies, {rows} usage rows\n")
print("| phase | seconds | usage rows/s | peak RSS |")
print("|---|---|---|---|")
for n, s, k in phases:
    rate = f"{rows / s:,.0f}" if s > 0 else "-"
    print(f"| {n} | {s:.2f} | {rate} | {k / 1024:.0f} MiB |")
if all(n in t for n in steps):
    print(f"| (the steps one by one, in all) | {sum(t[n] for n in steps):.2f} | | |")
print("\n| backend | load | close | floor | ratio | peak memory |")
print("|---|---|---|---|---|---|")
print(f"| {backend} | {t['load']:.1f} s | {close:.1f} s | {floor:.1f} s | {ratio:.1f}× | {peak / 1024:.0f} MiB |")
if all(n in t for n in steps):
    stepwise = sum(t[n] for n in steps)
    print(f"| {backend}, closed step by step | {t['load']:.1f} s | {stepwise:.1f} s | {floor:.1f} s | {(t['load'] + stepwise) / floor:.1f}× | |")
PY
}

case $backends in
sqlite | postgres) run_backend "$backends" ;;
both)
    run_backend sqlite
    run_backend postgres
    ;;
*)
    echo "usage: $0 [sqlite|postgres|both]" >&2
    exit 2
    ;;
esac

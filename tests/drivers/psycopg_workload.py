#!/usr/bin/env python3
"""psycopg 3 through piha's pooler in transaction mode (tests/pooler_drivers.rs).

Every connection has prepare_threshold=0: each distinct query becomes a
server-side named statement (_pg3_<n>) at its first execution, and later
executions only Bind it, on whichever server the pooler picked for that
transaction. Several threads, each with its own connection, run inserts,
lookups, executemany, explicit transactions, a rolled-back one, an error
inside a transaction (psycopg then sends DEALLOCATE ALL and prepares
everything again under new names), and a pipeline block, with and without an
error in it. Results are checked against what the thread wrote; any
unexpected error or wrong result ends the script with a non-zero status.

Usage: psycopg_workload.py HOST PORT USER DBNAME CLIENTS
(the password comes from PGPASSWORD). Expects the table
items (id bigserial primary key, worker int, n int, val bigint).
"""

import sys
import threading
import traceback

import psycopg
from psycopg import errors


class Failed(Exception):
    pass


def check(ok, what):
    if not ok:
        raise Failed(what)


INSERT = "INSERT INTO items (worker, n, val) VALUES (%s, %s, %s) RETURNING id, val"
GET = "SELECT val, n FROM items WHERE id = %s"
SUM = "SELECT count(*), coalesce(sum(val), 0)::bigint FROM items WHERE worker = %s"
UPDATE = "UPDATE items SET val = val + %s WHERE worker = %s AND n %% 2 = 0"
DIV = "SELECT 100 / %s::int"


class Worker:
    def __init__(self, conninfo, w):
        self.conninfo = conninfo
        self.w = w
        self.n = 0
        self.rows = 0
        self.sum = 0
        self.deliberate = 0
        self.executions = 0

    def connect(self, autocommit):
        conn = psycopg.connect(self.conninfo, autocommit=autocommit, prepare_threshold=0)
        check(conn.prepare_threshold == 0, "prepare_threshold")
        return conn

    def insert(self, cur, val=None):
        self.n += 1
        val = self.w * 1000 + self.n if val is None else val
        cur.execute(INSERT, (self.w, self.n, val))
        self.executions += 1
        row = cur.fetchone()
        check(row[1] == val, f"insert returned {row}")
        return row[0], val

    def add(self, val):
        self.rows += 1
        self.sum += val

    def check_sum(self, cur, where):
        cur.execute(SUM, (self.w,))
        self.executions += 1
        row = cur.fetchone()
        check(
            row == (self.rows, self.sum),
            f"{where}: sum {row} != {(self.rows, self.sum)}",
        )

    def run(self):
        # Autocommit: every statement its own transaction, so each may land
        # on a server that never saw its Parse.
        with self.connect(autocommit=True) as conn:
            cur = conn.cursor()
            for _ in range(30):
                id_, val = self.insert(cur)
                self.add(val)
                cur.execute(GET, (id_,))
                self.executions += 1
                check(cur.fetchone() == (val, self.n), f"get {id_}")
            check(
                [d.name for d in cur.description] == ["val", "n"],
                f"description {cur.description}",
            )

            # Explicit transactions reuse the statements prepared above.
            for _ in range(10):
                with conn.transaction():
                    for _ in range(3):
                        _, val = self.insert(cur)
                        self.add(val)
                    self.check_sum(cur, "in a transaction")

            # executemany (psycopg 3.1 runs it as a pipeline when it can).
            batch = []
            for _ in range(20):
                self.n += 1
                batch.append((self.w, self.n, self.n))
            cur.executemany(
                "INSERT INTO items (worker, n, val) VALUES (%s, %s, %s)", batch
            )
            self.executions += len(batch)
            for row in batch:
                self.add(row[2])
            self.check_sum(cur, "after executemany")

            # Rolled back on purpose: nothing stays. psycopg answers a
            # ROLLBACK with DEALLOCATE ALL and prepares again afterwards.
            try:
                with conn.transaction():
                    self.insert(cur, val=1_000_000)
                    raise psycopg.Rollback()
            except psycopg.Rollback:
                pass
            self.check_sum(cur, "after a rollback")

            # An error inside a transaction; then more prepared work.
            try:
                with conn.transaction():
                    self.insert(cur, val=1)
                    cur.execute(DIV, (0,))
                    raise Failed("division by zero did not fail")
            except errors.DivisionByZero:
                self.deliberate += 1
            cur.execute(DIV, (4,))
            check(cur.fetchone() == (25,), "100 / 4 after an error")
            self.check_sum(cur, "after an error in a transaction")

            # A DROP makes psycopg clear its statements with DEALLOCATE ALL
            # inside the transaction, then prepare them again in it.
            with conn.transaction():
                _, val = self.insert(cur)
                self.add(val)
                cur.execute(f"DROP TABLE IF EXISTS no_such_table_{self.w}")
                _, val = self.insert(cur)
                self.add(val)
                self.check_sum(cur, "after DEALLOCATE ALL in a transaction")

            # The same error outside a transaction.
            try:
                cur.execute(DIV, (0,))
                raise Failed("division by zero did not fail")
            except errors.DivisionByZero:
                self.deliberate += 1
            cur.execute(DIV, (5,))
            check(cur.fetchone() == (20,), "100 / 5 after an error")

            # Updates, rows affected checked.
            cur.execute(
                "SELECT count(*) FROM items WHERE worker = %s AND n %% 2 = 0",
                (self.w,),
            )
            even = cur.fetchone()[0]
            cur.execute(UPDATE, (5, self.w))
            check(cur.rowcount == even, f"update changed {cur.rowcount}, {even} even")
            self.sum += 5 * even
            self.check_sum(cur, "after update")

            # A pipeline: several statements sent before any answer.
            if psycopg.Pipeline.is_supported():
                with conn.pipeline():
                    curs = []
                    for i in range(1, 11):
                        c = conn.cursor()
                        c.execute(DIV, (i,))
                        curs.append((i, c))
                    for _ in range(5):
                        _, val = self.insert(conn.cursor())
                        self.add(val)
                for i, c in curs:
                    check(c.fetchone() == (100 // i,), f"pipelined 100 / {i}")
                self.check_sum(cur, "after a pipeline")

                # An error in the middle of a pipeline: what follows it up
                # to the next Sync is skipped by the server.
                try:
                    with conn.pipeline():
                        conn.execute(DIV, (2,))
                        conn.execute(DIV, (0,))
                        conn.execute(DIV, (3,))
                    raise Failed("pipeline with a division by zero did not fail")
                except errors.DivisionByZero:
                    self.deliberate += 1
                cur.execute(DIV, (10,))
                check(cur.fetchone() == (10,), "100 / 10 after a failed pipeline")

        # More statements than prepared_max: psycopg evicts the least
        # recently used with "DEALLOCATE _pg3_<n>" (libpq < 17; with 17 it
        # sends a protocol Close) and keeps going.
        with self.connect(autocommit=True) as conn:
            conn.prepared_max = 3
            for round in range(3):
                for i in range(8):
                    got = conn.execute(f"SELECT {i} + %s::int", (round,)).fetchone()
                    self.executions += 1
                    check(got == (i + round,), f"evicting: {i} + {round} = {got}")
            # DEALLOCATE of a name psycopg uses, by a simple Query (PQexec),
            # outside and inside a transaction: the name is gone, as on
            # PostgreSQL.
            for in_tx in (False, True):
                query = f"SELECT {10 + in_tx} + %s::int"
                check(conn.execute(query, (1,)).fetchone() == (11 + in_tx,), "before")
                text = query.replace("%s", "$1").encode()
                key, name = next(i for i in conn._prepared._names.items() if i[0][0] == text)
                if in_tx:
                    conn.execute("BEGIN")
                res = conn.pgconn.exec_(b"DEALLOCATE " + name)
                check(
                    res.status == psycopg.pq.ExecStatus.COMMAND_OK,
                    f"DEALLOCATE {name}: {res.error_message}",
                )
                try:
                    conn.execute(query, (1,))
                    raise Failed(f"{name} still exists after DEALLOCATE")
                except errors.InvalidSqlStatementName:
                    self.deliberate += 1
                if in_tx:
                    conn.execute("ROLLBACK")
                # psycopg keeps using the name until told to forget it (the
                # ROLLBACK did); then it prepares the text under a new one.
                conn._prepared._names.pop(key, None)
                check(conn.execute(query, (2,)).fetchone() == (12 + in_tx,), "after")

        # A connection that is not autocommit: psycopg opens transactions.
        with self.connect(autocommit=False) as conn:
            cur = conn.cursor()
            for _ in range(5):
                for _ in range(4):
                    _, val = self.insert(cur)
                    self.add(val)
                conn.commit()
            self.insert(cur, val=7)
            conn.rollback()
            try:
                cur.execute(DIV, (0,))
                raise Failed("division by zero did not fail")
            except errors.DivisionByZero:
                self.deliberate += 1
            conn.rollback()
            self.check_sum(cur, "final")
            conn.commit()


def main():
    if len(sys.argv) != 6:
        print(__doc__, file=sys.stderr)
        return 2
    host, port, user, dbname, clients = sys.argv[1:]
    conninfo = (
        f"host={host} port={port} user={user} dbname={dbname} "
        "sslmode=disable connect_timeout=5"
    )
    workers = [Worker(conninfo, w) for w in range(1, int(clients) + 1)]
    failures = []

    def run(worker):
        try:
            worker.run()
        except Exception as e:  # noqa: BLE001 - every failure is reported
            failures.append(
                f"worker {worker.w}: {type(e).__name__}: {e}\n{traceback.format_exc()}"
            )

    threads = [threading.Thread(target=run, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        for f in failures:
            print(f, file=sys.stderr)
        return 1
    rows = sum(w.rows for w in workers)
    total = sum(w.sum for w in workers)
    deliberate = sum(w.deliberate for w in workers)
    executions = sum(w.executions for w in workers)
    print(
        f"psycopg {psycopg.__version__} (libpq {psycopg.pq.version()}): "
        f"{len(workers)} clients, {executions} prepared executions, "
        f"rows {rows} sum {total}, {deliberate} deliberate errors"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

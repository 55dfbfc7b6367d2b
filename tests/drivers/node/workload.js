// node-postgres through piha's pooler in transaction mode
// (tests/pooler_drivers.rs).
//
// Several pg.Client connections at once (and a pg.Pool) run named prepared
// statements ({ name, text, values }). node-postgres sends Parse for a name
// only the first time on its connection and then only Bind: through the
// pooler that Bind may land on a server that never saw the Parse. Also
// transactions, a rolled-back one, errors inside and outside transactions,
// a named statement whose Parse fails, the unnamed statement, the simple
// protocol, and a result read in pages (Execute with a row limit, then
// Flush). Results are checked; any unexpected error exits non-zero.
//
// Usage: node workload.js HOST PORT USER DBNAME CLIENTS (password from
// PGPASSWORD). Expects the table
// items (id bigserial primary key, worker int, n int, val bigint).

'use strict'

const pg = require('pg')

const [host, port, user, database, clientsArg] = process.argv.slice(2)
if (!clientsArg) {
  console.error('usage: node workload.js HOST PORT USER DBNAME CLIENTS')
  process.exit(2)
}
const config = {
  host,
  port: Number(port),
  user,
  database,
  password: process.env.PGPASSWORD,
  connectionTimeoutMillis: 5000,
}

const INSERT = 'INSERT INTO items (worker, n, val) VALUES ($1, $2, $3) RETURNING id, val::int AS val'
const GET = 'SELECT val::int AS val, n FROM items WHERE id = $1'
const SUM = 'SELECT count(*)::int AS count, coalesce(sum(val), 0)::int AS sum FROM items WHERE worker = $1'
const DIV = 'SELECT 100 / $1::int AS q'

function check(ok, what) {
  if (!ok) throw new Error(`check failed: ${what}`)
}

async function expectError(promise, code, what) {
  try {
    await promise
  } catch (e) {
    if (e.code === code) return
    throw new Error(`${what}: expected SQLSTATE ${code}, got ${e.code}: ${e.message}`)
  }
  throw new Error(`${what}: expected SQLSTATE ${code}, but it succeeded`)
}

class Worker {
  constructor(w) {
    this.w = w
    this.n = 0
    this.rows = 0
    this.sum = 0
    this.deliberate = 0
    this.executions = 0
  }

  async q(client, name, text, values) {
    this.executions += 1
    return client.query({ name, text, values })
  }

  async insert(client, val) {
    this.n += 1
    const v = val === undefined ? this.w * 1000 + this.n : val
    const r = await this.q(client, 'ins', INSERT, [this.w, this.n, v])
    check(r.rows.length === 1 && r.rows[0].val === v, `insert returned ${JSON.stringify(r.rows)}`)
    return { id: r.rows[0].id, val: v }
  }

  add(val) {
    this.rows += 1
    this.sum += val
  }

  async checkSum(client, where) {
    const r = await this.q(client, 'sum', SUM, [this.w])
    const got = r.rows[0]
    check(
      got.count === this.rows && got.sum === this.sum,
      `${where}: sum ${JSON.stringify(got)} != ${this.rows} ${this.sum}`,
    )
  }

  async run() {
    const client = new pg.Client(config)
    await client.connect()
    try {
      await this.work(client)
    } finally {
      await client.end()
    }
  }

  async work(c) {
    // Autocommit: every statement its own transaction on any server.
    for (let i = 0; i < 30; i++) {
      const { id, val } = await this.insert(c)
      this.add(val)
      const r = await this.q(c, 'get', GET, [id])
      check(r.rows[0].val === val && r.rows[0].n === this.n, `get ${id}: ${JSON.stringify(r.rows)}`)
    }

    // Transactions reuse the named statements.
    for (let t = 0; t < 10; t++) {
      await c.query('BEGIN')
      for (let i = 0; i < 3; i++) {
        const { val } = await this.insert(c)
        this.add(val)
      }
      await this.checkSum(c, 'in a transaction')
      await c.query('COMMIT')
    }

    // Rolled back: nothing stays.
    await c.query('BEGIN')
    await this.insert(c, 1000000)
    await c.query('ROLLBACK')
    await this.checkSum(c, 'after a rollback')

    // An error inside a transaction, then ROLLBACK, then more work.
    await c.query('BEGIN')
    await this.insert(c, 1)
    await expectError(this.q(c, 'div', DIV, [0]), '22012', 'division by zero in a transaction')
    await expectError(this.q(c, 'get', GET, [1]), '25P02', 'in a failed transaction')
    this.deliberate += 2
    await c.query('ROLLBACK')
    check((await this.q(c, 'div', DIV, [4])).rows[0].q === 25, '100 / 4 after an error')

    // The same error outside a transaction.
    await expectError(this.q(c, 'div', DIV, [0]), '22012', 'division by zero')
    this.deliberate += 1
    check((await this.q(c, 'div', DIV, [5])).rows[0].q === 20, '100 / 5 after an error')

    // A named statement whose Parse fails, twice (node-postgres forgets
    // it after the error and parses again), then more work.
    for (let i = 0; i < 2; i++) {
      await expectError(this.q(c, 'bad', 'SELECT no_such_column FROM items', []), '42703', 'bad column')
      this.deliberate += 1
    }
    check((await this.q(c, 'div', DIV, [10])).rows[0].q === 10, '100 / 10 after a failed Parse')

    // Updates, rows affected checked.
    const even = (
      await c.query('SELECT count(*)::int AS c FROM items WHERE worker = $1 AND n % 2 = 0', [this.w])
    ).rows[0].c
    const upd = await this.q(c, 'upd', 'UPDATE items SET val = val + $2 WHERE worker = $1 AND n % 2 = 0', [
      this.w,
      5,
    ])
    check(upd.rowCount === even, `update changed ${upd.rowCount}, ${even} even`)
    this.sum += 5 * even
    await this.checkSum(c, 'after update')

    // The unnamed statement, and the simple protocol.
    for (let i = 0; i < 10; i++) {
      const r = await c.query('SELECT $1::int + $2::int AS s', [i, this.w])
      check(r.rows[0].s === i + this.w, 'unnamed')
    }
    const multi = await c.query('SELECT 1 AS a; SELECT 2 AS b')
    check(multi.length === 2 && multi[1].rows[0].b === 2, 'simple multi-statement')

    // Pages: Execute with a row limit and Flush, PortalSuspended, again,
    // until CommandComplete, then Sync.
    const paged = await c.query({
      name: 'page',
      text: 'SELECT val FROM items WHERE worker = $1 ORDER BY id',
      values: [this.w],
      rows: 7,
    })
    check(paged.rows.length === this.rows, `paged read ${paged.rows.length} of ${this.rows}`)

    await this.checkSum(c, 'final')
  }
}

// A pg.Pool as well: its connections take turns with the same names.
async function poolWork(w) {
  const pool = new pg.Pool({ ...config, max: 3 })
  try {
    const jobs = []
    for (let i = 1; i <= 30; i++) {
      jobs.push(pool.query({ name: 'pool_div', text: DIV, values: [i] }))
    }
    const answers = await Promise.all(jobs)
    answers.forEach((r, i) => check(r.rows[0].q === Math.floor(100 / (i + 1)), `pool 100 / ${i + 1}`))
    const tx = await pool.connect()
    try {
      await tx.query('BEGIN')
      const r = await tx.query({ name: 'pool_sum', text: SUM, values: [w] })
      check(r.rows.length === 1, 'pool sum in a transaction')
      await tx.query('COMMIT')
    } finally {
      tx.release()
    }
    return jobs.length + 1
  } finally {
    await pool.end()
  }
}

async function main() {
  const n = Number(clientsArg)
  const workers = []
  for (let w = 1; w <= n; w++) workers.push(new Worker(w))
  const results = await Promise.allSettled([...workers.map((w) => w.run()), poolWork(1)])
  const failures = results.filter((r) => r.status === 'rejected')
  if (failures.length > 0) {
    for (const f of failures) console.error(f.reason && f.reason.stack ? f.reason.stack : f.reason)
    process.exit(1)
  }
  const rows = workers.reduce((a, w) => a + w.rows, 0)
  const sum = workers.reduce((a, w) => a + w.sum, 0)
  const deliberate = workers.reduce((a, w) => a + w.deliberate, 0)
  const executions = workers.reduce((a, w) => a + w.executions, 0) + results[results.length - 1].value
  const version = require('pg/package.json').version
  console.log(
    `node-postgres ${version} (node ${process.version}): ${n} clients and a pool, ` +
      `${executions} named executions, rows ${rows} sum ${sum}, ${deliberate} deliberate errors`,
  )
}

main().catch((e) => {
  console.error(e && e.stack ? e.stack : e)
  process.exit(1)
})

"""`just bench search`: the student search that misses the list's page cache.

Seeds `just bench api`'s academy (10k students, 2 guardians each, 200 lectures) beside two
other academies of 5k students, starts one uvicorn process, and drives it with k6 at 64
connections, each request a search drawn from a mix of what an office types: the last 4
digits of a student's or a guardian's phone, a surname and one syllable, one syllable of a
given name, 초성, and searches that find no one. Prints req/s, p50/p90/p99,
``EXPLAIN (ANALYZE, BUFFERS)`` of one search of each kind, and Postgres's planning and
execution time per kind over the whole mix; asserts nothing about speed.

Every search goes out with a random number of spaces before and after it: the same search
to the API, but another key to the page cache (up to 1,024 pages), so practically every
request is a miss that reaches the database, which is what this measures.

It also prints the CPU each request cost the API process, Postgres and k6 (all on this
machine): on a machine shared with other work those hold better than req/s and latency.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
import uuid

import httpx
import psutil

from models.db import connection
from models.students import StudentFilter, list_students
from tests.benchmarks import cpu
from tests.benchmarks.k6 import k6_run
from tests.benchmarks.k6 import report as k6_report
from tests.benchmarks.server import api_server
from tests.benchmarks.test_bench_api import seed
from tests.factories import bulk_students
from tests.factories.scopes import StatementKept

VUS, DURATION, OTHER_ACADEMIES, OTHER_STUDENTS = 64, "15s", 2, 5_000
# How many searches of each kind the mix holds (and so its share of the requests).
MIX = {"phone tail": 300, "surname + syllable": 200, "given-name syllable": 150,
       "초성": 200, "no match": 150}  # fmt: skip
MISSES = ["홍길동", "황보", "ㅋㅌ", "ㅎㅎㅎ", "Zed", "5", "학원생", "ㅍ"]

SCRIPT = """
import http from 'k6/http';
import { check } from 'k6';
export const options = { vus: __ENV.VUS * 1, duration: __ENV.DURATION };
const searches = JSON.parse(open(__ENV.SEARCHES));
// One name for every URL: k6 keeps a time series per distinct URL otherwise, and with a
// new URL each request it spent more CPU on them than the server spent answering.
const params = { headers: { Authorization: `Bearer ${__ENV.TOKEN}` }, tags: { name: 'search' } };
export default function () {
  const q = searches[Math.floor(Math.random() * searches.length)];
  // Spaces around the search: the same search, another page-cache key (see the docstring).
  const padded = ' '.repeat(Math.floor(Math.random() * 32)) + q + ' '.repeat(Math.floor(Math.random() * 32));
  const r = http.get(`${__ENV.BASE}/api/v1/students?limit=50&q=${encodeURIComponent(padded)}`, params);
  check(r, { '200': (res) => res.status === 200 });
}
"""


async def _searches(tenant_id: uuid.UUID) -> dict[str, list[str]]:
    """The mix, drawn from the academy's own students and guardians."""
    async with connection() as conn:
        rows = await conn.fetch(
            "SELECT name, name_initials, phone, guardians_json->0->>'phone' AS guardian "
            "FROM student WHERE tenant = $1 ORDER BY random() LIMIT 500",
            tenant_id,
        )
    rng = random.Random(17)
    tails = [p[-4:] for r in rows for p in (r["phone"], r["guardian"]) if p]
    return {
        "phone tail": rng.choices(tails, k=MIX["phone tail"]),
        "surname + syllable": [r["name"][:2] for r in rng.choices(rows, k=MIX["surname + syllable"])],
        "given-name syllable": [
            r["name"][rng.randrange(1, len(r["name"]))]
            for r in rng.choices(rows, k=MIX["given-name syllable"])
        ],
        "초성": [
            r["name_initials"][: rng.choice((2, 3))] for r in rng.choices(rows, k=MIX["초성"])
        ],
        "no match": rng.choices(MISSES, k=MIX["no match"]),
    }  # fmt: skip


async def _statement(tenant_id: uuid.UUID, q: str) -> StatementKept:
    """The statement the API runs for the search ``q`` (page size 50, by name)."""
    from api.students import _search

    statement = StatementKept(tenant_id)
    found: StudentFilter = _search(q)
    await list_students(statement, found, sort="name", limit=50, cursor=None, deleted=False)
    return statement


async def _explain(tenant_id: uuid.UUID, kind: str, q: str) -> None:
    statement = await _statement(tenant_id, q)
    async with connection() as conn:
        plan = await conn.fetch("EXPLAIN (ANALYZE, BUFFERS) " + statement.sql, *statement.args)
    print(f"\nEXPLAIN (ANALYZE, BUFFERS) of a {kind} search, q={q!r}:")
    print("\n".join("    " + r[0] for r in plan))


async def _planning(tenant_id: uuid.UUID, searches: dict[str, list[str]]) -> None:
    """Of Postgres's time per search, how much is planning: every search is planned for
    its own keys (see ``models.students``). Each search of the mix, on one connection,
    through ``EXPLAIN (ANALYZE, TIMING OFF)``, which reports both."""
    print("\nPostgres per search, planning + execution (EXPLAIN ANALYZE, one connection, warm):")
    async with connection() as conn:
        for kind, queries in searches.items():
            planning = execution = 0.0
            for q in queries:
                statement = await _statement(tenant_id, q)
                sql = "EXPLAIN (ANALYZE, TIMING OFF, SUMMARY, FORMAT JSON) " + statement.sql
                report = (await conn.fetchval(sql, *statement.args))[0]  # json: decoded
                planning += report["Planning Time"]
                execution += report["Execution Time"]
            n = len(queries)
            print(f"    {kind:20s} {planning / n:.3f} + {execution / n:.3f} ms")


async def _postmaster() -> int:
    async with connection() as conn:
        # The backend's parent: the postmaster, whose children serve the API's pool.
        return psutil.Process(await conn.fetchval("SELECT pg_backend_pid()")).ppid()


def _report_cpu(used: dict[str, float], requests: int) -> None:
    per = {name: used[name] / requests * 1000 for name in ("api", "postgres", "children")}
    print(
        f"CPU per request: API {per['api']:.2f} ms, Postgres {per['postgres']:.2f} ms, "
        f"k6 {per['children']:.2f} ms; the machine was busy {used['machine']:.1f} CPU-s "
        f"in all (other work on it included)"
    )


async def test_bench_search(make_tenant):
    tenant = await make_tenant()
    await seed(tenant.id)
    for _ in range(OTHER_ACADEMIES):
        await bulk_students((await make_tenant()).id, OTHER_STUDENTS, guardians_per_student=2)
    async with connection() as conn:
        # The seeding COPYs the students, then their links and enrolments rewrite every
        # one (the read model): vacuum and analyse them as autovacuum would have by now.
        await conn.execute("VACUUM ANALYZE student")
    searches = await _searches(tenant.id)
    for kind, queries in searches.items():
        await _explain(tenant.id, kind, queries[0])
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump([q for queries in searches.values() for q in queries], f, ensure_ascii=False)
    try:
        async with api_server(tenant) as server:
            async with httpx.AsyncClient(base_url=server.base, timeout=10) as client:
                r = await client.get(
                    "/api/v1/students", params={"q": searches["surname + syllable"][0]},
                    headers=server.headers,
                )  # fmt: skip
                assert r.status_code == 200 and r.json()["items"], r.text
            env = {"BASE": server.base, "TOKEN": server.token, "VUS": str(VUS),
                   "DURATION": DURATION, "SEARCHES": f.name}  # fmt: skip
            mix = ", ".join(f"{n} {kind}" for kind, n in MIX.items())
            groups = {"api": [server.pid], "postgres": [await _postmaster()]}
            before = cpu.sample(groups)
            summary = await k6_run(SCRIPT, env)
            used = cpu.used(before, cpu.sample(groups))
            k6_report(
                f"GET /api/v1/students?q=… (page-cache misses; 10,000 students beside "
                f"{OTHER_ACADEMIES}x{OTHER_STUDENTS:,} in other academies; searches: {mix})",
                summary,
                VUS,
            )
            _report_cpu(used, summary["metrics"]["http_reqs"]["count"])
        await _planning(tenant.id, searches)
    finally:
        os.unlink(f.name)

"""A blue/green rebuild hands its new tables to the old tables' owner, with the same
privileges (table, column and identity sequence): a reporting role or a replica user
that could read a read model before the rebuild still can after it.

Roles are cluster-wide: each test makes its own, uniquely named, and drops them.
"""

from __future__ import annotations

import uuid

import pytest
from django.db import connection

from projections.models import OrderHistory, OrderHistoryProduct, SalesDaily
from projections.registry import get_projector
from projections.shadow import ShadowUnsupported, leftover_shadows, rebuild
from shop.databases import read_connection
from tests.givens import place, project, register, rows

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="needs DATABASE_URL pointing at PostgreSQL"
    ),
]

HISTORY = OrderHistory._meta.db_table
PRODUCTS = OrderHistoryProduct._meta.db_table
DAILY = SalesDaily._meta.db_table


def sql(statement: str, params=()) -> list[tuple]:
    with read_connection.cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.fetchall() if cursor.description else []


def acl(relation: str) -> list[tuple]:
    """Who granted whom what on a relation (its table's columns too), and its owner."""
    return sql(
        """
        SELECT '', pg_get_userbyid(a.grantor), coalesce(r.rolname, 'PUBLIC'),
               a.privilege_type, a.is_grantable
        FROM pg_class c, aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a
        LEFT JOIN pg_roles r ON r.oid = a.grantee
        WHERE c.oid = %s::regclass
        UNION ALL
        SELECT att.attname, pg_get_userbyid(a.grantor), coalesce(r.rolname, 'PUBLIC'),
               a.privilege_type, a.is_grantable
        FROM pg_attribute att, aclexplode(att.attacl) a
        LEFT JOIN pg_roles r ON r.oid = a.grantee
        WHERE att.attrelid = %s::regclass
        UNION ALL
        SELECT 'owner', pg_get_userbyid(relowner), '', '', false FROM pg_class
        WHERE oid = %s::regclass
        ORDER BY 1, 2, 3, 4, 5
        """,
        [relation] * 3,
    )


def can(role: str, relation: str, privilege: str) -> bool:
    return sql("SELECT has_table_privilege(%s, %s, %s)", [role, relation, privilege])[0][0]


@pytest.fixture
def roles():
    """Two fresh roles (a reader, an owner); afterwards everything they own or were
    granted in this database goes back to the current user, and they are dropped."""
    suffix = uuid.uuid4().hex[:8]
    made = {"reader": f"shop_reader_test_{suffix}", "owner": f"shop_owner_test_{suffix}"}
    for role in made.values():
        sql(f'CREATE ROLE "{role}" NOLOGIN')
    try:
        yield made
    finally:
        sql(f"ALTER DEFAULT PRIVILEGES REVOKE ALL ON TABLES FROM \"{made['reader']}\"")
        for role in made.values():
            sql(f'REASSIGN OWNED BY "{role}" TO CURRENT_USER')
            sql(f'DROP OWNED BY "{role}"')
            sql(f'DROP ROLE "{role}"')


@pytest.fixture
def shop(event_store, make_user, no_projection_trigger):
    john = make_user("john")
    mug = register("MUG-1", "Blue mug")
    for _ in range(8):
        place(john, (mug, 1))
    project()
    yield
    for schema in leftover_shadows():
        sql(f'DROP SCHEMA "{schema}" CASCADE')


def test_the_rebuilt_tables_keep_their_owner_and_privileges(shop, roles):
    reader, owner = roles["reader"], roles["owner"]
    # The read model belongs to another role than the one rebuilding (a superuser here).
    schema = read_connection.ops.quote_name(sql("SELECT current_schema()")[0][0])
    sql(f'GRANT CREATE ON SCHEMA {schema} TO "{owner}"')
    sql(f'ALTER TABLE {HISTORY} OWNER TO "{owner}"')
    sql(f'GRANT SELECT ON {HISTORY} TO "{reader}"')
    sql(f'GRANT SELECT ON {PRODUCTS} TO "{reader}" WITH GRANT OPTION')
    sql(f'GRANT UPDATE (status) ON {HISTORY} TO "{reader}"')
    sql(f"GRANT SELECT ON {PRODUCTS} TO PUBLIC")
    sql(f"REVOKE TRUNCATE ON {PRODUCTS} FROM CURRENT_USER")  # even the owner's own
    # What the rebuilding role's default privileges would add must not stay.
    sql(f'ALTER DEFAULT PRIVILEGES GRANT INSERT ON TABLES TO "{reader}"')
    before = {table: acl(table) for table in (HISTORY, PRODUCTS)}
    history = rows(OrderHistory)
    old_oid = sql("SELECT %s::regclass::oid", [HISTORY])[0][0]

    assert rebuild(get_projector("order_history"), batch_size=3) > 0

    assert sql("SELECT %s::regclass::oid", [HISTORY])[0][0] != old_oid  # new tables
    assert rows(OrderHistory) == history
    assert can(reader, HISTORY, "SELECT")
    assert not can(reader, HISTORY, "INSERT")
    assert {table: acl(table) for table in (HISTORY, PRODUCTS)} == before
    assert ("owner", owner, "", "", False) in before[HISTORY]
    assert leftover_shadows() == []


def test_an_identity_sequence_keeps_its_privileges(shop, roles):
    reader = roles["reader"]
    sql(f"ALTER TABLE {DAILY} ADD COLUMN test_serial bigint GENERATED BY DEFAULT AS IDENTITY")
    try:
        sequence = sql("SELECT pg_get_serial_sequence(%s, 'test_serial')", [DAILY])[0][0]
        sql(f'GRANT USAGE ON SEQUENCE {sequence} TO "{reader}"')
        old_sequence = sql("SELECT %s::regclass::oid", [sequence])[0][0]

        assert rebuild(get_projector("sales"), batch_size=3) > 0

        sequence = sql("SELECT pg_get_serial_sequence(%s, 'test_serial')", [DAILY])[0][0]
        assert sql("SELECT %s::regclass::oid", [sequence])[0][0] != old_sequence
        assert sql("SELECT has_sequence_privilege(%s, %s, 'USAGE')", [reader, sequence]) == [
            (True,)
        ]
    finally:
        sql(f"ALTER TABLE {DAILY} DROP COLUMN IF EXISTS test_serial")


def test_a_serial_column_is_refused_rather_than_left_without_its_sequence(shop):
    # LIKE copies a serial column's default, naming the live table's own sequence,
    # which would go with the old table.
    sql(f"ALTER TABLE {DAILY} ADD COLUMN test_serial serial")
    try:
        daily = rows(SalesDaily)
        with pytest.raises(ShadowUnsupported, match="test_serial"):
            rebuild(get_projector("sales"), batch_size=3)
        assert rows(SalesDaily) == daily
        assert leftover_shadows() == []  # refused before the fill
        assert sql(
            "SELECT column_default FROM information_schema.columns"
            " WHERE table_name = %s AND column_name = 'test_serial'", [DAILY]
        )[0][0].startswith("nextval(")
    finally:
        sql(f"ALTER TABLE {DAILY} DROP COLUMN IF EXISTS test_serial")


def test_a_member_of_the_owner_role_rebuilds_and_hands_the_tables_to_it(shop, roles):
    # Not a superuser: the role running the rebuild may move the live tables because it
    # is a member of their owner, and so may give the new ones to that owner.
    owner, rebuilder = roles["owner"], f"{roles['owner']}_rebuilder"
    schema = read_connection.ops.quote_name(sql("SELECT current_schema()")[0][0])
    database = read_connection.ops.quote_name(read_connection.settings_dict["NAME"])
    sql(f'CREATE ROLE "{rebuilder}" NOLOGIN IN ROLE "{owner}"')
    try:
        sql(f'GRANT CREATE ON SCHEMA {schema} TO "{owner}", "{rebuilder}"')
        sql(f'GRANT CREATE ON DATABASE {database} TO "{rebuilder}"')
        sql(f'GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA {schema} TO "{rebuilder}"')
        sql(f'GRANT USAGE ON ALL SEQUENCES IN SCHEMA {schema} TO "{rebuilder}"')
        for table in (HISTORY, PRODUCTS):
            sql(f'ALTER TABLE {table} OWNER TO "{owner}"')
        sql(f'GRANT SELECT ON {HISTORY} TO "{roles["reader"]}"')
        before = {table: acl(table) for table in (HISTORY, PRODUCTS)}
        history = rows(OrderHistory)

        sql(f'SET ROLE "{rebuilder}"')
        try:
            assert rebuild(get_projector("order_history"), batch_size=3) > 0
        finally:
            sql("RESET ROLE")

        assert rows(OrderHistory) == history
        assert {table: acl(table) for table in (HISTORY, PRODUCTS)} == before
        assert can(roles["reader"], HISTORY, "SELECT")
    finally:
        sql(f'REASSIGN OWNED BY "{rebuilder}" TO CURRENT_USER')
        sql(f'DROP OWNED BY "{rebuilder}"')
        sql(f'DROP ROLE "{rebuilder}"')

"""``verify_projections`` on the embedded default (issue 24: it exited 1, "needs
PostgreSQL"): the log is replayed into TEMP tables beside the live ones, in one
transaction that is rolled back, and compared row by row."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from django.conf import settings

from tests.sqlite.test_embedded_default import embedded_env, run

DRIFT = """
from projections.models import OrderHistory, ProductCatalog
order = OrderHistory.objects.filter(customer="john").order_by("number").first()
OrderHistory.objects.filter(pk=order.pk).update(total=order.total + 1)
ProductCatalog.objects.filter(sku="MUG-1").delete()
print("drifted", order.order_id.hex)
"""


def test_verify_projections_compares_a_replay_with_the_live_tables_on_sqlite(tmp_path: Path):
    env = embedded_env(DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}")
    run(["manage.py", "migrate", "--no-input"], env)
    run(["manage.py", "seed_demo"], env)

    clean = run(["manage.py", "verify_projections"], env)
    for name in ("activity", "order_history", "product_catalog", "sales"):
        assert f"{name}: 0 differing rows at position" in clean, clean

    order_id = run(["manage.py", "shell", "-c", DRIFT], env).split()[-1]
    result = subprocess.run(
        [sys.executable, "manage.py", "verify_projections", "order_history", "product_catalog"],
        cwd=settings.BASE_DIR, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"projections_orderhistory order_id={order_id}: differs" in result.stdout
    assert "projections_productcatalog" in result.stdout
    assert "missing from the live model" in result.stdout
    assert "Read models differ from the log: order_history, product_catalog" in result.stderr

    # It changed nothing: no TEMP table outlived it, the drift is still there.
    again = subprocess.run(
        [sys.executable, "manage.py", "verify_projections", "order_history"],
        cwd=settings.BASE_DIR, env=env, capture_output=True, text=True, timeout=300)
    assert f"order_id={order_id}: differs" in again.stdout

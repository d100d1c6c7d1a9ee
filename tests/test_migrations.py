"""Migrations that change data, run on a database that has the old rows."""

import sqlite3

from tests.servers import Project


def test_duplicate_member_names_are_renamed_before_the_unique_constraint(tmp_path):
    project = Project(tmp_path)
    project.manage("migrate", "maps", "0001", "--noinput", "-v", "0")
    with sqlite3.connect(project.db) as db:
        db.execute("INSERT INTO maps_room (public_id, name, created, retention_days) "
                   "VALUES ('r1', 'One', '2025-01-01', 7), ('r2', 'Two', '2025-01-01', 7)")
        rows = [(1, "Ana"), (1, "ana"), (1, "ANA"), (1, "Ana 2"), (1, "Bo"), (2, "Ana"),
                (1, "A" * 40), (1, "a" * 40)]
        db.executemany(
            "INSERT INTO maps_member (room_id, name, color, role, created) "
            "VALUES (?, ?, '#000000', 'member', '2025-01-01')", rows)
    project.migrate()
    with sqlite3.connect(project.db) as db:
        names = db.execute("SELECT room_id, name FROM maps_member ORDER BY id").fetchall()
        assert names == [(1, "Ana"), (1, "ana 3"), (1, "ANA 4"), (1, "Ana 2"), (1, "Bo"),
                         (2, "Ana"), (1, "A" * 40), (1, "a" * 38 + " 2")]
        try:
            db.execute("INSERT INTO maps_member (room_id, name, color, role, created) "
                       "VALUES (1, 'bo', '#000000', 'member', '2025-01-01')")
        except sqlite3.IntegrityError:
            pass
        else:
            raise AssertionError("the database accepted a duplicate name")


def test_member_keys_become_phone_devices(tmp_path):
    project = Project(tmp_path)
    project.manage("migrate", "maps", "0002", "--noinput", "-v", "0")
    with sqlite3.connect(project.db) as db:
        db.execute("INSERT INTO maps_room (public_id, name, created, retention_days) "
                   "VALUES ('r1', 'One', '2025-01-01', 7)")
        db.executemany(
            "INSERT INTO maps_member (room_id, name, color, role, created, last_seen, "
            "key_hash) VALUES (1, ?, '#000000', 'member', '2025-01-01', ?, ?)",
            [("Ana", "2025-02-03 04:05:06", "a" * 64), ("Bo", None, None)])
    project.migrate()
    with sqlite3.connect(project.db) as db:
        devices = db.execute("SELECT member_id, name, key_hash, last_seen, secret "
                             "FROM maps_device").fetchall()
        columns = [row[1] for row in db.execute("PRAGMA table_info(maps_member)")]
    assert devices == [(1, "Phone", "a" * 64, "2025-02-03 04:05:06", "")]
    assert "key_hash" not in columns

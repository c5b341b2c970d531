"""Indexes on audit events for record history pages and the audit-log filters.

Plain CREATE INDEX (no batch mode): on SQLite a batch operation could recreate the table
and lose the append-only triggers.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 22:23:30
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_audit_events_action", "audit_events", ["action"])
    op.create_index("ix_audit_events_entity", "audit_events", ["entity_type", "entity_key"])
    op.create_index("ix_audit_events_user_id", "audit_events", ["user_id"])


def downgrade() -> None:
    op.drop_index("ix_audit_events_user_id", table_name="audit_events")
    op.drop_index("ix_audit_events_entity", table_name="audit_events")
    op.drop_index("ix_audit_events_action", table_name="audit_events")

"""Baseline: the schema as it stood when IMP moved to Alembic (December 2026).

Before Alembic, IMP created its tables itself and added new nullable columns on start
(``create_or_upgrade``). Databases made that way have every table here, perhaps without
the newest columns, and no ``alembic_version``. So this revision adopts rather than
creates: it creates the tables that are missing and adds the columns a table lacks, and
leaves what exists as it is. A new database gets the same result.

The tables are written out here, not imported from core/store/schema.py: a revision is a
record of one moment and must not change when the models do.

Revision ID: 0001
Revises:
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

from core.store.migrate import adopt

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BASELINE = sa.MetaData()

sa.Table(
    'alerts', BASELINE,
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('signal', sa.String(length=64), nullable=False),
    sa.Column('opened_at', sa.DateTime(), nullable=False),
    sa.Column('resolved_at', sa.DateTime(), nullable=True),
    sa.Column('score', sa.Float(), nullable=False),
    sa.Column('threshold', sa.Float(), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('delivered', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.Index('ix_alerts_signal', 'signal'),
)
sa.Table(
    'answers', BASELINE,
    sa.Column('answer_id', sa.String(length=64), nullable=False),
    sa.Column('question', sa.Text(), nullable=False),
    sa.Column('search_query', sa.Text(), nullable=False),
    sa.Column('answer', sa.Text(), nullable=False),
    sa.Column('abstained', sa.Boolean(), nullable=False),
    sa.Column('citations', sa.JSON(), nullable=False),
    sa.Column('scopes', sa.JSON(), nullable=False),
    sa.Column('model', sa.Text(), nullable=False),
    sa.Column('model_version', sa.Text(), nullable=True),
    sa.Column('timings_ms', sa.JSON(), nullable=False),
    sa.Column('notes', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('embedder', sa.String(length=64), nullable=True),
    sa.Column('adapter', sa.String(length=64), nullable=True),
    sa.Column('best_similarity', sa.Float(), nullable=True),
    sa.PrimaryKeyConstraint('answer_id'),
    sa.Index('ix_answers_created_at', 'created_at'),
)
sa.Table(
    'chunks', BASELINE,
    sa.Column('chunk_id', sa.String(length=128), nullable=False),
    sa.Column('doc_id', sa.String(length=64), nullable=False),
    sa.Column('version', sa.String(length=64), nullable=False),
    sa.Column('ordinal', sa.Integer(), nullable=False),
    sa.Column('scope', sa.String(length=200), nullable=False),
    sa.Column('source', sa.Text(), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('page_start', sa.Integer(), nullable=True),
    sa.Column('page_end', sa.Integer(), nullable=True),
    sa.Column('start', sa.Float(), nullable=True),
    sa.Column('end', sa.Float(), nullable=True),
    sa.Column('speakers', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('chunk_id'),
    sa.Index('ix_chunks_doc_id', 'doc_id'),
)
sa.Table(
    'documents', BASELINE,
    sa.Column('doc_id', sa.String(length=64), nullable=False),
    sa.Column('source', sa.Text(), nullable=False),
    sa.Column('scope', sa.String(length=200), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=True),
    sa.Column('title', sa.Text(), nullable=True),
    sa.Column('version', sa.String(length=64), nullable=True),
    sa.Column('pending_version', sa.String(length=64), nullable=True),
    sa.Column('index_signature', sa.Text(), nullable=True),
    sa.Column('embedding_model', sa.Text(), nullable=True),
    sa.Column('chunks', sa.Integer(), nullable=False),
    sa.Column('segments', sa.Integer(), nullable=False),
    sa.Column('pages', sa.Integer(), nullable=True),
    sa.Column('duration', sa.Float(), nullable=True),
    sa.Column('size_bytes', sa.Integer(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('error_code', sa.String(length=64), nullable=True),
    sa.Column('stored_path', sa.Text(), nullable=True),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=True),
    sa.Column('committed_attempt', sa.Integer(), nullable=True),
    sa.Column('status_attempt', sa.Integer(), nullable=True),
    sa.Column('writer', sa.String(length=200), nullable=True),
    sa.Column('writer_until', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('doc_id'),
    sa.Index('ix_documents_scope', 'scope'),
)
sa.Table(
    'feedback', BASELINE,
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('answer_id', sa.String(length=64), nullable=False),
    sa.Column('user', sa.String(length=64), nullable=False),
    sa.Column('channel', sa.String(length=64), nullable=False),
    sa.Column('rating', sa.Integer(), nullable=False),
    sa.Column('source', sa.String(length=32), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('retracted_at', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.Index('ix_feedback_active', 'answer_id', 'user', 'rating', 'source'),
    sa.Index('ix_feedback_answer_id', 'answer_id'),
    sa.Index('ix_feedback_created_at', 'created_at'),
)
sa.Table(
    'jobs', BASELINE,
    sa.Column('job_id', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('scope', sa.String(length=200), nullable=False),
    sa.Column('source', sa.Text(), nullable=False),
    sa.Column('doc_id', sa.String(length=64), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('stage', sa.Text(), nullable=False),
    sa.Column('done', sa.Float(), nullable=False),
    sa.Column('total', sa.Float(), nullable=True),
    sa.Column('result', sa.JSON(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('params', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('job_id'),
    sa.Index('ix_jobs_status', 'status'),
)
sa.Table(
    'legal_holds', BASELINE,
    sa.Column('scope', sa.String(length=200), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('since', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('scope'),
)
sa.Table(
    'meta', BASELINE,
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('key'),
)
sa.Table(
    'monitor_checks', BASELINE,
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('checked_at', sa.DateTime(), nullable=False),
    sa.Column('window', sa.Integer(), nullable=False),
    sa.Column('signals', sa.JSON(), nullable=False),
    sa.Column('seconds', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.Index('ix_monitor_checks_checked_at', 'checked_at'),
)
sa.Table(
    'retention_runs', BASELINE,
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('ran_at', sa.DateTime(), nullable=False),
    sa.Column('cutoff', sa.DateTime(), nullable=False),
    sa.Column('purged', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.Index('ix_retention_runs_ran_at', 'ran_at'),
)
sa.Table(
    'schedule_claims', BASELINE,
    sa.Column('job', sa.String(length=64), nullable=False),
    sa.Column('window', sa.String(length=64), nullable=False),
    sa.Column('owner', sa.String(length=200), nullable=False),
    sa.Column('claimed_at', sa.DateTime(), nullable=False),
    sa.Column('finished_at', sa.DateTime(), nullable=True),
    sa.Column('outcome', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('job', 'window'),
)
sa.Table(
    'served_models', BASELINE,
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('slot', sa.String(length=16), nullable=False),
    sa.Column('version', sa.String(length=64), nullable=False),
    sa.Column('path', sa.Text(), nullable=True),
    sa.Column('model_id', sa.Text(), nullable=True),
    sa.Column('collection', sa.String(length=64), nullable=True),
    sa.Column('since', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('name', 'slot'),
)
sa.Table(
    'transcripts', BASELINE,
    sa.Column('doc_id', sa.String(length=64), nullable=False),
    sa.Column('version', sa.String(length=64), nullable=False),
    sa.Column('model', sa.Text(), nullable=False),
    sa.Column('data', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('doc_id', 'version'),
)


def upgrade() -> None:
    adopt(op.get_bind(), BASELINE)


def downgrade() -> None:
    for table in reversed(BASELINE.sorted_tables):
        op.drop_table(table.name)

"""sites

Revision ID: 12ce75d43aee
Revises: 
Create Date: 2026-11-28 13:39:06.321607

"""
import sqlalchemy as sa
from alembic import op

import clinic.db  # noqa: F401  (custom column types)


# revision identifiers, used by Alembic.
revision = '12ce75d43aee'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('site',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=10), nullable=False),
    sa.Column('name', sa.String(length=120), nullable=False),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.Column('active', sa.Boolean(), server_default=sa.true(), nullable=False),
    sa.CheckConstraint('code = upper(code)', name=op.f('ck_site_code_upper')),
    sa.CheckConstraint('length(code) BETWEEN 2 AND 10', name=op.f('ck_site_code_length')),
    sa.CheckConstraint('length(name) > 0', name=op.f('ck_site_name_not_empty')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_site')),
    sa.UniqueConstraint('code', name=op.f('uq_site_code'))
    )


def downgrade() -> None:
    op.drop_table('site')

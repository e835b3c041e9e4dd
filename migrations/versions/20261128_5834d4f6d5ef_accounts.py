"""accounts

Revision ID: 5834d4f6d5ef
Revises: 12ce75d43aee
Create Date: 2026-11-28 13:44:32.261649

"""
import sqlalchemy as sa
from alembic import op

import clinic.db  # noqa: F401  (custom column types)


# revision identifiers, used by Alembic.
revision = '5834d4f6d5ef'
down_revision = '12ce75d43aee'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('app_user',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('username', sa.String(length=64), nullable=False),
    sa.Column('full_name', sa.String(length=120), nullable=False),
    sa.Column('email', sa.String(length=254), nullable=True),
    sa.Column('role', sa.Enum('admin', 'clinician', 'staff', name='role', native_enum=False, create_constraint=True, length=16), nullable=False),
    sa.Column('is_prescriber', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('all_sites', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('active', sa.Boolean(), server_default=sa.true(), nullable=False),
    sa.Column('created_at', clinic.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_login_at', clinic.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('password_hash', sa.String(length=255), nullable=False),
    sa.Column('password_changed_at', clinic.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('must_change_password', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('failed_logins', sa.Integer(), server_default='0', nullable=False),
    sa.Column('locked_until', clinic.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('mfa_secret', sa.String(length=64), nullable=True),
    sa.Column('mfa_enabled_at', clinic.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('mfa_last_timestep', sa.BigInteger(), nullable=True),
    sa.CheckConstraint("NOT all_sites OR role = 'admin'", name=op.f('ck_app_user_all_sites_admin_only')),
    sa.CheckConstraint("NOT is_prescriber OR role = 'clinician'", name=op.f('ck_app_user_prescriber_is_clinician')),
    sa.CheckConstraint('failed_logins >= 0', name=op.f('ck_app_user_failed_logins_positive')),
    sa.CheckConstraint('length(username) >= 2', name=op.f('ck_app_user_username_length')),
    sa.CheckConstraint('username = lower(username)', name=op.f('ck_app_user_username_lower')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_app_user')),
    sa.UniqueConstraint('username', name=op.f('uq_app_user_username'))
    )
    op.create_table('recovery_code',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('code_hash', sa.String(length=64), nullable=False),
    sa.Column('used_at', clinic.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['app_user.id'], name=op.f('fk_recovery_code_user_id_app_user'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_recovery_code'))
    )
    with op.batch_alter_table('recovery_code', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_recovery_code_user_id'), ['user_id'], unique=False)

    op.create_table('user_session',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', clinic.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_seen_at', clinic.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('ip', sa.String(length=45), nullable=True),
    sa.Column('user_agent', sa.String(length=255), nullable=True),
    sa.Column('revoked_at', clinic.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('revoked_reason', sa.String(length=32), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['app_user.id'], name=op.f('fk_user_session_user_id_app_user')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_user_session')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_user_session_token_hash'))
    )
    with op.batch_alter_table('user_session', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_user_session_user_id'), ['user_id'], unique=False)

    op.create_table('user_site',
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('site_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['site_id'], ['site.id'], name=op.f('fk_user_site_site_id_site')),
    sa.ForeignKeyConstraint(['user_id'], ['app_user.id'], name=op.f('fk_user_site_user_id_app_user'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_id', 'site_id', name=op.f('pk_user_site'))
    )
    with op.batch_alter_table('user_site', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_user_site_site_id'), ['site_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('user_site', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_user_site_site_id'))

    op.drop_table('user_site')
    with op.batch_alter_table('user_session', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_user_session_user_id'))

    op.drop_table('user_session')
    with op.batch_alter_table('recovery_code', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_recovery_code_user_id'))

    op.drop_table('recovery_code')
    op.drop_table('app_user')

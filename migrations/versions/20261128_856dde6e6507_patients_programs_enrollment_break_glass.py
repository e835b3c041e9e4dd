"""patients programs enrollment break glass

Revision ID: 856dde6e6507
Revises: 08d5ffd341d2
Create Date: 2026-11-28 14:11:03.057321

"""
import sqlalchemy as sa
from alembic import op

import clinic.db  # noqa: F401  (custom column types)


# revision identifiers, used by Alembic.
revision = '856dde6e6507'
down_revision = '08d5ffd341d2'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('patient',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('site_id', sa.Integer(), nullable=False),
    sa.Column('mrn', sa.String(length=24), nullable=False),
    sa.Column('first_name', sa.String(length=80), nullable=False),
    sa.Column('last_name', sa.String(length=80), nullable=False),
    sa.Column('preferred_name', sa.String(length=80), nullable=True),
    sa.Column('first_key', sa.String(length=80).with_variant(sa.String(length=80, collation='C'), 'postgresql'), nullable=False),
    sa.Column('last_key', sa.String(length=80).with_variant(sa.String(length=80, collation='C'), 'postgresql'), nullable=False),
    sa.Column('preferred_key', sa.String(length=80).with_variant(sa.String(length=80, collation='C'), 'postgresql'), nullable=True),
    sa.Column('date_of_birth', sa.Date(), nullable=False),
    sa.Column('sex_at_birth', sa.Enum('female', 'male', 'intersex', 'unknown', name='sex_at_birth', native_enum=False, create_constraint=True, length=16), nullable=False),
    sa.Column('gender_identity', sa.String(length=60), nullable=True),
    sa.Column('phone', sa.String(length=32), nullable=True),
    sa.Column('email', sa.String(length=254), nullable=True),
    sa.Column('address_line1', sa.String(length=120), nullable=True),
    sa.Column('address_line2', sa.String(length=120), nullable=True),
    sa.Column('city', sa.String(length=80), nullable=True),
    sa.Column('state', sa.String(length=40), nullable=True),
    sa.Column('postal_code', sa.String(length=16), nullable=True),
    sa.Column('emergency_contact_name', sa.String(length=120), nullable=True),
    sa.Column('emergency_contact_phone', sa.String(length=32), nullable=True),
    sa.Column('emergency_contact_relationship', sa.String(length=60), nullable=True),
    sa.Column('primary_substance', sa.Enum('heroin', 'fentanyl', 'prescription_opioids', 'alcohol', 'methamphetamine', 'cocaine', 'cannabis', 'benzodiazepines', 'other', name='substance', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('intake_date', sa.Date(), nullable=False),
    sa.Column('state_registry_id', sa.String(length=40), nullable=True),
    sa.Column('created_at', clinic.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('entered_in_error_at', clinic.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('entered_in_error_reason', sa.String(length=500), nullable=True),
    sa.Column('entered_in_error_by_id', sa.Integer(), nullable=True),
    sa.Column('version', sa.Integer(), server_default='1', nullable=False),
    sa.CheckConstraint('(entered_in_error_at IS NULL) = (entered_in_error_reason IS NULL)', name=op.f('ck_patient_entered_in_error_has_reason')),
    sa.CheckConstraint('date_of_birth <= intake_date', name=op.f('ck_patient_born_before_intake')),
    sa.CheckConstraint('length(first_name) > 0', name=op.f('ck_patient_first_name_not_empty')),
    sa.CheckConstraint('length(last_name) > 0', name=op.f('ck_patient_last_name_not_empty')),
    sa.ForeignKeyConstraint(['created_by_id'], ['app_user.id'], name=op.f('fk_patient_created_by_id_app_user')),
    sa.ForeignKeyConstraint(['entered_in_error_by_id'], ['app_user.id'], name=op.f('fk_patient_entered_in_error_by_id_app_user')),
    sa.ForeignKeyConstraint(['site_id'], ['site.id'], name=op.f('fk_patient_site_id_site')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_patient')),
    sa.UniqueConstraint('mrn', name=op.f('uq_patient_mrn'))
    )
    with op.batch_alter_table('patient', schema=None) as batch_op:
        batch_op.create_index('ix_patient_dob_last_key', ['date_of_birth', 'last_key'], unique=False)
        batch_op.create_index('ix_patient_first_key', ['first_key'], unique=False)
        batch_op.create_index('ix_patient_last_key', ['last_key'], unique=False)
        batch_op.create_index('ix_patient_preferred_key', ['preferred_key'], unique=False)
        batch_op.create_index(batch_op.f('ix_patient_site_id'), ['site_id'], unique=False)

    op.create_table('program',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('site_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=120), nullable=False),
    sa.Column('kind', sa.Enum('methadone_otp', 'office_buprenorphine', 'xr_naltrexone', 'intensive_outpatient', 'outpatient', name='program_kind', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('active', sa.Boolean(), server_default=sa.true(), nullable=False),
    sa.Column('care_plan_review_days', sa.Integer(), server_default='90', nullable=False),
    sa.Column('take_home_cap_days_0_14', sa.Integer(), server_default='7', nullable=False),
    sa.Column('take_home_cap_days_15_30', sa.Integer(), server_default='14', nullable=False),
    sa.Column('take_home_cap_days_31_plus', sa.Integer(), server_default='28', nullable=False),
    sa.CheckConstraint('care_plan_review_days BETWEEN 1 AND 365', name=op.f('ck_program_care_plan_review_days_range')),
    sa.CheckConstraint('length(name) > 0', name=op.f('ck_program_name_not_empty')),
    sa.CheckConstraint('take_home_cap_days_0_14 BETWEEN 0 AND 7', name=op.f('ck_program_take_home_cap_0_14')),
    sa.CheckConstraint('take_home_cap_days_15_30 BETWEEN 0 AND 14', name=op.f('ck_program_take_home_cap_15_30')),
    sa.CheckConstraint('take_home_cap_days_31_plus BETWEEN 0 AND 28', name=op.f('ck_program_take_home_cap_31_plus')),
    sa.ForeignKeyConstraint(['site_id'], ['site.id'], name=op.f('fk_program_site_id_site')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_program')),
    sa.UniqueConstraint('site_id', 'name', name='uq_program_site_id_name')
    )
    with op.batch_alter_table('program', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_program_site_id'), ['site_id'], unique=False)

    op.create_table('break_glass_grant',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('patient_id', sa.Integer(), nullable=False),
    sa.Column('reason', sa.String(length=500), nullable=False),
    sa.Column('granted_at', clinic.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', clinic.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('acknowledged_at', clinic.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('acknowledged_by_id', sa.Integer(), nullable=True),
    sa.CheckConstraint('expires_at > granted_at', name=op.f('ck_break_glass_grant_expires_after_grant')),
    sa.CheckConstraint('length(reason) >= 10', name=op.f('ck_break_glass_grant_reason_given')),
    sa.ForeignKeyConstraint(['acknowledged_by_id'], ['app_user.id'], name=op.f('fk_break_glass_grant_acknowledged_by_id_app_user')),
    sa.ForeignKeyConstraint(['patient_id'], ['patient.id'], name=op.f('fk_break_glass_grant_patient_id_patient')),
    sa.ForeignKeyConstraint(['user_id'], ['app_user.id'], name=op.f('fk_break_glass_grant_user_id_app_user')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_break_glass_grant'))
    )
    with op.batch_alter_table('break_glass_grant', schema=None) as batch_op:
        batch_op.create_index('ix_break_glass_grant_unacknowledged', ['acknowledged_at', 'granted_at'], unique=False)
        batch_op.create_index('ix_break_glass_grant_user_patient', ['user_id', 'patient_id', 'expires_at'], unique=False)

    op.create_table('enrollment',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('patient_id', sa.Integer(), nullable=False),
    sa.Column('program_id', sa.Integer(), nullable=False),
    sa.Column('admitted_on', sa.Date(), nullable=False),
    sa.Column('asam_edition', sa.Enum('3', '4', name='asam_edition', native_enum=False, create_constraint=True), nullable=False),
    sa.Column('asam_level', sa.String(length=8), nullable=False),
    sa.Column('primary_counselor_id', sa.Integer(), nullable=True),
    sa.Column('transferred_from_id', sa.Integer(), nullable=True),
    sa.Column('discharged_on', sa.Date(), nullable=True),
    sa.Column('discharge_reason', sa.Integer(), nullable=True),
    sa.Column('medical_exam_on', sa.Date(), nullable=True),
    sa.Column('assessment_on', sa.Date(), nullable=True),
    sa.Column('care_plan_on', sa.Date(), nullable=True),
    sa.Column('created_at', clinic.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('version', sa.Integer(), server_default='1', nullable=False),
    sa.CheckConstraint("(asam_edition = '3' AND asam_level IN ('0.5', '1', 'OTP', '2.1', '2.5', '3.1', '3.3', '3.5', '3.7', '4')) OR (asam_edition = '4' AND asam_level IN ('1.0', '1.5', '1.7', '2.1', '2.5', '2.7', '3.1', '3.5', '3.7', '4'))", name=op.f('ck_enrollment_asam_level_valid')),
    sa.CheckConstraint('(discharged_on IS NULL) = (discharge_reason IS NULL)', name=op.f('ck_enrollment_discharge_complete')),
    sa.CheckConstraint('assessment_on IS NULL OR assessment_on >= admitted_on', name=op.f('ck_enrollment_assessment_after_admission')),
    sa.CheckConstraint('care_plan_on IS NULL OR care_plan_on >= admitted_on', name=op.f('ck_enrollment_care_plan_after_admission')),
    sa.CheckConstraint('discharge_reason IS NULL OR discharge_reason BETWEEN 1 AND 7', name=op.f('ck_enrollment_discharge_reason_teds')),
    sa.CheckConstraint('discharged_on IS NULL OR discharged_on >= admitted_on', name=op.f('ck_enrollment_discharge_after_admission')),
    sa.CheckConstraint('medical_exam_on IS NULL OR medical_exam_on >= admitted_on', name=op.f('ck_enrollment_exam_after_admission')),
    sa.ForeignKeyConstraint(['created_by_id'], ['app_user.id'], name=op.f('fk_enrollment_created_by_id_app_user')),
    sa.ForeignKeyConstraint(['patient_id'], ['patient.id'], name=op.f('fk_enrollment_patient_id_patient')),
    sa.ForeignKeyConstraint(['primary_counselor_id'], ['app_user.id'], name=op.f('fk_enrollment_primary_counselor_id_app_user')),
    sa.ForeignKeyConstraint(['program_id'], ['program.id'], name=op.f('fk_enrollment_program_id_program')),
    sa.ForeignKeyConstraint(['transferred_from_id'], ['enrollment.id'], name=op.f('fk_enrollment_transferred_from_id_enrollment')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_enrollment'))
    )
    with op.batch_alter_table('enrollment', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_enrollment_patient_id'), ['patient_id'], unique=False)
        batch_op.create_index('ix_enrollment_program_active', ['program_id', 'discharged_on'], unique=False)
        batch_op.create_index('uq_enrollment_active_patient_program', ['patient_id', 'program_id'], unique=True, sqlite_where=sa.text('discharged_on IS NULL'), postgresql_where=sa.text('discharged_on IS NULL'))

    op.create_table('care_plan_review',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('enrollment_id', sa.Integer(), nullable=False),
    sa.Column('reviewed_on', sa.Date(), nullable=False),
    sa.Column('recorded_by_id', sa.Integer(), nullable=False),
    sa.Column('recorded_at', clinic.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['enrollment_id'], ['enrollment.id'], name=op.f('fk_care_plan_review_enrollment_id_enrollment')),
    sa.ForeignKeyConstraint(['recorded_by_id'], ['app_user.id'], name=op.f('fk_care_plan_review_recorded_by_id_app_user')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_care_plan_review'))
    )
    with op.batch_alter_table('care_plan_review', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_care_plan_review_enrollment_id'), ['enrollment_id'], unique=False)

    with op.batch_alter_table('site', schema=None) as batch_op:
        batch_op.add_column(sa.Column('last_mrn', sa.Integer(), server_default='0', nullable=False))



def downgrade() -> None:
    with op.batch_alter_table('site', schema=None) as batch_op:
        batch_op.drop_column('last_mrn')

    with op.batch_alter_table('care_plan_review', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_care_plan_review_enrollment_id'))

    op.drop_table('care_plan_review')
    with op.batch_alter_table('enrollment', schema=None) as batch_op:
        batch_op.drop_index('uq_enrollment_active_patient_program', sqlite_where=sa.text('discharged_on IS NULL'), postgresql_where=sa.text('discharged_on IS NULL'))
        batch_op.drop_index('ix_enrollment_program_active')
        batch_op.drop_index(batch_op.f('ix_enrollment_patient_id'))

    op.drop_table('enrollment')
    with op.batch_alter_table('break_glass_grant', schema=None) as batch_op:
        batch_op.drop_index('ix_break_glass_grant_user_patient')
        batch_op.drop_index('ix_break_glass_grant_unacknowledged')

    op.drop_table('break_glass_grant')
    with op.batch_alter_table('program', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_program_site_id'))

    op.drop_table('program')
    with op.batch_alter_table('patient', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_patient_site_id'))
        batch_op.drop_index('ix_patient_preferred_key')
        batch_op.drop_index('ix_patient_last_key')
        batch_op.drop_index('ix_patient_first_key')
        batch_op.drop_index('ix_patient_dob_last_key')

    op.drop_table('patient')

"""The audit viewer's filter form (read from the query string)."""

from __future__ import annotations

from wtforms import DateField, IntegerField, SelectChoice, SelectField, StringField
from wtforms.validators import NumberRange, Optional

from clinic.audit.models import AuditAction
from clinic.forms import ClinicForm


class AuditFilterForm(ClinicForm):
    class Meta:
        csrf = False  # a GET search form: it changes nothing

    user = StringField("Username", validators=[Optional()])
    patient = IntegerField("Patient id", validators=[Optional(), NumberRange(min=1)])
    action = SelectField(
        "Action",
        choices=[SelectChoice("", "Any")] + [SelectChoice(a.value, a.value) for a in AuditAction],
        validators=[Optional()],
    )
    entity = StringField("Record type", validators=[Optional()])
    date_from = DateField("From (UTC)", validators=[Optional()])
    date_to = DateField("To (UTC)", validators=[Optional()])

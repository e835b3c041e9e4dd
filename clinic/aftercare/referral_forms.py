"""Forms of the referral pages (shape only: the rules are the services',
clinic/aftercare/referrals.py and disclosures.py)."""

from __future__ import annotations

from wtforms import (
    BooleanField,
    DateField,
    RadioField,
    SelectChoice,
    SelectField,
    StringField,
    SubmitField,
    TextAreaField,
)
from wtforms.validators import InputRequired, Length, Optional

from clinic.aftercare.consent_models import ConsentPurpose
from clinic.aftercare.models import ResourceKind
from clinic.aftercare.referral_models import DESCRIPTION_MAX, NOTE_MAX, REASON_MAX
from clinic.forms import BookkeepingForm, ClinicForm, TokenForm, version_field


class ResourceFilterForm(ClinicForm):
    """The directory's filters on the new-referral page (a GET form)."""

    class Meta:
        csrf = False

    kind = SelectField(
        "Kind",
        choices=[
            SelectChoice("", "Any kind"),
            *(SelectChoice(k.value, k.label) for k in ResourceKind),
        ],
        validators=[Optional()],
    )
    q = StringField("Name or city", validators=[Optional(), Length(max=100)])
    moud = BooleanField("Accepts residents on MOUD")
    methadone = BooleanField("Accepts residents on methadone")
    beds = BooleanField("Has a bed available")


class NewReferralForm(TokenForm):
    recipient = RadioField(
        "Refer to",
        choices=[],
        validators=[InputRequired(message="Choose a resource or a support person.")],
        validate_choice=False,  # the service says why an id is refused, next to the field
    )
    reason = TextAreaField(
        "Reason for referral",
        validators=[
            InputRequired(message="Say why the patient is referred."),
            Length(max=REASON_MAX),
        ],
        render_kw={"rows": 3},
    )
    purpose = SelectField(
        "Purpose",
        choices=[SelectChoice(p.value, p.label) for p in ConsentPurpose],
        default=ConsentPurpose.AFTERCARE_REFERRAL.value,
        description="What the patient's consent must cover for the referral to be sent.",
    )
    follow_up_on = DateField("Follow up on", validators=[Optional()])
    confirm_moud = BooleanField("I checked with the residence: create the referral anyway")
    submit = SubmitField("Create the referral (draft)")


class StatusForm(BookkeepingForm):
    version = version_field()
    status = SelectField("New status", choices=[], validators=[InputRequired()])
    note = TextAreaField(
        "Note", validators=[Optional(), Length(max=NOTE_MAX)], render_kw={"rows": 2}
    )
    submit = SubmitField("Change the status")


class FollowUpForm(BookkeepingForm):
    version = version_field()
    follow_up_on = DateField(
        "Follow up on", validators=[Optional()], description="Leave empty to clear it."
    )
    submit = SubmitField("Set the follow-up")


class SendForm(TokenForm):
    version = version_field()
    description = TextAreaField(
        "What is disclosed",
        validators=[InputRequired(message="Say what is disclosed."), Length(max=DESCRIPTION_MAX)],
        render_kw={"rows": 3},
        description="Recorded in the patient's accounting of disclosures.",
    )
    note = TextAreaField(
        "Note", validators=[Optional(), Length(max=NOTE_MAX)], render_kw={"rows": 2}
    )
    submit = SubmitField("Send the referral")

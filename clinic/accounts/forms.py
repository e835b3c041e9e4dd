"""Forms for logins, own-account pages and user administration (shape only; the rules
live in services)."""

from __future__ import annotations

from typing import Any

from wtforms import (
    BooleanField,
    EmailField,
    PasswordField,
    SelectChoice,
    SelectField,
    SelectMultipleField,
    StringField,
    SubmitField,
)
from wtforms.validators import DataRequired, Email, EqualTo, Length, Optional
from wtforms.widgets import CheckboxInput, ListWidget

from clinic.accounts.models import USERNAME_MAX
from clinic.accounts.passwords import MAX_LENGTH, MIN_LENGTH
from clinic.forms import ClinicForm, TokenForm, submission_token_field, version_field
from clinic.security import Role

# A typed password is checked in full up to this length (passwords are set with at most
# MAX_LENGTH; a longer one cannot be right), so no input is hashed unbounded.
LOGIN_PASSWORD_MAX = 1024


class LoginForm(ClinicForm):
    username = StringField(
        "Username",
        validators=[DataRequired(), Length(max=254)],
        render_kw={"autocomplete": "username", "autofocus": True},
    )
    password = PasswordField(
        "Password",
        validators=[DataRequired(), Length(max=LOGIN_PASSWORD_MAX)],
        render_kw={"autocomplete": "current-password"},
    )
    submit = SubmitField("Sign in")


class SecondFactorForm(ClinicForm):
    code = StringField(
        "Authenticator code or recovery code",
        validators=[DataRequired(), Length(max=32)],
        render_kw={"autocomplete": "one-time-code", "inputmode": "text", "autofocus": True},
        description="The 6-digit code from your authenticator app, or one of your recovery codes.",
    )
    submit = SubmitField("Verify")


class ChangePasswordForm(ClinicForm):
    current_password = PasswordField(
        "Current password",
        validators=[DataRequired(), Length(max=LOGIN_PASSWORD_MAX)],
        render_kw={"autocomplete": "current-password"},
    )
    new_password = PasswordField(
        "New password",
        validators=[DataRequired(), Length(min=MIN_LENGTH, max=MAX_LENGTH)],
        render_kw={"autocomplete": "new-password"},
        description=f"At least {MIN_LENGTH} characters. "
        "A passphrase of unrelated words works well.",
    )
    confirm_password = PasswordField(
        "Repeat new password",
        validators=[DataRequired(), EqualTo("new_password", "The two passwords differ.")],
        render_kw={"autocomplete": "new-password"},
    )
    submit = SubmitField("Change password")


class EnableMfaForm(ClinicForm):
    password = PasswordField(
        "Your password",
        validators=[DataRequired(), Length(max=LOGIN_PASSWORD_MAX)],
        render_kw={"autocomplete": "current-password"},
    )
    code = StringField(
        "Code from the app",
        validators=[DataRequired(), Length(max=10)],
        render_kw={"autocomplete": "one-time-code", "inputmode": "numeric"},
    )
    submit = SubmitField("Turn on two-step verification")


class PasswordConfirmForm(ClinicForm):
    password = PasswordField(
        "Your password",
        validators=[DataRequired(), Length(max=LOGIN_PASSWORD_MAX)],
        render_kw={"autocomplete": "current-password"},
    )
    submit = SubmitField("Confirm")


class ConfirmForm(ClinicForm):
    """An empty form: the CSRF token and a confirm button."""

    submit = SubmitField("Confirm")


class MultiCheckboxField(SelectMultipleField):
    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


ROLE_CHOICES = [SelectChoice(r.value, r.label) for r in Role]


def optional_id(value: Any) -> int | None:
    """A select's value as an id, or None for its empty choice."""
    if value is None or value in ("", "None"):
        return None
    return int(value)


TRAINEE_NEEDS_SUPERVISOR = "Choose the trainee's supervisor."


class UserForm(TokenForm):
    """An administrator's edit of an account's profile. ``version``: the account's
    ``profile_version`` when the form was built (optimistic lock)."""

    full_name = StringField("Full name", validators=[DataRequired(), Length(max=120)])
    email = EmailField(
        "Email", validators=[Optional(), Length(max=254), Email(check_deliverability=False)]
    )
    role = SelectField("Role", choices=ROLE_CHOICES, validators=[DataRequired()])
    is_prescriber = BooleanField("Prescriber (clinicians only: may write medication orders)")
    may_dispense = BooleanField(
        "May dispense (clinicians only: a practitioner, nurse or pharmacist who records doses)"
    )
    all_sites = BooleanField("Works at all sites (administrators only)")
    sites = MultiCheckboxField("Sites", coerce=int)
    is_trainee = BooleanField(
        "Trainee (clinicians only: their signed notes wait for the supervisor's co-signature)"
    )
    supervisor_id = SelectField(
        "Supervisor",
        coerce=optional_id,
        description="An active clinician who shares a site with the trainee.",
    )
    version = version_field()
    # A double click shows the first save's result (clinic.web.save, once=).
    submission_token = submission_token_field(required=False)
    submit = SubmitField("Save")

    def validate(self, extra_validators: Any = None) -> bool:
        ok = super().validate(extra_validators=extra_validators)
        if self.is_trainee.data and self.supervisor_id.data is None:
            if not self.supervisor_id.errors:
                self.supervisor_id.errors = [*self.supervisor_id.errors, TRAINEE_NEEDS_SUPERVISOR]
            ok = False
        return ok


CHOOSE = "Choose…"


class NewUserForm(UserForm):
    # A risky choice starts empty: nobody becomes an administrator by a missed click.
    role = SelectField(
        "Role",
        choices=[SelectChoice("", CHOOSE), *ROLE_CHOICES],
        validators=[DataRequired(message="Choose a role.")],
    )
    username = StringField(
        "Username",
        validators=[DataRequired(), Length(min=2, max=USERNAME_MAX)],
        description="Letters, digits, dots, dashes or underscores; not case-sensitive.",
        render_kw={"autocomplete": "off"},
    )
    password = PasswordField(
        "Temporary password",
        validators=[DataRequired(), Length(min=MIN_LENGTH, max=MAX_LENGTH)],
        description="The user must change it at first login.",
        render_kw={"autocomplete": "new-password"},
    )
    version = None  # a new account has no version yet
    submit = SubmitField("Create user")

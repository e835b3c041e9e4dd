"""Extensions, created without an app and bound in ``create_app``."""

from flask_bootstrap import Bootstrap5
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy

from clinic.csrf import ClinicCSRFProtect
from clinic.db import Base

db = SQLAlchemy(model_class=Base)
migrate = Migrate(render_as_batch=True, compare_type=True)
login_manager = LoginManager()
csrf = ClinicCSRFProtect()  # the token, and a same-origin check that works behind TLS
limiter = Limiter(key_func=get_remote_address, default_limits=[])
bootstrap = Bootstrap5()

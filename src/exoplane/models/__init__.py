"""SQLAlchemy models, one module per table."""

from exoplane.models.app import App
from exoplane.models.base import Base
from exoplane.models.customer import Customer
from exoplane.models.idempotency_key import IdempotencyKey
from exoplane.models.token import Token
from exoplane.models.user import User

__all__ = ["App", "Base", "Customer", "IdempotencyKey", "Token", "User"]

"""The administration API's own failures."""

from __future__ import annotations

from exoplane.errors import Conflict, NotFound


class CustomerNotFound(NotFound):
    code = "customer_not_found"


class OperatorNotFound(NotFound):
    code = "operator_not_found"


class LastSuperAdmin(Conflict):
    code = "last_super_admin"

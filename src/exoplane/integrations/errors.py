"""The integrations API's own failures."""

from __future__ import annotations

from exoplane.errors import BadRequest, Conflict, NotFound, Unauthorized


class InvalidCredentials(Unauthorized):
    code = "invalid_credentials"


class AppNotFound(NotFound):
    code = "app_not_found"


class UserNotFound(NotFound):
    code = "user_not_found"


class UserExists(Conflict):
    code = "user_exists"


class AccountMismatch(BadRequest):
    code = "account_mismatch"


class SettingsConflict(Conflict):
    code = "settings_conflict"


class DeviceRuleViolation(BadRequest):
    code = "device_rule_violation"

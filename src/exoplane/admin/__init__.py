"""Administration of tenants and operators under ``/api/v1``, for super_admins."""

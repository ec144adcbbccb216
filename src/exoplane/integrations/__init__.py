"""The integrationscore API: tokens, apps, users (``/v2/integrations``)."""

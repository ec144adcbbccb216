"""The voice-bot platform's telephony admin (seed 04): Exotel credentials, DIDs, test calls."""

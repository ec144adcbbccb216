"""Numbers for charts: webhook deliveries, calls and voice-bot streams per time bucket."""

"""Calls: the Connect applet's routing URL, Passthru hooks and StatusCallbacks (SPEC §4.7)."""

"""An Exotel you run locally: the v1 Calls API, simulated calls, and a control API."""

"""One key per cluster: every process on a database must share its secret key."""

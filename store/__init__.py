"""What the front end and the supervisor share: job records and output, the data directory's layout, and the
users; SQLite and files in the data directory (the default), or Redis for a cluster (`backends` picks one)."""

"""The `workerctl` command line: a table of commands (table.py), the job commands (job_commands.py), the one
module that bends python-fire to it (fire_adapter.py), help rendered from the table (help.py), and the run
that ties them together (main.py)."""

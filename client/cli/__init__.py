"""The `workerctl` command line: a table of commands (table.py), the job commands (job_commands.py), the
reading of a command line with the table (command_line.py), python-fire binding the server's commands
(fire_adapter.py), help rendered from the table (help.py), and the run that ties them together (main.py)."""

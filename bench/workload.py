"""What every contender is asked to run, so that each comparison is of the same work."""

TRIVIAL_COMMAND = "echo hello"  # a trivial job: one shell, one line of output
SLEEPER_COMMAND = "sleep 1000"  # a job that runs until it is stopped or timed out
FLOOD_BYTES = 1024**3
FLOOD_COMMAND = f"head -c {FLOOD_BYTES} /dev/zero"  # writes 1 GiB as fast as the reader takes it
JOB_USER = "nobody"  # workerctl runs jobs as nobody when run as root; the floors and peers do too

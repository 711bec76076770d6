"""What every server process runs with, whatever its role: its settings, its logging, Linux process controls,
and the link between a front end (or an agent's relay) and the supervisor: framing, dispatch, the client core.
The launchers in `server/`, the front end, the supervisor and the cluster all import it; it imports none of them."""

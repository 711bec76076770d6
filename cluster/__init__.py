"""Several worker hosts sharing one Redis: the hosts' leases and placement (`hosts`), the Celery app that carries
starts and stops (`celery_app`), an agent's relay to its supervisor (`relay`), the lost-host sweep the agents run
one at a time (`sweep`), and the link a cluster front end gives the web app (`front_end_link`)."""

"""The Tornado HTTPS front end: TLS, parsing, validation, authentication, forwarding over a JobLink, JSON
answers, and the web view's static files. It imports nothing of the supervisor or the cluster."""

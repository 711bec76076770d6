"""The protocol every part of workerctl shares: job statuses and IDs (`jobs`), the API's error kinds
(`errors`), its actions with their fields and answers (`actions`, `replies`), a job's limits (`limits`), and the
messages the front end and the supervisor exchange (`messages`), every field declared one way (`fields`).

It imports nothing but the standard library and msgspec, so the client, the front end, the supervisor and the
store can all use it. What every command line imports (`jobs`, `errors`, `sizes`) needs only the standard
library.
"""

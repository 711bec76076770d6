"""The protocol every part of workerctl shares: job statuses and IDs (`jobs`), the API's error kinds
(`errors`), its actions with their fields and answers (`actions`, `replies`), and the messages the front end
and the supervisor exchange (`messages`).

It imports nothing but the standard library, so the client, the front end, the supervisor and the store can
all use it.
"""

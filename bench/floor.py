"""The floor of `make bench`: the cheapest honest pyinfra deploy against the same lab masters.

One operation, no facts, one remote command per host (``true`` through ``docker exec``). Whatever
the real deploy costs above this is the deploy's own overhead, not pyinfra's or Docker's.

    pyinfra -y inventory.py bench/floor.py
"""

from pyinfra.operations import server

server.shell(name="floor: one trivial command per host", commands=["true"])

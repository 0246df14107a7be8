"""``xgate serve``: the supervisor and its parts (``supervisor``, ``parts``), the checks before
anything starts (``checks``), the listening sockets handed to the parts (``listen``) and the
parts' status file (``part_status``)."""

"""The queue: messages stored durably on arrival (``spool``, ``intake``), claimed by workers
with a lease (``store``, ``lease``), inspected and retried by operators (``admin``, ``stats``),
and held messages that a key directory change lets go (``held``)."""

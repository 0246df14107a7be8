"""The demo set-up of ``xgate init --demo``: demo keys (``keys``), and the catcher that keeps
the mail a demo gateway sends out (``catcher``) for ``xgate demo mail`` to read (``mail``)."""

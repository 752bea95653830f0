"""``semctl web``: the browser view, a client of the control socket like ``semctl``.

It never opens the store: every page is made of replies to the same requests
``semctl`` sends, over one :class:`~semantica.control.async_client.AsyncClient`.
Only the ``semctl web`` command imports this package (lazily, so ``semctl``'s
other commands start as fast as before). See docs/web.md.
"""

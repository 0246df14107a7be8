"""The user interface's texts, one module per language: German first (``de``), English
(``en``) with the same keys (a test keeps them in step). Placeholders are ``{name}``."""

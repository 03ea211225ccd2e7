"""The `panda` command-line client for PandaStack. It speaks only the REST API and never imports
Django, so a CI runner can install it alone and it starts fast."""

__version__ = "0.1.0"

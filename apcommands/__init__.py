"""Signed commands to the access points: signing and sending, the command log daemon, its CLI.

May import ``census``, ``registry`` and ``timeseries``, never ``portal`` (see README.md).
"""

"""The compliance engine: each obligation of each regime is a rule that cites its paragraph.

``registry`` holds the rules, ``context`` the facts and parameters they read, ``engine``
runs them and keeps the findings table up to date. The rules live in ``rules/``, one module
per regime, and are vectorised over pandas frames (never one query per record).
"""

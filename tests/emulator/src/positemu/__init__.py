"""positemu: an emulator of Posit Package Manager, Connect and Workbench for tests (see tests/emulator/README.md).

Shared core: ``gcfg`` (configuration files), ``db`` (SQLite or PostgreSQL), ``schema`` (schema version checks and
migrations), ``nodes`` (node registration), ``httpd`` (threaded HTTP server), ``runtime`` (logging, tuning
variables, signals, the service lock). Products: ``pm`` (Package Manager), ``connect`` (Connect) and
``workbench`` (Workbench). Python 3.11 standard library plus psycopg 3 only.
"""

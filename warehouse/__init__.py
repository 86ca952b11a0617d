"""The warehouse: inbox scanning, the ledger, configuration and promotion rules for scheduled runs."""

"""Data contracts, identifiers, quarantine and reconciliation shared by every stage."""
from .contract import TABLES, Column, Contract, check_vocabulary, load_contract, rows_to_table, table_metadata
from .errors import ContractViolation, MissingKeyError, RadsimError, ReconciliationError, UsageError
from .ids import IdKeyer, demo_keyer, keyer_from_env
from .quarantine import QuarantineRecord, merge_quarantine, quarantine_table, reason_codes, reason_counts
from .reconcile import QuarantineCeiling, StageCounts
from .tableio import read_contract_table, read_input_table, write_parquet_atomic
from .vocabulary import (
    NO_FINDING,
    OTHER_ABNORMALITY,
    SUPPORT_DEVICES,
    Finding,
    Vocabulary,
    default_vocabulary,
    load_vocabulary,
)

__all__ = [
    "TABLES", "Column", "Contract", "check_vocabulary", "load_contract", "rows_to_table", "table_metadata",
    "ContractViolation", "MissingKeyError", "RadsimError", "ReconciliationError", "UsageError", "IdKeyer",
    "demo_keyer", "keyer_from_env", "QuarantineRecord", "merge_quarantine", "quarantine_table", "reason_codes",
    "reason_counts", "QuarantineCeiling", "StageCounts", "read_contract_table", "read_input_table",
    "write_parquet_atomic", "NO_FINDING", "OTHER_ABNORMALITY", "SUPPORT_DEVICES", "Finding", "Vocabulary",
    "default_vocabulary", "load_vocabulary",
]
